"""The core contract through the real CLI: indexing, change detection, queries, output modes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import TINY, photo, run_cli, run_in_terminal, save_photo
from typer.testing import CliRunner

from clipsearch.cli import app

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture()
def photos(tmp_path) -> Path:
    root = tmp_path / "Photos"
    for i in range(6):
        save_photo(root / f"img{i}.jpg", seed=i)
    save_photo(root / "sub" / "LOUD.JPG", seed=10)
    save_photo(root / "sub" / "deep" / "pic.png", seed=11)
    save_photo(root / ".hidden" / "secret.jpg", seed=12)
    save_photo(root / ".dotfile.jpg", seed=13)
    (root / "notes.txt").write_text("not a photo")
    return root


@pytest.fixture()
def indexed(photos, home, tiny_checkpoint) -> Path:
    result = cli("index", photos, "--model", TINY, "--pretrained", tiny_checkpoint, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["indexed"] == 8
    return photos


def query_json(*args: str) -> list[dict]:
    result = cli("query", *args, "--json")
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_first_index_embeds_visible_photos_only(indexed):
    summary = json.loads(cli("index", "--json").stdout)
    assert summary == summary | {"indexed": 0, "unchanged": 8, "moved": 0, "removed": 0}
    assert summary["skipped"] == 0
    assert isinstance(summary["seconds"], float)
    paths = {h["path"] for h in query_json("anything", "-n", "50")}
    assert str(indexed / "sub" / "LOUD.JPG") in paths  # extensions match case-insensitively
    assert not any(".hidden" in p or ".dotfile" in p for p in paths)
    assert len(paths) == 8


def test_image_query_finds_itself_first_with_score_one(indexed):
    target = indexed / "img3.jpg"
    hits = query_json(str(target))
    assert hits[0]["path"] == str(target)
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    assert all(a["score"] >= b["score"] for a, b in zip(hits, hits[1:], strict=False))


def test_image_query_of_an_unindexed_copy_matches_the_original(indexed, tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    save_photo(outside / "copy.jpg", seed=4)
    shutil.copy(indexed / "img4.jpg", outside / "copy.jpg")
    monkeypatch.chdir(outside)
    hits = query_json("./copy.jpg")
    assert hits[0]["path"] == str(indexed / "img4.jpg")
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)


def test_changes_between_runs(indexed):
    os.utime(indexed / "img0.jpg", ns=(1, 1))  # modified: re-embedded
    save_photo(indexed / "new.jpg", seed=20)  # added
    (indexed / "img1.jpg").unlink()  # deleted
    (indexed / "sub" / "moved").mkdir()
    (indexed / "img2.jpg").rename(indexed / "sub" / "moved" / "renamed.jpg")  # moved
    summary = json.loads(cli("index", indexed, "--json").stdout)
    assert (summary["indexed"], summary["moved"], summary["removed"]) == (2, 1, 1)
    assert summary["unchanged"] == 5
    paths = {h["path"] for h in query_json("x", "-n", "50")}
    assert str(indexed / "img1.jpg") not in paths
    assert str(indexed / "img2.jpg") not in paths
    assert str(indexed / "sub" / "moved" / "renamed.jpg") in paths
    assert str(indexed / "new.jpg") in paths
    hits = query_json(str(indexed / "sub" / "moved" / "renamed.jpg"))
    assert hits[0]["path"] == str(indexed / "sub" / "moved" / "renamed.jpg")
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_exclude_patterns(photos, home, tiny_checkpoint):
    args = ("--model", TINY, "--pretrained", tiny_checkpoint, "--json")
    result = cli("index", photos, "--exclude", "*.png", "--exclude", "sub/", *args)
    assert json.loads(result.stdout)["indexed"] == 6


def test_several_roots_and_in_filter(indexed, tmp_path):
    other = tmp_path / "Other"
    save_photo(other / "o.jpg", seed=30)
    assert cli("index", other).exit_code == 0
    assert {h["path"] for h in query_json("x", "-n", "50")} >= {str(other / "o.jpg")}
    inside = query_json("x", "-n", "50", "--in", str(indexed / "sub"))
    assert {h["path"] for h in inside} == {
        str(indexed / "sub" / "LOUD.JPG"),
        str(indexed / "sub" / "deep" / "pic.png"),
    }
    status = json.loads(cli("status", "--json").stdout)
    assert status["roots"] == sorted([str(indexed), str(other)])
    assert status["images"] == 9


def test_forget_drops_a_root(indexed, tmp_path):
    other = tmp_path / "Other"
    save_photo(other / "o.jpg", seed=30)
    cli("index", other)
    result = cli("forget", other)
    assert result.exit_code == 0
    assert str(other / "o.jpg") not in {h["path"] for h in query_json("x", "-n", "50")}
    assert json.loads(cli("status", "--json").stdout)["roots"] == [str(indexed)]
    assert cli("forget", tmp_path / "nowhere").exit_code == 2


def test_output_modes(indexed):
    plain = cli("query", "cat", "-n", "3")
    lines = plain.stdout.splitlines()
    assert len(lines) == 3 and all(os.path.isabs(p) and os.path.exists(p) for p in lines)
    jsonl = [
        json.loads(line) for line in cli("query", "cat", "-n", "3", "--jsonl").stdout.splitlines()
    ]
    fields = {"path", "score", "rank", "taken", "lat", "lon", "place", "camera", "available"}
    assert [set(r) for r in jsonl] == [fields] * 3
    null = cli("query", "cat", "-n", "3", "-0").stdout
    assert null.endswith("\0") and null.rstrip("\0").split("\0") == lines


def test_weights_add_and_sub_change_the_ranking(indexed):
    a, b = str(indexed / "img0.jpg"), str(indexed / "img5.jpg")
    assert query_json(a)[0]["path"] == a
    assert query_json("0.2:" + a, "--add", b)[0]["path"] == b
    assert query_json(a, "--add", b, "--sub", "3:" + a)[0]["path"] != a
    assert query_json("2:dog", "-a", "beach", "-s", "0.5:cat")  # text terms combine


def test_exit_codes(indexed):
    assert cli("query", "cat").exit_code == 0
    assert cli("query", "cat", "--min-score", "1.5").exit_code == 1
    assert cli("query", "x:cat").exit_code == 0  # text: only a number before ':' weighs
    for bad in ([""], ["./missing.jpg"], ["cat", "--top", "0"]):
        result = cli("query", *bad)
        assert result.exit_code == 2, bad
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("clipsearch: ")


def test_no_library_is_a_clear_error(home):
    result = cli("query", "cat")
    assert result.exit_code == 2
    assert "no library" in result.stderr and "clipsearch index" in result.stderr


def test_another_model_for_an_existing_library_is_refused(indexed, tiny_checkpoint):
    result = cli("index", indexed, "--model", "ViT-B-32", "--pretrained", "openai")
    assert result.exit_code == 2
    assert "was built with clipsearch-tiny" in result.stderr


def test_library_location_precedence(photos, tmp_path, monkeypatch, tiny_checkpoint):
    monkeypatch.delenv("CLIPSEARCH_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    args = ("--model", TINY, "--pretrained", tiny_checkpoint)
    assert cli("index", photos, *args).exit_code == 0
    assert (tmp_path / "xdg" / "clipsearch" / "library.db").exists()
    monkeypatch.setenv("CLIPSEARCH_HOME", str(tmp_path / "env"))
    assert cli("index", photos, *args).exit_code == 0
    assert (tmp_path / "env" / "library.db").exists()
    assert cli("index", photos, *args, "--library", tmp_path / "flag").exit_code == 0
    assert (tmp_path / "flag" / "library.db").exists()
    assert oct((tmp_path / "flag").stat().st_mode & 0o777) == "0o700"


def test_python_api(photos, tmp_path, tiny_checkpoint):
    from clipsearch import Library

    with Library.open(
        tmp_path / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True
    ) as lib:
        report = lib.index([photos])
        assert report.indexed == 8
        hits = lib.search(str(photos / "img1.jpg"), top=3)
    assert hits[0].path == str(photos / "img1.jpg") and hits[0].rank == 1


def test_table_on_a_terminal_and_paths_in_a_pipe(indexed, home):
    code, shown = run_in_terminal("query", "cat", "-n", "2")
    assert code == 0, shown
    text = shown.decode()
    assert "score" in text and "path" in text and str(indexed) in text
    piped = run_cli("query", "cat", "-n", "2")
    assert piped.returncode == 0
    assert all(os.path.isabs(p) for p in piped.stdout.decode().splitlines())
    assert piped.stderr == b""


@pytest.mark.slow
def test_offline_hub_fails_fast_with_both_ways_out(tmp_path):
    """A hub that accepts connections but never answers must not hold us for a minute."""
    import socket
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    save_photo(tmp_path / "p" / "a.jpg", seed=1)
    env = {
        "CLIPSEARCH_HOME": str(tmp_path / "lib"),
        "HF_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}",
        "HF_HOME": str(tmp_path / "hf"),
    }
    started = time.monotonic()
    result = run_cli("index", str(tmp_path / "p"), env=env)
    elapsed = time.monotonic() - started
    silent.close()
    message = result.stderr.decode()
    assert result.returncode == 2
    assert elapsed < 10, elapsed
    assert "ViT-B-32" in message and "laion2b_s34b_b79k" in message
    assert "--pretrained FILE" in message and "network" in message
    assert "Traceback" not in message


def test_checkpoint_formats_and_no_pickled_code(tmp_path, tiny_checkpoint, photos):
    import pickle

    import torch
    from safetensors.torch import load_file

    state = load_file(str(tiny_checkpoint))
    for suffix in (".pt", ".bin"):
        ckpt = tmp_path / f"weights{suffix}"
        torch.save(state, ckpt)
        lib = tmp_path / f"lib{suffix}"
        args = ("--library", lib, "--model", TINY, "--pretrained", ckpt, "--json")
        result = cli("index", photos, *args)
        assert result.exit_code == 0, result.stderr
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"x": Evil()}))
    result = cli(
        "index", photos, "--library", tmp_path / "e", "--model", TINY, "--pretrained", evil
    )
    assert result.exit_code == 2
    assert not marker.exists()
    assert "Traceback" not in result.stderr


def test_photo_fixture_is_deterministic():
    assert photo(1).tobytes() == photo(1).tobytes() != photo(2).tobytes()


def test_known_hub_table_matches_open_clip():
    import open_clip

    from clipsearch.model.spec import KNOWN_HUB

    for (name, tag), hub in KNOWN_HUB.items():
        assert open_clip.get_pretrained_cfg(name, tag)["hf_hub"] == hub


def test_progress_bar_on_a_terminal_only(photos, home, tiny_checkpoint):
    args = ("index", str(photos), "--model", TINY, "--pretrained", str(tiny_checkpoint))
    code, shown = run_in_terminal(*args)
    assert code == 0 and b"img/s" in shown and b"embedding" in shown
    save_photo(photos / "more.jpg", seed=40)
    piped = run_cli("index", str(photos))
    assert piped.returncode == 0 and b"\x1b" not in piped.stderr
    assert piped.stderr.decode().startswith("indexed 1, unchanged 8")


def test_an_open_library_never_serves_a_stale_index(photos, tmp_path, tiny_checkpoint):
    """A long-lived reader (`query -`, the API) sees what a later `index` run committed."""
    from clipsearch import Library

    lib_dir, spec = tmp_path / "lib", {"model": TINY, "pretrained": str(tiny_checkpoint)}
    with Library.open(lib_dir, **spec, create=True) as writer:
        writer.index([photos])
    with Library.open(lib_dir) as reader:
        assert len(reader.search("x", top=50)) == 8
        save_photo(photos / "late.jpg", seed=50)
        with Library.open(lib_dir) as writer:
            assert writer.index([photos]).indexed == 1
        hits = reader.search(str(photos / "late.jpg"), top=1)
        assert hits[0].path == str(photos / "late.jpg")
        assert len(reader.search("x", top=50)) == 9
