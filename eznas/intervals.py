"""95 % bootstrap intervals for the rank correlations of an evaluation, paired across proxies.

One replicate draws n nets with replacement from a task's n nets (seeded); every proxy is measured
on the SAME draw, so the difference between two proxies' rho is a paired quantity whose interval
is much narrower than the two intervals suggest. Per replicate:

- Spearman rho (average ranks of the drawn scores and accuracies, Pearson of the ranks) and Kendall
  tau-b (scipy) of every proxy, non-finite scores ranked below every finite one as in
  :mod:`eznas.metrics`; a constant resample gives NaN, which is left out of the percentiles;
- the mean and the worst (minimum) over tasks of each metric (tasks resampled independently,
  replicate b of every task combined);
- the difference rho(proxy) - rho(reference), the reference being the best baseline of the task
  (highest rho on all nets), or of the mean.

An interval is the 2.5 and 97.5 percentiles of the replicates (percentile bootstrap).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from eznas.errors import EznasError
from eznas.metrics import clean_scores

N_BOOT = 1000
LEVEL = 0.95
CORRELATIONS = ("spearman", "kendall")
_MAX_PAIRWISE = 3000  # up to this many nets, Kendall's tau of all replicates by two matrix products
Interval = tuple[float, float]


def resample_indices(n: int, n_boot: int, seed: int | Sequence[int]) -> np.ndarray:
    """(n_boot, n) indices drawn with replacement from range(n), seeded."""
    if n < 2:
        raise EznasError(f"bootstrap intervals need at least 2 nets, got {n}")
    if n_boot < 1:
        raise EznasError(f"the bootstrap needs at least 1 replicate, got {n_boot}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _row_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    den = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (x * y).sum(1) / den
    r[den == 0] = np.nan
    return np.clip(r, -1.0, 1.0)


def _tie_pairs(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per replicate, the number of drawn pairs tied in ``values`` (copies of one net included)."""
    _, group = np.unique(values, return_inverse=True)
    per_group = np.zeros((counts.shape[0], int(group.max()) + 1))
    np.add.at(per_group.T, group, counts.T)
    return (per_group * (per_group - 1.0) / 2.0).sum(1)


def _kendall_by_counts(s: np.ndarray, acc: np.ndarray, counts: np.ndarray, acc_sign: np.ndarray,
                       acc_ties: np.ndarray) -> np.ndarray:
    """Kendall tau-b of every replicate from the draw counts (B, n): with c_i copies of net i,
    concordant - discordant = 1/2 c^T M c, M_ij = sign(s_i - s_j) sign(a_i - a_j), and the tie
    corrections count tied pairs per group of equal values. Equals scipy's ``kendalltau`` on the
    drawn nets, in two matrix products instead of B calls."""
    m = np.sign(s[:, None] - s[None, :]) * acc_sign
    num = 0.5 * ((counts @ m) * counts).sum(1)
    n = counts.shape[1]
    n0 = n * (n - 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = num / np.sqrt((n0 - _tie_pairs(s, counts)) * (n0 - acc_ties))
    tau[~np.isfinite(tau)] = np.nan
    return np.clip(tau, -1.0, 1.0)


def replicate_correlations(scores: Mapping[str, Sequence[float] | np.ndarray], accuracies: Sequence[float] | np.ndarray,
                           idx: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """{proxy: {"spearman": (B,), "kendall": (B,)}} on the resamples ``idx`` (B, n)."""
    acc = np.asarray(accuracies, dtype=np.float64)
    acc_b = acc[idx]
    acc_ranks = stats.rankdata(acc_b, axis=1)
    n = acc.size
    by_counts = n <= _MAX_PAIRWISE
    if by_counts:
        counts = np.zeros((len(idx), n))
        np.add.at(counts, (np.repeat(np.arange(len(idx)), idx.shape[1]), idx.ravel()), 1.0)
        acc_sign = np.sign(acc[:, None] - acc[None, :])
        acc_ties = _tie_pairs(acc, counts)
    out: dict[str, dict[str, np.ndarray]] = {}
    for label, raw in scores.items():
        s = clean_scores(raw)
        if s.shape != acc.shape:
            raise EznasError(f"proxy '{label}' has {s.size} scores for {acc.size} nets")
        s_b = s[idx]
        rho = _row_pearson(stats.rankdata(s_b, axis=1), acc_ranks)
        if by_counts:
            tau = _kendall_by_counts(s, acc, counts, acc_sign, acc_ties)
        else:
            tau = np.array([stats.kendalltau(s_b[b], acc_b[b]).statistic for b in range(len(idx))])
        tau[np.isnan(rho)] = np.nan  # a constant resample has neither
        out[label] = {"spearman": rho, "kendall": tau}
    return out


def percentile_interval(reps: np.ndarray, level: float = LEVEL) -> Interval:
    """(low, high) percentiles of the finite replicates; NaNs when fewer than half are finite."""
    ok = reps[np.isfinite(reps)]
    if ok.size == 0 or ok.size < 0.5 * reps.size:
        return (math.nan, math.nan)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(ok, [tail, 100.0 - tail])
    return float(lo), float(hi)


@dataclass
class Delta:
    """rho(proxy) - rho(reference): the point difference on all nets and its paired interval."""

    reference: str
    value: float
    interval: Interval


@dataclass
class Intervals:
    """Intervals of one evaluation: ``tasks[task][proxy][metric]`` and ``summary[proxy]["mean_spearman"]``
    etc., ``delta[task or "mean"][proxy]`` against that column's best baseline."""

    n_boot: int
    seed: int
    level: float
    tasks: dict[str, dict[str, dict[str, Interval]]] = field(default_factory=dict)
    summary: dict[str, dict[str, Interval]] = field(default_factory=dict)
    delta: dict[str, dict[str, Delta]] = field(default_factory=dict)


def best_baseline(point_rho: Mapping[str, float], baselines: Sequence[str]) -> str | None:
    """The baseline with the highest finite rho (first in order on ties), None if there is none."""
    cands = [b for b in baselines if b in point_rho and math.isfinite(point_rho[b])]
    return max(cands, key=lambda b: point_rho[b]) if cands else None


def _deltas(reps: Mapping[str, np.ndarray], point: Mapping[str, float], baselines: Sequence[str],
            level: float) -> dict[str, Delta]:
    ref = best_baseline(point, baselines)
    if ref is None:
        return {}
    return {lab: Delta(ref, point[lab] - point[ref], percentile_interval(reps[lab] - reps[ref], level))
            for lab in reps if lab != ref}


def _nanmean(vals: Sequence[float]) -> float:
    ok = [v for v in vals if math.isfinite(v)]
    return float(np.mean(ok)) if ok else math.nan


def bootstrap(tasks: Mapping[str, tuple[Mapping[str, np.ndarray], np.ndarray]],
              point_rho: Mapping[str, Mapping[str, float]],
              baselines: Sequence[str], n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Intervals:
    """Intervals for ``tasks`` = {task: (scores by proxy, accuracies)}; ``point_rho[task][proxy]``
    is the rho on all nets (it picks each task's best baseline among ``baselines``)."""
    res = Intervals(n_boot, seed, level)
    per_task: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for k, (name, (scores, acc)) in enumerate(tasks.items()):
        idx = resample_indices(len(acc), n_boot, [seed, k])
        reps = replicate_correlations(scores, acc, idx)
        per_task[name] = reps
        res.tasks[name] = {lab: {m: percentile_interval(r[m], level) for m in CORRELATIONS} for lab, r in reps.items()}
        res.delta[name] = _deltas({lab: r["spearman"] for lab, r in reps.items()}, point_rho[name], baselines, level)
    labels = list(dict.fromkeys(lab for reps in per_task.values() for lab in reps))
    mean_reps: dict[str, np.ndarray] = {}
    for lab in labels:
        res.summary[lab] = {}
        for m in CORRELATIONS:
            stack = np.stack([reps[lab][m] for reps in per_task.values() if lab in reps])
            with warnings.catch_warnings():  # all-NaN replicates stay NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, worst = np.nanmean(stack, 0), np.nanmin(stack, 0)
            res.summary[lab][f"mean_{m}"] = percentile_interval(mean, level)
            res.summary[lab][f"worst_{m}"] = percentile_interval(worst, level)
            if m == "spearman":
                mean_reps[lab] = mean
    mean_point = {lab: _nanmean([point_rho[t][lab] for t in point_rho if lab in point_rho[t]]) for lab in labels}
    res.delta["mean"] = _deltas(mean_reps, mean_point, baselines, level)
    return res


def to_json(iv: Intervals) -> dict:
    """A JSON-ready dict (intervals as [low, high] lists, NaN as None)."""
    def pair(p: Interval) -> list[float | None]:
        return [v if math.isfinite(v) else None for v in p]

    return {"n_boot": iv.n_boot, "seed": iv.seed, "level": iv.level,
            "tasks": {t: {lab: {m: pair(p) for m, p in d.items()} for lab, d in v.items()}
                      for t, v in iv.tasks.items()},
            "summary": {lab: {m: pair(p) for m, p in d.items()} for lab, d in iv.summary.items()},
            "delta_spearman": {t: {lab: {"reference": d.reference,
                                         "value": d.value if math.isfinite(d.value) else None,
                                         "interval": pair(d.interval)} for lab, d in v.items()}
                               for t, v in iv.delta.items()}}


__all__ = ["N_BOOT", "LEVEL", "Interval", "Intervals", "Delta", "resample_indices", "replicate_correlations",
           "percentile_interval", "best_baseline", "bootstrap", "to_json"]
