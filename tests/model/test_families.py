"""Torch-free queries for the families beyond CLIP, proven equal to open_clip in torch:
token ids identical on thousands of varied strings, vectors at cosine >= 0.9999 with
roughened random weights (tiny configs of the real layouts, see families.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import photo, roughened_model, run_cli, save_photo
from families import (
    build_tokenizer,
    eva02_config,
    mobileclip_config,
    nllb_config,
    pe_config,
    siglip_config,
    varied_strings,
    xlmr_config,
)

from clipsearch.model import textort
from clipsearch.model.base import normalised
from clipsearch.model.imageort import FastImageEncoder, export_image_encoder
from clipsearch.model.textnp import FastTextEncoder

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
    import open_clip

    folder = build_tokenizer(tmp_path_factory.mktemp("siglip-tokenizer"))
    model = roughened_model("tiny-siglip", siglip_config(folder))
    _, _, preprocess = open_clip.create_model_and_transforms("tiny-siglip", pretrained=None)
    return model, open_clip.get_tokenizer("tiny-siglip"), preprocess


@pytest.fixture(scope="module")
def xlmr(tmp_path_factory):
    import open_clip

    config = xlmr_config(tmp_path_factory.mktemp("xlmr"))
    model = roughened_model("tiny-xlmr", config, seed=2, pretrained_text=False)
    _, _, preprocess = open_clip.create_model_and_transforms(
        "tiny-xlmr", pretrained=None, pretrained_text=False
    )
    return model, open_clip.get_tokenizer("tiny-xlmr"), preprocess


@pytest.fixture(scope="module")
def mobileclip():
    import open_clip

    model = roughened_model("tiny-mobileclip", mobileclip_config(), seed=1)
    _, _, preprocess = open_clip.create_model_and_transforms("tiny-mobileclip", pretrained=None)
    return model, open_clip.get_tokenizer("tiny-mobileclip"), preprocess


@pytest.fixture(scope="module")
def nllb(tmp_path_factory):
    import open_clip

    config = nllb_config(tmp_path_factory.mktemp("nllb"))
    model = roughened_model("tiny-nllb", config, seed=3, pretrained_text=False)
    _, _, preprocess = open_clip.create_model_and_transforms(
        "tiny-nllb", pretrained=None, pretrained_text=False
    )
    return model, open_clip.get_tokenizer("tiny-nllb"), preprocess


@pytest.fixture(scope="module")
def eva02():
    import open_clip

    model = roughened_model("tiny-eva02", eva02_config(), seed=4)
    _, _, preprocess = open_clip.create_model_and_transforms("tiny-eva02", pretrained=None)
    return model, open_clip.get_tokenizer("tiny-eva02"), preprocess


@pytest.fixture(scope="module")
def pe():
    import open_clip

    model = roughened_model("tiny-pe", pe_config(), seed=5)
    _, _, preprocess = open_clip.create_model_and_transforms("tiny-pe", pretrained=None)
    return model, open_clip.get_tokenizer("tiny-pe"), preprocess


def torch_text(model, tokenizer, texts) -> np.ndarray:
    import torch

    with torch.no_grad():
        return normalised(model.encode_text(tokenizer(texts)).numpy())


def torch_images(model, preprocess, images) -> np.ndarray:
    import torch

    with torch.no_grad():
        batch = torch.stack([preprocess(i) for i in images])
        return normalised(model.encode_image(batch).numpy())


@pytest.mark.parametrize("family", ["siglip", "xlmr", "nllb"])
def test_hf_token_ids_match_open_clip_on_varied_strings(family, request) -> None:
    _, tokenizer, _ = request.getfixturevalue(family)
    config, tokenizer_json = textort.describe_tokenizer(tokenizer)
    ours = textort.HFTokens(tokenizer_json, config)
    texts = varied_strings(3000)
    assert np.array_equal(ours(texts), tokenizer(texts).numpy())
    assert any(len(t) > 200 for t in texts)  # truncation was exercised


@pytest.mark.parametrize("family", ["siglip", "xlmr", "mobileclip", "nllb", "eva02", "pe"])
def test_onnx_text_tower_matches_torch(family, request, tmp_path) -> None:
    model, tokenizer, _ = request.getfixturevalue(family)
    assert textort.export_onnx_text(model, tokenizer, tmp_path / "text")
    assert FastTextEncoder.load(tmp_path / "text") is None  # another format
    encoder = textort.OnnxTextEncoder.load(tmp_path / "text")
    # only masked padding can be cut off
    assert encoder.config["trim"] == (family in ("xlmr", "nllb"))
    texts = varied_strings(40, seed=3)
    ours = encoder.encode_texts(texts)
    expected = torch_text(model, tokenizer, texts)
    assert np.min(np.sum(ours * expected, axis=1)) >= 0.9999
    assert encoder.encode_texts([texts[5]])[0] @ expected[5] >= 0.9999  # batch of one
    spread = expected @ expected.T
    # the vectors differ (NLLB's pools the first token, the same <s> for every text: closer)
    assert spread[~np.eye(len(texts), dtype=bool)].min() < (0.95 if family == "nllb" else 0.9)


SLOW = pytest.mark.slow  # a timm EVA02 or PE tower is built at its own 224 or 384 px: 14-21 s


@pytest.mark.parametrize(
    "family",
    ["siglip", "mobileclip", pytest.param("eva02", marks=SLOW), pytest.param("pe", marks=SLOW)],
)
def test_traced_image_tower_matches_torch(family, request, tmp_path) -> None:
    model, _, preprocess = request.getfixturevalue(family)
    assert export_image_encoder(model, preprocess, tmp_path / "image")
    encoder = FastImageEncoder.load(tmp_path / "image")
    images = [photo(seed, (90 + 7 * seed, 70)) for seed in range(6)]
    ours = encoder.encode_images(np.stack([encoder.preprocess(i) for i in images]))
    expected = torch_images(model, preprocess, images)
    assert np.min(np.sum(ours * expected, axis=1)) >= 0.9999


def test_a_sentencepiece_only_tokenizer_is_not_exported(siglip, tmp_path) -> None:
    class Slow:
        tokenizer_mode = ""

    model, _, _ = siglip
    assert not textort.export_onnx_text(model, Slow(), tmp_path / "text")
    assert not (tmp_path / "text").exists()


@pytest.fixture(scope="module")
def siglip_files(tmp_path_factory, siglip):
    """The tiny SigLIP as a user would have it: a config file, a checkpoint, a tokenizer."""
    import json

    from safetensors.torch import save_file

    model, tokenizer, _ = siglip
    root = tmp_path_factory.mktemp("siglip-files")
    config = siglip_config(Path(tokenizer.tokenizer.name_or_path))
    (root / "configs").mkdir()
    (root / "configs" / "tiny-siglip-user.json").write_text(json.dumps(config))
    checkpoint = root / "tiny-siglip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    return root / "configs", checkpoint


def test_a_siglip_library_answers_every_query_without_torch(siglip_files, tmp_path) -> None:
    configs, checkpoint = siglip_files
    env = {
        "CLIPSEARCH_MODEL_CONFIGS": f"{os.environ['CLIPSEARCH_MODEL_CONFIGS']}{os.pathsep}{configs}"
    }
    photos = tmp_path / "photos"
    for seed in range(4):
        save_photo(photos / f"{seed}.jpg", seed)
    save_photo(tmp_path / "new.jpg", 9)
    lib = tmp_path / "lib"
    done = run_cli(
        "index",
        str(photos),
        "--model",
        "tiny-siglip-user",
        "--pretrained",
        str(checkpoint),
        "--library",
        str(lib),
        "--json",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    script = (
        "import sys\n"
        "from clipsearch import Library\n"
        f"lib = Library.open({str(lib)!r})\n"
        "assert len(lib.search('a dog on the beach', top=3)) == 3\n"
        f"assert len(lib.similar({str(tmp_path / 'new.jpg')!r}, top=2)) == 2\n"
        "lib.duplicates()\n"
        "heavy = {'torch', 'torchvision', 'timm', 'open_clip', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert run_cli("query", "dog", "--library", str(lib), env=env).returncode == 0
