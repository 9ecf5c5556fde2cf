"""Writing photos with chosen EXIF in tests: a small TIFF-structure writer, so a test can put
any value (zero denominators, latitude 300, year 0000) where Pillow would refuse or fix it."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

ASCII, BYTE, SHORT, LONG, RATIONAL, UNDEFINED, SRATIONAL = 2, 1, 3, 4, 5, 7, 10
_PACK = {BYTE: "B", SHORT: "H", LONG: "I", UNDEFINED: "B", ASCII: "B"}


def _entry(value) -> tuple[int, int, bytes]:
    """(type, count, payload) for a Python value: str, int, bytes, [(num, den)], or an
    explicit (type, values) pair."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], list):
        kind, values = value
        if kind in (RATIONAL, SRATIONAL):
            flat = [x for pair in values for x in pair]
            code = "I" if kind == RATIONAL else "i"
            return kind, len(values), struct.pack(f"<{len(flat)}{code}", *flat)
        return kind, len(values), struct.pack(f"<{len(values)}{_PACK[kind]}", *values)
    if isinstance(value, str):
        raw = value.encode() + b"\0"
        return ASCII, len(raw), raw
    if isinstance(value, bytes):
        return UNDEFINED, len(value), value
    if isinstance(value, int):
        return LONG, 1, struct.pack("<I", value)
    if isinstance(value, list):  # rationals
        flat = [x for pair in value for x in pair]
        return RATIONAL, len(value), struct.pack(f"<{len(flat)}I", *flat)
    raise TypeError(value)


def _ifd(tags: dict[int, object], offset: int) -> bytes:
    entries = sorted((tag, *_entry(v)) for tag, v in tags.items())
    head = struct.pack("<H", len(entries))
    overflow = b""
    end = offset + 2 + 12 * len(entries) + 4
    for tag, kind, count, payload in entries:
        if len(payload) <= 4:
            field = payload.ljust(4, b"\0")
        else:
            field = struct.pack("<I", end + len(overflow))
            overflow += payload + b"\0" * (len(payload) % 2)
        head += struct.pack("<HHI", tag, kind, count) + field
    return head + b"\0\0\0\0" + overflow


def tiff_block(
    ifd0: dict[int, object],
    exif: dict[int, object] | None = None,
    gps: dict[int, object] | None = None,
    data: bytes = b"",
) -> bytes:
    """A little-endian TIFF structure: header, `data` at offset 8, then IFD0 and the Exif and
    GPS directories it points at."""
    first = 8 + len(data) + len(data) % 2
    ifd0 = dict(ifd0)
    # Pointers have fixed size, so lay out with placeholders, then with the real offsets.
    if exif is not None:
        ifd0[0x8769] = 0
    if gps is not None:
        ifd0[0x8825] = 0
    at = first + len(_ifd(ifd0, first))
    if exif is not None:
        ifd0[0x8769] = at
        at += len(_ifd(exif, at))
    if gps is not None:
        ifd0[0x8825] = at
    body = _ifd(ifd0, first)
    if exif is not None:
        body += _ifd(exif, ifd0[0x8769])
    if gps is not None:
        body += _ifd(gps, ifd0[0x8825])
    return b"II*\0" + struct.pack("<I", first) + data + b"\0" * (len(data) % 2) + body


def dms(degrees: float) -> list[tuple[int, int]]:
    """Degrees as EXIF's degrees, minutes, seconds rationals (seconds to 1/1000)."""
    thousandths = round(degrees * 3_600_000)
    d, rest = divmod(thousandths, 3_600_000)
    m, s = divmod(rest, 60_000)
    return [(d, 1), (m, 1), (s, 1000)]


def gps_tags(lat: float, lon: float, altitude: float | None = None) -> dict[int, object]:
    tags: dict[int, object] = {
        1: "N" if lat >= 0 else "S",
        2: dms(abs(lat)),
        3: "E" if lon >= 0 else "W",
        4: dms(abs(lon)),
    }
    if altitude is not None:
        tags[5] = (BYTE, [1 if altitude < 0 else 0])
        tags[6] = [(round(abs(altitude) * 10), 10)]
    return tags


def exif_tags(
    taken: str | None = None,
    offset: str | None = None,
    make: str | None = None,
    model: str | None = None,
    lens: str | None = None,
) -> tuple[dict[int, object], dict[int, object]]:
    """(IFD0, Exif IFD) tags for the common fields."""
    ifd0: dict[int, object] = {}
    exif: dict[int, object] = {}
    if make:
        ifd0[0x010F] = make
    if model:
        ifd0[0x0110] = model
    if taken:
        exif[0x9003] = taken
    if offset:
        exif[0x9011] = offset
    if lens:
        exif[0xA434] = lens
    return ifd0, exif


def exif_block(
    taken=None, offset=None, make=None, model=None, lens=None, lat=None, lon=None, altitude=None
) -> bytes:
    ifd0, exif = exif_tags(taken, offset, make, model, lens)
    gps = gps_tags(lat, lon, altitude) if lat is not None else None
    return tiff_block(ifd0, exif, gps)


def picture(seed: int = 0, size=(96, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)


def write_photo(path: Path, block: bytes | None, seed: int = 0, fmt: str | None = None) -> Path:
    """A photo at `path` in the format its name says, carrying the raw EXIF `block`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = fmt or {
        ".jpg": "JPEG",
        ".png": "PNG",
        ".webp": "WEBP",
        ".heic": "HEIF",
        ".avif": "AVIF",
    }.get(path.suffix.lower())
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    kwargs = {"exif": b"Exif\0\0" + block} if block is not None else {}
    if fmt == "PNG" and block is not None:
        kwargs = {"exif": block}
    picture(seed).save(path, fmt, **kwargs)
    return path


# --- a minimal DNG that LibRaw decodes --------------------------------------------------


def dng_bytes(
    ifd0_extra: dict[int, object], exif: dict[int, object] | None, gps: dict[int, object] | None
) -> bytes:
    """A 16-bit RGGB DNG of 96 x 64 pixels with the given extra IFD0 tags and EXIF."""
    width, height = 96, 64
    cfa = np.full((height, width), 100, np.uint16)
    cfa[0::2, 0 : width // 2 : 2] = 4000
    cfa[1::2, width // 2 + 1 :: 2] = 4000
    sensor = cfa.astype("<u2").tobytes()
    ifd0: dict[int, object] = {
        254: 0,
        256: width,
        257: height,
        258: (SHORT, [16]),
        259: (SHORT, [1]),
        262: (SHORT, [32803]),
        273: 8,
        277: (SHORT, [1]),
        278: height,
        279: len(sensor),
        274: (SHORT, [1]),
        33421: (SHORT, [2, 2]),
        33422: (BYTE, [0, 1, 1, 2]),
        50706: (BYTE, [1, 4, 0, 0]),
        50708: "Test",
        50721: (
            SRATIONAL,
            [(1, 1), (0, 1), (0, 1), (0, 1), (1, 1), (0, 1), (0, 1), (0, 1), (1, 1)],
        ),
        50778: (SHORT, [21]),
    }
    ifd0.update(ifd0_extra)
    return tiff_block(ifd0, exif, gps, data=sensor)


def jpeg_with(block: bytes | None, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    kwargs = {"exif": b"Exif\0\0" + block} if block is not None else {}
    picture(seed).save(buf, "JPEG", quality=90, **kwargs)
    return buf.getvalue()
