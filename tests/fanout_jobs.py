"""Job functions for tests/test_backends.py, in a module that imports nothing heavy: spawned
workers import it to unpickle the function."""
from __future__ import annotations

import os
from pathlib import Path


def square(x: int) -> int:
    return x * x


def die_once(job: tuple[int, str]) -> int:
    """Job 2 kills its worker the first time it runs (a marker file says whether it ran)."""
    x, marker = job
    if x == 2 and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(3)
    return x * x


def die_always(job: int) -> int:
    if job == 2:
        os._exit(9)
    return job * job


def fail(job: int) -> int:
    if job == 1:
        raise ValueError("bad input\nsecond line")
    return job


def where(job: str) -> tuple[str | None, str, bool]:
    """The worker's value of environment variable ``job``, its working directory, and whether
    torch was already imported when the job arrived (workers forked from the preloading server)."""
    import sys

    return os.environ.get(job), os.getcwd(), "torch" in sys.modules
