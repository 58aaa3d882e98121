"""Fixed-shape sketches of unit tensors: R square s x s blocks chosen by seeded indices.

- activation-like tensors (b, c, h, w): R (sample, channel) pairs, each an s x s spatial crop;
- weight-like tensors (c_out, c_in, k, k): the matrix (c_out, c_in*k*k), R blocks of s x s.
Positions past a tensor's edge (a 4 x 4 feature map, a 4 x 36 weight matrix) are zero-padded and
marked invalid in the block's mask. Indices depend only on (seed, shape), and the seed only on
(run seed, unit, family) (see ``sketch_seed``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SketchIndex:
    """Advanced-indexing tuple selecting an (R, s, s) block stack, plus its validity mask."""

    index: tuple[torch.Tensor, ...]
    valid: torch.Tensor  # (R, s, s) bool

    def take(self, t: torch.Tensor) -> torch.Tensor:
        out = t.detach()[self.index]
        return torch.where(self.valid, out, torch.zeros((), dtype=out.dtype, device=out.device))

    def to(self, device: torch.device) -> "SketchIndex":
        return SketchIndex(tuple(i.to(device) for i in self.index), self.valid.to(device))


def _offsets(n: int, size: int, s: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, max(size - s, 0) + 1, (n,), generator=g)


def _grid(start: torch.Tensor, s: int, limit: int, along: int) -> tuple[torch.Tensor, torch.Tensor]:
    ar = torch.arange(s)
    pos = start.view(-1, 1) + ar.view(1, -1)  # (R, s)
    valid = pos < limit
    pos = pos.clamp(max=limit - 1)
    if along == 0:  # rows
        return pos[:, :, None], valid[:, :, None]
    return pos[:, None, :], valid[:, None, :]


def make_index(shape: tuple[int, ...], R: int, s: int, seed: int) -> SketchIndex:
    """Seeded sketch index for a tensor of ``shape`` (4-D activation or conv weight viewed 2-D)."""
    g = torch.Generator().manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
    if len(shape) == 2:  # weight matrix (c_out, c_in*k*k)
        rows, cols = shape
        ys, vy = _grid(_offsets(R, rows, s, g), s, rows, 0)
        xs, vx = _grid(_offsets(R, cols, s, g), s, cols, 1)
        return SketchIndex((ys.expand(R, s, s), xs.expand(R, s, s)), (vy & vx).expand(R, s, s))
    b, c, h, w = shape
    bi = torch.randint(0, b, (R,), generator=g).view(R, 1, 1).expand(R, s, s)
    ci = torch.randint(0, c, (R,), generator=g).view(R, 1, 1).expand(R, s, s)
    ys, vy = _grid(_offsets(R, h, s, g), s, h, 0)
    xs, vx = _grid(_offsets(R, w, s, g), s, w, 1)
    return SketchIndex((bi, ci, ys.expand(R, s, s), xs.expand(R, s, s)), (vy & vx).expand(R, s, s))


def weight_matrix(w: torch.Tensor) -> torch.Tensor:
    """A conv weight (c_out, c_in, k, k) as the matrix (c_out, c_in*k*k) that is sketched."""
    return w.reshape(w.shape[0], -1)
