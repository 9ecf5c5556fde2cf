"""Keeping the FAISS file in step with SQLite, the source of truth.

A file named for generation G mirrors exactly what SQLite held when G committed.  Anything
else on disk (an older generation, a damaged or hand-edited file) is treated as a hint:
reconciled against SQLite by id, or rebuilt from it.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ClipsearchError, warn
from . import vectorindex
from .db import Store
from .lock import write_lock

MISMATCH = "the vector index did not match the library; rebuilt it from the database"


def current_index(store: Store, note: Callable[[str], None] | None = None):
    """The vector index matching the last commit, and whether the file on disk already was it.

    Normally that file exists and agrees.  Missing (a crash before it was saved), it is
    reconciled from an older one.  Present yet disagreeing with SQLite (damaged or edited by
    hand), it is rebuilt from SQLite and `note` (default: stderr) says so.  Either way the
    result is kept for the next reader when no writer is busy.
    """
    with store.snapshot():
        generation, (count, id_sum) = store.generation(), store.id_summary()
        path = store.layout.index_file(generation)
        index = _read(path)
        if index is not None and _agrees(store, index, count, id_sum):
            return index, True
        damaged = path.exists()
        base = None if damaged else _newest_readable(store)
        index = _reconcile(store, base, count)
    if damaged:
        (note or warn)(MISMATCH)
    _keep_for_readers(store, index, generation)
    return index, False


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
    target = store.layout.index_file(store.generation())
    try:
        vectorindex.save(index, target)
    except RuntimeError as exc:  # FAISS reports its own write errors this way
        raise OSError(errno.EIO, "the vector index could not be written") from exc
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
    with contextlib.suppress(ClipsearchError, OSError), write_lock(store.directory, wait=False):
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
