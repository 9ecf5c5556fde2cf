"""Shared fixtures: a tiny open_clip architecture with random weights saved as a checkpoint,
loaded through `--pretrained FILE` exactly as real weights are, and photo-like test images."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

MODELS = Path(__file__).parent / "models"
TINY = "clipsearch-tiny"
os.environ["CLIPSEARCH_MODEL_CONFIGS"] = str(MODELS)
# The user cache (model exports, backend choices, the towns table) of this test session only:
# never the developer's ~/.cache.  Tests that need an empty one set their own.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="clipsearch-test-cache-")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """Random weights of the tiny architecture in a .safetensors file (no network, no hub)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    open_clip.add_model_config(MODELS)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY, pretrained=None)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """An empty library location, also exported as $CLIPSEARCH_HOME."""
    lib = tmp_path / "library"
    monkeypatch.setenv("CLIPSEARCH_HOME", str(lib))
    return lib


def roughened_model(name: str, config: dict, seed: int = 0, **create_kwargs):
    """open_clip model `name` built from `config` with random weights, roughened so activations
    leave GELU's near-linear range and attention is peaky: with open_clip's gentle init a
    wrong activation would still pass a cosine check."""
    import open_clip
    import torch

    open_clip.factory._MODEL_CONFIGS[name] = config
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None, **create_kwargs).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param), alpha=0.1)
    return model


def photo(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A distinctive photo-like picture: gradient sky, shapes and noise, fixed by `seed`."""
    rng = np.random.default_rng(seed)
    w, h = size
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, h)[:, None, None]
    pixels = (top * (1 - ramp) + bottom * ramp).repeat(w, axis=1)
    pixels += rng.normal(0, 12, (h, w, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    return image


def save_photo(path: Path, seed: int, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    photo(seed).save(path, **kwargs)
    return path


def run_cli(*args: str, env: dict | None = None, input: bytes | None = None, timeout=300):
    """Run the real `clipsearch` entry point in a fresh process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "clipsearch", *args],
        capture_output=True,
        env=full_env,
        input=input,
        timeout=timeout,
    )


def run_in_terminal(*args: str, env: dict | None = None, timeout=120) -> tuple[int, bytes]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; return (exit code, output).

    The output is drained while the process runs, so large writes never block it.
    """
    import pty
    import select

    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipsearch", *args],
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    os.close(terminal)
    chunks = []
    while True:
        ready, _, _ = select.select([controller], [], [], timeout)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process has exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    return proc.wait(timeout=timeout), b"".join(chunks)


def pytest_collection_modifyitems(session, config, items):
    """The Ray tests run last: a Ray runtime leaves threads in this process, and the tests
    that index in-process fork decode workers, which a process with other threads must not
    do safely (the pipeline then starts them by forkserver, and the tests that patch what a
    worker runs need the fork)."""
    items.sort(key=lambda item: "ray" in Path(str(item.fspath)).stem.split("_"))


def committed(library: Path) -> int:
    """Photos committed so far, read as any other process would."""
    try:
        conn = sqlite3.connect(f"file:{library / 'library.db'}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT count(*) FROM files").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def gone(match, seconds: float) -> bool:
    """Whether every live process whose /proc stat fields (pid, state, ppid, pgrp, ...) satisfy
    `match` ends within `seconds`.  A zombie counts as ended: whoever inherited it may reap it
    late, or never (a container's first process)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(match(stat) for stat in _live_stats()):
            return True
        time.sleep(0.05)
    return False


def _live_stats():
    for entry in Path("/proc").iterdir():
        try:
            text = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        head, _, rest = text.rpartition(")")  # the name may hold spaces and brackets
        fields = rest.split()
        if fields and fields[0] != "Z":
            yield (int(head.split(" (", 1)[0]), fields[0], int(fields[1]), int(fields[2]))


@pytest.fixture()
def forked_workers(monkeypatch):
    """Decode workers forked from this process whatever it holds, for tests whose patches the
    workers must inherit: in a process holding torch (this one) plain workers otherwise start
    by forkserver, clean of any patch."""
    import multiprocessing

    from clipsearch.indexing import pipeline

    monkeypatch.setattr(pipeline, "_context", lambda **_: multiprocessing.get_context("fork"))
