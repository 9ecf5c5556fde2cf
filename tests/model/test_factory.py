"""The one place that picks an encoder: per task, torch-free where an export exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import photo
from fakes import PixelEncoder

from clipsearch.model import backend, factory
from clipsearch.model.base import ImageEncoder, TextEncoder, encode_image
from clipsearch.model.factory import IMAGE, INDEX, TEXT, Encoders, ExportDirs
from clipsearch.model.spec import ModelSpec

SPEC = ModelSpec("tiny", "/w.safetensors")


class FakeTorch(PixelEncoder):
    """Stands in for the open_clip model: counts loads and writes recognisable exports."""

    loads = 0

    def __init__(self) -> None:
        FakeTorch.loads += 1
        self.exported: list[str] = []

    def encode_texts(self, texts):
        return np.ones((len(texts), self.dim), np.float32) / np.sqrt(self.dim)

    def export_text(self, out_dir) -> bool:
        self.exported.append("text")
        return False  # as for a model whose text tower has no torch-free replay

    def export_image(self, out_dir) -> bool:
        self.exported.append("image")
        return False


@pytest.fixture()
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> type[FakeTorch]:
    FakeTorch.loads = 0
    monkeypatch.setattr(factory, "index_encoder", lambda spec, device, *a, **k: FakeTorch())
    monkeypatch.setattr(factory, "preflight", lambda spec: None)
    monkeypatch.setattr(backend, "gpu_present", lambda: False)
    monkeypatch.setattr(backend, "cpu_flags", lambda: frozenset())
    return FakeTorch


def exports(tmp_path: Path) -> ExportDirs:
    return ExportDirs(tmp_path / "text", tmp_path / "image")


def test_without_exports_every_task_falls_back_to_one_torch_model(tmp_path, fake_torch) -> None:
    loaded: list[object] = []
    encoders = Encoders(SPEC, "cpu", exports(tmp_path), on_load=loaded.append)
    text, image, index = (encoders.get(t) for t in (TEXT, IMAGE, INDEX))
    assert text is image is index and fake_torch.loads == 1
    encoders.finish()  # the towers are exported in a thread
    assert loaded == [index]  # the library checked and recorded it once
    assert index.exported == ["text", "image"]  # then tried to export both towers


def test_a_refused_model_is_not_kept(tmp_path, fake_torch) -> None:
    def refuse(encoder) -> None:
        raise ValueError("wrong vector size")

    encoders = Encoders(SPEC, "cpu", exports(tmp_path), on_load=refuse)
    with pytest.raises(ValueError):
        encoders.get(INDEX)
    with pytest.raises(ValueError):
        encoders.get(INDEX)
    assert fake_torch.loads == 2


def test_exports_serve_queries_without_loading_torch(tmp_path, tiny_checkpoint, monkeypatch):
    from clipsearch.model.openclip import ClipEncoder

    model = ClipEncoder(ModelSpec("clipsearch-tiny", str(tiny_checkpoint)), "cpu")
    dirs = exports(tmp_path)
    assert factory.export_towers(model, dirs) == {TEXT: True, IMAGE: True}

    def no_torch(spec, device, checkpoint=None, precision="auto"):
        raise AssertionError("a query with exports must not load the torch model")

    monkeypatch.setattr(factory, "index_encoder", no_torch)
    encoders = Encoders(ModelSpec("clipsearch-tiny", str(tiny_checkpoint)), "cpu", dirs)
    text, image = encoders.get(TEXT), encoders.get(IMAGE)
    assert isinstance(text, TextEncoder) and isinstance(image, ImageEncoder)
    assert encoders.get(TEXT) is text  # opened once, kept
    words = text.encode_texts(["a dog"])[0]
    assert float(words @ model.encode_texts(["a dog"])[0]) >= 0.9999
    picture = photo(1)
    reference = encode_image(model, picture)
    assert float(encode_image(image, picture) @ reference) >= 0.9999


def test_a_swapped_in_encoder_serves_every_task_and_exports_nothing(tmp_path, fake_torch):
    encoders = Encoders(SPEC, "cpu", exports(tmp_path))
    mine = PixelEncoder()
    encoders.use(mine)
    assert all(encoders.get(task) is mine for task in (TEXT, IMAGE, INDEX))
    assert fake_torch.loads == 0 and not any(tmp_path.iterdir())


def test_unknown_tasks_are_a_programming_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown encoder task"):
        Encoders(SPEC, "cpu", exports(tmp_path)).get("video")
