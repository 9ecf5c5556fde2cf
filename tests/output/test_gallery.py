"""Thumbnail cache and HTML gallery: structure, escaping of hostile names, reuse of thumbnails."""

from __future__ import annotations

import os
import stat
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from clipsearch.errors import ClipsearchError
from clipsearch.output.gallery import write_gallery
from clipsearch.photos.thumbnails import ThumbnailCache
from clipsearch.results import DupeGroup, Hit

XSS_IMG = "<img src=x onerror=alert(1)>.png"
XSS_SCRIPT = "<script>alert(1)</script>.jpg"  # the slash makes "<script>alert(1)<" a folder


class Page(HTMLParser):
    """Collects what the tests look at: classes, <img>/<a> attributes and visible text."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.classes: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.links: list[str | None] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        self.classes.extend((found.get("class") or "").split())
        if tag == "img":
            self.images.append(found)
        if tag == "a":
            self.links.append(found.get("href"))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def make_photo(
    path: Path, colour: tuple[int, int, int] = (200, 80, 40), size: tuple[int, int] = (400, 300)
) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return str(path)


@pytest.fixture
def thumbs(tmp_path: Path) -> ThumbnailCache:
    return ThumbnailCache(tmp_path / "cache" / "thumbs")


# --- thumbnails ----------------------------------------------------------------------------


def test_thumbnail_is_small_rgb_jpeg_in_private_dir(tmp_path: Path, thumbs: ThumbnailCache):
    thumb = thumbs.get(make_photo(tmp_path / "big.png", size=(1200, 600)))
    assert thumb is not None and thumb.parent == thumbs.cache_dir
    with Image.open(thumb) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (256, 128))
    assert stat.S_IMODE(thumbs.cache_dir.stat().st_mode) == 0o700
    assert [p.suffix for p in thumbs.cache_dir.iterdir()] == [".jpg"]  # no temp files left


def test_thumbnail_follows_exif_orientation(tmp_path: Path, thumbs: ThumbnailCache) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees: portrait
    path = tmp_path / "rotated.jpg"
    Image.new("RGB", (400, 200), (10, 120, 200)).save(path, exif=exif.tobytes())
    thumb = thumbs.get(str(path))
    assert thumb is not None
    with Image.open(thumb) as image:
        assert image.size == (128, 256)


def test_thumbnail_is_reused_until_the_file_changes(tmp_path: Path, thumbs: ThumbnailCache):
    photo = make_photo(tmp_path / "a.png")
    first = thumbs.get(photo)
    assert first is not None
    before = first.stat()
    again = thumbs.get(photo)
    assert again == first
    after = again.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    make_photo(Path(photo), colour=(0, 0, 255))
    os.utime(photo, ns=(before.st_mtime_ns, os.stat(photo).st_mtime_ns + 1_000_000_000))
    changed = thumbs.get(photo)
    assert changed is not None and changed != first
    with Image.open(changed) as image:
        assert image.getpixel((10, 10))[2] > 200


@pytest.mark.parametrize("content", [b"", b"definitely not a jpeg", None])
def test_unreadable_images_give_none(tmp_path: Path, thumbs: ThumbnailCache, content):
    path = tmp_path / "broken.jpg"
    if content is not None:
        path.write_bytes(content)
    assert thumbs.get(str(path)) is None


def test_cache_dir_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ClipsearchError, match="thumbnail cache"):
        ThumbnailCache(blocker / "thumbs")


# --- gallery -------------------------------------------------------------------------------


def hostile_library(root: Path) -> list[Hit]:
    """Ordinary photos, hostile names, a non-UTF-8 name and one file that is not an image."""
    paths = [make_photo(root / f"photo{k}.png", (40 * k, 90, 160)) for k in range(3)]
    paths += [make_photo(root / XSS_IMG), make_photo(root / XSS_SCRIPT)]
    latin1 = os.path.join(os.fsencode(root), b"caf\xe9.png")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(latin1, format="PNG")
    paths.append(os.fsdecode(latin1))
    (root / "broken.jpg").write_bytes(b"not an image")
    paths.append(str(root / "broken.jpg"))
    return [Hit(rank=k, score=0.5 - k / 100, path=p) for k, p in enumerate(paths, start=1)]


@pytest.fixture
def page(tmp_path: Path, thumbs: ThumbnailCache) -> tuple[str, list[Hit]]:
    hits = hostile_library(tmp_path / "photos")
    out = write_gallery(hits, tmp_path / "gallery.html", title="<b>cats</b> & dogs", thumbs=thumbs)
    return out.read_text(encoding="utf-8"), hits


def test_one_card_per_hit_linking_to_the_original(page: tuple[str, list[Hit]]) -> None:
    markup, hits = page
    parsed = Page(markup)
    assert parsed.classes.count("hit") == len(hits)
    assert parsed.links == [Path(hit.path).as_uri() for hit in hits]
    assert all(link.startswith("file:///") for link in parsed.links)


def test_hostile_names_and_title_show_as_text(page: tuple[str, list[Hit]]) -> None:
    markup, hits = page
    parsed = Page(markup)
    assert "script" not in parsed.tags
    assert all("onerror" not in image for image in parsed.images)
    assert "<img src=x" not in markup and "<script>" not in markup and "<b>" not in markup
    text = "".join(parsed.text)
    assert XSS_IMG in text and XSS_SCRIPT in text
    assert "<b>cats</b> & dogs" in text
    assert "caf\N{REPLACEMENT CHARACTER}.png" in text
    assert "caf%E9.png" in markup


def test_thumbnails_are_lazy_file_urls_and_broken_files_get_placeholders(
    page: tuple[str, list[Hit]], thumbs: ThumbnailCache
) -> None:
    markup, hits = page
    parsed = Page(markup)
    assert len(parsed.images) == len(hits) - 1
    assert parsed.classes.count("placeholder") == 1
    for image in parsed.images:
        assert image["loading"] == "lazy"
        assert image["src"].startswith(thumbs.cache_dir.as_uri() + "/")
    assert "data:image" not in markup  # thumbnails stay files, so big pages stay light


def test_groups_are_rows_with_their_scores(tmp_path: Path, thumbs: ThumbnailCache) -> None:
    a, b, c, d, e = (
        make_photo(tmp_path / f"{n}.png", (30 * k, 60, 90)) for k, n in enumerate("abcde")
    )
    groups = [
        DupeGroup(paths=[a, b, c], pairs=[(0, 1, 0.991), (0, 2, 0.962)], best=0.991),
        DupeGroup(paths=[d, e], pairs=[(0, 1, 0.934)], best=0.934),
    ]
    out = write_gallery([], tmp_path / "dupes.html", title="dupes", thumbs=thumbs, groups=groups)
    markup = out.read_text(encoding="utf-8")
    parsed = Page(markup)
    assert parsed.classes.count("group") == 2
    assert parsed.classes.count("hit") == 5
    text = "".join(parsed.text)
    assert "Group 1 · best 0.991 · 3 photos" in text
    assert "1 ↔ 3: 0.962" in text
    assert "3 · best match 0.962" in text
    assert "2 duplicate groups" in text and "result" not in text


def test_unwritable_output_is_a_clear_error(tmp_path: Path, thumbs: ThumbnailCache) -> None:
    with pytest.raises(ClipsearchError, match="cannot write gallery"):
        write_gallery([], tmp_path / "missing" / "g.html", title="t", thumbs=thumbs)
