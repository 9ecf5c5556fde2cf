"""The app's HTML, rendered on the server from plain records.

Every value that comes from the library (file names, paths, metadata, error messages) goes
through `esc`, so a file called `<img src=x onerror=alert(1)>.jpg` shows as those characters.
The page carries no inline script or style: app.js and app.css are files under /static, and
the Content-Security-Policy (guard.py) forbids anything else.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

Params = Sequence[tuple[str, str]]

FILTER_LABELS = {
    "after": ("taken after", "2023-06-01"),
    "before": ("taken before", "2023-09-01"),
    "near": ("near", "Lisbon or 38.7,-9.1"),
    "km": ("within km", "25"),
    "camera": ("camera", "iPhone"),
}


@dataclass
class Chip:
    """One term of the current query, removable."""

    label: str
    sign: int
    remove_url: str
    title: str = ""
    thumb_url: str | None = None


@dataclass
class Card:
    """One photo in a grid; `photo_id` is None when the library no longer has it."""

    photo_id: int | None
    path: str
    label: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    more_url: str | None = None
    less_url: str | None = None
    score: float | None = None


@dataclass
class SearchView:
    q: str = ""
    within: str = ""
    uploads: list[str] = field(default_factory=list)
    filters: dict[str, str] = field(default_factory=dict)
    roots: list[str] = field(default_factory=list)
    chips: list[Chip] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    next_url: str | None = None
    error: str | None = None
    searched: bool = False
    offset: int = 0


@dataclass
class Member:
    card: Card
    keeper: bool = False
    chosen: bool = False


@dataclass
class GroupView:
    number: int
    best: float
    members: list[Member]


@dataclass
class DupesView:
    within: str = ""
    threshold: float = 0.95
    groups: list[GroupView] = field(default_factory=list)
    total: int = 0
    prev_url: str | None = None
    next_url: str | None = None
    error: str | None = None
    keeper_known: bool = False


# -- helpers ------------------------------------------------------------------------------


def esc(value: object) -> str:
    """Escape for HTML text and quoted attributes; bytes of names that were not UTF-8
    (surrogate escapes) show as U+FFFD instead of breaking the page."""
    text = str(value)
    readable = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return html.escape(readable, quote=True)


def url(path: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """A same-origin URL; empty parameters are left out."""
    kept = [(k, v) for k, v in params if v != ""]
    return path + ("?" + urlencode(kept, quote_via=quote) if kept else "")


def file_name(path: str) -> str:
    return os.path.basename(path) or path


# -- the frame ----------------------------------------------------------------------------


def document(title: str, body: str, *, active: str) -> str:
    tabs = "".join(
        f'<a href="{href}"{" aria-current=page" if name == active else ""}>{label}</a>'
        for name, href, label in (
            ("search", "/", "Search"),
            ("dupes", "/dupes", "Duplicates"),
            ("status", "/status", "Status"),
        )
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title>"
        '<link rel="icon" href="/static/icon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/app.css">'
        '<script src="/static/app.js" defer></script></head>\n'
        f'<body data-view="{esc(active)}"><header class="top"><a class="brand" href="/">'
        f'clipsearch</a><nav class="tabs">{tabs}</nav></header>\n{body}\n'
        f'{VIEWER}<div id="toast" class="toast" role="status" hidden></div></body></html>\n'
    )


VIEWER = (
    '<div id="viewer" class="viewer" role="dialog" aria-modal="true" aria-label="Photo" hidden>'
    '<button type="button" class="nav prev" aria-label="Previous photo (←)">‹</button>'
    '<figure class="stage"><img class="full" alt=""></figure>'
    '<button type="button" class="nav next" aria-label="Next photo (→)">›</button>'
    '<aside class="info"><button type="button" class="close" aria-label="Close (Esc)">×</button>'
    '<p class="name"></p><p class="path"></p><p class="score"></p><dl class="facts"></dl>'
    '<p class="actions"><a class="more" href="/">More like this</a>'
    '<a class="less" href="/">Less like this</a>'
    '<button type="button" class="copy" title="Copies the path, to paste into a file manager">'
    "Show in folder (copy path)</button></p>"
    '<p class="hint">← → to move, Esc to close</p></aside></div>'
)


# -- search -------------------------------------------------------------------------------


def search_page(view: SearchView, supported_filters: Sequence[str]) -> str:
    title = f"{view.q} · clipsearch" if view.q else "clipsearch"
    body = (
        f"{_search_form(view, supported_filters)}"
        '<p class="drop-hint">Drop or paste a photo anywhere on this page to search by it.</p>'
        f'<section id="results" aria-live="polite">{results_fragment(view)}</section>'
        '<div id="dropzone" class="dropzone" hidden><p>Drop the photo to search by it</p></div>'
    )
    return document(title, body, active="search")


def _search_form(view: SearchView, supported_filters: Sequence[str]) -> str:
    roots = "".join(f'<option value="{esc(r)}">' for r in view.roots)
    filters = "".join(
        f'<label class="filter">{esc(FILTER_LABELS[name][0])} <input name="{name}" '
        f'value="{esc(view.filters.get(name, ""))}" '
        f'placeholder="{esc(FILTER_LABELS[name][1])}"></label>'
        for name in supported_filters
        if name in FILTER_LABELS
    )
    uploads = "".join(f'<input type="hidden" name="img" value="{esc(k)}">' for k in view.uploads)
    return (
        '<form id="search" class="search" action="/" method="get" role="search">'
        f'<input id="q" name="q" type="search" value="{esc(view.q)}" autocomplete="off" '
        'autofocus aria-label="Search your photos" spellcheck="false" '
        'placeholder="Describe a photo: dog on a beach + sunset - people">'
        '<button type="submit">Search</button>'
        '<details class="filters"><summary>Filters</summary>'
        '<label class="filter">in folder <input id="in" name="in" list="roots" '
        f'value="{esc(view.within)}" placeholder="all folders"></label>'
        f'<datalist id="roots">{roots}</datalist>{filters}</details>'
        f'<span id="uploads">{uploads}</span></form>'
    )


def results_fragment(view: SearchView) -> str:
    """Chips, a summary line, the grid and the marker for more; /results returns this alone,
    and the page's script swaps it in as the user types."""
    chips = "".join(_chip(c) for c in view.chips)
    parts = [f'<div id="chips" class="chips">{chips}</div>']
    if view.error:
        parts.append(f'<p id="summary" class="error" role="alert">{esc(view.error)}</p>')
    else:
        parts.append(f'<p id="summary" class="summary">{esc(_summary(view))}</p>')
    cards = "".join(card(c) for c in view.cards)
    parts.append(f'<div id="grid" class="grid" data-offset="{view.offset}">{cards}</div>')
    if view.next_url:
        parts.append(
            f'<div id="more" class="more-marker" data-next="{esc(view.next_url)}">'
            f'<a href="{esc(view.next_url)}">More results</a></div>'
        )
    return "".join(parts)


def _summary(view: SearchView) -> str:
    if not view.searched:
        return (
            "Type what you are looking for. Add terms with + and take them away with -, "
            "weigh them like 2:cat, or drop a photo here."
        )
    count = view.offset + len(view.cards)
    if not count:
        return "No photos match."
    more = " (scroll for more)" if view.next_url else ""
    return f"Best {count} match{'es' * (count != 1)}{more}"


def _chip(chip: Chip) -> str:
    thumb = (
        f'<img src="{esc(chip.thumb_url)}" alt="" width="28" height="28">' if chip.thumb_url else ""
    )
    sign = "plus" if chip.sign > 0 else "minus"
    mark = "+" if chip.sign > 0 else "−"
    return (
        f'<span class="chip {sign}" title="{esc(chip.title or chip.label)}">'
        f'<span class="sign">{mark}</span>{thumb}<span class="label">{esc(chip.label)}</span>'
        f'<a class="remove" href="{esc(chip.remove_url)}" '
        f'aria-label="Remove {esc(chip.label)}">×</a></span>'
    )


def card(c: Card, *, lead: str = "", kind: str = "") -> str:
    """A photo: its thumbnail opens the viewer; `lead` goes first in the caption."""
    name = file_name(c.path)
    if c.photo_id is None:
        picture = '<div class="placeholder">not in the library any more</div>'
        data = ""
    else:
        picture = (
            f'<a class="open" href="/image/{c.photo_id}" title="{esc(c.path)}">'
            f'<img loading="lazy" src="/thumb/{c.photo_id}" alt="{esc(name)}"></a>'
        )
        data = f' data-id="{c.photo_id}"'
    score = f' data-score="{c.score:.3f}"' if c.score is not None else ""
    links = (
        ("more", c.more_url, "More like this", "Add this photo to the query"),
        ("less", c.less_url, "Less", "Less like this: subtract this photo from the query"),
    )
    actions = "".join(
        f'<a class="{cls}" href="{esc(to)}" title="{tip}">{text}</a>'
        for cls, to, text, tip in links
        if to
    )
    return (
        f'<figure class="card{kind}"{data}{score} data-path="{esc(c.path)}">{picture}'
        f'<figcaption>{lead}<span class="label">{esc(c.label)}</span>'
        f'<span class="name" title="{esc(c.path)}">{esc(name)}</span>{facts(c.facts)}'
        f'<span class="actions">{actions}</span></figcaption></figure>'
    )


def facts(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    items = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in pairs)
    return f'<dl class="facts">{items}</dl>'


# -- duplicates ---------------------------------------------------------------------------


def dupes_page(view: DupesView) -> str:
    form = (
        '<form class="search" action="/dupes" method="get">'
        f'<label class="filter">in folder <input name="in" value="{esc(view.within)}" '
        'placeholder="all folders"></label>'
        f'<label class="filter">threshold <input name="threshold" value="{view.threshold:g}" '
        'inputmode="decimal" size="5"></label><button type="submit">Find duplicates</button>'
        "</form>"
    )
    if view.error:
        body = f'<p class="error" role="alert">{esc(view.error)}</p>'
    elif not view.groups:
        body = '<p class="summary">No near-duplicates at this threshold.</p>'
    else:
        body = _dupes_groups(view)
    return document("Duplicates · clipsearch", form + body, active="dupes")


def _dupes_groups(view: DupesView) -> str:
    keeper = (
        "The likely best photo of each group is marked; the others are chosen. "
        if view.keeper_known
        else ""
    )
    intro = (
        f'<p class="summary">{view.total} group{"s" * (view.total != 1)} of near-duplicates. '
        f"{keeper}Nothing is ever deleted here: copy or export the chosen paths and decide "
        "yourself.</p>"
    )
    tools = (
        '<p class="tools"><button type="button" id="copy-chosen">Copy chosen paths</button>'
        '<button type="submit" name="format" value="txt">Export list</button>'
        '<button type="submit" name="format" value="json">Export JSON</button>'
        '<button type="button" id="choose-none">Choose none</button></p>'
    )
    groups = "".join(_group(g) for g in view.groups)
    pager = "".join(
        f'<a class="{cls}" href="{esc(link)}">{text}</a>'
        for cls, link, text in (
            ("prev", view.prev_url, "← Previous groups"),
            ("next", view.next_url, "More groups →"),
        )
        if link
    )
    return (
        f'{intro}<form id="chosen" action="/dupes/export" method="post">{tools}{groups}</form>'
        f'<nav class="pager">{pager}</nav>'
    )


def _group(group: GroupView) -> str:
    members = "".join(_member(m) for m in group.members)
    return (
        f'<section class="group"><h2>Group {group.number} · {len(group.members)} photos · '
        f'closest pair {group.best:.3f}</h2><div class="row">{members}</div></section>'
    )


def _member(member: Member) -> str:
    """A group member with its choose box (ticked for the extras when the best is known)."""
    c = member.card
    if c.photo_id is None:
        return card(c)
    badge = '<span class="keeper">likely best</span>' if member.keeper else ""
    choose = (
        f'<label class="choose"><input type="checkbox" name="id" value="{c.photo_id}" '
        f'data-path="{esc(c.path)}"{" checked" * member.chosen}> choose</label>'
    )
    return card(c, lead=badge + choose, kind=" keeper" if member.keeper else "")


# -- status -------------------------------------------------------------------------------


def status_page(status: dict, errors: Sequence, shown: int) -> str:
    rows = [
        ("Library", status.get("library")),
        ("Photos", f"{status.get('images', 0):,}"),
        ("Model", f"{status.get('model')} ({status.get('pretrained')})"),
        ("Vector index", status.get("index_type")),
        ("Size on disk", _size(status.get("size_bytes") or 0)),
        ("Last update", status.get("updated") or "never"),
        ("Files that could not be indexed", f"{status.get('errors', 0):,}"),
    ]
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    roots = "".join(f"<li>{esc(r)}</li>" for r in status.get("roots", [])) or "<li>none</li>"
    problems = "".join(
        f"<tr><td>{esc(e.path)}</td><td>{esc(e.reason)}</td></tr>" for e in errors[:shown]
    )
    more = (
        f'<p class="summary">… and {len(errors) - shown:,} more: '
        "<code>clipsearch status --errors</code> lists them all.</p>"
        if len(errors) > shown
        else ""
    )
    skipped = (
        f'<h2>Files that could not be indexed</h2><table class="errors"><tr><th>path</th>'
        f"<th>reason</th></tr>{problems}</table>{more}"
        if errors
        else ""
    )
    body = (
        f'<section class="status"><table class="facts-table">{table}</table>'
        f'<h2>Folders</h2><ul class="roots">{roots}</ul>{skipped}</section>'
    )
    return document("Status · clipsearch", body, active="status")


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return str(n)


def message_page(title: str, text: str, active: str = "search") -> str:
    return document(
        f"{title} · clipsearch", f'<p class="error" role="alert">{esc(text)}</p>', active=active
    )
