"""End to end: the built-in proxies scored exactly as a user scores them, on nets they never saw.

Each check runs ``eznas score --proxy <built-in> --proxy <baseline> ... --space S --dataset D --archs F
--batch-size 32 --seed 0 --out CSV`` (the command line, in a subprocess) in chunks of ``--chunk`` nets
and reports the Spearman rho of every column with the nets' trained accuracy. Nothing is read from
the search's caches: every terminal of a hybrid is recomputed by eznas's own proxy on a freshly built
network. Chunks already on disk are reused (a stopped run resumes).

Nets:

- ``nb201``: ``--nb201-cells`` NATS-Bench cells per dataset drawn (seed 0) from the cells that neither
  the evolved programs (their search splits) nor the hybrid (the 500-cell pool of
  ``experiments/hybrid_search.py``) ever saw. Built-ins ``eznas-nb201``, ``eznas-nb201-hybrid``.
- ``nb101``, ``nb301``, ``tnb``: the first ``--nets`` test nets per task of ``hybrid_search.py``'s split
  (held out from the hybrids' evolve and validate nets). Built-ins ``eznas-nb101``, ``eznas-nb301``,
  ``eznas-tnb``.

Baselines on the same nets: params, flops, nwot, zico (the targets of issue 14), plus meco, swap,
reg_swap and AZ-NAS (its four components scored per net, ranked over the check's nets) on NB201.

    python experiments/builtin_endtoend.py [--checks nb201 nb101 nb301 tnb] [--nb201-cells 30] [--nets 60]

writes ``experiments/results/builtin_endtoend.json`` (+ the score CSVs under ``builtin_endtoend/``).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eznas import builtin_proxies, metrics, records  # noqa: E402
from eznas.errors import EznasError, run_main  # noqa: E402
from eznas.evaluate_tables import json_safe  # noqa: E402

OUT = ROOT / "experiments" / "results" / "builtin_endtoend.json"
NB201_DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
BASELINES = ("params", "flops", "nwot", "zico")
NB201_EXTRA = ("meco", "swap", "reg_swap", "az_expressivity", "az_progressivity", "az_trainability", "az_complexity")
#: check -> (space, built-ins scored on its nets)
CHECKS = {"nb201": ("nb201", ("eznas-nb201", "eznas-nb201-hybrid")), "nb101": ("nb101", ("eznas-nb101",)),
          "nb301": ("nb301", ("eznas-nb301",)), "tnb": ("tnb_micro", ("eznas-tnb",))}
HYBRID_SETTING = {"nb101": "nb101", "nb301": "nb301", "tnb": "tnb"}
BATCH = 32


def nb201_nets(dataset: str, n: int) -> tuple[list[str], np.ndarray]:
    """``n`` table cells (seed 0) unseen by the evolved programs and by the hybrids' 500-cell pool."""
    from natsbench_eval import seen_cells

    table = records.load_task("nb201", dataset, None, "natsbench")
    used = seen_cells(dataset)
    pool_csv = ROOT / "experiments" / "results" / "evaluation" / "nb201-natsbench" / "scores.csv"
    with pool_csv.open(newline="") as f:
        used |= {r["arch"] for r in csv.DictReader(f)}
    fresh = [i for i, a in enumerate(table.archs) if a not in used]
    pick = np.sort(np.random.default_rng([0, len(fresh)]).choice(fresh, size=min(n, len(fresh)), replace=False))
    return [table.archs[i] for i in pick], table.accuracies[pick]


def test_nets(check: str, n: int) -> dict[str, tuple[list[str], np.ndarray]]:
    """Per task: the first ``n`` test nets of hybrid_search.py's split and their accuracies."""
    from hybrid_search import _splits

    out = {}
    for t in records.load_tasks(CHECKS[check][0]).values():
        test = _splits(t, 0, 150, 60, None)["test"][:n]
        out[t.dataset] = ([t.archs[i] for i in test], t.accuracies[test])
    return out


def score_chunk(space: str, dataset: str, archs: list[str], proxies: list[str], out: Path) -> None:
    """``eznas score`` on ``archs`` into ``out`` (a subprocess: the user's command line)."""
    arch_file = out.with_suffix(".archs")
    arch_file.write_text("\n".join(archs) + "\n")
    cmd = [sys.executable, "-m", "eznas.cli", "score", "--space", space, "--dataset", dataset, "--archs",
           str(arch_file), "--batch-size", str(BATCH), "--seed", "0", "--device", "cpu", "--out", str(out)]
    for p in proxies:
        cmd += ["--proxy", p]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    arch_file.unlink()
    if done.returncode != 0:
        raise EznasError(f"eznas score failed on {space}/{dataset}: {done.stderr.strip().splitlines()[-1:]}")


def read_scores(path: Path) -> dict[str, dict[str, float]]:
    with path.open(newline="") as f:
        return {r["arch"]: {k: float(v) for k, v in r.items() if k != "arch"} for r in csv.DictReader(f)}


def score_nets(space: str, dataset: str, archs: list[str], proxies: list[str], work: Path,
               chunk: int) -> dict[str, np.ndarray]:
    """Columns of every proxy over ``archs``, chunk by chunk (chunks on disk with the same nets and
    columns are reused)."""
    work.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, float]] = {}
    for start in range(0, len(archs), chunk):
        part = archs[start:start + chunk]
        path = work / f"{space}_{dataset}_{start:04d}.csv"
        have = read_scores(path) if path.is_file() else {}
        if list(have) != part or any(set(proxies) - set(v) for v in have.values()):
            t0 = time.perf_counter()
            score_chunk(space, dataset, part, proxies, path)
            have = read_scores(path)
            print(f"  {space}/{dataset} nets {start}-{start + len(part) - 1}: {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr)
        rows.update(have)
    return {p: np.array([rows[a][p] for a in archs]) for p in proxies}


def az_nas(cols: dict[str, np.ndarray]) -> np.ndarray:
    """AZ-NAS over the check's nets from its per-net components."""
    from eznas.proxies import sets

    comps = sets.components_of("az_nas")
    return np.asarray(sets.score_set("az_nas", [{c: float(cols[f"az_{c}"][i]) for c in comps}
                                                for i in range(len(cols[f"az_{comps[0]}"]))]))


def run_check(check: str, args: argparse.Namespace) -> dict:
    space, shipped = CHECKS[check]
    shipped = tuple(b for b in shipped if builtin_proxies.is_builtin(b))
    if not shipped:
        return {"skipped": f"none of {', '.join(CHECKS[check][1])} is a built-in proxy"}
    extra = NB201_EXTRA if check == "nb201" else ()
    proxies = [*shipped, *BASELINES, *extra]
    nets = ({d: nb201_nets(d, args.nb201_cells) for d in NB201_DATASETS} if check == "nb201"
            else test_nets(check, args.nets))
    doc: dict = {"space": space, "builtins": list(shipped), "tasks": {}}
    for dataset, (archs, acc) in nets.items():
        t0 = time.perf_counter()
        cols = score_nets(space, dataset, archs, proxies, args.work, args.chunk)
        if extra:
            cols["az_nas"] = az_nas(cols)
            for c in extra:
                if c.startswith("az_"):
                    cols.pop(c)
        rho = {p: metrics.spearman(v, acc) for p, v in cols.items()}
        best = max((p for p in rho if p not in shipped), key=lambda p: np.nan_to_num(rho[p], nan=-2))
        doc["tasks"][f"{space}/{dataset}"] = {
            "nets": len(archs), "spearman": rho, "best_baseline": [best, rho[best]],
            "above_all_baselines": {b: bool(rho[b] > max(v for p, v in rho.items() if p not in shipped))
                                    for b in shipped},
            "seconds": time.perf_counter() - t0}
    return doc


def markdown(doc: dict) -> str:
    lines = ["| task | nets | built-in ρ | best baseline ρ | above every baseline |", "|---|---|---|---|---|"]
    for check in doc["checks"].values():
        for task, d in check.get("tasks", {}).items():
            shipped = ", ".join(f"{b} {d['spearman'][b]:.3f}" for b in check["builtins"])
            above = ", ".join(f"{b}: {'yes' if v else 'no'}" for b, v in d["above_all_baselines"].items())
            lines.append(f"| {task} | {d['nets']} | {shipped} | {d['best_baseline'][0]} {d['best_baseline'][1]:.3f} "
                         f"| {above} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checks", nargs="+", default=list(CHECKS), choices=list(CHECKS))
    ap.add_argument("--nb201-cells", type=int, default=30, help="fresh NATS-Bench cells per dataset")
    ap.add_argument("--nets", type=int, default=60, help="test nets per task of NB101 / NB301 / TNB")
    ap.add_argument("--chunk", type=int, default=10, help="nets per eznas score call (the resume unit)")
    ap.add_argument("--work", type=Path, default=ROOT / "experiments" / "results" / "builtin_endtoend")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if min(args.nb201_cells, args.nets, args.chunk) < 3:
        raise EznasError("--nb201-cells, --nets and --chunk must be >= 3")
    doc = {"batch_size": BATCH, "seed": 0, "checks": {}}
    if args.out.is_file():  # a run of some checks keeps the others
        doc["checks"].update(json.loads(args.out.read_text()).get("checks", {}))
    for check in args.checks:
        print(f"{check}:", file=sys.stderr)
        doc["checks"][check] = run_check(check, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(json_safe(doc), indent=1) + "\n")
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
