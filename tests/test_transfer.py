"""`eznas transfer`: a finished run's programs scored, unchanged, on another config's tasks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eznas import config as config_mod
from eznas import evolve
from eznas.errors import EznasError
from eznas.transfer import transfer

SEARCH = dict(primitive_set="compact", population=6, offspring=8, generations=2, subsample=None, patience=10,
              hall_of_fame=3, tournament=3, max_depth=6, init_min_depth=1, init_max_depth=3)


def raw_config(tmp_path: Path, tasks: list[dict], **top) -> dict:
    return {"seed": 5, "run_dir": str(tmp_path / "run"), "tasks": tasks,
            "split": {"evolve": 10, "validate": 5, "test": 8}, "network": {"width": 4, "depth": 1},
            "stats": {"batch_size": 8, "R": 4, "s": 4, "cache_dir": str(tmp_path / "cache")},
            "search": SEARCH, **top}


@pytest.fixture(scope="module")
def nb201_run(tmp_path_factory, data_dir) -> Path:
    tmp = tmp_path_factory.mktemp("transfer")
    cfg = config_mod.from_dict(raw_config(tmp, [{"space": "nb201", "dataset": "cifar10"}]))
    evolve.run(cfg, Path(cfg.run_dir), progress=False)
    return Path(cfg.run_dir)


def write(tmp_path: Path, raw: dict, name: str = "target.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(raw))
    return p


def test_transfer_onto_the_runs_own_tasks_reproduces_its_test_report(nb201_run, tmp_path):
    own = nb201_run / "config.yaml"
    rep = transfer(nb201_run, own, progress=False)
    hall = json.loads((nb201_run / "hall_of_fame.json").read_text())["hall_of_fame"]
    assert [h["infix"] for h in rep["hall_of_fame"]] == [h["infix"] for h in hall]
    for mine, theirs in zip(rep["hall_of_fame"], hall):
        assert json.dumps(mine["tasks"], sort_keys=True) == json.dumps(theirs["test"], sort_keys=True)
    assert (nb201_run / "transfer-config.json").is_file()


def test_transfer_to_other_spaces(nb201_run, tmp_path):
    raw = raw_config(tmp_path, [{"space": "nb201", "dataset": "cifar10"}, {"space": "nb201", "dataset": "cifar100"},
                                {"space": "tnb_micro", "dataset": "class_scene"}])
    raw["stats"]["cache_dir"] = str(nb201_run.parent / "cache")  # the run's own statistics are reused
    rep = transfer(nb201_run, write(tmp_path, raw), progress=False, skip_tasks=("nb201/cifar10",))
    best = rep["hall_of_fame"][0]
    assert set(best["tasks"]) == {"nb201/cifar100", "tnb_micro/class_scene"}
    assert rep["evolved_on"] == ["nb201/cifar10"]
    assert rep["seen_nets"] == {"nb201/cifar100": 0, "tnb_micro/class_scene": 0}
    for r in best["tasks"].values():
        assert r["nets"] == 8
        assert r["spearman"] != r["spearman"] or -1.0 <= r["spearman"] <= 1.0  # NaN allowed: constant score

    # the CLI prints the table and the output file, exit 0
    out = subprocess.run([sys.executable, "-m", "eznas.cli", "transfer", str(nb201_run), str(write(tmp_path, raw))],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "tnb_micro/class_scene" in out.stdout and "nb201/cifar10 " in out.stdout
    # nb201/cifar10 is a task of the search, but its test nets are not the nets the search evolved on
    assert "seen" not in out.stdout, out.stdout


def test_only_nets_the_search_used_are_labelled_seen(nb201_run, tmp_path, capsys):
    """A net counts as seen when its architecture was in the run's evolve or validate split of the
    same task, not because the task's name matches."""
    from eznas.transfer import cmd_transfer

    own = transfer(nb201_run, nb201_run / "config.yaml", progress=False)
    assert own["seen_nets"] == {"nb201/cifar10": 0}  # the run's own test split: never evolved on
    # same seed, smaller evolve/validate sizes: the first 8 nets after 2 + 1 are the run's 10 evolve
    # nets after its first 3, then its first validate net -- all nets the search used
    raw = raw_config(tmp_path, [{"space": "nb201", "dataset": "cifar10"}])
    raw["split"] = {"evolve": 2, "validate": 1, "test": 8}
    target = write(tmp_path, raw, "overlap.yaml")
    rep = transfer(nb201_run, target, progress=False)
    assert rep["seen_nets"] == {"nb201/cifar10": 8}
    raw["split"] = {"evolve": 2, "validate": 1, "test": 13}  # 12 of the run's evolve + validate, 1 of its test
    rep = transfer(nb201_run, write(tmp_path, raw, "overlap13.yaml"), progress=False)
    assert rep["seen_nets"] == {"nb201/cifar10": 12}
    import argparse

    cmd_transfer(argparse.Namespace(run_dir=str(nb201_run), config=str(target), split="test"))
    assert "(8 of these nets seen by the search)" in capsys.readouterr().out


def test_transfer_errors_are_one_line(nb201_run, tmp_path):
    raw = raw_config(tmp_path, [{"space": "nb201", "dataset": "cifar100"}], seed=6)
    with pytest.raises(EznasError, match="seed 6 differs"):
        transfer(nb201_run, write(tmp_path, raw), progress=False)
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    out = subprocess.run([sys.executable, "-m", "eznas.cli", "transfer", str(empty), str(nb201_run / "config.yaml")],
                         capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eznas: error:") and "no config.yaml" in lines[0]
