"""Zero-shot search: spend a budget of proxy evaluations on candidate architectures, keep the best.

The core is a scorer ``score(arch) -> float`` (or several: their rank ensemble); how an arch becomes
a network is the caller's business (``build=`` does the common case). Two strategies:

``random``
    Score ``budget`` distinct candidates drawn uniformly, pick the best (NASWOT, Mellor et al. 2021).
``evolution``
    Regularised (aging) evolution (Real et al. 2019): a population of ``population`` cells starts
    from random distinct cells; each step draws ``sample_size`` members without replacement, mutates
    the best of them (``mutate(arch, rng)``, e.g. one edge) and the child replaces the oldest
    member. A child that was already scored reuses its score (it joins the population at no cost),
    so the budget counts distinct cells: exactly ``budget`` cells are scored unless the space runs
    out. The pick is the best cell scored at any time, not the best survivor.

Several proxies (a rank ensemble): each proxy's scores are ranked among all cells scored so far
(1 = lowest, ties share their mean rank, :func:`eznas.ensemble.rank_average`) and a cell's utility
is its mean rank. It is recomputed whenever it is used: a tournament compares its members by their
mean rank within the current scored set, and the pick is the top mean rank over every scored cell.
With one proxy the utility is the score itself. Ties go to the cell scored first. A set-level proxy
(AZ-NAS: its four components ranked within the scored cells and combined) is several scorers that
share a ``group`` and a ``combine`` (:class:`Scorer`); its utility is recomputed over the scored cells
in the same way, and it counts as one proxy in an ensemble.

A proxy that raises or returns a non-finite number on a cell makes that cell a failure: it uses one
unit of budget, is never picked, and is listed in :attr:`SearchResult.failures`.
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from eznas.errors import EznasError
from eznas.nas.cache import ScoreCache
from eznas.progress import progress as progress_bar

STRATEGIES = ("random", "evolution")
#: consecutive draws that yield only known cells before ``sample`` is taken as exhausted
MAX_STALE_DRAWS = 10_000
#: evolution steps that produce only known children before a fresh random cell is drawn instead
MAX_STALE_CHILDREN = 1_000

Arch = Hashable


#: a set-level proxy's combination: the (cells x components) score matrix -> one utility per cell
Combine = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Scorer:
    """One proxy as the search sees it: ``fn(arch) -> float``, its ``name`` in reports, and its
    ``key`` in a score cache (default: the name). The key must change whenever the scores would.

    ``group`` / ``combine``: scorers that are the components of one set-level proxy (e.g. AZ-NAS's
    four) share a ``group`` name and a ``combine`` function; the group's utility over the scored
    cells is ``combine(matrix)`` (matrix columns in the scorers' order), recomputed as cells arrive."""

    name: str
    fn: Callable[[Any], float]
    key: str | None = None
    group: str | None = None
    combine: Combine | None = None

    @property
    def proxy(self) -> str:
        """The proxy this scorer counts for in an ensemble: its group, else itself."""
        return self.group if self.group is not None else self.name

    @property
    def cache_key(self) -> str:
        return self.key if self.key is not None else self.name


@dataclass(frozen=True)
class Failure:
    arch: Any
    proxy: str
    error: str


@dataclass(frozen=True)
class Step:
    """One scored cell: ``n`` cells scored so far (this one included), its scores per proxy (None
    when it failed), and the pick so far with its utility (score, or mean rank for an ensemble)."""

    n: int
    arch: Any
    scores: dict[str, float] | None
    best_arch: Any
    best_score: float


@dataclass
class SearchResult:
    arch: Any  #: the picked architecture
    score: float  #: its proxy score (one proxy) or mean rank among the scored cells (ensemble)
    scores: dict[str, float]  #: its score per proxy
    strategy: str
    seed: int
    budget: int
    proxies: list[str]
    history: list[Step] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    n_computed: int = 0  #: proxy evaluations actually run (the rest came from the cache)
    wall_s: float = 0.0
    score_s: float = 0.0  #: time spent in proxy evaluations that were run
    stopped_early: str | None = None

    @property
    def n_scored(self) -> int:
        return len(self.history)

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    @property
    def n_cached(self) -> int:
        return self.n_scored - self.n_computed

    @property
    def seconds_per_cell(self) -> float:
        return self.score_s / self.n_computed if self.n_computed else math.nan

    def scored(self) -> list[tuple[Any, dict[str, float]]]:
        """Every cell scored successfully with its scores, in scoring order."""
        return [(s.arch, s.scores) for s in self.history if s.scores is not None]


def _name_of(fn: Any) -> str:
    return str(getattr(fn, "proxy_name", None) or getattr(fn, "__name__", None) or type(fn).__name__)


def as_scorers(proxy: Any, build: Callable[[Any], Any] | None = None,
               batch: tuple[Any, ...] | None = None) -> list[Scorer]:
    """Normalise ``proxy`` (a callable, a :class:`Scorer`, a sequence of them, or a mapping name ->
    callable) into scorers of archs. With ``build``, each proxy receives ``build(arch)`` (built once
    per arch and shared by the proxies), followed by the ``batch`` tensors when given, e.g. an
    eznas proxy ``proxy(model, inputs, targets)`` with ``batch=(inputs, targets)``."""
    if isinstance(proxy, Scorer) or (callable(proxy) and not isinstance(proxy, Mapping)):
        items: list[Scorer | tuple[str, Any]] = [proxy]  # type: ignore[list-item]
    elif isinstance(proxy, Mapping):
        items = [(str(k), v) for k, v in proxy.items()]
    elif isinstance(proxy, Sequence) and not isinstance(proxy, (str, bytes)):
        items = list(proxy)
    else:
        raise EznasError("proxy must be a callable, a Scorer, or a list or dict of them")
    if not items:
        raise EznasError("give at least one proxy")
    scorers: list[Scorer] = []
    for it in items:
        if isinstance(it, Scorer):
            scorers.append(it)
        elif isinstance(it, tuple):
            if not callable(it[1]):
                raise EznasError(f"proxy {it[0]!r} is not callable")
            scorers.append(Scorer(it[0], it[1]))
        elif callable(it):
            scorers.append(Scorer(_name_of(it), it))
        else:
            raise EznasError(f"proxy {it!r} is not callable")
    names = [s.name for s in scorers]
    if len(set(names)) != len(names):
        raise EznasError(f"proxy names must differ, got {', '.join(names)}; pass a dict to name them")
    if build is None:
        if batch is not None:
            raise EznasError("batch= needs build= (the proxies then receive the built network and the batch)")
        return scorers
    memo: dict[str, Any] = {}

    def model_of(arch: Any) -> Any:
        if memo.get("arch", _MISSING) != arch:  # one slot: the proxies of one arch share the network
            memo.clear()
            memo["model"] = build(arch)
            memo["arch"] = arch
        return memo["model"]

    extra = tuple(batch) if batch is not None else ()
    return [replace(s, fn=(lambda a, f=s.fn: f(model_of(a), *extra))) for s in scorers]


_MISSING = object()


class _Scored:
    """Cells scored so far and their utilities (score, or mean rank for an ensemble)."""

    def __init__(self, names: list[str], scorers: Sequence[Scorer] | None = None) -> None:
        self.names = names
        self.groups: list[tuple[list[int], Combine | None]] = []  # column indices per proxy, in order
        seen: dict[str, int] = {}
        for j, sc in enumerate(scorers or [Scorer(n, float) for n in names]):
            if sc.proxy not in seen:
                seen[sc.proxy] = len(self.groups)
                self.groups.append(([], sc.combine))
            self.groups[seen[sc.proxy]][0].append(j)
        self.archs: list[Any] = []
        self.pos: dict[Any, int] = {}
        self.rows: list[list[float]] = []
        self._utility: np.ndarray | None = None

    def add(self, arch: Any, scores: dict[str, float]) -> None:
        self.pos[arch] = len(self.archs)
        self.archs.append(arch)
        self.rows.append([scores[n] for n in self.names])
        self._utility = None

    def utility(self) -> np.ndarray:
        if self._utility is None:
            table = np.asarray(self.rows, dtype=np.float64).reshape(len(self.rows), len(self.names))
            cols = [self._group_utility(table, cols, combine) for cols, combine in self.groups]
            if len(cols) == 1:
                self._utility = cols[0]
            else:
                from eznas.ensemble import rank_average

                self._utility = rank_average(cols)
        return self._utility

    @staticmethod
    def _group_utility(table: np.ndarray, cols: list[int], combine: Combine | None) -> np.ndarray:
        if combine is None:
            if len(cols) != 1:
                raise EznasError("scorers that share a group need a combine function")
            return table[:, cols[0]]
        if table.shape[0] < 2:  # a set-level proxy ranks cells against each other: one cell has no rank
            return np.zeros(table.shape[0])
        return np.asarray(combine(table[:, cols]), dtype=np.float64)

    def best(self) -> tuple[Any, float]:
        u = self.utility()
        i = int(np.argmax(u))  # first maximum: ties go to the cell scored first
        return self.archs[i], float(u[i])


class _Search:
    def __init__(self, scorers: list[Scorer], sample: Any, mutate: Callable[[Any, np.random.Generator], Any] | None,
                 budget: int, rng: np.random.Generator, cache: ScoreCache | None, bar: Any) -> None:
        self.scorers, self.mutate, self.budget, self.rng, self.cache, self.bar = scorers, mutate, budget, rng, cache, bar
        self.scored = _Scored([s.name for s in scorers], scorers)
        self.failed: set[Any] = set()
        self.history: list[Step] = []
        self.failures: list[Failure] = []
        self.n_computed = 0
        self.score_s = 0.0
        self.stopped_early: str | None = None
        if callable(sample):
            self._sample_fn: Callable[[np.random.Generator], Any] | None = sample
            self._order: list[Any] | None = None
        else:
            self._sample_fn = None
            cands = list(sample)
            self._order = [cands[i] for i in rng.permutation(len(cands))]  # uniform, without replacement
            self._next = 0

    @property
    def done(self) -> bool:
        return len(self.history) >= self.budget or self.stopped_early is not None

    def known(self, arch: Any) -> bool:
        return arch in self.scored.pos or arch in self.failed

    def draw_new(self) -> Any:
        """A uniformly drawn cell not scored yet, or _MISSING when the candidates are used up."""
        if self._order is not None:
            while self._next < len(self._order):
                arch = self._order[self._next]
                self._next += 1
                if not self.known(arch):
                    return arch
        else:
            assert self._sample_fn is not None
            for _ in range(MAX_STALE_DRAWS):
                arch = self._sample_fn(self.rng)
                if not self.known(arch):
                    return arch
        self.stopped_early = "no unscored candidate left" if self._order is not None else \
            f"sample() returned only scored cells {MAX_STALE_DRAWS} times in a row"
        return _MISSING

    def _one(self, s: Scorer, arch: Any, text: str) -> tuple[float | None, str | None, bool]:
        """(score, error, whether the proxy ran) of one proxy on one cell, from the cache if there."""
        if self.cache is not None:
            hit = self.cache.get(s.cache_key, text)
            if hit is not None:
                return hit.value, hit.error, False
        t0 = time.perf_counter()
        try:
            value: float | None = float(s.fn(arch))
            error = None if math.isfinite(value) else f"returned {value}"
        except Exception as e:  # noqa: BLE001 - any proxy failure on a cell is skipped and reported
            value, error = None, f"{type(e).__name__}: {e}".splitlines()[0][:300]
        self.score_s += time.perf_counter() - t0
        if error is not None:
            value = None
        if self.cache is not None:
            self.cache.put(s.cache_key, text, value=value, error=error)
        return value, error, True

    def evaluate(self, arch: Any) -> bool:
        """Score a new cell with every proxy (stopping at the first failure); True if it succeeded."""
        text = str(arch)
        scores: dict[str, float] = {}
        computed = False
        failure: Failure | None = None
        for s in self.scorers:
            value, error, ran = self._one(s, arch, text)
            computed = computed or ran
            if error is not None or value is None:
                failure = Failure(arch, s.name, error or "failed")
                break
            scores[s.name] = value
        self.n_computed += int(computed)
        if failure is not None:
            self.failed.add(arch)
            self.failures.append(failure)
        else:
            self.scored.add(arch, scores)
        if self.scored.archs:
            best, best_u = self.scored.best()
        else:
            best, best_u = None, math.nan
        self.history.append(Step(len(self.history) + 1, arch, scores if failure is None else None, best, best_u))
        self.bar.update(1)
        return failure is None

    # ------------------------------------------------------------------------------ strategies
    def run_random(self) -> None:
        while not self.done:
            arch = self.draw_new()
            if arch is _MISSING:
                return
            self.evaluate(arch)

    def run_evolution(self, population: int, sample_size: int, max_stale: int = MAX_STALE_CHILDREN) -> None:
        assert self.mutate is not None
        pop: deque[Any] = deque()
        stale = 0
        while not self.done:
            if len(pop) < population:
                arch = self.draw_new()
                if arch is _MISSING:
                    return
                if self.evaluate(arch):
                    pop.append(arch)
                continue
            members = [pop[i] for i in self.rng.choice(len(pop), size=sample_size, replace=False)]
            u = self.scored.utility()
            parent = max(members, key=lambda a: u[self.scored.pos[a]])  # first of equals wins
            child = self.mutate(parent, self.rng)
            if self.known(child):
                stale += 1
                if child in self.scored.pos:  # already scored: it ages the population at no cost
                    pop.append(child)
                    pop.popleft()
                if stale < max_stale:
                    continue
                child = self.draw_new()  # the neighbourhood looks exhausted: restart from a random cell
                if child is _MISSING:
                    return
            stale = 0
            if self.evaluate(child):
                pop.append(child)
                pop.popleft()


def search(proxy: Any, sample: Callable[[np.random.Generator], Any] | Sequence[Any],
           mutate: Callable[[Any, np.random.Generator], Any] | None = None, budget: int = 100, seed: int = 0, *,
           build: Callable[[Any], Any] | None = None, batch: tuple[Any, ...] | None = None,
           strategy: str = "random", population: int = 20, sample_size: int = 5,
           cache: ScoreCache | str | Any = None, progress: bool = False,
           max_stale_children: int = MAX_STALE_CHILDREN) -> SearchResult:
    """Search for the architecture the proxy (or the rank ensemble of several) scores best.

    ``proxy``: ``score(arch) -> float``, a :class:`Scorer`, or a list / dict of them; with ``build``
    each gets ``build(arch)`` (then ``*batch``) instead of the arch. ``sample``: ``sample(rng) ->
    arch`` or a sequence of candidate archs (drawn uniformly without replacement). ``mutate(arch,
    rng) -> arch`` is needed by ``strategy="evolution"``. ``budget``: cells to score (failures
    included). Archs must be hashable, and ``str(arch)`` must identify one when ``cache`` (a
    :class:`ScoreCache` or a JSON path) is used; proxies then need stable names (a dict's keys).
    ``rng`` is ``numpy.random.default_rng(seed)``: the same seed and scores give the same pick.
    ``max_stale_children``: evolution steps whose child was already scored, in a row, before a fresh
    random cell is drawn instead (lower it for a sparse candidate pool, where most children are known).
    """
    if strategy not in STRATEGIES:
        raise EznasError(f"unknown strategy '{strategy}'; valid: {', '.join(STRATEGIES)}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise EznasError(f"the budget must be an integer >= 1, got {budget!r}")
    if not callable(sample):
        if isinstance(sample, (str, bytes)) or not isinstance(sample, Sequence):
            raise EznasError("sample must be a function sample(rng) -> arch or a sequence of candidates")
        if budget > len(sample):
            raise EznasError(f"the budget {budget} exceeds the {len(sample)} candidates")
    if isinstance(max_stale_children, bool) or not isinstance(max_stale_children, int) or max_stale_children < 1:
        raise EznasError(f"max_stale_children must be an integer >= 1, got {max_stale_children!r}")
    if strategy == "evolution":
        if mutate is None or not callable(mutate):
            raise EznasError("strategy 'evolution' needs mutate(arch, rng) -> arch")
        if isinstance(population, bool) or not isinstance(population, int) or population < 2:
            raise EznasError(f"the population must be an integer >= 2, got {population!r}")
        if isinstance(sample_size, bool) or not isinstance(sample_size, int) or not 1 <= sample_size <= population:
            raise EznasError(f"the sample size must be in 1..population ({population}), got {sample_size!r}")
    scorers = as_scorers(proxy, build, batch)
    store: ScoreCache | None
    if cache is None or isinstance(cache, ScoreCache):
        store = cache
    else:
        store = ScoreCache(cache)
    if store is not None:
        bad = [s.name for s in scorers if s.key is None and s.name in ("<lambda>", "function")]
        if bad:
            raise EznasError("name the proxies (pass a dict name -> proxy) to cache their scores")
    t0 = time.perf_counter()
    bar = progress_bar(total=budget, desc=f"nas {strategy}", unit="net", disable=not progress)
    run = _Search(scorers, sample, mutate, budget, np.random.default_rng(seed), store, bar)
    try:
        if strategy == "random":
            run.run_random()
        else:
            run.run_evolution(population, sample_size, max_stale_children)
    finally:
        bar.close()
        if store is not None:
            store.flush()
    if not run.scored.archs:
        first = run.failures[0].error if run.failures else "nothing was scored"
        raise EznasError(f"every one of the {len(run.history)} cells scored failed; first error: {first}")
    arch, utility = run.scored.best()
    row = run.scored.rows[run.scored.pos[arch]]
    return SearchResult(arch=arch, score=utility, scores=dict(zip(run.scored.names, row)), strategy=strategy,
                        seed=seed, budget=budget, proxies=run.scored.names, history=run.history,
                        failures=run.failures, n_computed=run.n_computed, wall_s=time.perf_counter() - t0,
                        score_s=run.score_s, stopped_early=run.stopped_early)
