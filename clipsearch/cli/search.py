"""`clipsearch query` and `clipsearch similar`: the photos that best match, best first."""

from __future__ import annotations

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
    TopOpt,
    WithinOpt,
)
from .output import open_library, show_hits


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
    open_page: OpenOpt = False,
    preview: PreviewOpt = False,
    device: DeviceOpt = "auto",
    library: LibraryOpt = None,
) -> None:
    """Print the photos best matching the query, best first.

    With --after/--before/--near/--camera and no terms: the matching photos, by date."""
    filters = _filters(after, before, near, km, camera, sort)
    options = dict(top=top, min_score=min_score, within=within, exact=exact, sort=sort)
    options["filters"] = filters
    with open_library(library, device=device) as lib:
        if terms == ["-"]:
            found = _batch_queries(lib, options, json_out, jsonl)
        else:
            hits = lib.search(*(terms or []), add=add or [], sub=sub or [], **options)
            words = [*(terms or []), *(f"+{a}" for a in add or []), *(f"-{x}" for x in sub or [])]
            title = " ".join(words) or _describe(filters)
            show_hits(lib, hits, title, json_out, jsonl, null, html, open_page, preview)
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


def _batch_queries(lib, options: dict, json_out: bool, jsonl: bool) -> bool:
    """`query -`: one query per line on stdin, the model loaded once for all of them."""
    from ..output.text import hit_record, pick_mode, write_hits, write_json

    answers = []
    for line in sys.stdin:
        text = line.rstrip("\n")
        if text.strip():
            answers.append((text, lib.search(text, **options)))
    if json_out:
        write_json([{"query": q, "results": [hit_record(h) for h in hits]} for q, hits in answers])
    elif jsonl:
        from ..output.text import write_json_lines

        write_json_lines([{"query": q, **hit_record(h)} for q, hits in answers for h in hits])
    else:
        mode = pick_mode(False, False, False, sys.stdout.isatty())
        for n, (_, hits) in enumerate(answers):
            if n:
                sys.stdout.buffer.write(b"\n")
            write_hits(hits, mode)
    return any(hits for _, hits in answers)


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
    open_page: OpenOpt = False,
    preview: PreviewOpt = False,
    device: DeviceOpt = "auto",
    library: LibraryOpt = None,
) -> None:
    """Print the photos that look most like IMAGE (the image itself left out)."""
    filters = _filters(after, before, near, km, camera, sort)
    with open_library(library, device=device) as lib:
        hits = lib.similar(
            str(image), top=top, min_score=min_score, within=within, sort=sort, filters=filters
        )
        show_hits(lib, hits, f"like {image.name}", json_out, jsonl, null, html, open_page, preview)
    if not hits:
        raise typer.Exit(EXIT_NONE)
