"""Where a library lives, and the name of every file inside its folder.

Only this module knows these names; everything else asks it (as pipx's `paths.py` does).

| name                          | what                                                      |
| ----------------------------- | --------------------------------------------------------- |
| `library.db`                  | SQLite: roots, files, their vectors, errors, the model     |
| `vectors-<generation>.faiss`  | the FAISS index, a cache of the vectors in `library.db`   |
| `photometa-<gen>-<ver>.npz`   | capture times, places, cameras as columns (a cache too)   |
| `text/`, `image/`             | towers exported by versions before the user cache (read)  |
| `thumbnails/`, `galleries/`   | thumbnails (one per file version) and HTML pages          |
| `write.lock`                  | one writer at a time; readers never wait                  |
| `roots.json`                  | a copy of the roots and their settings, for `repair`      |
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# What one user's libraries share lives in the user cache folder instead (`UserCache`).

DB_NAME = "library.db"
HOME_ENV = "CLIPSEARCH_HOME"
_INDEX_GLOB = "vectors-*.faiss"
_INDEX_TEMP_GLOB = ".vectors-*.tmp"  # what an interrupted atomic save leaves behind
_GENERATION = re.compile(r"vectors-(\d+)\.faiss$")
_META_COLUMNS_GLOB = "photometa-*.npz"
# Every name clipsearch may leave in its folder, temporary ones included: a folder holding
# anything else is not a library, and is never adopted as one.
_OWN_NAME = re.compile(
    r"(library\.db(-wal|-shm|-journal|\.salvage.*|\.damaged-.*)?"
    r"|vectors-\d+\.faiss|photometa-[\d-]+\.npz|\..+\.tmp|\.(text|image)\.(tmp|old)-.*"
    r"|text|image|thumbnails|galleries|write\.lock|roots\.json)"
)


def is_own_name(name: str) -> bool:
    """True for a name clipsearch itself creates inside a library folder."""
    return _OWN_NAME.fullmatch(name) is not None


def default_home() -> Path:
    """$CLIPSEARCH_HOME, else the XDG data folder (~/.local/share/clipsearch)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    if xdg.startswith("~"):
        # No $HOME and no passwd entry (a bare container, a service account): expanduser
        # gives "~" back, and the library landed in a folder named "~" in the current one.
        from ..errors import ClipsearchError

        raise ClipsearchError(
            "cannot tell where to keep the library: $HOME is not set and this user has no "
            "home folder; pass --library DIR or set $CLIPSEARCH_HOME"
        )
    return Path(xdg) / "clipsearch"


def cache_home() -> Path:
    """The user cache folder: $XDG_CACHE_HOME/clipsearch, else ~/.cache/clipsearch."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(xdg) / "clipsearch"


@dataclass(frozen=True)
class UserCache:
    """Files every library of one user shares, in `cache_home()`.

    | name                      | what                                                     |
    | ------------------------- | -------------------------------------------------------- |
    | `exports/<key>/text/`     | a model's torch-free text tower, one per checkpoint hash |
    | `exports/<key>/image/`    | its image tower (ONNX graph, weights, int8 graph)        |
    | `checkpoints.json`        | checkpoint file -> content hash, by size and mtime       |
    | `backends.json`           | the index backend measured per machine and model         |
    """

    directory: Path

    @classmethod
    def default(cls) -> UserCache:
        return cls(cache_home())

    def export(self, key: str) -> Path:
        return self.directory / "exports" / key

    def text_export(self, key: str) -> Path:
        return self.export(key) / "text"

    def image_export(self, key: str) -> Path:
        return self.export(key) / "image"

    @property
    def checkpoint_hashes(self) -> Path:
        return self.directory / "checkpoints.json"

    @property
    def backend_choices(self) -> Path:
        return self.directory / "backends.json"


@dataclass(frozen=True)
class Layout:
    """The files of the library in `directory`."""

    directory: Path

    @property
    def db(self) -> Path:
        return self.directory / DB_NAME

    @property
    def lock(self) -> Path:
        return self.directory / "write.lock"

    @property
    def roots_copy(self) -> Path:
        """The roots, devices and settings as JSON, rewritten when they change: a damaged
        database can lose its roots table, and `repair` gets them back from here."""
        return self.directory / "roots.json"

    @property
    def text_export(self) -> Path:
        return self.directory / "text"

    @property
    def image_export(self) -> Path:
        return self.directory / "image"

    @property
    def thumbnails(self) -> Path:
        return self.directory / "thumbnails"

    @property
    def galleries(self) -> Path:
        return self.directory / "galleries"

    def index_file(self, generation: int) -> Path:
        """The FAISS file mirroring what SQLite held when `generation` committed."""
        return self.directory / f"vectors-{generation}.faiss"

    def index_files(self) -> list[tuple[int, Path]]:
        """Every FAISS file present, with its generation, newest first."""
        found = []
        for path in self.directory.glob(_INDEX_GLOB):
            match = _GENERATION.search(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found, reverse=True)

    def meta_columns(self, generation: int, version: int) -> Path:
        """The metadata columns mirroring `photo_meta` at this generation and version."""
        return self.directory / f"photometa-{generation}-{version}.npz"

    def meta_column_files(self) -> list[Path]:
        return list(self.directory.glob(_META_COLUMNS_GLOB))

    def index_leftovers(self) -> list[Path]:
        """Temporary FAISS files that a killed save left behind."""
        return list(self.directory.glob(_INDEX_TEMP_GLOB))

    @property
    def salvage(self) -> Path:
        """Where `repair` builds a fresh database before swapping it in."""
        return self.directory / f"{DB_NAME}.salvage"

    @property
    def salvage_source(self) -> Path:
        """A copy of a database whose header `repair` restored, to salvage rows from."""
        return self.directory / f"{DB_NAME}.salvage-source"

    def damaged_backup(self, stamp: str) -> Path:
        """Where `repair` keeps a damaged database it replaced."""
        return self.directory / f"{DB_NAME}.damaged-{stamp}"

    def wal_files(self, db: Path) -> list[Path]:
        """SQLite's write-ahead log and shared-memory files beside `db`."""
        return [Path(f"{db}{suffix}") for suffix in ("-wal", "-shm")]
