"""Keeping the FAISS file in step with SQLite, the source of truth.

A file named for generation G mirrors exactly what SQLite held when G committed.  Anything
else on disk (an older generation, a damaged or hand-edited file) is treated as a hint:
reconciled against SQLite by id, or rebuilt from it.
"""

from __future__ import annotations

import contextlib
import errno
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import vectorindex
from .errors import ClipsearchError
from .locking import write_lock
from .store import INDEX_GLOB, Store

MISMATCH = "the vector index did not match the library; rebuilt it from the database"
_GENERATION = re.compile(r"vectors-(\d+)\.faiss$")
_TEMP_GLOB = ".vectors-*.tmp"  # what vectorindex.save writes before its rename


def index_path(store: Store, generation: int) -> Path:
    return store.directory / f"vectors-{generation}.faiss"


def current_index(store: Store, note: Callable[[str], None] | None = None):
    """The vector index matching the last commit, and whether the file on disk already was it.

    Normally that file exists and agrees.  Missing (a crash before it was saved), it is
    reconciled from an older one.  Present yet disagreeing with SQLite (damaged or edited by
    hand), it is rebuilt from SQLite and `note` (default: stderr) says so.  Either way the
    result is kept for the next reader when no writer is busy.
    """
    with store.snapshot():
        generation, (count, id_sum) = store.generation(), store.id_summary()
        path = index_path(store, generation)
        index = _read(path)
        if index is not None and _agrees(store, index, count, id_sum):
            return index, True
        damaged = path.exists()
        base = None if damaged else _newest_readable(store)
        index = _reconcile(store, base, count)
    if damaged:
        (note or _to_stderr)(MISMATCH)
    _keep_for_readers(store, index, generation)
    return index, False


def rebuild_index(store: Store) -> int:
    """Throw away every index file and write a fresh one from SQLite; returns its size."""
    for old in store.directory.glob(INDEX_GLOB):
        old.unlink()
    with store.snapshot():
        index = _rebuild(store, store.dim() or 0)
    save_index(store, index)
    return index.ntotal


def save_index(store: Store, index) -> None:
    """Write the index for the committed generation atomically, then drop older files and
    the temporary ones that a killed save left behind.  Call with the write lock held."""
    target = index_path(store, store.generation())
    try:
        vectorindex.save(index, target)
    except RuntimeError as exc:  # FAISS reports its own write errors this way
        raise OSError(errno.EIO, "the vector index could not be written") from exc
    drop_stale_files(store)


def drop_stale_files(store: Store) -> None:
    """Remove index files of older generations and temporary ones a killed save left behind.
    Call with the write lock held."""
    target = index_path(store, store.generation())
    for old in [*store.directory.glob(INDEX_GLOB), *store.directory.glob(_TEMP_GLOB)]:
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


def _to_stderr(message: str) -> None:
    sys.stderr.write(f"clipsearch: {message}\n")


def _reconcile(store: Store, base, count: int):
    dim = store.dim() or 0
    if base is None or base.d != dim or vectorindex.needs_rebuild(base, count):
        return _rebuild(store, dim)
    have, want = vectorindex.ids_of(base), store.ids()
    extra = np.setdiff1d(have, want, assume_unique=True)
    missing = np.setdiff1d(want, have, assume_unique=True)
    if len(extra):
        vectorindex.remove(base, extra)
    for ids, vectors in store.vectors(missing):
        vectorindex.add(base, vectors, ids)
    return base


def _rebuild(store: Store, dim: int):
    chunks = list(store.vectors())
    ids = np.concatenate([c[0] for c in chunks]) if chunks else np.empty(0, np.int64)
    vectors = np.concatenate([c[1] for c in chunks]) if chunks else np.empty((0, dim), np.float32)
    return vectorindex.build(vectors, ids)


def _read(path: Path):
    """Load an index file; a missing, half-deleted or damaged one is simply not used."""
    try:
        return vectorindex.load(path)
    except (OSError, RuntimeError):
        return None


def _newest_readable(store: Store):
    found = []
    for path in store.directory.glob(INDEX_GLOB):
        match = _GENERATION.search(path.name)
        if match:
            found.append((int(match.group(1)), path))
    for _, path in sorted(found, reverse=True):
        index = _read(path)
        if index is not None:
            return index
    return None
