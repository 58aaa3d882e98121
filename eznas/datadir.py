"""The data directory: where it is, which files it holds, downloads with checksums, verification.

The data directory is resolved from (1) an explicit argument / config ``data_dir``,
(2) the environment variable ``EZNAS_DATA_DIR``, (3) ``~/.cache/eznas/data``.
Its layout mirrors ``../shared/data``::

    naslib/zc_nasbench201.json ...       NAS-Bench-Suite-Zero records (one file per search space)
    natsbench/nb201_test_accuracy.csv    NATS-Bench test accuracy of NB201 cells
    cifar10_subset.npz                   CIFAR-10 images (train_images, train_labels, test_images, test_labels)
    cifar100.npz                         CIFAR-100 images, same layout, fine labels (optional)
    imagenet16_120.npz                   your own ImageNet16-120 images, same layout, 16x16 (optional)

The benchmark files come from :data:`eznas.spaces.SPACES` (each space declares its own); the
image files are listed here.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eznas.errors import EznasError
from eznas.spaces import SPACES

ENV_VAR = "EZNAS_DATA_DIR"
DOWNLOAD_HINT = "run `eznas data download` (or set EZNAS_DATA_DIR / config data_dir)"

_NASLIB_RAW = "https://raw.githubusercontent.com/automl/NASLib/zerocost/naslib/data/"
CIFAR10_TAR_MD5 = "c58f30108f718f92721af3b95e74349a"  # published on the CIFAR page
CIFAR100_TAR_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"  # published on the CIFAR page


@dataclass(frozen=True)
class DataFile:
    name: str  # path relative to the data directory
    url: str | None  # public source; None: not downloadable (a file of your own)
    sha256: str | None  # hash of the shared copy; None: not checked
    kind: str = "file"  # file | cifar10 | cifar100 (converted from the official tarball) | natsbench | npz
    optional: bool = False  # a missing optional file is reported as "absent", not as an error

    @property
    def converted(self) -> bool:
        """Converted on download: the hash identifies the shared copy only, so another copy is
        checked by reading it."""
        return self.kind != "file"


def _benchmark_files() -> list[DataFile]:
    out: list[DataFile] = []
    for info in SPACES.values():
        for b in info.benchmarks.values():
            if not b.packaged:
                out.append(DataFile(b.path, b.url, b.sha256, b.convert or "file"))
    return out


FILES: dict[str, DataFile] = {
    f.name: f
    for f in [
        *_benchmark_files(),
        DataFile("naslib/archs_nasbench201.json", _NASLIB_RAW + "archs_nasbench201.json",
                 "3c6fe431825f77745abb05492513f36451794ec8b740a3ca3b85ec700aac5aad"),
        # The official CIFAR python tarballs (checked by the md5 the CIFAR page publishes),
        # converted to the npz layout. The shared cifar10_subset.npz holds 5,506 of the images, so
        # its hash identifies that copy only; a converted download is checked by reading it.
        DataFile("cifar10_subset.npz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                 "a816bd8e5a473d38a7213f1c69e68a5f40c4e6a0079e04189cbc77e64c1ad2e3", "cifar10"),
        DataFile("cifar100.npz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", None, "cifar100",
                 optional=True),
        DataFile("imagenet16_120.npz", None, None, "npz", optional=True),
    ]
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


def _readable(f: DataFile, path: Path) -> bool:
    """A converted file that is not the shared copy: does it read as its layout?"""
    from eznas import images, natsbench  # local: both import this module

    try:
        if f.kind == "natsbench":
            natsbench.read_table(path)
        else:
            images.read_image_npz(path)
    except EznasError:
        return False
    return True


def file_status(f: DataFile, base: Path) -> str:
    """ok (hash matches), present (converted copy that reads correctly), missing, absent (optional
    and missing), mismatch (wrong hash) or damaged (does not read: truncated, corrupt)."""
    p = base / f.name
    if not p.is_file():
        return "absent" if f.optional else "missing"
    if f.sha256 is not None and sha256(p) == f.sha256:
        return "ok"
    if f.converted:
        return "present" if _readable(f, p) else "damaged"
    return "present" if f.sha256 is None else "mismatch"


def verify(root: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """(name, status) for every known file; see :func:`file_status`."""
    base = data_dir(root)
    return [(f.name, file_status(f, base)) for f in FILES.values()]


def _fetch(url: str, dest: Path) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "eznas"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r, open(dest, "wb") as out:
            shutil.copyfileobj(r, out)
    except OSError as e:
        raise EznasError(f"download of {url} failed: {e}") from None


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# member name in the archive -> split; the labels' key; the class names' member and key
_CIFAR = {
    "cifar10": (lambda b: "train" if b.startswith("data_batch") else "test" if b == "test_batch" else None,
                b"labels", "batches.meta", b"label_names", 10),
    "cifar100": (lambda b: b if b in ("train", "test") else None, b"fine_labels", "meta", b"fine_label_names", 100),
}


def _cifar_from_tar(tar_path: Path, dest: Path, which: str) -> None:
    """Convert an official CIFAR-10 / CIFAR-100 python archive to the npz layout (uint8 images
    (n, 32, 32, 3), int64 labels; CIFAR-100: its fine labels)."""
    import pickle

    expected = {"cifar10": CIFAR10_TAR_MD5, "cifar100": CIFAR100_TAR_MD5}[which]
    title = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[which]
    got = _md5(tar_path)
    if got != expected:
        raise EznasError(f"{title} archive checksum mismatch ({got} != {expected})")
    # Only now, with the md5 the CIFAR page publishes confirmed, is the archive trusted: its batches
    # are pickles, and nothing else is ever unpickled (never a user's file).
    split_of, label_key, meta_name, names_key, n_classes = _CIFAR[which]
    arrays: dict[str, list[np.ndarray]] = {"train_images": [], "train_labels": [], "test_images": [], "test_labels": []}
    names = None
    with tarfile.open(tar_path) as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            base = os.path.basename(m.name)
            f = tar.extractfile(m)
            if f is None:
                continue
            split = split_of(base)
            if split is not None:
                d = pickle.load(f, encoding="bytes")
                imgs = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                arrays[f"{split}_images"].append(imgs)
                arrays[f"{split}_labels"].append(np.asarray(d[label_key], dtype=np.int64))
            elif base == meta_name:
                names = [n.decode() for n in pickle.load(f, encoding="bytes")[names_key]]
    if not arrays["train_images"] or not arrays["test_images"]:
        raise EznasError(f"{title} archive {tar_path} has no train or test batch")
    out = {k: np.concatenate(v) for k, v in arrays.items()}
    out["class_names"] = np.array(names or [str(i) for i in range(n_classes)])
    with open(dest, "wb") as fh:  # a path without .npz would get the suffix appended
        np.savez(fh, **out)


def _convert(f: DataFile, raw: Path, final: Path) -> Path:
    """The checked file to install for ``f`` from the download ``raw``."""
    if f.kind in _CIFAR:
        _cifar_from_tar(raw, final, f.kind)
        return final
    if f.kind == "natsbench":
        from eznas import natsbench

        natsbench.convert_upstream(raw, final)
        natsbench.read_table(final)  # the converted table must read as one
        return final
    got = sha256(raw)
    if f.sha256 and got != f.sha256:
        raise EznasError(f"{f.name}: checksum mismatch after download ({got[:12]}... != {f.sha256[:12]}...)")
    return raw


def download(root: str | os.PathLike | None = None, force: bool = False,
             log: Callable[[str], None] = print) -> None:
    """Fetch every missing, damaged or mismatching file from its public source and check it."""
    base = data_dir(root)
    base.mkdir(parents=True, exist_ok=True)
    for f in FILES.values():
        status = file_status(f, base)
        if status in ("ok", "present") and not force:
            log(f"{f.name}: {status}")
            continue
        if f.url is None:
            log(f"{f.name}: {status}; not downloadable (a file of your own, see the README)")
            continue
        log(f"{f.name}: downloading {f.url}")
        (base / f.name).parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=base) as tmp:
            raw = Path(tmp) / "raw"
            _fetch(f.url, raw)
            final = _convert(f, raw, Path(tmp) / "final")
            os.replace(final, base / f.name)
        log(f"{f.name}: ok")
