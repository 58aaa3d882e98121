"""What the GPU session measured (``experiments/gpu_session.sh`` on an H200), summarised.

Reads ``experiments/results/gpu/``: ``gpu_check.json`` (CPU vs CUDA statistics, one-process
throughput), ``stats_gpu.txt`` (``eznas stats configs/nb201.yaml --device cuda`` with several worker
processes sharing the GPU, stopped at 120 s), ``table/`` (experiments/table_scores.py on CUDA) and
``cpu_reference/`` (the same script on this machine's CPU for the first cells of the same order:
``python experiments/table_scores.py --limit 12 --datasets cifar10 ImageNet16-120 --device cpu
--backend serial --out experiments/results/gpu/cpu_reference``). Per proxy it reports the CUDA vs CPU
relative difference of the scores on the shared cells and whether they rank the cells alike.

    python experiments/gpu_summary.py            # writes experiments/results/gpu/summary.json
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
from eznas.errors import run_main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GPU = ROOT / "experiments" / "results" / "gpu"


def read_csv(path: Path) -> dict[str, dict[str, float]]:
    from eznas.nas.table import TableFile

    return TableFile(path, []).rows if path.exists() else {}


def agreement(gpu: dict[str, dict[str, float]], cpu: dict[str, dict[str, float]]) -> dict[str, dict]:
    from scipy.stats import spearmanr

    shared = [a for a in cpu if a in gpu]
    out: dict[str, dict] = {}
    if not shared:
        return out
    for col in cpu[shared[0]]:
        g = np.array([gpu[a].get(col, np.nan) for a in shared])
        c = np.array([cpu[a].get(col, np.nan) for a in shared])
        ok = np.isfinite(g) & np.isfinite(c)
        if ok.sum() < 2:
            continue
        rel = np.abs(g[ok] - c[ok]) / np.maximum(np.abs(c[ok]), 1e-12)
        rho = spearmanr(g[ok], c[ok])[0] if np.ptp(c[ok]) > 0 else float("nan")
        out[col] = {"cells": int(ok.sum()), "rel_diff_median": float(np.median(rel)), "rel_diff_max": float(rel.max()),
                    "spearman_cuda_vs_cpu": None if not np.isfinite(rho) else float(rho)}
    return out


def summarise(gpu_dir: Path) -> dict:
    check = json.loads((gpu_dir / "gpu_check.json").read_text())
    doc: dict = {"device": check["throughput"]["device"], "torch": check["torch"],
                 "statistics_agreement": check["agreement"],
                 "one_process": {"nets_per_s": check["throughput"]["nets_per_s"],
                                 "cpu_nets_per_s_same_machine_1_thread": check["throughput"]["cpu_nets_per_s"],
                                 "target_nets_per_s": check["throughput"]["target_nets_per_s"]}}
    txt = (gpu_dir / "stats_gpu.txt").read_text() if (gpu_dir / "stats_gpu.txt").exists() else ""
    m = re.search(r"wall ([\d.]+) nets (\d+)", txt)
    if m:
        wall, nets = float(m.group(1)), int(m.group(2))
        doc["stats_cli_workers"] = {"workers": 14, "nets": nets, "wall_s": round(wall, 1),
                                    "nets_per_s": round(nets / wall, 2),
                                    "note": "eznas stats configs/nb201.yaml --device cuda --workers 14, stopped at "
                                            "120 s (660 nets planned); wall time includes worker and CUDA start-up"}
    meta_path = gpu_dir / "table" / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        s = meta["sessions"][-1]
        doc["table_scores"] = {"workers": s["workers"], "nets": s["nets_scored"], "wall_s": s["wall_s"],
                               "nets_per_s": s["nets_per_s"], "cells_done": meta["cells_done"],
                               "seconds_per_net_by_proxy_per_worker": s["seconds_per_net_by_proxy"]}
        doc["score_agreement_cuda_vs_cpu"] = {
            d: agreement(read_csv(gpu_dir / "table" / f"{d}.csv"), read_csv(gpu_dir / "cpu_reference" / f"{d}.csv"))
            for d in meta["cells_done"] if (gpu_dir / "cpu_reference" / f"{d}.csv").exists()}
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=str(GPU))
    p.add_argument("--out", default=None, help="default: DIR/summary.json")
    args = p.parse_args(argv)
    gpu_dir = Path(args.dir)
    if not (gpu_dir / "gpu_check.json").exists():
        print(f"gpu_summary: error: no gpu_check.json in {gpu_dir} (run experiments/gpu_session.sh on a GPU machine)",
              file=sys.stderr)
        return 2
    doc = summarise(gpu_dir)
    a, one = doc["statistics_agreement"], doc["one_process"]
    print(f"{doc['device']} (torch {doc['torch']})")
    print(f"statistics CPU vs CUDA, {a['nets']} nets: relative error median {a['rel_err_float32_median']:.1e}, "
          f"p99 {a['rel_err_float32_p99']:.1e}, max {a['rel_err_float32_max']:.1e}; summary ranking rho "
          f"{a['summary_spearman']:.3f}")
    print(f"statistics throughput, one process: {one['nets_per_s']} nets/s (target {one['target_nets_per_s']}; "
          f"CPU 1 thread on that machine {one['cpu_nets_per_s_same_machine_1_thread']})")
    if "stats_cli_workers" in doc:
        w = doc["stats_cli_workers"]
        print(f"eznas stats with {w['workers']} workers on one GPU: {w['nets']} nets in {w['wall_s']} s = "
              f"{w['nets_per_s']} nets/s")
    if "table_scores" in doc:
        t = doc["table_scores"]
        print(f"table scoring (4 programs + 12 baselines per net), {t['workers']} workers: {t['nets']} nets, "
              f"{t['nets_per_s']} nets/s")
        for d, cols in doc["score_agreement_cuda_vs_cpu"].items():
            worst = max(cols.items(), key=lambda kv: kv[1]["rel_diff_max"]) if cols else None
            rhos = [v["spearman_cuda_vs_cpu"] for v in cols.values() if v["spearman_cuda_vs_cpu"] is not None]
            if worst:
                print(f"  {d}: scores CUDA vs CPU on {worst[1]['cells']} cells: largest relative difference "
                      f"{worst[1]['rel_diff_max']:.1e} ({worst[0]}), min rank agreement rho {min(rhos):.3f}")
    out = Path(args.out) if args.out else gpu_dir / "summary.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
