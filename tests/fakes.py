"""Stand-ins for the model, for tests: deterministic, weight-free, fast."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

# For PixelEncoder on 300 generated photo-like images: JPEG q70 and half-size copies score
# >= 0.999 against the original, a 5% crop >= 0.855, distinct images <= 0.67.
PIXEL_DUPE_THRESHOLD = 0.80


class PixelEncoder:
    """A deterministic stand-in for CLIP: blurred 16x16 colour thumbnails, mean removed.

    Good enough to tell re-encodes, resizes and small crops of a photo from other photos,
    which is what tests and examples of duplicate finding need, without model weights.  It
    meets the image-encoder contract of `clipsearch.model.base` (`preprocess`, `encode_images`).
    """

    side = 16
    dim = side * side * 3
    device = "cpu"
    image_size = side * 4

    def preprocess(self, image: Image.Image):
        """The whole encoding happens here, in the decode workers; the batch pass is trivial."""
        import torch

        return torch.from_numpy(self._encode(image))

    def encode_images(self, batch) -> np.ndarray:
        """Rows of a preprocessed batch, or a list of PIL images encoded directly."""
        if isinstance(batch, list):
            return np.stack([self._encode(image) for image in batch]).astype(np.float32)
        return batch.numpy().astype(np.float32)

    def _encode(self, image: Image.Image) -> np.ndarray:
        """Shrink in two steps: the blur of half a cell absorbs the shift a crop causes."""
        work = image.convert("RGB").resize((self.side * 4, self.side * 4), Image.Resampling.BOX)
        work = work.filter(ImageFilter.GaussianBlur(2))
        small = np.asarray(work.resize((self.side, self.side), Image.Resampling.BOX), np.float32)
        centred = (small - small.reshape(-1, 3).mean(axis=0)).ravel()
        norm = float(np.linalg.norm(centred))
        return centred / norm if norm > 0 else centred


class NumpyPixelEncoder(PixelEncoder):
    """PixelEncoder with numpy inputs: needs no torch, so plain decode workers serve it."""

    torch_free = True

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self._encode(image)

    def encode_images(self, batch) -> np.ndarray:
        return np.asarray(batch, dtype=np.float32)


class DyingEncoder(NumpyPixelEncoder):
    """A decode worker that dies on a photo 7 pixels wide, as a crashing decoder would."""

    def preprocess(self, image: Image.Image) -> np.ndarray:
        import os

        if image.width == 7:
            os._exit(3)
        return super().preprocess(image)
