"""The report of an ``eznas nas`` run: stdout lines, ``report.json``, ``report.md``, ``progress.png``."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from eznas.atomic import atomic_write, atomic_write_text
from eznas.nas.nb201 import TableSpace, arch_str
from eznas.nas.strategies import SearchResult
from eznas.natsbench import DATASETS

FILES = ("report.json", "report.md", "progress.png")


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def build_report(result: SearchResult, space: TableSpace, dataset: str, settings: dict[str, Any]) -> dict[str, Any]:
    acc = space.table.dataset(dataset)
    best_i = int(np.argmax(acc))
    pick = result.arch
    history = []
    for s in result.history:
        history.append({"n": s.n, "arch": s.arch, "scores": s.scores,
                        "best_arch": s.best_arch, "best_score": _num(s.best_score),
                        "best_accuracy": space.accuracy(s.best_arch, dataset) if s.best_arch is not None else None})
    ensemble = len(result.proxies) > 1  # several proxies, or the components of a set-level one
    return {
        "settings": settings,
        "picked": {
            "arch": pick, "arch_str": arch_str(pick),
            "score": result.score, "score_kind": "rank utility among the scored cells" if ensemble else "proxy score",
            "scores": result.scores,
            "test_accuracy": {d: space.accuracy(pick, d) for d in DATASETS},
            **space.standing(pick, dataset),
        },
        "table": {"cells": len(space), "dataset": dataset, "best_accuracy": float(acc[best_i]),
                  "best_arch": space.archs[best_i], "mean_accuracy": float(acc.mean())},
        "nets_scored": result.n_scored, "nets_computed": result.n_computed, "nets_from_cache": result.n_cached,
        "failures": [{"arch": f.arch, "proxy": f.proxy, "error": f.error} for f in result.failures],
        "stopped_early": result.stopped_early,
        "wall_s": result.wall_s, "score_s": result.score_s, "seconds_per_computed_net": _num(result.seconds_per_cell),
        "history": history,
    }


def summary_lines(rep: dict[str, Any]) -> list[str]:
    p, t, st = rep["picked"], rep["table"], rep["settings"]
    d = t["dataset"]
    others = ", ".join(f"{k} {v:.2f} %" for k, v in p["test_accuracy"].items() if k != d)
    scores = ", ".join(f"{k} {v:.6g}" for k, v in p["scores"].items())
    per = rep["seconds_per_computed_net"]
    lines = [
        f"picked {p['arch']}  {p['arch_str']}",
        f"  {d} test accuracy {p['test_accuracy'][d]:.2f} %  (rank {p['rank']} of {t['cells']}, "
        f"percentile {p['percentile']:.1f}; table best {t['best_accuracy']:.2f} %)",
        f"  other datasets: {others}",
        f"  proxy {scores}" + (f"; ensemble mean rank {p['score']:.1f}" if len(p["scores"]) > 1 else ""),
        f"  {rep['nets_scored']} nets scored ({st['strategy']}, budget {st['budget']}, seed {st['seed']}): "
        f"{rep['nets_computed']} computed, {rep['nets_from_cache']} from the cache, {len(rep['failures'])} failed",
        f"  wall time {rep['wall_s']:.1f} s" + (f", {per:.3f} s per computed net" if per is not None else ""),
    ]
    if rep["stopped_early"]:
        lines.append(f"  stopped early: {rep['stopped_early']}")
    return lines


def markdown(rep: dict[str, Any]) -> str:
    p, t, st = rep["picked"], rep["table"], rep["settings"]
    d = t["dataset"]
    rows = "\n".join(f"| {k} | {v:.2f} |" for k, v in p["test_accuracy"].items())
    fails = "\n".join(f"- `{f['arch']}` ({f['proxy']}): {f['error']}" for f in rep["failures"][:20]) or "none"
    if len(rep["failures"]) > 20:
        fails += f"\n- ... and {len(rep['failures']) - 20} more (report.json)"
    per = rep["seconds_per_computed_net"]
    return f"""# eznas nas: {st['space']} / {d}

Command: `{st['command']}`

## Picked cell

`{p['arch']}` = `{p['arch_str']}`

Proxy scores: {', '.join(f"{k} = {v:.6g}" for k, v in p['scores'].items())}
({p['score_kind']}: {p['score']:.6g})

| dataset | trained test accuracy (%) |
|---|---|
{rows}

On {d} it ranks {p['rank']} of the {t['cells']} table cells (percentile {p['percentile']:.1f});
the table's best cell `{t['best_arch']}` reaches {t['best_accuracy']:.2f} %, the table mean is {t['mean_accuracy']:.2f} %.

## Search

- strategy {st['strategy']}, budget {st['budget']}, seed {st['seed']}, proxies {', '.join(st['proxies'])}
- nets scored: {rep['nets_scored']} ({rep['nets_computed']} computed, {rep['nets_from_cache']} from the cache)
- wall time {rep['wall_s']:.1f} s; {'%.3f s per computed net' % per if per is not None else 'nothing computed'}
{('- stopped early: ' + rep['stopped_early']) if rep['stopped_early'] else ''}
## Failures

{fails}

![progress](progress.png)
"""


def plot(rep: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = rep["history"]
    n = [s["n"] for s in h]
    acc = [s["best_accuracy"] if s["best_accuracy"] is not None else np.nan for s in h]
    names = rep["settings"]["proxies"]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True)
    if len(names) == 1:
        a1.step(n, [s["best_score"] if s["best_score"] is not None else np.nan for s in h], where="post")
        a1.set_ylabel(f"best {names[0]} score")
    else:  # a mean rank grows with the scored set: show each proxy's score of the pick as a quantile instead
        scores = {s["arch"]: s["scores"] for s in h if s["scores"] is not None}
        for name in rep["picked"]["scores"]:  # every scorer (a set-level proxy: its components)
            final = np.sort([v[name] for v in scores.values()])
            q = [np.searchsorted(final, scores[s["best_arch"]][name], side="right") / len(final)
                 if s["best_arch"] is not None else np.nan for s in h]
            a1.step(n, q, where="post", label=name)
        a1.set_ylabel("pick's score quantile\n(among all scored cells)")
        a1.legend(loc="lower right")
    a1.set_title(f"{rep['settings']['strategy']} search, {rep['table']['dataset']}")
    a2.step(n, acc, where="post", color="tab:green", label="pick so far")
    a2.axhline(rep["table"]["best_accuracy"], color="grey", ls="--", lw=1, label="table best")
    a2.set_ylabel("test accuracy of pick (%)")
    a2.set_xlabel("nets scored")
    a2.legend(loc="lower right")
    fig.tight_layout()

    def write(f: Any) -> None:
        fig.savefig(f, format="png", dpi=110)

    try:
        atomic_write(path, write, binary=True)
    finally:
        plt.close(fig)


def write_all(rep: dict[str, Any], out: Path) -> None:
    atomic_write_text(out / "report.json", json.dumps(rep, indent=1) + "\n")
    atomic_write_text(out / "report.md", markdown(rep))
    plot(rep, out / "progress.png")
