"""Seconds per net for every baseline, one by one (before) and with shared passes (after).

On ``--nets`` NB201 cells drawn (seeded) from the NATS-Bench whole-space table, full-size nets
(C=16, N=5), one CIFAR-10 batch of ``--batch-size`` (32, the natsbench config's evaluate batch),
every registered per-net baseline is scored by :func:`eznas.proxies.passes.score_baselines` with
``shared=False`` (each baseline alone, as `eznas evaluate` did) and ``shared=True`` (one pass per
kind); the two orders alternate per net so machine load hits both alike. It also checks that the
two give identical scores, and prints the per-proxy and per-pass times.

    python experiments/baseline_pass_sharing.py [--nets 10] [--batch-size 32] [--threads 1]

Writes ``experiments/results/baseline_pass_sharing.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from eznas import records
from eznas.batches import make_batches
from eznas.proxies import passes, proxy_names
from eznas.spaces import build
from eznas.errors import run_main

ROOT = Path(__file__).resolve().parent.parent


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nets", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--width", type=int, default=None, help="NB201 channels (default: full size, 16)")
    ap.add_argument("--depth", type=int, default=None, help="NB201 cells per stage (default: full size, 5)")
    ap.add_argument("--proxies", nargs="+", default=None, help="these baselines only (default: every registered one)")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "baseline_pass_sharing.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = records.load_task("nb201", "cifar10", args.data_dir, "natsbench")
    rng = np.random.default_rng(args.seed)
    archs = [task.archs[i] for i in rng.choice(len(task.archs), size=args.nets, replace=False)]
    b = make_batches("cifar10", args.batch_size, args.seed, num_classes=10, root=args.data_dir)
    names = args.proxies or proxy_names()
    groups = passes.plan(names)
    before: dict[str, list[float]] = {n: [] for n in names}
    after: dict[str, list[float]] = {n: [] for n in names}
    wall = {"before": [], "after": []}
    mismatches: list[str] = []
    for i, arch in enumerate(archs):
        model = build("nb201", arch, "cifar10", seed=args.seed, width=args.width, depth=args.depth)
        order = (False, True) if i % 2 == 0 else (True, False)
        res = {}
        for shared in order:
            t0 = time.perf_counter()
            res[shared] = passes.score_baselines(names, model, b.D, b.targets, shared=shared)
            wall["after" if shared else "before"].append(time.perf_counter() - t0)
        for n in names:
            before[n].append(res[False][n].seconds)
            after[n].append(res[True][n].seconds)
            if not _same(res[False][n].score, res[True][n].score):
                mismatches.append(f"{arch} {n}: {res[False][n].score!r} vs {res[True][n].score!r}")
        print(f"net {i + 1}/{len(archs)} {arch}: one by one {wall['before'][-1]:.2f} s, "
              f"shared {wall['after'][-1]:.2f} s", flush=True)
    per_pass = {}
    for sp, members in groups:
        key = sp.kind if sp is not None else members[0]
        per_pass[key] = {"members": list(members),
                         "before_s_per_net": float(sum(np.mean(before[m]) for m in members)),
                         "after_s_per_net": float(sum(np.mean(after[m]) for m in members))}
    doc = {
        "nets": archs, "batch_size": args.batch_size,
        **({"width": args.width, "depth": args.depth} if args.width or args.depth else {}),
        "seed": args.seed, "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "proxies": names,
        "before_s_per_net": float(np.mean(wall["before"])),
        "after_s_per_net": float(np.mean(wall["after"])),
        "speedup": float(np.mean(wall["before"]) / np.mean(wall["after"])),
        "identical_scores": not mismatches, "mismatches": mismatches,
        "per_proxy_before_s_per_net": {n: float(np.mean(v)) for n, v in before.items()},
        "per_pass": per_pass,
    }
    print(f"\n{len(names)} baselines on {len(archs)} NB201 nets, batch {args.batch_size}:")
    print(f"  one by one: {doc['before_s_per_net']:.2f} s/net; shared passes: {doc['after_s_per_net']:.2f} s/net; "
          f"speed-up x{doc['speedup']:.2f}; identical scores: {doc['identical_scores']}")
    for key, v in per_pass.items():
        if len(v["members"]) > 1:
            print(f"  pass {key:9s} {', '.join(v['members'])}: "
                  f"{v['before_s_per_net']:.3f} -> {v['after_s_per_net']:.3f} s/net")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
