"""The command line a new user meets: paths with ~, options in either place, help, errors
in one line, and no silent exits (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY, run_cli, run_in_terminal, save_photo

from clipsearch import Library


@pytest.fixture()
def user_home(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "me"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CLIPSEARCH_HOME", raising=False)
    return home


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    for seed in range(3):
        save_photo(tmp_path / "photos" / f"p{seed}.jpg", seed=seed)
    return tmp_path / "photos"


def _one_line(done, *words: str, code: int = 2) -> str:
    err = done.stderr.decode()
    assert done.returncode == code, err
    assert err.count("\n") == 1 and err.startswith("clipsearch: "), err
    for word in words:
        assert word in err
    return err


def test_tilde_is_expanded_in_every_library_path(
    user_home: Path, photos: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    model = ("--model", TINY, "--pretrained", str(tiny_checkpoint))
    done = run_cli("index", str(photos), *model, "--library", "~/x", env={"HOME": str(user_home)})
    assert done.returncode == 0, done.stderr
    assert (user_home / "x" / "library.db").is_file()
    env = {"HOME": str(user_home), "CLIPSEARCH_HOME": "~/x"}
    assert json.loads(run_cli("status", "--json", env=env).stdout)["images"] == 3
    monkeypatch.chdir(tmp_path)
    with Library.open("~/y", model=TINY, pretrained=str(tiny_checkpoint), create=True):
        pass
    assert (user_home / "y" / "library.db").is_file() and not (tmp_path / "~").exists()


def test_library_option_before_the_command(home: Path, photos: Path, tiny_checkpoint) -> None:
    model = ("--model", TINY, "--pretrained", str(tiny_checkpoint))
    other = home.parent / "other"
    assert run_cli("--library", str(other), "index", str(photos), *model).returncode == 0
    done = run_cli(f"--library={other}", "status", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["images"] == 3


def test_short_help_and_one_line_top_level_errors() -> None:
    for args in (("-h",), ("query", "-h")):
        done = run_cli(*args)
        assert done.returncode == 0 and done.stdout.startswith(b"Usage:")
    _one_line(run_cli("nosuch"), "No such command 'nosuch'")
    _one_line(run_cli("--bogus", "status"), "No such option: --bogus")
    _one_line(run_cli("status", "--bogus"), "--bogus", "clipsearch status --help")


def test_help_shows_defaults_and_an_example_without_type_noise() -> None:
    commands = ["index", "query", "similar", "dupes", "status", "forget", "move", "purge"]
    for command in [*commands, "repair", "serve"]:
        text = run_cli(command, "--help", env={"COLUMNS": "200"}).stdout.decode()
        assert "Example: clipsearch " in text, command
        assert "<bool>" not in text and "<str>" not in text and "<list[" not in text, command
    index_help = " ".join(run_cli("index", "--help").stdout.decode().split())
    for default in ("[default: ViT-B-32]", "[default: laion2b_s34b_b79k]", "[default: auto]"):
        assert default in index_help
    dupes_help = " ".join(run_cli("dupes", "--help").stdout.decode().split())
    assert "[default: 0.95]" in dupes_help


def test_an_empty_library_and_a_missing_in_folder_say_so(
    home: Path, tmp_path: Path, photos: Path, tiny_checkpoint
) -> None:
    (tmp_path / "empty").mkdir()
    model = ("--model", TINY, "--pretrained", str(tiny_checkpoint))
    assert run_cli("index", str(tmp_path / "empty"), *model).returncode == 0
    _one_line(run_cli("query", "dog"), "no photos yet", "clipsearch index", code=1)
    _one_line(run_cli("dupes"), "no photos yet", code=1)
    assert run_cli("index", str(photos), *model).returncode == 0
    _one_line(run_cli("query", "dog", "--in", str(tmp_path / "nowhere")), "--in", "no such")
    assert run_cli("query", "dog", "--in", str(photos)).returncode == 0


def test_output_options_that_exclude_each_other_are_refused(home: Path) -> None:
    _one_line(run_cli("query", "dog", "--json", "--jsonl"), "--json and --jsonl")
    _one_line(run_cli("dupes", "-0", "--json"), "--json and -0")


def test_no_color_means_no_bold_or_dim_either(home: Path, photos: Path, tiny_checkpoint) -> None:
    model = ("--model", TINY, "--pretrained", str(tiny_checkpoint))
    assert run_cli("index", str(photos), *model).returncode == 0
    code, coloured = run_in_terminal("status")
    assert code == 0 and b"\x1b[" in coloured
    code, plain = run_in_terminal("query", "a photo", env={"NO_COLOR": "1"})
    assert code == 0 and b"\x1b[" not in plain, plain
    code, plain = run_in_terminal("status", env={"NO_COLOR": "1"})
    assert code == 0 and b"\x1b[" not in plain, plain


def test_device_on_query_is_used_not_ignored(home: Path, photos: Path, tiny_checkpoint) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this checks the refusal of a device that is not there")
    model = ("--model", TINY, "--pretrained", str(tiny_checkpoint))
    assert run_cli("index", str(photos), *model).returncode == 0
    assert run_cli("query", "a photo", "--device", "cpu").returncode == 0
    _one_line(run_cli("query", "a photo", "--device", "cuda"), "cuda is not available")


def test_query_stdin_applies_every_option_and_survives_a_bad_line(
    home: Path, photos: Path, tiny_checkpoint, tmp_path: Path
) -> None:
    model = ("--model", TINY, "--pretrained", str(tiny_checkpoint))
    assert run_cli("index", str(photos), *model).returncode == 0
    lines = b"a photo\n/no/such/photo.jpg\nred car\n"
    done = run_cli("query", "-", "-0", "-n", "2", input=lines)
    assert done.returncode == 2
    assert done.stderr.decode() == "clipsearch: line 2: no such image file: /no/such/photo.jpg\n"
    assert done.stdout.count(b"\0") == 4 and b"\n" not in done.stdout
    batch = json.loads(
        run_cli("query", "-", "--add", "sunset", "--json", input=b"a photo\n").stdout
    )
    alone = json.loads(run_cli("query", "a photo", "--add", "sunset", "--json").stdout)
    assert [h["path"] for h in batch[0]["results"]] == [h["path"] for h in alone]
    page = tmp_path / "g.html"
    assert run_cli("query", "-", "--html", str(page), input=b"a photo\nred car\n").returncode == 0
    assert (tmp_path / "g-1.html").is_file() and (tmp_path / "g-2.html").is_file()


def test_the_gallery_options_have_one_meaning_each(
    home: Path, photos: Path, tiny_checkpoint, tmp_path: Path, monkeypatch
) -> None:
    model = ("--model", TINY, "--pretrained", str(tiny_checkpoint))
    assert run_cli("index", str(photos), *model).returncode == 0
    monkeypatch.chdir(tmp_path)
    for given, written in (("mygallery", "mygallery.html"), ("./g2", "g2.html")):
        done = run_cli("query", "a photo", "--html", given, "-n", "2")
        assert done.returncode == 0, done.stderr
        page = (tmp_path / written).read_text()
        assert page.count('class="hit"') == 2 and "<h1>a photo</h1>" in page
    done = run_cli("query", "a photo", "--gallery", "--standalone", "-n", "3")
    assert done.returncode == 0, done.stderr
    page = Path(done.stdout.decode().strip())
    assert page.parent == home / "galleries"
    text = page.read_text()
    assert text.count('src="data:image/jpeg;base64,') == 3 and 'src="file:' not in text
    assert "standalone page of" in done.stderr.decode()
    _one_line(run_cli("query", "a photo", "--standalone"), "--standalone")
