"""The metadata columns: in step with photo_meta, rebuilt when stale or damaged, and the
filters they answer (offsets, the antimeridian, camera names in any case)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from clipsearch.model.spec import ModelSpec
from clipsearch.photos.metadata import PhotoMeta
from clipsearch.search.filters import make_filters
from clipsearch.storage import metacolumns, photometa
from clipsearch.storage.db import Store


def add_photos(store: Store, metas: list[PhotoMeta]) -> list[int]:
    store.begin()
    ids = [
        store.add(f"/p/{store.count()}-{i}.jpg", 1, i, f"{i:032x}", np.ones(4, np.float32) / 2)
        for i, _ in enumerate(metas)
    ]
    photometa.put(store.conn, [photometa.row(i, m, None) for i, m in zip(ids, metas, strict=True)])
    store.commit()
    return ids


@pytest.fixture()
def store(tmp_path):
    store = Store.open(tmp_path / "lib", create=True)
    store.record_model(ModelSpec("m", "p"), 4)
    yield store
    store.close()


def when(text: str, offset: int | None = None, **kw) -> PhotoMeta:
    return PhotoMeta(taken=dt.datetime.fromisoformat(text), offset_minutes=offset, **kw)


def kept(columns, **options) -> list[int]:
    return sorted(int(i) for i in columns.ids[columns.select(make_filters(**options))])


def test_columns_follow_every_change(store):
    first = add_photos(store, [when("2020-01-01T10:00")])
    columns = metacolumns.load(store)
    assert list(columns.ids) == first
    assert [p.name for p in store.layout.meta_column_files()] == ["photometa-1-1.npz"]
    second = add_photos(store, [when("2021-01-01T10:00")])
    assert kept(metacolumns.load(store), after="2021") == second
    assert len(store.layout.meta_column_files()) == 1  # the stale file went
    store.begin()
    store.remove(first)
    store.commit()
    assert list(metacolumns.load(store).ids) == second  # the trigger dropped its row


def test_damaged_cache_is_rebuilt(store):
    ids = add_photos(store, [when("2020-01-01T10:00")])
    metacolumns.load(store)
    (path,) = store.layout.meta_column_files()
    path.write_bytes(b"not an npz")
    assert list(metacolumns.load(store).ids) == ids


def test_time_bounds_with_and_without_offsets(store):
    lisbon, tokyo, unknown, undated = add_photos(
        store,
        [
            when("2024-06-15T23:30", 60),  # 22:30 UTC
            when("2024-06-16T06:00", 540),  # 21:00 UTC on the 15th
            when("2024-06-15T12:00"),
            PhotoMeta(make="X"),
        ],
    )
    columns = metacolumns.load(store)
    # Wall clock: the day as each camera saw it.
    assert kept(columns, after="2024-06-15", before="2024-06-15") == [lisbon, unknown]
    # An instant: Tokyo's 06:00 is 21:00 UTC on the 15th, before 22:00 UTC.
    assert kept(columns, before="2024-06-15T22:00Z") == [tokyo, unknown]
    assert kept(columns, after="2024-06-15T22:00+00:00") == [lisbon]
    assert undated not in kept(columns, before="2100")


def test_near_across_the_antimeridian_and_camera_case(store):
    fiji_east, fiji_west, far = add_photos(
        store,
        [
            PhotoMeta(lat=-17.0, lon=179.95, make="Apple", model="iPhone 12"),
            PhotoMeta(lat=-17.0, lon=-179.95, make="SONY", model="ILCE-7M3"),
            PhotoMeta(lat=-17.0, lon=178.0, make="Ricoh", model="GR Ⅲ"),
        ],
    )
    columns = metacolumns.load(store)
    assert kept(columns, near="-17.0,180", km=20) == [fiji_east, fiji_west]
    assert kept(columns, camera="IPHONE") == [fiji_east]
    assert kept(columns, camera="gr ⅲ") == [far]  # not only ASCII
    assert kept(columns, camera="sony", near="-17,179.9", km=50) == [fiji_west]


def test_by_date_puts_undated_last():
    ids = np.array([1, 2, 3, 4])
    taken = np.array([30, metacolumns.UNDATED, 10, 20])
    assert list(metacolumns.by_date(ids, taken, False)) == [3, 4, 1, 2]
    assert list(metacolumns.by_date(ids, taken, True)) == [1, 4, 3, 2]
