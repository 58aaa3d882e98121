"""Proxy scores cached on disk, so an interrupted or repeated search recomputes nothing.

One JSON file maps a proxy's cache key (its identity plus everything its score depends on: for
``eznas nas`` the space, dataset, network/batch seed and batch size) and an architecture's text
(``str(arch)``) to the score, or to the error of a cell the proxy failed on::

    {"format": "eznas-nas-scores", "version": 1,
     "scores": {"<proxy key>": {"<arch>": 0.615386, "<arch>": {"error": "ValueError: ..."}}}}

The file is rewritten atomically (:mod:`eznas.atomic`) after each new score, or at most every
``flush_interval_s`` seconds when that is set (a study scoring thousands of cheap cells), and on
:meth:`ScoreCache.flush`. A kill leaves the previous complete file. JSON floats round-trip
exactly, so a resumed search sees the same numbers as the first one.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from eznas.atomic import atomic_write_text
from eznas.errors import EznasError

FORMAT = "eznas-nas-scores"
VERSION = 1


@dataclass(frozen=True)
class Cached:
    """A cached outcome: a finite ``value``, or the ``error`` the proxy raised on that cell."""

    value: float | None = None
    error: str | None = None


class ScoreCache:
    """Scores by (proxy key, arch text); in memory only when ``path`` is None."""

    def __init__(self, path: str | os.PathLike | None = None, flush_interval_s: float = 0.0) -> None:
        self.path = Path(path) if path is not None else None
        self.flush_interval_s = float(flush_interval_s)
        self._scores: dict[str, dict[str, float | dict[str, str]]] = {}
        self._dirty = False
        self._last_flush = time.monotonic()
        if self.path is not None and self.path.exists():
            self._scores = _read(self.path)

    def get(self, key: str, arch: str) -> Cached | None:
        entry = self._scores.get(key, {}).get(arch)
        if entry is None:
            return None
        if isinstance(entry, dict):
            return Cached(error=str(entry.get("error", "failed")))
        return Cached(value=float(entry))

    def put(self, key: str, arch: str, value: float | None = None, error: str | None = None) -> None:
        """Record a score (finite) or a failure, then write the file if it is due."""
        if (value is None) == (error is None):
            raise ValueError("give exactly one of value or error")
        if value is not None and not math.isfinite(value):
            raise ValueError("only finite scores are cached; record a failure instead")
        self._scores.setdefault(key, {})[arch] = float(value) if value is not None else {"error": str(error)}
        self._dirty = True
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write the file now if anything changed since the last write."""
        if self.path is None or not self._dirty:
            return
        payload = {"format": FORMAT, "version": VERSION, "scores": self._scores}
        atomic_write_text(self.path, json.dumps(payload, separators=(",", ":")) + "\n")
        self._dirty = False
        self._last_flush = time.monotonic()

    def count(self, key: str | None = None) -> int:
        """Cached outcomes of one proxy key, or of all of them."""
        if key is not None:
            return len(self._scores.get(key, {}))
        return sum(len(v) for v in self._scores.values())

    def keys(self) -> list[str]:
        return list(self._scores)


def _read(path: Path) -> dict[str, dict[str, float | dict[str, str]]]:
    hint = "delete it to start afresh"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise EznasError(f"cannot read the score cache {path}: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EznasError(f"the score cache {path} is not valid JSON; {hint}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("scores"), dict):
        raise EznasError(f"{path} is not an eznas score cache; {hint}")
    if raw.get("version") != VERSION:
        raise EznasError(f"the score cache {path} has version {raw.get('version')!r}, expected {VERSION}; {hint}")
    scores: dict[str, dict[str, float | dict[str, str]]] = {}
    for key, per_arch in raw["scores"].items():
        if not isinstance(per_arch, dict):
            raise EznasError(f"the score cache {path} is malformed at {key!r}; {hint}")
        clean: dict[str, float | dict[str, str]] = {}
        for arch, v in per_arch.items():
            if isinstance(v, dict) and isinstance(v.get("error"), str):
                clean[arch] = {"error": v["error"]}
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                clean[arch] = float(v)
            else:
                raise EznasError(f"the score cache {path} holds a bad entry for {key!r} / {arch!r}; {hint}")
        scores[key] = clean
    return scores
