"""More fitness data: evolve on NATS-Bench cells instead of NAS-Bench-Suite-Zero's 80 per task.

The pool is the 500 cells per dataset of ``configs/nb201-natsbench.yaml``'s test split, for which
``experiments/natsbench_eval.py`` has cached the statistics (batch 64, R 16, s 8) and every baseline's
score. The pool is split again, with its own seed, into evolve / validate / test cells (default
200 / 100 / 200); a search per GP seed evolves on the evolve cells, picks its hall of fame on the
validate cells, and each seed's best program, their rank ensemble and every baseline are compared
on the pool's test cells with 95 % paired bootstrap intervals. The baselines see the same test cells,
so the comparison is fair; the numbers are not comparable with natsbench_eval.py's 500-cell ones.

    python experiments/natsbench_pool_search.py [--seeds 0 1 2] [--generations 15]

writes the pool benchmark, config and runs under ``--work`` (default runs/natsbench-pool) and the
comparison to ``experiments/results/natsbench_pool_search.json``; rerunning resumes finished seeds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eznas import config as config_mod  # noqa: E402
from eznas import evolve, intervals, records  # noqa: E402
from eznas.evaluate_tables import json_safe  # noqa: E402

NATS_CONFIG = ROOT / "configs" / "nb201-natsbench.yaml"
OUT = ROOT / "experiments" / "results" / "natsbench_pool_search.json"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from natsbench_eval import CACHE_DIR, baseline_scores, compare, evolved_scores  # noqa: E402
from eznas.errors import run_main  # noqa: E402


def write_pool(work: Path, datasets: list[str]) -> Path:
    """The natsbench test cells of every dataset as a benchmark file (records' format)."""
    cfg = config_mod.load(NATS_CONFIG)
    doc: dict = {"_meta": {"space": "nb201", "source": f"test split of {NATS_CONFIG.name} (seed {cfg.seed})"}}
    for ds in datasets:
        tc = next(t for t in cfg.tasks if t.dataset == ds)
        task = records.load_task(tc.space, tc.dataset, cfg.data_dir, tc.benchmark)
        test = task.split(cfg.seed, cfg.split.evolve, cfg.split.validate, cfg.split.test)["test"]
        doc[ds] = {a: {"val_accuracy": float(v)} for a, v in zip(test.archs, test.accuracies)}
    path = work / "pool.json"
    path.write_text(json.dumps(doc))
    return path


def search_section(population: int, generations: int, backend: str, workers: int) -> dict:
    """The config's ``search`` block of a pool search: configs/nb201.yaml's GP, every generation run."""
    return {"primitive_set": "eznas", "population": population, "offspring": population,
            "generations": generations, "tournament": 4, "max_depth": 10, "fitness": "spearman",
            "aggregate": "mean", "subsample": None, "unit_aggregate": "sum", "patience": generations,
            "backend": backend, "workers": workers}


def write_config(work: Path, pool: Path, datasets: list[str], args: argparse.Namespace, backend: str = "serial",
                 workers: int = 1, stats_cache: Path | None = None) -> Path:
    """``work/config.yaml``: NB201 tasks over the pool file, statistics at batch 64 (``stats_cache``:
    their own cache directory), the GP of :func:`search_section`."""
    stats_block: dict = {"batch_size": 64, "R": 16, "s": 8, "workers": workers}
    if stats_cache is not None:
        stats_block["cache_dir"] = str(stats_cache)
    raw = {"seed": 0, "run_dir": str(work / "run"),
           "tasks": [{"space": "nb201", "dataset": ds, "benchmark": str(pool)} for ds in datasets],
           "split": {"evolve": args.evolve, "validate": args.validate, "test": args.test},
           "stats": stats_block,
           "search": search_section(args.population, args.generations, backend, workers),
           "evaluate": {"batch_size": 32, "proxies": ["params"]}}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["cifar10", "cifar100", "ImageNet16-120"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--evolve", type=int, default=200)
    ap.add_argument("--validate", type=int, default=100)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--population", type=int, default=50)
    ap.add_argument("--generations", type=int, default=15)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "natsbench-pool")
    ap.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="natsbench_eval's baseline score cache")
    ap.add_argument("--proxies", nargs="+", default=None, help="these baselines only (default: the config's)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    pool = write_pool(args.work, args.datasets)
    cfg_path = write_config(args.work, pool, args.datasets, args)
    base_cfg = config_mod.load(cfg_path)
    best: dict[int, dict] = {}
    for seed in args.seeds:
        run_dir = args.work / f"s{seed}"
        if not (run_dir / "hall_of_fame.json").is_file():
            cfg = config_mod.load(cfg_path)
            cfg.search.seed = seed
            t0 = time.perf_counter()
            evolve.run(cfg, run_dir, resume=(run_dir / "checkpoint.json").is_file(), progress=True)
            print(f"seed {seed}: search {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        hall = json.loads((run_dir / "hall_of_fame.json").read_text())["hall_of_fame"]
        best[seed] = {"infix": hall[0]["infix"], "validate": hall[0].get("validate"), "evolve": hall[0].get("evolve")}
    nats = config_mod.load(NATS_CONFIG)
    columns: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = {}
    for tc in base_cfg.tasks:
        task = records.load_task(tc.space, tc.dataset, base_cfg.data_dir, tc.benchmark)
        test = task.split(base_cfg.seed, base_cfg.split.evolve, base_cfg.split.validate, base_cfg.split.test)["test"]
        cols = evolved_scores(test, [b["infix"] for b in best.values()], [f"evolved seed {s}" for s in best], base_cfg)
        cols.update(baseline_scores(test, nats, args.cache_dir, args.proxies))
        columns[test.name] = (cols, np.asarray(test.accuracies, dtype=np.float64))
    doc = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "programs": best, "tasks": {t: {"nets": len(columns[t][1]), **v}
                                       for t, v in compare(columns, intervals.N_BOOT, seed=0).items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(json_safe(doc), indent=1))
    from natsbench_eval import markdown

    print(markdown(doc))
    return 0


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
