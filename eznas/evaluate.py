"""``python -m eznas.evaluate config.yaml`` (= ``eznas evaluate``): score proxies on a config's
tasks and tabulate how well they rank the nets by accuracy.

For every task of the config, the nets of ``evaluate.split`` (``Task.split`` with the config's
split sizes and seed) are built with ``seed``, ``network.width`` / ``network.depth``, fed one
batch from :func:`eznas.batches.make_batches` (``evaluate.batch_size``, ``seed``), and scored by
every requested proxy: a baseline name (:mod:`eznas.proxies`), an exported ``.py`` proxy, or a
run directory (its hall of fame). Output directory (default ``<run_dir>/evaluation``):

- ``results.md`` / ``results.csv`` / ``results.json``: Spearman rho, Kendall tau and top-10%
  precision per task, mean and worst over tasks, mean seconds per net per proxy;
- ``scores.csv``: every net's accuracy and scores;
- ``scatter_<task>.png`` (score vs accuracy per proxy) and ``comparison.png`` (bar chart);
- ``score_cache.json``: scores keyed by (space, dataset, arch, proxy, seed, batch size, width,
  depth), rewritten atomically after each net, so adding a proxy or resuming after Ctrl-C
  recomputes nothing already done.

``--published`` adds NASLib's published scores of the same nets as ``"<name> (published)"``.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import importlib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from eznas import records
from eznas import config as config_mod
from eznas.atomic import atomic_write_text
from eznas.ensemble import rank_average
from eznas.errors import EznasError
from eznas.metrics import METRICS, correlations, evaluate_scores, summarise  # noqa: F401  (re-exported)
from eznas.proxies import LossFn
from eznas.spaces import get_space

CACHE_FILE = "score_cache.json"
CACHE_VERSION = 1
ENSEMBLE = "ensemble"  # column label of the rank-average ensemble of the evolved proxies
PUBLISHED_SUFFIX = " (published)"


# ----------------------------------------------------------------------------- proxies
@dataclass
class ProxySpec:
    """One proxy to evaluate: its column label, its identity in the score cache, and a loader."""

    label: str
    cache_id: str
    loader: Callable[[], Callable[..., float]]
    baseline: str | None = None  # the registry name, for baselines
    source: str = ""  # what the user gave (name, .py file, run directory): workers resolve it again
    _fn: Callable[..., float] | None = field(default=None, repr=False)

    def score(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
              loss_fn: LossFn | None) -> float:
        if self._fn is None:
            self._fn = self.loader()
        return _export_module().call_proxy(self._fn, model, inputs, targets, loss_fn=loss_fn)


def _export_module() -> Any:
    try:
        return importlib.import_module("eznas.export")
    except ImportError as e:
        raise EznasError(f"evaluating exported proxies needs eznas.export, which cannot be imported ({e})") from None


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _run_proxies(run_dir: Path) -> list[ProxySpec]:
    loaded = _export_module().load_run_proxies(str(run_dir))
    hof = run_dir / "hall_of_fame.json"
    ident = _file_hash(hof) if hof.is_file() else hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]
    specs = [ProxySpec(f"{run_dir.name}:{name}", f"run:{ident}:{name}", lambda fn=fn: fn) for name, fn in loaded.items()]
    if not specs:
        raise EznasError(f"run directory {run_dir} has no proxies in its hall of fame")
    return specs


def resolve_proxies(specs: Sequence[str]) -> list[ProxySpec]:
    """Baseline names, exported ``.py`` files and run directories -> :class:`ProxySpec` list
    (what each names is decided by :func:`eznas.export.proxy_kind`, as for ``load_proxy``)."""
    export = _export_module()
    out: list[ProxySpec] = []
    for spec in dict.fromkeys(specs):
        kind = export.proxy_kind(spec)
        path = Path(spec).expanduser()
        first = len(out)
        if kind == "run":
            out.extend(_run_proxies(path))
        elif kind == "file":
            out.append(ProxySpec(path.stem, f"file:{_file_hash(path)}",
                                 lambda path=path: _export_module().load_proxy(str(path))))
        else:
            out.append(ProxySpec(spec, spec, lambda spec=spec: _export_module().load_proxy(spec), baseline=spec))
        for new in out[first:]:
            new.source = spec
    labels = [s.label for s in out]
    dup = next((lab for lab in labels if labels.count(lab) > 1), None)
    if dup is not None:
        raise EznasError(f"two proxies are both named '{dup}'; rename one of the files")
    return out


# ----------------------------------------------------------------------------- cache
class ScoreCache:
    """Scores on disk as JSON ``{key: {"score": s | null, "time": seconds}}``; atomic rewrites."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, float | None]] = {}
        if path.is_file():
            try:
                raw = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise EznasError(f"score cache {path} is not valid JSON; delete it to recompute") from None
            if not isinstance(raw, dict) or raw.get("version") != CACHE_VERSION:
                raise EznasError(f"score cache {path} has an unknown format; delete it to recompute")
            self.entries = raw.get("scores", {})

    @staticmethod
    def key(space: str, dataset: str, arch: str, proxy: str, seed: int, batch_size: int,
            width: int | None, depth: int | None) -> str:
        return "|".join(str(v) for v in (space, dataset, arch, proxy, seed, batch_size, width, depth))

    def get(self, key: str) -> tuple[float, float] | None:
        e = self.entries.get(key)
        if e is None:
            return None
        s = e.get("score")
        return (math.nan if s is None else float(s)), float(e.get("time") or 0.0)

    def put(self, key: str, score: float, seconds: float) -> None:
        self.entries[key] = {"score": score if math.isfinite(score) else None, "time": seconds}

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps({"version": CACHE_VERSION, "scores": self.entries}))


# ----------------------------------------------------------------------------- scoring
@dataclass
class TaskScores:
    name: str
    archs: list[str]
    accuracies: np.ndarray
    scores: dict[str, np.ndarray]
    seconds: dict[str, list[float]]


@dataclass
class Counters:
    computed: int = 0
    cached: int = 0
    failed: int = 0
    first_error: str = ""


def score_task(cfg: config_mod.Config, task: records.Task, specs: list[ProxySpec], cache: ScoreCache,
               counters: Counters, progress: bool = True) -> TaskScores:
    """Scores of every spec on every net of ``task``: from the cache where present, else computed
    one net per job on ``evaluate.backend`` / ``.workers`` and ``device`` (:mod:`eznas.score_fanout`)."""
    from eznas import score_fanout
    from eznas.devices import resolved_name
    from eznas.fanout import Fanout

    sp = get_space(task.space)
    ev, net = cfg.evaluate, cfg.network
    device = cfg.device if ev.backend == "ray" else resolved_name(cfg.device, "config key 'device':")
    fan = Fanout(ev.backend, ev.workers, cfg.ray_address, threads=1 if ev.workers > 1 else 0, what="scoring",
                 device=device)
    sources = tuple(dict.fromkeys(s.source for s in specs))
    score_fanout.remember_specs(sources, specs)
    by_label = {s.label: s for s in specs}
    keys = {(arch, s.label): ScoreCache.key(sp.name, task.dataset, arch, s.cache_id, cfg.seed, ev.batch_size,
                                            net.width, net.depth) for arch in task.archs for s in specs}
    jobs = []
    for arch in dict.fromkeys(task.archs):
        todo = tuple(s.label for s in specs if cache.get(keys[arch, s.label]) is None)
        counters.cached += len(specs) - len(todo)
        if todo:
            jobs.append(score_fanout.ScoreJob(sp.name, task.dataset, arch, cfg.seed, ev.batch_size, net.width,
                                              net.depth, cfg.data_dir, device, sources, todo))
    bar = tqdm(total=len(jobs), desc=f"{sp.name}/{task.dataset}", disable=not progress, leave=False)

    def put(i: int, outcomes: list[score_fanout.Outcome]) -> None:
        for label, score, secs, err in outcomes:
            cache.put(keys[jobs[i].arch, label], score, secs)
            counters.computed += 1
            if err is not None:
                counters.failed += 1
                counters.first_error = counters.first_error or err
        cache.save()
        bar.update()

    try:
        score_fanout.score_jobs(jobs, fan, put)
    finally:
        bar.close()
    scores = {s.label: np.full(len(task), np.nan) for s in specs}
    seconds: dict[str, list[float]] = {s.label: [] for s in specs}
    for i, arch in enumerate(task.archs):
        for lab in by_label:
            scores[lab][i], secs = cache.get(keys[arch, lab])  # type: ignore[misc]
            seconds[lab].append(secs)
    return TaskScores(task.name, list(task.archs), task.accuracies, scores, seconds)


def add_published(ts: TaskScores, task: records.Task, specs: list[ProxySpec]) -> None:
    """Columns ``"<name> (published)"`` for the requested baselines the records publish."""
    for s in specs:
        if s.baseline and s.baseline in task.published:
            ts.scores[s.baseline + PUBLISHED_SUFFIX] = np.asarray(task.published[s.baseline], dtype=np.float64)


# ----------------------------------------------------------------------------- tables
PerTask = dict[str, dict[str, dict[str, float]]]  # task -> proxy -> metric -> value


def metrics_table(tasks: list[TaskScores]) -> tuple[list[str], PerTask, dict[str, dict[str, float]]]:
    """(proxy labels, {task: {proxy: metrics}}, {proxy: summary over tasks})."""
    labels = list(dict.fromkeys(lab for t in tasks for lab in t.scores))
    per_task = {t.name: evaluate_scores(t.scores, t.accuracies) for t in tasks}
    summary = {lab: summarise({t: m[lab] for t, m in per_task.items() if lab in m}) for lab in labels}
    return labels, per_task, summary


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:+.3f}" if x < 0 else f"{x:.3f}"


def markdown_table(labels: list[str], per_task: PerTask,
                   summary: dict[str, dict[str, float]], timing: dict[str, float]) -> str:
    short = {"spearman": "ρ", "kendall": "τ", "top10": "top10%"}
    head = ["proxy"] + [f"{t} {short[m]}" for t in per_task for m in METRICS]
    head += [f"{agg} {short[m]}" for m in METRICS for agg in ("mean", "worst")] + ["s/net"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lab in labels:
        row = [lab] + [_fmt(per_task[t][lab][m]) if lab in per_task[t] else "—" for t in per_task for m in METRICS]
        row += [_fmt(summary[lab][f"{agg}_{m}"]) for m in METRICS for agg in ("mean", "worst")]
        row.append(f"{timing[lab]:.3f}" if lab in timing else "—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_csvs(out: Path, labels: list[str], per_task: dict, summary: dict, tasks: list[TaskScores]) -> None:
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "proxy", "n", *METRICS])
        n = {t.name: len(t.archs) for t in tasks}
        for t, m in per_task.items():
            for lab in labels:
                if lab in m:
                    w.writerow([t, lab, n[t], *(m[lab][k] for k in METRICS)])
        for agg in ("mean", "worst"):
            for lab in labels:
                w.writerow([agg, lab, sum(n.values()), *(summary[lab][f"{agg}_{k}"] for k in METRICS)])
    with open(out / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "arch", "accuracy", *labels])
        for t in tasks:
            for i, arch in enumerate(t.archs):
                vals = (t.scores[lab][i] if lab in t.scores else "" for lab in labels)
                w.writerow([t.name, arch, t.accuracies[i], *vals])


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- plots
def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def plot_scatter(out: Path, t: TaskScores, metrics: dict[str, dict[str, float]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(t.scores)
    cols = min(4, len(labels))
    rows = math.ceil(len(labels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, lab in zip(axes.flat, labels):
        s = t.scores[lab]
        ok = np.isfinite(s)
        ax.scatter(s[ok], t.accuracies[ok], s=6, alpha=0.6)
        ax.set_title(f"{lab}\nρ={_fmt(metrics[lab]['spearman'])} τ={_fmt(metrics[lab]['kendall'])}", fontsize=8)
        ax.set_xlabel("score", fontsize=7)
        ax.set_ylabel("accuracy", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(labels):]:
        ax.axis("off")
    fig.suptitle(t.name, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path = out / f"scatter_{_slug(t.name)}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_comparison(out: Path, labels: list[str], per_task: dict, summary: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(per_task) + ["mean"]
    fig_width = min(24.0, max(6.0, 0.35 * len(labels) * len(groups) + 2))
    fig, axes = plt.subplots(2, 1, figsize=(fig_width, 7), squeeze=False)
    width = 0.8 / len(groups)
    x = np.arange(len(labels))
    for ax, metric in zip(axes[:, 0], ("spearman", "kendall")):
        for g, name in enumerate(groups):
            vals = [summary[lab][f"mean_{metric}"] if name == "mean"
                    else per_task[name].get(lab, {}).get(metric, np.nan) for lab in labels]
            ax.bar(x + (g - (len(groups) - 1) / 2) * width, np.nan_to_num(np.asarray(vals, float)), width, label=name)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(metric)
        ax.axhline(0, color="black", linewidth=0.5)
    axes[0, 0].legend(fontsize=7, ncol=len(groups))
    fig.tight_layout()
    path = out / "comparison.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- driver
@dataclass
class EvaluationResult:
    out_dir: Path
    labels: list[str]
    per_task: PerTask
    summary: dict[str, dict[str, float]]
    timing: dict[str, float]
    counters: Counters
    table: str


def evaluation_tasks(cfg: config_mod.Config) -> list[records.Task]:
    """The ``evaluate.split`` subset of every task of the config."""
    out = []
    for tc in cfg.tasks:
        task = records.load_task(tc.space, tc.dataset, cfg.data_dir, tc.benchmark)
        sp = cfg.split
        out.append(task.split(cfg.seed, sp.evolve, sp.validate, sp.test)[cfg.evaluate.split])
    return out


def add_ensemble(scored: list[TaskScores], specs: list[ProxySpec]) -> None:
    """Add an ``ensemble`` column: the rank average of every evolved (non-baseline) proxy's scores."""
    members = [s.label for s in specs if s.baseline is None]
    if len(members) < 2:
        raise EznasError(f"an ensemble needs at least two evolved proxies (exported .py files or run "
                         f"directories), got {len(members)}")
    for ts in scored:
        ts.scores[ENSEMBLE] = rank_average([ts.scores[m] for m in members])
        ts.seconds[ENSEMBLE] = [float(sum(v)) for v in zip(*(ts.seconds[m] for m in members))]


def evaluate(cfg: config_mod.Config, proxies: Sequence[str] | None = None, published: bool | None = None,
             out: str | os.PathLike | None = None, progress: bool = True,
             ensemble: bool | None = None) -> EvaluationResult:
    """Score, tabulate, plot and write everything; see the module docstring."""
    out_dir = Path(out).expanduser() if out else Path(cfg.run_dir) / "evaluation"
    if cfg.evaluate.backend != "ray":  # a Ray worker resolves the device on its own node
        from eznas.devices import resolve

        resolve(cfg.device, "config key 'device':")  # CUDA asked for but absent: one line, before any work
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise EznasError(f"output directory {out_dir} exists and is not a directory")
    specs = resolve_proxies(list(proxies) if proxies else cfg.evaluate.proxies)
    if not specs:
        raise EznasError("no proxies to evaluate; give --proxies or config evaluate.proxies")
    published = cfg.evaluate.published if published is None else published
    out_dir.mkdir(parents=True, exist_ok=True)
    cache, counters = ScoreCache(out_dir / CACHE_FILE), Counters()
    tasks, scored = evaluation_tasks(cfg), []
    for task in tasks:
        if len(task) == 0:
            raise EznasError(f"task {task.name}: the '{cfg.evaluate.split}' split is empty")
        ts = score_task(cfg, task, specs, cache, counters, progress)
        if published:
            add_published(ts, task, specs)
        scored.append(ts)
    if cfg.evaluate.ensemble if ensemble is None else ensemble:
        add_ensemble(scored, specs)
    labels, per_task, summary = metrics_table(scored)
    timing = {lab: float(np.mean([v for t in scored for v in t.seconds[lab]])) for lab in scored[0].seconds}
    table = markdown_table(labels, per_task, summary, timing)
    _write_outputs(out_dir, cfg, scored, labels, per_task, summary, timing, counters, table)
    return EvaluationResult(out_dir, labels, per_task, summary, timing, counters, table)


def _write_outputs(out: Path, cfg: config_mod.Config, scored: list[TaskScores], labels: list[str], per_task: dict,
                   summary: dict, timing: dict, counters: Counters, table: str) -> None:
    header = (f"# Proxy evaluation: split '{cfg.evaluate.split}', seed {cfg.seed}, batch {cfg.evaluate.batch_size}, "
              f"width {cfg.network.width or 'default'}, depth {cfg.network.depth or 'default'}\n\n"
              f"Nets per task: {', '.join(f'{t.name} {len(t.archs)}' for t in scored)}. Images: CIFAR-10 for "
              f"every dataset (resized for 16x16 tasks; head sized for the task's classes). "
              f"s/net: mean seconds per net.\n\n")
    (out / "results.md").write_text(header + table)
    write_csvs(out, labels, per_task, summary, scored)
    doc = {"config": config_mod.to_dict(cfg), "n_nets": {t.name: len(t.archs) for t in scored},
           "tasks": per_task, "summary": summary, "seconds_per_net": timing,
           "scores": {"computed": counters.computed, "cached": counters.cached, "failed": counters.failed,
                      "first_error": counters.first_error}}
    (out / "results.json").write_text(json.dumps(_json_safe(doc), indent=1))
    for t in scored:
        plot_scatter(out, t, per_task[t.name])
    plot_comparison(out, labels, per_task, summary)


def cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    if getattr(args, "device", None) is not None:
        from eznas.devices import check_name

        cfg.device = check_name(args.device, "--device")
    if getattr(args, "workers", None) is not None:
        if args.workers < 1:
            raise EznasError(f"--workers must be >= 1, got {args.workers}")
        cfg.evaluate.workers = args.workers
    res = evaluate(cfg, args.proxies, True if args.published else None, args.out, progress=sys.stderr.isatty(),
                   ensemble=True if args.ensemble else None)
    print(res.table, end="")
    c = res.counters
    print(f"scores: {c.computed} computed, {c.cached} from cache; written to {res.out_dir}")
    if c.failed:
        print(f"warning: {c.failed} proxy evaluation(s) failed and score NaN (ranked last); first: {c.first_error}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from eznas import cli

    return cli.main(["evaluate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
