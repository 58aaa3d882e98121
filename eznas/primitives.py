"""Tensor operations that programs are built from, registered by name with their GP types.

Two GP types (marker classes, used as DEAP types):

* :class:`Tensor` — a float32 tensor ``(rows, R, s, s)``: one sketch of R square s x s blocks per
  row (a row is one (network, unit) pair);
* :class:`Scalar` — a float32 tensor ``(rows,)``.

Every primitive is *total*: it never raises for a tensor input of the right shape, and returns
finite values or NaN (overflow to +-inf becomes NaN). All work is vectorised over rows and
blocks. Reductions ``Tensor -> Scalar`` reduce over the last three axes ``(R, s, s)``; matrix
operations work on the s x s blocks (the last two axes).

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

__all__ = ["Tensor", "Scalar", "PrimitiveSpec", "REGISTRY", "primitive", "get", "names"]

NAN = float("nan")
INF = float("inf")
#: magnitudes at or below this count as zero in protected division and normalisation
EPS = 1e-12
#: upper clamp of the exponent in ``exp`` (exp(80) ~ 5.5e34 stays finite in float32)
EXP_MAX = 80.0
#: relative tolerance under which singular / eigen values count as zero (float32 epsilon)
RTOL = float(torch.finfo(torch.float32).eps)
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


def _blocks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blocks of ``x`` made safe for LAPACK: ``(scaled, scale, bad)``.

    ``scaled`` are the blocks divided by their largest magnitude (non-finite entries zeroed),
    ``scale`` that magnitude per block (rows, R) and ``bad`` marks blocks that held NaN or inf.
    """
    finite = torch.isfinite(x)
    bad = ~finite.all(dim=-1).all(dim=-1)
    clean = torch.where(finite, x, 0.0)
    scale = clean.abs().amax(dim=(-1, -2))
    scaled = clean / torch.where(scale > 0, scale, 1.0)[..., None, None]
    return scaled, scale, bad


def _block_mean(per_block: torch.Tensor, keep: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """Mean over blocks (last axis) of ``per_block`` where ``keep``; NaN if a block is ``bad``."""
    total = torch.where(keep, per_block, 0.0).sum(-1)
    out = total / keep.sum(-1)  # no kept block: 0 / 0 = NaN
    return _fin(torch.where(bad.any(-1), NAN, out))


def _ratio(mags: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """Mean over blocks of largest / smallest non-negligible magnitude (``mags``: rows, R, s)."""
    top = mags.amax(-1, keepdim=True)
    live = mags > top * (RTOL * mags.shape[-1])
    low = torch.where(live, mags, INF).amin(-1)
    return _block_mean(top[..., 0] / low, live.any(-1), bad)


# ----------------------------------------------------------------------------- element-wise, binary


@primitive("add", [Tensor, Tensor], Tensor)
def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise a + b."""
    return _fin(a + b)


@primitive("sub", [Tensor, Tensor], Tensor)
def sub(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise a - b."""
    return _fin(a - b)


@primitive("mul", [Tensor, Tensor], Tensor)
def mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise a * b."""
    return _fin(a * b)


@primitive("div", [Tensor, Tensor], Tensor)
def div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Protected element-wise a / b: 0 where |b| <= 1e-12."""
    return _fin(a / _safe_den(b))


@primitive("lt", [Tensor, Tensor], Tensor)
def lt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise 1.0 where a < b, else 0.0."""
    return (a < b).float()


@primitive("gt", [Tensor, Tensor], Tensor)
def gt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise 1.0 where a > b, else 0.0."""
    return (a > b).float()


@primitive("eq", [Tensor, Tensor], Tensor)
def eq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise 1.0 where a == b, else 0.0."""
    return (a == b).float()


@primitive("matmul", [Tensor, Tensor], Tensor)
def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Matrix product of corresponding s x s blocks."""
    return _fin(torch.matmul(a, b))


# ----------------------------------------------------------------------------- element-wise, unary


@primitive("inv", [Tensor], Tensor)
def inv(x: torch.Tensor) -> torch.Tensor:
    """Protected element-wise 1 / x: 0 where |x| <= 1e-12."""
    return _fin(1.0 / _safe_den(x))


@primitive("abs", [Tensor], Tensor)
def abs_(x: torch.Tensor) -> torch.Tensor:
    """Element-wise |x|."""
    return _fin(x.abs())


@primitive("square", [Tensor], Tensor)
def square(x: torch.Tensor) -> torch.Tensor:
    """Element-wise x ** 2."""
    return _fin(x * x)


@primitive("sqrt", [Tensor], Tensor)
def sqrt(x: torch.Tensor) -> torch.Tensor:
    """Protected element-wise square root: sqrt(|x|)."""
    return _fin(x.abs().sqrt())


@primitive("log", [Tensor], Tensor)
def log(x: torch.Tensor) -> torch.Tensor:
    """Protected element-wise log: log(x) where x > 0, 0 where x <= 0."""
    return torch.nan_to_num(torch.relu(x).log(), nan=NAN, posinf=NAN, neginf=0.0)


@primitive("abslog", [Tensor], Tensor)
def abslog(x: torch.Tensor) -> torch.Tensor:
    """Element-wise log(|x|), 0 where x == 0."""
    return torch.nan_to_num(x.abs().log(), nan=NAN, posinf=NAN, neginf=0.0)


@primitive("exp", [Tensor], Tensor)
def exp(x: torch.Tensor) -> torch.Tensor:
    """Element-wise exp(min(x, 80))."""
    return torch.clamp(x, max=EXP_MAX).exp()


@primitive("sigmoid", [Tensor], Tensor)
def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Element-wise logistic sigmoid."""
    return torch.sigmoid(x)


@primitive("relu", [Tensor], Tensor)
def relu(x: torch.Tensor) -> torch.Tensor:
    """Element-wise max(x, 0)."""
    return _fin(torch.relu(x))


@primitive("sign", [Tensor], Tensor)
def sign(x: torch.Tensor) -> torch.Tensor:
    """Element-wise sign: -1, 0 or 1."""
    return torch.sign(x)


@primitive("heaviside", [Tensor], Tensor)
def heaviside(x: torch.Tensor) -> torch.Tensor:
    """Element-wise Heaviside step: 0 for x < 0, 0.5 at 0, 1 for x > 0."""
    return torch.heaviside(x, x.new_tensor(0.5))


@primitive("gt0", [Tensor], Tensor)
def gt0(x: torch.Tensor) -> torch.Tensor:
    """Element-wise 1.0 where x > 0, else 0.0."""
    return (x > 0).float()


@primitive("lt0", [Tensor], Tensor)
def lt0(x: torch.Tensor) -> torch.Tensor:
    """Element-wise 1.0 where x < 0, else 0.0."""
    return (x < 0).float()


@primitive("normalize", [Tensor], Tensor)
def normalize(x: torch.Tensor) -> torch.Tensor:
    """Z-normalise each row over (R, s, s): (x - mean) / std, 0 where std is 0."""
    std, mean = torch.std_mean(x, dim=_DIMS, correction=0, keepdim=True)
    return _fin((x - mean) / _safe_den(std))


@primitive("softmax", [Tensor], Tensor)
def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis."""
    return torch.softmax(x, dim=-1)


@primitive("log_softmax", [Tensor], Tensor)
def log_softmax(x: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the last axis."""
    return _fin(torch.log_softmax(x, dim=-1))


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
    return _fin(x.std(dim=_DIMS, correction=0))


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
    return (x != 0).sum(dim=_DIMS).float()


@primitive("slogdet", [Tensor], Scalar)
def slogdet(x: torch.Tensor) -> torch.Tensor:
    """Mean over blocks of log |pseudo-determinant|.

    A block that LU finds non-singular (log |det| above n log(eps)) gives log |det|; only the
    others (zero padding, rank-deficient blocks) go through an SVD and give the sum of the logs
    of their non-zero singular values, so padding does not make it -inf. This split is ~8x faster
    on CPU than an SVD of every block. All-zero blocks are skipped (NaN when every block is zero);
    blocks holding NaN or inf give NaN.
    """
    scaled, scale, bad = _blocks(x)
    n = x.shape[-1]
    logabs = torch.linalg.slogdet(scaled).logabsdet
    rank = torch.full_like(logabs, float(n))
    singular = ~(logabs > math.log(RTOL) * n)  # also catches NaN / -inf
    if singular.any():
        sv = torch.linalg.svdvals(scaled[singular])
        live = sv > sv[..., :1] * (RTOL * n)
        logabs = logabs.masked_scatter(singular, torch.where(live, sv, 1.0).log().sum(-1))
        rank = rank.masked_scatter(singular, live.sum(-1).to(rank.dtype))
    logs = logabs + rank * torch.where(scale > 0, scale, 1.0).log()
    return _block_mean(logs, rank > 0, bad)


@primitive("eig_ratio", [Tensor], Scalar)
def eig_ratio(x: torch.Tensor) -> torch.Tensor:
    """Mean over blocks of max |eigenvalue| / min non-negligible |eigenvalue|."""
    scaled, _, bad = _blocks(x)
    return _ratio(torch.linalg.eigvals(scaled).abs(), bad)


@primitive("svd_ratio", [Tensor], Scalar)
def svd_ratio(x: torch.Tensor) -> torch.Tensor:
    """Mean over blocks of max / min non-negligible singular value (condition number)."""
    scaled, _, bad = _blocks(x)
    return _ratio(torch.linalg.svdvals(scaled), bad)


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
    return torch.count_nonzero(torch.sign(a) != torch.sign(b), dim=_DIMS) / a[0].numel()


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
