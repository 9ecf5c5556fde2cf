"""`clipsearch serve`'s routes through Starlette's test client: every route, the token, the
Host check, traversal attempts, escaping and bad input (a clear message, never a traceback)."""

from __future__ import annotations

import io
import json
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import TINY, photo, save_photo
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from clipsearch.library import Library  # noqa: E402
from clipsearch.results import DupeGroup, Hit  # noqa: E402
from clipsearch.storage.lock import write_lock  # noqa: E402
from clipsearch.web import app as webapp  # noqa: E402
from clipsearch.web import pages  # noqa: E402
from clipsearch.web.app import WebState, create_app  # noqa: E402

TOKEN = "test-token-0123456789"
BASE = "http://127.0.0.1:8765"
COOKIE = "clipsearch-8765"
XSS_NAME = "<img src=x onerror=alert(1)>.jpg"
BAD_NAME = "<b onmouseover=alert(2)>bad.jpg"
PHOTOS = 37


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_checkpoint) -> dict:
    """37 photos (one hostile name, one EXIF-rotated, two exact copies, a sub-folder), a file
    that is not an image; returns the folders and the photos' ids."""
    base = tmp_path_factory.mktemp("web")
    photos, lib_dir = base / "Photos", base / "lib"
    for seed in range(PHOTOS - 5):
        save_photo(photos / f"p{seed:02d}.jpg", seed=seed)
    save_photo(photos / XSS_NAME, seed=40)
    save_photo(photos / "trip" / "t1.jpg", seed=41)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    photo(42, (200, 100)).save(photos / "trip" / "rotated.jpg", exif=exif)
    shutil.copy(photos / "p00.jpg", photos / "trip" / "copy-of-p00.jpg")
    shutil.copy(photos / "p01.jpg", photos / "p01 copy.jpg")
    (photos / BAD_NAME).write_bytes(b"not a photo at all")
    with Library.open(lib_dir, model=TINY, pretrained=str(tiny_checkpoint), create=True) as lib:
        assert lib.index([photos]).indexed == PHOTOS
        ids = lib.photo_ids([str(p) for p in photos.rglob("*.jpg")])
    return {"photos": photos, "lib": lib_dir, "ids": ids}


def make_client(lib_dir: Path, **kwargs) -> TestClient:
    app = create_app(WebState(lib_dir), token=TOKEN, **kwargs)
    client = TestClient(app, base_url=BASE, follow_redirects=False)
    client.cookies.set(COOKIE, TOKEN)
    return client


@pytest.fixture(scope="module")
def client(library):
    with make_client(library["lib"]) as c:
        yield c


def cards(markup: str) -> list[dict[str, str]]:
    """data-* attributes of each result card, in order."""
    found = []
    for tag in re.findall(r'<figure class="card[^"]*"[^>]*>', markup):
        found.append(dict(re.findall(r'data-(\w+)="([^"]*)"', tag)))
    return found


def link_q(markup: str, cls: str) -> str:
    """The q of the first link with this class."""
    href = re.search(rf'<a class="{cls}" href="([^"]+)"', markup).group(1)
    return parse_qs(urlsplit(href.replace("&amp;", "&")).query)["q"][0]


def jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    photo(seed).save(out, format="JPEG")
    return out.getvalue()


def no_traceback(response) -> None:
    assert "Traceback" not in response.text and 'File "' not in response.text


# -- who may ask --------------------------------------------------------------------------

ROUTES = [
    ("GET", "/"),
    ("GET", "/?q=cat"),
    ("GET", "/results?q=cat"),
    ("GET", "/thumb/1"),
    ("GET", "/image/1"),
    ("GET", "/dropped/0123456789abcdef01234567"),
    ("GET", "/dupes"),
    ("GET", "/status"),
    ("GET", "/static/app.js"),
    ("GET", "/static/app.css"),
    ("POST", "/upload"),
    ("POST", "/dupes/export"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_the_token(library, client, method, path):
    outsider = TestClient(client.app, base_url=BASE, follow_redirects=False)
    for cookie in (None, "wrong", TOKEN + "x", ""):
        if cookie is not None:
            outsider.cookies.set(COOKIE, cookie)
        answer = outsider.request(method, path)
        assert answer.status_code == 403, (path, cookie)
        assert "open that link again" in answer.text
        assert str(library["photos"]) not in answer.text
    assert (
        outsider.request(method, path + ("&" if "?" in path else "?") + "token=no").status_code
        == 403
    )
    other_port = TestClient(client.app, base_url="http://127.0.0.1:9999")
    other_port.cookies.set(COOKIE, TOKEN)  # a cookie of the server on another port
    assert other_port.request(method, path).status_code == 403


def test_the_link_token_becomes_a_cookie_and_leaves_the_url(library, client):
    fresh = TestClient(client.app, base_url=BASE, follow_redirects=False)
    answer = fresh.get(f"/?q=red+car&token={TOKEN}&in=")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/?q=red+car&in="
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    fresh.cookies.set(COOKIE, TOKEN)
    assert fresh.get("/?q=red+car").status_code == 200
    elsewhere = fresh.get(f"{BASE}//evil.example/x?token={TOKEN}")
    assert elsewhere.headers["location"] == "/evil.example/x"  # never off this server


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8765", True),
        ("localhost:8765", True),
        ("LOCALHOST", True),
        ("[::1]:8765", True),
        ("192.168.1.20:8765", True),  # an IP literal cannot be a rebinding domain
        ("evil.example:8765", False),
        ("127.0.0.1.evil.example", False),
        ("localhost.evil.example:8765", False),
        ("", False),
        ("127.0.0.1:notaport", False),
    ],
)
def test_the_host_header_is_checked(client, host, allowed):
    answer = client.get("/status", headers={"host": host})
    assert (answer.status_code == 200) is allowed, answer.text
    if not allowed:
        assert answer.status_code == 400


def test_names_given_at_start_are_allowed_hosts(library):
    with make_client(library["lib"], names=("photos.lan",)) as named:
        assert named.get("/status", headers={"host": "photos.lan:8765"}).status_code == 200
        assert named.get("/status", headers={"host": "other.lan:8765"}).status_code == 400


def test_other_sites_cannot_post_or_embed(client):
    forged = client.post("/upload", content=jpeg(1), headers={"origin": "http://evil.example"})
    assert forged.status_code == 403
    same_site = client.get(
        "/thumb/1", headers={"sec-fetch-site": "same-site", "sec-fetch-mode": "no-cors"}
    )
    assert same_site.status_code == 403
    followed = client.get(
        "/?q=cat", headers={"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
    )
    assert followed.status_code == 200  # a link from elsewhere still opens (with the cookie)
    ours = client.post(
        "/upload", content=jpeg(1), headers={"origin": BASE, "sec-fetch-site": "same-origin"}
    )
    assert ours.status_code == 200


def test_websockets_are_refused(client):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/"):
        pass


@pytest.mark.parametrize(
    "path", ["/", "/results?q=cat", "/status", "/nope", "/thumb/999999", "/results?offset=x"]
)
def test_every_answer_carries_the_security_headers(client, path):
    answer = client.get(path)
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["x-frame-options"] == "DENY"
    if answer.headers["content-type"].startswith("text/html"):
        assert answer.headers["cache-control"] == "no-store"


class Markup(HTMLParser):
    """Tags and attribute names of a page, as a browser would read them."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))


def test_pages_hold_no_inline_script_or_style(client, library):
    for path in ("/", "/?q=cat", "/dupes?threshold=0.9999", "/status", "/nope"):
        tags = Markup(client.get(path).text).tags
        assert all(attrs.get("src") for tag, attrs in tags if tag == "script"), path
        assert not [a for _, attrs in tags for a in attrs if a.startswith("on") or a == "style"]
        assert "style" not in {tag for tag, _ in tags}, path
        assert not any(
            str(v).strip().lower().startswith("javascript:") for _, a in tags for v in a.values()
        )


# -- searching ----------------------------------------------------------------------------


def test_search_page_shows_a_grid_and_more_on_request(client, library):
    page = client.get("/?q=a+photo")
    assert page.status_code == 200
    first = cards(page.text)
    assert len(first) == webapp.PAGE_SIZE
    assert 'value="a photo"' in page.text
    assert all(f'src="/thumb/{c["id"]}"' in page.text for c in first)
    scores = [float(c["score"]) for c in first]
    assert scores == sorted(scores, reverse=True)
    more = re.search(r'data-next="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    assert "offset=30" in more and more.startswith("/results?")
    rest = cards(client.get(more).text)
    assert len(rest) == PHOTOS - webapp.PAGE_SIZE
    assert not {c["id"] for c in rest} & {c["id"] for c in first}
    assert "data-next" not in client.get(more).text
    fragment = client.get("/results?q=a+photo")
    assert cards(fragment.text) == first  # the page and what the script fetches agree
    assert "<html" not in fragment.text


def test_a_bookmarked_query_shows_its_results(client, library):
    target = str(library["photos"] / "p07.jpg")
    page = client.get("/", params={"q": target})
    top = cards(page.text)[0]
    assert top["path"] == target and top["score"] == "1.000"
    assert "Remove p07.jpg" in page.text  # the image term's chip
    assert f'src="/thumb/{library["ids"][target]}"' in page.text


def test_more_and_less_like_this_refine_the_query(client, library):
    page = client.get("/?q=a+photo")
    top = cards(page.text)[0]["path"]
    assert link_q(page.text, "more") == f"a photo + {top}"
    assert link_q(page.text, "less") == f"a photo - {top}"
    refined = client.get("/", params={"q": link_q(page.text, "more")})
    assert re.findall(r'<span class="chip (plus|minus)"', refined.text) == ["plus", "plus"]
    removed = link_q(refined.text, "remove")
    assert removed == top  # the first chip's × leaves the image term alone
    alone = cards(client.get("/", params={"q": removed}).text)
    assert alone[0]["path"] == top and alone[0]["score"] == "1.000"


def test_the_folder_filter(client, library):
    trip = library["photos"] / "trip"
    found = cards(client.get("/results", params={"q": "a photo", "in": str(trip)}).text)
    assert sorted(Path(c["path"]).name for c in found) == [
        "copy-of-p00.jpg",
        "rotated.jpg",
        "t1.jpg",
    ]
    empty = client.get("/results", params={"q": "a photo", "in": "/nowhere"})
    assert empty.status_code == 200 and "No photos match." in empty.text
    page = client.get("/")
    assert f'<option value="{library["photos"]}">' in page.text  # the roots to pick from


def test_metadata_filters_appear_only_when_the_library_takes_them(client, library, monkeypatch):
    page = client.get("/")
    for name in ("after", "before", "near", "km", "camera"):
        assert f'name="{name}"' not in page.text or name in webapp.supported_filters()
    view = pages.SearchView(filters={"after": "2023-01-01"})
    markup = pages.search_page(view, ("after", "near"))
    assert 'name="after" value="2023-01-01"' in markup and 'name="near"' in markup
    assert 'name="camera"' not in markup


def test_hits_with_metadata_show_it_escaped():
    class MetaHit(Hit):
        pass

    hit = MetaHit(1, 0.5, "/p/a.jpg")
    object.__setattr__(hit, "taken", __import__("datetime").datetime(2023, 7, 14, 18, 5))
    object.__setattr__(hit, "place", "Café <b>Lisboa</b>")
    object.__setattr__(hit, "camera", None)
    object.__setattr__(hit, "lat", 38.7223)
    object.__setattr__(hit, "lon", -9.1393)
    facts = webapp.hit_facts(hit)
    assert facts == [
        ("taken", "2023-07-14 18:05"),
        ("place", "Café <b>Lisboa</b>"),
        ("location", "38.72230, -9.13930"),
    ]
    markup = pages.card(pages.Card(photo_id=3, path=hit.path, label="0.500", facts=facts))
    assert "Café &lt;b&gt;Lisboa&lt;/b&gt;" in markup and "<b>" not in markup
    assert webapp.hit_facts(Hit(1, 0.5, "/p/a.jpg")) == []


# -- photos by id -------------------------------------------------------------------------


def test_thumbnails_and_upright_views(client, library):
    ids = library["ids"]
    thumb = client.get(f"/thumb/{ids[str(library['photos'] / 'p01.jpg')]}")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 256
    rotated = client.get(f"/image/{ids[str(library['photos'] / 'trip' / 'rotated.jpg')]}")
    assert rotated.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(rotated.content)) as shown:
        assert shown.size == (100, 200)  # stored 200 × 100 with EXIF orientation 6
        assert shown.getexif().get(0x0112) is None
    view = client.get(f"/image/{ids[str(library['photos'] / 'p02.jpg')]}")
    assert view.content != (library["photos"] / "p02.jpg").read_bytes()  # re-encoded


@pytest.mark.parametrize(
    "path",
    [
        "/thumb/999999",
        "/thumb/0",
        "/thumb/-1",
        "/thumb/abc",
        "/thumb/1.5",
        "/thumb/99999999999999999999999999",
        "/image/../../etc/passwd",
        "/image/%2e%2e/%2e%2e/etc/passwd",
        "/image/..%2f..%2fetc%2fpasswd",
        "/image//etc/passwd",
        "/image/1/../../../etc/passwd",
        "/thumb/1%00",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e%2f%2e%2e%2flibrary.py",
        "/static//etc/passwd",
        "/dropped/../../etc/passwd",
        "/dropped/0123456789abcdef01234567",
        "/dropped/ZZZ",
        "/photos/p00.jpg",
        "/etc/passwd",
    ],
)
def test_traversal_and_unknown_ids_get_404(client, path):
    answer = client.get(path)
    assert answer.status_code == 404, (path, answer.status_code)
    assert "root:" not in answer.text
    no_traceback(answer)


def test_a_photo_swapped_for_a_symlink_is_not_served(tmp_path, tiny_checkpoint):
    photos = tmp_path / "Photos"
    for seed in range(2):
        save_photo(photos / f"p{seed}.jpg", seed=seed)
    secret = tmp_path / "secret.png"
    photo(7).save(secret)
    with Library.open(
        tmp_path / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True
    ) as lib:
        lib.index([photos])
        ids = lib.photo_ids([str(photos / "p0.jpg"), str(photos / "p1.jpg")])
    (photos / "p0.jpg").unlink()
    (photos / "p0.jpg").symlink_to(secret)
    (photos / "link.jpg").symlink_to(secret)  # never indexed, so it has no id at all
    with make_client(tmp_path / "lib") as c:
        for kind in ("thumb", "image"):
            assert c.get(f"/{kind}/{ids[str(photos / 'p0.jpg')]}").status_code == 404
            assert c.get(f"/{kind}/{ids[str(photos / 'p1.jpg')]}").status_code == 200


# -- escaping -----------------------------------------------------------------------------


def test_file_names_are_shown_as_text(client, library):
    hostile = str(library["photos"] / XSS_NAME)
    for answer in (
        client.get("/", params={"q": hostile}),
        client.get("/results", params={"q": "a photo", "offset": "0"}),
        client.get("/results", params={"q": "a photo", "offset": "30"}),
    ):
        assert "<img src=x" not in answer.text
    page = client.get("/", params={"q": hostile})
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in page.text
    status = client.get("/status")
    assert "&lt;b onmouseover=alert(2)&gt;bad.jpg" in status.text
    assert "<b onmouseover" not in status.text


def test_hostile_query_text_is_escaped(client):
    answer = client.get("/", params={"q": '"><script>alert(3)</script>'})
    assert "<script>alert(3)" not in answer.text
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in answer.text


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": "/no/such/photo.jpg"}, "no such image file: /no/such/photo.jpg"),
        ({"q": "./missing.jpg"}, "no such image file"),
        ({"q": "cat - cat"}, "cancel each other out"),
        ({"q": '""'}, "empty query term"),
        ({"q": "cat", "offset": "-1"}, "offset must be a whole number"),
        ({"q": "cat", "offset": "x"}, "offset must be a whole number"),
        ({"q": "cat", "offset": "5000"}, "offset must be a whole number"),
        ({"img": "0123456789abcdef01234567"}, "no longer in memory"),
    ],
)
def test_bad_queries_are_one_clear_line(client, params, message):
    for path in ("/", "/results"):
        answer = client.get(path, params=params)
        assert answer.status_code == 400
        shown = re.search(r'<p id="summary" class="error" role="alert">([^<]*)</p>', answer.text)
        assert shown is not None and message in shown.group(1).replace("&#x27;", "'")
        no_traceback(answer)


def test_a_bad_term_keeps_its_chip_so_it_can_be_removed(client):
    answer = client.get("/", params={"q": "red car + ./missing.jpg"})
    assert answer.status_code == 400
    assert link_q(answer.text, "remove") == "./missing.jpg"
    assert re.findall(r'aria-label="Remove ([^"]+)"', answer.text) == ["red car", "./missing.jpg"]


def test_an_empty_search_box_explains_itself(client):
    for q in ("", "   ", "+", "- "):
        answer = client.get("/", params={"q": q})
        assert answer.status_code == 200 and "Type what you are looking for" in answer.text
        assert cards(answer.text) == []


def test_wrong_methods_and_unknown_pages(client):
    assert client.post("/results").status_code == 405
    assert client.get("/upload").status_code == 405
    assert client.get("/nope").status_code == 404


# -- a dropped photo ----------------------------------------------------------------------


def test_a_dropped_photo_searches_from_memory(client, library):
    data = jpeg(5)
    answer = client.post("/upload", content=data, headers={"content-type": "image/jpeg"})
    assert answer.status_code == 200
    key = answer.json()["key"]
    assert answer.json()["url"] == f"/?img={key}"
    page = client.get(answer.json()["url"])
    top = cards(page.text)[0]
    assert top["path"] == str(library["photos"] / "p05.jpg") and float(top["score"]) > 0.999
    assert f'<input type="hidden" name="img" value="{key}">' in page.text
    assert "dropped photo" in page.text
    preview = client.get(f"/dropped/{key}")
    assert preview.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(preview.content)).size) <= 160
    combined = client.get("/results", params={"q": "- a photo", "img": key})
    assert combined.status_code == 200 and len(cards(combined.text)) == webapp.PAGE_SIZE
    assert not any(Path(library["lib"]).rglob(f"*{key}*"))  # nothing written to disk


def test_a_dropped_file_that_is_no_photo(client, monkeypatch):
    answer = client.post("/upload", content=b"hello")
    assert answer.status_code == 400
    assert answer.json()["error"] == "cannot read that image: not an image file"
    monkeypatch.setattr(webapp, "MAX_UPLOAD_BYTES", 1000)
    big = client.post("/upload", content=jpeg(1) * 5)
    assert big.status_code == 413 and "at most" in big.json()["error"]
    empty = client.post("/upload", content=b"")
    assert empty.status_code == 400 and "empty file" in empty.json()["error"]


# -- duplicates ---------------------------------------------------------------------------


def test_duplicates_view_and_export(client, library):
    page = client.get("/dupes?threshold=0.9999")
    assert page.status_code == 200
    assert "Nothing is ever deleted here" in page.text
    original = str(library["photos"] / "p00.jpg")
    copy = str(library["photos"] / "trip" / "copy-of-p00.jpg")
    groups = re.findall(r'<section class="group">.*?</section>', page.text)
    group = next(g for g in groups if "copy-of-p00" in g)
    assert {c["path"] for c in cards(group)} == {original, copy}
    assert "size</dt><dd>" in group and "closest match 1.000" in group
    # The library suggests a keeper (same pixels and size: the earlier, then shorter path):
    # it is marked, and the other copy is chosen for the user.
    assert "likely best" in group and re.search(f'data-path="{re.escape(copy)}" checked', group)
    assert not re.search(f'data-path="{re.escape(original)}" checked', group)
    ids = [library["ids"][original], library["ids"][copy]]
    body = f"id={ids[0]}&id={ids[1]}&format=txt"
    form = {"content-type": "application/x-www-form-urlencoded"}
    listed = client.post("/dupes/export", content=body, headers=form)
    assert listed.status_code == 200
    assert listed.headers["content-disposition"] == 'attachment; filename="clipsearch-chosen.txt"'
    assert listed.text == f"{original}\n{copy}\n"
    as_json = client.post("/dupes/export", content=body.replace("txt", "json"), headers=form)
    assert json.loads(as_json.text) == [original, copy]
    for bad in ("id=abc&format=txt", "id=1&format=exe", "id=99999999999999999999&format=txt"):
        refused = client.post("/dupes/export", content=bad, headers=form)
        assert refused.status_code == 400
        no_traceback(refused)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("threshold=abc", "a cosine between -1 and 1"),
        ("threshold=2", "a cosine between"),
        ("threshold=nan", "a cosine between"),
        ("page=0", "page must be"),
        ("page=x", "page must"),
    ],
)
def test_bad_duplicate_settings(client, query, message):
    answer = client.get(f"/dupes?{query}")
    assert answer.status_code == 400 and message in answer.text
    no_traceback(answer)


def test_duplicate_groups_page(client, library, monkeypatch):
    monkeypatch.setattr(webapp, "DUPES_PER_PAGE", 1)
    first = client.get("/dupes?threshold=0.9999")
    groups = len(re.findall(r'<section class="group">', first.text))
    assert groups == 1 and "More groups" in first.text
    last_page = client.get("/dupes?threshold=0.9999&page=2")
    assert "Previous groups" in last_page.text and "More groups" not in last_page.text
    assert "2 groups of near-duplicates" in last_page.text


def test_a_marked_best_photo_is_shown_and_the_others_chosen():
    members = [
        {"width": 4000, "height": 3000, "file_size": 3_400_000, "format": "JPEG"},
        {"width": 8000, "height": 6000, "file_size": 9_100_000, "format": "HEIF"},
    ]
    paths = ["/p/a.jpg", "/p/<b>.heic"]
    group = DupeGroup(paths, [(0, 1, 0.97)], 0.97, members=members, keeper=1)
    view = webapp._group_view(1, group, {"/p/a.jpg": 1, "/p/<b>.heic": 2})
    markup = pages.dupes_page(pages.DupesView(groups=[view], total=1, keeper_known=True))
    keeper = re.search(r'<figure class="card keeper".*?</figure>', markup).group(0)
    assert "likely best" in keeper and "8000 × 6000" in keeper and "9.1 MB" in keeper
    assert "&lt;b&gt;.heic" in keeper and 'value="2"' in keeper and "checked" not in keeper
    assert re.search(r'value="1" data-path="/p/a.jpg" checked', markup)
    assert "The likely best photo of each group is marked" in markup


# -- status -------------------------------------------------------------------------------


def test_status_view(client, library):
    page = client.get("/status")
    assert page.status_code == 200
    assert f"<td>{PHOTOS}</td>" in page.text
    assert TINY in page.text and str(library["photos"]) in page.text
    assert "Files that could not be indexed" in page.text and "not an image file" in page.text


# -- static files ------------------------------------------------------------------------


def test_static_files(client):
    script = client.get("/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert "innerHTML" in script.text  # the server's fragments, escaped there
    assert "eval(" not in script.text and "new Function" not in script.text
    assert client.get("/static/app.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/").status_code == 404


# -- a running index ----------------------------------------------------------------------


def test_new_commits_show_up_without_restart_and_without_the_lock(tmp_path, tiny_checkpoint):
    photos = tmp_path / "Photos"
    for seed in range(3):
        save_photo(photos / f"p{seed}.jpg", seed=seed)
    lib_dir = tmp_path / "lib"
    with Library.open(lib_dir, model=TINY, pretrained=str(tiny_checkpoint), create=True) as lib:
        lib.index([photos])
    with make_client(lib_dir) as c:
        assert len(cards(c.get("/results?q=a+photo").text)) == 3
        new = save_photo(photos / "new.jpg", seed=9)
        with Library.open(lib_dir) as writer:
            writer.index([photos])
        found = cards(c.get("/results", params={"q": str(new)}).text)
        assert len(found) == 4 and found[0]["path"] == str(new)
        answered = threading.Event()
        with write_lock(lib_dir, wait=False):  # an index run holds the lock

            def ask():
                if c.get("/results?q=a+photo").status_code == 200:
                    answered.set()

            asker = threading.Thread(target=ask)
            asker.start()
            asker.join(timeout=60)
        assert answered.is_set()


def test_filters_without_words_list_matching_photos(tmp_path, tiny_checkpoint):
    """As `clipsearch query --after 2024` does: a date filter alone is a listing, not nothing."""
    from exifwriter import exif_block, write_photo

    photos, lib_dir = tmp_path / "Photos", tmp_path / "lib"
    write_photo(photos / "old.jpg", exif_block(taken="2019:05:01 10:00:00"), seed=1)
    write_photo(photos / "new.jpg", exif_block(taken="2024:07:14 18:03:22"), seed=2)
    with Library.open(lib_dir, model=TINY, pretrained=str(tiny_checkpoint), create=True) as lib:
        lib.index([photos])
    with make_client(lib_dir) as c:
        found = cards(c.get("/results", params={"after": "2024"}).text)
    assert [Path(card["path"]).name for card in found] == ["new.jpg"]
