"""Run independent jobs (one network each) on a backend and hand every result to the main process.

Backends, as for the search (:mod:`eznas.parallel`):

- ``serial``: in this process, in order;
- ``process``: worker processes of this machine, one job at a time each. A worker that
  dies (killed, out of memory) is replaced and its job retried once; a second death of the same
  job is one :class:`EznasError` line. Workers leave Ctrl-C to the parent and exit quietly
  when it is gone. Where the platform has it, workers are forked from a fork server that has
  imported torch and the job modules once (:data:`WORKER_PRELOAD`; started in the background
  as early as the CLI knows it needs workers, :func:`start_worker_server`), so a worker is ready
  in milliseconds instead of the ~1.5 s a spawned one spends importing torch; they get the
  parent's working directory, ``sys.path`` and environment as spawned ones do. Elsewhere they
  are spawned;
- ``ray``: Ray tasks on an existing cluster (``ray_address`` or ``RAY_ADDRESS``; an unreachable
  address is one error line after a short TCP check) or on a private local Ray of ``workers`` CPUs.
  Ray retries a task whose worker died once (``max_retries=1``), then the error is one line.

Results come back in completion order to ``on_result(index, result)``, which runs in the main
process: callers write their atomic caches there, so a cluster needs no shared filesystem, and
everything finished before an error or Ctrl-C is kept. A job function that raises stops the run
with one error line naming the job (an :class:`EznasError`'s own message is kept).
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from eznas.errors import EznasError

J = TypeVar("J")
R = TypeVar("R")

BACKENDS = ("serial", "process", "ray")
RAY_CONNECT_TIMEOUT_S = 3.0
#: modules the fork server imports once, before it forks workers: torch and the modules of the
#: heavy job functions (statistics, baseline scoring); anything else a job needs is imported by
#: each worker as with spawn
WORKER_PRELOAD = ("torch", "eznas.stats", "eznas.score_fanout")


@dataclass(frozen=True)
class Fanout:
    """Where jobs run: ``backend`` (serial | process | ray), ``workers`` (processes, or CPUs of a
    private local Ray), ``ray_address`` (an existing cluster; None: ``RAY_ADDRESS`` or private),
    ``threads`` (torch threads per worker; 0 keeps torch's default), ``what`` (names jobs in errors)."""

    backend: str = "serial"
    workers: int = 1
    ray_address: str | None = None
    threads: int = 1
    what: str = "job"
    device: str = "cpu"  # what the jobs run on: a Ray task asks the cluster for a GPU share when not cpu

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise EznasError(f"unknown backend '{self.backend}'; valid: {', '.join(BACKENDS)}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise EznasError(f"workers must be a whole number >= 1, got {self.workers}")

    def in_process(self, n_jobs: int) -> bool:
        """Whether ``n_jobs`` jobs run in this process (serial, or one process worker / job)."""
        return self.backend == "serial" or (self.backend == "process" and (self.workers <= 1 or n_jobs <= 1))


def run_jobs(fn: Callable[[J], R], jobs: Sequence[J], fanout: Fanout, on_result: Callable[[int, R], None],
             label: Callable[[J], str] = str, log: Callable[[str], None] | None = None) -> None:
    """``on_result(i, fn(jobs[i]))`` for every job, in completion order, on ``fanout``'s backend.
    ``fn`` must be a module-level function (workers import it); ``label(job)`` names a job in errors."""
    log = log or (lambda m: print(m, file=sys.stderr))
    if not jobs:
        return
    if fanout.in_process(len(jobs)):
        _run_serial(fn, jobs, fanout, on_result, label)
    elif fanout.backend == "process":
        _run_processes(fn, jobs, fanout, on_result, label, log)
    else:
        _run_ray(fn, jobs, fanout, on_result, label)


def _failure(fanout: Fanout, job_label: str, message: str) -> EznasError:
    return EznasError(f"{fanout.what} {job_label}: {message}")


def _call(fn: Callable[[Any], Any], job: Any) -> tuple[bool, Any]:
    """(True, result) or (False, one-line message): an EznasError keeps its text."""
    try:
        return True, fn(job)
    except EznasError as e:
        return False, str(e)
    except Exception as e:  # noqa: BLE001 -- reported as one line naming the job
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return False, f"{type(e).__name__}: {first}" if first else type(e).__name__


# ----------------------------------------------------------------------------- serial
def _run_serial(fn: Callable[[J], R], jobs: Sequence[J], fanout: Fanout, on_result: Callable[[int, R], None],
                label: Callable[[J], str]) -> None:
    import torch

    before = torch.get_num_threads()
    if fanout.threads:  # what one worker would use
        torch.set_num_threads(fanout.threads)
    try:
        for i, job in enumerate(jobs):
            ok, value = _call(fn, job)
            if not ok:
                raise _failure(fanout, label(job), value)
            on_result(i, value)
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- processes
def _context() -> Any:
    """The multiprocessing context of process workers: a fork server preloading
    :data:`WORKER_PRELOAD` where the platform has one, else spawn. Never plain fork: it would copy
    torch's thread pools (and cannot carry CUDA); the fork server forks from a process that has
    imported torch but run nothing."""
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(WORKER_PRELOAD))
    return ctx


def start_worker_server() -> None:
    """Start the fork server of process workers now, in the background, so its imports overlap
    with what the caller does before it needs workers (the CLI calls this when ``--workers`` > 1).
    Returns at once; does nothing where workers are spawned or the server already runs."""
    _ensure_server(_context())


def _ensure_server(ctx: Any) -> None:
    """Start the fork server if ``ctx`` forks from one and it is not running. It is started with
    SIGINT ignored (the disposition survives exec, and its workers inherit it), so a Ctrl-C while
    it imports torch stops the parent with one line instead of a traceback from the server."""
    if ctx.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        forkserver.ensure_running()
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, old if old is not None else signal.SIG_DFL)


def _worker_main(conn: Any, fn: Callable[[Any], Any], threads: int, env: dict[str, str] | None = None) -> None:
    """A process worker: jobs ``(i, job)`` in, ``(i, ok, value)`` out, until ``None`` or EOF.
    ``env`` is the parent's environment when the worker was forked from the (older) fork server."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it stops us
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    # the parent (or the fork server, which exits with the parent): when it is gone we are reparented
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="eznas-orphan-watch", daemon=True).start()
    if threads:
        import torch

        torch.set_num_threads(threads)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        i, job = msg
        ok, value = _call(fn, job)
        try:
            conn.send((i, ok, value))
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Slot:
    proc: Any
    conn: Any
    job: int | None = None


def _run_processes(fn: Callable[[J], R], jobs: Sequence[J], fanout: Fanout, on_result: Callable[[int, R], None],
                   label: Callable[[J], str], log: Callable[[str], None]) -> None:
    from multiprocessing.connection import wait

    ctx = _context()
    _ensure_server(ctx)
    env = dict(os.environ) if ctx.get_start_method() == "forkserver" else None

    def start() -> _Slot:
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=_worker_main, args=(child_end, fn, fanout.threads, env), daemon=True)
        proc.start()
        child_end.close()
        return _Slot(proc, parent_end)

    pending = deque(range(len(jobs)))
    attempts = [0] * len(jobs)
    slots = [start() for _ in range(min(fanout.workers, len(jobs)))]
    try:
        while pending or any(s.job is not None for s in slots):
            for k, s in enumerate(slots):
                if s.job is None and pending:
                    if not s.proc.is_alive():  # died while idle: no job lost, just replace it
                        s.conn.close()
                        slots[k] = s = start()
                    s.job = pending.popleft()
                    attempts[s.job] += 1
                    try:
                        s.conn.send((s.job, jobs[s.job]))
                    except (BrokenPipeError, OSError):
                        pass  # it died just now: the death check below retries the job
            busy = [s for s in slots if s.job is not None]
            wait([s.conn for s in busy] + [s.proc.sentinel for s in busy])
            for k, s in enumerate(slots):
                if s.job is None:
                    continue
                if _poll(s.conn):
                    try:
                        i, ok, value = s.conn.recv()
                    except (EOFError, OSError):
                        pass  # died while answering: handled as a death below
                    else:
                        s.job = None
                        if not ok:
                            raise _failure(fanout, label(jobs[i]), value)
                        on_result(i, value)
                        continue
                if s.job is not None and not s.proc.is_alive():
                    i, code = s.job, s.proc.exitcode
                    s.conn.close()
                    slots[k] = start()
                    how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                    if attempts[i] >= 2:
                        raise _failure(fanout, label(jobs[i]), f"a worker process died twice on it ({how}; killed "
                                       f"or out of memory); finished results are kept")
                    log(f"eznas: a worker process died on {fanout.what} {label(jobs[i])} ({how}); retrying it once")
                    pending.appendleft(i)
    finally:
        _stop(slots)


def _poll(conn: Any) -> bool:
    try:
        return bool(conn.poll())
    except (EOFError, OSError):
        return False


def _stop(slots: list[_Slot]) -> None:
    for s in slots:
        try:
            s.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
    deadline = time.monotonic() + 2.0
    for s in slots:
        s.proc.join(timeout=max(0.0, deadline - time.monotonic()) if s.job is None else 0)
        if s.proc.is_alive():
            s.proc.terminate()  # still busy (an error or Ctrl-C in the parent): its result is not wanted
            s.proc.join(timeout=2.0)
        s.conn.close()


# ----------------------------------------------------------------------------- ray
def ray_address(configured: str | None) -> str | None:
    """The cluster to connect to: the config's ``ray_address``, else ``RAY_ADDRESS``, else None."""
    return configured or os.environ.get("RAY_ADDRESS") or None


def check_reachable(address: str, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """A quick TCP check of ``host:port`` / ``ray://host:port``; one error line when nothing listens."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise EznasError(f"Ray address {address!r} is not host:port, ray://host:port or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise EznasError(f"Ray cluster at {address} is unreachable ({reason}); start it with "
                         f"`ray start --head` or fix ray_address / RAY_ADDRESS") from None


def connect_ray(configured: str | None = None, workers: int = 1) -> Any:
    """The ``ray`` module, initialised: connected to the cluster of :func:`ray_address`, or a private
    local Ray with ``workers`` CPUs. An already initialised Ray is reused."""
    try:
        import ray
    except ImportError:
        raise EznasError("backend 'ray' needs Ray: pip install 'eznas[ray]'") from None
    if ray.is_initialized():
        return ray
    address = ray_address(configured)
    try:
        if address:
            check_reachable(address)
            ray.init(address=address, log_to_driver=False)
        else:
            # address="local": a new private instance, even where a cluster (or a stale
            # /tmp/ray/ray_current_cluster of one) would be joined otherwise
            ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
    except EznasError:
        raise
    except Exception as e:  # noqa: BLE001 -- Ray's many connection errors become one line
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        first = (str(e).strip().splitlines() or [""])[0]
        raise EznasError(f"cannot start or join {where}: {type(e).__name__}: {first}") from None
    return ray


GPU_SHARE = 0.25  # of one GPU per Ray task: one small network does not fill a GPU


def ray_resources(device: str, cluster_gpus: float) -> dict[str, float]:
    """Resources one Ray task asks for: a CPU, plus a share of a GPU when the jobs run on CUDA
    (``cuda``, ``cuda:N``, or ``auto`` on a cluster that has GPUs; Ray hides GPUs from tasks that
    ask for none). ``cuda`` on a cluster without GPUs is one error line instead of a hang."""
    if device == "cpu" or (device == "auto" and cluster_gpus <= 0):
        return {"num_cpus": 1}
    if cluster_gpus <= 0:
        raise EznasError(f"device {device!r}: the Ray cluster has no GPUs; use device cpu or auto")
    return {"num_cpus": 1, "num_gpus": GPU_SHARE}


def _ray_call(fn: Callable[[Any], Any], job: Any, threads: int) -> tuple[bool, Any]:
    if threads:
        import torch

        torch.set_num_threads(threads)
    return _call(fn, job)


def _run_ray(fn: Callable[[J], R], jobs: Sequence[J], fanout: Fanout, on_result: Callable[[int, R], None],
             label: Callable[[J], str]) -> None:
    ray = connect_ray(fanout.ray_address, fanout.workers)
    resources = ray_resources(fanout.device, float(ray.cluster_resources().get("GPU", 0)))
    remote = ray.remote(max_retries=1, **resources)(_ray_call)
    fn_ref = ray.put(fn)
    refs = {remote.remote(fn_ref, job, fanout.threads): i for i, job in enumerate(jobs)}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                i = refs.pop(ref)
                try:
                    ok, value = ray.get(ref)
                except Exception as e:  # noqa: BLE001 -- a worker died twice, a node was lost, ...
                    raise _failure(fanout, label(jobs[i]), f"the Ray task failed after one retry "
                                   f"({type(e).__name__}); finished results are kept") from None
                if not ok:
                    raise _failure(fanout, label(jobs[i]), value)
                on_result(i, value)
    finally:
        for ref in refs:  # after an error or Ctrl-C: nobody takes these results
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 -- finished meanwhile, or the cluster is gone
                pass
