"""NAS-Bench-Suite-Zero records -> :class:`Task` objects and seeded splits.

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

from eznas import data as data_mod
from eznas.errors import EznasError

#: space name -> benchmark file in the data directory
SPACE_FILES: dict[str, str] = {
    "nb201": "naslib/zc_nasbench201.json",
    "nb101": "naslib/zc_nasbench101.json",
    "nb301": "naslib/zc_nasbench301.json",
    "tnb_micro": "naslib/zc_transbench101_micro.json",
    "tnb_macro": "naslib/zc_transbench101_macro.json",
}
ALIASES = {"darts": "nb301", "tnb101_micro": "tnb_micro", "transbench101_micro": "tnb_micro"}

#: the proxies NAS-Bench-Suite-Zero publishes (where present in a record)
PUBLISHED = ("flops", "params", "snip", "synflow", "grasp", "fisher", "grad_norm", "jacov", "nwot",
             "epe_nas", "l2_norm", "plain", "zen")


def canonical_space(space: str) -> str:
    s = ALIASES.get(space, space)
    if s not in SPACE_FILES:
        raise EznasError(f"unknown search space '{space}'; valid: {', '.join(SPACE_FILES)}")
    return s


@dataclass
class Task:
    """One benchmark task: architectures of a space with their trained accuracies."""

    space: str
    dataset: str
    archs: list[str]
    accuracies: np.ndarray
    published: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.space}/{self.dataset}"

    def __len__(self) -> int:
        return len(self.archs)

    def subset(self, idx: np.ndarray | list[int]) -> "Task":
        idx = np.asarray(idx, dtype=np.int64)
        return Task(self.space, self.dataset, [self.archs[i] for i in idx], self.accuracies[idx],
                    {k: v[idx] for k, v in self.published.items()}, dict(self.meta))

    def sample(self, n: int, seed: int) -> "Task":
        """``n`` architectures drawn without replacement by ``seed`` (all if n >= len)."""
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(self))
        return self.subset(np.sort(perm[: min(n, len(self))]))

    def split(self, seed: int, evolve: int, validate: int = 0, test: int | None = None) -> dict[str, "Task"]:
        """Disjoint evolve / validate / test subsets fixed by ``seed``. ``test`` takes what is left,
        capped at ``test`` if given."""
        if evolve + validate > len(self):
            raise EznasError(
                f"task {self.name} has {len(self)} architectures, fewer than evolve={evolve} + validate={validate}")
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
        raise EznasError(f"benchmark file not found: {p}; {data_mod.DOWNLOAD_HINT}")
    try:
        raw = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EznasError(f"benchmark file {p} is not valid JSON ({e.__class__.__name__} at {getattr(e, 'pos', '?')})") from None
    if not isinstance(raw, dict):
        raise EznasError(f"benchmark file {p}: expected a JSON object of tasks")
    return _unwrap(raw), raw.get("_meta", {})


def task_from_records(space: str, dataset: str, records: dict[str, Any], meta: dict[str, Any] | None = None) -> Task:
    archs = list(records.keys())
    acc = np.array([_score(records[a].get("val_accuracy")) for a in archs], dtype=np.float64)
    if np.isnan(acc).any():
        bad = archs[int(np.flatnonzero(np.isnan(acc))[0])]
        raise EznasError(f"task {space}/{dataset}: record {bad} has no numeric val_accuracy")
    published = {}
    for name in PUBLISHED:
        if any(name in records[a] for a in archs):
            published[name] = np.array([_score(records[a].get(name)) for a in archs], dtype=np.float64)
    return Task(space, dataset, archs, acc, published, dict(meta or {}))


def load_tasks(space: str, root: str | os.PathLike | None = None, path: str | os.PathLike | None = None) -> dict[str, Task]:
    """Every task of a space's benchmark file (or of a benchmark file given by ``path``)."""
    if path is None:
        space = canonical_space(space)
        path = data_mod.require(SPACE_FILES[space], root)
    by_task, meta = read_records(path)
    if meta.get("space"):
        space = meta["space"]
    return {t: task_from_records(space, t, recs, meta) for t, recs in by_task.items()}


def load_task(space: str, dataset: str, root: str | os.PathLike | None = None,
              path: str | os.PathLike | None = None) -> Task:
    tasks = load_tasks(space, root, path)
    if dataset not in tasks:
        raise EznasError(f"space {space} has no task '{dataset}'; valid: {', '.join(tasks)}")
    return tasks[dataset]
