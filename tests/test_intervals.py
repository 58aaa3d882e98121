"""Paired bootstrap intervals: seeded, covering, narrowing with n, paired differences tighter."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from eznas import intervals as iv
from eznas.errors import EznasError


def _task(n: int, seed: int, noise: float = 1.0):
    rng = np.random.default_rng(seed)
    acc = rng.normal(size=n)
    good = acc + noise * rng.normal(size=n)
    return acc, good, rng


def _point(scores, acc):
    return {k: float(stats.spearmanr(v, acc).statistic) for k, v in scores.items()}


def test_seeded_and_contains_point():
    acc, good, rng = _task(300, 0)
    scores = {"good": good, "weak": acc + 3 * rng.normal(size=acc.size)}
    point = {"t": _point(scores, acc)}
    a = iv.bootstrap({"t": (scores, acc)}, point, ["weak"], n_boot=300, seed=1)
    b = iv.bootstrap({"t": (scores, acc)}, point, ["weak"], n_boot=300, seed=1)
    c = iv.bootstrap({"t": (scores, acc)}, point, ["weak"], n_boot=300, seed=2)
    assert iv.to_json(a) == iv.to_json(b) and iv.to_json(a) != iv.to_json(c)
    for lab in scores:
        lo, hi = a.tasks["t"][lab]["spearman"]
        assert lo < point["t"][lab] < hi
        tlo, thi = a.tasks["t"][lab]["kendall"]
        assert tlo < float(stats.kendalltau(scores[lab], acc).statistic) < thi
    # one task: the mean is that task
    assert a.summary["good"]["mean_spearman"] == a.tasks["t"]["good"]["spearman"]
    d = a.delta["t"]["good"]
    assert d.reference == "weak" and d.value == pytest.approx(point["t"]["good"] - point["t"]["weak"])
    assert d.interval[0] > 0  # clearly better than the baseline
    assert "weak" not in a.delta["t"]


def test_width_shrinks_with_n_and_coverage():
    widths = {}
    for n in (50, 800):
        acc, good, _ = _task(n, 3)
        r = iv.bootstrap({"t": ({"p": good}, acc)}, {"t": _point({"p": good}, acc)}, [], n_boot=300, seed=0)
        lo, hi = r.tasks["t"]["p"]["spearman"]
        widths[n] = hi - lo
    assert widths[800] < widths[50] / 2.5  # ~ 1/sqrt(n): ratio 4 expected
    # the population Spearman of a bivariate normal with r = 1/sqrt(2): 6/pi * asin(r/2)
    true = 6 / math.pi * math.asin(0.5 / math.sqrt(2))
    covered = 0
    for trial in range(30):
        acc, good, _ = _task(150, 100 + trial)
        r = iv.bootstrap({"t": ({"p": good}, acc)}, {"t": _point({"p": good}, acc)}, [], n_boot=200, seed=trial)
        lo, hi = r.tasks["t"]["p"]["spearman"]
        covered += lo <= true <= hi
    assert covered >= 24  # nominal 95 %: 28.5 of 30


def test_paired_difference_is_tighter_than_the_intervals():
    acc, good, rng = _task(200, 5)
    twin = good + 0.05 * rng.normal(size=acc.size)  # nearly the same ranking
    scores = {"base": good, "twin": twin}
    r = iv.bootstrap({"t": (scores, acc)}, {"t": _point(scores, acc)}, ["base"], n_boot=400, seed=0)
    lo, hi = r.delta["t"]["twin"].interval
    blo, bhi = r.tasks["t"]["base"]["spearman"]
    assert lo < 0 < hi or abs(r.delta["t"]["twin"].value) < 0.01
    assert (hi - lo) < (bhi - blo) / 3


def test_two_tasks_mean_worst_and_degenerate():
    acc1, good1, _ = _task(100, 7, noise=0.5)
    acc2, good2, _ = _task(100, 8, noise=2.0)
    tasks = {"a": ({"p": good1, "flat": np.ones(100)}, acc1), "b": ({"p": good2, "flat": np.ones(100)}, acc2)}
    point = {t: _point({"p": s["p"]}, acc) | {"flat": math.nan} for t, (s, acc) in tasks.items()}
    r = iv.bootstrap(tasks, point, ["flat"], n_boot=200, seed=0)
    mlo, mhi = r.summary["p"]["mean_spearman"]
    wlo, whi = r.summary["p"]["worst_spearman"]
    assert mlo < (point["a"]["p"] + point["b"]["p"]) / 2 < mhi
    assert whi <= mhi and wlo < point["b"]["p"] < whi
    assert all(math.isnan(v) for v in r.tasks["a"]["flat"]["spearman"])  # constant scores: no interval
    assert r.delta["a"] == {}  # no finite baseline, no reference
    with pytest.raises(EznasError, match="at least 2 nets"):
        iv.resample_indices(1, 10, 0)
    with pytest.raises(EznasError, match="scores for"):
        iv.replicate_correlations({"p": np.ones(3)}, np.arange(4.0), iv.resample_indices(4, 5, 0))


def test_replicates_equal_scipy_on_each_resample():
    rng = np.random.default_rng(11)
    acc = np.round(rng.normal(size=60), 1)  # ties in the accuracies
    s = np.where(rng.random(60) < 0.1, np.nan, np.round(acc + rng.normal(size=60), 1))  # ties and failures
    idx = iv.resample_indices(60, 40, 3)
    reps = iv.replicate_correlations({"p": s}, acc, idx)["p"]
    from eznas.metrics import clean_scores

    c = clean_scores(s)
    for b in range(40):
        assert reps["spearman"][b] == pytest.approx(stats.spearmanr(c[idx[b]], acc[idx[b]]).statistic, abs=1e-12)
        assert reps["kendall"][b] == pytest.approx(stats.kendalltau(c[idx[b]], acc[idx[b]]).statistic, abs=1e-12)
