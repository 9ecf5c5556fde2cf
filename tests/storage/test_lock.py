"""The write lock on its own: one writer across processes and threads; readers never take it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clipsearch.errors import LibraryBusy
from clipsearch.storage.layout import Layout
from clipsearch.storage.lock import write_lock

HOLDER = """
import sys, time
from pathlib import Path
from clipsearch.storage.lock import write_lock
with write_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_in_child(directory: Path, seconds: float) -> subprocess.Popen:
    """A separate process holding the lock; returns once it has it."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_process_fails_at_once_without_waiting(tmp_path: Path) -> None:
    child = hold_in_child(tmp_path, 30)
    try:
        busy = pytest.raises(LibraryBusy, match=rf"pid {child.pid}.*without --no-wait")
        with busy, write_lock(tmp_path, wait=False):
            pass
    finally:
        child.kill()
        child.wait()


def test_waiting_says_why_then_gets_the_lock_when_the_holder_ends(tmp_path: Path) -> None:
    child = hold_in_child(tmp_path, 1.0)
    told: list[str] = []
    with write_lock(tmp_path, wait=True, on_wait=told.append):
        got_it = True
    assert got_it and child.wait() == 0
    assert len(told) == 1 and f"process (pid {child.pid}) to finish" in told[0]


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    child = hold_in_child(tmp_path, 60)
    child.kill()
    child.wait()
    with write_lock(tmp_path, wait=False):
        pass


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    inside, overlaps = [], []

    def writer() -> None:
        with write_lock(tmp_path):
            inside.append(1)
            overlaps.append(len(inside))
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [1, 1, 1, 1]


def test_the_lock_file_is_private_and_names_its_holder(tmp_path: Path) -> None:
    with write_lock(tmp_path):
        lock = Layout(tmp_path).lock
        assert lock.stat().st_mode & 0o777 == 0o600
        assert lock.read_text().strip().isdigit()
