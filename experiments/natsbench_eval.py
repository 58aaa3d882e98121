"""Evolved NB201 proxies vs every baseline (SOTA ones included) on 500 held-out NB201 cells per dataset.

The programs are the best of each GP seed of ``configs/nb201.yaml`` (recorded in
``experiments/results/main_results.json``), scored at the statistics settings they were evolved with
(batch 64, R 16, s 8, unit scores summed), plus their rank ensemble. The cells are the test split of
``configs/nb201-natsbench.yaml``: 500 cells per dataset drawn from the whole-space NATS-Bench table
(10,161 cells), none chosen by the search; the script counts how many of them the search saw anyway
(the 472 NAS-Bench-Suite-Zero cells are a subset of the table). Baselines come from ``eznas evaluate``'s
score cache of that config (computed here where missing: the run is resumable) at evaluate batch 32.
That cache (30,000 scores, 3.5 MB) is not committed: a fresh clone recomputes it (about 5 s per net and
worker on one CPU core, resumable); every score it held is in the committed
``experiments/results/evaluation/nb201-natsbench/scores.csv``.
Every Spearman rho has a 95 % paired bootstrap interval; "delta" is each proxy's rho minus the best
baseline's on the same resampled nets.

    python experiments/natsbench_eval.py [--datasets cifar10,cifar100,ImageNet16-120]

writes ``experiments/results/natsbench_eval.json`` and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eznas import config as config_mod  # noqa: E402
from eznas import builtin_proxies, evaluate, intervals, metrics, records, stats  # noqa: E402
from eznas.ensemble import rank_average  # noqa: E402
from eznas.evaluate_tables import json_safe  # noqa: E402
from eznas.proxies import sets  # noqa: E402
from eznas.scoring import REPORT_MEMO_BYTES, Scorer, ScoringOptions  # noqa: E402
from eznas.errors import run_main  # noqa: E402

NATS_CONFIG = ROOT / "configs" / "nb201-natsbench.yaml"
EVOLVED_CONFIG = ROOT / "configs" / "nb201.yaml"
MAIN_RESULTS = ROOT / "experiments" / "results" / "main_results.json"
CACHE_DIR = ROOT / "experiments" / "results" / "evaluation" / "nb201-natsbench"
OUT = ROOT / "experiments" / "results" / "natsbench_eval.json"
ENSEMBLE = "evolved ensemble"


def seen_cells(dataset: str) -> set[str]:
    """Cells of ``configs/nb201.yaml``'s evolve and validate splits (what the search looked at)."""
    cfg = config_mod.load(EVOLVED_CONFIG)
    tc = next(t for t in cfg.tasks if t.dataset == dataset)
    task = records.load_task(tc.space, tc.dataset, cfg.data_dir, tc.benchmark)
    parts = task.split(cfg.seed, cfg.split.evolve, cfg.split.validate, cfg.split.test)
    return set(parts["evolve"].archs) | set(parts["validate"].archs)


def evolved_scores(test: records.Task, programs: Sequence[str], labels: Sequence[str],
                   cfg: config_mod.Config) -> dict[str, np.ndarray]:
    """Each program's score of every test cell, at ``cfg``'s statistics and scoring settings
    (missing statistics are built), plus their rank ensemble when there are several."""
    st = stats.StatsSettings.from_config(cfg, test.space, test.dataset)
    cache = stats.default_cache_dir(cfg)
    rep = stats.build_cache([(a, st) for a in test.archs], cache, cfg.data_dir, workers=1, progress=sys.stderr.isatty())
    if rep.computed:
        print(f"  statistics: {rep.computed} computed ({rep.seconds:.0f} s)", file=sys.stderr)
    ts = stats.load_task_stats(test, st, cache)
    scorer = Scorer({test.name: ts}, ScoringOptions.from_search(cfg.search, memo_bytes=REPORT_MEMO_BYTES))
    shipped = {builtin_proxies.read(n).expression: n for n in builtin_proxies.names()}
    out = {lab + (f" ({shipped[p]})" if p in shipped else ""): scorer.net_scores(p)[test.name]
           for lab, p in zip(labels, programs)}
    if len(out) > 1:
        out[ENSEMBLE] = rank_average(list(out.values()))
    return out


def baseline_scores(test: records.Task, cfg: config_mod.Config, cache_dir: Path = CACHE_DIR,
                    proxies: list[str] | None = None) -> dict[str, np.ndarray]:
    specs = evaluate.resolve_proxies(proxies or cfg.evaluate.proxies)
    cache, counters = evaluate.ScoreCache(cache_dir / evaluate.CACHE_FILE), evaluate.Counters()
    ts = evaluate.score_task(cfg, test, specs, cache, counters, progress=sys.stderr.isatty())
    if counters.computed:
        print(f"  baselines: {counters.computed} scores computed", file=sys.stderr)
    return dict(ts.scores)  # set-level az_nas ranked over the test cells by score_task itself


def compare(columns: Mapping[str, tuple[Mapping[str, np.ndarray], np.ndarray]], n_boot: int,
            seed: int) -> dict[str, dict]:
    """Per task: the best baseline (every column not named ``evolved...``) and, per proxy, Spearman /
    Kendall / top-10 %, their 95 % paired bootstrap intervals and Δρ against that baseline."""
    point = {t: {lab: metrics.correlations(s, acc) for lab, s in cols.items()} for t, (cols, acc) in columns.items()}
    rho = {t: {lab: v["spearman"] for lab, v in d.items()} for t, d in point.items()}
    baselines = [lab for lab in next(iter(columns.values()))[0] if not lab.startswith("evolved")]
    iv = intervals.bootstrap(columns, rho, baselines, n_boot=n_boot, seed=seed)
    return {t: {"best_baseline": intervals.best_baseline(rho[t], baselines),
                "proxies": {lab: {**v, "spearman_ci": list(iv.tasks[t][lab]["spearman"]),
                                  "kendall_ci": list(iv.tasks[t][lab]["kendall"]),
                                  "delta_vs_best_baseline": ([iv.delta[t][lab].value, *iv.delta[t][lab].interval]
                                                             if lab in iv.delta[t] else None)}
                            for lab, v in d.items()}}
            for t, d in point.items()}


def simulate_search(cols: dict[str, np.ndarray], acc: np.ndarray, budget: int, seeds: int) -> dict:
    """Random search with each proxy, simulated on the scored cells: per seed, ``budget`` cells drawn
    without replacement from the task's test cells (a uniform sample of the table) and the best by
    the proxy picked; the trained accuracy of the pick, mean and std over seeds. Set-level and
    ensemble columns are recomputed within each draw (they rank within the set they are given)."""
    budget = min(budget, len(acc))
    comps = [f"az_{c}" for c in sets.components_of("az_nas")]
    evolved = [k for k in cols if k.startswith("evolved seed")]
    picks: dict[str, list[float]] = {k: [] for k in cols}
    picks["oracle (best of the draw)"] = []
    for seed in range(seeds):
        idx = np.random.default_rng([seed, budget]).choice(len(acc), size=budget, replace=False)
        for name, s in cols.items():
            if name == "az_nas" and all(c in cols for c in comps):
                s = np.asarray(sets.score_set("az_nas", [{c[3:]: float(cols[c][i]) for c in comps} for i in idx]))
            elif name == ENSEMBLE:
                s = rank_average([cols[e][idx] for e in evolved])
            else:
                s = s[idx]
            clean = np.where(np.isfinite(s), s, -np.inf)
            picks[name].append(float(acc[idx][int(np.argmax(clean))]))
        picks["oracle (best of the draw)"].append(float(acc[idx].max()))
    return {"budget": budget, "seeds": seeds,
            "accuracy": {k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in picks.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="cifar10,cifar100,ImageNet16-120")
    ap.add_argument("--resamples", type=int, default=intervals.N_BOOT)
    ap.add_argument("--limit", type=int, default=None, help="first N test cells only (a quick check)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--search-budget", type=int, default=100, help="cells per simulated random search")
    ap.add_argument("--search-seeds", type=int, default=100)
    ap.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="the baselines' score cache (a folder)")
    ap.add_argument("--proxies", nargs="+", default=None, help="these baselines only (default: the config's)")
    args = ap.parse_args(argv)
    cfg, evolved_cfg = config_mod.load(NATS_CONFIG), config_mod.load(EVOLVED_CONFIG)
    programs = [r["best"] for r in json.loads(MAIN_RESULTS.read_text())["settings"]["nb201"]["runs"]]
    doc: dict = {"programs": programs, "config": str(NATS_CONFIG.relative_to(ROOT)), "tasks": {}}
    columns: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = {}
    for ds in args.datasets.split(","):
        tc = next(t for t in cfg.tasks if t.dataset == ds)
        task = records.load_task(tc.space, tc.dataset, cfg.data_dir, tc.benchmark)
        test = task.split(cfg.seed, cfg.split.evolve, cfg.split.validate, cfg.split.test)["test"]
        if args.limit:
            test = test.subset(list(range(min(args.limit, len(test)))))
        t0 = time.perf_counter()
        cols = {**evolved_scores(test, programs, [f"evolved seed {i}" for i in range(len(programs))], evolved_cfg),
                **baseline_scores(test, cfg, args.cache_dir, args.proxies)}
        columns[test.name] = (cols, np.asarray(test.accuracies, dtype=np.float64))
        seen = seen_cells(ds)
        doc["tasks"][test.name] = {"nets": len(test), "seen_by_search": sum(a in seen for a in test.archs),
                                   "seconds": time.perf_counter() - t0,
                                   "search": simulate_search(cols, columns[test.name][1], args.search_budget,
                                                             args.search_seeds)}
        print(f"{test.name}: {len(test)} nets scored", file=sys.stderr)
    for t, v in compare(columns, args.resamples, cfg.seed).items():
        doc["tasks"][t].update(v)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(json_safe(doc), indent=1))
    print(markdown(doc))
    print(search_markdown(doc))
    return 0


def markdown(doc: dict) -> str:
    tasks = doc["tasks"]
    names = list(dict.fromkeys(n for t in tasks.values() for n in t["proxies"]))
    names.sort(key=lambda n: -np.mean([t["proxies"][n]["spearman"] for t in tasks.values() if n in t["proxies"]]))
    head = "| proxy | " + " | ".join(f"{k} ({v['nets']} nets)" for k, v in tasks.items()) + " |"
    lines = [head, "|---|" + "---|" * len(tasks)]
    for n in names:
        cells = []
        for t in tasks.values():
            r = t["proxies"].get(n)
            if r is None:
                cells.append("–")
                continue
            mark = "**" if n == max(t["proxies"], key=lambda k: t["proxies"][k]["spearman"] or -1.0) else ""
            lo, hi = r["spearman_ci"]
            cells.append(f"{mark}{r['spearman']:.3f}{mark} [{lo:.3f}, {hi:.3f}]")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def search_markdown(doc: dict) -> str:
    """Simulated random search: the trained accuracy of each proxy's pick, mean ± std over seeds."""
    tasks = doc["tasks"]
    first = next(iter(tasks.values()))["search"]
    names = list(first["accuracy"])
    names.sort(key=lambda n: -np.mean([t["search"]["accuracy"][n]["mean"] for t in tasks.values()]))
    lines = ["| proxy | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{t['search']['accuracy'][n]['mean']:.2f} ± "
                                             f"{t['search']['accuracy'][n]['std']:.2f}" for t in tasks.values()) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
