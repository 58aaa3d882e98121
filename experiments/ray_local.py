"""A search on a local Ray instance gives the same result as the serial backend.

Needs the optional extra: pip install -e ".[ray]". Runs a small NB201 search (tiny networks,
2 tasks) once with `search.backend: serial` and once with `ray` (2 actors on a local Ray
instance started by eznas), and checks the halls of fame are identical.

    python experiments/ray_local.py
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from eznas import config as config_mod
from eznas import evolve


def run(tmp: Path, backend: str) -> tuple[dict, float]:
    cfg = config_mod.from_dict({
        "seed": 0, "run_dir": str(tmp / backend),
        "tasks": [{"space": "nb201", "dataset": "cifar10"}, {"space": "nb201", "dataset": "cifar100"}],
        "split": {"evolve": 24, "validate": 12, "test": 24},
        "network": {"width": 8, "depth": 1},
        "stats": {"batch_size": 16, "R": 8, "s": 8, "cache_dir": str(tmp / "cache")},
        "search": {"primitive_set": "eznas", "population": 20, "offspring": 20, "generations": 5,
                   "subsample": None, "backend": backend, "workers": 2},
    })
    t0 = time.perf_counter()
    evolve.run(cfg, Path(cfg.run_dir), progress=False)
    return json.loads((Path(cfg.run_dir) / "hall_of_fame.json").read_text()), time.perf_counter() - t0


def main() -> None:
    import ray

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        serial, t_serial = run(tmp, "serial")
        on_ray, t_ray = run(tmp, "ray")
    same = serial == on_ray
    print(f"ray {ray.__version__}: serial {t_serial:.1f} s, ray {t_ray:.1f} s (incl. Ray start-up); "
          f"halls of fame identical: {same}")
    out = {"ray_version": ray.__version__, "serial_s": t_serial, "ray_s": t_ray, "identical": same,
           "best": on_ray["hall_of_fame"][0]["infix"]}
    Path("experiments/results/ray_local.json").write_text(json.dumps(out, indent=2))
    if not same:
        raise SystemExit("ray and serial backends disagree")


if __name__ == "__main__":
    main()
