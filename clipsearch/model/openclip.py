"""The open_clip model in torch: loading weights safely, choosing device and precision, embedding.

Indexing always runs here; queries come here only when a tower has no torch-free export.
Every vector leaving this module is L2-normalised float32, so inner product is cosine.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ClipsearchError, ModelUnavailable
from .base import normalised
from .spec import ModelSpec, check_model_name, normalise, open_clip_module, tag_overrides

if TYPE_CHECKING:
    import torch
    from PIL import Image

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(requested: str = "auto") -> str:
    """auto prefers CUDA, then Apple's MPS, then the CPU; an explicit device must exist."""
    import torch

    if requested not in DEVICES:
        raise ClipsearchError(f"unknown device {requested!r}: choose one of {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if (requested == "cuda" and not cuda) or (requested == "mps" and not mps):
        raise ClipsearchError(f"device {requested} is not available here: use --device cpu")
    return requested


class ClipEncoder:
    """An open_clip model ready for inference, with its own preprocessing and tokenizer."""

    def __init__(
        self,
        spec: ModelSpec,
        device: str = "auto",
        checkpoint: str | None = None,
        precision: str = "auto",
    ) -> None:
        """`checkpoint`: a local copy of a tag's weights to load instead of looking it up.
        `precision` auto is fp16 on CUDA and fp32 elsewhere; bf16 on request (the backend
        choice measures whether this CPU runs it faster before asking for it)."""
        import torch

        open_clip = open_clip_module()
        check_model_name(spec.name)
        spec = normalise(spec)
        self.spec = spec
        self.device = pick_device(device)
        self.dtype = _dtype(precision, self.device)
        self.precision = {torch.float32: "fp32", torch.float16: "fp16"}.get(self.dtype, "bf16")
        kwargs = tag_overrides(spec, checkpoint)
        checkpoint = spec.pretrained if spec.is_file else kwargs.pop("checkpoint")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.name, pretrained=checkpoint, device=self.device, weights_only=True, **kwargs
            )
        except pickle.UnpicklingError as exc:
            raise ModelUnavailable(
                f"refusing {spec.pretrained}: it holds pickled objects, not a plain state dict, "
                "and clipsearch never runs code from weight files; convert it to .safetensors"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - any loader failure is a bad weight file
            # RuntimeError, KeyError... and also safetensors' own SafetensorError (a pickle
            # named .safetensors) or an AttributeError (an .npz taken for big_vision weights):
            # those were tracebacks. No code from the file ever runs either way.
            raise ModelUnavailable(
                f"cannot load {spec.label()}: {_first_line(exc)}; check that the checkpoint "
                "is a state dict that matches the model architecture"
            ) from exc
        self.model = model.eval().to(self.dtype)
        self.preprocess: Callable[[Image.Image], torch.Tensor] = preprocess
        self.tokenizer = open_clip.get_tokenizer(spec.name)
        self.image_size = _short_side(model.visual.image_size)
        self.dim = int(self.encode_texts([""]).shape[1])

    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        """Embed a batch of preprocessed images (N, 3, H, W)."""
        import torch

        with torch.inference_mode():
            # Device first, then dtype: a combined CPU-to-GPU conversion would cast on the CPU
            # into unpinned memory and lose the asynchronous copy from the pinned batch.
            batch = batch.to(self.device, non_blocking=True).to(self.dtype)
            return normalised(self.model.encode_image(batch).float().cpu().numpy())

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            tokens = self.tokenizer(list(texts)).to(self.device)
            return normalised(self.model.encode_text(tokens).float().cpu().numpy())

    def export_text(self, out_dir: os.PathLike) -> bool:
        """Write the torch-free text tower to `out_dir`; False if this model has none."""
        from .textnp import export_text_encoder

        if export_text_encoder(self.model, self.tokenizer, out_dir):
            return True
        from .textort import export_onnx_text

        return export_onnx_text(self.model, self.tokenizer, out_dir)

    def export_image(self, out_dir: os.PathLike) -> bool:
        """Write the torch-free image tower to `out_dir`; False if this model has none."""
        from .imageort import export_image_encoder

        return export_image_encoder(self.model, self.preprocess, out_dir)


def _dtype(precision: str, device: str):
    import torch

    if precision == "auto":
        return torch.float16 if device == "cuda" else torch.float32
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in table:
        raise ClipsearchError(f"torch runs fp32, fp16 or bf16, not {precision}")
    return table[precision]


def _short_side(size: int | tuple[int, int]) -> int:
    return min(size) if isinstance(size, tuple | list) else int(size)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else exc.__class__.__name__
