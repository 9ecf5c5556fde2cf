"""The Python API, paired with the CLI tests in tests/cli: the same behaviour, called directly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, run_cli, save_photo

import clipsearch
from clipsearch import ClipsearchError, DupeGroup, Hit, IndexReport, Library


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for seed in range(4):
        save_photo(root / f"p{seed}.jpg", seed=seed)
    save_photo(root / "copy.png", seed=0)  # the same picture again, in another format
    (root / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


@pytest.fixture()
def lib(tmp_path: Path, photos: Path, tiny_checkpoint: Path):
    with Library.open(
        tmp_path / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True
    ) as opened:
        report = opened.index([photos])
        assert isinstance(report, IndexReport)
        assert (report.indexed, report.skipped) == (5, 1)
        yield opened


def test_public_names_import_lazily_without_torch() -> None:
    script = (
        "import sys, clipsearch\n"
        "print(' '.join(clipsearch.__all__))\n"
        "assert 'torch' not in sys.modules and 'clipsearch.library' not in sys.modules\n"
        "clipsearch.Library\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "ClipsearchError", "DupeGroup", "Hit", "IndexReport", "Library", "PhotoDetails",
        "__version__",
    ]  # fmt: skip
    with pytest.raises(AttributeError):
        clipsearch.Nothing  # noqa: B018


def test_version_on_the_command_line() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.decode().strip() == f"clipsearch {clipsearch.__version__}"


def test_opening_without_a_library_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ClipsearchError, match="no library"):
        Library.open(tmp_path / "none")


def test_search_similar_and_duplicates(lib: Library, photos: Path) -> None:
    hits = lib.search("a photo", top=3)
    assert [h.rank for h in hits] == [1, 2, 3] and all(isinstance(h, Hit) for h in hits)
    assert hits[0].score >= hits[-1].score
    like = lib.similar(str(photos / "p0.jpg"), top=10)
    assert str(photos / "p0.jpg") not in [h.path for h in like]
    assert like[0].path == str(photos / "copy.png") and like[0].score > 0.99
    groups = lib.duplicates(threshold=0.99)
    assert any(isinstance(g, DupeGroup) and str(photos / "copy.png") in g.paths for g in groups)
    assert lib.search("a photo", within=photos / "nowhere") == []
    with pytest.raises(ClipsearchError, match="--top must be at least 1"):
        lib.search("a photo", top=0)


def test_status_errors_and_forget(lib: Library, photos: Path) -> None:
    status = lib.status()
    assert status["images"] == 5 and status["roots"] == [str(photos)]
    assert status["model"] == TINY and status["errors"] == 1
    assert [Path(e.path).name for e in lib.errors()] == ["broken.jpg"]
    assert lib.forget(photos) == 5
    assert lib.status()["images"] == 0 and lib.search("a photo") == []


def test_repair_of_a_healthy_library(lib: Library) -> None:
    lines = Library.repair(lib.directory)
    assert lines[0] == "the database passed its integrity check"
    assert lines[-1] == "rebuilt the vector index from 5 photos"


def test_a_query_after_indexing_runs_without_torch(lib: Library) -> None:
    script = (
        "import sys\n"
        "from clipsearch import Library\n"
        f"with Library.open({str(lib.directory)!r}) as lib:\n"
        "    assert len(lib.search('a photo', top=2)) == 2\n"
        "assert 'torch' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
