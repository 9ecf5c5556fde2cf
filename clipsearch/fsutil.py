"""File-system steps every part shares: absolute user paths and all-or-nothing writes.

A crash must leave either the old file or the new one, never half of one: each writer goes
through a temporary file in the same folder, fsync, then an atomic rename.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def absolute(path: os.PathLike | str) -> str:
    """`~` expanded and made absolute (not resolved: paths stay as the user knows them)."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def fsync_path(path: os.PathLike | str) -> None:
    """Flush a file or folder to disk; a folder's fsync makes a rename inside it durable."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(
    path: os.PathLike | str, write: Callable[[str], None], *, durable: bool = True
) -> None:
    """Let `write` fill a temporary file beside `path`, then rename it over `path`.

    With `durable`, the file and its folder are fsynced, so the new content survives a power
    cut once this returns; caches that can be remade (thumbnails) skip that cost.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        if durable:
            fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_path(path.parent)


def read_json_table(path: os.PathLike | str) -> dict:
    """A small JSON object kept in the user cache; missing, unreadable or not an object: {}."""
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def write_json_table(path: os.PathLike | str, table: dict) -> None:
    """Replace such a table all at once; one that cannot be written only means working it out
    again next time (a cache, so no fsync)."""
    path = Path(path)

    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(table, indent=1), encoding="utf-8")

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, write, durable=False)
    except OSError:
        pass
