"""Opening the library and showing results, shared by the commands that answer queries."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import ClipsearchError


def open_library(library: Path | None, **kwargs):
    """The library the options name; imported here so `--help` never loads the API."""
    from ..library import Library

    return Library.open(library, **kwargs)


def check_outputs(json_out: bool, jsonl: bool, null: bool, html, preview: bool) -> None:
    """Output options that exclude each other are refused, not silently ranked."""
    from ..errors import ClipsearchError

    chosen = [
        name
        for name, on in (
            ("--json", json_out),
            ("--jsonl", jsonl),
            ("-0", null),
            ("--html", html is not None),
            ("--preview", preview),
        )
        if on
    ]
    if len(chosen) > 1:
        raise ClipsearchError(
            f"{' and '.join(chosen)} cannot be combined: choose one way to print results"
        )


def check_ready(lib, within) -> None:
    """An empty library, or `--in` naming a folder that does not exist, says so instead of
    printing nothing: exit 1 with the way to fill the library, exit 2 for a bad --in."""
    import typer

    from ..errors import EXIT_NONE, ClipsearchError, warn
    from ..fsutil import absolute

    if within is not None:
        path = absolute(within)
        if not os.path.exists(path) and not lib.store.count_under(path):
            raise ClipsearchError(
                f"--in {within}: no such folder; give a folder that holds indexed photos"
            )
    if lib.store.is_empty():
        warn("the library holds no photos yet: add some with `clipsearch index ~/Photos`")
        raise typer.Exit(EXIT_NONE)


def gallery_target(html: str | None, gallery: bool, standalone: bool) -> str | None:
    """One form each: `--html FILE` writes FILE, `--gallery` a page in the library (""
    below); --standalone needs one of them."""
    from ..errors import ClipsearchError

    if html is not None and gallery:
        raise ClipsearchError("--html FILE and --gallery cannot be combined: choose one")
    if standalone and html is None and not gallery:
        raise ClipsearchError("--standalone is for a gallery: add --html FILE or --gallery")
    return "" if gallery else html


def show_hits(
    lib, hits, title, json_out, jsonl, null, html, open_page, preview, standalone=False
) -> None:
    """Every output mode of `query` and `similar`."""
    from ..output.text import pick_mode, write_hits

    if html is not None or open_page:
        write_page(lib, title, html, open_page, standalone, hits=hits)
        return
    if preview and sys.stdout.isatty():
        from ..output.preview import render_previews

        render_previews(hits, sys.stdout, os.environ, lib.thumbnails(), True)
        return
    write_hits(hits, pick_mode(json_out, jsonl, null, sys.stdout.isatty()))


def write_page(
    lib, title: str, html: str | None, open_page: bool, standalone: bool = False, **content
) -> None:
    """Write an HTML gallery (to `html`, or a page under the library) and print its path;
    a standalone page carries its thumbnails and says its size on stderr."""
    from ..errors import warn
    from ..output.gallery import write_gallery
    from ..output.summary import _bytes

    out = Path(html).expanduser() if html else lib.layout.galleries / f"{_slug(title)}.html"
    if html and not out.suffix:
        out = out.with_name(out.name + ".html")
    try:
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ClipsearchError(f"cannot write gallery {out}: {exc.strerror or exc}") from exc
    page = write_gallery(
        content.get("hits", []),
        out,
        title=title,
        thumbs=lib.thumbnails(sharp=standalone),
        groups=content.get("groups"),
        inline=standalone,
    )
    if standalone:
        warn(f"wrote a standalone page of {_bytes(page.stat().st_size)} (thumbnails inside)")
    sys.stdout.buffer.write(os.fsencode(str(page.absolute())) + b"\n")
    sys.stdout.flush()
    if open_page:
        import webbrowser

        webbrowser.open(page.absolute().as_uri())


def print_json(value: object) -> None:
    from ..output.text import write_json

    write_json(value)


def _slug(title: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "results"
