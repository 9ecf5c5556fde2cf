"""The one place that decides which encoder runs for a task, as open_clip's `factory.py` is the
one place that turns a name into a model.

Tasks: `TEXT` (a query's words), `IMAGE` (a photo that is not in the library) and `INDEX`
(photos in bulk).  Queries prefer the torch-free towers exported for the model (numpy text,
onnxruntime image): a cold text query then took 0.5 s instead of 5.6 s with torch.  A tower
without an export falls back to the open_clip model in torch.  Once torch is loaded it serves
every query task: a second copy of the model in memory would buy nothing.

Indexing on a CPU runs the image export in onnxruntime too (`backend` decides, and says why):
faster than torch's fp32 forward on the machines measured, and an index run that never loads
torch holds the model once (about 0.5 GB less).  The first run of a model on a machine has no
export yet: it indexes with torch and writes the export in a thread meanwhile.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ClipsearchError
from . import backend
from .backend import AUTO, FP32, ORT, TORCH, Choice
from .spec import ModelSpec, preflight

TEXT, IMAGE, INDEX = "text", "image", "index"
TASKS = (TEXT, IMAGE, INDEX)


@dataclass(frozen=True)
class ExportDirs:
    """Where a model's torch-free towers are written and read."""

    text: Path
    image: Path
    key: str | None = None  # the model's key in the user cache; None: a library's own folders
    choices: Path | None = None  # where measured backend choices are kept (None: nowhere)


class Encoders:
    """The encoders of one model, each made on first use and kept: batch queries would
    otherwise reopen an onnxruntime session (~0.35 s) or re-read the BPE merges per line."""

    def __init__(
        self,
        spec: ModelSpec,
        device: str,
        exports: ExportDirs | Callable[[], ExportDirs],
        on_load: Callable[[Any], None] | None = None,
        *,
        index_backend: str = AUTO,
        precision: str = AUTO,
    ) -> None:
        """`on_load(encoder)` runs when an image encoder that embeds the library has loaded,
        before it is used: the library checks its vector size there and records the model.
        `exports` may be a function, called once when a tower is first needed (finding the
        user-cache folder may hash the checkpoint)."""
        backend.check_request(index_backend, precision)
        self.spec = spec
        self.device = device
        self._exports = exports
        self._on_load = on_load
        self.index_backend = index_backend
        self.precision = precision
        self.choice: Choice | None = None  # what the index encoder is, once loaded
        self._torch: Any = None
        self._index: Any = None
        self._fast: dict[str, Any] = {}
        self._exporting: threading.Thread | None = None
        self._measure = False

    @property
    def exports(self) -> ExportDirs:
        if callable(self._exports):
            self._exports = self._exports()
        return self._exports

    def get(self, task: str) -> Any:
        """The encoder for `task` (TEXT, IMAGE or INDEX)."""
        if task not in TASKS:
            raise ValueError(f"unknown encoder task {task!r}")
        if task == INDEX:
            if self._index is None:
                self._index = self._load_index()
            return self._index
        if self._torch is not None or self.device not in ("auto", "cpu"):
            return self.torch()  # an accelerator named on purpose runs the torch towers
        if task not in self._fast:
            self._fast[task] = _load_exported(task, self.exports)
        return self._fast[task] or self.torch()

    def torch(self, precision: str = AUTO) -> Any:
        """The open_clip model, loaded once; its towers are then exported in a thread, for
        later queries and index runs (`finish` waits for it)."""
        if self._torch is None:
            preflight(self.spec)
            encoder = index_encoder(self.spec, self.device, precision=precision)
            if self._on_load is not None:
                self._on_load(encoder)
            self._torch = encoder
            self._start_export(encoder)
        return self._torch

    def use(self, encoder: Any) -> None:
        """Serve every task with `encoder` (tests, custom models); nothing is exported."""
        self._torch = self._index = encoder
        self.choice = Choice(TORCH, _precision(encoder), "given")

    def finish(self, measure: bool = True) -> None:
        """Wait for the export thread; then, on the first run of a model on a CPU that claims
        fast bf16, measure the engines once (the index is done, so the cores are free; not
        after an interrupted run, whose user wants out)."""
        if self._exporting is not None:
            self._exporting.join()
            self._exporting = None
        if self._measure and measure:
            self._measure = False
            exports = self.exports
            measured = backend.measure(self._torch, exports.image)
            if measured is not None and exports.choices is not None and exports.key:
                backend.record_choice(exports.choices, exports.key, measured)

    def _load_index(self) -> Any:
        """The index encoder `backend.choose` names, falling back to torch when the export
        cannot be opened (and then writing it afresh)."""
        if self._torch is not None:
            self.choice = Choice(TORCH, _precision(self._torch), "model already loaded")
            return self._torch
        exports = self.exports
        measured = None
        if exports.choices is not None and exports.key:
            measured = backend.recorded_choice(exports.choices, exports.key)
        choice = backend.choose(
            self.device,
            self.index_backend,
            self.precision,
            export_ok=_has_image_export(exports.image),
            measured=measured,
        )
        if choice.backend == ORT:
            encoder = _load_index_export(exports.image, choice.precision)
            if encoder is not None:
                if self._on_load is not None:
                    self._on_load(encoder)
                self.choice = choice
                return encoder
            if self.index_backend == ORT:
                raise ClipsearchError(
                    f"onnxruntime cannot open the image export in {exports.image}: "
                    "use --backend auto (torch rewrites it)"
                )
            shutil.rmtree(exports.image, ignore_errors=True)  # broken: written afresh below
            choice = Choice(TORCH, FP32, "the image export could not be opened")
        encoder = self.torch(choice.precision)
        self.choice = Choice(TORCH, _precision(encoder), choice.reason)
        self._measure = (
            measured is None
            and self.index_backend == AUTO
            and self.precision == AUTO
            and encoder.device == "cpu"
            and backend.onnxruntime_available()
            and backend.advertises_bf16(backend.cpu_flags())
        )
        return encoder

    def _start_export(self, encoder: Any) -> None:
        exports = self.exports

        def work() -> None:
            # No room or no permission: queries and index runs keep using torch.
            with contextlib.suppress(OSError):
                export_towers(encoder, exports)

        self._exporting = threading.Thread(target=work, name="clipsearch-export")
        self._exporting.start()


def index_encoder(
    spec: ModelSpec, device: str, checkpoint: str | None = None, precision: str = AUTO
) -> Any:
    """The encoder that embeds photos in bulk: the open_clip model in torch (`precision` auto:
    fp16 on CUDA, fp32 elsewhere).  `checkpoint` is a local copy of a tag's weights (Ray
    workers receive theirs from the driver)."""
    from .openclip import ClipEncoder

    return ClipEncoder(spec, device, checkpoint, precision)


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


def _has_image_export(directory: Path) -> bool:
    from .imageort import has_export

    return has_export(directory)


def _load_index_export(directory: Path, precision: str) -> Any:
    """The image export in onnxruntime with every core of this process (the decode workers
    share them: see `indexing.pipeline.worker_plan`), or None."""
    from .imageort import FastImageEncoder, index_threads

    return FastImageEncoder.load(directory, precision=precision, threads=index_threads())


def _precision(encoder: Any) -> str:
    return getattr(encoder, "precision", FP32)
