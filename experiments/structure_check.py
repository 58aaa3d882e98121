"""Do the evolved programs read the tensors, or only the networks' structure?

With unit scores summed into the network score, a program could win by counting units. For the
best program of each run this script compares, on the test split:

* its Spearman rho on the real statistics;
* its rho when every recorded value is replaced by Gaussian noise (same shapes, exact zeros of the
  zero-padding kept, seeded): what is left is structure alone (units, padding, sizes);
* the rho of the plain number of units per network.

A program whose rho survives the noise is a structure counter; one whose rho collapses reads the
tensors. Writes experiments/results/structure_check.json.

    python experiments/structure_check.py runs/nb201-s0 runs/nb201-s1 runs/nb201-s2
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from eznas import config as config_mod
from eznas.evolve import SearchData
from eznas.fitness import correlation
from eznas.scoring import Scorer, ScoringOptions
from eznas.stats import TaskStats
from eznas.errors import run_main

OUT = Path(__file__).resolve().parents[1] / "experiments" / "results" / "structure_check.json"


def with_noise(ts: TaskStats, seed: int) -> TaskStats:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(ts.values.shape, generator=g, dtype=torch.float32).to(ts.values.dtype)
    values = torch.where(ts.values == 0, torch.zeros_like(ts.values), noise)
    return dataclasses.replace(ts, values=values)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = config_mod.load(Path(args.runs[0]) / "config.yaml")
    test = SearchData.for_config(cfg).load("test")
    noisy = {name: with_noise(ts, args.seed) for name, ts in test.items()}
    options = ScoringOptions.from_search(cfg.search, memo_bytes=0)
    scorers = {"real": Scorer(test, options), "noise": Scorer(noisy, options)}
    how = cfg.search.unit_aggregate
    doc: dict = {"config": str(Path(args.runs[0]) / "config.yaml"), "unit_aggregate": how, "units_count": {}, "runs": []}
    for name, ts in test.items():
        counts = np.bincount(ts.net_index.numpy(), minlength=ts.n_nets).astype(float)
        doc["units_count"][name] = correlation(counts, ts.accuracies, "spearman")
    for run in args.runs:
        best = json.loads((Path(run) / "hall_of_fame.json").read_text())["hall_of_fame"][0]["infix"]
        row: dict = {"run": run, "program": best}
        for kind, scorer in scorers.items():
            row[kind] = {name: r["spearman"] for name, r in scorer.correlations([best])[0].items()}
        doc["runs"].append(row)
        print(run, best)
        for name in test:
            print(f"  {name:24s} real {row['real'][name]:6.3f}  noise {row['noise'][name]:6.3f}  "
                  f"units {doc['units_count'][name]:6.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
