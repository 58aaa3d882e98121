"""Misuse, as a table of bad inputs: each is one line ``eznas: error: ...``, a non-zero exit, nothing
computed lost and nothing created. Covers the run-directory lock, range-checked config values and
command-line flags, damaged checkpoints and a full disk (issue 13; the other items of that issue
are tested beside their code: test_export, test_images, test_registry, test_stats, test_transfer)."""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eznas import cli
from eznas.runlock import LOCK_NAME, RunLock

SEARCH = {"primitive_set": "compact", "population": 6, "offspring": 8, "generations": 3, "subsample": 8,
          "hall_of_fame": 3, "tournament": 3, "max_depth": 6, "init_min_depth": 1, "init_max_depth": 3}


def raw_config(cache: Path, **top) -> dict:
    raw = {"seed": 0, "run_dir": "unused",
           "tasks": [{"space": "nb201", "dataset": "digits", "benchmark": "digits"}],
           "split": {"evolve": 12, "validate": 6, "test": 6},
           "network": {"width": 4, "depth": 1},
           "stats": {"batch_size": 8, "R": 4, "s": 4, "cache_dir": str(cache)},
           "search": dict(SEARCH)}
    raw.update(top)
    return raw


def write(path: Path, raw: dict | str) -> Path:
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return path


def one_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and err[0].startswith("eznas: error:"), (rc, err)
    return err[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict:
    """A finished tiny search (its statistics cache is shared by the tests below)."""
    root = tmp_path_factory.mktemp("robust")
    cfg = write(root / "tiny.yaml", raw_config(root / "cache"))
    run_dir = root / "ref"
    assert cli.main(["evolve", str(cfg), "--run-dir", str(run_dir)]) == 0
    return {"root": root, "config": cfg, "run_dir": run_dir}


# ----------------------------------------------------------------------------- config values
def _edit(raw: dict, dotted: str, value) -> dict:
    obj = raw
    *head, last = dotted.split(".")
    for part in head:
        obj = obj.setdefault(part, {})
    if isinstance(value, dict):
        obj[last].update(value)
    else:
        obj[last] = value
    return raw


BAD_VALUES = [
    ("stats.noise_scale", float("nan"), "'stats.noise_scale': expected a finite number"),
    ("stats.noise_scale", float("inf"), "'stats.noise_scale': expected a finite number"),
    ("search.cxpb", float("nan"), "'search.cxpb': expected a finite number"),
    ("seed", -1, "'seed': a seed must be in [0, 2**32)"),
    ("seed", 10**30, "'seed': a seed must be in [0, 2**32)"),
    ("search.seed", 2**32, "'search.seed': a seed must be in [0, 2**32)"),
    ("split.validate", 0, "'split.validate': must be >= 1"),
    ("split.validate", 1, "'split.validate': a search needs >= 2"),
    ("split.evolve", 1, "'split.evolve': must be >= 2"),
    ("split.test", 1, "'split.test': must be 0"),
    ("search.subsample", 1, "'search.subsample': must be >= 2"),
    ("stats.s", 100, "'stats.s': the block side must be <= 64"),
    ("stats.R", 10**5, "'stats.R': must be <= 4096"),
    ("stats", {"R": 4096, "s": 16}, "'stats.R' * 'stats.s'**2 must be <="),
    ("split.evolve", 500, "'split.*'"),  # more nets than the benchmark has (found when the task loads)
]


@pytest.mark.parametrize("key,value,message", BAD_VALUES, ids=[f"{k}={v}" for k, v, _ in BAD_VALUES])
def test_bad_config_values_are_one_line_and_create_nothing(tmp_path, capsys, key, value, message):
    cfg = write(tmp_path / "bad.yaml", _edit(raw_config(tmp_path / "cache"), key, value))
    run_dir = tmp_path / "run"
    line = one_error(capsys, cli.main(["evolve", str(cfg), "--run-dir", str(run_dir)]))
    assert message in line
    assert not (tmp_path / "cache").exists() and not (run_dir / "checkpoint.json").exists()
    if key != "split.evolve" or value < 100:  # values checked before the run directory is made
        assert not run_dir.exists()


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_empty_config_is_an_error_not_the_default_run(tmp_path, capsys, text):
    cfg = write(tmp_path / "empty.yaml", text)
    line = one_error(capsys, cli.main(["evolve", str(cfg), "--run-dir", str(tmp_path / "run")]))
    assert "is empty" in line and not (tmp_path / "run").exists()


def test_unknown_space_with_a_benchmark_file_and_bench_seeds(tmp_path, capsys):
    import eznas

    bench_file = Path(eznas.__file__).parent / "benchmarks_data" / "digits-nb201.json"
    raw = raw_config(tmp_path / "cache", tasks=[{"space": "nb999", "dataset": "digits", "benchmark": str(bench_file)}])
    line = one_error(capsys, cli.main(["stats", str(write(tmp_path / "a.yaml", raw))]))
    assert "unknown search space 'nb999'" in line
    raw = raw_config(tmp_path / "cache", bench={"seeds": [0, 2**32]})
    assert "'bench.seeds'" in one_error(capsys, cli.main(["stats", str(write(tmp_path / "b.yaml", raw))]))


# ----------------------------------------------------------------------------- command-line flags
BAD_FLAGS = [
    (["stats", "CFG", "--workers", "-3"], "argument --workers: must be a whole number >= 1"),
    (["stats", "CFG", "--workers", "0"], "argument --workers: must be a whole number >= 1"),
    (["stats", "CFG", "--workers", "two"], "argument --workers: must be a whole number >= 1"),
    (["bench", "build", "CFG", "--workers", "-1"], "argument --workers"),
    (["spaces", "verify", "--space", "nb201", "--limit", "-1"], "argument --limit"),
    (["export", "RUN", "--rank", "0", "--out", "x.py"], "argument --rank"),
    (["score", "--proxy", "params", "--space", "nb201", "--arch", "x", "--seed", "-1"], "argument --seed"),
    (["nas", "--proxy", "params", "--budget", "0"], "argument --budget"),
    (["evolve"], "required: config"),
]


@pytest.mark.parametrize("argv,message", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flags_are_one_line_exit_2(tmp_path, capsys, argv, message):
    argv = [str(write(tmp_path / "c.yaml", raw_config(tmp_path / "cache"))) if a == "CFG" else a for a in argv]
    rc = cli.main(argv)
    assert rc == 2 and message in one_error(capsys, rc)
    assert not (tmp_path / "cache").exists()


def test_resume_of_a_missing_directory_is_an_error_and_creates_nothing(tmp_path, capsys, finished):
    missing = tmp_path / "no-such-run"
    line = one_error(capsys, cli.main(["evolve", str(finished["config"]), "--resume", str(missing)]))
    assert "does not exist" in line and not missing.exists()


# ----------------------------------------------------------------------------- the run-directory lock
_HOLDER = """
import sys, time
from eznas.runlock import lock_run_dir
lock_run_dir(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_live_run_into_the_same_directory_fails(tmp_path, capsys, finished):
    run_dir = tmp_path / "busy"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = one_error(capsys, cli.main(["evolve", str(finished["config"]), "--run-dir", str(run_dir)]))
        assert "in use by another eznas run" in line and f"pid {holder.pid}" in line
        assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME]  # nothing written
        with pytest.raises(Exception, match="in use"):
            RunLock(run_dir).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(run_dir) as lock:  # the holder is gone (the kernel dropped its lock): free again
        with pytest.raises(Exception, match="in use by this process"):
            RunLock(run_dir).acquire()
        assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (run_dir / LOCK_NAME).exists() and lock.fd is None


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, capsys, finished):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    run_dir = tmp_path / "stale"
    run_dir.mkdir()
    (run_dir / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    assert cli.main(["evolve", str(finished["config"]), "--run-dir", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert f"eznas: warning: taking over the stale lock of pid {pid}" in err
    assert not (run_dir / LOCK_NAME).exists()  # released at the end
    assert (run_dir / "hall_of_fame.json").read_bytes() == (finished["run_dir"] / "hall_of_fame.json").read_bytes()


# ----------------------------------------------------------------------------- damaged checkpoints
def _damage_rng(c: dict) -> None:
    c["py_rng"][1] = c["py_rng"][1][:100]


def _damage_np(c: dict) -> None:
    c["np_rng"]["state"] = "garbage"


def _damage_population(c: dict) -> None:
    c["population"] = [1, 2]


DAMAGE = [("rng", _damage_rng, "py_rng"), ("np_rng", _damage_np, "np_rng"), ("population", _damage_population,
                                                                           "population")]


@pytest.mark.parametrize("name,damage,message", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_checkpoint_is_one_line(tmp_path, capsys, finished, name, damage, message):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(finished["run_dir"], run_dir)
    c = json.loads((run_dir / "checkpoint.json").read_text())
    damage(c)
    (run_dir / "checkpoint.json").write_text(json.dumps(c))
    line = one_error(capsys, cli.main(["evolve", str(finished["config"]), "--resume", str(run_dir)]))
    assert "checkpoint" in line and "damaged" in line and message in line


def test_truncated_checkpoint_is_one_line(tmp_path, capsys, finished):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(finished["run_dir"], run_dir)
    text = (run_dir / "checkpoint.json").read_text()
    (run_dir / "checkpoint.json").write_text(text[: len(text) // 2])
    line = one_error(capsys, cli.main(["evolve", str(finished["config"]), "--resume", str(run_dir)]))
    assert "damaged" in line and "JSONDecodeError" in line


# ----------------------------------------------------------------------------- a full disk
def test_disk_full_while_writing_a_checkpoint_keeps_the_earlier_one(tmp_path, capsys, monkeypatch, finished):
    """ENOSPC on the third checkpoint: one line, the second checkpoint intact, and a resume finishes
    the run exactly as an uninterrupted one."""
    real_fsync, seen = os.fsync, []

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1].startswith("checkpoint.json"):
            seen.append(fd)
            if len(seen) == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    run_dir = tmp_path / "full"
    monkeypatch.setattr(os, "fsync", fsync)
    line = one_error(capsys, cli.main(["evolve", str(finished["config"]), "--run-dir", str(run_dir)]))
    assert "checkpoint.json: disk full" in line and "kept" in line
    assert json.loads((run_dir / "checkpoint.json").read_text())["gen"] == 1
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")] and not (run_dir / LOCK_NAME).exists()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert cli.main(["evolve", str(finished["config"]), "--resume", str(run_dir)]) == 0
    for name in ("checkpoint.json", "hall_of_fame.json"):
        assert (run_dir / name).read_bytes() == (finished["run_dir"] / name).read_bytes(), name


def test_disk_full_anywhere_else_is_one_line(tmp_path, capsys, monkeypatch, finished):
    from eznas import config as config_mod

    def full(cfg, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(config_mod, "dump", full)
    run_dir = tmp_path / "full"
    line = one_error(capsys, cli.main(["evolve", str(finished["config"]), "--run-dir", str(run_dir)]))
    assert line == f"eznas: error: disk full writing {run_dir / 'config.yaml'}; files finished before it are kept"


# ----------------------------------------------------------------------------- a killed run
def test_killed_run_leaves_no_workers_and_its_lock_is_taken_over(tmp_path, capsys, finished):
    """SIGKILL of a search with worker processes: the workers exit within seconds, printing nothing,
    and a resume takes over the dead run's lock with a warning."""
    import signal
    import time

    raw = yaml.safe_load(finished["config"].read_text())
    raw["search"].update(backend="process", workers=2, generations=40, patience=40)
    cfg = write(tmp_path / "proc.yaml", raw)
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "eznas.cli", "evolve", str(cfg), "--run-dir", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                if json.loads((run_dir / "checkpoint.json").read_text())["gen"] >= 2:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)  # EOF once the workers, which hold the pipe, are gone
        assert "Traceback" not in err and "Error" not in err, err
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # only if the test failed: the session this test started
        except ProcessLookupError:
            pass
        proc.wait()
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == proc.pid
    assert cli.main(["evolve", str(cfg), "--resume", str(run_dir)]) == 0
    assert f"taking over the stale lock of pid {proc.pid}" in capsys.readouterr().err
    assert json.loads((run_dir / "checkpoint.json").read_text())["done"]
