"""An exported proxy runs in a fresh virtual environment that has only torch installed.

1. runs a tiny search (NB201 / CIFAR-10, 12 + 6 + 6 nets of width 4, depth 1) into a temporary
   run directory and exports its five best programs with ``eznas export``;
2. creates a fresh venv in a temporary directory (outside the repository) and installs only
   ``torch==2.13.0`` into it (from the local wheel this project's machines carry);
3. in that venv, checks that ``import eznas`` fails, imports the exported file and scores a plain
   PyTorch model (defined below, not from any benchmark) on a saved CIFAR-10 batch, once with the
   batch's N / P passed explicitly and once with N / P drawn by the module itself;
4. scores the same model in this process with ``eznas.load_proxy`` (the in-engine evaluation: the
   expression rebuilt from the file's JSON and run with eznas' own primitives) and checks that the
   scores agree to 1e-6 relative.

    python experiments/export_fresh_venv.py [--workdir DIR] [--keep]

Needs EZNAS_DATA_DIR (the CIFAR-10 images and the NB201 records). Prints what it did and exits 1
if a check fails.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eznas.errors import run_main

import torch

PLAIN_MODEL = '''
import torch
from torch import nn


class Block(nn.Module):
    """Residual block with in-place ReLUs and `out += identity`, torchvision style."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                         Block(16), nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32),
                         nn.ReLU(), Block(32), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
'''

RUNNER = '''
import importlib.util, json, sys
try:
    import eznas  # noqa: F401
    has_eznas = True
except ImportError:
    has_eznas = False
import torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[1])
from plain_model import make_model
b = torch.load(sys.argv[2], weights_only=True)
results = []
for i, path in enumerate(sys.argv[3:]):
    spec = importlib.util.spec_from_file_location(f"proxy{i}", path)
    proxy = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = proxy
    spec.loader.exec_module(proxy)
    explicit = proxy.score(make_model(), b["D"], b["targets"], noise=b["N"], perturbed=b["P"])
    drawn = proxy.score(make_model(), b["D"], b["targets"])
    results.append({"explicit_NP": explicit, "seeded_NP": drawn, "expression": proxy.EXPRESSION})
print(json.dumps({"import_eznas_fails": not has_eznas, "torch": torch.__version__, "proxies": results}))
'''


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        sys.exit(f"command failed ({out.returncode}): {' '.join(cmd)}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return out


def tiny_search(work: Path) -> Path:
    from eznas import config as config_mod
    from eznas import evolve

    run_dir = work / "run"
    if (run_dir / "hall_of_fame.json").is_file():
        return run_dir
    cfg = config_mod.from_dict({
        "seed": 0, "run_dir": str(run_dir), "tasks": [{"space": "nb201", "dataset": "cifar10"}],
        "split": {"evolve": 12, "validate": 6, "test": 6}, "network": {"width": 4, "depth": 1},
        "stats": {"batch_size": 8, "R": 4, "s": 4, "cache_dir": str(work / "cache")},
        "search": {"primitive_set": "eznas", "population": 16, "offspring": 16, "generations": 8,
                   "subsample": None, "hall_of_fame": 5, "init_min_depth": 2, "init_max_depth": 5}})
    evolve.run(cfg, run_dir, progress=False)
    return run_dir


def fresh_venv(work: Path) -> Path:
    venv = work / "venv"
    py = venv / "bin" / "python"
    if not py.is_file():
        run([sys.executable, "-m", "venv", str(venv)])
        t0 = time.perf_counter()
        run([str(py), "-m", "pip", "install", "--quiet", "torch==2.13.0"])
        print(f"installed torch into a fresh venv in {time.perf_counter() - t0:.0f} s: {venv}")
    return py


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None, help="reuse this directory (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="eznas-fresh-venv-")).resolve()
    repo = Path(__file__).resolve().parents[1]
    if repo in work.parents or work == repo:
        sys.exit("the work directory must be outside the repository")
    work.mkdir(parents=True, exist_ok=True)
    try:
        return experiment(work)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def experiment(work: Path) -> int:
    from eznas import cli, load_proxy
    from eznas.batches import make_batches

    torch.set_num_threads(1)
    run_dir = tiny_search(work)
    files = []
    for rank in range(1, 6):
        files.append(work / f"proxy{rank}.py")
        if cli.main(["export", str(run_dir), "--rank", str(rank), "--out", str(files[-1])]) != 0:
            return 1
    (work / "plain_model.py").write_text(PLAIN_MODEL)
    (work / "runner.py").write_text(RUNNER)
    b = make_batches("cifar10", 16, seed=0, noise_scale=0.1)
    torch.save({"D": b.D, "N": b.N, "P": b.P, "targets": b.targets}, work / "batch.pt")

    py = fresh_venv(work)
    pkgs = run([str(py), "-m", "pip", "list", "--format=freeze"]).stdout.split()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    got = json.loads(run([str(py), "-I", str(work / "runner.py"), str(work), str(work / "batch.pt"),
                          *map(str, files)], env=env, cwd=work).stdout.strip().splitlines()[-1])
    print(f"fresh venv packages: {', '.join(pkgs)}")
    print(f"in the fresh venv: import eznas fails = {got['import_eznas_fails']}, torch {got['torch']}")

    sys.path.insert(0, str(work))
    from plain_model import make_model

    ok = bool(got["import_eznas_fails"])
    for path, res in zip(files, got["proxies"]):
        proxy = load_proxy(str(path))  # parsed, evaluated with eznas' own primitives
        ref = [proxy(make_model(), b.D, b.targets, noise=b.N, perturbed=b.P), proxy(make_model(), b.D, b.targets)]
        venv = [res["explicit_NP"], res["seeded_NP"]]
        rel = [abs(v - r) / max(abs(r), 1e-300) for v, r in zip(venv, ref)]
        ok = ok and all(math.isfinite(x) and x <= 1e-6 for x in rel)
        print(f"{path.name}: {res['expression']}")
        print(f"  plain residual CNN, batch's N/P: fresh venv {venv[0]!r}, in-engine {ref[0]!r}")
        print(f"  plain residual CNN, seeded N/P:  fresh venv {venv[1]!r}, in-engine {ref[1]!r}")
        print(f"  relative differences: {rel[0]:.3g}, {rel[1]:.3g}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1

if __name__ == "__main__":
    run_main(main, Path(__file__).name)
