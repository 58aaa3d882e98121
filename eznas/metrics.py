"""Rank agreement between proxy scores and accuracies: Spearman rho, Kendall tau, top-k precision.

Shared by the evaluation tables and the evolution fitness. Non-finite scores (a proxy that failed
on a net: NaN, +-inf) rank below every finite score, tied with each other (NASLib stores such
scores as -1e8). Scores that are constant over the nets, or with fewer than two nets, give NaN.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

METRICS = ("spearman", "kendall", "top10")


def clean_scores(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """float64 copy where every non-finite value is replaced by one below the finite minimum."""
    s = np.asarray(scores, dtype=np.float64).copy()
    bad = ~np.isfinite(s)
    if bad.any():
        finite = s[~bad]
        s[bad] = (finite.min() - 1.0 - abs(finite.min())) if finite.size else 0.0
    return s


def _degenerate(s: np.ndarray, a: np.ndarray) -> bool:
    return s.size < 2 or np.all(s == s[0]) or np.all(a == a[0])


def spearman(scores: Sequence[float] | np.ndarray, accuracies: Sequence[float] | np.ndarray) -> float:
    """Spearman's rho (average ranks for ties); NaN if either side is constant."""
    s, a = clean_scores(scores), np.asarray(accuracies, dtype=np.float64)
    if _degenerate(s, a):
        return math.nan
    return float(stats.spearmanr(s, a).statistic)


def kendall(scores: Sequence[float] | np.ndarray, accuracies: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b; NaN if either side is constant."""
    s, a = clean_scores(scores), np.asarray(accuracies, dtype=np.float64)
    if _degenerate(s, a):
        return math.nan
    return float(stats.kendalltau(s, a).statistic)


def top_k_precision(scores: Sequence[float] | np.ndarray, accuracies: Sequence[float] | np.ndarray,
                    fraction: float = 0.1) -> float:
    """Share of the top ``fraction`` of nets by score that are also in the top ``fraction`` by
    accuracy (k = max(1, round(fraction * n)); ties broken by position, stably)."""
    s, a = clean_scores(scores), np.asarray(accuracies, dtype=np.float64)
    if s.size == 0:
        return math.nan
    if np.all(s == s[0]):
        return math.nan
    k = max(1, int(round(fraction * s.size)))
    top_s = np.argsort(-s, kind="stable")[:k]
    top_a = np.argsort(-a, kind="stable")[:k]
    return len(set(top_s.tolist()) & set(top_a.tolist())) / k


def correlations(scores: Sequence[float] | np.ndarray, accuracies: Sequence[float] | np.ndarray) -> dict[str, float]:
    """{"spearman", "kendall", "top10"} of one proxy on one task."""
    return {"spearman": spearman(scores, accuracies), "kendall": kendall(scores, accuracies),
            "top10": top_k_precision(scores, accuracies, 0.1)}


def evaluate_scores(scores: Mapping[str, Sequence[float] | np.ndarray],
                    accuracies: Sequence[float] | np.ndarray) -> dict[str, dict[str, float]]:
    """{proxy: correlations(...)} for several proxies scored on the same nets."""
    return {name: correlations(s, accuracies) for name, s in scores.items()}


def summarise(per_task: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean and worst (minimum) of each metric over tasks, NaN-aware: {"mean_spearman", "worst_spearman", ...}."""
    out: dict[str, float] = {}
    for m in METRICS:
        vals = np.array([t[m] for t in per_task.values() if m in t], dtype=np.float64)
        ok = vals[np.isfinite(vals)]
        has_nan = ok.size < vals.size
        out[f"mean_{m}"] = float(ok.mean()) if ok.size and not has_nan else math.nan
        out[f"worst_{m}"] = float(ok.min()) if ok.size and not has_nan else math.nan
    return out
