"""What makes the search work better: variants of configs/nb201.yaml on the same cached statistics.

Each variant overrides a few `search` keys; every variant runs for the given GP seeds (splits and
statistics fixed by the config's seed) and reports the best program's test-split Spearman rho per
task (in-engine) and the search time. Writes experiments/results/search_study.json.

    python experiments/search_study.py --seeds 0 1 --variants default unit-sum tournament

Relative paths resolve against the repository root. Run directories go under ``--runs-dir``
(default runs/study/<config name>/<variant>-s<seed>); one that exists already is never deleted:
the script stops and names it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from eznas import config as config_mod
from eznas import evolve
from eznas.errors import run_main

# Overrides of configs/nb201.yaml (all evolve nets every generation, min Spearman over tasks,
# unit scores summed into the net score, truncation survival). Keys without a dot are `search`
# keys; `stats.*` keys change the statistics (a new cache entry per net, computed on first use).
VARIANTS: dict[str, dict] = {
    "eznas-protocol": {"subsample": 20, "fitness": "kendall", "selection": "tournament", "unit_aggregate": "mean"},
    "unit-mean": {"unit_aggregate": "mean"},  # the previous default: the mean over units
    "unit-mean-kendall": {"unit_aggregate": "mean", "fitness": "kendall"},
    "unit-mean-compact": {"unit_aggregate": "mean", "primitive_set": "compact"},
    "default": {},
    "subsample-20": {"subsample": 20},  # 20 nets per task per generation, as EZNAS
    "kendall": {"fitness": "kendall"},
    "mean-over-tasks": {"aggregate": "mean"},
    "min-over-tasks": {"aggregate": "min"},
    "compact-set": {"primitive_set": "compact"},
    "tournament": {"selection": "tournament"},
    "double-tournament": {"selection": "double_tournament"},  # bloat control by size tournaments
    "depth-6": {"max_depth": 6, "init_max_depth": 4},  # bloat control by a tighter height limit
    "batch-32": {"stats.batch_size": 32},
    # smaller sketches taken from the cached ones (no recomputation): the first R' of the 16 blocks of
    # every tensor, or the top-left s' x s' corner of every 8 x 8 block; statistically the sketch that
    # stats.R = R' / stats.s = s' would record (other seeded positions, same distribution)
    "sketch-R8": {"sub.R": 8},
    "sketch-R4": {"sub.R": 4},
    "sketch-s4": {"sub.s": 4},
}


def _smaller_sketches(R: int | None, s: int | None):
    """A stand-in for evolve.load_task_stats that slices every loaded sketch down to R blocks of s x s."""
    import dataclasses

    original = evolve.load_task_stats

    def load(*args, **kwargs):
        ts = original(*args, **kwargs)
        v = ts.values[:, :, :R] if R else ts.values
        v = v[..., :s, :s] if s else v
        return dataclasses.replace(ts, values=v.contiguous(), valid=None)

    return load
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "search_study.json"


def in_repo(path: str | Path) -> Path:
    return ROOT / path if not Path(path).is_absolute() else Path(path)


def run(cfg_path: str, name: str, seed: int, runs_dir: Path) -> dict:
    cfg = config_mod.load(in_repo(cfg_path))
    sub = {k.split(".")[1]: v for k, v in VARIANTS[name].items() if k.startswith("sub.")}
    for k, v in VARIANTS[name].items():
        if k.startswith("sub."):
            continue
        section, key = k.split(".") if "." in k else ("search", k)
        setattr(getattr(cfg, section), key, v)
    cfg.search.seed = seed
    config_mod.validate(cfg)
    run_dir = runs_dir / Path(cfg_path).stem / f"{name}-s{seed}"
    if run_dir.exists():
        raise SystemExit(f"search_study: run directory {run_dir} exists; remove it or pass another --runs-dir")
    t0 = time.perf_counter()
    loader = evolve.load_task_stats
    if sub:
        evolve.load_task_stats = _smaller_sketches(sub.get("R"), sub.get("s"))
    try:
        res = evolve.run(cfg, run_dir, progress=sys.stderr.isatty())
    finally:
        evolve.load_task_stats = loader
    best = res["hall"][0]
    return {"variant": name, "config": cfg_path, "seed": seed, "best": best["infix"], "validate": best["validate"],
            "size": best["size"], "evaluations": res["evaluations"],
            "generations": res["generations"], "search_s": res["search_s"],
            "test_spearman": {t: r["spearman"] for t, r in best["test"].items()},
            "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/nb201.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=1)  # 2 threads on a busy 2-core box oversubscribe
    ap.add_argument("--out", type=Path, default=OUT, help="results JSON (runs of other variants are kept)")
    ap.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "study")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out
    doc = json.loads(out.read_text()) if out.is_file() else {"runs": []}
    for name in args.variants:
        for seed in args.seeds:
            r = run(args.config, name, seed, args.runs_dir.resolve())
            doc = json.loads(out.read_text()) if out.is_file() else {"runs": []}  # other runs may have written
            doc["runs"] = [x for x in doc["runs"]
                           if (x.get("config"), x["variant"], x["seed"]) != (args.config, name, seed)] + [r]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(doc, indent=2))
    mine = [x for x in doc["runs"] if x.get("config") == args.config]
    print(f"{'variant':18s} {'seeds':>5s} " + " ".join(f"{t.split('/')[-1]:>16s}" for t in mine[0]["test_spearman"])
          + "  wall s")
    for name in VARIANTS:
        rs = [x for x in mine if x["variant"] == name]
        if not rs:
            continue
        cells = []
        for t in rs[0]["test_spearman"]:
            v = np.array([x["test_spearman"][t] for x in rs])
            cells.append(f"{v.mean():7.3f} ± {v.std():5.3f}")
        print(f"{name:18s} {len(rs):5d} " + " ".join(f"{c:>16s}" for c in cells)
              + f"  {np.mean([x['wall_s'] for x in rs]):6.0f}")


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
