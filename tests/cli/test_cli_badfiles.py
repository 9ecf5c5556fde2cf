"""Bad inputs never stop an index run: each is skipped with a one-line reason, remembered, and
retried only once it changes; odd names are indexed and printed harmlessly."""

from __future__ import annotations

import errno
import io
import json
import os
import struct
import zlib
from pathlib import Path

import pytest
from conftest import TINY, save_photo
from typer.testing import CliRunner

from clipsearch.cli import app
from clipsearch.indexing import scan as scanner
from clipsearch.output.text import write_hits
from clipsearch.photos import decode as imaging
from clipsearch.results import Hit

runner = CliRunner()
NON_UTF8 = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 name from an old camera or Windows share
ANSI = "\x1b[31mred.jpg"
MARKUP = "[red]x[/red] <script>alert(1)</script>.jpg"


def cli(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def one_colour_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG: a 30000×30000 one weighs ~100 KB yet decodes to 900 MP."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\0" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", data)
        + png_chunk(b"IEND", b"")
    )


def make_bad_tree(root: Path) -> dict[str, str]:
    """Good photos among every kind of bad file; returns {skipped name: reason fragment}."""
    save_photo(root / "good.jpg", seed=1)
    save_photo(root / "album.jpg" / "inside.jpg", seed=2)  # a folder named like a photo
    save_photo(root / NON_UTF8, seed=3)
    save_photo(root / ANSI, seed=4)
    save_photo(root / MARKUP, seed=5)
    save_photo(root / "replaced.jpg", seed=6)
    save_photo(root / "locked.jpg", seed=7)
    save_photo(root / "vanished.jpg", seed=8)
    (root / "empty.jpg").write_bytes(b"")
    whole = (root / "good.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "notes.jpg").write_text("shopping list, not a photo")
    (root / "bomb.png").write_bytes(one_colour_png(30_000, 30_000))
    (root / "zero-width.png").write_bytes(one_colour_png(0, 16))
    (root / "\x1b]0;pwned\x07.jpg").write_bytes(b"")
    os.symlink(root / "nowhere.jpg", root / "broken.jpg")
    os.symlink("self.jpg", root / "self.jpg")
    os.symlink(root, root / "loop")
    return {
        "empty.jpg": "empty file",
        "truncated.jpg": "truncated",
        "notes.jpg": "not an image",
        "bomb.png": "megapixel",
        "zero-width.png": "PNG",  # Pillow refuses the header before its size is known
        "\x1b]0;pwned\x07.jpg": "empty file",
        "broken.jpg": "broken symlink",
        "self.jpg": "symlink loop",
        "loop": "symlink loop",
        "locked.jpg": "permission denied",
        "vanished.jpg": "disappeared",
    }


def deny_reading(monkeypatch, path: Path) -> None:
    """chmod 000 stops no one when the tests run as root; then refuse the open ourselves."""
    if os.geteuid() != 0:
        path.chmod(0)
        return
    real_open = open

    def guarded_open(file, *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(imaging, "open", guarded_open, raising=False)


def change_after_scan(monkeypatch, vanished: Path, replaced: Path) -> None:
    """Delete one file and replace another between the scan and the decoding."""
    real_scan = scanner.scan

    def scan_then_change(*args, **kwargs):
        found = real_scan(*args, **kwargs)
        vanished.unlink()
        replaced.unlink()
        save_photo(replaced, seed=60, quality=60)
        return found

    monkeypatch.setattr(scanner, "scan", scan_then_change)


def index_json(*args) -> tuple[dict, str]:
    result = cli("index", *args, "--json")
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout), result.stderr


def query_json(*args) -> list[dict]:
    result = cli("query", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture()
def bad_run(tmp_path, home, tiny_checkpoint, monkeypatch, forked_workers):
    """One index run over the bad tree, with the faults a root test cannot cause for real."""
    root = tmp_path / "Photos"
    expected = make_bad_tree(root)
    save_photo(tmp_path / "elsewhere" / "new-content.jpg", seed=60, quality=60)
    with monkeypatch.context() as patch:
        deny_reading(patch, root / "locked.jpg")
        change_after_scan(patch, root / "vanished.jpg", root / "replaced.jpg")
        model = ("--model", TINY, "--pretrained", tiny_checkpoint, "--max-megapixels", "100")
        summary, stderr = index_json(root, *model)
    (root / "locked.jpg").chmod(0o644)
    return root, expected, summary, stderr


def test_each_bad_file_is_skipped_with_its_reason(bad_run):
    root, expected, summary, stderr = bad_run
    reasons = {Path(e["path"]).name: e["reason"] for e in summary["errors"]}
    assert set(reasons) == set(expected)
    for name, fragment in expected.items():
        assert fragment in reasons[name], (name, reasons[name])
    assert summary["skipped"] == len(expected)
    assert summary["indexed"] == 6  # good, inside, non-UTF-8, ANSI, markup, replaced
    skip_lines = [line for line in stderr.splitlines() if line.startswith("clipsearch: skipped ")]
    assert len(skip_lines) == len(expected)
    assert "\x1b" not in stderr and "\x07" not in stderr  # hostile names are shown escaped
    assert "\\x1b]0;pwned\\x07.jpg: empty file" in stderr


def test_odd_names_and_folders_are_indexed(bad_run, tmp_path):
    root = bad_run[0]
    paths = {h["path"] for h in query_json("anything", "-n", "50")}
    for name in ("good.jpg", "album.jpg/inside.jpg", NON_UTF8, ANSI, MARKUP, "replaced.jpg"):
        assert str(root / name) in paths, name
    assert len(paths) == 6
    hits = query_json(root / NON_UTF8)
    assert hits[0]["path"] == str(root / NON_UTF8)
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    plain = cli("query", root / NON_UTF8, "-n", "1")
    assert plain.stdout_bytes == os.fsencode(root) + b"/caf\xe9.jpg\n"  # the real bytes, for xargs
    # The replaced file was embedded as it is now, not as the scan saw it.
    copy = query_json(tmp_path / "elsewhere" / "new-content.jpg")
    assert copy[0]["path"] == str(root / "replaced.jpg")
    assert copy[0]["score"] == pytest.approx(1.0, abs=1e-3)


def test_hostile_names_print_harmlessly_in_a_table(bad_run, capsys):
    root = bad_run[0]
    hits = [Hit(1, 0.5, str(root / ANSI)), Hit(2, 0.4, str(root / MARKUP))]
    write_hits(hits, "table", io.BytesIO())
    shown = capsys.readouterr().out
    assert "\x1b[31m" not in shown and "\\x1b[31mred.jpg" in shown
    assert "[red]x[/red] <script>alert(1)</script>.jpg" in shown  # literal, not rich markup


def test_skipped_files_are_remembered_and_retried_once_changed(bad_run):
    root, expected, _, _ = bad_run
    remembered = set(expected) - {"vanished.jpg"}  # gone now, so no longer a problem
    errors = json.loads(cli("status", "--errors", "--json").stdout)
    assert {Path(e["path"]).name for e in errors} == remembered
    assert all(e["reason"] and e["size"] >= 0 for e in errors)
    listed = cli("status", "--errors").stdout
    assert "notes.jpg: not an image file" in listed and "\x1b" not in listed

    again = cli("index")
    assert again.exit_code == 0
    assert again.stderr.startswith(
        f"indexed 0, unchanged 6, moved 0, removed 0, skipped {len(remembered)} "
    )
    assert f"{len(remembered)} files that failed before were not retried" in again.stderr
    assert "clipsearch: skipped" not in again.stderr

    save_photo(root / "notes.jpg", seed=9)  # fixed: indexed now
    stamp = (root / "truncated.jpg").stat()
    os.utime(root / "truncated.jpg", ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    third, _ = index_json()
    assert third["indexed"] == 1
    assert [Path(e["path"]).name for e in third["errors"]] == ["truncated.jpg"]  # retried
    assert third["skipped"] == len(remembered) - 1
    errors = json.loads(cli("status", "--errors", "--json").stdout)
    assert "notes.jpg" not in {Path(e["path"]).name for e in errors}


def test_unreadable_query_image_is_a_clear_error(bad_run):
    root = bad_run[0]
    result = cli("query", root / "notes.jpg")
    assert result.exit_code == 2
    assert result.stderr.startswith("clipsearch: cannot read image ")
    assert "not an image file" in result.stderr and result.stderr.count("\n") == 1


def test_library_is_private(bad_run, home):
    for folder in [home, *(p for p in home.rglob("*") if p.is_dir())]:
        assert folder.stat().st_mode & 0o077 == 0, folder


def test_a_folder_unreadable_for_a_while_keeps_its_photos(
    tmp_path, home, tiny_checkpoint, monkeypatch
):
    root = tmp_path / "Photos"
    save_photo(root / "a" / "x.jpg", seed=1)
    save_photo(root / "b" / "y.jpg", seed=2)
    index_json(root, "--model", TINY, "--pretrained", tiny_checkpoint)
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(root / "b"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    with monkeypatch.context() as patch:
        patch.setattr(scanner.os, "scandir", scandir)
        summary, _ = index_json()
    assert summary["removed"] == 0
    assert summary["errors"] == [
        {"path": str(root / "b"), "reason": "cannot open folder: Permission denied"}
    ]
    assert str(root / "b" / "y.jpg") in {h["path"] for h in query_json("x", "-n", "5")}
    healed, _ = index_json()
    assert (healed["removed"], healed["unchanged"], healed["skipped"]) == (0, 2, 0)
    assert json.loads(cli("status", "--errors", "--json").stdout) == []


@pytest.mark.slow
def test_a_decode_worker_that_dies_costs_one_file_not_the_run(
    tmp_path, home, tiny_checkpoint, monkeypatch
):
    """A worker killed mid-decode (the OOM killer's way) used to end the run in a
    'DataLoader worker exited unexpectedly' traceback, and every later run did the same."""
    import multiprocessing
    import signal

    from clipsearch.indexing import pipeline

    root = tmp_path / "Photos"
    # More than eight files: a run of eight or fewer decodes inline, in this very process,
    # and the kill below then took pytest with it (once the user cache held the export).
    for seed in range(9):
        save_photo(root / f"p{seed}.jpg", seed=seed)
    save_photo(root / "killer.jpg", seed=99)
    real = imaging.load_image_and_metadata
    test_process = os.getpid()

    def die_on_killer(path, **kwargs):
        if Path(path).name == "killer.jpg":
            assert os.getpid() != test_process, "decoded inline: no worker to kill"
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, **kwargs)

    # The model's export written first, in another library: with the export thread of a
    # first run alive, workers start by forkserver and would not see the patch below.
    save_photo(tmp_path / "warm" / "w.jpg", seed=1)
    warm = ("--model", TINY, "--pretrained", tiny_checkpoint, "--library", tmp_path / "wl")
    index_json(tmp_path / "warm", *warm)
    monkeypatch.setattr(imaging, "load_image_and_metadata", die_on_killer)
    # Workers must be forks to see the patch: with a thread left by an earlier test alive,
    # the pipeline would start them by forkserver.
    monkeypatch.setattr(pipeline, "_context", lambda **_: multiprocessing.get_context("fork"))
    monkeypatch.setattr(pipeline, "worker_plan", lambda *_: pipeline.WorkerPlan(1, 1))
    summary, stderr = index_json(root, "--model", TINY, "--pretrained", tiny_checkpoint)

    assert summary["indexed"] == 9 and summary["skipped"] == 1, stderr
    assert [(Path(e["path"]).name, e["reason"]) for e in summary["errors"]] == [
        ("killer.jpg", pipeline.WORKER_DIED)
    ]
    again, _ = index_json()
    assert again["indexed"] == 0 and again["unchanged"] == 9 and again["errors"] == []
