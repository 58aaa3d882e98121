"""Validation fitness of the committed runs' best programs, for choosing the built-in proxies.

``experiments/results/main_results.json`` records each GP seed's best program and its test figures
but not its validation fitness. This script recomputes it through the search's own scoring path
(:class:`eznas.scoring.Scorer` with the config's fitness, task aggregate, unit aggregate and
primitive set on the config's validate split, statistics from the cache, built if missing) — the
number the search's hall of fame ranks by. Where ``experiments/results/search_study.json`` holds the
same program from the same config (variant ``default``), its recorded validation fitness is printed
beside ours as a check. Writes ``experiments/results/builtin_validation.json``.

    python experiments/ship_validation.py [--settings nb201 all-spaces] [--workers 1]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eznas import config as config_mod  # noqa: E402
from eznas.evolve import SearchData  # noqa: E402
from eznas.scoring import Scorer, ScoringOptions  # noqa: E402
from eznas.errors import run_main  # noqa: E402

MAIN = ROOT / "experiments/results/main_results.json"
STUDY = ROOT / "experiments/results/search_study.json"
OUT = ROOT / "experiments/results/builtin_validation.json"


def study_validation(config: str) -> dict[tuple[int, str], float]:
    """(GP seed, program) -> validation fitness recorded by search_study.json for ``config``'s default variant."""
    if not STUDY.is_file():
        return {}
    runs = json.loads(STUDY.read_text())["runs"]
    return {(r["seed"], r["best"]): r["validate"] for r in runs
            if r.get("config") == config and r.get("variant") == "default" and "validate" in r}


def measure(setting: str, entry: dict, workers: int) -> dict:
    cfg_path = entry["config"]
    cfg = config_mod.load(ROOT / cfg_path)
    cfg.stats.workers = workers
    t0 = time.perf_counter()
    data = SearchData.for_config(cfg, build=("validate",), progress=False)
    val = data.load("validate")
    t_stats = time.perf_counter() - t0
    scorer = Scorer(val, ScoringOptions.from_search(cfg.search, memo_bytes=0))
    programs = [r["best"] for r in entry["runs"]]
    results = scorer.score(programs)
    recorded = study_validation(cfg_path)
    rows = []
    for run, res in zip(entry["runs"], results):
        rows.append({"seed": run["seed"], "program": run["best"], "validate": res.fitness,
                     "validate_per_task": res.per_task,
                     "recorded_by_search_study": recorded.get((run["seed"], run["best"]))})
    return {"config": cfg_path, "fitness": f"{cfg.search.fitness}, {cfg.search.aggregate} over tasks",
            "nets_per_task": {name: ts.n_nets for name, ts in val.items()},
            "statistics_s": round(t_stats, 1), "runs": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", default=["nb201", "all-spaces"])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--main", type=Path, default=MAIN, help="the runs' best programs (main_results.json format)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    main_results = json.loads(args.main.read_text())["settings"]
    for setting in args.settings:
        result = measure(setting, main_results[setting], args.workers)
        doc = json.loads(args.out.read_text()) if args.out.is_file() else {}  # another run may have written
        doc[setting] = result
        for r in doc[setting]["runs"]:
            check = r["recorded_by_search_study"]
            extra = "" if check is None else f" (search_study recorded {check:.4f})"
            print(f"{setting} seed {r['seed']}: validate {r['validate']:.4f}{extra}  {r['program']}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
