"""Evolved proxies against every baseline: the results tables of the README.

Settings (recorded seeds; splits, networks and statistics are fixed by each config's `seed`, the GP
seed varies):

* ``nb201``      — evolve on NB201 (3 datasets), test on their test splits (configs/nb201.yaml);
* ``all-spaces`` — evolve on NB201 + NB101 + NB301 + TNB-micro together (configs/all-spaces.yaml);
* ``transfer``   — evolve on NB201 alone with the statistics, splits and search of all-spaces
  (configs/transfer-nb201.yaml), then score the programs unchanged on the NB101 / NB301 /
  TNB-micro test nets of configs/all-spaces.yaml (`eznas transfer`), beside the all-spaces
  programs and the baselines on the same nets.

For each setting and seed: statistics (cached), the search, then `eznas evaluate` scores the same
test nets with every baseline once (score cache under experiments/results/evaluation/<config>, so
a rerun or another setting on the same nets recomputes nothing). Wall times of each step are
recorded. Writes experiments/results/main_results.json; `python experiments/update_readme.py`
turns it into the README's tables.

    python experiments/run_main_experiments.py --setting nb201 --seeds 0 1 2
    python experiments/run_main_experiments.py --setting all-spaces --seeds 0 1 2
    python experiments/run_main_experiments.py --setting transfer --seeds 0 1 2

Relative paths resolve against the repository root, not the current directory. A seed's run
directory (the config's ``run_dir`` + ``-s<seed>``) must not exist: an earlier run is never deleted,
the script stops and names it. ``--config`` runs a setting on another config (a small one for a
quick check), ``--out`` / ``--eval-dir`` put the results elsewhere.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # ensemble_study, when run as a script

from eznas import config as config_mod
from eznas import evolve
from eznas.evaluate import evaluate
from eznas.stats import build_cache, config_jobs, default_cache_dir
from eznas.transfer import transfer
from eznas.errors import run_main

SETTINGS = {"nb201": "configs/nb201.yaml", "all-spaces": "configs/all-spaces.yaml",
            "transfer": "configs/transfer-nb201.yaml"}
TRANSFER_TARGET = "configs/all-spaces.yaml"  # the transfer runs are scored on this config's test nets
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results" / "main_results.json"
EVAL_DIR = ROOT / "experiments" / "results" / "evaluation"


def in_repo(path: str | Path) -> Path:
    """``path``, relative paths taken from the repository root (not the current directory)."""
    return ROOT / path if not Path(path).is_absolute() else Path(path)


def shown(path: Path) -> str:
    """``path`` as recorded in the results: relative to the repository root when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def run_dir_of(cfg_path: str, seed: int) -> Path:
    return in_repo(f"{config_mod.load(in_repo(cfg_path)).run_dir}-s{seed}")


def run_seed(cfg_path: str, seed: int) -> dict:
    cfg = config_mod.load(in_repo(cfg_path))
    cfg.search.seed = seed
    run_dir = run_dir_of(cfg_path, seed)
    if run_dir.exists():
        raise SystemExit(f"run_main_experiments: run directory {run_dir} exists; remove it (or move it) first")
    cfg.run_dir = str(run_dir)
    jobs, _ = config_jobs(cfg)
    t0 = time.perf_counter()
    build_cache(jobs, default_cache_dir(cfg), cfg.data_dir, workers=cfg.stats.workers, progress=sys.stderr.isatty())
    t_stats = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = evolve.run(cfg, run_dir, progress=sys.stderr.isatty())
    t_search = time.perf_counter() - t1
    best = result["hall"][0]
    return {"seed": seed, "best": best["infix"], "run_dir": shown(run_dir), "statistics_s": t_stats,
            "search_s": t_search, "evaluations": result["evaluations"], "generations": result["generations"],
            "search_cpu_loop_s": result["search_s"], "per_task": {t: {"evolved": r["spearman"]} for t, r in best["test"].items()},
            "kendall": {t: r["kendall"] for t, r in best["test"].items()},
            "nets": {t: r["nets"] for t, r in best["test"].items()}}


def transfer_seed(cfg_path: str, seed: int) -> dict:
    """Search on the source config, then score its hall of fame on the target's other tasks."""
    r = run_seed(cfg_path, seed)
    seen = tuple(r["per_task"])
    t0 = time.perf_counter()
    rep = transfer(str(in_repo(r["run_dir"])), str(in_repo(TRANSFER_TARGET)), progress=sys.stderr.isatty(),
                   skip_tasks=seen)
    best = rep["hall_of_fame"][0]
    assert best["infix"] == r["best"]
    r["transfer_s"] = time.perf_counter() - t0
    for t, v in best["tasks"].items():
        r["per_task"][t] = {"evolved": v["spearman"]}
        r["kendall"][t] = v["kendall"]
        r["nets"][t] = v["nets"]
    return r


def evaluation_dir(cfg_path: str, root: Path = EVAL_DIR) -> Path:
    return root / Path(cfg_path).stem


def baselines(cfg_path: str, proxies: list[str], out: Path) -> tuple[dict[str, dict[str, float]], float]:
    """Spearman rho of every baseline on the config's test nets (computed once, then cached in ``out``)."""
    cfg = config_mod.load(in_repo(cfg_path))
    t0 = time.perf_counter()
    res = evaluate(cfg, proxies=proxies, out=out, progress=sys.stderr.isatty())
    return {t: {b: res.per_task[t][b]["spearman"] for b in proxies} for t in res.per_task}, time.perf_counter() - t0


def seeds_ensemble(cfg_path: str, runs: list[dict]) -> dict[str, float]:
    """Test Spearman rho of the rank average of the seeds' best programs (in-engine, cached statistics)."""
    from ensemble_study import test_scorer

    from eznas.ensemble import rank_average
    from eznas.evolve import SearchData
    from eznas.metrics import spearman

    data = SearchData.for_config(config_mod.load(in_repo(cfg_path)))
    scorer = test_scorer(data)
    members = [scorer.net_scores(r["best"]) for r in runs]
    return {t: spearman(rank_average([m[t] for m in members]), ts.accuracies) for t, ts in data.load("test").items()}


def _evolved_label(setting: str) -> str:
    return "evolved on NB201 only" if setting == "transfer" else "evolved"


def _cell(v: np.ndarray) -> str:
    return f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def table(setting: str, runs: list[dict], base: dict[str, dict[str, float]], baseline_names: list[str],
          extra: dict[str, dict[str, np.ndarray]] | None = None) -> str:
    """Markdown: one row per task; evolved columns (mean ± std over seeds) then the baselines."""
    tasks = list(runs[0]["per_task"])
    extra = extra or {}
    evolved_label = _evolved_label(setting)
    cols = [evolved_label, *extra, *baseline_names]
    lines = [f"**{setting}** — test-split Spearman ρ; evolved: mean ± std over GP seeds "
             f"{[r['seed'] for r in runs]}; baselines: `eznas evaluate` on the same nets "
             f"(same batch and initialisation seed); best per task in bold. CIFAR-10 images for every dataset.", "",
             "| task | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for t in tasks:
        vals = {evolved_label: np.array([r["per_task"][t]["evolved"] for r in runs], dtype=float)}
        vals.update({c: np.asarray(v.get(t, [np.nan]), dtype=float) for c, v in extra.items()})
        vals.update({b: np.array([base[t][b]], dtype=float) for b in baseline_names})
        best = max(cols, key=lambda c: -np.inf if np.isnan(np.nanmean(vals[c])) else np.nanmean(vals[c]))
        cells = [f"**{_cell(vals[c])}**" if c == best else _cell(vals[c]) for c in cols]
        seen = " — evolved on" if setting == "transfer" and t.startswith("nb201/") else ""
        lines.append(f"| {t} ({runs[0]['nets'][t]} nets{seen}) | " + " | ".join(cells) + " |")
    lines += ["", "Best programs:", ""] + [f"- seed {r['seed']}: `{r['best']}`" for r in runs]
    return "\n".join(lines) + "\n"


def plot(setting: str, v: dict, extra: dict | None, out_dir: Path) -> Path:
    """Grouped bars per task: evolved (mean ± std over seeds) beside every baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, names = v["runs"], v["baseline_names"]
    tasks = list(runs[0]["per_task"])
    main = _evolved_label(setting)
    series = {main: [np.array([r["per_task"][t]["evolved"] for r in runs]) for t in tasks]}
    for label, per_task in (extra or {}).items():
        series[label] = [np.asarray(per_task.get(t, [np.nan]), dtype=float) for t in tasks]
    for b in names:
        series[b] = [np.array([v["baselines"][t][b]]) for t in tasks]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(min(18, max(8, 1.3 * len(tasks) + 2)), 4.5))
    x = np.arange(len(tasks))
    for i, (label, vals) in enumerate(series.items()):
        ax.bar(x + i * width, [np.nanmean(a) for a in vals], width, yerr=[np.nanstd(a) for a in vals],
               label=label, color="black" if label == main else None)
    ax.set_xticks(x + 0.4 - width / 2)
    ax.set_xticklabels([t.replace("tnb_micro/", "tnb/") for t in tasks], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test Spearman ρ")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title(f"{setting}: evolved (mean ± std over seeds) vs baselines")
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    out = out_dir / f"main_{setting}.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return Path(shown(out))


def render(doc: dict, out_dir: Path) -> None:
    import warnings

    warnings.filterwarnings("ignore", category=RuntimeWarning)  # a baseline that is NaN on a task (synflow on TNB)
    for name, v in doc["settings"].items():
        extra = None
        if name == "transfer" and "all-spaces" in doc["settings"]:
            a = doc["settings"]["all-spaces"]["runs"]
            extra = {"evolved on all spaces": {t: np.array([r["per_task"][t]["evolved"] for r in a])
                                               for t in a[0]["per_task"]}}
        if "seeds_ensemble" in v:
            extra = {**(extra or {}), "ensemble of the seeds' best": {t: [x] for t, x in v["seeds_ensemble"].items()}}
        v["markdown"] = table(name, v["runs"], v["baselines"], v["baseline_names"], extra)
        v["markdown"] += f"\n![{name}]({plot(name, v, extra, out_dir)})\n"
    doc["markdown"] = "\n".join(doc["settings"][k]["markdown"] for k in SETTINGS if k in doc["settings"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--setting", choices=list(SETTINGS), default="nb201")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--baselines", nargs="+", default=None, help="default: the config's evaluate.proxies")
    ap.add_argument("--threads", type=int, default=1)  # 2 threads on a busy 2-core box oversubscribe
    ap.add_argument("--phase", choices=["all", "search", "baselines"], default="all",
                    help="search: only the searches (and transfer); baselines: only the baseline scores of a "
                         "setting whose searches are stored; all: both")
    ap.add_argument("--rerender", action="store_true", help="only rebuild the tables from the stored runs")
    ap.add_argument("--config", default=None, help="run the setting on this config instead (e.g. a tiny one)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results JSON (other settings in it are kept)")
    ap.add_argument("--eval-dir", type=Path, default=EVAL_DIR, help="baseline score caches, one folder per config")
    args = ap.parse_args()
    results = args.out.resolve()
    doc = json.loads(results.read_text()) if results.is_file() else {"settings": {}}
    cfg_path = args.config or SETTINGS[args.setting]
    if not args.rerender:
        torch.set_num_threads(args.threads)
        names = args.baselines or config_mod.load(in_repo(cfg_path)).evaluate.proxies
        entry = doc["settings"].setdefault(args.setting, {})
        entry["config"] = cfg_path
        if args.phase in ("all", "search"):
            t0 = time.perf_counter()
            step = transfer_seed if args.setting == "transfer" else run_seed
            entry["runs"] = [step(cfg_path, s) for s in args.seeds]
            entry["searches_s"] = time.perf_counter() - t0
            entry.pop("baselines", None)  # computed for these runs' nets below (cached)
        if args.phase in ("all", "baselines"):
            if "runs" not in entry:
                raise SystemExit(f"setting {args.setting}: no stored searches; run --phase search first")
            for r in entry["runs"]:  # runs stored before these were recorded: read them from the checkpoint
                ck = in_repo(r.get("run_dir", "")) / "checkpoint.json"
                if "evaluations" not in r and ck.is_file():
                    c = json.loads(ck.read_text())
                    tm = ck.with_name("timings.json")  # the wall clock moved out of the checkpoint
                    secs = c["seconds"] if "seconds" in c else json.loads(tm.read_text())["seconds"]
                    r.update(evaluations=c["evals"], generations=c["gen"], search_cpu_loop_s=secs)
            if "searches_s" not in entry and "pipeline_s" in entry:  # stored by a one-phase run
                entry["searches_s"] = entry["pipeline_s"] - entry["baselines_s"]
            base_cfg = TRANSFER_TARGET if args.setting == "transfer" else cfg_path
            eval_dir = evaluation_dir(base_cfg, args.eval_dir.resolve())
            base, t_base = baselines(base_cfg, names, eval_dir)
            entry["evaluation_dir"] = shown(eval_dir)  # its score cache times the baselines
            if entry.get("baseline_names") == names and "baselines_s" in entry:
                t_base = max(t_base, entry["baselines_s"])  # a rerun reads the cache: keep the computing run's time
            entry.update(baselines={t: base[t] for t in entry["runs"][0]["per_task"]}, baseline_names=names,
                         baselines_s=t_base)
            if args.setting != "transfer" and len(entry["runs"]) > 1:
                entry["seeds_ensemble"] = seeds_ensemble(cfg_path, entry["runs"])
        if "baselines" in entry:
            entry["pipeline_s"] = entry["searches_s"] + entry["baselines_s"]
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(doc, indent=2))
    complete = {k: v for k, v in doc["settings"].items() if "baselines" in v}
    render({"settings": complete}, results.parent)
    doc["markdown"] = "\n".join(complete[k]["markdown"] for k in SETTINGS if k in complete)
    if not args.rerender and args.setting in complete:
        print(complete[args.setting]["markdown"])
    results.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
