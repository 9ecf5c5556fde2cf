"""The export format of a torch-free tower: `config.json`, one flat `weights.bin`, text files.

Written once, atomically, when torch is loaded anyway; read back by queries as read-only views
into a memory map, so opening an export costs no reading and pages come in on first use.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.bin"
_ALIGN = 16  # tensor offsets in float32 elements (64 bytes), friendly to SIMD loads


class Export(NamedTuple):
    """An export directory read back: its config, weight views and named text files."""

    config: dict[str, Any]
    weights: dict[str, np.ndarray]
    texts: dict[str, str]


def load_export(
    directory: Path | str, fmt: str, version: int, text_names: Sequence[str] = ()
) -> Export | None:
    """Open an export, or None if it is absent, incomplete or of another format/version.

    The directory is opened once and every file is read relative to that handle, so a
    concurrent re-export (which swaps directories) can never mix files of two exports.
    Weights are a read-only memory map: loading costs no reading, pages come in on first use.
    """
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None
    try:
        return _load_pinned(dir_fd, fmt, version, text_names)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        os.close(dir_fd)


def _load_pinned(dir_fd: int, fmt: str, version: int, text_names: Sequence[str]) -> Export | None:
    def opener(name: str, flags: int) -> int:
        return os.open(name, flags, dir_fd=dir_fd)

    with open(CONFIG_NAME, encoding="utf-8", opener=opener) as f:
        config = json.load(f)
    if config.get("format") != fmt or config.get("version") != version:
        return None
    with open(WEIGHTS_NAME, "rb", opener=opener) as f:
        flat = np.memmap(f, dtype="<f4", mode="r").view(np.ndarray)  # no subclass overhead
    weights = _unflatten(flat, config["tensors"], int(config["weights_size"]))
    texts = {}
    for name in text_names:
        with open(name, encoding="utf-8", opener=opener) as f:
            texts[name] = f.read()
    return Export(config, weights, texts)


def _unflatten(flat: np.ndarray, table: dict[str, list[Any]], size: int) -> dict[str, np.ndarray]:
    """Views into the flat weights; a size mismatch means a foreign or truncated file."""
    if flat.size != size:
        raise ValueError(f"weights hold {flat.size} floats, config says {size}")
    views = {}
    for name, (offset, shape) in table.items():
        count = math.prod(shape)
        if offset < 0 or offset + count > size:
            raise ValueError(f"tensor {name} lies outside the weights file")
        views[name] = flat[offset : offset + count].reshape(shape)
    return views


def write_export(
    out_dir: Path | str,
    config: dict[str, Any],
    tensors: dict[str, np.ndarray],
    files: Mapping[str, str | bytes] | None = None,
) -> None:
    """Install `config` (plus a fingerprint and the tensor table), `tensors` and the named
    `files` (text or bytes) as an export directory at `out_dir`, atomically.

    An identical existing export is kept as is.  Raises OSError if writing fails; no partial
    export is ever visible at `out_dir`.
    """
    out_dir = Path(out_dir)
    contents = {name: _as_bytes(data) for name, data in (files or {}).items()}
    config = {**config, "fingerprint": _fingerprint(config, tensors, contents)}
    if _existing_fingerprint(out_dir) == config["fingerprint"]:
        return
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_leftovers(out_dir)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        with _claimed(tmp):
            _write_files(tmp, config, tensors, contents)
            _install(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# A leftover younger than this may be an exporter that has not locked it yet (a window of
# microseconds); older and unlocked, its writer is dead.
_LEFTOVER_GRACE_SECONDS = 60


@contextlib.contextmanager
def _claimed(tmp: Path):
    """Hold a lock on the temporary folder while it is being filled: a folder nobody holds
    was left by a killed export (336 MB each for ViT-B-32's image tower, never cleaned)."""
    fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_dead_leftovers(out_dir: Path | str) -> list[Path]:
    """Delete the temporary folders that killed exports of `out_dir` left beside it;
    returns them. Folders an exporter still holds are left alone."""
    out_dir = Path(out_dir)
    removed = []
    for pattern in (f".{out_dir.name}.tmp-*", f".{out_dir.name}.old-*"):
        for leftover in out_dir.parent.glob(pattern):
            if _dead(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
                removed.append(leftover)
    return removed


def _dead(leftover: Path) -> bool:
    try:
        if time.time() - leftover.lstat().st_mtime < _LEFTOVER_GRACE_SECONDS:
            return False
        fd = os.open(leftover, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def verify_export(directory: Path | str, dim: int | None) -> str | None:
    """Why the export in `directory` cannot be trusted, or None (also when there is none).

    Reads every byte (243 MiB for ViT-B-32's text tower, a fraction of a second) to check the
    fingerprint written with it, so it is for `repair`, not for every query."""
    directory = Path(directory)
    if not (directory / CONFIG_NAME).exists():
        return None
    try:
        config = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
        stored = config.pop("fingerprint")
        table = config.pop("tensors")
        size = int(config.pop("weights_size"))
        flat = np.fromfile(directory / WEIGHTS_NAME, dtype="<f4")
        tensors = _unflatten(flat, table, size)
        files = {
            p.name: p.read_bytes()
            for p in sorted(directory.iterdir())
            if p.name not in (CONFIG_NAME, WEIGHTS_NAME) and p.is_file()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "its files are incomplete or unreadable"
    if _fingerprint(config, tensors, files) != stored:
        return "its files do not match their fingerprint"
    made = config.get("embed_dim")
    if dim is not None and made is not None and int(made) != dim:
        return f"it makes {made}-dimensional vectors, the library holds {dim}-dimensional ones"
    return None


def tensor_table(tensors: Mapping[str, np.ndarray]) -> tuple[dict[str, list[Any]], int]:
    """Where `write_export` puts each tensor in the weights file: name -> [offset, shape] in
    float32 elements, by sorted name, each offset aligned; and the total size."""
    table: dict[str, list[Any]] = {}
    offset = 0
    for name, array in sorted(tensors.items()):
        offset += -offset % _ALIGN
        table[name] = [offset, list(array.shape)]
        offset += array.size
    return table, offset


def _as_bytes(data: str | bytes) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def _fingerprint(
    config: dict[str, Any], tensors: dict[str, np.ndarray], files: dict[str, bytes]
) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(config, sort_keys=True).encode())
    for name in sorted(files):
        digest.update(files[name])
    for name in sorted(tensors):
        digest.update(f"{name}{tensors[name].shape}".encode())
        digest.update(np.ascontiguousarray(tensors[name]).data)
    return digest.hexdigest()


def _existing_fingerprint(out_dir: Path) -> str | None:
    try:
        return json.loads((out_dir / CONFIG_NAME).read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def _write_files(
    tmp: Path, config: dict[str, Any], tensors: dict[str, np.ndarray], files: dict[str, bytes]
) -> None:
    """Fill the private temp dir; fsync so the renamed directory is complete after a crash."""
    table, size = tensor_table(tensors)
    with open(tmp / WEIGHTS_NAME, "wb") as f:
        for name, array in sorted(tensors.items()):
            f.seek(4 * table[name][0])  # the alignment gap reads back as zeros
            f.write(np.ascontiguousarray(array, dtype="<f4").data)
        f.truncate(4 * size)
        _sync(f)
    for name, data in files.items():
        with open(tmp / name, "wb") as f:
            f.write(data)
            _sync(f)
    with open(tmp / CONFIG_NAME, "w", encoding="utf-8") as f:
        json.dump({**config, "tensors": table, "weights_size": size}, f, indent=1)
        _sync(f)


def _sync(f: Any) -> None:
    f.flush()
    os.fsync(f.fileno())


def _install(tmp: Path, out_dir: Path) -> None:
    """Rename `tmp` to `out_dir`; an old export is first renamed aside (rename cannot replace a
    non-empty directory), so readers see the old export, nothing, or the new one, never a mix.
    Retries because a concurrent exporter may be doing the same dance."""
    for _ in range(50):
        try:
            os.rename(tmp, out_dir)
            return
        except OSError:
            _move_aside(out_dir)
    raise OSError(f"could not install export at {out_dir}")


def _move_aside(out_dir: Path) -> None:
    trash = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
    try:
        os.rename(out_dir, trash)
    except FileNotFoundError:
        pass  # another exporter moved it first
    finally:
        shutil.rmtree(trash, ignore_errors=True)
