"""`clipsearch bench query`: search speed in memory, and Enter-to-exit time of the real CLI.

The library is synthetic (clustered vectors standing in for photos, the model's text and
image towers exported with random weights) but it is a real library on disk, and the timed
queries run `python -m clipsearch query` in fresh processes exactly as a user would: text,
and 12 MP photos that are not in the library, so their decode and image tower count.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..model.factory import IMAGE, TEXT, ExportDirs, export_towers, index_encoder
from ..model.spec import ModelSpec
from ..storage.db import Store
from ..storage.layout import Layout
from ..storage.vectorfile import current_index
from . import vectors as synthetic
from .index import photo_folder, random_checkpoint

QUERY = "dog on a beach"
WARM_QUERIES = 21
WARM_REPEATS = 3
PHOTO_MEGAPIXELS = 12
_ROWS_PER_COMMIT = 50_000


def run(n: int, *, model: str = "ViT-B-32", cold_runs: int = 5, workdir: Path | None = None):
    """All figures for one library size, as a dict."""
    figures = synthetic.run(n)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="clipsearch-bench-") as tmp:
        library = Path(tmp) / "library"
        started = time.perf_counter()
        image_size = synthetic_library(library, n, model)
        figures["library_build_s"] = round(time.perf_counter() - started, 1)
        figures["cold_query_s"] = cold_query_seconds(library, cold_runs)
        figures["warm_query_s"] = warm_query_seconds(library)
        photos = _photos(Path(tmp))
        figures["image_decode_s"] = decode_seconds(photos, image_size)
        figures["cold_image_query_s"] = cold_query_seconds(library, cold_runs, photos[0])
        figures["warm_image_query_s"] = warm_query_seconds(library, photos)
        figures.update(filter_costs(library))
    figures["model"] = model
    return figures


def synthetic_library(directory: Path, n: int, model: str) -> int:
    """A library of n fake photos whose towers are `model` with random weights; returns the
    image tower's input size."""
    dim, image_size = _export_towers(directory, model)
    store = Store.open(directory, create=True)
    try:
        store.record_model(ModelSpec(model, "random-weights"), dim)
        vectors = synthetic.synthetic_vectors(n, dim)
        for start in range(0, n, _ROWS_PER_COMMIT):
            store.begin()
            store.add_new(
                (f"/synthetic/{i:07d}.jpg", 1_000_000 + i, i, f"{i:032x}", vectors[i])
                for i in range(start, min(n, start + _ROWS_PER_COMMIT))
            )
            store.commit()
        synthetic_metadata(store, n)
        current_index(store)  # builds the vector index and saves it
    finally:
        store.close()
    return image_size


# Filters timed on the synthetic library, with the share of photos each one keeps.
FILTERS = {
    "date": dict(after="2019-06", before="2019-08"),  # one summer: ~1.7%
    "broad_date": dict(after="2015"),  # two thirds
    "place": dict(near="48.85,2.35", km=25),  # one of the home cities: ~4%
    "camera": dict(camera="iphone"),  # one camera of eight: ~12%
}
CAMERAS = [("Apple", "iPhone 12"), ("Canon", "Canon EOS R5"), ("SONY", "ILCE-7M3")] + [
    ("NIKON CORPORATION", "NIKON D750"),
    ("FUJIFILM", "X-T3"),
    ("samsung", "SM-G991B"),
    ("Google", "Pixel 7"),
    ("OLYMPUS", "E-M10"),
]
HOMES = [(48.85, 2.35), (40.71, -74.0), (-33.87, 151.21), (35.68, 139.69), (51.51, -0.13)] + [
    (52.52, 13.40),
    (41.90, 12.50),
    (38.72, -9.14),
    (-22.91, -43.17),
    (19.43, -99.13),
]


def synthetic_metadata(store: Store, n: int, seed: int = 0) -> None:
    """Capture times over 2010-2024, half the photos around ten home cities, a fifth with no
    location, eight cameras: enough spread that each filter keeps a known share."""
    import numpy as np

    from ..storage import photometa

    rng = np.random.default_rng(seed)
    ids = store.ids()
    start, end = 1262304000, 1735689599  # 2010-01-01 .. 2024-12-31, wall clock
    taken = rng.integers(start, end, len(ids))
    home = rng.integers(0, len(HOMES), len(ids))
    lat = np.array([HOMES[h][0] for h in home]) + rng.normal(0, 0.1, len(ids))
    lon = np.array([HOMES[h][1] for h in home]) + rng.normal(0, 0.1, len(ids))
    where = rng.random(len(ids))
    lat = np.where(where < 0.3, rng.uniform(-60, 70, len(ids)), lat)
    lon = np.where(where < 0.3, rng.uniform(-180, 180, len(ids)), lon)
    camera = rng.integers(0, len(CAMERAS), len(ids))
    rows = (
        (
            int(i),
            int(t),
            None,
            photometa.FROM_EXIF,
            *_place(la, lo, w),
            *CAMERAS[c],
            None,
            None,
            None,
        )
        for i, t, la, lo, w, c in zip(ids, taken, lat, lon, where, camera, strict=True)
    )
    store.begin()
    store.conn.executemany(
        "INSERT INTO photo_meta(file_id, taken, offset_min, taken_from, lat, lon, altitude, "
        "make, model, lens, width, height) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    store.commit()


def _place(lat: float, lon: float, where: float) -> tuple:
    if where > 0.8:
        return None, None, None
    return float(lat), float(lon), None


def filter_costs(library: Path, repeats: int = 7) -> dict[str, float]:
    """Milliseconds each filter adds to one search in a loaded library (median of `repeats`,
    against the same search without it) and the share of photos it keeps; and the time a
    fresh process spends loading the metadata columns that every filter reads."""
    import numpy as np

    from ..library import Library
    from ..search.filters import make_filters
    from ..storage import metacolumns

    figures: dict[str, float] = {}
    with Library.open(library) as lib:
        dim = lib.store.dim() or 0
        vector = np.random.default_rng(1).normal(size=dim).astype(np.float32)
        vector /= np.linalg.norm(vector)
        plain = _median_ms(lambda: lib.search_vector(vector, 10), repeats)
        figures["metadata_load_ms"] = round(_median_ms(lambda: metacolumns.load(lib.store), 3), 2)
        for name, options in FILTERS.items():
            filters = make_filters(**options)
            kept = lib._columns().select(filters).mean()
            filtered = _median_ms(
                lambda f=filters: lib.search_vector(vector, 10, filters=f), repeats
            )
            figures[f"{name}_filter_ms"] = round(max(0.0, filtered - plain), 2)
            figures[f"{name}_filter_share"] = round(float(kept), 4)
    return figures


def _median_ms(work, repeats: int) -> float:
    work()  # the first call loads the index
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _export_towers(directory: Path, model: str) -> tuple[int, int]:
    """Export both torch-free towers of `model` with random weights, as `index` would;
    returns its embedding size and image input size."""
    directory.mkdir(parents=True, exist_ok=True)
    from .standins import needs_standins, register_standins

    if needs_standins(model):  # its tokenizer (and XLM-R's config) would come from the hub
        register_standins(model, directory.parent / "standins")
    with tempfile.TemporaryDirectory(prefix="clipsearch-weights-") as tmp:
        checkpoint = random_checkpoint(model, Path(tmp) / "random.safetensors")
        encoder = index_encoder(ModelSpec(model, str(checkpoint)), "cpu")
    layout = Layout(directory)
    done = export_towers(encoder, ExportDirs(layout.text_export, layout.image_export))
    for task in (TEXT, IMAGE):
        if not done[task]:
            raise RuntimeError(f"{model} has no torch-free {task} tower; bench query needs one")
    return encoder.dim, encoder.image_size


def _photos(work: Path) -> list[str]:
    """Distinct photo-like 12 MP JPEGs outside the library, one per warm query."""
    folder = photo_folder(work, WARM_QUERIES, PHOTO_MEGAPIXELS, None)
    return sorted(str(p) for p in folder.glob("*.jpg"))


def decode_seconds(photos: list[str], min_side: int) -> float:
    """Median time to decode one photo for a query (draft decoding, upright, RGB)."""
    from ..photos.decode import load_image

    times = []
    for path in photos:
        started = time.perf_counter()
        load_image(path, min_side=min_side)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 4)


def _query_process(library: Path, *args: str, stdin: bytes | None = None) -> float:
    """Wall seconds of one fresh `clipsearch query` process, output to a pipe."""
    command = [sys.executable, "-m", "clipsearch", "query", *args, "--library", str(library)]
    started = time.perf_counter()
    done = subprocess.run(command, input=stdin, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"query failed: {done.stderr.decode(errors='replace').strip()}")
    return elapsed


def cold_query_seconds(library: Path, runs: int, query: str = QUERY) -> float:
    """Median start-to-exit time of a fresh process answering one query."""
    return round(statistics.median(_query_process(library, query) for _ in range(runs)), 3)


def warm_query_seconds(library: Path, queries: list[str] | None = None) -> float:
    """Per-query time once loaded: `query -` with many distinct queries minus one query.

    The median of WARM_REPEATS such differences, as one pair of runs on a shared machine can
    be off by half."""
    lines = queries or [f"{QUERY} number {i}" for i in range(WARM_QUERIES)]
    one = (lines[0] + "\n").encode()
    many = ("\n".join(lines) + "\n").encode()
    per_query = []
    for _ in range(WARM_REPEATS):
        extra = _query_process(library, "-", stdin=many) - _query_process(library, "-", stdin=one)
        per_query.append(max(0.0, extra) / (len(lines) - 1))
    return round(statistics.median(per_query), 4)
