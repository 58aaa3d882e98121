"""The data directory, downloads with checksums, and the image batches D / N / P.

The data directory is resolved from (1) an explicit argument / config ``data_dir``,
(2) the environment variable ``EZNAS_DATA_DIR``, (3) ``~/.cache/eznas/data``.
Its layout mirrors ``../shared/data``::

    naslib/zc_nasbench201.json ...   NAS-Bench-Suite-Zero records
    cifar10_subset.npz               CIFAR-10 images (train_images, train_labels, test_*)
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from eznas import datasets
from eznas.errors import EznasError

ENV_VAR = "EZNAS_DATA_DIR"
DOWNLOAD_HINT = "run `eznas data download` (or set EZNAS_DATA_DIR / config data_dir)"

_GDRIVE = "https://drive.google.com/uc?export=download&confirm=t&id="
_NASLIB_RAW = "https://raw.githubusercontent.com/automl/NASLib/zerocost/naslib/data/"


@dataclass(frozen=True)
class DataFile:
    name: str  # path relative to the data directory
    url: str  # public source (NASLib's own download script for the zc_* files)
    sha256: str | None  # expected hash of the file as we use it; None: not checked
    kind: str = "file"  # "file" | "cifar10" (converted from the official tarball)


FILES: dict[str, DataFile] = {
    f.name: f
    for f in [
        DataFile("naslib/zc_nasbench201.json", _GDRIVE + "1R7n7GpFHAjUZpPISzbhxH0QjubnvZM5H",
                 "4b81bef056c458cee5eb864cac82537acb3ec111b555364c2886dc35d13b83ce"),
        DataFile("naslib/zc_nasbench101.json", _GDRIVE + "1Rkse44EWgYdBS34iyhjSs9Y2l0fxPCpU",
                 "bad7c91452f9908105f3175d1eb35c3fff93ecaeaea6da042c1e81c2be0e21b9"),
        DataFile("naslib/zc_nasbench301.json", _GDRIVE + "1RddgmwqjWJ1czGT8gEPB8qqhUHazp92G",
                 "8c37a660315edc86497c8696fdcdfdbe47183e6b24a16d6f402f375df8b2bd62"),
        DataFile("naslib/zc_transbench101_micro.json", _GDRIVE + "1SBOVAyhLCBTAJiU_fo7hLRknNrGNqFk7",
                 "b56b8332e485889a0a246224ed305b61b6b2bf42228fbdf448616928ab39d2e5"),
        DataFile("naslib/zc_transbench101_macro.json", _GDRIVE + "1teH8JcQsamZngUD_DMQyNkCoUYYSTM0M",
                 "79d703321c18c0f5bc87cd316d17c15d9b30e8c0ac1dae0583f549e47c56271c"),
        DataFile("naslib/archs_nasbench201.json", _NASLIB_RAW + "archs_nasbench201.json",
                 "3c6fe431825f77745abb05492513f36451794ec8b740a3ca3b85ec700aac5aad"),
        # The official CIFAR-10 python tarball (checked by the md5 the CIFAR page publishes),
        # converted to the npz layout; its hash differs from the 5,506-image subset, so it is
        # checked at download time instead.
        DataFile("cifar10_subset.npz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", None, "cifar10"),
    ]
}
CIFAR10_TAR_MD5 = "c58f30108f718f92721af3b95e74349a"

# Normalisation constants of the datasets the benchmarks were trained on.
MEAN_STD: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "ImageNet16-120": ((0.4811, 0.4575, 0.4078), (0.2470, 0.2435, 0.2616)),
}


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Resolve the data directory: explicit > $EZNAS_DATA_DIR > ~/.cache/eznas/data."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "eznas" / "data"


def require(name: str, root: str | os.PathLike | None = None) -> Path:
    """Path of a data file, or a one-line error naming it and the download command."""
    base = data_dir(root)
    if not base.is_dir():
        raise EznasError(f"data directory {base} does not exist; {DOWNLOAD_HINT}")
    p = base / name
    if not p.is_file():
        raise EznasError(f"data file {name} is missing from {base}; {DOWNLOAD_HINT}")
    return p


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(root: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """(name, status) for every known file: ok, missing, mismatch, or present (unchecked)."""
    base = data_dir(root)
    out = []
    for f in FILES.values():
        p = base / f.name
        if not p.is_file():
            out.append((f.name, "missing"))
        elif f.sha256 is None:
            out.append((f.name, "present"))
        else:
            out.append((f.name, "ok" if sha256(p) == f.sha256 else "mismatch"))
    return out


def _fetch(url: str, dest: Path) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "eznas"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r, open(dest, "wb") as out:
            shutil.copyfileobj(r, out)
    except OSError as e:
        raise EznasError(f"download of {url} failed: {e}") from None


def _cifar10_from_tar(tar_path: Path, dest: Path) -> None:
    import pickle  # trusted: the official archive, verified by md5 before it is opened

    h = hashlib.md5()
    with open(tar_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != CIFAR10_TAR_MD5:
        raise EznasError(f"CIFAR-10 archive checksum mismatch ({h.hexdigest()} != {CIFAR10_TAR_MD5})")
    arrays: dict[str, list[np.ndarray]] = {"train_images": [], "train_labels": [], "test_images": [], "test_labels": []}
    names = None
    with tarfile.open(tar_path) as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            base = os.path.basename(m.name)
            f = tar.extractfile(m)
            if f is None:
                continue
            if base.startswith("data_batch") or base == "test_batch":
                d = pickle.load(f, encoding="bytes")
                split = "test" if base == "test_batch" else "train"
                imgs = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                arrays[f"{split}_images"].append(imgs)
                arrays[f"{split}_labels"].append(np.asarray(d[b"labels"], dtype=np.int64))
            elif base == "batches.meta":
                names = [n.decode() for n in pickle.load(f, encoding="bytes")[b"label_names"]]
    out = {k: np.concatenate(v) for k, v in arrays.items()}
    out["class_names"] = np.array(names or [str(i) for i in range(10)])
    with open(dest, "wb") as fh:  # a path without .npz would get the suffix appended
        np.savez(fh, **out)


def download(root: str | os.PathLike | None = None, force: bool = False, log=print) -> None:
    """Fetch every missing (or mismatching) file from its public source and check it."""
    base = data_dir(root)
    (base / "naslib").mkdir(parents=True, exist_ok=True)
    status = dict(verify(base))
    for f in FILES.values():
        if status[f.name] in ("ok", "present") and not force:
            log(f"{f.name}: {status[f.name]}")
            continue
        log(f"{f.name}: downloading {f.url}")
        with tempfile.TemporaryDirectory(dir=base) as tmp:
            raw = Path(tmp) / "raw"
            _fetch(f.url, raw)
            final = Path(tmp) / "final"
            if f.kind == "cifar10":
                _cifar10_from_tar(raw, final)
            else:
                got = sha256(raw)
                if f.sha256 and got != f.sha256:
                    raise EznasError(f"{f.name}: checksum mismatch after download ({got[:12]}... != {f.sha256[:12]}...)")
                final = raw
            os.replace(final, base / f.name)
        log(f"{f.name}: ok")


# ---------------------------------------------------------------- image batches
_IMAGES: dict[str, dict[str, np.ndarray]] = {}


def load_images(root: str | os.PathLike | None = None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 images (n, 32, 32, 3) uint8 and labels (n,) from the data directory."""
    p = require("cifar10_subset.npz", root)
    key = str(p)
    if key not in _IMAGES:
        with np.load(p, allow_pickle=False) as z:
            _IMAGES[key] = {k: z[k] for k in ("train_images", "train_labels", "test_images", "test_labels")}
    d = _IMAGES[key]
    return d[f"{split}_images"], d[f"{split}_labels"]


def image_size(dataset: str) -> int:
    """Input resolution the benchmark trained at (ImageNet16-120 is 16x16)."""
    return 16 if dataset == "ImageNet16-120" else 32


@dataclass
class Batches:
    """The three inputs of the statistics: real data D, Gaussian noise N, perturbed data P."""

    D: torch.Tensor
    N: torch.Tensor
    P: torch.Tensor
    targets: torch.Tensor

    def items(self) -> list[tuple[str, torch.Tensor]]:
        return [("D", self.D), ("N", self.N), ("P", self.P)]


def normalise(images: np.ndarray, dataset: str, size: int | None = None,
              mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> torch.Tensor:
    """uint8 (n, h, w, 3) -> float (n, 3, size, size), normalised with the dataset's mean/std
    (or ``mean_std`` when given)."""
    mean, std = mean_std or MEAN_STD.get(dataset, MEAN_STD["cifar10"])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    if size is not None and size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.contiguous()


def make_batches(
    dataset: str,
    batch_size: int,
    seed: int,
    num_classes: int = 10,
    noise_scale: float = 0.1,
    root: str | os.PathLike | None = None,
    size: int | None = None,
) -> Batches:
    """D: ``batch_size`` real CIFAR-10 images chosen by ``seed``; N: standard Gaussian noise of the
    same shape; P: D + noise_scale * Gaussian. Targets are the images' CIFAR-10 labels (valid for
    any class count >= 10; folded modulo ``num_classes`` for fewer), used for D, N and P alike.
    A dataset of :mod:`eznas.datasets` other than cifar10 (``digits``, ``npz:PATH``) draws D from
    its own train images and labels instead, normalised with its mean/std, at its own size."""
    if batch_size < 1:
        raise EznasError(f"batch size must be >= 1, got {batch_size}")
    own = None
    if dataset != "cifar10" and datasets.is_dataset(dataset):
        own = datasets.load_dataset(dataset, root)
        images, labels = own.train_images, own.train_labels
        size = size or own.size
    else:
        images, labels = load_images(root, "train")
    if batch_size > len(images):
        raise EznasError(f"batch size {batch_size} exceeds the {len(images)} images available")
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(images), generator=g)[:batch_size].numpy()
    D = normalise(images[idx], dataset, size or image_size(dataset), (own.mean, own.std) if own else None)
    N = torch.randn(D.shape, generator=g)
    P = D + noise_scale * torch.randn(D.shape, generator=g)
    targets = torch.from_numpy(labels[idx] % num_classes).long()
    return Batches(D, N, P, targets)
