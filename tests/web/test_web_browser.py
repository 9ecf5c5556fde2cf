"""`clipsearch serve` in a real browser: Debian's headless Chromium driven by Playwright.

Playwright's Python package drives the system's /usr/bin/chromium (it never downloads a
browser here).  The test starts the real `clipsearch serve` process, types a query, scrolls,
refines with "more like this", drops a photo, opens the viewer and moves through it with the
keyboard, copies a path, and visits the duplicates and status views; screenshots go to
test-artifacts/ to be looked at.
"""

from __future__ import annotations

import base64
import io
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import TINY, photo, save_photo

from clipsearch.library import Library

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
XSS_NAME = "<img src=x onerror=alert(1)>.jpg"
PHOTOS = 40
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    return found


@pytest.fixture()
def server(tmp_path, tiny_checkpoint):
    """A library of 40 photos behind a real `clipsearch serve`; yields (link, photo folder)."""
    photos, lib_dir = tmp_path / "Photos", tmp_path / "lib"
    for seed in range(PHOTOS - 2):
        save_photo(photos / f"photo {seed:02d}.jpg", seed=seed, quality=90)
    save_photo(photos / XSS_NAME, seed=50)
    shutil.copy(photos / "photo 03.jpg", photos / "photo 03 copy.jpg")
    with Library.open(lib_dir, model=TINY, pretrained=str(tiny_checkpoint), create=True) as lib:
        assert lib.index([photos]).indexed == PHOTOS
    command = [sys.executable, "-m", "clipsearch", "serve", "--no-open", "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--library", str(lib_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "serve printed nothing within 120 s"
        link = proc.stdout.readline().decode().strip()
        assert link.startswith("http://127.0.0.1:") and "/?token=" in link, link
        yield link, photos
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        errors = proc.stderr.read().decode(errors="replace")
        assert code == 0, errors
        assert "Traceback" not in errors, errors


def test_search_refine_view_and_review_in_chromium(server, tmp_path):
    binary = chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    link, photos = server
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=binary,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 860},
        )
        try:
            origin = link.split("/?")[0]
            browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
            page = browser.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on(
                "response",
                lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            page.on("dialog", lambda d: problems.append(f"dialog: {d.message}") or d.dismiss())
            run_through(page, origin, link, photos)
            assert problems == [], problems  # CSP violations are console errors
        finally:
            browser.close()


def run_through(page, origin: str, link: str, photos: Path) -> None:
    page.goto(link)
    assert page.url == origin + "/"  # the token went into a cookie, out of the address bar

    # Type a query: the grid answers without pressing Enter.
    page.locator("#q").press_sequentially("a photo", delay=40)
    wait_until(page, "document.querySelectorAll('#grid .card').length === 30")
    assert parse_qs(urlsplit(page.url).query) == {"q": ["a photo"]}
    assert "Best 30 matches" in page.locator("#summary").inner_text()
    wait_for_thumbnails(page)
    page.screenshot(path=str(ARTIFACTS / "serve-search.png"))

    # Scrolling to the end brings the rest.
    page.mouse.wheel(0, 20000)
    wait_until(page, f"document.querySelectorAll('#grid .card').length === {PHOTOS}")
    assert page.locator("#more").count() == 0
    hostile = page.locator(".card", has_text=XSS_NAME)
    assert hostile.count() == 1  # the name is text, not an element
    assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0

    # "More like this" adds the photo as a term; the grid, chips and URL follow.
    first = page.locator("#grid .card").first
    chosen = first.get_attribute("data-path")
    first.locator("a.more").click()
    wait_until(page, "document.querySelectorAll('#chips .chip').length === 2")
    assert parse_qs(urlsplit(page.url).query)["q"] == [f"a photo + {chosen}"]
    assert page.locator("#q").input_value() == f"a photo + {chosen}"
    chip = page.locator("#chips .chip").nth(1)
    assert chip.locator(".label").inner_text() == Path(chosen).name
    chip.locator("a.remove").click()
    wait_until(page, "document.querySelectorAll('#chips .chip').length === 1")
    page.go_back()
    wait_until(page, "document.querySelectorAll('#chips .chip').length === 2")

    # Open a photo; move with the keyboard; copy its path; close with Esc.
    cards = page.locator("#grid .card")
    cards.nth(0).locator("a.open").click()
    viewer = page.locator("#viewer")
    viewer.wait_for(state="visible")
    wait_until(page, "document.querySelector('#viewer .full').naturalWidth > 0")
    assert viewer.locator(".path").inner_text() == cards.nth(0).get_attribute("data-path")
    page.screenshot(path=str(ARTIFACTS / "serve-viewer.png"))
    page.keyboard.press("ArrowRight")
    assert viewer.locator(".path").inner_text() == cards.nth(1).get_attribute("data-path")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")
    assert viewer.locator(".path").inner_text() == cards.nth(1).get_attribute("data-path")
    viewer.locator("button.copy").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == cards.nth(1).get_attribute("data-path")
    page.keyboard.press("Escape")
    viewer.wait_for(state="hidden")

    # Drop a photo from outside the library: it searches by that photo.
    drop_photo(page, seed=7)
    wait_until(
        page,
        "Array.from(document.querySelectorAll('#chips .label'))"
        ".some((c) => c.textContent === 'dropped photo')",
    )
    top = page.locator("#grid .card").first.get_attribute("data-path")
    assert top == str(photos / "photo 07.jpg")
    assert "img" in parse_qs(urlsplit(page.url).query)

    # Duplicates: the exact copy is grouped with its original; choose both and copy.
    page.goto(origin + "/dupes?threshold=0.9999")
    group = page.locator(".group").first
    names = sorted(
        Path(p).name
        for p in group.locator(".card").evaluate_all("cards => cards.map(c => c.dataset.path)")
    )
    assert names == ["photo 03 copy.jpg", "photo 03.jpg"]
    for box in group.locator("input[name=id]").all():
        box.check()
    page.locator("#copy-chosen").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert sorted(copied.splitlines()) == sorted(
        [str(photos / "photo 03.jpg"), str(photos / "photo 03 copy.jpg")]
    )
    wait_for_thumbnails(page)
    page.screenshot(path=str(ARTIFACTS / "serve-dupes.png"))

    page.goto(origin + "/status")
    assert f"{PHOTOS}" in page.locator(".status").inner_text()
    page.screenshot(path=str(ARTIFACTS / "serve-status.png"))


def wait_until(page, script: str, timeout: float = 30) -> None:
    """Poll a script until it is true.  Playwright's own wait_for_function evaluates a string,
    which the page's Content-Security-Policy rightly forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(script):
        assert time.monotonic() < deadline, f"still false after {timeout} s: {script}"
        time.sleep(0.05)


def wait_for_thumbnails(page) -> None:
    wait_until(
        page,
        "Array.from(document.querySelectorAll('.card img'))"
        ".filter((i) => i.getBoundingClientRect().top < innerHeight)"
        ".every((i) => i.complete && i.naturalWidth > 0)",
    )


def drop_photo(page, seed: int) -> None:
    """What a drag from the file manager delivers: a drop event carrying a File."""
    out = io.BytesIO()
    photo(seed).save(out, format="JPEG", quality=90)
    page.evaluate(
        """(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
            for (const type of ["dragenter", "dragover", "drop"]) {
                document.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true,
                                                             cancelable: true }));
            }
        }""",
        base64.b64encode(out.getvalue()).decode(),
    )
