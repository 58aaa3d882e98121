"""Keep freed tensor memory for reuse, so program evaluation on many rows is not page-fault bound.

glibc's malloc serves a large allocation with a fresh ``mmap`` and returns it to the system when
freed, once the block is larger than its (dynamic, at most 32 MB) threshold. An intermediate
tensor of 10k statistics rows is 40 MB, so every primitive then page-faults its output in afresh:
a third of the CPU time of program evaluation at 10k rows was system time. :func:`reuse_freed_memory`
raises the mmap and trim thresholds (``mallopt``) so freed blocks stay in the heap and are reused;
the process keeps its peak memory instead of handing it back. Elsewhere than glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import sys

__all__ = ["reuse_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: allocations below this come from the (reused) heap: 1 GiB covers intermediates of ~250k rows
MMAP_THRESHOLD = 1 << 30
#: free memory at the top of the heap is returned to the system only beyond this
TRIM_THRESHOLD = (1 << 31) - 1
_state: dict[str, bool] = {}


def reuse_freed_memory() -> bool:
    """Raise glibc's mmap / trim thresholds once per process; True when they are in effect."""
    if "done" not in _state:
        _state["done"] = _set_thresholds()
    return _state["done"]


def _set_thresholds() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
