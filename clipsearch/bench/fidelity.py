"""How closely a fast (draft) decode matches a full one, measured after the model's preprocessing.

Kept apart from `photos.decode` so decoding never imports torch; the benchmark and tests use it
to check that shrinking JPEGs in the DCT domain does not change what the model sees.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..photos.decode import load_image


def _as_float_array(x: Any) -> np.ndarray:
    """Accept numpy arrays and torch tensors alike without importing torch here."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def psnr(a: Any, b: Any, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB; infinite when the inputs are identical."""
    x, y = _as_float_array(a), _as_float_array(b)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {x.shape} vs {y.shape}")
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def tensor_range(preprocess: Callable[[Any], Any]) -> float:
    """Span of values the preprocessed tensor can hold: pixels 0..1 through its Normalize."""
    for t in getattr(preprocess, "transforms", []):
        if type(t).__name__ == "Normalize":
            mean, std = np.broadcast_arrays(np.asarray(t.mean, float), np.asarray(t.std, float))
            return float(np.max((1.0 - mean) / std) - np.min(-mean / std))
    return 1.0


def draft_psnr(path: str | os.PathLike, preprocess: Callable[[Any], Any], min_side: int) -> float:
    """PSNR of preprocess(draft decode) against preprocess(full decode) of the same file."""
    full = preprocess(load_image(path))
    draft = preprocess(load_image(path, min_side=min_side))
    return psnr(full, draft, tensor_range(preprocess))
