"""Test photos in formats Pillow cannot write by itself, built byte by byte in the test."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

_TIFF_PACK = {1: "B", 2: "B", 3: "H", 4: "I", 10: "i"}


def tiff_ifd(entries: list[tuple[int, int, list[int]]], offset: int) -> bytes:
    """One little-endian TIFF IFD placed at `offset`; values over 4 bytes follow it."""
    head = struct.pack("<H", len(entries))
    overflow = b""
    end = offset + 2 + 12 * len(entries) + 4
    for tag, kind, values in sorted(entries):
        count = len(values) // 2 if kind == 10 else len(values)
        payload = struct.pack(f"<{len(values)}{_TIFF_PACK[kind]}", *values)
        if len(payload) <= 4:
            field = payload.ljust(4, b"\0")
        else:
            field = struct.pack("<I", end + len(overflow))
            overflow += payload + b"\0" * (len(payload) % 2)
        head += struct.pack("<HHI", tag, kind, count) + field
    return head + b"\0\0\0\0" + overflow


def make_dng(cfa: np.ndarray, orientation: int = 1, preview: bytes | None = None) -> bytes:
    """A minimal DNG: 16-bit RGGB sensor data, optionally with a JPEG preview in IFD0."""
    height, width = cfa.shape
    sensor = cfa.astype("<u2").tobytes()
    preview = preview or b""
    first_ifd = 8 + len(sensor) + len(preview)
    sensor_tags = [
        (254, 4, [0]),
        (256, 4, [width]),
        (257, 4, [height]),
        (258, 3, [16]),
        (259, 3, [1]),
        (262, 3, [32803]),  # colour filter array
        (273, 4, [8]),
        (277, 3, [1]),
        (278, 4, [height]),
        (279, 4, [len(sensor)]),
        (33421, 3, [2, 2]),
        (33422, 1, [0, 1, 1, 2]),
    ]
    camera_tags = [
        (274, 3, [orientation]),
        (50706, 1, [1, 4, 0, 0]),
        (50708, 2, list(b"Test\0")),
        (50721, 10, [1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1]),  # ColorMatrix1
        (50778, 3, [21]),
    ]
    header = b"II*\0" + struct.pack("<I", first_ifd)
    if not preview:
        return header + sensor + tiff_ifd(sensor_tags + camera_tags, first_ifd)
    pw, ph = Image.open(io.BytesIO(preview)).size
    preview_tags = [
        (254, 4, [1]),
        (256, 4, [pw]),
        (257, 4, [ph]),
        (258, 3, [8, 8, 8]),
        (259, 3, [7]),
        (262, 3, [6]),
        (273, 4, [8 + len(sensor)]),
        (277, 3, [3]),
        (278, 4, [ph]),
        (279, 4, [len(preview)]),
    ]
    sized = len(tiff_ifd(preview_tags + camera_tags + [(330, 4, [0])], first_ifd))
    ifd0 = tiff_ifd(preview_tags + camera_tags + [(330, 4, [first_ifd + sized])], first_ifd)
    return header + sensor + preview + ifd0 + tiff_ifd(sensor_tags, first_ifd + sized)


def red_left_blue_right(width: int = 96, height: int = 64) -> np.ndarray:
    """RGGB sensor values of a scene whose left half is red and right half blue."""
    cfa = np.full((height, width), 100, np.uint16)
    cfa[0::2, 0 : width // 2 : 2] = 4000  # red sites, left half
    cfa[1::2, width // 2 + 1 :: 2] = 4000  # blue sites, right half
    return cfa


def jpeg_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95)
    return buf.getvalue()
