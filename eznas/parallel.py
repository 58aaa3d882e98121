"""Map backends for program evaluation: serial, a process pool, or Ray (optional extra).

Every backend holds the same :class:`SearchState` (the tasks' stacked statistics per split and the
scoring options), sent to each worker once: forked into pool workers, ``ray.put`` into Ray's object
store. Work items are small: infix strings plus the nets of the generation's subsample.
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from eznas.errors import EznasError
from eznas.fitness import ProgramResult
from eznas.scoring import Scorer, ScoringOptions
from eznas.stats import TaskStats

Nets = dict[str, list[int]] | None
Job = tuple[list[str], str, Nets]


@dataclass(frozen=True)
class SearchState:
    """What every worker holds: statistics by split (evolve, validate) and task, and the options."""

    splits: Mapping[str, Mapping[str, TaskStats]]
    options: ScoringOptions


_STATE: list[SearchState] = []  # the process's state (one, once set)
_SCORERS: dict[str, tuple[SearchState, tuple, Scorer]] = {}  # split -> (state, key, scorer)


def _exit_when_orphaned(parent: int) -> None:
    """A pool worker whose parent was killed (SIGKILL, out of memory) exits quietly within a second
    instead of waiting forever for work."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="eznas-orphan-watch", daemon=True).start()


def _set_state(state: SearchState, worker: bool = False) -> None:
    if worker:
        import signal

        import torch

        torch.set_num_threads(1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it saves and stops the pool
        _exit_when_orphaned(os.getppid())
    _STATE[:] = [state]
    _SCORERS.clear()


def _scorer(state: SearchState, split: str, nets: Nets) -> Scorer:
    """The scorer of (split, nets), kept while the same sample is asked for (memoised subtrees)."""
    key = (split, None if nets is None else tuple((k, tuple(v)) for k, v in sorted(nets.items())))
    cached = _SCORERS.get(split)
    if cached is not None and cached[0] is state and cached[1] == key:
        return cached[2]
    if split not in state.splits:
        raise EznasError(f"no statistics for split {split!r}; have: {', '.join(state.splits)}")
    # two splits are held at a time: each gets half of the process's memo budget
    half = dataclasses.replace(state.options, memo_bytes=state.options.memo_bytes // 2)
    scorer = Scorer(state.splits[split], half, nets)
    _SCORERS[split] = (state, key, scorer)  # the state is held, so `is` cannot match a new one
    return scorer


def evaluate_programs(state: SearchState, infixes: list[str], split: str, nets: Nets) -> list[ProgramResult]:
    """Fitness of each program on ``split`` (optionally a subsample of nets per task); never raises
    for a bad program: it becomes invalid."""
    return _scorer(state, split, nets).score(infixes)


def _worker_eval(job: Job) -> list[ProgramResult]:
    return evaluate_programs(_STATE[0], *job)


def _chunks(items: list[str], n: int) -> list[list[str]]:
    size = max(1, math.ceil(len(items) / n))
    return [items[i:i + size] for i in range(0, len(items), size)]


class SerialBackend:
    def __init__(self, state: SearchState) -> None:
        _set_state(state)

    def evaluate(self, infixes: list[str], split: str, nets: Nets) -> list[ProgramResult]:
        return evaluate_programs(_STATE[0], infixes, split, nets)

    def close(self) -> None:
        _SCORERS.clear()


class ProcessBackend:
    """A fork-based pool: workers inherit the statistics without copying them through pipes. A worker
    that dies (killed, out of memory) stops the search with one error line instead of a hang; the
    last generation's checkpoint stays for ``--resume``."""

    def __init__(self, state: SearchState, workers: int) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_set_state,
                                        initargs=(state, True))

    def evaluate(self, infixes: list[str], split: str, nets: Nets) -> list[ProgramResult]:
        from concurrent.futures.process import BrokenProcessPool

        jobs = [(c, split, nets) for c in _chunks(infixes, self.workers)]
        try:
            return [r for part in self.pool.map(_worker_eval, jobs) for r in part]
        except BrokenProcessPool:
            raise EznasError("a search worker process died (killed or out of memory); the last checkpoint is "
                             "kept: resume with --resume RUN_DIR, or use fewer search.workers") from None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class RayBackend:
    """Ray actors on an existing cluster (``ray_address`` / ``RAY_ADDRESS``) or a private local Ray;
    each actor receives the state once."""

    def __init__(self, state: SearchState, workers: int, address: str | None = None) -> None:
        from eznas.fanout import connect_ray

        self.ray = ray = connect_ray(address, workers)
        ref = ray.put(state)
        actor = ray.remote(num_cpus=1)(_RayWorker)
        self.actors = [actor.remote(ref) for _ in range(workers)]

    def evaluate(self, infixes: list[str], split: str, nets: Nets) -> list[ProgramResult]:
        chunks = _chunks(infixes, len(self.actors))
        refs = [a.evaluate.remote((c, split, nets)) for a, c in zip(self.actors, chunks)]
        return [r for part in self.ray.get(refs) for r in part]

    def close(self) -> None:
        self.ray.shutdown()


class _RayWorker:
    def __init__(self, state: SearchState) -> None:
        _set_state(state, worker=True)

    def evaluate(self, job: Job) -> list[ProgramResult]:
        return _worker_eval(job)


def make_backend(kind: str, workers: int, state: SearchState,
                 ray_address: str | None = None) -> SerialBackend | ProcessBackend | RayBackend:
    if kind == "serial" or workers <= 1 and kind == "process":
        return SerialBackend(state)
    if kind == "process":
        return ProcessBackend(state, workers)
    if kind == "ray":
        return RayBackend(state, workers, ray_address)
    raise EznasError(f"unknown backend '{kind}'; valid: serial, process, ray")
