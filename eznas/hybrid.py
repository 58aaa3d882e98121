"""Hybrid proxies: a GP over network-level scalar terminals (hand-made proxy scores, params, flops,
evolved programs' scores ...), evolved to rank networks by trained accuracy.

The input is a table per task: a matrix (nets x terminals) of raw per-net values (NaN where a proxy
failed), the nets' accuracies and evolve / validate / test index splits (:class:`HybridTask`).
Every terminal is pre-transformed by the signed log ``sign(x) * log1p(|x|)``
(:func:`eznas.hybrid_expr.transform`: the raw scales differ by 10^6). The search is DEAP's
symbolic-regression recipe: a typed-less primitive set (add, sub, mul, protected div, neg, max, min,
slog, sq and constants from :data:`~eznas.hybrid_expr.CONSTANTS`), ramped half-and-half trees,
one-point crossover, uniform subtree mutation, a tree height limit and ``eaSimple``; selection is
DEAP's double tournament (fitness first, then the smaller of two trees with probability
``parsimony / 2``) so the winners stay readable.

Fitness is Spearman rho on each task's evolve nets, aggregated over tasks by ``min`` (default) or
``mean``; a constant or failed expression scores -1. Each individual is evaluated on all nets of a
split at once (numpy, no loop over nets). The hall of fame is re-scored on the validate nets and the
winner is the best on validate (ties within 0.001: the smaller tree, then the text). Runs are
deterministic per seed: DEAP's ``random`` is seeded here, nothing iterates a set. With ``restarts``
> 1, each seed runs that many independent populations and merges their halls of fame before the
validate choice (less seed-to-seed variance for proportionally more evaluations).

    tasks = [HybridTask("nb301/cifar10", values, acc, {"evolve": e, "validate": v, "test": t})]
    res = search(tasks, terminals, seed=0)
    parse(res.expression)({"params": 1.2e6, "flops": 3e8, ...})   # scores a new net
"""
from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from deap import algorithms, base, creator, gp, tools
from scipy import stats

from eznas.errors import EznasError
from eznas.hybrid_expr import CONSTANTS, PRIMITIVES, Expression, Token, evaluate_tokens, parse, transform

SPLITS = ("evolve", "validate", "test")
AGGREGATES = ("min", "mean")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FAILED = -1.0  # fitness of a constant / failed expression


@dataclass
class HybridTask:
    """One task's table: ``values`` (nets x terminals, raw), ``accuracies`` (nets,), and index arrays
    ``splits[s]`` for s in evolve / validate / test (disjoint, validated by :func:`check_tasks`)."""

    name: str
    values: np.ndarray
    accuracies: np.ndarray
    splits: dict[str, np.ndarray]


@dataclass(frozen=True)
class Settings:
    population: int = 2000
    generations: int = 80
    cxpb: float = 0.5
    mutpb: float = 0.2
    max_height: int = 6
    tournament: int = 4
    parsimony: float = 1.4
    hall_of_fame: int = 20
    aggregate: str = "min"
    restarts: int = 1  # independent populations per seed, halls of fame merged and chosen on validate


@dataclass
class SearchResult:
    expression: str
    size: int
    evolve: float
    validate: float
    seed: int
    evaluations: int
    seconds: float
    hall_of_fame: list[dict] = field(default_factory=list)


def check_tasks(tasks: Sequence[HybridTask], terminals: Sequence[str]) -> None:
    """One EznasError line for a table that does not fit the terminals / splits."""
    if not tasks:
        raise EznasError("hybrid search needs at least one task")
    bad = [t for t in terminals if not _NAME.match(t) or t in PRIMITIVES]
    if bad:
        raise EznasError(f"hybrid terminal names must be identifiers other than the primitives: {bad[0]!r}")
    if len(set(terminals)) != len(terminals):
        raise EznasError("hybrid terminal names repeat")
    for t in tasks:
        if t.values.ndim != 2 or t.values.shape[1] != len(terminals):
            raise EznasError(f"task {t.name}: values must be nets x {len(terminals)} terminals, got {t.values.shape}")
        if t.accuracies.shape != (t.values.shape[0],) or not np.isfinite(t.accuracies).all():
            raise EznasError(f"task {t.name}: need one finite accuracy per net")
        seen: list[np.ndarray] = []
        for s in SPLITS:
            idx = np.asarray(t.splits.get(s, []), dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= len(t.accuracies)):
                raise EznasError(f"task {t.name}: split '{s}' indexes past its {len(t.accuracies)} nets")
            seen.append(idx)
        allidx = np.concatenate(seen)
        if np.unique(allidx).size != allidx.size:
            raise EznasError(f"task {t.name}: the evolve / validate / test splits overlap")
        if len(seen[0]) < 3:
            raise EznasError(f"task {t.name}: at least 3 evolve nets needed")


class _Split:
    """The transformed terminal columns of every task's nets of one split, concatenated, and the
    accuracy ranks per task: one evaluation scores all of them in one numpy pass."""

    def __init__(self, tasks: Sequence[HybridTask], terminals: Sequence[str], split: str) -> None:
        idx = [np.asarray(t.splits[split], dtype=np.int64) for t in tasks]
        mats = [transform(t.values[i]) for t, i in zip(tasks, idx)]
        full = np.concatenate(mats, 0) if mats else np.zeros((0, len(terminals)))
        self.columns = {name: np.ascontiguousarray(full[:, k]) for k, name in enumerate(terminals)}
        self.n = full.shape[0]
        self.bounds = np.cumsum([0] + [len(i) for i in idx])
        self.acc_ranks = [self._centred(stats.rankdata(t.accuracies[i])) for t, i in zip(tasks, idx)]

    @staticmethod
    def _centred(r: np.ndarray) -> np.ndarray:
        r = r - r.mean()
        nrm = np.sqrt((r * r).sum())
        return r / nrm if nrm > 0 else r * np.nan

    def rhos(self, tokens: Sequence[Token]) -> list[float]:
        """Spearman rho of the expression per task (non-finite scores ranked last; NaN if constant)."""
        s = evaluate_tokens(tokens, self.columns, self.n)
        out = []
        for k, ar in enumerate(self.acc_ranks):
            part = s[self.bounds[k]:self.bounds[k + 1]]
            bad = ~np.isfinite(part)
            if bad.all():
                out.append(float("nan"))
                continue
            if bad.any():
                part = np.where(bad, part[~bad].min() - 1.0, part)
            sr = self._centred(stats.rankdata(part))
            out.append(float(np.dot(sr, ar)))
        return out


def aggregate(rhos: Sequence[float], how: str) -> float:
    """min or mean of per-task rho; any NaN (constant scores) -> :data:`FAILED`."""
    if any(not np.isfinite(r) for r in rhos):
        return FAILED
    return float(min(rhos) if how == "min" else np.mean(rhos))


def tree_tokens(tree: gp.PrimitiveTree) -> tuple[Token, ...]:
    out: list[Token] = []
    for node in tree:
        if isinstance(node, gp.Primitive):
            out.append(("prim", node.name, node.arity))
        elif isinstance(node.value, str):
            out.append(("term", node.value, 0))
        else:
            out.append(("const", float(node.value), 0))
    return tuple(out)


def _pset(terminals: Sequence[str]) -> gp.PrimitiveSet:
    pset = gp.PrimitiveSet("hybrid", len(terminals))
    for name, (arity, fn) in PRIMITIVES.items():
        pset.addPrimitive(fn, arity, name=name)
    for c in CONSTANTS:
        pset.addTerminal(c)
    pset.renameArguments(**{f"ARG{k}": t for k, t in enumerate(terminals)})
    return pset


def _creator() -> None:
    if not hasattr(creator, "HybridFitness"):
        creator.create("HybridFitness", base.Fitness, weights=(1.0,))
    if not hasattr(creator, "HybridIndividual"):
        creator.create("HybridIndividual", gp.PrimitiveTree, fitness=creator.HybridFitness)


def search(tasks: Sequence[HybridTask], terminals: Sequence[str], seed: int = 0,
           settings: Settings = Settings()) -> SearchResult:
    """One GP run: evolve on the evolve nets, choose the hall of fame's best on the validate nets."""
    check_tasks(tasks, terminals)
    if settings.aggregate not in AGGREGATES:
        raise EznasError(f"hybrid aggregate must be one of {', '.join(AGGREGATES)}, got {settings.aggregate!r}")
    t0 = time.perf_counter()
    evolve_split, validate_split = _Split(tasks, terminals, "evolve"), _Split(tasks, terminals, "validate")
    memo: dict[tuple[Token, ...], float] = {}

    def fitness(ind: gp.PrimitiveTree) -> tuple[float]:
        key = tree_tokens(ind)
        if key not in memo:
            memo[key] = aggregate(evolve_split.rhos(key), settings.aggregate)
        return (memo[key],)

    _creator()
    pset = _pset(terminals)
    found: dict[str, dict] = {}
    for r in range(max(1, settings.restarts)):
        for ind in _evolve(pset, fitness, settings, seed if r == 0 else f"hybrid:{seed}:{r}"):
            toks = tree_tokens(ind)
            text = str(Expression(toks))
            if text not in found:
                found[text] = {"expression": text, "size": len(toks), "evolve": ind.fitness.values[0],
                              "validate": aggregate(validate_split.rhos(toks), settings.aggregate)}
    rows = sorted(found.values(), key=lambda r: (-round(r["validate"], 3), r["size"], -r["evolve"], r["expression"]))
    best = rows[0]
    return SearchResult(best["expression"], best["size"], best["evolve"], best["validate"], seed, len(memo),
                        time.perf_counter() - t0, rows)


def _evolve(pset: gp.PrimitiveSet, fitness: Callable[[gp.PrimitiveTree], tuple[float]], settings: Settings,
            seed: int | str) -> tools.HallOfFame:
    """DEAP's symbolic-regression recipe; returns the hall of fame. DEAP draws from the module-level
    ``random``: it is seeded here and restored afterwards."""
    state = random.getstate()
    random.seed(seed)
    try:
        tb = base.Toolbox()
        tb.register("expr", gp.genHalfAndHalf, pset=pset, min_=1, max_=3)
        tb.register("individual", tools.initIterate, creator.HybridIndividual, tb.expr)
        tb.register("population", tools.initRepeat, list, tb.individual)
        tb.register("evaluate", fitness)
        tb.register("select", tools.selDoubleTournament, fitness_size=settings.tournament,
                    parsimony_size=settings.parsimony, fitness_first=True)
        tb.register("mate", gp.cxOnePoint)
        tb.register("expr_mut", gp.genFull, min_=0, max_=2)
        tb.register("mutate", gp.mutUniform, expr=tb.expr_mut, pset=pset)
        limit = gp.staticLimit(key=lambda ind: ind.height, max_value=settings.max_height)
        tb.decorate("mate", limit)
        tb.decorate("mutate", limit)
        pop = tb.population(n=settings.population)
        hof = tools.HallOfFame(settings.hall_of_fame)
        algorithms.eaSimple(pop, tb, settings.cxpb, settings.mutpb, settings.generations, halloffame=hof,
                            verbose=False)
    finally:
        random.setstate(state)
    return hof


def split_rhos(expression: str | Expression, tasks: Sequence[HybridTask], terminals: Sequence[str],
               split: str) -> dict[str, float]:
    """{task: Spearman rho of the expression on the task's ``split`` nets}."""
    expr = parse(expression, terminals) if isinstance(expression, str) else expression
    sp = _Split(tasks, terminals, split)
    return dict(zip((t.name for t in tasks), sp.rhos(expr.tokens)))


def task_scores(expression: str | Expression, task: HybridTask, terminals: Sequence[str],
                split: str | None = None) -> np.ndarray:
    """The expression's score of every net of ``task`` (or of its ``split`` nets, in split order)."""
    expr = parse(expression, terminals) if isinstance(expression, str) else expression
    vals = task.values if split is None else task.values[np.asarray(task.splits[split], dtype=np.int64)]
    return expr({t: vals[:, k] for k, t in enumerate(terminals)})


def table(columns: Mapping[str, Sequence[float] | np.ndarray], terminals: Sequence[str]) -> np.ndarray:
    """A (nets x terminals) float matrix from {terminal: per-net values} (missing terminal: NaN)."""
    n = len(next(iter(columns.values())))
    return np.stack([np.asarray(columns[t], dtype=np.float64) if t in columns else np.full(n, np.nan)
                     for t in terminals], 1)


__all__ = ["HybridTask", "Settings", "SearchResult", "search", "split_rhos", "task_scores", "table",
           "check_tasks", "aggregate", "AGGREGATES"]
