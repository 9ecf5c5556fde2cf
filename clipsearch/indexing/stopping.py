"""How an index run stops: the first Ctrl-C (or `kill`, or the SIGHUP of a closed terminal)
ends it once the batch in hand is stored, and what was embedded is saved; a second one quits
at once.

Why a guard, not Python's KeyboardInterrupt wherever it lands: landing between counting a
photo and storing it, it made the summary say 81 indexed while the database held 80 (a CI run
of the interrupt test).  Stores happen inside `shielded()`, where a stop waits for the end of
the section.  A second press must not wait for anything: it stops the decode workers and ends
the process with os._exit.  What was committed stays, as after kill -9 (the kill trials of
tests/cli/test_cli_faults.py leave a consistent library at every moment), and no Python
unwinding runs that could print a traceback on the way out.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator

from ..errors import EXIT_INTERRUPTED, warn

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
QUIT_NOTE = "stopped at once (asked twice): the photos saved before stay indexed"


class _Guard:
    def __init__(self) -> None:
        self.shields = 0  # shielded sections open
        self.pending = False  # a stop asked for inside one
        self.stopping = False  # the first stop was asked for

    def on_signal(self, signum, frame) -> None:
        if self.stopping:
            quit_now()
        self.stopping = True
        if self.shields:
            self.pending = True
            return
        raise KeyboardInterrupt


_guard: _Guard | None = None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Handle SIGINT, SIGTERM and SIGHUP as above while the block runs (main thread only:
    Python runs signal handlers there alone)."""
    global _guard
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    guard = _Guard()
    previous = {sig: signal.signal(sig, guard.on_signal) for sig in STOP_SIGNALS}
    _guard = guard
    try:
        yield
    finally:
        _guard = None
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A section a first stop does not cut in two: it takes effect at the section's end.
    Without stop_on_signals (the Python API) Ctrl-C is Python's usual KeyboardInterrupt."""
    guard = _guard
    if guard is None:
        yield
        return
    guard.shields += 1
    try:
        yield
    finally:
        guard.shields -= 1
        if not guard.shields and guard.pending:
            guard.pending = False
            raise KeyboardInterrupt


def quit_now() -> None:
    """Kill the decode workers and end the process: 130, as for any Ctrl-C."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    # torch's DataLoader watches its workers with a SIGCHLD handler that raises when one is
    # killed; with the workers stopped on purpose, that would be a traceback.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in multiprocessing.active_children():  # SIGKILL: nothing in them to save
        with contextlib.suppress(OSError):
            child.kill()
    _unlink_semaphores()
    if sys.stderr.isatty():
        sys.stderr.write("\x1b[?25h\n")  # the progress bar hid the cursor
    warn(QUIT_NOTE)
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def _unlink_semaphores() -> None:
    """Unlink the named semaphores of the queues made for workers started by forkserver (the
    first run of a model, while its export thread runs), as the exit handlers that os._exit
    skips would have: else multiprocessing's resource tracker removes them and warns about
    "11 leaked semaphore objects" on stderr."""
    import gc
    from multiprocessing import resource_tracker, synchronize

    for found in gc.get_objects():
        if issubclass(type(found), synchronize.SemLock):  # type(): no lazy module's getattr
            name = getattr(getattr(found, "_semlock", None), "name", None)
            if name:
                with contextlib.suppress(OSError):
                    synchronize.sem_unlink(name)
                    resource_tracker.unregister(name, "semaphore")
