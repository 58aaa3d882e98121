"""Scorer.score with several torch threads runs programs on that many threads (one torch thread
each): the results equal one thread's, in order, with and without the memo, and torch's thread
count is restored."""
from __future__ import annotations

import math
import threading

import numpy as np
import torch

from eznas import scoring
from eznas.scoring import Scorer, ScoringOptions
from eznas.stats import TaskStats

PROGRAMS = ["eig_ratio(A_D)", "svd_ratio(matmul(W, A_D))", "slogdet(add(W, Z_N))", "mean(mul(A_D, gX_D))",
            "not a program(", "std(normalize(W))", "div_s(frob(A_D), sum(W))", "eig_ratio(A_D)"]


def _task(seed: int = 0) -> TaskStats:
    g = torch.Generator().manual_seed(seed)
    nets, units = 12, 3
    values = torch.randn(nets * units, 22, 2, 4, 4, generator=g)
    index = torch.arange(nets).repeat_interleave(units)
    return TaskStats("t/x", [str(i) for i in range(nets)], np.linspace(50, 90, nets), values, None, index)


def _results(threads: int, memo: int) -> list[tuple[float, dict[str, float]]]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = Scorer({"t/x": _task()}, ScoringOptions(memo_bytes=memo)).score(PROGRAMS * 2)
        assert torch.get_num_threads() == threads  # restored after the pool
    finally:
        torch.set_num_threads(before)
    return [(r.fitness, r.per_task) for r in out]


def test_threaded_scoring_equals_one_thread(monkeypatch) -> None:
    names: set[str] = set()
    score_tree = Scorer._score_tree

    def spy(self, tree):
        names.add(threading.current_thread().name)
        return score_tree(self, tree)

    for memo in (0, 64 * 2**20):
        one = _results(1, memo)
        monkeypatch.setattr(scoring.Scorer, "_score_tree", spy)
        many = _results(3, memo)
        monkeypatch.setattr(scoring.Scorer, "_score_tree", score_tree)
        assert [f for f, _ in one] == [f for f, _ in many]
        assert [p for _, p in one] == [p for _, p in many] or all(
            all(math.isnan(a) and math.isnan(b) or a == b for a, b in zip(p.values(), q.values()))
            for (_, p), (_, q) in zip(one, many))
        assert math.isnan(one[4][1]["t/x"])  # the unparsable program is invalid, not an exception
    assert any(n.startswith("eznas-score") for n in names) and len(names) > 1
