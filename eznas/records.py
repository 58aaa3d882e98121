"""Benchmark records -> :class:`Task` objects and seeded splits.

A task's benchmark (config key ``tasks[].benchmark``) is a name or a path:

- ``naslib`` (default): the space's NAS-Bench-Suite-Zero records in the data directory (trained
  accuracy and the published proxy scores of a few hundred architectures per task);
- ``natsbench``: NATS-Bench test accuracy of 10,161 NB201 cells (``natsbench/nb201_test_accuracy.csv``
  in the data directory, :mod:`eznas.natsbench`; no published proxy scores);
- ``digits``: the embedded micro-benchmark (NB201 cells trained on scikit-learn's digits), shipped
  in the package;
- a path to a benchmark ``.json`` file, e.g. one written by ``eznas bench build``.

Which file each name means for each space is declared in :data:`eznas.spaces.SPACES`.
Two record formats are read:
- newer files: ``{task: {arch_key: {"val_accuracy": a, "params": {"score": s, "time": t}, ...}}}``
- older files (NB101/NB301): ``{"nasbench101": {"cifar10": {arch_key: {"val_accuracy": a, "params": s}}}}``
A benchmark built with ``eznas bench build`` uses the newer format plus a ``"_meta"`` entry.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eznas import datadir
from eznas.errors import EznasError
from eznas.spaces import SPACES, canonical_space

#: the benchmark names a task's ``benchmark`` key takes (anything else must be a path)
BENCHMARKS: tuple[str, ...] = ("naslib", "natsbench", "digits")
DEFAULT_BENCHMARK = "naslib"
PACKAGE_DIR = Path(__file__).resolve().parent

#: the proxies NAS-Bench-Suite-Zero publishes (where present in a record)
PUBLISHED = ("flops", "params", "snip", "synflow", "grasp", "fisher", "grad_norm", "jacov", "nwot",
             "epe_nas", "l2_norm", "plain", "zen")

__all__ = ["Task", "BENCHMARKS", "PUBLISHED", "canonical_space", "check_benchmark", "is_benchmark_path",
           "benchmark_path", "load_tasks", "load_task", "read_records", "task_from_records"]


def is_benchmark_path(value: str | os.PathLike) -> bool:
    """A ``benchmark`` value that names a file rather than a known benchmark: a path object, or text
    with a directory separator, a ``.json`` suffix, or a leading ``~`` / ``.``."""
    if not isinstance(value, str):
        return True
    return value not in BENCHMARKS and (
        "/" in value or os.sep in value or value.lower().endswith(".json") or value.startswith(("~", ".")))


def check_benchmark(value: str | os.PathLike | None, key: str = "benchmark") -> None:
    """One error line naming ``key`` for a value that is neither a known benchmark nor a path."""
    if value is None or is_benchmark_path(value) or value in BENCHMARKS:
        return
    raise EznasError(f"{key}: unknown benchmark {value!r}; valid: {', '.join(BENCHMARKS)}, "
                     f"or the path of a benchmark .json file")


def benchmark_path(space: str, name: str, root: str | os.PathLike | None = None) -> Path:
    """The file of the benchmark ``name`` of ``space``: in the package, or in the data directory."""
    info = SPACES[canonical_space(space)]
    if name not in info.benchmarks:
        has = [s.name for s in SPACES.values() if name in s.benchmarks]
        raise EznasError(f"benchmark '{name}' has no search space '{space}'; it covers: {', '.join(has)}")
    f = info.benchmarks[name]
    if f.packaged:
        return PACKAGE_DIR / f.path
    return datadir.require(f.path, root)


@dataclass
class Task:
    """One benchmark task: architectures of a space with their trained accuracies."""

    space: str
    dataset: str
    archs: list[str]
    accuracies: np.ndarray
    published: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    benchmark: str = DEFAULT_BENCHMARK  # the benchmark name, or the path of its file

    @property
    def name(self) -> str:
        return f"{self.space}/{self.dataset}"

    def __len__(self) -> int:
        return len(self.archs)

    def subset(self, idx: np.ndarray | list[int]) -> "Task":
        idx = np.asarray(idx, dtype=np.int64)
        return Task(self.space, self.dataset, [self.archs[i] for i in idx], self.accuracies[idx],
                    {k: v[idx] for k, v in self.published.items()}, dict(self.meta), self.benchmark)

    def sample(self, n: int, seed: int) -> "Task":
        """``n`` architectures drawn without replacement by ``seed`` (all if n >= len)."""
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(self))
        return self.subset(np.sort(perm[: min(n, len(self))]))

    def split(self, seed: int, evolve: int, validate: int = 0, test: int | None = None) -> dict[str, "Task"]:
        """Disjoint evolve / validate / test subsets fixed by ``seed``. ``test`` takes what is left
        (all of it when None). Sizes that do not fit in the task are one error line naming the
        ``split.*`` config keys."""
        want = evolve + validate + (test or 0)
        if want > len(self):
            sizes = f"evolve={evolve} + validate={validate}" + ("" if test is None else f" + test={test}")
            raise EznasError(f"config keys 'split.*': {sizes} = {want} architectures, but task {self.name} "
                             f"(benchmark {self.benchmark}) has only {len(self)}; lower the split sizes")
        rng = np.random.default_rng([seed, len(self)])
        perm = rng.permutation(len(self))
        rest = perm[evolve + validate:]
        if test is not None:
            rest = rest[:test]
        return {"evolve": self.subset(perm[:evolve]), "validate": self.subset(perm[evolve:evolve + validate]),
                "test": self.subset(rest)}


def _score(v: Any) -> float:
    if isinstance(v, dict):
        v = v.get("score")
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def _unwrap(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return {task: {arch: record}} for both record formats."""
    tasks = {k: v for k, v in raw.items() if not k.startswith("_")}
    if len(tasks) == 1:
        (only,) = tasks.values()
        # old format: one more level whose values are {arch: record} maps
        if isinstance(only, dict) and only and all(isinstance(v, dict) and v and
                                                   all(isinstance(r, dict) for r in v.values())
                                                   for v in only.values()):
            first = next(iter(only.values()))
            if "val_accuracy" in next(iter(first.values())):
                return only
    return tasks


def read_records(path: str | os.PathLike) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        raise EznasError(f"benchmark file not found: {p}")
    try:
        raw = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EznasError(f"benchmark file {p} is not valid JSON ({e.__class__.__name__} at {getattr(e, 'pos', '?')})") from None
    if not isinstance(raw, dict):
        raise EznasError(f"benchmark file {p}: expected a JSON object of tasks")
    return _unwrap(raw), raw.get("_meta", {})


def task_from_records(space: str, dataset: str, records: dict[str, Any], meta: dict[str, Any] | None = None,
                      benchmark: str = DEFAULT_BENCHMARK) -> Task:
    archs = list(records.keys())
    acc = np.array([_score(records[a].get("val_accuracy")) for a in archs], dtype=np.float64)
    if np.isnan(acc).any():
        bad = archs[int(np.flatnonzero(np.isnan(acc))[0])]
        raise EznasError(f"task {space}/{dataset}: record {bad} has no numeric val_accuracy")
    published = {}
    for name in PUBLISHED:
        if any(name in records[a] for a in archs):
            published[name] = np.array([_score(records[a].get(name)) for a in archs], dtype=np.float64)
    return Task(space, dataset, archs, acc, published, dict(meta or {}), benchmark)


def _natsbench_tasks(space: str, root: str | os.PathLike | None) -> dict[str, Task]:
    from eznas import natsbench  # local: natsbench imports this package's spaces

    benchmark_path(space, "natsbench", root)  # the one-line error for a space it does not cover
    table = natsbench.load_table(root)
    return {d: Task(space, d, list(table.archs), table.dataset(d).copy(), {}, {}, "natsbench")
            for d in natsbench.DATASETS}


def load_tasks(space: str, root: str | os.PathLike | None = None,
               benchmark: str | os.PathLike | None = None) -> dict[str, Task]:
    """Every task of ``space`` in ``benchmark``: a name of :data:`BENCHMARKS` (default ``naslib``)
    or the path of a benchmark file. A file that declares another space (``_meta.space``) is an error."""
    space = canonical_space(space)
    benchmark = DEFAULT_BENCHMARK if benchmark is None else benchmark
    check_benchmark(benchmark)
    if benchmark == "natsbench":
        return _natsbench_tasks(space, root)
    if is_benchmark_path(benchmark):
        path, label = Path(benchmark).expanduser(), str(benchmark)
    else:
        path, label = benchmark_path(space, str(benchmark), root), str(benchmark)
    by_task, meta = read_records(path)
    if meta.get("space"):
        try:
            declared = canonical_space(str(meta["space"]))
        except EznasError:
            declared = str(meta["space"])
        if declared != space:
            raise EznasError(f"benchmark {label} holds search space '{meta['space']}' architectures, "
                             f"but the task says space '{space}'")
    return {t: task_from_records(space, t, recs, meta, label) for t, recs in by_task.items()}


def load_task(space: str, dataset: str, root: str | os.PathLike | None = None,
              benchmark: str | os.PathLike | None = None) -> Task:
    tasks = load_tasks(space, root, benchmark)
    if dataset not in tasks:
        where = "" if benchmark in (None, DEFAULT_BENCHMARK) else f" in benchmark {benchmark}"
        raise EznasError(f"space {space} has no task '{dataset}'{where}; valid: {', '.join(tasks)}")
    return tasks[dataset]
