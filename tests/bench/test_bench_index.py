"""`clipsearch bench index`: its report is complete and self-consistent, its fidelity math is
right, its synthetic photos are what it claims, and an unchanged library re-indexes for free."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, photo
from PIL import Image
from typer.testing import CliRunner

from clipsearch.bench import index as benchindex
from clipsearch.bench.fidelity import draft_psnr, psnr
from clipsearch.cli import app
from clipsearch.indexing.pipeline import WorkerPlan, ramped_batches, worker_plan
from clipsearch.photos.decode import load_image

KEYS = {
    "model_only_ips": float,
    "end_to_end_ips": float,
    "naive_ips": float,
    "ratio_model": float,
    "ratio_naive": float,
    "cosine": float,
    "peak_rss_mb": float,
    "device": str,
    "model": str,
    "images": int,
    "megapixels": float,
    "batch_size": int,
    "workers": int,
    "model_threads": int,
    "backend": str,
    "precision": str,
    "backend_reason": str,
    "fidelity_cosine": float,
    "fidelity_nearest_own": bool,
    "spread_mean_cosine": float,
    "peak_pss_mb": float,
    "metadata_ms": float,
    "metadata_share": float,
    "backfill_s": float,
    "reindex_after_backfill_s": float,
    "backfill_photos": int,
}


@pytest.mark.slow  # model loads and real index runs
def test_bench_index_reports_every_figure(tmp_path: Path) -> None:
    args = ["bench", "index", "--synthetic", "6", "--megapixels", "0.3", "--model", TINY]
    args += ["--backfill", "50"]
    for _ in range(2):  # a kept work folder is indexed afresh each time
        result = CliRunner().invoke(app, [*args, "--workdir", str(tmp_path), "--json"])
        assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key, kind in KEYS.items():
        assert isinstance(report[key], kind), key
    assert report["model"] == TINY and report["device"] == "cpu" and report["images"] == 6
    assert (report["backend"], report["precision"]) == ("onnxruntime", "fp32")  # the CPU default
    assert report["fidelity_cosine"] >= 0.999
    assert report["megapixels"] == pytest.approx(0.3, rel=0.05)
    for key in ("model_only_ips", "end_to_end_ips", "naive_ips", "peak_rss_mb"):
        assert report[key] > 0, key
    assert report["ratio_model"] == round(report["end_to_end_ips"] / report["model_only_ips"], 3)
    assert report["ratio_naive"] == round(report["end_to_end_ips"] / report["naive_ips"], 3)
    assert report["psnr_db"] is None or report["psnr_db"] >= 30
    assert 0.99 <= report["cosine"] <= 1.0 + 1e-6
    assert report["workers"] >= 1 and report["model_threads"] >= 1
    assert report["backfill_photos"] == 50 and 0 < report["metadata_share"] < 1


@pytest.mark.parametrize(("count", "batch"), [(0, 32), (3, 32), (100, 32), (1000, 256), (9, 2)])
def test_ramped_batches_cover_every_file_once_in_order(count: int, batch: int) -> None:
    batches = ramped_batches(count, batch)
    assert [i for b in batches for i in b] == list(range(count))
    sizes = [len(b) for b in batches]
    assert sizes == sorted(sizes[:-1]) + sizes[-1:]  # growing, but for a short last one
    assert all(size <= batch for size in sizes)
    assert count < 100 or sizes.count(batch) >= len(sizes) - 7  # soon full batches


@pytest.mark.parametrize(
    ("device", "cores", "plan"),
    [
        ("cpu", 1, WorkerPlan(1, 1)),
        ("cpu", 2, WorkerPlan(1, 2)),  # the decode worker shares the cores with the model
        ("cpu", 8, WorkerPlan(2, 6)),
        ("cuda", 16, WorkerPlan(12, 1)),
    ],
)
def test_worker_plan(device: str, cores: int, plan: WorkerPlan) -> None:
    assert worker_plan(device, cores) == plan


def test_images_as_they_are_refuse_synthetic(tmp_path: Path) -> None:
    with pytest.raises(benchindex.ClipsearchError, match="--megapixels"):
        benchindex.photo_folder(tmp_path, 5, None, tmp_path)


def test_psnr_identical_is_infinite_and_known_mse() -> None:
    a = np.zeros((3, 8, 8))
    assert psnr(a, a, data_range=1.0) == math.inf
    assert psnr(a, a + 0.01, data_range=1.0) == pytest.approx(40.0)  # MSE 1e-4


@pytest.mark.slow  # imports open_clip
def test_draft_fidelity_on_a_synthetic_scene(tmp_path: Path) -> None:
    open_clip = pytest.importorskip("open_clip")
    path = tmp_path / "scene.jpg"
    path.write_bytes(benchindex._jpeg_bytes(benchindex._scene(3, (2000, 1500)), 0))
    assert load_image(path, min_side=224).size < (2000, 1500)  # really drafted
    preprocess = open_clip.image_transform(224, is_train=False)
    assert draft_psnr(path, preprocess, 224) >= 40.0


def test_synthetic_photos_are_distinct_jpegs_of_the_size_asked(tmp_path: Path) -> None:
    folder = benchindex.photo_folder(tmp_path, 10, 0.05, None)
    files = sorted(folder.iterdir())
    assert len(files) == 10
    assert len({f.read_bytes() for f in files}) == 10  # no two files identical
    with Image.open(files[0]) as im:
        assert im.format == "JPEG" and im.size[0] * 3 == im.size[1] * 4
        assert im.size[0] * im.size[1] == pytest.approx(0.05e6, rel=0.1)
    grey = np.asarray(load_image(files[0]).convert("L"), dtype=float)
    assert grey.std() > 10  # photo-like content, not a flat colour


def test_resized_copies_of_given_photos(tmp_path: Path) -> None:
    given = tmp_path / "given"
    given.mkdir()
    for seed in range(2):
        photo(seed).save(given / f"{seed}.jpg")
    folder = benchindex.photo_folder(tmp_path / "work", 3, 0.1, given)
    files = sorted(folder.iterdir())
    assert len(files) == 3
    with Image.open(files[0]) as im:
        assert im.size[0] * im.size[1] == pytest.approx(0.1e6, rel=0.05)


def test_comment_keeps_pixels_and_exif(tmp_path: Path) -> None:
    plain = benchindex._jpeg_bytes(photo(1), 1)  # odd index: portrait by EXIF orientation
    path = tmp_path / "c.jpg"
    path.write_bytes(benchindex.with_comment(plain, b"hello"))
    with Image.open(path) as im:
        assert im.info["comment"] == b"hello"
        assert im.getexif()[0x0112] == 6
    (tmp_path / "p.jpg").write_bytes(plain)
    assert np.array_equal(np.asarray(load_image(path)), np.asarray(load_image(tmp_path / "p.jpg")))


@pytest.mark.slow  # a real first index with the tiny model
def test_unchanged_library_reindexes_without_decoding_or_model(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipsearch.library import Library
    from clipsearch.model import openclip as encoder
    from clipsearch.photos import decode as imaging

    photos = tmp_path / "photos"
    for i in range(300):
        folder = photos / f"d{i // 100}"
        folder.mkdir(parents=True, exist_ok=True)
        photo(i, (32, 24)).save(folder / f"{i}.jpg")
    lib_dir = tmp_path / "lib"
    with Library.open(lib_dir, model=TINY, pretrained=str(tiny_checkpoint), create=True) as lib:
        assert lib.index([photos]).indexed == 300

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("an unchanged library must not decode images or load the model")

    monkeypatch.setattr(imaging, "load_image", forbidden)
    monkeypatch.setattr(encoder.ClipEncoder, "__init__", forbidden)
    with Library.open(lib_dir) as lib:
        report = lib.index([photos])
    assert (report.indexed, report.unchanged, report.skipped) == (0, 300, 0)
