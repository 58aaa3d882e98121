"""Progress reporting that works in a terminal and in a log file.

In a terminal this is a tqdm bar. When stderr is not a terminal (CI, ``nohup``, a log file) a bar
would print nothing readable for minutes, so :func:`progress` prints one plain line every
``interval`` seconds instead (``desc: done/total (rate/s, eta)``) and one at the end.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from tqdm import tqdm

T = TypeVar("T")
INTERVAL_S = 30.0


class _Lines(Generic[T]):
    """A tqdm-like counter that prints periodic lines to stderr."""

    def __init__(self, iterable: Iterable[T] | None, total: int | None, desc: str, initial: int,
                 interval: float, unit: str) -> None:
        self.iterable, self.total, self.desc, self.n = iterable, total, desc, initial
        self.interval, self.unit = interval, unit
        self.start = self.last = time.monotonic()
        self.start_n = initial
        self.postfix = ""

    def _line(self) -> str:
        el = time.monotonic() - self.start
        rate = (self.n - self.start_n) / el if el > 0 else 0.0
        tot = f"/{self.total}" if self.total is not None else ""
        eta = ""
        if self.total is not None and rate > 0:
            eta = f", eta {max(self.total - self.n, 0) / rate:.0f} s"
        post = f" {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {self.n}{tot} {self.unit} ({rate:.2f}/s{eta}){post}"

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            print(self._line(), file=sys.stderr, flush=True)

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        self.postfix = s

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def close(self) -> None:
        if self.n != self.start_n:
            print(self._line() + " done" if self.total is None or self.n >= self.total else self._line(),
                  file=sys.stderr, flush=True)

    def __iter__(self) -> Iterator[T]:
        assert self.iterable is not None
        try:
            for x in self.iterable:
                yield x
                self.update()
        finally:
            self.close()

    def __enter__(self) -> "_Lines[T]":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "", *,
             disable: bool = False, initial: int = 0, unit: str = "it", leave: bool = True,
             interval: float = INTERVAL_S) -> Any:
    """A tqdm bar on a terminal, periodic plain lines otherwise, nothing when ``disable``."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if disable or sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, disable=disable, initial=initial, unit=unit,
                    leave=leave, file=sys.stderr)
    return _Lines(iterable, total, desc, initial, interval, unit)
