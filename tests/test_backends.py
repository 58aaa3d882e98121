"""Statistics, baseline scoring and the search on the serial, process and ray backends: the same
cache contents and hall of fame; a dead worker's job retried once, then one error line; an
unreachable Ray address refused quickly. Ray tests start a local head on 127.0.0.1 and skip
when the `ray` extra is not installed."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from eznas import config as config_mod
from eznas import evaluate, evolve, fanout
from eznas.errors import EznasError
from eznas.stats import default_cache_dir, read_entry
from fanout_jobs import die_always, die_once, fail, square, where


# ----------------------------------------------------------------------------- generic fan-out
def _collect(fn, jobs, fan, **kw):
    got: dict[int, int] = {}
    fanout.run_jobs(fn, jobs, fan, lambda i, r: got.__setitem__(i, r), **kw)
    return got


def test_serial_and_process_give_every_result():
    jobs = list(range(5))
    want = {i: i * i for i in jobs}
    assert _collect(square, jobs, fanout.Fanout("serial", threads=0)) == want
    assert _collect(square, jobs, fanout.Fanout("process", 2, threads=0)) == want


def test_process_workers_are_preloaded_and_see_the_parents_env_and_cwd(tmp_path, monkeypatch):
    """Workers fork from the fork server (started early, before the environment and the working
    directory change): torch is already imported, yet they see the parent's current env and cwd."""
    import multiprocessing as mp

    fanout.start_worker_server()
    monkeypatch.setenv("EZNAS_FANOUT_PROBE", "set after the server started")
    monkeypatch.chdir(tmp_path)
    got = _collect(where, ["EZNAS_FANOUT_PROBE"] * 3, fanout.Fanout("process", 2, threads=0))
    preloaded = "forkserver" in mp.get_all_start_methods()
    assert got == {i: ("set after the server started", str(tmp_path), preloaded) for i in range(3)}


def test_dead_worker_job_is_retried_once(tmp_path):
    logs: list[str] = []
    got = _collect(die_once, [(i, str(tmp_path / "ran")) for i in range(4)], fanout.Fanout("process", 2, threads=0),
                   log=logs.append, label=lambda j: f"job {j[0]}")
    assert got == {i: i * i for i in range(4)}
    assert len(logs) == 1 and "died on job job 2" in logs[0] and "exit code 3" in logs[0] and "retrying" in logs[0]


def test_worker_dying_twice_is_one_line_and_keeps_finished(tmp_path):
    got: dict[int, int] = {}
    t0 = time.monotonic()
    with pytest.raises(EznasError, match=r"job 2: a worker process died twice on it \(exit code 9") as e:
        fanout.run_jobs(die_always, [0, 1, 2, 3], fanout.Fanout("process", 2, threads=0), got.__setitem__,
                        log=lambda m: None)
    assert "\n" not in str(e.value) and time.monotonic() - t0 < 60
    assert {0, 1} <= set(got) and 2 not in got


@pytest.mark.parametrize("backend", ["serial", "process"])
def test_failing_job_is_one_line(backend):
    with pytest.raises(EznasError) as e:
        _collect(fail, [0, 1, 2], fanout.Fanout(backend, 2, threads=0, what="thing"))
    assert str(e.value) == "thing 1: ValueError: bad input"


def test_unreachable_ray_address_is_quick_and_one_line():
    with socket.socket() as s:  # a free port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(EznasError, match=f"Ray cluster at 127.0.0.1:{port} is unreachable") as e:
        fanout.check_reachable(f"127.0.0.1:{port}")
    assert time.monotonic() - t0 < 5 and "\n" not in str(e.value)
    with pytest.raises(EznasError, match="is not host:port"):
        fanout.check_reachable("nowhere")
    if _has_ray() and not __import__("ray").is_initialized():
        with pytest.raises(EznasError, match="unreachable"):
            fanout.connect_ray(f"ray://127.0.0.1:{port}")


def test_ray_address_from_config_or_env(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert fanout.ray_address(None) is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert fanout.ray_address(None) == "10.0.0.1:6379"
    assert fanout.ray_address("127.0.0.1:7000") == "127.0.0.1:7000"
    assert config_mod.from_dict({"ray_address": "127.0.0.1:7000"}).ray_address == "127.0.0.1:7000"


# ----------------------------------------------------------------------------- statistics, scores, search
def _has_ray() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def tiny(tmp_path: Path, data_dir: Path, name: str, backend: str, workers: int, ray_address: str | None = None):
    return config_mod.from_dict({
        "seed": 2, "data_dir": str(data_dir), "run_dir": str(tmp_path / name / "run"), "device": "cpu",
        "ray_address": ray_address,
        "tasks": [{"space": "nb201", "dataset": "cifar10"}],
        "split": {"evolve": 6, "validate": 3, "test": 3},
        "network": {"width": 4, "depth": 1},
        "stats": {"batch_size": 8, "R": 4, "s": 4, "cache_dir": str(tmp_path / name / "cache"),
                  "backend": backend, "workers": workers},
        "search": {"primitive_set": "compact", "population": 6, "offspring": 6, "generations": 2, "subsample": None,
                   "hall_of_fame": 3, "tournament": 3, "max_depth": 6, "init_min_depth": 1, "init_max_depth": 3,
                   "backend": backend, "workers": workers},
        "evaluate": {"batch_size": 8, "proxies": ["params", "snip", "synflow"], "backend": backend,
                     "workers": workers},
    })


def run_all(cfg) -> dict:
    """Statistics + search + baseline scores of one config: what must not depend on the backend."""
    evolve.run(cfg, Path(cfg.run_dir), progress=False)
    hall = json.loads((Path(cfg.run_dir) / "hall_of_fame.json").read_text())
    ev = evaluate.evaluate(cfg, out=Path(cfg.run_dir) / "ev", progress=False)
    cache = default_cache_dir(cfg)
    entries = {}
    for p in sorted(cache.rglob("*.npz")):
        values, valid = read_entry(p)
        entries[str(p.relative_to(cache))] = (values, valid)
    scores = json.loads((Path(cfg.run_dir) / "ev" / "score_cache.json").read_text())["scores"]
    return {"hall": hall["hall_of_fame"], "entries": entries, "computed": ev.counters.computed,
            "scores": {k: v["score"] for k, v in scores.items()}}


def assert_same(a: dict, b: dict) -> None:
    assert a["hall"] == b["hall"]
    assert list(a["entries"]) == list(b["entries"]) and len(a["entries"]) == 12
    for k in a["entries"]:
        for x, y in zip(a["entries"][k], b["entries"][k]):
            assert np.array_equal(x, y), k
    assert a["computed"] == b["computed"] == 9 and a["scores"] == b["scores"]


@pytest.fixture(scope="module")
def serial_result(tmp_path_factory, data_dir):
    return run_all(tiny(tmp_path_factory.mktemp("serial"), data_dir, "s", "serial", 1))


def test_process_backend_matches_serial(tmp_path, data_dir, serial_result):
    assert_same(serial_result, run_all(tiny(tmp_path, data_dir, "p", "process", 2)))


@pytest.fixture(scope="module")
def ray_head():
    """A local Ray head on 127.0.0.1 (`ray start --head --block`, a child process of ours: its Ray
    processes stop with it); token authentication off for this throw-away cluster."""
    if not _has_ray():
        pytest.skip("ray is not installed (pip install 'eznas[ray]')")
    import ray

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                           *filter(None, [os.environ.get("PYTHONPATH")])]))
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                             "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                fanout.check_reachable(address, timeout=1.0)
                break
            except EznasError:
                if head.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the local Ray head did not start (exit code {head.poll()})")
                time.sleep(0.5)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()


def test_ray_cluster_matches_serial(tmp_path, data_dir, serial_result, ray_head, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    import ray

    if ray.is_initialized():
        ray.shutdown()
    on_ray = run_all(tiny(tmp_path, data_dir, "r", "ray", 2, ray_address=ray_head))
    ray.shutdown()
    assert_same(serial_result, on_ray)


def test_ray_task_resources_follow_the_device():
    assert fanout.ray_resources("cpu", 8) == {"num_cpus": 1}
    assert fanout.ray_resources("auto", 0) == {"num_cpus": 1}
    assert fanout.ray_resources("auto", 2) == {"num_cpus": 1, "num_gpus": fanout.GPU_SHARE}
    assert fanout.ray_resources("cuda:1", 2) == {"num_cpus": 1, "num_gpus": fanout.GPU_SHARE}
    with pytest.raises(EznasError, match="the Ray cluster has no GPUs"):
        fanout.ray_resources("cuda", 0)


def test_stats_on_an_unreachable_cluster_is_one_line(tmp_path, data_dir, capsys, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    if _has_ray():
        __import__("ray").shutdown()  # connect afresh
    cfg = tiny(tmp_path, data_dir, "u", "serial", 1)
    path = tmp_path / "u.yaml"
    raw = config_mod.to_dict(cfg)
    raw.pop("source")
    path.write_text(__import__("yaml").safe_dump(raw))
    from eznas import cli

    t0 = time.monotonic()
    assert cli.main(["stats", str(path), "--backend", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and time.monotonic() - t0 < 30
    want = f"Ray cluster at 127.0.0.1:{port} is unreachable" if _has_ray() else "needs Ray"
    assert want in err[0] and not list((tmp_path / "u" / "cache").rglob("*.npz"))
