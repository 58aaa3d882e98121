"""Time of every primitive on real statistics rows, and its share of a random program's cost.

Loads the same rows as ``experiments/eval_throughput.py`` (the first 20 evolve nets of the
config's first task), times each registered primitive on real terminals (CPU time, median of
``--repeats``), counts how often each primitive occurs in random programs of the ``eznas`` set,
and prints a table sorted by expected milliseconds per program (time x occurrences per program).
Writes ``experiments/results/primitive_profile.json``.

    python experiments/primitive_profile.py [--config configs/nb201.yaml] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_throughput import REPO, load_rows, programs, with_rows  # noqa: E402

from eznas import primitives as P  # noqa: E402
from eznas.expression import Call, Evaluator, nodes, parse  # noqa: E402
from eznas.primitives import Scalar, Tensor  # noqa: E402
from eznas.errors import run_main  # noqa: E402

#: terminals the primitives are timed on: weights, activations (many rank-deficient blocks), gradients
TERMINALS = ("A_D", "gX_D", "W", "Z_N")


def time_primitive(spec: P.PrimitiveSpec, tensors: list[torch.Tensor], scalars: list[torch.Tensor],
                   repeats: int) -> float:
    """Median CPU milliseconds of one call, over the terminals in turn."""
    times = []
    for r in range(repeats):
        k = r % len(tensors)
        args = [tensors[(k + i) % len(tensors)] if t is Tensor else scalars[(k + i) % len(scalars)]
                for i, t in enumerate(spec.args)]
        t0 = time.process_time()
        spec.fn(*args)
        times.append(time.process_time() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(REPO / "configs" / "nb201.yaml"))
    ap.add_argument("--nets", type=int, default=20)
    ap.add_argument("--rows", type=int, default=0, help="time on this many rows instead (loaded nets repeated)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--programs", type=int, default=500, help="random eznas programs to count occurrences in")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "experiments" / "results" / "primitive_profile.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ts = with_rows(load_rows(args.config), args.rows) if args.rows else load_rows(args.config, args.nets)
    rows = int(ts.values.shape[0])
    evaluator = Evaluator(ts.values, cache_bytes=0)  # terminals exactly as programs see them
    tensors = [evaluator.terminal(n) for n in TERMINALS]
    scalars = [t.mean(dim=(1, 2, 3)) for t in tensors]
    infixes, _ = programs("eznas", args.programs, args.seed)
    counts: Counter[str] = Counter()
    for text in infixes:
        counts.update(n.name for n in nodes(parse(text, object)) if isinstance(n, Call))
    table = []
    with torch.no_grad():
        for name, spec in P.REGISTRY.items():
            ms = time_primitive(spec, tensors, scalars, args.repeats)
            per_prog = counts[name] / len(infixes)
            table.append({"primitive": name, "ms": ms, "per_program": per_prog, "ms_per_program": ms * per_prog,
                          "returns": "Scalar" if spec.ret is Scalar else "Tensor"})
    table.sort(key=lambda e: -e["ms_per_program"])
    total = sum(e["ms_per_program"] for e in table)
    print(f"{ts.name}: {rows} rows, {args.threads} thread(s), CPU ms (median of {args.repeats}); "
          f"occurrences in {len(infixes)} random eznas programs")
    print(f"{'primitive':12s} {'ms/call':>9s} {'calls/prog':>10s} {'ms/prog':>8s} {'share':>6s}")
    for e in table:
        print(f"{e['primitive']:12s} {e['ms']:9.3f} {e['per_program']:10.3f} {e['ms_per_program']:8.3f} "
              f"{e['ms_per_program'] / total:6.1%}")
    print(f"{'total':12s} {'':9s} {'':10s} {total:8.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"task": ts.name, "rows": rows, "threads": args.threads,
                                          "repeats": args.repeats, "terminals": list(TERMINALS),
                                          "expected_ms_per_program": total, "primitives": table}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
