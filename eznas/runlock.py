"""One run per run directory: ``RUN_DIR/.lock`` holds the owner's pid while a search writes there.

The lock is an exclusive POSIX record lock (``lockf``) on ``RUN_DIR/.lock`` -- released by the
kernel when the owner dies, however it dies, and not inherited by forked worker processes, which
may outlive a killed owner for a moment -- and the file names the owner (``{"pid": ..., "host": ...}``) for the error
message. A second run into the same directory fails at once with one line naming the pid. A lock
file left behind by a process that is gone (killed with SIGKILL, a crashed machine) is taken over
with a warning. On a file system without record locks the owner's pid alone decides (alive: busy).
The lock is released, and the file removed, when the run ends (:meth:`RunLock.release`, or
leaving the ``with`` block).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from types import TracebackType

from eznas.errors import EznasError

LOCK_NAME = ".lock"
_HELD: set[tuple[int, int]] = set()  # (device, inode) of the lock files this process holds


def _file_id(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _read_owner(fd: int) -> dict | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096)
        owner = json.loads(raw.decode()) if raw.strip() else None
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _describe(owner: dict | None) -> str:
    if not owner or not isinstance(owner.get("pid"), int):
        return "another process"
    host = owner.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"pid {owner['pid']}{where}"


class RunLock:
    """Exclusive ownership of a run directory (see the module docstring)."""

    def __init__(self, run_dir: str | os.PathLike, warn: bool = True) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.warn = warn
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        for _ in range(20):  # retried only if the file is replaced between open and lock
            fd = self._open()
            try:
                if self._lock(fd) and self._still_ours(fd):
                    self._claim(fd)
                    self.fd = fd
                    _HELD.add(_file_id(fd))
                    return self
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise EznasError(f"could not lock {self.path}: it keeps changing; is another run starting there?")

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise EznasError(f"cannot create the run lock {self.path}: {e.strerror or e}") from None

    def _lock(self, fd: int) -> bool:
        """True once this process holds the lock; EznasError if a live run holds it."""
        key = _file_id(fd)
        if key in _HELD:  # POSIX locks do not exclude the process that holds them
            raise EznasError(f"run directory {self.path.parent} is in use by this process already")
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            raise EznasError(f"run directory {self.path.parent} is in use by another eznas run "
                             f"({_describe(_read_owner(fd))}); wait for it to finish or use another run_dir") from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
                raise EznasError(f"cannot lock {self.path}: {e.strerror or e}") from None
            owner = _read_owner(fd)  # no record locks here: the recorded pid decides
            pid = owner.get("pid") if owner else None
            if isinstance(pid, int) and pid != os.getpid() and owner.get("host") == socket.gethostname() \
                    and pid_alive(pid):
                raise EznasError(f"run directory {self.path.parent} is in use by another eznas run "
                                 f"(pid {pid}); wait for it to finish or use another run_dir") from None
        return True

    def _still_ours(self, fd: int) -> bool:
        """The locked file is still the one at ``path`` (not unlinked by a finishing owner)."""
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            return False

    def _claim(self, fd: int) -> None:
        owner = _read_owner(fd)
        if owner and self.warn:
            print(f"eznas: warning: taking over the stale lock of {_describe(owner)} in {self.path.parent} "
                  f"(that run is gone)", file=sys.stderr)
        data = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except OSError as e:
            raise EznasError(f"cannot write the run lock {self.path}: {e.strerror or e}") from None

    def release(self) -> None:
        """Remove the lock file and unlock (idempotent)."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        _HELD.discard(_file_id(fd))
        try:
            if self._still_ours(fd):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # closing drops the record lock

    def __enter__(self) -> "RunLock":
        return self.acquire() if self.fd is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def lock_run_dir(run_dir: str | os.PathLike, warn: bool = True) -> RunLock:
    """Acquire and return the lock of ``run_dir`` (which must exist)."""
    return RunLock(run_dir, warn).acquire()
