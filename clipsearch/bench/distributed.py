"""`clipsearch bench index --ray ADDRESS --workers N`: a Ray index run, and the driver's limit.

Two measurements:

* end to end: a real `Library.index(..., ray=...)` into a fresh library in a child process
  (as `bench index` runs its local one), clocked from after the driver's model load until the
  vectors are committed and the vector file written: the Ray runtime's start (for `local`),
  the actors' model loads, decoding and embedding on the workers, and the commits.  Each
  worker's own rate (files over its busy seconds) comes from the run's summary.
* commit rate: how many vectors per second the driver stores, through the same commit path
  a run uses (`run._commit_all`: SQLite rows in timed commits), then the FAISS file
  written, for `commit_vectors` random vectors of the model's size.  However many GPUs embed,
  one driver cannot store faster than this: divided by a GPU's img/s it says how many GPUs
  one driver can feed.

It also gives the photos' mean file size, and what one GPU at 1,500 img/s would read of
such files from the shared filesystem per second.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..indexing.distributed import RayOptions
from ..model.spec import ModelSpec

COMMIT_VECTORS = 50_000
COMMIT_BATCH = 256  # outcomes per batch handed to the commit loop, as a GPU actor returns them
GPU_IMG_PER_S = 1500  # one data-centre GPU on ViT-B-32 in fp16 (the working figure)


def run(
    options: RayOptions,
    synthetic: int | None,
    megapixels: float | None,
    images: Path | None,
    model: str,
    pretrained: str | None,
    device: str,
    batch_size: int | None,
    workdir: Path | None,
    commit_vectors: int = COMMIT_VECTORS,
) -> dict:
    from .index import _index_in_child, _photo_paths, _workspace, photo_folder, random_checkpoint

    with _workspace(workdir) as work:
        folder = photo_folder(work, synthetic, megapixels, images)
        paths = _photo_paths(folder)
        count = len(paths)
        file_mb = float(np.mean([os.path.getsize(p) for p in paths])) / 1e6
        checkpoint = pretrained or str(random_checkpoint(model, work / "random.safetensors"))
        indexed = _index_in_child(
            folder, work / "library", model, checkpoint, device, batch_size, ray=options
        )
        dim = indexed["dim"]
        committed = commit_rate(work / "commit", model, dim, commit_vectors)
    ray = indexed["ray"]
    rates = [w["img_per_s"] for w in ray["per_worker"] if w["img_per_s"]]
    return {
        "model": model,
        "ray": options.address,
        "device": device,
        "images": count,
        "batch_size": batch_size,
        "workers": ray["workers"],
        "workers_used": ray["workers_used"],
        "gpus_per_worker": ray["gpus_per_worker"],
        "index_seconds": round(indexed["seconds"], 3),
        "end_to_end_ips": round(count / indexed["seconds"], 2),
        "first_result_seconds": ray["first_result_seconds"],
        "per_worker": ray["per_worker"],
        "worker_ips_sum": round(sum(rates), 2),
        **committed,
        "gpus_one_driver_feeds": round(committed["commit_vps"] / GPU_IMG_PER_S, 1),
        "mean_file_mb": round(file_mb, 3),
        "gpu_reads_gb_per_s": round(file_mb * GPU_IMG_PER_S / 1000, 2),
    }


def commit_rate(directory: Path, model: str, dim: int, count: int) -> dict:
    """Vectors per second through the run's commit loop into SQLite, then the FAISS file."""
    from ..indexing.pipeline import Embedded
    from ..indexing.run import _commit_all
    from ..results import IndexReport
    from ..storage.db import Store
    from ..storage.vectorfile import current_index, save_index

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    outcomes = [
        Embedded(f"/photos/{i // 1000:04d}/p{i:07d}.jpg", 3_000_000 + i, i, f"{i:032x}", v)
        for i, v in enumerate(vectors)
    ]
    batches = (outcomes[i : i + COMMIT_BATCH] for i in range(0, count, COMMIT_BATCH))
    store = Store.open(directory, create=True)
    try:
        store.record_model(ModelSpec(model, "random-weights"), dim)
        start = time.perf_counter()
        _commit_all(store, count, batches, IndexReport(), None)
        sqlite_s = time.perf_counter() - start
        index, _ = current_index(store)
        save_index(store, index)
        total_s = time.perf_counter() - start
    finally:
        store.close()
    return {
        "commit_vectors": count,
        "commit_sqlite_seconds": round(sqlite_s, 3),
        "commit_seconds": round(total_s, 3),
        "commit_vps": round(count / total_s),
    }


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column()
    rows = [
        ("end to end", f"{result['end_to_end_ips']:.1f} img/s", "Ray start and model loads in"),
        ("first result", f"{result['first_result_seconds']:.1f} s", "runtime and actors up"),
    ]
    for w in result["per_worker"]:
        rows.append((w["worker"], f"{w['img_per_s'] or 0:.1f} img/s", f"{w['images']} files"))
    rows += [
        ("driver commits", f"{result['commit_vps']} vectors/s", "SQLite + FAISS"),
        ("GPUs it feeds", f"{result['gpus_one_driver_feeds']}", f"at {GPU_IMG_PER_S} img/s each"),
    ]
    for row in rows:
        table.add_row(*row)
    Console().print(
        f"{result['images']} photos, {result['model']} on Ray ({result['ray']}), "
        f"{result['workers']} workers, {result['gpus_per_worker']} GPU each"
    )
    Console().print(table)
