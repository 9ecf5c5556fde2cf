"""The SQLite store on its own: files, vectors, roots, errors, generations and formats."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from clipsearch.errors import ClipsearchError
from clipsearch.model.spec import ModelSpec
from clipsearch.storage.db import SCHEMA, SCHEMA_VERSION, Store, prefix_range, table_columns
from clipsearch.storage.layout import Layout

DIM = 4


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture()
def store(tmp_path: Path):
    s = Store.open(tmp_path / "lib", create=True)
    s.record_model(ModelSpec("tiny", "/weights/tiny.safetensors"), DIM)
    yield s
    s.close()


def add(store: Store, path: str, seed: int, size: int = 100, mtime: int = 1) -> None:
    store.begin()
    store.add(path, size, mtime, f"mark{seed}", vector(seed))
    store.commit()


def test_opening_a_missing_library_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ClipsearchError, match="clipsearch index DIR"):
        Store.open(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_a_new_library_is_private_and_records_its_model(tmp_path: Path, store: Store) -> None:
    assert Layout(store.directory).db.is_file()
    assert store.directory.stat().st_mode & 0o777 == 0o700
    assert store.model_spec() == ModelSpec("tiny", "/weights/tiny.safetensors")
    assert store.dim() == DIM
    assert store.meta("schema") == str(SCHEMA_VERSION)


def test_added_files_come_back_with_their_vectors(store: Store) -> None:
    add(store, "/photos/a.jpg", 1)
    add(store, "/photos/b.jpg", 2)
    known = store.known_files(["/photos"])
    assert set(known) == {"/photos/a.jpg", "/photos/b.jpg"}
    ids, vectors = store.all_vectors()
    paths = store.paths_for(ids)
    by_path = {paths[int(i)]: v for i, v in zip(ids, vectors, strict=True)}
    np.testing.assert_array_equal(by_path["/photos/b.jpg"], vector(2))
    stored = store.vector_of("/photos/a.jpg", 100, 1)
    np.testing.assert_array_equal(stored, vector(1))
    assert store.vector_of("/photos/a.jpg", 100, 2) is None  # another version of the file


def test_a_new_version_gets_a_new_id_and_replaces_the_old_row(store: Store) -> None:
    add(store, "/photos/a.jpg", 1)
    first = store.known_files(["/photos"])["/photos/a.jpg"].id
    add(store, "/photos/a.jpg", 3, mtime=2)
    known = store.known_files(["/photos"])
    assert len(known) == 1 and known["/photos/a.jpg"].id != first
    assert store.count() == 1


def test_generation_moves_only_when_vectors_change(store: Store) -> None:
    start = store.generation()
    add(store, "/photos/a.jpg", 1)
    assert store.generation() == start + 1
    store.begin()
    store.add_root("/photos")  # no vector changed
    store.commit()
    assert store.generation() == start + 1
    file_id = store.known_files(["/photos"])["/photos/a.jpg"].id
    store.begin()
    store.move(file_id, "/photos/b.jpg", 100, 1)  # same id, same vector: the index still holds
    store.commit()
    assert store.generation() == start + 1
    store.begin()
    store.remove([file_id])
    store.commit()
    assert store.generation() == start + 2


def test_a_rolled_back_transaction_leaves_nothing(store: Store) -> None:
    store.begin()
    store.add("/photos/a.jpg", 1, 1, "m", vector(1))
    store.rollback()
    store.commit()  # outside a transaction: a no-op, never an error
    assert store.is_empty() and store.generation() == 0


def test_prefix_ranges_do_not_leak_into_sibling_folders(store: Store) -> None:
    for i, path in enumerate(["/p/a/x.jpg", "/p/ab/y.jpg", "/p/a/deep/z.jpg", "/p/a"]):
        add(store, path, i)
    assert set(store.known_files(["/p/a"])) == {"/p/a/x.jpg", "/p/a/deep/z.jpg"}
    assert len(store.ids_under("/p/a/")) == 2
    low, high = prefix_range("/p/a")
    assert low <= b"/p/a/\xff" < high and not low <= b"/p/ab" < high


def test_paths_that_are_not_utf8_round_trip(store: Store) -> None:
    name = os.fsdecode(b"/photos/caf\xe9.jpg")  # Latin-1 bytes on a UTF-8 system
    add(store, name, 1)
    assert list(store.known_files(["/photos"])) == [name]
    assert os.fsencode(next(iter(store.paths_for(store.ids()).values()))) == os.fsencode(name)


def test_forgetting_a_root_drops_its_files_and_errors(store: Store) -> None:
    add(store, "/a/1.jpg", 1)
    add(store, "/b/2.jpg", 2)
    store.begin()
    store.add_root("/a")
    store.add_root("/b")
    store.record_error("/a/bad.jpg", 1, 1, "cannot decode image")
    assert store.forget_root("/a") == 1
    store.commit()
    assert store.roots() == ["/b"]
    assert set(store.known_files(["/a", "/b"])) == {"/b/2.jpg"}
    assert store.known_errors() == {}


def test_errors_are_remembered_per_version_and_cleared_by_a_good_embed(store: Store) -> None:
    store.begin()
    store.record_error("/p/x.jpg", 5, 7, "cannot decode image: broken")
    store.commit()
    (skipped,) = store.known_errors(["/p"]).values()
    assert (skipped.size, skipped.mtime_ns, skipped.reason) == (5, 7, "cannot decode image: broken")
    add(store, "/p/x.jpg", 1, size=6, mtime=8)
    assert store.known_errors() == {}


def test_vectors_of_the_wrong_size_are_refused_and_can_be_dropped(store: Store) -> None:
    add(store, "/p/good.jpg", 1)
    store.begin()
    store.add("/p/bad.jpg", 1, 1, "m", np.ones(DIM + 1, np.float32))
    store.commit()
    with pytest.raises(ClipsearchError, match="repair"):
        store.all_vectors()
    with pytest.raises(ClipsearchError, match="repair"):
        store.vector_of("/p/bad.jpg", 1, 1)
    store.begin()
    assert store.drop_wrong_size_vectors() == 1
    store.commit()
    assert store.all_vectors()[1].shape == (1, DIM)


def test_vectors_come_in_chunks_and_by_id(store: Store) -> None:
    for i in range(7):
        add(store, f"/p/{i}.jpg", i)
    chunks = list(store.vectors(chunk=3))
    assert [len(ids) for ids, _ in chunks] == [3, 3, 1]
    wanted = store.ids()[[1, 5]]
    ids, vectors = store.all_vectors(wanted)
    assert sorted(ids) == sorted(wanted) and vectors.shape == (2, DIM)
    empty_ids, empty = store.all_vectors(np.empty(0, np.int64))
    assert empty_ids.shape == (0,) and empty.shape == (0, DIM)


def test_id_summary_is_count_and_sum(store: Store) -> None:
    for i in range(3):
        add(store, f"/p/{i}.jpg", i)
    assert store.id_summary() == (3, int(store.ids().sum()))


def test_a_newer_format_is_refused_with_the_way_out(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    Store.open(lib, create=True).close()
    conn = sqlite3.connect(lib / "library.db")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(ClipsearchError, match="newer clipsearch.*upgrade"):
        Store.open(lib)


def test_table_columns_reads_the_schema_back() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    tables = table_columns(conn)
    assert list(tables) == ["meta", "roots", "files", "errors", "retained", "photo_meta"]
    assert tables["roots"] == ("path", "added", "device", "settings")
    assert tables["files"] == ("id", "path", "size", "mtime_ns", "fingerprint", "vector")
