"""Programs evaluated per second on real cached NB201 statistics (the search's inner loop).

Loads the evolve split of NB201 cifar10 from the statistics cache (configs/nb201.yaml; run
`eznas stats configs/nb201.yaml` first), subsamples 20 nets as one generation does, and times
random programs from each primitive set: cold (no memo) and as a generation sees them
(population + offspring sharing subtrees, memo on). Only cached nets are used (the split may
name nets whose statistics were never built). ``--scale 100,1000,10000`` adds the time per
program at those row counts (the rows of the loaded nets, repeated as extra nets when more rows
are asked for than are loaded; timing depends on the row count, not on which rows) and, from
them, an estimate of a search's evaluation time (``--estimate TASKS,CELLS,PROGRAMS``, for the
last of ``--sets``). The 1-minute load average before and after is recorded.

Rates are given by wall clock and by this process's CPU time (``*_cpu``), each the fastest of
``--repeats`` runs: on a shared machine the CPU-time figure depends least on what else runs.
To measure another version of the primitives, put its tree first on PYTHONPATH (the JSON records
which ``eznas`` was timed).

    python experiments/eval_throughput.py [--programs 100] [--threads 1] [--scale 100,1000,10000]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from eznas import config as config_mod
from eznas import program
from eznas.scoring import Scorer, ScoringOptions
from eznas.errors import EznasError, run_main
from eznas.stats import StatsSettings, TaskStats, config_jobs, default_cache_dir, entry_path, load_task_stats

REPO = Path(__file__).resolve().parent.parent
SETS = ("compact", "eznas")


def load_rows(config: str | Path, nets: int | None = None) -> TaskStats:
    """The first ``nets`` (default: all) cached evolve nets of the config's first task, from the statistics cache."""
    cfg = config_mod.load(str(config))
    _, by_task = config_jobs(cfg, splits=())
    task = next(iter(by_task.values()))["evolve"]
    st = StatsSettings.from_config(cfg, task.space, task.dataset)
    cache = default_cache_dir(cfg)
    cached = [i for i, a in enumerate(task.archs) if entry_path(cache, st, a).is_file()]
    if not cached:
        raise EznasError(f"no statistics of {task.name} are cached; run `eznas stats {config}` first")
    # timing depends on the row count, not on which nets: the cached evolve nets, in split order
    task = dataclasses.replace(task, archs=[task.archs[i] for i in cached], accuracies=task.accuracies[cached])
    ts = load_task_stats(task, st, cache)
    return ts if nets is None else ts.subset(list(range(min(nets, ts.n_nets))))


def with_rows(ts: TaskStats, rows: int) -> TaskStats:
    """Whole nets of ``ts`` (repeated as new nets when needed) until there are >= ``rows`` rows."""
    counts = torch.bincount(ts.net_index, minlength=ts.n_nets).tolist()
    picks: list[int] = []
    total = 0
    while total < rows:
        i = len(picks) % ts.n_nets
        picks.append(i)
        total += counts[i]
    if len(picks) <= ts.n_nets:
        return ts.subset(picks)
    parts = [ts.subset([i]) for i in picks]
    values = torch.cat([p.values for p in parts])
    index = torch.cat([torch.full((p.values.shape[0],), k, dtype=torch.long) for k, p in enumerate(parts)])
    return TaskStats(ts.name, [ts.archs[i] for i in picks], ts.accuracies[np.asarray(picks)], values, None, index)


def programs(set_name: str, n: int, seed: int) -> tuple[list[str], float]:
    """``n`` random programs of the set (ramped half-and-half, depth 2..5) and their mean size."""
    pset = program.load_primitive_set(set_name)
    rng = random.Random(seed)
    trees = [program.random_tree(pset, rng, 2, 5) for _ in range(n)]
    return [program.to_infix(t) for t in trees], float(np.mean([len(t) for t in trees]))


def _timed(fn) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def _best(fn, repeats: int) -> tuple[float, float]:
    """Fastest (wall, CPU) seconds of ``repeats`` runs: on a shared machine the minimum is the
    run least disturbed by other processes."""
    runs = [_timed(fn) for _ in range(max(1, repeats))]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def measure(ts: TaskStats, set_name: str, infixes: list[str], repeats: int = 1) -> dict[str, float]:
    """Programs per second, cold (no memo) and with the memo as a generation reuses it (x2)."""
    cold_options = ScoringOptions(unit_aggregate="mean", primitive_set=set_name, memo_bytes=0)
    tasks = {ts.name: ts}
    Scorer(tasks, cold_options).score(infixes[:1])  # first-use imports and allocations are not timed
    wall, cpu = _best(lambda: Scorer(tasks, cold_options).score(infixes), repeats)
    memo_options = dataclasses.replace(cold_options, memo_bytes=512 * 2**20)
    # a generation re-evaluates parents next to offspring
    mwall, mcpu = _best(lambda: Scorer(tasks, memo_options).score(infixes + infixes), repeats)
    n = len(infixes)
    return {"cold_per_s": n / wall, "memo_per_s": 2 * n / mwall, "cold_per_s_cpu": n / cpu,
            "memo_per_s_cpu": 2 * n / mcpu}


def search_estimate(scaling: list[dict], set_name: str, tasks: int, cells: int, n_programs: int,
                    rows_per_net: float) -> dict[str, float]:
    """Minutes of program evaluation for a search scoring ``n_programs`` programs on every evolve
    cell of ``tasks`` tasks (statistics cached): the wall time per program at that many rows,
    from a least-squares line (ms = a + b * rows) through the measured scaling points of the set."""
    pts = [e for e in scaling if e["set"] == set_name]
    rows = np.array([e["rows"] for e in pts], dtype=float)
    target = tasks * cells * rows_per_net
    est: dict[str, float] = {"tasks": tasks, "cells": cells, "programs": n_programs, "rows": int(round(target)),
                             "rows_per_net": round(rows_per_net, 2)}
    for kind, key in (("cold", "cold_ms_per_program_wall"), ("memo", "memo_ms_per_program_wall")):
        b, a = np.polyfit(rows, np.array([e[key] for e in pts]), 1)
        ms = a + b * target
        est[f"ms_per_program_{kind}"] = round(float(ms), 1)
        est[f"minutes_{kind}"] = round(float(ms * n_programs / 60000), 2)
    return est


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(REPO / "configs" / "nb201.yaml"))
    ap.add_argument("--programs", type=int, default=100)
    ap.add_argument("--nets", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated primitive sets to time")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the fastest is reported")
    ap.add_argument("--scale", default="", help="comma-separated row counts for the scaling table, e.g. 100,1000,10000")
    ap.add_argument("--scale-programs", type=int, default=30, help="programs per set and row count in the table")
    ap.add_argument("--estimate", default="3,500,1050",
                    help="with --scale: TASKS,CELLS,PROGRAMS of a search to estimate from the eznas set's scaling "
                         "(default: three NB201 tasks, 500 evolve cells each, 50 + 20 x 50 programs)")
    ap.add_argument("--out", default=str(REPO / "experiments" / "results" / "eval_throughput.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    scale = [int(r) for r in args.scale.split(",") if r.strip()]
    loaded = load_rows(args.config, None if scale else args.nets)
    ts = loaded.subset(list(range(min(args.nets, loaded.n_nets))))
    print(f"{ts.name}: {ts.n_nets} nets, {ts.values.shape[0]} rows, values {tuple(ts.values.shape)}, "
          f"{args.threads} thread(s)")
    out: dict = {"task": ts.name, "rows": int(ts.values.shape[0]), "threads": args.threads,
                 "programs": args.programs, "seed": args.seed, "repeats": args.repeats,
                 "eznas": str(Path(program.__file__).resolve().parent), "sets": {},
                 "load_before": round(os.getloadavg()[0], 2)}
    sets = [n for n in args.sets.split(",") if n]
    for set_name in sets:
        infixes, size = programs(set_name, args.programs, args.seed)
        res = measure(ts, set_name, infixes, args.repeats)
        out["sets"][set_name] = {**res, "mean_nodes": size}
        print(f"{set_name:8s} mean {size:.1f} nodes: {res['cold_per_s']:6.1f} programs/s cold, "
              f"{res['memo_per_s']:6.1f}/s with memo (x2 reuse); by CPU time {res['cold_per_s_cpu']:6.1f} / "
              f"{res['memo_per_s_cpu']:6.1f}")
    if scale:
        out["scaling"] = []
        print(f"\n{'set':8s} {'rows':>7s} {'cold ms/prog':>13s} {'memo ms/prog':>13s}  (CPU time, "
              f"{args.scale_programs} programs, best of {args.repeats})")
        for set_name in sets:
            infixes, _ = programs(set_name, args.scale_programs, args.seed + 1)
            for rows in scale:
                sub = with_rows(loaded, rows)
                res = measure(sub, set_name, infixes, args.repeats)
                entry = {"set": set_name, "rows": int(sub.values.shape[0]),
                         "cold_ms_per_program": 1000 / res["cold_per_s_cpu"],
                         "memo_ms_per_program": 1000 / res["memo_per_s_cpu"],
                         "cold_ms_per_program_wall": 1000 / res["cold_per_s"],
                         "memo_ms_per_program_wall": 1000 / res["memo_per_s"]}
                out["scaling"].append(entry)
                print(f"{set_name:8s} {entry['rows']:7d} {entry['cold_ms_per_program']:13.2f} "
                      f"{entry['memo_ms_per_program']:13.2f}")
                del sub
        tasks, cells, n_programs = (int(v) for v in args.estimate.split(","))
        rows_per_net = loaded.values.shape[0] / loaded.n_nets
        out["search_estimate"] = search_estimate(out["scaling"], sets[-1], tasks, cells, n_programs, rows_per_net)
        e = out["search_estimate"]
        print(f"\nsearch of {n_programs} programs on {tasks} tasks x {cells} cells ({e['rows']} rows): "
              f"{e['ms_per_program_cold']:.0f} ms/program cold -> {e['minutes_cold']:.1f} min "
              f"(memo: {e['minutes_memo']:.1f} min), {args.threads} thread(s)")
    out["load_after"] = round(os.getloadavg()[0], 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
