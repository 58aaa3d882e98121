"""Fitness: a program's per-unit scores -> network scores -> rank correlation per task -> aggregate.

A program whose network scores are NaN, infinite or constant over a task is *invalid* and gets
:data:`INVALID`, the worst fitness; it never raises.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from eznas import metrics
from eznas.errors import EznasError
from eznas.runtime import aggregate_units
from eznas.stats import TaskStats

INVALID = -1.0
#: valid values of the fitness options (``search.fitness``, ``search.aggregate``, ``search.unit_aggregate``)
FITNESS_KINDS = ("kendall", "spearman")
TASK_AGGREGATES = ("min", "mean")
UNIT_AGGREGATES = ("mean", "sum", "median")


def check_choice(value: str, valid: Sequence[str], what: str) -> str:
    """``value`` if it is one of ``valid``; else an :class:`EznasError` naming the valid values."""
    if value not in valid:
        raise EznasError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


@dataclass
class UnitLayout:
    """Maps a TaskStats' rows onto a (nets, max_units) grid, computed once per task split."""

    n_nets: int
    max_units: int
    position: torch.Tensor  # (rows,) flat index into nets * max_units

    @classmethod
    def of(cls, ts: TaskStats) -> "UnitLayout":
        counts = torch.bincount(ts.net_index, minlength=ts.n_nets)
        starts = torch.cumsum(counts, 0) - counts
        order = torch.arange(len(ts.net_index)) - starts[ts.net_index]
        max_units = int(counts.max()) if len(counts) else 0
        return cls(ts.n_nets, max_units, ts.net_index * max_units + order)


def net_scores(row_scores: torch.Tensor, layout: UnitLayout, how: str = "mean") -> np.ndarray:
    """Aggregate per-unit scores into one score per network (mean, sum or median over units, see
    :func:`eznas.runtime.aggregate_units`; an unknown ``how`` is an error)."""
    grid = torch.full((layout.n_nets * layout.max_units,), math.nan, dtype=torch.float64)
    grid[layout.position] = row_scores.to(torch.float64)
    present = torch.zeros(layout.n_nets * layout.max_units, dtype=torch.bool)
    present[layout.position] = True
    shape = (layout.n_nets, layout.max_units)
    try:
        return aggregate_units(grid.view(shape), present.view(shape), how).numpy()
    except ValueError as e:
        raise EznasError(str(e)) from None


def correlation(scores: np.ndarray, accuracies: np.ndarray, kind: str = "kendall") -> float:
    """Kendall tau or Spearman rho; NaN if any score is non-finite (unlike the evaluation tables,
    which rank a failed net last, a program must score every net) or the scores are constant."""
    check_choice(kind, FITNESS_KINDS, "fitness kind")
    scores = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        return math.nan
    r = metrics.spearman(scores, accuracies) if kind == "spearman" else metrics.kendall(scores, accuracies)
    return r if math.isfinite(r) else math.nan


def aggregate(values: Sequence[float], how: str = "min") -> float:
    """Aggregate per-task correlations (min or mean); any invalid task makes the program invalid."""
    check_choice(how, TASK_AGGREGATES, "task aggregate")
    if not values or any(not math.isfinite(v) for v in values):
        return INVALID
    return float(min(values)) if how == "min" else float(np.mean(values))


@dataclass
class ProgramResult:
    fitness: float
    per_task: dict[str, float] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return all(math.isfinite(v) for v in self.per_task.values())
