"""The gallery as a real browser sees it: headless Chromium's DOM, plus a screenshot to look at."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from clipsearch.output.gallery import write_gallery
from clipsearch.photos.thumbnails import ThumbnailCache
from clipsearch.results import Hit

XSS_NAME = "<img src=x onerror=alert(1)>.png"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]

pytestmark = pytest.mark.slow


class Dom(HTMLParser):
    """Counts `.hit` elements, keeps <img> attributes and the visible text of a DOM dump."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.hits = 0
        self.images: list[dict[str, str | None]] = []
        self.text: list[str] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.hits += "hit" in (found.get("class") or "").split()
        if tag == "img":
            self.images.append(found)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    return found


def run_chromium(binary: str, profile: Path, *args: str) -> str:
    """One headless run with a throwaway profile; returns stdout (the DOM for --dump-dom)."""
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def sample_hits(root: Path) -> list[Hit]:
    """Twelve photos of different colours and shapes; one carries a hostile name."""
    root.mkdir()
    hits = []
    for k in range(12):
        name = XSS_NAME if k == 4 else f"holiday_{k:02d}.jpg"
        size = (480, 320) if k % 3 else (300, 420)
        image = Image.new("RGB", size, (20 * k, 180 - 12 * k, 90 + 10 * k))
        image.paste((250, 240, 230), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
        image.save(root / name, format="PNG" if name.endswith(".png") else "JPEG")
        hits.append(Hit(rank=k + 1, score=0.34 - k * 0.01, path=str(root / name)))
    return hits


def test_gallery_renders_in_chromium(tmp_path: Path) -> None:
    binary = chromium()
    hits = sample_hits(tmp_path / "photos")
    thumbs = ThumbnailCache(tmp_path / "thumbs")
    page = write_gallery(hits, tmp_path / "gallery.html", title="beach <sunset>", thumbs=thumbs)

    dom = Dom(run_chromium(binary, tmp_path / "profile", "--dump-dom", page.as_uri()))
    assert dom.hits == 12
    assert XSS_NAME in "".join(dom.text)
    assert len(dom.images) == 12
    assert all("onerror" not in image for image in dom.images)

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "gallery.png"
    shot.unlink(missing_ok=True)
    run_chromium(
        binary,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1200,900",
        page.as_uri(),
    )
    with Image.open(shot) as image:
        assert image.size == (1200, 900)
