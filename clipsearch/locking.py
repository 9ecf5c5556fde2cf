"""One writer at a time per library; readers never take the lock.

An advisory `flock` on a lock file is released by the kernel when its holder dies, so a
killed `index` never leaves the library stuck.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import LibraryBusy

LOCK_NAME = "write.lock"


@contextlib.contextmanager
def write_lock(
    directory: Path, *, wait: bool = True, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the library's write lock; wait for it (telling `on_wait`) or fail at once."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise LibraryBusy(
                    f"another clipsearch process{holder} is writing to {directory}: "
                    "wait for it, or run again without --no-wait"
                ) from None
            if on_wait:
                on_wait(
                    f"waiting for another clipsearch process{holder} to finish with the library…"
                )
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip() or 0)
        if pid:
            return f" (pid {pid})"
    return ""
