"""From a program's per-unit scores to one score per network (mean, sum or median over units)."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

UNIT_AGGREGATES = ("mean", "sum", "median")


def aggregate_units(grid: torch.Tensor, present: torch.Tensor, how: str) -> torch.Tensor:
    """Network scores (nets,) float64 from per-unit scores ``grid`` (nets, max_units), where
    ``present`` marks each network's units. NaN for a network with a non-finite unit score or no
    unit. Sums run unit by unit in order, so padding a network's row changes nothing."""
    if how not in UNIT_AGGREGATES:
        raise ValueError(f"unknown unit aggregation {how!r}; valid: {', '.join(UNIT_AGGREGATES)}")
    grid = grid.to(torch.float64)
    if grid.shape[1] == 0:
        return torch.full((grid.shape[0],), math.nan, dtype=torch.float64)
    nan = torch.full_like(grid, math.nan)
    if how == "median":
        out = torch.where(present, grid, nan).nanmedian(dim=1).values
    else:
        out = torch.where(present, grid, torch.zeros_like(grid)).cumsum(dim=1)[:, -1]
        if how == "mean":
            out = out / present.sum(dim=1).clamp(min=1)
    bad = (present & ~torch.isfinite(grid)).any(dim=1) | ~present.any(dim=1)
    return torch.where(bad, torch.full_like(out, math.nan), out)


def aggregate_net(scores: torch.Tensor, how: str) -> float:
    """One network's score from its per-unit scores (units,)."""
    s = scores.detach().to("cpu", torch.float64).reshape(1, -1)
    return float(aggregate_units(s, torch.ones_like(s, dtype=torch.bool), how)[0])


def program_scores(program: Callable[[torch.Tensor], torch.Tensor], values: torch.Tensor) -> torch.Tensor:
    """Per-unit scores of ``program`` on statistics ``values``; an exception means NaN scores."""
    try:
        with torch.no_grad():
            return program(values)
    except Exception:  # noqa: BLE001 - a numerical failure makes every unit NaN, as in the search
        return torch.full((values.shape[0],), float("nan"))
