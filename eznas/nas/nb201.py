"""NB201 as a search domain: candidates from the NATS-Bench table, eznas proxies as scorers.

Candidates are the 10,161 cells of :func:`eznas.natsbench.load_table` (the only cells whose trained
accuracy can be reported). ``sample`` is uniform over them; ``mutate`` changes one edge's op to
another op, uniformly among such one-edge neighbours that are in the table (the same distribution
as retrying a random edge/op until the result is in the table), and draws a random table cell for a
cell with no neighbour in the table.

A proxy's score of a cell is a pure function of (proxy, dataset, cell, seed, batch size): the
network is built with ``seed``, the batch drawn with ``seed``, and torch's global RNG is seeded with
``seed`` around each call, so the score cache key holds exactly those.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from eznas.errors import EznasError
from eznas.nas.strategies import Scorer
from eznas.natsbench import DATASETS, NatsTable

SPACE = "nb201"


class TableSpace:
    """The table's cells as candidates, with one-edge mutation inside the table; ``cells`` (table
    cells) restricts the candidates and the mutations to a pool, e.g. the cells of a score table.
    Accuracies and standings are always those of the whole table."""

    def __init__(self, table: NatsTable, cells: Sequence[str] | None = None) -> None:
        from eznas.spaces import get_space
        from eznas.spaces.nb201 import OPS

        self.table = table
        self.index = table.index()
        if cells is not None:
            unknown = [c for c in cells if c not in self.index]
            if unknown:
                raise EznasError(f"{len(unknown)} pool cells are not in the NATS-Bench table, e.g. {unknown[0]}")
        self.archs: tuple[str, ...] = table.archs if cells is None else tuple(dict.fromkeys(cells))
        self._pool = self.index if cells is None else {a: i for i, a in enumerate(self.archs)}
        self._near: dict[str, list[str]] = {}
        self._space = get_space(SPACE)
        self._n_ops = len(OPS)

    def __len__(self) -> int:
        return len(self.archs)

    def sample(self, rng: np.random.Generator) -> str:
        return self.archs[int(rng.integers(len(self.archs)))]

    def neighbours(self, arch: str) -> list[str]:
        """Cells that differ from ``arch`` on exactly one edge and are candidates (fixed order)."""
        if arch not in self._near:
            self._near[arch] = self._neighbours(arch)
        return self._near[arch]

    def _neighbours(self, arch: str) -> list[str]:
        ops = self._space.decode(arch)
        out = []
        for e in range(len(ops)):
            for op in range(self._n_ops):
                if op != ops[e]:
                    key = self._space.encode(ops[:e] + (op,) + ops[e + 1:])
                    if key in self._pool:
                        out.append(key)
        return out

    def mutate(self, arch: str, rng: np.random.Generator) -> str:
        near = self.neighbours(arch)
        if not near:
            return self.sample(rng)
        return near[int(rng.integers(len(near)))]

    def accuracy(self, arch: str, dataset: str) -> float:
        return float(self.table.dataset(dataset)[self.index[arch]])

    def standing(self, arch: str, dataset: str) -> dict[str, float]:
        """Rank (1 = best) and percentile (share of table cells at or below it) of ``arch``."""
        acc = self.table.dataset(dataset)
        a = acc[self.index[arch]]
        return {"rank": int(np.sum(acc > a)) + 1, "percentile": float(100.0 * np.mean(acc <= a))}


def arch_str(arch: str) -> str:
    """NB201's own cell string, e.g. ``|nor_conv_3x3~0|+|...|``."""
    from eznas.spaces import get_space
    from eznas.spaces.nb201 import EDGES, OPS

    ops = get_space(SPACE).decode(arch)
    nodes = []
    for j in range(1, 4):
        nodes.append("|" + "|".join(f"{OPS[ops[k]]}~{i}" for k, (i, jj) in enumerate(EDGES) if jj == j) + "|")
    return "+".join(nodes)


def check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise EznasError(f"unknown NB201 dataset '{dataset}'; valid: {', '.join(DATASETS)}")


def proxy_identity(spec: str, proxy: Any, trust: bool) -> str:
    """What a proxy's scores depend on: a baseline's name, an evolved program's expression and
    settings, or a trusted file's bytes."""
    from eznas.export import Proxy

    if isinstance(getattr(proxy, "identity", None), str):  # a hybrid proxy (eznas.hybrid_proxy)
        return str(proxy.identity)
    if isinstance(proxy, Proxy):
        blob = json.dumps({"expression": proxy.infix, "settings": asdict(proxy.settings)}, sort_keys=True)
        return "program:" + hashlib.sha256(blob.encode()).hexdigest()[:16]
    path = Path(spec).expanduser()
    if trust and path.is_file():
        return "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return "baseline:" + str(getattr(proxy, "proxy_name", spec))


def load_proxies(specs: Sequence[str], trust: bool = False) -> list[tuple[str, Any, str, str | None]]:
    """(name, proxy, identity, group) per distinct spec; unknown ones raise one EznasError. A
    set-level proxy (``az_nas``) becomes one entry per component (``az_expressivity`` ...), each with
    ``group`` = the set-level name; other entries have group None."""
    from eznas.export import load_proxy
    from eznas.proxies.sets import component_proxies, is_set_level

    out: list[tuple[str, Any, str, str | None]] = []
    for spec in dict.fromkeys(specs):
        if is_set_level(spec) and not Path(spec).expanduser().exists():
            for name in component_proxies(spec).values():
                proxy = load_proxy(name)
                out.append((name, proxy, proxy_identity(name, proxy, trust), spec))
            continue
        proxy = load_proxy(spec, trust=trust)
        out.append((spec, proxy, proxy_identity(spec, proxy, trust), None))
    return out


def proxy_specs(proxies: Sequence[tuple[str, Any, str, str | None]]) -> list[str]:
    """The proxies as the user named them (a set-level proxy once, not its components)."""
    return list(dict.fromkeys(group if group is not None else name for name, _, _, group in proxies))


def make_scorers(proxies: Sequence[tuple[str, Any, str, str | None]], dataset: str, seed: int, batch_size: int,
                 data_dir: str | os.PathLike | None = None, device: Any = "cpu") -> list[Scorer]:
    """Scorers of NB201 arch keys: build the cell's network (``seed``) for ``dataset``'s head and
    score it on one batch (drawn with ``seed``, noise at each proxy's scale) per proxy, network and
    batch on ``device`` (a torch device or its name); the proxies of one cell share its network.
    Components of a set-level proxy share its group and its combination (:class:`Scorer`)."""
    import torch

    from eznas.batches import make_batches
    from eznas.export.loading import noise_scale_of
    from eznas.export.score import batches_on, scorer
    from eznas.proxies.sets import matrix_combine
    from eznas.spaces import build, get_space

    check_dataset(dataset)
    sp = get_space(SPACE)
    device = torch.device(device)
    cuda_rngs = [device.index or 0] if device.type == "cuda" else []
    memo: dict[str, Any] = {}

    def model_of(arch: str) -> Any:
        if memo.get("arch") != arch:
            memo.clear()
            memo["model"] = build(SPACE, arch, dataset, seed=seed).to(device)
            memo["arch"] = arch
        return memo["model"]

    batches: dict[float, Any] = {}
    scorers = []
    for name, proxy, identity, group in proxies:
        scale = noise_scale_of(proxy)
        scale = 0.1 if scale is None else scale
        if scale not in batches:
            batches[scale] = make_batches(dataset, batch_size, seed, num_classes=sp.num_classes(dataset),
                                          noise_scale=scale, root=data_dir, size=sp.input_size(dataset))
        run = scorer(proxy, sp, dataset, batches_on(batches[scale], device))

        def fn(arch: str, run: Any = run) -> float:
            model = model_of(arch)
            with torch.random.fork_rng(devices=cuda_rngs):
                torch.manual_seed(seed)
                return run(model)

        key = f"{identity}|{SPACE}|{dataset}|seed={seed}|batch={batch_size}|noise={scale}"
        if device.type != "cpu":  # CUDA scores differ from the CPU's in the last bits: never mix them
            key += f"|device={device.type}"
        scorers.append(Scorer(name, fn, key, group=group, combine=matrix_combine(group) if group else None))
    return scorers


def table_scorers(specs: Sequence[str], rows: dict[str, dict[str, float]], columns: Sequence[str],
                  ensembles: dict[str, Sequence[str]] | None = None) -> list[Scorer]:
    """Scorers that look a cell's scores up in a precomputed score table (``rows``: arch -> column ->
    score, e.g. :class:`eznas.nas.table.TableFile`), one per spec: a column; a set-level proxy
    (``az_nas``: its component columns, combined over the scored cells); or a name of ``ensembles``
    (name -> columns: their rank ensemble, one proxy). A cell missing from the table, or whose score
    is NaN, fails like a proxy that raised."""
    from eznas.ensemble import rank_average
    from eznas.proxies.sets import component_proxies, is_set_level, matrix_combine

    def lookup(col: str) -> Callable[[str], float]:
        def fn(arch: str) -> float:
            try:
                v = rows[arch][col]
            except KeyError:
                raise LookupError(f"no {col} score for {arch} in the score table") from None
            if not math.isfinite(v):
                raise ValueError(f"{col} failed on {arch} when the table was computed")
            return v
        return fn

    def mean_rank(matrix: np.ndarray) -> np.ndarray:
        return rank_average([matrix[:, j] for j in range(matrix.shape[1])])

    def need(col: str, spec: str) -> str:
        if col not in columns:
            raise EznasError(f"proxy '{spec}' needs the column '{col}', which the score table lacks; it has: "
                             f"{', '.join(columns)}")
        return col

    ensembles = dict(ensembles or {})
    out: list[Scorer] = []
    for spec in dict.fromkeys(specs):
        if spec in ensembles:
            cols = [need(c, spec) for c in ensembles[spec]]
            out += [Scorer(c, lookup(c), group=spec, combine=mean_rank if len(cols) > 1 else None) for c in cols]
        elif is_set_level(spec):
            cols = [need(c, spec) for c in component_proxies(spec).values()]
            out += [Scorer(c, lookup(c), group=spec, combine=matrix_combine(spec)) for c in cols]
        else:
            out.append(Scorer(need(spec, spec), lookup(spec)))
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise EznasError(f"a score-table column is used twice in one search: {', '.join(names)}")
    return out
