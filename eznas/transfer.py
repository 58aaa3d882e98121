"""``eznas transfer RUN_DIR CONFIG``: score a finished search's hall of fame on other tasks.

The transfer setting: programs evolved on one search space (RUN_DIR) are scored, unchanged, on
the ``split`` of every task of another config (for example NB101, NB301 and TNB-micro). The
statistics are recorded with the *run's* settings (seed, batch, sketch, noise, width/depth), so
the programs see exactly the kind of tensors they were evolved on; the tasks and split sizes come
from CONFIG. Statistics are read from (and added to) the same cache the searches use, so scoring
the test nets of a config whose search already ran computes nothing.

Writes ``RUN_DIR/transfer-<config stem>.json`` (every hall-of-fame program, Spearman and Kendall
per task) and prints the rank-1 program's table.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

from eznas import config as config_mod
from eznas import program
from eznas.atomic import atomic_write_text
from eznas.errors import EznasError
from eznas.evolve import SearchData, test_correlations
from eznas.stats import build_cache, config_jobs, default_cache_dir


def transfer_config(run_cfg: config_mod.Config, target: config_mod.Config) -> config_mod.Config:
    """The run's statistics settings with the target's tasks and split sizes."""
    if target.seed != run_cfg.seed:
        raise EznasError(f"config seed {target.seed} differs from the run's seed {run_cfg.seed}: the splits "
                         f"and statistics of both must come from one seed")
    cfg = copy.deepcopy(run_cfg)
    cfg.tasks = copy.deepcopy(target.tasks)
    cfg.split = copy.deepcopy(target.split)
    cfg.data_dir = target.data_dir or run_cfg.data_dir
    return config_mod.validate(cfg)


def load_hall(run_dir: Path) -> list[dict[str, Any]]:
    p = run_dir / "hall_of_fame.json"
    if not p.is_file():
        raise EznasError(f"{run_dir} has no hall_of_fame.json; is it a finished search run directory?")
    try:
        hall = json.loads(p.read_text())["hall_of_fame"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise EznasError(f"{p} is damaged ({e.__class__.__name__})") from None
    if not hall:
        raise EznasError(f"{run_dir}: the hall of fame is empty")
    return hall


def transfer(run_dir: str | Path, config_path: str | Path, split: str = "test", progress: bool = True,
             skip_tasks: tuple[str, ...] = ()) -> dict[str, Any]:
    """Score RUN_DIR's hall of fame on ``split`` of CONFIG's tasks; return (and write) the report.
    ``skip_tasks`` names tasks (``space/dataset``) to leave out, e.g. those the run evolved on."""
    run_dir = Path(run_dir)
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise EznasError(f"{run_dir} has no config.yaml; is it a search run directory?")
    run_cfg = config_mod.load(saved)
    hall = load_hall(run_dir)
    target = config_mod.load(config_path)
    cfg = transfer_config(run_cfg, target)
    jobs, by_task = config_jobs(cfg, splits=(split,))
    keep = {name for name in by_task if name not in skip_tasks}
    jobs = [j for j in jobs if f"{j[1].space}/{j[1].dataset}" in keep]
    build_cache(jobs, default_cache_dir(cfg), cfg.data_dir, workers=cfg.stats.workers, progress=progress)
    stats = SearchData({}, {}, {n: p for n, p in by_task.items() if n in keep}, cfg).load(split)
    pset = program.load_primitive_set(run_cfg.search.primitive_set)
    per_program = test_correlations([h["infix"] for h in hall], stats, pset, run_cfg.search.unit_aggregate)
    evolved_on = sorted({f"{t.space}/{t.dataset}" for t in run_cfg.tasks})
    report = {"run_dir": str(run_dir), "config": str(config_path), "split": split, "evolved_on": evolved_on,
              "hall_of_fame": [{"infix": h["infix"], "validate": h.get("validate"), "tasks": r}
                               for h, r in zip(hall, per_program)]}
    atomic_write_text(run_dir / f"transfer-{Path(config_path).stem}.json", json.dumps(report, indent=2))
    return report


def cmd_transfer(args: argparse.Namespace) -> int:
    rep = transfer(args.run_dir, args.config, args.split, progress=sys.stderr.isatty())
    best = rep["hall_of_fame"][0]
    print(f"rank-1 program of {rep['run_dir']} (evolved on {', '.join(rep['evolved_on'])}):\n  {best['infix']}")
    print(f"{rep['split']} split of {rep['config']}:   spearman  kendall  nets")
    for name, r in best["tasks"].items():
        mark = "  (seen in the search's tasks)" if name in rep["evolved_on"] else ""
        print(f"  {name:28s} {r['spearman']:7.3f}  {r['kendall']:7.3f}  {r['nets']:4d}{mark}")
    print(f"written to {Path(rep['run_dir']) / ('transfer-' + Path(rep['config']).stem + '.json')}")
    return 0
