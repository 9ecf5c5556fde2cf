"""`clipsearch serve`: the library in the browser (clipsearch/web), from one warm process."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import warn
from .options import LibraryOpt


def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on; any but 127.0.0.1 opens it to the network")
    ] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Port, 0 for any free one [default: 8765 if free]"),
    ] = None,
    no_open: Annotated[bool, typer.Option("--no-open", help="Do not open a browser")] = False,
    library: LibraryOpt = None,
) -> None:
    """Search and browse the library in your browser (a local web app; needs clipsearch[serve]).

    Example: clipsearch serve --port 8765
    """
    from ..web.server import serve as run_server

    run_server(library, host=host, port=port, open_browser=not no_open, warn=warn)
