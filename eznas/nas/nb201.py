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
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from eznas.errors import EznasError
from eznas.nas.strategies import Scorer
from eznas.natsbench import DATASETS, NatsTable

SPACE = "nb201"


class TableSpace:
    """The table's cells as candidates, with one-edge mutation inside the table."""

    def __init__(self, table: NatsTable) -> None:
        from eznas.spaces import get_space
        from eznas.spaces.nb201 import OPS

        self.table = table
        self.archs: tuple[str, ...] = table.archs
        self.index = table.index()
        self._space = get_space(SPACE)
        self._n_ops = len(OPS)

    def __len__(self) -> int:
        return len(self.archs)

    def sample(self, rng: np.random.Generator) -> str:
        return self.archs[int(rng.integers(len(self.archs)))]

    def neighbours(self, arch: str) -> list[str]:
        """Cells that differ from ``arch`` on exactly one edge and are in the table (fixed order)."""
        ops = self._space.decode(arch)
        out = []
        for e in range(len(ops)):
            for op in range(self._n_ops):
                if op != ops[e]:
                    key = self._space.encode(ops[:e] + (op,) + ops[e + 1:])
                    if key in self.index:
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


def load_proxies(specs: Sequence[str], trust: bool = False) -> list[tuple[str, Any, str]]:
    """(name as given, proxy, identity) per distinct spec; unknown ones raise one EznasError."""
    from eznas.export import load_proxy

    out = []
    for spec in dict.fromkeys(specs):
        proxy = load_proxy(spec, trust=trust)
        out.append((spec, proxy, proxy_identity(spec, proxy, trust)))
    return out


def make_scorers(proxies: Sequence[tuple[str, Any, str]], dataset: str, seed: int, batch_size: int,
                 data_dir: str | os.PathLike | None = None, device: Any = "cpu") -> list[Scorer]:
    """Scorers of NB201 arch keys: build the cell's network (``seed``) for ``dataset``'s head and
    score it on one batch (drawn with ``seed``, noise at each proxy's scale) per proxy, network and
    batch on ``device`` (a torch device or its name); the proxies of one cell share its network."""
    import torch

    from eznas.batches import make_batches
    from eznas.export.loading import noise_scale_of
    from eznas.export.score import batches_on, scorer
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
    for name, proxy, identity in proxies:
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
        scorers.append(Scorer(name, fn, key))
    return scorers
