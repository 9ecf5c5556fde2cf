"""Photo metadata in the library database: one row per indexed file version.

The row is keyed by the file's id, and a changed file gets a new id, so the metadata always
belongs to the version whose vector is stored; a trigger drops it with the file.  A row with
every field NULL still means "read, nothing found", which is what lets a re-index tell the
files it has read from those indexed before metadata existed (the backfill).

Filters become SQL over two indexes: capture time, and (latitude, longitude) for a bounding
box that the exact great-circle test then trims.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Iterable, Sequence

import numpy as np

from ..photos.metadata import PhotoMeta, camera_name, iso_time
from ..results import PhotoDetails
from ..search.filters import Filters, TimeBound, from_wall_seconds, wall_seconds

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
CREATE INDEX IF NOT EXISTS photo_meta_place ON photo_meta(lat, lon);
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
ZONE_SLACK_S = 14 * 3600  # UTC offsets span -12:00..+14:00
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


def drop_orphans(conn: sqlite3.Connection) -> int:
    """Rows whose file is gone (a salvage that lost the file but not its metadata)."""
    return conn.execute(
        "DELETE FROM photo_meta WHERE file_id NOT IN (SELECT id FROM files)"
    ).rowcount


# --- filtering ------------------------------------------------------------------------------


def _where(filters: Filters) -> tuple[str, list]:
    clauses: list[str] = []
    params: list = []
    for bound, sign in ((filters.after, ">="), (filters.before, "<=")):
        if bound is not None:
            clause, values = _time_clause(bound, sign)
            clauses.append(clause)
            params += values
    if filters.near is not None:
        low, high, lons = filters.near.box()
        ranges = " OR ".join("lon BETWEEN ? AND ?" for _ in lons)
        clauses.append(f"lat BETWEEN ? AND ? AND ({ranges})")
        params += [low, high] + [x for pair in lons for x in pair]
    if filters.camera is not None:
        clauses.append("(coalesce(make, '') || ' ' || coalesce(model, '')) LIKE ? ESCAPE '\\'")
        params.append(f"%{_escape_like(filters.camera)}%")
    return " AND ".join(clauses) or "1", params


def _time_clause(bound: TimeBound, sign: str) -> tuple[str, list]:
    """Wall clock against wall clock; with an offset in the bound, instants where the photo
    knows its own offset (an index range first, widened by the span of time zones)."""
    if bound.offset_minutes is None:
        return f"taken {sign} ?", [bound.seconds]
    instant = bound.seconds - 60 * bound.offset_minutes
    widened = instant - ZONE_SLACK_S if sign == ">=" else instant + ZONE_SLACK_S
    clause = f"taken {sign} ? AND taken - 60 * coalesce(offset_min, ?) {sign} ?"
    return clause, [widened, bound.offset_minutes, instant]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def matching(conn: sqlite3.Connection, filters: Filters) -> tuple[np.ndarray, np.ndarray]:
    """(ids, capture times) of the photos that pass; capture time -2**62 where unknown.

    LIKE is case-insensitive for ASCII, which camera names are."""
    where, params = _where(filters)
    rows = conn.execute(
        f"SELECT file_id, coalesce(taken, {-(2**62)}), lat, lon FROM photo_meta WHERE {where}",
        params,
    ).fetchall()
    if not rows:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    taken = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    if filters.near is not None:
        from ..search.places import distance_km

        lat = np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows))
        lon = np.fromiter((r[3] for r in rows), dtype=np.float64, count=len(rows))
        near = filters.near
        inside = distance_km(near.lat, near.lon, lat, lon) <= near.km
        ids, taken = ids[inside], taken[inside]
    return ids, taken


def by_date(ids: np.ndarray, taken: np.ndarray, newest_first: bool) -> np.ndarray:
    """ids ordered by capture time (undated last either way), ties by id."""
    unknown = taken == -(2**62)
    key = -taken if newest_first else taken
    return ids[np.lexsort((ids, key, unknown))]


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
