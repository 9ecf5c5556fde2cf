"""`clipsearch dupes`: groups of near-duplicate photos, to review (never to delete)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import EXIT_NONE, ClipsearchError
from .options import (
    GalleryOpt,
    HtmlOpt,
    JsonlOpt,
    JsonOpt,
    LibraryOpt,
    NullOpt,
    OpenOpt,
    StandaloneOpt,
)
from .output import check_outputs, check_ready, gallery_target, open_library, write_page


def dupes(
    directory: Annotated[
        Path | None, typer.Argument(help="Only photos under this folder [default: all]")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Cosine at or above which photos count as duplicates [default: 0.95]"),
    ] = None,
    json_out: JsonOpt = False,
    jsonl: JsonlOpt = False,
    null: NullOpt = False,
    html: HtmlOpt = None,
    gallery: GalleryOpt = False,
    standalone: StandaloneOpt = False,
    open_page: OpenOpt = False,
    others: Annotated[
        bool,
        typer.Option(
            "--others",
            help="Print every path but each group's suggested keeper (with -0: for xargs -0)",
        ),
    ] = False,
    library: LibraryOpt = None,
) -> None:
    """Print groups of near-duplicate photos (re-encodes, resizes, crops, bursts), best first.

    Example: clipsearch dupes ~/Photos/2023 --threshold 0.97
    """
    from ..library import DUPE_THRESHOLD
    from ..output.text import pick_mode, write_groups, write_others

    cutoff = DUPE_THRESHOLD if threshold is None else threshold
    if not -1.0 <= cutoff <= 1.0:
        raise ClipsearchError(f"--threshold is a cosine between -1 and 1, not {cutoff}")
    html = gallery_target(html, gallery, standalone)
    check_outputs(json_out, jsonl, null, html, False)
    with open_library(library) as lib:
        check_ready(lib, directory)
        groups = lib.duplicates(directory, cutoff)
        if html is not None or open_page:
            write_page(lib, "near-duplicates", html, open_page, standalone, groups=groups)
        elif others:
            write_others(groups, pick_mode(json_out, jsonl, null, False))
        else:
            write_groups(groups, pick_mode(json_out, jsonl, null, sys.stdout.isatty()))
    if not groups:
        raise typer.Exit(EXIT_NONE)
