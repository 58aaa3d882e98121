"""Speed-up of `eznas stats` and `eznas evaluate` with 1 vs 2 process workers (target >= 1.7x).

Runs each command as a user would (a subprocess, OMP_NUM_THREADS=1 so one worker = one core) on
a fresh statistics cache / output directory: NB201 cifar10 at full size, batch 64, ``--nets``
networks (statistics: the config's three splits, 2 + 2 + the rest; evaluate: the test split, ``--nets``
- 4 networks, with params, synflow, snip, nwot). Reports wall time of the whole command (start-up included) and, for statistics, the
build time the command prints; the load average before and after each run and the machine's
core count are recorded, because other jobs may share the cores.

    python experiments/worker_speedup.py [--nets 20] [--repeats 1]

Writes experiments/results/worker_speedup.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from eznas.errors import run_main

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "worker_speedup.json"
PROXIES = ["params", "synflow", "snip", "nwot"]


def write_config(tmp: Path, nets: int, seed: int, batch_size: int = 64, width: int | None = None,
                 depth: int | None = None) -> Path:
    cfg = {"seed": seed, "device": "cpu", "tasks": [{"space": "nb201", "dataset": "cifar10"}],
           "split": {"evolve": 2, "validate": 2, "test": nets - 4},  # a split needs >= 2 nets
           "stats": {"batch_size": batch_size, "cache_dir": str(tmp / "cache")},
           "evaluate": {"batch_size": batch_size, "proxies": PROXIES, "split": "test"}}
    if width or depth:
        cfg["network"] = {"width": width, "depth": depth}
    path = tmp / "speedup.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def timed(argv: list[str]) -> tuple[float, str, tuple[float, float], float]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    load_before = os.getloadavg()[0]
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "eznas.cli", *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)  # the command and its workers
    if done.returncode != 0:
        raise SystemExit(f"eznas {' '.join(argv)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return wall, done.stdout, (load_before, os.getloadavg()[0]), cpu


def forkserver_workers() -> bool:
    """Whether process workers fork from a fork server here (eznas.fanout uses one where it exists)."""
    import multiprocessing as mp

    return "forkserver" in mp.get_all_start_methods()


def summarise(rows: list[dict]) -> dict[str, float]:
    """Measured speed-ups (best 1-worker time / best 2-worker time) of wall time and build time, and
    the CPU-time ratio. ``*_projected_free_cores`` = 2 x cpu(1 worker) / cpu(2 workers) is NOT a
    measurement: the speed-up two free cores would give if the work split evenly, from the CPU
    seconds each run spent (start-up of the second worker included)."""
    def best(command: str, workers: int, key: str) -> float | None:
        vals = [r[key] for r in rows if r["command"] == command and r["workers"] == workers and r.get(key)]
        return min(vals) if vals else None

    summary = {}
    for command in ("stats", "evaluate"):
        for key in ("wall_s", "build_s"):
            one, two = best(command, 1, key), best(command, 2, key)
            if one and two:
                summary[f"{command}_{key}_speedup"] = round(one / two, 3)
        one, two = best(command, 1, "cpu_s"), best(command, 2, "cpu_s")
        if one and two:
            summary[f"{command}_cpu_s_ratio"] = round(one / two, 3)
            summary[f"{command}_projected_free_cores"] = round(2 * one / two, 3)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", type=int, default=20, help="networks per command (>= 6)")
    ap.add_argument("--repeats", type=int, default=1, help="fresh runs per (command, workers); the best counts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--width", type=int, default=None, help="NB201 channels (default: full size, 16)")
    ap.add_argument("--depth", type=int, default=None, help="NB201 cells per stage (default: full size, 5)")
    ap.add_argument("--commands", nargs="+", choices=["stats", "evaluate"], default=["stats", "evaluate"])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.nets < 6:
        raise SystemExit("--nets must be >= 6")
    rows = []
    for command in args.commands:
        for workers in (1, 2):
            for rep in range(args.repeats):
                with tempfile.TemporaryDirectory() as d:
                    tmp = Path(d)
                    cfg = write_config(tmp, args.nets, args.seed, args.batch_size, args.width, args.depth)
                    if command == "stats":
                        wall, out, load, cpu = timed(["stats", str(cfg), "--workers", str(workers), "--device", "cpu"])
                        m = re.search(r"; ([0-9.]+) s \(", out)
                        work = float(m.group(1)) if m else None
                        nets = args.nets
                    else:
                        # statistics are not needed by evaluate; it builds nets and scores baselines
                        wall, out, load, cpu = timed(["evaluate", str(cfg), "--workers", str(workers), "--device", "cpu",
                                                 "--out", str(tmp / "ev")])
                        work, nets = None, args.nets - 4
                # workers forked by the fork server are its children, not the command's: their CPU
                # time never reaches RUSAGE_CHILDREN here, so it is only known for one worker
                known = workers == 1 or not forkserver_workers()
                row = {"command": command, "workers": workers, "repeat": rep, "nets": nets, "wall_s": round(wall, 2),
                       "build_s": work, "cpu_s": round(cpu, 2) if known else None,
                       "cpu_per_wall": round(cpu / wall, 2) if known else None,
                       "load_before": load[0], "load_after": load[1]}
                print(json.dumps(row), flush=True)
                rows.append(row)

    summary = summarise(rows)
    doc = {"cores": os.cpu_count(), "nets": args.nets, "proxies": PROXIES, "batch_size": args.batch_size,
           "space": "nb201/cifar10", **({"width": args.width, "depth": args.depth} if args.width or args.depth else {}),
           "target_speedup": 1.7, "runs": rows, "summary": summary,
           "load_note": "wall_s includes interpreter start-up and data loading (the same for 1 and 2 workers); "
                        "load_before/after are 1-minute load averages (2 cores: above ~1 other jobs share them); "
                        "cpu_per_wall is the CPU seconds of the command and its workers per wall second: the "
                        "cores it actually got (2 workers cannot be 2x faster when it stays far below 2); both are null "
                        "for 2 workers forked by the fork server (their CPU time is not the command's)"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    for k, v in summary.items():
        print(f"{k}: {v:.2f}")
    print(f"written {args.out}")


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
