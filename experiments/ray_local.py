"""A search on a local Ray instance gives the same result as the serial backend.

Needs the optional extra: pip install -e ".[ray]". Runs a small NB201 search (tiny networks,
2 tasks) once with `search.backend: serial` and once with `ray` (2 actors on a local Ray
instance started by eznas), and checks the halls of fame are identical.

    python experiments/ray_local.py [--out experiments/results/ray_local.json]
    python experiments/ray_local.py --tiny --out /tmp/ray_local.json   # digits, 2 generations (smoke test)
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from eznas import config as config_mod
from eznas import evolve
from eznas.errors import run_main

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "ray_local.json"


def run(tmp: Path, backend: str, tiny: bool = False) -> tuple[dict, float]:
    if tiny:  # the embedded digits benchmark, 2 generations: only checks that the Ray path runs and agrees
        setting = {"tasks": [{"space": "nb201", "dataset": "digits", "benchmark": "digits"}],
                   "split": {"evolve": 10, "validate": 6, "test": 8}, "network": {"width": 4, "depth": 1},
                   "stats": {"batch_size": 8, "R": 2, "s": 2, "cache_dir": str(tmp / "cache")},
                   "population": 8, "generations": 2}
    else:
        setting = {"tasks": [{"space": "nb201", "dataset": "cifar10"}, {"space": "nb201", "dataset": "cifar100"}],
                   "split": {"evolve": 24, "validate": 12, "test": 24}, "network": {"width": 8, "depth": 1},
                   "stats": {"batch_size": 16, "R": 8, "s": 8, "cache_dir": str(tmp / "cache")},
                   "population": 20, "generations": 5}
    cfg = config_mod.from_dict({
        "seed": 0, "run_dir": str(tmp / backend), "tasks": setting["tasks"], "split": setting["split"],
        "network": setting["network"], "stats": setting["stats"],
        "search": {"primitive_set": "eznas", "population": setting["population"], "offspring": setting["population"],
                   "generations": setting["generations"], "subsample": None, "backend": backend, "workers": 2},
    })
    t0 = time.perf_counter()
    evolve.run(cfg, Path(cfg.run_dir), progress=False)
    return json.loads((Path(cfg.run_dir) / "hall_of_fame.json").read_text()), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="digits benchmark, tiny nets, 2 generations")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    try:
        import ray
    except ImportError:
        raise SystemExit('ray_local: ray is not installed; pip install -e ".[ray]"') from None

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        serial, t_serial = run(tmp, "serial", args.tiny)
        on_ray, t_ray = run(tmp, "ray", args.tiny)
    same = serial == on_ray
    print(f"ray {ray.__version__}: serial {t_serial:.1f} s, ray {t_ray:.1f} s (incl. Ray start-up); "
          f"halls of fame identical: {same}")
    out = {"ray_version": ray.__version__, "serial_s": t_serial, "ray_s": t_ray, "identical": same,
           "best": on_ray["hall_of_fame"][0]["infix"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    if not same:
        raise SystemExit("ray and serial backends disagree")


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
