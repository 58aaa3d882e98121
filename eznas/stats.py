"""Network statistics: hooks record 22 sketched tensors per unit; an on-disk cache; stacked loading.

For every unit (see :mod:`eznas.spaces.common`) and each input D, N, P, one forward and one
backward pass (BatchNorm in training mode, the space's loss) record the unit input ``X``, the
pre-activation ``Z``, the activation ``A``, their gradients and the weight gradient; plus the
weight ``W``: 22 tensors (:data:`eznas.tensors.TENSOR_NAMES`), each sketched to (R, s, s) as soon
as it appears, so a network never holds more than its own autograd graph.

Cache entries are ``.npz`` files (no pickle): float16 values divided by a per-(unit, tensor)
float32 scale (so small gradients do not underflow), the scales, block validity masks and a
SHA-256 of the payload. Writes go to a temporary file and are renamed into place, so a killed
build leaves no half-written entry; a corrupt entry is reported and recomputed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import eznas
from eznas import records
from eznas import config as config_mod
from eznas.atomic import atomic_write
from eznas.batches import Batches, make_batches
from eznas.errors import EznasError
from eznas.images import images_for
from eznas.sketch import SketchIndex, make_index, weight_matrix
from eznas.spaces import build as build_net
from eznas.spaces import get_space, units
from eznas.tensors import FAMILY, INDEX, TENSOR_NAMES

FORMAT_VERSION = 1
_FAMILY_SEED = {"W": 11, "X": 23, "Z": 37, "A": 53}

TensorCallback = Callable[[int, str, torch.Tensor], None]


@dataclass(frozen=True)
class StatsSettings:
    """Everything besides the architecture that changes a cache entry."""

    space: str
    dataset: str
    batch_size: int = 64
    seed: int = 0
    R: int = 16
    s: int = 8
    dtype: str = "float16"
    noise_scale: float = 0.1
    width: int | None = None
    depth: int | None = None
    images: str = "cifar10"  # the D batch's image source (eznas.images.images_for); keyed unless cifar10

    @classmethod
    def from_config(cls, cfg: config_mod.Config, space: str, dataset: str) -> "StatsSettings":
        st = cfg.stats
        return cls(get_space(space).name, dataset, st.batch_size, cfg.seed, st.R, st.s, st.dtype,
                   st.noise_scale, cfg.network.width, cfg.network.depth,
                   images_for(dataset, cfg.data_dir, warn=False)[0])

    def key(self, arch: str) -> str:
        settings = {k: v for k, v in self.__dict__.items() if (k, v) != ("images", "cifar10")}  # old keys stay
        payload = json.dumps({"arch": arch, "settings": settings, "format": FORMAT_VERSION,
                              "version": eznas.__version__}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


# ----------------------------------------------------------------------------- recording
class Recorder:
    """Registers forward/backward hooks on every unit of ``model`` and fills ``values``
    (units, 22, R, s, s) with sketches. ``on_tensor(unit, name, full)`` optionally sees
    every full tensor (used by the fidelity experiment)."""

    def __init__(self, model: nn.Module, R: int, s: int, seed: int, on_tensor: TensorCallback | None = None):
        self.units = units(model)
        if not self.units:
            raise EznasError("the network has no ReLU-Conv-BN units to record")
        self.R, self.s, self.seed = R, s, seed
        self.values = torch.zeros(len(self.units), len(TENSOR_NAMES), R, s, s)
        self.valid = torch.zeros(len(self.units), len(TENSOR_NAMES), R, s, s, dtype=torch.bool)
        self.on_tensor = on_tensor
        self._index: dict[tuple[int, str, tuple[int, ...]], SketchIndex] = {}
        self._input = "D"
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        for u, unit in enumerate(self.units):
            self._handles.append(unit.register_forward_pre_hook(self._pre_hook(u)))
            self._handles.append(unit.bn.register_forward_hook(self._out_hook(u, "Z")))
            self._handles.append(unit.relu.register_forward_hook(self._out_hook(u, "A")))

    def _sketch(self, u: int, name: str, t: torch.Tensor) -> None:
        if self.on_tensor is not None:
            self.on_tensor(u, name, t.detach())
        fam = FAMILY[name]
        if fam == "W":
            t = weight_matrix(t)
        shape = tuple(t.shape)
        k = (u, fam, shape)
        idx = self._index.get(k)
        if idx is None:
            seed = self.seed * 1_000_003 + u * 101 + _FAMILY_SEED[fam]
            idx = self._index[k] = make_index(shape, self.R, self.s, seed)
        i = INDEX[name]
        self.values[u, i] = idx.take(t).float()
        self.valid[u, i] = idx.valid

    def _record(self, u: int, role: str, t: torch.Tensor) -> None:
        name = f"{role}_{self._input}"
        self._sketch(u, name, t)
        if t.requires_grad:
            t.register_hook(lambda g, u=u, n=f"g{name}": self._sketch(u, n, g))

    def _pre_hook(self, u: int):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            self._record(u, "X", args[0])
        return hook

    def _out_hook(self, u: int, role: str):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            self._record(u, role, out)
        return hook

    def set_input(self, name: str) -> None:
        self._input = name

    def record_weights(self, name: str | None = None) -> None:
        """Sketch ``W`` (name None) or the weight gradients ``gW_<input>`` after a backward pass."""
        for u, unit in enumerate(self.units):
            w = unit.weight_conv.weight
            if name is None:
                self._sketch(u, "W", w)
            elif w.grad is not None:
                self._sketch(u, name, w.grad)

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def run_passes(model: nn.Module, batches: Batches, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               recorder: Recorder | None = None) -> None:
    """One forward + backward pass per input D, N, P (BatchNorm in training mode)."""
    model.train()
    if recorder is not None:
        recorder.record_weights(None)
    for name, x in batches.items():
        model.zero_grad(set_to_none=True)
        if recorder is not None:
            recorder.set_input(name)
        out = model(x)
        loss_fn(out, x).backward()
        if recorder is not None:
            recorder.record_weights(f"gW_{name}")
    model.zero_grad(set_to_none=True)


def _loss_for(space: str, dataset: str, targets: torch.Tensor):
    sp = get_space(space)
    return lambda out, x: sp.loss(out, x, targets, dataset)


def net_batches(st: StatsSettings, data_dir: str | None = None) -> Batches:
    sp = get_space(st.space)
    return make_batches(st.dataset, st.batch_size, st.seed, num_classes=sp.num_classes(st.dataset),
                        noise_scale=st.noise_scale, root=data_dir, size=sp.input_size(st.dataset))


def compute_net(arch: str, st: StatsSettings, batches: Batches,
                on_tensor: TensorCallback | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sketched statistics of one network: values (units, 22, R, s, s) and validity masks."""
    model = build_net(st.space, arch, st.dataset, seed=st.seed, width=st.width, depth=st.depth)
    rec = Recorder(model, st.R, st.s, st.seed, on_tensor)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(st.seed)
            run_passes(model, batches, _loss_for(st.space, st.dataset, batches.targets), rec)
    finally:
        rec.close()
    return rec.values, rec.valid


# ----------------------------------------------------------------------------- cache files
def default_cache_dir(cfg: config_mod.Config | None = None) -> Path:
    if cfg is not None and cfg.stats.cache_dir:
        return Path(cfg.stats.cache_dir).expanduser()
    env = os.environ.get("EZNAS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "eznas" / "stats"


def entry_path(cache_dir: Path, st: StatsSettings, arch: str) -> Path:
    return cache_dir / st.space / st.dataset / f"{st.key(arch)}.npz"


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def write_entry(path: Path, arch: str, st: StatsSettings, values: torch.Tensor, valid: torch.Tensor) -> int:
    """Atomically write one network's statistics; returns the bytes written."""
    v = values.numpy()
    scale = np.abs(v).reshape(v.shape[0], v.shape[1], -1).max(axis=2).astype(np.float32)
    scale[~np.isfinite(scale) | (scale == 0)] = 1.0
    stored = (v / scale[:, :, None, None, None]).astype(np.float16 if st.dtype == "float16" else np.float32)
    mask = np.packbits(valid.numpy().reshape(-1))
    meta = np.array(json.dumps({"arch": arch, "settings": st.__dict__, "shape": list(v.shape)}))
    digest = np.array(_digest(stored, scale, mask))
    atomic_write(path, lambda f: np.savez(f, values=stored, scale=scale, mask=mask, meta=meta, digest=digest),
                 binary=True)
    return path.stat().st_size


class CorruptEntry(Exception):
    pass


def read_entry(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """values (units, 22, R, s, s) float32 and valid mask (same shape); CorruptEntry if damaged."""
    try:
        with np.load(path, allow_pickle=False) as z:
            stored, scale, mask = z["values"], z["scale"], z["mask"]
            meta, digest = json.loads(str(z["meta"])), str(z["digest"])
    except Exception as e:  # zip/CRC/format errors all mean the same thing here
        raise CorruptEntry(f"{path}: {e.__class__.__name__}") from None
    if _digest(stored, scale, mask) != digest:
        raise CorruptEntry(f"{path}: checksum mismatch")
    shape = tuple(meta["shape"])
    values = stored.astype(np.float32) * scale[:, :, None, None, None]
    valid = np.unpackbits(mask)[: int(np.prod(shape))].reshape(shape).astype(bool)
    return values, valid


# ----------------------------------------------------------------------------- building
@dataclass
class BuildReport:
    computed: int = 0
    reused: int = 0
    recomputed_corrupt: int = 0
    seconds: float = 0.0
    bytes: int = 0


def _entry_ok(path: Path) -> bool | None:
    """True: valid entry; False: corrupt; None: absent."""
    if not path.is_file():
        return None
    try:
        read_entry(path)
        return True
    except CorruptEntry:
        return False


def _compute_and_write(job: tuple[str, StatsSettings, str, str | None, int]) -> int:
    arch, st, path, data_dir, threads = job
    if threads:
        torch.set_num_threads(threads)
    batches = net_batches(st, data_dir)
    values, valid = compute_net(arch, st, batches)
    return write_entry(Path(path), arch, st, values, valid)


def _ignore_sigint() -> None:
    """Pool workers leave Ctrl-C to the parent, which stops the pool; finished entries stay."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_cache(jobs: Sequence[tuple[str, StatsSettings]], cache_dir: Path, data_dir: str | None = None,
                workers: int = 1, progress: bool = True, log: Callable[[str], None] | None = None) -> BuildReport:
    """Compute every missing (or corrupt) entry; finished entries survive an interrupt."""
    log = log or (lambda m: print(m, file=sys.stderr))
    rep = BuildReport()
    todo = []
    for arch, st in jobs:
        p = entry_path(cache_dir, st, arch)
        ok = _entry_ok(p)
        if ok:
            rep.reused += 1
            continue
        if ok is False:
            log(f"eznas: corrupt cache entry {p} (arch {arch}); recomputing")
            rep.recomputed_corrupt += 1
            p.unlink(missing_ok=True)
        todo.append((arch, st, str(p), data_dir, 1 if workers > 1 else 0))
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), desc="statistics", unit="net", disable=not progress)
    try:
        if workers > 1 and len(todo) > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(workers, initializer=_ignore_sigint) as pool:
                for nbytes in pool.imap_unordered(_compute_and_write, todo):
                    rep.computed += 1
                    rep.bytes += nbytes
                    bar.update()
        else:
            for job in todo:
                rep.bytes += _compute_and_write(job)
                rep.computed += 1
                bar.update()
    finally:
        bar.close()
        rep.seconds = time.perf_counter() - t0
    return rep


# ----------------------------------------------------------------------------- loading
@dataclass
class TaskStats:
    """A task's statistics, stacked for vectorised program evaluation.

    ``values`` (rows, 22, R, s, s) float32 with one row per (network, unit) pair, ``net_index``
    (rows,) the network of each row, ``accuracies`` (nets,), ``valid`` the block masks (loaded only
    on request: programs run on the zero-padded values, and the masks would add 25 % memory)."""

    name: str
    archs: list[str]
    accuracies: np.ndarray
    values: torch.Tensor
    valid: torch.Tensor | None
    net_index: torch.Tensor

    @property
    def n_nets(self) -> int:
        return len(self.archs)

    def subset(self, nets: Sequence[int]) -> "TaskStats":
        nets_t = torch.as_tensor(list(nets), dtype=torch.long)
        remap = torch.full((self.n_nets,), -1, dtype=torch.long)
        remap[nets_t] = torch.arange(len(nets_t))
        rows = remap[self.net_index] >= 0
        return TaskStats(self.name, [self.archs[i] for i in nets], self.accuracies[np.asarray(nets)],
                         self.values[rows], None if self.valid is None else self.valid[rows],
                         remap[self.net_index[rows]])


def load_task_stats(task: records.Task, st: StatsSettings, cache_dir: Path, masks: bool = False) -> TaskStats:
    vals, valid, idx = [], [], []
    for i, arch in enumerate(task.archs):
        p = entry_path(cache_dir, st, arch)
        if not p.is_file():
            raise EznasError(f"statistics for {task.name} arch {arch} are not cached; run `eznas stats CONFIG` first")
        try:
            v, m = read_entry(p)
        except CorruptEntry as e:
            raise EznasError(f"corrupt statistics cache entry {e}; run `eznas stats CONFIG` to recompute it") from None
        vals.append(torch.from_numpy(v))
        if masks:
            valid.append(torch.from_numpy(m))
        idx.append(torch.full((v.shape[0],), i, dtype=torch.long))
    return TaskStats(task.name, list(task.archs), task.accuracies.copy(), torch.cat(vals),
                     torch.cat(valid) if masks else None, torch.cat(idx))


# ----------------------------------------------------------------------------- config-level
def config_jobs(cfg: config_mod.Config, splits: Iterable[str] = ("evolve", "validate", "test")
                ) -> tuple[list[tuple[str, StatsSettings]], dict[str, dict[str, records.Task]]]:
    """(arch, settings) for every net of the config's tasks and splits, and the splits by task."""
    jobs: list[tuple[str, StatsSettings]] = []
    by_task: dict[str, dict[str, records.Task]] = {}
    for tc in cfg.tasks:
        task = records.load_task(tc.space, tc.dataset, cfg.data_dir, tc.benchmark)
        parts = task.split(cfg.seed, cfg.split.evolve, cfg.split.validate, cfg.split.test)
        by_task[task.name] = parts
        st = StatsSettings.from_config(cfg, task.space, task.dataset)
        for sp in splits:
            jobs.extend((a, st) for a in parts[sp].archs)
    return jobs, by_task


def cmd_stats(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    jobs, by_task = config_jobs(cfg)
    cache = default_cache_dir(cfg)
    workers = args.workers or cfg.stats.workers
    print(f"statistics for {len(jobs)} networks of {len(by_task)} task(s) -> {cache}")
    rep = build_cache(jobs, cache, cfg.data_dir, workers=workers, progress=sys.stderr.isatty())
    per = rep.seconds / rep.computed if rep.computed else 0.0
    print(f"computed {rep.computed}, reused {rep.reused}, recomputed corrupt {rep.recomputed_corrupt}; "
          f"{rep.seconds:.1f} s ({per:.2f} s/net), {rep.bytes / max(rep.computed, 1) / 1e6:.2f} MB/net written")
    return 0
