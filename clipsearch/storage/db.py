"""The library on disk: SQLite holds every file's metadata and vector; FAISS files are a cache.

Why vectors live in SQLite too: a commit there is atomic, so "every indexed file has exactly
one vector" holds after any crash.  The FAISS file for generation G is written only after
generation G committed, under a name carrying G, so the pair can never silently disagree: a
reader that finds no file for the current generation reconciles the newest older one with
SQLite (or rebuilds from it) instead of trusting it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import ClipsearchError
from ..model.spec import ModelSpec
from . import photometa
from .layout import Layout, is_own_name

# 2: photo metadata (capture time, place, camera) in photo_meta; a format-1 library gets the
# table when opened and its rows on the next `index`, without re-embedding anything.
# 3: each root remembers its device and its settings (roots.device, roots.settings), and the
# vectors of removed files are retained for a while (table retained); `_migrate` adds them.
SCHEMA_VERSION = 3
# How long the vector of a removed file is kept for a copy that comes back (days).
RETAIN_DAYS = 90
RETAIN_ENV = "CLIPSEARCH_RETAIN_DAYS"

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roots (
    path BLOB PRIMARY KEY,
    added REAL NOT NULL,
    device INTEGER,
    settings TEXT
);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path BLOB NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS errors (
    path BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS retained (
    size INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    vector BLOB NOT NULL,
    path BLOB NOT NULL,
    removed REAL NOT NULL,
    PRIMARY KEY (size, fingerprint)
);
"""
    + photometa.SCHEMA
)


def table_columns(conn: sqlite3.Connection) -> dict[str, tuple[str, ...]]:
    """Each table of a database and its columns, in creation order (read from SQLite itself,
    so `repair` copies whatever SCHEMA holds without a second list to keep in step)."""
    tables = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY rowid"
    ).fetchall()
    return {
        name: tuple(row[1] for row in conn.execute(f"PRAGMA table_info({name})"))
        for (name,) in tables
    }


# Columns added to existing tables after format 2, with their SQL types.
_ADDED_COLUMNS = {"roots": (("device", "INTEGER"), ("settings", "TEXT"))}


def _migrate(conn: sqlite3.Connection) -> None:
    """Give an older library the columns later formats added (new tables come from SCHEMA's
    IF NOT EXISTS); nothing is rewritten, so this is instant on any size."""
    tables = table_columns(conn)
    for table, added in _ADDED_COLUMNS.items():
        for column, kind in added:
            if column not in tables.get(table, ()):
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


@dataclass(frozen=True)
class Root:
    """A folder given to `index`: the device it was on, and the settings it was indexed with
    (a dict, empty when none were given)."""

    path: str
    device: int | None
    settings: dict


@dataclass(frozen=True)
class Known:
    """What the library knows of one indexed file."""

    id: int
    size: int
    mtime_ns: int
    fingerprint: str


@dataclass(frozen=True)
class Skipped:
    path: str
    size: int
    mtime_ns: int
    reason: str


def encode_path(path: str) -> bytes:
    """Paths are stored as bytes so names that are not valid UTF-8 survive."""
    return os.fsencode(path)


def decode_path(raw: bytes) -> str:
    return os.fsdecode(raw)


def prefix_range(directory: str) -> tuple[bytes, bytes]:
    """Byte range [low, high) holding every path strictly below `directory`."""
    low = encode_path(directory.rstrip(os.sep) + os.sep)
    return low, low[:-1] + bytes([low[-1] + 1])


class Store:
    """One library directory; open with `Store.open`."""

    def __init__(self, directory: Path, conn: sqlite3.Connection) -> None:
        self.directory = directory
        self.layout = Layout(directory)
        self.conn = conn
        self._vectors_changed = False
        self._roots_changed = False
        self.read_only = False  # opened from a read-only folder or medium: queries only
        self._identity = _file_identity(self.layout.db)

    @classmethod
    def open(cls, directory: Path, *, create: bool = False) -> Store:
        directory = Path(directory)
        db = Layout(directory).db
        if not db.exists():
            if not create:
                raise ClipsearchError(
                    f"no library at {directory}: run `clipsearch index DIR` first "
                    "(or pass --library)"
                )
            _make_private_dir(directory)
            create_private_file(db)
        read_only = False
        try:
            conn = _open_writable(db, directory)
        except sqlite3.OperationalError as exc:
            if create or _writable(directory, db):
                raise explain(exc, db) from exc
            conn, read_only = _open_read_only(db), True
        except sqlite3.DatabaseError as exc:
            raise explain(exc, db) from exc
        store = cls(directory, conn)
        store.read_only = read_only
        store._check_version()
        return store

    def close(self) -> None:
        self.conn.close()

    # -- metadata -------------------------------------------------------------------------

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, **values: object) -> None:
        self.conn.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, str(v)) for k, v in values.items()],
        )

    def model_spec(self) -> ModelSpec | None:
        name, pretrained = self.meta("model"), self.meta("pretrained")
        return ModelSpec(name, pretrained) if name and pretrained else None

    def dim(self) -> int | None:
        value = self.meta("dim")
        return int(value) if value else None

    def record_model(self, spec: ModelSpec, dim: int) -> None:
        self.set_meta(model=spec.name, pretrained=spec.pretrained, dim=dim, created=time.time())

    def generation(self) -> int:
        return int(self.meta("generation", "0") or 0)

    def _check_version(self) -> None:
        found = int(self.meta("schema", str(SCHEMA_VERSION)) or SCHEMA_VERSION)
        _refuse_newer(found, self.directory)
        if self.read_only:
            if found < SCHEMA_VERSION:
                raise ClipsearchError(
                    f"the library at {self.directory} is read-only and in an older format "
                    f"({found}; this version reads {SCHEMA_VERSION}): open it once where it "
                    "can be written (`clipsearch index`), or use a copy"
                )
            return
        if found < SCHEMA_VERSION or self.meta("schema") is None:
            self.set_meta(schema=SCHEMA_VERSION, writer=__version__)  # the tables exist now

    # -- roots ----------------------------------------------------------------------------

    def roots(self) -> list[str]:
        rows = self.conn.execute("SELECT path FROM roots ORDER BY path")
        return [decode_path(r[0]) for r in rows]

    def root_records(self) -> list[Root]:
        rows = self.conn.execute("SELECT path, device, settings FROM roots ORDER BY path")
        return [Root(decode_path(p), d, json.loads(s) if s else {}) for p, d, s in rows]

    def add_root(self, path: str, device: int | None = None) -> None:
        """Record a root (and the device it is on now, when given)."""
        raw = encode_path(path)
        self.conn.execute(
            "INSERT OR IGNORE INTO roots(path, added) VALUES (?, ?)", (raw, time.time())
        )
        if device is not None:
            self.conn.execute("UPDATE roots SET device = ? WHERE path = ?", (device, raw))
        self._roots_changed = True

    def set_root_settings(self, path: str, settings: dict) -> None:
        self._roots_changed = True
        self.conn.execute(
            "UPDATE roots SET settings = ? WHERE path = ?",
            (json.dumps(settings, sort_keys=True) if settings else None, encode_path(path)),
        )

    def forget_errors_under(self, directory: str, reason_ending: str | None = None) -> None:
        """Drop the failure records below `directory` (those whose reason ends so, if given)
        so the next plan tries those files again."""
        low, high = prefix_range(directory)
        where = "path >= ? AND path < ?"
        params: tuple = (low, high)
        if reason_ending is not None:
            where += " AND substr(reason, -?) = ?"
            params += (len(reason_ending), reason_ending)
        self.conn.execute(f"DELETE FROM errors WHERE {where}", params)

    def count_under(self, directory: str) -> int:
        low, high = prefix_range(directory)
        return self.conn.execute(
            "SELECT count(*) FROM files WHERE path >= ? AND path < ?", (low, high)
        ).fetchone()[0]

    def forget_root(self, path: str) -> int:
        """Drop a root and every file below it (their vectors retained); returns how many
        files went."""
        low, high = prefix_range(path)
        self._retain("path >= ? AND path < ?", (low, high))
        cur = self.conn.execute(
            "DELETE FROM files WHERE path >= ? AND path < ?", (low, high)
        ).rowcount
        self.conn.execute("DELETE FROM errors WHERE path >= ? AND path < ?", (low, high))
        self.conn.execute("DELETE FROM roots WHERE path = ?", (encode_path(path),))
        self._vectors_changed = self._vectors_changed or cur > 0
        self._roots_changed = True
        return cur

    # -- files ----------------------------------------------------------------------------

    def known_files(self, under: Sequence[str]) -> dict[str, Known]:
        known: dict[str, Known] = {}
        for root in under:
            low, high = prefix_range(root)
            rows = self.conn.execute(
                "SELECT path, id, size, mtime_ns, fingerprint FROM files "
                "WHERE path >= ? AND path < ?",
                (low, high),
            )
            for path, *rest in rows:
                known[decode_path(path)] = Known(*rest)
        return known

    def known_errors(self, under: Sequence[str] | None = None) -> dict[str, Skipped]:
        if under is None:
            rows = self.conn.execute("SELECT path, size, mtime_ns, reason FROM errors")
            return {decode_path(r[0]): Skipped(decode_path(r[0]), *r[1:]) for r in rows}
        found: dict[str, Skipped] = {}
        for root in under:
            low, high = prefix_range(root)
            rows = self.conn.execute(
                "SELECT path, size, mtime_ns, reason FROM errors WHERE path >= ? AND path < ?",
                (low, high),
            )
            found.update({decode_path(r[0]): Skipped(decode_path(r[0]), *r[1:]) for r in rows})
        return found

    def add(self, path: str, size: int, mtime_ns: int, fingerprint: str, vector: np.ndarray) -> int:
        """Store a freshly embedded file; a new row (new id) replaces any older version.
        Returns the new id."""
        raw = encode_path(path)
        self.conn.execute("DELETE FROM files WHERE path = ?", (raw,))
        self.conn.execute("DELETE FROM errors WHERE path = ?", (raw,))
        cursor = self.conn.execute(
            "INSERT INTO files(path, size, mtime_ns, fingerprint, vector) VALUES (?, ?, ?, ?, ?)",
            (raw, size, mtime_ns, fingerprint, np.asarray(vector, dtype=np.float32).tobytes()),
        )
        self._vectors_changed = True
        return int(cursor.lastrowid)

    def add_new(self, rows: Iterable[tuple[str, int, int, str, np.ndarray]]) -> None:
        """Bulk insert of files known not to be in the library yet (benchmarks, imports)."""
        self.conn.executemany(
            "INSERT INTO files(path, size, mtime_ns, fingerprint, vector) VALUES (?, ?, ?, ?, ?)",
            (
                (encode_path(p), size, mtime, mark, np.asarray(v, np.float32).tobytes())
                for p, size, mtime, mark, v in rows
            ),
        )
        self._vectors_changed = True

    def move(self, file_id: int, new_path: str, size: int, mtime_ns: int) -> None:
        """A renamed or moved file keeps its id and vector."""
        self.conn.execute(
            "UPDATE files SET path = ?, size = ?, mtime_ns = ? WHERE id = ?",
            (encode_path(new_path), size, mtime_ns, file_id),
        )

    def remove(self, ids: Iterable[int]) -> None:
        """Drop files that are gone; their vectors are retained for a copy that comes back."""
        ids = list(ids)
        for i in ids:
            self._retain("id = ?", (i,))
        self.conn.executemany("DELETE FROM files WHERE id = ?", [(i,) for i in ids])
        self._vectors_changed = self._vectors_changed or bool(ids)

    # -- moving folders and retained vectors ----------------------------------------------

    def move_folder(self, old: str, new: str) -> int:
        """Re-point every file and error below `old` to the same place below `new`, ids and
        vectors kept; a file already indexed at its new path keeps that row.  Returns how
        many files were re-pointed."""
        low, high = prefix_range(old)
        target = encode_path(new.rstrip(os.sep) + os.sep)
        moved = 0
        for table in ("files", "errors"):
            rows = self.conn.execute(
                f"SELECT path FROM {table} WHERE path >= ? AND path < ?", (low, high)
            ).fetchall()
            for (raw,) in rows:
                cur = self.conn.execute(
                    f"UPDATE OR IGNORE {table} SET path = ? WHERE path = ?",
                    (target + raw[len(low) :], raw),
                )
                moved += cur.rowcount if table == "files" else 0
        left = self.conn.execute(
            "SELECT id FROM files WHERE path >= ? AND path < ?", (low, high)
        ).fetchall()
        self.remove(r[0] for r in left)
        self.conn.execute("DELETE FROM errors WHERE path >= ? AND path < ?", (low, high))
        return moved

    def rename_root(self, old: str, new: str, device: int | None) -> None:
        """Root `old` is now `new` (settings kept); a root already at `new` is kept."""
        self.conn.execute(
            "UPDATE OR IGNORE roots SET path = ? WHERE path = ?",
            (encode_path(new), encode_path(old)),
        )
        self.conn.execute("DELETE FROM roots WHERE path = ?", (encode_path(old),))
        self.add_root(new, device)

    def _retain(self, where: str, params: tuple) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO retained(size, fingerprint, vector, path, removed) "
            f"SELECT size, fingerprint, vector, path, ? FROM files WHERE {where}",
            (time.time(), *params),
        )

    def reusable(self, sizes: Iterable[int]) -> dict[tuple[int, str], bytes]:
        """Stored vectors, by (size, fingerprint), of the files with these sizes: retained
        ones of removed files and those of files indexed elsewhere (an offline root)."""
        found: dict[tuple[int, str], bytes] = {}
        sizes = sorted(set(sizes))
        for start in range(0, len(sizes), 500):
            part = sizes[start : start + 500]
            marks = ",".join("?" * len(part))
            for table in ("retained", "files"):
                rows = self.conn.execute(
                    f"SELECT size, fingerprint, vector FROM {table} WHERE size IN ({marks})", part
                )
                found.update(((size, mark), vector) for size, mark, vector in rows)
        return found

    def unretain(self, size: int, fingerprint: str) -> None:
        """A retained vector back in use by a file is no longer kept aside."""
        self.conn.execute(
            "DELETE FROM retained WHERE size = ? AND fingerprint = ?", (size, fingerprint)
        )

    def expire_retained(self, days: float | None = None) -> int:
        """Forget retained vectors older than `days` (default: $CLIPSEARCH_RETAIN_DAYS or
        RETAIN_DAYS); returns how many went."""
        days = retain_days() if days is None else days
        return self.conn.execute(
            "DELETE FROM retained WHERE removed < ?", (time.time() - days * 86400,)
        ).rowcount

    def count_retained(self) -> int:
        return self.conn.execute("SELECT count(*) FROM retained").fetchone()[0]

    def remove_errors(self, paths: Iterable[str]) -> None:
        self.conn.executemany(
            "DELETE FROM errors WHERE path = ?", [(encode_path(p),) for p in paths]
        )

    def drop_file(self, path: str) -> None:
        """Forget the indexed version of a file that changed into something unreadable."""
        gone = self.conn.execute("DELETE FROM files WHERE path = ?", (encode_path(path),))
        self._vectors_changed = self._vectors_changed or gone.rowcount > 0

    def record_error(self, path: str, size: int, mtime_ns: int, reason: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO errors(path, size, mtime_ns, reason, seen) VALUES (?,?,?,?,?)",
            (encode_path(path), size, mtime_ns, reason, time.time()),
        )

    # -- transactions ---------------------------------------------------------------------

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        """Commit, moving to a new generation when vectors changed.

        A no-op outside a transaction: after a Ctrl-C between a commit and the next begin,
        or after SQLite rolled back by itself (disk full), there is nothing left to commit.
        """
        if not self.conn.in_transaction:
            self._vectors_changed = self._roots_changed = False
            return
        self._check_still_there()
        if self._vectors_changed:
            self.set_meta(generation=self.generation() + 1)
            self._vectors_changed = False
        self.set_meta(updated=time.time())
        self.conn.execute("COMMIT")
        if self._roots_changed:
            self._roots_changed = False
            with contextlib.suppress(OSError):  # a copy: the database is what counts
                self.save_roots_copy()

    def _check_still_there(self) -> None:
        """Refuse to commit into a database file that was deleted (or replaced) since it
        was opened: SQLite would keep writing to the unlinked file, and `index` used to
        report "indexed 100" while the library folder was gone, later recreated without
        a database.  One stat per commit."""
        if self._identity is None or _file_identity(self.layout.db) == self._identity:
            return
        self.rollback()
        raise ClipsearchError(
            f"the library database {self.layout.db} was deleted or replaced while in use; "
            "nothing more was saved: run the command again to start a new library there"
        )

    def save_roots_copy(self) -> None:
        """Write layout.roots_copy from the committed roots (see Layout.roots_copy)."""
        from ..fsutil import replace_atomically

        records = [
            {"path": r.path, "device": r.device, "settings": r.settings}
            for r in self.root_records()
        ]
        text = json.dumps(records, indent=1)

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)

        replace_atomically(self.layout.roots_copy, write)

    def restore_roots(self) -> int:
        """Put back the roots (and settings) that layout.roots_copy lists and the database
        lacks; returns how many were restored."""
        try:
            records = json.loads(self.layout.roots_copy.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return 0
        have = {r.path: r for r in self.root_records()}
        restored = 0
        for record in records if isinstance(records, list) else []:
            path, settings = record.get("path"), record.get("settings") or {}
            if not isinstance(path, str):
                continue
            if path not in have:
                self.add_root(path, record.get("device"))
                restored += 1
            if settings and not (have.get(path) and have[path].settings):
                self.set_root_settings(path, settings)
        return restored

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self._vectors_changed = False
        self._roots_changed = False

    def snapshot(self) -> _Snapshot:
        """A read transaction: everything read inside sees one committed state."""
        return _Snapshot(self.conn)

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        """Turn a failed write (disk full, read-only folder) into a message and roll back:
        the library keeps everything committed before."""
        try:
            yield
        except (sqlite3.OperationalError, OSError) as exc:
            with contextlib.suppress(sqlite3.Error):
                self.rollback()
            raise explain(exc, self.directory) from exc

    # -- reading vectors ------------------------------------------------------------------

    def is_empty(self) -> bool:
        """Cheaper than count() == 0 on a large library."""
        return self.conn.execute("SELECT 1 FROM files LIMIT 1").fetchone() is None

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM files").fetchone()[0]

    def id_summary(self) -> tuple[int, int]:
        """(count, sum) of the file ids: a cheap check that a vector index holds the same ids."""
        row = self.conn.execute("SELECT count(*), coalesce(sum(id), 0) FROM files").fetchone()
        return row[0], row[1]

    def drop_wrong_size_vectors(self) -> int:
        """Delete files whose stored vector does not have the library's dimension."""
        dim = self.dim()
        if dim is None:
            return 0
        cur = self.conn.execute("DELETE FROM files WHERE length(vector) != ?", (4 * dim,))
        self._vectors_changed = self._vectors_changed or cur.rowcount > 0
        return cur.rowcount

    def drop_damaged_vectors(self) -> int:
        """Delete files whose stored vector is not a finite unit vector of the right size."""
        dim = self.dim()
        if dim is None:
            return 0
        damaged = []
        cursor = self.conn.execute(
            "SELECT id, vector FROM files WHERE length(vector) = ? ORDER BY id", (4 * dim,)
        )
        while rows := cursor.fetchmany(20_000):
            vectors = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(-1, dim)
            damaged += [rows[i][0] for i in np.flatnonzero(bad_vector_rows(vectors))]
        return self.remove_ids(damaged)

    def drop_undecodable_fingerprints(self) -> int:
        """Delete files whose fingerprint is not valid text (a damaged byte): without a
        fingerprint a move cannot be recognised, and the file is simply embedded again."""
        rows = self.conn.execute("SELECT id, CAST(fingerprint AS BLOB) FROM files").fetchall()
        damaged = []
        for file_id, raw in rows:
            try:
                raw.decode("utf-8")
            except (UnicodeDecodeError, AttributeError):
                damaged.append(file_id)
        return self.remove_ids(damaged)

    def remove_ids(self, ids: Sequence[int]) -> int:
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(part))
            self.conn.execute(f"DELETE FROM files WHERE id IN ({marks})", part)
        self._vectors_changed = self._vectors_changed or bool(ids)
        return len(ids)

    def ids(self) -> np.ndarray:
        rows = self.conn.execute("SELECT id FROM files ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def vectors(self, ids: np.ndarray | None = None, chunk: int = 20_000) -> Iterator[tuple]:
        """Yield (ids, vectors) chunks, all of them or those asked for."""
        dim = self.dim() or 0
        if ids is None:
            cursor = self.conn.execute("SELECT id, vector FROM files ORDER BY id")
            while rows := cursor.fetchmany(chunk):
                yield _unpack(rows, dim)
            return
        for start in range(0, len(ids), chunk):
            part = [int(i) for i in ids[start : start + chunk]]
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                f"SELECT id, vector FROM files WHERE id IN ({marks})", part
            ).fetchall()
            yield _unpack(rows, dim)

    def all_vectors(self, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every file, or of those asked for, as two whole arrays."""
        chunks = list(self.vectors(ids))
        if not chunks:
            return np.empty(0, np.int64), np.empty((0, self.dim() or 0), np.float32)
        found = np.concatenate([c[0] for c in chunks])
        return found, np.ascontiguousarray(np.concatenate([c[1] for c in chunks]))

    def ids_under(self, directory: str) -> np.ndarray:
        low, high = prefix_range(directory)
        rows = self.conn.execute(
            "SELECT id FROM files WHERE path >= ? AND path < ?", (low, high)
        ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def paths_for(self, ids: Sequence[int]) -> dict[int, str]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(f"SELECT id, path FROM files WHERE id IN ({marks})", ids)
        return {i: decode_path(p) for i, p in rows}

    def ids_for(self, paths: Sequence[str]) -> dict[str, int]:
        """Ids of the indexed `paths`; paths not in the library are left out."""
        found: dict[str, int] = {}
        for start in range(0, len(paths), 500):  # SQLite caps the number of ? marks
            part = [encode_path(p) for p in paths[start : start + 500]]
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(f"SELECT path, id FROM files WHERE path IN ({marks})", part)
            found.update((decode_path(p), i) for p, i in rows)
        return found

    def file_of(self, file_id: int) -> tuple[str, int, int] | None:
        """(path, size, mtime_ns) of the file with this id, if there is one."""
        row = self.conn.execute(
            "SELECT path, size, mtime_ns FROM files WHERE id = ?", (file_id,)
        ).fetchone()
        return (decode_path(row[0]), row[1], row[2]) if row else None

    def vector_of(self, path: str, size: int, mtime_ns: int) -> np.ndarray | None:
        """The stored vector of a file, if this exact version is indexed."""
        row = self.conn.execute(
            "SELECT vector FROM files WHERE path = ? AND size = ? AND mtime_ns = ?",
            (encode_path(path), size, mtime_ns),
        ).fetchone()
        if row is None:
            return None
        if len(row[0]) != 4 * (self.dim() or 0):
            raise ClipsearchError(WRONG_SIZE)
        vector = np.frombuffer(row[0], dtype=np.float32).copy()
        if bad_vector_rows(vector[None, :]).any():
            raise ClipsearchError(DAMAGED_VECTORS)
        return vector

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file())


class _Snapshot:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN")

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("COMMIT")


def _file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a file, None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def retain_days() -> float:
    """$CLIPSEARCH_RETAIN_DAYS, or RETAIN_DAYS when unset or not a number."""
    try:
        return float(os.environ.get(RETAIN_ENV, RETAIN_DAYS))
    except ValueError:
        return RETAIN_DAYS


def explain(exc: Exception, where: Path | None = None) -> ClipsearchError:
    """What a failed database or file operation means to the user, and the way out."""
    name = getattr(exc, "sqlite_errorname", "")
    place = f" at {where}" if where else ""
    if isinstance(exc, OSError) or name.startswith(("SQLITE_FULL", "SQLITE_READONLY")):
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return ClipsearchError(
            f"could not save the library{place} ({reason}); it still holds everything saved "
            "before: free some disk space or make the folder writable, then try again"
        )
    if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        return ClipsearchError(
            f"cannot use the library database{place} ({exc}): check the disk and the folder's "
            "permissions"
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return ClipsearchError(
            f"the library{place} stayed locked by another process ({exc}): try again later"
        )
    return ClipsearchError(
        f"the library database{place} is damaged ({exc}): run `clipsearch repair`, "
        "or delete the library folder and index again"
    )


DAMAGED_VECTORS = (
    "the library database holds damaged vectors (not finite, or not of unit length): "
    "run `clipsearch repair`, then `clipsearch index` to embed the dropped photos again"
)
# Stored vectors are L2-normalised float32: their length is 1 to within ~1e-6. A wider margin
# still catches any damage that could matter (a 1e30 made one photo score 1.35e29 everywhere).
UNIT_TOLERANCE = 1e-2


def _open_writable(db: Path, directory: Path) -> sqlite3.Connection:
    """The normal connection: WAL, tables created or migrated. A library of a newer format
    is refused before anything is written to it (it used to get this version's tables)."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:
        conn.text_factory = lenient_text
        _refuse_newer(_recorded_schema(conn), directory)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _recorded_schema(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.OperationalError:  # no meta table yet: a new library
        return SCHEMA_VERSION
    try:
        return int(row[0]) if row else SCHEMA_VERSION
    except ValueError:
        return SCHEMA_VERSION


def _refuse_newer(found: int, directory: Path) -> None:
    if found > SCHEMA_VERSION:
        raise ClipsearchError(
            f"the library at {directory} was written by a newer clipsearch "
            f"(format {found}, this is {__version__} with format {SCHEMA_VERSION}): "
            "upgrade clipsearch, or use another --library"
        )


def _writable(directory: Path, db: Path) -> bool:
    """False on a read-only medium or snapshot, or another user's shared library."""
    return os.access(directory, os.W_OK) and os.access(db, os.W_OK)


def _open_read_only(db: Path) -> sqlite3.Connection:
    """Open a library that cannot be written, for queries. mode=ro reads the WAL when its
    files are there; with no WAL left (the last writer checkpointed it), immutable=1 also
    needs no -shm file, which a read-only folder cannot get."""
    from urllib.parse import quote

    uri = f"file:{quote(os.fspath(db))}"
    wal = Path(f"{db}-wal")
    has_wal = wal.exists() and wal.stat().st_size > 0
    error: sqlite3.Error | None = None
    for flags in ("?mode=ro", "?immutable=1"):
        if flags == "?immutable=1" and has_wal:
            break  # immutable would silently miss the commits still in the WAL
        conn = sqlite3.connect(uri + flags, uri=True, isolation_level=None, timeout=30)
        conn.text_factory = lenient_text
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.DatabaseError as exc:
            conn.close()
            error = exc
    raise explain(error or sqlite3.OperationalError("unable to open database file"), db)


def lenient_text(raw: bytes) -> str:
    """SQLite TEXT as str, never an exception: a damaged byte in one fingerprint made every
    `index` fail with "run repair" while repair found nothing wrong. Such a row now reads as
    text that matches nothing, and `repair` finds and drops it."""
    return raw.decode("utf-8", errors="replace")


def bad_vector_rows(vectors: np.ndarray) -> np.ndarray:
    """A mask of the rows that are not finite unit vectors."""
    with np.errstate(over="ignore", invalid="ignore"):
        squared = np.einsum("ij,ij->i", vectors, vectors)  # inf or nan for a huge or nan entry
    return ~(np.abs(squared - 1.0) <= 2 * UNIT_TOLERANCE)


WRONG_SIZE = (
    "the library database holds vectors of the wrong size (it is damaged): "
    "run `clipsearch repair`, then `clipsearch index` to embed the dropped photos again"
)


def _unpack(rows: list[tuple[int, bytes]], dim: int) -> tuple[np.ndarray, np.ndarray]:
    if any(len(r[1]) != 4 * dim for r in rows):
        raise ClipsearchError(WRONG_SIZE)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    blob = b"".join(r[1] for r in rows)
    vectors = np.frombuffer(blob, dtype=np.float32).reshape(len(rows), dim)
    if bad_vector_rows(vectors).any():
        raise ClipsearchError(DAMAGED_VECTORS)
    return ids, vectors


def _make_private_dir(directory: Path) -> None:
    """Create the library folder readable by its owner only (photos say a lot about people).

    A folder that already exists is never chmodded (a shared 1777 folder lost its sticky
    bit, and `--library /` changed `/`), and is used only when empty or holding nothing but
    library files: anything else means --library points at the wrong place.
    """
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=0o700)
        return
    except FileExistsError:
        pass
    except OSError as exc:
        raise ClipsearchError(
            f"cannot create the library folder {directory}: {exc.strerror}; "
            "choose another with --library or $CLIPSEARCH_HOME"
        ) from exc
    _check_adoptable(directory)


def _check_adoptable(directory: Path) -> None:
    """Refuse an existing path that is not a folder, or a folder holding foreign files."""
    try:
        strangers = sorted(name for name in os.listdir(directory) if not is_own_name(name))
    except NotADirectoryError:
        raise ClipsearchError(
            f"the library path {directory} is a file, not a folder: "
            "choose another with --library or $CLIPSEARCH_HOME"
        ) from None
    except OSError as exc:
        raise ClipsearchError(
            f"cannot use the library folder {directory}: {exc.strerror}; "
            "choose another with --library or $CLIPSEARCH_HOME"
        ) from exc
    if strangers:
        example = os.path.join(directory, "clipsearch")
        raise ClipsearchError(
            f"{directory} is not empty and is not a clipsearch library "
            f"({len(strangers)} other entries, such as {strangers[0]!r}): pass --library "
            f"with a new or empty folder, such as {example}"
        )


def create_private_file(path: Path) -> None:
    """Create the database owner-only before SQLite does (it would use the umask, often
    0644); SQLite gives its -wal and -shm files the database's own mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise ClipsearchError(
            f"cannot create the library database {path}: {exc.strerror}; "
            "choose another folder with --library or $CLIPSEARCH_HOME"
        ) from exc
