"""The NB201 search of the engine issue: 3 datasets, 80 evolve nets each, population 50, 20 generations.

Builds (or reuses) the statistics, runs the search, and reports wall time after caching, program
evaluations per second, peak memory, and the best program's test-split Spearman rho per dataset
beside `params` and `nwot` computed by eznas on the same test nets in the same run.

    python experiments/nb201_search.py [--config configs/nb201.yaml] [--seed 0] [--run-dir runs/nb201-s0]

Relative paths (``--config``, the config's ``run_dir``) resolve against the repository root. The run
directory must not exist yet (an earlier run is never deleted: remove it yourself or pick another).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

from eznas import config as config_mod
from eznas import evolve
from eznas.evaluate import evaluate
from eznas.stats import build_cache, config_jobs, default_cache_dir
from eznas.errors import run_main

ROOT = Path(__file__).resolve().parents[1]


def in_repo(path: str | Path) -> Path:
    """``path``, relative paths taken from the repository root (not the current directory)."""
    return ROOT / path if not Path(path).is_absolute() else Path(path)


def peak_rss_gb() -> float:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(self_kb, child_kb) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/nb201.yaml")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--threads", type=int, default=1)  # 2 threads on a busy 2-core box oversubscribe
    ap.add_argument("--out", default=None, help="JSON results (default experiments/results/<run name>.json)")
    ap.add_argument("--eval-dir", default=None, help="baseline score cache (default runs/evaluation/<config name>)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = config_mod.load(in_repo(args.config))
    if args.seed is not None:
        cfg.search.seed = args.seed  # the GP's seed; splits and statistics keep the config's
    seed = cfg.seed if cfg.search.seed is None else cfg.search.seed
    run_dir = Path(args.run_dir).resolve() if args.run_dir else in_repo(f"{cfg.run_dir}-s{seed}")
    if run_dir.exists():
        raise SystemExit(f"nb201_search: run directory {run_dir} exists; remove it or pass another --run-dir")
    cfg.run_dir = str(run_dir)

    t0 = time.perf_counter()
    jobs, _ = config_jobs(cfg)  # statistics (cached after the first run)
    build_cache(jobs, default_cache_dir(cfg), cfg.data_dir, workers=cfg.stats.workers, progress=sys.stderr.isatty())
    t_stats = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = evolve.run(cfg, run_dir, progress=sys.stderr.isatty())
    t_search = time.perf_counter() - t1  # includes loading the cached statistics
    state = evolve.load_checkpoint(run_dir)
    t2 = time.perf_counter()
    # baselines on the same test nets; scores are shared with `eznas evaluate configs/nb201.yaml`
    eval_dir = Path(args.eval_dir) if args.eval_dir else ROOT / "runs" / "evaluation" / Path(args.config).stem
    base = evaluate(cfg, proxies=["params", "nwot"], out=eval_dir, progress=False)
    t_base = time.perf_counter() - t2

    best = result["hall"][0]
    rows = {}
    for task, r in best["test"].items():
        rows[task] = {"evolved": r["spearman"], "evolved_kendall": r["kendall"], "nets": r["nets"],
                      "params": base.per_task[task]["params"]["spearman"],
                      "nwot": base.per_task[task]["nwot"]["spearman"]}
    out = {"config": args.config, "seed": seed, "best": best["infix"], "validate_fitness": best["validate"],
           "generations": state.gen, "evaluations": state.evals, "search_seconds": state.seconds,
           "evals_per_s": state.evals / state.seconds, "wall_after_caching_s": t_search,
           "statistics_s": t_stats, "baselines_s": t_base, "peak_rss_gb": peak_rss_gb(), "test_spearman": rows}
    print(f"\nNB201 search, seed {seed}: {state.gen} generations, {state.evals} program evaluations")
    print(f"wall time after caching {t_search:.1f} s (search loop {state.seconds:.1f} s), "
          f"{out['evals_per_s']:.1f} programs/s (target >= 50), peak memory {out['peak_rss_gb']:.2f} GB (target <= 8)")
    print(f"best: {best['infix']}")
    print(f"{'task':24s} {'evolved':>8s} {'params':>8s} {'nwot':>8s}   (test-split Spearman rho)")
    for task, r in rows.items():
        print(f"{task:24s} {r['evolved']:8.3f} {r['params']:8.3f} {r['nwot']:8.3f}   n={r['nets']}")
    dest = Path(args.out) if args.out else ROOT / "experiments" / "results" / f"{run_dir.name}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
