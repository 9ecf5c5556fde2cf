"""Hostile input from issue 18: nothing hangs, nothing eats the machine, and nothing that is
not clipsearch's own is changed."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import TINY, save_photo
from typer.testing import CliRunner

from clipsearch.cli import app

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_error_line(result, *fragments: str) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    return result.stderr


@pytest.fixture()
def photos(tmp_path) -> Path:
    root = tmp_path / "Photos"
    for seed in range(3):
        save_photo(root / f"p{seed}.jpg", seed=seed)
    return root


def model(checkpoint: Path) -> tuple[str, ...]:
    return ("--model", TINY, "--pretrained", str(checkpoint))


# -- High 3: the library folder --------------------------------------------------------------


def test_an_existing_shared_folder_keeps_its_mode_and_gets_private_files(
    tmp_path, photos, tiny_checkpoint
):
    """A shared 1777 folder given as --library lost its sticky bit and became 700."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)

    result = cli("index", photos, "--library", shared, *model(tiny_checkpoint), "--json")

    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    for entry in shared.iterdir():
        assert entry.stat().st_mode & 0o077 == 0, entry.name


def test_a_new_library_folder_is_private(tmp_path, photos, tiny_checkpoint):
    library = tmp_path / "new" / "lib"
    result = cli("index", photos, "--library", library, *model(tiny_checkpoint))

    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(library.stat().st_mode) == 0o700
    assert stat.S_IMODE((library / "library.db").stat().st_mode) == 0o600


def test_a_non_empty_folder_that_is_not_a_library_is_refused_untouched(tmp_path, photos):
    folder = tmp_path / "docs"
    folder.mkdir()
    folder.chmod(0o755)
    (folder / "taxes.pdf").write_bytes(b"%PDF")

    result = cli("index", photos, "--library", folder)

    one_error_line(result, f"{folder} is not empty and is not a clipsearch library", "--library")
    assert sorted(os.listdir(folder)) == ["taxes.pdf"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


def test_a_file_as_library_is_refused(tmp_path, photos):
    file = tmp_path / "notes.txt"
    file.write_text("x")

    one_error_line(cli("index", photos, "--library", file), "is a file, not a folder")


def test_a_library_whose_database_was_lost_is_still_adopted(tmp_path, photos, tiny_checkpoint):
    library = tmp_path / "lib"
    assert cli("index", photos, "--library", library, *model(tiny_checkpoint)).exit_code == 0
    for name in ("library.db", "library.db-wal", "library.db-shm"):
        (library / name).unlink(missing_ok=True)

    again = cli("index", photos, "--library", library, *model(tiny_checkpoint), "--json")

    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["indexed"] == 3


# -- Medium 4: two first runs with different models ------------------------------------------


def test_racing_first_runs_with_different_models_do_not_mix_vectors(
    tmp_path, photos, tiny_checkpoint
):
    """Both opened the new library before either recorded a model; both used to succeed."""
    import shutil

    from clipsearch import Library
    from clipsearch.errors import ClipsearchError

    other = tmp_path / "other.safetensors"
    shutil.copy(tiny_checkpoint, other)
    library = tmp_path / "lib"
    first = Library.open(library, model=TINY, pretrained=str(tiny_checkpoint), create=True)
    second = Library.open(library, model=TINY, pretrained=str(other), create=True)
    with first, second:
        assert first.index([photos]).indexed == 3
        with pytest.raises(ClipsearchError, match="another run has just built this library"):
            second.index([photos])
    status = json.loads(cli("status", "--library", library, "--json").stdout)
    assert status["images"] == 3 and str(tiny_checkpoint) in json.dumps(status)


# -- Medium 5: a reused vector's identity ----------------------------------------------------


def bmp_with_middle(path: Path, seed: int) -> Path:
    """A 600x600 BMP whose first and last 64 KB (header, edge rows) are the same for every
    seed; only the middle rows differ."""
    from conftest import photo
    from PIL import Image

    image = Image.new("RGB", (600, 600), (90, 120, 150))
    image.paste(photo(seed, (600, 400)), (0, 100))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="BMP")
    return path


def test_a_new_file_with_equal_margins_is_not_taken_for_a_moved_one(
    tmp_path, home, tiny_checkpoint
):
    root = tmp_path / "Photos"
    old = bmp_with_middle(root / "old.bmp", seed=1)
    assert cli("index", root, *model(tiny_checkpoint)).exit_code == 0
    old.unlink()
    new = bmp_with_middle(root / "new.bmp", seed=2)
    assert new.read_bytes()[:65536] == bmp_with_middle(tmp_path / "x.bmp", 1).read_bytes()[:65536]

    summary = json.loads(cli("index", "--json").stdout)

    assert (summary["moved"], summary["indexed"], summary["removed"]) == (0, 1, 1)
    new.rename(root / "renamed.bmp")  # a real move is still recognised
    summary = json.loads(cli("index", "--json").stdout)
    assert (summary["moved"], summary["indexed"]) == (1, 0)


# -- Medium 6: -n beyond the library ---------------------------------------------------------


def test_top_beyond_any_int64_lists_the_whole_library(photos, home, tiny_checkpoint):
    """-n 2**63 was a traceback (the huge-but-representable -n values that allocated without
    bound are tested on vectorindex.search in a memory-capped child)."""
    assert cli("index", photos, *model(tiny_checkpoint)).exit_code == 0
    for command in (("query", "sky"), ("similar", photos / "p0.jpg")):
        result = cli(*command, "-n", str(2**63), "--json")
        assert result.exit_code == 0, result.stderr
        assert len(json.loads(result.stdout)) == (3 if command[0] == "query" else 2)


# -- Medium 7: file-system strings in messages -----------------------------------------------

OSC = "\x1b]0;pwned\x07\x1b[2J"  # set the terminal's title, clear the screen


def test_paths_that_look_like_rich_markup_are_shown_literally(
    tmp_path, home, tiny_checkpoint, monkeypatch
):
    """A root named `a[/b]` made `status` a MarkupError traceback; `[old] photos` lost `[old]`."""
    monkeypatch.setenv("COLUMNS", "400")
    roots = [tmp_path / "a[/b]", tmp_path / "[old] photos"]  # a[/b]: a folder `a[` holding `b]`
    for seed, root in enumerate(roots):
        save_photo(root / "p.jpg", seed=seed)
    assert cli("index", *roots, *model(tiny_checkpoint)).exit_code == 0

    shown = cli("status")

    assert shown.exit_code == 0, shown.stderr
    for root in roots:
        assert str(root) in shown.stdout


def test_symlink_names_targets_and_loops_reach_the_terminal_escaped(
    tmp_path, home, tiny_checkpoint
):
    root = tmp_path / "Photos"
    save_photo(root / "p.jpg", seed=1)
    (root / f"to-{OSC}.jpg").symlink_to(root / f"gone-{OSC}.jpg")  # broken: target named
    looped = root / f"loop{OSC}"
    looped.mkdir()
    (looped / "back").symlink_to(looped)

    indexed = cli("index", root, *model(tiny_checkpoint))
    listed = cli("status", "--errors")
    refused = cli("forget", tmp_path / f"not-a-root{OSC}")
    (tmp_path / "elsewhere").mkdir()

    assert indexed.exit_code == 0, indexed.stderr
    assert "broken symlink (target" in listed.stdout and "symlink loop" in listed.stdout
    one_error_line(refused, "is not an indexed root")
    for text in (indexed.stderr, listed.stdout, refused.stderr):
        assert "\x1b" not in text and "\x07" not in text, text
        assert "\\x1b]0;pwned\\x07" in text, text


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308", "0", "-3", "lots"])
def test_max_megapixels_must_be_a_positive_finite_number(photos, home, value):
    one_error_line(cli("index", photos, "--max-megapixels", value), "--max-megapixels")


# -- Medium 8: damage the checks used to miss ------------------------------------------------


@pytest.fixture()
def indexed(photos, home, tiny_checkpoint) -> Path:
    result = cli("index", photos, *model(tiny_checkpoint))
    assert result.exit_code == 0, result.stderr
    assert text_weights(home).exists()
    return home


def text_weights(library: Path) -> Path:
    """The text tower's weights this library's queries use: the user cache's export it
    recorded (issue 12), else its own `text/` folder."""
    import sqlite3

    from clipsearch.storage.layout import UserCache

    with sqlite3.connect(library / "library.db") as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'export'").fetchone()
    folder = UserCache.default().text_export(row[0]) if row else library / "text"
    return folder / "weights.bin"


def edit_db(library: Path, sql: str, *args) -> None:
    import sqlite3

    conn = sqlite3.connect(library / "library.db", isolation_level=None)
    conn.execute(sql, args)
    conn.close()


def drop_vector_files(library: Path) -> None:
    for path in library.glob("vectors-*.faiss"):
        path.unlink()


def query_paths(*args) -> list[str]:
    result = cli("query", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return [hit["path"] for hit in json.loads(result.stdout)]


def test_a_huge_float_in_a_stored_vector_is_found_and_repaired(indexed):
    """A 1e30 in one row made that photo score 1.35e29 on every query; repair said passed."""
    import sqlite3

    import numpy as np

    conn = sqlite3.connect(indexed / "library.db")
    file_id, blob = conn.execute("SELECT id, vector FROM files ORDER BY id LIMIT 1").fetchone()
    conn.close()
    vector = np.frombuffer(blob, np.float32).copy()
    vector[0] = 1e30
    edit_db(indexed, "UPDATE files SET vector = ? WHERE id = ?", vector.tobytes(), file_id)
    drop_vector_files(indexed)  # the vector file is rebuilt from the rows

    one_error_line(cli("query", "sky"), "damaged vectors", "clipsearch repair")
    repaired = cli("repair")

    assert repaired.exit_code == 0, repaired.stderr
    assert "dropped 1 photos whose stored vector was damaged" in repaired.stdout
    assert len(query_paths("sky")) == 2
    assert json.loads(cli("index", "--json").stdout)["indexed"] == 1


def test_a_damaged_fingerprint_byte_does_not_stop_index_and_repair_fixes_it(indexed):
    """Index failed forever with "run repair", and repair found nothing wrong."""
    edit_db(indexed, "UPDATE files SET fingerprint = CAST(? AS TEXT) WHERE id = 1", b"\xff\xfe")

    again = cli("index", "--json")
    assert again.exit_code == 0, again.stderr
    repaired = cli("repair")

    assert "dropped 1 photos whose fingerprint was damaged" in repaired.stdout, repaired.stdout
    assert json.loads(cli("index", "--json").stdout)["indexed"] == 1


def test_a_library_db_from_another_model_is_one_line_and_repair_fixes_it(tmp_path, indexed, photos):
    """library.db copied from another model's library: an AssertionError on every query."""
    from fakes import PixelEncoder

    from clipsearch import Library

    other, checkpoint = tmp_path / "other", tmp_path / "elsewhere.safetensors"
    checkpoint.write_bytes(b"")
    with Library.open(other, model=TINY, pretrained=str(checkpoint), create=True) as lib:
        lib.use_encoder(PixelEncoder())
        lib.index([photos])
    # A library from before the user cache kept its towers in its own folder: the copied
    # database (which records no export) then meets towers of another size.
    shutil.copytree(text_weights(indexed).parent, indexed / "text")
    for name in ("library.db-wal", "library.db-shm"):
        (indexed / name).unlink(missing_ok=True)
    (indexed / "library.db").write_bytes((other / "library.db").read_bytes())
    drop_vector_files(indexed)

    one_error_line(cli("query", "sky"), "768-dimensional ones", "clipsearch repair")
    repaired = cli("repair")

    assert repaired.exit_code == 0, repaired.stderr
    assert "removed the exported text model (it makes" in repaired.stdout, repaired.stdout
    assert not (indexed / "text").exists()


def test_a_damaged_text_export_is_an_error_not_silence_and_repair_removes_it(indexed):
    """weights.bin overwritten with 0xFF: NaN vectors, every text query returned nothing."""
    weights = text_weights(indexed)
    weights.write_bytes(b"\xff" * weights.stat().st_size)

    one_error_line(cli("query", "sky"), "invalid query vector", "clipsearch repair")
    repaired = cli("repair")

    assert "removed the exported text model (its files do not match" in repaired.stdout
    assert "image model" not in repaired.stdout  # the intact tower stays
    assert len(query_paths("sky")) == 3  # torch again, and a fresh export
    assert text_weights(indexed).exists()


# -- Medium 9: a read-only library -----------------------------------------------------------


def read_only_run(library: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the CLI with `library` bind-mounted read-only over itself, in a private mount
    namespace (a read-only medium or snapshot; root ignores plain permissions)."""
    import shlex
    import sys

    command = " ".join(shlex.quote(str(a)) for a in (sys.executable, "-m", "clipsearch", *args))
    lib = shlex.quote(str(library))
    script = f"mount --bind {lib} {lib} && mount -o remount,bind,ro {lib} && exec {command}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "CLIPSEARCH_HOME": str(library)}
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=300
    )


def can_mount_read_only(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        result = read_only_run(probe, "--version")
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


@pytest.mark.slow
def test_queries_work_from_a_read_only_library(tmp_path, indexed, photos):
    """ "unable to open database file" for query, status and similar."""
    if not can_mount_read_only(tmp_path):
        pytest.skip("needs unshare -m and mount (root in a container that allows it)")
    cli("query", "warm up")  # vector and column caches exist, as after any use
    for args in (
        ("query", "sky", "--json"),
        ("similar", str(photos / "p0.jpg"), "--json"),
        ("status", "--json"),
    ):
        result = read_only_run(indexed, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
    writing = read_only_run(indexed, "index")
    assert writing.returncode == 2 and writing.stderr.count("\n") == 1, writing.stderr


def test_a_newer_library_is_refused_before_anything_is_written_to_it(home):
    import sqlite3

    home.mkdir()
    conn = sqlite3.connect(home / "library.db")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('schema', '99')")
    conn.commit()
    conn.close()

    one_error_line(cli("status"), "written by a newer clipsearch")

    conn = sqlite3.connect(home / "library.db")
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert tables == ["meta"] and journal == "delete"


# -- Medium 10: leftovers, thumbnails, the library's own folder, symlinks --------------------


def test_the_library_inside_an_indexed_root_never_indexes_its_own_thumbnails(
    photos, tiny_checkpoint, tmp_path
):
    library = photos / "clipsearch-library"
    first = cli("index", photos, "--library", library, *model(tiny_checkpoint), "--json")
    assert json.loads(first.stdout)["indexed"] == 3, first.stderr
    page = cli("query", "sky", "--library", library, "--html", tmp_path / "page.html")
    assert page.exit_code == 0, page.stderr
    assert list((library / "thumbnails").glob("*.jpg"))

    again = json.loads(cli("index", "--library", library, "--json").stdout)

    assert (again["indexed"], again["unchanged"]) == (0, 3)


def test_follow_links_indexes_a_linked_folder_outside_the_root(photos, home, tiny_checkpoint):
    outside = photos.parent / "outside"
    save_photo(outside / "far.jpg", seed=7)
    (photos / "linked").symlink_to(outside)

    plain = json.loads(cli("index", photos, *model(tiny_checkpoint), "--json").stdout)
    followed = json.loads(cli("index", photos, "--follow-links", "--json").stdout)

    assert plain["indexed"] == 3
    assert "outside the indexed folders" in plain["errors"][0]["reason"]
    assert followed["indexed"] == 1


@pytest.mark.parametrize("code", [28, 13])  # ENOSPC, EACCES
def test_thumbnails_that_cannot_be_written_are_one_line(indexed, tmp_path, monkeypatch, code):
    """A full disk, or a thumbnails folder root made in the user's library: a traceback."""
    from clipsearch.photos import thumbnails

    def cannot(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(thumbnails, "replace_atomically", cannot)
    result = cli("query", "sky", "--html", tmp_path / "page.html")

    one_error_line(result, "cannot write thumbnails in", os.strerror(code))


# -- Low: options that answered silently, a user without a home ------------------------------


def test_min_score_nan_and_in_a_file_are_errors_not_empty_answers(indexed, photos):
    one_error_line(cli("query", "sky", "--min-score", "nan"), "--min-score takes a number")
    one_error_line(cli("query", "sky", "--in", photos / "p0.jpg"), "--in takes a folder")
    one_error_line(cli("similar", photos / "p1.jpg", "--in", photos / "p0.jpg"), "--in takes")


def test_no_home_and_no_passwd_entry_is_one_line_not_a_folder_named_tilde(
    tmp_path, monkeypatch, photos
):
    import pwd

    def no_entry(uid):
        raise KeyError(uid)

    for name in ("HOME", "CLIPSEARCH_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    monkeypatch.chdir(tmp_path)

    one_error_line(cli("index", photos), "$HOME is not set", "--library DIR")
    one_error_line(cli("status"), "$CLIPSEARCH_HOME")
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize("name", ["evil.safetensors", "evil.npz"])
def test_weight_files_that_are_not_state_dicts_are_one_line(tmp_path, photos, name):
    """A pickle named .safetensors, an .npz of object arrays: tracebacks (no code ran)."""
    import pickle

    import numpy as np

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    weights = tmp_path / name
    if name.endswith(".npz"):
        np.savez(weights, a=np.array([Evil()], dtype=object))
    else:
        weights.write_bytes(pickle.dumps({"x": Evil()}))

    result = cli("index", photos, "--library", tmp_path / "lib", *model(weights))

    one_error_line(result, "cannot load")
    assert not marker.exists()


def test_repair_drops_photos_recorded_outside_every_root(indexed, photos):
    edit_db(indexed, "UPDATE files SET path = CAST(? AS BLOB) WHERE id = 1", b"/elsewhere/x.jpg")

    repaired = cli("repair")

    assert "dropped 1 photos recorded outside every indexed folder" in repaired.stdout
    assert "/elsewhere/x.jpg" not in query_paths("sky")
    assert len(query_paths("sky")) == 2


def test_a_non_utf8_name_round_trips_through_json(tmp_path, home, tiny_checkpoint):
    raw = os.fsencode(str(tmp_path / "Photos")) + b"/caf\xe9.jpg"
    save_photo(Path(os.fsdecode(raw)), seed=3)
    assert cli("index", tmp_path / "Photos", *model(tiny_checkpoint)).exit_code == 0

    for args in (("--json",), ("--jsonl",)):
        out = cli("query", "sky", *args).stdout
        record = json.loads(out)[0] if args == ("--json",) else json.loads(out.splitlines()[0])
        assert "\\udce9" in out and os.fsencode(record["path"]) == raw
