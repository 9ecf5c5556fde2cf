"""The numpy building blocks shared by the torch-free text and image encoders."""

from __future__ import annotations

import math

import numpy as np
import torch

from clipsearch.npmodel import erf, gelu, load_export, quick_gelu, write_export


def test_activations_are_float32_faithful():
    x = np.linspace(-10, 10, 200001, dtype=np.float32)
    exact = np.array([math.erf(v) for v in x.astype(np.float64)])
    assert np.abs(erf(x) - exact).max() < 6e-7  # a few float32 ulps of 1
    reference = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(gelu(x), reference, rtol=1e-6, atol=2e-6)
    reference = (torch.from_numpy(x) * torch.sigmoid(1.702 * torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(quick_gelu(x), reference, rtol=1e-6, atol=2e-6)


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
