"""What reading photo metadata costs `index`: per photo in the decode workers, and the
one-time backfill of a library indexed before metadata existed.

The synthetic photos carry what a phone writes (capture time with offset, GPS, make and
model), so the figures include parsing all of it and naming each photo's nearest town.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

PLACES = [(38.72, -9.14), (-33.87, 151.21), (40.71, -74.0), (47.27, 11.40), (35.68, 139.69)]
BACKFILL_PHOTOS = 10_000


def phone_exif(index: int, orientation: int | None = None) -> Image.Exif:
    """EXIF like a phone's: capture time and offset, GPS, make and model."""
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    exif[0x010F], exif[0x0110] = "Apple", "iPhone 13 Pro"
    tags = exif.get_ifd(0x8769)
    tags[0x9003] = f"2023:{1 + index % 12:02d}:{1 + index % 28:02d} 12:{index % 60:02d}:00"
    tags[0x9011] = "+02:00"
    lat, lon = PLACES[index % len(PLACES)]
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = ("N" if lat >= 0 else "S"), _dms(abs(lat) + index * 1e-4)
    gps[3], gps[4] = ("E" if lon >= 0 else "W"), _dms(abs(lon))
    return exif


def _dms(degrees: float) -> tuple[float, float, float]:
    minutes = (degrees % 1) * 60
    return float(int(degrees)), float(int(minutes)), round((minutes % 1) * 60, 3)


def read_cost_ms(paths: Sequence[str]) -> float:
    """Median milliseconds a decode worker spends on one photo's metadata: the parse of the
    header Pillow already read (the file is open and its header read either way)."""
    from ..photos import formats
    from ..photos.metadata import for_decoded

    times = []
    for path in paths:
        with open(path, "rb") as fp, Image.open(fp) as im:
            started = time.perf_counter()
            for_decoded(fp, formats.extension(path), im)
            times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 4)


def backfill_seconds(work: Path, count: int = BACKFILL_PHOTOS) -> dict[str, float]:
    """Seconds of `index` over `count` unchanged photos whose library lacks their metadata
    (the first run after upgrading), and of the run after it."""
    from ..library import Library
    from ..model.spec import ModelSpec
    from ..storage.db import Store

    folder, library = work / "backfill", work / "backfill-library"
    for old in (folder, library):  # a kept work folder is measured afresh
        shutil.rmtree(old, ignore_errors=True)
    paths = _tiny_photos(folder, count)
    store = Store.open(library, create=True)
    try:
        store.record_model(ModelSpec("bench", "none"), 4)
        store.begin()
        vector = np.full(4, 0.5, dtype=np.float32)
        rows = ((p, st.st_size, st.st_mtime_ns, "-", vector) for p, st in _stats(paths))
        store.add_new(rows)
        store.commit()
    finally:
        store.close()
    figures = {}
    for name in ("backfill_s", "reindex_after_backfill_s"):
        with Library.open(library) as lib:
            started = time.perf_counter()
            report = lib.index([folder])
            figures[name] = round(time.perf_counter() - started, 2)
        if name == "backfill_s" and report.metadata_read != count:
            raise RuntimeError(f"backfill read {report.metadata_read} of {count} photos")
    figures["backfill_photos"] = count
    return figures


def _tiny_photos(folder: Path, count: int) -> list[str]:
    """`count` distinct small JPEGs with phone EXIF (a few KB each)."""
    import io

    folder.mkdir(parents=True, exist_ok=True)
    base = Image.new("RGB", (64, 48), (90, 120, 150))
    paths = []
    for i in range(count):
        out = io.BytesIO()
        base.save(out, "JPEG", quality=80, exif=phone_exif(i))
        path = folder / f"{i // 1000:02d}" / f"IMG_{i:05d}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(out.getvalue())
        paths.append(str(path))
    return paths


def _stats(paths: Sequence[str]):
    import os

    for p in paths:
        yield p, os.stat(p)
