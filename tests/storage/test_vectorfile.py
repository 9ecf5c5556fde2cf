"""The FAISS file kept in step with SQLite: saved per generation, reconciled, rebuilt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipsearch.model.spec import ModelSpec
from clipsearch.storage import vectorindex
from clipsearch.storage.db import Store
from clipsearch.storage.vectorfile import (
    MISMATCH,
    current_index,
    drop_stale_files,
    rebuild_index,
    save_index,
)

DIM = 8


@pytest.fixture()
def store(tmp_path: Path):
    s = Store.open(tmp_path / "lib", create=True)
    s.record_model(ModelSpec("tiny", "/w.safetensors"), DIM)
    yield s
    s.close()


def add_photos(store: Store, names: range) -> None:
    rng = np.random.default_rng(names.start)
    store.begin()
    for i in names:
        v = rng.normal(size=DIM).astype(np.float32)
        store.add(f"/p/{i}.jpg", 1, 1, f"m{i}", v / np.linalg.norm(v))
    store.commit()


def test_the_first_read_builds_and_saves_the_current_generation(store: Store) -> None:
    add_photos(store, range(5))
    index, was_on_disk = current_index(store)
    assert not was_on_disk and index.ntotal == 5
    assert [g for g, _ in store.layout.index_files()] == [store.generation()]
    index, was_on_disk = current_index(store)
    assert was_on_disk and sorted(vectorindex.ids_of(index)) == sorted(store.ids())


def test_a_missing_file_is_reconciled_from_an_older_one(store: Store) -> None:
    add_photos(store, range(5))
    current_index(store)
    add_photos(store, range(5, 8))  # a commit whose FAISS file was never written (a crash)
    notes: list[str] = []
    index, was_on_disk = current_index(store, note=notes.append)
    assert not was_on_disk and notes == []
    assert sorted(vectorindex.ids_of(index)) == sorted(store.ids())


def test_a_damaged_file_is_rebuilt_with_a_note(store: Store) -> None:
    add_photos(store, range(5))
    current_index(store)
    path = store.layout.index_file(store.generation())
    path.write_bytes(b"not a faiss index")
    notes: list[str] = []
    index, _ = current_index(store, note=notes.append)
    assert notes == [MISMATCH] and index.ntotal == 5


def test_a_file_with_other_ids_is_rebuilt(store: Store) -> None:
    add_photos(store, range(5))
    ids, vectors = store.all_vectors()
    wrong = vectorindex.build(vectors, ids + 1000)
    vectorindex.save(wrong, store.layout.index_file(store.generation()))
    notes: list[str] = []
    index, _ = current_index(store, note=notes.append)
    assert notes == [MISMATCH] and sorted(vectorindex.ids_of(index)) == sorted(ids)


def test_saving_drops_older_generations_and_leftovers(store: Store) -> None:
    add_photos(store, range(3))
    current_index(store)
    add_photos(store, range(3, 6))
    leftover = store.directory / ".vectors-9.faiss.x1y2.tmp"
    leftover.write_bytes(b"half")
    save_index(store, current_index(store)[0])
    assert [g for g, _ in store.layout.index_files()] == [store.generation()]
    assert not leftover.exists()
    leftover.write_bytes(b"half")
    drop_stale_files(store)
    assert not leftover.exists()


def test_rebuild_throws_away_every_file(store: Store) -> None:
    add_photos(store, range(4))
    current_index(store)
    assert rebuild_index(store) == 4
    assert len(store.layout.index_files()) == 1
