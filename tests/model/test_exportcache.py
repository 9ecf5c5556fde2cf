"""Exports once per model per machine: the user cache holds them under the checkpoint's hash,
libraries record which they use, older libraries keep their own; an index run over a cached
export never imports torch, in the main process or in its decode workers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, run_cli, save_photo

from clipsearch.library import Library
from clipsearch.model import backend, factory
from clipsearch.model.exportcache import model_key
from clipsearch.model.spec import ModelSpec
from clipsearch.storage.layout import UserCache

NO_TORCH = (
    "heavy = {'torch', 'torchvision', 'open_clip'} & set(sys.modules)\nassert not heavy, heavy\n"
)


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> UserCache:
    """An empty user cache, as on a machine that never ran clipsearch."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(backend, "gpu_present", lambda: False)
    monkeypatch.setattr(backend, "cpu_flags", lambda: frozenset())
    return UserCache.default()


def _photos(folder: Path, count: int) -> Path:
    for seed in range(count):
        save_photo(folder / f"p{seed}.jpg", seed=seed)
    return folder


def test_the_cache_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert UserCache.default().directory == tmp_path / "clipsearch"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert UserCache.default().directory == Path.home() / ".cache" / "clipsearch"


def test_the_key_is_the_checkpoints_content_remembered_by_size_and_mtime(tmp_path, cache):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"a" * 1000)
    spec = ModelSpec(TINY, str(weights))
    key = model_key(spec, cache)
    assert key and key.startswith(f"{TINY}-") and cache.checkpoint_hashes.is_file()
    stat = weights.stat()
    weights.write_bytes(b"b" * 1000)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert model_key(spec, cache) == key  # not read again: size and mtime are unchanged
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert model_key(spec, cache) not in (key, None)  # read again: new content, new key
    copy = tmp_path / "copy.safetensors"
    shutil.copyfile(weights, copy)
    assert model_key(ModelSpec(TINY, str(copy)), cache) == model_key(spec, cache)
    assert model_key(ModelSpec(TINY, str(tmp_path / "gone.pt")), cache) is None


def test_libraries_share_one_export_and_later_runs_never_import_torch(
    tmp_path, tiny_checkpoint, cache
):
    photos = _photos(tmp_path / "photos", 12)  # more than INLINE_FILES: workers decode
    with Library.open(
        tmp_path / "a", model=TINY, pretrained=str(tiny_checkpoint), create=True
    ) as lib:
        report = lib.index([photos])
        key = lib.store.meta("export")
    assert report.backend["backend"] == "torch" and report.indexed == 12
    assert (cache.image_export(key) / "tower.onnx").is_file()
    assert not (tmp_path / "a" / "image").exists() and not (tmp_path / "a" / "text").exists()
    marks = tmp_path / "marks"
    marks.mkdir()
    script = (
        "import os, sys\n"
        "from clipsearch.indexing import pipeline\n"
        "real = pipeline.decode_batch\n"
        "def spy(dataset, indices):\n"
        f"    with open(os.path.join({str(marks)!r}, str(os.getpid())), 'w') as f:\n"
        "        f.write(str('torch' in sys.modules))\n"
        "    return real(dataset, indices)\n"
        "spy.__qualname__, spy.__module__ = 'decode_batch', pipeline.__name__\n"
        "pipeline.decode_batch = spy\n"
        "from clipsearch.library import Library\n"
        f"with Library.open({str(tmp_path / 'b')!r}, model={TINY!r}, "
        f"pretrained={str(tiny_checkpoint)!r}, create=True) as lib:\n"
        f"    report = lib.index([{str(photos)!r}])\n"
        "    status = lib.status()\n"
        "assert report.indexed == 12, report\n"
        "assert report.backend['backend'] == 'onnxruntime', report.backend\n"
        f"assert status['export'] == {key!r}, status\n"
        "assert status['index_backend'].startswith('onnxruntime fp32'), status\n" + NO_TORCH
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    seen = {p.name: p.read_text() for p in marks.iterdir()}
    assert seen and str(os.getpid()) not in seen and set(seen.values()) == {"False"}


def test_a_library_with_its_own_exports_keeps_using_them(
    tmp_path, tiny_checkpoint, cache, monkeypatch
):
    photos = _photos(tmp_path / "photos", 2)
    lib_dir = tmp_path / "old"
    with Library.open(lib_dir, model=TINY, pretrained=str(tiny_checkpoint), create=True) as lib:
        lib.index([photos])
        key = lib.store.meta("export")
        lib.store.conn.execute("DELETE FROM meta WHERE key = 'export'")  # as before the cache
    for tower in ("text", "image"):
        shutil.copytree(cache.export(key) / tower, lib_dir / tower)
    shutil.rmtree(cache.directory)

    def no_torch(*args):
        raise AssertionError("the library's own exports should serve")

    monkeypatch.setattr(factory, "index_encoder", no_torch)
    new = save_photo(tmp_path / "new.jpg", seed=7)
    with Library.open(lib_dir) as lib:
        assert lib.encoders.exports.text == lib_dir / "text"
        assert lib.embed_texts(["a dog"]).shape == (1, 64)
        assert lib.similar(str(new), top=1)
        assert lib.index([photos, new.parent]).backend["backend"] == "onnxruntime"


def test_backend_and_precision_on_the_command_line(tmp_path, tiny_checkpoint, cache):
    photos = _photos(tmp_path / "photos", 2)
    args = ("--model", TINY, "--pretrained", str(tiny_checkpoint), "--library", str(tmp_path / "l"))
    bad = run_cli("index", str(photos), *args, "--backend", "gpu")
    assert bad.returncode == 2
    assert bad.stderr.decode().strip().splitlines() == [
        "clipsearch: unknown backend 'gpu': choose one of auto, torch, onnxruntime"
    ]
    first = run_cli("index", str(photos), *args, "--json")
    assert json.loads(first.stdout)["backend"]["backend"] == "torch"
    save_photo(photos / "p9.jpg", seed=9)
    again = run_cli("index", str(photos), *args, "--precision", "int8", "--json")
    assert json.loads(again.stdout)["backend"] == {
        "backend": "onnxruntime",
        "precision": "int8",
        "reason": "asked for",
    }
    status = run_cli("status", "--library", str(tmp_path / "l"))
    assert "onnxruntime int8 (asked for)" in status.stdout.decode()
