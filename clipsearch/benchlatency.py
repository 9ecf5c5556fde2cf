"""`clipsearch bench query`: search speed in memory, and Enter-to-exit time of the real CLI.

The library is synthetic (clustered vectors standing in for photos, the model's text and
image towers exported with random weights) but it is a real library on disk, and the timed
queries run `python -m clipsearch query` in fresh processes exactly as a user would: text,
and 12 MP photos that are not in the library, so their decode and image tower count.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import benchquery
from .benchindex import photo_folder
from .library import IMAGE_EXPORT, TEXT_EXPORT
from .npmodel import CONFIG_NAME
from .store import Store
from .vectorcache import current_index
from .weights import ModelSpec

QUERY = "dog on a beach"
WARM_QUERIES = 21
WARM_REPEATS = 3
PHOTO_MEGAPIXELS = 12
_ROWS_PER_COMMIT = 50_000


def run(n: int, *, model: str = "ViT-B-32", cold_runs: int = 5, workdir: Path | None = None):
    """All figures for one library size, as a dict."""
    figures = benchquery.run(n)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="clipsearch-bench-") as tmp:
        library = Path(tmp) / "library"
        started = time.perf_counter()
        synthetic_library(library, n, model)
        figures["library_build_s"] = round(time.perf_counter() - started, 1)
        figures["cold_query_s"] = cold_query_seconds(library, cold_runs)
        figures["warm_query_s"] = warm_query_seconds(library)
        photos = _photos(Path(tmp))
        figures["image_decode_s"] = decode_seconds(photos, _image_size(library))
        figures["cold_image_query_s"] = cold_query_seconds(library, cold_runs, photos[0])
        figures["warm_image_query_s"] = warm_query_seconds(library, photos)
    figures["model"] = model
    return figures


def synthetic_library(directory: Path, n: int, model: str) -> None:
    """A library of n fake photos whose towers are `model` with random weights."""
    dim = _export_towers(directory, model)
    store = Store.open(directory, create=True)
    try:
        store.record_model(ModelSpec(model, "random-weights"), dim)
        vectors = benchquery.synthetic_vectors(n, dim)
        for start in range(0, n, _ROWS_PER_COMMIT):
            store.begin()
            store.add_new(
                (f"/synthetic/{i:07d}.jpg", 1_000_000 + i, i, f"{i:032x}", vectors[i])
                for i in range(start, min(n, start + _ROWS_PER_COMMIT))
            )
            store.commit()
        current_index(store)  # builds the vector index and saves it
    finally:
        store.close()


def _export_towers(directory: Path, model: str) -> int:
    """Export both torch-free towers of `model`; returns its embedding size."""
    import torch

    from .textfast import export_text_encoder
    from .visionfast import export_image_encoder
    from .weights import open_clip_module

    open_clip = open_clip_module()
    torch.manual_seed(0)
    clip, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=None)
    clip.eval()
    if not export_text_encoder(clip, open_clip.get_tokenizer(model), directory / TEXT_EXPORT):
        raise RuntimeError(f"{model} has no torch-free text path; bench query needs one")
    if not export_image_encoder(clip, preprocess, directory / IMAGE_EXPORT):
        raise RuntimeError(f"{model} has no torch-free image path; bench query needs one")
    return int(clip.text_projection.shape[1])


def _photos(work: Path) -> list[str]:
    """Distinct photo-like 12 MP JPEGs outside the library, one per warm query."""
    folder = photo_folder(work, WARM_QUERIES, PHOTO_MEGAPIXELS, None)
    return sorted(str(p) for p in folder.glob("*.jpg"))


def _image_size(library: Path) -> int:
    """The image tower's input size, from the export's config (no need to open the tower)."""
    config = json.loads((library / IMAGE_EXPORT / CONFIG_NAME).read_text(encoding="utf-8"))
    return int(config["image_size"])


def decode_seconds(photos: list[str], min_side: int) -> float:
    """Median time to decode one photo for a query (draft decoding, upright, RGB)."""
    from .imaging import load_image

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
