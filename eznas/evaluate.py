"""``python -m eznas.evaluate config.yaml`` (= ``eznas evaluate``): score proxies on a config's
tasks and tabulate how well they rank the nets by accuracy.

For every task of the config, the nets of ``evaluate.split`` (``Task.split`` with the config's
split sizes and seed) are built with ``seed``, ``network.width`` / ``network.depth``, fed one
batch from :func:`eznas.batches.make_batches` (``evaluate.batch_size``, ``seed``), and scored by
every requested proxy: a baseline name (:mod:`eznas.proxies`), an exported ``.py`` proxy, or a
run directory (its hall of fame). Output directory (default ``<run_dir>/evaluation``):

- ``results.md`` / ``results.csv`` / ``results.json``: Spearman rho, Kendall tau and top-10%
  precision per task, mean and worst over tasks, each rho and tau with a 95 % paired bootstrap
  interval (:mod:`eznas.intervals`), the difference in rho to the best baseline with its interval,
  mean seconds per net per proxy (tables: :mod:`eznas.evaluate_tables`);
- ``scores.csv``: every net's accuracy and scores;
- ``scatter_<task>.png`` (score vs accuracy per proxy) and ``comparison.png`` (sorted dot plot of
  rho per task with intervals; figures: :mod:`eznas.evaluate_plots`);
- ``score_cache.json``: scores keyed by (space, dataset, arch, proxy, seed, batch size, width,
  depth), plus ``|images=<source>`` only for a cifar100 / ImageNet16-120 task measured with its
  own images, rewritten atomically after each net, so adding a proxy or resuming after Ctrl-C
  recomputes nothing already done.

Baselines that share a pass (:mod:`eznas.proxies.passes`) are computed together, one pass per net
per kind. A set-level proxy (``az_nas``) is computed from its per-net components, cached under
their own proxy names (``az_expressivity``, ...), ranked over the evaluated nets of each task.

``--published`` adds NASLib's published scores of the same nets as ``"<name> (published)"``.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eznas import records
from eznas import config as config_mod
from eznas.atomic import atomic_write_text
from eznas.ensemble import rank_average
from eznas.errors import EznasError
from eznas.evaluate_plots import plot_comparison, plot_scatter  # noqa: F401  (re-exported)
from eznas.evaluate_tables import (PerTask, TaskScores, delta_table, image_note, json_safe,  # noqa: F401
                                   markdown_table, metrics_table, write_csvs)
from eznas.images import IMAGE_FILES, images_for
from eznas.intervals import N_BOOT, Intervals, bootstrap, to_json
from eznas.metrics import METRICS, correlations, evaluate_scores, summarise  # noqa: F401  (re-exported)
from eznas.progress import progress as show_progress
from eznas.proxies import LossFn, is_set_level
from eznas.proxies.sets import component_proxies, score_set
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
    set_level: bool = False  # a set-level baseline (az_nas): scored from its components' columns
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
        if is_set_level(spec) and not Path(spec).expanduser().exists():
            out.append(ProxySpec(spec, spec, _no_loader(spec), baseline=spec, set_level=True, source=spec))
            continue
        kind = export.proxy_kind(spec)
        path = Path(spec).expanduser()
        first = len(out)
        if kind == "run":
            out.extend(_run_proxies(path))
        elif kind == "builtin":
            from eznas import builtin_proxies

            ident = hashlib.sha256(repr(builtin_proxies.read(spec)).encode()).hexdigest()[:16]
            out.append(ProxySpec(spec, f"builtin:{ident}",
                                 lambda spec=spec: _export_module().load_proxy(spec)))
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


def _no_loader(name: str) -> Callable[[], Callable[..., float]]:
    def fail() -> Callable[..., float]:
        raise EznasError(f"'{name}' is a set-level proxy: it has no per-net score")

    return fail


def scoring_specs(specs: list[ProxySpec]) -> list[ProxySpec]:
    """The per-net specs to score: every non-set-level spec, then the components of each
    set-level one that are not already requested (cached under their proxy names)."""
    out = [s for s in specs if not s.set_level]
    have = {s.cache_id for s in out}
    for s in specs:
        if s.set_level:
            for name in component_proxies(s.baseline or s.label).values():
                if name not in have:
                    have.add(name)
                    out.append(ProxySpec(name, name, lambda name=name: _export_module().load_proxy(name),
                                         baseline=name, source=name))
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
            width: int | None, depth: int | None, images: str | None = None) -> str:
        """``space|dataset|arch|proxy|seed|batch|width|depth``, plus ``|images=<source>`` when
        ``images`` is given (see :func:`images_key`)."""
        key = "|".join(str(v) for v in (space, dataset, arch, proxy, seed, batch_size, width, depth))
        return key if images is None else f"{key}|images={images}"

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
def images_key(dataset: str, source: str) -> str | None:
    """The cache key's image suffix: the source only for a benchmark dataset other than CIFAR-10
    measured with its own images (cifar100.npz, imagenet16_120.npz); None otherwise, so keys made
    before per-dataset images existed (all measured with CIFAR-10 images) stay valid."""
    return source if dataset in IMAGE_FILES and source != "cifar10" else None


@dataclass
class Counters:
    computed: int = 0
    cached: int = 0
    failed: int = 0
    first_error: str = ""


def add_set_level(ts: TaskScores, specs: list[ProxySpec], scored: list[ProxySpec]) -> None:
    """Columns of the set-level specs, combined over the task's nets from their components'
    columns (which are dropped again unless requested); seconds = the components' sum."""
    wanted = {s.label for s in specs}
    for spec in specs:
        if not spec.set_level:
            continue
        comps = component_proxies(spec.baseline or spec.label)
        label_of = {s.cache_id: s.label for s in scored}
        cols = {c: ts.scores[label_of[p]] for c, p in comps.items()}
        if len(ts.archs) >= 2:
            ts.scores[spec.label] = np.asarray(score_set(spec.baseline or spec.label,
                                                         [{c: float(v[i]) for c, v in cols.items()}
                                                          for i in range(len(ts.archs))]), dtype=np.float64)
        else:
            ts.scores[spec.label] = np.full(len(ts.archs), np.nan)
        ts.seconds[spec.label] = [float(sum(v)) for v in zip(*(ts.seconds[label_of[p]] for p in comps.values()))]
    for s in scored:
        if s.label not in wanted:
            ts.scores.pop(s.label, None)
            ts.seconds.pop(s.label, None)
    order = [s.label for s in specs]
    ts.scores = {lab: ts.scores[lab] for lab in order if lab in ts.scores} | ts.scores
    ts.seconds = {lab: ts.seconds[lab] for lab in order if lab in ts.seconds} | ts.seconds


def score_task(cfg: config_mod.Config, task: records.Task, specs: list[ProxySpec], cache: ScoreCache,
               counters: Counters, progress: bool = True) -> TaskScores:
    """Scores of every spec on every net of ``task``: from the cache where present, else computed
    one net per job on ``evaluate.backend`` / ``.workers`` and ``device`` (:mod:`eznas.score_fanout`;
    baselines sharing a forward/backward pass are computed together). Set-level specs are ranked
    over the task's nets from their components."""
    from eznas import score_fanout
    from eznas.devices import resolved_name
    from eznas.fanout import Fanout

    requested, specs = specs, scoring_specs(specs)
    sp = get_space(task.space)
    ev, net = cfg.evaluate, cfg.network
    device = cfg.device if ev.backend == "ray" else resolved_name(cfg.device, "config key 'device':")
    fan = Fanout(ev.backend, ev.workers, cfg.ray_address, threads=1 if ev.workers > 1 else 0, what="scoring",
                 device=device)
    sources = tuple(dict.fromkeys(s.source for s in specs))
    score_fanout.remember_specs(sources, specs)
    image_source = images_for(task.dataset, cfg.data_dir, warn=False)[0]
    suffix = images_key(task.dataset, image_source)
    keys = {(arch, s.label): ScoreCache.key(sp.name, task.dataset, arch, s.cache_id, cfg.seed, ev.batch_size,
                                            net.width, net.depth, suffix) for arch in task.archs for s in specs}
    jobs = []
    for arch in dict.fromkeys(task.archs):
        todo = tuple(s.label for s in specs if cache.get(keys[arch, s.label]) is None)
        counters.cached += len(specs) - len(todo)
        if todo:
            jobs.append(score_fanout.ScoreJob(sp.name, task.dataset, arch, cfg.seed, ev.batch_size, net.width,
                                              net.depth, cfg.data_dir, device, sources, todo))
    bar = show_progress(total=len(jobs), desc=f"{sp.name}/{task.dataset}", disable=not progress, leave=False,
                        unit="net")

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
        for s in specs:
            scores[s.label][i], secs = cache.get(keys[arch, s.label])  # type: ignore[misc]
            seconds[s.label].append(secs)
    ts = TaskScores(task.name, list(task.archs), task.accuracies, scores, seconds, image_source)
    add_set_level(ts, requested, specs)
    return ts


def add_published(ts: TaskScores, task: records.Task, specs: list[ProxySpec]) -> None:
    """Columns ``"<name> (published)"`` for the requested baselines the records publish."""
    for s in specs:
        if s.baseline and not s.set_level and s.baseline in task.published:
            ts.scores[s.baseline + PUBLISHED_SUFFIX] = np.asarray(task.published[s.baseline], dtype=np.float64)


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
    intervals: Intervals | None = None


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


def proxy_kinds(specs: list[ProxySpec], labels: list[str]) -> dict[str, str]:
    """Every column's kind for the plots: evolved, ensemble, baseline, set, published."""
    kinds = {s.label: "set" if s.set_level else "baseline" if s.baseline else "evolved" for s in specs}
    kinds[ENSEMBLE] = "ensemble"
    return {lab: "published" if lab.endswith(PUBLISHED_SUFFIX) else kinds.get(lab, "baseline") for lab in labels}


def evaluate(cfg: config_mod.Config, proxies: Sequence[str] | None = None, published: bool | None = None,
             out: str | os.PathLike | None = None, progress: bool = True,
             ensemble: bool | None = None, n_boot: int = N_BOOT) -> EvaluationResult:
    """Score, tabulate (with ``n_boot`` bootstrap replicates, seeded by the config's seed), plot
    and write everything; see the module docstring."""
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
        if len(task) < 2 and any(s.set_level for s in specs):
            raise EznasError(f"task {task.name}: set-level proxies rank nets within the evaluated set and need "
                             f"at least 2 nets in the '{cfg.evaluate.split}' split, got {len(task)}")
        ts = score_task(cfg, task, specs, cache, counters, progress)
        if published:
            add_published(ts, task, specs)
        scored.append(ts)
    if cfg.evaluate.ensemble if ensemble is None else ensemble:
        add_ensemble(scored, specs)
    labels, per_task, summary = metrics_table(scored)
    timing = {lab: float(np.mean([v for t in scored for v in t.seconds[lab]])) for lab in scored[0].seconds}
    baselines = [s.label for s in specs if s.baseline]
    iv = bootstrap({t.name: (t.scores, t.accuracies) for t in scored},
                   {t: {lab: m[lab]["spearman"] for lab in m} for t, m in per_task.items()},
                   baselines, n_boot=n_boot, seed=cfg.seed) if all(len(t.archs) >= 2 for t in scored) else None
    table = markdown_table(labels, per_task, summary, timing, iv)
    _write_outputs(out_dir, cfg, scored, labels, per_task, summary, timing, counters, table, iv,
                   proxy_kinds(specs, labels))
    return EvaluationResult(out_dir, labels, per_task, summary, timing, counters, table, iv)


def _write_outputs(out: Path, cfg: config_mod.Config, scored: list[TaskScores], labels: list[str], per_task: dict,
                   summary: dict, timing: dict, counters: Counters, table: str, iv: Intervals | None,
                   kinds: dict[str, str]) -> None:
    header = (f"# Proxy evaluation: split '{cfg.evaluate.split}', seed {cfg.seed}, batch {cfg.evaluate.batch_size}, "
              f"width {cfg.network.width or 'default'}, depth {cfg.network.depth or 'default'}\n\n"
              f"Nets per task: {', '.join(f'{t.name} {len(t.archs)}' for t in scored)}. "
              f"{image_note(scored, cfg.tasks)} "
              f"s/net: mean seconds per net (baselines computed in one shared pass split its time).")
    if iv is not None:
        header += (f" Brackets: 95 % paired bootstrap interval ({iv.n_boot} resamples of the nets, seed {iv.seed}; "
                   f"mean and worst: per resample over tasks).")
    if any(k == "set" for k in kinds.values()):
        header += " Set-level proxies (az_nas) rank each net within the evaluated nets of its task."
    text = header + "\n\n" + table
    deltas = delta_table(labels, iv) if iv is not None else ""
    if deltas:
        text += ("\n## Difference to the best baseline\n\nΔρ = ρ(proxy) − ρ(best baseline of the column), "
                 "paired 95 % bootstrap interval; better / worse when the interval excludes 0, else tie.\n\n" + deltas)
    (out / "results.md").write_text(text)
    write_csvs(out, labels, per_task, summary, scored, iv)
    doc = {"config": config_mod.to_dict(cfg), "n_nets": {t.name: len(t.archs) for t in scored},
           "images": {t.name: t.images for t in scored},
           "tasks": per_task, "summary": summary, "seconds_per_net": timing,
           "intervals": to_json(iv) if iv is not None else None,
           "scores": {"computed": counters.computed, "cached": counters.cached, "failed": counters.failed,
                      "first_error": counters.first_error}}
    (out / "results.json").write_text(json.dumps(json_safe(doc), indent=1))
    for t in scored:
        plot_scatter(out, t, per_task[t.name])
    plot_comparison(out, labels, per_task, summary, kinds, iv, {t.name: len(t.archs) for t in scored})


def cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    if getattr(args, "device", None) is not None:
        from eznas.devices import check_name

        cfg.device = check_name(args.device, "--device")
    if getattr(args, "workers", None) is not None:
        if args.workers < 1:
            raise EznasError(f"--workers must be >= 1, got {args.workers}")
        cfg.evaluate.workers = args.workers
    res = evaluate(cfg, args.proxies, True if args.published else None, args.out, progress=True,
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
