"""One table per search space, named benchmarks (naslib / natsbench / digits), config paths, splits."""
from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from eznas import config, datadir, natsbench, records, stats
from eznas.errors import EznasError
from eznas.spaces import SPACES, canonical_space, get_space, space_names

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"


# ----------------------------------------------------------------------------- the space table
def test_every_benchmark_file_comes_from_the_space_table():
    declared = {b.path for s in SPACES.values() for b in s.benchmarks.values() if not b.packaged}
    assert declared <= set(datadir.FILES)
    assert datadir.FILES["natsbench/nb201_test_accuracy.csv"].sha256.startswith("61b98f1a")
    assert canonical_space("darts") == "nb301" and canonical_space("transbench101_micro") == "tnb_micro"
    assert get_space("darts").info.benchmarks["naslib"].path == "naslib/zc_nasbench301.json"
    assert space_names() == ["nb201", "nb101", "nb301", "tnb_micro"]  # tnb_macro: records only
    with pytest.raises(EznasError, match="'tnb_macro' has benchmark records but no networks"):
        get_space("tnb_macro")
    assert len(records.load_tasks("tnb101_macro")) == 7  # an alias of the table, records only


def test_embedded_benchmark_is_package_data():
    f = SPACES["nb201"].benchmarks["digits"]
    assert f.packaged and (records.PACKAGE_DIR / f.path).is_file()
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["eznas"]
    assert "benchmarks_data/*.json" in globs
    t = records.load_task("nb201", "digits", benchmark="digits")
    assert len(t) == 200 and t.benchmark == "digits" and t.space == "nb201"


def test_unknown_space_or_foreign_space_with_a_benchmark_file_is_rejected(tmp_path):
    digits = records.PACKAGE_DIR / SPACES["nb201"].benchmarks["digits"].path
    with pytest.raises(EznasError, match="unknown search space 'nb999'"):
        records.load_tasks("nb999", benchmark=digits)  # was accepted and labelled nb201
    with pytest.raises(EznasError, match="holds search space 'nb201' architectures, but the task says space 'nb101'"):
        records.load_tasks("nb101", benchmark=digits)


# ----------------------------------------------------------------------------- named benchmarks
def test_natsbench_task_from_the_real_table(data_dir):
    t = records.load_task("nb201", "cifar100", benchmark="natsbench")
    assert len(t) == 10161 and t.benchmark == "natsbench" and t.published == {}
    assert t.accuracies[t.archs.index("(2, 2, 0, 4, 2, 0)")] == pytest.approx(70.293333)
    i16 = records.load_task("nb201", "ImageNet16-120", benchmark="natsbench")
    assert i16.accuracies[i16.archs.index("(2, 2, 0, 4, 2, 0)")] == pytest.approx(44.033333)
    parts = t.split(0, 80, 40, 200)
    assert [len(parts[k]) for k in ("evolve", "validate", "test")] == [80, 40, 200]
    assert parts["test"].benchmark == "natsbench"
    with pytest.raises(EznasError, match="benchmark 'natsbench' has no search space 'nb101'; it covers: nb201"):
        records.load_tasks("nb101", benchmark="natsbench")


def test_natsbench_task_through_a_config(data_dir, tmp_path):
    cfg = config.from_dict({"tasks": [{"space": "nb201", "dataset": "cifar10", "benchmark": "natsbench"}],
                            "split": {"evolve": 30, "validate": 10, "test": 50},
                            "stats": {"cache_dir": str(tmp_path)}})
    jobs, by_task = stats.config_jobs(cfg)
    assert len(jobs) == 90 and [len(v) for v in by_task["nb201/cifar10"].values()] == [30, 10, 50]


def test_unknown_benchmark_name_is_one_line_naming_the_key():
    with pytest.raises(EznasError) as e:
        config.from_dict({"tasks": [{"space": "nb201"}, {"space": "nb201", "benchmark": "natbench"}]})
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("config key 'tasks[1].benchmark': unknown benchmark 'natbench'")
    assert "naslib, natsbench, digits" in msg
    for ok in ("naslib", "natsbench", "digits", "my/bench.json", "bench.json", "~/b.json"):
        config.from_dict({"tasks": [{"space": "nb201", "benchmark": ok}]})


def test_natsbench_conversion_from_the_upstream_export(tmp_path, data_dir, monkeypatch):
    """`eznas data download` converts the upstream nats_bench.csv into the shared table's layout."""
    upstream = tmp_path / "nats_bench.csv"
    upstream.write_text(
        "CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,ImageNetTestAccuracy200Epochs,"
        "ArchitectureString,UniqueString\n"
        "93.66000000000001,70.29333326822916,44.03333332316081,|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+"
        "|skip_connect~0|nor_conv_3x3~1|skip_connect~2|,x\n"
        "85.74000000000001,54.866666630045565,27.25555556233724,|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
        "|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|,y\n")
    f = datadir.DataFile(natsbench.FILE, upstream.as_uri(), datadir.FILES[natsbench.FILE].sha256, "natsbench")
    dest = tmp_path / "data"
    monkeypatch.setattr(datadir, "FILES", {f.name: f})
    datadir.download(dest, log=lambda m: None)
    assert dict(datadir.verify(dest)) == {f.name: "present"}  # converted: checked by reading, not the shared copy
    got = (dest / natsbench.FILE).read_text().splitlines()
    shared = (data_dir / natsbench.FILE).read_text().splitlines()
    assert got[0] == shared[0] and got[1:] == shared[1:3]  # byte-identical rows of the shared table
    (dest / natsbench.FILE).write_text("arch_key,cifar10\n")
    assert datadir.file_status(f, dest) == "damaged"
    with pytest.raises(EznasError, match="malformed NB201 cell string"):
        natsbench.arch_key("|nor_conv_3x3~0|+|bogus~0|")


# ----------------------------------------------------------------------------- config paths and splits
def test_quickstart_config_loads_from_another_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config.load(QUICKSTART)
    assert cfg.tasks[0].benchmark == "digits" and cfg.run_dir == "runs/quickstart"  # run_dir: the cwd's
    jobs, by_task = stats.config_jobs(cfg)
    assert [len(v) for v in by_task["nb201/digits"].values()] == [80, 40, 80] and len(jobs) == 200
    bench_cfg = config.load(REPO / "configs" / "digits-bench.yaml")
    assert Path(bench_cfg.bench.out) == records.PACKAGE_DIR / "benchmarks_data" / "digits-nb201.json"


def test_relative_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    home = tmp_path / "project" / "configs"
    home.mkdir(parents=True)
    src = records.PACKAGE_DIR / SPACES["nb201"].benchmarks["digits"].path
    (home / "mine.json").write_text(src.read_text())
    (home / "c.yaml").write_text("run_dir: runs/x\ndata_dir: ../data\n"
                                 "tasks: [{space: nb201, dataset: digits, benchmark: ./mine.json},\n"
                                 "        {space: nb201, dataset: 'npz:imgs.npz', benchmark: sub/other.json}]\n"
                                 "bench: {out: out/b.json, dataset: 'npz:imgs.npz'}\n")
    monkeypatch.chdir(tmp_path)
    cfg = config.load("project/configs/c.yaml")
    assert cfg.tasks[0].benchmark == str(home / "mine.json")
    assert cfg.tasks[1].benchmark == str(home / "sub" / "other.json")
    assert cfg.tasks[1].dataset == f"npz:{home / 'imgs.npz'}" and cfg.bench.dataset == cfg.tasks[1].dataset
    assert cfg.data_dir == str(tmp_path / "project" / "data") and cfg.bench.out == str(home / "out" / "b.json")
    assert cfg.run_dir == "runs/x"
    assert len(records.load_task("nb201", "digits", cfg.data_dir, cfg.tasks[0].benchmark)) == 200


def test_split_that_does_not_fit_and_validate_zero():
    with pytest.raises(EznasError, match="'split.validate': must be >= 1"):
        config.from_dict({"split": {"validate": 0}})
    cfg = config.from_dict({"tasks": [{"space": "nb201", "dataset": "digits", "benchmark": "digits"}],
                            "split": {"evolve": 100, "validate": 50, "test": 60}})
    with pytest.raises(EznasError) as e:
        stats.config_jobs(cfg)
    msg = str(e.value)
    assert "\n" not in msg and "'split.*'" in msg and "evolve=100 + validate=50 + test=60 = 210" in msg
    assert "nb201/digits" in msg and "only 200" in msg


# ----------------------------------------------------------------------------- statistics key
def test_image_source_enters_the_stats_key_only_when_not_cifar10(tmp_path, data_dir):
    cfg = config.from_dict({"tasks": [{"space": "nb201", "dataset": "cifar100"}]})
    fallback = stats.StatsSettings.from_config(cfg, "nb201", "cifar100")
    assert fallback.images == "cifar10"
    # the key of a CIFAR-10-image entry is what it was before image sources existed (caches stay valid)
    old = {k: v for k, v in fallback.__dict__.items() if k != "images"}
    import eznas

    payload = json.dumps({"arch": "(0, 1, 2, 3, 4, 0)", "settings": old, "format": stats.FORMAT_VERSION,
                          "version": eznas.__version__}, sort_keys=True)
    assert fallback.key("(0, 1, 2, 3, 4, 0)") == hashlib.sha256(payload.encode()).hexdigest()[:32]
    own_dir = tmp_path / "data"
    own_dir.mkdir()
    rng = np.random.default_rng(0)
    np.savez(own_dir / "cifar100.npz", train_images=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
             train_labels=np.arange(6), test_images=rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8),
             test_labels=np.arange(2))
    own = stats.StatsSettings.from_config(config.from_dict({"data_dir": str(own_dir)}), "nb201", "cifar100")
    assert own.images == "cifar100" and own.key("(0, 1, 2, 3, 4, 0)") != fallback.key("(0, 1, 2, 3, 4, 0)")
