"""Export folders: leftovers of killed exports are cleaned, live ones never touched."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import numpy as np

from clipsearch.model.exportfile import load_export, write_export


def leftover(parent: Path, name: str, age: float) -> Path:
    folder = parent / name
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0" * 4096)
    stamp = time.time() - age
    os.utime(folder, (stamp, stamp))
    return folder


def test_leftovers_of_killed_exports_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    """Each kill during the first export left a 336 MB .image.tmp-* that nothing cleaned."""
    dead = leftover(tmp_path, ".image.tmp-dead", age=3600)
    trash = leftover(tmp_path, ".image.old-dead", age=3600)
    young = leftover(tmp_path, ".image.tmp-young", age=0)
    held = leftover(tmp_path, ".image.tmp-held", age=3600)
    other = leftover(tmp_path, ".text.tmp-other", age=3600)
    fd = os.open(held, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # an exporter still writing it
    try:
        write_export(tmp_path / "image", {"format": "t", "version": 1}, {"w": np.ones(3, "f4")})
    finally:
        os.close(fd)

    assert not dead.exists() and not trash.exists()
    assert young.exists() and held.exists() and other.exists()
    assert load_export(tmp_path / "image", "t", 1) is not None
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".image")) == [
        ".image.tmp-held",
        ".image.tmp-young",
    ]
