"""The same config and seed give byte-identical run files and statistics in separate processes.

Comparing two runs inside one process cannot catch randomness that depends on memory addresses
(a set of type objects iterates in address order, and addresses change from process to process).
Each run here is a fresh interpreter with its own PYTHONHASHSEED, and the runner re-executes
itself (with another heap layout) until the set ``{Tensor, Scalar}`` iterates in the order the
test asks for, so the two
processes are guaranteed to disagree on set order: DEAP's own ``cxOnePoint`` (which draws the
crossover type from such a set) made these runs differ.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

#: a process with the requested iteration order of {Tensor, Scalar}; then the eznas CLI
RUNNER = r'''
import os, sys


def main():
    want, tries = sys.argv[1], int(os.environ.get("_EZNAS_SET_ORDER_TRIES", "0"))
    shift = [bytearray(16 * (i + 1)) for i in range(3 * tries)]  # another heap layout on every try
    from eznas.primitives import Scalar, Tensor
    order = "".join(t.__name__[0] for t in {Tensor, Scalar}) + "".join(t.__name__[0] for t in {Scalar, Tensor})
    if order != want * 2:
        if tries >= 20:
            sys.exit(f"no process with set order {want} in {tries} tries")
        os.environ["_EZNAS_SET_ORDER_TRIES"] = str(tries + 1)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    print("set order", order[:2], "after", tries, "re-executions", file=sys.stderr)
    import hashlib, random
    from eznas import program, variation
    pset = program.load_primitive_set("eznas")
    rng = random.Random(7)
    out = []
    for _ in range(300):  # the crossover alone, on seeded random trees
        a, b = program.random_tree(pset, rng, 2, 4), program.random_tree(pset, rng, 2, 4)
        random.seed(rng.random())
        a, b = variation.cx_one_point(a, b)
        out.append(program.to_infix(a) + "|" + program.to_infix(b))
    print("crossover", hashlib.sha256("\n".join(out).encode()).hexdigest(), flush=True)
    from eznas.cli import main as cli_main
    sys.exit(cli_main(sys.argv[2:]))


if __name__ == "__main__":  # not again in spawned worker processes
    main()
'''

COMPARED = ("checkpoint.json", "hall_of_fame.json", "best.txt", "config.yaml")


def _config(tmp_path: Path, cache: str = "cache", name: str = "det.yaml") -> Path:
    raw = {
        "seed": 5,
        "run_dir": "unused",
        "tasks": [{"space": "nb201", "dataset": "digits", "benchmark": "digits"}],
        "split": {"evolve": 12, "validate": 6, "test": 6},
        "network": {"width": 4, "depth": 1},
        "stats": {"batch_size": 8, "R": 4, "s": 4, "cache_dir": str(tmp_path / cache)},
        # the full primitive set and a high crossover rate: many crossovers with both types in common
        "search": {"primitive_set": "eznas", "population": 10, "offspring": 12, "generations": 5, "subsample": 8,
                   "hall_of_fame": 3, "tournament": 3, "max_depth": 6, "init_min_depth": 1, "init_max_depth": 3,
                   "cxpb": 0.8, "mutpb": 0.1},
    }
    p = tmp_path / name
    p.write_text(yaml.safe_dump(raw))
    return p


def _run(tmp_path: Path, order: str, hashseed: int, *args: str) -> subprocess.CompletedProcess:
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    env = dict(os.environ, PYTHONHASHSEED=str(hashseed), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(runner), order, *args], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"set order {order}" in out.stderr
    return out


def test_search_is_byte_identical_across_processes(tmp_path, data_dir):
    cfg = _config(tmp_path)
    runs, crossovers = {}, {}
    for order, hashseed in (("TS", 11), ("ST", 12)):
        run_dir = tmp_path / f"run-{order}"
        out = _run(tmp_path, order, hashseed, "evolve", str(cfg), "--run-dir", str(run_dir))
        runs[order] = run_dir
        crossovers[order] = out.stdout.splitlines()[0]
    assert crossovers["TS"] == crossovers["ST"] and crossovers["TS"].startswith("crossover ")
    for name in COMPARED:
        assert (runs["TS"] / name).read_bytes() == (runs["ST"] / name).read_bytes(), \
            f"{name} differs between the two processes"
    # the wall clock lives in timings.json (and log.csv), never in the compared files
    assert b"seconds" not in (runs["TS"] / "checkpoint.json").read_bytes()
    assert (runs["TS"] / "timings.json").is_file()
    # statistics entries too: the same nets recorded by a third process into another cache
    _run(tmp_path, "ST", 13, "stats", str(_config(tmp_path, "cache-b", "det-b.yaml")))
    entries = {p.name: p.read_bytes() for p in (tmp_path / "cache").rglob("*.npz")}
    again = {p.name: p.read_bytes() for p in (tmp_path / "cache-b").rglob("*.npz")}
    assert len(entries) == 12 + 6 + 6 and entries == again
    log_a = [r.split(",")[:7] for r in (runs["TS"] / "log.csv").read_text().splitlines()]
    log_b = [r.split(",")[:7] for r in (runs["ST"] / "log.csv").read_text().splitlines()]
    assert log_a == log_b and len(log_a) == 1 + 6
