"""Programs: DEAP typed primitive sets from YAML, infix printing and parsing, evaluation.

A program is a :class:`deap.gp.PrimitiveTree` over the GP types :class:`~eznas.primitives.Tensor`
and :class:`~eznas.primitives.Scalar` whose root is a Scalar. Its terminals are the 22 tensors
of :data:`eznas.tensors.TENSOR_NAMES` (argument i is tensor i) and Scalar constants.

Infix form is functional: ``div_s(mean_abs(mul(gW_D, W)), 2.0)``. :func:`parse_infix` reads
it back exactly (no ``eval``); :class:`Evaluator` runs a tree on a task's statistics
``values`` of shape ``(rows, 22, R, s, s)`` and returns one score per row.
"""
from __future__ import annotations

import difflib
import functools
import random
import re
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import yaml
from deap import gp

from eznas import primitives as P
from eznas.errors import EznasError
from eznas.primitives import Scalar, Tensor
from eznas.tensors import INDEX, TENSOR_NAMES

__all__ = [
    "SETS_DIR", "PrimitiveSet", "builtin_sets", "load_primitive_set", "to_infix", "parse_infix",
    "random_tree", "Evaluator",
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
    return _Table(prims, args, consts, ephemeral)


def _table(pset: PrimitiveSet | gp.PrimitiveSetTyped) -> _Table:
    return pset.table if isinstance(pset, PrimitiveSet) else _make_table(pset)


# ============================================================================ infix


def _fmt_number(value: float) -> str:
    return repr(float(value))


def _leaf_text(node: gp.Terminal) -> str:
    return node.value if isinstance(node.value, str) else _fmt_number(node.value)


def _structure(nodes: Sequence[Node]) -> tuple[list[str], list[list[int]]]:
    """Infix text of every subtree and the child indices of every node (prefix-ordered ``nodes``)."""
    texts: list[str] = [""] * len(nodes)
    children: list[list[int]] = [[] for _ in nodes]
    stack: list[int] = []
    for i in range(len(nodes) - 1, -1, -1):
        node = nodes[i]
        if node.arity == 0:
            texts[i] = _leaf_text(node)
        else:
            if len(stack) < node.arity:
                raise EznasError(f"malformed program: {node.name!r} has too few arguments")
            kids = [stack.pop() for _ in range(node.arity)]
            children[i] = kids
            texts[i] = f"{node.name}({', '.join(texts[k] for k in kids)})"
        stack.append(i)
    if len(stack) != 1:
        raise EznasError(f"malformed program: {len(stack)} separate expressions")
    return texts, children


def to_infix(tree: Sequence[Node]) -> str:
    """Readable functional form of a tree, e.g. ``mean_abs(mul(gW_D, W))``."""
    return _structure(tree)[0][0]


_TOKEN = re.compile(r"\s*(?:(?P<num>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)"
                    r"|(?P<name>[A-Za-z_]\w*)|(?P<punct>[(),])|(?P<end>\Z))")


@dataclass(frozen=True)
class _Tok:
    kind: str  # num, name, punct, end
    text: str
    pos: int


def _parse_error(text: str, pos: int, message: str) -> EznasError:
    return EznasError(f"cannot parse program at column {pos + 1}: {message} in {text!r}")


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while True:
        m = _TOKEN.match(text, pos)
        if m is None:
            at = len(text) - len(text[pos:].lstrip())
            raise _parse_error(text, at, f"unexpected character {text[at]!r}")
        kind = m.lastgroup or "end"
        tokens.append(_Tok(kind, m.group(kind), m.start(kind)))
        if kind == "end":
            return tokens
        pos = m.end()


def _describe(tok: _Tok) -> str:
    return "the end" if tok.kind == "end" else repr(tok.text)


def _leaf_or_primitive(tok: _Tok, table: _Table, expected: type, text: str) -> Node:
    if tok.kind == "num":
        node = _constant(float(tok.text), table, tok, text)
    elif tok.kind == "name" and tok.text in table.primitives:
        node = table.primitives[tok.text]
    elif tok.kind == "name" and tok.text in table.arguments:
        node = table.arguments[tok.text]
    elif tok.kind == "name":
        known = list(table.primitives) + list(table.arguments)
        close = difflib.get_close_matches(tok.text, known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise _parse_error(text, tok.pos, f"unknown name {tok.text!r}{hint}")
    else:
        raise _parse_error(text, tok.pos, f"expected a name or number but found {_describe(tok)}")
    if not issubclass(node.ret, expected):
        raise _parse_error(text, tok.pos, f"{tok.text!r} gives a {node.ret.__name__} "
                                          f"where a {expected.__name__} is expected")
    return node


def _constant(value: float, table: _Table, tok: _Tok, text: str) -> gp.Terminal:
    if value in table.constants:
        return table.constants[value]
    if table.ephemeral is None or value != value or abs(value) == float("inf"):
        allowed = ", ".join(_fmt_number(v) for v in table.constants) or "none"
        raise _parse_error(text, tok.pos, f"constant {tok.text} is not in the primitive set (constants: {allowed})")
    node = table.ephemeral.__new__(table.ephemeral)
    node.value = value + 0.0
    return node


def _expect(tok: _Tok, want: str, text: str) -> None:
    if tok.kind != "punct" or tok.text != want:
        raise _parse_error(text, tok.pos, f"expected {want!r} but found {_describe(tok)}")


def parse_infix(text: str, pset: PrimitiveSet | gp.PrimitiveSetTyped, ret: type | None = None) -> gp.PrimitiveTree:
    """Parse the functional form written by :func:`to_infix` into a tree of ``pset``.

    ``ret`` is the required type of the whole expression (default: the set's root type,
    Scalar; pass ``object`` for any). Errors raise :class:`EznasError` naming the column.
    """
    table = _table(pset)
    tokens = _tokenize(str(text))
    nodes: list[Node] = []
    frames: list[list[Any]] = []  # [primitive, index of the argument being read]
    expected: type = ret or _deap(pset).ret
    k = 0
    while True:
        node = _leaf_or_primitive(tokens[k], table, expected, text)
        nodes.append(node)
        k += 1
        if isinstance(node, gp.Primitive):
            _expect(tokens[k], "(", text)
            frames.append([node, 0])
            expected, k = node.args[0], k + 1
            continue
        while frames:  # a subtree is complete: close the calls it finishes
            frames[-1][1] += 1
            prim, argi = frames[-1]
            if argi < prim.arity:
                _expect(tokens[k], ",", text)
                expected, k = prim.args[argi], k + 1
                break
            _expect(tokens[k], ")", text)
            frames.pop()
            k += 1
        if not frames:
            if tokens[k].kind != "end":
                raise _parse_error(text, tokens[k].pos, f"expected the end but found {_describe(tokens[k])}")
            return gp.PrimitiveTree(nodes)


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


class _LRU:
    """Least-recently-used map of tensors under a byte budget."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, int(limit))
        self.data: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def size(value: torch.Tensor) -> int:
        return value.element_size() * value.nelement()

    def get(self, key: str) -> torch.Tensor | None:
        value = self.data.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self.data.move_to_end(key)
        return value

    def put(self, key: str, value: torch.Tensor) -> None:
        size = self.size(value)
        if size > self.limit or key in self.data:
            return
        self.data[key] = value
        self.bytes += size
        while self.bytes > self.limit:
            _, old = self.data.popitem(last=False)
            self.bytes -= self.size(old)

    def clear(self) -> None:
        self.data.clear()
        self.bytes = self.hits = self.misses = 0


class Evaluator:
    """Evaluates programs on a task's statistics ``values`` (rows, 22, R, s, s).

    ``evaluator(tree)`` returns float32 scores of shape (rows,) (NaN where a row is invalid;
    a Tensor-rooted tree returns its (rows, R, s, s) tensor). Results of subtrees are memoised
    across calls, keyed by their infix text, in an LRU cache of at most ``cache_bytes`` until
    :meth:`clear_cache`; replace the evaluator (or clear the cache) when ``values`` change.
    Numerical failures give NaN rows, never an exception; a tree that does not belong to the
    primitive set raises :class:`EznasError`.
    """

    def __init__(self, values: torch.Tensor, pset: PrimitiveSet | gp.PrimitiveSetTyped,
                 cache_bytes: int = 512 * 2**20) -> None:
        if not isinstance(values, torch.Tensor) or values.dim() != 5 or values.shape[1] != len(TENSOR_NAMES) \
                or values.shape[-1] != values.shape[-2]:
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise EznasError(f"statistics must be a tensor (rows, {len(TENSOR_NAMES)}, R, s, s), got {shape}")
        self.values = values
        self.rows = int(values.shape[0])
        self.pset = pset
        self._context = _deap(pset).context
        # one-number-per-row results are small and reused most: they get their own eighth of
        # the budget, so a stream of large intermediate tensors cannot evict them
        self._scalars = _LRU(cache_bytes // 8)
        self._tensors = _LRU(cache_bytes - cache_bytes // 8)
        self._terms: dict[str, torch.Tensor] = {}
        self._consts: dict[float, torch.Tensor] = {}
        self.errors = 0
        self.last_error = ""

    # -- public

    def __call__(self, tree: Sequence[Node]) -> torch.Tensor:
        texts, children = _structure(tree)
        self._check_known(tree)
        try:
            with torch.no_grad():
                out = self._run(tree, texts, children)
        except Exception as exc:  # noqa: BLE001 - any numerical failure means an invalid program
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            return torch.full((self.rows,), float("nan"), device=self.values.device)
        if out.dim() == 0:
            out = out.expand(self.rows)
        return out.clone()

    def terminal(self, name: str) -> torch.Tensor:
        """Tensor ``name`` of every row, float32 (rows, R, s, s)."""
        if name not in INDEX:
            raise EznasError(f"unknown tensor {name!r}; valid: {', '.join(TENSOR_NAMES)}")
        if self.values.dtype == torch.float32:
            return self.values[:, INDEX[name]]
        if name not in self._terms:
            self._terms[name] = self.values[:, INDEX[name]].float()
        return self._terms[name]

    def clear_cache(self) -> None:
        """Forget memoised subtree results."""
        self._scalars.clear()
        self._tensors.clear()

    @property
    def cache_info(self) -> dict[str, int]:
        """Memo statistics: entries, bytes, hits, misses."""
        parts = (self._scalars, self._tensors)
        return {"entries": sum(len(c.data) for c in parts), "bytes": sum(c.bytes for c in parts),
                "hits": sum(c.hits for c in parts), "misses": sum(c.misses for c in parts)}

    # -- internals

    def _check_known(self, tree: Sequence[Node]) -> None:
        for node in tree:
            if isinstance(node, gp.Primitive) and node.name not in self._context:
                raise EznasError(f"primitive {node.name!r} is not in primitive set {_deap(self.pset).name!r}")
            if isinstance(node, gp.Terminal) and isinstance(node.value, str) and node.value not in INDEX:
                raise EznasError(f"unknown terminal {node.value!r}; valid: {', '.join(TENSOR_NAMES)}")

    def _memo(self, node: gp.Primitive) -> _LRU:
        return self._scalars if node.ret is Scalar else self._tensors

    def _leaf(self, node: gp.Terminal) -> torch.Tensor:
        if isinstance(node.value, str):
            return self.terminal(node.value)
        value = float(node.value)
        if value not in self._consts:
            self._consts[value] = torch.full((self.rows,), value, dtype=torch.float32, device=self.values.device)
        return self._consts[value]

    def _run(self, tree: Sequence[Node], texts: list[str], children: list[list[int]]) -> torch.Tensor:
        """Post-order walk that skips every subtree whose result is memoised."""
        todo: list[tuple[int, bool]] = [(0, False)]
        done: list[torch.Tensor] = []
        while todo:
            i, expanded = todo.pop()
            node = tree[i]
            if node.arity == 0:
                done.append(self._leaf(node))
                continue
            if not expanded:
                hit = self._memo(node).get(texts[i])
                if hit is not None:
                    done.append(hit)
                    continue
                todo.append((i, True))
                todo.extend((c, False) for c in reversed(children[i]))
                continue
            args = done[len(done) - node.arity:]
            del done[len(done) - node.arity:]
            value = self._context[node.name](*args)
            self._memo(node).put(texts[i], value)
            done.append(value)
        return done[0]
