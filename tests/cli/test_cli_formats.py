"""Every supported format is indexed and found by an image query made from a PNG of the same
picture; EXIF orientation does not change an embedding; missing extras and videos are summed up."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, photo
from images import jpeg_bytes, make_dng, red_left_blue_right
from PIL import Image
from typer.testing import CliRunner

from clipsearch.cli import app
from clipsearch.library import Library
from clipsearch.photos import formats

runner = CliRunner()

# name, Pillow save parameters; each file shows its own picture (seed = position).
FORMATS = [
    ("photo.jpg", {"quality": 92}),
    ("photo.png", {}),
    ("photo.webp", {"quality": 90}),
    ("photo.gif", {}),
    ("photo.bmp", {}),
    ("photo.tif", {}),
    ("photo16.tiff", {}),
    ("photo.jp2", {}),
    ("photo.ppm", {}),
    ("photo.pgm", {}),
    ("photo.pbm", {}),
    ("photo.ico", {}),
    ("anim.webp", {"save_all": True, "duration": 100, "lossless": True}),
    ("anim.gif", {"save_all": True, "duration": 100}),
    ("photo.heic", {"quality": 90}),
    ("photo.avif", {"quality": 90}),
]


def write_format(path: Path, picture: Image.Image, params: dict) -> None:
    """Save `picture` as `path`'s format, in the mode that format stores photos in."""
    if path.suffix == ".heic":
        pytest.importorskip("pillow_heif").register_heif_opener()
    if path.name == "photo16.tiff":
        grey = np.asarray(picture.convert("L"), dtype=np.uint16) * 257
        Image.fromarray(grey).save(path)
        return
    mode = {".pgm": "L", ".pbm": "1", ".gif": "P"}.get(path.suffix, "RGB")
    frames = picture.convert(mode)
    if params.get("save_all"):
        other = Image.new(mode, picture.size)
        frames.save(path, append_images=[other], **params)
        return
    frames.save(path, **params)


def reference(picture: Image.Image, name: str) -> Image.Image:
    """The picture as the format keeps it, so the PNG query shows the same thing."""
    if name.endswith((".pgm", "16.tiff")):
        return picture.convert("L").convert("RGB")
    if name.endswith(".pbm"):
        return picture.convert("1").convert("RGB")
    return picture


@pytest.fixture()
def library_of_formats(tmp_path, tiny_checkpoint):
    root, queries = tmp_path / "formats", tmp_path / "queries"
    root.mkdir()
    queries.mkdir()
    for seed, (name, params) in enumerate(FORMATS):
        picture = photo(seed, (192, 144))
        write_format(root / name, picture, params)
        reference(picture, name).save(queries / f"{name}.png")
    raw_picture = photo(99, (192, 144))
    (root / "camera.dng").write_bytes(
        make_dng(red_left_blue_right(), preview=jpeg_bytes(raw_picture))
    )
    raw_picture.save(queries / "camera.dng.png")
    lib = Library.open(tmp_path / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True)
    yield lib, root, queries
    lib.close()


def test_every_format_is_indexed_and_found_by_its_png(library_of_formats):
    lib, root, queries = library_of_formats
    report = lib.index([root])
    assert report.new_problems == [] and report.indexed == len(FORMATS) + 1
    for query in sorted(queries.iterdir()):
        name = query.name.removesuffix(".png")
        hits = lib.search(str(query), top=1)
        assert hits[0].path == str(root / name), name


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_keeps_the_embedding(tmp_path, tiny_checkpoint, orientation):
    """Pixels stored turned, with the EXIF tag that turns them back: same embedding."""
    upright = photo(7, (192, 144))
    undo = {
        2: [Image.Transpose.FLIP_LEFT_RIGHT],
        3: [Image.Transpose.ROTATE_180],
        4: [Image.Transpose.FLIP_TOP_BOTTOM],
        5: [Image.Transpose.TRANSPOSE],
        6: [Image.Transpose.ROTATE_90],
        7: [Image.Transpose.TRANSVERSE],
        8: [Image.Transpose.ROTATE_270],
    }[orientation]
    stored = upright
    for step in undo:
        stored = stored.transpose(step)
    root = tmp_path / "o"
    root.mkdir()
    upright.save(root / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(root / "turned.png", exif=exif)
    with Library.open(
        tmp_path / "lib", model=TINY, pretrained=str(tiny_checkpoint), create=True
    ) as lib:
        lib.index([root])
        a = lib.embed_image(str(root / "upright.png"))
        b = lib.embed_image(str(root / "turned.png"))
    assert float(a @ b) >= 0.99


def test_missing_extras_and_videos_are_summed_up_once(tmp_path, home, tiny_checkpoint, monkeypatch):
    root = tmp_path / "mixed"
    root.mkdir()
    photo(1).save(root / "a.jpg")
    for i in range(3):
        (root / f"iphone{i}.HEIC").write_bytes(b"not decoded")
    (root / "clip.mp4").write_bytes(b"video")
    (root / "clip.MOV").write_bytes(b"video")
    monkeypatch.setattr(formats, "missing_extra", lambda ext: "heif" if ext == ".heic" else None)
    args = ["index", str(root), "--model", TINY, "--pretrained", str(tiny_checkpoint)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    assert "3 HEIC/HEIF/AVIF files skipped: install clipsearch[heif]" in result.stderr
    assert "2 videos ignored" in result.stderr
    assert result.stderr.count("iphone") == 0  # one summary line, not a line per file
    summary = json.loads(runner.invoke(app, [*args[:2], "--json"]).stdout)
    assert summary["missing_extras"] == {"heif": 3} and summary["videos"] == 2
