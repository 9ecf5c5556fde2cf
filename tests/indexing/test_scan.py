"""Scanner rules: which files a library walk finds, skips, counts or reports."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from clipsearch.errors import ClipsearchError
from clipsearch.indexing import scan as scanner
from clipsearch.indexing.scan import FoundFile, ScanResult, fingerprint, normalise_root, scan
from clipsearch.photos import formats


@pytest.fixture(autouse=True)
def all_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend every optional decoder is installed so results do not depend on the venv."""
    monkeypatch.setattr(formats, "missing_extra", lambda ext: None)


def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def found(result: ScanResult, root: Path) -> list[str]:
    """Found paths relative to root, in the scanner's order."""
    return [os.path.relpath(f.path, root) for f in result.files]


def problem_reasons(result: ScanResult, root: Path) -> dict[str, str]:
    return {os.path.relpath(path, root): reason for path, reason in result.problems}


def test_finds_images_recursively_with_any_case_extension(tmp_path: Path) -> None:
    for name in ["a.jpg", "B.JPG", "sub/c.Png", "sub/deep/d.HEIC", "sub/e.webp"]:
        touch(tmp_path / name)
    for name in ["notes.txt", "a.jpg.xmp", "sub/Thumbs.db", "noext"]:
        touch(tmp_path / name)

    result = scan([tmp_path])

    assert found(result, tmp_path) == [
        "B.JPG",
        "a.jpg",
        "sub/c.Png",
        "sub/deep/d.HEIC",
        "sub/e.webp",
    ]
    assert result.problems == []


def test_found_file_carries_absolute_path_size_and_mtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo = touch(tmp_path / "p.jpg", b"x" * 123)
    os.utime(photo, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    monkeypatch.chdir(tmp_path)

    result = scan(["."])

    assert result.files == [FoundFile(str(photo), 123, 1_600_000_000_123_456_789)]


def test_zero_byte_files_are_returned(tmp_path: Path) -> None:
    touch(tmp_path / "empty.jpg")

    assert [f.size for f in scan([tmp_path]).files] == [0]


def test_hidden_files_and_folders_are_skipped_by_default(tmp_path: Path) -> None:
    touch(tmp_path / "shown.jpg")
    touch(tmp_path / ".hidden.jpg")
    touch(tmp_path / "._shown.jpg")
    touch(tmp_path / ".secret/inside.jpg")
    touch(tmp_path / ".picasaoriginals/orig.jpg")

    assert found(scan([tmp_path]), tmp_path) == ["shown.jpg"]
    assert found(scan([tmp_path], default_excludes=False), tmp_path) == [
        "._shown.jpg",
        ".hidden.jpg",
        ".picasaoriginals/orig.jpg",
        ".secret/inside.jpg",
        "shown.jpg",
    ]


def test_a_hidden_root_is_still_scanned(tmp_path: Path) -> None:
    touch(tmp_path / ".photos/a.jpg")

    assert found(scan([tmp_path / ".photos"]), tmp_path / ".photos") == ["a.jpg"]


@pytest.mark.parametrize(
    "folder",
    [
        "@eaDir",
        "@EADIR",
        "#recycle",
        "#snapshot",
        "@Recycle",
        "@Recently-Snapshot",
        ".Trash",
        ".Trash-1000",
        ".Trashes",
        "$RECYCLE.BIN",
        "RECYCLER",
        "System Volume Information",
        "node_modules",
        ".git",
        ".thumbnails",
        "@__thumb",
        ".@__thumb",
        "lost+found",
    ],
)
def test_default_excluded_folders(tmp_path: Path, folder: str) -> None:
    touch(tmp_path / "keep.jpg")
    touch(tmp_path / "sub" / folder / "thumb.jpg")

    assert found(scan([tmp_path]), tmp_path) == ["keep.jpg"]
    assert found(scan([tmp_path], default_excludes=False), tmp_path) == [
        "keep.jpg",
        f"sub/{folder}/thumb.jpg",
    ]


def test_ordinary_folders_with_cache_like_names_are_scanned(tmp_path: Path) -> None:
    for name in ["thumbnails/a.jpg", "Originals/b.jpg", "recycled art/c.jpg", "trash/d.jpg"]:
        touch(tmp_path / name)

    assert len(scan([tmp_path]).files) == 4


def test_ignore_rules_still_apply_without_default_excludes(tmp_path: Path) -> None:
    touch(tmp_path / ".clipsearchignore", b"*.png\n")
    touch(tmp_path / ".git/a.jpg")
    touch(tmp_path / ".git/b.png")
    touch(tmp_path / "c.gif")

    result = scan([tmp_path], excludes=["*.gif"], default_excludes=False)

    assert found(result, tmp_path) == [".git/a.jpg"]


def test_clipsearchignore_at_root(tmp_path: Path) -> None:
    touch(
        tmp_path / ".clipsearchignore", b"# screenshots are noise\n*.png\nScreenshots/\n/top.jpg\n"
    )
    for name in ["a.jpg", "b.png", "sub/c.PNG", "Screenshots/d.jpg", "sub/Screenshots/e.jpg"]:
        touch(tmp_path / name)
    touch(tmp_path / "top.jpg")
    touch(tmp_path / "sub/top.jpg")

    assert found(scan([tmp_path]), tmp_path) == ["a.jpg", "sub/c.PNG", "sub/top.jpg"]


def test_clipsearchignore_negation_in_the_same_file(tmp_path: Path) -> None:
    touch(tmp_path / ".clipsearchignore", b"*.jpg\n!keep.jpg\n")
    for name in ["drop.jpg", "keep.jpg", "sub/keep.jpg", "sub/drop.jpg"]:
        touch(tmp_path / name)

    assert found(scan([tmp_path]), tmp_path) == ["keep.jpg", "sub/keep.jpg"]


def test_clipsearchignore_in_subfolder_is_relative_to_it_and_overrides_parent(
    tmp_path: Path,
) -> None:
    touch(tmp_path / ".clipsearchignore", b"*.jpg\n")
    touch(tmp_path / "album/.clipsearchignore", b"!keep.jpg\n/local.gif\n")
    for name in ["keep.jpg", "album/keep.jpg", "album/other.jpg", "album/deep/keep.jpg"]:
        touch(tmp_path / name)
    for name in ["local.gif", "album/local.gif", "album/deep/local.gif", "other/local.gif"]:
        touch(tmp_path / name)

    assert found(scan([tmp_path]), tmp_path) == [
        "album/deep/keep.jpg",
        "album/deep/local.gif",
        "album/keep.jpg",
        "local.gif",
        "other/local.gif",
    ]


def test_unusable_clipsearchignore_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    touch(tmp_path / ".clipsearchignore", b"!\n")
    touch(tmp_path / "a.jpg")

    result = scan([tmp_path])

    assert found(result, tmp_path) == ["a.jpg"]
    assert list(problem_reasons(result, tmp_path)) == [".clipsearchignore"]


def test_exclude_patterns_apply_relative_to_each_root(tmp_path: Path) -> None:
    for root in ["one", "two"]:
        for name in ["a.jpg", "b.png", "Screenshots/c.jpg", "2019/d.jpg", "2019/x/e.jpg"]:
            touch(tmp_path / root / name)
        touch(tmp_path / root / "keep/2019/f.jpg")

    result = scan(
        [tmp_path / "one", tmp_path / "two"], excludes=["*.png", "Screenshots/", "2019/**"]
    )

    assert found(result, tmp_path) == [
        "one/a.jpg",
        "one/keep/2019/f.jpg",
        "two/a.jpg",
        "two/keep/2019/f.jpg",
    ]


def test_bad_exclude_pattern_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(ClipsearchError, match="exclude") as caught:
        scan([tmp_path], excludes=["!"])
    assert caught.value.exit_code == 2


def test_nested_and_repeated_roots_are_scanned_once(tmp_path: Path) -> None:
    touch(tmp_path / "a.jpg")
    touch(tmp_path / "sub/b.jpg")
    touch(tmp_path / "subway/c.jpg")

    result = scan([tmp_path / "sub", tmp_path / "subway", tmp_path, str(tmp_path) + "/"])

    assert found(result, tmp_path) == ["a.jpg", "sub/b.jpg", "subway/c.jpg"]


def test_sibling_roots_with_a_shared_prefix_are_both_kept(tmp_path: Path) -> None:
    touch(tmp_path / "photos/a.jpg")
    touch(tmp_path / "photos-old/b.jpg")

    result = scan([tmp_path / "photos-old", tmp_path / "photos"])

    assert found(result, tmp_path) == ["photos-old/b.jpg", "photos/a.jpg"]


def test_symlinked_folder_is_followed(tmp_path: Path) -> None:
    touch(tmp_path / "elsewhere/a.jpg")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/linked").symlink_to(tmp_path / "elsewhere")

    assert found(scan([tmp_path / "lib"]), tmp_path) == ["lib/linked/a.jpg"]


def test_folder_reachable_twice_is_walked_once_preferring_the_real_path(tmp_path: Path) -> None:
    touch(tmp_path / "real/a.jpg")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    (tmp_path / "zz").mkdir()
    (tmp_path / "zz/deeper-alias").symlink_to(tmp_path / "real")

    assert found(scan([tmp_path]), tmp_path) == ["real/a.jpg"]


def test_outside_folder_linked_twice_is_indexed_once(tmp_path: Path) -> None:
    touch(tmp_path / "outside/a.jpg")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/l2").symlink_to(tmp_path / "outside")
    (tmp_path / "lib/l1").symlink_to(tmp_path / "outside")

    result = scan([tmp_path / "lib"])

    assert found(result, tmp_path) == ["lib/l1/a.jpg"]
    assert result.problems == []


def test_roots_that_are_one_folder_through_a_link_are_scanned_once(tmp_path: Path) -> None:
    touch(tmp_path / "real/a.jpg")
    (tmp_path / "link").symlink_to(tmp_path / "real")

    assert found(scan([tmp_path / "link", tmp_path / "real"]), tmp_path) == ["real/a.jpg"]


def test_symlink_loop_is_a_problem_and_the_walk_ends(tmp_path: Path) -> None:
    touch(tmp_path / "a.jpg")
    touch(tmp_path / "sub/b.jpg")
    (tmp_path / "sub/back").symlink_to(tmp_path)
    (tmp_path / "self").symlink_to(tmp_path / "self")

    result = scan([tmp_path])

    assert found(result, tmp_path) == ["a.jpg", "sub/b.jpg"]
    reasons = problem_reasons(result, tmp_path)
    assert set(reasons) == {"self", "sub/back"}
    assert all("loop" in reason for reason in reasons.values())


def test_broken_symlink_is_a_problem(tmp_path: Path) -> None:
    touch(tmp_path / "a.jpg")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (tmp_path / "gone-folder").symlink_to(tmp_path / "missing")

    result = scan([tmp_path])

    assert found(result, tmp_path) == ["a.jpg"]
    reasons = problem_reasons(result, tmp_path)
    assert set(reasons) == {"gone.jpg", "gone-folder"}
    assert all(reason.startswith("broken symlink") for reason in reasons.values())


def test_ignored_broken_symlink_is_not_reported(tmp_path: Path) -> None:
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (tmp_path / ".hidden.jpg").symlink_to(tmp_path / "missing.jpg")

    assert scan([tmp_path], excludes=["gone.jpg"]).problems == []


def test_symlinked_file_is_indexed_under_its_link(tmp_path: Path) -> None:
    touch(tmp_path / "outside/a.jpg")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/b-link.jpg").symlink_to(tmp_path / "outside/a.jpg")
    (tmp_path / "lib/a-link.jpg").symlink_to(tmp_path / "outside/a.jpg")

    assert found(scan([tmp_path / "lib"]), tmp_path) == ["lib/a-link.jpg"]


def test_symlinked_file_whose_target_is_found_counts_once_under_the_real_path(
    tmp_path: Path,
) -> None:
    touch(tmp_path / "z/real.jpg")
    (tmp_path / "a-link.jpg").symlink_to(tmp_path / "z/real.jpg")

    assert found(scan([tmp_path]), tmp_path) == ["z/real.jpg"]


def test_folder_named_like_an_image_is_walked(tmp_path: Path) -> None:
    touch(tmp_path / "holiday.jpg/inside.jpg")

    assert found(scan([tmp_path]), tmp_path) == ["holiday.jpg/inside.jpg"]


def test_unreadable_folder_is_a_problem_and_the_walk_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(tmp_path / "a.jpg")
    touch(tmp_path / "locked/b.jpg")
    locked = str(tmp_path / "locked")
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        if path == locked:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(scanner.os, "scandir", scandir)
    result = scan([tmp_path])

    assert found(result, tmp_path) == ["a.jpg"]
    assert problem_reasons(result, tmp_path) == {"locked": "cannot open folder: Permission denied"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_folder_without_read_permission_is_a_problem(tmp_path: Path) -> None:
    touch(tmp_path / "a.jpg")
    touch(tmp_path / "locked/b.jpg")
    (tmp_path / "locked").chmod(0)
    try:
        result = scan([tmp_path])
    finally:
        (tmp_path / "locked").chmod(0o755)

    assert found(result, tmp_path) == ["a.jpg"]
    assert list(problem_reasons(result, tmp_path)) == ["locked"]


def test_non_utf8_name_is_found_as_surrogate_escaped_str(tmp_path: Path) -> None:
    raw_path = os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")
    try:
        with open(raw_path, "wb") as f:
            f.write(b"abc")
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")

    [photo] = scan([tmp_path]).files

    assert photo.path == os.fsdecode(raw_path)
    assert os.fsencode(photo.path) == raw_path
    assert os.stat(photo.path).st_size == photo.size == 3


def test_raw_beside_processed_photo_is_skipped_unless_raw_too(tmp_path: Path) -> None:
    for name in ["foo.CR2", "foo.JPG", "bar.nef", "Baz.ARW", "baz.heic", "qux.dng"]:
        touch(tmp_path / name)
    touch(tmp_path / "other/qux.jpg")

    paired = scan([tmp_path])
    both = scan([tmp_path], raw_too=True)

    assert found(paired, tmp_path) == ["bar.nef", "baz.heic", "foo.JPG", "other/qux.jpg", "qux.dng"]
    assert paired.raw_paired == 2
    assert len(both.files) == 7
    assert both.raw_paired == 0


def test_raw_is_kept_when_its_jpeg_is_excluded(tmp_path: Path) -> None:
    touch(tmp_path / "foo.cr2")
    touch(tmp_path / "foo.jpg")

    result = scan([tmp_path], excludes=["*.jpg"])

    assert found(result, tmp_path) == ["foo.cr2"]
    assert result.raw_paired == 0


def test_videos_are_counted_not_listed(tmp_path: Path) -> None:
    for name in ["a.mp4", "sub/b.MOV", ".hidden.mp4", "c.jpg"]:
        touch(tmp_path / name)

    result = scan([tmp_path])

    assert found(result, tmp_path) == ["c.jpg"]
    assert result.videos == 2


def test_files_needing_a_missing_extra_are_counted_not_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ["a.heic", "sub/b.HEIF", "c.avif", "d.nef", "e.cr2", "e.jpg", "f.jpg"]:
        touch(tmp_path / name)
    asked: list[str] = []

    def missing_extra(ext: str) -> str | None:
        asked.append(ext)
        return {".heic": "heif", ".heif": "heif", ".avif": "heif", ".nef": "raw"}.get(ext)

    monkeypatch.setattr(formats, "missing_extra", missing_extra)
    result = scan([tmp_path])

    assert found(result, tmp_path) == ["e.jpg", "f.jpg"]
    assert result.missing_extras == {"heif": 3, "raw": 1}
    assert result.raw_paired == 1
    assert sorted(asked) == sorted(set(asked))


def test_raw_beside_an_undecodable_heic_is_not_paired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(tmp_path / "a.heic")
    touch(tmp_path / "a.cr2")
    monkeypatch.setattr(formats, "missing_extra", lambda ext: "heif" if ext == ".heic" else None)

    result = scan([tmp_path])

    assert found(result, tmp_path) == ["a.cr2"]
    assert result.missing_extras == {"heif": 1}


def test_large_tree_of_empty_files(tmp_path: Path) -> None:
    for folder in range(100):
        sub = tmp_path / f"d{folder:03}"
        sub.mkdir()
        for index in range(100):
            (sub / f"{index:03}.jpg").touch()

    result = scan([tmp_path])

    assert len(result.files) == 10_000
    assert result.files == sorted(result.files, key=lambda f: f.path)
    assert {f.size for f in result.files} == {0}


def test_fingerprint_follows_content_not_name(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    original = touch(tmp_path / "a.jpg", data)
    copy = tmp_path / "renamed/b.jpg"
    copy.parent.mkdir()
    shutil.copyfile(original, copy)

    assert fingerprint(str(original), len(data)) == fingerprint(str(copy), len(data))


@pytest.mark.parametrize("changed_at", [0, 150_000, 299_999, 2_500_000])
def test_fingerprint_differs_for_any_changed_byte(tmp_path: Path, changed_at: int) -> None:
    """Until issue 18 the middle was not read: uncompressed files with equal margins (a BMP's
    header and edge rows) shared a fingerprint, and a move took another photo's vector."""
    data = bytearray(3_000_000)
    one = touch(tmp_path / "one.bmp", bytes(data))
    data[changed_at] = 1
    two = touch(tmp_path / "two.bmp", bytes(data))

    assert fingerprint(str(one), len(data)) != fingerprint(str(two), len(data))


def test_fingerprint_of_small_files_covers_all_content_and_size(tmp_path: Path) -> None:
    one = touch(tmp_path / "one.jpg", b"abc")
    two = touch(tmp_path / "two.jpg", b"abd")
    three = touch(tmp_path / "three.jpg", b"abc\0")

    prints = {fingerprint(str(p), p.stat().st_size) for p in (one, two, three)}

    assert len(prints) == 3


def test_fingerprint_of_unreadable_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        fingerprint(str(tmp_path / "missing.jpg"), 10)


def test_normalise_root_expands_home_and_makes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Pictures").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)

    assert normalise_root("~/Pictures") == str(tmp_path / "Pictures")
    assert normalise_root("Pictures/../Pictures") == str(tmp_path / "Pictures")
    assert normalise_root(Path("Pictures")) == str(tmp_path / "Pictures")


def test_normalise_root_keeps_symlinks_in_the_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")

    assert normalise_root(tmp_path / "link") == str(tmp_path / "link")


@pytest.mark.parametrize(("name", "message"), [("missing", "not found"), ("file.jpg", "Not a")])
def test_normalise_root_rejects_what_is_not_a_folder(
    tmp_path: Path, name: str, message: str
) -> None:
    touch(tmp_path / "file.jpg")

    with pytest.raises(ClipsearchError, match=message) as caught:
        normalise_root(tmp_path / name)

    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)


def _scan_bounded(root: Path, memory_mb: int = 1024, timeout: float = 60) -> dict[str, str]:
    """Scan in a child with a memory cap and a timeout, so a hang or a runaway read fails the
    test instead of hurting the machine; returns the problems by path relative to root."""
    import json
    import subprocess
    import sys

    code = (
        "import json, resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({memory_mb << 20}, {memory_mb << 20}))\n"
        "from clipsearch.indexing.scan import scan\n"
        "result = scan([sys.argv[1]])\n"
        "print(json.dumps({'files': [f.path for f in result.files],"
        " 'problems': dict(result.problems)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(root)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    answer = json.loads(out.stdout)
    assert [os.path.relpath(p, root) for p in answer["files"]] == ["a.jpg"]
    return {os.path.relpath(path, root): why for path, why in answer["problems"].items()}


def test_fifo_clipsearchignore_is_skipped_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / ".clipsearchignore")
    touch(tmp_path / "a.jpg")

    problems = _scan_bounded(tmp_path, timeout=30)

    assert problems == {".clipsearchignore": "ignore file not used: not a regular file"}


@pytest.mark.slow
def test_clipsearchignore_linked_to_dev_zero_is_skipped_in_bounded_memory(tmp_path: Path) -> None:
    (tmp_path / ".clipsearchignore").symlink_to("/dev/zero")
    touch(tmp_path / "a.jpg")

    problems = _scan_bounded(tmp_path, memory_mb=1024, timeout=60)

    assert problems == {".clipsearchignore": "ignore file not used: not a regular file"}


def test_huge_clipsearchignore_is_skipped(tmp_path: Path) -> None:
    with open(tmp_path / ".clipsearchignore", "wb") as f:
        f.truncate(8 << 30)  # sparse: 8 GiB long, no disk used
    touch(tmp_path / "a.jpg")

    problems = _scan_bounded(tmp_path, memory_mb=1024, timeout=60)

    assert problems == {".clipsearchignore": "ignore file not used: larger than 1024 KiB"}


def test_symlinked_folders_outside_the_roots_are_followed_only_on_request(tmp_path: Path) -> None:
    """A symlink to / inside a root walked the whole file system, /proc included."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    touch(root / "a.jpg")
    touch(outside / "b.jpg")
    (root / "out").symlink_to(outside)
    (root / "slash").symlink_to("/")
    (root / "inner").symlink_to(root / "sub")
    touch(root / "sub" / "c.jpg")

    fenced = scan([root], fence=scanner.Fence.for_library([str(root)], tmp_path / "lib", False))

    assert found(fenced, root) == ["a.jpg", "sub/c.jpg"]
    reasons = problem_reasons(fenced, root)
    assert set(reasons) == {"out", "slash"}
    assert "outside the indexed folders: not followed (index --follow-links" in reasons["out"]
    followed = scan([root], fence=scanner.Fence(inside=None))
    assert "out/b.jpg" in found(followed, root)


@pytest.mark.parametrize("target", ["/proc", "/sys", "/dev", "/proc/self"])
def test_symlinks_into_pseudo_file_systems_are_never_followed(tmp_path: Path, target) -> None:
    touch(tmp_path / "a.jpg")
    (tmp_path / "sys").symlink_to(target)

    result = scan([tmp_path])  # no fence: links may lead anywhere else

    assert found(result, tmp_path) == ["a.jpg"]
    assert "a system folder: not followed" in problem_reasons(result, tmp_path)["sys"]


def test_the_library_folder_inside_a_root_is_not_walked(tmp_path: Path) -> None:
    touch(tmp_path / "a.jpg")
    touch(tmp_path / "lib" / "thumbnails" / "0123.jpg")

    fence = scanner.Fence.for_library([str(tmp_path)], tmp_path / "lib", False)

    assert found(scan([tmp_path], fence=fence), tmp_path) == ["a.jpg"]
