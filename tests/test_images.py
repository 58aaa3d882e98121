"""The right images for every task: CIFAR-100 from its official archive, your own ImageNet16-120,
the CIFAR-10 fallback with one warning, and damaged image files reported as such."""
from __future__ import annotations

import hashlib
import io
import pickle
import shutil
import tarfile

import numpy as np
import pytest
import torch

from eznas import batches, datadir, images
from eznas.cli import main as cli_main
from eznas.errors import EznasError


def _fake_cifar100_tar(path):
    """A small archive in the official CIFAR-100 python format (pickled dicts, fine and coarse labels)."""
    rng = np.random.default_rng(1)
    with tarfile.open(path, "w:gz") as tar:
        def add(name, obj):
            raw = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        add("train", {b"data": rng.integers(0, 255, (6, 3072), dtype=np.uint8), b"fine_labels": [0, 17, 42, 99, 5, 5],
                      b"coarse_labels": [0, 1, 2, 3, 4, 4], b"filenames": [b"f"] * 6})
        add("test", {b"data": rng.integers(0, 255, (2, 3072), dtype=np.uint8), b"fine_labels": [98, 1],
                     b"coarse_labels": [3, 0], b"filenames": [b"g"] * 2})
        add("meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"s{i}".encode() for i in range(20)]})
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_cifar100_download_converts_the_official_archive(tmp_path, monkeypatch):
    src = tmp_path / "cifar-100-python.tar.gz"
    md5 = _fake_cifar100_tar(src)
    f = datadir.DataFile("cifar100.npz", src.as_uri(), None, "cifar100", optional=True)
    monkeypatch.setattr(datadir, "FILES", {f.name: f})
    monkeypatch.setattr(datadir, "CIFAR100_TAR_MD5", md5)
    dest = tmp_path / "data"
    datadir.download(dest, log=lambda m: None)
    assert dict(datadir.verify(dest)) == {"cifar100.npz": "present"}
    with np.load(dest / "cifar100.npz", allow_pickle=False) as z:
        assert z["train_images"].shape == (6, 32, 32, 3) and z["train_images"].dtype == np.uint8
        assert z["train_labels"].tolist() == [0, 17, 42, 99, 5, 5]  # the fine labels
        assert z["test_labels"].tolist() == [98, 1] and z["class_names"][99] == "c99"
    # the first image: channel planes of the official row-major layout, moved last
    with tarfile.open(src) as tar:
        first = pickle.load(tar.extractfile("cifar-100-python/train"), encoding="bytes")[b"data"][0]
    x, _ = images.load_images(dest, "train", "cifar100")
    assert np.array_equal(x[0], first.reshape(3, 32, 32).transpose(1, 2, 0))
    # its tasks now use these images: D is drawn from them, normalised with CIFAR-100's constants
    assert images.images_for("cifar100", dest) == ("cifar100", dest / "cifar100.npz")
    b = batches.make_batches("cifar100", 4, seed=0, num_classes=100, root=dest, size=32)
    ds = images.load_dataset("cifar100", dest)
    idx = torch.randperm(6, generator=torch.Generator().manual_seed(0))[:4].numpy()
    assert torch.allclose(b.D, batches.normalise(ds.train_images[idx], "cifar100", 32, images.MEAN_STD["cifar100"]))
    assert b.targets.tolist() == ds.train_labels[idx].tolist()
    # a wrong archive is refused before anything in it is unpickled
    monkeypatch.setattr(datadir, "CIFAR100_TAR_MD5", "0" * 32)
    with pytest.raises(EznasError, match="CIFAR-100 archive checksum mismatch"):
        datadir.download(tmp_path / "other", log=lambda m: None)
    assert not (tmp_path / "other" / "cifar100.npz").exists()


def test_without_its_images_a_task_uses_cifar10_with_one_warning(tmp_path, capsys, data_dir):
    d = tmp_path / "data"
    d.mkdir()
    shutil.copy(data_dir / "cifar10_subset.npz", d / "cifar10_subset.npz")
    assert images.images_for("cifar100", d) == ("cifar10", d / "cifar10_subset.npz")
    assert images.images_for("cifar100", d) == ("cifar10", d / "cifar10_subset.npz")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no cifar100.npz" in err[0] and "CIFAR-10 images" in err[0]
    assert images.images_for("class_scene", d)[0] == "cifar10" and capsys.readouterr().err == ""
    assert images.images_for("digits", d) == ("digits", None)
    b = batches.make_batches("cifar100", 8, seed=0, num_classes=100, root=d)
    x, _ = images.load_images(d, "train")
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:8].numpy()
    assert torch.allclose(b.D, batches.normalise(x[idx], "cifar100", 32))  # as before: CIFAR-10 pixels


def test_own_imagenet16_images(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    rng = np.random.default_rng(2)
    np.savez(d / "imagenet16_120.npz", train_images=rng.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8),
             train_labels=np.arange(10) * 11, test_images=rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8),
             test_labels=np.array([0, 60, 119]))
    assert images.images_for("ImageNet16-120", d) == ("ImageNet16-120", d / "imagenet16_120.npz")
    b = batches.make_batches("ImageNet16-120", 5, seed=3, num_classes=120, root=d, size=16)
    assert b.D.shape == (5, 3, 16, 16) and int(b.targets.max()) <= 99
    assert dict(datadir.verify(d))["imagenet16_120.npz"] == "present"
    np.savez(d / "imagenet16_120.npz", train_images=rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
             train_labels=np.arange(4), test_images=rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8),
             test_labels=np.arange(1))
    with pytest.raises(EznasError, match="ImageNet16-120 images must be 16x16"):
        images.load_dataset("ImageNet16-120", str(d) + "/")  # another root string: not the cached one


def test_truncated_cifar10_npz_is_damaged_not_present(tmp_path, capsys, data_dir):
    d = tmp_path / "data"
    d.mkdir()
    whole = (data_dir / "cifar10_subset.npz").read_bytes()
    (d / "cifar10_subset.npz").write_bytes(whole[: len(whole) // 2])
    assert dict(datadir.verify(d))["cifar10_subset.npz"] == "damaged"
    with pytest.raises(EznasError) as e:
        images.load_images(d, "train")
    msg = str(e.value)
    assert "\n" not in msg and "cifar10_subset.npz is damaged" in msg and "eznas data download" in msg
    with pytest.raises(EznasError, match="cifar10_subset.npz is damaged"):
        batches.make_batches("cifar10", 8, 0, root=d)
    capsys.readouterr()
    assert cli_main(["data", "verify", "--data-dir", str(d)]) == 1
    out = capsys.readouterr().out
    assert "damaged   cifar10_subset.npz" in out and "absent    cifar100.npz" in out
