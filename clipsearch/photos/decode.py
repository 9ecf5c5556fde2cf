"""Decode one photo file into an upright 8-bit RGB image, quickly and without surprises.

This runs in DataLoader workers during indexing, so every failure becomes an ImageError with a
short reason (indexing skips the file), and JPEGs are shrunk while decoding (libjpeg's DCT
scaling) because the model only ever looks at a few hundred pixels per side.
"""

from __future__ import annotations

import functools
import io
import math
import os
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import numpy as np
from PIL import ExifTags, Image

from ..errors import ImageError, os_reason
from . import formats
from .metadata import EMPTY as EMPTY_META
from .metadata import PhotoMeta, for_decoded

# Our max_pixels check (run on the header size before any pixel is decoded) replaces Pillow's
# global one, which would reject big panoramas with a message that names none of our options.
Image.MAX_IMAGE_PIXELS = None

# With a min_side, decoded images keep their short side at least this multiple of it, so the
# model's own bicubic resize still has real pixels to filter. Measured for a 224-pixel model on
# 12 MP JPEGs, which this margin decodes at 1/8: the preprocessed tensor stays at 44-45 dB PSNR
# or more against a full decode on photos and photo-like scenes (only a blob-and-grain stress
# pattern fell to 39 dB). A margin of 2 (1/4 scale) gives 52 dB but costs ~16% more CPU.
DRAFT_MARGIN = 1.65

# With a min_side, the long side is cut (centred) to at most this many times the short side
# before any resize. A model that resizes the short side and centre-crops a square sees the
# same pixels; without the cut a 1 x 100000 PNG (475 bytes, 0.1 MP) became 224 x 22.4M pixels
# (over 12 GB) in the model's resize. 16:1 leaves every real panorama whole (a full 360-degree
# strip is about 8:1) and bounds the resized image to 224 x 3584 pixels (2.4 MB).
MAX_ASPECT = 16

# Without a min_side, a RAW file's embedded JPEG preview is used when its short side reaches this.
RAW_PREVIEW_MIN_SIDE = 1024

# Transparent pixels become neutral grey: black or white would read as content to the model.
BACKGROUND = (128, 128, 128)

# Formats Pillow may try, chosen by content not name; EPS and friends are left out because they
# run external programs (Ghostscript) that could hang, and none of them are photos.
_ALLOWED_FORMATS = (
    "JPEG",
    "MPO",
    "PNG",
    "WEBP",
    "GIF",
    "TIFF",
    "BMP",
    "DIB",
    "JPEG2000",
    "PPM",
    "ICO",
    "AVIF",
    "HEIF",
)
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})

_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# LibRaw reports orientation in dcraw's own `flip` numbering; this maps it back to EXIF.
_EXIF_ORIENTATION_FOR_RAW_FLIP = {0: 1, 1: 2, 3: 3, 2: 4, 4: 5, 6: 6, 7: 7, 5: 8}

# Leading bytes of formats whose header Pillow may reject, to tell "corrupt" from "not an image".
_MAGIC = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG": "PNG",
    b"GIF8": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}

# Memory bounds for default_max_pixels: the fraction of free RAM one decoded image may use, and
# the range the answer is clamped to (panoramas must fit; tiny VMs still get a usable limit).
_MEMORY_FRACTION = 8
_MIN_DEFAULT_PIXELS = 64_000_000
_MAX_DEFAULT_PIXELS = 1_000_000_000


def load_image(
    path: str | os.PathLike[str],
    *,
    min_side: int | None = None,
    max_pixels: int | None = None,
) -> Image.Image:
    """Decode `path` to an upright, fully loaded RGB image, or raise ImageError saying why not.

    `min_side` lets the decoder shrink the image on the way in as long as its short side stays
    at least that long; `max_pixels` rejects images whose header promises more pixels.
    """
    return _load_file(os.fspath(path), min_side, max_pixels, None)


def load_image_and_metadata(
    path: str | os.PathLike[str],
    *,
    min_side: int | None = None,
    max_pixels: int | None = None,
) -> tuple[Image.Image, PhotoMeta]:
    """`load_image`, plus the photo's capture time, place and camera read from the same open
    file (the EXIF Pillow parsed with the header, or a few seeks): no second open."""
    found: list[PhotoMeta] = []
    image = _load_file(os.fspath(path), min_side, max_pixels, found)
    return image, found[0] if found else EMPTY_META


def _load_file(name: str, min_side, max_pixels, meta: list[PhotoMeta] | None) -> Image.Image:
    """Decode; when `meta` is a list, append the photo's metadata to it."""
    _check_regular_file(name)
    ext = formats.extension(name)
    try:
        with _opened(name) as fp, warnings.catch_warnings():
            # Pillow warns about odd EXIF and the like on every other camera file; the image
            # either decodes or raises, so the warnings only flood the indexing progress bar.
            warnings.simplefilter("ignore")
            if ext in formats.RAW_EXTENSIONS:
                if meta is not None:
                    meta.append(for_decoded(fp, ext, None))
                return _load_raw(fp, ext, min_side, max_pixels)
            if ext in formats.HEIF_EXTENSIONS:
                _enable_heif(ext)
            with _open_pillow(fp) as im:
                image = _decode(im, min_side, max_pixels)
                if meta is not None:
                    meta.append(for_decoded(fp, ext, im))
                return image
    except ImageError:
        raise
    except MemoryError:
        raise ImageError("not enough memory to decode") from None
    except Exception as exc:  # decoders raise anything from OSError to struct.error
        raise ImageError(_reason(exc)) from exc


def load_image_data(
    data: bytes, *, min_side: int | None = None, max_pixels: int | None = None
) -> Image.Image:
    """`load_image` for a photo held in memory (one dropped on a web page), never written to
    disk.  Any format Pillow opens, and HEIC/AVIF; camera RAW needs a file name and is refused."""
    if not data:
        raise ImageError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if data[4:8] == b"ftyp":  # ISO media: HEIC/HEIF or AVIF
                _enable_heif(".heic")
            with _open_pillow(io.BytesIO(data)) as im:
                return _decode(im, min_side, max_pixels)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError("not enough memory to decode") from None
    except Exception as exc:
        raise ImageError(_reason(exc)) from exc


def default_max_pixels() -> int:
    """A pixel limit under which one decoded RGB image takes at most ~1/8 of available memory.

    Several DataLoader workers decode at once and each needs a few copies of the image while
    converting, so a single huge file must not be able to exhaust RAM.
    """
    pixels = _available_memory() // (_MEMORY_FRACTION * 3)
    return int(min(max(pixels, _MIN_DEFAULT_PIXELS), _MAX_DEFAULT_PIXELS))


# --- opening -------------------------------------------------------------------------------


def _check_regular_file(path: str) -> None:
    """Fail early on names that are not readable files; opening a FIFO would block forever."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ImageError(os_reason(exc)) from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageError("not a regular file")
    if info.st_size == 0:
        raise ImageError("empty file")


@contextmanager
def _opened(path: str) -> Iterator[IO[bytes]]:
    """Open the file ourselves so that it is closed on every path, multi-frame files included."""
    try:
        fp = open(path, "rb")  # noqa: SIM115 - closed below, after the caller is done
    except OSError as exc:
        raise ImageError(os_reason(exc)) from None
    with fp:
        yield fp


def _open_pillow(fp: IO[bytes]) -> Image.Image:
    """Identify the image by its content among the allowed formats."""
    try:
        return Image.open(fp, formats=_pillow_formats())
    except Image.UnidentifiedImageError:
        fp.seek(0)
        kind = _sniff(fp.read(8))
        raise ImageError(f"corrupt {kind} header" if kind else "not an image file") from None


@functools.cache
def _pillow_formats() -> tuple[str, ...]:
    """The allowed formats this Pillow build can open (naming an unknown one is a KeyError)."""
    Image.init()
    return tuple(f for f in _ALLOWED_FORMATS if f in Image.OPEN)


def _sniff(prefix: bytes) -> str | None:
    return next((kind for magic, kind in _MAGIC.items() if prefix.startswith(magic)), None)


def _enable_heif(ext: str) -> None:
    """Make HEIC/AVIF openable, importing pillow_heif only when such a file turns up."""
    if ext == ".avif" and "AVIF" in _pillow_formats():
        return  # Pillow 11.3+ decodes AVIF itself
    _require(ext)
    _register_heif()
    if ext == ".avif" and "AVIF" not in _pillow_formats():
        raise ImageError("AVIF support not available: upgrade Pillow to 11.3 or later")


@functools.cache
def _register_heif() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    register_avif = getattr(pillow_heif, "register_avif_opener", None)  # pillow-heif < 1.0
    if register_avif is not None and "AVIF" not in _pillow_formats():
        register_avif()
    _pillow_formats.cache_clear()


def _require(ext: str) -> None:
    """Raise the install hint when the optional library for `ext` is missing."""
    extra = formats.missing_extra(ext)
    if extra:
        raise ImageError(
            f"{extra.upper()} support not installed: pip install 'clipsearch[{extra}]'"
        )


# --- decoding ------------------------------------------------------------------------------


def _decode(
    im: Image.Image,
    min_side: int | None,
    max_pixels: int | None,
    orientation: int | None = None,
) -> Image.Image:
    """Check the header size, shrink while decoding where possible, then normalise."""
    full_size = im.size
    _check_size(full_size, max_pixels)
    scale = _draft(im, min_side) if min_side and im.format in _JPEG_FORMATS else 1
    _load(im)
    if orientation is None:
        orientation = _exif_orientation(im)
    im = _to_8bit(im)
    if min_side:
        im, full_size = _cut_extreme_aspect(im, full_size, scale)
        im = _shrink(im, full_size, scale, min_side)
    return _orient(_flatten(_to_srgb(im)), orientation)


def _check_size(size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError("image has zero width or height")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"image is {_megapixels(width * height)} megapixels, over the "
            f"{_megapixels(max_pixels)}-megapixel limit (--max-megapixels)"
        )


def _cut_extreme_aspect(
    im: Image.Image, full_size: tuple[int, int], scale: int
) -> tuple[Image.Image, tuple[int, int]]:
    """Centre-cut the long side to MAX_ASPECT x the short one; returns the image and the
    full-resolution size it now stands for (what _shrink needs)."""
    width, height = im.size
    short = min(width, height)
    keep = MAX_ASPECT * short
    if max(width, height) <= keep:
        return im, full_size
    if width > height:
        left = (width - keep) // 2
        im = im.crop((left, 0, left + keep, height))
    else:
        top = (height - keep) // 2
        im = im.crop((0, top, width, top + keep))
    return im, (im.size[0] * scale, im.size[1] * scale)


def _megapixels(pixels: int) -> str:
    mp = pixels / 1e6
    return f"{mp:.0f}" if mp >= 10 else f"{mp:.2g}"


def _draft(im: Image.Image, min_side: int) -> int:
    """Ask libjpeg to decode at 1/2, 1/4 or 1/8 scale (far less work); returns the scale used."""
    scale = _draft_scale(im.size, min_side)
    if scale == 1:
        return 1
    width, height = im.size
    # Pillow picks the scale from size // request, so request the floor to get `scale`.
    applied = im.draft("RGB", (width // scale, height // scale))
    return scale if applied is not None else 1


def _draft_scale(size: tuple[int, int], min_side: int) -> int:
    """The strongest JPEG DCT scaling that keeps the short side DRAFT_MARGIN x min_side long."""
    short = min(size)
    for scale in (8, 4, 2):
        if -(-short // scale) >= DRAFT_MARGIN * min_side:
            return scale
    return 1


def _shrink(im: Image.Image, full_size: tuple[int, int], scale: int, min_side: int) -> Image.Image:
    """Bring a large decode down to about DRAFT_MARGIN x min_side, keeping its geometry exact.

    A box-filter reduce plus a short bicubic step is several times cheaper than the model's
    bicubic resize from full size and measured above 47 dB against it. The same resize also
    drops the padded edge pixel of a draft whose size was not a multiple of its scale.
    """
    width, height = full_size
    box = (0.0, 0.0, width / scale, height / scale)
    target = math.ceil(DRAFT_MARGIN * min_side)
    if min(box[2:]) >= 2 * target:
        factor = target / min(full_size)
    elif width % scale or height % scale:
        factor = 1 / scale
    else:
        return im
    size = _model_size(full_size, factor, min_side)
    return im.resize(size, Image.Resampling.BICUBIC, box=box, reducing_gap=2.0)


def _model_size(full_size: tuple[int, int], factor: float, min_side: int) -> tuple[int, int]:
    """`full_size` scaled by `factor`, nudged so that a resize of its short side to `min_side`
    gives the same long side as for the original: otherwise the model's centre crop moves.
    """
    width, height = full_size
    wanted = _resized_long_side(full_size, min_side)
    size = (round(width * factor), round(height * factor))
    for delta in (0, 1, -1, 2, -2):
        candidate = (size[0] + delta, size[1]) if width >= height else (size[0], size[1] + delta)
        if _resized_long_side(candidate, min_side) == wanted:
            return candidate
    return size


def _resized_long_side(size: tuple[int, int], short_side: int) -> int:
    """The long side torchvision's Resize(short_side) gives an image of this size."""
    return int(short_side * max(size) / min(size))


def _load(im: Image.Image) -> None:
    """Decode the pixels; a file that ends early is an error, never a half-grey picture."""
    try:
        im.load()
    except OSError as exc:
        if "truncated" in str(exc) or "broken data stream" in str(exc):
            raise ImageError(f"truncated {im.format or 'image'} file") from None
        raise


def _exif_orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a corrupt EXIF block must not cost us the picture
        return 1
    return value if isinstance(value, int) else 1


def _orient(im: Image.Image, orientation: int) -> Image.Image:
    transpose = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
    return im.transpose(transpose) if transpose is not None else im


# --- colour --------------------------------------------------------------------------------


def _flatten(im: Image.Image) -> Image.Image:
    """A new RGB image, any alpha composited onto grey."""
    if im.mode in ("RGBA", "LA"):
        flat = Image.new("RGB", im.size, BACKGROUND)
        flat.paste(im.convert("RGB"), mask=im.getchannel("A"))
        return flat
    return im.convert("RGB")


def _to_8bit(im: Image.Image) -> Image.Image:
    """Reduce every mode to one of L, LA, RGB, RGBA or CMYK, keeping transparency."""
    mode = im.mode
    if mode in ("P", "L", "RGB") and "transparency" in im.info:
        return im.convert("RGBA")
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return im
    if mode.startswith("I") or mode == "F":
        return _scale_to_l(im)
    conversions = {"PA": "RGBA", "RGBa": "RGBA", "La": "LA", "1": "L", "P": "RGB"}
    return im.convert(conversions.get(mode, "RGB"))


def _scale_to_l(im: Image.Image) -> Image.Image:
    """16/32-bit integer and float grey to 8 bits over its nominal range (not clipped at 255)."""
    values = np.nan_to_num(np.asarray(im, dtype=np.float64))
    low, high = _nominal_range(im.mode, values)
    scaled = (values - low) * (255.0 / max(high - low, 1e-12))
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def _nominal_range(mode: str, values: np.ndarray) -> tuple[float, float]:
    """16-bit files use 0..65535 and float files 0..1; anything else is stretched to fit."""
    low, high = float(values.min()), float(values.max())
    if mode.startswith("I;16") or (mode == "I" and low >= 0 and high <= 65535):
        return 0.0, 65535.0
    if mode == "F" and low >= 0 and high <= 1:
        return 0.0, 1.0
    return low, high


def _to_srgb(im: Image.Image) -> Image.Image:
    """Apply an embedded ICC profile (Display P3, Adobe RGB, CMYK press...) to reach sRGB."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("L", "RGB", "RGBA", "CMYK"):
        return im
    try:
        transform = _icc_transform(icc, im.mode)
        return im if transform is None else _apply(transform, im)
    except Exception:  # a broken or mismatched profile: the uncorrected pixels are still good
        return im


def _apply(transform: Any, im: Image.Image) -> Image.Image:
    from PIL import ImageCms

    return ImageCms.applyTransform(im, transform)


@functools.lru_cache(maxsize=16)
def _icc_transform(icc: bytes, mode: str) -> Any:
    """Build (once per profile) the transform to sRGB; None when the profile is sRGB already."""
    from PIL import ImageCms

    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    if ImageCms.getProfileDescription(source).strip().lower().startswith("srgb"):
        return None
    out_mode = "RGBA" if mode == "RGBA" else "RGB"
    return ImageCms.buildTransform(source, _srgb_profile(), mode, out_mode)


@functools.cache
def _srgb_profile() -> Any:
    from PIL import ImageCms

    return ImageCms.createProfile("sRGB")


# --- RAW -----------------------------------------------------------------------------------


def _load_raw(fp: IO[bytes], ext: str, min_side: int | None, max_pixels: int | None) -> Image.Image:
    """Use the camera's embedded JPEG preview when big enough, else a half-size demosaic."""
    _require(ext)
    import rawpy

    with rawpy.imread(fp) as raw:
        _check_size((raw.sizes.width, raw.sizes.height), max_pixels)
        orientation = _EXIF_ORIENTATION_FOR_RAW_FLIP.get(raw.sizes.flip, 1)
        preview = _raw_preview(raw, orientation, min_side, max_pixels)
        if preview is not None:
            return preview
        pixels = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    image = Image.fromarray(np.ascontiguousarray(pixels))  # LibRaw already applied the flip
    if not min_side:
        return image
    image, size = _cut_extreme_aspect(image, image.size, 1)
    return _shrink(image, size, 1, min_side)


def _raw_preview(
    raw: Any, orientation: int, min_side: int | None, max_pixels: int | None
) -> Image.Image | None:
    """The embedded preview, upright, if present, decodable and at least the size needed."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    need = min_side or RAW_PREVIEW_MIN_SIDE
    if thumb.format == rawpy.ThumbFormat.BITMAP:
        image = Image.fromarray(np.ascontiguousarray(thumb.data))
        return _orient(image, orientation) if min(image.size) >= need else None
    try:
        with Image.open(io.BytesIO(thumb.data), formats=("JPEG", "MPO")) as im:
            if min(im.size) < need:
                return None
            # Previews rarely carry their own orientation; the RAW's tags then say how to turn.
            own = _exif_orientation(im)
            return _decode(im, min_side, max_pixels, own if own != 1 else orientation)
    except (ImageError, OSError, SyntaxError, ValueError):
        return None  # a damaged preview: the sensor data may still be fine


# --- helpers -------------------------------------------------------------------------------


def _reason(exc: Exception) -> str:
    """A one-line reason for a decoder's exception, without Pillow's file-object reprs."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return os_reason(exc)
    text = str(exc).splitlines()[0].strip() if str(exc).strip() else type(exc).__name__
    return f"cannot decode image: {text[:120]}"


def _available_memory() -> int:
    """Bytes this process may still allocate: MemAvailable, capped by a cgroup limit if any."""
    candidates = [_meminfo_available(), _cgroup_headroom()]
    known = [c for c in candidates if c is not None]
    return min(known) if known else 4 << 30


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _cgroup_headroom() -> int | None:
    """Container memory limit minus current use (cgroup v2), which MemAvailable ignores."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            current = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - current, 0)
