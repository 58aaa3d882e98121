"""Zero-shot NAS on the NB201 table: which cell does each proxy pick, and how good is it?

For each dataset, budget, strategy (random sampling, regularised evolution) and proxy, run the
search over ``--seeds`` seeds and tabulate the trained test accuracy of the picked cell (mean ± std),
beside a random choice (one uniformly drawn cell per seed) and published zero-shot search figures.

A cell's proxy score does not depend on the search seed: every score uses one fixed network/batch
seed (``--score-seed``), so all seeds, strategies and budgets share one score cache
(``--cache``, resumable: rerun the same command after an interrupt) and each (proxy, dataset,
cell) is scored once.

    python experiments/nas_study.py                                  # the full study (hours on CPU)
    python experiments/nas_study.py --proxies params --budgets 100 --seeds 3 --datasets cifar10
    python experiments/nas_study.py runs/my_run proxy.py              # add evolved proxies

The full study scores up to ~10,161 cells per (proxy, dataset); on one CPU core params takes
~0.01 s a cell, nwot ~0.5-0.9 s and zico ~1-1.7 s (see the README / the lead's notes).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eznas.atomic import atomic_write_text, check_output  # noqa: E402
from eznas.errors import EznasError, run_main  # noqa: E402
from eznas.nas import ScoreCache, search  # noqa: E402
from eznas.nas.strategies import MAX_STALE_CHILDREN  # noqa: E402
from eznas.nas.nb201 import TableSpace, load_proxies, make_scorers, proxy_specs, table_scorers  # noqa: E402
from eznas.nas.table import TableFile  # noqa: E402
from eznas.natsbench import DATASETS, load_table  # noqa: E402
from eznas.progress import progress  # noqa: E402

DEFAULT_PROXIES = ["params", "nwot", "zico"]
#: on a score table's pool (a few hundred of the 15,625 cells) most one-edge children are already
#: scored or absent; after this many known children in a row, evolution draws a random unscored cell
POOL_MAX_STALE = 20
RANDOM = "random choice"

#: Published zero-shot search results on NB201 (test accuracy %, mean ± std). NASWOT searched on
#: CIFAR-10 and trained the pick on each dataset; this study searches on each dataset's own head.
PUBLISHED: list[dict[str, Any]] = [
    {"method": "NASWOT, random sampling N=100", "paper": "Mellor et al., Neural Architecture Search without "
     "Training, ICML 2021, Table 2(a) (500 runs)", "budget": 100,
     "cifar10": "92.81 ± 0.99", "cifar100": "69.48 ± 1.70", "ImageNet16-120": "43.10 ± 3.16"},
    {"method": "NASWOT, random sampling N=1000", "paper": "Mellor et al., ICML 2021, Table 2(a)", "budget": 1000,
     "cifar10": "92.96 ± 0.81", "cifar100": "69.98 ± 1.22", "ImageNet16-120": "44.44 ± 2.10"},
    {"method": "best cell of a random sample N=100 (oracle)", "paper": "Mellor et al., ICML 2021, Table 2(a)",
     "budget": 100, "cifar10": "93.84 ± 0.23", "cifar100": "71.56 ± 0.78", "ImageNet16-120": "45.67 ± 0.64"},
    {"method": "random choice", "paper": "Mellor et al., ICML 2021, Table 2(a)", "budget": 1,
     "cifar10": "86.61 ± 13.46", "cifar100": "60.83 ± 12.58", "ImageNet16-120": "33.13 ± 9.66"},
    {"method": "REA with training (12000 s)", "paper": "Dong & Yang, NAS-Bench-201, ICLR 2020 (via Mellor et al.)",
     "budget": None, "cifar10": "93.92 ± 0.30", "cifar100": "71.84 ± 0.99", "ImageNet16-120": "45.54 ± 1.03"},
]
PUBLISHED_NOTES = [
    "ZiCo (Li et al., ICLR 2023) reports NB201 (NATS-Bench TSS) only as correlations (Spearman 0.80 / 0.81 / 0.79 "
    "on CIFAR-10 / CIFAR-100 / ImageNet16-120); its searches are on ImageNet (MobileNet space).",
    "SWAP-NAS (Peng et al., ICLR 2024) reports NB201 correlations; its evolutionary searches are on DARTS / ImageNet.",
    "AZ-NAS (Lee & Ham, CVPR 2024): NB201 search figures not verified here (the paper's table was not retrievable).",
]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("extra", nargs="*", help="more proxies: baseline names, exported .py files or run directories")
    p.add_argument("--proxies", nargs="+", default=DEFAULT_PROXIES)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--budgets", nargs="+", type=int, default=[100, 1000])
    p.add_argument("--seeds", type=int, default=10, help="search seeds 0..N-1")
    p.add_argument("--strategies", nargs="+", default=["random", "evolution"], choices=["random", "evolution"])
    p.add_argument("--population", type=int, default=20)
    p.add_argument("--sample-size", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--score-seed", type=int, default=0, help="network/batch seed of every score")
    p.add_argument("--out", default=str(ROOT / "experiments/results/nas_study.json"))
    p.add_argument("--cache", default=str(ROOT / "experiments/results/nas_study_cache.json"))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--trust", action="store_true", help="run proxy .py files as Python")
    p.add_argument("--table-scores", default=None, metavar="DIR",
                   help="precomputed scores (DIR/<dataset>.csv from table_scores.py or natsbench_pool_table.py): "
                        "the candidates are the table's cells and every proxy is one of its columns (or az_nas, "
                        "or an --ensemble); nothing is computed")
    p.add_argument("--ensemble", action="append", default=[], metavar="NAME=COL,COL,...",
                   help="with --table-scores: a rank ensemble of columns, searched as the proxy NAME")
    return p.parse_args(argv)


def parse_ensembles(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for it in items:
        name, sep, cols = it.partition("=")
        parts = [c.strip() for c in cols.split(",") if c.strip()]
        if not sep or not name.strip() or not parts:
            raise EznasError(f"--ensemble {it!r}: write NAME=COLUMN,COLUMN,...")
        out[name.strip()] = parts
    return out


def fmt(values: list[float]) -> str:
    return f"{np.mean(values):6.2f} ± {np.std(values):5.2f}" if values else "-"


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.seeds < 1 or any(b < 1 for b in args.budgets):
        raise EznasError("--seeds and --budgets must be >= 1")
    out = check_output(args.out, "--out")
    table = load_table(args.data_dir)
    specs = list(dict.fromkeys([*args.proxies, *args.extra]))
    ensembles = parse_ensembles(args.ensemble)
    pools: dict[str, TableFile] = {}
    if args.table_scores is not None:
        for d in args.datasets:
            path = Path(args.table_scores) / f"{d}.csv"
            if not path.is_file():
                raise EznasError(f"--table-scores: no {path}")
            pools[d] = TableFile(path, [])
        proxies: list = []
        cache = None
    else:
        if ensembles:
            raise EznasError("--ensemble needs --table-scores (an ensemble of computed proxies: list them with "
                             "eznas nas --proxy A --proxy B)")
        proxies = load_proxies(specs, trust=args.trust)
        cache = ScoreCache(check_output(args.cache, "--cache"), flush_interval_s=30.0)
    spaces = {d: TableSpace(table, cells=list(pools[d].rows) if d in pools else None) for d in args.datasets}
    small = min(len(s) for s in spaces.values())
    if max(args.budgets) > small:
        raise EznasError(f"a budget exceeds the {small} candidate cells" + (" of the score table" if pools else ""))
    rows: list[dict[str, Any]] = []
    timing: dict[str, dict[str, float]] = {}
    runs = [(d, b, s, p) for d in args.datasets for b in sorted(args.budgets) for s in args.strategies
            for p in range(len(specs))]
    bar = progress(total=len(runs) * args.seeds, desc="nas study", unit="search")
    t_start = time.perf_counter()
    for dataset in args.datasets:
        space = spaces[dataset]
        if dataset in pools:
            f = pools[dataset]
            groups = [(spec, table_scorers([spec], f.rows, f.columns, ensembles)) for spec in specs]
        else:
            computed = make_scorers(proxies, dataset, args.score_seed, args.batch_size, args.data_dir)
            groups = [(spec, [sc for sc in computed if sc.proxy == spec]) for spec in proxy_specs(proxies)]
        acc = np.array([space.accuracy(a, dataset) for a in space.archs])
        picks = [space.archs[int(np.random.default_rng(seed).integers(len(space)))] for seed in range(args.seeds)]
        rows.append({"dataset": dataset, "proxy": RANDOM, "strategy": "-", "budget": 1, "picks": picks,
                     "accuracy": [space.accuracy(a, dataset) for a in picks]})
        for budget in sorted(args.budgets):
            for strategy in args.strategies:
                for name, scorer in groups:
                    t = timing.setdefault(f"{name}|{dataset}", {"seconds": 0.0, "cells": 0})
                    picks, accs, fails = [], [], []
                    for seed in range(args.seeds):
                        res = search(scorer, space.archs, space.mutate, budget, seed, strategy=strategy,
                                     max_stale_children=POOL_MAX_STALE if dataset in pools else MAX_STALE_CHILDREN,
                                     population=args.population, sample_size=args.sample_size, cache=cache)
                        if dataset not in pools:  # table lookups are not proxy evaluations
                            t["seconds"] += res.score_s
                            t["cells"] += res.n_computed
                        picks.append(res.arch)
                        accs.append(space.accuracy(res.arch, dataset))
                        fails.append(res.n_failed)
                        bar.update(1)
                    rows.append({"dataset": dataset, "proxy": name, "strategy": strategy, "budget": budget,
                                 "picks": picks, "accuracy": accs, "failures": fails})
        if dataset in pools:
            rows.append({"dataset": dataset, "proxy": "pool best", "strategy": "-", "budget": len(space),
                         "picks": [space.archs[int(np.argmax(acc))]], "accuracy": [float(acc.max())]})
        full = table.dataset(dataset)
        rows.append({"dataset": dataset, "proxy": "table best", "strategy": "-", "budget": len(full),
                     "picks": [table.archs[int(np.argmax(full))]], "accuracy": [float(full.max())]})
    bar.close()
    if cache is not None:
        cache.flush()
    for r in rows:
        r["mean"], r["std"] = float(np.mean(r["accuracy"])), float(np.std(r["accuracy"]))
    seconds = {k: (v["seconds"] / v["cells"] if v["cells"] else None) for k, v in timing.items()}
    result = {"settings": {k: v for k, v in vars(args).items()}, "proxy_identities": {p[0]: p[2] for p in proxies},
              "candidates": {d: len(s) for d, s in spaces.items()},
              "rows": rows, "seconds_per_computed_cell": seconds, "wall_s": time.perf_counter() - t_start,
              "published": PUBLISHED, "published_notes": PUBLISHED_NOTES}
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    return result


def print_tables(result: dict[str, Any]) -> None:
    st = result["settings"]
    print(f"\nTest accuracy (%) of the picked NB201 cell, mean ± std over {st['seeds']} seeds "
          f"(score seed {st['score_seed']}, batch {st['batch_size']})")
    for dataset in st["datasets"]:
        print(f"\n{dataset}")
        print(f"  {'proxy':<24} {'strategy':<10} {'budget':>6}  {'accuracy':>15}")
        for r in result["rows"]:
            if r["dataset"] == dataset:
                fails = f"  ({sum(r['failures'])} failed cells)" if sum(r.get("failures", [0])) else ""
                print(f"  {r['proxy']:<24} {r['strategy']:<10} {r['budget']:>6}  {fmt(r['accuracy']):>15}{fails}")
        pub = [p for p in result["published"] if p.get(dataset)]
        print("  published (NB201):")
        for p in pub:
            b = p["budget"] if p["budget"] is not None else "-"
            print(f"    {p['method']:<44} {str(b):>6}  {p[dataset]:>15}   [{p['paper']}]")
    for note in result["published_notes"]:
        print(f"  note: {note}")
    print("\nseconds per computed cell (this machine):")
    for k, v in result["seconds_per_computed_cell"].items():
        print(f"  {k:<40} {'-' if v is None else f'{v:.3f}'}")
    print(f"wall time {result['wall_s']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    import torch

    torch.set_num_threads(1)
    args = parse(argv)
    try:
        result = run(args)
    except EznasError as e:
        print(f"nas_study: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nas_study: interrupted; scores are cached in {args.cache}; rerun the same command to resume",
              file=sys.stderr)
        return 130
    print_tables(result)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
