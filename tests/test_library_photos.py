"""Library methods the web app builds on: photos by id, and queries with in-memory images."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, photo, save_photo

from clipsearch.errors import ClipsearchError
from clipsearch.library import Library


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_checkpoint) -> tuple[Path, Path]:
    """Six indexed photos; returns (photo folder, library folder)."""
    base = tmp_path_factory.mktemp("photos-api")
    photos, lib_dir = base / "Photos", base / "lib"
    for seed in range(6):
        save_photo(photos / f"p{seed}.jpg", seed=seed)
    with Library.open(lib_dir, model=TINY, pretrained=str(tiny_checkpoint), create=True) as lib:
        assert lib.index([photos]).indexed == 6
    return photos, lib_dir


def jpeg_bytes(seed: int) -> bytes:
    out = io.BytesIO()
    photo(seed).save(out, format="JPEG")
    return out.getvalue()


def test_ids_name_indexed_photos_only(library):
    photos, lib_dir = library
    paths = [str(photos / f"p{seed}.jpg") for seed in range(6)]
    with Library.open(lib_dir) as lib:
        ids = lib.photo_ids([*paths, str(photos / "missing.jpg"), "/etc/passwd"])
        assert sorted(ids) == sorted(paths)
        assert len(set(ids.values())) == 6
        assert all(lib.indexed_path(i) == p for p, i in ids.items())
        assert lib.indexed_path(max(ids.values()) + 1000) is None
        assert lib.indexed_path(-1) is None
        assert lib.photo_ids([]) == {}
        assert lib.roots() == [str(photos)]


def test_a_changed_or_swapped_file_is_not_handed_out(tmp_path, tiny_checkpoint):
    photos = tmp_path / "Photos"
    for seed in range(3):
        save_photo(photos / f"p{seed}.jpg", seed=seed)
    secret = save_photo(tmp_path / "secret.jpg", seed=9)
    with Library.open(
        tmp_path / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True
    ) as lib:
        lib.index([photos])
        ids = lib.photo_ids([str(photos / f"p{seed}.jpg") for seed in range(3)])
        edited, swapped, removed = (ids[str(photos / f"p{seed}.jpg")] for seed in range(3))
        st = os.stat(photos / "p0.jpg")
        os.utime(photos / "p0.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        (photos / "p1.jpg").unlink()
        (photos / "p1.jpg").symlink_to(secret)
        (photos / "p2.jpg").unlink()
        assert lib.indexed_path(edited) is None
        assert lib.indexed_path(swapped) is None
        assert lib.indexed_path(removed) is None


def test_generation_moves_with_commits(tmp_path, tiny_checkpoint):
    photos = tmp_path / "Photos"
    save_photo(photos / "a.jpg", seed=1)
    with Library.open(
        tmp_path / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True
    ) as lib:
        lib.index([photos])
        first = lib.generation
        lib.search("x")
        assert lib.generation == first  # reading does not move it
        save_photo(photos / "b.jpg", seed=2)
        lib.index([photos])
        assert lib.generation > first


def test_an_in_memory_photo_matches_its_indexed_copy(library):
    photos, lib_dir = library
    with Library.open(lib_dir) as lib:  # the torch-free image tower
        vector = lib.embed_image_data(jpeg_bytes(3))
        stored = lib.embed_image(str(photos / "p3.jpg"))
        assert float(vector @ stored) >= 0.9999
        hits = lib.search(vectors=[(1.0, vector)], top=2)
        assert hits[0].path == str(photos / "p3.jpg")
        mixed = lib.search("a photo", add=[str(photos / "p1.jpg")], vectors=[(2.0, vector)], top=6)
        assert len(mixed) == 6


def test_the_torch_encoder_embeds_in_memory_photos_too(tmp_path, tiny_checkpoint):
    photos = tmp_path / "Photos"
    save_photo(photos / "p.jpg", seed=4)
    with Library.open(
        tmp_path / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True
    ) as lib:
        lib.index([photos])  # loads the torch model, which then answers
        vector = lib.embed_image_data(jpeg_bytes(4))
        assert vector.dtype == np.float32
        assert float(vector @ lib.embed_image(str(photos / "p.jpg"))) >= 0.9999


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "empty file"), (b"hello, not a photo", "not an image file"), (jpeg_bytes(1)[:200], "")],
)
def test_unreadable_in_memory_data_is_a_clear_error(library, data, reason):
    _, lib_dir = library
    with Library.open(lib_dir) as lib, pytest.raises(ClipsearchError) as caught:
        lib.embed_image_data(data)
    assert str(caught.value).startswith("cannot read that image: ")
    assert reason in str(caught.value)


def test_vectors_alone_need_no_text(library):
    _, lib_dir = library
    with Library.open(lib_dir) as lib:
        with pytest.raises(ClipsearchError, match="empty query"):
            lib.search(top=3)
        vector = lib.embed_image_data(jpeg_bytes(2))
        with pytest.raises(ClipsearchError, match="cancel"):
            lib.search(vectors=[(1.0, vector), (-1.0, vector)])
