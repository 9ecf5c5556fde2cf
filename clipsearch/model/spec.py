"""Which model a library uses: names, tags and checkpoint files, resolved in one place.

A `ModelSpec` is an open_clip architecture plus a pretrained tag or a local checkpoint file.
This module decides which spec a library gets (`choose_model`), turns a tag into the arguments
open_clip needs (`tag_overrides`), finds weights on disk, and fails fast when they can only come
from an unreachable hub: open_clip retries a dead hub for about a minute; a user deserves the
answer in seconds.  Nothing here imports torch, so these checks are cheap.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClipsearchError, ModelUnavailable
from ..fsutil import absolute

CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
HUB_PROBE_SECONDS = 4.0
CONFIG_ENV = "CLIPSEARCH_MODEL_CONFIGS"
# Where the default model's weights live on the hub (open_clip's table says the same; a test
# checks), so a missing download is detected before torch is even imported.
KNOWN_HUB = {("ViT-B-32", "laion2b_s34b_b79k"): "laion/CLIP-ViT-B-32-laion2B-s34B-b79K/"}
_registered: set[str] = set()


@dataclass(frozen=True)
class ModelSpec:
    """Which open_clip model a library uses: architecture name plus a pretrained tag or file."""

    name: str
    pretrained: str

    @property
    def is_file(self) -> bool:
        return looks_like_checkpoint(self.pretrained)

    def label(self) -> str:
        return f"{self.name} ({self.pretrained})"


DEFAULT_MODEL = ModelSpec("ViT-B-32", "laion2b_s34b_b79k")


def choose_model(recorded: ModelSpec | None, model: str | None, pretrained: str | None):
    """The library's model wins; asking for a different one is an error, not a silent switch."""
    if recorded is None:
        if model is None or model == DEFAULT_MODEL.name:
            return normalise(ModelSpec(DEFAULT_MODEL.name, pretrained or DEFAULT_MODEL.pretrained))
        check_model_name(model)
        if pretrained is None:
            raise ClipsearchError(
                f"--model {model} needs --pretrained TAG or --pretrained FILE as well"
            )
        return normalise(ModelSpec(model, pretrained))
    wanted = ModelSpec(model or recorded.name, pretrained or recorded.pretrained)
    if (model or pretrained) and normalise(wanted, must_exist=False) != recorded:
        raise ClipsearchError(
            f"this library was built with {recorded.label()}, not {wanted.label()}: "
            "drop --model/--pretrained, or use another --library"
        )
    return recorded


def looks_like_checkpoint(pretrained: str) -> bool:
    """A pretrained value naming a local file rather than a tag."""
    return pretrained.lower().endswith(CHECKPOINT_SUFFIXES) or os.sep in pretrained


def normalise(spec: ModelSpec, *, must_exist: bool = True) -> ModelSpec:
    """Make a checkpoint path absolute so the library can find it from any working directory."""
    if not spec.is_file:
        return spec
    path = absolute(spec.pretrained)
    if must_exist and not os.path.isfile(path):
        raise ModelUnavailable(
            f"checkpoint file not found: {spec.pretrained} (give the path of a "
            ".safetensors, .bin or .pt state dict)"
        )
    return ModelSpec(spec.name, path)


def open_clip_module():
    """Import open_clip with the architectures named in $CLIPSEARCH_MODEL_CONFIGS registered.

    That variable lists open_clip model-config JSON files or folders (os.pathsep-separated),
    for custom architectures; the test suite uses it for its tiny model.
    """
    import open_clip

    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns through the root logger
    for entry in filter(None, os.environ.get(CONFIG_ENV, "").split(os.pathsep)):
        if entry not in _registered:
            open_clip.add_model_config(entry)
            _registered.add(entry)
    return open_clip


def model_configs() -> dict[str, Path]:
    """open_clip's architecture configs by name, read from its package folder and from
    $CLIPSEARCH_MODEL_CONFIGS without importing open_clip (which imports torch: seconds), so
    an unknown or unworkable --model is refused at once."""
    found = importlib.util.find_spec("open_clip")
    folders = [Path(p) / "model_configs" for p in (found.submodule_search_locations or [])]
    extra = [Path(e) for e in filter(None, os.environ.get(CONFIG_ENV, "").split(os.pathsep))]
    files = [f for d in folders + extra for f in (sorted(d.glob("*.json")) if d.is_dir() else [d])]
    return {f.stem: f for f in files if f.suffix == ".json"}


def check_model_name(name: str) -> None:
    """An unknown name is refused with the closest known ones; an architecture whose text
    tower needs a missing package is refused with the package to install."""
    from .catalog import suggest

    configs = model_configs()
    if name not in configs and _registered_in_process(name):
        return
    if name not in configs:
        close = suggest(name, list(configs))
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ModelUnavailable(
            f"unknown model {name!r}: {hint}`clipsearch models` lists recommended ones"
        )
    reason = unworkable(configs[name])
    if reason:
        raise ModelUnavailable(f"cannot use {name}: {reason}")


def _registered_in_process(name: str) -> bool:
    """A config added to an already imported open_clip (tests, custom code)."""
    import sys

    return "open_clip" in sys.modules and name in sys.modules["open_clip"].list_models()


def unworkable(config_file: Path) -> str | None:
    """Why an architecture cannot run here, or None.  Hugging Face text towers (XLM-R,
    NLLB, RoBERTa) need the transformers package (the `families` extra)."""
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return f"its config {config_file} is unreadable"
    text = config.get("text_cfg", {})
    if text.get("hf_model_name") and importlib.util.find_spec("transformers") is None:
        return (
            f"its {text['hf_model_name']} text tower needs the transformers package: "
            "pip install 'clipsearch[families]'"
        )
    return None


def tag_config(spec: ModelSpec) -> dict:
    """open_clip's record for a pretrained tag; raises a clear error for unknown tags."""
    open_clip = open_clip_module()
    cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(spec.name)) or "none"
        raise ModelUnavailable(
            f"unknown pretrained tag {spec.pretrained!r} for {spec.name} (known: {tags}); "
            "or pass --pretrained FILE"
        )
    return cfg


def tag_overrides(spec: ModelSpec, checkpoint: str | None = None) -> dict:
    """For a tag: the local checkpoint plus the tag's preprocessing and activation settings,
    as keyword arguments of open_clip's `create_model_and_transforms`.  `checkpoint` is a
    copy of the tag's weights already at hand (a Ray worker's), so nothing is looked up."""
    if spec.is_file:
        return {}
    cfg = tag_config(spec)
    return {
        "checkpoint": checkpoint or resolve_checkpoint(spec, cfg),
        "force_quick_gelu": bool(cfg.get("quick_gelu", False)),
        "image_mean": cfg.get("mean"),
        "image_std": cfg.get("std"),
        "image_interpolation": cfg.get("interpolation"),
        "image_resize_mode": cfg.get("resize_mode"),
    }


def weights_file(spec: ModelSpec) -> str:
    """The local file holding the spec's weights (a tag's is resolved as loading would)."""
    return spec.pretrained if spec.is_file else tag_overrides(spec)["checkpoint"]


def preflight(spec: ModelSpec) -> None:
    """Fail within seconds, before any heavy import, when known weights can't be had."""
    hub = KNOWN_HUB.get((spec.name, spec.pretrained))
    if hub and not _cached_hub_file({"hf_hub": hub}) and not hub_reachable():
        raise _offline(spec)
    missing = _hub_text_files(spec.name)
    if missing and not hub_reachable():
        raise ModelUnavailable(
            f"cannot use {spec.name} offline: its {missing} comes from the model hub, which "
            "is unreachable and has no cached copy here. Run once with network access"
        )


def _hub_text_files(name: str) -> str | None:
    """The hub tokenizer or text config `name` needs that is neither a local folder nor in
    the Hugging Face cache (open_clip would fetch it, retrying a dead hub for a minute, and
    even a local checkpoint file does not carry it)."""
    config = model_configs().get(name)
    if config is None:
        return None
    try:
        text = json.loads(config.read_text()).get("text_cfg", {})
    except (OSError, ValueError):
        return None
    for key, what, filename in (
        ("hf_tokenizer_name", "tokenizer", "tokenizer_config.json"),
        ("hf_model_name", "text model config", "config.json"),
    ):
        repo = text.get(key)
        if (
            repo
            and not os.path.isdir(repo)
            and not _cached_hub_file({"hf_hub": f"{repo}/{filename}"})
        ):
            return f"{what} {repo}"
    return None


def _offline(spec: ModelSpec) -> ModelUnavailable:
    return ModelUnavailable(
        f"cannot download weights for {spec.label()}: the model hub is unreachable. "
        "Run once with network access to cache them, or pass --pretrained FILE "
        "with a local checkpoint (.safetensors, .bin or .pt)"
    )


def resolve_checkpoint(spec: ModelSpec, cfg: dict) -> str:
    """Local path of the weights for a tag: the hub cache if present, else a bounded download."""
    if "file" in cfg:
        return cfg["file"]
    cached = _cached_hub_file(cfg)
    if cached:
        return cached
    if not hub_reachable():
        raise _offline(spec)
    from open_clip.pretrained import download_pretrained

    try:
        return download_pretrained(cfg)
    except Exception as exc:  # the hub answered but the download failed
        raise ModelUnavailable(
            f"downloading weights for {spec.label()} failed ({exc.__class__.__name__}); "
            "try again, or pass --pretrained FILE"
        ) from exc


def _cached_hub_file(cfg: dict) -> str | None:
    hub = cfg.get("hf_hub", "")
    if not hub:
        return None
    from huggingface_hub import try_to_load_from_cache

    repo, filename = os.path.split(hub)
    filename = filename or "open_clip_pytorch_model.bin"
    stem = os.path.splitext(filename)[0]
    for candidate in (stem + ".safetensors", "open_clip_model.safetensors", filename):
        found = try_to_load_from_cache(repo, candidate)
        if isinstance(found, str):
            return found
    return None


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether the hub answers an HTTP request within `timeout`, DNS included.

    Any HTTP status counts as an answer; silence, refusal or a DNS failure does not.
    The probe runs in a daemon thread so a resolver that hangs cannot hold us up.
    """
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    answered: list[bool] = []

    def probe() -> None:
        request = urllib.request.Request(endpoint, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                answered.append(True)
        except urllib.error.HTTPError:
            answered.append(True)
        except (OSError, ValueError):
            answered.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered and answered[0])
