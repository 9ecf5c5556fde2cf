"""The decode workers of a torch-free encoder: same vectors in file order as decoding inline,
and a photo that kills its worker is recorded as such while the others are embedded (the run
neither hangs nor stops)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import save_photo
from fakes import NumpyPixelEncoder

from clipsearch.indexing.pipeline import Embedded, Failed, embed_files
from clipsearch.indexing.scan import normalise_root, scan

TESTS = Path(__file__).resolve().parents[1]


def _files(folder: Path, count: int):
    for seed in range(count):
        save_photo(folder / f"p{seed:02d}.jpg", seed=seed)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    return sorted(scan([normalise_root(folder)]).files, key=lambda f: f.path)


def _run(files, workers: int) -> list:
    batches = embed_files(
        files, NumpyPixelEncoder(), batch_size=4, max_pixels=None, workers=workers
    )
    return [outcome for batch in batches for outcome in batch]


def test_workers_give_what_inline_decoding_gives(tmp_path):
    files = _files(tmp_path, 13)
    inline, pooled = _run(files, 0), _run(files, 2)
    assert [o.path for o in pooled] == [o.path for o in inline]
    assert sum(isinstance(o, Failed) for o in pooled) == 1
    for a, b in zip(inline, pooled, strict=True):
        if isinstance(a, Embedded):
            np.testing.assert_array_equal(a.vector, b.vector)


def test_a_photo_that_kills_its_worker_is_failed_and_the_rest_embedded(tmp_path):
    from PIL import Image

    files = _files(tmp_path, 12)
    Image.new("RGB", (7, 40)).save(tmp_path / "narrow.png")
    script = (
        "import sys\n"
        f"sys.path[:0] = [{str(TESTS)!r}]\n"
        "from fakes import DyingEncoder\n"
        "from clipsearch.indexing.pipeline import WORKER_DIED, Embedded, embed_files\n"
        "from clipsearch.indexing.scan import normalise_root, scan\n"
        f"files = sorted(scan([normalise_root({str(tmp_path)!r})]).files, key=lambda f: f.path)\n"
        "out = [o for b in embed_files(files, DyingEncoder(), batch_size=4, max_pixels=None,"
        " workers=2) for o in b]\n"
        "assert sorted(o.path for o in out) == sorted(f.path for f in files)\n"
        "died = [o.path for o in out if getattr(o, 'reason', None) == WORKER_DIED]\n"
        "assert [p.rsplit('/', 1)[1] for p in died] == ['narrow.png'], died\n"
        "assert sum(isinstance(o, Embedded) for o in out) == 12\n"
    )
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, timeout=60, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert len(files) == 13


def test_with_another_thread_alive_workers_start_from_a_clean_server(tmp_path):
    """Forking while another thread (the first run's export) held a lock left a worker stuck
    for ever; with a second thread alive the pool starts its workers by forkserver instead,
    and gives the same outcomes."""
    import threading

    from clipsearch.indexing import pipeline

    files = _files(tmp_path, 9)
    assert pipeline._context().get_start_method() == "fork"
    import torch  # noqa: F401  # as in a first run, or this test process

    # a process holding torch never forks plain workers (filelock's at-fork handler hung one)
    assert pipeline._context(plain=True).get_start_method() == "forkserver"
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert pipeline._context().get_start_method() == "forkserver"
        pooled = _run(files, 2)
    finally:
        release.set()
        other.join()
    inline = _run(files, 0)
    assert [o.path for o in pooled] == [o.path for o in inline]
    for a, b in zip(inline, pooled, strict=True):
        if isinstance(a, Embedded):
            np.testing.assert_array_equal(a.vector, b.vector)


def test_with_another_thread_alive_dataloader_workers_start_from_a_clean_server(
    tmp_path, monkeypatch
):
    """The torch path's DataLoader forked its workers whatever threads ran: a clean-clone run
    hung with a worker stuck in torch's seeding (a lock held at fork time by another thread).
    It takes the same start method as the plain workers, with the same outcomes."""
    import threading

    import torch.utils.data
    from fakes import PixelEncoder

    contexts = []
    real = torch.utils.data.DataLoader

    def recording(*args, **kwargs):
        contexts.append(kwargs.get("multiprocessing_context"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.utils.data, "DataLoader", recording)
    files = _files(tmp_path, 9)

    def run(workers: int) -> list:
        batches = embed_files(files, PixelEncoder(), batch_size=4, max_pixels=None, workers=workers)
        return [outcome for batch in batches for outcome in batch]

    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        pooled = run(1)
    finally:
        release.set()
        other.join()
    alone = run(1)
    assert [c.get_start_method() for c in contexts] == ["forkserver", "fork"]
    inline = run(0)
    assert [o.path for o in pooled] == [o.path for o in inline] == [o.path for o in alone]
    for a, b in zip(inline, pooled, strict=True):
        if isinstance(a, Embedded):
            np.testing.assert_array_equal(a.vector, b.vector)


def _worker_stop_settings() -> tuple:
    import signal

    return (
        signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
        signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
        signal.getsignal(signal.SIGHUP) == signal.SIG_IGN,
    )


def test_a_forked_worker_dies_of_sigterm_whatever_the_main_process_handles():
    """Workers forked while `index`'s stop guard handled SIGTERM inherited that Python handler:
    one asked to stop went on sleeping, an orphan holding the terminal's pipes (a clean-clone
    run hung there).  They take SIGTERM's default action, and leave Ctrl-C to the main one."""
    import multiprocessing
    import signal
    from concurrent.futures import ProcessPoolExecutor

    from clipsearch.indexing import pipeline

    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(1, context, initializer=pipeline._only_main_stops) as pool:
            assert pool.submit(_worker_stop_settings).result(timeout=60) == (True, True, True)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_abandoned_workers_cut_connection_prints_no_traceback(capsys):
    """multiprocessing's resource sharer, through which a DataLoader worker hands over a
    batch's shared memory, reports a connection cut by Ctrl-C (EOFError) through
    sys.excepthook: a clean-clone run printed that traceback."""
    from clipsearch.indexing import pipeline

    for error in (EOFError(), BrokenPipeError(), ConnectionResetError()):
        pipeline._quiet_when_abandoned(type(error), error, None)
    pipeline._quiet_when_abandoned(ValueError, ValueError("real"), None)
    printed = capsys.readouterr().err
    assert printed.strip().endswith("ValueError: real")
    assert "EOFError" not in printed and "Pipe" not in printed and "Reset" not in printed
