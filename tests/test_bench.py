"""`eznas bench build`: datasets, a tiny benchmark the loaders accept, resume, statistics end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eznas import batches, benchbuild, cli, config, images, records, stats
from eznas.errors import EznasError
from eznas.spaces import build as build_net
from eznas.spaces import get_space


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(tmp_path: Path, archs: int = 6, seeds: tuple[int, ...] = (0, 1), dataset: str = "digits",
                **extra) -> config.Config:
    out = tmp_path / "bench" / "tiny.json"
    return config.from_dict({
        "seed": 3,
        "tasks": [{"space": "nb201", "dataset": dataset, "benchmark": str(out)}],
        "split": {"evolve": 3, "validate": 1, "test": 2},
        "network": {"width": 4, "depth": 1},
        "stats": {"batch_size": 8, "R": 4, "s": 4, "cache_dir": str(tmp_path / "cache")},
        "bench": {"space": "nb201", "dataset": dataset, "archs": archs, "seeds": list(seeds), "epochs": 1,
                  "batch_size": 256, "lr": 0.05, "width": 4, "depth": 1, "out": str(out), **extra},
    }, source="tiny.yaml")


# ----------------------------------------------------------------------------- image datasets
def test_digits_dataset_and_batches():
    ds = images.load_dataset("digits")
    assert ds.train_images.shape == (1437, 8, 8, 3) and ds.test_images.shape == (360, 8, 8, 3)
    assert ds.train_images.dtype == np.uint8 and ds.train_images.max() == 255
    assert ds.num_classes == 10 and ds.size == 8
    assert set(np.unique(ds.test_labels)) == set(range(10))
    again = images._load_digits()  # the split is fixed
    assert np.array_equal(again.test_labels, ds.test_labels) and np.array_equal(again.train_images, ds.train_images)
    b = batches.make_batches("digits", 16, seed=0, num_classes=10)
    assert b.D.shape == b.N.shape == b.P.shape == (16, 3, 8, 8)
    assert b.targets.shape == (16,) and int(b.targets.max()) < 10
    assert abs(float(b.D.mean())) < 0.4 and 0.6 < float(b.D.std()) < 1.4
    assert torch.equal(b.D, batches.make_batches("digits", 16, seed=0).D)
    sp = get_space("nb201")
    assert sp.num_classes("digits") == 10 and sp.input_size("digits") == 8
    assert sp.input_size("cifar10") == 32 and sp.input_size("ImageNet16-120") == 16
    with pytest.raises(EznasError, match="has no dataset 'mnist'"):
        sp.num_classes("mnist")
    net = build_net("nb201", "(2, 3, 0, 4, 2, 0)", "digits", seed=0, width=4, depth=1)
    assert net(b.D).shape == (16, 10)


def _write_npz(path: Path, **override) -> Path:
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (20, 6, 6, 3), dtype=np.uint8),
              "train_labels": np.arange(20) % 3, "test_images": rng.integers(0, 256, (9, 6, 6), dtype=np.uint8),
              "test_labels": np.arange(9) % 3}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_npz_dataset(tmp_path):
    p = _write_npz(tmp_path / "mine.npz")
    name = f"npz:{p}"
    ds = images.load_dataset(name)
    assert ds.num_classes == 3 and ds.size == 6 and ds.test_images.shape == (9, 6, 6, 3)
    assert get_space("nb201").num_classes(name) == 3 and get_space("nb201").input_size(name) == 6
    b = batches.make_batches(name, 5, seed=1, num_classes=3)
    assert b.D.shape == (5, 3, 6, 6)
    wide = _write_npz(tmp_path / "wide.npz", num_classes=np.array(5))
    assert images.load_dataset(f"npz:{wide}").num_classes == 5


@pytest.mark.parametrize("override, message", [
    ({"test_labels": None}, "missing array.*test_labels"),
    ({"train_images": np.zeros((20, 6, 6, 3), dtype=np.float32)}, "train_images must be uint8"),
    ({"train_images": np.zeros((20, 6, 5, 3), dtype=np.uint8)}, "must be square"),
    ({"train_images": np.zeros((20, 6, 6, 4), dtype=np.uint8)}, r"shape \(n, h, w, 3\)"),
    ({"train_labels": np.arange(19)}, "has 19 labels for 20 images"),
    ({"train_labels": np.linspace(0, 1, 20)}, "1-D integer array"),
    ({"num_classes": np.array(2)}, "num_classes is 2"),
])
def test_bad_npz_is_a_clear_error(tmp_path, override, message):
    p = _write_npz(tmp_path / "bad.npz", **override)
    with pytest.raises(EznasError, match=message):
        images.load_dataset(f"npz:{p}")


def test_unreadable_npz_and_unknown_dataset(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(EznasError, match="not a readable .npz"):
        images.load_dataset(f"npz:{junk}")
    obj = tmp_path / "obj.npz"
    np.savez(obj, train_images=np.array([{"a": 1}], dtype=object), train_labels=np.arange(1),
             test_images=np.zeros((1, 2, 2, 3), np.uint8), test_labels=np.arange(1))
    with pytest.raises(EznasError, match="not a readable .npz"):
        images.load_dataset(f"npz:{obj}")
    with pytest.raises(EznasError, match="dataset file not found"):
        images.load_dataset(f"npz:{tmp_path / 'none.npz'}")
    with pytest.raises(EznasError, match="unknown dataset 'mnist'"):
        images.load_dataset("mnist")


# ----------------------------------------------------------------------------- config
def test_bench_config_validation(tmp_path):
    cfg = config.from_dict({"bench": {"archs": 5}})
    assert cfg.bench.archs == 5 and cfg.bench.seeds == [0, 1] and cfg.bench.dataset == "digits"
    for bad, msg in [({"seeds": []}, "at least one"), ({"seeds": [1, 1]}, "distinct"), ({"archs": 0}, "bench.archs"),
                     ({"lr": 0}, "bench.lr"), ({"epochs": "3"}, "expected an integer"), ({"color": 1}, "unknown")]:
        with pytest.raises(EznasError, match=msg):
            config.from_dict({"bench": bad})


def test_sample_archs_distinct_and_prefix_stable():
    a = benchbuild.sample_archs("nb201", 30, 5)
    assert len(set(a)) == 30 and benchbuild.sample_archs("nb201", 10, 5) == a[:10]
    assert benchbuild.sample_archs("nb201", 10, 6) != a[:10]


# ----------------------------------------------------------------------------- building
def test_tiny_build_loads_resumes_and_feeds_statistics(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path)
    out = Path(cfg.bench.out)
    part = benchbuild.partial_path(out)

    # an interrupted build: stops after 5 of the 12 trainings, progress saved
    rep = benchbuild.build_benchmark(cfg, workers=1, progress=False, max_trainings=5, log=lambda m: None)
    assert (rep.trained, rep.finished) == (5, False) and not out.exists() and part.is_file()
    first = set(rep.trained_keys)
    assert len(json.loads(part.read_text())["results"]) == 5

    # the rerun trains only the 7 missing ones
    calls: list[tuple[str, int]] = []
    real = benchbuild.train_one
    monkeypatch.setattr(benchbuild, "train_one", lambda a, s, ts, root=None: calls.append((a, s)) or real(a, s, ts, root))
    rep = benchbuild.build_benchmark(cfg, workers=1, progress=False, log=lambda m: None)
    assert rep.finished and (rep.reused, rep.trained) == (5, 7) and not part.exists()
    assert len(calls) == 7 and not first & set(calls)

    # the file is in the loaders' format
    tasks = records.load_tasks("nb201", benchmark=out)
    assert list(tasks) == ["digits"]
    t = tasks["digits"]
    assert t.space == "nb201" and t.dataset == "digits" and t.name == "nb201/digits" and len(t) == 6
    assert t.archs == benchbuild.sample_archs("nb201", 6, 3)
    assert np.all((t.accuracies >= 0) & (t.accuracies <= 100)) and "params" in t.published
    assert t.meta["num_classes"] == 10 and t.meta["input_size"] == 8 and t.meta["command"] == "eznas bench build tiny.yaml"
    doc = json.loads(out.read_text())
    rec = doc["digits"][t.archs[0]]
    assert rec["seeds"] == [0, 1] and len(rec["seed_accuracies"]) == 2
    assert rec["val_accuracy"] == pytest.approx(np.mean(rec["seed_accuracies"]), abs=1e-3)
    assert rec["train"]["epochs"] == 1 and rec["params"]["score"] > 0

    # a finished benchmark is not retrained; a larger one reuses its results
    calls.clear()
    assert benchbuild.build_benchmark(cfg, workers=1, progress=False, log=lambda m: None).trained == 0 and not calls
    assert json.loads(out.read_text()) == doc
    bigger = benchbuild.build_benchmark(tiny_config(tmp_path, archs=7), workers=1, progress=False, log=lambda m: None)
    assert (bigger.reused, bigger.trained) == (12, 2) and len(records.load_task("nb201", "digits", benchmark=out)) == 7
    out.write_text(json.dumps(doc))  # back to the 6-arch file for the statistics below

    # statistics end to end on the generated task
    jobs, by_task = stats.config_jobs(cfg)
    assert list(by_task) == ["nb201/digits"] and len(jobs) == 6
    cache = stats.default_cache_dir(cfg)
    assert stats.build_cache(jobs, cache, progress=False).computed == 6
    test = by_task["nb201/digits"]["test"]
    ts = stats.load_task_stats(test, jobs[0][1], cache)
    assert ts.n_nets == 2 and ts.values.shape[1:] == (22, 4, 4, 4) and torch.isfinite(ts.values).all()


def test_training_is_deterministic_and_seeds_differ():
    ts = benchbuild.TrainSettings("nb201", "digits", 1, 256, 0.05, 5e-4, 4, 1)
    a = benchbuild.train_one("(2, 2, 0, 3, 0, 2)", 0, ts)
    assert a["accuracy"] == benchbuild.train_one("(2, 2, 0, 3, 0, 2)", 0, ts)["accuracy"]
    assert 0 <= a["accuracy"] <= 100 and a["params"] > 0


def test_parallel_workers_and_cli(tmp_path, capsys):
    cfg_path = tmp_path / "b.yaml"
    cfg_path.write_text(json.dumps({"seed": 1, "bench": {"archs": 3, "seeds": [0], "epochs": 1, "batch_size": 512,
                                                         "width": 4, "depth": 1, "out": str(tmp_path / "b.json")}}))
    assert cli.main(["bench", "build", str(cfg_path), "--workers", "2"]) == 0
    assert "regenerate with: eznas bench build" in capsys.readouterr().out
    t = records.load_task("nb201", "digits", benchmark=tmp_path / "b.json")
    assert len(t) == 3 and t.meta["config"]["bench"]["workers"] == 1


def test_changed_settings_and_bad_progress_file(tmp_path):
    cfg = tiny_config(tmp_path, archs=2, seeds=(0,))
    benchbuild.build_benchmark(cfg, workers=1, progress=False, max_trainings=1, log=lambda m: None)
    other = tiny_config(tmp_path, archs=2, seeds=(0,), epochs=2)
    with pytest.raises(EznasError, match="other training settings"):
        benchbuild.build_benchmark(other, workers=1, progress=False, log=lambda m: None)
    benchbuild.partial_path(Path(cfg.bench.out)).write_text("{broken")
    with pytest.raises(EznasError, match="unreadable.*delete it"):
        benchbuild.build_benchmark(cfg, workers=1, progress=False, log=lambda m: None)
    bad = tiny_config(tmp_path, dataset="npz:/nonexistent/x.npz")
    with pytest.raises(EznasError, match="dataset file not found"):
        benchbuild.build_benchmark(bad, workers=1, progress=False, log=lambda m: None)


def test_ctrl_c_keeps_finished_trainings(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, archs=3, seeds=(0,))
    real = benchbuild.train_one
    calls: list[str] = []

    def interrupted(arch, seed, ts, root=None):
        calls.append(arch)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(arch, seed, ts, root)

    monkeypatch.setattr(benchbuild, "train_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        benchbuild.build_benchmark(cfg, workers=1, progress=False, log=lambda m: None)
    saved = json.loads(benchbuild.partial_path(Path(cfg.bench.out)).read_text())["results"]
    assert [r["arch"] for r in saved] == calls[:2]
    monkeypatch.setattr(benchbuild, "train_one", real)
    rep = benchbuild.build_benchmark(cfg, workers=1, progress=False, log=lambda m: None)
    assert rep.finished and (rep.reused, rep.trained) == (2, 1)


def test_a_second_build_of_the_same_file_is_refused(tmp_path):
    import os
    import subprocess

    cfg = tiny_config(tmp_path, archs=1, seeds=(0,))
    lock = benchbuild.lock_path(Path(cfg.bench.out))
    lock.parent.mkdir(parents=True)
    lock.write_text(str(os.getpid()))  # a live process holds it
    with pytest.raises(EznasError, match=f"pid {os.getpid()}.*is writing"):
        benchbuild.build_benchmark(cfg, workers=1, progress=False, log=lambda m: None)
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock.write_text(str(gone.pid))  # stale: its process has exited
    assert benchbuild.build_benchmark(cfg, workers=1, progress=False, log=lambda m: None).finished
    assert not lock.exists()
