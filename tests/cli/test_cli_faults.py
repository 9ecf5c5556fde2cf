"""Nothing lost, nothing stuck: real kills of a real indexer, interrupts, full or read-only
disks, and damaged, edited or foreign libraries.

The kill tests run `clipsearch index` as a subprocess and SIGKILL it at seeded moments (while
Python starts, while the model loads, just after a commit, between commits, while the vector
index is saved), then check the library from outside: SQLite holds every photo at most once
with a sound vector, any reader gets a vector index that matches it, and the next run goes
on where the killed one stopped.  The other faults are injected in-process.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, TINY, gone, photo, run_cli, save_photo
from typer.testing import CliRunner

from clipsearch import Library
from clipsearch.cli import app
from clipsearch.storage import db as store
from clipsearch.storage import vectorindex
from clipsearch.storage.db import Store
from clipsearch.storage.vectorfile import MISMATCH, current_index

pytestmark = pytest.mark.faults
runner = CliRunner()
KILL_SEED = 20240605
KILL_PHOTOS = 150
COMMIT_SECONDS = "0.2"


def cli(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_error_line(result, *fragments: str) -> None:
    """Exit 2 with exactly one `clipsearch: ...` line on stderr holding every fragment."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("clipsearch: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


# -- reading a library from outside ----------------------------------------------------------


def read_only(library: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{library / 'library.db'}?mode=ro", uri=True)


def committed(library: Path) -> tuple[int, int]:
    """(photos, generation) as last committed; zeros before the database exists."""
    try:
        conn = read_only(library)
        try:
            count = conn.execute("SELECT count(*) FROM files").fetchone()[0]
            row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            return count, int(row[0]) if row else 0
        finally:
            conn.close()
    except sqlite3.Error:
        return 0, 0


def has_roots(library: Path) -> bool:
    try:
        conn = read_only(library)
        try:
            return conn.execute("SELECT count(*) FROM roots").fetchone()[0] > 0
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def check_consistent(library: Path, photos: set[str]) -> int:
    """The invariants a crash must never break; returns how many photos are indexed."""
    conn = read_only(library)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = conn.execute("SELECT path, length(vector) FROM files").fetchall()
        dim = conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
        assert conn.execute("SELECT count(*) FROM errors").fetchone()[0] == 0
    finally:
        conn.close()
    paths = [os.fsdecode(path) for path, _ in rows]
    assert len(paths) == len(set(paths)), "a photo is indexed twice"
    assert set(paths) <= photos, "a vector without its file"
    assert all(size == 4 * int(dim[0]) for _, size in rows), "a vector of the wrong size"
    notes: list[str] = []
    opened = Store.open(library)
    try:
        index, _ = current_index(opened, note=notes.append)
        held = np.sort(vectorindex.ids_of(index))
        assert np.array_equal(held, opened.ids()), "the vector index disagrees with SQLite"
    finally:
        opened.close()
    assert notes == [], "a kill left a vector index that contradicts the database"
    return len(rows)


def fresh_rows(library: Path) -> int:
    """Indexed photos whose file is unchanged since: the next run must leave them alone."""
    conn = read_only(library)
    try:
        rows = conn.execute("SELECT path, size, mtime_ns FROM files").fetchall()
    finally:
        conn.close()
    stamps = ((os.stat(os.fsdecode(p)), size, mtime) for p, size, mtime in rows)
    return sum((st.st_size, st.st_mtime_ns) == (size, mtime) for st, size, mtime in stamps)


# -- a real indexer ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kills") / "Photos"
    root.mkdir()
    for i in range(KILL_PHOTOS):
        photo(1000 + i, size=(96, 72)).save(root / f"p{i:03d}.jpg", quality=85)
    return root


@pytest.fixture(scope="module")
def bigger_photos(tmp_path_factory) -> Path:
    """Photos that take the onnxruntime path's workers a few seconds to decode: with small ones
    and the tiny model the whole run ends before an interrupt can land."""
    root = tmp_path_factory.mktemp("bigger") / "Photos"
    root.mkdir()
    scene = photo(7, size=(160, 120)).resize((1600, 1200))
    for i in range(KILL_PHOTOS):
        scene.save(root / f"p{i:03d}.jpg", quality=90, comment=f"{i}".encode())
    return root


def start_index(
    library: Path,
    photos: Path,
    checkpoint: Path,
    *extra: str,
    group: bool = False,
    cache: Path | None = None,
) -> subprocess.Popen:
    """`clipsearch index` committing every 0.2 s; --no-wait proves no lock outlives a kill.
    group=True: in a process group of its own, as a terminal's foreground job is, so a
    signal to the group reaches the decode workers too (as Ctrl-C does).  `cache`: a user
    cache of its own (an empty one makes the run a model's first on the machine)."""
    args = ["index", photos, "--library", library, "--model", TINY, "--pretrained", checkpoint]
    env = {**os.environ, "CLIPSEARCH_COMMIT_SECONDS": COMMIT_SECONDS}
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache)
    return subprocess.Popen(
        [sys.executable, "-m", "clipsearch", *map(str, args), *extra]
        + ["--batch-size", "4", "--no-wait", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        process_group=0 if group else None,
    )


def kill_plan(rng: random.Random) -> list[tuple[str, float]]:
    """When to kill: after a delay (Python starting, model loading), after the n-th commit
    of the run plus a little (just after a commit, or between two), or at the final save."""
    plan = [("seconds", rng.uniform(0.3, 5.0)) for _ in range(4)]
    plan += [("commits", n + rng.uniform(0.0, 0.9)) for n in rng.sample(range(1, 7), 5)]
    plan += [("saving", 0.0), ("saving", 0.0)]
    rng.shuffle(plan)
    return plan


def kill_when(proc: subprocess.Popen, library: Path, trigger: tuple[str, float]) -> str:
    """SIGKILL proc at the trigger; returns what happened, for the failure message."""
    kind, value = trigger
    started, (_, generation) = time.monotonic(), committed(library)
    faiss_before = set(library.glob("vectors-*.faiss")) if library.exists() else set()
    while proc.poll() is None:
        if _due(kind, value, started, generation, library, faiss_before):
            proc.kill()
            proc.wait()
            return f"killed at {kind} {value:.2f} after {time.monotonic() - started:.1f} s"
        time.sleep(0.001 if kind == "saving" else 0.01)
    _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()
    return "finished before its kill"


def _due(kind, value, started, generation, library: Path, faiss_before: set) -> bool:
    if kind == "seconds":
        return time.monotonic() - started >= value
    if kind == "commits":
        whole, extra = int(value), (value % 1) * float(COMMIT_SECONDS)
        if committed(library)[1] - generation >= whole:
            time.sleep(extra)
            return True
        return False
    saving = any(library.glob(".vectors-*.tmp"))  # mid-write, or a new file just renamed
    return saving or bool(set(library.glob("vectors-*.faiss")) - faiss_before)


def give_it_work(photos: Path, library: Path, rng: random.Random) -> int:
    """Touch photos until at least 60 need embedding, so the next run has work to be killed
    in (re-embedding a modified photo replaces its row); returns how many are up to date."""
    if KILL_PHOTOS - fresh_rows(library) < 60:
        for path in rng.sample(sorted(photos.iterdir()), 60):
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    return fresh_rows(library)


@pytest.mark.slow
def test_kill_9_at_any_moment_loses_nothing(many_photos, tmp_path, tiny_checkpoint):
    library = tmp_path / "lib"
    rng = random.Random(KILL_SEED)
    every = {str(p) for p in many_photos.iterdir()}
    history, indexed = [], 0
    for trigger in kill_plan(rng):
        before = give_it_work(many_photos, library, rng) if has_roots(library) else 0
        what = kill_when(start_index(library, many_photos, tiny_checkpoint), library, trigger)
        if not has_roots(library):
            history.append(f"{what}: before the first commit")
            continue
        now, fresh = check_consistent(library, every), fresh_rows(library)
        history.append(f"{what}: {fresh - before} embedded, {fresh}/{now} up to date")
        assert now >= indexed and fresh >= before, history  # nothing committed is lost
        indexed = now
        status = cli("status", "--json", "--library", library)
        assert status.exit_code == 0 and json.loads(status.stdout)["images"] == now, history
        if now:
            found = cli("query", "a photo", "-n", "1000", "--json", "--library", library)
            assert found.exit_code == 0 and len(json.loads(found.stdout)) == now, history

    expect_unchanged = fresh_rows(library)
    final = start_index(library, many_photos, tiny_checkpoint)
    out, err = final.communicate(timeout=600)
    assert final.returncode == 0, (history, err.decode())
    summary = json.loads(out)
    assert summary["unchanged"] == expect_unchanged, history  # it resumed where it stopped
    assert summary["indexed"] == KILL_PHOTOS - expect_unchanged
    assert (summary["removed"], summary["skipped"]) == (0, 0)
    assert check_consistent(library, every) == KILL_PHOTOS
    assert not list(library.glob("*.tmp")) and len(list(library.glob("vectors-*.faiss"))) == 1
    with Library.open(library) as lib:
        for path in sorted(every):
            hit = lib.search(path, top=1)[0]
            assert (hit.path, round(hit.score, 3)) == (path, 1.0), history


SAVER = """
import sys
import numpy as np
from clipsearch.storage import vectorindex
n, dim, ids = 200_000, 64, np.arange(200_000)
for round_ in range(1, 10_000):
    index = vectorindex.build(np.full((n, dim), round_, np.float32), ids, vectorindex.FLAT)
    vectorindex.save(index, sys.argv[1])
    print(round_, flush=True)
"""


@pytest.mark.slow
def test_kill_9_while_saving_the_vector_index_leaves_a_whole_file(tmp_path):
    """A 50 MB index saved over and over: a kill at any point leaves the old file or the new."""
    target = tmp_path / "vectors-1.faiss"
    rng = random.Random(KILL_SEED)
    for _ in range(4):
        saver = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(target)], stdout=subprocess.PIPE, text=True
        )
        last = int(saver.stdout.readline())  # one save is complete
        deadline = time.monotonic() + rng.uniform(0.0, 1.5)
        while time.monotonic() < deadline or not list(tmp_path.glob(".vectors-*.tmp")):
            time.sleep(0.001)
        saver.kill()
        saver.wait()
        index = vectorindex.load(target)
        first, final = index.reconstruct(0), index.reconstruct(index.ntotal - 1)
        assert index.ntotal == 200_000 and first[0] == final[-1] >= last


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "when", "backend"),
    [
        (signal.SIGINT, "embedding", "torch"),
        (signal.SIGTERM, "embedding", "torch"),
        (signal.SIGHUP, "embedding", "torch"),  # a closed terminal: it used to kill the run
        (signal.SIGINT, "loading", "torch"),
        (signal.SIGINT, "embedding", "onnxruntime"),  # forked plain workers
        (signal.SIGTERM, "embedding", "onnxruntime"),
        (signal.SIGHUP, "embedding", "onnxruntime"),
    ],
)
def test_interrupt_stops_cleanly_and_keeps_the_work(
    signum, when, backend, many_photos, bigger_photos, tmp_path, tiny_checkpoint
):
    library = tmp_path / "lib"
    if backend == "onnxruntime":  # its export is written by a first run
        first = start_index(tmp_path / "first", many_photos, tiny_checkpoint)
        assert first.wait(timeout=120) == 0
        many_photos = bigger_photos
    proc = start_index(library, many_photos, tiny_checkpoint, "--backend", backend)
    while proc.poll() is None:
        if when == "loading" and has_roots(library):  # the model loads next
            break
        if when == "embedding" and committed(library)[0]:
            break
        time.sleep(0.01)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    # 130, or death by SIGINT: interrupted while the model loads, the run is handled (its
    # summary printed) yet CPython sometimes ends the process with SIGINT itself, when its
    # "unhandled KeyboardInterrupt" flag was set on the way through a C extension's PyRun_*
    # call.  A shell shows both as status 130.
    assert proc.returncode in (130, -signal.SIGINT), err.decode()
    assert "Traceback" not in err.decode()
    saved = committed(library)[0]
    if when == "embedding":
        summary = json.loads(out)
        assert summary["interrupted"] is True
        assert 0 < summary["indexed"] == saved < KILL_PHOTOS
    else:  # the model was loading: nothing to save yet
        assert err.decode() == "clipsearch: interrupted\n" or json.loads(out)["interrupted"]
    assert check_consistent(library, {str(p) for p in many_photos.iterdir()}) == saved


def press_ctrl_c(proc: subprocess.Popen) -> None:
    """SIGINT to the whole process group, as the terminal sends it (unless it already ended)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)


@pytest.mark.slow
@pytest.mark.parametrize("gap", [0.0, 0.05, 0.3])
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_a_second_ctrl_c_quits_at_once_quietly_and_the_library_stays_sound(
    gap, backend, many_photos, bigger_photos, tmp_path, tiny_checkpoint
):
    """Ctrl-C twice (SIGINT to the whole group, workers included) quits with 130: no
    traceback, every line on stderr one of ours, no worker left behind, a library that
    passes every check and that the next run completes without a word about damage."""
    library, photos = tmp_path / "lib", many_photos
    if backend == "onnxruntime":
        first = start_index(tmp_path / "first", many_photos, tiny_checkpoint)
        assert first.wait(timeout=120) == 0
        photos = bigger_photos
    # torch: a model's first run on the machine, whose export thread makes the decode workers
    # start by forkserver (their queues' named semaphores once leaked with a warning)
    cache = tmp_path / "cache" if backend == "torch" else None
    proc = start_index(
        library, photos, tiny_checkpoint, "--backend", backend, group=True, cache=cache
    )
    while proc.poll() is None and not committed(library)[0]:
        time.sleep(0.01)
    press_ctrl_c(proc)
    time.sleep(gap)
    press_ctrl_c(proc)
    _, err = proc.communicate(timeout=120)
    text = err.decode()
    assert proc.returncode in (130, -signal.SIGINT), text
    assert "Traceback" not in text and "Error" not in text, text
    assert all(line.startswith("clipsearch: ") for line in text.splitlines() if line), text
    assert gone(lambda stat: stat[3] == proc.pid, 10), "a decode worker outlived the run"
    names = {str(p) for p in photos.iterdir()}
    saved = check_consistent(library, names)
    assert saved < KILL_PHOTOS
    again = start_index(library, photos, tiny_checkpoint, "--backend", backend)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err.decode()
    assert "repair" not in err.decode() and "damaged" not in err.decode()
    assert json.loads(out)["indexed"] == KILL_PHOTOS - saved
    assert check_consistent(library, names) == KILL_PHOTOS


# -- full disks, read-only folders ---------------------------------------------------------


@pytest.fixture()
def indexed(tmp_path, home, tiny_checkpoint) -> Path:
    photos = tmp_path / "Photos"
    for i in range(12):
        save_photo(photos / f"p{i:02d}.jpg", seed=i)
    result = cli("index", photos, "--model", TINY, "--pretrained", tiny_checkpoint)
    assert result.exit_code == 0, result.stderr
    return photos


def query_paths(*args) -> list[str]:
    result = cli("query", *args, "-n", "1000", "--json")
    assert result.exit_code == 0, result.stderr
    return [h["path"] for h in json.loads(result.stdout)]


def failing_with(code: int):
    """A stand-in for a write that the operating system refuses with errno `code`."""

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


def test_disk_full_while_saving_the_vector_index(indexed, home, monkeypatch):
    for i in range(3):
        save_photo(indexed / f"new{i}.jpg", seed=50 + i)
    with monkeypatch.context() as patch:
        patch.setattr(vectorindex, "save", failing_with(errno.ENOSPC))
        # every row was committed before the save: the message must not say otherwise
        failed = cli("index")
        one_error_line(failed, "No space left on device", "free some disk space")
        one_error_line(failed, "photos are stored", "rebuilt from the database")
        assert "could not save the library" not in failed.stderr
        assert len(query_paths("x")) == 15  # the database kept the photos; readers cope
    again = cli("index", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["unchanged"] == 15
    assert len(list(home.glob("vectors-*.faiss"))) == 1


def test_disk_full_in_the_database(indexed, home, monkeypatch):
    for i in range(30):
        save_photo(indexed / f"new{i:02d}.jpg", seed=50 + i)
    real_open = Store.open.__func__

    def open_on_a_full_disk(cls, directory, **kwargs):
        opened = real_open(cls, directory, **kwargs)
        pages = opened.conn.execute("PRAGMA page_count").fetchone()[0]
        opened.conn.execute(f"PRAGMA max_page_count = {pages}")
        return opened

    with monkeypatch.context() as patch:
        patch.setattr(Store, "open", classmethod(open_on_a_full_disk))
        one_error_line(cli("index"), "database or disk is full", "free some disk space")
    assert check_consistent(home, {str(p) for p in indexed.iterdir()}) >= 12
    assert len(query_paths("x")) >= 12
    assert json.loads(cli("index", "--json").stdout)["indexed"] <= 30
    assert len(query_paths("x")) == 42


def test_library_folder_deleted_during_index_stops_without_recreating_it(
    indexed, home, monkeypatch
):
    """It used to exit 0 with "indexed 3", SQLite writing into the unlinked file, and the
    folder came back (mode 755) without a database."""
    from clipsearch.indexing import run

    for i in range(3):
        save_photo(indexed / f"new{i}.jpg", seed=50 + i)
    real_record = run._record_batch

    def record_then_delete_the_library(store, outcomes, report):
        real_record(store, outcomes, report)
        shutil.rmtree(home, ignore_errors=True)

    with monkeypatch.context() as patch:
        patch.setattr(run, "_record_batch", record_then_delete_the_library)
        one_error_line(cli("index"), "library database", "was deleted or replaced")
    assert not home.exists()


def test_read_only_library(indexed, home, monkeypatch):
    save_photo(indexed / "new.jpg", seed=50)
    real_connect = sqlite3.connect

    def read_only_connect(database, **kwargs):
        return real_connect(f"file:{database}?mode=ro", uri=True, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(store.sqlite3, "connect", read_only_connect)
        patch.setattr(vectorindex, "save", failing_with(errno.EROFS))
        one_error_line(cli("index"), "readonly database", "make the folder writable")
        assert len(query_paths("x")) == 12  # reading needs no write access
    assert json.loads(cli("index", "--json").stdout)["indexed"] == 1


# -- damaged, edited and foreign libraries ---------------------------------------------------


def checkpoint(library: Path) -> Path:
    """Fold the write-ahead log into the database file, so damage to the file is damage."""
    conn = sqlite3.connect(library / "library.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return library / "library.db"


def damage_page_holding(db: Path, needle: bytes) -> None:
    """Scribble over the table page that stores the row whose path ends with `needle`."""
    data = bytearray(db.read_bytes())
    size = int.from_bytes(data[16:18], "big")
    for start in range(size, len(data), size):
        page = data[start : start + size]
        if page[0] == 0x0D and needle in page:  # a table leaf page
            data[start : start + size] = random.Random(1).randbytes(size)
            db.write_bytes(bytes(data))
            return
    raise AssertionError("no page holds that row")


def test_damaged_database_is_reported_and_repaired(tmp_path, home, tiny_checkpoint):
    photos = tmp_path / "Photos"
    for i in range(40):
        save_photo(photos / f"p{i:02d}.jpg", seed=i)
    assert cli("index", photos, "--model", TINY, "--pretrained", tiny_checkpoint).exit_code == 0
    damage_page_holding(checkpoint(home), b"p20.jpg")
    one_error_line(cli("index"), "is damaged", "malformed", "clipsearch repair")

    repaired = cli("repair")
    assert repaired.exit_code == 0, repaired.stderr
    lines = repaired.stdout.splitlines()
    assert lines[0].startswith("the database was damaged (kept as library.db.damaged-")
    recovered = int(lines[0].split("recovered ")[1].split()[0])
    assert 0 < recovered < 40
    assert lines[-1] == f"rebuilt the vector index from {recovered} photos"
    assert (home / lines[0].split("kept as ")[1].split(")")[0]).is_file()
    assert cli("repair").stdout.startswith("the database passed its integrity check")

    again = json.loads(cli("index", "--json").stdout)
    assert (again["indexed"], again["unchanged"]) == (40 - recovered, recovered)
    assert len(query_paths("x")) == 40


def test_a_damaged_header_is_restored_before_salvaging(indexed, home):
    """Eight scribbled header bytes made repair start an empty library; every page of rows
    was intact."""
    db = checkpoint(home)
    with open(db, "r+b") as f:
        f.write(b"\xff" * 8)
    one_error_line(cli("status"), "is damaged", "clipsearch repair")

    repaired = cli("repair")
    assert repaired.exit_code == 0, repaired.stderr
    assert "recovered 12 photos" in repaired.stdout, repaired.stdout
    assert not list(home.glob("library.db.salvage*"))
    assert len(query_paths("x")) == 12
    assert json.loads(cli("index", "--json").stdout)["unchanged"] == 12


def test_unreadable_database_is_reported_and_replaced(indexed, home, tiny_checkpoint):
    db = checkpoint(home)
    db.write_bytes(b"this is not SQLite" * 10 + db.read_bytes()[180:])
    one_error_line(cli("status"), "is damaged (file is not a database)", "clipsearch repair")
    one_error_line(cli("query", "cat"), "is damaged", "clipsearch repair")
    repaired = cli("repair")
    assert repaired.exit_code == 0
    assert "beyond recovery" in repaired.stdout and "index your folders again" in repaired.stdout
    assert json.loads(cli("status", "--json").stdout)["images"] == 0
    args = ("--model", TINY, "--pretrained", tiny_checkpoint, "--json")
    assert json.loads(cli("index", indexed, *args).stdout)["indexed"] == 12


def garbage(path: Path, store_: Store) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def truncated(path: Path, store_: Store) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def other_vectors(path: Path, store_: Store) -> None:
    ids = store_.ids()
    vectors = np.random.default_rng(0).normal(size=(len(ids), store_.dim())).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectorindex.save(vectorindex.build(vectors, ids), path)


def one_missing(path: Path, store_: Store) -> None:
    index = vectorindex.load(path)
    vectorindex.remove(index, store_.ids()[:1])
    vectorindex.save(index, path)


@pytest.mark.parametrize("damage", [garbage, truncated, other_vectors, one_missing])
def test_damaged_or_edited_vector_index_is_rebuilt(damage, indexed, home):
    (path,) = home.glob("vectors-*.faiss")
    opened = Store.open(home)
    damage(path, opened)
    opened.close()
    target = str(indexed / "p03.jpg")
    first = cli("query", target, "--json")
    assert first.exit_code == 0 and first.stderr == f"clipsearch: {MISMATCH}\n"
    hits = json.loads(first.stdout)
    assert hits[0]["path"] == target and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    second = cli("query", target, "-n", "100", "--json")
    assert second.stderr == "" and len(json.loads(second.stdout)) == 12  # saved, repaired


def set_meta(library: Path, **values) -> None:
    conn = sqlite3.connect(library / "library.db")
    conn.executemany("UPDATE meta SET value = ? WHERE key = ?", [(v, k) for k, v in values.items()])
    conn.commit()
    conn.close()


def test_library_from_a_newer_clipsearch_is_refused(indexed, home):
    set_meta(home, schema=99)
    for command in (["status"], ["query", "cat"], ["index"], ["repair"]):
        one_error_line(cli(*command), "newer clipsearch", "upgrade clipsearch")


def test_repair_drops_vectors_of_the_wrong_size(indexed, home):
    conn = sqlite3.connect(home / "library.db")
    conn.execute("UPDATE files SET vector = x'0000' WHERE id = (SELECT min(id) FROM files)")
    conn.commit()
    conn.close()
    for old in home.glob("vectors-*.faiss"):
        old.unlink()
    one_error_line(cli("query", "cat"), "vectors of the wrong size", "clipsearch repair")
    repaired = cli("repair")
    assert repaired.exit_code == 0
    assert "dropped 1 photos whose stored vector had the wrong size" in repaired.stdout
    assert json.loads(cli("index", "--json").stdout)["indexed"] == 1
    assert len(query_paths("cat")) == 12


def test_repair_trusts_the_vectors_over_a_wrong_recorded_size(indexed, home):
    set_meta(home, dim=32)
    repaired = cli("repair")
    assert repaired.exit_code == 0
    assert "the recorded vector size (32) matched no photo; set it to 64" in repaired.stdout
    assert len(query_paths("cat")) == 12


@pytest.mark.slow
def test_a_model_whose_embedding_size_changed_is_refused(tmp_path, home, tiny_checkpoint):
    """Same name and weights path, new architecture: refused before any vector is mixed in."""
    import open_clip
    from safetensors.torch import save_file

    weights = tmp_path / "tiny.safetensors"
    shutil.copy(tiny_checkpoint, weights)
    photos = tmp_path / "Photos"
    save_photo(photos / "a.jpg", seed=1)
    assert cli("index", photos, "--model", TINY, "--pretrained", weights).exit_code == 0
    config = json.loads((MODELS / f"{TINY}.json").read_text()) | {"embed_dim": 32}
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / f"{TINY}.json").write_text(json.dumps(config))
    model = open_clip.model.CLIP(**config)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    save_photo(photos / "b.jpg", seed=2)
    result = run_cli("index", env={"CLIPSEARCH_MODEL_CONFIGS": str(configs)})
    message = result.stderr.decode()
    assert result.returncode == 2 and message.count("\n") == 1, message
    assert "holds 64-dimensional vectors but" in message and "32-dimensional" in message
    assert "new --library" in message and "Traceback" not in message


@pytest.mark.faults
def test_files_a_killed_save_left_behind_are_cleaned_up(indexed, home):
    """Killed after saving the new index but before deleting the old one: the next run,
    finding the index current, still removes the stale file and the temporary one."""
    (current,) = home.glob("vectors-*.faiss")
    generation = int(current.stem.split("-")[1])
    stale, temporary = home / f"vectors-{generation - 1}.faiss", home / ".vectors-9.faiss.x.tmp"
    shutil.copy(current, stale)
    temporary.write_bytes(b"half written")
    assert cli("index", indexed).exit_code == 0
    assert sorted(home.glob("*.faiss")) == [current] and not temporary.exists()
