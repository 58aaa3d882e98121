"""``eznas transfer RUN_DIR CONFIG``: score a finished search's hall of fame on other tasks.

The transfer setting: programs evolved on one search space (RUN_DIR) are scored, unchanged, on
the ``split`` of every task of another config (for example NB101, NB301 and TNB-micro). The
statistics are recorded with the *run's* settings (seed, batch, sketch, noise, width/depth), so
the programs see exactly the kind of tensors they were evolved on; the tasks and split sizes come
from CONFIG. Statistics are read from (and added to) the same cache the searches use, so scoring
the test nets of a config whose search already ran computes nothing.

Writes ``RUN_DIR/transfer-<config stem>.json`` (every hall-of-fame program, Spearman and Kendall
per task) and prints the rank-1 program's table. A task's nets count as *seen* only when the
search evolved or validated on them (same task, same architecture), not because the task's name is
one the search used: ``seen_nets`` gives their number per task.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

from eznas import config as config_mod
from eznas.atomic import atomic_write_text
from eznas.errors import EznasError
from eznas.evolve import SearchData
from eznas.scoring import REPORT_MEMO_BYTES, Scorer, ScoringOptions
from eznas.stats import config_jobs

#: the splits a search fits its programs to (the test split is only reported)
SEARCH_SPLITS = ("evolve", "validate")


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


def seen_nets(run_cfg: config_mod.Config, data: SearchData, split: str) -> dict[str, int]:
    """Per task of ``data``: how many nets of ``split`` the run evolved or validated on."""
    _, run_tasks = config_jobs(run_cfg, splits=())
    seen = {name: {a for sp in SEARCH_SPLITS for a in parts[sp].archs} for name, parts in run_tasks.items()}
    return {name: sum(a in seen.get(name, ()) for a in parts[split].archs) for name, parts in data.tasks.items()}


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
    data = SearchData.for_config(cfg, build=(split,), skip_tasks=skip_tasks, progress=progress)
    options = ScoringOptions.from_search(run_cfg.search, memo_bytes=REPORT_MEMO_BYTES)
    per_program = Scorer(data.load(split), options).correlations([h["infix"] for h in hall])
    evolved_on = sorted({f"{t.space}/{t.dataset}" for t in run_cfg.tasks})
    report = {"run_dir": str(run_dir), "config": str(config_path), "split": split, "evolved_on": evolved_on,
              "seen_nets": seen_nets(run_cfg, data, split),
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
        seen = rep["seen_nets"].get(name, 0)
        mark = f"  ({seen} of these nets seen by the search)" if seen else ""
        print(f"  {name:28s} {r['spearman']:7.3f}  {r['kendall']:7.3f}  {r['nets']:4d}{mark}")
    print(f"written to {Path(rep['run_dir']) / ('transfer-' + Path(rep['config']).stem + '.json')}")
    return 0
