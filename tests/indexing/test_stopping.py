"""Stopping an index run: a stop never cuts a stored batch in two, a second one quits at once.

The real-signal versions (Ctrl-C to the whole process group, once and twice) are in
tests/cli/test_cli_faults.py; these land a signal at one exact spot, inside a store."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, committed, gone, save_photo

from clipsearch import Library
from clipsearch.indexing.stopping import QUIT_NOTE, shielded, stop_on_signals
from clipsearch.storage.db import Store


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for seed in range(12):
        save_photo(root / f"p{seed:02d}.jpg", seed=seed)
    return root


def signal_inside_the_store(monkeypatch, at_call: int) -> None:
    """SIGINT as the `at_call`-th photo is stored, before its row is written: the spot where
    the summary once counted a photo that the database did not hold (81 against 80)."""
    original, calls = Store.add, []

    def add(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == at_call:
            signal.raise_signal(signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Store, "add", add)


def test_a_stop_inside_a_store_waits_for_the_batch(tmp_path, photos, tiny_checkpoint, monkeypatch):
    signal_inside_the_store(monkeypatch, at_call=6)
    with (
        Library.open(
            tmp_path / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True,
            batch_size=4,
        ) as lib,
        stop_on_signals(),
    ):  # fmt: skip
        report = lib.index([photos])
    assert report.interrupted
    assert report.indexed == committed(tmp_path / "lib") == 8  # the whole second batch


def test_without_the_guard_ctrl_c_is_pythons_keyboard_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt), shielded():
        signal.raise_signal(signal.SIGINT)


def test_a_stop_in_a_shielded_section_comes_at_its_end() -> None:
    reached = []
    with pytest.raises(KeyboardInterrupt), stop_on_signals():
        with shielded():
            with shielded():
                signal.raise_signal(signal.SIGINT)
                reached.append("inner")
            reached.append("outer")
        reached.append("after")  # not reached: the stop comes as the outer section ends
    assert reached == ["inner", "outer"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_stop_quits_at_once_and_stops_the_workers() -> None:
    """In a child process: a worker that ignores SIGINT (as decode workers do) is stopped
    too, the exit status is 130 and stderr holds our one line."""
    script = (
        "import multiprocessing, signal, time\n"
        "from clipsearch.indexing.stopping import stop_on_signals\n"
        "def work():\n"
        "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "    time.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    worker = multiprocessing.get_context('fork').Process(target=work)\n"
        "    worker.start()\n"
        "    print(worker.pid, flush=True)\n"
        "    with stop_on_signals():\n"
        "        try:\n"
        "            signal.raise_signal(signal.SIGINT)\n"
        "        except KeyboardInterrupt:\n"
        "            signal.raise_signal(signal.SIGINT)\n"  # the second press
        "        time.sleep(30)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 130
    assert done.stderr.decode() == f"clipsearch: {QUIT_NOTE}\n"
    assert gone(lambda stat: stat[0] == int(done.stdout), seconds=5)
