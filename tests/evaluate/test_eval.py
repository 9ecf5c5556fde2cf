"""`clipsearch eval`: recall and median rank on a captioned set, both ways.

A deterministic encoder whose right answers are known checks the figures exactly; the tiny
model with random weights checks that the real CLI lands near chance."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, photo, run_cli, save_photo
from fakes import PixelEncoder

from clipsearch.evaluate.metrics import retrieval_metrics
from clipsearch.library import Library


class CaptionEncoder(PixelEncoder):
    """PixelEncoder for images; the caption "photo N ..." means generated photo N, so the
    right image of every caption is known in advance."""

    def encode_texts(self, texts):
        seeds = [int(t.split()[1]) for t in texts]
        return self.encode_images([photo(seed, (320, 240)) for seed in seeds])


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption"])
        writer.writerows(rows)
    return path


@pytest.fixture()
def captioned(tmp_path) -> Path:
    """12 photos in images/ beside captions.csv; every photo has a right caption, and photos
    0 and 1 also a wrong one that describes the next photo."""
    (tmp_path / "images").mkdir()
    for seed in range(12):
        photo(seed, (320, 240)).save(tmp_path / "images" / f"p{seed}.png")
    rows = [(f"p{s}.png", f"photo {s} on a table") for s in range(12)]
    rows += [("p0.png", "photo 1 again"), ("p1.png", "photo 2 again")]
    return write_csv(tmp_path / "captions.csv", rows)


def test_metrics_count_ranks_both_ways() -> None:
    # 3 images (one-hot), 4 captions: caption 3 belongs to image 2 but points at image 0.
    images = np.eye(3, dtype=np.float32)
    texts = np.array([[1, 0, 0], [0, 1, 0], [0, 0.6, 0.8], [0.8, 0.1, 0.59]], np.float32)
    report = retrieval_metrics(texts, images, [0, 1, 2, 2])
    t2i, i2t = report["text_to_image"], report["image_to_text"]
    assert t2i["recall@1"] == 0.75 and t2i["median_rank"] == 1.0  # ranks 1, 1, 1, 3
    assert i2t["recall@1"] == 1.0  # image 2's best caption (0.8) tops the others (0.59)
    assert (report["images"], report["captions"]) == (3, 4)


def test_ties_count_against_the_answer() -> None:
    """A model that maps everything to one vector has learnt nothing: rank n, not 1."""
    same = np.ones((4, 2), np.float32) / np.sqrt(2)
    report = retrieval_metrics(same, same, [0, 1, 2, 3])
    assert report["text_to_image"]["recall@1"] == 0.0
    assert report["text_to_image"]["median_rank"] == 4.0


def test_known_answers_from_a_csv(captioned, tmp_path, tiny_checkpoint) -> None:
    with Library.open(
        tmp_path / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True
    ) as lib:
        lib.use_encoder(CaptionEncoder())
        report = lib.evaluate(captioned)
    t2i, i2t = report["text_to_image"], report["image_to_text"]
    assert (report["images"], report["captions"]) == (12, 14)
    assert t2i["recall@1"] == round(12 / 14, 4)  # the two wrong captions find the next photo
    assert t2i["recall@10"] >= t2i["recall@5"] >= t2i["recall@1"]
    assert t2i["median_rank"] == 1.0
    # photos 1 and 2 each tie with a wrong caption that describes them exactly: rank 2
    assert i2t == {
        "recall@1": round(10 / 12, 4),
        "recall@5": 1.0,
        "recall@10": 1.0,
        "median_rank": 1.0,
    }


def test_coco_json_gives_the_same_figures(captioned, tmp_path, tiny_checkpoint) -> None:
    rows = list(csv.reader(captioned.open()))[1:]
    names = sorted({name for name, _ in rows})
    coco = {
        "images": [{"id": 100 + i, "file_name": n} for i, n in enumerate(names)],
        "annotations": [
            {"id": k, "image_id": 100 + names.index(n), "caption": c}
            for k, (n, c) in enumerate(rows)
        ],
    }
    (tmp_path / "ann").mkdir()
    path = tmp_path / "ann" / "captions_val.json"
    path.write_text(json.dumps(coco))
    with Library.open(
        tmp_path / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True
    ) as lib:
        lib.use_encoder(CaptionEncoder())
        from_json = lib.evaluate(path, tmp_path / "images")
        from_csv = lib.evaluate(captioned)
    assert from_json == from_csv


def test_indexed_photos_reuse_their_stored_vectors(captioned, tmp_path, tiny_checkpoint) -> None:
    with Library.open(
        tmp_path / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True
    ) as lib:
        lib.use_encoder(CaptionEncoder())
        lib.index([tmp_path / "images"])
        calls = []
        encoder = lib.encoders.get("index")
        original = encoder.preprocess
        encoder.preprocess = lambda image: calls.append(1) or original(image)
        report = lib.evaluate(captioned)
    assert calls == [] and report["text_to_image"]["median_rank"] == 1.0


def test_random_weights_score_near_chance(tmp_path, home, tiny_checkpoint) -> None:
    n = 40
    rows = []
    for seed in range(n):
        save_photo(tmp_path / "images" / f"{seed}.jpg", seed)
        rows += [(f"{seed}.jpg", f"a picture number {seed} of a {w}") for w in ("dog", "park")]
    captions = write_csv(tmp_path / "captions.csv", rows)
    result = run_cli(
        "eval", str(captions), "--model", TINY, "--pretrained", str(tiny_checkpoint), "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["images"], report["captions"]) == (n, 2 * n)
    for way in ("text_to_image", "image_to_text"):
        # chance: recall@10 = 0.25, median rank = 20; a model that knew the answers: 1.0 and 1
        assert report[way]["recall@10"] <= 0.6
        assert report[way]["median_rank"] >= 6
    table = run_cli("eval", str(captions))
    assert table.returncode == 0 and b"text \xe2\x86\x92 image" in table.stdout


def test_bad_inputs_are_one_line_errors(tmp_path, home, tiny_checkpoint) -> None:
    save_photo(tmp_path / "images" / "a.jpg", 1)
    missing = write_csv(tmp_path / "captions.csv", [("a.jpg", "x"), ("b.jpg", "y")])
    headless = tmp_path / "plain.csv"
    headless.write_text("a.jpg,a dog\n")
    broken = tmp_path / "coco.json"
    broken.write_text('{"images": []}')
    args = ("--model", TINY, "--pretrained", str(tiny_checkpoint))
    for path, words in (
        (missing, b"1 of 2 captioned images are not in"),
        (headless, b"needs a header row"),
        (broken, b"is not a COCO captions file"),
        (tmp_path / "nope.csv", b"no such captions file"),
    ):
        result = run_cli("eval", str(path), *args)
        assert result.returncode == 2 and words in result.stderr, result.stderr
        assert len(result.stderr.splitlines()) == 1
