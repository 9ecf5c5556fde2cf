"""The numpy building blocks shared by the torch-free text and image encoders."""

from __future__ import annotations

import math

import numpy as np
import torch

from clipsearch.model.blocks import Blocks, erf, gelu, quick_gelu
from clipsearch.model.exportfile import load_export, write_export


def test_activations_are_float32_faithful():
    x = np.linspace(-10, 10, 200001, dtype=np.float32)
    exact = np.array([math.erf(v) for v in x.astype(np.float64)])
    assert np.abs(erf(x.copy()) - exact).max() < 6e-7  # a few float32 ulps of 1
    reference = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(gelu(x.copy()), reference, rtol=1e-6, atol=2e-6)
    reference = (torch.from_numpy(x) * torch.sigmoid(1.702 * torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(quick_gelu(x.copy()), reference, rtol=1e-6, atol=2e-6)


def test_export_round_trip_keeps_tensors_texts_and_alignment(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"a": rng.normal(size=(3, 5)), "b": rng.normal(size=7), "c": rng.normal(size=(2,))}
    write_export(tmp_path / "x", {"format": "f", "version": 2}, tensors, {"notes.txt": "é\n"})
    export = load_export(tmp_path / "x", "f", 2, ["notes.txt"])
    assert export is not None and export.texts == {"notes.txt": "é\n"}
    for name, array in tensors.items():
        np.testing.assert_array_equal(export.weights[name], array.astype(np.float32))
        assert export.weights[name].ctypes.data % 64 == 0  # mmap is page aligned
    assert load_export(tmp_path / "x", "f", 3) is None
    assert load_export(tmp_path / "x", "g", 2) is None
    assert load_export(tmp_path / "x", "f", 2, ["missing.txt"]) is None


def _random_blocks(layers: int = 2, width: int = 32, heads: int = 4) -> Blocks:
    rng = np.random.default_rng(1)

    def tensor(*shape: int) -> np.ndarray:
        return rng.normal(scale=0.3, size=shape).astype(np.float32)

    def block() -> dict[str, np.ndarray]:
        return {
            "ln_1.weight": 1 + tensor(width), "ln_1.bias": tensor(width),
            "qkv.weight": tensor(3 * width, width), "qkv.bias": tensor(3 * width),
            "out.weight": tensor(width, width), "out.bias": tensor(width),
            "ln_2.weight": 1 + tensor(width), "ln_2.bias": tensor(width),
            "fc.weight": tensor(4 * width, width), "fc.bias": tensor(4 * width),
            "proj.weight": tensor(width, 4 * width), "proj.bias": tensor(width),
        }  # fmt: skip

    return Blocks([block() for _ in range(layers)], heads, 1e-5, gelu)


def test_kept_tokens_equal_the_full_stacks_output_at_those_positions():
    """The last-block shortcut (queries and MLP for kept tokens only) changes nothing, with
    and without a causal mask, for sequences that keep different positions."""
    blocks = _random_blocks()
    x = np.random.default_rng(2).normal(size=(3, 7, 32)).astype(np.float32)
    before = x.copy()
    keep = np.array([0, 6, 3])
    causal = np.triu(np.full((7, 7), -np.inf, dtype=np.float32), 1)
    for mask in (None, causal):
        full = blocks(x, mask)
        np.testing.assert_allclose(blocks(x, mask, keep=keep), full[np.arange(3), keep], atol=1e-5)
    np.testing.assert_array_equal(x, before)  # the caller's tokens are never written to


def test_blocks_match_a_plain_token_by_token_reference():
    """The column layout inside `Blocks` against the textbook pre-LN block on (tokens, width)."""
    blocks = _random_blocks(layers=1)
    w = blocks.weights[0]
    x = np.random.default_rng(3).normal(size=(2, 5, 32)).astype(np.float32)

    def norm(t: np.ndarray, name: str) -> np.ndarray:
        mean, var = t.mean(-1, keepdims=True), t.var(-1, keepdims=True)
        return (t - mean) / np.sqrt(var + 1e-5) * w[f"{name}.weight"] + w[f"{name}.bias"]

    q, k, v = np.split(norm(x, "ln_1") @ w["qkv.weight"].T + w["qkv.bias"], 3, axis=-1)
    heads = [slice(i * 8, (i + 1) * 8) for i in range(4)]
    context = np.concatenate(
        [
            _softmax(q[..., h] @ k[..., h].transpose(0, 2, 1) / np.sqrt(8)) @ v[..., h]
            for h in heads
        ],
        axis=-1,
    )
    y = x + context @ w["out.weight"].T + w["out.bias"]
    hidden = norm(y, "ln_2") @ w["fc.weight"].T + w["fc.bias"]
    exact_gelu = 0.5 * hidden * (1 + np.vectorize(math.erf)(hidden / math.sqrt(2)))
    y = y + exact_gelu @ w["proj.weight"].T + w["proj.bias"]
    np.testing.assert_allclose(blocks(x), y, atol=1e-4)


def _softmax(t: np.ndarray) -> np.ndarray:
    e = np.exp(t - t.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
