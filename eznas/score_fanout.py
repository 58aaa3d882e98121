"""Baseline (and exported-proxy) scoring for ``eznas evaluate``, one network per job on a backend.

A job names one net (space, dataset, arch), the batch settings, the device and the proxies still
missing from the score cache (by the strings the user gave, so a worker resolves them itself).
The worker builds the net with ``seed``, draws the batch, seeds torch's global RNG with ``seed``
for the net (so a proxy that draws random numbers gives the same score on every backend and in
every order) and returns ``(label, score, seconds, error)`` per proxy; the main process puts
them in the atomic score cache. A proxy failing on one net scores NaN (ranked last), as before.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from eznas.devices import resolve as resolve_device
from eznas.devices import to_device
from eznas.errors import EznasError

Outcome = tuple[str, float, float, str | None]  # label, score, seconds, error (None: scored)


@dataclass(frozen=True)
class ScoreJob:
    space: str
    dataset: str
    arch: str
    seed: int
    batch_size: int
    width: int | None
    depth: int | None
    data_dir: str | None
    device: str
    sources: tuple[str, ...]  # the proxies as given (names, .py files, run directories)
    labels: tuple[str, ...]  # the columns to score on this net

    def label(self) -> str:
        return f"{self.space}/{self.dataset} arch {self.arch}"


_SPECS: dict[tuple[str, ...], dict[str, Any]] = {}  # per process: sources -> {label: ProxySpec}
_BATCH: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor, Any]] = {}


def remember_specs(sources: Sequence[str], specs: Sequence[Any]) -> None:
    """Let this process's jobs use already loaded specs (the serial path loads nothing twice)."""
    _SPECS[tuple(sources)] = {s.label: s for s in specs}


def _specs(sources: tuple[str, ...]) -> dict[str, Any]:
    if sources not in _SPECS:
        from eznas.evaluate import resolve_proxies

        _SPECS[sources] = {s.label: s for s in resolve_proxies(list(sources))}
    return _SPECS[sources]


def _batch(job: ScoreJob, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, Any]:
    from eznas.batches import make_batches
    from eznas.losses import space_loss
    from eznas.spaces import get_space

    key = (job.space, job.dataset, job.seed, job.batch_size, job.data_dir, str(device))
    if key not in _BATCH:
        sp = get_space(job.space)
        b = make_batches(job.dataset, job.batch_size, job.seed, num_classes=sp.num_classes(job.dataset),
                         root=job.data_dir, size=sp.input_size(job.dataset))
        x, y = to_device(device, b.D, b.targets)
        _BATCH.clear()
        _BATCH[key] = (x, y, space_loss(sp, job.dataset, x, y, default_none=True))
    return _BATCH[key]


def score_job(job: ScoreJob) -> list[Outcome]:
    """Score one net with the job's proxies (a fan-out job function)."""
    from eznas.spaces import build

    device = resolve_device(job.device)
    specs = _specs(job.sources)
    missing = [lab for lab in job.labels if lab not in specs]
    if missing:
        raise EznasError(f"proxy {missing[0]!r} is not among {', '.join(job.sources)}")
    x, y, loss = _batch(job, device)
    model = build(job.space, job.arch, job.dataset, seed=job.seed, width=job.width, depth=job.depth).to(device)
    out: list[Outcome] = []
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(job.seed)
        base = [lab for lab in job.labels if specs[lab].baseline is not None]
        if base:  # baselines that share a forward/backward pass are computed together
            from eznas.proxies.passes import score_baselines

            outcomes = score_baselines([specs[lab].baseline for lab in base], model, x, y, loss)
            for lab in base:
                o = outcomes[specs[lab].baseline]
                out.append((lab, o.score, o.seconds, None if o.error is None else f"{lab}: {o.error}"))
        for lab in job.labels:
            if specs[lab].baseline is not None:
                continue
            t0 = time.perf_counter()
            try:
                s, err = float(specs[lab].score(model, x, y, loss)), None
            except EznasError:
                raise
            except Exception as e:  # noqa: BLE001 -- a proxy failing on one net scores NaN, reported once
                s, err = math.nan, f"{lab}: {type(e).__name__}: {e}"
            out.append((lab, s, time.perf_counter() - t0, err))
    return out


def score_jobs(jobs: Sequence[ScoreJob], fanout: Any, on_net: Callable[[int, list[Outcome]], None]) -> None:
    """Run ``jobs`` on ``fanout`` (:class:`eznas.fanout.Fanout`); ``on_net(i, outcomes)`` per net,
    in the main process, as nets finish."""
    from eznas.fanout import run_jobs

    run_jobs(score_job, jobs, fanout, on_net, label=ScoreJob.label)
