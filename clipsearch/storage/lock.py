"""One writer at a time per library; readers never wait for the lock.

The lock is a POSIX record lock (`lockf`) on a lock file: the kernel releases it when its
holder dies, so a killed `index` never leaves the library stuck.  Not `flock`: that lock
belongs to the open file, which the DataLoader's forked decode workers inherit, so a
`kill -9`'d indexer's orphaned workers would go on holding it.  Record locks do not
exclude threads of one process, so a per-directory thread lock does that.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import LibraryBusy
from .layout import Layout

_BUSY = (errno.EACCES, errno.EAGAIN)
_in_process: dict[str, threading.Lock] = {}
_registry_guard = threading.Lock()


@contextlib.contextmanager
def write_lock(
    directory: Path, *, wait: bool = True, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the library's write lock; wait for it (telling `on_wait`) or fail at once."""
    local = _thread_lock(directory)
    if not local.acquire(blocking=False):
        _busy(directory, "", wait, on_wait)
        local.acquire()
    try:
        with _file_lock(directory, wait, on_wait):
            yield
    finally:
        local.release()


@contextlib.contextmanager
def _file_lock(directory: Path, wait: bool, on_wait: Callable[[str], None] | None):
    fd = os.open(Layout(directory).lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in _BUSY:
                raise
            _busy(directory, _holder(fd), wait, on_wait)
            fcntl.lockf(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _thread_lock(directory: Path) -> threading.Lock:
    with _registry_guard:
        return _in_process.setdefault(os.path.realpath(directory), threading.Lock())


def _busy(directory: Path, holder: str, wait: bool, on_wait) -> None:
    """Fail at once for --no-wait; otherwise say why nothing seems to happen."""
    if not wait:
        raise LibraryBusy(
            f"another clipsearch process{holder} is writing to {directory}: "
            "wait for it, or run again without --no-wait"
        )
    if on_wait:
        on_wait(f"waiting for another clipsearch process{holder} to finish with the library…")


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip() or 0)
        if pid:
            return f" (pid {pid})"
    return ""
