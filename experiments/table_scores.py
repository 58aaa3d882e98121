"""Every proxy's score of every NB201 cell of the NATS-Bench table, on a GPU or CPUs, resumable.

One network per (dataset, cell), built once: the evolved programs (the shipped ``eznas-nb201`` and
the best program of each ``configs/nb201.yaml`` GP seed, from ``experiments/results/main_results.json``)
share one statistics recording, the baselines their shared passes (:mod:`eznas.nas.table`).
Cells are visited in a random order (``--order-seed``) with the datasets interleaved, so a run
stopped by ``--deadline-s`` or Ctrl-C holds a uniform random subset of the table for every dataset;
rerunning the same command continues. Batch 64, network/batch seed ``--score-seed``.

    python experiments/table_scores.py --device cuda --workers 12 --deadline-s 420   # a GPU machine
    python experiments/table_scores.py --limit 200 --workers 2                     # CPU, 200 cells

Writes ``--out`` (default ``experiments/results/table_scores/``): ``<dataset>.csv`` (arch_key + one
column per proxy; empty = the proxy failed on the cell) and ``meta.json`` (device, torch, settings,
programs, seconds per cell and proxy, cells done). ``experiments/nas_study.py --table-scores`` and
``experiments/hybrid_search.py`` read them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eznas.errors import EznasError, run_main  # noqa: E402

MAIN_RESULTS = ROOT / "experiments" / "results" / "main_results.json"
OUT = ROOT / "experiments" / "results" / "table_scores"
#: the zero-shot NAS study's baselines and the SOTA ones (the older gradient-saliency family is left out:
#: it costs half of a cell's time on the CPU and ranks below these on NB201)
DEFAULT_BASELINES = ["params", "flops", "nwot", "zico", "synflow", "meco", "az_expressivity", "az_progressivity",
                     "az_trainability", "az_complexity", "swap", "reg_swap"]
DATASETS = ["cifar10", "cifar100", "ImageNet16-120"]


def evolved_programs() -> list[tuple[str, str]]:
    """(label, expression): the shipped eznas-nb201 and each nb201 GP seed's best program."""
    from eznas import builtin_proxies

    out = [("eznas-nb201", builtin_proxies.read("eznas-nb201").expression)]
    if MAIN_RESULTS.exists():
        runs = json.loads(MAIN_RESULTS.read_text())["settings"]["nb201"]["runs"]
        out += [(f"evolved seed {i}", r["best"]) for i, r in enumerate(runs)]
    return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baselines", nargs="*", default=DEFAULT_BASELINES)
    p.add_argument("--no-programs", action="store_true", help="baselines only")
    p.add_argument("--datasets", nargs="+", default=DATASETS, choices=DATASETS)
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", default="process", choices=["serial", "process", "ray"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="only the first N cells of the random order")
    p.add_argument("--deadline-s", type=float, default=None, help="stop (keeping every finished cell) after this")
    p.add_argument("--order-seed", type=int, default=0)
    p.add_argument("--score-seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(OUT))
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    import torch

    from eznas import builtin_proxies
    from eznas.devices import resolved_name
    from eznas.fanout import Fanout
    from eznas.nas.table import CellJob, TableFile, program_settings, run_table
    from eznas.natsbench import load_table
    from eznas.proxies import get_proxy

    t_start = time.monotonic()
    deadline = None if args.deadline_s is None else t_start + args.deadline_s
    if args.workers < 1 or (args.limit is not None and args.limit < 1) or args.batch_size < 1:
        raise EznasError("--workers, --limit and --batch-size must be >= 1")
    for b in args.baselines:
        get_proxy(b)  # unknown / set-level names: one line before any work
    device = resolved_name(args.device, "--device")
    programs = [] if args.no_programs else evolved_programs()
    settings = program_settings(builtin_proxies.read("eznas-nb201").settings)
    if dict(settings)["batch_size"] != args.batch_size:
        print(f"note: the programs were evolved at batch {dict(settings)['batch_size']}; scoring at {args.batch_size}",
              file=sys.stderr)
    columns = [lab for lab, _ in programs] + list(args.baselines)
    table = load_table(args.data_dir)
    order = np.random.default_rng(args.order_seed).permutation(len(table))
    cells = [table.archs[i] for i in order[: args.limit]]
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EznasError(f"cannot write --out {out}: {e.strerror or e}") from None
    files = {d: TableFile(out / f"{d}.csv", columns) for d in args.datasets}
    jobs = []
    for arch in cells:
        for d in args.datasets:
            miss = files[d].missing(arch)
            if not miss:
                continue
            jobs.append(CellJob(d, arch, args.score_seed, args.batch_size, args.data_dir, device,
                                tuple(b for b in args.baselines if b in miss),
                                tuple((lab, e) for lab, e in programs if lab in miss), settings))
    total = len(jobs)
    print(f"{len(cells)} cells x {len(args.datasets)} datasets: {total} to score on {device} "
          f"({args.backend}, {args.workers} workers), {len(columns)} proxies each", file=sys.stderr)
    t0 = time.monotonic()

    def tick(done: int) -> None:
        if done % 200 == 0:
            rate = done / (time.monotonic() - t0)
            print(f"  {done}/{total} nets, {rate:.2f} nets/s", file=sys.stderr, flush=True)

    fan = Fanout(args.backend, args.workers, threads=1, what="cell", device=device)
    prog = run_table(jobs, files, fan, deadline, on_done=tick)
    wall = time.monotonic() - t0
    meta_path = out / "meta.json"
    old = json.loads(meta_path.read_text()) if meta_path.exists() else {"sessions": []}
    session = {"device": device, "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
               "torch": torch.__version__, "backend": args.backend, "workers": args.workers,
               "nets_scored": prog.done, "nets_with_a_failure": prog.failed, "wall_s": round(wall, 1),
               "nets_per_s": round(prog.done / wall, 3) if wall > 0 else None,
               "seconds_per_net_by_proxy": {k: round(v / prog.counts[k], 5) for k, v in prog.seconds.items()},
               "cpu_count": os.cpu_count(),
               "failures": {k: {"cells": len(v), "first": v[0]} for k, v in prog.errors.items()}}
    meta = {"settings": {"score_seed": args.score_seed, "batch_size": args.batch_size, "order_seed": args.order_seed,
                         "program_settings": dict(settings)},
            "programs": dict(programs), "columns": columns,
            "cells_done": {d: sum(1 for a in files[d].rows if not files[d].missing(a)) for d in args.datasets},
            "sessions": [*old.get("sessions", []), session]}
    out.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(session, indent=1))
    print(f"cells complete per dataset: {meta['cells_done']} -> {out}")
    return meta


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        run(args)
    except EznasError as e:
        print(f"table_scores: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"table_scores: interrupted; finished cells are in {args.out}; rerun to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
