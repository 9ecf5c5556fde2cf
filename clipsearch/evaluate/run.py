"""Embed a captioned set with the library's model and score it.

Images already in the library (same size and mtime) reuse their stored vectors, so measuring a
model on photos you have indexed costs only the captions; others are decoded and embedded here
in batches with the indexing encoder.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from ..errors import ClipsearchError, ImageError
from ..model.base import ImageEncoder

BATCH = 32
TEXT_BATCH = 256


def image_vectors(
    paths: list[str],
    stored: Callable[[str], np.ndarray | None],
    encoder: Callable[[], ImageEncoder],
) -> np.ndarray:
    """One unit vector per path: stored where the library has it, else embedded now."""
    vectors: list[np.ndarray | None] = [stored(p) for p in paths]
    todo = [i for i, v in enumerate(vectors) if v is None]
    for start in range(0, len(todo), BATCH):
        part = todo[start : start + BATCH]
        for i, vector in zip(part, _embed([paths[i] for i in part], encoder()), strict=True):
            vectors[i] = vector
    return np.stack(vectors).astype(np.float32)


def _embed(paths: list[str], encoder: ImageEncoder) -> np.ndarray:
    from ..photos.decode import load_image

    inputs = []
    for path in paths:
        try:
            inputs.append(encoder.preprocess(load_image(path, min_side=encoder.image_size)))
        except ImageError as exc:
            raise ClipsearchError(f"cannot read image {path}: {exc}") from exc
    return encoder.encode_images(_stack(inputs))


def _stack(inputs: list):
    if type(inputs[0]).__module__.startswith("torch"):
        import torch

        return torch.stack(inputs)
    return np.stack(inputs)


def text_vectors(captions: list[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    return np.concatenate(
        [encode(captions[i : i + TEXT_BATCH]) for i in range(0, len(captions), TEXT_BATCH)]
    ).astype(np.float32)


def stored_lookup(store) -> Callable[[str], np.ndarray | None]:
    """The library's vector of an unchanged indexed file, else None."""

    def lookup(path: str) -> np.ndarray | None:
        st = os.stat(path)
        return store.vector_of(path, st.st_size, st.st_mtime_ns)

    return lookup
