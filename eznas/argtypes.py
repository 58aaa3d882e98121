"""Command-line value types and a parser whose errors are one line.

``type=positive_int`` (and friends) reject a bad value while the arguments are parsed, before any
work; :class:`OneLineParser` prints every parse error as the single line
``eznas: error: argument --workers: must be a whole number >= 1, got '-3'`` and exits 2 (``--help``
still shows the usage).
"""
from __future__ import annotations

import argparse
from typing import NoReturn

SEED_LIMIT = 2**32


def _whole(text: str) -> int | None:
    try:
        return int(text, 10)
    except (TypeError, ValueError):
        return None


def positive_int(text: str) -> int:
    """A whole number >= 1 (``--workers``, ``--limit``, ``--rank``, ``--budget``, batch sizes)."""
    v = _whole(text)
    if v is None or v < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return v


def seed_int(text: str) -> int:
    """A seed: a whole number in [0, 2**32)."""
    v = _whole(text)
    if v is None or not 0 <= v < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"a seed must be a whole number in [0, 2**32), got {text!r}")
    return v


class OneLineParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors are one line ``eznas: error: ...`` (exit 2)."""

    def error(self, message: str) -> NoReturn:
        hint = f" (see {self.prog} --help)" if "required" in message or "invalid choice" in message else ""
        self.exit(2, f"eznas: error: {' '.join(message.split())}{hint}\n")
