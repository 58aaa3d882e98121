"""Batched linear algebra on the small s x s blocks of sketch rows, for the matrix reductions of
:mod:`eznas.primitives` (``slogdet``, ``eig_ratio``, ``svd_ratio``).

A sketch tensor ``(rows, R, s, s)`` holds ``rows * R`` tiny matrices (13,520 blocks of 8 x 8 for
20 NB201 nets). LAPACK's drivers cost microseconds per matrix whatever its size, so the work that
matters is how many matrices reach them and which driver: these kernels

* scale each block by its largest magnitude once (:func:`scaled_blocks`) and send only *live*
  blocks (not all zero, in a row without NaN / inf) to LAPACK - zero padding and NaN rows have
  known results;
* get singular values from the eigenvalues of the float64 Gram matrix ``B^T B``
  (:func:`singular_values`): one batched ``bmm`` plus ``eigvalsh`` (``syevd``) is ~1.6x cheaper
  than ``svdvals`` (``gesdd``) on 8 x 8 blocks and, in float64, more accurate than float32 SVD
  (absolute error ~1e-8 of the largest singular value instead of ~5e-7);
* compute eigenvalues with float32 ``geev`` on the live blocks only (see :func:`eig_magnitudes`).

Everything imports only torch and the standard library: ``eznas export`` copies these functions
into exported proxies next to the primitives that call them.
"""
from __future__ import annotations

import torch

__all__ = ["RTOL", "scaled_blocks", "live_blocks", "scatter_blocks", "singular_values", "eig_magnitudes",
           "pseudo_logdet", "block_ratio", "block_mean"]

#: relative tolerance under which singular / eigen values count as zero (float32 epsilon)
RTOL = float(torch.finfo(torch.float32).eps)


def scaled_blocks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blocks of ``x`` made safe for LAPACK: ``(scaled, scale, bad)``.

    ``scaled`` are the blocks divided by their largest magnitude (non-finite entries zeroed),
    ``scale`` that magnitude per block (rows, R) and ``bad`` marks blocks that held NaN or inf.
    """
    mags = x.abs().amax(dim=(-1, -2))  # NaN / inf when the block holds one: amax propagates NaN
    bad = ~torch.isfinite(mags)
    clean = x
    if bool(bad.any()):
        clean = torch.where(torch.isfinite(x), x, 0.0)
        mags = clean.abs().amax(dim=(-1, -2))
    return clean / torch.where(mags > 0, mags, 1.0)[..., None, None], mags, bad


def live_blocks(scaled: torch.Tensor, scale: torch.Tensor, bad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index, blocks)``: flat indices (into rows * R) of the blocks that are not all zero, in rows
    without a NaN / inf block (such a row's result is NaN whatever its other blocks give), and
    those blocks ``(live, s, s)``, contiguous."""
    index = torch.nonzero(((scale > 0) & ~bad.any(-1, keepdim=True)).reshape(-1)).squeeze(1)
    n = scaled.shape[-1]
    return index, scaled.reshape(-1, n, n).index_select(0, index)


def scatter_blocks(index: torch.Tensor, values: torch.Tensor, shape: torch.Size, fill: float) -> torch.Tensor:
    """A float32 tensor of ``shape`` (rows, R) holding ``values`` at the flat ``index``, else ``fill``."""
    out = torch.full((shape.numel(),), fill, dtype=torch.float32, device=values.device)
    out[index] = values.to(torch.float32)
    return out.view(shape)


def singular_values(blocks: torch.Tensor) -> torch.Tensor:
    """Singular values (float64, descending) of each block of ``(n, s, s)``: square roots of the
    eigenvalues of the float64 Gram matrix ``B^T B`` (rounding negatives clamped to 0)."""
    b = blocks.to(torch.float64)
    eig = torch.linalg.eigvalsh(b.mT @ b)  # ascending
    return eig.clamp_min(0.0).sqrt().flip(-1)


def eig_magnitudes(blocks: torch.Tensor) -> torch.Tensor:
    """|eigenvalues| of each block of ``(n, s, s)``, in no particular order, in the blocks' dtype.

    Deliberately not float64: a defective block's zero eigenvalues come out at ~eps^(1/k), above
    or below the live threshold depending on the precision, so this keeps float32 ``geev`` - the
    values the search has always seen, block for block."""
    return torch.linalg.eigvals(blocks).abs()


def pseudo_logdet(sv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log, rank)`` from descending singular values ``(n, s)``: the sum of the logs of the
    non-negligible ones (above the largest x RTOL x s) and how many there are."""
    live = sv > sv[..., :1] * (RTOL * sv.shape[-1])
    return torch.where(live, sv, 1.0).log().sum(-1), live.sum(-1)


def block_ratio(mags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ratio, keep)`` per block from magnitudes ``(n, s)``: largest / smallest non-negligible
    magnitude, and whether any magnitude is non-negligible."""
    top = mags.amax(-1, keepdim=True)
    live = mags > top * (RTOL * mags.shape[-1])
    low = torch.where(live, mags, float("inf")).amin(-1)
    return top[..., 0] / low, live.any(-1)


def block_mean(per_block: torch.Tensor, keep: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """Mean over blocks (last axis) of ``per_block`` where ``keep``; NaN if a block is ``bad``;
    +-inf becomes NaN."""
    total = torch.where(keep, per_block, 0.0).sum(-1)
    out = total / keep.sum(-1)  # no kept block: 0 / 0 = NaN
    out = torch.where(bad.any(-1), float("nan"), out)
    return torch.nan_to_num(out, nan=float("nan"), posinf=float("nan"), neginf=float("nan"))
