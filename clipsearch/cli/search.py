"""`clipsearch query` and `clipsearch similar`: the photos that best match, best first."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import EXIT_NONE, warn
from .options import (
    AfterOpt,
    BeforeOpt,
    CameraOpt,
    DeviceOpt,
    GalleryOpt,
    HtmlOpt,
    JsonlOpt,
    JsonOpt,
    KmOpt,
    LibraryOpt,
    MinScoreOpt,
    NearOpt,
    NullOpt,
    OpenOpt,
    PreviewOpt,
    SortOpt,
    StandaloneOpt,
    TopOpt,
    WithinOpt,
)
from .output import check_outputs, check_ready, gallery_target, open_library, show_hits


def query(
    terms: Annotated[
        list[str] | None,
        typer.Argument(help="Text, or ./image.jpg; weights like 2:cat; - reads queries from stdin"),
    ] = None,
    add: Annotated[
        list[str] | None, typer.Option("--add", "-a", help="Add a concept (repeatable)")
    ] = None,
    sub: Annotated[
        list[str] | None, typer.Option("--sub", "-s", help="Subtract a concept (repeatable)")
    ] = None,
    top: TopOpt = 10,
    min_score: MinScoreOpt = None,
    within: WithinOpt = None,
    exact: Annotated[
        bool, typer.Option("--exact", help="Exact search even in a large library")
    ] = False,
    as_text: Annotated[
        bool, typer.Option("--text", help="Read every term as text, even an image file's name")
    ] = False,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    near: NearOpt = None,
    km: KmOpt = None,
    camera: CameraOpt = None,
    sort: SortOpt = "score",
    json_out: JsonOpt = False,
    jsonl: JsonlOpt = False,
    null: NullOpt = False,
    html: HtmlOpt = None,
    gallery: GalleryOpt = False,
    standalone: StandaloneOpt = False,
    open_page: OpenOpt = False,
    preview: PreviewOpt = False,
    device: DeviceOpt = "auto",
    library: LibraryOpt = None,
) -> None:
    """Print the photos best matching the query, best first.

    With --after/--before/--near/--camera and no terms: the matching photos, by date.

    Example: clipsearch query "dog on a beach" --after 2023 -n 20
    """
    html = gallery_target(html, gallery, standalone)
    check_outputs(json_out, jsonl, null, html, preview)
    filters = _filters(after, before, near, km, camera, sort)
    options = dict(top=top, min_score=min_score, within=within, exact=exact, sort=sort)
    options["filters"] = filters
    if as_text:
        options["as_text"] = True
    with open_library(library, device=device) as lib:
        check_ready(lib, within)
        if terms == ["-"]:
            outputs = dict(json_out=json_out, jsonl=jsonl, null=null, html=html)
            outputs["standalone"] = standalone
            found = _batch_queries(lib, {**options, "add": add or [], "sub": sub or []}, outputs)
        else:
            hits = lib.search(*(terms or []), add=add or [], sub=sub or [], **options)
            words = [*(terms or []), *(f"+{a}" for a in add or []), *(f"-{x}" for x in sub or [])]
            title = " ".join(words) or _describe(filters)
            show_hits(lib, hits, title, json_out, jsonl, null, html, open_page, preview, standalone)
            found = bool(hits)
    if not found:
        if filters.active:
            _note_unread_metadata(library)
        raise typer.Exit(EXIT_NONE)


def _note_unread_metadata(library) -> None:
    """Nothing matched a filter: say so when photos indexed by an older clipsearch have not
    had their metadata read yet (the next `index` reads it)."""
    from ..storage import photometa

    with open_library(library) as lib:
        missing = photometa.count_missing(lib.store.conn)
    if missing > 0:
        warn(f"{missing} photos have no date, place or camera yet: run `clipsearch index`")


def _filters(after, before, near, km, camera, sort):
    """Filters from the options, checked before the library opens; a place name's pick is
    said on stderr, since 'Cambridge' could have meant another town."""
    from ..search.filters import check_sort, make_filters

    check_sort(sort)
    return make_filters(after=after, before=before, near=near, km=km, camera=camera, say=warn)


def _describe(filters) -> str:
    """A page title for a listing without terms: 'after 2024-06-01 near Lisbon, PT'."""
    parts = []
    if filters.after:
        parts.append(f"after {filters.after.moment:%Y-%m-%d}")
    if filters.before:
        parts.append(f"before {filters.before.moment:%Y-%m-%d}")
    if filters.near:
        parts.append(f"near {filters.near.label}")
    if filters.camera:
        parts.append(f"camera {filters.camera}")
    return " ".join(parts)


def _batch_queries(lib, options: dict, outputs: dict) -> bool:
    """`query -`: one query per line on stdin, the model loaded once for all of them.

    Every option applies to every line (--add/--sub, -0, --html...).  A line that fails is
    reported on stderr with its number and the others are still answered; the exit status
    is then 2, so a script knows some failed."""
    from ..errors import EXIT_ERROR, ClipsearchError
    from ..output.text import hit_record, pick_mode, write_hits, write_json, write_json_lines

    answers, failed = [], 0
    for number, line in enumerate(sys.stdin, 1):
        text = line.rstrip("\n")
        if not text.strip():
            continue
        try:
            answers.append((text, lib.search(text, **options)))
        except ClipsearchError as exc:
            warn(f"line {number}: {exc}")
            failed += 1
    if outputs["json_out"]:
        write_json([{"query": q, "results": [hit_record(h) for h in hits]} for q, hits in answers])
    elif outputs["jsonl"]:
        write_json_lines([{"query": q, **hit_record(h)} for q, hits in answers for h in hits])
    elif outputs["html"] is not None:
        _batch_pages(lib, answers, outputs["html"], outputs["standalone"])
    else:
        mode = pick_mode(False, False, outputs["null"], sys.stdout.isatty())
        for n, (_, hits) in enumerate(answers):
            if n and mode != "null":
                sys.stdout.buffer.write(b"\n")
            write_hits(hits, mode)
    if failed:
        raise typer.Exit(EXIT_ERROR)
    return any(hits for _, hits in answers)


def _batch_pages(lib, answers: list, html: str, standalone: bool) -> None:
    """A gallery per query line: FILE-1.html, FILE-2.html... (or pages in the library)."""
    from .output import write_page

    for n, (text, hits) in enumerate(answers, 1):
        target = html
        if html:
            stem, ext = os.path.splitext(html)
            target = f"{stem}-{n}{ext or '.html'}"
        write_page(lib, text, target, False, standalone, hits=hits)


def similar(
    image: Annotated[Path, typer.Argument(help="An image file, in the library or not")],
    top: TopOpt = 10,
    min_score: MinScoreOpt = None,
    within: WithinOpt = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    near: NearOpt = None,
    km: KmOpt = None,
    camera: CameraOpt = None,
    sort: SortOpt = "score",
    json_out: JsonOpt = False,
    jsonl: JsonlOpt = False,
    null: NullOpt = False,
    html: HtmlOpt = None,
    gallery: GalleryOpt = False,
    standalone: StandaloneOpt = False,
    open_page: OpenOpt = False,
    preview: PreviewOpt = False,
    device: DeviceOpt = "auto",
    library: LibraryOpt = None,
) -> None:
    """Print the photos that look most like IMAGE (the image itself left out).

    Example: clipsearch similar ~/Photos/IMG_0042.jpg -n 5
    """
    html = gallery_target(html, gallery, standalone)
    check_outputs(json_out, jsonl, null, html, preview)
    filters = _filters(after, before, near, km, camera, sort)
    with open_library(library, device=device) as lib:
        check_ready(lib, within)
        hits = lib.similar(
            str(image), top=top, min_score=min_score, within=within, sort=sort, filters=filters
        )
        title = f"like {image.name}"
        show_hits(lib, hits, title, json_out, jsonl, null, html, open_page, preview, standalone)
    if not hits:
        raise typer.Exit(EXIT_NONE)
