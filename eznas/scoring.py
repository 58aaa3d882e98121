"""Scoring programs on tasks' statistics: the one loop behind the search, its reports, transfer and
the studies in ``experiments/``.

infix text -> tree in the primitive set -> per-unit scores (:class:`eznas.program.Evaluator`,
memoised) -> per-network scores (:func:`eznas.fitness.net_scores`) -> rank correlation per task
(:func:`eznas.fitness.correlation`) -> fitness (:func:`eznas.fitness.aggregate`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eznas import program
from eznas.alloc import reuse_freed_memory
from eznas.errors import EznasError
from eznas.expression import Expr
from eznas.fitness import (FITNESS_KINDS, TASK_AGGREGATES, UNIT_AGGREGATES, ProgramResult, UnitLayout, aggregate,
                           check_choice, correlation, net_scores)
from eznas.stats import TaskStats

__all__ = ["MEMO_BYTES", "REPORT_MEMO_BYTES", "ScoringOptions", "Scorer", "score_programs"]

#: memo budget of one process for all its evaluators (every task of the evolve and validate splits):
#: a budget per evaluator grew with the number of tasks (12 tasks x 512 MiB ran a worker out of memory)
MEMO_BYTES = 1 << 30
#: memo budget for scoring a hall of fame once (reports, transfer): few programs, little reuse
REPORT_MEMO_BYTES = 256 * 2**20


@dataclass(frozen=True)
class ScoringOptions:
    """How programs are scored; every field is checked on construction (unknown values raise)."""

    fitness: str = "kendall"  # rank correlation per task: kendall | spearman
    aggregate: str = "min"  # over tasks: min | mean
    unit_aggregate: str = "mean"  # unit scores -> network score: mean | sum | median
    primitive_set: str = "eznas"  # built-in name or YAML path
    memo_bytes: int = MEMO_BYTES  # memo budget shared by the evaluators of one Scorer

    def __post_init__(self) -> None:
        check_choice(self.fitness, FITNESS_KINDS, "fitness kind")
        check_choice(self.aggregate, TASK_AGGREGATES, "task aggregate")
        check_choice(self.unit_aggregate, UNIT_AGGREGATES, "unit aggregate")
        if isinstance(self.memo_bytes, bool) or not isinstance(self.memo_bytes, int) or self.memo_bytes < 0:
            raise EznasError(f"memo_bytes must be a whole number >= 0, got {self.memo_bytes!r}")

    @classmethod
    def from_search(cls, search: Any, **overrides: Any) -> "ScoringOptions":
        """The options of a config's ``search`` section (:class:`eznas.config.SearchConfig`)."""
        base = dict(fitness=search.fitness, aggregate=search.aggregate, unit_aggregate=search.unit_aggregate,
                    primitive_set=search.primitive_set)
        return cls(**{**base, **overrides})


@dataclass
class _Task:
    evaluator: program.Evaluator
    layout: UnitLayout
    stats: TaskStats


class Scorer:
    """Evaluators of a set of tasks (optionally a subsample of nets per task), kept between calls so
    subtrees shared by programs are computed once."""

    def __init__(self, tasks: Mapping[str, TaskStats], options: ScoringOptions,
                 nets: Mapping[str, Sequence[int]] | None = None) -> None:
        self.options = options
        reuse_freed_memory()  # intermediates of many rows would be page-faulted in afresh (eznas.alloc)
        self.pset = program.load_primitive_set(options.primitive_set)
        budget = options.memo_bytes // max(1, len(tasks))
        self.tasks: dict[str, _Task] = {}
        for name, ts in tasks.items():
            sub = ts if nets is None else ts.subset(nets[name])
            self.tasks[name] = _Task(program.Evaluator(sub.values, self.pset, cache_bytes=budget),
                                     UnitLayout.of(sub), sub)

    def parse(self, infix: str) -> Expr:
        """``infix`` parsed in the options' primitive set (EznasError naming the column if it is not)."""
        return program.parse_expression(infix, self.pset)

    def net_scores(self, infix: str) -> dict[str, np.ndarray]:
        """One score per network of every task."""
        tree = self.parse(infix)
        how = self.options.unit_aggregate
        return {name: net_scores(t.evaluator(tree), t.layout, how) for name, t in self.tasks.items()}

    def score(self, infixes: Sequence[str]) -> list[ProgramResult]:
        """Fitness of each program; a program that does not parse or fails on a task is invalid
        there, never an exception.

        With ``torch.get_num_threads()`` > 1 (the serial backend, scripts) the programs run
        concurrently on that many threads, one torch thread each, and the thread count is
        restored afterwards: torch releases the GIL in its kernels; LAPACK's per-block loops
        (``eig_ratio``, ``svd_ratio``, ``slogdet``: most of an ``eznas``-set program's time) leave
        torch's intra-op threads idle; and a multi-threaded op stalls whenever another process
        holds a core (measured on a shared 2-core machine: up to 30x slower), where program
        threads just fall back to one core's speed. Each program's values are those of one torch
        thread, as in a process worker of the search; results are in order."""
        trees = [self._parse_or_none(infix) for infix in infixes]
        threads = min(torch.get_num_threads(), len(trees))
        if threads <= 1:
            return [self._score_tree(tree) for tree in trees]
        before = torch.get_num_threads()
        torch.set_num_threads(1)  # threads started below take the process-wide count on first use
        try:
            with ThreadPoolExecutor(threads, thread_name_prefix="eznas-score") as pool:
                return list(pool.map(self._score_tree, trees))
        finally:
            torch.set_num_threads(before)

    def _parse_or_none(self, infix: str) -> Expr | None:
        try:
            return self.parse(infix)  # once per program, not once per task
        except EznasError:
            return None

    def _score_tree(self, tree: Expr | None) -> ProgramResult:
        per_task: dict[str, float] = {}
        for name, t in self.tasks.items():
            per_task[name] = math.nan if tree is None else self._correlation(tree, t)
        return ProgramResult(aggregate(list(per_task.values()), self.options.aggregate), per_task)

    def _correlation(self, tree: Expr, t: _Task) -> float:
        try:
            scores = net_scores(t.evaluator(tree), t.layout, self.options.unit_aggregate)
            return correlation(scores, t.stats.accuracies, self.options.fitness)
        except EznasError:
            raise
        except Exception:  # noqa: BLE001 - a broken program must not stop a generation
            return math.nan

    def correlations(self, infixes: Sequence[str]) -> list[dict[str, dict[str, Any]]]:
        """Spearman, Kendall and the number of nets per task for each program (for reports)."""
        out = []
        for infix in infixes:
            per_task = {}
            for name, scores in self.net_scores(infix).items():
                acc = self.tasks[name].stats.accuracies
                per_task[name] = {"spearman": correlation(scores, acc, "spearman"),
                                  "kendall": correlation(scores, acc, "kendall"), "nets": len(acc)}
            out.append(per_task)
        return out


def score_programs(infixes: Sequence[str], tasks: Mapping[str, TaskStats], options: ScoringOptions,
                   nets: Mapping[str, Sequence[int]] | None = None) -> list[ProgramResult]:
    """Fitness of each program on ``tasks`` (optionally a subsample of nets per task); see
    :meth:`Scorer.score`. Keep a :class:`Scorer` instead to reuse its memo across calls."""
    return Scorer(tasks, options, nets).score(infixes)
