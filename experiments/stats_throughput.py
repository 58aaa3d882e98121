"""Throughput of the statistics cache against the bare cost of the same networks' passes.

Times (a) building the cache (build network, 3 forward+backward passes with hooks and sketching,
atomic write) for N NB201 networks against (b) building the same networks and running the same
three forward+backward passes without hooks, in the same process; prints seconds per net, the
ratio (target <= 1.3), bytes per net on disk and the projection for 240 nets (target <= 3 GB).

    python experiments/stats_throughput.py --nets 30
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from eznas import records
from eznas.spaces import build
from eznas.runtime import run_passes
from eznas.stats import StatsSettings, build_cache, net_batches
from eznas.errors import run_main

ROOT = Path(__file__).resolve().parents[1]


def timed_pair(arch: str, st: StatsSettings, batches, cache: Path) -> tuple[float, float]:
    """(bare seconds, cache seconds) for one net, measured back to back so load on the machine
    affects both alike."""
    t0 = time.perf_counter()
    model = build(st.space, arch, st.dataset, seed=st.seed, width=st.width, depth=st.depth)
    run_passes(model, batches.items(), batches.targets, torch.nn.functional.cross_entropy)
    t1 = time.perf_counter()
    build_cache([(arch, st)], cache, progress=False)
    return t1 - t0, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nets", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--datasets", nargs="+", default=["cifar10", "ImageNet16-120"])
    ap.add_argument("--width", type=int, default=None, help="NB201 channels (default: full size, 16)")
    ap.add_argument("--depth", type=int, default=None, help="NB201 cells per stage (default: full size, 5)")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "stats_throughput.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    for dataset in args.datasets:
        task = records.load_task("nb201", dataset).sample(args.nets, 1)
        st = StatsSettings("nb201", dataset, dtype=args.dtype, width=args.width, depth=args.depth)
        batches = net_batches(st)
        with tempfile.TemporaryDirectory() as tmp:
            timed_pair(task.archs[0], st, batches, Path(tmp) / "warmup")
            pairs = [timed_pair(a, st, batches, Path(tmp) / "cache") for a in task.archs]
            size = sum(p.stat().st_size for p in (Path(tmp) / "cache").rglob("*.npz"))
        n = len(task.archs)
        t_bare, t_cache = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
        rows[dataset] = {"nets": n, "bare_s_per_net": t_bare / n, "cache_s_per_net": t_cache / n,
                         "ratio": t_cache / t_bare, "bytes_per_net": size / n,
                         "projected_GB_240_nets": size / n * 240 / 1e9}
        r = rows[dataset]
        print(f"nb201/{dataset}: {n} nets, bare {r['bare_s_per_net']:.3f} s/net, cache {r['cache_s_per_net']:.3f} s/net, "
              f"ratio {r['ratio']:.2f} (target <= 1.3), {r['bytes_per_net'] / 1e6:.2f} MB/net, "
              f"240 nets -> {r['projected_GB_240_nets']:.2f} GB (target <= 3)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"threads": args.threads, "dtype": args.dtype, "tasks": rows,
                                          **({"width": args.width, "depth": args.depth} if args.width or args.depth else {})}, indent=2))


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
