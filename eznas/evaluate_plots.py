"""Figures of ``eznas evaluate``: score-vs-accuracy scatters per task, and ``comparison.png``, a
sorted dot plot per task (and for the mean over tasks) of every proxy's Spearman rho with its
95 % bootstrap interval; evolved proxies highlighted, each kind of proxy with its own colour and
marker, the legend below the panels."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from eznas.evaluate_tables import PerTask, TaskScores, fmt
from eznas.intervals import Intervals

# kind -> (colour, marker, filled, legend label); evolved first so it is drawn on top
STYLES: dict[str, tuple[str, str, bool, str]] = {
    "evolved": ("#d62728", "D", True, "evolved (eznas)"),
    "ensemble": ("#9467bd", "*", True, "ensemble of evolved"),
    "baseline": ("#1f77b4", "o", True, "hand-made baseline"),
    "set": ("#2ca02c", "s", True, "set-level baseline (ranks within the set)"),
    "published": ("#7f7f7f", "o", False, "published score (NASLib)"),
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def plot_scatter(out: Path, t: TaskScores, metrics: dict[str, dict[str, float]]) -> Path:
    plt = _pyplot()
    labels = list(t.scores)
    cols = min(4, len(labels))
    rows = math.ceil(len(labels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, lab in zip(axes.flat, labels):
        s = t.scores[lab]
        ok = np.isfinite(s)
        ax.scatter(s[ok], t.accuracies[ok], s=6, alpha=0.6)
        ax.set_title(f"{lab}\nρ={fmt(metrics[lab]['spearman'])} τ={fmt(metrics[lab]['kendall'])}", fontsize=8)
        ax.set_xlabel("score", fontsize=7)
        ax.set_ylabel("accuracy", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(labels):]:
        ax.axis("off")
    fig.suptitle(t.name, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path = out / f"scatter_{slug(t.name)}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _panel(ax, rho: Mapping[str, float], ivs: Mapping[str, tuple[float, float]], kinds: Mapping[str, str],
           title: str) -> set[str]:
    """One sorted dot plot (best at the top); returns the kinds drawn."""
    labs = sorted(rho, key=lambda lab: (math.isfinite(rho[lab]), rho[lab] if math.isfinite(rho[lab]) else 0.0))
    drawn: set[str] = set()
    for y, lab in enumerate(labs):
        kind = kinds.get(lab, "baseline")
        colour, marker, filled, _ = STYLES[kind]
        v = rho[lab]
        if not math.isfinite(v):
            continue
        lo, hi = ivs.get(lab, (math.nan, math.nan))
        if math.isfinite(lo) and math.isfinite(hi):
            ax.plot([lo, hi], [y, y], color=colour, linewidth=2.2 if kind == "evolved" else 1.2, alpha=0.8)
        ax.plot([v], [y], marker=marker, linestyle="none", markersize=8 if kind in ("evolved", "ensemble") else 6,
                color=colour, markerfacecolor=colour if filled else "white", markeredgecolor=colour, zorder=3)
        drawn.add(kind)
    ax.set_yticks(range(len(labs)))
    ax.set_yticklabels(labs, fontsize=7)
    for tick, lab in zip(ax.get_yticklabels(), labs):
        kind = kinds.get(lab, "baseline")
        tick.set_color(STYLES[kind][0] if kind in ("evolved", "ensemble") else "black")
        if kind in ("evolved", "ensemble"):
            tick.set_fontweight("bold")
    ax.set_ylim(-0.7, len(labs) - 0.3)
    ax.axvline(0, color="black", linewidth=0.5)
    ax.grid(axis="x", linewidth=0.3, alpha=0.6)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("Spearman ρ (95 % bootstrap interval)", fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    return drawn


def plot_comparison(out: Path, labels: list[str], per_task: PerTask, summary: dict[str, dict[str, float]],
                    kinds: Mapping[str, str], intervals: Intervals | None = None,
                    n_nets: Mapping[str, int] | None = None) -> Path:
    """``comparison.png``: one sorted dot plot of rho per task and one of the mean rho over tasks.
    ``kinds[label]`` is one of :data:`STYLES`' keys (default ``baseline``)."""
    plt = _pyplot()
    panels: list[tuple[str, dict[str, float], dict[str, tuple[float, float]]]] = []
    for t, m in per_task.items():
        ivs = {lab: v["spearman"] for lab, v in (intervals.tasks.get(t, {}) if intervals else {}).items()}
        panels.append((f"{t} ({n_nets[t]} nets)" if n_nets and t in n_nets else t,
                       {lab: m[lab]["spearman"] for lab in labels if lab in m}, ivs))
    if len(per_task) > 1:
        ivs = {lab: v["mean_spearman"] for lab, v in (intervals.summary if intervals else {}).items()}
        panels.append(("mean over tasks", {lab: summary[lab]["mean_spearman"] for lab in labels}, ivs))
    cols = min(len(panels), 4)
    rows = math.ceil(len(panels) / cols)
    height = max(3.0, 0.22 * len(labels) + 1.2)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, height * rows + 0.8), squeeze=False)
    drawn: set[str] = set()
    for ax, (title, rho, ivs) in zip(axes.flat, panels):
        drawn |= _panel(ax, rho, ivs, kinds, title)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=STYLES[k][0], marker=STYLES[k][1], linestyle="-",
                          markerfacecolor=STYLES[k][0] if STYLES[k][2] else "white", label=STYLES[k][3])
               for k in STYLES if k in drawn]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), fontsize=8, frameon=False)
    legend_rows = math.ceil(len(handles) / 3) if handles else 0
    fig.tight_layout(rect=(0, (0.35 * legend_rows + 0.1) / (height * rows + 0.8), 1, 1))
    path = out / "comparison.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["STYLES", "plot_scatter", "plot_comparison", "slug"]
