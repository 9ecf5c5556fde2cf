"""similar, dupes, the HTML gallery, terminal previews and batch queries, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY, photo, run_cli, run_in_terminal, save_photo
from fakes import PixelEncoder
from PIL import Image
from typer.testing import CliRunner

from clipsearch.cli import app
from clipsearch.library import Library

runner = CliRunner()


def cli(*args, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture()
def indexed(tmp_path, home, tiny_checkpoint) -> Path:
    root = tmp_path / "Photos"
    for i in range(8):
        save_photo(root / f"img{i}.jpg", seed=i)
    result = cli("index", root, "--model", TINY, "--pretrained", tiny_checkpoint)
    assert result.exit_code == 0, result.stderr
    return root


def test_similar_leaves_the_image_itself_out(indexed):
    result = cli("similar", indexed / "img2.jpg", "-n", "3", "--json")
    hits = json.loads(result.stdout)
    assert result.exit_code == 0 and len(hits) == 3
    assert str(indexed / "img2.jpg") not in {h["path"] for h in hits}
    assert [h["rank"] for h in hits] == [1, 2, 3]


def test_similar_accepts_an_image_outside_the_library(indexed, tmp_path):
    outside = save_photo(tmp_path / "elsewhere" / "x.png", seed=3)
    hits = json.loads(cli("similar", outside, "--json").stdout)
    assert hits[0]["path"] == str(indexed / "img3.jpg")
    assert cli("similar", tmp_path / "missing.jpg").exit_code == 2


def test_batch_queries_from_stdin(indexed):
    result = cli("query", "-", "-n", "2", "--jsonl", input="cat\n\ndog on a beach\n")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0
    assert [r["query"] for r in rows] == ["cat", "cat", "dog on a beach", "dog on a beach"]
    grouped = json.loads(cli("query", "-", "-n", "1", "--json", input="a\nb\n").stdout)
    assert [g["query"] for g in grouped] == ["a", "b"] and all(
        len(g["results"]) == 1 for g in grouped
    )
    plain = cli("query", "-", "-n", "2", input="a\nb\n").stdout.split("\n\n")
    assert len(plain) == 2


def test_exact_search_matches_default_search(indexed):
    default = json.loads(cli("query", "sunset", "--json").stdout)
    exact = json.loads(cli("query", "sunset", "--json", "--exact").stdout)
    assert [h["path"] for h in default] == [h["path"] for h in exact]


def test_html_gallery_to_default_and_named_file(indexed, tmp_path, monkeypatch):
    result = cli("query", "--gallery", "cat", "-n", "5")
    page = Path(result.stdout.strip())
    assert result.exit_code == 0 and page.is_file() and page.suffix == ".html"
    assert page.read_text().count('class="hit"') == 5
    named = tmp_path / "out.html"
    opened = tmp_path / "opened"
    monkeypatch.setenv("BROWSER", f"touch {opened} %s")
    result = cli("query", "cat", "--html", named, "--open", "-n", "3")
    assert Path(result.stdout.strip()) == named
    assert named.read_text().count('class="hit"') == 3
    assert opened.exists()


def test_preview_writes_kitty_images_on_a_terminal_only(indexed):
    env = {"TERM": "xterm-kitty", "KITTY_WINDOW_ID": "1", "TMUX": ""}
    code, shown = run_in_terminal("query", "cat", "-n", "2", "--preview", env=env)
    assert code == 0
    assert shown.count(b"\x1b_Ga=T") == 2
    piped = run_cli("query", "cat", "-n", "2", "--preview", env=env)
    assert b"\x1b" not in piped.stdout and len(piped.stdout.splitlines()) == 2


def test_preview_without_a_protocol_is_a_clear_error(indexed):
    env = {"TERM": "xterm-256color", "TERM_PROGRAM": "", "KITTY_WINDOW_ID": "", "LC_TERMINAL": ""}
    code, shown = run_in_terminal("query", "cat", "--preview", env=env)
    assert code == 2 and b"--html" in shown and b"Traceback" not in shown


@pytest.fixture()
def dupes_library(tmp_path, tiny_checkpoint) -> tuple[Path, Path]:
    """Originals plus a q70 re-encode, a half-size copy and a 5% crop of some, embedded with
    the deterministic pixel encoder (random CLIP weights know nothing of similarity)."""
    root = tmp_path / "dupes"
    root.mkdir()
    for seed in range(6):
        photo(seed, (320, 240)).save(root / f"orig{seed}.png")
    for seed in (0, 1, 2):
        original = Image.open(root / f"orig{seed}.png")
        original.save(root / f"orig{seed}-q70.jpg", quality=70)
        original.resize((160, 120)).save(root / f"orig{seed}-half.png")
        original.crop((16, 12, 320, 240)).save(root / f"orig{seed}-crop.png")
    lib_dir = tmp_path / "lib"
    with Library.open(lib_dir, model=TINY, pretrained=str(tiny_checkpoint), create=True) as lib:
        lib.use_encoder(PixelEncoder())
        assert lib.index([root]).indexed == 15
    return root, lib_dir


def test_dupes_groups_copies_with_their_originals(dupes_library):
    root, lib_dir = dupes_library
    result = cli("dupes", "--library", lib_dir, "--threshold", "0.8", "--json")
    groups = json.loads(result.stdout)
    assert result.exit_code == 0
    found = sorted(sorted(Path(p).name for p in g["paths"]) for g in groups)
    expected = sorted(
        sorted(f"orig{s}{suffix}" for suffix in (".png", "-q70.jpg", "-half.png", "-crop.png"))
        for s in (0, 1, 2)
    )
    assert found == expected
    assert [g["best"] for g in groups] == sorted((g["best"] for g in groups), reverse=True)
    assert all(p["score"] >= 0.8 for g in groups for p in g["pairs"])


def test_dupes_output_modes_and_exit_codes(dupes_library, tmp_path):
    root, lib_dir = dupes_library
    plain = cli("dupes", root, "--library", lib_dir, "--threshold", "0.8").stdout
    blocks = plain.strip("\n").split("\n\n")
    assert len(blocks) == 3 and all(len(b.splitlines()) == 4 for b in blocks)
    page = tmp_path / "dupes.html"
    cli("dupes", "--library", lib_dir, "--threshold", "0.8", "--html", page)
    assert page.read_text().count('class="hit"') == 12
    nothing = cli("dupes", "--library", lib_dir, "--threshold", "0.99999")
    assert nothing.exit_code == 1 and nothing.stdout == ""
    assert cli("dupes", "--library", lib_dir, "--threshold", "3").exit_code == 2
