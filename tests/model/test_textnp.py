"""The torch-free text encoder must match open_clip exactly: same token ids, same vectors."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from conftest import roughened_model
from open_clip.tokenizer import SimpleTokenizer, _clean_lower

from clipsearch.model.exportfile import CONFIG_NAME, WEIGHTS_NAME
from clipsearch.model.textnp import FastTextEncoder, clean_text, export_text_encoder

TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}
VISION_CFG = {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32}
CONFIGS = {
    "textfast-tiny": {"embed_dim": 48, "vision_cfg": VISION_CFG, "text_cfg": TEXT_CFG},
    "textfast-tiny-quickgelu": {
        "embed_dim": 48,
        "quick_gelu": True,
        "vision_cfg": VISION_CFG,
        "text_cfg": TEXT_CFG,
    },
    "textfast-tiny-custom": {  # CustomTextCLIP with a Linear (biased) projection
        "embed_dim": 48,
        "custom_text": True,
        "vision_cfg": VISION_CFG,
        "text_cfg": {**TEXT_CFG, "proj_bias": True},
    },
    "textfast-tiny-siglip-like": {
        "embed_dim": 48,
        "custom_text": True,
        "vision_cfg": VISION_CFG,
        "text_cfg": {**TEXT_CFG, "pool_type": "last", "no_causal_mask": True},
    },
    "textfast-tiny-layerscale": {
        "embed_dim": 48,
        "vision_cfg": VISION_CFG,
        "text_cfg": {**TEXT_CFG, "ls_init_value": 0.1},
    },
    "textfast-tiny-noproj": {
        "embed_dim": 48,
        "vision_cfg": VISION_CFG,
        "text_cfg": {**TEXT_CFG, "proj_type": "none"},
    },
    "textfast-tiny-coca-like": {
        "embed_dim": 48,
        "custom_text": True,
        "vision_cfg": VISION_CFG,
        "text_cfg": {**TEXT_CFG, "embed_cls": True},
    },
}
TEXTS = [
    "dog on a beach",
    "A Dog, running!! on the beach at 5:30pm?? (really) #2024 3.14159 x1000",
    "",
    "emoji 🐶🏖️👨‍👩‍👧 café naïve Zürich São Paulo",
    "東京の犬と猫 한국어 中文字符 русский текст",
    "tom &amp; jerry &lt;b&gt;bold&lt;/b&gt; &amp;amp;amp; &#x27;quoted&#39;",
    "Ｆｕｌｌｗｉｄｔｈ ﬁne “curly” ‘quotes’ — dash…",
    "\tTabs\nand\r\nnew   lines  ",
    "it's we're they've I'm you'll he'd DON'T",
    "<end_of_text> spoofed <start_of_text> specials",
    " ".join(f"word{i}" for i in range(120)),
]


def _model(name: str, seed: int = 0) -> torch.nn.Module:
    return roughened_model(name, CONFIGS[name], seed)


@pytest.fixture(scope="module")
def tokenizer() -> SimpleTokenizer:
    return open_clip.get_tokenizer("ViT-B-32")


def _reference(model: torch.nn.Module, tokenizer: SimpleTokenizer, texts: list[str]) -> np.ndarray:
    with torch.no_grad():
        return model.encode_text(tokenizer(texts), normalize=True).numpy()


def _export(model: torch.nn.Module, tokenizer: SimpleTokenizer, out: Path) -> FastTextEncoder:
    assert export_text_encoder(model, tokenizer, out)
    encoder = FastTextEncoder.load(out)
    assert encoder is not None
    return encoder


def test_token_ids_match_open_clip(tokenizer, tmp_path):
    encoder = _export(_model("textfast-tiny"), tokenizer, tmp_path / "tf")
    ids = encoder.tokenizer(TEXTS)
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(ids, tokenizer(TEXTS).numpy())
    assert ids[-1, -1] == tokenizer.eot_token_id  # the long text was truncated, eot kept


def test_token_ids_match_on_random_unicode(tokenizer, tmp_path):
    encoder = _export(_model("textfast-tiny"), tokenizer, tmp_path / "tf")
    rng = random.Random(7)
    pools = [
        range(32, 127),
        range(0x80, 0x250),
        range(0x3040, 0x3100),
        range(0x1F300, 0x1F680),
        [0x26, 0x3B, 0x23, 0x0A, 0x0D, 0x1B, 0x85, 0x2028, 0x200B, 0x345, 0x130, 0xFB01],
    ]
    texts = [
        "".join(chr(rng.choice(rng.choice(pools))) for _ in range(rng.randint(0, 30)))
        for _ in range(300)
    ]
    np.testing.assert_array_equal(encoder.tokenizer(texts), tokenizer(texts).numpy())


def test_plain_ascii_fast_path_cleans_like_open_clip():
    rng = random.Random(3)
    alphabet = [chr(c) for c in range(32, 127) if chr(c) != "&"]
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 40))) for _ in range(500)]
    assert [clean_text(t) for t in texts] == [_clean_lower(t) for t in texts]


@pytest.mark.parametrize(
    ("name", "activation"),
    [
        ("textfast-tiny", "gelu"),
        ("textfast-tiny-quickgelu", "quick_gelu"),
        ("textfast-tiny-custom", "gelu"),
    ],
)
def test_vectors_match_open_clip(tokenizer, tmp_path, name, activation):
    model = _model(name)
    encoder = _export(model, tokenizer, tmp_path / "tf")
    assert encoder.config["activation"] == activation
    vectors = encoder.encode_texts(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 48)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    reference = _reference(model, tokenizer, TEXTS)
    assert np.sum(vectors * reference, axis=1).min() >= 0.9999
    np.testing.assert_allclose(vectors, reference, atol=1e-4)


def test_encode_batches_repeats_and_empty(tokenizer, tmp_path):
    encoder = _export(_model("textfast-tiny"), tokenizer, tmp_path / "tf")
    single = np.stack([encoder.encode_texts([t])[0] for t in TEXTS[:3]])
    batch = encoder.encode_texts([TEXTS[2], *TEXTS[:3], TEXTS[0]])
    np.testing.assert_allclose(batch[1:4], single, atol=1e-6)
    np.testing.assert_array_equal(batch[0], batch[3])
    np.testing.assert_array_equal(batch[4], batch[1])
    assert encoder.encode_texts([]).shape == (0, 48)


@pytest.mark.parametrize(
    "name",
    [
        "textfast-tiny-siglip-like",
        "textfast-tiny-layerscale",
        "textfast-tiny-noproj",
        "textfast-tiny-coca-like",
    ],
)
def test_unsupported_models_export_nothing(tokenizer, tmp_path, name):
    out = tmp_path / "tf"
    assert export_text_encoder(_model(name), tokenizer, out) is False
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "make_tokenizer",
    [
        lambda: SimpleTokenizer(clean="canonicalize"),
        lambda: SimpleTokenizer(additional_special_tokens=["<mask>"]),
        lambda: SimpleTokenizer(context_length=32),
        lambda: SimpleTokenizer(reduction_mask="simple"),
    ],
)
def test_unsupported_tokenizers_export_nothing(tmp_path, make_tokenizer):
    assert export_text_encoder(_model("textfast-tiny"), make_tokenizer(), tmp_path / "tf") is False
    assert list(tmp_path.iterdir()) == []


def test_load_rejects_missing_foreign_and_truncated_exports(tokenizer, tmp_path):
    assert FastTextEncoder.load(tmp_path / "absent") is None
    out = tmp_path / "tf"
    _export(_model("textfast-tiny"), tokenizer, out)
    config = json.loads((out / CONFIG_NAME).read_text())
    (out / CONFIG_NAME).write_text(json.dumps({**config, "version": 999}))
    assert FastTextEncoder.load(out) is None
    (out / CONFIG_NAME).write_text(json.dumps(config))
    with open(out / WEIGHTS_NAME, "r+b") as f:
        f.truncate(1000)
    assert FastTextEncoder.load(out) is None


def test_reexport_skips_identical_and_replaces_changed(tokenizer, tmp_path):
    out = tmp_path / "tf"
    first, second = _model("textfast-tiny", seed=1), _model("textfast-tiny", seed=2)
    _export(first, tokenizer, out)
    inode = (out / WEIGHTS_NAME).stat().st_ino
    _export(first, tokenizer, out)
    assert (out / WEIGHTS_NAME).stat().st_ino == inode  # identical export left untouched
    held = FastTextEncoder.load(out)
    encoder = _export(second, tokenizer, out)
    expected = _reference(second, tokenizer, TEXTS[:2])
    assert np.sum(encoder.encode_texts(TEXTS[:2]) * expected, axis=1).min() >= 0.9999
    old = _reference(first, tokenizer, TEXTS[:2])  # an encoder opened before keeps working
    assert np.sum(held.encode_texts(TEXTS[:2]) * old, axis=1).min() >= 0.9999
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tf"]  # no temp dirs left behind


def test_concurrent_exports_never_expose_a_mixed_export(tokenizer, tmp_path):
    out = tmp_path / "tf"
    models = [_model("textfast-tiny", seed=s) for s in (3, 4)]
    expected = [_reference(m, tokenizer, TEXTS[:1])[0] for m in models]
    done = threading.Event()

    def export(model: torch.nn.Module) -> None:
        for _ in range(4):
            export_text_encoder(model, tokenizer, out)

    def read(best: list[float]) -> None:
        while not done.is_set():
            encoder = FastTextEncoder.load(out)  # None while a swap is in progress is fine
            if encoder is not None:
                vector = encoder.encode_texts(TEXTS[:1])[0]
                best.append(max(float(vector @ e) for e in expected))

    seen: list[float] = []
    writers = [threading.Thread(target=export, args=(m,)) for m in models]
    reader = threading.Thread(target=read, args=(seen,))
    for thread in [reader, *writers]:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    assert min(seen, default=1.0) >= 0.9999  # every export a reader saw was whole
    assert FastTextEncoder.load(out) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tf"]


def test_query_path_imports_no_torch(tokenizer, tmp_path):
    out = tmp_path / "tf"
    _export(_model("textfast-tiny"), tokenizer, out)
    script = (
        "import sys\n"
        "from clipsearch.model.textnp import FastTextEncoder\n"
        f"encoder = FastTextEncoder.load({str(out)!r})\n"
        "vectors = encoder.encode_texts(['dog on a beach', 'café &amp; 東京'])\n"
        "assert vectors.shape == (2, 48), vectors.shape\n"
        "heavy = {'torch', 'torchvision', 'timm', 'open_clip'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_vit_b_32_random_weights_match(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    encoder = _export(model, tokenizer, tmp_path / "tf")
    assert encoder.config["layers"] == 12 and encoder.dim == 512
    vectors, reference = encoder.encode_texts(TEXTS), _reference(model, tokenizer, TEXTS)
    assert np.sum(vectors * reference, axis=1).min() >= 0.9999
    np.testing.assert_allclose(vectors, reference, atol=1e-4)
