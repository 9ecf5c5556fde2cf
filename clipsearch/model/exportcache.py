"""Exports once per model per machine: the torch-free towers live in the user cache, in a folder
named after the checkpoint's content, and every library of that model shares them.

Before this, each library wrote its own towers (606 MB for ViT-B-32-256) and a new library
paid for loading torch and writing them again.  Hashing a 600 MB checkpoint costs about a
second, so each file's hash is kept by (size, mtime) in `checkpoints.json`: a new library of a
known checkpoint costs one stat.  A checkpoint that is not on disk yet (a tag not downloaded)
has no key; the library's own folders serve it, as they did before.
"""

from __future__ import annotations

import hashlib
import os

from ..fsutil import read_json_table, write_json_table
from ..storage.layout import UserCache
from .spec import ModelSpec

_CHUNK = 1 << 22


def model_key(spec: ModelSpec, cache: UserCache) -> str | None:
    """`<model name>-<hash>` for the spec's checkpoint, or None if its file is not on disk."""
    path = checkpoint_path(spec)
    if path is None:
        return None
    digest = checkpoint_hash(path, cache)
    if digest is None:
        return None
    tag = "" if spec.is_file else spec.pretrained  # a tag also sets preprocessing options
    key = hashlib.sha256(f"{spec.name}|{tag}|{digest}".encode()).hexdigest()[:20]
    return f"{_safe(spec.name)}-{key}"


def checkpoint_path(spec: ModelSpec) -> str | None:
    """The local weights file of a spec: the file itself, or a tag's hub download if cached."""
    if spec.is_file:
        return spec.pretrained if os.path.isfile(spec.pretrained) else None
    from .spec import KNOWN_HUB, ModelUnavailable, tag_config

    hub = KNOWN_HUB.get((spec.name, spec.pretrained))
    try:
        cfg = {"hf_hub": hub} if hub else tag_config(spec)
    except ModelUnavailable:
        return None
    if "file" in cfg:
        return cfg["file"]
    from .spec import _cached_hub_file

    return _cached_hub_file(cfg)


def checkpoint_hash(path: str, cache: UserCache) -> str | None:
    """sha256 of the file's bytes, remembered by path, size and mtime."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    stamp = f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"
    table = read_json_table(cache.checkpoint_hashes)
    if stamp in table:
        return table[stamp]
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    table[stamp] = digest.hexdigest()
    write_json_table(cache.checkpoint_hashes, table)
    return table[stamp]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
