"""Decoding photos of every supported kind into upright RGB, and refusing bad files clearly."""

from __future__ import annotations

import builtins
import io
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from images import jpeg_bytes, make_dng, red_left_blue_right
from PIL import Image, ImageCms, features

from clipsearch.bench.fidelity import draft_psnr, psnr, tensor_range
from clipsearch.errors import ImageError
from clipsearch.photos import decode as imaging
from clipsearch.photos.decode import default_max_pixels, load_image

RED, GREEN, BLUE, YELLOW = (220, 30, 30), (30, 200, 60), (40, 60, 210), (230, 220, 40)


def quadrants(width: int = 64, height: int = 48) -> Image.Image:
    """Four distinct quadrants: any flip, rotation or channel swap shows up."""
    im = Image.new("RGB", (width, height), RED)
    im.paste(GREEN, (width // 2, 0, width, height // 2))
    im.paste(BLUE, (0, height // 2, width // 2, height))
    im.paste(YELLOW, (width // 2, height // 2, width, height))
    return im


def textured(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like image: smooth random blobs plus fine grain, so resampling has work to do."""
    rng = np.random.default_rng(seed)
    blobs = rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(blobs).resize((width, height), Image.Resampling.BICUBIC))
    grain = rng.integers(-12, 13, base.shape, dtype=np.int16)
    return Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8))


def coarse(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB").resize((8, 6), Image.Resampling.BOX), dtype=np.float64)


def assert_looks_like(actual: Image.Image, expected: Image.Image, tol: float = 10.0) -> None:
    assert actual.mode == "RGB"
    assert isinstance(actual, Image.Image)
    diff = np.abs(coarse(actual) - coarse(expected))
    assert diff.mean() < tol, f"mean difference {diff.mean():.1f}"


def kept_enough(im: Image.Image, min_side: int) -> bool:
    """Shrunk no further than the fidelity margin allows (less one pixel of rounding)."""
    return min(im.size) >= imaging.DRAFT_MARGIN * min_side - 1


def save(tmp_path: Path, name: str, im: Image.Image, **params: object) -> Path:
    path = tmp_path / name
    im.save(path, **params)
    return path


# --- formats -------------------------------------------------------------------------------

STILL_FORMATS = [
    ("a.jpg", {"quality": 95}),
    ("a.png", {}),
    ("a.webp", {"quality": 90}),
    ("a.gif", {}),
    ("a.bmp", {}),
    ("a.tif", {}),
    ("a.tiff", {"compression": "tiff_lzw"}),
    ("a.jp2", {}),
    ("a.ppm", {}),
    ("a.ico", {}),
]


@pytest.mark.parametrize(("name", "params"), STILL_FORMATS)
def test_decodes_each_pillow_format(tmp_path: Path, name: str, params: dict) -> None:
    path = save(tmp_path, name, quadrants(), **params)
    assert_looks_like(load_image(path), quadrants())


@pytest.mark.parametrize(("name", "mode"), [("g.pgm", "L"), ("b.pbm", "1"), ("g.png", "L")])
def test_decodes_grey_and_bilevel(tmp_path: Path, name: str, mode: str) -> None:
    source = quadrants().convert(mode)
    im = load_image(save(tmp_path, name, source))
    assert_looks_like(im, source.convert("RGB"))


def test_content_sniffed_not_extension(tmp_path: Path) -> None:
    path = save(tmp_path, "really_a_png.jpg", quadrants(), format="PNG")
    assert_looks_like(load_image(path), quadrants())


def test_heic(tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info()["HEIF"]:
        pytest.skip("libheif has no HEVC encoder")
    pillow_heif.register_heif_opener()
    path = save(tmp_path, "a.heic", quadrants(), quality=95)
    assert_looks_like(load_image(path), quadrants())


def test_avif(tmp_path: Path) -> None:
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF encoder")
    path = save(tmp_path, "a.avif", quadrants(), quality=95)
    assert_looks_like(load_image(path), quadrants())


def test_missing_extra_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imaging.formats, "missing_extra", lambda ext: "heif")
    path = tmp_path / "a.heic"
    path.write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 32)
    with pytest.raises(
        ImageError, match=r"HEIF support not installed: pip install 'clipsearch\[heif\]'"
    ):
        load_image(path)


def inverted(im: Image.Image) -> Image.Image:
    return Image.eval(im, lambda v: 255 - v)


@pytest.mark.parametrize(("name", "params"), [("a.gif", {}), ("a.webp", {"lossless": True})])
def test_animation_gives_first_frame(tmp_path: Path, name: str, params: dict) -> None:
    first = quadrants()
    path = save(tmp_path, name, first, save_all=True, append_images=[inverted(first)], **params)
    with Image.open(path) as check:
        assert check.n_frames == 2
    assert_looks_like(load_image(path), first)


def test_multipage_tiff_gives_first_page(tmp_path: Path) -> None:
    first = quadrants()
    path = save(tmp_path, "a.tif", first, save_all=True, append_images=[inverted(first)])
    assert_looks_like(load_image(path), first)


# --- modes ---------------------------------------------------------------------------------


def test_16_bit_tiff_and_png_scale_to_8_bit(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (48, 1))
    for name in ("g16.tif", "g16.png"):
        im = load_image(save(tmp_path, name, Image.fromarray(ramp)))
        pixels = np.asarray(im)
        assert pixels[0, 0].tolist() == [0, 0, 0]
        assert pixels[0, -1].tolist() == [255, 255, 255]
        assert abs(int(pixels[0, 32, 0]) - round(ramp[0, 32] / 257)) <= 1


def test_float_tiff_scales_unit_range(tmp_path: Path) -> None:
    values = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (48, 1))
    pixels = np.asarray(load_image(save(tmp_path, "f.tif", Image.fromarray(values, mode="F"))))
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255
    assert abs(int(pixels[0, 32, 1]) - round(values[0, 32] * 255)) <= 1


def test_32_bit_integer_tiff(tmp_path: Path) -> None:
    values = np.tile(np.linspace(0, 65535, 64).astype(np.int32), (48, 1))
    pixels = np.asarray(load_image(save(tmp_path, "i.tif", Image.fromarray(values, mode="I"))))
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255


def test_16_bit_rgb_tiff(tmp_path: Path) -> None:
    rgb16 = np.asarray(quadrants(), dtype=np.uint16) * 257
    path = tmp_path / "rgb16.tif"
    Image.frombytes("RGB", (64, 48), rgb16.astype(">u2").tobytes(), "raw", "RGB;16B").save(path)
    assert_looks_like(load_image(path), quadrants(), tol=2)


def test_alpha_composites_onto_grey(tmp_path: Path) -> None:
    rgba = quadrants().convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 32, 24))  # top-left fully transparent black
    pixels = np.asarray(load_image(save(tmp_path, "a.png", rgba)))
    assert pixels[5, 5].tolist() == [128, 128, 128]
    assert pixels[40, 60].tolist() == list(YELLOW)


def test_half_transparent_blends_with_grey(tmp_path: Path) -> None:
    la = Image.new("LA", (16, 16), (255, 128))
    pixels = np.asarray(load_image(save(tmp_path, "la.png", la)))
    assert abs(int(pixels[8, 8, 0]) - 192) <= 1


def test_palette_with_transparency(tmp_path: Path) -> None:
    pal = quadrants().quantize(colors=4)
    transparent = pal.getpixel((0, 0))
    path = save(tmp_path, "p.png", pal, transparency=transparent)
    pixels = np.asarray(load_image(path))
    assert pixels[0, 0].tolist() == [128, 128, 128]
    assert pixels[47, 63].tolist() == list(YELLOW)
    gif = np.asarray(load_image(save(tmp_path, "p.gif", pal, transparency=transparent)))
    assert gif[0, 0].tolist() == [128, 128, 128]


@pytest.mark.parametrize("name", ["cmyk.jpg", "cmyk.tif"])
def test_cmyk(tmp_path: Path, name: str) -> None:
    cmyk = quadrants(640, 480).convert("CMYK")  # Pillow writes Adobe-inverted CMYK JPEGs
    path = save(tmp_path, name, cmyk)
    assert_looks_like(load_image(path), cmyk.convert("RGB"), tol=6)
    small = load_image(path, min_side=64)  # JPEG: drafted; TIFF: shrunk in CMYK
    assert kept_enough(small, 64) and min(small.size) < 480
    assert_looks_like(small, cmyk.convert("RGB"), tol=6)


def rgb_profile(primaries: tuple[tuple[float, float, float], ...], name: str) -> bytes:
    """A minimal ICC v2 matrix/TRC display profile with the given XYZ columns and gamma 2.2."""

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(v: tuple[float, float, float]) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(s15(c) for c in v)

    text = name.encode() + b"\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + b"\0" * 12 + b"\0" * 67
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(2.2 * 256)) + b"\0\0"
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz((0.9642, 1.0, 0.8249))),
        (b"rXYZ", xyz(primaries[0])),
        (b"gXYZ", xyz(primaries[1])),
        (b"bXYZ", xyz(primaries[2])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text\0\0\0\0none\0\0\0\0"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body + b"\0" * (-len(body) % 4)
    size = offset + len(data)
    header = (
        struct.pack(">I", size)
        + b"none"
        + b"\x02\x10\0\0"
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + b"\0" * 4
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
        + b"\0" * 48
    )
    return header + struct.pack(">I", len(tags)) + table + data


# sRGB's D50-adapted primaries, as the columns of its RGB-to-XYZ matrix.
SRGB_PRIMARIES = ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141))


def test_icc_profile_converted_to_srgb(tmp_path: Path) -> None:
    r, g, b = SRGB_PRIMARIES
    swapped = rgb_profile((b, g, r), "Swapped red and blue")  # stored red means sRGB blue
    ImageCms.ImageCmsProfile(io.BytesIO(swapped))  # the profile itself must be valid
    im = Image.new("RGB", (16, 16), (200, 20, 20))
    red, green, blue = np.asarray(load_image(save(tmp_path, "p.png", im, icc_profile=swapped)))[
        8, 8
    ]
    assert blue > 150 and red < 80


def test_broken_icc_profile_is_ignored(tmp_path: Path) -> None:
    im = quadrants()
    path = save(tmp_path, "p.jpg", im, quality=95, icc_profile=b"not a profile" * 10)
    assert_looks_like(load_image(path), im)


# --- orientation ---------------------------------------------------------------------------

# The transform that, applied to an upright picture, gives what a camera stores with this tag.
STORED_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def stored(upright: Image.Image, orientation: int) -> tuple[Image.Image, bytes]:
    op = STORED_FOR_ORIENTATION[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    return (upright.transpose(op) if op is not None else upright.copy()), exif.tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_jpeg(tmp_path: Path, orientation: int) -> None:
    pixels, exif = stored(quadrants(), orientation)
    path = save(tmp_path, "o.jpg", pixels, quality=95, exif=exif)
    im = load_image(path)
    assert im.size == (64, 48)
    assert_looks_like(im, quadrants())


@pytest.mark.parametrize("name", ["o.png", "o.webp", "o.heic", "o.avif"])
def test_exif_orientation_other_formats(tmp_path: Path, name: str) -> None:
    if name.endswith(".heic"):
        pytest.importorskip("pillow_heif").register_heif_opener()
    if name.endswith(".avif") and not features.check("avif"):
        pytest.skip("this Pillow has no AVIF encoder")
    pixels, exif = stored(quadrants(), 6)
    im = load_image(save(tmp_path, name, pixels, exif=exif))
    assert im.size == (64, 48)
    assert_looks_like(im, quadrants())


def test_tiff_orientation_tag(tmp_path: Path) -> None:
    pixels, _ = stored(quadrants(), 8)
    assert_looks_like(load_image(save(tmp_path, "o.tif", pixels, tiffinfo={274: 8})), quadrants())


def test_orientation_applied_after_draft(tmp_path: Path) -> None:
    upright = quadrants(2048, 1536)
    pixels, exif = stored(upright, 6)
    im = load_image(save(tmp_path, "o.jpg", pixels, quality=90, exif=exif), min_side=224)
    assert im.width > im.height and min(im.size) >= 224
    assert_looks_like(im, upright)


# --- draft decoding and fidelity -----------------------------------------------------------


def test_draft_shrinks_large_jpeg_but_keeps_min_side(tmp_path: Path) -> None:
    path = save(tmp_path, "big.jpg", textured(2400, 1800), quality=90)
    im = load_image(path, min_side=224)
    assert im.size < (2400, 1800) and min(im.size) >= 224
    assert im.size == (600, 450)  # 1/4: 1/8 would leave 225, under the fidelity margin
    assert load_image(path).size == (2400, 1800)


def test_draft_of_odd_size_keeps_model_geometry(tmp_path: Path) -> None:
    path = save(tmp_path, "odd.jpg", textured(2403, 1797), quality=90)
    width, height = load_image(path, min_side=224).size
    assert min(width, height) >= 224
    assert int(224 * width / height) == int(224 * 2403 / 1797)


def test_mpo_is_drafted_like_jpeg(tmp_path: Path) -> None:
    first = quadrants(640, 480)
    path = save(tmp_path, "m.jpg", first, format="MPO", save_all=True, append_images=[first])
    with Image.open(path) as check:
        assert check.format == "MPO"
    im = load_image(path, min_side=64)
    assert kept_enough(im, 64) and min(im.size) < 480
    assert_looks_like(im, first)


def test_small_images_are_not_shrunk(tmp_path: Path) -> None:
    path = save(tmp_path, "small.jpg", textured(400, 300), quality=90)
    assert load_image(path, min_side=224).size == (400, 300)


def test_large_non_jpeg_is_shrunk(tmp_path: Path) -> None:
    path = save(tmp_path, "big.bmp", textured(1603, 1200))
    width, height = load_image(path, min_side=100).size
    assert height == math.ceil(imaging.DRAFT_MARGIN * 100)
    assert int(100 * width / height) == int(100 * 1603 / 1200)


@pytest.mark.slow  # importing open_clip (and torch) takes seconds
@pytest.mark.parametrize(
    ("name", "size"),
    [("t.jpg", (2000, 1500)), ("odd.jpg", (2003, 1497)), ("t.bmp", (2000, 1500))],
)
def test_draft_fidelity_through_model_preprocessing(
    tmp_path: Path, name: str, size: tuple[int, int]
) -> None:
    open_clip = pytest.importorskip("open_clip")
    preprocess = open_clip.image_transform(224, is_train=False)
    path = save(tmp_path, name, textured(*size), quality=90)
    assert load_image(path, min_side=224).size < size
    assert draft_psnr(path, preprocess, 224) >= 40.0


def test_psnr_known_values() -> None:
    a = np.zeros((4, 4))
    assert psnr(a, a + 0.1, data_range=1.0) == pytest.approx(20.0)
    assert psnr(a, a + 1.0, data_range=10.0) == pytest.approx(20.0)
    assert psnr(a, a, data_range=1.0) == math.inf
    b = a.copy()
    b[0, 0] = 4.0  # MSE = 16 / 16 = 1
    assert psnr(a, b, data_range=255.0) == pytest.approx(20 * math.log10(255))
    with pytest.raises(ValueError):
        psnr(a, np.zeros(3), data_range=1.0)


class Normalize:
    """Stands in for torchvision's Normalize, which tensor_range finds by name."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean, self.std = mean, std


class Compose:
    def __init__(self, transforms: list[object]) -> None:
        self.transforms = transforms


@pytest.mark.slow  # imports torch
def test_psnr_accepts_tensors() -> None:
    torch = pytest.importorskip("torch")
    assert psnr(torch.zeros(3, 2), torch.full((3, 2), 0.01), 1.0) == pytest.approx(40.0)


def test_tensor_range_spans_normalised_pixels() -> None:
    preprocess = Compose([object(), Normalize((0.5, 0.25), (0.5, 0.25))])
    # channel 0 spans -1..1, channel 1 spans -1..3: the tensor spans -1..3
    assert tensor_range(preprocess) == pytest.approx(4.0)
    assert tensor_range(Compose([])) == 1.0


# --- RAW -----------------------------------------------------------------------------------


def test_raw_demosaics_half_size_upright(tmp_path: Path) -> None:
    pytest.importorskip("rawpy")
    path = tmp_path / "a.dng"
    path.write_bytes(make_dng(red_left_blue_right(), orientation=6))
    im = load_image(path)
    assert im.mode == "RGB" and im.size == (32, 48)  # half size, turned upright
    shrunk = load_image(path, min_side=8)  # then shrunk like any other image
    assert kept_enough(shrunk, 8) and shrunk.size < (32, 48)
    top, bottom = np.asarray(im)[4, 16].astype(int), np.asarray(im)[-4, 16].astype(int)
    assert top[0] > top[2] + 60  # the scene's left (red) is now on top
    assert bottom[2] > bottom[0] + 60


def test_raw_uses_large_enough_preview(tmp_path: Path) -> None:
    pytest.importorskip("rawpy")
    path = tmp_path / "a.cr2.dng"
    preview = jpeg_bytes(quadrants(300, 200))
    path.write_bytes(make_dng(red_left_blue_right(), orientation=3, preview=preview))
    im = load_image(path, min_side=150)
    assert im.size == (300, 200)
    assert_looks_like(im, quadrants(300, 200).transpose(Image.Transpose.ROTATE_180))
    assert load_image(path).size == (48, 32)  # no min_side: a 200-pixel preview is too small
    assert load_image(path, min_side=250).size == (48, 32)


def test_raw_rejects_over_limit(tmp_path: Path) -> None:
    pytest.importorskip("rawpy")
    path = tmp_path / "a.dng"
    path.write_bytes(make_dng(red_left_blue_right()))
    with pytest.raises(ImageError, match="megapixel limit"):
        load_image(path, max_pixels=1000)


def test_corrupt_raw(tmp_path: Path) -> None:
    pytest.importorskip("rawpy")
    path = tmp_path / "a.nef"
    path.write_bytes(b"II*\0" + os.urandom(200))
    with pytest.raises(ImageError):
        load_image(path)


# --- bad files -----------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        load_image(tmp_path / "e.jpg")


@pytest.mark.parametrize("min_side", [None, 224])
def test_truncated_jpeg(tmp_path: Path, min_side: int | None) -> None:
    data = save(tmp_path, "t.jpg", textured(640, 480), quality=90).read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated JPEG"):
        load_image(tmp_path / "t.jpg", min_side=min_side)


def test_truncated_png(tmp_path: Path) -> None:
    data = save(tmp_path, "t.png", textured(320, 240)).read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated PNG"):
        load_image(tmp_path / "t.png")


@pytest.mark.parametrize(
    "content",
    [b"just some notes\n" * 20, b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"],
)
def test_not_an_image(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "n.jpg").write_bytes(content)
    with pytest.raises(ImageError, match="not an image file"):
        load_image(tmp_path / "n.jpg")


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims this size, with no real pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"x") + chunk(b"IEND", b"")


def test_zero_width(tmp_path: Path) -> None:
    (tmp_path / "z.png").write_bytes(png_header(0, 10))
    with pytest.raises(ImageError, match="corrupt PNG header"):
        load_image(tmp_path / "z.png")
    with pytest.raises(ImageError, match="zero width or height"):
        imaging._check_size((0, 10), None)


def test_decompression_bomb_checked_before_decoding(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(png_header(30000, 30000))
    message = "image is 900 megapixels, over the 179-megapixel limit (--max-megapixels)"
    with pytest.raises(ImageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_image(tmp_path / "bomb.png", max_pixels=178_956_970)


def test_pillow_limit_replaced_by_ours(tmp_path: Path) -> None:
    assert Image.MAX_IMAGE_PIXELS is None
    (tmp_path / "big.png").write_bytes(png_header(20000, 10000))  # over Pillow's own 179 MP
    with pytest.raises(ImageError) as caught:
        load_image(tmp_path / "big.png", max_pixels=10**9)
    assert "megapixel" not in str(caught.value)  # it got as far as decoding the (bogus) data


def test_within_limit_decodes(tmp_path: Path) -> None:
    path = save(tmp_path, "a.png", quadrants())
    assert load_image(path, max_pixels=64 * 48).size == (64, 48)
    with pytest.raises(ImageError, match="megapixel limit"):
        load_image(path, max_pixels=64 * 48 - 1)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "gone.jpg")


def test_file_vanishes_after_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(tmp_path, "a.png", quadrants())
    real_open = builtins.open

    def vanish(file: object, *args: object, **kwargs: object) -> object:
        if os.fspath(file) == os.fspath(path):  # type: ignore[arg-type]
            raise FileNotFoundError(2, "No such file or directory")
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", vanish)
    with pytest.raises(ImageError, match="file not found"):
        load_image(path)


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(tmp_path, "a.png", quadrants())
    if os.geteuid() != 0:
        path.chmod(0)
        with pytest.raises(ImageError, match="permission denied"):
            load_image(path)
        path.chmod(0o644)
    real_open = builtins.open

    def deny(file: object, *args: object, **kwargs: object) -> object:
        if os.fspath(file) == os.fspath(path):  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(ImageError, match="permission denied"):
        load_image(path)


def test_directory_and_fifo_do_not_hang(tmp_path: Path) -> None:
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path / "dir.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path / "pipe.jpg")


def test_returned_image_is_detached(tmp_path: Path) -> None:
    path = save(tmp_path, "a.gif", quadrants(), save_all=True, append_images=[quadrants()])
    im = load_image(path)
    path.unlink()
    assert im.getpixel((0, 0)) == RED and not hasattr(im, "fp")


# --- memory limit --------------------------------------------------------------------------


def test_default_max_pixels_follows_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    assert 64_000_000 <= default_max_pixels() <= 1_000_000_000
    monkeypatch.setattr(imaging, "_available_memory", lambda: 4_800_000_000)
    assert default_max_pixels() == 200_000_000
    monkeypatch.setattr(imaging, "_available_memory", lambda: 100_000_000)
    assert default_max_pixels() == 64_000_000
    monkeypatch.setattr(imaging, "_available_memory", lambda: 10**13)
    assert default_max_pixels() == 1_000_000_000


@pytest.mark.parametrize(
    ("size", "fmt"), [((1, 100_000), "PNG"), ((100_000, 1), "PNG"), ((65_000, 2), "JPEG")]
)
def test_extreme_aspect_ratio_is_cut_before_any_resize(
    tmp_path: Path, size: tuple[int, int], fmt: str
) -> None:
    """A 475-byte 1 x 100000 PNG became 224 x 22.4M pixels (12 GB) in the model's resize."""
    path = tmp_path / f"strip.{fmt.lower()}"
    Image.new("RGB", size, RED).save(path, fmt)

    image = load_image(path, min_side=224, max_pixels=10**6)

    assert max(image.size) <= imaging.MAX_ASPECT * min(image.size)
    assert image.getpixel((0, 0))[0] > 180


def test_panorama_within_the_aspect_limit_is_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "pano.png"
    Image.new("RGB", (1600, 200), RED).save(path)

    assert load_image(path, min_side=100).size == (1600, 200)


@pytest.mark.slow
def test_strip_image_decodes_and_preprocesses_in_bounded_memory(tmp_path: Path) -> None:
    """End to end through open_clip's resize and centre crop, in a child allowed 2 GB more."""
    import subprocess
    import sys

    path = tmp_path / "strip.png"
    Image.new("RGB", (1, 100_000), RED).save(path)
    code = (
        "import resource, sys\n"
        "from torchvision import transforms as T\n"
        "from clipsearch.photos.decode import load_image\n"
        "used = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + (2 << 30), used + (2 << 30)))\n"
        "image = load_image(sys.argv[1], min_side=224, max_pixels=10**6)\n"
        "tensor = T.Compose([T.Resize(224), T.CenterCrop(224), T.ToTensor()])(image)\n"
        "print(tuple(tensor.shape))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sys.path),
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        },
    )
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.strip() == "(3, 224, 224)"
