"""Which file names are photos, and which optional library each kind needs.

Kept apart from decoding so the scanner can classify files without importing Pillow.
"""

from __future__ import annotations

import importlib.util
import os

PILLOW_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".webp",
        ".gif",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".jp2",
        ".j2k",
        ".jpx",
        ".jpf",
        ".pnm",
        ".pbm",
        ".pgm",
        ".ppm",
        ".ico",
    }
)
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif", ".avif"})
RAW_EXTENSIONS = frozenset({".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2", ".raf"})
IMAGE_EXTENSIONS = PILLOW_EXTENSIONS | HEIF_EXTENSIONS | RAW_EXTENSIONS
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".3gp", ".mts", ".m2ts", ".wmv", ".mpg"}
)
# A RAW file beside one of these with the same name is the camera's RAW+JPEG pair.
PROCESSED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".heic", ".heif", ".hif"})

_EXTRA_FOR = {ext: ("heif", "pillow_heif") for ext in HEIF_EXTENSIONS} | {
    ext: ("raw", "rawpy") for ext in RAW_EXTENSIONS
}


def extension(path: str) -> str:
    """Lower-case extension with its dot, so `.JPG` and `.jpg` are one kind."""
    return os.path.splitext(path)[1].lower()


def is_image(path: str) -> bool:
    return extension(path) in IMAGE_EXTENSIONS


def missing_extra(ext: str) -> str | None:
    """The pip extra to install for this extension, or None when it can be decoded now."""
    extra = _EXTRA_FOR.get(ext)
    if extra is None:
        return None
    name, module = extra
    if importlib.util.find_spec(module) or (ext == ".avif" and _pillow_reads_avif()):
        return None
    return name


def _pillow_reads_avif() -> bool:
    """Pillow 11.3+ decodes AVIF itself (and recent pillow-heif no longer does)."""
    from PIL import features

    return bool(features.check_module("avif"))
