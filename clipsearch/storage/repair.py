"""`clipsearch repair`: make a damaged library usable again, keeping all that can be kept.

SQLite is the source of truth, so repair starts there: an integrity check, and when that
fails every row that can still be read goes into a fresh database (the damaged file is kept
beside it, untouched: it is read through a read-only connection, which never checkpoints).
Then rows whose vector has the wrong size go, and the FAISS file is rebuilt from SQLite.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from ..errors import ClipsearchError
from ..fsutil import fsync_path
from . import photometa
from .db import SCHEMA, SCHEMA_VERSION, Store, create_private_file, explain, table_columns
from .layout import Layout, UserCache
from .lock import write_lock
from .vectorfile import rebuild_index

_FIRST_ROWID, _LAST_ROWID = -(2**63), 2**63 - 1


def repair_library(
    directory: Path, *, wait: bool = True, on_wait: Callable[[str], None] | None = None
) -> list[str]:
    """Repair the library in place under the write lock; returns one line per thing done."""
    directory = Path(directory)
    db = Layout(directory).db
    if not db.exists():
        raise ClipsearchError(f"no library at {directory}: nothing to repair")
    try:
        with write_lock(directory, wait=wait, on_wait=on_wait):
            salvaged = None if _healthy(db) else _salvage(db)
            store = Store.open(directory)
            try:
                done = _restore_roots(store)
                if salvaged is None:
                    done.insert(0, "the database passed its integrity check")
                else:
                    done[:0] = _salvage_report(*salvaged, has_roots=bool(store.roots()))
                done += _check_vector_file(store)
                done += _fix_vector_sizes(store)
                done += _fix_rows(store)
                done += _drop_phantoms(store)
                done += _fix_exports(store)
                done.append(f"rebuilt the vector index from {rebuild_index(store)} photos")
            finally:
                store.close()
    except (OSError, sqlite3.OperationalError) as exc:
        raise explain(exc, directory) from exc
    return done


def _healthy(db: Path) -> bool:
    try:
        conn = _read_only(db)
        try:
            return conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return False


def _read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{quote(os.fspath(db))}?mode=ro", uri=True)


# -- salvage ------------------------------------------------------------------------------


def _restore_roots(store: Store) -> list[str]:
    """Roots the database lost come back from the copy beside it, with their settings."""
    store.begin()
    restored = store.restore_roots()
    store.commit()
    if not restored:
        return []
    return [f"restored {restored} folders and their settings from {store.layout.roots_copy.name}"]


def _check_vector_file(store: Store) -> list[str]:
    from .vectorfile import checksum_state

    if checksum_state(store) == "damaged":
        return ["the vector index file did not match its checksum (it is damaged)"]
    return []


def _salvage_report(
    backup: Path, counts: dict[str, int], notes: list[str], has_roots: bool
) -> list[str]:
    """What salvage kept, and advice that works: `index` alone needs a known root."""
    again = (
        "run `clipsearch index` to embed any photos that were lost"
        if has_roots
        else "no folder is known any more: run `clipsearch index FOLDER` for each of yours"
    )
    if not any(counts.values()):
        return [
            f"the database was damaged beyond recovery (kept as {backup.name}); "
            f"started an empty one: index your folders again ({again})"
        ]
    return [
        f"the database was damaged (kept as {backup.name}); recovered {counts['files']} "
        f"photos, {counts['roots']} folders and {counts['errors']} skipped-file notes "
        f"into a fresh one; {again}",
        *notes,
    ]


def _salvage(db: Path) -> tuple[Path, dict[str, int], list[str]]:
    """Copy what can be read into a fresh database, keep the damaged one, swap them."""
    fresh = Layout(db.parent).salvage
    fresh.unlink(missing_ok=True)
    create_private_file(fresh)
    source = _with_header_restored(db)
    try:
        counts, notes = _copy_readable(source, fresh)
    except BaseException:
        fresh.unlink(missing_ok=True)
        raise
    finally:
        if source != db:
            _remove_with_log(source)
    backup = _set_aside(db)
    os.replace(fresh, db)
    fsync_path(db.parent)
    return backup, counts, notes


# The fixed parts of SQLite's 100-byte file header (https://sqlite.org/fileformat.html).
_MAGIC = b"SQLite format 3\x00"
_DEFAULT_PAGE_SIZE = 4096  # SQLite's default since 3.12; clipsearch never sets another
_PAYLOAD_FRACTIONS = bytes([64, 32, 32])  # bytes 21-23, the same in every SQLite file


def _with_header_restored(db: Path) -> Path:
    """`db`, or a copy of it (with its log) whose damaged header fields were restored.

    SQLite reads nothing from a file whose first 16 bytes are not its magic string, so a
    few scribbled header bytes made `repair` start an empty library although every page
    of rows was intact.  Only fields with one right value (or clipsearch's own: the page
    size) are restored; the original stays as it was, to be kept aside as the damaged one.
    """
    with open(db, "rb") as f:
        header = bytearray(f.read(100))
    if len(header) < 100 or _restore_header(header, db) == bytes(header[:24]):
        return db
    copy = Layout(db.parent).salvage_source
    _remove_with_log(copy)
    shutil.copyfile(db, copy)
    for log, copied in zip(
        Layout(db.parent).wal_files(db), Layout(db.parent).wal_files(copy), strict=True
    ):
        if log.exists():
            shutil.copyfile(log, copied)
    with open(copy, "r+b") as f:
        f.write(_restore_header(header, db))
    return copy


def _restore_header(header: bytearray, db: Path) -> bytes:
    """The first 24 header bytes with the magic string, page size, format versions and
    payload fractions put back where they hold an impossible value."""
    fixed = bytearray(header[:24])
    fixed[:16] = _MAGIC
    size = int.from_bytes(fixed[16:18], "big")
    if not (size == 1 or (512 <= size <= 32768 and size & (size - 1) == 0)):
        fixed[16:18] = _DEFAULT_PAGE_SIZE.to_bytes(2, "big")
    if fixed[18] not in (1, 2) or fixed[19] not in (1, 2):
        fixed[18] = fixed[19] = 2 if Path(f"{db}-wal").exists() else 1
    fixed[21:24] = _PAYLOAD_FRACTIONS
    return bytes(fixed)


def _remove_with_log(db: Path) -> None:
    for path in (db, *Layout(db.parent).wal_files(db)):
        path.unlink(missing_ok=True)


def _copy_readable(db: Path, fresh: Path) -> tuple[dict[str, int], list[str]]:
    old = _read_only(db)
    new = sqlite3.connect(fresh, isolation_level=None)
    try:
        new.executescript(SCHEMA)
        new.execute("BEGIN")
        tables = table_columns(new)
        found = _tables_of(old, tables)
        counts = {
            t: _copy_table(old, new, t, tuple(c for c in cols if c in found[t]))
            for t, cols in tables.items()
            if t in found
        }
        notes = _settle_meta(new)
        photometa.drop_orphans(new)
        new.execute("COMMIT")
    finally:
        old.close()
        new.close()
    return counts, notes


def _tables_of(old: sqlite3.Connection, wanted: dict) -> dict[str, tuple[str, ...]]:
    """The tables the damaged file has, with their columns: a format-1 library has no
    photo_meta (the next `index` reads it), a format-2 one no root devices; an unreadable
    catalogue is assumed to hold them all."""
    try:
        return table_columns(old)
    except sqlite3.DatabaseError:
        return dict(wanted)


def _copy_table(
    old: sqlite3.Connection, new: sqlite3.Connection, table: str, columns: tuple[str, ...]
) -> int:
    """Every column, so a recovered row is the row it was."""
    select = f"SELECT rowid, {', '.join(columns)} FROM {table} WHERE rowid > ? ORDER BY rowid"
    insert = (
        f"INSERT OR IGNORE INTO {table}({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    return sum(new.execute(insert, row).rowcount for row in _readable_rows(old, select))


def _readable_rows(conn: sqlite3.Connection, select: str) -> Iterator[tuple]:
    """Every row that can still be read, in rowid order.  Past a damaged page, go on from the
    first rowid that can be reached again, so only the rows stored there are lost."""
    after: int | None = _FIRST_ROWID
    while after is not None:
        try:
            for rowid, *row in conn.execute(select, (after,)):
                after = rowid
                yield tuple(row)
            return
        except sqlite3.DatabaseError:
            pass
        # A cursor fails while stepping past the row it is about to return, so that row is
        # read again on its own before the damage is skipped.
        try:
            found = _next_row(conn, select, after)
        except sqlite3.DatabaseError:
            after = _next_readable(conn, select, after)
            continue
        if found is None:
            return
        after = found[0]
        yield found[1:]


def _next_row(conn: sqlite3.Connection, select: str, after: int) -> tuple | None:
    """The first row past `after` alone (None at the end); raises if it cannot be read."""
    return conn.execute(select + " LIMIT 1", (after,)).fetchone()


def _next_readable(conn: sqlite3.Connection, select: str, after: int) -> int | None:
    """A new `after` past the damage, losing no readable row (None: nothing more can be
    read): exponential steps find a rowid that reads again, bisection the first such."""
    step = 1
    while not _readable_from(conn, select, after + step):
        step *= 2
        if after + step > _LAST_ROWID:
            return None
    low, high = after + step // 2, after + step  # reading from low fails, from high works
    while high - low > 1:
        middle = (low + high) // 2
        if _readable_from(conn, select, middle):
            high = middle
        else:
            low = middle
    return high - 1


def _readable_from(conn: sqlite3.Connection, select: str, rowid: int) -> bool:
    try:
        _next_row(conn, select, rowid - 1)
    except sqlite3.DatabaseError:
        return False
    return True


def _settle_meta(new: sqlite3.Connection) -> list[str]:
    """Refuse a newer format, move past every old FAISS file, and drop vectors whose model
    is no longer known (they could never be compared with a query)."""
    meta = dict(new.execute("SELECT key, value FROM meta"))
    if int(meta.get("schema", SCHEMA_VERSION)) > SCHEMA_VERSION:
        raise ClipsearchError(
            "this library was written by a newer clipsearch: repair it with that version"
        )
    generation = int(meta.get("generation", 0)) + 1
    new.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('generation', ?)", (generation,))
    if "dim" in meta and "model" in meta:
        return []
    lost = new.execute("DELETE FROM files").rowcount
    if not lost:
        return []
    return [
        f"which model built the library could not be recovered, so its {lost} photos were "
        "dropped: index your folders again"
    ]


def _set_aside(db: Path) -> Path:
    """Keep the damaged file, and its write-ahead log which must not meet the fresh one."""
    layout = Layout(db.parent)
    backup = layout.damaged_backup(time.strftime("%Y%m%d-%H%M%S"))
    try:
        os.link(db, backup)
    except OSError:
        shutil.copy2(db, backup)
    for side, kept in zip(layout.wal_files(db), layout.wal_files(backup), strict=True):
        if side.exists():
            os.replace(side, kept)
    _fold_log(backup)
    return backup


def _fold_log(backup: Path) -> None:
    """Fold the write-ahead log into the backup so no -wal/-shm files stay beside it; if the
    damage stops that, they go anyway (what they held was read into the fresh database)."""
    sides = Layout(backup.parent).wal_files(backup)
    if not any(side.exists() for side in sides):
        return
    try:
        conn = sqlite3.connect(backup, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA journal_mode=DELETE")
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        pass
    for side in sides:
        side.unlink(missing_ok=True)


# -- vectors ------------------------------------------------------------------------------


def _fix_rows(store: Store) -> list[str]:
    """Drop rows that pass SQLite's integrity check but cannot be used: vectors that are not
    finite unit vectors, fingerprints that are not text."""
    store.begin()
    vectors = store.drop_damaged_vectors()
    fingerprints = store.drop_undecodable_fingerprints()
    store.commit()
    notes = []
    if vectors:
        notes.append(
            f"dropped {vectors} photos whose stored vector was damaged (not finite or not of "
            "unit length); `clipsearch index` embeds them again"
        )
    if fingerprints:
        notes.append(
            f"dropped {fingerprints} photos whose fingerprint was damaged; "
            "`clipsearch index` embeds them again"
        )
    return notes


def _drop_phantoms(store: Store) -> list[str]:
    """Drop photos recorded outside every root: no `index` run looks there again, so they
    would be answered forever (a hand-edited or half-salvaged database)."""
    roots = store.roots()
    if not roots:
        return []  # nothing says where photos belong; keep them all
    prefixes = tuple(os.fsencode(os.path.join(root, "")) for root in roots)
    rows = store.conn.execute("SELECT id, path FROM files").fetchall()
    phantoms = [i for i, path in rows if not bytes(path).startswith(prefixes)]
    if not phantoms:
        return []
    store.begin()
    store.remove_ids(phantoms)
    store.commit()
    return [f"dropped {len(phantoms)} photos recorded outside every indexed folder"]


def _fix_exports(store: Store) -> list[str]:
    """Remove a torch-free tower whose files no longer match their fingerprint (a damaged
    weights file made every text query return nothing) or whose vectors are not the
    library's size (a library.db copied from another model's library)."""
    from ..model.exportfile import verify_export

    notes = []
    for kind, folder in _export_folders(store):
        problem = verify_export(folder, store.dim())
        if problem:
            shutil.rmtree(folder, ignore_errors=True)
            notes.append(
                f"removed the exported {kind} model ({problem}); the next `clipsearch index` "
                "exports it again"
            )
    return notes


def _export_folders(store: Store) -> tuple[tuple[str, Path], ...]:
    """The towers this library's queries use: the user cache's export it recorded (shared by
    every library of that checkpoint, so a damaged one is damaged for all), else its own
    `text/` and `image/` from before the cache."""
    key = store.meta("export")
    if key:
        cache = UserCache.default()
        return (("text", cache.text_export(key)), ("image", cache.image_export(key)))
    return (("text", store.layout.text_export), ("image", store.layout.image_export))


def _fix_vector_sizes(store: Store) -> list[str]:
    """Drop vectors of the wrong size; if none has the recorded size but one size holds
    most of them, the record is what is wrong."""
    dim = store.dim()
    if dim is None:
        return []
    sizes = dict(store.conn.execute("SELECT length(vector), count(*) FROM files GROUP BY 1"))
    notes = []
    common = max(sizes, key=sizes.__getitem__, default=4 * dim)
    if 4 * dim not in sizes and common % 4 == 0:
        store.set_meta(dim=common // 4)
        notes.append(f"the recorded vector size ({dim}) matched no photo; set it to {common // 4}")
    store.begin()
    dropped = store.drop_wrong_size_vectors()
    store.commit()
    if dropped:
        notes.append(
            f"dropped {dropped} photos whose stored vector had the wrong size; "
            "`clipsearch index` embeds them again"
        )
    return notes
