"""The one place that decides which encoder runs for a task, as open_clip's `factory.py` is the
one place that turns a name into a model.

Tasks: `TEXT` (a query's words), `IMAGE` (a photo that is not in the library) and `INDEX`
(photos in bulk).  Queries prefer the torch-free towers exported for the library (numpy text,
onnxruntime image): a cold text query then took 0.5 s instead of 5.6 s with torch.  A tower
without an export falls back to the open_clip model in torch.  Once torch is loaded it serves
every task: a second copy of the model in memory would buy nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .spec import ModelSpec, preflight

TEXT, IMAGE, INDEX = "text", "image", "index"
TASKS = (TEXT, IMAGE, INDEX)


@dataclass(frozen=True)
class ExportDirs:
    """Where a model's torch-free towers are written and read."""

    text: Path
    image: Path


class Encoders:
    """The encoders of one model, each made on first use and kept: batch queries would
    otherwise reopen an onnxruntime session (~0.35 s) or re-read the BPE merges per line."""

    def __init__(
        self,
        spec: ModelSpec,
        device: str,
        exports: ExportDirs,
        on_load: Callable[[Any], None] | None = None,
    ) -> None:
        """`on_load(encoder)` runs when the torch model has loaded, before it is used: the
        library checks its vector size there and records the model."""
        self.spec = spec
        self.device = device
        self.exports = exports
        self._on_load = on_load
        self._torch: Any = None
        self._fast: dict[str, Any] = {}

    def get(self, task: str) -> Any:
        """The encoder for `task` (TEXT, IMAGE or INDEX)."""
        if task not in TASKS:
            raise ValueError(f"unknown encoder task {task!r}")
        if self._torch is not None or task == INDEX or self.device not in ("auto", "cpu"):
            return self.torch()  # an accelerator named on purpose runs the torch towers
        if task not in self._fast:
            self._fast[task] = _load_exported(task, self.exports)
        return self._fast[task] or self.torch()

    def torch(self) -> Any:
        """The open_clip model, loaded once; then its towers are exported for later queries."""
        if self._torch is None:
            preflight(self.spec)
            encoder = index_encoder(self.spec, self.device)
            if self._on_load is not None:
                self._on_load(encoder)
            self._torch = encoder
            export_towers(encoder, self.exports)
        return self._torch

    def use(self, encoder: Any) -> None:
        """Serve every task with `encoder` (tests, custom models); nothing is exported."""
        self._torch = encoder


def index_encoder(spec: ModelSpec, device: str, checkpoint: str | None = None) -> Any:
    """The encoder that embeds photos in bulk: the open_clip model in torch.  `checkpoint`
    is a local copy of a tag's weights (Ray workers receive theirs from the driver)."""
    from .openclip import ClipEncoder

    return ClipEncoder(spec, device, checkpoint)


def export_towers(encoder: Any, exports: ExportDirs) -> dict[str, bool]:
    """Export each tower that has no export yet, so later queries need neither torch nor
    open_clip; a tower this version cannot replay exactly is left to torch.  Returns, per
    query task, whether a torch-free tower is there now."""
    from . import textort
    from .imageort import has_export
    from .textnp import FastTextEncoder

    text = (
        FastTextEncoder.load(exports.text) is not None
        or textort.has_export(exports.text)
        or encoder.export_text(exports.text)
    )
    image = has_export(exports.image) or encoder.export_image(exports.image)
    return {TEXT: text, IMAGE: image}


def _load_exported(task: str, exports: ExportDirs) -> Any:
    """The torch-free tower for a query task, or None.  Imported on demand: a text query
    should not pay for loading PIL and onnxruntime, nor an image query for the tokenizer."""
    if task == TEXT:
        from .textnp import FastTextEncoder

        fast = FastTextEncoder.load(exports.text)
        if fast is not None:
            return fast
        from .textort import OnnxTextEncoder  # other families: ONNX and their tokenizer.json

        return OnnxTextEncoder.load(exports.text)
    from .imageort import FastImageEncoder

    return FastImageEncoder.load(exports.image)
