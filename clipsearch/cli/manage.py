"""`clipsearch status`, `forget` and `repair`: look after the library itself."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import safe_for_terminal, warn
from .options import JsonOpt, LibraryOpt, NoWaitOpt
from .output import open_library, print_json


def status(
    errors: Annotated[
        bool, typer.Option("--errors", help="List the files that could not be indexed")
    ] = False,
    json_out: JsonOpt = False,
    library: LibraryOpt = None,
) -> None:
    """Show the library: roots, image count, model, size on disk, last update.

    Example: clipsearch status --errors
    """
    from ..output.summary import print_errors, print_status

    with open_library(library) as lib:
        value = [e.__dict__ for e in lib.errors()] if errors else lib.status()
    if json_out:
        print_json(value)
    elif errors:
        print_errors(value)
    else:
        print_status(value)


def forget(
    directory: Annotated[Path, typer.Argument(help="A root folder given to `index` before")],
    no_wait: NoWaitOpt = False,
    library: LibraryOpt = None,
) -> None:
    """Drop a root folder and every photo indexed under it.

    Example: clipsearch forget /mnt/old-disk/Photos
    """
    with open_library(library) as lib:
        removed = lib.forget(directory, wait=not no_wait, on_wait=warn)
    shown = safe_for_terminal(str(directory))
    sys.stderr.write(f"forgot {shown}: {removed} images removed from the library\n")


def move(
    old: Annotated[Path, typer.Argument(help="A root, or a folder below one, as indexed")],
    new: Annotated[Path, typer.Argument(help="Where those photos are now")],
    no_wait: NoWaitOpt = False,
    library: LibraryOpt = None,
) -> None:
    """Re-point a root or a folder below one at its new place, without re-embedding.

    Example: clipsearch move ~/Pictures/2019 /mnt/nas/photos/2019
    """
    with open_library(library) as lib:
        moved = lib.move(old, new, wait=not no_wait, on_wait=warn)
    sys.stderr.write(f"moved {old} to {new}: {moved} photos re-pointed, none re-embedded\n")


def purge(no_wait: NoWaitOpt = False, library: LibraryOpt = None) -> None:
    """Forget the vectors kept for removed photos now (otherwise kept for 90 days).

    Example: clipsearch purge
    """
    with open_library(library) as lib:
        gone = lib.purge(wait=not no_wait, on_wait=warn)
    sys.stderr.write(f"purged {gone} retained vectors of removed photos\n")


def repair(no_wait: NoWaitOpt = False, library: LibraryOpt = None) -> None:
    """Check the library and fix what is damaged: salvage the database, rebuild the index.

    Example: clipsearch repair
    """
    from ..library import Library

    for line in Library.repair(library, wait=not no_wait, on_wait=warn):
        sys.stdout.write(safe_for_terminal(line) + "\n")
