"""The whole-space NB201 accuracy table (NATS-Bench TSS test accuracy, 200 epochs).

``natsbench/nb201_test_accuracy.csv`` in the data directory holds the trained test accuracy of
10,161 NB201 cells on CIFAR-10, CIFAR-100 and ImageNet16-120 (see the data README). It is both a
benchmark for proxy correlation at scale (the benchmark ``natsbench`` of a task, see
:mod:`eznas.records`) and the candidate pool of ``eznas nas``.

`eznas data download` builds the file from the public export of the NATS-Bench API in the
repository v-tao/nats-bench-landscape (``nats_bench.csv``: columns ``CIFAR10TestAccuracy200Epochs``,
``CIFAR100TestAccuracy200Epochs``, ``ImageNetTestAccuracy200Epochs``, ``ArchitectureString``) with
:func:`convert_upstream`; that export covers all cells, so its table is larger than the shared one.
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
from eznas.spaces import SPACES

SPACE = "nb201"
FILE = SPACES[SPACE].benchmarks["natsbench"].path
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
# upstream column -> our column
_UPSTREAM = {"CIFAR10TestAccuracy200Epochs": "cifar10", "CIFAR100TestAccuracy200Epochs": "cifar100",
             "ImageNetTestAccuracy200Epochs": "ImageNet16-120"}
_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")  # NB201 op indices


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
    from eznas import datadir  # local: datadir derives its file list from the spaces

    p = datadir.require(FILE, root)
    return _cached(str(p), p.stat().st_mtime)


def arch_key(arch_str: str) -> str:
    """NB201's cell string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` -> the op-index key of the
    benchmark files (edges (1→2), (1→3), (1→4), (2→3), (2→4), (3→4); the string lists them by
    target node: (1→2), (1→3), (2→3), (1→4), (2→4), (3→4))."""
    nodes = [n for n in arch_str.strip().split("+")]
    ops: dict[tuple[int, int], int] = {}
    try:
        for j, node in enumerate(nodes, start=1):
            for tok in filter(None, node.strip("|").split("|")):
                op, src = tok.split("~")
                ops[(int(src), j)] = _OPS.index(op)
        if len(nodes) != 3 or len(ops) != 6:
            raise ValueError
        key = [ops[e] for e in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))]
    except (ValueError, KeyError):
        raise EznasError(f"malformed NB201 cell string {arch_str!r}") from None
    return "(" + ", ".join(str(k) for k in key) + ")"


def convert_upstream(src: str | os.PathLike, dest: str | os.PathLike) -> int:
    """Write the table's CSV layout (arch_key, arch_str, accuracies with 6 decimals) from the
    upstream export ``src``; returns the number of cells."""
    p = Path(src)
    try:
        with p.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise EznasError(f"cannot read the NATS-Bench export {p} ({e.__class__.__name__})") from None
    need = (*_UPSTREAM, "ArchitectureString")
    if not rows or any(c not in rows[0] for c in need):
        raise EznasError(f"the NATS-Bench export {p} needs the columns {', '.join(need)}")
    with open(dest, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["arch_key", "arch_str", *DATASETS])
        for i, row in enumerate(rows):
            vals = []
            for col in _UPSTREAM:
                try:
                    vals.append(f"{float(row[col]):.6f}")
                except (TypeError, ValueError):
                    raise EznasError(f"{p}:{i + 2}: {col} {row[col]!r} is not a number") from None
            arch_str = row["ArchitectureString"]
            w.writerow([arch_key(arch_str), arch_str, *vals])
    return len(rows)
