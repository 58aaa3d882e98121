"""Tables of ``eznas evaluate``: the metrics per task and over tasks, with their bootstrap
intervals (:mod:`eznas.intervals`), the paired difference to the best baseline, and the CSV /
JSON files."""
from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eznas.intervals import Intervals
from eznas.metrics import METRICS, evaluate_scores, summarise

PerTask = dict[str, dict[str, dict[str, float]]]  # task -> proxy -> metric -> value
SHORT = {"spearman": "ρ", "kendall": "τ", "top10": "top10%"}


@dataclass
class TaskScores:
    name: str
    archs: list[str]
    accuracies: np.ndarray
    scores: dict[str, np.ndarray]
    seconds: dict[str, list[float]]
    images: str = "cifar10"  # the image source of the batch (eznas.images.images_for)


def metrics_table(tasks: list[TaskScores]) -> tuple[list[str], PerTask, dict[str, dict[str, float]]]:
    """(proxy labels, {task: {proxy: metrics}}, {proxy: summary over tasks})."""
    labels = list(dict.fromkeys(lab for t in tasks for lab in t.scores))
    per_task = {t.name: evaluate_scores(t.scores, t.accuracies) for t in tasks}
    summary = {lab: summarise({t: m[lab] for t, m in per_task.items() if lab in m}) for lab in labels}
    return labels, per_task, summary


def fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:+.3f}" if x < 0 else f"{x:.3f}"


def _signed(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:+.3f}"


def _with_interval(value: float, interval: tuple[float, float] | None) -> str:
    if interval is None or not all(math.isfinite(v) for v in interval):
        return fmt(value)
    return f"{fmt(value)} [{fmt(interval[0])}, {fmt(interval[1])}]"


def markdown_table(labels: list[str], per_task: PerTask, summary: dict[str, dict[str, float]],
                   timing: dict[str, float], intervals: Intervals | None = None) -> str:
    """One row per proxy: rho / tau (with their 95 % intervals when given) and top-10 % precision
    per task, then mean and worst over tasks, then seconds per net."""
    head = ["proxy"] + [f"{t} {SHORT[m]}" for t in per_task for m in METRICS]
    head += [f"{agg} {SHORT[m]}" for m in METRICS for agg in ("mean", "worst")] + ["s/net"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lab in labels:
        row = [lab]
        for t in per_task:
            for m in METRICS:
                if lab not in per_task[t]:
                    row.append("—")
                    continue
                iv = intervals.tasks.get(t, {}).get(lab, {}).get(m) if intervals else None
                row.append(_with_interval(per_task[t][lab][m], iv))
        for m in METRICS:
            for agg in ("mean", "worst"):
                iv = intervals.summary.get(lab, {}).get(f"{agg}_{m}") if intervals else None
                row.append(_with_interval(summary[lab][f"{agg}_{m}"], iv))
        row.append(f"{timing[lab]:.3f}" if lab in timing else "—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def verdict(interval: tuple[float, float]) -> str:
    """'better' / 'worse' when the 95 % interval of the difference excludes 0, else 'tie'."""
    lo, hi = interval
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "?"
    return "better" if lo > 0 else "worse" if hi < 0 else "tie"


def delta_table(labels: Sequence[str], intervals: Intervals) -> str:
    """Δρ of every proxy minus the best baseline of each task (and of the mean ρ), its paired
    95 % interval, and whether the proxy is significantly better, worse, or tied."""
    cols = [c for c in intervals.delta if intervals.delta[c]]
    if not cols:
        return ""
    refs = {c: next(iter(intervals.delta[c].values())).reference for c in cols}
    head = ["proxy"] + [f"{c} Δρ vs {refs[c]}" for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lab in labels:
        row = [lab]
        for c in cols:
            d = intervals.delta[c].get(lab)
            if lab == refs[c]:
                row.append("(reference)")
            elif d is None:
                row.append("—")
            else:
                lo, hi = d.interval
                row.append(f"{_signed(d.value)} [{_signed(lo)}, {_signed(hi)}] {verdict(d.interval)}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_csvs(out: Path, labels: list[str], per_task: dict, summary: dict, tasks: list[TaskScores],
               intervals: Intervals | None = None) -> None:
    """``results.csv`` (metrics, with interval bounds where computed) and ``scores.csv`` (every net)."""
    bounds = [f"{m}_{side}" for m in ("spearman", "kendall") for side in ("low", "high")]

    def iv_cells(pairs: Mapping[str, tuple[float, float]] | None, prefix: str = "") -> list[Any]:
        if not pairs:
            return [""] * len(bounds)
        return [v for m in ("spearman", "kendall") for v in pairs.get(f"{prefix}{m}", ("", ""))]

    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "proxy", "n", *METRICS, *bounds])
        n = {t.name: len(t.archs) for t in tasks}
        for t, m in per_task.items():
            for lab in labels:
                if lab in m:
                    ivs = intervals.tasks.get(t, {}).get(lab) if intervals else None
                    w.writerow([t, lab, n[t], *(m[lab][k] for k in METRICS), *iv_cells(ivs)])
        for agg in ("mean", "worst"):
            for lab in labels:
                ivs = intervals.summary.get(lab) if intervals else None
                w.writerow([agg, lab, sum(n.values()), *(summary[lab][f"{agg}_{k}"] for k in METRICS),
                            *iv_cells(ivs, f"{agg}_")])
    with open(out / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "arch", "accuracy", *labels])
        for t in tasks:
            for i, arch in enumerate(t.archs):
                vals = (t.scores[lab][i] if lab in t.scores else "" for lab in labels)
                w.writerow([t.name, arch, t.accuracies[i], *vals])


def image_note(scored: Sequence[TaskScores], task_configs: Sequence[Any]) -> str:
    """Which images each task was measured with (``TaskScores.images``, from
    :func:`eznas.images.images_for`); ``task_configs`` (``space``, ``dataset``) in the same order."""
    from eznas.images import IMAGE_FILES
    from eznas.spaces import get_space

    parts = []
    for t, tc in zip(scored, task_configs):
        if t.images == "cifar10" and tc.dataset != "cifar10":
            size = get_space(tc.space).input_size(tc.dataset)
            resized = f", resized to {size}x{size}" if size and size != 32 else ""
            fallback = (f" (fallback: no {IMAGE_FILES[tc.dataset]} in the data directory)" if tc.dataset in IMAGE_FILES
                        else "")
            parts.append(f"{t.name}: CIFAR-10{fallback}{resized}, normalised with {tc.dataset}'s constants")
        elif t.images == "cifar10":
            parts.append(f"{t.name}: CIFAR-10")
        elif t.images in IMAGE_FILES:
            parts.append(f"{t.name}: its own {t.images} images ({IMAGE_FILES[t.images]})")
        else:
            parts.append(f"{t.name}: {t.images}")
    return "Images: " + "; ".join(parts) + " (head sized for each task's classes)."


def json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


__all__ = ["TaskScores", "PerTask", "metrics_table", "markdown_table", "delta_table", "verdict", "write_csvs",
           "json_safe", "fmt", "image_note"]
