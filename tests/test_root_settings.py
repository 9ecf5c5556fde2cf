"""Settings remembered per root, and failed files retried when that can help (issue 17)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import TINY, run_cli, save_photo

from clipsearch import ClipsearchError, Library


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    save_photo(folder / "a.jpg", seed=1)
    save_photo(folder / "b.png", seed=2)
    save_photo(folder / "Screenshots" / "s.jpg", seed=3)
    save_photo(folder / ".hidden" / "h.jpg", seed=4)
    return folder


@pytest.fixture()
def lib(tmp_path: Path, tiny_checkpoint: Path):
    with Library.open(
        tmp_path / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True
    ) as opened:
        yield opened


def _names(lib: Library) -> set[str]:
    return {Path(h.path).name for h in lib.search("a photo", top=50)}


def test_excludes_are_remembered_by_later_plain_runs(lib: Library, root: Path) -> None:
    assert lib.index([root], excludes=["*.png", "Screenshots/"]).indexed == 1
    (root / "c.png").write_bytes((root / "b.png").read_bytes())
    assert lib.index().indexed == 0  # the cron job's plain run
    assert _names(lib) == {"a.jpg"}
    assert lib.status()["settings"] == {str(root): {"exclude": ["*.png", "Screenshots/"]}}


def test_a_setting_given_again_replaces_the_old_one_with_a_note(lib: Library, root: Path) -> None:
    lib.index([root], excludes=["*.png"])
    report = lib.index(excludes=["Screenshots/"])
    assert report.notes == [f"{root}: exclude is now Screenshots/ (was *.png)"]
    assert _names(lib) == {"a.jpg", "b.png"}
    assert lib.index(excludes=[""]).reused == 1  # '' clears the patterns: s.jpg is back
    assert lib.status()["settings"] == {str(root): {"exclude": []}}


def test_hidden_and_raw_settings_are_remembered(lib: Library, root: Path) -> None:
    lib.index([root], default_excludes=False, raw_too=True)
    assert "h.jpg" in _names(lib)
    assert lib.index().removed == 0
    assert lib.status()["settings"][str(root)] == {"default_excludes": False, "raw_too": True}


def test_a_raised_pixel_limit_retries_what_the_old_one_skipped(lib: Library, root: Path) -> None:
    report = lib.index([root], max_megapixels=0.01)  # 160x120 photos are 0.0192 MP
    assert report.indexed == 0 and len(report.new_problems) == 3
    again = lib.index()
    assert (again.indexed, again.known_problems) == (0, 3)  # the limit is remembered
    raised = lib.index(max_megapixels="1")
    assert raised.indexed == 3 and lib.errors() == []


def test_retry_errors_tries_every_remembered_failure_again(lib: Library, root: Path) -> None:
    lib.index([root], max_megapixels=0.01)
    conn = sqlite3.connect(lib.layout.db)  # as if a NAS read had failed for a moment
    conn.execute("UPDATE errors SET reason = 'I/O error'")
    conn.execute("""UPDATE roots SET settings = '{"max_megapixels": "1"}'""")
    conn.commit()
    conn.close()
    assert lib.index().known_problems == 3  # not retried until they change...
    assert lib.index(retry_errors=True).indexed == 3  # ...or until asked


def test_a_bad_setting_fails_before_anything_is_recorded(lib: Library, root: Path) -> None:
    with pytest.raises(ClipsearchError, match="--max-megapixels"):
        lib.index([root], max_megapixels="lots")
    with pytest.raises(ClipsearchError, match="--exclude"):
        lib.index([root], excludes=["!"])
    assert lib.roots() == []


def test_cli_remembers_shows_and_replaces(root: Path, tiny_checkpoint: Path, home: Path) -> None:
    first = ("index", str(root), "--model", TINY, "--pretrained", str(tiny_checkpoint))
    assert run_cli(*first, "--exclude", "*.png").returncode == 0
    status = json.loads(run_cli("status", "--json").stdout)
    assert status["settings"] == {str(root): {"exclude": ["*.png"]}}
    assert "exclude *.png" in run_cli("status", env={"COLUMNS": "300"}).stdout.decode()
    done = run_cli("index", "--exclude", "Screenshots/", "--json")
    assert json.loads(done.stdout)["indexed"] == 1
    done = run_cli("index", "--no-default-excludes")
    assert "settings replaced" in done.stderr.decode() and "default-excludes is now off" in (
        done.stderr.decode()
    )
