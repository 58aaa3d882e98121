"""Provably-equivalent simplification of expressions (:mod:`eznas.expression`).

This module holds only rewrite rules; the tree, parser, printer and evaluator live in
:mod:`eznas.expression` and LaTeX in :mod:`eznas.latex` (both re-exported here for
:mod:`eznas.export`).

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
  computed by the primitive itself in float32 (skipped when the value is NaN) and kept as the
  shortest decimal with that float32 value;
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

from typing import Any

import numpy as np
import torch

from eznas import primitives as P
from eznas.expression import (MAX_CHARS, MAX_DEPTH, NONNEG_SCALAR, NONNEG_TENSOR, Call, Const, Expr, Var,
                              as_expr, evaluate, format_constant, parse, primitives_used, size, to_infix, type_of)
from eznas.latex import latex_var, to_latex

__all__ = ["Var", "Const", "Call", "Expr", "parse", "as_expr", "to_infix", "to_latex", "simplify",
           "evaluate", "primitives_used", "type_of", "size", "format_constant", "latex_var", "NONNEG_TENSOR",
           "NONNEG_SCALAR", "MAX_CHARS", "MAX_DEPTH"]

#: reductions that already take |x| (or x*x) of their argument, so an inner abs changes nothing
_ABS_INSIDE = frozenset({"square", "sqrt", "abslog", "mean_abs", "l1"})
#: reductions that give 0 for an all-zero tensor
_ZERO_OF_ZERO = frozenset({"mean", "sum", "mean_abs", "l1", "frob", "std", "numel"})


def _is(e: Expr, name: str) -> bool:
    return isinstance(e, Call) and e.name == name


def _f32(value: float) -> float:
    return float(np.float32(value))


def _const(e: Expr, value: float) -> bool:
    return isinstance(e, Const) and _f32(e.value) == value


def _short(value: float) -> float:
    """The double of the shortest decimal with ``value``'s float32 (what programs compute with), so
    a folded constant prints briefly (``0.3``, not ``0.30000001192092896``) and computes the same."""
    short = float(format_constant(value)) + 0.0
    return short if _f32(short) == _f32(value) else value + 0.0


def _fold(node: Call) -> Expr | None:
    if not node.args or not all(isinstance(a, Const) for a in node.args):
        return None
    fn = P.REGISTRY[node.name].fn
    with torch.no_grad():
        out = fn(*[torch.full((1,), a.value, dtype=torch.float32) for a in node.args])  # type: ignore[union-attr]
    value = float(out.reshape(-1)[0])
    return Const(_short(value)) if np.isfinite(value) else None


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
