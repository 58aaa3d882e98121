"""Map backends for program evaluation: serial, a process pool, or Ray (optional extra).

Every backend holds the same *state* (the tasks' stacked statistics per split and the fitness
options), sent to each worker once: forked into pool workers, ``ray.put`` into Ray's object store.
Work items are small: infix strings plus the nets of the generation's subsample.
"""
from __future__ import annotations

import math
from typing import Any

from eznas.errors import EznasError
from eznas.fitness import ProgramResult, UnitLayout, aggregate, correlation, net_scores

#: memo budget of one process for all its evaluators (every task of the evolve and validate
#: splits): a budget per evaluator grew with the number of tasks (12 tasks x 512 MiB ran a worker
#: out of memory)
MEMO_BYTES = 1 << 30
_STATE: dict[str, Any] = {}
_EVALUATORS: dict[str, tuple[Any, tuple[Any, dict[str, tuple[Any, ...]]]]] = {}


def _set_state(state: dict[str, Any]) -> None:
    import torch

    if state.get("_worker"):
        import signal

        torch.set_num_threads(1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it saves and stops the pool
    _STATE.clear()
    _STATE.update(state)
    _EVALUATORS.clear()


def _evaluators(state: dict[str, Any], split: str, nets: dict[str, list[int]] | None):
    """Evaluators for (split, nets), kept while the same sample is asked for (memoised subtrees)."""
    from eznas import program

    key = (split, None if nets is None else tuple((k, tuple(v)) for k, v in sorted(nets.items())))
    cached = _EVALUATORS.get(split)
    if cached is not None and cached[0] == key:
        return cached[1]
    pset = program.load_primitive_set(state["options"]["primitive_set"])
    evs = {}
    budget = MEMO_BYTES // (2 * max(1, len(state[split])))  # two splits are held at a time
    for name, ts in state[split].items():
        sub = ts if nets is None else ts.subset(nets[name])
        evs[name] = (program.Evaluator(sub.values, pset, cache_bytes=budget), UnitLayout.of(sub), sub.accuracies)
    _EVALUATORS[split] = (key, (pset, evs))
    return pset, evs


def evaluate_programs(state: dict[str, Any], infixes: list[str], split: str,
                      nets: dict[str, list[int]] | None) -> list[ProgramResult]:
    """Fitness of each program on ``split`` (optionally a subsample of nets per task); never raises
    for a bad program: it becomes invalid."""
    from eznas import program

    opts = state["options"]
    pset, evs = _evaluators(state, split, nets)
    out = []
    for inf in infixes:
        per_task: dict[str, float] = {}
        try:
            tree = program.parse_infix(inf, pset.pset)  # once per program, not once per task
        except Exception:  # noqa: BLE001 - an unparsable program is invalid on every task
            tree = None
        for name, (ev, layout, acc) in evs.items():
            try:
                if tree is None:
                    raise ValueError("unparsable program")
                scores = net_scores(ev(tree), layout, opts["unit_aggregate"])
                per_task[name] = correlation(scores, acc, opts["kind"])
            except Exception:  # noqa: BLE001 - a broken program must not stop a generation
                per_task[name] = math.nan
        out.append(ProgramResult(aggregate(list(per_task.values()), opts["aggregate"]), per_task))
    return out


def _worker_eval(job: tuple[list[str], str, dict[str, list[int]] | None]) -> list[ProgramResult]:
    return evaluate_programs(_STATE, *job)


def _chunks(items: list[str], n: int) -> list[list[str]]:
    size = max(1, math.ceil(len(items) / n))
    return [items[i:i + size] for i in range(0, len(items), size)]


class SerialBackend:
    def __init__(self, state: dict[str, Any]) -> None:
        _set_state(state)

    def evaluate(self, infixes: list[str], split: str, nets: dict[str, list[int]] | None) -> list[ProgramResult]:
        return evaluate_programs(_STATE, infixes, split, nets)

    def close(self) -> None:
        _EVALUATORS.clear()


class ProcessBackend:
    """A fork-based pool: workers inherit the statistics without copying them through pipes. A worker
    that dies (killed, out of memory) stops the search with one error line instead of a hang; the
    last generation's checkpoint stays for ``--resume``."""

    def __init__(self, state: dict[str, Any], workers: int) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_set_state,
                                        initargs=(dict(state, _worker=True),))

    def evaluate(self, infixes: list[str], split: str, nets: dict[str, list[int]] | None) -> list[ProgramResult]:
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
    """Ray actors on a local (or ``RAY_ADDRESS``) cluster; each actor receives the state once."""

    def __init__(self, state: dict[str, Any], workers: int) -> None:
        try:
            import ray
        except ImportError:
            raise EznasError("search.backend 'ray' needs Ray: pip install 'eznas[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        ref = ray.put(dict(state, _worker=True))
        actor = ray.remote(num_cpus=1)(_RayWorker)
        self.actors = [actor.remote(ref) for _ in range(workers)]

    def evaluate(self, infixes: list[str], split: str, nets: dict[str, list[int]] | None) -> list[ProgramResult]:
        chunks = _chunks(infixes, len(self.actors))
        refs = [a.evaluate.remote((c, split, nets)) for a, c in zip(self.actors, chunks)]
        return [r for part in self.ray.get(refs) for r in part]

    def close(self) -> None:
        self.ray.shutdown()


class _RayWorker:
    def __init__(self, state: dict[str, Any]) -> None:
        _set_state(state)

    def evaluate(self, job: tuple) -> list[ProgramResult]:
        return evaluate_programs(_STATE, *job)


def make_backend(kind: str, workers: int, state: dict[str, Any]):
    if kind == "serial" or workers <= 1 and kind == "process":
        return SerialBackend(state)
    if kind == "process":
        return ProcessBackend(state, workers)
    if kind == "ray":
        return RayBackend(state, workers)
    raise EznasError(f"unknown backend '{kind}'; valid: serial, process, ray")
