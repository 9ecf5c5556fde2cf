"""Which engine indexes: onnxruntime over the image export on a CPU; torch where onnxruntime or
the export is missing or broken, where a GPU is present, or where a measurement kept for this
machine and model says so; and the export's fidelity to open_clip on spread weights."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from conftest import TINY, photo, roughened_model
from open_clip.transform import PreprocessCfg, image_transform_v2

from clipsearch.errors import ClipsearchError
from clipsearch.model import backend, factory
from clipsearch.model.backend import BF16, FP16, FP32, INT8, ORT, TORCH, Choice
from clipsearch.model.base import normalised
from clipsearch.model.factory import INDEX, Encoders, ExportDirs
from clipsearch.model.imageort import (
    GRAPH_NAME,
    INT8_GRAPH_NAME,
    FastImageEncoder,
    export_image_encoder,
)
from clipsearch.model.spec import ModelSpec

KEY = "tiny-0123"


@pytest.fixture()
def cpu_only(monkeypatch):
    """A CPU with no GPU and no bf16 claims, whatever machine runs the tests."""
    monkeypatch.setattr(backend, "gpu_present", lambda: False)
    monkeypatch.setattr(backend, "cpu_flags", lambda: frozenset({"avx2"}))


@pytest.fixture()
def torch_loads(monkeypatch) -> list[str]:
    """The precision of every torch model the factory loads."""
    loads: list[str] = []
    real = factory.index_encoder

    def counting(spec, device, checkpoint=None, precision="auto"):
        loads.append(precision)
        return real(spec, device, checkpoint, precision=precision)

    monkeypatch.setattr(factory, "index_encoder", counting)
    return loads


def _dirs(tmp_path: Path) -> ExportDirs:
    return ExportDirs(tmp_path / "text", tmp_path / "image", KEY, tmp_path / "backends.json")


def _encoders(tmp_path: Path, checkpoint: Path, **kwargs) -> Encoders:
    return Encoders(ModelSpec(TINY, str(checkpoint)), "auto", _dirs(tmp_path), **kwargs)


def _index(tmp_path: Path, checkpoint: Path, **kwargs) -> tuple[object, Choice]:
    encoders = _encoders(tmp_path, checkpoint, **kwargs)
    encoder = encoders.get(INDEX)
    encoders.finish()
    assert encoders.choice is not None
    return encoder, encoders.choice


def test_first_run_uses_torch_and_exports_then_onnxruntime_runs(
    tmp_path, tiny_checkpoint, cpu_only, torch_loads
):
    _, first = _index(tmp_path, tiny_checkpoint)
    assert first == Choice(TORCH, FP32, "no usable image export yet")
    assert (tmp_path / "image" / GRAPH_NAME).is_file()
    encoder, second = _index(tmp_path, tiny_checkpoint)
    assert isinstance(encoder, FastImageEncoder) and getattr(encoder, "torch_free", False)
    assert second == Choice(ORT, FP32, "default on a CPU")
    assert torch_loads == [FP32]  # the second run never loaded torch


def test_without_onnxruntime_torch_indexes(tmp_path, tiny_checkpoint, cpu_only, monkeypatch):
    _index(tmp_path, tiny_checkpoint)  # the export is there
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    _, choice = _index(tmp_path, tiny_checkpoint)
    assert choice == Choice(TORCH, FP32, "onnxruntime is not installed")
    with pytest.raises(ClipsearchError, match="onnxruntime is not installed"):
        _index(tmp_path, tiny_checkpoint, index_backend=ORT)


def test_a_missing_export_asked_for_by_name_is_an_error(tmp_path, tiny_checkpoint, cpu_only):
    with pytest.raises(ClipsearchError, match="no usable image export"):
        _index(tmp_path, tiny_checkpoint, index_backend=ORT)


def test_a_broken_export_falls_back_to_torch_and_is_written_afresh(
    tmp_path, tiny_checkpoint, cpu_only
):
    _index(tmp_path, tiny_checkpoint)
    graph = tmp_path / "image" / GRAPH_NAME
    graph.write_bytes(graph.read_bytes()[:100])  # a truncated graph: onnxruntime refuses it
    encoder, choice = _index(tmp_path, tiny_checkpoint)
    assert choice == Choice(TORCH, FP32, "the image export could not be opened")
    assert FastImageEncoder.load(tmp_path / "image") is not None  # rewritten meanwhile
    encoder, choice = _index(tmp_path, tiny_checkpoint)
    assert choice.backend == ORT


def test_a_broken_export_asked_for_by_name_is_an_error(tmp_path, tiny_checkpoint, cpu_only):
    _index(tmp_path, tiny_checkpoint)
    (tmp_path / "image" / GRAPH_NAME).write_bytes(b"not a graph")
    with pytest.raises(ClipsearchError, match="cannot open the image export"):
        _index(tmp_path, tiny_checkpoint, index_backend=ORT)


def test_a_cpu_without_bf16_is_not_measured(tmp_path, tiny_checkpoint, cpu_only, monkeypatch):
    def never(*args):
        raise AssertionError("measured on a CPU that claims no bf16")

    monkeypatch.setattr(backend, "measure", never)
    _index(tmp_path, tiny_checkpoint)
    assert not (tmp_path / "backends.json").exists()
    assert _index(tmp_path, tiny_checkpoint)[1].backend == ORT


def test_a_cpu_claiming_bf16_is_measured_once_and_the_choice_kept(
    tmp_path, tiny_checkpoint, monkeypatch, torch_loads
):
    monkeypatch.setattr(backend, "gpu_present", lambda: False)
    monkeypatch.setattr(backend, "cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))
    measured = Choice(TORCH, BF16, "measured here: torch bf16 37.0 img/s")
    calls = []
    monkeypatch.setattr(backend, "measure", lambda enc, d: calls.append(d) or measured)
    _index(tmp_path, tiny_checkpoint)
    assert calls == [tmp_path / "image"]
    encoder, choice = _index(tmp_path, tiny_checkpoint)
    assert choice == measured and encoder.precision == BF16
    assert torch_loads == [FP32, BF16]
    assert calls == [tmp_path / "image"]  # kept, not measured again
    monkeypatch.setattr(backend, "machine_key", lambda: "another machine")
    assert backend.recorded_choice(tmp_path / "backends.json", KEY) is None


def test_a_gpu_keeps_torch_fp16(tmp_path, tiny_checkpoint, cpu_only, monkeypatch):
    from clipsearch.model.openclip import pick_device

    _index(tmp_path, tiny_checkpoint)  # an export exists: the GPU still wins
    monkeypatch.setattr(backend, "gpu_present", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == "cuda"
    loads = []

    class FakeCuda:
        dim, device, image_size, precision = 64, "cuda", 32, FP16

    def load(spec, device, checkpoint=None, precision="auto"):
        loads.append((device, precision))
        return FakeCuda()

    monkeypatch.setattr(factory, "index_encoder", load)
    encoders = _encoders(tmp_path, tiny_checkpoint)
    assert isinstance(encoders.get(INDEX), FakeCuda)
    assert encoders.choice == Choice(TORCH, FP16, "GPU present") and loads == [("auto", FP16)]


def test_backend_and_precision_overrides(tmp_path, tiny_checkpoint, cpu_only):
    _index(tmp_path, tiny_checkpoint)
    encoder, choice = _index(tmp_path, tiny_checkpoint, index_backend=TORCH)
    assert choice == Choice(TORCH, FP32, "asked for") and not hasattr(encoder, "torch_free")
    encoder, choice = _index(tmp_path, tiny_checkpoint, precision=INT8)
    assert choice == Choice(ORT, INT8, "asked for") and encoder.precision == INT8
    assert (tmp_path / "image" / INT8_GRAPH_NAME).is_file()
    _, choice = _index(tmp_path, tiny_checkpoint, index_backend=TORCH, precision=BF16)
    assert choice == Choice(TORCH, BF16, "asked for")


@pytest.mark.parametrize(
    ("name", "precision", "message"),
    [
        ("gpu", "auto", "unknown backend"),
        ("auto", "fp8", "unknown precision"),
        (TORCH, INT8, "int8 runs in onnxruntime"),
        (ORT, BF16, "onnxruntime runs fp32 or int8"),
    ],
)
def test_unknown_or_impossible_requests_are_refused(name, precision, message):
    with pytest.raises(ClipsearchError, match=message):
        backend.check_request(name, precision)


def test_the_fastest_faithful_candidate_wins():
    rates = {"torch bf16": 37.0, "onnxruntime fp32": 15.8, "torch fp32": 14.2}
    faithful = {"torch bf16": 0.9995, "onnxruntime fp32": 1.0, "torch fp32": 1.0}
    assert backend.pick_measured(rates, faithful).label() == "torch bf16"
    lossy = {**faithful, "torch bf16": 0.99}
    assert backend.pick_measured(rates, lossy).label() == "onnxruntime fp32"


def test_bf16_fidelity_counts_only_on_spread_vectors():
    """Plain random weights put every input near every other: bf16 passed 0.999 there and was
    chosen on an EPYC, though on spread weights it measured 0.9956 (bench index)."""
    rng = np.random.default_rng(0)
    spread = normalised(rng.standard_normal((4, 64)).astype(np.float32))
    close = normalised(spread * 0.05 + 1.0)  # mean pairwise cosine ~0.99
    assert backend.fidelity(close, close) == 0.0
    nudged = normalised(spread + 0.001 * rng.standard_normal(spread.shape).astype(np.float32))
    assert backend.fidelity(spread, nudged) > 0.999
    assert backend.fidelity(spread, spread[[1, 0, 2, 3]]) == 0.0  # nearer another's vector


def test_measuring_plain_random_weights_never_trusts_bf16(tiny_checkpoint, tmp_path, monkeypatch):
    """The measurement itself, on the tiny model's random weights: whatever the rates (they
    vary by machine), bf16 is not shown faithful there; both fp32 engines are."""
    seen = {}
    real = backend.pick_measured

    def keeping(rates, cosines):
        seen.update(cosines)
        return real(rates, cosines)

    monkeypatch.setattr(backend, "pick_measured", keeping)
    encoder = factory.index_encoder(ModelSpec(TINY, str(tiny_checkpoint)), "cpu")
    dirs = _dirs(tmp_path)
    factory.export_towers(encoder, dirs)
    choice = backend.measure(encoder, dirs.image)
    assert choice is not None and choice.precision == FP32
    assert seen["torch bf16"] < backend.MIN_COSINE
    assert seen["torch fp32"] >= backend.MIN_COSINE <= seen["onnxruntime fp32"]
    assert "torch bf16" in choice.reason  # its rate is still reported


# --- fidelity on spread weights ---------------------------------------------------------------

SPREAD = {  # a small ViT whose roughened weights spread photos apart (mean cosine checked)
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 128, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def _fidelity(vectors: np.ndarray, reference: np.ndarray) -> tuple[float, bool]:
    """(worst cosine to its own reference, whether every photo is nearest its own)."""
    similarity = vectors @ reference.T
    own = np.diag(similarity)
    return float(own.min()), bool((similarity.argmax(axis=1) == np.arange(len(own))).all())


def test_index_tower_matches_open_clip_on_spread_weights(tmp_path):
    model = roughened_model("backend-spread", SPREAD, seed=0)
    cfg = open_clip.get_model_preprocess_cfg(model)
    transform = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    assert export_image_encoder(model, transform, tmp_path / "image")
    images = [photo(seed, (320, 240)) for seed in range(24)]
    with torch.no_grad():
        batch = torch.stack([transform(image) for image in images])
        reference = model.encode_image(batch, normalize=True).numpy()
    pairs = reference @ reference.T
    assert pairs[~np.eye(len(images), dtype=bool)].mean() <= 0.5  # spread, so it means something
    fp32 = FastImageEncoder.load(tmp_path / "image")
    vectors = fp32.encode_images(np.stack([fp32.preprocess(image) for image in images]))
    cosine, nearest_own = _fidelity(vectors, reference)
    assert cosine >= 0.999 and nearest_own
    int8 = FastImageEncoder.load(tmp_path / "image", precision=INT8)
    vectors = int8.encode_images(np.stack([int8.preprocess(image) for image in images]))
    cosine, _ = _fidelity(vectors, reference)
    assert 0.9 <= cosine < 1.0  # opt-in: a real approximation, reported by `bench index`
