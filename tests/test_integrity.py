"""A vector file changed on disk is caught, and repair gives back what a database lost
(issue 17)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, run_cli, save_photo

from clipsearch import Library
from clipsearch.storage import vectorfile


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for seed in range(6):
        save_photo(root / f"p{seed}.jpg", seed=seed)
    return root


@pytest.fixture()
def lib(tmp_path: Path, photos: Path, tiny_checkpoint: Path):
    with Library.open(
        tmp_path / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True
    ) as opened:
        opened.index([photos])
        yield opened


def _vector_file(lib: Library) -> Path:
    return lib.layout.index_file(lib.generation)


def _overwrite_inside_a_vector(lib: Library, payload: bytes) -> None:
    """Overwrite bytes inside the first photo's vector where the FAISS file stores it."""
    path = _vector_file(lib)
    ids, vectors = lib.store.all_vectors()
    data = bytearray(path.read_bytes())
    at = data.find(vectors[0].astype(np.float32).tobytes())
    assert at > 0
    data[at + 8 : at + 8 + len(payload)] = payload
    path.write_bytes(bytes(data))


def _fresh(lib: Library, tiny_checkpoint: Path) -> Library:
    return Library.open(lib.directory, model=TINY, pretrained=str(tiny_checkpoint))


def test_seven_bytes_overwritten_are_caught_by_the_checksum(
    lib: Library, tiny_checkpoint: Path, capsys
) -> None:
    assert lib.store.meta(vectorfile.CHECKSUM_KEY).startswith(f"{lib.generation}:crc32:")
    _overwrite_inside_a_vector(lib, b"\x7f" * 7)
    with _fresh(lib, tiny_checkpoint) as again:
        hits = again.search("a photo", top=6)
    assert all(-1.001 <= h.score <= 1.001 for h in hits)
    assert vectorfile.MISMATCH in capsys.readouterr().err
    assert vectorfile.checksum_state(lib.store) == "ok"


def test_a_score_no_cosine_can_have_means_damage(
    lib: Library, tiny_checkpoint: Path, capsys, monkeypatch
) -> None:
    """A file too big to checksum on every query: the scores give the damage away."""
    monkeypatch.setattr(vectorfile, "CHEAP_CHECK_BYTES", 0)
    _overwrite_inside_a_vector(lib, b"\x7f" * 7)
    for exact in (False, True):
        with _fresh(lib, tiny_checkpoint) as again:
            hits = again.search("a photo", top=6, exact=exact)
        assert hits and all(-1.001 <= h.score <= 1.001 for h in hits)
        _overwrite_inside_a_vector(lib, b"\x7f" * 7)
    assert vectorfile.MISMATCH in capsys.readouterr().err


def test_status_always_verifies_the_checksum(
    lib: Library, tiny_checkpoint: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(vectorfile, "CHEAP_CHECK_BYTES", 0)
    _overwrite_inside_a_vector(lib, b"\x01")  # a small change: scores stay plausible
    with _fresh(lib, tiny_checkpoint) as again:
        again.search("a photo")
        assert vectorfile.MISMATCH not in capsys.readouterr().err
        again.status()
    assert vectorfile.MISMATCH in capsys.readouterr().err
    assert vectorfile.checksum_state(lib.store) == "ok"


def test_repair_names_a_damaged_vector_file(lib: Library) -> None:
    _overwrite_inside_a_vector(lib, b"\x01")
    lines = Library.repair(lib.directory)
    assert "the vector index file did not match its checksum (it is damaged)" in lines


def test_repair_gives_back_lost_roots_with_their_settings(lib: Library, photos: Path) -> None:
    lib.index(excludes=["*.png"])
    conn = sqlite3.connect(lib.layout.db)
    conn.execute("DELETE FROM roots")
    conn.commit()
    conn.close()
    lines = Library.repair(lib.directory)
    assert "restored 1 folders and their settings from roots.json" in lines
    assert lib.status()["settings"] == {str(photos): {"exclude": ["*.png"]}}
    assert lib.index().unchanged == 6


def _scribble_page_holding(db: Path, needle: bytes) -> None:
    data = bytearray(db.read_bytes())
    size = int.from_bytes(data[16:18], "big")
    for start in range(size, len(data), size):
        if data[start] == 0x0D and needle in data[start : start + size]:
            data[start : start + size] = b"\xa5" * size
            db.write_bytes(bytes(data))
            return
    raise AssertionError("no page holds that")


def test_repair_of_a_damaged_database_keeps_roots_cleans_up_and_its_advice_works(
    photos: Path, tiny_checkpoint: Path, home: Path
) -> None:
    args = ("--model", TINY, "--pretrained", str(tiny_checkpoint))
    assert run_cli("index", str(photos), *args, "--exclude", "p5.jpg").returncode == 0
    db = home / "library.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    _scribble_page_holding(db, str(photos).encode())
    for side in ("-wal", "-shm"):
        Path(f"{db}{side}").write_bytes(b"")  # as a crashed writer leaves them
    done = run_cli("repair")
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "restored 1 folders" in out and "run `clipsearch index`" in out
    leftovers = [p.name for p in home.iterdir() if p.name.endswith(("-wal", "-shm"))]
    assert leftovers == []
    status = json.loads(run_cli("status", "--json").stdout)
    assert status["roots"] == [str(photos)] and status["settings"][str(photos)]
    again = run_cli("index", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["indexed"] + status["images"] == 5
