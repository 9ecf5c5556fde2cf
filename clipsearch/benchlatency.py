"""`clipsearch bench query`: search speed in memory, and Enter-to-exit time of the real CLI.

The library is synthetic (clustered vectors standing in for photos, the model's text tower
exported with random weights) but it is a real library on disk, and the timed queries run
`python -m clipsearch query` in fresh processes exactly as a user would.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import benchquery
from .library import TEXT_EXPORT
from .store import Store
from .vectorcache import current_index
from .weights import ModelSpec

QUERY = "dog on a beach"
WARM_QUERIES = 21
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
    figures["model"] = model
    return figures


def synthetic_library(directory: Path, n: int, model: str) -> None:
    """A library of n fake photos whose text side is `model` with random weights."""
    dim = _export_text_tower(directory / TEXT_EXPORT, model)
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


def _export_text_tower(out_dir: Path, model: str) -> int:
    import torch

    from .textfast import export_text_encoder
    from .weights import open_clip_module

    open_clip = open_clip_module()
    torch.manual_seed(0)
    clip = open_clip.create_model(model, pretrained=None).eval()
    if not export_text_encoder(clip, open_clip.get_tokenizer(model), out_dir):
        raise RuntimeError(f"{model} has no torch-free text path; bench query needs one")
    return int(clip.text_projection.shape[1])


def _query_process(library: Path, *args: str, stdin: bytes | None = None) -> float:
    """Wall seconds of one fresh `clipsearch query` process, output to a pipe."""
    command = [sys.executable, "-m", "clipsearch", "query", *args, "--library", str(library)]
    started = time.perf_counter()
    done = subprocess.run(command, input=stdin, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"query failed: {done.stderr.decode(errors='replace').strip()}")
    return elapsed


def cold_query_seconds(library: Path, runs: int) -> float:
    """Median start-to-exit time of a fresh process answering one text query."""
    return round(statistics.median(_query_process(library, QUERY) for _ in range(runs)), 3)


def warm_query_seconds(library: Path) -> float:
    """Per-query time once loaded: `query -` with many distinct queries minus one query."""
    lines = [f"{QUERY} number {i}" for i in range(WARM_QUERIES)]
    one = _query_process(library, "-", stdin=(lines[0] + "\n").encode())
    many = _query_process(library, "-", stdin=("\n".join(lines) + "\n").encode())
    return round(max(0.0, many - one) / (WARM_QUERIES - 1), 4)
