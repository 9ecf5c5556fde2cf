"""What runs inside a Ray worker during `index --ray`: one model per actor, fed files by path.

Each actor embeds its share with the local pipeline itself (`embed_files`: the same decode,
EXIF orientation, HEIC/RAW support, bad-file reasons, backend and precision), so a vector
made on the cluster is the vector a local run makes.  Results travel back to the driver as
plain columns (Ray Data batches), and the driver alone writes the library.

Only the driver's `distributed.py` and Ray's workers import this module.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence

import numpy as np

from ..model.factory import index_encoder
from ..model.spec import ModelSpec, looks_like_checkpoint
from .pipeline import Embedded, Failed, _os_reason, embed_files
from .scan import FoundFile, fingerprint
from .settings import PixelLimits

WEIGHTS_DIR = "clipsearch-weights"  # under the node's temp folder: one copy per node


@dataclasses.dataclass(frozen=True)
class Weights:
    """The checkpoint as the driver has it: its path there, a key naming its content, and
    the object-store reference to its bytes (fetched only by nodes that cannot read the path).
    The reference sits in a list so that Ray hands it over as it is, not its bytes."""

    path: str
    size: int
    key: str
    ref: list


def weights_on_driver(path: str, ray) -> Weights:
    """Put the checkpoint into the object store once for the whole run."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        ref = ray.put(f.read())
    return Weights(path, size, fingerprint(path, size), [ref])


def local_weights(weights: Weights) -> str:
    """A path to the checkpoint on this node: the driver's own path where this node sees the
    same file (one machine, or weights on the shared mount), else one copy per node, written
    once whichever actor comes first (write then rename, so no actor reads half a file)."""
    if _same_file(weights.path, weights.size, weights.key):
        return weights.path
    import ray

    folder = os.path.join(tempfile.gettempdir(), WEIGHTS_DIR)
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(weights.path)[1]
    target = os.path.join(folder, weights.key + suffix)
    if not _same_file(target, weights.size, weights.key):
        fd, partial = tempfile.mkstemp(dir=folder, suffix=".part")
        with os.fdopen(fd, "wb") as out:
            out.write(ray.get(weights.ref[0]))
        os.replace(partial, target)
    return target


def _same_file(path: str, size: int, key: str) -> bool:
    try:
        return os.path.getsize(path) == size and fingerprint(path, size) == key
    except OSError:
        return False


class FileServer:
    """Hands out the bytes of photos that exist only on the driver's machine
    (`--ray-ship-files`); runs as an actor pinned to that machine."""

    def read(self, paths: Sequence[str]) -> list[tuple[bytes | None, int, int, str | None]]:
        """(bytes, size, mtime_ns, None), or (None, 0, 0, reason) for a file it cannot read."""
        found = []
        for path in paths:
            try:
                with open(path, "rb") as f:
                    st = os.fstat(f.fileno())
                    found.append((f.read(), st.st_size, st.st_mtime_ns, None))
            except OSError as exc:
                found.append((None, 0, 0, _os_reason(exc)))
        return found


class EmbedWorker:
    """A Ray Data actor: loads the model once, then embeds each batch of files it is given."""

    def __init__(
        self,
        model: str,
        pretrained: str,
        weights: Weights,
        device: str,
        batch_size: int,
        max_pixels: int | None,
        cores: int,
        server=None,
    ) -> None:
        local = local_weights(weights)
        if looks_like_checkpoint(pretrained):
            self.encoder = index_encoder(ModelSpec(model, local), device)
        else:  # a tag: its settings by name, its weights from the driver's copy
            self.encoder = index_encoder(ModelSpec(model, pretrained), device, local)
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.cores = cores
        self.server = server
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        files = [
            FoundFile(str(p), int(s), int(m))
            for p, s, m in zip(batch["path"], batch["size"], batch["mtime_ns"], strict=True)
        ]
        outcomes = self._embed(files) if self.server is None else self._embed_shipped(files)
        busy = time.perf_counter() - start
        return to_columns(outcomes, self.encoder.dim, self.name, busy)

    def _embed(self, files: list[FoundFile], max_pixels=None) -> list[Embedded | Failed]:
        """The local pipeline; with one core, decoding runs in the actor between batches
        (a decode process would only compete with the model for that core)."""
        workers = 0 if self.encoder.device == "cpu" and self.cores <= 1 else None
        batches = embed_files(
            files,
            self.encoder,
            batch_size=self.batch_size,
            max_pixels=self.max_pixels if max_pixels is None else max_pixels,
            workers=workers,
            cores=self.cores,
        )
        return [outcome for outcomes in batches for outcome in outcomes]

    def _embed_shipped(self, files: list[FoundFile]) -> list[Embedded | Failed]:
        """Fetch the bytes from the driver's machine, decode them from a scratch copy with the
        original's extension, and report each outcome under the original path and mtime."""
        import ray

        shipped = ray.get(self.server.read.remote([f.path for f in files]))
        scratch = tempfile.mkdtemp(prefix="clipsearch-shipped-")
        try:
            copies, originals, failed = [], {}, []
            for i, (f, (data, size, mtime_ns, reason)) in enumerate(
                zip(files, shipped, strict=True)
            ):
                if data is None:
                    failed.append(Failed(f.path, f.size, f.mtime_ns, reason or "unreadable"))
                    continue
                copy = os.path.join(scratch, _limit_folder(self.max_pixels, f.path), str(i))
                copy += os.path.splitext(f.path)[1]
                os.makedirs(os.path.dirname(copy), exist_ok=True)
                with open(copy, "wb") as out:
                    out.write(data)
                copies.append(FoundFile(copy, size, mtime_ns))
                originals[copy] = (f.path, mtime_ns)
            outcomes = self._embed(copies, _scratch_limits(self.max_pixels, scratch))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return failed + [_renamed(o, *originals[o.path]) for o in outcomes]


def _limit_folder(limits, path: str) -> str:
    """A scratch copy sits in a folder named after its root's pixel limit, so the limit
    still applies to it (PixelLimits goes by the folder a file is in)."""
    limit = limits.for_path(path) if isinstance(limits, PixelLimits) else limits
    return f"limit-{limit}"


def _scratch_limits(limits, scratch: str):
    """`limits` as they apply to the scratch copies made by _limit_folder."""
    if not isinstance(limits, PixelLimits):
        return limits
    values = {limit for _, limit in limits.by_root} | {limits.default}
    return PixelLimits(
        tuple((os.path.join(scratch, f"limit-{v}"), v) for v in values), limits.default
    )


def _renamed(outcome: Embedded | Failed, path: str, mtime_ns: int) -> Embedded | Failed:
    return dataclasses.replace(outcome, path=path, mtime_ns=mtime_ns)


# -- outcomes as columns, and back ---------------------------------------------------------


def to_columns(outcomes: list, dim: int, worker: str, busy: float) -> dict[str, np.ndarray]:
    """One row per file; a failed file has a zero vector and its reason.  `busy` (the
    actor's seconds for this batch) is spread over the rows, so the driver can sum it."""
    n = len(outcomes)
    vectors = np.zeros((n, dim), np.float32)
    for i, o in enumerate(outcomes):
        if isinstance(o, Embedded):
            vectors[i] = o.vector
    ok = [isinstance(o, Embedded) for o in outcomes]
    return {
        "path": np.array([o.path for o in outcomes], dtype=object),
        "size": np.array([o.size for o in outcomes], np.int64),
        "mtime_ns": np.array([o.mtime_ns for o in outcomes], np.int64),
        "fingerprint": np.array(
            [o.fingerprint if k else "" for o, k in _pair(outcomes, ok)], dtype=object
        ),
        "reason": np.array(["" if k else o.reason for o, k in _pair(outcomes, ok)], dtype=object),
        # object dtype: a fixed-width bytes array would drop the pickles' trailing zero bytes
        "meta": np.array(
            [pickle.dumps(o.meta) if k else b"" for o, k in _pair(outcomes, ok)], dtype=object
        ),
        "vector": vectors,
        "worker": np.array([worker] * n, dtype=object),
        "busy": np.full(n, busy / max(n, 1)),
    }


def _pair(outcomes: list, ok: list[bool]):
    return zip(outcomes, ok, strict=True)


def from_columns(batch: dict[str, np.ndarray]) -> list[Embedded | Failed]:
    """The outcomes a batch of rows describes, as the local pipeline would yield them."""
    outcomes: list[Embedded | Failed] = []
    for i, path in enumerate(batch["path"]):
        size, mtime_ns = int(batch["size"][i]), int(batch["mtime_ns"][i])
        reason = str(batch["reason"][i])
        if reason:
            outcomes.append(Failed(str(path), size, mtime_ns, reason))
            continue
        meta = pickle.loads(bytes(batch["meta"][i]))
        vector = np.asarray(batch["vector"][i], np.float32)
        mark = str(batch["fingerprint"][i])
        outcomes.append(Embedded(str(path), size, mtime_ns, mark, vector, meta))
    return outcomes
