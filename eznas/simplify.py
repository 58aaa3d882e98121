"""Expressions of evolved programs: parsing, provably-equivalent simplification, LaTeX, evaluation.

An :data:`Expr` is a small immutable tree, independent of DEAP and of any primitive set:
:class:`Var` (one of the 22 tensors, type Tensor), :class:`Const` (a Scalar constant) and
:class:`Call` (a primitive of :data:`eznas.primitives.REGISTRY`). :func:`parse` reads the infix
form written by :func:`eznas.program.to_infix` (no ``eval``; every name must be a registered
primitive or a tensor name, and argument types are checked).

Simplification (:func:`simplify`)
---------------------------------
Every rewrite below is an identity of the primitives *as implemented*, not only of the
mathematics, so a simplified program gives the same per-unit scores as the raw one (NaN where
the raw one gives NaN); only the sign of a zero may change, which no primitive distinguishes
from +0 in its result. Two facts make that possible: (1) every primitive returns finite values
or NaN (never +-inf), so every Scalar, and every Tensor that is not a raw statistic, is finite or
NaN; (2) IEEE arithmetic is exact for ``-(-x)``, ``x * 1``, ``x / 1``, ``x + 0``, ``|-x|`` and
``a + (-b) == a - b``. The rules:

- constant folding: a primitive whose arguments are all constants is replaced by its value,
  computed by the primitive itself in float32 (skipped when the value is NaN);
- double negation ``neg_s(neg_s(x)) -> x``; ``neg_s(sub_s(a, b)) -> sub_s(b, a)``;
  ``add_s(a, neg_s(b)) -> sub_s(a, b)``, ``add_s(neg_s(a), b) -> sub_s(b, a)``,
  ``sub_s(a, neg_s(b)) -> add_s(a, b)``, ``mul_s / div_s(neg_s(a), neg_s(b))`` drop both negations;
- identities: ``mul_s(x, 1) -> x``, ``div_s(x, 1) -> x``, ``add_s(x, 0) -> x``,
  ``sub_s(x, 0) -> x``, ``sub_s(0, x) -> neg_s(x)``, ``mul_s(x, -1)``, ``div_s(x, -1) -> neg_s(x)``;
- absolute values: ``abs(y) -> y`` and ``relu(y) -> y`` for a Tensor primitive ``y`` that is
  never negative (abs, square, sqrt, exp, sigmoid, relu, softmax, the 0/1 comparisons,
  heaviside); ``abs_s(y) -> y`` for a never-negative Scalar primitive (abs_s, mean_abs, l1,
  frob, std, numel, hamming, svd_ratio, eig_ratio); ``abs_s(abs_s(x))``, ``abs_s(neg_s(x))``,
  ``log_s(abs_s(x))``, ``log_s(neg_s(x))`` drop the inner op; ``square``, ``sqrt``,
  ``abslog``, ``mean_abs``, ``l1`` of ``abs(x)`` drop the ``abs`` (they take |x| or x*x
  themselves, and ``abs`` of an infinite statistic is NaN exactly where they give NaN);
- ``transpose(transpose(x)) -> x`` when ``x`` is not a raw statistic (a raw statistic may hold
  +-inf, which ``transpose`` turns into NaN).

Every rule removes at least one node, so simplification terminates.

``assume_finite=True`` adds rules that hold only when the values they touch are finite (NaN - NaN
is NaN, not 0): ``sub_s(x, x) -> 0``, ``mul_s(x, 0) -> 0``, ``div_s(0, x) -> 0``, and ``mean``,
``sum``, ``mean_abs``, ``l1``, ``frob``, ``std``, ``numel`` of ``sub(x, x)`` and ``hamming(x, x)``
-> 0. ``eznas export`` never uses them, so an exported proxy equals the evolved program on every
input, including those where it gives NaN.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch

from eznas import primitives as P
from eznas.errors import EznasError
from eznas.primitives import Scalar, Tensor
from eznas.tensors import INDEX, TENSOR_NAMES

__all__ = ["Var", "Const", "Call", "Expr", "parse", "as_expr", "to_infix", "to_latex", "simplify",
           "evaluate", "primitives_used", "type_of", "size", "format_constant"]

#: longest infix text :func:`parse` accepts, and deepest nesting
MAX_CHARS = 100_000
MAX_DEPTH = 200
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Var:
    """One of the 22 statistics (a Tensor)."""

    name: str


@dataclass(frozen=True)
class Const:
    """A Scalar constant."""

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


def size(e: Expr) -> int:
    """Number of nodes."""
    return 1 + sum(size(a) for a in e.args) if isinstance(e, Call) else 1


def primitives_used(e: Expr) -> list[str]:
    """Names of the primitives in ``e``, each once, in first-use (pre-order) order."""
    out: dict[str, None] = {}

    def walk(node: Expr) -> None:
        if isinstance(node, Call):
            out.setdefault(node.name)
            for a in node.args:
                walk(a)

    walk(e)
    return list(out)


# ============================================================================ text


def _f32(value: float) -> float:
    return float(np.float32(value))


def format_constant(value: float) -> str:
    """Shortest text that parses back to the same float32 (what programs compute with)."""
    text = str(np.float32(value))
    if not re.fullmatch(r"-?(\d+\.\d*|\d+(\.\d*)?e[-+]?\d+)", text):
        text = repr(_f32(value))
    return text


def to_infix(e: Expr) -> str:
    """Functional one-line form, e.g. ``div_s(mean_abs(mul(gW_D, W)), 2.0)``."""
    if isinstance(e, Var):
        return e.name
    if isinstance(e, Const):
        return format_constant(e.value)
    return f"{e.name}({', '.join(to_infix(a) for a in e.args)})"


_TOKEN = re.compile(r"\s*(?:(?P<num>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)"
                    r"|(?P<name>[A-Za-z_]\w*)|(?P<punct>[(),])|(?P<end>\Z))")


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while True:
        m = _TOKEN.match(text, pos)
        if m is None:
            at = len(text) - len(text[pos:].lstrip())
            raise _error(text, at, f"unexpected character {text[at]!r}")
        kind = m.lastgroup or "end"
        out.append((kind, m.group(kind), m.start(kind)))
        if kind == "end":
            return out
        pos = m.end()


def _error(text: str, pos: int, message: str) -> EznasError:
    shown = text if len(text) <= 200 else text[:200] + "..."
    return EznasError(f"cannot parse expression at column {pos + 1}: {message} in {shown!r}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.k = 0

    def expect(self, punct: str) -> None:
        kind, tok, pos = self.toks[self.k]
        if kind != "punct" or tok != punct:
            raise _error(self.text, pos, f"expected {punct!r} but found {'the end' if kind == 'end' else repr(tok)}")
        self.k += 1

    def expr(self, want: type, depth: int) -> Expr:
        kind, tok, pos = self.toks[self.k]
        if depth > MAX_DEPTH:
            raise _error(self.text, pos, f"nesting deeper than {MAX_DEPTH}")
        self.k += 1
        if kind == "num":
            node: Expr = self.constant(tok, pos)
        elif kind == "name" and tok in P.REGISTRY:
            spec = P.REGISTRY[tok]
            self.expect("(")
            args = []
            for i, arg_type in enumerate(spec.args):
                if i:
                    self.expect(",")
                args.append(self.expr(arg_type, depth + 1))
            self.expect(")")
            node = Call(tok, tuple(args))
        elif kind == "name" and tok in INDEX:
            node = Var(tok)
        elif kind == "name":
            close = difflib.get_close_matches(tok, list(P.REGISTRY) + list(TENSOR_NAMES), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise _error(self.text, pos, f"unknown name {tok!r}{hint}")
        else:
            raise _error(self.text, pos, f"expected a name or number but found {'the end' if kind == 'end' else repr(tok)}")
        got = type_of(node)
        if want is not object and got is not want:
            raise _error(self.text, pos, f"{tok!r} gives a {got.__name__} where a {want.__name__} is expected")
        return node

    def constant(self, tok: str, pos: int) -> Const:
        value = float(tok)
        if not abs(value) <= _F32_MAX:
            raise _error(self.text, pos, f"constant {tok} is not a finite float32")
        return Const(value + 0.0)


def parse(text: str, ret: type = Scalar) -> Expr:
    """Parse a functional infix expression; ``ret`` is the required type (``object``: any)."""
    if not isinstance(text, str):
        raise EznasError(f"an expression must be text, got {type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise EznasError(f"expression of {len(text)} characters is longer than the {MAX_CHARS} allowed")
    p = _Parser(text)
    node = p.expr(ret, 0)
    kind, tok, pos = p.toks[p.k]
    if kind != "end":
        raise _error(text, pos, f"expected the end but found {tok!r}")
    return node


def as_expr(obj: Any) -> Expr:
    """An :data:`Expr` from an Expr, infix text, or a DEAP tree (anything :func:`eznas.program.to_infix` prints)."""
    if isinstance(obj, (Var, Const, Call)):
        return obj
    if isinstance(obj, str):
        return parse(obj, object)
    from eznas.program import to_infix as tree_infix

    return parse(tree_infix(obj), object)


# ============================================================================ simplification

#: Tensor primitives whose output is >= 0 or NaN
NONNEG_TENSOR = frozenset({"abs", "square", "sqrt", "exp", "sigmoid", "relu", "softmax", "lt", "gt", "eq",
                           "gt0", "lt0", "heaviside"})
#: Scalar primitives whose output is >= 0 or NaN
NONNEG_SCALAR = frozenset({"abs_s", "mean_abs", "l1", "frob", "std", "numel", "hamming", "svd_ratio", "eig_ratio"})
#: reductions that already take |x| (or x*x) of their argument, so an inner abs changes nothing
_ABS_INSIDE = frozenset({"square", "sqrt", "abslog", "mean_abs", "l1"})
#: reductions that give 0 for an all-zero tensor
_ZERO_OF_ZERO = frozenset({"mean", "sum", "mean_abs", "l1", "frob", "std", "numel"})


def _is(e: Expr, name: str) -> bool:
    return isinstance(e, Call) and e.name == name


def _const(e: Expr, value: float) -> bool:
    return isinstance(e, Const) and _f32(e.value) == value


def _fold(node: Call) -> Expr | None:
    if not node.args or not all(isinstance(a, Const) for a in node.args):
        return None
    fn = P.REGISTRY[node.name].fn
    with torch.no_grad():
        out = fn(*[torch.full((1,), a.value, dtype=torch.float32) for a in node.args])  # type: ignore[union-attr]
    value = float(out.reshape(-1)[0])
    return Const(value + 0.0) if np.isfinite(value) else None


def _scalar_rules(node: Call) -> Expr | None:
    n, a = node.name, node.args
    if n == "neg_s":
        if _is(a[0], "neg_s"):
            return a[0].args[0]  # type: ignore[union-attr]
        if _is(a[0], "sub_s"):
            x, y = a[0].args  # type: ignore[union-attr]
            return Call("sub_s", (y, x))
    if n == "mul_s":
        if _const(a[1], 1.0):
            return a[0]
        if _const(a[0], 1.0):
            return a[1]
        if _const(a[1], -1.0):
            return Call("neg_s", (a[0],))
        if _const(a[0], -1.0):
            return Call("neg_s", (a[1],))
    if n in ("mul_s", "div_s") and _is(a[0], "neg_s") and _is(a[1], "neg_s"):
        return Call(n, (a[0].args[0], a[1].args[0]))  # type: ignore[union-attr]
    if n == "div_s":
        if _const(a[1], 1.0):
            return a[0]
        if _const(a[1], -1.0):
            return Call("neg_s", (a[0],))
    if n == "add_s":
        if _const(a[1], 0.0):
            return a[0]
        if _const(a[0], 0.0):
            return a[1]
        if _is(a[1], "neg_s"):
            return Call("sub_s", (a[0], a[1].args[0]))  # type: ignore[union-attr]
        if _is(a[0], "neg_s"):
            return Call("sub_s", (a[1], a[0].args[0]))  # type: ignore[union-attr]
    if n == "sub_s":
        if _const(a[1], 0.0):
            return a[0]
        if _const(a[0], 0.0):
            return Call("neg_s", (a[1],))
        if _is(a[1], "neg_s"):
            return Call("add_s", (a[0], a[1].args[0]))  # type: ignore[union-attr]
    if n == "abs_s":
        if isinstance(a[0], Call) and a[0].name in NONNEG_SCALAR:
            return a[0]
        if _is(a[0], "neg_s"):
            return Call("abs_s", a[0].args)  # type: ignore[union-attr]
    if n == "log_s" and (_is(a[0], "abs_s") or _is(a[0], "neg_s")):
        return Call("log_s", a[0].args)  # type: ignore[union-attr]
    return None


def _tensor_rules(node: Call) -> Expr | None:
    n, a = node.name, node.args
    if n in ("abs", "relu") and isinstance(a[0], Call) and a[0].name in NONNEG_TENSOR:
        return a[0]
    if n in _ABS_INSIDE and _is(a[0], "abs"):
        return Call(n, a[0].args)  # type: ignore[union-attr]
    if n == "transpose" and _is(a[0], "transpose") and isinstance(a[0].args[0], Call):  # type: ignore[union-attr]
        return a[0].args[0]  # type: ignore[union-attr]
    return None


def _finite_rules(node: Call) -> Expr | None:
    n, a = node.name, node.args
    zero = Const(0.0)
    if n == "sub_s" and a[0] == a[1]:
        return zero
    if n == "mul_s" and (_const(a[0], 0.0) or _const(a[1], 0.0)):
        return zero
    if n == "div_s" and _const(a[0], 0.0):
        return zero
    if n in _ZERO_OF_ZERO and _is(a[0], "sub") and a[0].args[0] == a[0].args[1]:  # type: ignore[union-attr]
        return zero
    if n == "hamming" and a[0] == a[1]:
        return zero
    return None


def _rewrite(node: Call, assume_finite: bool) -> Expr | None:
    folded = _fold(node)
    if folded is not None:
        return folded
    if assume_finite:
        out = _finite_rules(node)
        if out is not None:
            return out
    return _scalar_rules(node) or _tensor_rules(node)


def simplify(e: Any, assume_finite: bool = False) -> Expr:
    """``e`` (Expr, infix text or DEAP tree) with the rewrites of the module docstring applied
    bottom-up until none applies."""
    memo: dict[Expr, Expr] = {}

    def walk(node: Expr) -> Expr:
        if not isinstance(node, Call):
            return node
        if node in memo:
            return memo[node]
        out: Expr = Call(node.name, tuple(walk(a) for a in node.args))
        while isinstance(out, Call):
            new = _rewrite(out, assume_finite)
            if new is None:
                break
            out = new
        memo[node] = out
        return out

    return walk(as_expr(e))


# ============================================================================ evaluation


def evaluate(e: Expr, values: torch.Tensor) -> torch.Tensor:
    """Per-row result of ``e`` on statistics ``values`` (rows, 22, R, s, s), computed with the
    registered primitives exactly as :class:`eznas.program.Evaluator` does (shared subtrees once;
    a numerical exception gives NaN rows)."""
    rows = int(values.shape[0])
    memo: dict[Expr, torch.Tensor] = {}

    def run(node: Expr) -> torch.Tensor:
        if node in memo:
            return memo[node]
        if isinstance(node, Var):
            out = values[:, INDEX[node.name]]
            if out.dtype != torch.float32:
                out = out.float()
        elif isinstance(node, Const):
            out = torch.full((rows,), node.value, dtype=torch.float32, device=values.device)
        else:
            out = P.REGISTRY[node.name].fn(*[run(a) for a in node.args])
        memo[node] = out
        return out

    try:
        with torch.no_grad():
            out = run(e)
    except Exception:  # noqa: BLE001 - a numerical failure means NaN scores, as in the engine
        return torch.full((rows,), float("nan"), device=values.device)
    return out.expand(rows) if out.dim() == 0 else out


# ============================================================================ LaTeX

_SUM, _PROD, _POW, _ATOM = 1, 2, 3, 4  # precedence levels of LaTeX fragments (_POW: has a superscript)
Frag = tuple[str, int]


def _paren(f: Frag, need: int) -> str:
    return f[0] if f[1] >= need else rf"\left({f[0]}\right)"


def _call(name: str, *args: Frag) -> Frag:
    return rf"{name}\left({', '.join(a[0] for a in args)}\right)", _ATOM


def _bars(f: Frag) -> str:
    return rf"\left\lvert {f[0]} \right\rvert"


def latex_var(name: str) -> str:
    """LaTeX of a statistic: ``W``, ``X_{D}``, and ``\\nabla X_{D}`` for the gradient ``gX_D``."""
    if name == "W":
        return "W"
    role, inp = name.split("_")
    grad = role.startswith("g")
    return (r"\nabla " if grad else "") + rf"{role.lstrip('g')}_{{{inp}}}"


def _latex_const(value: float) -> Frag:
    text = format_constant(value)
    if "e" in text:
        mant, exp = text.split("e")
        text = rf"{mant} \cdot 10^{{{int(exp)}}}"
    return text, (_SUM if value < 0 else _PROD if "cdot" in text else _ATOM)


_UNARY: dict[str, Callable[[Frag], Frag]] = {
    "inv": lambda x: (rf"\frac{{1}}{{{x[0]}}}", _ATOM),
    "abs": lambda x: (_bars(x), _ATOM),
    "abs_s": lambda x: (_bars(x), _ATOM),
    "square": lambda x: (rf"{_paren(x, _ATOM)}^{{2}}", _POW),
    "log": lambda x: _call(r"\log", x),
    "abslog": lambda x: (rf"\log{_bars(x)}", _ATOM),
    "log_s": lambda x: (rf"\log{_bars(x)}", _ATOM),
    "exp": lambda x: (rf"e^{{{x[0]}}}", _POW),
    "sigmoid": lambda x: _call(r"\sigma", x),
    "relu": lambda x: _call(r"\operatorname{relu}", x),
    "sign": lambda x: _call(r"\operatorname{sign}", x),
    "heaviside": lambda x: _call("H", x),
    "gt0": lambda x: (rf"\left[{x[0]} > 0\right]", _ATOM),
    "lt0": lambda x: (rf"\left[{x[0]} < 0\right]", _ATOM),
    "normalize": lambda x: _call(r"\operatorname{zscore}", x),
    "softmax": lambda x: _call(r"\operatorname{softmax}", x),
    "log_softmax": lambda x: _call(r"\log\operatorname{softmax}", x),
    "transpose": lambda x: (rf"{_paren(x, _ATOM)}^{{\top}}", _POW),
    "mean": lambda x: (rf"\overline{{{x[0]}}}", _ATOM),
    "sum": lambda x: _call(r"\sum", x),
    "mean_abs": lambda x: (rf"\overline{{{_bars(x)}}}", _ATOM),
    "std": lambda x: _call(r"\operatorname{std}", x),
    "l1": lambda x: (rf"\left\lVert {x[0]} \right\rVert_{{1}}", _ATOM),
    "frob": lambda x: (rf"\left\lVert {x[0]} \right\rVert_{{F}}", _ATOM),
    "numel": lambda x: _call(r"\operatorname{nnz}", x),
    "slogdet": lambda x: (rf"\log\left\lvert \det {_paren(x, _POW)} \right\rvert", _ATOM),
    "eig_ratio": lambda x: _call(r"\kappa_{\lambda}", x),
    "svd_ratio": lambda x: _call(r"\kappa", x),
    "neg_s": lambda x: (f"-{_paren(x, _PROD)}", _SUM),
}

_BINARY: dict[str, Callable[[Frag, Frag], Frag]] = {
    "add": lambda a, b: (f"{_paren(a, _SUM)} + {_paren(b, _PROD)}", _SUM),
    "add_s": lambda a, b: (f"{_paren(a, _SUM)} + {_paren(b, _PROD)}", _SUM),
    "sub": lambda a, b: (f"{_paren(a, _SUM)} - {_paren(b, _PROD)}", _SUM),
    "sub_s": lambda a, b: (f"{_paren(a, _SUM)} - {_paren(b, _PROD)}", _SUM),
    "mul": lambda a, b: (rf"{_paren(a, _PROD)} \odot {_paren(b, _ATOM)}", _PROD),
    "mul_s": lambda a, b: (rf"{_paren(a, _PROD)} \cdot {_paren(b, _ATOM)}", _PROD),
    "div": lambda a, b: (rf"\frac{{{a[0]}}}{{{b[0]}}}", _ATOM),
    "div_s": lambda a, b: (rf"\frac{{{a[0]}}}{{{b[0]}}}", _ATOM),
    "matmul": lambda a, b: (rf"{_paren(a, _POW)}\,{_paren(b, _POW)}", _PROD),
    "lt": lambda a, b: (rf"\left[{a[0]} < {b[0]}\right]", _ATOM),
    "gt": lambda a, b: (rf"\left[{a[0]} > {b[0]}\right]", _ATOM),
    "eq": lambda a, b: (rf"\left[{a[0]} = {b[0]}\right]", _ATOM),
    "cosine": lambda a, b: _call(r"\cos", a, b),
    "kl": lambda a, b: (rf"D_{{\mathrm{{KL}}}}\left({a[0]} \,\middle\|\, {b[0]}\right)", _ATOM),
    "hamming": lambda a, b: _call(r"d_{H}", a, b),
}


def _sqrt(x: Frag, arg: Expr) -> Frag:
    nonneg = isinstance(arg, Call) and arg.name in NONNEG_TENSOR
    return rf"\sqrt{{{x[0] if nonneg else _bars(x)}}}", _ATOM


def _latex(e: Expr) -> Frag:
    if isinstance(e, Var):
        return latex_var(e.name), (_POW if e.name.startswith("g") else _ATOM)
    if isinstance(e, Const):
        return _latex_const(e.value)
    args = [_latex(a) for a in e.args]
    if e.name == "sqrt":
        return _sqrt(args[0], e.args[0])
    if len(args) == 1 and e.name in _UNARY:
        return _UNARY[e.name](args[0])
    if len(args) == 2 and e.name in _BINARY:
        return _BINARY[e.name](*args)
    return _call(rf"\operatorname{{{e.name.replace('_', chr(92) + '_')}}}", *args)


def to_latex(e: Any) -> str:
    """Readable LaTeX math (no surrounding ``$``) of an Expr, infix text or DEAP tree.

    Notation: ``\\overline{x}`` mean over the sketch, ``\\lvert x\\rvert`` absolute value,
    ``\\odot`` element-wise product, ``\\cdot`` product of scalars, juxtaposition the block-wise
    matrix product, ``[a < b]`` Iverson brackets, ``\\nabla X_{D}`` the gradient of the loss with
    respect to ``X`` on input D. Divisions are the protected ones of :mod:`eznas.primitives`.
    """
    return _latex(as_expr(e))[0]
