"""Tensor operations that programs are built from, registered by name with their GP types.

Two GP types (marker classes, used as DEAP types):

* :class:`Tensor` — a float32 tensor ``(rows, R, s, s)``: one sketch of R square s x s blocks per
  row (a row is one (network, unit) pair);
* :class:`Scalar` — a float32 tensor ``(rows,)``.

Every primitive is *total*: it never raises for a tensor input of the right shape, and returns
finite values or NaN (overflow to +-inf becomes NaN). All work is vectorised over rows and
blocks. Reductions ``Tensor -> Scalar`` reduce over the last three axes ``(R, s, s)``; matrix
operations work on the s x s blocks (the last two axes), through the batched kernels of
:mod:`eznas.block_linalg`.

Kernels are written for speed on many rows (tests/test_primitive_kernels.py checks them against
straightforward implementations): comparisons write float32 directly, ``_fin_`` cleans results
in place, softmax / std / normalize avoid torch's slow paths for a small last axis and Welford.
Primitives and their helpers use only torch and math: ``eznas export`` copies their source.

Add a primitive with the :func:`primitive` decorator::

    @primitive("add", [Tensor, Tensor], Tensor)
    def add(a, b):
        "Element-wise sum."
        return _fin(a + b)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from eznas.block_linalg import (RTOL, block_mean, block_ratio, eig_magnitudes, live_blocks, pseudo_logdet,
                                scaled_blocks, scatter_blocks, singular_values)

__all__ = ["Tensor", "Scalar", "PrimitiveSpec", "REGISTRY", "primitive", "get", "names"]

NAN = float("nan")
INF = float("inf")
#: magnitudes at or below this count as zero in protected division and normalisation
EPS = 1e-12
#: upper clamp of the exponent in ``exp`` (exp(80) ~ 5.5e34 stays finite in float32)
EXP_MAX = 80.0
_DIMS = (1, 2, 3)


class Tensor:
    """GP type of a sketch: float32 ``(rows, R, s, s)``."""


class Scalar:
    """GP type of one number per row: float32 ``(rows,)``."""


@dataclass(frozen=True)
class PrimitiveSpec:
    """One registered primitive: its function and type signature."""

    name: str
    fn: Callable[..., torch.Tensor]
    args: tuple[type, ...]
    ret: type
    doc: str

    @property
    def arity(self) -> int:
        return len(self.args)


#: every primitive by name, in registration order
REGISTRY: dict[str, PrimitiveSpec] = {}


def primitive(name: str, args: Sequence[type], ret: type) -> Callable[[Callable], Callable]:
    """Register the decorated function as primitive ``name`` with signature ``args -> ret``."""

    def register(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        if name in REGISTRY:
            raise ValueError(f"primitive {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        REGISTRY[name] = PrimitiveSpec(name, fn, tuple(args), ret, doc)
        return fn

    return register


def get(name: str) -> PrimitiveSpec:
    """The registered primitive ``name`` (KeyError if there is none)."""
    return REGISTRY[name]


def names() -> list[str]:
    """Names of all registered primitives, in registration order."""
    return list(REGISTRY)


# ----------------------------------------------------------------------------- helpers


def _t(x: torch.Tensor | float) -> torch.Tensor:
    """A float32 tensor from ``x`` (constants may arrive as Python floats)."""
    if isinstance(x, torch.Tensor):
        return x if x.dtype == torch.float32 else x.float()
    return torch.tensor(float(x), dtype=torch.float32)


def _fin(x: torch.Tensor) -> torch.Tensor:
    """``x`` with +-inf replaced by NaN, so results are finite or NaN."""
    return torch.nan_to_num(x, nan=NAN, posinf=NAN, neginf=NAN)


def _safe_den(x: torch.Tensor) -> torch.Tensor:
    """A denominator: near-zero entries become inf (so the quotient is 0), NaN stays NaN."""
    return torch.where(x.abs() <= EPS, INF, x)


def _fin_(x: torch.Tensor) -> torch.Tensor:
    """:func:`_fin` in place, for a tensor the primitive has just made (never an input or a view)."""
    return torch.nan_to_num_(x, nan=NAN, posinf=NAN, neginf=NAN)


def _cmp(op: Callable[..., torch.Tensor], a: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """1.0 / 0.0 of comparison ``op`` written straight into a float32 tensor (no bool pass)."""
    # torch.broadcast_shapes costs ~10 us a call (and imports sympy on first use): only when shapes differ
    shape = a.shape if not isinstance(b, torch.Tensor) or b.shape == a.shape else torch.broadcast_shapes(a.shape, b.shape)
    return op(a, b, out=torch.empty(shape, dtype=torch.float32, device=a.device))


def _flat(x: torch.Tensor) -> torch.Tensor:
    """``x`` as (rows, R * s * s) (a view when the layout allows)."""
    return x.reshape(x.shape[0], -1)


def _centred(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x - mean, std)`` of each row over (R, s, s): population std, two passes, ~5x faster than
    torch's Welford ``std_mean``. The mean is summed in float64, so a constant row is centred to
    exact zeros (std 0) and huge rows do not overflow; the variance is redone in float64 for the
    rows whose float32 squares overflow or underflow."""
    c = x - x.mean(dim=_DIMS, keepdim=True, dtype=torch.float64).to(x.dtype)
    var = _flat(c).square().mean(1)
    redo = ~(var >= 1e-30) | torch.isinf(var)  # float32 squares overflowed or underflowed (also NaN, zero)
    if bool(redo.any()):
        idx = redo.nonzero().squeeze(1)
        var = var.to(torch.float64).index_put_((idx,), _flat(c)[idx].double().square().mean(1))
    return c, var.sqrt().to(x.dtype).view(-1, 1, 1, 1)


def _matrix_ratio(x: torch.Tensor, magnitudes: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Mean over blocks of the largest / smallest non-negligible of ``magnitudes(block)``."""
    scaled, scale, bad = scaled_blocks(x)
    index, blocks = live_blocks(scaled, scale, bad)
    ratio, keep = block_ratio(magnitudes(blocks))
    return block_mean(scatter_blocks(index, ratio, scale.shape, 0.0), scatter_blocks(index, keep, scale.shape, 0.0) > 0,
                      bad)


# ----------------------------------------------------------------------------- element-wise, binary


@primitive("add", [Tensor, Tensor], Tensor)
def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise a + b."""
    return _fin_(a + b)


@primitive("sub", [Tensor, Tensor], Tensor)
def sub(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise a - b."""
    return _fin_(a - b)


@primitive("mul", [Tensor, Tensor], Tensor)
def mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise a * b."""
    return _fin_(a * b)


@primitive("div", [Tensor, Tensor], Tensor)
def div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Protected element-wise a / b: 0 where |b| <= 1e-12."""
    return _fin_(a / _safe_den(b))


@primitive("lt", [Tensor, Tensor], Tensor)
def lt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise 1.0 where a < b, else 0.0."""
    return _cmp(torch.lt, a, b)


@primitive("gt", [Tensor, Tensor], Tensor)
def gt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise 1.0 where a > b, else 0.0."""
    return _cmp(torch.gt, a, b)


@primitive("eq", [Tensor, Tensor], Tensor)
def eq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise 1.0 where a == b, else 0.0."""
    return _cmp(torch.eq, a, b)


@primitive("matmul", [Tensor, Tensor], Tensor)
def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Matrix product of corresponding s x s blocks."""
    return _fin_(torch.matmul(a, b))


# ----------------------------------------------------------------------------- element-wise, unary


@primitive("inv", [Tensor], Tensor)
def inv(x: torch.Tensor) -> torch.Tensor:
    """Protected element-wise 1 / x: 0 where |x| <= 1e-12."""
    return _fin_(1.0 / _safe_den(x))


@primitive("abs", [Tensor], Tensor)
def abs_(x: torch.Tensor) -> torch.Tensor:
    """Element-wise |x|."""
    return _fin_(x.abs())


@primitive("square", [Tensor], Tensor)
def square(x: torch.Tensor) -> torch.Tensor:
    """Element-wise x ** 2."""
    return _fin_(x * x)


@primitive("sqrt", [Tensor], Tensor)
def sqrt(x: torch.Tensor) -> torch.Tensor:
    """Protected element-wise square root: sqrt(|x|)."""
    return _fin_(x.abs().sqrt_())


@primitive("log", [Tensor], Tensor)
def log(x: torch.Tensor) -> torch.Tensor:
    """Protected element-wise log: log(x) where x > 0, 0 where x <= 0."""
    return _fin_(torch.where(x <= 0, 1.0, x).log_())  # log(1) = 0 where x <= 0; NaN stays NaN


@primitive("abslog", [Tensor], Tensor)
def abslog(x: torch.Tensor) -> torch.Tensor:
    """Element-wise log(|x|), 0 where x == 0."""
    a = x.abs()
    return _fin_(torch.where(a == 0, 1.0, a).log_())


@primitive("exp", [Tensor], Tensor)
def exp(x: torch.Tensor) -> torch.Tensor:
    """Element-wise exp(min(x, 80))."""
    return torch.clamp(x, max=EXP_MAX).exp_()


@primitive("sigmoid", [Tensor], Tensor)
def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Element-wise logistic sigmoid."""
    return torch.sigmoid(x)


@primitive("relu", [Tensor], Tensor)
def relu(x: torch.Tensor) -> torch.Tensor:
    """Element-wise max(x, 0)."""
    return _fin_(torch.relu(x))


@primitive("sign", [Tensor], Tensor)
def sign(x: torch.Tensor) -> torch.Tensor:
    """Element-wise sign: -1, 0 or 1."""
    return torch.sign(x)


@primitive("heaviside", [Tensor], Tensor)
def heaviside(x: torch.Tensor) -> torch.Tensor:
    """Element-wise Heaviside step: 0 for x < 0, 0.5 at 0, 1 for x > 0."""
    return _cmp(torch.gt, x, 0.0).add_(_cmp(torch.eq, x, 0.0), alpha=0.5)  # NaN gives 0, as torch.heaviside


@primitive("gt0", [Tensor], Tensor)
def gt0(x: torch.Tensor) -> torch.Tensor:
    """Element-wise 1.0 where x > 0, else 0.0."""
    return _cmp(torch.gt, x, 0.0)


@primitive("lt0", [Tensor], Tensor)
def lt0(x: torch.Tensor) -> torch.Tensor:
    """Element-wise 1.0 where x < 0, else 0.0."""
    return _cmp(torch.lt, x, 0.0)


@primitive("normalize", [Tensor], Tensor)
def normalize(x: torch.Tensor) -> torch.Tensor:
    """Z-normalise each row over (R, s, s): (x - mean) / std, 0 where std is 0."""
    centred, std = _centred(x)
    return _fin_(centred.div_(_safe_den(std)))


@primitive("softmax", [Tensor], Tensor)
def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis."""
    e = (x - x.amax(-1, keepdim=True)).exp_()
    return e.div_(e.sum(-1, keepdim=True))


@primitive("log_softmax", [Tensor], Tensor)
def log_softmax(x: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the last axis."""
    shifted = x - x.amax(-1, keepdim=True)
    return _fin_(shifted.sub_(shifted.exp().sum(-1, keepdim=True).log_()))


@primitive("transpose", [Tensor], Tensor)
def transpose(x: torch.Tensor) -> torch.Tensor:
    """Transpose of every s x s block."""
    return _fin(x.transpose(-1, -2))


# ----------------------------------------------------------------------------- reductions


@primitive("mean", [Tensor], Scalar)
def mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over (R, s, s)."""
    return _fin(x.mean(dim=_DIMS))


@primitive("sum", [Tensor], Scalar)
def sum_(x: torch.Tensor) -> torch.Tensor:
    """Sum over (R, s, s)."""
    return _fin(x.sum(dim=_DIMS))


@primitive("mean_abs", [Tensor], Scalar)
def mean_abs(x: torch.Tensor) -> torch.Tensor:
    """Mean of |x| over (R, s, s)."""
    return _fin(torch.linalg.vector_norm(x, ord=1, dim=_DIMS) / x[0].numel())


@primitive("std", [Tensor], Scalar)
def std(x: torch.Tensor) -> torch.Tensor:
    """Population standard deviation over (R, s, s)."""
    return _fin_(_centred(x)[1].view(-1))


@primitive("l1", [Tensor], Scalar)
def l1(x: torch.Tensor) -> torch.Tensor:
    """L1 norm: sum of |x| over (R, s, s)."""
    return _fin(torch.linalg.vector_norm(x, ord=1, dim=_DIMS))


@primitive("frob", [Tensor], Scalar)
def frob(x: torch.Tensor) -> torch.Tensor:
    """Frobenius (L2) norm over (R, s, s)."""
    return _fin(torch.linalg.vector_norm(x, dim=_DIMS))


@primitive("numel", [Tensor], Scalar)
def numel(x: torch.Tensor) -> torch.Tensor:
    """Number of non-zero entries (sketches have a fixed size; this excludes zero padding)."""
    return _cmp(torch.ne, x, 0.0).sum(dim=_DIMS)


@primitive("slogdet", [Tensor], Scalar)
def slogdet(x: torch.Tensor) -> torch.Tensor:
    """Mean over blocks of log |pseudo-determinant|.

    A block that LU finds non-singular (log |det| above n log(eps)) gives log |det|; only the
    others (zero padding, rank-deficient blocks) go through an SVD and give the sum of the logs
    of their non-zero singular values, so padding does not make it -inf. This split is ~8x faster
    on CPU than an SVD of every block. All-zero blocks are skipped (NaN when every block is zero);
    blocks holding NaN or inf give NaN.
    """
    scaled, scale, bad = scaled_blocks(x)
    index, blocks = live_blocks(scaled, scale, bad)
    n = x.shape[-1]
    logabs = torch.linalg.slogdet(blocks).logabsdet
    rank = torch.full_like(logabs, float(n))
    singular = ~(logabs > math.log(RTOL) * n)  # also catches NaN / -inf
    if bool(singular.any()):
        log_pdet, live = pseudo_logdet(singular_values(blocks[singular]))
        logabs = logabs.masked_scatter(singular, log_pdet.to(logabs.dtype))
        rank = rank.masked_scatter(singular, live.to(rank.dtype))
    rank = scatter_blocks(index, rank, scale.shape, 0.0)
    logs = scatter_blocks(index, logabs, scale.shape, 0.0) + rank * torch.where(scale > 0, scale, 1.0).log()
    return block_mean(logs, rank > 0, bad)


@primitive("eig_ratio", [Tensor], Scalar)
def eig_ratio(x: torch.Tensor) -> torch.Tensor:
    """Mean over blocks of max |eigenvalue| / min non-negligible |eigenvalue|."""
    return _matrix_ratio(x, eig_magnitudes)


@primitive("svd_ratio", [Tensor], Scalar)
def svd_ratio(x: torch.Tensor) -> torch.Tensor:
    """Mean over blocks of max / min non-negligible singular value (condition number)."""
    return _matrix_ratio(x, singular_values)


# ----------------------------------------------------------------------------- pair reductions


@primitive("cosine", [Tensor, Tensor], Scalar)
def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the flattened rows; 0 when either is all zeros."""
    dot = (a * b).sum(dim=_DIMS)
    den = torch.linalg.vector_norm(a, dim=_DIMS) * torch.linalg.vector_norm(b, dim=_DIMS)
    return _fin(dot / torch.where(den > 0, den, INF))


@primitive("kl", [Tensor, Tensor], Scalar)
def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KL divergence KL(softmax(a) || softmax(b)) over the flattened rows."""
    lp = torch.log_softmax(a.flatten(1), dim=1)
    lq = torch.log_softmax(b.flatten(1), dim=1)
    return _fin(F.kl_div(lq, lp, reduction="none", log_target=True).sum(1))


@primitive("hamming", [Tensor, Tensor], Scalar)
def hamming(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Fraction of entries whose signs differ."""
    return _cmp(torch.ne, torch.sign(a), torch.sign(b)).sum(dim=_DIMS).div_(a[0].numel())


# ----------------------------------------------------------------------------- scalar arithmetic


@primitive("add_s", [Scalar, Scalar], Scalar)
def add_s(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b."""
    return _fin(_t(a) + _t(b))


@primitive("sub_s", [Scalar, Scalar], Scalar)
def sub_s(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a - b."""
    return _fin(_t(a) - _t(b))


@primitive("mul_s", [Scalar, Scalar], Scalar)
def mul_s(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a * b."""
    return _fin(_t(a) * _t(b))


@primitive("div_s", [Scalar, Scalar], Scalar)
def div_s(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Protected a / b: 0 where |b| <= 1e-12."""
    return _fin(_t(a) / _safe_den(_t(b)))


@primitive("log_s", [Scalar], Scalar)
def log_s(x: torch.Tensor) -> torch.Tensor:
    """Protected log(|x|), 0 where x == 0."""
    x = _t(x)
    return torch.nan_to_num(x.abs().log(), nan=NAN, posinf=NAN, neginf=0.0)


@primitive("abs_s", [Scalar], Scalar)
def abs_s(x: torch.Tensor) -> torch.Tensor:
    """|x|."""
    return _fin(_t(x).abs())


@primitive("neg_s", [Scalar], Scalar)
def neg_s(x: torch.Tensor) -> torch.Tensor:
    """-x."""
    return _fin(-_t(x))
