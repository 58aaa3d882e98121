"""Evolved proxies against every baseline: the results table of the README.

For each setting (a config) and seed: run the search (statistics cached), then score the test
split of every task with every baseline (`eznas evaluate`, same nets, same batch, same seed) and
put the evolved proxy's test-split correlations (in-engine, from `hall_of_fame.json`) beside them.
Writes experiments/results/main_results.json (with a markdown table) and prints the table.

    python experiments/run_main_experiments.py --setting nb201 --seeds 0 1 2
    python experiments/update_readme.py
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from eznas import config as config_mod
from eznas import evolve
from eznas.evaluate import evaluate
from eznas.stats import build_cache, config_jobs, default_cache_dir

SETTINGS = {"nb201": "configs/nb201.yaml", "all-spaces": "configs/all-spaces.yaml"}
RESULTS = Path("experiments/results/main_results.json")


def run_seed(cfg_path: str, seed: int, baselines: list[str]) -> dict:
    cfg = config_mod.load(cfg_path)
    cfg.search.seed = seed  # splits, networks and statistics keep the config's seed; the GP varies
    run_dir = Path(f"{cfg.run_dir}-s{seed}")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cfg.run_dir = str(run_dir)
    jobs, _ = config_jobs(cfg)
    t0 = time.perf_counter()
    build_cache(jobs, default_cache_dir(cfg), cfg.data_dir, workers=cfg.stats.workers, progress=sys.stderr.isatty())
    t_stats = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = evolve.run(cfg, run_dir, progress=sys.stderr.isatty())
    t_search = time.perf_counter() - t1
    t2 = time.perf_counter()
    base = evaluate(cfg, proxies=baselines, out=Path("runs/evaluation") / Path(cfg_path).stem,
                    progress=sys.stderr.isatty())  # same nets for every seed: scores come from the cache
    t_eval = time.perf_counter() - t2
    best = result["hall"][0]
    per_task = {t: {"evolved": r["spearman"], **{b: base.per_task[t][b]["spearman"] for b in baselines}}
                for t, r in best["test"].items()}
    return {"seed": seed, "best": best["infix"], "per_task": per_task, "statistics_s": t_stats,
            "search_s": t_search, "baselines_s": t_eval, "nets": {t: r["nets"] for t, r in best["test"].items()}}


def table(setting: str, runs: list[dict], baselines: list[str]) -> str:
    tasks = list(runs[0]["per_task"])
    cols = ["evolved"] + baselines
    lines = [f"**{setting}** — test-split Spearman ρ; evolved: mean ± std over GP seeds "
             f"{[r['seed'] for r in runs]}; baselines: computed once by `eznas evaluate` on the same nets "
             f"(same batch and initialisation seed); best per task in bold. CIFAR-10 images for every dataset.", "",
             "| task | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for t in tasks:
        vals = {c: np.array([r["per_task"][t][c] for r in runs], dtype=float) for c in cols}
        best = max(cols, key=lambda c: np.nanmean(vals[c]))
        cells = []
        for c in cols:
            v = vals[c]
            varies = len(v) > 1 and np.nanstd(v) > 1e-9  # baselines: one value, same nets for every seed
            s = f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}" if varies else f"{v[0]:.3f}"
            cells.append(f"**{s}**" if c == best else s)
        lines.append(f"| {t} ({runs[0]['nets'][t]} nets) | " + " | ".join(cells) + " |")
    lines += ["", "Search wall time after caching (s): " + ", ".join(f"seed {r['seed']}: {r['search_s']:.0f}" for r in runs),
              "", "Best programs:", ""] + [f"- seed {r['seed']}: `{r['best']}`" for r in runs]
    return "\n".join(lines) + "\n"


def rerender() -> None:
    """Rebuild the markdown of every stored setting (after a change to the table layout)."""
    doc = json.loads(RESULTS.read_text())
    for name, v in doc["settings"].items():
        cfg = config_mod.load(v["config"])
        v["markdown"] = table(name, v["runs"], cfg.evaluate.proxies)
    doc["markdown"] = "\n".join(v["markdown"] for v in doc["settings"].values())
    RESULTS.write_text(json.dumps(doc, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--setting", choices=list(SETTINGS), default="nb201")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--baselines", nargs="+", default=None, help="default: the config's evaluate.proxies")
    ap.add_argument("--threads", type=int, default=1)  # 2 threads on a busy 2-core box oversubscribe
    ap.add_argument("--rerender", action="store_true", help="only rebuild the tables from the stored runs")
    args = ap.parse_args()
    if args.rerender:
        return rerender()
    torch.set_num_threads(args.threads)
    cfg_path = SETTINGS[args.setting]
    baselines = args.baselines or config_mod.load(cfg_path).evaluate.proxies
    t0 = time.perf_counter()
    runs = [run_seed(cfg_path, s, baselines) for s in args.seeds]
    md = table(args.setting, runs, baselines)
    print(md)
    doc = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"settings": {}}
    doc["settings"][args.setting] = {"config": cfg_path, "runs": runs, "markdown": md,
                                     "pipeline_s": time.perf_counter() - t0}
    doc["markdown"] = "\n".join(v["markdown"] for v in doc["settings"].values())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
