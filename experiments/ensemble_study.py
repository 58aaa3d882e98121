"""Ensembles of evolved programs: average the rank of the top-k hall-of-fame programs.

The hall of fame is ordered by validation fitness, so choosing its top k uses no test data. For
each run directory given, and for the union of the runs' best programs, prints the test-split
Spearman rho per task of the rank-average ensemble (`eznas.ensemble.rank_average`, the same
function as `eznas evaluate --ensemble` and `eznas score --proxy A --proxy B`) against the single
best program.

    python experiments/ensemble_study.py runs/nb201-s0 runs/nb201-s1 runs/nb201-s2 --k 1 3 5
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from eznas import config as config_mod
from eznas.ensemble import rank_average
from eznas.evolve import SearchData
from eznas.metrics import spearman
from eznas.scoring import Scorer, ScoringOptions
from eznas.errors import run_main

OUT = Path(__file__).resolve().parents[1] / "experiments" / "results" / "ensemble_study.json"


def test_scorer(data: SearchData) -> Scorer:
    """Scores of programs on the config's test nets (the run's primitive set and unit aggregate)."""
    return Scorer(data.load("test"), ScoringOptions.from_search(data.cfg.search, memo_bytes=0))


def ensemble(members: list[dict[str, np.ndarray]], data: SearchData) -> dict[str, float]:
    res = {}
    for name, ts in data.load("test").items():
        res[name] = spearman(rank_average([m[name] for m in members]), ts.accuracies)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--k", type=int, nargs="+", default=[1, 3, 5])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = config_mod.load(Path(args.runs[0]) / "config.yaml")
    data = SearchData.for_config(cfg)
    scorer = test_scorer(data)
    out: dict[str, dict] = {}
    bests = []
    for run in args.runs:
        hall = json.loads((Path(run) / "hall_of_fame.json").read_text())["hall_of_fame"]
        members = [scorer.net_scores(h["infix"]) for h in hall[:max(args.k)]]
        bests.append(members[0])
        for k in args.k:
            r = ensemble(members[:k], data)
            out[f"{Path(run).name} top-{k}"] = r
    out["best of each run"] = ensemble(bests, data)
    tasks = list(next(iter(out.values())))
    print(f"{'ensemble':24s} " + " ".join(f"{t.split('/')[-1]:>15s}" for t in tasks))
    for name, r in out.items():
        print(f"{name:24s} " + " ".join(f"{r[t]:15.3f}" for t in tasks))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
