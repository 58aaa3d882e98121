"""How well the embedded digits micro-benchmark separates architectures.

Reads a benchmark written by `eznas bench build` (default: the embedded `digits` benchmark, eznas/benchmarks_data/digits-nb201.json, made by
`eznas bench build configs/digits-bench.yaml`) and reports: the number of architectures, the
spread of their accuracies (min / median / max, std), the Spearman rank correlation between the
accuracies of the first two training seeds (over all archs, and over the NB201 archs whose
output is reachable from the input through non-`none` edges), the Spearman correlation of
parameter count (and of each op's count in the cell) with accuracy, and the build time from the
file's metadata (mean seconds per training x trainings, i.e. one worker).

    python experiments/digits_bench_report.py [--bench PATH] [--out experiments/results/digits_bench.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from eznas.benchbuild import iter_records
from eznas.spaces import parse_ints
from eznas.spaces.nb201 import EDGES, OPS
from eznas.errors import run_main

NONE_OP = 1  # NB201 op index of `none`
ROOT = Path(__file__).resolve().parents[1]


def nb201_reachable(key: str) -> bool:
    """True when the cell's output node is reachable from its input through non-`none` edges."""
    ops = parse_ints(key, "nb201")
    seen = {0}
    for (i, j), op in sorted(zip(EDGES, ops), key=lambda e: e[0][1]):
        if op != NONE_OP and i in seen:
            seen.add(j)
    return 3 in seen


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b)[0])


def _op_counts(archs: list[str], acc: np.ndarray) -> dict[str, float | None]:
    """Spearman of each NB201 op's count in the cell with accuracy (what the budget rewards)."""
    ops = np.array([parse_ints(a, "nb201") for a in archs])
    return {name: _spearman((ops == i).sum(1).astype(float), acc) for i, name in enumerate(OPS)}


def _spread(acc: np.ndarray) -> dict[str, float]:
    return {"min": float(acc.min()), "median": float(np.median(acc)), "max": float(acc.max()),
            "std": float(acc.std()), "iqr": float(np.subtract(*np.percentile(acc, [75, 25])))}


def report(path: Path) -> dict[str, Any]:
    recs = iter_records(path)
    meta = json.loads(path.read_text())["_meta"]
    archs = [a for a, _ in recs]
    acc = np.array([r["val_accuracy"] for _, r in recs], dtype=float)
    seeds = np.array([r["seed_accuracies"][:2] for _, r in recs], dtype=float)
    params = np.array([r["params"]["score"] for _, r in recs], dtype=float)
    reach = np.array([nb201_reachable(a) for a in archs]) if meta["space"] == "nb201" else np.ones(len(archs), bool)
    n_train = sum(len(r["seed_accuracies"]) for _, r in recs)
    per = meta.get("seconds_per_training")
    return {
        "benchmark": str(path), "space": meta["space"], "dataset": meta["dataset"], "archs": len(archs),
        "seeds": meta["config"]["bench"]["seeds"], "train": meta["train"], "command": meta["command"],
        "accuracy_spread": _spread(acc),
        "accuracy_spread_reachable": _spread(acc[reach]) if reach.any() else None,
        "unreachable_archs": int((~reach).sum()),
        "seed_spearman": _spearman(seeds[:, 0], seeds[:, 1]) if seeds.shape[1] == 2 else None,
        "seed_spearman_reachable": _spearman(seeds[reach, 0], seeds[reach, 1]) if seeds.shape[1] == 2 else None,
        "seed_mean_abs_diff": float(np.abs(seeds[:, 0] - seeds[:, 1]).mean()) if seeds.shape[1] == 2 else None,
        "params_spearman": _spearman(params, acc),
        "op_count_spearman": _op_counts(archs, acc) if meta["space"] == "nb201" else None,
        "params_spearman_reachable": _spearman(params[reach], acc[reach]),
        "seconds_per_training": per,
        "build_minutes_one_worker": round(per * n_train / 60, 1) if per else None,
    }


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default=str(ROOT / "eznas" / "benchmarks_data" / "digits-nb201.json"))
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "digits_bench.json"))
    args = ap.parse_args()
    r = report(Path(args.bench))
    s, sr = r["accuracy_spread"], r["accuracy_spread_reachable"]
    print(f"{r['benchmark']}: {r['archs']} {r['space']} archs on {r['dataset']}, seeds {r['seeds']}")
    print(f"accuracy (%): min {s['min']:.2f}  median {s['median']:.2f}  max {s['max']:.2f}  std {s['std']:.2f}  "
          f"IQR {s['iqr']:.2f}")
    if sr:
        print(f"  reachable-output archs ({r['archs'] - r['unreachable_archs']}): min {sr['min']:.2f}  "
              f"median {sr['median']:.2f}  max {sr['max']:.2f}  std {sr['std']:.2f}")
    print(f"seed agreement: Spearman {_fmt(r['seed_spearman'])} (reachable only {_fmt(r['seed_spearman_reachable'])}), "
          f"mean |seed 0 - seed 1| {_fmt(r['seed_mean_abs_diff'])} points")
    print(f"params vs accuracy: Spearman {_fmt(r['params_spearman'])} (reachable only {_fmt(r['params_spearman_reachable'])})")
    if r["op_count_spearman"]:
        print("op count vs accuracy: " + ", ".join(f"{k} {_fmt(v)}" for k, v in r["op_count_spearman"].items()))
    if r["build_minutes_one_worker"] is not None:
        print(f"build: {r['seconds_per_training']:.2f} s per training, {r['build_minutes_one_worker']} min on one worker")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
