"""Per-root settings: what `index --exclude ...` was told is remembered with the root.

A cron job runs a plain `clipsearch index`; had the settings of the run that added a root
been forgotten, it would index the screenshots that run excluded.  So a setting given on the
command line is stored with each root of that run and applied by every later run until it
is given again (with a note saying what changed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ClipsearchError

DEFAULTS: dict[str, object] = {
    "exclude": [],
    "default_excludes": True,
    "raw_too": False,
    "max_megapixels": "auto",
}
# The reason recorded for a photo over the pixel limit ends with this (photos/decode.py).
PIXEL_LIMIT_MARK = "(--max-megapixels)"


def given(
    excludes: Sequence[str] | None,
    default_excludes: bool | None,
    raw_too: bool | None,
    max_megapixels: float | str | None,
) -> dict:
    """The settings given for this run (None: not given), checked before any work.  An
    empty pattern, `--exclude ''`, clears the remembered patterns."""
    found: dict[str, object] = {}
    if excludes is not None:
        found["exclude"] = [p for p in excludes if p]
    if default_excludes is not None:
        found["default_excludes"] = bool(default_excludes)
    if raw_too is not None:
        found["raw_too"] = bool(raw_too)
    if max_megapixels is not None:
        found["max_megapixels"] = _megapixels_setting(max_megapixels)
    return found


def effective(stored: dict) -> dict:
    return {**DEFAULTS, **stored}


def changes(root: str, stored: dict, new: dict) -> list[str]:
    """One note per setting of `root` that this run replaces."""
    before, after = effective(stored), effective({**stored, **new})
    return [
        f"{root}: {key.replace('_', '-')} is now {_shown(after[key])} (was {_shown(before[key])})"
        for key in DEFAULTS
        if key in new and before[key] != after[key]
    ]


def describe(stored: dict) -> str:
    """The settings of a root as `status` shows them, defaults left out."""
    return ", ".join(f"{k.replace('_', '-')} {_shown(v)}" for k, v in stored.items()) or ""


def max_pixels(setting: object) -> int | None:
    """The pixel limit a max_megapixels setting means ('auto': from available memory)."""
    if setting == "none":
        return None
    if setting == "auto":
        from ..photos.decode import default_max_pixels

        return default_max_pixels()
    return int(float(setting) * 1_000_000)


@dataclass(frozen=True)
class PixelLimits:
    """The pixel limit of each root, for the decode workers (picklable: plain tuples)."""

    by_root: tuple[tuple[str, int | None], ...]
    default: int | None

    def for_path(self, path: str) -> int | None:
        for root, limit in self.by_root:
            if path.startswith(os.path.join(root, "")):
                return limit
        return self.default


def _megapixels_setting(value: float | str) -> str:
    text = str(value).strip().lower()
    if text in ("auto", "none"):
        return text
    try:
        megapixels = float(text)
    except ValueError:
        raise ClipsearchError(
            f"--max-megapixels takes a number, 'auto' or 'none', not {value!r}"
        ) from None
    # nan, inf and 1e308 (inf once scaled to pixels) were tracebacks in int().
    if not megapixels > 0 or not math.isfinite(megapixels * 1_000_000):
        raise ClipsearchError("--max-megapixels must be a positive number, 'auto' or 'none'")
    return f"{megapixels:g}"


def _shown(value: object) -> str:
    if isinstance(value, list):
        return " ".join(value) if value else "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
