"""LaTeX of expressions: readable math for reports and exported proxies.

Kept apart from simplification: printing never changes what a program computes.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eznas.expression import NONNEG_TENSOR, Call, Const, Expr, Var, as_expr, format_constant

__all__ = ["to_latex", "latex_var"]

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

def _infix(symbol: str, left: int, right: int, level: int) -> Callable[[Frag, Frag], Frag]:
    """``a symbol b`` at precedence ``level``, parenthesising operands below ``left`` / ``right``."""
    return lambda a, b: (f"{_paren(a, left)} {symbol} {_paren(b, right)}", level)


def _iverson(symbol: str) -> Callable[[Frag, Frag], Frag]:
    return lambda a, b: (rf"\left[{a[0]} {symbol} {b[0]}\right]", _ATOM)


def _frac(a: Frag, b: Frag) -> Frag:
    return rf"\frac{{{a[0]}}}{{{b[0]}}}", _ATOM


_BINARY: dict[str, Callable[[Frag, Frag], Frag]] = {
    "add": _infix("+", _SUM, _PROD, _SUM),
    "add_s": _infix("+", _SUM, _PROD, _SUM),
    "sub": _infix("-", _SUM, _PROD, _SUM),
    "sub_s": _infix("-", _SUM, _PROD, _SUM),
    "mul": _infix(r"\odot", _PROD, _ATOM, _PROD),
    "mul_s": _infix(r"\cdot", _PROD, _ATOM, _PROD),
    "div": _frac,
    "div_s": _frac,
    "matmul": lambda a, b: (rf"{_paren(a, _POW)}\,{_paren(b, _POW)}", _PROD),
    "lt": _iverson("<"),
    "gt": _iverson(">"),
    "eq": _iverson("="),
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
