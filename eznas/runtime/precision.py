"""The precision policy: how the search stores statistics, and the same round trip for proxies.

The statistics cache stores each (unit, tensor) block stack divided by its float32 scale (its
largest magnitude; 1 where that is 0 or not finite) in ``float16`` or ``float32``, and the search
evaluates programs on ``decode(encode(values))``. An exported or loaded proxy applies the same
``quantise(values, cache_dtype)`` to the statistics it records, so it computes on exactly the
values the search computed on (for the same network, batch and seed).
"""
from __future__ import annotations

import torch

STORAGE_DTYPES = ("float16", "float32")


def encode(values: torch.Tensor, dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(stored values in ``dtype``, float32 scales (units, tensors)) of values (units, tensors, ...)."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"unknown storage dtype {dtype!r}; valid: {', '.join(STORAGE_DTYPES)}")
    values = values.to(torch.float32)
    scale = values.reshape(values.shape[0], values.shape[1], -1).abs().amax(dim=2)
    scale = torch.where(torch.isfinite(scale) & (scale != 0), scale, torch.ones_like(scale))
    stored = values / scale.reshape(*scale.shape, *([1] * (values.dim() - 2)))
    return stored.to(getattr(torch, dtype)), scale


def decode(stored: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Float32 values from :func:`encode`'s output."""
    return stored.to(torch.float32) * scale.reshape(*scale.shape, *([1] * (stored.dim() - 2)))


def quantise(values: torch.Tensor, dtype: str) -> torch.Tensor:
    """``values`` as the search sees them after storing them in ``dtype`` (float32)."""
    return decode(*encode(values, dtype))
