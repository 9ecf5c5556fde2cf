"""Torch-free CLIP image tower, so `clipsearch similar new.jpg` never pays for importing torch.

`export_image_encoder` runs once where torch is loaded anyway and writes the image tower of a
standard open_clip ViT (conv patch embedding, class token, pre-LN transformer, token or mean
pooling, projection) together with its eval preprocessing to a directory: weights in the
`exportfile` format the text export shares, and an ONNX graph over them (`onnxgraph`).
`FastImageEncoder` replays the preprocessing with the very PIL calls torchvision makes on a PIL
image, and runs the tower with onnxruntime.  Towers or transforms that are not reproduced
exactly are not exported: the caller keeps torch for them.

Why onnxruntime rather than numpy for this tower: it packs the weights once per session and
picks matrix kernels from the CPU itself.  One ViT-B-32 image took 61 ms on one core (41 ms
on two) against 120 ms (68 ms) through numpy's OpenBLAS, whose AVX2 kernels this project's
machines pin with OPENBLAS_CORETYPE.  Opening a session costs ~0.4 s, once per process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .base import normalised
from .exportfile import CONFIG_NAME, WEIGHTS_NAME, load_export, tensor_table, write_export
from .fromtorch import BlockSpec, block_tensors, is_layer_norm, to_numpy

FORMAT = "clipsearch-visionfast"
VERSION = 2  # 2: the ONNX graph beside the weights
GRAPH_NAME = "tower.onnx"
TRACED = "traced"  # config["graph"] of a tower traced by torch.onnx rather than written here
INT8_GRAPH_NAME = "tower-int8.onnx"
_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
_RESIZE_MODES = ("shortest", "squash")
_POOLS = ("tok", "avg")
_BATCH = 16  # images per forward pass; bounds the (n, tokens, 4 x width) MLP activations
_MAX_THREADS = 2


# --------------------------------------------------------------------------- encoder


class Preprocess:
    """open_clip's eval transform replayed on a PIL image with numpy: no torch, and picklable,
    so decode workers that never import torch can run it."""

    def __init__(self, config: dict[str, Any]) -> None:
        prep = config["preprocess"]
        if prep["resize_mode"] not in _RESIZE_MODES:
            raise ValueError("export uses a preprocessing this version cannot run")
        self.image_size = int(config["image_size"])
        self._squash = prep["resize_mode"] == "squash"
        self._filter = _FILTERS[prep["interpolation"]]
        self._mean = np.asarray(prep["mean"], dtype=np.float32)
        self._std = np.asarray(prep["std"], dtype=np.float32)

    def __call__(self, image: Image.Image) -> np.ndarray:
        """(3, size, size) float32: open_clip's eval transform, step for step on the PIL image.

        Resize, crop and RGB conversion happen in that order, as in open_clip, so even a
        palette or RGBA image goes through the same PIL operations.
        """
        size = self.image_size
        if self._squash:
            image = self._resize(image, (size, size))
        else:
            image = _center_crop(self._resize(image, _shortest_side_to(image.size, size)), size)
        pixels = np.asarray(image.convert("RGB")).astype(np.float32) / np.float32(255)
        return ((pixels - self._mean) / self._std).transpose(2, 0, 1)

    def _resize(self, image: Image.Image, size: tuple[int, int]) -> Image.Image:
        """torchvision's Resize on a PIL image: PIL's own resize, skipped at the same size."""
        return image if image.size == size else image.resize(size, self._filter)


class FastImageEncoder:
    """open_clip image preprocessing and ViT image tower replayed from an export directory."""

    torch_free = True  # decode workers need no torch for this encoder's inputs

    def __init__(self, config: dict[str, Any], session: Any, precision: str = "fp32") -> None:
        traced = config.get("graph") == TRACED
        if not (traced or config.get("pool") in _POOLS):
            raise ValueError("export uses a pooling this version cannot run")
        self.config = config
        self.preprocess = Preprocess(config)
        self.image_size = self.preprocess.image_size
        self.dim = int(config["embed_dim"])
        self.device = "cpu"
        self.precision = precision
        self._session = session
        self._input = session.get_inputs()[0].name  # not onnxgraph's constant: it loads onnx

    @classmethod
    def load(
        cls, directory: Path | str, *, precision: str = "fp32", threads: int | None = None
    ) -> FastImageEncoder | None:
        """Open an export, or None if it is absent, incomplete, of another format, or one that
        onnxruntime cannot run.  `precision` int8 runs the dynamically quantised graph
        (written beside the export on first use); `threads` defaults to `_threads()`."""
        export = load_export(directory, FORMAT, VERSION)
        if export is None:
            return None
        graph = GRAPH_NAME if precision == "fp32" else quantized_graph(Path(directory))
        if graph is None:
            return None
        session = _session(Path(directory), export.config["fingerprint"], graph, threads)
        if session is None:
            return None
        try:
            return cls(export.config, session, precision)
        except (ValueError, KeyError, TypeError):
            return None

    def encode_images(self, batch: np.ndarray) -> np.ndarray:
        """(n, dim) float32 L2-normalised vectors of n preprocessed images (n, 3, size, size)."""
        out = np.zeros((len(batch), self.dim), dtype=np.float32)
        for start in range(0, len(batch), _BATCH):
            pixels = np.ascontiguousarray(batch[start : start + _BATCH], dtype=np.float32)
            (vectors,) = self._session.run(None, {self._input: pixels})
            out[start : start + len(pixels)] = vectors
        return normalised(out)


def has_export(directory: Path | str) -> bool:
    """Whether `directory` holds a complete export of this format and version; cheaper than
    `FastImageEncoder.load`, which also opens an onnxruntime session (~0.35 s, ~400 MB)."""
    return (
        load_export(directory, FORMAT, VERSION) is not None
        and (Path(directory) / GRAPH_NAME).is_file()
    )


def _session(
    directory: Path, fingerprint: str, graph: str = GRAPH_NAME, threads: int | None = None
) -> Any | None:
    """An onnxruntime session over the export's graph, or None if it cannot be opened or the
    export was replaced while it opened (the graph reads weights.bin by name)."""
    try:
        import onnxruntime
    except ImportError:  # a platform without its wheels: torch embeds the image instead
        return None
    try:
        session = onnxruntime.InferenceSession(
            str(directory / graph), session_options(threads), providers=["CPUExecutionProvider"]
        )
        config = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
    except Exception:  # onnxruntime's errors derive from Exception only
        return None
    return session if config.get("fingerprint") == fingerprint else None


def session_options(threads: int | None = None) -> Any:
    """onnxruntime settings every torch-free tower shares; `threads` defaults to `_threads()`
    (an index run passes `index_threads()`)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or _threads()
    options.inter_op_num_threads = 1
    # Threads sleep between runs instead of spinning, so a query never competes with itself
    # for the cores (spinning made one query on a busy 2-core machine several times slower),
    # nor an index run's model with its decode workers.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 4  # fatal only: a failed load is reported by returning None
    return options


def quantized_graph(directory: Path) -> str | None:
    """The name of the int8 graph in `directory`, written on first use (onnxruntime's dynamic
    quantisation of the matrix products: 30.8 img/s against 15.8 in fp32 for ViT-B-32-256 on
    this project's 2-vCPU machine).  Written to a temporary name and renamed, so readers never
    see half a file; None if onnxruntime's quantiser or onnx is missing or fails."""
    target = directory / INT8_GRAPH_NAME
    if target.is_file():
        return INT8_GRAPH_NAME
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return None
    tmp = directory / f".{INT8_GRAPH_NAME}.tmp-{os.getpid()}"
    try:
        quantize_dynamic(
            directory / GRAPH_NAME,
            tmp,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
        )
        os.replace(tmp, target)
    except Exception:  # the quantiser raises whatever onnx raises
        tmp.unlink(missing_ok=True)
        return None
    return INT8_GRAPH_NAME


def _threads() -> int:
    """Threads for one forward pass: two, if this process may use two cores.

    Measured for one ViT-B-32 image: 41 ms on two threads against 61 ms on one when the
    cores are idle.  More threads were not measured, so they are not used.
    """
    return min(_MAX_THREADS, _cores())


def index_threads(cores: int | None = None) -> int:
    """Model threads of an index run: every core on one or two (the decode worker only fills
    the gaps), else all but a third, which decode (see `indexing.pipeline.worker_plan`)."""
    cores = cores or _cores()
    return cores if cores <= 2 else cores - max(1, cores // 3)


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _shortest_side_to(size: tuple[int, int], short_side: int) -> tuple[int, int]:
    """torchvision's Resize(int) output size: short side set, long side scaled and truncated."""
    width, height = size
    if width <= height:
        return short_side, int(short_side * height / width)
    return int(short_side * width / height), short_side


def _center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision's CenterCrop on a PIL image at least `size` on each side (Python's
    round-half-even on the offsets, as torchvision uses)."""
    width, height = image.size
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


# --------------------------------------------------------------------------- export


def export_image_encoder(model: Any, preprocess: Any, out_dir: Path | str) -> bool:
    """Write what `FastImageEncoder` needs for `model`'s image side into `out_dir`, atomically.

    `preprocess` is the model's eval transform (as open_clip builds it) or a preprocess config
    dict such as `open_clip.get_model_preprocess_cfg(model)`.  Returns False, writing nothing,
    unless both the tower and the transform are ones reproduced exactly.  An identical
    existing export is kept as is; raises OSError if writing fails.
    """
    spec = _describe(model, preprocess)
    if spec is None:
        return _export_traced(model, preprocess, out_dir)
    config, tensors = spec
    from .onnxgraph import build_graph

    graph = build_graph(config, tensor_table(tensors)[0], WEIGHTS_NAME)
    write_export(out_dir, config, tensors, {GRAPH_NAME: graph})
    return True


def _export_traced(model: Any, preprocess: Any, out_dir: Path | str) -> bool:
    """Any other image tower (timm ViTs with attention pooling as in SigLIP, ConvNeXt,
    MobileCLIP's FastViT...) traced to ONNX by torch, with the preprocessing replayed as for
    the ViT; False when the transform is not one replayed exactly or the tower won't trace."""
    import torch

    from .textort import trace

    visual = getattr(model, "visual", None)
    size = getattr(visual, "image_size", None)
    size = size[0] if isinstance(size, tuple | list) else size
    if not isinstance(size, int):
        return False
    prep = _preprocess_config(_as_transform(preprocess), size)
    if prep is None:
        return False

    class ImageGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.model.encode_image(pixels)

    sample = torch.randn(2, 3, size, size)
    with torch.no_grad():
        shape = tuple(model.encode_image(sample).shape)
    if len(shape) != 2:  # tokens rather than one vector per image
        return False
    graph = trace(ImageGraph().eval(), sample, "pixels")
    if graph is None:
        return False
    dim = shape[1]
    config = {
        "format": FORMAT,
        "version": VERSION,
        "graph": TRACED,
        "image_size": size,
        "embed_dim": dim,
        "preprocess": prep,
    }
    write_export(out_dir, config, {"unused": np.zeros(1, np.float32)}, {GRAPH_NAME: graph})
    return True


def _describe(model: Any, preprocess: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """Config and float32 tensors for a supported model and transform, else None."""
    visual = _vision_tower(model)
    if visual is None:
        return None
    size = visual.image_size[0]
    prep = _preprocess_config(_as_transform(preprocess), size)
    blocks = block_tensors(visual.transformer.resblocks)
    if prep is None or blocks is None:
        return None
    tensors = _tower_tensors(visual, blocks)
    if tensors is None:
        return None
    config = {
        "format": FORMAT,
        "version": VERSION,
        "image_size": size,
        "patch_size": visual.patch_size[0],
        "width": int(visual.class_embedding.shape[0]),
        "heads": int(visual.transformer.resblocks[0].attn.num_heads),
        "layers": len(visual.transformer.resblocks),
        "embed_dim": int(tensors["proj"].shape[1]),
        "activation": blocks.activation,
        "ln_eps": blocks.eps,
        "pool": visual.pool_type,
        "ln_post_after_pool": bool(visual.final_ln_after_pool),
        "preprocess": prep,
    }
    return config, tensors


def _tower_tensors(visual: Any, blocks: BlockSpec) -> dict[str, np.ndarray] | None:
    """All tower tensors, or None unless ln_pre (if any) and ln_post are plain layer norms with
    the blocks' eps.  The conv weight flattens to (width, channel x row x column)."""
    norms = {"ln_post": visual.ln_post}
    if not _is_identity(visual.ln_pre):
        norms["ln_pre"] = visual.ln_pre
    if not all(is_layer_norm(n) and n.eps == blocks.eps for n in norms.values()):
        return None
    tensors = dict(blocks.tensors)
    for name, norm in norms.items():
        tensors[f"{name}.weight"] = to_numpy(norm.weight)
        tensors[f"{name}.bias"] = to_numpy(norm.bias)
    conv = to_numpy(visual.conv1.weight)
    tensors["patch_embedding"] = conv.reshape(conv.shape[0], -1)
    tensors["class_embedding"] = to_numpy(visual.class_embedding)
    tensors["positional_embedding"] = to_numpy(visual.positional_embedding)
    tensors["proj"] = to_numpy(visual.proj)
    return tensors


def _vision_tower(model: Any) -> Any | None:
    """The image tower if `encode_image` is exactly a standard open_clip VisionTransformer."""
    from open_clip.model import CLIP, CustomTextCLIP
    from open_clip.transformer import PatchDropout, VisionTransformer

    if type(model) not in (CLIP, CustomTextCLIP) or type(model.visual) is not VisionTransformer:
        return None
    visual = model.visual
    if visual.attn_pool is not None or visual.output_tokens or visual.pool_type not in _POOLS:
        return None
    if visual.proj is None or visual.proj.ndim != 2:
        return None
    # PatchDropout only acts in training; the export replays eval mode.
    if not (_is_identity(visual.patch_dropout) or type(visual.patch_dropout) is PatchDropout):
        return None
    return visual if _plain_patch_grid(visual) else None


def _plain_patch_grid(visual: Any) -> bool:
    """A square input tiled exactly by non-overlapping bias-free patches, one position each."""
    from torch import nn

    conv, (height, width), (patch, patch_w) = visual.conv1, visual.image_size, visual.patch_size
    grid = height // patch
    return (
        type(conv) is nn.Conv2d
        and conv.bias is None
        and conv.in_channels == 3
        and tuple(conv.kernel_size) == tuple(conv.stride) == (patch, patch)
        and tuple(conv.padding) == (0, 0)
        and tuple(conv.dilation) == (1, 1)
        and conv.groups == 1
        and height == width
        and patch == patch_w
        and height % patch == 0
        and tuple(visual.positional_embedding.shape) == (grid * grid + 1, conv.out_channels)
        and tuple(visual.class_embedding.shape) == (conv.out_channels,)
    )


def _is_identity(module: Any) -> bool:
    from torch import nn

    return type(module) is nn.Identity


def _as_transform(preprocess: Any) -> Any:
    """A preprocess config dict becomes the eval transform open_clip builds from it."""
    if not isinstance(preprocess, Mapping):
        return preprocess
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    cfg = PreprocessCfg(**merge_preprocess_dict(PreprocessCfg(), dict(preprocess)))
    return image_transform_v2(cfg, is_train=False)


def _preprocess_config(transform: Any, size: int) -> dict[str, Any] | None:
    """Resize mode, filter, mean and std if `transform` is open_clip's eval transform for
    `size` in a form `FastImageEncoder.preprocess` replays exactly, else None."""
    from open_clip.transform import MaybeConvertMode, MaybeToTensor
    from torchvision import transforms as T

    steps = list(transform.transforms) if type(transform) is T.Compose else []
    if len(steps) not in (4, 5):
        return None
    *sizing, convert, to_tensor, normalize = steps
    if not (
        type(convert) is MaybeConvertMode
        and convert.mode == "RGB"
        and type(to_tensor) in (MaybeToTensor, T.ToTensor)
        and type(normalize) is T.Normalize
        and len(normalize.mean) == len(normalize.std) == 3
    ):
        return None
    mode = _resize_mode(sizing, size)
    if mode is None or sizing[0].interpolation.value not in _FILTERS:
        return None
    return {
        "resize_mode": mode,
        "interpolation": sizing[0].interpolation.value,
        "mean": [float(m) for m in normalize.mean],
        "std": [float(s) for s in normalize.std],
    }


def _resize_mode(sizing: list[Any], size: int) -> str | None:
    """'shortest' for Resize(size) + CenterCrop(size), 'squash' for Resize((size, size))."""
    from torchvision import transforms as T

    resize, *crop = sizing
    if type(resize) is not T.Resize or resize.max_size is not None:
        return None
    resize_to = [resize.size] if isinstance(resize.size, int) else list(resize.size)
    if not crop and resize_to == [size, size]:
        return "squash"
    if len(crop) == 1 and type(crop[0]) is T.CenterCrop and tuple(crop[0].size) == (size, size):
        return "shortest" if resize_to == [size] else None
    return None
