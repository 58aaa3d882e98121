"""Programs as expressions: the tree, its infix text (parser and printer), and the evaluator.

An :data:`Expr` is a small immutable tree, independent of DEAP and of any primitive set:
:class:`Var` (one of the 22 tensors of :data:`eznas.tensors.TENSOR_NAMES`, type Tensor),
:class:`Const` (a Scalar constant) and :class:`Call` (a primitive of
:data:`eznas.primitives.REGISTRY` applied to its arguments).

Infix form is functional: ``div_s(mean_abs(mul(gW_D, W)), 2.0)``; a constant is written as the
shortest text of its (double) value, so :func:`to_infix` and :func:`parse` are an exact round
trip. :func:`parse` is a hand-written reader (no ``eval``) that checks names and argument types
against a :class:`Vocabulary` (default: every registered primitive and tensor) and names the
column of any error. :class:`Evaluator` runs expressions on a task's statistics.
"""
from __future__ import annotations

import difflib
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Union

import numpy as np
import torch

from eznas import primitives as P
from eznas.errors import EznasError
from eznas.primitives import Scalar, Tensor
from eznas.tensors import INDEX, TENSOR_NAMES

__all__ = ["Var", "Const", "Call", "Expr", "Vocabulary", "parse", "to_infix", "format_number", "format_constant",
           "as_expr", "from_prefix", "type_of", "size", "primitives_used", "nodes", "Evaluator", "evaluate",
           "NONNEG_TENSOR", "NONNEG_SCALAR", "MAX_CHARS", "MAX_DEPTH"]

#: longest infix text and deepest nesting :func:`parse` accepts by default
MAX_CHARS = 100_000
MAX_DEPTH = 200
_F32_MAX = float(np.finfo(np.float32).max)

#: Tensor primitives whose output is >= 0 or NaN (used by simplification and LaTeX)
NONNEG_TENSOR = frozenset({"abs", "square", "sqrt", "exp", "sigmoid", "relu", "softmax", "lt", "gt", "eq",
                           "gt0", "lt0", "heaviside"})
#: Scalar primitives whose output is >= 0 or NaN
NONNEG_SCALAR = frozenset({"abs_s", "mean_abs", "l1", "frob", "std", "numel", "hamming", "svd_ratio", "eig_ratio"})


# ============================================================================ the tree


@dataclass(frozen=True)
class Var:
    """One of the 22 statistics (a Tensor)."""

    name: str


@dataclass(frozen=True)
class Const:
    """A Scalar constant (programs compute with it in float32)."""

    value: float


@dataclass(frozen=True)
class Call:
    """A registered primitive applied to its arguments."""

    name: str
    args: tuple["Expr", ...]


Expr = Union[Var, Const, Call]


def type_of(e: Expr) -> type:
    """GP type (:class:`~eznas.primitives.Tensor` or :class:`~eznas.primitives.Scalar`) of ``e``."""
    if isinstance(e, Var):
        return Tensor
    if isinstance(e, Const):
        return Scalar
    return P.REGISTRY[e.name].ret


def nodes(e: Expr) -> Iterator[Expr]:
    """Every node of ``e`` in pre-order (a shared subtree once per use); no recursion."""
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, Call):
            stack.extend(reversed(node.args))


def size(e: Expr) -> int:
    """Number of nodes."""
    return sum(1 for _ in nodes(e))


def primitives_used(e: Expr) -> list[str]:
    """Names of the primitives in ``e``, each once, in first-use (pre-order) order."""
    return list(dict.fromkeys(n.name for n in nodes(e) if isinstance(n, Call)))


def _postorder(e: Expr) -> list[Expr]:
    """Nodes with every argument before its call, arguments left to right."""
    out = []
    stack = [e]
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, Call):
            stack.extend(node.args)
    out.reverse()
    return out


def from_prefix(tree: Sequence[Any]) -> Expr:
    """The expression of a prefix-ordered node list (a DEAP ``PrimitiveTree``: nodes with ``arity``,
    ``name`` and, for terminals, ``value``)."""
    stack: list[Expr] = []
    for node in reversed(tree):
        if node.arity == 0:
            value = node.value
            if isinstance(value, str):
                if value not in INDEX:
                    raise EznasError(f"unknown terminal {value!r}; valid: {', '.join(TENSOR_NAMES)}")
                stack.append(Var(value))
            else:
                stack.append(Const(float(value)))
            continue
        if len(stack) < node.arity:
            raise EznasError(f"malformed program: {node.name!r} has too few arguments")
        args = tuple(stack.pop() for _ in range(node.arity))
        stack.append(Call(node.name, args))
    if len(stack) != 1:
        raise EznasError(f"malformed program: {len(stack)} separate expressions")
    return stack[0]


def as_expr(obj: Any) -> Expr:
    """An :data:`Expr` from an Expr, infix text (any type) or a DEAP tree."""
    if isinstance(obj, (Var, Const, Call)):
        return obj
    if isinstance(obj, str):
        return parse(obj, object)
    return from_prefix(obj)


# ============================================================================ printing


def format_number(value: float) -> str:
    """Infix text of a constant: the shortest text that reads back as the same double."""
    return repr(float(value))


def format_constant(value: float) -> str:
    """Shortest text that reads back as the same float32 (for generated code and LaTeX)."""
    text = str(np.float32(value))
    if not re.fullmatch(r"-?(\d+\.\d*|\d+(\.\d*)?e[-+]?\d+)", text):
        text = repr(float(np.float32(value)))
    return text


def _texts(order: Sequence[Expr]) -> dict[int, str]:
    """Infix text of every subtree of a post-ordered node list, by node id."""
    texts: dict[int, str] = {}
    for node in order:
        if isinstance(node, Var):
            texts[id(node)] = node.name
        elif isinstance(node, Const):
            texts[id(node)] = format_number(node.value)
        else:
            texts[id(node)] = f"{node.name}({', '.join(texts[id(a)] for a in node.args)})"
    return texts


def to_infix(e: Expr) -> str:
    """Functional one-line form, e.g. ``div_s(mean_abs(mul(gW_D, W)), 2.0)``."""
    return _texts(_postorder(e))[id(e)]


# ============================================================================ parsing


class Signature(Protocol):
    """What the parser needs of a primitive (a :class:`~eznas.primitives.PrimitiveSpec` or a DEAP Primitive)."""

    ret: type
    args: Sequence[type]


def _finite_float32(value: float, text: str) -> str | None:
    return None if abs(value) <= _F32_MAX else f"constant {text} is not a finite float32"


@dataclass(frozen=True)
class Vocabulary:
    """What :func:`parse` accepts. The default (``None``) is every registered primitive and tensor
    and any finite float32 constant; :mod:`eznas.program` builds one per primitive set."""

    primitives: Mapping[str, Signature]
    tensors: Collection[str]
    #: error message for a constant (value, text as written), or None when it is allowed
    constant: Callable[[float, str], str | None] = _finite_float32
    max_chars: int | None = MAX_CHARS
    max_depth: int | None = MAX_DEPTH
    #: word used in error messages
    what: str = "expression"


def _default_vocabulary() -> Vocabulary:
    return Vocabulary(P.REGISTRY, INDEX)  # live views: primitives registered later count


_TOKEN = re.compile(r"\s*(?:(?P<num>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)"
                    r"|(?P<name>[A-Za-z_]\w*)|(?P<punct>[(),])|(?P<end>\Z))")

_Tok = tuple[str, str, int]  # kind (num, name, punct, end), text, position


@dataclass
class _Frame:
    """A call whose arguments are being read."""

    name: str
    types: Sequence[type]
    args: list[Expr]


class _Parser:
    def __init__(self, text: str, voc: Vocabulary) -> None:
        self.text, self.voc = text, voc
        self.toks = self._tokens()
        self.k = 0

    def error(self, pos: int, message: str) -> EznasError:
        shown = self.text if len(self.text) <= 200 else self.text[:200] + "..."
        return EznasError(f"cannot parse {self.voc.what} at column {pos + 1}: {message} in {shown!r}")

    def _tokens(self) -> list[_Tok]:
        out: list[_Tok] = []
        pos = 0
        while True:
            m = _TOKEN.match(self.text, pos)
            if m is None:
                at = len(self.text) - len(self.text[pos:].lstrip())
                raise self.error(at, f"unexpected character {self.text[at]!r}")
            kind = m.lastgroup or "end"
            out.append((kind, m.group(kind), m.start(kind)))
            if kind == "end":
                return out
            pos = m.end()

    def next(self) -> _Tok:
        tok = self.toks[self.k]
        self.k += 1
        return tok

    def expect(self, want: str) -> None:
        kind, tok, pos = self.next()
        if kind != "punct" or tok != want:
            raise self.error(pos, f"expected {want!r} but found {'the end' if kind == 'end' else repr(tok)}")

    def check_type(self, got: type, want: type, tok: str, pos: int) -> None:
        if not issubclass(got, want):
            raise self.error(pos, f"{tok!r} gives a {got.__name__} where a {want.__name__} is expected")

    def leaf(self, want: type) -> Expr | _Frame:
        """The next constant or tensor, or the frame of the call that starts here."""
        kind, tok, pos = self.next()
        voc = self.voc
        if kind == "num":
            value = float(tok)
            problem = voc.constant(value, tok)
            if problem:
                raise self.error(pos, problem)
            self.check_type(Scalar, want, tok, pos)
            return Const(value + 0.0)
        if kind == "name" and tok in voc.primitives:
            sig = voc.primitives[tok]
            self.check_type(sig.ret, want, tok, pos)
            self.expect("(")
            return _Frame(tok, tuple(sig.args), [])
        if kind == "name" and tok in voc.tensors:
            self.check_type(Tensor, want, tok, pos)
            return Var(tok)
        if kind == "name":
            close = difflib.get_close_matches(tok, [*voc.primitives, *voc.tensors], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise self.error(pos, f"unknown name {tok!r}{hint}")
        raise self.error(pos, f"expected a name or number but found {'the end' if kind == 'end' else repr(tok)}")

    def expression(self, ret: type) -> Expr:
        frames: list[_Frame] = []
        want = ret
        while True:
            if self.voc.max_depth is not None and len(frames) > self.voc.max_depth:
                raise self.error(self.toks[self.k][2], f"nesting deeper than {self.voc.max_depth}")
            got = self.leaf(want)
            if isinstance(got, _Frame):
                frames.append(got)
                want = got.types[0]
                continue
            node: Expr = got
            while frames:  # a subtree is complete: close the calls it finishes
                top = frames[-1]
                top.args.append(node)
                if len(top.args) < len(top.types):
                    self.expect(",")
                    want = top.types[len(top.args)]
                    break
                self.expect(")")
                frames.pop()
                node = Call(top.name, tuple(top.args))
            if not frames:
                kind, tok, pos = self.next()
                if kind != "end":
                    raise self.error(pos, f"expected the end but found {tok!r}")
                return node


def parse(text: str, ret: type = Scalar, vocabulary: Vocabulary | None = None) -> Expr:
    """Parse the functional infix form; ``ret`` is the required type of the whole (``object``: any).
    Errors raise :class:`EznasError` naming the column."""
    voc = vocabulary or _default_vocabulary()
    if not isinstance(text, str):
        raise EznasError(f"an expression must be text, got {type(text).__name__}")
    if voc.max_chars is not None and len(text) > voc.max_chars:
        raise EznasError(f"expression of {len(text)} characters is longer than the {voc.max_chars} allowed")
    return _Parser(text, voc).expression(ret)


# ============================================================================ evaluation


class _LRU:
    """Least-recently-used map of tensors under a byte budget (safe to share between threads:
    :class:`eznas.scoring.Scorer` runs programs on several)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, int(limit))
        self.data: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.bytes = self.hits = self.misses = 0
        self._lock = threading.Lock()

    @staticmethod
    def size(value: torch.Tensor) -> int:
        return value.element_size() * value.nelement()

    def get(self, key: str) -> torch.Tensor | None:
        with self._lock:
            value = self.data.get(key)
            if value is None:
                self.misses += 1
                return None
            self.hits += 1
            self.data.move_to_end(key)
            return value

    def put(self, key: str, value: torch.Tensor) -> None:
        size = self.size(value)
        if size > self.limit:
            return
        with self._lock:
            if key in self.data:
                return
            self.data[key] = value
            self.bytes += size
            while self.bytes > self.limit:
                _, old = self.data.popitem(last=False)
                self.bytes -= self.size(old)

    def clear(self) -> None:
        with self._lock:
            self.data.clear()
            self.bytes = self.hits = self.misses = 0


class Evaluator:
    """Evaluates expressions on a task's statistics ``values`` (rows, 22, R, s, s).

    ``evaluator(expr)`` returns float32 scores of shape (rows,) (NaN where a row is invalid; a
    Tensor-rooted expression returns its (rows, R, s, s) tensor). Results of subtrees are memoised
    across calls, keyed by their infix text, in an LRU cache of at most ``cache_bytes`` until
    :meth:`clear_cache`; replace the evaluator (or clear the cache) when ``values`` change. A
    subtree used twice in one expression is computed once. Numerical failures give NaN rows, never
    an exception; a primitive outside ``primitives`` (default: all registered) raises
    :class:`EznasError`.
    """

    def __init__(self, values: torch.Tensor, cache_bytes: int = 512 * 2**20,
                 primitives: Collection[str] | None = None, set_name: str = "") -> None:
        if not isinstance(values, torch.Tensor) or values.dim() != 5 or values.shape[1] != len(TENSOR_NAMES) \
                or values.shape[-1] != values.shape[-2]:
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise EznasError(f"statistics must be a tensor (rows, {len(TENSOR_NAMES)}, R, s, s), got {shape}")
        self.values = values
        self.rows = int(values.shape[0])
        self.primitives = primitives
        self.set_name = set_name
        # one-number-per-row results are small and reused most: they get their own eighth of
        # the budget, so a stream of large intermediate tensors cannot evict them
        self._scalars = _LRU(cache_bytes // 8)
        self._tensors = _LRU(cache_bytes - cache_bytes // 8)
        self._terms: dict[str, torch.Tensor] = {}
        self._consts: dict[float, torch.Tensor] = {}
        self.errors = 0
        self.last_error = ""

    # -- public

    def __call__(self, e: Expr | str) -> torch.Tensor:
        expr = parse(e, object) if isinstance(e, str) else e
        order = _postorder(expr)
        self._check_known(order)
        texts = _texts(order)
        try:
            with torch.no_grad():
                out = self._run(expr, texts, Counter(texts[id(n)] for n in order if isinstance(n, Call)))
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

    def _check_known(self, order: Sequence[Expr]) -> None:
        for node in order:
            if isinstance(node, Call):
                if node.name not in P.REGISTRY:
                    raise EznasError(f"unknown primitive {node.name!r}")
                if self.primitives is not None and node.name not in self.primitives:
                    raise EznasError(f"primitive {node.name!r} is not in primitive set {self.set_name!r}")
            elif isinstance(node, Var) and node.name not in INDEX:
                raise EznasError(f"unknown terminal {node.name!r}; valid: {', '.join(TENSOR_NAMES)}")

    def _memo(self, node: Call) -> _LRU:
        return self._scalars if P.REGISTRY[node.name].ret is Scalar else self._tensors

    def _leaf(self, node: Var | Const) -> torch.Tensor:
        if isinstance(node, Var):
            return self.terminal(node.name)
        if node.value not in self._consts:
            self._consts[node.value] = torch.full((self.rows,), node.value, dtype=torch.float32,
                                                  device=self.values.device)
        return self._consts[node.value]

    def _run(self, root: Expr, texts: dict[int, str], uses: Counter[str]) -> torch.Tensor:
        """Post-order walk that skips every subtree whose result is memoised."""
        shared: dict[str, torch.Tensor] = {}  # subtrees used more than once in this expression
        todo: list[tuple[Expr, bool]] = [(root, False)]
        done: list[torch.Tensor] = []
        while todo:
            node, expanded = todo.pop()
            if not isinstance(node, Call):
                done.append(self._leaf(node))
                continue
            text = texts[id(node)]
            if not expanded:
                hit = shared.get(text)
                if hit is None:
                    hit = self._memo(node).get(text)
                if hit is not None:
                    done.append(hit)
                    continue
                todo.append((node, True))
                todo.extend((a, False) for a in reversed(node.args))
                continue
            arity = len(node.args)
            args = done[len(done) - arity:]
            del done[len(done) - arity:]
            value = P.REGISTRY[node.name].fn(*args)
            self._memo(node).put(text, value)
            if uses[text] > 1:
                shared[text] = value
            done.append(value)
        return done[0]


def evaluate(e: Expr | str, values: torch.Tensor) -> torch.Tensor:
    """Per-row result of ``e`` on statistics ``values`` (rows, 22, R, s, s), without a memo across
    calls (see :class:`Evaluator`)."""
    return Evaluator(values, cache_bytes=0)(e)
