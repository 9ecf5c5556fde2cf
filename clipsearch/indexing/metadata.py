"""Photo metadata during `index`: stored with each new vector, read for files indexed before
metadata existed (the backfill), and capture times from mtimes on request.

The decode workers read a photo's metadata from the file they already opened; the main
process only writes rows, naming each located photo's nearest town once here so that no
query has to load the gazetteer to print a place.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from ..errors import ClipsearchError
from ..photos.metadata import PhotoMeta
from ..storage import photometa
from ..storage.db import Store, decode_path

DATE_FALLBACKS = ("none", "mtime")
_BACKFILL_BATCH = 256


def put(store: Store, stored: list[tuple[int, PhotoMeta]]) -> None:
    """Metadata rows for (file id, metadata) pairs, in the caller's transaction."""
    located = [meta for _, meta in stored if meta.lat is not None]
    places = iter(_place_labels(located))
    rows = [
        photometa.row(file_id, meta, next(places) if meta.lat is not None else None)
        for file_id, meta in stored
    ]
    photometa.put(store.conn, rows)


def _place_labels(located: list[PhotoMeta]) -> list[str | None]:
    """'Lisbon, PT' per photo; the gazetteer loads only when some photo has coordinates."""
    if not located:
        return []
    try:
        from ..search.places import nearest_labels

        return nearest_labels([m.lat for m in located], [m.lon for m in located])
    except ClipsearchError:  # no gazetteer installed: coordinates are kept, names are not
        return [None] * len(located)


def backfill(
    store: Store, being_embedded: set[str], commit_seconds: float, skip_under: Sequence[str] = ()
) -> int:
    """Read the metadata of files indexed before it existed: headers only, no model, no
    re-embedding; committed in steps like embedding, so an interrupt keeps what was read.
    Files below `skip_under` (offline roots) wait for a run that can reach them.
    Returns how many files were read."""
    if photometa.count_missing(store.conn) <= 0:
        return 0  # the common case: two counts, no scan
    from ..photos.metadata import read_metadata

    away = tuple(os.path.join(root, "") for root in skip_under)

    todo = [
        (file_id, path)
        for file_id, raw in photometa.missing(store.conn)
        if (path := decode_path(raw)) not in being_embedded and not path.startswith(away)
    ]
    return _in_steps(
        store, todo, lambda part: put(store, _read(part, read_metadata)), commit_seconds
    )


def _read(part: list[tuple[int, str]], read: Callable[[str], PhotoMeta]) -> list:
    return [(file_id, read(path)) for file_id, path in part]


def _in_steps(store: Store, todo: list, work: Callable[[list], None], interval: float) -> int:
    last_commit, done = time.monotonic(), 0
    store.begin()
    try:
        for start in range(0, len(todo), _BACKFILL_BATCH):
            part = todo[start : start + _BACKFILL_BATCH]
            work(part)
            done += len(part)
            if time.monotonic() - last_commit >= interval:
                store.commit()
                store.begin()
                last_commit = time.monotonic()
    finally:
        store.commit()
    return done


def dates_from_mtime(store: Store) -> None:
    """--date-fallback mtime: photos without a capture time take their file's mtime."""
    store.begin()
    try:
        photometa.set_mtime_dates(store.conn, photometa.undated(store.conn))
    finally:
        store.commit()
