"""The `device` key and --device: names checked in one line, CUDA refused where absent, and the
device path of statistics, evaluate, score and nas exercised on the CPU."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from eznas import cli
from eznas import config as config_mod
from eznas import devices, stats
from eznas.errors import EznasError

ARCHS = ["(0, 2, 3, 2, 3, 1)", "(4, 0, 4, 1, 2, 0)"]


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_valid_names(name):
    assert devices.check_name(name) == name


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "cpu:0", "", 3, None])
def test_invalid_names_are_one_line(name):
    with pytest.raises(EznasError, match="is not a device; valid: auto, cpu, cuda, cuda:N") as e:
        devices.check_name(name, "--device")
    assert "\n" not in str(e.value)


def test_resolve_without_and_with_cuda():
    assert devices.resolve("auto", cuda_available=False) == torch.device("cpu")
    assert devices.resolve("cpu", cuda_available=True) == torch.device("cpu")
    assert devices.resolve("auto", cuda_available=True) == torch.device("cuda")
    assert devices.resolve("cuda:1", cuda_available=True, cuda_count=2) == torch.device("cuda:1")
    with pytest.raises(EznasError, match="'cuda': CUDA is not available here") as e:
        devices.resolve("cuda", "--device", cuda_available=False)
    assert "\n" not in str(e.value)
    with pytest.raises(EznasError, match=r"has 2 CUDA device\(s\)"):
        devices.resolve("cuda:2", cuda_available=True, cuda_count=2)
    assert devices.resolve("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_config_device_key():
    assert config_mod.from_dict({}).device == "auto"
    assert config_mod.from_dict({"device": "cuda:1"}).device == "cuda:1"  # spelling only: checked at use
    with pytest.raises(EznasError, match="config key 'device': 'gpu' is not a device"):
        config_mod.from_dict({"device": "gpu"})
    with pytest.raises(EznasError, match="stats.backend"):
        config_mod.from_dict({"stats": {"backend": "mpi"}})
    with pytest.raises(EznasError, match="evaluate.workers"):
        config_mod.from_dict({"evaluate": {"workers": 0}})


def _config(tmp_path: Path, data_dir: Path, **extra) -> Path:
    raw = {"seed": 1, "data_dir": str(data_dir), "run_dir": str(tmp_path / "run"),
           "tasks": [{"space": "nb201", "dataset": "cifar10"}], "split": {"evolve": 2, "validate": 2, "test": 2},
           "network": {"width": 4, "depth": 1}, "stats": {"batch_size": 8, "R": 4, "s": 4,
                                                          "cache_dir": str(tmp_path / "cache")},
           "evaluate": {"batch_size": 8, "proxies": ["params", "synflow"]}, **extra}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", [["stats", "{cfg}"], ["evaluate", "{cfg}"], ["evolve", "{cfg}"],
                                     ["score", "--proxy", "params", "--space", "nb201", "--arch", ARCHS[0]],
                                     ["nas", "--proxy", "params", "--budget", "2"]])
def test_cuda_without_cuda_is_one_line(tmp_path, data_dir, capsys, command):
    cfg = _config(tmp_path, data_dir)
    argv = [a.format(cfg=cfg) for a in command] + ["--device", "cuda"]
    if command[0] == "nas":
        argv += ["--out", str(tmp_path / "nas"), "--data-dir", str(data_dir)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA is not available" in err[0], err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "nas").exists()  # refused before any work


def test_bad_device_option_is_one_line(tmp_path, data_dir, capsys):
    assert cli.main(["stats", str(_config(tmp_path, data_dir)), "--device", "tpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["eznas: error: --device 'tpu' is not a device; valid: auto, cpu, cuda, cuda:N"]


def test_statistics_device_path_on_cpu(tmp_path, data_dir, monkeypatch):
    """compute_net moves the network and the batches to the device it is given (here the CPU) and
    gives the same bits as without; build_cache passes the resolved device to every job."""
    st = stats.StatsSettings("nb201", "cifar10", batch_size=8, seed=1, R=4, s=4, width=4, depth=1)
    b = stats.net_batches(st, str(data_dir))
    moved: list[torch.device] = []
    real_to = torch.nn.Module.to

    def spy(self, *args, **kwargs):
        moved.append(torch.device(args[0]))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", spy)
    v_dev, m_dev = stats.compute_net(ARCHS[0], st, b, device=torch.device("cpu"))
    assert moved == [torch.device("cpu")]
    monkeypatch.undo()
    v, m = stats.compute_net(ARCHS[0], st, b)
    assert torch.equal(v, v_dev) and torch.equal(m, m_dev)

    seen: list[str] = []
    real = stats.compute_net
    monkeypatch.setattr(stats, "compute_net", lambda *a, **k: seen.append(str(k["device"])) or real(*a, **k))
    rep = stats.build_cache([(a, st) for a in ARCHS], tmp_path / "cache", str(data_dir), progress=False,
                            backend="serial", device="auto")
    assert rep.computed == 2 and seen == [str(devices.resolve("auto"))] * 2
    if not torch.cuda.is_available():
        with pytest.raises(EznasError, match="CUDA is not available"):
            stats.build_cache([(ARCHS[0], st)], tmp_path / "other", str(data_dir), progress=False, device="cuda")
        assert not (tmp_path / "other").exists()


def test_cli_device_cpu_runs_stats_evaluate_score(tmp_path, data_dir, capsys):
    cfg = _config(tmp_path, data_dir)
    assert cli.main(["stats", str(cfg), "--device", "cpu"]) == 0
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 6
    assert cli.main(["evaluate", str(cfg), "--device", "cpu", "--out", str(tmp_path / "ev")]) == 0
    assert (tmp_path / "ev" / "results.json").is_file()
    capsys.readouterr()
    assert cli.main(["score", "--proxy", "params", "--space", "nb201", "--arch", ARCHS[0], "--device", "cpu",
                     "--data-dir", str(data_dir)]) == 0
    on_cpu = float(capsys.readouterr().out.strip())
    assert cli.main(["score", "--proxy", "params", "--space", "nb201", "--arch", ARCHS[0],
                     "--data-dir", str(data_dir)]) == 0
    assert float(capsys.readouterr().out.strip()) == on_cpu > 0


def test_gpu_check_code_runs_on_cpu(tmp_path, data_dir, monkeypatch):
    """experiments/gpu_check.py: without CUDA a clear exit; its comparison and timing code, CPU
    against CPU on tiny nets, finds exact agreement."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", Path(__file__).resolve().parents[1]
                                                  / "experiments" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA device here"):
        gpu_check.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "g.json")])
    doc = gpu_check.main(["--device", "cpu", "--smoke", "--nets", "3", "--throughput-nets", "2", "--warmup", "1",
                          "--cpu-nets", "1", "--data-dir", str(data_dir), "--out", str(tmp_path / "g.json")])
    a = doc["agreement"]
    assert a["agree"] and a["rel_err_float32_max"] == 0.0 and a["summary_spearman"] == pytest.approx(1.0)
    assert a["tensors_compared"] > 0 and doc["throughput"]["nets_per_s"] > 0


def test_random_reinitialisation_draws_from_the_cpu_generator_on_any_device():
    """swap / reg_swap / AZ-NAS re-initialise weights; on CUDA they must draw the CPU's numbers (a
    CUDA generator gives another sample and other scores). A 'meta' tensor stands in for a non-CPU
    device: drawing into it consumes exactly the CPU draws a CPU tensor would."""
    import torch
    from torch import nn

    from eznas.proxies.common import drawn_on_cpu

    torch.manual_seed(7)
    cpu = torch.empty(3, 4)
    drawn_on_cpu(cpu, nn.init.normal_)
    after_cpu = torch.randn(2)
    torch.manual_seed(7)
    other = torch.empty(3, 4, device="meta")
    drawn_on_cpu(other, nn.init.normal_)
    assert torch.equal(torch.randn(2), after_cpu)
    torch.manual_seed(7)
    assert torch.equal(torch.randn(3, 4), cpu)
