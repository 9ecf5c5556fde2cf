"""Keeping the FAISS file in step with SQLite, the source of truth.

A file named for generation G mirrors exactly what SQLite held when G committed.  Anything
else on disk (an older generation, a damaged or hand-edited file) is treated as a hint:
reconciled against SQLite by id, or rebuilt from it.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np

from . import vectorindex
from .store import INDEX_GLOB, Store

_GENERATION = re.compile(r"vectors-(\d+)\.faiss$")


def index_path(store: Store, generation: int) -> Path:
    return store.directory / f"vectors-{generation}.faiss"


def current_index(store: Store):
    """The vector index matching the last commit, and whether the file on disk already was it."""
    with store.snapshot():
        generation, count = store.generation(), store.count()
        index = _read(index_path(store, generation))
        if index is not None and index.ntotal == count:
            return index, True
        return _reconcile(store, index or _newest_readable(store), count), False


def save_index(store: Store, index) -> None:
    """Write the index for the committed generation atomically, then drop older files."""
    target = index_path(store, store.generation())
    vectorindex.save(index, target)
    for old in store.directory.glob(INDEX_GLOB):
        if old != target:
            with contextlib.suppress(OSError):
                old.unlink()


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
