"""Keeping the FAISS file in step with SQLite, the source of truth.

A file named for generation G mirrors exactly what SQLite held when G committed.  Anything
else on disk (an older generation, a damaged or hand-edited file) is treated as a hint:
reconciled against SQLite by id, or rebuilt from it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ClipsearchError, warn
from . import vectorindex
from .db import Store
from .lock import write_lock

MISMATCH = "the vector index did not match the library; rebuilt it from the database"
# Files up to this size have their checksum verified on every load: CRC-32 ran at 2.2 GB/s
# here (64 MiB in 30 ms, on top of FAISS reading the same file).  Larger ones are verified by
# `status` and `repair`, and every query checks its scores lie in [-1, 1].
CHEAP_CHECK_BYTES = 64 << 20
CHECKSUM_KEY = "index_checksum"


def current_index(store: Store, note: Callable[[str], None] | None = None, *, verify: bool = False):
    """The vector index matching the last commit, and whether the file on disk already was it.

    Normally that file exists and agrees.  Missing (a crash before it was saved), it is
    reconciled from an older one.  Present yet disagreeing with SQLite (damaged or edited by
    hand) or with the checksum recorded when it was saved (checked when cheap, or always with
    `verify`), it is rebuilt from SQLite and `note` (default: stderr) says so.  Either way the
    result is kept for the next reader when no writer is busy.
    """
    with store.snapshot():
        generation, (count, id_sum) = store.generation(), store.id_summary()
        path = store.layout.index_file(generation)
        index = _read(path)
        if (
            index is not None
            and _agrees(store, index, count, id_sum)
            and _checksum_holds(store, path, generation, verify)
        ):
            return index, True
        damaged = path.exists()
        base = None if damaged else _newest_readable(store)
        index = _reconcile(store, base, count)
    if damaged:
        (note or warn)(MISMATCH)
    _keep_for_readers(store, index, generation)
    return index, False


def rebuilt_after_damage(store: Store, note: Callable[[str], None] | None = None):
    """A fresh index from SQLite, for a file found damaged after it was loaded (a score no
    cosine can have); `note` (default: stderr) says so, and the file is replaced."""
    with store.snapshot():
        generation = store.generation()
        index = _rebuild(store)
    (note or warn)(MISMATCH)
    _keep_for_readers(store, index, generation)
    return index


def checksum_state(store: Store) -> str:
    """'ok', 'damaged', 'missing' or 'unrecorded' for the current generation's file
    (`status` and `repair` ask; nothing is changed)."""
    generation = store.generation()
    path = store.layout.index_file(generation)
    if not path.exists():
        return "missing"
    recorded = _recorded(store, generation)
    if recorded is None:
        return "unrecorded"
    try:
        return "ok" if file_checksum(path) == recorded else "damaged"
    except OSError:
        return "damaged"


def file_checksum(path: Path) -> str:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return f"crc32:{crc:08x}"


def _recorded(store: Store, generation: int) -> str | None:
    """The checksum recorded for `generation`'s file, if the last save was of it."""
    value = store.meta(CHECKSUM_KEY)
    if not value or ":" not in value:
        return None
    saved_for, _, checksum = value.partition(":")
    return checksum if saved_for == str(generation) else None


def _checksum_holds(store: Store, path: Path, generation: int, verify: bool) -> bool:
    """False when the file's checksum differs from the one recorded at save; files saved
    before checksums existed, or too big to check cheaply, pass (unless `verify`)."""
    recorded = _recorded(store, generation)
    if recorded is None:
        return True
    try:
        if not verify and os.path.getsize(path) > CHEAP_CHECK_BYTES:
            return True
        return file_checksum(path) == recorded
    except OSError:
        return False


def rebuild_index(store: Store) -> int:
    """Throw away every index file and write a fresh one from SQLite; returns its size."""
    for _, old in store.layout.index_files():
        old.unlink()
    with store.snapshot():
        index = _rebuild(store)
    save_index(store, index)
    return index.ntotal


def save_index(store: Store, index) -> None:
    """Write the index for the committed generation atomically, then drop older files and
    the temporary ones that a killed save left behind.  Call with the write lock held."""
    generation = store.generation()
    target = store.layout.index_file(generation)
    try:
        vectorindex.save(index, target)
    except RuntimeError as exc:  # FAISS reports its own write errors this way
        raise OSError(errno.EIO, "the vector index could not be written") from exc
    store.set_meta(**{CHECKSUM_KEY: f"{generation}:{file_checksum(target)}"})
    drop_stale_files(store)


def drop_stale_files(store: Store) -> None:
    """Remove index files of older generations and temporary ones a killed save left behind.
    Call with the write lock held."""
    layout = store.layout
    target = layout.index_file(store.generation())
    for old in [*(path for _, path in layout.index_files()), *layout.index_leftovers()]:
        if old != target:
            with contextlib.suppress(OSError):
                old.unlink()


def _agrees(store: Store, index, count: int, id_sum: int) -> bool:
    """Same size, same ids and, where cheap to read back, the same newest vector."""
    if index.ntotal != count or index.d != (store.dim() or 0):
        return False
    if count == 0:
        return True
    ids = vectorindex.ids_of(index)
    if int(ids.sum()) != id_sum:
        return False
    return vectorindex.kind_of(index) != vectorindex.FLAT or _newest_matches(store, index, ids)


def _newest_matches(store: Store, index, ids: np.ndarray) -> bool:
    newest = ids.max(keepdims=True)
    _, stored = next(store.vectors(newest))
    try:
        held = index.reconstruct(int(newest[0]))
    except RuntimeError:
        return False
    return len(stored) == 1 and np.allclose(held, stored[0], atol=1e-6)


def _keep_for_readers(store: Store, index, generation: int) -> None:
    """Save a reconciled index so the next query need not redo it; a reader never waits for
    the lock nor fails for this (a writer busy, a read-only or full disk)."""
    quietly = contextlib.suppress(ClipsearchError, OSError, sqlite3.Error)
    with quietly, write_lock(store.directory, wait=False):
        if store.generation() == generation:
            save_index(store, index)


def _reconcile(store: Store, base, count: int):
    dim = store.dim() or 0
    if base is None or base.d != dim or vectorindex.needs_rebuild(base, count):
        return _rebuild(store)
    have, want = vectorindex.ids_of(base), store.ids()
    extra = np.setdiff1d(have, want, assume_unique=True)
    missing = np.setdiff1d(want, have, assume_unique=True)
    if len(extra):
        vectorindex.remove(base, extra)
    for ids, vectors in store.vectors(missing):
        vectorindex.add(base, vectors, ids)
    return base


def _rebuild(store: Store):
    ids, vectors = store.all_vectors()
    return vectorindex.build(vectors, ids)


def _read(path: Path):
    """Load an index file; a missing, half-deleted or damaged one is simply not used."""
    try:
        return vectorindex.load(path)
    except (OSError, RuntimeError):
        return None


def _newest_readable(store: Store):
    for _, path in store.layout.index_files():
        index = _read(path)
        if index is not None:
            return index
    return None
