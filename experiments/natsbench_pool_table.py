"""The 500 held-out NATS-Bench cells per dataset as a score table (the format of table_scores.py).

Columns: the evolved programs (the shipped ``eznas-nb201`` and each ``configs/nb201.yaml`` GP seed's
best, scored from the statistics cache at the settings they were evolved with, batch 64; as
experiments/natsbench_eval.py) and every baseline of
``experiments/results/evaluation/nb201-natsbench/scores.csv`` (``eznas evaluate``, batch 32; the
set-level az_nas column is left out: a search recomputes it from its four components over the cells
it has scored). ``experiments/nas_study.py --table-scores`` searches over these cells with them.

    python experiments/natsbench_pool_table.py        # writes experiments/results/table_scores_natsbench500/
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eznas import builtin_proxies, records  # noqa: E402
from eznas import config as config_mod  # noqa: E402
from eznas.nas.table import TableFile  # noqa: E402
from natsbench_eval import CACHE_DIR, EVOLVED_CONFIG, MAIN_RESULTS, NATS_CONFIG, evolved_scores  # noqa: E402
from eznas.errors import run_main  # noqa: E402

OUT = ROOT / "experiments" / "results" / "table_scores_natsbench500"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["cifar10", "cifar100", "ImageNet16-120"])
    ap.add_argument("--limit", type=int, default=None, help="first N test cells only (a quick check)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    cfg, evolved_cfg = config_mod.load(NATS_CONFIG), config_mod.load(EVOLVED_CONFIG)
    runs = json.loads(MAIN_RESULTS.read_text())["settings"]["nb201"]["runs"]
    programs = [r["best"] for r in runs]
    shipped = builtin_proxies.read("eznas-nb201").expression
    with (CACHE_DIR / "scores.csv").open(newline="") as f:
        base_rows = list(csv.DictReader(f))
    base_cols = [c for c in base_rows[0] if c not in ("task", "arch", "accuracy", "az_nas")]
    meta: dict = {"source": {"programs": str(MAIN_RESULTS.relative_to(ROOT)),
                             "baselines": str((CACHE_DIR / "scores.csv").relative_to(ROOT))}, "cells": {}}
    for ds in args.datasets:
        tc = next(t for t in cfg.tasks if t.dataset == ds)
        task = records.load_task(tc.space, tc.dataset, cfg.data_dir, tc.benchmark)
        test = task.split(cfg.seed, cfg.split.evolve, cfg.split.validate, cfg.split.test)["test"]
        if args.limit:
            test = test.subset(list(range(min(args.limit, len(test)))))
        labels = [f"evolved seed {i}" for i in range(len(programs))]
        got = evolved_scores(test, programs, labels, evolved_cfg)  # the shipped one's label gets its name
        ev = {lab: next(v for k, v in got.items() if k == lab or k.startswith(lab + " (")) for lab in labels}
        cols = {"eznas-nb201": ev[labels[programs.index(shipped)]], **ev}
        base = {r["arch"]: r for r in base_rows if r["task"] == test.name}
        missing = [a for a in test.archs if a not in base]
        if missing:
            raise SystemExit(f"natsbench_pool_table: {len(missing)} {ds} cells lack baseline scores in "
                             f"{CACHE_DIR / 'scores.csv'} (run experiments/natsbench_eval.py)")
        path = args.out / f"{ds}.csv"
        if path.exists():
            path.unlink()
        table = TableFile(path, [*cols, *base_cols])
        for i, arch in enumerate(test.archs):
            row = {k: float(v[i]) for k, v in cols.items()}
            row.update({c: float(base[arch][c]) if base[arch][c] not in ("", "nan") else float("nan")
                        for c in base_cols})
            table.put(arch, row)
        table.flush()
        meta["cells"][ds] = len(test)
        print(f"{ds}: {len(test)} cells, {len(table.columns)} proxies -> {path}  "
              f"(evolved mean {np.nanmean(cols['eznas-nb201']):.4g})")
    meta["columns"] = list(table.columns)
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
