"""A self-contained HTML results page: thumbnails link to the originals, no JavaScript.

Every piece of text that comes from the file system is escaped, and a Content-Security-Policy
forbids scripts outright, so a hostile file name can at worst look odd.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ClipsearchError
from ..photos.thumbnails import ThumbnailCache
from ..results import Hit

if TYPE_CHECKING:
    from ..results import DupeGroup

CSP = "default-src 'none'; img-src file: data:; style-src 'unsafe-inline'"

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;background:#fafafa;color:#222}
h1{font-size:1.3rem;margin:0 0 .2rem}
.summary{color:#666;margin:0 0 1rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:1rem}
.group{margin:0 0 1.5rem;padding:.8rem;background:#fff;border:1px solid #ddd;border-radius:8px}
.group h2{font-size:1rem;margin:0 0 .6rem}
.group .row{display:flex;gap:1rem;overflow-x:auto}
.group .hit{flex:0 0 200px}
.hit{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;overflow:hidden}
.hit a{display:block;color:inherit;text-decoration:none}
.hit img,.placeholder{display:block;width:100%;height:180px;object-fit:contain;background:#eee}
.placeholder{display:flex;align-items:center;justify-content:center;color:#888}
figcaption{padding:.4rem .5rem;font-size:12px}
.score{font-weight:600;display:block}
.path{color:#555;word-break:break-all}
.when{color:#444;display:block}
details{font-size:12px;color:#555;margin-top:.5rem}
@media (prefers-color-scheme:dark){
body{background:#181818;color:#ddd}.hit,.group{background:#222;border-color:#444}
.hit img,.placeholder{background:#2c2c2c}.path,.summary,details{color:#aaa}}
"""


def write_gallery(
    hits: Sequence[Hit],
    out: Path,
    *,
    title: str,
    thumbs: ThumbnailCache,
    groups: Sequence[DupeGroup] | None = None,
    inline: bool = False,
) -> Path:
    """Write the page to `out`: a grid of `hits`, then one row per duplicate group, if any.
    inline: thumbnails go inside the page as data: URIs, so it works sent by mail or served
    over HTTP, where file: links to the library's thumbnails break."""
    sections = []
    if hits:
        cards = "".join(
            _card(h.path, _label(h), thumbs, _when_where(h), inline=inline) for h in hits
        )
        sections.append(f'<main class="grid">{cards}</main>')
    if groups:
        sections.extend(_group_section(k, g, thumbs, inline) for k, g in enumerate(groups, start=1))
    page = _page(title, _summary(hits, groups), "\n".join(sections))
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ClipsearchError(f"cannot write gallery {out}: {exc}") from exc
    return out


def _page(title: str, summary: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{_text(title)}</title><style>{STYLE}</style></head>\n<body>"
        f'<h1>{_text(title)}</h1><p class="summary">{summary}</p>\n{body}\n</body></html>\n'
    )


def _summary(hits: Sequence[Hit], groups: Sequence[DupeGroup] | None) -> str:
    parts = [f"{len(hits)} result{'s' * (len(hits) != 1)}"] if hits or not groups else []
    if groups:
        parts.append(f"{len(groups)} duplicate group{'s' * (len(groups) != 1)}")
    return " · ".join(parts)


def _group_section(
    number: int, group: DupeGroup, thumbs: ThumbnailCache, inline: bool = False
) -> str:
    """One row per group; each card shows its closest match inside the group."""
    closest = [0.0] * len(group.paths)
    for i, j, score in group.pairs:
        closest[i] = max(closest[i], score)
        closest[j] = max(closest[j], score)
    cards = "".join(
        _card(path, f"{k + 1} · best match {closest[k]:.3f}", thumbs, inline=inline)
        for k, path in enumerate(group.paths)
    )
    pairs = "".join(f"<li>{i + 1} ↔ {j + 1}: {score:.3f}</li>" for i, j, score in group.pairs)
    return (
        f'<section class="group"><h2>Group {number} · best {group.best:.3f} · '
        f'{len(group.paths)} photos</h2><div class="row">{cards}</div>'
        f"<details><summary>pair scores</summary><ul>{pairs}</ul></details></section>"
    )


def _label(hit: Hit) -> str:
    return f"#{hit.rank}" if hit.score is None else f"#{hit.rank} · {hit.score:.3f}"


def _when_where(hit: Hit) -> str:
    """'2023-07-14 18:03 · Lisbon, PT' under the photo; empty when neither is known."""
    parts = [hit.taken[:16].replace("T", " ") if hit.taken else "", hit.place or ""]
    return " · ".join(p for p in parts if p)


def _card(
    path: str, label: str, thumbs: ThumbnailCache, when_where: str = "", *, inline=False
) -> str:
    """A figure linking to the original; the thumbnail is a file so the page stays small,
    or inside the page (`inline`) so it can travel."""
    name = _text(Path(path).name)
    thumb = thumbs.get(path)
    source = _inline(thumb) if inline and thumb is not None else thumb and thumb.as_uri()
    picture = (
        f'<img loading="lazy" src="{_attr(source)}" alt="{name}">'
        if source
        else '<div class="placeholder">no preview</div>'
    )
    when = f'<span class="when">{_text(when_where)}</span>' if when_where else ""
    return (
        f'<figure class="hit"><a href="{_attr(Path(path).absolute().as_uri())}" title="{name}">'
        f'{picture}</a><figcaption><span class="score">{_text(label)}</span>{when}'
        f'<span class="path">{_text(path)}</span></figcaption></figure>'
    )


def _inline(thumb: Path) -> str | None:
    import base64

    try:
        return "data:image/jpeg;base64," + base64.b64encode(thumb.read_bytes()).decode()
    except OSError:
        return None


def _text(value: str) -> str:
    """Escape for HTML; undecodable bytes in names (surrogate escapes) become U+FFFD."""
    readable = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return html.escape(readable, quote=True)


def _attr(uri: str) -> str:
    """URIs from as_uri() are already percent-encoded; escaping keeps `&` valid in HTML."""
    return html.escape(uri, quote=True)
