"""Named image datasets: the images a benchmark is trained on and the statistics' batches come from.

Every dataset is a train / test split of square uint8 images ``(n, h, w, 3)`` with integer
labels, plus its class count and per-channel mean / std (in [0, 1]):

- ``cifar10``, ``cifar100``, ``ImageNet16-120``: the images of the data directory
  (``cifar10_subset.npz``, ``cifar100.npz`` with the fine labels, and ``imagenet16_120.npz``, a
  file of your own with 16x16 images), normalised with the constants the benchmarks used;
- ``digits``: scikit-learn's bundled 8x8 hand-written digits (1,797 images, 10 classes),
  grey values 0..16 scaled to 0..255 and repeated to three channels, split 1,437 / 360 by a
  fixed seed (stratified, so every class is in both parts);
- ``npz:PATH``: your own data, an ``.npz`` file with ``train_images``, ``train_labels``,
  ``test_images``, ``test_labels`` (images uint8 ``(n, h, w, 3)`` or grey ``(n, h, w)``, square;
  labels integers ``0..C-1``; an optional scalar ``num_classes``). Read with
  ``allow_pickle=False``; a relative PATH in a config is resolved against the config's directory,
  elsewhere against the working directory.

:func:`images_for` tells which of them a task's statistics use. More loaders can be added with
:func:`register_dataset`.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eznas import datadir
from eznas.errors import EznasError

NPZ_PREFIX = "npz:"
DIGITS_SPLIT_SEED = 0
DIGITS_TEST = 360
_KEYS = ("train_images", "train_labels", "test_images", "test_labels")

# Images of the benchmarks' own datasets in the data directory, and the normalisation constants
# the benchmarks were trained with.
IMAGE_FILES: dict[str, str] = {"cifar10": "cifar10_subset.npz", "cifar100": "cifar100.npz",
                               "ImageNet16-120": "imagenet16_120.npz"}
BENCHMARK_IMAGES: tuple[str, ...] = tuple(IMAGE_FILES)
MEAN_STD: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "ImageNet16-120": ((0.4811, 0.4575, 0.4078), (0.2470, 0.2435, 0.2616)),
}
_SHAPE = {"cifar10": (32, 10), "cifar100": (32, 100), "ImageNet16-120": (16, 120)}  # image side, classes
_HOW = {"cifar100": "`eznas data download` fetches CIFAR-100",
        "ImageNet16-120": "put your own 16x16 ImageNet16-120 images there as imagenet16_120.npz, see the README"}


@dataclass(frozen=True)
class ImageDataset:
    """A train / test split of square uint8 images (n, h, w, 3) with integer labels."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def size(self) -> int:
        """Side of the square images."""
        return int(self.train_images.shape[1])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in ("train", "test"):
            raise EznasError(f"dataset split must be 'train' or 'test', got {name!r}")
        return (self.train_images, self.train_labels) if name == "train" else (self.test_images, self.test_labels)


Loader = Callable[[str | os.PathLike | None], ImageDataset]
_LOADERS: dict[str, Loader] = {}
_CACHE: dict[tuple[str, str], ImageDataset] = {}


def register_dataset(name: str, loader: Loader) -> None:
    """Add a named loader ``loader(data_root) -> ImageDataset``."""
    _LOADERS[name] = loader


def dataset_names() -> list[str]:
    return [*_LOADERS, f"{NPZ_PREFIX}PATH"]


def is_dataset(name: str) -> bool:
    """True for a registered name or an ``npz:PATH`` dataset (the file is not opened)."""
    return isinstance(name, str) and (name in _LOADERS or (name.startswith(NPZ_PREFIX) and len(name) > len(NPZ_PREFIX)))


def load_dataset(name: str, root: str | os.PathLike | None = None) -> ImageDataset:
    """The dataset ``name`` (cached per process); a clear EznasError for an unknown or bad one."""
    if not is_dataset(name):
        raise EznasError(f"unknown dataset '{name}'; valid: {', '.join(dataset_names())}")
    if name.startswith(NPZ_PREFIX):
        path = Path(name[len(NPZ_PREFIX):]).expanduser().resolve()
        key = (name, str(path))
        if key not in _CACHE:
            _CACHE[key] = load_npz(path, name)
        return _CACHE[key]
    key = (name, str(root or ""))
    if key not in _CACHE:
        _CACHE[key] = _LOADERS[name](root)
    return _CACHE[key]


def mean_std(images: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std of uint8 images (n, h, w, 3), in [0, 1] units."""
    x = images.reshape(-1, 3).astype(np.float64) / 255.0
    mean = tuple(float(v) for v in x.mean(axis=0))
    std = tuple(max(float(v), 1e-6) for v in x.std(axis=0))
    return mean, std  # type: ignore[return-value]


def _make(name: str, tr_x: np.ndarray, tr_y: np.ndarray, te_x: np.ndarray, te_y: np.ndarray,
          num_classes: int) -> ImageDataset:
    mean, std = mean_std(tr_x)
    return ImageDataset(name, tr_x, tr_y, te_x, te_y, num_classes, mean, std)


# ----------------------------------------------------------------------------- the data directory's images
def read_image_npz(path: Path, hint: str = "run `eznas data download` to fetch it again") -> dict[str, np.ndarray]:
    """The four arrays of an image file of the data directory, checked; a truncated or corrupt
    file is one error line naming it (``hint`` says what to do)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _KEYS if k not in z.files]
            arrays = {k: z[k] for k in _KEYS if k in z.files}
    except Exception as e:  # truncated (BadZipFile), bad CRC, pickled object arrays, I/O error, ...
        raise EznasError(f"data file {path} is damaged ({e.__class__.__name__}: {e}); {hint}") from None
    if missing:
        raise EznasError(f"data file {path} lacks {', '.join(missing)}; {hint}")
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3 or x.shape[1] != x.shape[2] or len(x) < 1:
            raise EznasError(f"data file {path}: {split}_images must be uint8 (n, h, h, 3), "
                             f"got {x.dtype} {x.shape}; {hint}")
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise EznasError(f"data file {path}: {split}_labels must be {len(x)} integers, "
                             f"got {y.dtype} {y.shape}; {hint}")
    return arrays


_IMAGES: dict[tuple[str, int, int], dict[str, np.ndarray]] = {}


def load_images(root: str | os.PathLike | None = None, split: str = "train",
                dataset: str = "cifar10") -> tuple[np.ndarray, np.ndarray]:
    """Images (n, h, w, 3) uint8 and labels (n,) of ``dataset``'s file in the data directory."""
    if dataset not in IMAGE_FILES:
        raise EznasError(f"no image file for '{dataset}' in the data directory; valid: {', '.join(IMAGE_FILES)}")
    p = datadir.require(IMAGE_FILES[dataset], root)
    st = p.stat()
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _IMAGES:
        hint = (f"replace it ({_HOW['ImageNet16-120']})" if dataset == "ImageNet16-120"
                else "run `eznas data download` to fetch it again")
        _IMAGES[key] = read_image_npz(p, hint)
    d = _IMAGES[key]
    return d[f"{split}_images"], d[f"{split}_labels"].astype(np.int64)


_WARNED: set[tuple[str, str]] = set()


def images_for(dataset: str, root: str | os.PathLike | None = None, warn: bool = True) -> tuple[str, Path | None]:
    """(source, path) of the images a task of ``dataset`` uses: its own dataset's (``digits``,
    ``npz:PATH``, and ``cifar100`` / ``ImageNet16-120`` when their file is in the data directory),
    else CIFAR-10's; for cifar100 / ImageNet16-120 without their file, one warning line (once).
    ``path`` is None for ``digits`` (scikit-learn's)."""
    if dataset not in IMAGE_FILES and is_dataset(dataset):
        if dataset.startswith(NPZ_PREFIX):
            return dataset, Path(dataset[len(NPZ_PREFIX):]).expanduser().resolve()
        return dataset, None
    base = datadir.data_dir(root)
    own = base / IMAGE_FILES.get(dataset, "")
    if dataset in IMAGE_FILES and own.is_file():
        return dataset, own
    if warn and dataset in _HOW and (dataset, str(base)) not in _WARNED:
        _WARNED.add((dataset, str(base)))
        size = "" if _SHAPE[dataset][0] == 32 else f", resized to {_SHAPE[dataset][0]}x{_SHAPE[dataset][0]}"
        print(f"eznas: warning: no {IMAGE_FILES[dataset]} in {base}, so {dataset} tasks use CIFAR-10 images{size} "
              f"({_HOW[dataset]})", file=sys.stderr)
    return "cifar10", base / IMAGE_FILES["cifar10"]


def _data_dir_loader(name: str) -> Loader:
    side, classes = _SHAPE[name]

    def load(root: str | os.PathLike | None) -> ImageDataset:
        tr_x, tr_y = load_images(root, "train", name)
        te_x, te_y = load_images(root, "test", name)
        p = datadir.data_dir(root) / IMAGE_FILES[name]
        if name != "cifar10" and tr_x.shape[1] != side:
            raise EznasError(f"data file {p}: {name} images must be {side}x{side}, got {tr_x.shape[1]}x{tr_x.shape[2]}")
        if max(int(tr_y.max()), int(te_y.max())) >= classes or min(int(tr_y.min()), int(te_y.min())) < 0:
            raise EznasError(f"data file {p}: {name} labels must be 0..{classes - 1}")
        mean, std = MEAN_STD[name]
        return ImageDataset(name, tr_x, tr_y, te_x, te_y, classes, mean, std)  # type: ignore[arg-type]

    return load


# ----------------------------------------------------------------------------- built-in loaders
def _load_digits(root: str | os.PathLike | None = None) -> ImageDataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise EznasError("dataset 'digits' needs scikit-learn; install it with `pip install scikit-learn`") from None
    d = load_digits()
    grey = np.asarray(d.images, dtype=np.float64)  # (1797, 8, 8), values 0..16
    images = np.repeat(np.rint(grey * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[..., None], 3, axis=3)
    labels = np.asarray(d.target, dtype=np.int64)
    test = _stratified_test_index(labels, DIGITS_TEST, DIGITS_SPLIT_SEED)
    train = np.setdiff1d(np.arange(len(labels)), test)
    return _make("digits", images[train], labels[train], images[test], labels[test], 10)


def _stratified_test_index(labels: np.ndarray, n_test: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded, class-stratified test split of ``n_test`` items."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    share = np.floor(counts * n_test / len(labels)).astype(int)
    for i in np.argsort(-(counts * n_test / len(labels) - share))[: n_test - share.sum()]:
        share[i] += 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, share)]
    return np.sort(np.concatenate(picked))


for _name in IMAGE_FILES:
    register_dataset(_name, _data_dir_loader(_name))
register_dataset("digits", _load_digits)


# ----------------------------------------------------------------------------- generic npz
def load_npz(path: Path, name: str | None = None) -> ImageDataset:
    """Read and validate an ``.npz`` dataset (see the module docstring)."""
    name = name or f"{NPZ_PREFIX}{path}"
    if not path.is_file():
        raise EznasError(f"dataset file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _KEYS if k not in z.files]
            if missing:
                raise EznasError(f"dataset {path}: missing array(s) {', '.join(missing)}; "
                                 f"expected {', '.join(_KEYS)}")
            arrays = {k: z[k] for k in _KEYS}
            n_cls = z["num_classes"] if "num_classes" in z.files else None
    except EznasError:
        raise
    except Exception as e:  # not a zip, pickled object arrays, truncated file, ...
        raise EznasError(f"dataset {path} is not a readable .npz file ({e.__class__.__name__}: {e})") from None
    tr_x = _check_images(arrays["train_images"], path, "train_images")
    te_x = _check_images(arrays["test_images"], path, "test_images")
    if tr_x.shape[1:] != te_x.shape[1:]:
        raise EznasError(f"dataset {path}: train_images {tr_x.shape[1:]} and test_images {te_x.shape[1:]} differ in shape")
    tr_y = _check_labels(arrays["train_labels"], len(tr_x), path, "train_labels")
    te_y = _check_labels(arrays["test_labels"], len(te_x), path, "test_labels")
    num_classes = _check_num_classes(n_cls, tr_y, te_y, path)
    return _make(name, tr_x, tr_y, te_x, te_y, num_classes)


def _check_images(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if x.dtype != np.uint8:
        raise EznasError(f"dataset {path}: {key} must be uint8 (0..255), got {x.dtype}")
    if x.ndim == 3:
        x = np.repeat(x[..., None], 3, axis=3)
    if x.ndim != 4 or x.shape[3] != 3:
        raise EznasError(f"dataset {path}: {key} must have shape (n, h, w, 3) or (n, h, w), got {x.shape}")
    if x.shape[0] < 1:
        raise EznasError(f"dataset {path}: {key} is empty")
    if x.shape[1] != x.shape[2]:
        raise EznasError(f"dataset {path}: {key} must be square images, got {x.shape[1]}x{x.shape[2]}")
    return np.ascontiguousarray(x)


def _check_labels(y: np.ndarray, n: int, path: Path, key: str) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise EznasError(f"dataset {path}: {key} must be a 1-D integer array, got {y.dtype} {y.shape}")
    if len(y) != n:
        raise EznasError(f"dataset {path}: {key} has {len(y)} labels for {n} images")
    if y.min() < 0:
        raise EznasError(f"dataset {path}: {key} has negative labels")
    return y.astype(np.int64)


def _check_num_classes(n_cls: np.ndarray | None, tr_y: np.ndarray, te_y: np.ndarray, path: Path) -> int:
    top = int(max(tr_y.max(), te_y.max())) + 1
    if n_cls is None:
        return top
    if n_cls.ndim != 0 or not np.issubdtype(n_cls.dtype, np.integer):
        raise EznasError(f"dataset {path}: num_classes must be a scalar integer")
    if int(n_cls) < top:
        raise EznasError(f"dataset {path}: labels go up to {top - 1} but num_classes is {int(n_cls)}")
    return int(n_cls)
