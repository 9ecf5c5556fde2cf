"""One writer at a time: a second one waits with a message or, with --no-wait, fails at once.
Readers never wait for a writer and always see a committed state."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, committed, run_cli, save_photo

from clipsearch import Library

pytestmark = pytest.mark.slow
PHOTOS = 60


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("concurrency") / "Photos"
    for i in range(PHOTOS):
        save_photo(root / f"p{i:02d}.jpg", seed=i)
    return root


def start_index(library: Path, photos: Path, checkpoint: Path, stderr=subprocess.PIPE):
    """A real `clipsearch index` that commits after nearly every batch.  In torch: the tiny
    model in onnxruntime indexed all 60 photos within one commit interval, before the test
    could pause it holding the lock."""
    args = ["index", photos, "--library", library, "--model", TINY, "--pretrained", checkpoint]
    args += ["--backend", "torch"]
    return subprocess.Popen(
        [sys.executable, "-m", "clipsearch", *map(str, args), "--batch-size", "2", "--json"],
        stdout=subprocess.PIPE,
        stderr=stderr,
        env={**os.environ, "CLIPSEARCH_COMMIT_SECONDS": "0.1"},
    )


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the process ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def holds_lock(library: Path, proc: subprocess.Popen) -> bool:
    with contextlib.suppress(OSError):
        return (library / "write.lock").read_text() == str(proc.pid)
    return False


@contextlib.contextmanager
def paused(proc: subprocess.Popen):
    """Freeze a process where it stands, its locks and open transaction held."""
    proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def reaped(*procs: subprocess.Popen):
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_second_writer_waits_or_fails_fast(photos, tmp_path, tiny_checkpoint):
    library = tmp_path / "lib"
    waiting_log = tmp_path / "second.err"
    with contextlib.ExitStack() as cleanup:
        first = start_index(library, photos, tiny_checkpoint)
        cleanup.enter_context(reaped(first))
        wait_for(lambda: holds_lock(library, first) and committed(library), first, "a commit")
        with paused(first):
            busy = run_cli("index", photos, "--library", library, "--no-wait")
            assert busy.returncode == 2
            message = busy.stderr.decode()
            assert message.count("\n") == 1, message
            assert f"another clipsearch process (pid {first.pid}) is writing to" in message
            assert "--no-wait" in message
            forget = run_cli("forget", photos, "--library", library, "--no-wait")
            assert forget.returncode == 2 and b"is writing to" in forget.stderr
            with waiting_log.open("wb") as log:
                second = start_index(library, photos, tiny_checkpoint, stderr=log)
            cleanup.enter_context(reaped(second))
            says_waiting = lambda: b"waiting for another" in waiting_log.read_bytes()  # noqa: E731
            wait_for(says_waiting, second, "the second writer to say it waits")
        out, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
        assert json.loads(out)["indexed"] == PHOTOS
        out, _ = second.communicate(timeout=300)
        assert second.returncode == 0, waiting_log.read_text()
    after = json.loads(out)
    assert (after["indexed"], after["unchanged"]) == (0, PHOTOS)  # it scanned after the first


def test_readers_see_the_last_commit_while_a_writer_works(photos, tmp_path, tiny_checkpoint):
    library = tmp_path / "lib"
    writer = start_index(library, photos, tiny_checkpoint)
    with reaped(writer):
        wait_for(lambda: committed(library) > 0, writer, "a first commit")
        with paused(writer):  # most likely inside an open write transaction
            count = committed(library)
            found = run_cli("query", "a photo", "-n", "1000", "--json", "--library", library)
            assert found.returncode == 0, found.stderr
            hits = json.loads(found.stdout)
            assert len(hits) == len({h["path"] for h in hits}) == count
            status = run_cli("status", "--json", "--library", library)
            assert json.loads(status.stdout)["images"] == count
        seen = [count]
        while writer.poll() is None:
            with Library.open(library) as lib:
                paths = [h.path for h in lib.search("a photo", top=1000)]
            assert len(paths) == len(set(paths)) and all(Path(p).parent == photos for p in paths)
            assert seen[-1] <= len(paths) <= PHOTOS
            seen.append(len(paths))
        assert writer.returncode == 0
    with Library.open(library) as lib:
        assert len(lib.search("a photo", top=1000)) == PHOTOS
