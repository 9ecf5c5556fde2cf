"""The torch-free image encoder must match open_clip: same preprocessed pixels, same vectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from conftest import TINY, photo, roughened_model, save_photo
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from torchvision import transforms as T

from clipsearch.library import Library
from clipsearch.model.exportfile import CONFIG_NAME, WEIGHTS_NAME
from clipsearch.model.imageort import GRAPH_NAME, FastImageEncoder, export_image_encoder, has_export

TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
VISION = {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32}


def _config(vision: dict | None = None, **extra) -> dict:
    return {"embed_dim": 48, "vision_cfg": {**VISION, **(vision or {})}, "text_cfg": TEXT, **extra}


CONFIGS = {
    "visionfast-tiny": _config(),
    "visionfast-tiny-quickgelu": _config(quick_gelu=True),
    "visionfast-tiny-custom-text": _config(custom_text=True),
    "visionfast-tiny-avg": _config({"pool_type": "avg"}),
    "visionfast-tiny-avg-ln-after": _config({"pool_type": "avg", "final_ln_after_pool": True}),
    "visionfast-tiny-no-ln-pre": _config({"no_ln_pre": True}),
    "visionfast-tiny-eps": _config({"norm_kwargs": {"eps": 1e-6}}),
    "visionfast-tiny-patch-dropout": _config({"patch_dropout": 0.5}),
    "visionfast-224": _config({"image_size": 224, "patch_size": 32, "layers": 1}),
    # not reproduced, so never exported:
    "visionfast-tiny-layerscale": _config({"ls_init_value": 0.1}),
    "visionfast-tiny-attn-pool": _config({"attentional_pool": True, "attn_pooler_queries": 4}),
    "visionfast-tiny-qk-norm": _config({"qk_norm": True}),
    "visionfast-tiny-no-pool": _config({"pool_type": "none"}),
    "visionfast-tiny-tanh-gelu": _config({"act_kwargs": {"approximate": "tanh"}}),
    "visionfast-tiny-resnet": _config({"layers": [1, 1, 1, 1], "width": 16}),
    "visionfast-tiny-non-square": _config({"image_size": [32, 48]}),
}
SIZES = [(160, 120), (97, 301), (33, 47), (47, 33), (31, 31), (32, 32), (7, 5), (1, 1)]
SIZES += [(1000, 13), (3, 200), (64, 33), (225, 224), (301, 300), (640, 480), (480, 640)]


def _model(name: str, seed: int = 0) -> torch.nn.Module:
    return roughened_model(name, CONFIGS[name], seed)


def _transform(model: torch.nn.Module, **overrides) -> T.Compose:
    cfg = {**open_clip.get_model_preprocess_cfg(model), **overrides}
    return image_transform_v2(PreprocessCfg(**cfg), is_train=False)


def _images(seed: int = 0) -> list[Image.Image]:
    """Noise at awkward sizes (odd, portrait, thinner than a patch, larger and smaller than the
    input) plus two photo-like pictures: noise makes any resampling difference visible."""
    rng = np.random.default_rng(seed)
    noise = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]
    return [photo(seed, (160, 120)), photo(seed + 1, (90, 200)), *noise]


def _reference(model: torch.nn.Module, transform, images: list[Image.Image]) -> np.ndarray:
    with torch.no_grad():
        batch = torch.stack([transform(image) for image in images])
        return model.encode_image(batch, normalize=True).numpy()


def _export(model: torch.nn.Module, transform, out: Path) -> FastImageEncoder:
    assert export_image_encoder(model, transform, out)
    encoder = FastImageEncoder.load(out)
    assert encoder is not None
    return encoder


@pytest.mark.parametrize("name", ["visionfast-tiny", "visionfast-224"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("resize_mode", ["shortest", "squash"])
def test_preprocessing_matches_open_clip(tmp_path, name, interpolation, resize_mode):
    model = _model(name)
    transform = _transform(model, interpolation=interpolation, resize_mode=resize_mode)
    encoder = _export(model, transform, tmp_path / "vf")
    size = encoder.image_size
    for image in _images():
        pixels = encoder.preprocess(image)
        assert pixels.dtype == np.float32 and pixels.shape == (3, size, size)
        assert np.abs(pixels - transform(image).numpy()).max() <= 1e-5, image.size


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_preprocessing_matches_for_other_pixel_modes(tmp_path, mode):
    model = _model("visionfast-tiny")
    transform = _transform(model)
    encoder = _export(model, transform, tmp_path / "vf")
    for image in _images()[:6]:
        converted = image.convert(mode) if mode != "RGBA" else image.convert("RGBA")
        if mode == "RGBA":
            converted.putalpha(Image.linear_gradient("L").resize(image.size))
        expected = transform(converted).numpy()
        assert np.abs(encoder.preprocess(converted) - expected).max() <= 1e-5, image.size


@pytest.mark.parametrize(
    ("name", "activation", "pool"),
    [
        ("visionfast-tiny", "gelu", "tok"),
        ("visionfast-tiny-quickgelu", "quick_gelu", "tok"),
        ("visionfast-tiny-custom-text", "gelu", "tok"),
        ("visionfast-tiny-avg", "gelu", "avg"),
        ("visionfast-tiny-avg-ln-after", "gelu", "avg"),
        ("visionfast-tiny-no-ln-pre", "gelu", "tok"),
        ("visionfast-tiny-eps", "gelu", "tok"),
        ("visionfast-tiny-patch-dropout", "gelu", "tok"),
    ],
)
def test_vectors_match_open_clip(tmp_path, name, activation, pool):
    model = _model(name)
    transform = _transform(model)
    encoder = _export(model, transform, tmp_path / "vf")
    assert (encoder.config["activation"], encoder.config["pool"]) == (activation, pool)
    images = _images()
    vectors = _encode(encoder, images)
    assert vectors.dtype == np.float32 and vectors.shape == (len(images), 48)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    reference = _reference(model, transform, images)
    assert np.sum(vectors * reference, axis=1).min() >= 0.9999
    np.testing.assert_allclose(vectors, reference, atol=1e-4)


def test_batches_match_single_images_and_empty(tmp_path):
    model = _model("visionfast-tiny")
    encoder = _export(model, _transform(model), tmp_path / "vf")
    images = _images() + _images(seed=5)  # more than one forward batch
    single = np.stack([_encode(encoder, [image])[0] for image in images])
    np.testing.assert_allclose(_encode(encoder, images), single, atol=1e-6)
    assert _encode(encoder, []).shape == (0, 48)


def test_config_dict_exports_the_same_as_its_transform(tmp_path):
    model = _model("visionfast-tiny")
    assert export_image_encoder(model, open_clip.get_model_preprocess_cfg(model), tmp_path / "a")
    assert export_image_encoder(model, _transform(model), tmp_path / "b")
    configs = [json.loads((tmp_path / d / CONFIG_NAME).read_text()) for d in ("a", "b")]
    assert configs[0] == configs[1]


@pytest.mark.parametrize(
    "name",
    [
        "visionfast-tiny-layerscale",
        "visionfast-tiny-attn-pool",
        "visionfast-tiny-qk-norm",
        "visionfast-tiny-tanh-gelu",
        "visionfast-tiny-resnet",
    ],
)
def test_other_towers_are_traced_to_onnx_and_match(tmp_path, name):
    """Towers the graph writer does not cover are traced by torch.onnx instead."""
    model = _model(name)
    transform = _transform(model)
    encoder = _export(model, transform, tmp_path / "vf")
    assert encoder.config["graph"] == "traced"
    images = _images()
    cosines = np.sum(_encode(encoder, images) * _reference(model, transform, images), axis=1)
    assert cosines.min() >= 0.9999


@pytest.mark.parametrize("name", ["visionfast-tiny-non-square", "visionfast-tiny-no-pool"])
def test_towers_without_one_vector_per_square_image_export_nothing(tmp_path, name):
    model = _model(name)
    assert export_image_encoder(model, _transform(model), tmp_path / "vf") is False
    assert list(tmp_path.iterdir()) == []


def _tail(model: torch.nn.Module) -> list:
    """The eval transform without its Resize."""
    return _transform(model).transforms[1:]


@pytest.mark.parametrize(
    "make_transform",
    [
        lambda model: _transform(model, resize_mode="longest"),
        lambda model: _transform(model, size=48),
        lambda model: T.Compose([T.Grayscale(3), *_transform(model).transforms]),
        lambda model: T.Compose([T.Resize(32, max_size=64), *_tail(model)]),
        lambda model: T.Compose([T.Resize(32, T.InterpolationMode.NEAREST), *_tail(model)]),
        lambda model: T.Compose(_transform(model).transforms[:-1]),
        lambda model: lambda image: _transform(model)(image),
    ],
)
def test_unsupported_transforms_export_nothing(tmp_path, make_transform):
    model = _model("visionfast-tiny")
    assert export_image_encoder(model, make_transform(model), tmp_path / "vf") is False
    assert list(tmp_path.iterdir()) == []


def test_load_rejects_missing_foreign_and_truncated_exports(tmp_path):
    assert FastImageEncoder.load(tmp_path / "absent") is None
    model = _model("visionfast-tiny")
    out = tmp_path / "vf"
    _export(model, _transform(model), out)
    config = json.loads((out / CONFIG_NAME).read_text())
    changes = ({"version": 1}, {"version": 999}, {"format": "clipsearch-textfast"}, {"pool": "max"})
    for change in changes:
        (out / CONFIG_NAME).write_text(json.dumps({**config, **change}))
        assert FastImageEncoder.load(out) is None
    (out / CONFIG_NAME).write_text(json.dumps(config))
    assert FastImageEncoder.load(out) is not None
    graph = (out / GRAPH_NAME).read_bytes()
    for damaged in (b"not a graph", graph[: len(graph) // 2], b""):
        (out / GRAPH_NAME).write_bytes(damaged)
        assert FastImageEncoder.load(out) is None
    assert has_export(out)  # the cheap check looks at the format, not inside the graph
    (out / GRAPH_NAME).unlink()
    assert FastImageEncoder.load(out) is None and not has_export(out)
    (out / GRAPH_NAME).write_bytes(graph)
    with open(out / WEIGHTS_NAME, "r+b") as f:
        f.truncate(1000)
    assert FastImageEncoder.load(out) is None


def test_reexport_skips_identical_and_replaces_changed(tmp_path):
    out = tmp_path / "vf"
    first, second = _model("visionfast-tiny", seed=1), _model("visionfast-tiny", seed=2)
    transform = _transform(first)
    _export(first, transform, out)
    inode = (out / WEIGHTS_NAME).stat().st_ino
    _export(first, transform, out)
    assert (out / WEIGHTS_NAME).stat().st_ino == inode
    images = _images()[:3]
    vectors = _encode(_export(second, transform, out), images)
    assert np.sum(vectors * _reference(second, transform, images), axis=1).min() >= 0.9999
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vf"]


def _encode(encoder: FastImageEncoder, images: list) -> np.ndarray:
    """Vectors of PIL images through the encoder contract: preprocess, stack, encode."""
    size = encoder.image_size
    batch = [encoder.preprocess(image) for image in images]
    return encoder.encode_images(np.stack(batch) if batch else np.zeros((0, 3, size, size)))


def _run_python(script: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )


NO_TORCH = (  # nor onnx, which only writes the graph at export
    "heavy = {'torch', 'torchvision', 'timm', 'open_clip', 'onnx'} & set(sys.modules)\n"
    "assert not heavy, heavy\n"
)


def test_image_path_imports_no_torch(tmp_path):
    model = _model("visionfast-tiny")
    _export(model, _transform(model), tmp_path / "vf")
    jpeg = save_photo(tmp_path / "p.jpg", seed=3)
    script = (
        "import sys\n"
        "from clipsearch.photos.decode import load_image\n"
        "from clipsearch.model.imageort import FastImageEncoder\n"
        f"encoder = FastImageEncoder.load({str(tmp_path / 'vf')!r})\n"
        f"image = load_image({str(jpeg)!r}, min_side=encoder.image_size)\n"
        "vectors = encoder.encode_images(encoder.preprocess(image)[None])\n"
        "assert vectors.shape == (1, 48)\n" + NO_TORCH
    )
    result = _run_python(script)
    assert result.returncode == 0, result.stderr


def test_library_embeds_new_images_without_torch(tmp_path, tiny_checkpoint):
    photos, lib_dir = tmp_path / "photos", tmp_path / "lib"
    for seed in range(3):
        save_photo(photos / f"p{seed}.jpg", seed=seed)
    new = save_photo(tmp_path / "new.jpg", seed=9)
    with Library.open(lib_dir, model=TINY, pretrained=str(tiny_checkpoint), create=True) as lib:
        assert lib.index([photos]).indexed == 3
        expected = lib.embed_image(str(new))  # the torch encoder is loaded: the torch path
        image_export = lib.encoders.exports.image
    assert FastImageEncoder.load(image_export) is not None
    script = (
        "import sys, json\n"
        "from clipsearch.library import Library\n"
        f"with Library.open({str(lib_dir)!r}) as lib:\n"
        f"    vector = lib.embed_image({str(new)!r})\n"
        f"    hits = lib.similar({str(new)!r}, top=2)\n"
        "assert len(hits) == 2\n" + NO_TORCH + "print(json.dumps(vector.tolist()))\n"
    )
    result = _run_python(script)
    assert result.returncode == 0, result.stderr
    vector = np.array(json.loads(result.stdout))
    assert float(vector @ expected) >= 0.9999


@pytest.mark.slow
def test_vit_b_32_random_weights_match(tmp_path):
    torch.manual_seed(0)
    model, _, transform = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model.eval()
    encoder = _export(model, transform, tmp_path / "vf")
    assert encoder.config["layers"] == 12 and encoder.image_size == 224 and encoder.dim == 512
    images = _images()
    for image in images:
        assert np.abs(encoder.preprocess(image) - transform(image).numpy()).max() <= 1e-5
    vectors, reference = _encode(encoder, images), _reference(model, transform, images)
    assert np.sum(vectors * reference, axis=1).min() >= 0.9999
    np.testing.assert_allclose(vectors, reference, atol=1e-4)


def test_a_library_opens_each_exported_tower_once(tmp_path, tiny_checkpoint, monkeypatch):
    """`query -` answers line after line with one Library: re-opening the export per query
    re-mapped the whole tower (and re-read the BPE merges) every time."""
    from clipsearch.model.textnp import FastTextEncoder

    photos, lib_dir = tmp_path / "photos", tmp_path / "lib"
    for seed in range(2):
        save_photo(photos / f"p{seed}.jpg", seed=seed)
    with Library.open(lib_dir, model=TINY, pretrained=str(tiny_checkpoint), create=True) as lib:
        lib.index([photos])
    loads = []
    for kind in (FastImageEncoder, FastTextEncoder):
        original = kind.load
        monkeypatch.setattr(
            kind, "load", lambda d, original=original: loads.append(d) or original(d)
        )
    new = [str(save_photo(tmp_path / f"new{i}.jpg", seed=10 + i)) for i in range(3)]
    with Library.open(lib_dir) as lib:
        vectors = [lib.embed_image(path) for path in new]
        lib.embed_texts(["a dog"])
        lib.embed_texts(["a cat"])
    assert sorted(p.name for p in loads) == ["image", "text"]
    assert len({v.tobytes() for v in vectors}) == 3
