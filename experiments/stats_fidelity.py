"""Fidelity of sketches: per-unit statistics from full tensors vs from (R, s, s) sketches.

For N NB201 cifar10 networks (full size, batch 64), each statistic is averaged over units into a
network score, once from the full tensors (seen through the recorder's callback) and once from
the sketches; prints the Spearman rho between the two network rankings per statistic.

    python experiments/stats_fidelity.py --nets 60 --R 16 --s 8
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from eznas import records
from eznas.stats import StatsSettings, compute_net, net_batches
from eznas.tensors import INDEX
from eznas.errors import run_main

ROOT = Path(__file__).resolve().parents[1]


def _mean_abs(t, m=None):
    return t.abs().mean() if m is None else t.abs()[m].mean()


def _rms(t, m=None):
    return t.pow(2).mean().sqrt() if m is None else t.pow(2)[m].mean().sqrt()


def _std(t, m=None):
    return t.std() if m is None else t[m].std()


# name -> (function over one or two tensors, tensor names); full tensors and sketches alike
STATS = {
    "mean|A_D|": (lambda a, m=None: _mean_abs(a, m), ("A_D",)),
    "rms(gW_D)": (lambda a, m=None: _rms(a, m), ("gW_D",)),
    "rms(W)": (lambda a, m=None: _rms(a, m), ("W",)),
    "mean|gZ_D|": (lambda a, m=None: _mean_abs(a, m), ("gZ_D",)),
    "std(Z_N)": (lambda a, m=None: _std(a, m), ("Z_N",)),
    "mean(X_D*gX_D)": (lambda a, b, m=None: (a * b).mean() if m is None else (a * b)[m].mean(), ("X_D", "gX_D")),
    "mean|A_D-A_P|": (lambda a, b, m=None: _mean_abs(a - b, m), ("A_D", "A_P")),
    "rms(gA_N)": (lambda a, m=None: _rms(a, m), ("gA_N",)),
    "std(A_N)": (lambda a, m=None: _std(a, m), ("A_N",)),
    "mean|X_D*gX_D|": (lambda a, b, m=None: _mean_abs(a * b, m), ("X_D", "gX_D")),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nets", type=int, default=60)
    ap.add_argument("--R", type=int, default=16)
    ap.add_argument("--s", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=None, help="NB201 channels (default: full size, 16)")
    ap.add_argument("--depth", type=int, default=None, help="NB201 cells per stage (default: full size, 5)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "stats_fidelity.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = records.load_task("nb201", "cifar10").sample(args.nets, args.seed)
    st = StatsSettings("nb201", "cifar10", args.batch_size, args.seed, args.R, args.s,
                       width=args.width, depth=args.depth)
    batches = net_batches(st)
    full_scores: dict[str, list[float]] = defaultdict(list)
    sketch_scores: dict[str, list[float]] = defaultdict(list)
    for i, arch in enumerate(task.archs):
        full: dict[tuple[int, str], torch.Tensor] = {}

        def keep(u: int, name: str, t: torch.Tensor) -> None:
            full[(u, name)] = t.clone()

        values, valid = compute_net(arch, st, batches, on_tensor=keep)
        n_units = values.shape[0]
        for sname, (fn, names) in STATS.items():
            f_vals, s_vals = [], []
            for u in range(n_units):
                f_vals.append(float(fn(*[full[(u, n)] for n in names])))
                m = valid[u, INDEX[names[0]]]
                s_vals.append(float(fn(*[values[u, INDEX[n]] for n in names], m=m)))
            full_scores[sname].append(float(np.nanmean(f_vals)))
            sketch_scores[sname].append(float(np.nanmean(s_vals)))
        print(f"\r{i + 1}/{len(task.archs)} nets", end="", flush=True)
    print()
    rows = {}
    print(f"NB201 cifar10, {len(task.archs)} nets, batch {args.batch_size}, sketch R={args.R} s={args.s}")
    print(f"{'statistic':18s} spearman(full, sketch)  CV of full score across nets")
    cvs = {}
    for sname in STATS:
        rho = float(spearmanr(full_scores[sname], sketch_scores[sname]).statistic)
        f = np.asarray(full_scores[sname])
        cvs[sname] = float(f.std() / (abs(f.mean()) + 1e-30))
        rows[sname] = rho
        print(f"{sname:18s} {rho:10.4f}              {cvs[sname]:.2e}")
    below = [k for k, v in rows.items() if v < 0.95]
    print(f"min rho {min(rows.values()):.4f}; below 0.95: {', '.join(below) or 'none'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"nets": len(task.archs), "R": args.R, "s": args.s,
                                          "batch_size": args.batch_size, "spearman": rows,
                                          **({"width": args.width, "depth": args.depth} if args.width or args.depth else {}),
                                          "cv_full": cvs}, indent=2))


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
