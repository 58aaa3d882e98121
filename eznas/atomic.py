"""Atomic file writes: write a temporary file beside the target, fsync, rename into place.

A reader (or a resumed run after a kill) sees the old file or the new one, never half of one.
Outputs named by a user are checked *before* any work starts (:func:`check_output`) and are only
ever replaced when they are regular files: a symlink, a directory, a device node or a file the
caller protects (a run's own ``config.yaml``, say) is refused with one error line.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from eznas.errors import EznasError


def check_output(path: str | os.PathLike, what: str = "output", protect: Iterable[str | os.PathLike] = ()) -> Path:
    """Validate an output path before any work: its directory must exist and be writable, and an
    existing target must be a regular file (not a symlink, directory or device) outside ``protect``.
    Returns the path. Raises :class:`EznasError` with one line otherwise."""
    p = Path(path)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise EznasError(f"{what} {str(path)!r} is not a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise EznasError(f"{what} {p}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EznasError(f"{what} {p}: directory {parent} is not writable")
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise EznasError(f"{what} {p} is a symbolic link; refusing to replace it")
        if stat.S_ISDIR(st.st_mode):
            raise EznasError(f"{what} {p} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise EznasError(f"{what} {p} is not a regular file; refusing to replace it")
        for q in protect:
            try:
                if os.path.samefile(p, q):
                    raise EznasError(f"{what} {p} would overwrite {q}; choose another path")
            except FileNotFoundError:
                continue
    return p


def atomic_write(path: str | os.PathLike, write: Callable[[IO[Any]], None], binary: bool = False) -> None:
    """Call ``write(f)`` on a temporary file in ``path``'s directory and rename it to ``path``.

    An existing ``path`` that is not a regular file is never replaced (:class:`EznasError`); a full
    disk or another OS error while writing leaves the old file untouched and becomes one
    :class:`EznasError` naming the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise EznasError(f"{path} exists and is not a regular file; refusing to replace it")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError as e:
        raise EznasError(f"cannot write {path}: {e.strerror or e}") from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions of a new file
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        reason = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise EznasError(f"cannot write {path}: {reason} (the previous version, if any, is kept)") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))
