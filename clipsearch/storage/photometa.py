"""Photo metadata in the library database: one row per indexed file version.

The row is keyed by the file's id, and a changed file gets a new id, so the metadata always
belongs to the version whose vector is stored; a trigger drops it with the file.  A row with
every field NULL still means "read, nothing found", which is what lets a re-index tell the
files it has read from those indexed before metadata existed (the backfill).

Filters run over a numpy copy of these columns (storage/metacolumns.py), which answers a
bounding box or a date range over a million photos in milliseconds, where SQLite handed the
matching rows to Python at 1-3 µs each.  The index on capture time serves `status`'s date
range and the backfill's search for undated rows.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Iterable, Sequence

from ..photos.metadata import PhotoMeta, camera_name, iso_time
from ..results import PhotoDetails
from ..search.filters import from_wall_seconds, wall_seconds

SCHEMA = """
CREATE TABLE IF NOT EXISTS photo_meta (
    file_id INTEGER PRIMARY KEY,
    taken INTEGER,
    offset_min INTEGER,
    taken_from TEXT,
    lat REAL,
    lon REAL,
    altitude REAL,
    make TEXT,
    model TEXT,
    lens TEXT,
    width INTEGER,
    height INTEGER,
    place TEXT
);
CREATE INDEX IF NOT EXISTS photo_meta_taken ON photo_meta(taken);
CREATE TRIGGER IF NOT EXISTS files_drop_meta AFTER DELETE ON files
BEGIN DELETE FROM photo_meta WHERE file_id = old.id; END;
"""
COLUMNS = (
    "file_id",
    "taken",
    "offset_min",
    "taken_from",
    "lat",
    "lon",
    "altitude",
    "make",
    "model",
    "lens",
    "width",
    "height",
    "place",
)
FROM_EXIF, FROM_MTIME = "exif", "mtime"
_CHUNK = 500  # ids per IN (...) query


NO_DETAILS = PhotoDetails()


# --- writing --------------------------------------------------------------------------------


def row(file_id: int, meta: PhotoMeta, place: str | None, taken_from: str = FROM_EXIF) -> tuple:
    taken = wall_seconds(meta.taken) if meta.taken is not None else None
    return (
        file_id,
        taken,
        meta.offset_minutes,
        taken_from if taken is not None else None,
        meta.lat,
        meta.lon,
        meta.altitude,
        meta.make,
        meta.model,
        meta.lens,
        meta.width,
        meta.height,
        place,
    )


def put(conn: sqlite3.Connection, rows: Iterable[tuple]) -> None:
    marks = ", ".join("?" * len(COLUMNS))
    conn.executemany(
        f"INSERT OR REPLACE INTO photo_meta({', '.join(COLUMNS)}) VALUES ({marks})", rows
    )
    changed(conn)


def changed(conn: sqlite3.Connection) -> None:
    """Bump the metadata version, in the writer's transaction: the column cache
    (storage/metacolumns.py) is named after it, so a stale one is never read."""
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('photo_meta_version', 1) "
        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


def count_missing(conn: sqlite3.Connection) -> int:
    """Files indexed without a metadata row (before this version, or by a bulk import).
    Two counts, so an up-to-date library pays no scan for the backfill."""
    files = conn.execute("SELECT count(*) FROM files").fetchone()[0]
    rows = conn.execute("SELECT count(*) FROM photo_meta").fetchone()[0]
    return files - rows


def missing(conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
    """(id, raw path) of the files without a metadata row."""
    return conn.execute(
        "SELECT f.id, f.path FROM files f LEFT JOIN photo_meta m ON m.file_id = f.id "
        "WHERE m.file_id IS NULL"
    ).fetchall()


def undated(conn: sqlite3.Connection) -> list[tuple[int, int]]:
    """(id, mtime_ns) of the photos without a capture time, for --date-fallback mtime."""
    return conn.execute(
        "SELECT m.file_id, f.mtime_ns FROM photo_meta m JOIN files f ON f.id = m.file_id "
        "WHERE m.taken IS NULL"
    ).fetchall()


def set_mtime_dates(conn: sqlite3.Connection, rows: Sequence[tuple[int, int]]) -> None:
    """Capture time from the file's mtime, as a local wall-clock time with its offset."""
    values = []
    for file_id, mtime_ns in rows:
        local = dt.datetime.fromtimestamp(mtime_ns / 1e9).astimezone()
        offset = local.utcoffset()
        minutes = int(offset.total_seconds() // 60) if offset is not None else None
        values.append((wall_seconds(local), minutes, FROM_MTIME, file_id))
    conn.executemany(
        "UPDATE photo_meta SET taken = ?, offset_min = ?, taken_from = ? WHERE file_id = ?",
        values,
    )
    changed(conn)


def drop_orphans(conn: sqlite3.Connection) -> int:
    """Rows whose file is gone (a salvage that lost the file but not its metadata)."""
    return conn.execute(
        "DELETE FROM photo_meta WHERE file_id NOT IN (SELECT id FROM files)"
    ).rowcount


# --- reading --------------------------------------------------------------------------------


def details(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, PhotoDetails]:
    found: dict[int, PhotoDetails] = {}
    ids = [int(i) for i in ids]
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        rows = conn.execute(
            "SELECT file_id, taken, offset_min, lat, lon, altitude, make, model, lens, width, "
            f"height, place FROM photo_meta WHERE file_id IN ({','.join('?' * len(part))})",
            part,
        )
        for file_id, taken, offset, lat, lon, alt, make, model, lens, w, h, place in rows:
            moment = from_wall_seconds(taken) if taken is not None else None
            found[file_id] = PhotoDetails(
                iso_time(moment, offset), lat, lon, alt, place, camera_name(make, model), lens, w, h
            )
    return found


def summary(conn: sqlite3.Connection) -> dict:
    """For `status`: the date range and how many photos have a date and a location."""
    earliest, latest, dated, located = conn.execute(
        "SELECT min(taken), max(taken), count(taken), count(lat) FROM photo_meta"
    ).fetchone()
    return {
        "earliest": from_wall_seconds(earliest).isoformat() if earliest is not None else None,
        "latest": from_wall_seconds(latest).isoformat() if latest is not None else None,
        "dated": dated,
        "located": located,
        "without_metadata": count_missing(conn),
    }


def ids_for_paths(conn: sqlite3.Connection, paths: Sequence[str]) -> dict[str, int]:
    """File ids of indexed paths (paths are stored as bytes, see store.encode_path)."""
    found: dict[str, int] = {}
    for start in range(0, len(paths), _CHUNK):
        part = [os.fsencode(p) for p in paths[start : start + _CHUNK]]
        rows = conn.execute(
            f"SELECT path, id FROM files WHERE path IN ({','.join('?' * len(part))})", part
        )
        found.update({os.fsdecode(p): i for p, i in rows})
    return found
