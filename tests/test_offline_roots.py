"""Roots on a share that comes and goes: nothing removed while offline, nothing embedded twice
when it comes back, moved or renamed (issue 17)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import TINY, run_cli, save_photo

from clipsearch import ClipsearchError, Library
from clipsearch.storage.db import encode_path


@pytest.fixture()
def share(tmp_path: Path) -> Path:
    root = tmp_path / "nas"
    for seed in range(3):
        save_photo(root / f"p{seed}.jpg", seed=seed)
    save_photo(root / "2019" / "beach.jpg", seed=10)
    save_photo(root / "2019" / "hill.jpg", seed=11)
    return root


@pytest.fixture()
def lib(tmp_path: Path, share: Path, tiny_checkpoint: Path):
    with Library.open(
        tmp_path / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True
    ) as opened:
        assert opened.index([share]).indexed == 5
        yield opened


def _paths(lib: Library) -> set[str]:
    return {h.path for h in lib.search("a photo", top=50)}


def _unmount(share: Path) -> Path:
    """What an unmounted share leaves: its content elsewhere, an empty mount point here."""
    away = share.with_name("away")
    share.rename(away)
    share.mkdir()
    return away


def _remount(share: Path, away: Path) -> None:
    share.rmdir()
    away.rename(share)


def test_unmount_and_remount_remove_and_embed_nothing(lib: Library, share: Path) -> None:
    before = _paths(lib)
    away = _unmount(share)
    report = lib.index()
    assert (report.removed, report.indexed) == (0, 0)
    assert report.offline == [{"root": str(share), "reason": "empty", "photos": 5}]
    hits = lib.search("a photo", top=50)
    assert {h.path for h in hits} == before and not any(h.available for h in hits)
    assert lib.status()["offline"] == {str(share): "empty"}

    _remount(share, away)
    report = lib.index()
    assert (report.indexed, report.removed, report.unchanged, report.offline) == (0, 0, 5, [])
    hits = lib.search("a photo", top=50)
    assert {h.path for h in hits} == before and all(h.available for h in hits)


def test_a_missing_root_is_offline_even_when_named(lib: Library, share: Path) -> None:
    shutil.rmtree(share)
    report = lib.index([share])
    assert (report.removed, report.offline[0]["reason"]) == (0, "missing")
    assert lib.status()["images"] == 5


def test_a_root_on_another_device_than_recorded_is_offline(lib: Library, share: Path) -> None:
    conn = sqlite3.connect(lib.layout.db)
    conn.execute("UPDATE roots SET device = device + 1")
    conn.commit()
    conn.close()
    (share / "p0.jpg").unlink()  # would be removed, were the root trusted
    report = lib.index()
    assert (report.removed, report.offline[0]["reason"]) == (0, "on another device")


def test_remove_offline_drops_them_and_a_return_reuses_the_vectors(
    lib: Library, share: Path
) -> None:
    away = _unmount(share)
    report = lib.index(remove_offline=True)
    assert (report.removed, report.offline) == (5, [])
    assert lib.status()["images"] == 0 and lib.roots() == []
    _remount(share, away)
    report = lib.index([share])
    assert (report.indexed, report.reused) == (0, 5)
    assert lib.purge() == 0  # a reused vector is a file again, not a retained one


def test_a_removed_photo_that_comes_back_later_is_not_embedded_again(
    lib: Library, share: Path, tmp_path: Path
) -> None:
    kept = tmp_path / "kept.jpg"
    (share / "p1.jpg").rename(kept)
    assert lib.index().removed == 1
    assert lib.status()["retained"] == 1
    assert lib.index().indexed == 0  # a run in between changes nothing
    kept.rename(share / "2019" / "back.jpg")
    report = lib.index()
    assert (report.indexed, report.reused) == (0, 1)
    assert str(share / "2019" / "back.jpg") in _paths(lib)


def test_purge_and_the_retention_period_forget_retained_vectors(
    lib: Library, share: Path, tmp_path: Path, monkeypatch
) -> None:
    (share / "p1.jpg").rename(tmp_path / "kept.jpg")
    lib.index()
    assert lib.purge() == 1 and lib.status()["retained"] == 0
    (tmp_path / "kept.jpg").rename(share / "p1.jpg")
    assert lib.index().indexed == 1
    (share / "p2.jpg").unlink()
    lib.index()
    monkeypatch.setenv("CLIPSEARCH_RETAIN_DAYS", "0")
    lib.index()
    assert lib.status()["retained"] == 0


def test_moving_a_renamed_root_embeds_nothing(lib: Library, share: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "photos-on-nas"
    share.rename(renamed)
    assert lib.move(share, renamed) == 5
    assert lib.roots() == [str(renamed)]
    report = lib.index()
    assert (report.indexed, report.removed, report.unchanged) == (0, 0, 5)
    assert all(p.startswith(str(renamed)) for p in _paths(lib)) and len(_paths(lib)) == 5


def test_moving_a_subfolder_out_of_its_root_embeds_nothing(
    lib: Library, share: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "archive" / "2019"
    archive.parent.mkdir()
    (share / "2019").rename(archive)
    assert lib.move(share / "2019", archive) == 2
    assert lib.roots() == sorted([str(archive), str(share)])
    report = lib.index()
    assert (report.indexed, report.removed, report.unchanged) == (0, 0, 5)
    assert str(archive / "beach.jpg") in _paths(lib)


def test_a_share_indexed_under_a_new_mount_path_reuses_vectors(
    lib: Library, share: Path, tmp_path: Path
) -> None:
    laptop = tmp_path / "laptop-mount"
    share.rename(laptop)
    report = lib.index([laptop])
    assert (report.indexed, report.reused) == (0, 5)


def test_move_refuses_what_is_not_indexed(lib: Library, tmp_path: Path) -> None:
    with pytest.raises(ClipsearchError, match="not an indexed root"):
        lib.move(tmp_path / "elsewhere", tmp_path)


def test_cli_says_offline_in_one_line_and_marks_hits(
    share: Path, tiny_checkpoint: Path, home: Path
) -> None:
    index = ("index", "--model", TINY, "--pretrained", str(tiny_checkpoint))
    assert run_cli(*index, str(share)).returncode == 0
    _unmount(share)
    done = run_cli("index")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.decode().splitlines() if "offline" in line]
    assert len(lines) == 1 and "5 photos are kept" in lines[0], done.stderr
    assert "removed 0" in done.stderr.decode()
    hits = json.loads(run_cli("query", "a photo", "--json").stdout)
    assert hits and all(h["available"] is False for h in hits)
    assert run_cli("index", "--remove-offline").returncode == 0
    assert run_cli("status", "--json").stdout and os.path.isdir(home)


def test_an_old_library_gains_the_new_columns(tmp_path: Path) -> None:
    """Format 2 had roots(path, added) and no retained table: opening migrates it."""
    from clipsearch.storage.db import SCHEMA_VERSION, Store

    lib = tmp_path / "old"
    lib.mkdir()
    conn = sqlite3.connect(lib / "library.db")
    conn.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE roots (path BLOB PRIMARY KEY, added REAL NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '2');"
    )
    conn.execute("INSERT INTO roots VALUES (?, 1.0)", (encode_path("/photos"),))
    conn.commit()
    conn.close()
    store = Store.open(lib)
    try:
        assert store.meta("schema") == str(SCHEMA_VERSION) == "3"
        assert [(r.path, r.device, r.settings) for r in store.root_records()] == [
            ("/photos", None, {})
        ]
        assert store.count_retained() == 0
    finally:
        store.close()
