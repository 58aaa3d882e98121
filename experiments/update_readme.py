"""Regenerate the README's results section from the files under experiments/results/.

Nothing in that section is typed by hand: run the experiments, then

    python experiments/update_readme.py

Each block is written only from the result file it names; a missing file leaves a line saying
which script produces it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _load(name: str) -> dict | None:
    p = RESULTS / name
    return json.loads(p.read_text()) if p.is_file() else None


def _missing(script: str) -> str:
    return f"_Not yet produced: run `python experiments/{script}`._\n"


def search_block() -> str:
    runs = sorted(RESULTS.glob("nb201-s*.json"))
    if not runs:
        return "### Search on NB201 (3 datasets)\n\n" + _missing("nb201_search.py")
    out = ["### Search on NB201 (3 datasets)", "",
           "`python experiments/nb201_search.py --seed S` (configs/nb201.yaml: 80 evolve nets per dataset, "
           "population 50, 20 generations, every evolve net every generation, min Spearman rho over datasets). "
           "Test-split Spearman rho; `params` and "
           "`nwot` computed by eznas on the same test nets. CIFAR-10 images for every dataset.", "",
           "| seed | task | evolved | params | nwot | test nets |", "|---|---|---|---|---|---|"]
    timing = ["", "| seed | generations | evaluations | programs/s | wall after caching (s) | peak memory (GB) |",
              "|---|---|---|---|---|---|"]
    best = []
    for p in runs:
        r = json.loads(p.read_text())
        for task, v in r["test_spearman"].items():
            out.append(f"| {r['seed']} | {task} | {v['evolved']:.3f} | {v['params']:.3f} | {v['nwot']:.3f} | {v['nets']} |")
        timing.append(f"| {r['seed']} | {r['generations']} | {r['evaluations']} | {r['evals_per_s']:.1f} | "
                      f"{r['wall_after_caching_s']:.0f} | {r['peak_rss_gb']:.2f} |")
        best.append(f"- seed {r['seed']}: `{r['best']}`")
    return "\n".join(out + timing + ["", "Best programs:", ""] + best) + "\n"


def stats_block() -> str:
    out = ["### Statistics: sketch fidelity and cache throughput", ""]
    fid = _load("stats_fidelity.json")
    if fid:
        out += [f"`python experiments/stats_fidelity.py`: {fid['nets']} NB201 cifar10 nets, batch {fid['batch_size']}, "
                f"R={fid['R']}, s={fid['s']}. Spearman rho between network rankings from full tensors and from "
                "sketches (target >= 0.95):", "", "| per-unit statistic (mean over units) | rho |", "|---|---|"]
        out += [f"| {k} | {v:.4f} |" for k, v in fid["spearman"].items()]
        out.append("")
    else:
        out.append(_missing("stats_fidelity.py"))
    thr = _load("stats_throughput.json")
    if thr:
        out += [f"`python experiments/stats_throughput.py` ({thr['threads']} thread(s), {thr['dtype']}):", "",
                "| task | nets | bare s/net | cache s/net | ratio (target <= 1.3) | MB/net | 240 nets (GB, target <= 3) |",
                "|---|---|---|---|---|---|---|"]
        for t, r in thr["tasks"].items():
            out.append(f"| nb201/{t} | {r['nets']} | {r['bare_s_per_net']:.3f} | {r['cache_s_per_net']:.3f} | "
                       f"{r['ratio']:.2f} | {r['bytes_per_net'] / 1e6:.2f} | {r['projected_GB_240_nets']:.2f} |")
        out.append("")
    else:
        out.append(_missing("stats_throughput.py"))
    return "\n".join(out) + "\n"


def published_block() -> str:
    p = RESULTS / "published_check.md"
    if not p.is_file():
        return "### Baselines vs NAS-Bench-Suite-Zero's published scores\n\n" + _missing("check_published_proxies.py")
    body = p.read_text().strip().splitlines()
    body = [line for line in body if not line.startswith("# ")]
    return "### Baselines vs NAS-Bench-Suite-Zero's published scores\n\n" + "\n".join(body).strip() + "\n"


def digits_block() -> str:
    d = _load("digits_bench.json")
    if not d:
        return "### Embedded digits micro-benchmark\n\n" + _missing("digits_bench_report.py")
    lines = ["### Embedded digits micro-benchmark", "", "`python experiments/digits_bench_report.py`:", ""]
    lines += [f"- {k}: {v}" for k, v in d.items() if not isinstance(v, (dict, list))]
    return "\n".join(lines) + "\n"


NB201_TARGET = 0.85


def _targets(r: dict) -> str:
    """Plain statement of each NB201 target, met or missed, computed from the stored runs."""
    s = r.get("settings", {}).get("nb201")
    if not s:
        return ""
    lines = ["", "Targets (NB201, test-split Spearman rho >= 0.85 and above every baseline):", ""]
    for task in s["runs"][0]["per_task"]:
        ev = float(np.mean([run["per_task"][task]["evolved"] for run in s["runs"]]))
        base = {k: v for k, v in s["runs"][0]["per_task"][task].items() if k != "evolved"}
        best = max(base, key=base.get)
        verdict = "met" if ev >= NB201_TARGET and ev > base[best] else "missed"
        lines.append(f"- {task}: evolved {ev:.3f} vs target {NB201_TARGET} and best baseline {best} "
                     f"{base[best]:.3f} -> {verdict}")
    return "\n".join(lines) + "\n"


def main_results_block() -> str:
    r = _load("main_results.json")
    if not r:
        return "### Evolved proxies against every baseline\n\n" + _missing("run_main_experiments.py")
    missing = [name for name in ("nb201", "all-spaces") if name not in r.get("settings", {})]
    todo = "".join(f"\n_Setting `{m}` not run yet: `python experiments/run_main_experiments.py --setting {m}`._\n"
                   for m in missing)
    return "### Evolved proxies against every baseline\n\n" + r.get("markdown", "") + _targets(r) + todo + "\n"


def render() -> str:
    parts = ["## Results", "",
             "_Generated by `python experiments/update_readme.py` from `experiments/results/`; do not edit by hand._",
             "", main_results_block(), search_block(), published_block(), stats_block(), digits_block()]
    return "\n".join(parts)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
    new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _m: f"{BEGIN}\n{render()}\n{END}", text,
                 flags=re.S)
    readme.write_text(new)
    print(f"README results section regenerated ({len(render().splitlines())} lines)")


if __name__ == "__main__":
    main()
