"""Near-duplicate grouping: real-looking copies group with their original, distinct photos don't."""

from __future__ import annotations

import io
import math
import random

import numpy as np
import pytest
from fakes import PIXEL_DUPE_THRESHOLD, PixelEncoder
from PIL import Image, ImageDraw, ImageFilter

from clipsearch.search import dupes
from clipsearch.search.dupes import find_groups


def photo_like(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A gradient sky, a few blurred shapes and sensor-like noise: not trivially compressible."""
    rng = random.Random(seed)
    w, h = size
    c0, c1 = (np.array([rng.randrange(256) for _ in range(3)], float) for _ in range(2))
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    t = np.clip(math.cos(angle) * (xx / w - 0.5) + math.sin(angle) * (yy / h - 0.5) + 0.5, 0, 1)
    image = Image.fromarray((c0 * (1 - t[..., None]) + c1 * t[..., None]).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        box = [x0, y0, x0 + rng.randrange(30, 160), y0 + rng.randrange(30, 120)]
        fill = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    noisy = np.asarray(image.filter(ImageFilter.GaussianBlur(1.5)), float)
    noisy += np.random.default_rng(seed).normal(0, 12, noisy.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def jpeg_q70(image: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=70)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def half_size(image: Image.Image) -> Image.Image:
    return image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)


def crop_5pct(image: Image.Image) -> Image.Image:
    """Cut 5% off the left and top: a shift as well as a rescale, the harder kind of crop."""
    dx, dy = round(image.width * 0.05), round(image.height * 0.05)
    return image.crop((dx, dy, image.width, image.height))


COPIES = {"q70": jpeg_q70, "half": half_size, "crop": crop_5pct}


@pytest.fixture(scope="module")
def library() -> tuple[np.ndarray, list[str]]:
    """Six originals; the first three each get a q70 re-encode, a half-size copy and a crop."""
    images, paths = [], []
    for seed in range(6):
        original = photo_like(seed)
        images.append(original)
        paths.append(f"/photos/p{seed}.png")
        if seed < 3:
            for name, make in COPIES.items():
                images.append(make(original))
                paths.append(f"/photos/p{seed}-{name}.jpg")
    return PixelEncoder().encode_images(images), paths


def test_encoder_rows_are_unit_float32(library: tuple[np.ndarray, list[str]]) -> None:
    vectors, paths = library
    assert vectors.shape == (len(paths), PixelEncoder.dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_each_original_groups_with_exactly_its_copies(
    library: tuple[np.ndarray, list[str]],
) -> None:
    vectors, paths = library
    groups = find_groups(vectors, paths, PIXEL_DUPE_THRESHOLD)
    found = sorted(sorted(g.paths) for g in groups)
    expected = sorted(
        sorted([f"/photos/p{seed}.png"] + [f"/photos/p{seed}-{n}.jpg" for n in COPIES])
        for seed in range(3)
    )
    assert found == expected


def test_groups_are_likeliest_first_with_valid_pairs(
    library: tuple[np.ndarray, list[str]],
) -> None:
    vectors, paths = library
    groups = find_groups(vectors, paths, PIXEL_DUPE_THRESHOLD)
    assert [g.best for g in groups] == sorted((g.best for g in groups), reverse=True)
    for group in groups:
        assert group.pairs
        assert group.best == max(score for _, _, score in group.pairs)
        for i, j, score in group.pairs:
            assert 0 <= i < j < len(group.paths)
            assert score >= PIXEL_DUPE_THRESHOLD
            a, b = paths.index(group.paths[i]), paths.index(group.paths[j])
            assert score == pytest.approx(float(vectors[a] @ vectors[b]), abs=1e-5)


def test_distinct_photos_stay_below_threshold() -> None:
    vectors = PixelEncoder().encode_images([photo_like(seed) for seed in range(100, 130)])
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -1.0)
    assert similarity.max() < PIXEL_DUPE_THRESHOLD
    assert find_groups(vectors, [f"/d/{k}" for k in range(30)], PIXEL_DUPE_THRESHOLD) == []


def test_flat_image_encodes_to_zeros_not_nan() -> None:
    vector = PixelEncoder().encode_images([Image.new("RGB", (40, 30), (90, 120, 200))])
    assert not np.isnan(vector).any()
    assert not vector.any()


def unit_circle(degrees: list[float]) -> np.ndarray:
    radians = np.radians(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


def test_a_burst_does_not_chain_into_one_group() -> None:
    """Ten shots 10 degrees apart: single linkage would make one group spanning 90 degrees."""
    vectors = unit_circle([10.0 * k for k in range(10)])
    paths = [f"/burst/{k:02d}.jpg" for k in range(10)]
    threshold = math.cos(math.radians(15))
    groups = find_groups(vectors, paths, threshold)
    assert len(groups) > 1
    assert sorted(p for g in groups for p in g.paths) == paths
    for group in groups:
        first, *rest = (paths.index(p) for p in group.paths)
        # Every member is at most two matches (20 degrees) from the group's centre.
        assert all(abs(first - other) <= 2 for other in rest)


def test_an_image_whose_match_was_claimed_still_gets_grouped() -> None:
    """X matches only B; B is taken by centre A, so X must join A's group, not vanish."""
    vectors = unit_circle([0.0, 20.0, -20.0, -25.0, 40.0])
    paths = ["/a", "/b", "/c", "/d", "/x"]
    groups = find_groups(vectors, paths, math.cos(math.radians(25)))
    assert len(groups) == 1
    assert groups[0].paths[0] == "/a"
    assert sorted(groups[0].paths) == sorted(paths)


def test_threshold_is_inclusive_and_empty_input_is_fine() -> None:
    vectors = np.array([[1.0, 0.0], [0.8, 0.6]], dtype=np.float32)
    threshold = float(vectors[0] @ vectors[1])
    [group] = find_groups(vectors, ["/a", "/b"], threshold)
    assert group.pairs == [(0, 1, pytest.approx(threshold))]
    assert find_groups(np.zeros((0, 4), np.float32), [], 0.9) == []


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="float32"):
        find_groups(np.zeros((2, 3)), ["/a", "/b"], 0.9)
    with pytest.raises(ValueError, match="paths"):
        find_groups(np.zeros((2, 3), np.float32), ["/a"], 0.9)


def test_chunked_queries_give_the_same_groups(
    library: tuple[np.ndarray, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors, paths = library
    whole = find_groups(vectors, paths, PIXEL_DUPE_THRESHOLD)
    monkeypatch.setattr(dupes, "QUERY_CHUNK", 4)
    assert find_groups(vectors, paths, PIXEL_DUPE_THRESHOLD) == whole
