"""Ensembles of proxies: the rank average of several proxies' scores over one set of networks.

Rank averaging needs the whole set of candidates (a rank is relative), which is how proxies are
used in NAS: score the candidates, keep the best ranked. Each member's scores are ranked (ties
share their mean rank; a NaN score, a failed evaluation, ranks below every finite one) and the
ranks are averaged. ``experiments/ensemble_study.py`` measures when this helps.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from eznas.errors import EznasError


def rank_average(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Mean rank (1 = lowest score) of each network over the member columns (equal lengths)."""
    if not columns:
        raise EznasError("an ensemble needs at least one member")
    n = len(columns[0])
    if any(len(c) != n for c in columns):
        raise EznasError("ensemble members scored different numbers of networks")
    ranks = [rankdata(np.nan_to_num(np.asarray(c, dtype=np.float64), nan=-np.inf, posinf=np.inf, neginf=-np.inf))
             for c in columns]
    return np.mean(ranks, axis=0)
