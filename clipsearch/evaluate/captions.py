"""Captioned photo sets read from the two layouts people already have.

A Flickr8k-style CSV (`image,caption`, one row per caption, several rows per image) or a COCO
captions JSON (`images` with `id` and `file_name`, `annotations` with `image_id` and
`caption`).  Both become the same `CaptionSet`: image paths, captions, and for each caption the
index of its image.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClipsearchError

IMAGE_FOLDERS = ("images", "Images", "Flicker8k_Dataset", "Flickr8k_Dataset")


@dataclass(frozen=True)
class CaptionSet:
    """Images (absolute paths, each once), captions, and the image index of each caption."""

    images: list[str]
    captions: list[str]
    image_of: list[int]


def read_captions(captions: os.PathLike | str, images: os.PathLike | str | None) -> CaptionSet:
    """The captioned set in `captions` (CSV or COCO JSON), with image names resolved under
    `images` (default: an `images` folder beside the file, else the file's own folder)."""
    path = Path(captions)
    if not path.is_file():
        raise ClipsearchError(f"no such captions file: {captions}")
    folder = Path(images) if images is not None else _default_folder(path)
    if not folder.is_dir():
        raise ClipsearchError(f"no such image folder: {folder} (pass --images DIR)")
    pairs = _read_json(path) if path.suffix.lower() == ".json" else _read_csv(path)
    if not pairs:
        raise ClipsearchError(f"{captions} holds no captions")
    return _resolve(pairs, folder.resolve())


def _default_folder(path: Path) -> Path:
    for name in IMAGE_FOLDERS:
        if (path.parent / name).is_dir():
            return path.parent / name
    return path.parent


def _read_csv(path: Path) -> list[tuple[str, str]]:
    """Rows of `image,caption` (the header names them; extra columns are ignored)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "image" not in fields or "caption" not in fields:
            raise ClipsearchError(
                f"{path} needs a header row naming an `image` and a `caption` column "
                "(as Flickr8k's captions.txt), or pass a COCO captions .json"
            )
        reader.fieldnames = fields
        return [
            (row["image"].strip(), row["caption"].strip())
            for row in reader
            if row.get("image") and row.get("caption")
        ]


def _read_json(path: Path) -> list[tuple[str, str]]:
    """A COCO captions file: annotations joined to images by id."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        names = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
        return [(names[int(a["image_id"])], str(a["caption"]).strip()) for a in data["annotations"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ClipsearchError(
            f"{path} is not a COCO captions file ({exc.__class__.__name__}: {exc}): it needs "
            "`images` with id and file_name, and `annotations` with image_id and caption"
        ) from None


def _resolve(pairs: list[tuple[str, str]], folder: Path) -> CaptionSet:
    """Image names to absolute paths; a missing image is an error, since skipping it would
    quietly make the task easier."""
    index: dict[str, int] = {}
    captions, image_of = [], []
    for name, caption in pairs:
        if name not in index:
            index[name] = len(index)
        captions.append(caption)
        image_of.append(index[name])
    images = [str(folder / name) for name in index]
    missing = [p for p in images if not os.path.isfile(p)]
    if missing:
        raise ClipsearchError(
            f"{len(missing)} of {len(images)} captioned images are not in {folder} "
            f"(first: {os.path.basename(missing[0])}): pass --images DIR"
        )
    return CaptionSet(images, captions, image_of)
