"""The routes of `clipsearch serve`: pages and fragments rendered on the server from Library calls.

| route | what |
| --- | --- |
| `GET /` | the search page; `?q=` (the CLI's query text), `in`, `img` (dropped photos), filters |
| `GET /results` | the same search as an HTML fragment, `offset` for more (what the page fetches) |
| `GET /thumb/{id}`, `GET /image/{id}` | a library photo by id: thumbnail, or upright JPEG view |
| `POST /upload` | a dropped photo: embedded in memory, answered with a key for `img=` |
| `GET /dropped/{key}` | the small preview of a dropped photo, from memory |
| `GET /dupes`, `POST /dupes/export` | duplicate groups; the chosen paths as a list or JSON |
| `GET /status` | library size, model, roots, last update, files that could not be indexed |
| `GET /static/...` | app.js and app.css |

Photos are named by library id, never by a path from the request, and an id serves only a
file that is still the version indexed (`Library.indexed_path`).  Nothing is served as it is on
disk: thumbnails and views are JPEGs this process encoded from a decoded image.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import logging
import os
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from clipsearch.errors import ClipsearchError
from clipsearch.library import DUPE_THRESHOLD, Library
from clipsearch.search.terms import parse_term
from clipsearch.web import pages, querytext
from clipsearch.web.guard import Guard
from clipsearch.web.lanes import Lane

PAGE_SIZE = 30
MAX_RESULTS = 1000
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_FORM_BYTES = 4 * 1024 * 1024
UPLOADS_KEPT = 32
VIEWS_KEPT = 24
VIEW_MIN_SIDE = 900  # decoded short side ≈ 1.65 × this: about 2000 × 1500 for a 4:3 photo
DUPES_PER_PAGE = 40
ERRORS_SHOWN = 500
MAX_ID = 2**63 - 1
FILTERS = ("after", "before", "near", "km", "camera")  # Library.search keywords, when present
STATIC = Path(__file__).parent / "static"
UPLOAD_KEY = re.compile(r"^[0-9a-f]{24}$")
log = logging.getLogger("clipsearch.web")


@dataclass
class Upload:
    vector: np.ndarray
    preview: bytes | None


class Kept(OrderedDict):
    """A small least-recently-used map, safe to share between the loop and worker threads."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.lock = threading.Lock()

    def get_recent(self, key):
        with self.lock:
            if key not in self:
                return None
            self.move_to_end(key)
            return self[key]

    def keep(self, key, value) -> None:
        with self.lock:
            self[key] = value
            self.move_to_end(key)
            while len(self) > self.size:
                self.popitem(last=False)


@dataclass
class WebState:
    """What the app keeps warm between requests: two library lanes, the picture workers and
    the in-memory dropped photos."""

    directory: Path | None
    fast: Lane = field(init=False)
    slow: Lane = field(init=False)
    pictures: ThreadPoolExecutor = field(init=False)
    uploads: Kept = field(default_factory=lambda: Kept(UPLOADS_KEPT))
    views: Kept = field(default_factory=lambda: Kept(VIEWS_KEPT))
    dupes: dict = field(default_factory=dict)
    filters: tuple[str, ...] = field(init=False)
    thumbs: object = None

    def __post_init__(self) -> None:
        self.fast = Lane(self.directory, "clipsearch-search")
        self.slow = Lane(self.directory, "clipsearch-slow")
        self.pictures = ThreadPoolExecutor(2, thread_name_prefix="clipsearch-pictures")
        self.filters = supported_filters()

    def open(self) -> None:
        """Open the library (a wrong --library fails here) and warm the search path."""
        if self.thumbs is None:
            self.thumbs = self.fast.submit(lambda lib: lib.thumbnails()).result()
            self.fast.submit(_warm)

    def close(self) -> None:
        self.fast.close()
        self.slow.close()
        self.pictures.shutdown(wait=False, cancel_futures=True)

    async def in_pool(self, fn: Callable, *args):
        import asyncio

        return await asyncio.wrap_future(self.pictures.submit(fn, *args))


def supported_filters() -> tuple[str, ...]:
    """The metadata filters this Library.search takes (date and place arrive with metadata)."""
    return tuple(n for n in FILTERS if n in inspect.signature(Library.search).parameters)


def _warm(lib: Library) -> None:
    """Load the vector index and the text tower before the first query asks for them."""
    with contextlib.suppress(ClipsearchError):
        lib.search("a photo", top=1)


def create_app(state: WebState, *, token: str, names: tuple[str, ...] = ()) -> Guard:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        state.open()
        try:
            yield
        finally:
            state.close()

    routes = [
        Route("/", partial(search_page, state)),
        Route("/results", partial(results, state)),
        Route("/thumb/{photo_id:int}", partial(thumbnail, state)),
        Route("/image/{photo_id:int}", partial(view_image, state)),
        Route("/upload", partial(upload, state), methods=["POST"]),
        Route("/dropped/{key:str}", partial(dropped, state)),
        Route("/dupes", partial(dupes_page, state)),
        Route("/dupes/export", partial(export, state), methods=["POST"]),
        Route("/status", partial(status_page, state)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            ClipsearchError: _clipsearch_error,
            sqlite3.DatabaseError: _database_error,
            Exception: _server_error,
        },
    )
    return Guard(app, token, names)


# -- search -------------------------------------------------------------------------------


@dataclass
class SearchParams:
    q: str
    within: str
    uploads: list[str]
    filters: dict[str, str]
    offset: int

    @classmethod
    def read(cls, request: Request, filters: tuple[str, ...]) -> SearchParams:
        query = request.query_params
        return cls(
            q=query.get("q", "").strip(),
            within=query.get("in", "").strip(),
            uploads=[k for k in query.getlist("img") if k],
            filters={n: query.get(n, "").strip() for n in filters if query.get(n, "").strip()},
            offset=_offset(query.get("offset", "0")),
        )

    def base(self) -> list[tuple[str, str]]:
        """The parameters that make up this search (without the page offset)."""
        return [
            ("q", self.q),
            ("in", self.within),
            *(("img", k) for k in self.uploads),
            *self.filters.items(),
        ]

    def with_q(self, q: str) -> list[tuple[str, str]]:
        return [("q", q), *self.base()[1:]]


def _offset(raw: str) -> int:
    if not raw.isdigit() or int(raw) > MAX_RESULTS:
        raise ClipsearchError(f"offset must be a whole number from 0 to {MAX_RESULTS}, not {raw!r}")
    return int(raw)


async def search_page(state: WebState, request: Request) -> Response:
    view = await _search(state, request, page=True)
    body = pages.search_page(view, state.filters)
    return HTMLResponse(body, status_code=400 if view.error else 200)


async def results(state: WebState, request: Request) -> Response:
    view = await _search(state, request, page=False)
    return HTMLResponse(pages.results_fragment(view), status_code=400 if view.error else 200)


async def _search(state: WebState, request: Request, page: bool) -> pages.SearchView:
    try:
        params = SearchParams.read(request, state.filters)
    except ClipsearchError as exc:
        return pages.SearchView(error=str(exc), searched=True)
    terms = querytext.parse(params.q)
    view = pages.SearchView(
        q=params.q,
        within=params.within,
        uploads=params.uploads,
        filters=params.filters,
        offset=params.offset,
    )
    vectors, missing = _upload_vectors(state, params.uploads)
    try:
        found = await state.fast.call(_search_job, terms, vectors, params, page)
    except ClipsearchError as exc:
        found = await state.fast.call(_chips_job, terms, page)
        view.error = str(exc)
    if missing and not view.error:
        view.error = missing
    _fill(view, params, terms, found)
    return view


def _upload_vectors(state: WebState, keys: list[str]) -> tuple[list, str | None]:
    vectors, missing = [], None
    for key in keys:
        entry = state.uploads.get_recent(key)
        if entry is None:
            missing = "a dropped photo of this search is no longer in memory: drop it again"
        else:
            vectors.append((1.0, entry.vector))
    return vectors, missing


@dataclass
class Found:
    hits: list = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    chip_paths: dict[int, str] = field(default_factory=dict)
    roots: list[str] = field(default_factory=list)
    searched: bool = False


def _search_job(lib: Library, terms, vectors, params: SearchParams, page: bool) -> Found:
    """One lane job: the search, plus the ids of its photos and of the query's image terms."""
    found = _chips_job(lib, terms, page)
    if not terms and not vectors and not params.filters:
        return found  # an empty search box; filters alone list photos, as on the CLI
    first, add, sub = querytext.split_for_search(terms)
    found.hits = lib.search(
        *first,
        add=add,
        sub=sub,
        top=min(params.offset + PAGE_SIZE + 1, MAX_RESULTS),
        within=params.within or None,
        vectors=vectors,
        **params.filters,
    )
    shown = found.hits[params.offset : params.offset + PAGE_SIZE]
    found.ids.update(lib.photo_ids([h.path for h in shown]))
    found.searched = True
    return found


def _chips_job(lib: Library, terms, page: bool) -> Found:
    """Image terms of the query and their ids (for the chips' thumbnails); roots for a page."""
    found = Found(roots=lib.roots() if page else [])
    for n, term in enumerate(terms):
        with contextlib.suppress(ClipsearchError):
            image = parse_term(term.text).image
            if image is not None:
                found.chip_paths[n] = image
    found.ids = lib.photo_ids(list(found.chip_paths.values()))
    return found


def _fill(view: pages.SearchView, params: SearchParams, terms, found: Found) -> None:
    view.roots = found.roots
    view.searched = found.searched or bool(view.error)
    view.chips = _chips(params, terms, found)
    shown = found.hits[params.offset : params.offset + PAGE_SIZE]
    view.cards = [_hit_card(h, found.ids.get(h.path), params) for h in shown]
    if len(found.hits) > params.offset + PAGE_SIZE and params.offset + PAGE_SIZE < MAX_RESULTS:
        view.next_url = pages.url(
            "/results", [*params.base(), ("offset", str(params.offset + PAGE_SIZE))]
        )


def _chips(params: SearchParams, terms, found: Found) -> list[pages.Chip]:
    chips = []
    for n, term in enumerate(terms):
        path = found.chip_paths.get(n)
        photo_id = found.ids.get(path) if path else None
        chips.append(
            pages.Chip(
                label=pages.file_name(path) if path else term.text,
                sign=term.sign,
                title=term.text,
                thumb_url=f"/thumb/{photo_id}" if photo_id is not None else None,
                remove_url=pages.url("/", params.with_q(querytext.without(params.q, n))),
            )
        )
    for key in params.uploads:
        rest = [(k, v) for k, v in params.base() if (k, v) != ("img", key)]
        chips.append(
            pages.Chip(
                label="dropped photo",
                sign=1,
                thumb_url=f"/dropped/{key}",
                remove_url=pages.url("/", rest),
            )
        )
    return chips


def _hit_card(hit, photo_id: int | None, params: SearchParams) -> pages.Card:
    term = _path_term(hit.path)
    links = {}
    if term is not None:
        for name, sign in (("more_url", 1), ("less_url", -1)):
            refined = querytext.refine(params.q, term, sign)
            links[name] = pages.url("/", params.with_q(refined))
    return pages.Card(
        photo_id=photo_id,
        path=hit.path,
        label=_score_label(hit),
        score=hit.score,
        facts=hit_facts(hit),
        **links,
    )


def _score_label(hit) -> str:
    """The score; in a listing by filters alone there is none, so the capture date instead."""
    if hit.score is not None:
        return f"{hit.score:.3f}"
    return (hit.taken or "")[:10]


def _path_term(path: str) -> str | None:
    """A photo as a query term: its path, if it survives the trip through a URL."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # a name that is not UTF-8 on disk cannot be typed back
        return None
    return path


def hit_facts(hit) -> list[tuple[str, str]]:
    """Date, place and camera of a hit, for libraries whose hits carry them."""
    facts = []
    for name, label in (("taken", "taken"), ("place", "place"), ("camera", "camera")):
        value = getattr(hit, name, None)
        if value not in (None, ""):
            facts.append((label, _shown(value)))
    lat, lon = getattr(hit, "lat", None), getattr(hit, "lon", None)
    if lat is not None and lon is not None:
        facts.append(("location", f"{float(lat):.5f}, {float(lon):.5f}"))
    return facts


def _shown(value: object) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# -- photos -------------------------------------------------------------------------------


async def _photo_path(state: WebState, request: Request) -> str:
    photo_id = request.path_params["photo_id"]
    path = None
    if photo_id <= MAX_ID:
        path = await state.fast.call(lambda lib: lib.indexed_path(photo_id))
    if path is None:
        raise HTTPException(404, "No such photo in the library (or it changed since indexing).")
    return path


async def thumbnail(state: WebState, request: Request) -> Response:
    path = await _photo_path(state, request)
    try:
        thumb = await state.in_pool(state.thumbs.get, path)
    except ClipsearchError as exc:  # the cache cannot be written: disk full, not ours
        raise HTTPException(503, str(exc)) from None
    if thumb is None:
        raise HTTPException(404, "This photo cannot be read any more.")
    return FileResponse(thumb, media_type="image/jpeg", headers=_private_cache())


async def view_image(state: WebState, request: Request) -> Response:
    """The photo upright and at screen size, re-encoded: never the file's own bytes."""
    photo_id = request.path_params["photo_id"]
    path = await _photo_path(state, request)
    data = state.views.get_recent((photo_id, path))
    if data is None:
        data = await state.in_pool(_view_jpeg, path)
        state.views.keep((photo_id, path), data)
    return Response(data, media_type="image/jpeg", headers=_private_cache())


def _view_jpeg(path: str) -> bytes:
    from clipsearch.photos.decode import default_max_pixels, load_image

    try:
        image = load_image(path, min_side=VIEW_MIN_SIDE, max_pixels=default_max_pixels())
    except ClipsearchError as exc:
        raise HTTPException(404, f"This photo cannot be read any more: {exc}") from exc
    return _jpeg(image, 2048, 88)


def _jpeg(image, side: int, quality: int) -> bytes:
    image.thumbnail((side, side))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _private_cache() -> dict[str, str]:
    """An id names one version of one file, so the browser may keep it for a while."""
    return {"cache-control": "private, max-age=3600"}


async def upload(state: WebState, request: Request) -> Response:
    """A dropped or pasted photo: embedded and kept in memory only, under a content key."""
    try:
        data = await _body(request, MAX_UPLOAD_BYTES)
    except HTTPException as exc:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    key = hashlib.sha256(data).hexdigest()[:24]
    if state.uploads.get_recent(key) is None:
        try:
            vector = await state.fast.call(lambda lib: lib.embed_image_data(data))
        except ClipsearchError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        preview = await state.in_pool(_preview, data)
        state.uploads.keep(key, Upload(vector, preview))
    return JSONResponse({"key": key, "url": pages.url("/", [("img", key)])})


def _preview(data: bytes) -> bytes | None:
    from clipsearch.photos.decode import load_image_data

    try:
        return _jpeg(load_image_data(data, min_side=96), 160, 80)
    except ClipsearchError:
        return None


async def dropped(state: WebState, request: Request) -> Response:
    key = request.path_params["key"]
    entry = state.uploads.get_recent(key) if UPLOAD_KEY.match(key) else None
    if entry is None or entry.preview is None:
        raise HTTPException(404, "That dropped photo is no longer in memory.")
    return Response(entry.preview, media_type="image/jpeg", headers=_private_cache())


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"Too large: at most {limit // 2**20} MiB.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"Too large: at most {limit // 2**20} MiB.")
        chunks.append(chunk)
    return b"".join(chunks)


# -- duplicates ---------------------------------------------------------------------------


async def dupes_page(state: WebState, request: Request) -> Response:
    query = request.query_params
    view = pages.DupesView(within=query.get("in", "").strip())
    try:
        view.threshold = _threshold(query.get("threshold", ""))
        page = _page_number(query.get("page", "1"))
        groups, ids = await state.slow.call(_dupes_job, state.dupes, view.within, view.threshold)
    except ClipsearchError as exc:
        view.error = str(exc)
        return HTMLResponse(pages.dupes_page(view), status_code=400)
    _fill_dupes(view, groups, ids, page)
    return HTMLResponse(pages.dupes_page(view))


def _threshold(raw: str) -> float:
    if not raw.strip():
        return DUPE_THRESHOLD
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not -1.0 <= value <= 1.0:
        raise ClipsearchError(f"the threshold is a cosine between -1 and 1, not {raw!r}")
    return value


def _page_number(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1 or len(raw) > 6:
        raise ClipsearchError(f"page must be a whole number from 1, not {raw!r}")
    return int(raw)


def _dupes_job(lib: Library, cache: dict, within: str, threshold: float):
    """Groups are found once per library generation, folder and threshold (a minute or more
    for a large library), then paged from memory."""
    key = (lib.generation, within, threshold)
    if key not in cache:
        groups = lib.duplicates(within or None, threshold)
        ids = lib.photo_ids([p for g in groups for p in g.paths])
        cache.clear()
        cache[key] = (groups, ids)
    return cache[key]


def _fill_dupes(view: pages.DupesView, groups: list, ids: dict, page: int) -> None:
    view.total = len(groups)
    start = (page - 1) * DUPES_PER_PAGE
    shown = groups[start : start + DUPES_PER_PAGE]
    view.groups = [_group_view(start + n + 1, g, ids) for n, g in enumerate(shown)]
    view.keeper_known = any(keeper_index(g) is not None for g in shown)
    base = [("in", view.within), ("threshold", f"{view.threshold:g}")]
    if page > 1:
        view.prev_url = pages.url("/dupes", [*base, ("page", str(page - 1))])
    if start + DUPES_PER_PAGE < len(groups):
        view.next_url = pages.url("/dupes", [*base, ("page", str(page + 1))])


def _group_view(number: int, group, ids: dict) -> pages.GroupView:
    closest = [0.0] * len(group.paths)
    for i, j, score in group.pairs:
        closest[i], closest[j] = max(closest[i], score), max(closest[j], score)
    keeper = keeper_index(group)
    members = [
        pages.Member(
            card=pages.Card(
                photo_id=ids.get(path),
                path=path,
                label=f"closest match {closest[k]:.3f}",
                facts=member_facts(group, k),
            ),
            keeper=k == keeper,
            chosen=keeper is not None and k != keeper,
        )
        for k, path in enumerate(group.paths)
    ]
    return pages.GroupView(number=number, best=group.best, members=members)


def keeper_index(group) -> int | None:
    """The member a group marks as the one to keep, when its library says (a path or an
    index in `keeper`); plain groups mark none."""
    keeper = getattr(group, "keeper", None)
    if isinstance(keeper, int) and 0 <= keeper < len(group.paths):
        return keeper
    if isinstance(keeper, str) and keeper in group.paths:
        return group.paths.index(keeper)
    return None


MEMBER_FACTS = (  # (label, attribute names a group's per-photo records may use)
    ("resolution", ("resolution",)),
    ("size", ("file_size", "size", "bytes")),
    ("format", ("format",)),
    ("taken", ("taken", "date")),
)


def member_facts(group, k: int) -> list[tuple[str, str]]:
    """Resolution, file size, format and date of a group's k-th photo, from per-photo records
    in the group (`members`, parallel to `paths`) when there are; else the size on disk."""
    records = getattr(group, "members", None)
    record = records[k] if isinstance(records, list | tuple) and k < len(records) else None
    facts = []
    if record is not None:
        width, height = _field(record, ("width",)), _field(record, ("height",))
        if width and height:
            facts.append(("resolution", f"{width} × {height}"))
        for label, names in MEMBER_FACTS:
            value = _field(record, names)
            if value not in (None, "") and not (label == "resolution" and facts):
                facts.append((label, _size(value) if label == "size" else _shown(value)))
    if not any(label == "size" for label, _ in facts):
        with contextlib.suppress(OSError):
            facts.append(("size", _size(os.stat(group.paths[k]).st_size)))
    return facts


def _field(record, names: tuple[str, ...]):
    for name in names:
        value = record.get(name) if isinstance(record, dict) else getattr(record, name, None)
        if value is not None:
            return value
    return None


def _size(value) -> str:
    if not isinstance(value, int | float):
        return str(value)
    for unit in ("bytes", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


async def export(state: WebState, request: Request) -> Response:
    """The chosen photos' paths as a download: one per line, or a JSON array."""
    form = parse_qs((await _body(request, MAX_FORM_BYTES)).decode("utf-8", "replace"))
    kind = (form.get("format") or ["txt"])[0]
    raw_ids = form.get("id", [])
    if kind not in ("txt", "json") or not all(i.isdigit() and len(i) < 19 for i in raw_ids):
        raise HTTPException(400, "Choose some photos, then Export list or Export JSON.")
    ids = [int(i) for i in raw_ids]
    paths = await state.fast.call(lambda lib: [p for i in ids if (p := lib.indexed_path(i))])
    if kind == "json":
        body = (json.dumps(paths, indent=2) + "\n").encode()
        media = "application/json"
    else:
        body = b"".join(os.fsencode(p) + b"\n" for p in paths)
        media = "text/plain; charset=utf-8"
    name = f"clipsearch-chosen.{kind}"
    headers = {"content-disposition": f'attachment; filename="{name}"'}
    return Response(body, media_type=media, headers=headers)


# -- status -------------------------------------------------------------------------------


async def status_page(state: WebState, request: Request) -> Response:
    status, errors = await state.slow.call(lambda lib: (lib.status(), lib.errors()))
    return HTMLResponse(pages.status_page(status, errors, ERRORS_SHOWN))


# -- errors -------------------------------------------------------------------------------


async def _http_error(request: Request, exc: HTTPException) -> Response:
    text = exc.detail if exc.status_code != 404 or exc.detail != "Not Found" else "Not found."
    return HTMLResponse(pages.message_page("Error", text), status_code=exc.status_code)


async def _database_error(request: Request, exc: Exception) -> Response:
    from clipsearch.storage.db import explain

    return HTMLResponse(pages.message_page("Error", str(explain(exc))), status_code=503)


async def _clipsearch_error(request: Request, exc: Exception) -> Response:
    return HTMLResponse(pages.message_page("Error", str(exc)), status_code=400)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("clipsearch serve: %s %s failed", request.method, request.url.path, exc_info=exc)
    text = "Something went wrong on the server; its terminal shows the details."
    return HTMLResponse(pages.message_page("Error", text), status_code=500)
