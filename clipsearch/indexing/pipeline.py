"""Files on disk to vectors: decoding in worker processes that overlap the model.

Decoding a phone JPEG costs a third as much CPU as embedding it even in JPEG draft mode, so
workers decode while the main process runs the model; a bound on the batches in flight keeps
memory flat however many files there are.

Two ways to run the workers.  An encoder whose inputs need no torch (`torch_free`, the
onnxruntime tower) gets plain processes that use Pillow and numpy only, forked from a main
process that never imported torch: the model is in memory once.  A torch encoder keeps
torch's DataLoader (pinned memory for CUDA, tensors its preprocessing makes).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from ..errors import ImageError, os_reason
from ..model.base import ImageEncoder
from ..photos.metadata import EMPTY as EMPTY_META
from ..photos.metadata import PhotoMeta
from .scan import FoundFile, fingerprint
from .settings import PixelLimits

DISAPPEARED = "file disappeared while indexing"
# Recorded for a file whose decoding killed its worker process twice (the OOM killer, a
# decoder crash): remembered like any bad file, so later runs do not try it again.
WORKER_DIED = "decoding crashed (the worker process died, perhaps out of memory)"
INLINE_FILES = 8  # up to this many files are decoded in the main process, without workers


@dataclass(frozen=True)
class Embedded:
    path: str
    size: int
    mtime_ns: int
    fingerprint: str
    vector: np.ndarray
    meta: PhotoMeta = EMPTY_META


@dataclass(frozen=True)
class Failed:
    path: str
    size: int
    mtime_ns: int
    reason: str


@dataclass(frozen=True)
class Decoded:
    """One worker's result for one file: a tensor, or the reason there is none."""

    path: str
    size: int
    mtime_ns: int
    fingerprint: str
    tensor: object | None
    reason: str | None
    meta: PhotoMeta = EMPTY_META


class PhotoDataset:
    """Index-addressable decoding of files, run inside DataLoader workers.

    `busy`, when given, is a shared array with one slot per worker holding the index of the
    file that worker is decoding (-1 when idle): if a worker dies, those are the suspects.
    """

    def __init__(
        self, files: Sequence[FoundFile], preprocess, min_side: int, max_pixels, busy=None
    ) -> None:
        self.files = files
        self.preprocess = preprocess
        self.min_side = min_side
        self.max_pixels = max_pixels
        self.busy = busy

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Decoded:
        slot = _worker_slot() if self.busy is not None else None
        if slot is not None:
            self.busy[slot] = i
        try:
            return self._decode(i)
        finally:
            if slot is not None:
                self.busy[slot] = -1

    def _decode(self, i: int) -> Decoded:
        from ..photos.decode import load_image_and_metadata

        found = self.files[i]
        try:
            st = os.stat(found.path)
        except OSError as exc:
            return Decoded(found.path, found.size, found.mtime_ns, "", None, _os_reason(exc))
        try:
            limit = self.max_pixels
            if isinstance(limit, PixelLimits):  # each root's own --max-megapixels
                limit = limit.for_path(found.path)
            image, meta = load_image_and_metadata(
                found.path, min_side=self.min_side, max_pixels=limit
            )
            tensor = self.preprocess(image)
            mark = fingerprint(found.path, st.st_size)
        except ImageError as exc:
            return Decoded(found.path, st.st_size, st.st_mtime_ns, "", None, str(exc))
        except OSError as exc:
            return Decoded(found.path, st.st_size, st.st_mtime_ns, "", None, _os_reason(exc))
        return Decoded(found.path, st.st_size, st.st_mtime_ns, mark, tensor, None, meta)


def _worker_slot() -> int | None:
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    return None if info is None else info.id


def _os_reason(exc: OSError) -> str:
    """A vanished file gets its own reason: the next scan drops it, so it needs no note."""
    return DISAPPEARED if isinstance(exc, FileNotFoundError) else os_reason(exc)


def _collate(items: list[Decoded]) -> tuple[object | None, list[Decoded]]:
    """Stack the good tensors in the worker (so they can be pinned) and strip them from
    the records that travel alongside."""
    import torch

    tensors = [d.tensor for d in items if d.tensor is not None]
    batch = torch.stack(tensors) if tensors else None
    return batch, [d if d.tensor is None else _without_tensor(d) for d in items]


def _stack(items: list[Decoded]) -> tuple[np.ndarray | None, list[Decoded]]:
    """`_collate` for numpy inputs: one array per batch crosses the pipe, not 32 objects."""
    arrays = [d.tensor for d in items if d.tensor is not None]
    batch = np.stack(arrays) if arrays else None
    return batch, [d if d.tensor is None else _without_tensor(d) for d in items]


def decode_batch(dataset: PhotoDataset, indices: Sequence[int]) -> tuple:
    """One batch decoded and stacked (runs in a plain worker, or inline for a few files)."""
    return _stack([dataset[i] for i in indices])


def _without_tensor(d: Decoded) -> Decoded:
    return Decoded(d.path, d.size, d.mtime_ns, d.fingerprint, True, None, d.meta)


@dataclass(frozen=True)
class WorkerPlan:
    """How indexing shares the machine between decoding and the model."""

    workers: int  # DataLoader processes decoding photos
    threads: int  # torch threads of the model's forward passes


def worker_plan(device: str, cpu_count: int | None = None) -> WorkerPlan:
    """Keep every core busy: on a CPU decoding is about a quarter of the work (a 12 MP JPEG
    drafted ~30 ms, ViT-B-32 ~100 ms per image on one core), so a third of the cores decode.

    With two cores the one decode worker shares them with two model threads: it idles once
    its prefetched batches wait, and end to end this measured 12-14 img/s for ViT-B-32 on 12 MP
    photos, where one torch thread caps the model itself at ~10.  The onnxruntime tower opens
    its session with the same thread count (`model.imageort.index_threads`).
    """
    from ..model.imageort import index_threads

    cores = cpu_count or os.cpu_count() or 1
    if device != "cpu":
        return WorkerPlan(max(1, min(cores - 1, 12)), 1)
    threads = index_threads(cores)
    return WorkerPlan(max(1, cores - threads) if cores > 2 else 1, threads)


def default_batch_size(device: str) -> int:
    """Big enough to fill a GPU; on a CPU larger batches gain nothing and cost memory."""
    return 256 if device == "cuda" else 32


def ramped_batches(count: int, batch_size: int, first: int = 4) -> list[range]:
    """Batches of file indices, the first ones small (4, 8, 16, ...) up to `batch_size`.

    The model cannot start before a whole batch is decoded; with full batches from the start,
    the model's cores idle for the time of a full batch's decoding (a second per 32 phone photos).
    """
    batches, start, size = [], 0, min(first, batch_size)
    while start < count:
        batches.append(range(start, min(start + size, count)))
        start += size
        size = min(size * 2, batch_size)
    return batches


def _init_worker(_: int) -> None:
    import torch

    torch.set_num_threads(1)
    _only_main_stops()


def _only_main_stops() -> None:
    """Ctrl-C, and the SIGHUP of a closed terminal, reach the whole process group: the main
    process alone handles them (it stops the workers).  A DataLoader worker that took a
    second Ctrl-C itself printed a KeyboardInterrupt traceback from its exit handlers.
    SIGTERM, the way the main process stops a worker, gets its default action back: a forked
    worker inherited the main process's Python handler for it and, asked to stop, went on
    sleeping (seen in a clean-clone run: an orphan holding the terminal's pipes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.excepthook = _quiet_when_abandoned
    threading.excepthook = _quiet_thread_when_abandoned


# After Ctrl-C the indexer stops taking batches: a worker still handing one over finds the
# pipe closed (ConnectionError), and the thread through which a DataLoader worker passes a
# batch's shared memory finds the connection cut (EOFError).  That is expected, and no reason
# to print a traceback on the terminal.
_ABANDONED = (ConnectionError, EOFError)


def _quiet_when_abandoned(kind, value, traceback) -> None:
    if not issubclass(kind, _ABANDONED):
        sys.__excepthook__(kind, value, traceback)


def _quiet_thread_when_abandoned(args) -> None:
    if not issubclass(args.exc_type, _ABANDONED):
        threading.__excepthook__(args)


def embed_files(
    files: Sequence[FoundFile],
    encoder: ImageEncoder,
    *,
    batch_size: int | None,
    max_pixels: int | None,
    workers: int | None = None,
    cores: int | None = None,
) -> Iterator[list[Embedded | Failed]]:
    """Yield one list of outcomes per batch, in file order within each batch.

    The batch size defaults by device here, once the encoder is loaded: deciding it earlier
    would load the model even when nothing needs embedding. When a decode worker dies, the
    files it was decoding are tried again one at a time in a fresh worker; one that kills
    that too is a Failed with WORKER_DIED, and the rest of the run goes on.  `cores`: how
    many this run may use (a Ray actor's share of its node), by default the machine's.
    """
    plan = worker_plan(encoder.device, cores)
    workers = plan.workers if workers is None else workers
    size = batch_size or default_batch_size(encoder.device)
    if len(files) <= INLINE_FILES:
        # Even a forked worker costs more than decoding a few photos, and one started by
        # forkserver (the first run of a model, while its export thread runs) ~5 s more: a
        # new library of one photo took 16.7 s instead of 11.
        workers = 0
    if getattr(encoder, "torch_free", False):
        yield from _plain_batches(files, encoder, size, max_pixels, workers)
        return
    import torch

    torch.set_num_threads(plan.threads)
    remaining = list(files)
    while remaining:
        done, suspects = yield from _embed_until_a_worker_dies(
            remaining, encoder, size, max_pixels, workers
        )
        if not suspects:
            return
        yield [_embed_alone(remaining[i], encoder, max_pixels) for i in sorted(suspects)]
        remaining = [f for i, f in enumerate(remaining) if i >= done and i not in suspects]


def _embed_until_a_worker_dies(files, encoder, size, max_pixels, workers):
    """Run one DataLoader over files; returns (files yielded, indices being decoded by workers
    when one died), the latter empty when the loader finished."""
    from torch.utils.data import DataLoader

    context = _context() if workers else None  # forkserver while other threads run, as below
    busy = context.Array("q", [-1] * workers, lock=False) if context else None
    dataset = PhotoDataset(files, encoder.preprocess, encoder.image_size, max_pixels, busy)
    loader = DataLoader(
        dataset,
        batch_sampler=ramped_batches(len(files), size),
        num_workers=workers,
        collate_fn=_collate,
        worker_init_fn=_init_worker if workers else None,
        prefetch_factor=2 if workers else None,
        pin_memory=encoder.device == "cuda",
        multiprocessing_context=context,
    )
    batches, done = iter(loader), 0
    while True:
        try:
            batch, items = next(batches)
        except StopIteration:
            return done, set()
        except RuntimeError as exc:
            if busy is None or not _worker_died(exc):
                raise
            suspects = {i for i in busy if i >= done}
            del batches  # shuts the other workers down
            # A death between two files leaves no slot set: blame the next file, never loop.
            return done, suspects or {done}
        done += len(items)
        yield _embed_batch(batch, items, encoder)


def _worker_died(exc: RuntimeError) -> bool:
    text = str(exc)
    return "DataLoader worker" in text and ("exited unexpectedly" in text or "killed" in text)


def _embed_alone(found: FoundFile, encoder: ImageEncoder, max_pixels) -> Embedded | Failed:
    """One suspect file in a worker of its own: its outcome, or WORKER_DIED if it dies again."""
    outcomes: list[Embedded | Failed] = []
    for batch in _embed_until_a_worker_dies([found], encoder, 1, max_pixels, 1):
        outcomes += batch
    return outcomes[0] if outcomes else Failed(found.path, found.size, found.mtime_ns, WORKER_DIED)


def _plain_batches(files, encoder, size: int, max_pixels, workers: int) -> Iterator[list]:
    """Decode in `workers` plain processes that never import torch (inline with none), at
    most two batches per worker in flight, and embed here in file order.  When a worker dies,
    the files of the batches in flight are tried again one at a time, as the DataLoader path
    does."""
    dataset = PhotoDataset(files, encoder.preprocess, encoder.image_size, max_pixels)
    todo = deque(ramped_batches(len(files), size))
    if workers == 0:
        for indices in todo:
            yield _embed_batch(*decode_batch(dataset, indices), encoder)
        return
    while todo:
        suspects = yield from _plain_until_a_worker_dies(dataset, todo, encoder, workers)
        for i in suspects:
            yield [_plain_alone(dataset, i, encoder)]


def _plain_until_a_worker_dies(dataset, todo: deque, encoder, workers: int):
    """Take batches from `todo` until it is empty (returns no suspects) or a worker dies
    (returns the files of every batch then in flight)."""
    context = _context(plain=True)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_only_main_stops)
    pending: deque[tuple[range, Future]] = deque()
    try:
        while todo or pending:
            while todo and len(pending) < 2 * workers:
                indices = todo.popleft()
                pending.append((indices, pool.submit(decode_batch, dataset, indices)))
            indices, future = pending[0]
            try:
                batch, items = future.result()
            except BrokenProcessPool:
                _terminate(pool)
                return [i for indices, _ in pending for i in indices]
            pending.popleft()
            yield _embed_batch(batch, items, encoder)
    except BaseException:  # Ctrl-C, a closed generator, an error
        _terminate(pool)
        raise
    pool.shutdown(wait=True)
    return []


def _plain_alone(dataset: PhotoDataset, i: int, encoder) -> Embedded | Failed:
    """One suspect file in a worker of its own: its outcome, or WORKER_DIED if it dies again."""
    pool = ProcessPoolExecutor(1, mp_context=_context(plain=True), initializer=_only_main_stops)
    try:
        batch, items = pool.submit(decode_batch, dataset, [i]).result()
    except BrokenProcessPool:
        found = dataset.files[i]
        return Failed(found.path, found.size, found.mtime_ns, WORKER_DIED)
    finally:
        _terminate(pool)
    return _embed_batch(batch, items, encoder)[0]


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now: their batches are of no use any more, and a worker left waiting
    on a broken queue kept the process from exiting (measured: until killed)."""
    found = getattr(pool, "_processes", None)  # no public way to reach them
    processes = list(found.values()) if isinstance(found, dict) else []
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    # The pool's manager thread notices the dead workers and closes its wake-up pipe; waiting
    # for it here leaves nothing to concurrent.futures' exit hook, which otherwise raced that
    # close after Ctrl-C or SIGHUP and printed an OSError traceback (Bad file descriptor).
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None:
        manager.join(timeout=5)
        from concurrent.futures import process as futures_process

        getattr(futures_process, "_threads_wakeups", {}).pop(manager, None)


def _context(plain: bool = False):
    """Fork on Linux: a worker is ready in milliseconds instead of ~0.5 s of Python start and
    imports, and shares the parent's pages (PSS counts them once).  The parent holds no torch
    on this path, and its onnxruntime threads sleep; the child touches neither.  But only
    while this is the process's one Python thread: a child forked while another thread (the
    first run's export, writing the towers in torch) held a lock waited for it for ever (seen
    in the test suite: a worker stuck in an at-fork handler, the run hung; and a DataLoader
    worker stuck formatting a stack in torch's seeding, in a clean-clone run).  Then
    forkserver, which forks from a clean, single-threaded server.  Elsewhere spawn (macOS
    forbids forking a process that has started system frameworks).  `plain` workers (Pillow
    and numpy only) never fork from a process that holds torch: what torch imports brings
    at-fork handlers of its own (filelock's was seen stuck in a forked plain worker, hanging a
    clean-clone run of the suite, whose process had imported torch), and they need nothing of
    its state.  An index run on the onnxruntime path imports neither, and forks."""
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    alone = threading.active_count() == 1 and not (plain and "torch" in sys.modules)
    return multiprocessing.get_context("fork" if alone else "forkserver")


def _embed_batch(batch, items: list[Decoded], encoder: ImageEncoder) -> list[Embedded | Failed]:
    good = [d for d in items if d.tensor is not None]
    vectors = encoder.encode_images(batch) if good else []
    outcomes: list[Embedded | Failed] = [
        Failed(d.path, d.size, d.mtime_ns, d.reason or "unreadable")
        for d in items
        if d.tensor is None
    ]
    outcomes += [
        Embedded(d.path, d.size, d.mtime_ns, d.fingerprint, v, d.meta)
        for d, v in zip(good, vectors, strict=True)
    ]
    return outcomes
