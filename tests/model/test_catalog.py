"""`clipsearch models` and the refusal of unknown or unworkable --model names."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from clipsearch.errors import ModelUnavailable
from clipsearch.model import spec
from clipsearch.model.catalog import entries, suggest


def test_catalog_agrees_with_open_clip() -> None:
    """Names, tags and vector sizes as open_clip has them (a typo would fail at index)."""
    import open_clip

    for entry in entries():
        assert entry.pretrained in open_clip.list_pretrained_tags_by_model(entry.name)
        assert open_clip.get_model_config(entry.name)["embed_dim"] == entry.dim
        assert (entry.recall is None) == (entry.recall_source is None)


def test_models_lists_the_table_and_json() -> None:
    table = run_cli("models")
    assert table.returncode == 0
    lines = table.stdout.decode().splitlines()
    assert lines[0].split()[:3] == ["model", "tag", "languages"]
    assert any(line.startswith("ViT-B-32-SigLIP2-256") and "73.2%" in line for line in lines)
    rows = json.loads(run_cli("models", "--json").stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["ViT-B-16-SigLIP2"]["recall"] == "75.2%"
    assert by_name["ViT-B-32"]["recall_source"].startswith("Immich")


def test_unknown_model_suggests_the_closest_names(tmp_path) -> None:
    result = run_cli(
        "index",
        str(tmp_path),
        "--model",
        "vit-b-32-siglip2",
        "--pretrained",
        "webli",
        "--library",
        str(tmp_path / "lib"),
    )
    assert result.returncode == 2
    assert result.stderr.count(b"\n") == 1
    assert b"unknown model 'vit-b-32-siglip2': did you mean ViT-B-32-SigLIP2" in result.stderr


def test_suggest_ignores_case() -> None:
    assert suggest("mobileclip2-s0", ["MobileCLIP2-S0", "ViT-B-32"])[0] == "MobileCLIP2-S0"
    assert suggest("zzzz", ["ViT-B-32"]) == []


def test_a_hugging_face_text_tower_without_transformers_is_refused(monkeypatch) -> None:
    real = spec.importlib.util.find_spec
    monkeypatch.setattr(
        spec.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "transformers" else real(name, *a),
    )
    with pytest.raises(ModelUnavailable, match="needs the transformers package"):
        spec.choose_model(None, "xlm-roberta-base-ViT-B-32", "laion5b_s13b_b90k")
    spec.check_model_name("ViT-B-32-SigLIP2-256")  # its tokenizer is not a transformers one


def test_a_hub_tokenizer_offline_is_refused_before_loading(monkeypatch, tmp_path) -> None:
    """A SigLIP2 checkpoint file does not carry its tokenizer: offline, say so at once
    (open_clip would retry the hub for a minute, then fail with a traceback)."""
    monkeypatch.setattr(spec, "hub_reachable", lambda timeout=0: False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(spec, "_cached_hub_file", lambda cfg: None)
    wanted = spec.ModelSpec("ViT-B-32-SigLIP2-256", str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelUnavailable, match="tokenizer timm/ViT-B-32-SigLIP2-256 comes from"):
        spec.preflight(wanted)
    spec.preflight(spec.ModelSpec("MobileCLIP2-S0", str(tmp_path / "w.safetensors")))
