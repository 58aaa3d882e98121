"""Programs evaluated per second on real cached NB201 statistics (the search's inner loop).

Loads the evolve split of NB201 cifar10 from the statistics cache (configs/nb201.yaml; run
`eznas stats configs/nb201.yaml` first), subsamples 20 nets as one generation does, and times
random programs from each primitive set: cold (no memo) and as a generation sees them
(population + offspring sharing subtrees, memo on).

    python experiments/eval_throughput.py [--programs 100] [--threads 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from eznas import config as config_mod
from eznas import program
from eznas.scoring import Scorer, ScoringOptions
from eznas.stats import StatsSettings, config_jobs, default_cache_dir, load_task_stats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/nb201.yaml")
    ap.add_argument("--programs", type=int, default=100)
    ap.add_argument("--nets", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="experiments/results/eval_throughput.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = config_mod.load(args.config)
    _, by_task = config_jobs(cfg, splits=())
    name, parts = next(iter(by_task.items()))
    task = parts["evolve"]
    st = StatsSettings.from_config(cfg, task.space, task.dataset)
    ts = load_task_stats(task, st, default_cache_dir(cfg)).subset(list(range(args.nets)))
    print(f"{name}: {ts.n_nets} nets, {ts.values.shape[0]} rows, values {tuple(ts.values.shape)}")
    out = {"task": name, "rows": int(ts.values.shape[0]), "threads": args.threads, "sets": {}}
    for set_name in ("compact", "eznas"):
        pset = program.load_primitive_set(set_name)
        rng = random.Random(0)
        trees = [program.random_tree(pset, rng, 2, 5) for _ in range(args.programs)]
        infixes = [program.to_infix(t) for t in trees]
        cold_options = ScoringOptions(unit_aggregate="mean", primitive_set=set_name, memo_bytes=0)
        t0 = time.perf_counter()
        Scorer({name: ts}, cold_options).score(infixes)
        cold = args.programs / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        memo_options = dataclasses.replace(cold_options, memo_bytes=512 * 2**20)
        Scorer({name: ts}, memo_options).score(infixes + infixes)  # a generation re-evaluates parents next to offspring
        warm = 2 * args.programs / (time.perf_counter() - t0)
        sizes = float(np.mean([len(t) for t in trees]))
        out["sets"][set_name] = {"cold_per_s": cold, "memo_per_s": warm, "mean_nodes": sizes}
        print(f"{set_name:8s} mean {sizes:.1f} nodes: {cold:6.1f} programs/s cold, {warm:6.1f}/s with memo (x2 reuse)")
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
