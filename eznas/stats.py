"""Network statistics of a config's tasks: an on-disk cache of sketched statistics, and stacked loading.

Recording itself is :mod:`eznas.runtime` (the code ``eznas export`` copies into proxies): for
every unit and each input D, N, P, one forward and one backward pass (BatchNorm in training mode,
the space's loss via :mod:`eznas.losses`) record the 22 tensors, each sketched to (R, s, s).

Cache entries are ``.npz`` files (no pickle): values as stored by
:func:`eznas.runtime.encode` (float16 or float32 divided by a per-(unit, tensor) float32 scale,
so small gradients do not underflow), the scales, block validity masks, a SHA-256 of the payload
and the entry's own arch key and settings (checked on every read, so an entry file swapped for
another network's is detected). Writes go to a temporary file and are renamed into place, so a
killed build leaves no half-written entry; a corrupt or mismatching entry is reported and
recomputed by :func:`build_cache` and a one-line error when loading.
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

import eznas
from eznas import records
from eznas import config as config_mod
from eznas import runtime
from eznas.atomic import atomic_write
from eznas.batches import Batches, make_batches
from eznas.devices import resolve as resolve_device
from eznas.devices import to_device
from eznas.errors import EznasError
from eznas.fanout import Fanout, run_jobs
from eznas.images import images_for
from eznas.losses import space_loss
from eznas.progress import progress as progress_bar
from eznas.spaces import build as build_net
from eznas.spaces import get_space

FORMAT_VERSION = 1

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
def net_batches(st: StatsSettings, data_dir: str | None = None) -> Batches:
    sp = get_space(st.space)
    return make_batches(st.dataset, st.batch_size, st.seed, num_classes=sp.num_classes(st.dataset),
                        noise_scale=st.noise_scale, root=data_dir, size=sp.input_size(st.dataset))


def compute_net(arch: str, st: StatsSettings, batches: Batches,
                on_tensor: TensorCallback | None = None,
                device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sketched statistics of one network (float32, before storage, on the CPU): values (units, 22,
    R, s, s) and validity masks, recorded by :func:`eznas.runtime.record_statistics` with the
    network and the batches on ``device`` (None: the CPU)."""
    model = build_net(st.space, arch, st.dataset, seed=st.seed, width=st.width, depth=st.depth)
    D, targets, N, P = batches.D, batches.targets, batches.N, batches.P
    if device is not None:  # also for the CPU: the same path as on a GPU (tested on CPU)
        model = model.to(device)
        D, targets, N, P = to_device(device, D, targets, N, P)
    loss = space_loss(get_space(st.space), st.dataset, D, targets)
    try:
        return runtime.record_statistics(model, D, targets, st.R, st.s, st.seed, st.noise_scale,
                                         loss, N, P, on_tensor)
    except ValueError as e:
        raise EznasError(f"{st.space} arch {arch}: {e}") from None


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
    stored_t, scale_t = runtime.encode(values, st.dtype)
    stored, scale = stored_t.numpy(), scale_t.numpy()
    mask = np.packbits(valid.numpy().reshape(-1))
    meta = np.array(json.dumps({"arch": arch, "settings": st.__dict__, "shape": list(values.shape),
                                "format": FORMAT_VERSION}))
    digest = np.array(_digest(stored, scale, mask))
    atomic_write(path, lambda f: np.savez(f, values=stored, scale=scale, mask=mask, meta=meta, digest=digest),
                 binary=True)
    return path.stat().st_size


class CorruptEntry(Exception):
    pass


def read_entry(path: Path, arch: str | None = None, st: StatsSettings | None = None) -> tuple[np.ndarray, np.ndarray]:
    """values (units, 22, R, s, s) float32 (:func:`eznas.runtime.decode`) and the valid mask (same
    shape); CorruptEntry if the file is damaged or (given ``arch`` / ``st``) holds another entry."""
    try:
        with np.load(path, allow_pickle=False) as z:
            stored, scale, mask = z["values"], z["scale"], z["mask"]
            meta, digest = json.loads(str(z["meta"])), str(z["digest"])
        shape = tuple(int(n) for n in meta["shape"])
        settings = meta["settings"]
        held = meta["arch"]
    except Exception as e:  # zip/CRC/format/JSON errors all mean the same thing here
        raise CorruptEntry(f"{path}: {e.__class__.__name__}") from None
    if _digest(stored, scale, mask) != digest or stored.shape != shape:
        raise CorruptEntry(f"{path}: checksum mismatch")
    if arch is not None and held != arch:
        raise CorruptEntry(f"{path}: holds arch {held}, not {arch}")
    if st is not None and settings != json.loads(json.dumps(st.__dict__)):
        raise CorruptEntry(f"{path}: holds statistics of other settings")
    values = runtime.decode(torch.from_numpy(stored), torch.from_numpy(scale)).numpy()
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


def _entry_problem(path: Path, arch: str, st: StatsSettings) -> str | None:
    """None for a valid entry, else why it must be computed ("missing" or what is wrong with it)."""
    if not path.is_file():
        return "missing"
    try:
        read_entry(path, arch, st)
        return None
    except CorruptEntry as e:
        return str(e)


_BATCHES: dict[tuple[StatsSettings, str | None], Batches] = {}  # per process: a worker's last batches


def _batches_of(st: StatsSettings, data_dir: str | None) -> Batches:
    """Batches depend on the settings but not on the arch: reuse them across a worker's jobs."""
    key = (st, data_dir)
    if key not in _BATCHES:
        _BATCHES.clear()
        _BATCHES[key] = net_batches(st, data_dir)
    return _BATCHES[key]


def compute_job(job: tuple[str, StatsSettings, str | None, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """One network's statistics (a fan-out job: arch, settings, data dir, device name); the main
    process writes the entry. ``auto`` resolves here, on the machine that runs the job."""
    arch, st, data_dir, device = job
    return compute_net(arch, st, _batches_of(st, data_dir), device=resolve_device(device))


def build_cache(jobs: Sequence[tuple[str, StatsSettings]], cache_dir: Path, data_dir: str | None = None,
                workers: int = 1, progress: bool = True, log: Callable[[str], None] | None = None,
                backend: str = "process", device: str = "cpu", ray_address: str | None = None) -> BuildReport:
    """Compute every missing (or corrupt) entry on ``backend`` (:mod:`eznas.fanout`, one network per
    job) and ``device``; the entries are written here as results arrive, so finished entries survive
    an interrupt or a failed job."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise EznasError(f"--workers must be a whole number >= 1, got {workers}")
    log = log or (lambda m: print(m, file=sys.stderr))
    fan = Fanout(backend, workers, ray_address, threads=1 if workers > 1 else 0, what="statistics of", device=device)
    if backend != "ray":  # a Ray worker resolves `auto` on its own node
        device = str(resolve_device(device))
    rep = BuildReport()
    todo: list[tuple[str, StatsSettings, str | None, str]] = []
    paths: list[Path] = []
    for arch, st in jobs:
        p = entry_path(cache_dir, st, arch)
        problem = _entry_problem(p, arch, st)
        if problem is None:
            rep.reused += 1
            continue
        if problem != "missing":
            log(f"eznas: corrupt cache entry {problem} (arch {arch}); recomputing")
            rep.recomputed_corrupt += 1
            p.unlink(missing_ok=True)
        todo.append((arch, st, data_dir, device))
        paths.append(p)
    t0 = time.perf_counter()
    bar = progress_bar(total=len(todo), desc="statistics", unit="net", disable=not progress)

    def write(i: int, result: tuple[torch.Tensor, torch.Tensor]) -> None:
        arch, st = todo[i][0], todo[i][1]
        rep.bytes += write_entry(paths[i], arch, st, *result)
        rep.computed += 1
        bar.update()

    try:
        run_jobs(compute_job, todo, fan, write, label=lambda j: f"{j[1].space}/{j[1].dataset} arch {j[0]}", log=log)
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
            v, m = read_entry(p, arch, st)
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
    if args.workers is not None and args.workers < 1:
        raise EznasError(f"--workers must be >= 1, got {args.workers}")
    cfg = config_mod.load(args.config)
    if getattr(args, "backend", None):
        cfg.stats.backend = args.backend
    jobs, by_task = config_jobs(cfg)
    cache = default_cache_dir(cfg)
    workers = args.workers or cfg.stats.workers
    print(f"statistics for {len(jobs)} networks of {len(by_task)} task(s) -> {cache} "
          f"({cfg.stats.backend}, {workers} worker(s))")
    rep = build_cache(jobs, cache, cfg.data_dir, workers=workers, backend=cfg.stats.backend,
                      device=device_option(args, cfg), ray_address=cfg.ray_address)
    per = rep.seconds / rep.computed if rep.computed else 0.0
    print(f"computed {rep.computed}, reused {rep.reused}, recomputed corrupt {rep.recomputed_corrupt}; "
          f"{rep.seconds:.1f} s ({per:.2f} s/net), {rep.bytes / max(rep.computed, 1) / 1e6:.2f} MB/net written")
    return 0


def device_option(args: argparse.Namespace, cfg: config_mod.Config) -> str:
    """``--device`` when given (it also becomes ``cfg.device``), else the config's ``device``."""
    from eznas.devices import cli_or_config

    cfg.device = cli_or_config(getattr(args, "device", None), cfg.device)
    return cfg.device
