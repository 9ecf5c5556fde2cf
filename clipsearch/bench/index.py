"""`clipsearch bench index`: how close indexing comes to the model's own speed, in one run.

Four measurements on the same files, same model, same batch size:

* model only: forward passes on ready preprocessed tensors, in the backend the index run used
  (onnxruntime or torch, same precision and threads); nothing can index faster: the ceiling.
* end to end: a real `Library.index` into a fresh library, in a child process; the clock runs
  from the call after the model is loaded (its load time is not indexing speed) until the
  vectors are committed and the vector file is written, so it includes the scan, the decode
  workers' start, the pipeline filling up and SQLite.
* naive: the rclip-style baseline, full decode plus open_clip's own transform in a thread
  pool, then the model, batch after batch (files to vectors, nothing stored).
* fidelity: our draft decode + preprocess against open_clip's transform of the full decode,
  as PSNR of the tensors and cosine of their embeddings, the minimum over a sample of files.
* memory: the end-to-end run's peak RSS once its model is loaded, decode workers included
  (see `_index_job`); it should not grow with the number of files.  Also the peak PSS of the
  whole process tree, sampled every 0.2 s (shared pages counted once, as rclip-side-by-side).
* backend fidelity: the tower as the index ran it against open_clip's own fp32 `encode_image`
  on the same decoded photos, with weights roughened so that photos spread apart (plain random
  ViT weights map every photo within ~0.99 cosine of every other, which would prove nothing):
  the worst cosine, whether every photo is nearest its own reference, and the mean pairwise
  cosine of the references (the spread).

The end-to-end run gets a user cache of its own in the work folder, holding the model's export
(written here first) and this machine's measured backend choice: it measures an index run of a
machine that has run this model before, as every run after the first is.

Which photos: without `images`, `synthetic` photo-like JPEGs of `megapixels` (default 12)
are generated, 4:3 at quality 90; a few distinct scenes are rendered and the other files are
byte-level variants of them (a unique JPEG comment each), so generating stays cheap and no two
files are identical. With `images` and no `megapixels`, the photos in that folder are
benchmarked as they are (`synthetic` is then not allowed); with `megapixels` too, `synthetic`
(default: as many as the folder holds) JPEG copies of them, resized to that size, are written
to the work folder first.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from ..errors import ClipsearchError, ImageError
from ..model.spec import ModelSpec
from .metadata import backfill_seconds, read_cost_ms

DEFAULT_SYNTHETIC = 200
DEFAULT_MEGAPIXELS = 12.0
SCENES = 8  # distinct pictures rendered; every other generated file is a variant of one
JPEG_QUALITY = 90
FIDELITY_SAMPLE = 8  # files compared draft against full decode (full decodes are slow)
SPREAD_NOISE = 0.1  # random weights roughened by this much spread photos apart (as the tests do)


def run(
    synthetic: int | None,
    megapixels: float | None,
    images: Path | None,
    model: str,
    pretrained: str | None,
    device: str,
    batch_size: int | None,
    workdir: Path | None,
    backfill: int = 10_000,
    backend: str = "auto",
    precision: str = "auto",
) -> dict:
    """Measure indexing speed, its ceiling and its baseline, and the draft decode's fidelity.

    `pretrained` None means random weights (speed does not depend on their values), saved to
    a temporary .safetensors file and loaded as `--pretrained FILE` would be.
    """
    import torch

    from ..indexing.pipeline import default_batch_size, worker_plan
    from ..model.backend import check_request
    from ..model.factory import index_encoder
    from .standins import needs_standins, register_standins

    check_request(backend, precision)
    with _workspace(workdir) as work:
        if pretrained is None and needs_standins(model):  # hub tokenizer: offline stand-in
            register_standins(model, work / "standins")
        folder = photo_folder(work, synthetic, megapixels, images)
        paths = _photo_paths(folder)
        checkpoint = pretrained or str(random_checkpoint(model, work / "random.safetensors"))
        spec = ModelSpec(model, checkpoint)
        encoder = index_encoder(spec, device)
        batch = batch_size or default_batch_size(encoder.device)
        plan = worker_plan(encoder.device)
        image_export = _prepare_cache(work / "cache", spec, encoder, precision)
        indexed = _index_in_child(
            folder,
            work / "library",
            model,
            checkpoint,
            device,
            batch,
            backend=backend,
            precision=precision,
            cache=work / "cache",
        )
        chosen = indexed["backend"]
        psnr_db, cosine, tensors = _fidelity(encoder, _sample(paths))
        torch.set_num_threads(plan.threads)
        runner = _runner(chosen, encoder, image_export)
        model_ips = _model_only_ips(runner, tensors, len(paths), batch)
        del runner
        naive_ips = _naive_ips(encoder, paths, batch)
        spread = _spread_fidelity(model, chosen, _sample(paths), work / "spread")
        megapixels = _mean_megapixels(paths)
        metadata_ms = read_cost_ms(_sample(paths))
        backfilled = backfill_seconds(work, backfill)
    return {
        "model": model,
        "pretrained": pretrained,
        "device": encoder.device,
        "images": len(paths),
        "megapixels": round(megapixels, 2),
        "batch_size": batch,
        "backend": chosen["backend"],
        "precision": chosen["precision"],
        "backend_reason": chosen["reason"],
        "workers": plan.workers,
        "model_threads": plan.threads,
        **_speeds(model_ips, len(paths) / indexed["seconds"], naive_ips),
        "psnr_db": None if math.isinf(psnr_db) else round(psnr_db, 2),
        "cosine": round(cosine, 6),
        **spread,
        "peak_pss_mb": indexed["peak_pss_mb"],
        "peak_rss_mb": indexed["peak_rss_mb"],
        "peak_rss_main_mb": indexed["main_mb"],
        "peak_rss_model_load_mb": indexed["load_mb"],
        "peak_rss_worker_mb": indexed["worker_mb"],
        "index_seconds": round(indexed["seconds"], 3),
        "metadata_ms": metadata_ms,
        "metadata_share": round(metadata_ms / (1000 * indexed["seconds"] / len(paths)), 5),
        **backfilled,
    }


def _speeds(model_only: float, end_to_end: float, naive: float) -> dict:
    """The three rates in images per second, and the ratios of the rates as printed."""
    rates = [round(r, 2) for r in (model_only, end_to_end, naive)]
    return {
        "model_only_ips": rates[0],
        "end_to_end_ips": rates[1],
        "naive_ips": rates[2],
        "ratio_model": round(rates[1] / rates[0], 3),
        "ratio_naive": round(rates[1] / rates[2], 3),
    }


@contextmanager
def _workspace(workdir: Path | None) -> Iterator[Path]:
    """The given folder (kept, for inspection), else a temporary one removed afterwards."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-") as tmp:
        yield Path(tmp)


# --- photos --------------------------------------------------------------------------------


def photo_folder(
    work: Path, synthetic: int | None, megapixels: float | None, images: Path | None
) -> Path:
    """The folder to benchmark on, following the rule in the module docstring."""
    if images is not None and megapixels is None:
        if synthetic is not None:
            raise ClipsearchError("--synthetic makes resized copies: give --megapixels as well")
        return images
    mp = DEFAULT_MEGAPIXELS if megapixels is None else megapixels
    if mp <= 0 or (synthetic is not None and synthetic < 1):
        raise ClipsearchError("--synthetic and --megapixels must be positive")
    out = work / "photos"
    out.mkdir(parents=True, exist_ok=True)
    if images is None:
        scenes = [_scene(seed, _size_for(mp)) for seed in range(SCENES)]
    else:
        scenes = [_resized(path, mp) for path in _photo_paths(images)[:SCENES]]
    count = synthetic or (DEFAULT_SYNTHETIC if images is None else len(_photo_paths(images)))
    write_variants(out, [_jpeg_bytes(im, i) for i, im in enumerate(scenes)], count)
    return out


def _photo_paths(folder: Path) -> list[str]:
    """The photos `index` would find there, in a stable order."""
    from ..indexing.scan import normalise_root, scan

    paths = sorted(f.path for f in scan([normalise_root(folder)]).files)
    if not paths:
        raise ClipsearchError(f"no photos found in {folder}")
    return paths


def _size_for(megapixels: float) -> tuple[int, int]:
    """4:3 landscape, both sides multiples of 8 as camera sensors' outputs are."""
    width = round(math.sqrt(megapixels * 1e6 * 4 / 3) / 8) * 8
    return max(width, 16), max(round(width * 3 / 4 / 8) * 8, 16)


def _scene(seed: int, size: tuple[int, int]) -> Image.Image:
    """A photo-like picture: soft background, sharp-edged objects and fine sensor grain.

    Flat or blurry content would flatter both the JPEG decoder and the draft-mode fidelity,
    so the full-resolution detail is drawn at full resolution.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    small = _background(rng, (max(width // 8, 2), max(height // 8, 2)))
    image = small.resize(size, Image.Resampling.BICUBIC)
    _draw_objects(ImageDraw.Draw(image), rng, size)
    return _add_grain(image, rng)


def _background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Sky-to-ground gradient with mottled texture (foliage, walls) at low resolution."""
    width, height = size
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    pixels = (top * (1 - ramp) + bottom * ramp).repeat(width, axis=1)
    pixels += rng.normal(0.0, 24.0, (height, width, 3)).astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(0.8))


def _draw_objects(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size) -> None:
    """Crisp shapes and thin lines, as buildings, signs, branches and wires give photos."""
    width, height = size
    for _ in range(24):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1 = x0 + int(rng.integers(width // 40 + 1, width // 4 + 2))
        y1 = y0 + int(rng.integers(height // 40 + 1, height // 4 + 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=colour, outline=(0, 0, 0), width=max(width // 1000, 1))
    for _ in range(40):
        points = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.line(points, fill=colour, width=int(rng.integers(1, max(width // 500, 2) + 1)))


def _add_grain(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Add sensor-like noise from one small tile repeated (drawing 12 MP of noise is slow)."""
    tile = rng.normal(128.0, 6.0, (256, 256, 3))
    noise_tile = Image.fromarray(np.clip(tile, 0, 255).astype(np.uint8))
    noise = Image.new("RGB", image.size)
    for x in range(0, image.width, 256):
        for y in range(0, image.height, 256):
            noise.paste(noise_tile, (x, y))
    return ImageChops.add(image, noise, scale=1.0, offset=-128)


def _resized(path: str, megapixels: float) -> Image.Image:
    """A given photo, upright, scaled (up or down) to about `megapixels`."""
    from ..photos.decode import load_image

    try:
        image = load_image(path)
    except ImageError as exc:
        raise ClipsearchError(f"cannot read {path}: {exc}") from None
    factor = math.sqrt(megapixels * 1e6 / (image.width * image.height))
    size = (max(round(image.width * factor), 1), max(round(image.height * factor), 1))
    return image.resize(size, Image.Resampling.LANCZOS)


def _jpeg_bytes(image: Image.Image, index: int) -> bytes:
    """Encode like a phone: quality 90; every other scene is portrait by EXIF orientation."""
    import io

    from .metadata import phone_exif

    # Orientation 6: rotate 90° to display, as phones store portraits.
    exif = phone_exif(index, orientation=6 if index % 2 else None)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY, exif=exif)
    return out.getvalue()


def write_variants(folder: Path, scenes: Sequence[bytes], count: int) -> None:
    """`count` files, scenes in contiguous runs, each made unique by its own JPEG comment."""
    for i in range(count):
        data = scenes[i * len(scenes) // count]
        (folder / f"photo-{i:06d}.jpg").write_bytes(with_comment(data, f"variant {i}".encode()))


def with_comment(jpeg: bytes, text: bytes) -> bytes:
    """Insert a COM segment after the APPn headers (EXIF must stay first); pixels unchanged."""
    at = 2  # after SOI
    while jpeg[at] == 0xFF and 0xE0 <= jpeg[at + 1] <= 0xEF:
        at += 2 + int.from_bytes(jpeg[at + 2 : at + 4], "big")
    segment = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    return jpeg[:at] + segment + jpeg[at:]


def _mean_megapixels(paths: Sequence[str]) -> float:
    """From the headers only."""
    sizes = []
    for path in paths:
        with Image.open(path) as im:
            sizes.append(im.width * im.height)
    return float(np.mean(sizes)) / 1e6


def random_checkpoint(model: str, path: Path) -> Path:
    """Random weights for `model` in a .safetensors file, loadable as `--pretrained FILE`."""
    import torch
    from safetensors.torch import save_file

    from ..model.spec import check_model_name, open_clip_module

    check_model_name(model)
    torch.manual_seed(0)
    # pretrained_text=False: a Hugging Face text tower would otherwise fetch its own weights
    weights = open_clip_module().create_model(model, pretrained=None, pretrained_text=False)
    weights = weights.state_dict()
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path))
    return path


# --- the measurements ----------------------------------------------------------------------


def _prepare_cache(cache_home: Path, spec: ModelSpec, encoder, precision: str) -> Path:
    """A user cache for the index run: the model's towers exported (as a first run leaves
    them), the int8 graph if asked for (quantising once per model and machine takes ~2 GB for
    ViT-B-32), and this machine's measured backend choices copied from the real cache."""
    from ..model.exportcache import model_key
    from ..model.factory import ExportDirs, export_towers
    from ..storage.layout import UserCache

    cache, mine = UserCache(cache_home / "clipsearch"), UserCache.default()
    key = model_key(spec, cache)
    if key is None:
        raise ClipsearchError(f"cannot read the checkpoint {spec.pretrained}")
    export_towers(encoder, ExportDirs(cache.text_export(key), cache.image_export(key)))
    if precision == "int8":
        from ..model.imageort import quantized_graph

        quantized_graph(cache.image_export(key))
    with suppress(OSError):
        shutil.copyfile(mine.backend_choices, cache.backend_choices)
    return cache.image_export(key)


def _runner(chosen: dict, encoder, image_export: Path):
    """The encoder the model-only ceiling is timed with: the one the index run used."""
    from ..model.imageort import FastImageEncoder, index_threads

    if chosen["backend"] != "onnxruntime":
        return encoder if chosen["precision"] == encoder.precision else _cast(encoder, chosen)
    runner = FastImageEncoder.load(
        image_export, precision=chosen["precision"], threads=index_threads()
    )
    if runner is None:
        raise ClipsearchError(f"cannot open the image export in {image_export}")
    return runner


def _cast(encoder, chosen: dict):
    """A torch encoder in another precision (bf16 on a CPU that measured it faster)."""
    import copy

    from ..model.openclip import _dtype

    other = copy.copy(encoder)
    other.dtype = _dtype(chosen["precision"], encoder.device)
    other.model = copy.deepcopy(encoder.model).to(other.dtype)
    other.precision = chosen["precision"]
    return other


def _index_in_child(
    photos: Path,
    library: Path,
    model: str,
    checkpoint: str,
    device: str,
    batch: int | None,
    ray=None,
    *,
    backend: str = "auto",
    precision: str = "auto",
    cache: Path | None = None,
) -> dict:
    """Run the end-to-end index in a fresh process, so its memory is its own; its peak PSS
    (with the decode workers) is sampled from here.  `ray`: RayOptions to embed on a Ray
    cluster (bench/distributed.py); `cache`: the user cache the run gets."""
    shutil.rmtree(library, ignore_errors=True)  # a kept --workdir must not make it a re-index
    result = library.with_suffix(".json")
    job = dict(
        photos=str(photos),
        library=str(library),
        model=model,
        pretrained=checkpoint,
        device=device,
        batch_size=batch,
        backend=backend,
        precision=precision,
        result=str(result),
        ray=None if ray is None else dataclasses.asdict(ray),
    )
    env = dict(os.environ)
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache)
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipsearch.bench.index", json.dumps(job)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    peak_kb = _peak_pss_kb(proc)
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.wait() != 0:
        last = (stderr.strip().splitlines() or ["no message"])[-1]
        raise ClipsearchError(f"the benchmark's index run failed: {last}")
    return {**json.loads(result.read_text()), "peak_pss_mb": round(peak_kb / 1024, 1)}


def _peak_pss_kb(proc: subprocess.Popen) -> int:
    """Largest sum of PSS over `proc` and its descendants until it exits (0 without /proc)."""
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_pss_kb(proc.pid))
        time.sleep(0.2)
    return peak


def tree_pss_kb(pid: int) -> int:
    """Sum of PSS (kB) over `pid` and its descendants, from /proc (Linux)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        with suppress(OSError, ValueError):
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            total += sum(int(x.split()[1]) for x in rollup.splitlines() if x.startswith("Pss:"))
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text()
                todo += [int(c) for c in children.split()]
    return total


def _index_job(job: dict) -> dict:
    """The child's side: load the model, then time `Library.index` alone.

    Peak RSS of indexing: this process's peak from the moment the model is loaded (Linux
    resets the high-water mark on request; elsewhere the peak includes loading), plus, for the
    DataLoader workers (children this process has waited for), the largest one's peak times
    their number. Forked workers share the parent's pages (the model's weights among them) and
    both peaks count those pages, so the sum is an upper bound on what indexing really needed.
    """
    from ..indexing.distributed import RayOptions
    from ..indexing.pipeline import worker_plan
    from ..library import Library
    from ..model.factory import INDEX

    with Library.open(
        job["library"],
        model=job["model"],
        pretrained=job["pretrained"],
        device=job["device"],
        batch_size=job["batch_size"],
        create=True,
        backend=job.get("backend", "auto"),
        precision=job.get("precision", "auto"),
    ) as lib:
        ray = RayOptions(**job["ray"]) if job.get("ray") else None
        if ray:
            lib.encoders.device = "cpu"  # the driver's copy, as Library.index loads it for Ray
        encoder = lib.encoders.get(INDEX)
        workers = worker_plan(encoder.device).workers
        load_mb = _own_peak_mb()
        _reset_own_peak()
        start = time.perf_counter()
        report = lib.index([job["photos"]], max_megapixels="auto", ray=ray)
        seconds = time.perf_counter() - start
    if report.skipped or report.interrupted or report.unchanged:
        raise ClipsearchError(
            f"not a clean index run: {report.skipped} skipped, {report.unchanged} unchanged"
        )
    main_mb = _own_peak_mb()
    worker_mb = _max_rss_mb(resource.RUSAGE_CHILDREN)
    return {
        "seconds": seconds,
        "load_mb": load_mb,
        "main_mb": main_mb,
        "worker_mb": worker_mb,
        "peak_rss_mb": round(main_mb + workers * worker_mb, 1),
        "dim": encoder.dim,
        "ray": report.ray,
        "backend": report.backend,
    }


def _max_rss_mb(who: int) -> float:
    """ru_maxrss is in KiB on Linux (bytes on macOS)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return round(resource.getrusage(who).ru_maxrss * scale / 2**20, 1)


def _reset_own_peak() -> None:
    """Linux: start this process's high-water mark (VmHWM) afresh from its current RSS."""
    with suppress(OSError):  # not Linux: the peak keeps counting model loading
        Path("/proc/self/clear_refs").write_text("5")


def _own_peak_mb() -> float:
    """VmHWM, which the reset above moves; ru_maxrss where there is no /proc."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return _max_rss_mb(resource.RUSAGE_SELF)
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return round(int(line.split()[1]) / 1024, 1)


def _sample(paths: Sequence[str]) -> list[str]:
    """Up to FIDELITY_SAMPLE files spread evenly over the set (so over the scenes)."""
    step = max(len(paths) / FIDELITY_SAMPLE, 1.0)
    return [paths[int(i * step)] for i in range(min(FIDELITY_SAMPLE, len(paths)))]


def _fidelity(encoder, paths: Sequence[str]) -> tuple[float, float, list]:
    """(min PSNR in dB, min cosine, the draft tensors) of draft against full decodes."""
    import torch

    from ..photos.decode import load_image
    from .fidelity import psnr, tensor_range

    try:
        full = torch.stack([encoder.preprocess(load_image(p)) for p in paths])
        draft = [encoder.preprocess(load_image(p, min_side=encoder.image_size)) for p in paths]
    except ImageError as exc:
        raise ClipsearchError(f"cannot benchmark on unreadable photos: {exc}") from None
    data_range = tensor_range(encoder.preprocess)
    worst_psnr = min(psnr(f, d, data_range) for f, d in zip(full, draft, strict=True))
    cosines = (encoder.encode_images(full) * encoder.encode_images(torch.stack(draft))).sum(1)
    return worst_psnr, float(cosines.min()), draft


def _spread_fidelity(model: str, chosen: dict, paths: Sequence[str], out: Path) -> dict:
    """The index tower as the run used it (backend and precision) against open_clip's fp32
    `encode_image`, both on the same decoded photos, with random weights roughened
    (SPREAD_NOISE) so that photos spread apart; see the module docstring."""
    import torch

    from ..model.backend import fidelity_figures
    from ..model.base import normalised
    from ..model.imageort import FastImageEncoder, export_image_encoder
    from ..model.openclip import _dtype
    from ..model.spec import open_clip_module
    from ..photos.decode import load_image

    torch.manual_seed(0)
    net, _, transform = open_clip_module().create_model_and_transforms(model, pretrained=None)
    net.eval()
    with torch.no_grad():
        for param in net.parameters():
            param.add_(torch.randn_like(param), alpha=SPREAD_NOISE)
    side = min(net.visual.image_size) if isinstance(net.visual.image_size, tuple) else None
    images = [load_image(p, min_side=side or net.visual.image_size) for p in paths]
    batch = torch.stack([transform(image) for image in images])
    with torch.no_grad():
        reference = net.encode_image(batch, normalize=True).numpy()
        if chosen["backend"] == "onnxruntime":
            if not export_image_encoder(net, transform, out):
                raise ClipsearchError(f"{model} has no onnxruntime export")
            tower = FastImageEncoder.load(out, precision=chosen["precision"])
            vectors = tower.encode_images(np.stack([tower.preprocess(i) for i in images]))
        else:
            device = (
                "cuda" if chosen["precision"] == "fp16" and torch.cuda.is_available() else "cpu"
            )
            dtype = _dtype(chosen["precision"], device)
            cast = net.to(device, dtype)
            vectors = normalised(cast.encode_image(batch.to(device, dtype)).float().cpu().numpy())
    least, nearest, spread = fidelity_figures(reference, vectors)
    return {
        "fidelity_cosine": round(least, 6),
        "fidelity_nearest_own": nearest,
        "spread_mean_cosine": round(spread, 3) if spread is not None else None,
    }


def _model_only_ips(encoder, tensors: Sequence, count: int, batch: int) -> float:
    """Forward passes over `count` images in batches of `batch`, after one warm-up pass."""
    import torch

    full = torch.stack([tensors[i % len(tensors)] for i in range(batch)])
    if getattr(encoder, "torch_free", False):
        full = full.numpy()
    encoder.encode_images(full)
    start = time.perf_counter()
    for size in _batch_sizes(count, batch):
        encoder.encode_images(full[:size])
    return count / (time.perf_counter() - start)


def _naive_ips(encoder, paths: Sequence[str], batch: int) -> float:
    """rclip-style: each batch decoded in full by a thread pool, open_clip's transform, model.

    Uses torch's default thread count and the pool's default size, as a plain script would.
    """
    import torch

    from ..photos.decode import load_image

    torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    with ThreadPoolExecutor() as pool:
        for first in range(0, len(paths), batch):
            chunk = paths[first : first + batch]
            tensors = list(pool.map(lambda p: encoder.preprocess(load_image(p)), chunk))
            encoder.encode_images(torch.stack(tensors))
    return len(paths) / (time.perf_counter() - start)


def _batch_sizes(count: int, batch: int) -> list[int]:
    return [min(batch, count - first) for first in range(0, count, batch)]


def print_table(result: dict) -> None:
    """The few lines a person wants from `bench index` without --json."""
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column()
    psnr_db = "identical" if result["psnr_db"] is None else f"{result['psnr_db']:.1f} dB"
    rows = [
        ("model only", f"{result['model_only_ips']:.1f} img/s", "the ceiling"),
        ("end to end", f"{result['end_to_end_ips']:.1f} img/s", "files → vectors stored"),
        ("naive", f"{result['naive_ips']:.1f} img/s", "full decode in a thread pool"),
        ("vs ceiling", f"{result['ratio_model']:.2f}", ""),
        ("vs naive", f"{result['ratio_naive']:.2f}", ""),
        ("fidelity", psnr_db, f"cosine {result['cosine']:.5f} (worst file)"),
        (
            "backend",
            f"{result['backend']} {result['precision']}",
            f"cosine {result['fidelity_cosine']:.5f} to open_clip fp32, nearest own: "
            f"{result['fidelity_nearest_own']} (spread {result['spread_mean_cosine']})",
        ),
        ("peak memory", f"{result['peak_rss_mb']:.0f} MiB", "index run, workers included"),
        ("metadata", f"{result['metadata_ms']:.2f} ms", "per photo, in the decode workers"),
        ("backfill", f"{result['backfill_s']:.1f} s", f"{result['backfill_photos']} photos"),
    ]
    for row in rows:
        table.add_row(*row)
    Console().print(
        f"{result['images']} photos of {result['megapixels']} MP, {result['model']} on "
        f"{result['device']}, batch {result['batch_size']}, {result['workers']} decode "
        f"workers, {result['model_threads']} model threads ({result['backend_reason']})"
    )
    Console().print(table)


if __name__ == "__main__":
    _job = json.loads(sys.argv[1])
    Path(_job["result"]).write_text(json.dumps(_index_job(_job)))
