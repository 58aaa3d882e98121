"""Hybrid expressions: formulas over per-network scalar *terminals* (hand-made proxy scores, params,
flops, an evolved program's score ...), their text form, a safe parser and a vectorised evaluator.

An expression is text such as ``add(slog(meco), mul(0.5, az_trainability))``: calls of the
primitives below, terminal names (identifiers) and numeric constants. :func:`parse` reads it with the
project's one expression parser (:func:`eznas.expression.parse` with the hybrid vocabulary; no
``eval``/``exec``), :class:`Expression` scores nets from a mapping ``{terminal: value or array of
values}``.

Terminals are pre-transformed: every terminal value ``x`` is replaced by the signed log
``slog(x) = sign(x) * log1p(|x|)`` before the expression sees it (:func:`transform`), because the raw
scales differ by a factor of 10^6 (params in millions vs meco in tens of thousands) and the
arithmetic primitives would otherwise be dominated by the largest terminal. The transform is
monotone, so a terminal alone ranks nets exactly as the raw score does. A non-finite terminal value
(a proxy that failed on a net) propagates to a non-finite score, ranked below every finite one.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from eznas import expression
from eznas.errors import EznasError
from eznas.expression import Const, Expr, Var, Vocabulary

Array = np.ndarray
MAX_TEXT = 4000  # characters: a readable hybrid is far shorter
MAX_DEPTH = 32


def slog(x: Array | float) -> Array:
    """Signed log: sign(x) * log1p(|x|) (monotone, odd, ~x near 0, ~log|x| for large |x|)."""
    a = np.asarray(x, dtype=np.float64)
    return np.sign(a) * np.log1p(np.abs(a))


def _pdiv(a: Array, b: Array) -> Array:
    """Protected division: a / b, 1 where |b| < 1e-12."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    out = np.ones(a.shape)
    ok = np.abs(b) >= 1e-12
    np.divide(a, b, out=out, where=ok)
    out[np.isnan(a) | np.isnan(b)] = np.nan
    return out


#: name -> (arity, vectorised function); the primitive set of the hybrid GP
PRIMITIVES: dict[str, tuple[int, Callable[..., Array]]] = {
    "add": (2, np.add),
    "sub": (2, np.subtract),
    "mul": (2, np.multiply),
    "div": (2, _pdiv),
    "neg": (1, np.negative),
    "max": (2, np.maximum),
    "min": (2, np.minimum),
    "slog": (1, slog),
    "sq": (1, np.square),
}
#: the ephemeral constants the GP may draw
CONSTANTS: tuple[float, ...] = (-1.0, -0.5, 0.5, 1.0, 2.0, 3.0)

Token = tuple[str, str | float, int]  # ("prim", name, arity) | ("term", name, 0) | ("const", value, 0)


def transform(values: Array | float) -> Array:
    """The pre-transform every terminal gets (:func:`slog`); non-finite values stay non-finite."""
    return slog(values)


def evaluate_tokens(tokens: Sequence[Token], columns: Mapping[str, Array], n: int) -> Array:
    """Evaluate a prefix token list on ``columns`` (already transformed), ``n`` nets -> (n,) scores."""
    stack: list[Array | float] = []
    with np.errstate(all="ignore"):
        for kind, value, arity in reversed(tokens):
            if kind == "prim":
                fn = PRIMITIVES[str(value)][1]
                args = [stack.pop() for _ in range(arity)]
                stack.append(fn(*args))
            elif kind == "term":
                stack.append(columns[str(value)])
            else:
                stack.append(float(value))
    out = np.asarray(stack.pop(), dtype=np.float64)
    return np.broadcast_to(out, (n,)).copy() if out.shape != (n,) else out


@dataclass(frozen=True)
class _Signature:
    """A hybrid primitive as :mod:`eznas.expression`'s parser sees it: untyped arguments."""

    ret: type
    args: tuple[type, ...]


class _AnyIdentifier(Collection[str]):
    """Terminal names when none are given: every identifier (the parser only asks ``in``)."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _finite(value: float, text: str) -> str | None:
    return None if math.isfinite(value) else f"constant {text} is not finite"


def _vocabulary(terminals: Sequence[str] | None) -> Vocabulary:
    """The hybrid grammar for :func:`eznas.expression.parse` (the project's one parser): the
    primitives below with untyped arguments, ``terminals`` as the names, any finite constant."""
    prims = {name: _Signature(object, (object,) * arity) for name, (arity, _) in PRIMITIVES.items()}
    names: Collection[str] = _AnyIdentifier() if terminals is None else tuple(terminals)
    return Vocabulary(prims, names, constant=_finite, max_chars=MAX_TEXT, max_depth=MAX_DEPTH,
                      what="hybrid expression")


def _prefix(e: Expr) -> list[Token]:
    """A parsed tree as the prefix token list the evaluator runs."""
    if isinstance(e, Const):
        return [("const", float(e.value), 0)]
    if isinstance(e, Var):
        return [("term", e.name, 0)]
    out: list[Token] = [("prim", e.name, len(e.args))]
    for a in e.args:
        out += _prefix(a)
    return out


def format_tokens(tokens: Sequence[Token]) -> str:
    """Text of a prefix token list: ``name(arg, arg)``, terminal names, constants as repr(float)."""
    def rec(i: int) -> tuple[str, int]:
        kind, value, arity = tokens[i]
        if kind != "prim":
            return (str(value) if kind == "term" else repr(float(value))), i + 1
        args, j = [], i + 1
        for _ in range(arity):
            s, j = rec(j)
            args.append(s)
        return f"{value}({', '.join(args)})", j

    text, end = rec(0)
    if end != len(tokens):
        raise EznasError("hybrid expression: malformed token list")
    return text


@dataclass(frozen=True)
class Expression:
    """A parsed hybrid expression. ``terminals``: the terminal names it uses, in first-use order."""

    tokens: tuple[Token, ...]

    @property
    def terminals(self) -> list[str]:
        return list(dict.fromkeys(str(v) for k, v, _ in self.tokens if k == "term"))

    @property
    def size(self) -> int:
        return len(self.tokens)

    def __str__(self) -> str:
        return format_tokens(self.tokens)

    def score_columns(self, columns: Mapping[str, Array], n: int) -> Array:
        """Scores of ``n`` nets from already-transformed terminal columns."""
        return evaluate_tokens(self.tokens, columns, n)

    def __call__(self, values: Mapping[str, float | Sequence[float] | Array]) -> Array | float:
        """Score nets from RAW terminal values (one float each, or one array per terminal): the
        values are transformed by :func:`transform` first. One float in, one float out."""
        missing = [t for t in self.terminals if t not in values]
        if missing:
            raise EznasError(f"hybrid expression needs terminal(s) {', '.join(missing)}")
        cols = {t: transform(np.asarray(values[t], dtype=np.float64)) for t in self.terminals}
        shapes = {c.shape for c in cols.values()}
        if len(shapes) > 1:
            raise EznasError("hybrid expression: terminal value arrays differ in length")
        shape = shapes.pop() if shapes else ()
        n = int(np.prod(shape)) if shape else 1
        out = evaluate_tokens(self.tokens, {t: c.reshape(n) for t, c in cols.items()}, n)
        return float(out[0]) if shape == () else out.reshape(shape)


def parse(text: str, terminals: Sequence[str] | None = None) -> Expression:
    """Parse ``text`` (see the module docstring); ``terminals``: the allowed terminal names (any
    identifier when None). Anything else is one EznasError line."""
    if not isinstance(text, str) or not text.strip():
        raise EznasError("hybrid expression is empty")
    return Expression(tuple(_prefix(expression.parse(text, object, _vocabulary(terminals)))))


__all__ = ["PRIMITIVES", "CONSTANTS", "Expression", "parse", "slog", "transform", "evaluate_tokens",
           "format_tokens"]
