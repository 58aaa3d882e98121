"""The spine: data directory, record formats, splits, D/N/P batches, spaces registry, CLI errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from eznas import batches, config, datadir, images, records
from eznas.cli import main as cli_main
from eznas.errors import EznasError
from eznas.spaces import build, get_space
from eznas.verify import verify_space


def test_new_record_format_nb201(data_dir):
    tasks = records.load_tasks("nb201")
    assert set(tasks) == {"cifar10", "cifar100", "ImageNet16-120"}
    t = tasks["cifar10"]
    assert len(t) == 472
    i = t.archs.index("(0, 2, 3, 2, 3, 1)")
    assert t.accuracies[i] == pytest.approx(86.06)
    assert t.published["params"][i] == pytest.approx(0.615386)
    assert {"synflow", "nwot", "snip", "flops"} <= set(t.published)


def test_old_record_format_nb101_and_nb301(data_dir):
    nb101 = records.load_tasks("nb101")
    assert list(nb101) == ["cifar10"] and len(nb101["cifar10"]) == 332
    t = nb101["cifar10"]
    raw = json.loads((data_dir / "naslib/zc_nasbench101.json").read_text())["nasbench101"]["cifar10"]
    k = t.archs[0]
    assert t.accuracies[0] == pytest.approx(raw[k]["val_accuracy"])
    assert t.published["synflow"][0] == pytest.approx(raw[k]["synflow"])  # bare-score format
    nb301 = records.load_tasks("nb301")
    assert len(nb301["cifar10"]) == 442
    assert len(records.load_tasks("tnb_micro")) == 7


def test_both_formats_from_files(tmp_path):
    new = {"taskA": {"(1, 2)": {"val_accuracy": 50.0, "params": {"score": 1.5, "time": 0.1}}}}
    old = {"bench": {"taskB": {"(3, 4)": {"val_accuracy": 60.0, "params": 2.5}}}}
    (tmp_path / "new.json").write_text(json.dumps(new))
    (tmp_path / "old.json").write_text(json.dumps(old))
    a = records.load_task("nb201", "taskA", benchmark=tmp_path / "new.json")
    b = records.load_task("nb201", "taskB", benchmark=tmp_path / "old.json")
    assert a.published["params"][0] == 1.5 and b.published["params"][0] == 2.5
    assert a.accuracies[0] == 50.0 and b.accuracies[0] == 60.0
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EznasError, match="not valid JSON"):
        records.load_tasks("nb201", benchmark=tmp_path / "bad.json")


def test_split_reproducible_and_disjoint(data_dir):
    t = records.load_task("nb201", "cifar100")
    s1 = t.split(7, 80, 40, 200)
    s2 = t.split(7, 80, 40, 200)
    s3 = t.split(8, 80, 40, 200)
    assert [s1[k].archs for k in s1] == [s2[k].archs for k in s2]
    assert s1["evolve"].archs != s3["evolve"].archs
    sets = [set(s1[k].archs) for k in ("evolve", "validate", "test")]
    assert [len(s) for s in sets] == [80, 40, 200]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    i = t.archs.index(s1["test"].archs[0])
    assert s1["test"].accuracies[0] == t.accuracies[i]
    with pytest.raises(EznasError, match=r"'split\.\*': evolve=400 \+ validate=100 = 500 architectures.*has only 473"):
        t.split(0, 400, 100)
    with pytest.raises(EznasError, match=r"evolve=80 \+ validate=40 \+ test=400 = 520 .*nb201/cifar100.*only 473"):
        t.split(0, 80, 40, 400)  # the test split no longer shrinks silently
    assert t.sample(10, 3).archs == t.sample(10, 3).archs


def test_dnp_batches(data_dir):
    b = batches.make_batches("cifar10", 64, seed=0)
    assert b.D.shape == b.N.shape == b.P.shape == (64, 3, 32, 32)
    assert b.targets.shape == (64,) and b.targets.max() < 10
    # D is normalised real data: per-channel mean near 0, std near 1
    assert b.D.mean().abs() < 0.3 and 0.7 < b.D.std() < 1.3
    assert b.N.mean().abs() < 0.05 and abs(b.N.std() - 1) < 0.05
    assert torch.allclose((b.P - b.D).std(), torch.tensor(0.1), atol=0.01)
    b2 = batches.make_batches("cifar10", 64, seed=0)
    assert torch.equal(b.D, b2.D) and torch.equal(b.N, b2.N) and torch.equal(b.P, b2.P)
    assert not torch.equal(b.D, batches.make_batches("cifar10", 64, seed=1).D)
    im = batches.make_batches("ImageNet16-120", 8, seed=0, num_classes=120, noise_scale=0.5)
    assert im.D.shape == (8, 3, 16, 16)
    assert torch.allclose((im.P - im.D).std(), torch.tensor(0.5), atol=0.06)
    few = batches.make_batches("cifar10", 32, seed=0, num_classes=5)
    assert few.targets.max() < 5


def test_missing_data_directory_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("EZNAS_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(EznasError, match="does not exist.*eznas data download"):
        records.load_tasks("nb201")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EznasError, match="naslib/zc_nasbench201.json is missing.*eznas data download"):
        records.load_tasks("nb201", root=tmp_path / "empty")
    with pytest.raises(EznasError, match="cifar10_subset.npz is missing"):
        batches.make_batches("cifar10", 8, 0, root=tmp_path / "empty")


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("EZNAS_DATA_DIR", str(tmp_path))
    assert datadir.data_dir() == tmp_path
    assert datadir.data_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("EZNAS_DATA_DIR")
    assert datadir.data_dir().name == "data"


def test_verify_reports_checksums(data_dir):
    status = dict(datadir.verify(data_dir))
    assert status["naslib/zc_nasbench201.json"] == "ok"
    assert status["natsbench/nb201_test_accuracy.csv"] == "ok" and status["cifar10_subset.npz"] == "ok"
    assert status["cifar100.npz"] in ("absent", "ok", "present")  # optional: never an error


@pytest.mark.parametrize("key", ["(0, 2, 3)", "(0, 2, 3, 2, 3, 9)", "__import__('os')", "", "(a, b)"])
def test_malformed_arch_key(key):
    with pytest.raises(EznasError, match="malformed nb201 arch key"):
        build("nb201", key)


def test_unknown_space_and_dataset():
    with pytest.raises(EznasError, match="unknown search space 'nb999'"):
        get_space("nb999")
    with pytest.raises(EznasError, match="no dataset 'mnist'"):
        build("nb201", "(0, 2, 3, 2, 3, 1)", "mnist")


def test_nb201_params_match_published(data_dir):
    res = verify_space("nb201", "ImageNet16-120", limit=25, progress=False)
    assert res.checked == 25 and res.matched == 25
    small = build("nb201", "(2, 2, 2, 2, 2, 2)", width=4, depth=1)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_build_is_seeded():
    a = build("nb201", "(2, 2, 2, 2, 2, 2)", seed=3, width=4, depth=1)
    b = build("nb201", "(2, 2, 2, 2, 2, 2)", seed=3, width=4, depth=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_config_errors(tmp_path):
    with pytest.raises(EznasError, match="unknown config key 'popsize' in 'search'"):
        config.from_dict({"search": {"popsize": 3}})
    with pytest.raises(EznasError, match="'search.population': expected an integer"):
        config.from_dict({"search": {"population": "many"}})
    with pytest.raises(EznasError, match="lambda >= mu"):
        config.from_dict({"search": {"population": 50, "offspring": 10}})
    with pytest.raises(EznasError, match="'search.max_depth': must be >= 1"):
        config.from_dict({"search": {"max_depth": 0}})
    with pytest.raises(EznasError, match="'search.fitness'.*kendall, spearman"):
        config.from_dict({"search": {"fitness": "pearson"}})
    p = tmp_path / "c.yaml"
    p.write_text("search: [unclosed")
    with pytest.raises(EznasError, match="not valid YAML"):
        config.load(p)
    with pytest.raises(EznasError, match="config file not found"):
        config.load(tmp_path / "missing.yaml")
    cfg = config.from_dict({"tasks": [{"space": "nb201", "dataset": "cifar100"}], "seed": 3})
    assert cfg.tasks[0].dataset == "cifar100" and cfg.search.population == 50


def test_cli_error_is_one_line(tmp_path, capsys):
    rc = cli_main(["spaces", "verify", "--space", "nope"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == "eznas: error: unknown search space 'nope'; valid: nb201, nb101, nb301, tnb_micro"


def test_cli_spaces_verify_subprocess(data_dir):
    out = subprocess.run([sys.executable, "-m", "eznas.cli", "spaces", "verify", "--space", "nb201",
                          "--dataset", "cifar10", "--limit", "20"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "checked 20, matched 20" in out.stdout


def _fake_cifar_tar(tmp_path):
    import hashlib
    import io
    import pickle
    import tarfile

    tar_path = tmp_path / "cifar.tar.gz"
    rng = np.random.default_rng(0)
    with tarfile.open(tar_path, "w:gz") as tar:
        def add(name, obj):
            raw = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        for i in range(1, 3):
            add(f"data_batch_{i}", {b"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), b"labels": [i] * 4})
        add("test_batch", {b"data": rng.integers(0, 255, (3, 3072), dtype=np.uint8), b"labels": [7, 8, 9]})
        add("batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    return tar_path, hashlib.md5(tar_path.read_bytes()).hexdigest()


def test_download_checks_hashes_and_converts_cifar(tmp_path, monkeypatch):
    """`eznas data download` from (local file://) sources: checksums enforced, CIFAR-10 converted."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "zc.json").write_text('{"cifar10": {}}')
    tar_path, md5 = _fake_cifar_tar(src)
    good = datadir.DataFile("naslib/zc_nasbench201.json", (src / "zc.json").as_uri(), datadir.sha256(src / "zc.json"))
    cifar = datadir.DataFile("cifar10_subset.npz", tar_path.as_uri(), None, "cifar10")
    monkeypatch.setattr(datadir, "FILES", {good.name: good, cifar.name: cifar})
    monkeypatch.setattr(datadir, "CIFAR10_TAR_MD5", md5)
    dest = tmp_path / "data"
    datadir.download(dest, log=lambda m: None)
    assert dict(datadir.verify(dest)) == {good.name: "ok", cifar.name: "present"}
    imgs, labels = images.load_images(dest, "test")
    assert imgs.shape == (3, 32, 32, 3) and labels.tolist() == [7, 8, 9]
    train, tl = images.load_images(dest, "train")
    assert train.shape == (8, 32, 32, 3) and tl.tolist() == [1] * 4 + [2] * 4
    bad = datadir.DataFile("naslib/zc_nasbench201.json", (src / "zc.json").as_uri(), "0" * 64)
    monkeypatch.setattr(datadir, "FILES", {bad.name: bad})
    with pytest.raises(EznasError, match="checksum mismatch"):
        datadir.download(tmp_path / "other", log=lambda m: None)
    assert not (tmp_path / "other" / bad.name).exists()  # nothing half-written is left
    monkeypatch.setattr(datadir, "CIFAR10_TAR_MD5", "0" * 32)
    monkeypatch.setattr(datadir, "FILES", {cifar.name: cifar})
    with pytest.raises(EznasError, match="CIFAR-10 archive checksum mismatch"):
        datadir.download(tmp_path / "third", log=lambda m: None)
