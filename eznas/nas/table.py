"""Score the NATS-Bench table's NB201 cells with many proxies at once, on any device and backend.

A study over thousands of cells (``experiments/table_scores.py``: every proxy of the zero-shot NAS
study and of the hybrid search, on all 10,161 cells and three datasets) needs each cell's network
built once and every proxy computed from it, not one network per proxy. One job is one
(dataset, cell):

1. the network is built with ``seed`` on ``device`` and one batch is drawn with ``seed`` (noise at
   the programs' scale);
2. the statistics of the evolved programs are recorded once (torch's RNG seeded with ``seed``) and
   every program is evaluated on them (programs must share statistics settings);
3. the baselines run with their shared passes (:func:`eznas.proxies.passes.score_baselines`, torch's
   RNG seeded with ``seed`` again).

Results per dataset go to one CSV (``arch_key`` + one column per proxy, empty = failed) written
atomically every ``flush_s`` seconds and at the end, so a run stopped by Ctrl-C, a deadline or a
killed worker keeps everything finished, and the same command continues where it stopped.
"""
from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from eznas.atomic import atomic_write_text
from eznas.errors import EznasError

SPACE = "nb201"
ARCH = "arch_key"
Outcome = tuple[float, float, str | None]  # score (nan: failed), seconds, error


@dataclass(frozen=True)
class CellJob:
    dataset: str
    arch: str
    seed: int
    batch_size: int
    data_dir: str | None
    device: str
    baselines: tuple[str, ...]
    programs: tuple[tuple[str, str], ...]  # (label, expression)
    settings: tuple[tuple[str, Any], ...]  # the programs' ProxySettings, as items

    def label(self) -> str:
        return f"{SPACE}/{self.dataset} arch {self.arch}"


_BATCHES: dict[tuple[Any, ...], Any] = {}
_PROGRAMS: dict[tuple[str, ...], list[Any]] = {}


def _batches(job: CellJob, device: torch.device, noise_scale: float) -> Any:
    from eznas.batches import make_batches
    from eznas.export.score import batches_on
    from eznas.spaces import get_space

    key = (job.dataset, job.seed, job.batch_size, job.data_dir, str(device), noise_scale)
    if key not in _BATCHES:
        sp = get_space(SPACE)
        b = make_batches(job.dataset, job.batch_size, job.seed, num_classes=sp.num_classes(job.dataset),
                         noise_scale=noise_scale, root=job.data_dir, size=sp.input_size(job.dataset))
        _BATCHES.clear()
        _BATCHES[key] = batches_on(b, device)
    return _BATCHES[key]


def _programs(exprs: tuple[str, ...]) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """The programs as functions of the statistics (parsed once per process, never executed;
    torch-only, as the exported proxies)."""
    from functools import partial

    from eznas.expression import evaluate, parse

    if exprs not in _PROGRAMS:
        _PROGRAMS[exprs] = [partial(evaluate, parse(e)) for e in exprs]
    return _PROGRAMS[exprs]


def score_cell(job: CellJob) -> dict[str, Outcome]:
    """Every proxy of ``job`` on its cell (a fan-out job function)."""
    from eznas import runtime
    from eznas.devices import resolve
    from eznas.losses import space_loss
    from eznas.proxies.passes import score_baselines
    from eznas.spaces import build, get_space

    device = resolve(job.device)
    settings = dict(job.settings)
    b = _batches(job, device, float(settings.get("noise_scale", 0.1)))
    loss = space_loss(get_space(SPACE), job.dataset, b.D, b.targets, default_none=True)
    model = build(SPACE, job.arch, job.dataset, seed=job.seed).to(device)
    out: dict[str, Outcome] = {}
    rngs = [device.index or 0] if device.type == "cuda" else []
    if job.programs:
        with torch.random.fork_rng(devices=rngs):
            torch.manual_seed(job.seed)
            t0 = time.perf_counter()
            try:
                values = runtime.proxy_statistics(settings, model, b.D, b.targets, loss, b.N, b.P)
                err = None
            except Exception as e:  # noqa: BLE001 -- every program fails on this cell
                values, err = None, f"{type(e).__name__}: {e}"
            t_stats = (time.perf_counter() - t0) / len(job.programs)
            agg = settings.get("unit_aggregate", "mean")
            for (label, _), prog in zip(job.programs, _programs(tuple(e for _, e in job.programs))):
                t1 = time.perf_counter()
                if values is None:
                    out[label] = (math.nan, t_stats, err)
                    continue
                try:
                    s = float(runtime.aggregate_net(runtime.program_scores(prog, values), agg))
                    out[label] = (s, t_stats + time.perf_counter() - t1, None if math.isfinite(s) else "not finite")
                except Exception as e:  # noqa: BLE001
                    out[label] = (math.nan, t_stats, f"{type(e).__name__}: {e}")
        model.zero_grad(set_to_none=True)
    if job.baselines:
        with torch.random.fork_rng(devices=rngs):
            torch.manual_seed(job.seed)
            for name, o in score_baselines(job.baselines, model, b.D, b.targets, loss).items():
                out[name] = (o.score, o.seconds, o.error)
    return out


# ----------------------------------------------------------------------------- result files
class TableFile:
    """One dataset's scores: ``{arch: {column: score}}``, read from and written to a CSV."""

    def __init__(self, path: Path, columns: Sequence[str], flush_s: float = 20.0) -> None:
        self.path, self.columns, self.flush_s = path, list(columns), flush_s
        self.rows: dict[str, dict[str, float]] = {}
        self._dirty, self._last = False, time.monotonic()
        if path.exists():
            self._read()

    def _read(self) -> None:
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            have = [c for c in (reader.fieldnames or []) if c != ARCH]
            if ARCH not in (reader.fieldnames or []):
                raise EznasError(f"{self.path} is not a table-scores CSV (no {ARCH} column); delete it to start afresh")
            for c in have:
                if c not in self.columns:
                    self.columns.append(c)
            for row in reader:
                self.rows[row[ARCH]] = {c: float(row[c]) if row.get(c) not in (None, "") else math.nan for c in have}

    def missing(self, arch: str) -> list[str]:
        got = self.rows.get(arch, {})
        return [c for c in self.columns if c not in got]

    def put(self, arch: str, scores: dict[str, float]) -> None:
        self.rows.setdefault(arch, {}).update(scores)
        self._dirty = True
        if time.monotonic() - self._last >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        if not self._dirty:
            return
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([ARCH, *self.columns])
        for arch, sc in self.rows.items():
            w.writerow([arch, *("" if not math.isfinite(sc.get(c, math.nan)) else repr(sc[c]) for c in self.columns)])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, buf.getvalue())
        self._dirty, self._last = False, time.monotonic()


class Deadline(Exception):
    """Raised in the main process when the time budget is spent (finished rows are kept)."""


@dataclass
class Progress:
    done: int = 0
    failed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per proxy, summed over nets
    counts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)  # per proxy: "dataset arch: error" per failed cell


def run_table(jobs: Sequence[CellJob], files: dict[str, TableFile], fanout: Any, deadline: float | None,
              on_done: Callable[[int], None] | None = None) -> Progress:
    """Score ``jobs`` on ``fanout``; rows go to ``files[dataset]``. Stops cleanly at ``deadline``
    (a ``time.monotonic()`` value) and on Ctrl-C, flushing every file either way."""
    from eznas.fanout import run_jobs

    prog = Progress()

    def on_result(i: int, res: dict[str, Outcome]) -> None:
        job = jobs[i]
        files[job.dataset].put(job.arch, {k: v[0] for k, v in res.items()})
        prog.done += 1
        prog.failed += any(v[2] is not None for v in res.values())
        for k, (_, sec, err) in res.items():
            prog.seconds[k] = prog.seconds.get(k, 0.0) + sec
            prog.counts[k] = prog.counts.get(k, 0) + 1
            if err is not None:
                prog.errors.setdefault(k, []).append(f"{job.dataset} {job.arch}: {err}")
        if on_done is not None:
            on_done(prog.done)
        if deadline is not None and time.monotonic() >= deadline:
            raise Deadline

    try:
        run_jobs(score_cell, jobs, fanout, on_result, label=CellJob.label)
    except Deadline:
        pass
    finally:
        for f in files.values():
            f.flush()
    return prog


def program_settings(settings: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Evolved programs' statistics settings (a built-in proxy's ``settings``) as hashable items."""
    return tuple(sorted(settings.items()))
