"""The whole-space NB201 accuracy table (NATS-Bench TSS test accuracy, 200 epochs).

``natsbench/nb201_test_accuracy.csv`` in the data directory holds the trained test accuracy of
10,161 NB201 cells on CIFAR-10, CIFAR-100 and ImageNet16-120 (see the data README). It is both a
benchmark for proxy correlation at scale and the candidate pool of ``eznas nas``.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from eznas.errors import EznasError

FILE = "natsbench/nb201_test_accuracy.csv"
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
SPACE = "nb201"


@dataclass(frozen=True)
class NatsTable:
    """Arch keys (NB201 op-index tuples as text, the NASLib key) and test accuracy per dataset."""

    archs: tuple[str, ...]
    accuracy: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.archs)

    def index(self) -> dict[str, int]:
        return {a: i for i, a in enumerate(self.archs)}

    def dataset(self, name: str) -> np.ndarray:
        if name not in self.accuracy:
            raise EznasError(f"unknown NB201 dataset '{name}'; valid: {', '.join(DATASETS)}")
        return self.accuracy[name]


def read_table(path: str | os.PathLike) -> NatsTable:
    """Parse the CSV; a missing column, a malformed key or a non-numeric accuracy is one error."""
    from eznas.spaces import get_space  # local: spaces import torch

    p = Path(path)
    try:
        with p.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise EznasError(f"cannot read the NATS-Bench table {p}: {e.strerror or e}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise EznasError(f"the NATS-Bench table {p} is not a CSV file ({e.__class__.__name__})") from None
    need = ("arch_key",) + DATASETS
    if not rows or any(c not in rows[0] for c in need):
        raise EznasError(f"the NATS-Bench table {p} needs the columns {', '.join(need)}")
    space = get_space(SPACE)
    archs: list[str] = []
    acc = {d: np.empty(len(rows)) for d in DATASETS}
    seen: set[str] = set()
    for i, row in enumerate(rows):
        line = i + 2
        try:
            key = space.encode(space.decode(row["arch_key"]))
        except EznasError as e:
            raise EznasError(f"{p}:{line}: {e}") from None
        if key in seen:
            raise EznasError(f"{p}:{line}: arch {key} appears twice")
        seen.add(key)
        archs.append(key)
        for d in DATASETS:
            try:
                v = float(row[d])
            except (TypeError, ValueError):
                v = math.nan
            if not math.isfinite(v):
                raise EznasError(f"{p}:{line}: {d} accuracy {row[d]!r} is not a number")
            acc[d][i] = v
    return NatsTable(tuple(archs), acc)


@lru_cache(maxsize=4)
def _cached(path: str, mtime: float) -> NatsTable:
    return read_table(path)


def load_table(root: str | os.PathLike | None = None) -> NatsTable:
    """The table from the data directory (``root`` / ``EZNAS_DATA_DIR`` / default)."""
    from eznas import data as data_mod

    p = data_mod.require(FILE, root)
    return _cached(str(p), p.stat().st_mtime)
