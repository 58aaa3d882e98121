"""Time a full GP search on many NB201 cells: issue 17's "50 x 20 search over three NB201 tasks with
500 evolve cells each in <= 15 min after caching", measured instead of extrapolated.

A pool of ``--evolve + --validate + --test`` NATS-Bench cells per dataset (random, ``--pool-seed``)
becomes a benchmark file; ``eznas stats CONFIG --workers W`` (the user's command, a subprocess) fills
the statistics cache (resumable, not timed as part of the search); then the search runs as
``eznas evolve CONFIG`` does (``evolve.run``, backend process with ``--workers`` workers, patience
= generations so every generation runs) and its wall time, generations, programs evaluated and the
rows (units over the evolve cells) are recorded.

    python experiments/search_timing.py                  # 500 / 5 / 5 cells per dataset, 50 x 20, 2 workers
    python experiments/search_timing.py --stats-only     # only build (or finish) the statistics

writes ``experiments/results/search_timing.json``; the run directory is ``--work``/run (default
``runs/search-timing/run``; an existing one is never deleted: the script stops and names it, so
delete it to time again; the statistics are reused).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eznas import config as config_mod  # noqa: E402
from eznas import evolve, records  # noqa: E402
from eznas.errors import EznasError, run_main  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from natsbench_pool_search import write_config  # noqa: E402

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
OUT = ROOT / "experiments" / "results" / "search_timing.json"


def write_pool(work: Path, n: int, seed: int, datasets: list[str]) -> Path:
    """``n`` random NATS-Bench cells per dataset (the same cells for every dataset) as a benchmark file."""
    doc: dict = {"_meta": {"space": "nb201", "source": f"{n} random NATS-Bench cells (seed {seed})"}}
    for ds in datasets:
        task = records.load_task("nb201", ds, None, "natsbench")
        if n > len(task.archs):
            raise EznasError(f"--evolve + --validate + --test = {n} exceeds the {len(task.archs)} table cells")
        pick = np.sort(np.random.default_rng(seed).choice(len(task.archs), size=n, replace=False))
        doc[ds] = {task.archs[i]: {"val_accuracy": float(task.accuracies[i])} for i in pick}
    path = work / "pool.json"
    path.write_text(json.dumps(doc))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--evolve", type=int, default=500)
    ap.add_argument("--validate", type=int, default=5)
    ap.add_argument("--test", type=int, default=5)
    ap.add_argument("--population", type=int, default=50)
    ap.add_argument("--generations", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pool-seed", type=int, default=0)
    ap.add_argument("--stats-only", action="store_true")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "search-timing")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if min(args.evolve, args.population, args.generations, args.workers) < 1 or args.validate < 2 or args.test < 2:
        raise EznasError("--evolve, --population, --generations and --workers must be >= 1, --validate and --test >= 2")
    run_dir = args.work / "run"
    if run_dir.exists() and not args.stats_only:
        raise EznasError(f"run directory {run_dir} exists; delete it to time the search again")
    args.work.mkdir(parents=True, exist_ok=True)
    pool = write_pool(args.work, args.evolve + args.validate + args.test, args.pool_seed, args.datasets)
    cfg_path = write_config(args.work, pool, args.datasets, args, "process", args.workers, args.work / "stats")
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "eznas.cli", "stats", str(cfg_path), "--workers", str(args.workers)],
                          env=env)
    if done.returncode != 0:
        raise EznasError(f"eznas stats failed (exit {done.returncode}); rerun to continue")
    stats_s = time.perf_counter() - t0
    print(f"statistics ready ({stats_s:.0f} s this run)", file=sys.stderr)
    if args.stats_only:
        return 0
    cfg = config_mod.load(cfg_path)
    t0 = time.perf_counter()
    error = None
    try:
        evolve.run(cfg, run_dir, progress=True)
    except EznasError as e:  # e.g. a worker killed for memory: the generations timed so far are the result
        error = str(e)
    wall = time.perf_counter() - t0
    from eznas.checkpoint import load_checkpoint

    st = load_checkpoint(run_dir) if (run_dir / "checkpoint.json").is_file() else None
    timings = json.loads((run_dir / "timings.json").read_text()) if (run_dir / "timings.json").is_file() else None
    doc = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "cpu_count": os.cpu_count(), "search_wall_s": round(wall, 1), "search_wall_min": round(wall / 60, 2),
           "target_min": 15.0, "met": error is None and wall / 60 <= 15.0, "error": error,
           "generations_done": st.gen if st else 0, "programs_evaluated": st.evals if st else 0,
           "best_validate": st.best_validate if st else None, "generation_seconds": timings,
           "peak_rss_gb": {"driver": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                           "largest_child_process": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2)},
           "statistics_s_this_run": round(stats_s, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))
    if error:
        raise EznasError(f"the search stopped: {error} (timings so far in {args.out})")
    return 0


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
