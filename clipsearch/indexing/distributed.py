"""`index --ray`: the embedding of a run handed to a Ray cluster; everything else stays here.

The driver (the machine that owns the library) scans, plans and stores exactly as a local run
does; only the list of files to embed becomes a Ray Dataset, mapped by an actor pool of
`EmbedWorker`s (one model each, a GPU each when the cluster has GPUs).  Workers read the
photos by path (a share mounted at the same path on every node) or, with `ship_files`,
fetch their bytes from a `FileServer` on the driver's machine.  Their results stream back
and `run.py` commits them in steps, as it commits a local pipeline's.

Ray is an optional extra: this module imports it only when a run asks for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import ClipsearchError
from ..model.spec import ModelSpec, weights_file
from .pipeline import Embedded, Failed, default_batch_size
from .scan import FoundFile

EXTRA = "pip install 'clipsearch[ray]'"
GPU_CALL_BATCHES = 4  # forward passes per call on a GPU actor: its decode workers start per call
CONNECT_SECONDS = 5.0  # to open a TCP connection to the head before anything else
CALLS_PER_WORKER = 4  # at least, in a small run
# Calls queued on one actor: a second one hides the hand-over between calls, more would let
# the first actor up take every call of a small run while the others still load the model.
IN_FLIGHT_PER_WORKER = 2


@dataclass(frozen=True)
class RayOptions:
    """Where to run: 'local' (a Ray runtime started on this machine), 'auto' (the cluster in
    $RAY_ADDRESS or the one this node belongs to), 'HOST:PORT' or 'ray://HOST:10001'."""

    address: str
    workers: int | None = None  # actors; default: one per GPU, else one per CPU
    ship_files: bool = False  # send the photos' bytes from the driver instead of a shared path


def require_ray():
    """Ray Data, or the one-line error naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ClipsearchError(f"--ray needs Ray, an optional extra: {EXTRA}") from None
    return ray


def preflight(options: RayOptions) -> None:
    """Fail in seconds, before any scanning, when Ray is missing or the cluster's address
    does not answer: Ray itself waits minutes for a head that is not there."""
    require_ray()
    if options.address in ("local", "auto"):
        return
    hostport = options.address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_SECONDS).close()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no HOST:PORT"
        raise ClipsearchError(
            f"cannot reach a Ray cluster at {options.address!r} ({reason}): start one with "
            "`ray start --head`, check the address, or use --ray local"
        ) from None


@dataclass
class WorkerStats:
    images: int = 0
    busy: float = 0.0


@dataclass
class RayRun:
    """What the cluster did, for the `--json` summary."""

    address: str
    workers: int = 0
    gpus_per_worker: int = 0
    first_result_seconds: float | None = None
    per_worker: dict[str, WorkerStats] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "address": self.address,
            "workers": self.workers,
            "gpus_per_worker": self.gpus_per_worker,
            "workers_used": len(self.per_worker),
            "first_result_seconds": _rounded(self.first_result_seconds),
            "per_worker": [
                {"worker": name, "images": s.images, "img_per_s": _rate(s.images, s.busy)}
                for name, s in sorted(self.per_worker.items())
            ],
        }


class RayEmbedder:
    """An `Embedder` for `run_index`: files and the driver's encoder in, outcomes out."""

    def __init__(
        self,
        options: RayOptions,
        spec: ModelSpec,
        device: str,
        batch_size: int | None,
        max_pixels,  # an int, None, or per-root PixelLimits, handed to the workers as it is
    ) -> None:
        self.options = options
        self.spec = spec
        self.device = device
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.run: RayRun | None = None

    def __call__(self, files: list[FoundFile], encoder) -> Iterator[list[Embedded | Failed]]:
        ray = require_ray()
        self.run = RayRun(self.options.address)
        started = connect(ray, self.options)
        try:
            yield from self._embed(ray, files, encoder.dim)
        finally:
            if started:
                ray.shutdown()

    def _embed(self, ray, files: list[FoundFile], dim: int) -> Iterator[list]:
        """Stream outcomes as actors finish batches.  Ray retries the batch of a lost actor;
        a row that still came twice (a block computed again) is passed on once."""
        from .rayworker import from_columns

        begun = time.monotonic()
        results = self._dataset(ray, files)
        seen: set[str] = set()
        for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
            self._count(batch, begun)
            outcomes = [o for o in from_columns(batch) if o.path not in seen]
            seen.update(o.path for o in outcomes)
            for o in outcomes:
                if isinstance(o, Embedded) and o.vector.shape != (dim,):
                    raise ClipsearchError(f"a Ray worker made {o.vector.shape} vectors, not {dim}")
            if outcomes:
                yield outcomes

    def _dataset(self, ray, files: list[FoundFile]):
        from .rayworker import EmbedWorker, weights_on_driver

        run = self.run
        device, gpus, cores, workers = placement(ray, self.device, self.options.workers)
        run.workers, run.gpus_per_worker = workers, gpus
        forward = self.batch_size or default_batch_size(device)
        per_call = call_size(len(files), forward * GPU_CALL_BATCHES if gpus else forward, workers)
        server = _file_server(ray) if self.options.ship_files else None
        rows = [{"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns} for f in files]
        blocks = -(-len(rows) // per_call)
        dataset = ray.data.from_items(rows, override_num_blocks=blocks)
        return dataset.map_batches(
            EmbedWorker,
            fn_constructor_kwargs=dict(
                model=self.spec.name,
                pretrained=self.spec.pretrained,
                weights=weights_on_driver(weights_file(self.spec), ray),
                device=device,
                batch_size=forward,
                max_pixels=self.max_pixels,
                cores=cores,
                server=server,
            ),
            batch_size=per_call,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(
                size=workers, max_tasks_in_flight_per_actor=IN_FLIGHT_PER_WORKER
            ),
            num_cpus=cores,
            num_gpus=gpus,
        )

    def _count(self, batch: dict, begun: float) -> None:
        run = self.run
        if run.first_result_seconds is None:
            run.first_result_seconds = time.monotonic() - begun
        for name, busy in zip(batch["worker"], batch["busy"], strict=True):
            stats = run.per_worker.setdefault(str(name), WorkerStats())
            stats.images += 1
            stats.busy += float(busy)


def call_size(files: int, wanted: int, workers: int) -> int:
    """Files per actor call: `wanted`, but small enough for CALLS_PER_WORKER calls each, so
    that an actor which is ready late (its model still loading) still finds work queued."""
    return max(1, min(wanted, -(-files // (workers * CALLS_PER_WORKER))))


def connect(ray, options: RayOptions) -> bool:
    """Join or start the runtime; True when this call started it (and must shut it down).
    A runtime the caller started already (Python API, tests) is used as it is."""
    if ray.is_initialized():
        return False
    _quiet(ray)
    address = options.address
    try:
        with _native_stderr_silenced():
            _init(ray, address, options.workers)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClipsearchError(
            f"cannot reach a Ray cluster at {address!r} ({_first_line(exc)}): start one with "
            "`ray start --head`, or use --ray local"
        ) from None
    return True


def _init(ray, address: str, workers: int | None) -> None:
    if address == "local":
        cpus = max(os.cpu_count() or 1, workers or 1)
        ray.init(
            address="local",
            num_cpus=cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **_QUIET,
        )
    elif address.startswith("ray://"):
        ray.init(address=address, logging_level=logging.ERROR)
    else:
        ray.init(address=address, **_QUIET)


@contextlib.contextmanager
def _native_stderr_silenced():
    """Ray's C++ core writes a line to the process's stderr as it starts (the log level it
    was given), and the processes it spawns inherit that stderr; Python errors still raise."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_QUIET = dict(logging_level=logging.ERROR, log_to_driver=False)


def _quiet(ray) -> None:
    """The progress bar and the summary are ours: Ray Data's own bars and logs stay off."""
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    # Ray Data's actors always get their (pickled) constructor from the object store, about
    # which Ray's core logs an error line per actor; real failures still raise here.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def placement(ray, device: str, workers: int | None) -> tuple[str, int, int, int]:
    """(device, GPUs per actor, CPU cores per actor, actors) for this cluster.

    With GPUs (and --device auto or cuda) each actor gets one and an equal share of the
    cores, less one for Ray itself, to decode with; otherwise each actor is one core."""
    resources = ray.cluster_resources()
    cpus, gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
    if device == "cuda" and not gpus:
        raise ClipsearchError("--device cuda, but the Ray cluster has no GPUs: use --device cpu")
    if gpus and device in ("auto", "cuda"):
        count = workers or gpus
        if count > gpus:
            raise ClipsearchError(f"--workers {count} needs {count} GPUs; the cluster has {gpus}")
        return "cuda", 1, cores_per_gpu(ray.nodes()), count
    count = workers or cpus
    if count > cpus:
        raise ClipsearchError(f"--workers {count} needs {count} CPUs; the cluster has {cpus}")
    return "cpu", 0, 1, count


def cores_per_gpu(nodes: list[dict]) -> int:
    """Decoding cores for each GPU actor: the scarcest GPU node's cores per GPU, less one for
    Ray's own processes (the head's CPUs do not count: an actor runs where its GPU is)."""
    shares = [
        int(n["Resources"].get("CPU", 0)) // int(n["Resources"]["GPU"])
        for n in nodes
        if n.get("Alive") and n["Resources"].get("GPU", 0) >= 1
    ]
    return max(1, min(shares, default=1) - 1)


def _file_server(ray):
    """The actor that reads photos for the workers, pinned to this (the driver's) node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .rayworker import FileServer

    try:
        node = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 (Ray Client: the driver is not a node of the cluster)
        node = None
    if not node:
        raise ClipsearchError(
            "--ray-ship-files needs the driver on a node of the cluster (--ray auto or "
            "HOST:PORT, not ray://): mount the photos on the workers instead"
        )
    strategy = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
    return ray.remote(FileServer).options(num_cpus=0, scheduling_strategy=strategy).remote()


def _rate(images: int, seconds: float) -> float | None:
    return round(images / seconds, 2) if seconds > 0 else None


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else exc.__class__.__name__
