"""Programs: DEAP typed primitive sets from YAML, and DEAP trees <-> expressions.

A program is a :class:`deap.gp.PrimitiveTree` over the GP types :class:`~eznas.primitives.Tensor`
and :class:`~eznas.primitives.Scalar` whose root is a Scalar. Its terminals are the 22 tensors
of :data:`eznas.tensors.TENSOR_NAMES` (argument i is tensor i) and Scalar constants.

Infix text, parsing and evaluation are those of :mod:`eznas.expression`: :func:`to_infix` prints
a tree, :func:`parse_infix` reads it back exactly into a tree of a given set (no ``eval``), and
:class:`Evaluator` runs a tree on a task's statistics ``values`` of shape ``(rows, 22, R, s, s)``
and returns one score per row.
"""
from __future__ import annotations

import functools
import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import yaml
from deap import gp

from eznas import expression
from eznas import primitives as P
from eznas.errors import EznasError
from eznas.expression import Call, Const, Expr, Var, Vocabulary, format_number, from_prefix, nodes, parse
from eznas.expression import to_infix as infix_of
from eznas.primitives import Scalar, Tensor
from eznas.tensors import INDEX, TENSOR_NAMES

__all__ = [
    "SETS_DIR", "PrimitiveSet", "builtin_sets", "load_primitive_set", "to_infix", "parse_infix", "parse_expression",
    "to_expr", "to_tree", "random_tree", "Evaluator",
]

#: directory of the built-in primitive sets (``primitives/`` at the repository root links here)
SETS_DIR = Path(__file__).parent / "primitive_sets"
_YAML_KEYS = ("name", "description", "terminals", "primitives", "constants", "ephemeral")
_EPHEMERAL_KEYS = ("low", "high", "decimals")
_EPHEMERAL_NAME = "ephemeral"

Node = gp.Primitive | gp.Terminal


# ============================================================================ primitive sets


@dataclass(frozen=True)
class _Table:
    """Lookup tables of a DEAP primitive set, for parsing."""

    primitives: dict[str, gp.Primitive]
    arguments: dict[str, gp.Terminal]
    constants: dict[float, gp.Terminal]
    ephemeral: type | None
    vocabulary: Vocabulary


@dataclass(frozen=True, eq=False)
class PrimitiveSet:
    """A primitive set loaded from YAML: the DEAP set plus what it was built from."""

    name: str
    description: str
    path: Path
    pset: gp.PrimitiveSetTyped
    terminals: tuple[str, ...]
    primitives: tuple[str, ...]
    constants: tuple[float, ...]
    #: ``(low, high, decimals)`` of the ephemeral constant, or None
    ephemeral: tuple[float, float, int] | None
    table: _Table = field(repr=False)

    def parse(self, text: str) -> gp.PrimitiveTree:
        """Shorthand for :func:`parse_infix` ``(text, self)``."""
        return parse_infix(text, self)


def builtin_sets() -> list[str]:
    """Names of the built-in primitive sets."""
    return sorted(p.stem for p in SETS_DIR.glob("*.yaml"))


def load_primitive_set(name_or_path: str) -> PrimitiveSet:
    """The primitive set named ``name_or_path`` (built-in) or stored in that YAML file."""
    path = _resolve_set(str(name_or_path))
    try:
        text = path.read_text()
    except OSError as exc:
        raise EznasError(f"cannot read primitive set {path}: {exc.strerror}") from None
    return _load_cached(str(path.resolve()), text)


def _resolve_set(name: str) -> Path:
    if name.endswith((".yaml", ".yml")) or "/" in name or "\\" in name:
        path = Path(name).expanduser()
        if not path.is_file():
            raise EznasError(f"primitive set file {name} does not exist")
        return path
    path = SETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise EznasError(f"unknown primitive set {name!r}; built-in sets: "
                         f"{', '.join(builtin_sets())} (or give the path of a .yaml file)")
    return path


@functools.lru_cache(maxsize=32)
def _load_cached(path: str, text: str) -> PrimitiveSet:
    where = f"primitive set {path}"
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EznasError(f"{where} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise EznasError(f"{where} must be a YAML mapping with keys {', '.join(_YAML_KEYS)}")
    unknown = sorted(set(map(str, raw)) - set(_YAML_KEYS))
    if unknown:
        raise EznasError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(_YAML_KEYS)}")
    name = str(raw.get("name") or Path(path).stem)
    terminals = _check_terminals(raw.get("terminals", "all"), where)
    specs = _check_primitives(raw.get("primitives"), where)
    constants = _check_constants(raw.get("constants"), where)
    ephemeral = _check_ephemeral(raw.get("ephemeral"), where)
    if not constants and ephemeral is None:
        constants = (1.0,)  # typed generation needs a Scalar terminal
    pset = _build_pset(name, terminals, specs, constants, ephemeral)
    return PrimitiveSet(name=name, description=str(raw.get("description") or ""), path=Path(path),
                        pset=pset, terminals=terminals, primitives=tuple(s.name for s in specs),
                        constants=constants, ephemeral=ephemeral, table=_make_table(pset))


def _check_terminals(raw: Any, where: str) -> tuple[str, ...]:
    if raw == "all" or raw is None:
        return TENSOR_NAMES
    if not isinstance(raw, list) or not raw:
        raise EznasError(f"{where}: 'terminals' must be 'all' or a non-empty list of tensor names")
    bad = [str(t) for t in raw if t not in INDEX]
    if bad:
        raise EznasError(f"{where}: unknown terminal(s) {', '.join(bad)}; valid: {', '.join(TENSOR_NAMES)}")
    return tuple(t for t in TENSOR_NAMES if t in raw)


def _check_primitives(raw: Any, where: str) -> list[P.PrimitiveSpec]:
    if not isinstance(raw, list) or not raw:
        raise EznasError(f"{where}: 'primitives' must be a non-empty list of primitive names")
    bad = [str(n) for n in raw if n not in P.REGISTRY]
    if bad:
        raise EznasError(f"{where}: unknown primitive(s) {', '.join(bad)}; valid names: {', '.join(P.names())}")
    dup = sorted({str(n) for n in raw if raw.count(n) > 1})
    if dup:
        raise EznasError(f"{where}: primitive(s) listed twice: {', '.join(dup)}")
    specs = [P.REGISTRY[n] for n in raw]
    if not any(s.ret is Tensor for s in specs):
        raise EznasError(f"{where}: needs at least one primitive returning a Tensor (e.g. add, mul)")
    if not any(s.ret is Scalar and Tensor in s.args for s in specs):
        raise EznasError(f"{where}: needs at least one reduction Tensor -> Scalar (e.g. mean)")
    return specs


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or abs(value) == float("inf"):
        raise EznasError(f"{what} must be a finite number, got {value!r}")
    return float(value) + 0.0  # + 0.0 turns -0.0 into 0.0


def _check_constants(raw: Any, where: str) -> tuple[float, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise EznasError(f"{where}: 'constants' must be a list of numbers")
    values = tuple(_number(v, f"{where}: constant") for v in raw)
    if len(set(values)) != len(values):
        raise EznasError(f"{where}: 'constants' has duplicates: {list(values)}")
    return values


def _check_ephemeral(raw: Any, where: str) -> tuple[float, float, int] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(map(str, raw)) - set(_EPHEMERAL_KEYS) or not {"low", "high"} <= set(raw):
        raise EznasError(f"{where}: 'ephemeral' must be a mapping with low, high and optional decimals")
    low = _number(raw["low"], f"{where}: ephemeral low")
    high = _number(raw["high"], f"{where}: ephemeral high")
    decimals = raw.get("decimals", 2)
    if not low < high or isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 8:
        raise EznasError(f"{where}: ephemeral needs low < high and decimals an integer in 0..8")
    return low, high, decimals


def draw_constant(low: float, high: float, decimals: int, exclude: tuple[float, ...]) -> float:
    """A random constant in [low, high] rounded to ``decimals``, avoiding the fixed ``exclude``.

    Uses the global :mod:`random` state, like DEAP's generators. Avoiding the fixed constants
    keeps infix printing and parsing an exact round trip.
    """
    value = 0.0
    for _ in range(100):
        value = round(random.uniform(low, high), decimals) + 0.0
        if value not in exclude:
            break
    return value


def _build_pset(name: str, terminals: Sequence[str], specs: Sequence[P.PrimitiveSpec],
                constants: Sequence[float], ephemeral: tuple[float, float, int] | None) -> gp.PrimitiveSetTyped:
    pset = gp.PrimitiveSetTyped(name, [Tensor] * len(TENSOR_NAMES), Scalar)
    pset.renameArguments(**{f"ARG{i}": t for i, t in enumerate(TENSOR_NAMES)})
    for spec in specs:
        pset.addPrimitive(spec.fn, list(spec.args), spec.ret, name=spec.name)
    for value in constants:
        pset.addTerminal(value, Scalar)
    if ephemeral is not None:
        pset.addEphemeralConstant(_EPHEMERAL_NAME, functools.partial(draw_constant, *ephemeral, tuple(constants)),
                                  Scalar)
    for term in pset.terminals[Tensor]:
        term.name = term.value  # renameArguments only renames the value
    _drop_arguments(pset, set(TENSOR_NAMES) - set(terminals))
    return pset


def _drop_arguments(pset: gp.PrimitiveSetTyped, drop: set[str]) -> None:
    """Keep all 22 arguments (argument i = tensor i) but stop generating or parsing ``drop``."""
    for type_, terms in pset.terminals.items():
        pset.terminals[type_] = [t for t in terms if not (isinstance(t, gp.Terminal) and t.value in drop)]
    for name in drop:
        del pset.mapping[name]
    pset.terms_count -= len(drop)


def _deap(pset: PrimitiveSet | gp.PrimitiveSetTyped) -> gp.PrimitiveSetTyped:
    return pset.pset if isinstance(pset, PrimitiveSet) else pset


def _make_table(pset: gp.PrimitiveSetTyped) -> _Table:
    prims = {p.name: p for group in pset.primitives.values() for p in group}
    args: dict[str, gp.Terminal] = {}
    consts: dict[float, gp.Terminal] = {}
    ephemeral = None
    for term in (t for group in pset.terminals.values() for t in group):
        if isinstance(term, gp.MetaEphemeral):
            ephemeral = term
        elif isinstance(term.value, str):
            args[term.value] = term
        else:
            consts[float(term.value)] = term
    return _Table(prims, args, consts, ephemeral, _vocabulary(prims, args, consts, ephemeral))


def _table(pset: PrimitiveSet | gp.PrimitiveSetTyped) -> _Table:
    return pset.table if isinstance(pset, PrimitiveSet) else _make_table(pset)


# ============================================================================ trees <-> expressions


def _vocabulary(prims: dict[str, gp.Primitive], args: dict[str, gp.Terminal], consts: dict[float, gp.Terminal],
                ephemeral: type | None) -> Vocabulary:
    """What :func:`parse_infix` accepts in a set: its primitives, its tensors, its constants (any
    finite one with an ephemeral constant)."""
    def constant(value: float, text: str) -> str | None:
        if value in consts or (ephemeral is not None and abs(value) < float("inf")):
            return None
        allowed = ", ".join(format_number(v) for v in consts) or "none"
        return f"constant {text} is not in the primitive set (constants: {allowed})"

    return Vocabulary(prims, args, constant, max_chars=None, max_depth=None, what="program")


def to_expr(tree: Sequence[Node]) -> Expr:
    """The :data:`~eznas.expression.Expr` of a DEAP tree."""
    return from_prefix(tree)


def to_tree(expr: Expr, pset: PrimitiveSet | gp.PrimitiveSetTyped) -> gp.PrimitiveTree:
    """The DEAP tree of ``expr`` in ``pset`` (every name and constant must belong to the set)."""
    table = _table(pset)
    out: list[Node] = []
    for node in nodes(expr):
        if isinstance(node, Call):
            if node.name not in table.primitives:
                raise EznasError(f"primitive {node.name!r} is not in primitive set {_deap(pset).name!r}")
            out.append(table.primitives[node.name])
        elif isinstance(node, Var):
            if node.name not in table.arguments:
                raise EznasError(f"tensor {node.name!r} is not in primitive set {_deap(pset).name!r}")
            out.append(table.arguments[node.name])
        elif node.value in table.constants:
            out.append(table.constants[node.value])
        elif table.ephemeral is not None:
            eph = table.ephemeral.__new__(table.ephemeral)
            eph.value = node.value + 0.0
            out.append(eph)
        else:
            raise EznasError(f"constant {format_number(node.value)} is not in primitive set {_deap(pset).name!r}")
    return gp.PrimitiveTree(out)


def to_infix(tree: Sequence[Node]) -> str:
    """Readable functional form of a tree, e.g. ``mean_abs(mul(gW_D, W))``."""
    return infix_of(from_prefix(tree))


def parse_infix(text: str, pset: PrimitiveSet | gp.PrimitiveSetTyped, ret: type | None = None) -> gp.PrimitiveTree:
    """Parse the functional form written by :func:`to_infix` into a tree of ``pset``.

    ``ret`` is the required type of the whole expression (default: the set's root type,
    Scalar; pass ``object`` for any). Errors raise :class:`EznasError` naming the column.
    """
    return to_tree(parse_expression(text, pset, ret), pset)


def parse_expression(text: str, pset: PrimitiveSet | gp.PrimitiveSetTyped, ret: type | None = None) -> Expr:
    """Like :func:`parse_infix` (the same checks and errors) but returns the expression."""
    return parse(str(text), ret or _deap(pset).ret, _table(pset).vocabulary)


# ============================================================================ random trees


@contextmanager
def _global_random(rng: random.Random | int | None) -> Iterator[None]:
    """Run with the global :mod:`random` state taken from ``rng`` (and advance ``rng``)."""
    if rng is None or rng is random:
        yield
        return
    source = random.Random(rng) if isinstance(rng, int) else rng
    saved = random.getstate()
    random.setstate(source.getstate())
    try:
        yield
    finally:
        source.setstate(random.getstate())
        random.setstate(saved)


def random_tree(pset: PrimitiveSet | gp.PrimitiveSetTyped, rng_or_random: Any = None,
                min_depth: int = 1, max_depth: int = 4) -> gp.PrimitiveTree:
    """A random program (Scalar root, height in [min_depth, max_depth]) by ramped half-and-half.

    ``rng_or_random`` is a :class:`random.Random` (used and advanced), an int seed, or the
    :mod:`random` module / None for the global state.
    """
    if not 0 <= min_depth <= max_depth:
        raise EznasError(f"random_tree needs 0 <= min_depth <= max_depth, got {min_depth}, {max_depth}")
    with _global_random(rng_or_random):
        expr = gp.genHalfAndHalf(_deap(pset), min_depth, max_depth, type_=Scalar)
    return gp.PrimitiveTree(expr)


# ============================================================================ evaluation


class Evaluator(expression.Evaluator):
    """:class:`eznas.expression.Evaluator` limited to the primitives of ``pset``; it also takes
    DEAP trees (a primitive outside the set raises :class:`EznasError`)."""

    def __init__(self, values: torch.Tensor, pset: PrimitiveSet | gp.PrimitiveSetTyped,
                 cache_bytes: int = 512 * 2**20) -> None:
        super().__init__(values, cache_bytes, primitives=_table(pset).primitives,
                         set_name=_deap(pset).name)
        self.pset = pset

    def __call__(self, program: Sequence[Node] | Expr | str) -> torch.Tensor:
        if isinstance(program, (str, Var, Const, Call)):
            return super().__call__(program)
        return super().__call__(from_prefix(program))
