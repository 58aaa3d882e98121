"""``python -m eznas.evolve config.yaml [--resume RUN_DIR]``: the (mu + lambda) GP search.

Data flow: config -> tasks and splits -> statistics cache (built if missing) -> DEAP typed GP
over the cached tensors -> run directory::

    config.yaml          the resolved configuration
    log.csv              one row per generation
    checkpoint.json      population (infix) + fitness + RNG states + hall of fame, every generation
    timings.json         wall-clock seconds per generation (kept out of the byte-reproducible files)
    .lock                the pid of the run writing here (eznas.runlock), while it runs
    hall_of_fame.json    best programs by validation fitness, with test-split correlations
    best.txt             the best program as one-line infix (`eznas export` adds LaTeX)
    fitness.png          fitness over generations
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import math
import operator
import random
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from deap import algorithms, base, creator, gp, tools

from eznas import config as config_mod
from eznas import parallel, program, variation
from eznas.atomic import atomic_write, atomic_write_text
from eznas.checkpoint import RunState, load_checkpoint, save_checkpoint  # noqa: F401 (re-exported)
from eznas.errors import EznasError
from eznas.fitness import INVALID, ProgramResult
from eznas.progress import progress as progress_bar
from eznas.runlock import RunLock
from eznas.scoring import REPORT_MEMO_BYTES, Scorer, ScoringOptions
from eznas.stats import StatsSettings, TaskStats, build_cache, config_jobs, default_cache_dir, load_task_stats

LOG_FIELDS = ["gen", "evals", "invalid", "best", "mean", "median", "best_validate", "evals_per_s",
              "size_mean", "size_max", "seconds"]

if not hasattr(creator, "EznasFitness"):
    creator.create("EznasFitness", base.Fitness, weights=(1.0,))
    creator.create("EznasIndividual", gp.PrimitiveTree, fitness=creator.EznasFitness)


# ----------------------------------------------------------------------------- toolbox
def make_toolbox(pset: program.PrimitiveSet, cfg: config_mod.SearchConfig) -> base.Toolbox:
    """DEAP toolbox in the shape of DEAP's own GP examples."""
    ps = pset.pset
    tb = base.Toolbox()
    tb.register("expr", program.random_tree, ps, min_depth=cfg.init_min_depth, max_depth=cfg.init_max_depth)
    tb.register("individual", tools.initIterate, creator.EznasIndividual, tb.expr)
    if cfg.selection == "tournament":
        tb.register("select", tools.selTournament, tournsize=cfg.tournament)
    elif cfg.selection == "double_tournament":  # bloat control: the smaller of two programs wins more often
        tb.register("select", tools.selDoubleTournament, fitness_size=cfg.tournament,
                    parsimony_size=cfg.parsimony, fitness_first=True)
    else:  # truncation: the mu best of parents + offspring
        tb.register("select", tools.selBest)
    tb.register("mate", variation.cx_one_point)  # DEAP's cxOnePoint draws from a set: address-dependent
    tb.register("expr_mut", gp.genFull, min_=0, max_=2)
    tb.register("mutate", _mutate, expr=tb.expr_mut, pset=ps)
    limit = gp.staticLimit(key=operator.attrgetter("height"), max_value=cfg.max_depth)
    tb.decorate("mate", limit)
    tb.decorate("mutate", limit)
    return tb


def _mutate(ind: gp.PrimitiveTree, expr: Any, pset: gp.PrimitiveSetTyped) -> tuple[gp.PrimitiveTree]:
    """Uniform subtree mutation, node replacement or shrink, chosen at random."""
    r = random.random()
    if r < 0.6:
        return gp.mutUniform(ind, expr=expr, pset=pset)
    if r < 0.85:
        return gp.mutNodeReplacement(ind, pset=pset)
    return gp.mutShrink(ind)


# ----------------------------------------------------------------------------- data
@dataclass
class SearchData:
    splits: dict[str, dict[str, TaskStats]]  # split -> task name -> stats (test: loaded at the end)
    published: dict[str, dict[str, dict[str, np.ndarray]]]  # split -> task -> proxy -> scores
    tasks: dict[str, dict[str, Any]]  # task name -> split -> records.Task
    cfg: config_mod.Config

    @classmethod
    def for_config(cls, cfg: config_mod.Config, build: Sequence[str] = (), skip_tasks: Collection[str] = (),
                   progress: bool = False) -> "SearchData":
        """The config's tasks and their splits (fixed by its seed); statistics load per split on first
        use. ``build`` names splits whose missing statistics are computed now; ``skip_tasks`` names
        tasks (``space/dataset``) to leave out."""
        jobs, by_task = config_jobs(cfg, splits=tuple(build))
        if skip_tasks:
            by_task = {name: parts for name, parts in by_task.items() if name not in skip_tasks}
            jobs = [j for j in jobs if f"{j[1].space}/{j[1].dataset}" in by_task]
        if build:
            rep = build_cache(jobs, default_cache_dir(cfg), cfg.data_dir, workers=cfg.stats.workers,
                              progress=progress, backend=cfg.stats.backend, device=cfg.device,
                              ray_address=cfg.ray_address)
            if rep.computed:
                print(f"statistics: computed {rep.computed} nets in {rep.seconds:.1f} s, reused {rep.reused}")
        return cls({}, {}, by_task, cfg)

    def load(self, split: str) -> dict[str, TaskStats]:
        """Stack one split's statistics from the cache (once)."""
        if split not in self.splits:
            cache = default_cache_dir(self.cfg)
            self.splits[split], self.published[split] = {}, {}
            for name, parts in self.tasks.items():
                task = parts[split]
                if len(task) == 0:
                    continue
                st = StatsSettings.from_config(self.cfg, task.space, task.dataset)
                self.splits[split][name] = load_task_stats(task, st, cache)
                self.published[split][name] = task.published
        return self.splits[split]


def prepare(cfg: config_mod.Config, progress: bool = True) -> SearchData:
    """Build missing statistics and load the evolve and validate splits (test waits for the report)."""
    data = SearchData.for_config(cfg, build=("evolve", "validate", "test"), progress=progress)
    data.load("evolve")
    data.load("validate")
    return data


def subsample(data: dict[str, TaskStats], n: int | None, rng: np.random.Generator) -> dict[str, list[int]]:
    """Nets per task for one generation (all if n is None or not smaller than the task)."""
    out = {}
    for name, ts in data.items():
        if n is None or n >= ts.n_nets:
            out[name] = list(range(ts.n_nets))
        else:
            out[name] = sorted(int(i) for i in rng.choice(ts.n_nets, size=n, replace=False))
    return out


# ----------------------------------------------------------------------------- the search
class Search:
    def __init__(self, cfg: config_mod.Config, run_dir: Path, data: SearchData, progress: bool = True):
        self.cfg, self.run_dir, self.data, self.progress = cfg, run_dir, data, progress
        self.pset = program.load_primitive_set(cfg.search.primitive_set)
        self.toolbox = make_toolbox(self.pset, cfg.search)
        sc = cfg.search
        self.options = ScoringOptions.from_search(sc)
        self.backend = parallel.make_backend(sc.backend, sc.workers, parallel.SearchState(
            {"evolve": data.splits["evolve"], "validate": data.splits["validate"]}, self.options),
            ray_address=cfg.ray_address)

    def close(self) -> None:
        self.backend.close()

    # evaluation -----------------------------------------------------------
    def evaluate(self, infixes: list[str], split: str, nets: dict[str, list[int]] | None) -> list[ProgramResult]:
        return self.backend.evaluate(infixes, split, nets)

    def _tree(self, infix: str) -> gp.PrimitiveTree:
        return creator.EznasIndividual(program.parse_infix(infix, self.pset.pset))

    def initial_population(self) -> tuple[list[str], list[float]]:
        """mu individuals, valid ones only (as EZNAS): invalid draws are replaced."""
        pop: list[str] = []
        fit: list[float] = []
        mu = self.cfg.search.population
        tries = 0
        seed = self.cfg.seed if self.cfg.search.seed is None else self.cfg.search.seed
        nets = subsample(self.data.splits["evolve"], self.cfg.search.subsample, np.random.default_rng(seed))
        while len(pop) < mu:
            batch = [program.to_infix(self.toolbox.individual()) for _ in range(mu - len(pop))]
            tries += len(batch)
            for inf, res in zip(batch, self.evaluate(batch, "evolve", nets)):
                if res.valid and inf not in pop:
                    pop.append(inf)
                    fit.append(res.fitness)
            if tries > 200 * mu:
                raise EznasError(f"could not draw {mu} valid initial programs in {tries} tries; "
                                 f"check the primitive set '{self.cfg.search.primitive_set}'")
        return pop, fit

    def _update_hall(self, st: RunState, pop: list[str], fit: list[float]) -> None:
        k = self.cfg.search.hall_of_fame
        known = {h["infix"] for h in st.hall}
        order = np.argsort(-np.asarray(fit), kind="stable")
        cands = []
        for i in order:
            if pop[i] not in known and pop[i] not in cands and fit[i] > INVALID:
                cands.append(pop[i])
            if len(cands) >= k:
                break
        if cands:
            for inf, res in zip(cands, self.evaluate(cands, "validate", None)):
                st.hall.append({"infix": inf, "evolve": fit[pop.index(inf)], "validate": res.fitness,
                                "validate_per_task": res.per_task})
        st.hall.sort(key=lambda h: (-h["validate"], -h["evolve"], h["infix"]))
        del st.hall[k:]

    def run(self, st: RunState | None) -> RunState:
        sc = self.cfg.search
        if st is None:
            seed = self.cfg.seed if sc.seed is None else sc.seed
            random.seed(seed)
            np_rng = np.random.default_rng(seed + 1)
            t0 = time.perf_counter()
            pop, fit = self.initial_population()
            st = RunState(0, pop, fit, py_rng=None, np_rng=np_rng.bit_generator.state)
            st.evals += len(pop)
            self._update_hall(st, pop, fit)
            st.seconds += time.perf_counter() - t0
            self._log(st, len(pop), 0, time.perf_counter() - t0)
            st.py_rng = random.getstate()
            save_checkpoint(self.run_dir, st)
        random.setstate(st.py_rng)
        np_rng = np.random.default_rng()
        np_rng.bit_generator.state = st.np_rng
        bar = progress_bar(total=sc.generations, initial=st.gen, desc="generations", unit="gen",
                           disable=not self.progress)  # periodic lines when stderr is not a terminal
        while st.gen < sc.generations and not st.done:
            t0 = time.perf_counter()
            parents = [self._tree(s) for s in st.population]
            for ind, f in zip(parents, st.fitness):
                ind.fitness.values = (f,)
            offspring = algorithms.varOr(parents, self.toolbox, sc.offspring, sc.cxpb, sc.mutpb)
            nets = subsample(self.data.splits["evolve"], sc.subsample, np_rng)
            if sc.subsample is not None:  # fresh nets: everybody is judged on the same sample
                todo = parents + offspring
            else:
                todo = [o for o in offspring if not o.fitness.valid]
            infixes = [program.to_infix(t) for t in todo]
            results = self.evaluate(infixes, "evolve", nets)
            invalid = 0
            for ind, res in zip(todo, results):
                ind.fitness.values = (res.fitness,)
                invalid += not res.valid
            chosen = self.toolbox.select(parents + offspring, sc.population)
            st.population = [program.to_infix(t) for t in chosen]
            st.fitness = [t.fitness.values[0] for t in chosen]
            st.gen += 1
            st.evals += len(todo)
            prev = st.best_validate
            self._update_hall(st, st.population, st.fitness)
            best_val = st.hall[0]["validate"] if st.hall else -math.inf
            if best_val > prev + 1e-12:
                st.best_validate, st.stale = best_val, 0
            else:
                st.stale += 1
            if sc.patience is not None and st.stale >= sc.patience:
                st.done = True
            dt = time.perf_counter() - t0
            st.seconds += dt
            self._log(st, len(todo), invalid, dt)
            st.py_rng = random.getstate()
            st.np_rng = np_rng.bit_generator.state
            save_checkpoint(self.run_dir, st)
            bar.update()
            bar.set_postfix(best=f"{max(st.fitness):.3f}", median=f"{float(np.median(st.fitness)):.3f}",
                            val=f"{best_val:.3f}")
        bar.close()
        st.done = True
        save_checkpoint(self.run_dir, st)
        return st

    def _log(self, st: RunState, evals: int, invalid: int, dt: float) -> None:
        sizes = [len(self._tree(s)) for s in st.population]
        f = np.asarray(st.fitness)
        row = {"gen": st.gen, "evals": evals, "invalid": invalid, "best": float(f.max()), "mean": float(f.mean()),
               "median": float(np.median(f)), "best_validate": st.hall[0]["validate"] if st.hall else math.nan,
               "evals_per_s": evals / dt if dt > 0 else math.nan, "size_mean": float(np.mean(sizes)),
               "size_max": int(max(sizes)), "seconds": dt}
        st.log.append(row)

        def write(fh: Any) -> None:
            w = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
            w.writeheader()
            w.writerows(st.log)

        atomic_write(self.run_dir / "log.csv", write)


# ----------------------------------------------------------------------------- reporting
def test_report(search: Search, st: RunState) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Hall of fame with test-split Spearman and Kendall per task, next to published baselines."""
    from eznas.fitness import correlation

    test = search.data.load("test")
    pub = search.data.published["test"]
    out = []
    scorer = Scorer(test, dataclasses.replace(search.options, memo_bytes=REPORT_MEMO_BYTES))
    per_program = scorer.correlations([h["infix"] for h in st.hall])
    for h, per_task in zip(st.hall, per_program):
        tree = program.parse_infix(h["infix"], search.pset.pset)
        out.append(dict(h, size=len(tree), height=tree.height, test=per_task))
    baselines = {}
    for name, ts in test.items():
        baselines[name] = {p: {"spearman": correlation(v, ts.accuracies, "spearman"),
                               "kendall": correlation(v, ts.accuracies, "kendall")}
                           for p, v in pub.get(name, {}).items() if np.isfinite(v).all()}
    return out, baselines


def write_outputs(search: Search, st: RunState) -> dict[str, Any]:
    run_dir = search.run_dir
    hall, baselines = test_report(search, st)
    atomic_write_text(run_dir / "hall_of_fame.json", json.dumps({"hall_of_fame": hall,
                                                             "published_baselines_test": baselines}, indent=2))
    if hall:
        atomic_write_text(run_dir / "best.txt", hall[0]["infix"] + "\n")
    _plot(run_dir, st)
    return {"hall": hall, "baselines": baselines}


def _plot(run_dir: Path, st: RunState) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = [r["gen"] for r in st.log]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("best", "median", "best_validate"):
        ax.plot(g, [r[key] for r in st.log], label=key)
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "fitness.png", dpi=100)
    plt.close(fig)


def print_summary(result: dict[str, Any], st: RunState) -> None:
    hall = result["hall"]
    print(f"generations {st.gen}, evaluations {st.evals}, search time {st.seconds:.1f} s "
          f"({st.evals / max(st.seconds, 1e-9):.1f} programs/s)")
    if not hall:
        print("no valid program found")
        return
    best = hall[0]
    print(f"best program (validation fitness {best['validate']:.4f}):\n  {best['infix']}")
    print("test split:           spearman  kendall   | published params / nwot (spearman)")
    for name, r in best["test"].items():
        b = result["baselines"].get(name, {})
        extra = " / ".join(f"{b[p]['spearman']:.3f}" if p in b else "n/a" for p in ("params", "nwot"))
        print(f"  {name:22s} {r['spearman']:7.3f}  {r['kendall']:7.3f}   | {extra}")


def run(cfg: config_mod.Config, run_dir: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    if cfg.split.validate < 2:
        raise EznasError(f"config key 'split.validate': a search needs >= 2 validation nets per task (a rank "
                         f"correlation picks the hall of fame), got {cfg.split.validate}")
    if resume and not run_dir.is_dir():
        raise EznasError(f"cannot resume: run directory {run_dir} does not exist")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EznasError(f"cannot create run directory {run_dir}: {e.strerror or e}") from None
    with RunLock(run_dir):  # one run per directory; released when the run ends, however it ends
        return _run_locked(cfg, run_dir, resume, progress)


def _run_locked(cfg: config_mod.Config, run_dir: Path, resume: bool, progress: bool) -> dict[str, Any]:
    st = load_checkpoint(run_dir) if resume else None
    if not resume:
        if (run_dir / "checkpoint.json").exists():
            raise EznasError(f"run directory {run_dir} already holds a run; use --resume {run_dir} or another run_dir")
        config_mod.dump(cfg, run_dir / "config.yaml")
    program.load_primitive_set(cfg.search.primitive_set)  # fail on a bad set before any work
    torch.manual_seed(cfg.seed)
    data = prepare(cfg, progress)
    search = Search(cfg, run_dir, data, progress)
    try:
        st = search.run(st)
        result = write_outputs(search, st)
        result.update(generations=st.gen, evaluations=st.evals, search_s=st.seconds)
    finally:
        search.close()
    print_summary(result, st)
    if cfg.evaluate.after_search and result["hall"]:
        result["evaluation"] = export_and_evaluate(cfg, run_dir, progress and sys.stderr.isatty())
    return result


def export_and_evaluate(cfg: config_mod.Config, run_dir: Path, progress: bool = True) -> Any:
    """Export the best program to RUN_DIR/proxy.py and score it with the config's baselines on the
    held-out split (statistics recomputed by the exported module, as a user would run it)."""
    from eznas.evaluate import evaluate
    from eznas.export import export_proxy

    res = export_proxy(run_dir, run_dir / "proxy.py")
    print(f"exported the best program to {res.out} (simplified: {res.simplified})")
    same_batch = copy.deepcopy(cfg)
    same_batch.evaluate.batch_size = cfg.stats.batch_size  # the batch size the program was evolved with
    ev = evaluate(same_batch, proxies=[*cfg.evaluate.proxies, str(res.out)], out=run_dir / "evaluation",
                  progress=progress)
    print(f"held-out ({cfg.evaluate.split} split) Spearman rho:")
    for task, metrics in ev.per_task.items():
        cells = ", ".join(f"{label} {m['spearman']:.3f}" for label, m in metrics.items())
        print(f"  {task}: {cells}")
    return ev


def cmd_evolve(args: argparse.Namespace) -> int:
    if args.resume:
        run_dir = Path(args.resume)
        saved = run_dir / "config.yaml"
        cfg = config_mod.load(saved if saved.is_file() else args.config)
    else:
        cfg = config_mod.load(args.config)
        run_dir = Path(args.run_dir or cfg.run_dir)
    if getattr(args, "backend", None):
        cfg.stats.backend = cfg.search.backend = args.backend
    if getattr(args, "device", None) is not None:
        from eznas.devices import check_name

        cfg.device = check_name(args.device, "--device")
    if cfg.stats.backend != "ray":
        from eznas.devices import resolve

        resolve(cfg.device, "--device" if getattr(args, "device", None) else "config key 'device':")
    run(cfg, run_dir, resume=bool(args.resume), progress=True)  # a bar on a terminal, else periodic lines
    return 0


def main(argv: list[str] | None = None) -> int:
    from eznas.cli import main as cli_main

    return cli_main(["evolve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
