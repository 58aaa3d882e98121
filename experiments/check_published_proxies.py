"""Do our baseline proxies reproduce NAS-Bench-Suite-Zero's published scores?

For N NB201 cifar10 architectures of the benchmark records, compute every proxy the records
publish with ``eznas.proxies`` and report the Spearman rho between our scores and NASLib's.
Writes ``experiments/results/published_check.json`` and ``published_check.md``.

Settings mirror NASLib's ZeroCost runner where we can: batch size 32 (NASLib's zc config;
jacov's published values are close to -32, the minimum for a batch of 32), training-mode
BatchNorm, PyTorch default initialisation. What we cannot mirror: NASLib drew a different
augmented CIFAR-10 batch (from 50,000 images) and a different initialisation for every net and
ran on a GPU; we have 4,660 training images and use one fixed batch. To separate implementation
differences from that sampling noise, every net is also scored (a) with a second fixed batch and
initialisation (seed 1) and (b) twice more with a new batch and initialisation per net (passes
netA / netB, NASLib's sampling): how well our own proxy agrees with itself under resampling
bounds how well anything can agree with NASLib's scores. Also reported: rho between NASLib's
published cifar10 and cifar100 scores of the same nets, and the ratio of typical magnitudes.

Scores are cached in ``~/.cache/eznas/published_check_scores.json`` (``--cache``; rewritten
atomically after every net), so an interrupted run resumes.

    nice python experiments/check_published_proxies.py --n 200
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from eznas import records
from eznas.batches import make_batches
from eznas.metrics import spearman
from eznas.proxies import get_proxy
from eznas.spaces import build
from eznas.errors import run_main

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path.home() / ".cache" / "eznas" / "published_check_scores.json"
PROXIES = ("params", "flops", "synflow", "snip", "grasp", "fisher", "grad_norm", "jacov", "nwot", "epe_nas",
           "l2_norm", "plain")
DATA_FREE = ("params", "flops")  # deterministic: no second seed needed
NOISY = tuple(p for p in PROXIES if p not in DATA_FREE)  # depend on the initialisation and/or the batch
DATA = ("snip", "grasp", "fisher", "grad_norm", "jacov", "nwot", "epe_nas", "plain")  # use the batch
BATCH = 32

NOTES = """## Reading the table

- **params, flops**: identical to the published values (max |difference| 0 to rounding, see the
  JSON). flops follows NASLib's tensorwatch/torchstat convention (conv and linear multiply-
  accumulates plus BatchNorm 2/element, ReLU 1/element, pooling kernel-area/output, batch of one);
  counting only conv + linear MACs would give 86.43 instead of 88.307392 for (0, 2, 3, 2, 3, 1).
- **ρ ours seed 0 vs seed 1**: our own proxy scored twice with a different batch *and*
  initialisation (a fixed batch for all nets in each run). **ρ per-net batches A vs B**: scored
  twice drawing a new batch and initialisation for *every net*, which is how NASLib's runner
  produced the published scores (a fresh `next(iter(train_loader))` and a freshly built graph per
  query). These columns measure how reproducible a proxy is under the sampling NASLib used;
  nobody's implementation can agree with the published scores much better than the published
  scores would agree with themselves when recomputed.
- **scale ours / published**: median |ours| / median |published|, near 1 when the definition
  (sums over layers, no or the same log, batch size) matches.

## Proxies below ρ = 0.9, and why

- **grasp** (ρ {grasp}): GraSP's Hessian-gradient product at initialisation is dominated by
  sampling noise on NB201: recomputing *our own* score with another batch and initialisation
  agrees only ρ {grasp_s} (fixed batch) / {grasp_n} (per-net batches), *lower* than our agreement
  with the published scores. The published scores are equally unstable (cifar10 vs cifar100 ρ
  {grasp_c}). Scale ratio {grasp_r}: the same quantity. Not reachable by any implementation.
- **epe_nas** (ρ {epe}): EPE-NAS sums log-correlations of Jacobians *within each class of the
  batch*, so it depends on how many same-class pairs the batch holds. With a new batch per net
  (NASLib), our own score reproduces itself only at ρ {epe_n}; with one fixed batch at ρ {epe_s}.
  The expected agreement between a fixed-batch score and a per-net-batch one is about
  sqrt({epe_s} x {epe_n}) = {epe_ceiling}, which is what we observe. Scale ratio {epe_r} (our
  batch holds 4,660 CIFAR-10 images without NASLib's crop/flip augmentation; adding that
  augmentation did not raise ρ in a 40-net trial: 0.78 to 0.80 vs 0.81 to 0.84 without).
- **plain** (ρ {plain}): the signed sum of w * dL/dw is noise around zero at initialisation: our
  score agrees with itself at ρ {plain_s} / {plain_n} under resampling and the published cifar10
  and cifar100 scores of the same nets at ρ {plain_c}. Magnitudes match (scale ratio
  {plain_r}); the ranking is not reproducible by construction.

jacov and l2_norm clear 0.9 with a margin set by the same effect (self-agreement {jac_s} and
{l2_s}). The "published c10 vs c100" column is not an independent recomputation: NASLib's runner
seeds once and walks the same architecture list for each dataset, so the initialisations of the
two runs probably coincide in part (which would explain {l2_c} for the data-free l2_norm, above
our two-seed {l2_s}).
"""


def _save(path: Path, obj: object) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=True))
    os.replace(tmp, path)


def score_net(arch: str, batch_seed: int, init_seed: int, proxies: tuple[str, ...],
              size: dict[str, int | None] | None = None) -> dict[str, dict[str, float]]:
    batches = make_batches("cifar10", BATCH, batch_seed, num_classes=10)
    model = build("nb201", arch, "cifar10", seed=init_seed, **(size or {}))
    out = {}
    for name in proxies:
        t0 = time.perf_counter()
        s = get_proxy(name)(model, batches.D, batches.targets)
        out[name] = {"score": float(s), "time": time.perf_counter() - t0}
    return out


def arch_seed(arch: str) -> int:
    return int(hashlib.sha256(arch.encode()).hexdigest()[:8], 16)


def passes(arch: str) -> dict[str, tuple[int, int, tuple[str, ...]]]:
    """pass name -> (batch seed, init seed, proxies). "0" is the result; "1" another fixed batch and
    init; "netA" / "netB" a different batch and init for every net, as NASLib drew them."""
    h = arch_seed(arch)
    return {"0": (0, 0, PROXIES), "1": (1, 1, NOISY), "netA": (h, h, DATA), "netB": (h + 1, h + 1, DATA)}


def collect(archs: list[str], cache_path: Path, size: dict[str, int | None] | None = None) -> dict[str, dict]:
    cache: dict[str, dict] = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    for arch in tqdm(archs, desc="nets", file=sys.stdout, mininterval=10):
        for name, (batch_seed, init_seed, proxies) in passes(arch).items():
            key = f"{arch}|{name}"
            todo = tuple(p for p in proxies if p not in cache.get(key, {}))
            if todo:
                cache.setdefault(key, {}).update(score_net(arch, batch_seed, init_seed, todo, size))
                _save(cache_path, cache)
    return cache


def column(cache: dict, archs: list[str], run: str, proxy: str) -> np.ndarray:
    return np.array([cache[f"{a}|{run}"][proxy]["score"] for a in archs], dtype=np.float64)


def analyse(task: records.Task, other: records.Task, idx: np.ndarray, cache: dict) -> dict[str, dict]:
    archs = [task.archs[i] for i in idx]
    other_pos = {a: i for i, a in enumerate(other.archs)}
    both = [k for k, a in enumerate(archs) if a in other_pos]
    rows = {}
    for p in PROXIES:
        ours, pub = column(cache, archs, "0", p), task.published[p][idx]
        row = {"n": len(archs), "rho_vs_published": spearman(ours, pub),
               "max_abs_diff": float(np.nanmax(np.abs(ours - pub))) if p in DATA_FREE else None,
               "time_per_net_s": float(np.mean([cache[f"{a}|0"][p]["time"] for a in archs])),
               "rho_ours_vs_accuracy": spearman(ours, task.accuracies[idx]),
               "rho_published_vs_accuracy": spearman(pub, task.accuracies[idx]),
               "scale_ours_over_published": float(np.nanmedian(np.abs(ours)) / np.nanmedian(np.abs(pub)))}
        if p in NOISY:
            row["rho_ours_seed0_vs_seed1"] = spearman(ours, column(cache, archs, "1", p))
            pub100 = np.array([other.published[p][other_pos[archs[k]]] for k in both])
            row["rho_published_cifar10_vs_cifar100"] = spearman(pub[both], pub100)
        if p in DATA:
            a, b = column(cache, archs, "netA", p), column(cache, archs, "netB", p)
            row["rho_ours_per_net_batches_A_vs_B"] = spearman(a, b)
            row["rho_ours_per_net_batches_vs_published"] = spearman(a, pub)
        rows[p] = row
    return rows


def _f(x: float | None) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _note_values(rows: dict[str, dict]) -> dict[str, str]:
    r = {p: rows[p] for p in ("grasp", "epe_nas", "plain", "jacov", "l2_norm")}
    v = {}
    for key, p in (("grasp", "grasp"), ("epe", "epe_nas"), ("plain", "plain"), ("jac", "jacov"), ("l2", "l2_norm")):
        v[key] = _f(r[p]["rho_vs_published"])
        v[key + "_s"] = _f(r[p].get("rho_ours_seed0_vs_seed1"))
        v[key + "_n"] = _f(r[p].get("rho_ours_per_net_batches_A_vs_B"))
        v[key + "_c"] = _f(r[p].get("rho_published_cifar10_vs_cifar100"))
        v[key + "_r"] = _f(r[p]["scale_ours_over_published"])
    e = r["epe_nas"]
    fixed, per_net = e["rho_ours_seed0_vs_seed1"], e["rho_ours_per_net_batches_A_vs_B"]
    v["epe_ceiling"] = _f(float(np.sqrt(max(fixed, 0) * max(per_net, 0))))
    return v


def markdown(rows: dict[str, dict]) -> str:
    head = ("| proxy | Spearman ρ vs published | n nets | ρ ours seed 0 vs seed 1 | ρ ours, per-net batches A vs B "
            "| ρ ours per-net batches vs published | ρ published c10 vs c100 | ρ with accuracy: ours / published "
            "| scale ours / published | s per net |\n|---|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {p} | **{_f(r['rho_vs_published'])}** | {r['n']} | {_f(r.get('rho_ours_seed0_vs_seed1'))} "
        f"| {_f(r.get('rho_ours_per_net_batches_A_vs_B'))} | {_f(r.get('rho_ours_per_net_batches_vs_published'))} "
        f"| {_f(r.get('rho_published_cifar10_vs_cifar100'))} | {_f(r['rho_ours_vs_accuracy'])} / "
        f"{_f(r['rho_published_vs_accuracy'])} | {_f(r['scale_ours_over_published'])} "
        f"| {r['time_per_net_s']:.3f} |\n" for p, r in rows.items())
    below = [p for p, r in rows.items() if not r["rho_vs_published"] >= 0.9]
    summary = (f"All {len(rows)} proxies reach ρ ≥ 0.9 except: {', '.join(below) or 'none'}.\n\n")
    return ("# Baseline proxies vs NAS-Bench-Suite-Zero published scores (NB201 cifar10)\n\n"
            "Produced by `experiments/check_published_proxies.py` (CPU, one thread, batch "
            f"{BATCH} of real CIFAR-10 training images, PyTorch default initialisation).\n\n"
            + head + body + "\n" + summary + NOTES.format(**_note_values(rows)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="architectures (sampled with --seed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--cache", default=str(CACHE), help="score cache (JSON, rewritten after every net)")
    ap.add_argument("--width", type=int, default=None, help="NB201 channels, a quick check only (default: 16)")
    ap.add_argument("--depth", type=int, default=None, help="NB201 cells per stage, a quick check only (default: 5)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = records.load_task("nb201", "cifar10")
    other = records.load_task("nb201", "cifar100")
    idx = np.sort(np.random.default_rng(args.seed).permutation(len(task))[: args.n])
    cache_path = Path(args.cache).expanduser()
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    size = {"width": args.width, "depth": args.depth} if args.width or args.depth else None
    if size and cache_path == CACHE:
        raise SystemExit("check_published_proxies: --width/--depth need their own --cache "
                         "(the default one holds full-size scores)")
    cache = collect([task.archs[i] for i in idx], cache_path, size)
    rows = analyse(task, other, idx, cache)
    _save(out / "published_check.json", {"space": "nb201", "dataset": "cifar10", "batch_size": BATCH,
                                         "n": len(idx), **(size or {}), "proxies": rows})
    md = markdown(rows)
    (out / "published_check.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
