"""The one contract every encoder meets, whichever engine runs it.

`factory.Encoders` hands out encoders by task; callers use only what is written here, so a
torch model, the numpy text tower and the onnxruntime image tower are interchangeable.  Every
vector that leaves an encoder is L2-normalised float32, so an inner product is a cosine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TextEncoder(Protocol):
    """Turns text into vectors."""

    dim: int

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) vectors for n texts."""
        ...


@runtime_checkable
class ImageEncoder(Protocol):
    """Turns decoded images into vectors, in two steps so decoding workers can do the first.

    `preprocess` maps one upright RGB PIL image to the model's input (a torch tensor or a numpy
    array); `encode_images` takes those inputs stacked on a new first axis, so one image is
    `encode_images(preprocess(image)[None])`.
    """

    dim: int
    device: str
    image_size: int  # short side the model's transform resizes to; decoders draft down to it

    def preprocess(self, image: Any) -> Any: ...

    def encode_images(self, batch: Any) -> np.ndarray:
        """(n, dim) vectors for a batch of n preprocessed images."""
        ...


def encode_image(encoder: ImageEncoder, image: Any) -> np.ndarray:
    """The vector of one PIL image."""
    return encoder.encode_images(encoder.preprocess(image)[None])[0]


def normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length as float32 (an all-zero row stays zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
