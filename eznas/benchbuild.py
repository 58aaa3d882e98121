"""``eznas bench build config.yaml``: a small benchmark of your own.

Samples ``bench.archs`` distinct architectures of ``bench.space`` (uniformly with the space's
``random_key``, seeded by the top-level ``seed``; for NB201 that includes cells whose output is
cut off by ``none`` edges, as in NAS-Bench-201 itself), trains every one once per training seed
on ``bench.dataset`` (see :mod:`eznas.images`) and writes a benchmark file in the record format
:mod:`eznas.records` reads::

    {"<dataset>": {"<arch key>": {"val_accuracy": mean top-1 % over seeds on the test split,
                                  "seed_accuracies": [...], "seeds": [...],
                                  "params": {"score": parameters in millions}, "train": {...}}},
     "_meta": {"space", "dataset", "num_classes", "input_size", "config", "command", ...}}

Training: SGD (momentum 0.9, weight decay) with a cosine learning rate decayed per step,
cross-entropy, on the dataset's train split, no augmentation; the network is built and
initialised with the training seed, which also orders the mini-batches. Before testing, the
BatchNorm statistics are recomputed on the train split under the final weights (the running
averages of a short training lag behind it, which added seed noise).

Resumable: after every training the finished (arch, seed) results are written atomically to
``<out>.partial.json``; a rerun reuses every result whose training settings match (also those
of an existing final file), so it continues where it stopped. The final file is written
atomically and the partial file is then removed. A lock file ``<out>.lock`` keeps a second
build from writing the same files at the same time.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import eznas
from eznas import config as config_mod
from eznas import images
from eznas.batches import normalise
from eznas.atomic import atomic_write_text
from eznas.errors import EznasError
from eznas.spaces import build as build_net
from eznas.spaces import get_space

PARTIAL_FORMAT = 1
PARTIAL_SUFFIX = ".partial.json"
Result = dict[str, float]  # accuracy (top-1 %), params (M), seconds
JobKey = tuple[str, int]  # (arch key, training seed)


@dataclass(frozen=True)
class TrainSettings:
    """Everything besides (arch, seed) that changes a training result."""

    space: str
    dataset: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    width: int | None
    depth: int | None
    momentum: float = 0.9
    schedule: str = "cosine"  # per step, to 0
    bn_recalibration: bool = True  # BatchNorm statistics recomputed on the train split before testing

    @classmethod
    def from_config(cls, b: config_mod.BenchConfig) -> "TrainSettings":
        return cls(get_space(b.space).name, b.dataset, b.epochs, b.batch_size, b.lr, b.weight_decay, b.width, b.depth)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- sampling
def sample_archs(space: str, n: int, seed: int) -> list[str]:
    """``n`` distinct arch keys drawn uniformly by ``seed`` (a prefix of the draw for a larger n)."""
    sp = get_space(space)
    rng = np.random.default_rng(seed)
    keys: dict[str, None] = {}
    tries = 0
    while len(keys) < n:
        keys.setdefault(sp.random_key(rng))
        tries += 1
        if tries > 100 * n + 1000:
            raise EznasError(f"could not sample {n} distinct {sp.name} architectures; lower bench.archs")
    return list(keys)


# ----------------------------------------------------------------------------- training
def _tensors(ds: images.ImageDataset, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    pixels, labels = ds.split(split)
    return normalise(pixels, ds.name, None, (ds.mean, ds.std)), torch.from_numpy(labels).long()


def _recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Replace BatchNorm running statistics by exact averages over ``x`` under the final weights
    (the running averages of a short training lag behind its last steps)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Top-1 accuracy in percent (BatchNorm in eval mode)."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = model(x[i:i + batch_size])
            correct += int((out.argmax(1) == y[i:i + batch_size]).sum())
    return 100.0 * correct / len(x)


def train_one(arch: str, seed: int, ts: TrainSettings, data_root: str | None = None) -> Result:
    """Train ``arch`` with ``seed`` under ``ts``; its test accuracy, parameter count, seconds."""
    t0 = time.perf_counter()
    ds = images.load_dataset(ts.dataset, data_root)
    x, y = _tensors(ds, "train")
    x_test, y_test = _tensors(ds, "test")
    model = build_net(ts.space, arch, ts.dataset, seed=seed, width=ts.width, depth=ts.depth)
    params = get_space(ts.space).param_count(model)
    steps_per_epoch = math.ceil(len(x) / ts.batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=ts.lr, momentum=ts.momentum, weight_decay=ts.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=ts.epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(ts.epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), ts.batch_size):
            idx = perm[i:i + ts.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
    _recalibrate_bn(model, x, 512)
    acc = _evaluate(model, x_test, y_test, 512)
    return {"accuracy": acc, "params": params, "seconds": time.perf_counter() - t0}


def _train_job(job: tuple[str, int, TrainSettings, str | None]) -> tuple[str, int, Result]:
    arch, seed, ts, root = job
    return arch, seed, train_one(arch, seed, ts, root)


def _init_worker() -> None:
    """Pool workers: one intra-op thread each; Ctrl-C is left to the parent."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


# ----------------------------------------------------------------------------- progress files
def partial_path(out: Path) -> Path:
    return out.with_name(out.name + PARTIAL_SUFFIX)


def write_json_atomic(path: Path, doc: Any, indent: int | None = None) -> None:
    atomic_write_text(path, json.dumps(doc, indent=indent) + "\n")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EznasError(f"{what} {path} is unreadable ({e.__class__.__name__}); delete it to start over") from None


def load_partial(path: Path, ts: TrainSettings) -> dict[JobKey, Result]:
    """Finished results of a previous run with the same training settings (empty if none)."""
    if not path.is_file():
        return {}
    doc = _read_json(path, "progress file")
    if not isinstance(doc, dict) or doc.get("format") != PARTIAL_FORMAT or not isinstance(doc.get("results"), list):
        raise EznasError(f"progress file {path} is not an eznas bench progress file; delete it to start over")
    if doc.get("train") != ts.as_dict():
        raise EznasError(f"progress file {path} was made with other training settings ({doc.get('train')}); "
                         f"delete it or change bench.out")
    done: dict[JobKey, Result] = {}
    for r in doc["results"]:
        try:
            done[(str(r["arch"]), int(r["seed"]))] = {k: float(r[k]) for k in ("accuracy", "params", "seconds")}
        except (KeyError, TypeError, ValueError):
            raise EznasError(f"progress file {path} has a malformed result {r!r}; delete it to start over") from None
    return done


def save_partial(path: Path, ts: TrainSettings, done: dict[JobKey, Result]) -> None:
    results = [{"arch": a, "seed": s, **r} for (a, s), r in done.items()]
    write_json_atomic(path, {"format": PARTIAL_FORMAT, "train": ts.as_dict(), "results": results})


def results_from_final(path: Path, ts: TrainSettings) -> dict[JobKey, Result]:
    """Per-seed results stored in an existing benchmark file built with the same settings."""
    if not path.is_file():
        return {}
    doc = _read_json(path, "benchmark file")
    meta = doc.get("_meta", {}) if isinstance(doc, dict) else {}
    if meta.get("train") != ts.as_dict():
        return {}
    secs = float(meta.get("seconds_per_training") or 0.0)  # per-training times are not kept there
    done: dict[JobKey, Result] = {}
    try:
        for arch, rec in doc.get(ts.dataset, {}).items():
            for seed, acc in zip(rec.get("seeds", []), rec.get("seed_accuracies", [])):
                done[(arch, int(seed))] = {"accuracy": float(acc), "params": float(rec["params"]["score"]),
                                           "seconds": secs}
    except (AttributeError, KeyError, TypeError, ValueError):
        raise EznasError(f"benchmark file {path} has malformed records; delete it to start over") from None
    return done


def lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def build_lock(out: Path) -> Iterator[None]:
    """Only one build writes ``out`` (and its progress file) at a time; a lock left by a process
    that is gone is taken over."""
    lock = lock_path(out)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            text = lock.read_text().strip() if lock.is_file() else ""
            if text.isdigit() and not _pid_alive(int(text)):
                lock.unlink(missing_ok=True)
                continue
            who = f"pid {text}" if text.isdigit() else "another process"
            raise EznasError(f"another `eznas bench build` ({who}) is writing {out}; wait for it, or delete "
                             f"{lock} if none is running") from None
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- the build
@dataclass
class BuildReport:
    archs: int = 0
    trainings: int = 0  # (arch, seed) pairs in the benchmark
    trained: int = 0  # trained by this run
    reused: int = 0  # taken from a previous run
    seconds: float = 0.0
    finished: bool = False
    out: Path | None = None
    trained_keys: list[JobKey] = field(default_factory=list)


def _run_jobs(jobs: list[tuple[str, int, TrainSettings, str | None]], workers: int
              ) -> Iterator[tuple[str, int, Result]]:
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_init_worker) as pool:
            yield from pool.imap_unordered(_train_job, jobs)
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for job in jobs:
            yield _train_job(job)
    finally:
        torch.set_num_threads(threads)


def build_benchmark(cfg: config_mod.Config, workers: int | None = None, progress: bool = True,
                    max_trainings: int | None = None, command: str | None = None,
                    log: Callable[[str], None] | None = None) -> BuildReport:
    """Train what is missing, save progress after each training, write the final file when all is
    done. ``max_trainings`` stops after that many new trainings (the partial file keeps them)."""
    with build_lock(Path(cfg.bench.out)):
        return _build(cfg, workers, progress, max_trainings, command,
                      log or (lambda m: print(m, file=sys.stderr)))


def _build(cfg: config_mod.Config, workers: int | None, progress: bool, max_trainings: int | None,
           command: str | None, log: Callable[[str], None]) -> BuildReport:
    b = cfg.bench
    ts = TrainSettings.from_config(b)
    ds = images.load_dataset(b.dataset, cfg.data_dir)  # fail early on a bad dataset
    sp = get_space(b.space)
    archs = sample_archs(b.space, b.archs, cfg.seed)
    out = Path(b.out)
    part = partial_path(out)
    done = {**results_from_final(out, ts), **load_partial(part, ts)}
    wanted = [(a, s) for a in archs for s in b.seeds]
    todo = [k for k in wanted if k not in done]
    rep = BuildReport(archs=len(archs), trainings=len(wanted), reused=len(wanted) - len(todo), out=out)
    if rep.reused:
        log(f"eznas: resuming: {rep.reused} of {len(wanted)} trainings already done")
    if max_trainings is not None:
        todo = todo[:max_trainings]
    jobs = [(a, s, ts, cfg.data_dir) for a, s in todo]
    t0 = time.perf_counter()
    bar = tqdm(total=len(wanted), initial=rep.reused, desc="bench", unit="train", disable=not progress)
    try:
        for arch, seed, res in _run_jobs(jobs, workers or b.workers):
            done[(arch, seed)] = res
            save_partial(part, ts, done)
            rep.trained += 1
            rep.trained_keys.append((arch, seed))
            bar.update()
    finally:
        bar.close()
        rep.seconds = time.perf_counter() - t0
    if all(k in done for k in wanted):
        doc = benchmark_doc(cfg, ts, ds, sp.input_size(b.dataset), archs, done, command)
        write_json_atomic(out, doc, indent=None)
        part.unlink(missing_ok=True)
        rep.finished = True
    return rep


def _record(arch: str, seeds: list[int], done: dict[JobKey, Result], ts: TrainSettings) -> dict[str, Any]:
    accs = [round(done[(arch, s)]["accuracy"], 4) for s in seeds]
    train = {k: v for k, v in ts.as_dict().items() if k not in ("space", "dataset")}
    return {"val_accuracy": round(float(np.mean(accs)), 4), "seed_accuracies": accs, "seeds": list(seeds),
            "params": {"score": round(done[(arch, seeds[0])]["params"], 6)}, "train": train}


def benchmark_doc(cfg: config_mod.Config, ts: TrainSettings, ds: images.ImageDataset, input_size: int,
                  archs: list[str], done: dict[JobKey, Result], command: str | None = None) -> dict[str, Any]:
    b = cfg.bench
    secs = [done[(a, s)]["seconds"] for a in archs for s in b.seeds if done[(a, s)]["seconds"] > 0]
    meta = {
        "space": ts.space, "dataset": ts.dataset, "num_classes": ds.num_classes, "input_size": input_size,
        "train_images": len(ds.train_images), "test_images": len(ds.test_images),
        "accuracy": "top-1 % on the dataset's held-out test split, mean over training seeds (val_accuracy)",
        "sampling": f"{len(archs)} distinct archs drawn uniformly with the space's random_key, seed {cfg.seed}",
        "train": ts.as_dict(),
        "config": {"seed": cfg.seed, "bench": asdict(b)},
        "command": command or f"eznas bench build {cfg.source or 'CONFIG'}",
        "seconds_per_training": round(float(np.mean(secs)), 3) if secs else None,
        "generator": f"eznas {eznas.__version__} bench build",
    }
    records = {a: _record(a, b.seeds, done, ts) for a in archs}
    return {ts.dataset: records, "_meta": meta}


# ----------------------------------------------------------------------------- CLI
def cmd_bench_build(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    if args.workers is not None and args.workers < 1:
        raise EznasError(f"--workers must be >= 1, got {args.workers}")
    b = cfg.bench
    workers = args.workers or b.workers
    print(f"bench: {b.archs} {b.space} archs x {len(b.seeds)} seed(s) on {b.dataset}, {b.epochs} epoch(s), "
          f"{workers} worker(s) -> {b.out}")
    rep = build_benchmark(cfg, workers=workers, progress=sys.stderr.isatty(),
                          command=f"eznas bench build {cfg.source}")
    per = rep.seconds / rep.trained if rep.trained else 0.0
    print(f"trained {rep.trained}, reused {rep.reused} of {rep.trainings}; {rep.seconds:.1f} s ({per:.2f} s/training)")
    print(f"wrote {rep.out} ({rep.archs} archs); regenerate with: eznas bench build {cfg.source}")
    return 0


def iter_records(path: str | os.PathLike) -> Iterable[tuple[str, dict[str, Any]]]:
    """(arch, record) pairs of a benchmark file written by :func:`build_benchmark`."""
    doc = _read_json(Path(path), "benchmark file")
    ds = doc.get("_meta", {}).get("dataset")
    if ds not in doc:
        raise EznasError(f"benchmark file {path} has no '_meta.dataset' task; was it written by eznas bench build?")
    return list(doc[ds].items())
