"""One thread per open Library: the web app's requests queue for it instead of sharing it.

A Library holds a SQLite connection, which belongs to the thread that opened it, and a search
is a few milliseconds of NumPy and FAISS work on a machine with few cores: running the app's
library calls one at a time on a thread of their own costs nothing and keeps the index and the
text tower warm in that one place.  Slow work (duplicate grouping, the library's disk usage)
runs in a second lane with a Library of its own, so it never holds up a query.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from clipsearch.library import Library

T = TypeVar("T")


class Lane:
    """A daemon thread that opens a Library on first use and runs jobs on it in order.

    Daemon, not a ThreadPoolExecutor: a duplicate search still running when the server stops
    must not keep the process alive."""

    def __init__(self, directory: Path | None, name: str) -> None:
        self._directory = directory
        self._library: Library | None = None
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((future, fn, args))
        return future

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(library, *args) in the lane and wait for it without blocking the loop."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def open(self) -> None:
        """Open the library now, so a wrong --library fails before the server starts."""
        self.submit(lambda library: None).result()

    def close(self) -> None:
        self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(self._open(), *args)
            except BaseException as exc:  # handed to the awaiting request
                future.set_exception(exc)
            else:
                future.set_result(result)
        if self._library is not None:
            self._library.close()

    def _open(self) -> Library:
        if self._library is None:
            self._library = Library.open(self._directory)
        return self._library
