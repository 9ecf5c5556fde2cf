"""One `index` run: apply the plan, carry over moves, embed what changed, commit in steps.

Nothing heavy is imported unless some file really needs embedding, so re-running over an
unchanged library costs a directory walk and one SQLite read.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..results import IndexReport
from ..storage.db import Store
from . import metadata
from .pipeline import DISAPPEARED, Embedded, Failed, embed_files
from .plan import Plan, plan_changes
from .roots import device_of
from .scan import FoundFile, ScanResult
from .stopping import shielded

COMMIT_SECONDS = 10.0  # how much work a crash may cost; $CLIPSEARCH_COMMIT_SECONDS overrides
# progress(done, total) as files are embedded.  A progress object may also have
# stage(text) (what happens before the first file: loading the model can take 10-14 s) and
# skipped(path, reason) (each file skipped, as it happens); see `note_stage`, `note_skip`.
Progress = Callable[[int, int], None]
# Files to embed and the loaded encoder -> lists of outcomes; a local run uses embed_files,
# a Ray run hands the files to its workers (indexing/distributed.py).
Embedder = Callable[[list[FoundFile], object], Iterator[list[Embedded | Failed]]]


def note_stage(progress: Progress | None, text: str) -> None:
    stage = getattr(progress, "stage", None)
    if stage is not None:
        stage(text)


def note_skip(progress: Progress | None, path: str, reason: str) -> None:
    skipped = getattr(progress, "skipped", None)
    if skipped is not None:
        skipped(path, reason)


def run_index(
    store: Store,
    roots: Sequence[str],
    scan: ScanResult,
    load_encoder: Callable[[], object],
    *,
    batch_size: int | None,
    max_pixels: int | None,
    progress: Progress | None = None,
    date_fallback: str = "none",
    offline: Sequence[str] = (),
    embedder: Embedder | None = None,
) -> IndexReport:
    """Apply the plan in committed steps; an interrupt keeps everything committed so far.

    Files indexed before photo metadata existed get theirs read first (headers only), except
    under `offline` roots, which are out of reach.  `embedder` replaces the local
    decode-and-embed pipeline (a Ray cluster's); whatever embeds, the outcomes are committed
    here, the same way."""
    started = time.monotonic()
    plan = plan_changes(store, roots, scan)
    report = _scan_report(scan, plan)
    for path, reason in plan.new_problems:
        note_skip(progress, path, reason)
    store.begin()
    for k, f in plan.moves:
        store.move(k.id, f.path, f.size, f.mtime_ns)
    store.remove(plan.removed_ids)
    store.remove_errors(plan.stale_errors)
    for path, reason in plan.new_problems:
        store.record_error(path, *_stamp(path), reason)
    for f, mark, vector in plan.reuse:
        store.add(f.path, f.size, f.mtime_ns, mark, np.frombuffer(vector, dtype=np.float32))
        store.unretain(f.size, mark)
    store.expire_retained()
    for root in roots:
        store.add_root(root, device_of(root))
    store.commit()
    try:
        embedding = {f.path for f in plan.embed}
        report.metadata_read = metadata.backfill(
            store, embedding, commit_seconds(), skip_under=offline
        )
        if plan.embed:
            note_stage(progress, f"loading the model to embed {len(plan.embed)} photos")
            encoder = load_encoder()
            if embedder is None:
                batches = embed_files(
                    plan.embed, encoder, batch_size=batch_size, max_pixels=max_pixels
                )
            else:
                batches = embedder(plan.embed, encoder)
            _commit_all(store, len(plan.embed), batches, report, progress)
        if date_fallback == "mtime":
            metadata.dates_from_mtime(store)
    except KeyboardInterrupt:
        report.interrupted = True
    report.skipped = len(report.new_problems) + report.known_problems
    report.seconds = time.monotonic() - started
    return report


def _scan_report(scan: ScanResult, plan: Plan) -> IndexReport:
    report = IndexReport(
        unchanged=plan.unchanged,
        moved=len(plan.moves),
        removed=len(plan.removed_ids),
        videos=scan.videos,
        raw_paired=scan.raw_paired,
        missing_extras=dict(scan.missing_extras),
        known_problems=plan.known_problems,
        reused=len(plan.reuse),
    )
    report.new_problems.extend(plan.new_problems)
    return report


def _stamp(path: str) -> tuple[int, int]:
    """Size and mtime of a path the scan could not use (the link itself, if it is one)."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0, 0
    return st.st_size, st.st_mtime_ns


def _commit_all(store, total: int, batches, report, progress) -> None:
    """Store the outcomes as they come, committing every commit_seconds(); report.
    embed_seconds counts this part alone, so the img/s of the summary is not diluted by
    loading the model (one new photo showed "0.1 img/s")."""
    done = 0
    started = time.monotonic()
    if progress:
        progress(0, total)
    interval = commit_seconds()
    last_commit = time.monotonic()
    store.begin()
    # closing(): on Ctrl-C the decode workers stop at once, not when the process exits.
    # The finally commits what was embedded; Store.commit is safe wherever Ctrl-C lands.
    try:
        with contextlib.closing(batches):
            for outcomes in batches:
                with shielded():  # counted and stored together, or neither
                    _record_batch(store, outcomes, report)
                for outcome in outcomes:
                    if isinstance(outcome, Failed):
                        note_skip(progress, outcome.path, outcome.reason)
                done += len(outcomes)
                if progress:
                    progress(done, total)
                if time.monotonic() - last_commit >= interval:
                    with shielded():
                        store.commit()
                        store.begin()
                    last_commit = time.monotonic()
    finally:
        with shielded():
            store.commit()
        report.embed_seconds = time.monotonic() - started


def commit_seconds() -> float:
    """The commit interval; tests shorten it so that kills land between commits."""
    try:
        return float(os.environ.get("CLIPSEARCH_COMMIT_SECONDS", COMMIT_SECONDS))
    except ValueError:
        return COMMIT_SECONDS


def _record_batch(store: Store, outcomes: list, report: IndexReport) -> None:
    """Store a batch's vectors, each with its metadata under the same new file id."""
    stored = []
    for outcome in outcomes:
        new_id = _record(store, outcome, report)
        if new_id is not None:
            stored.append((new_id, outcome.meta))
    metadata.put(store, stored)


def _record(store: Store, outcome: Embedded | Failed, report: IndexReport) -> int | None:
    """Store one outcome; returns the new file id of an embedded one."""
    if isinstance(outcome, Embedded):
        report.indexed += 1
        return store.add(
            outcome.path, outcome.size, outcome.mtime_ns, outcome.fingerprint, outcome.vector
        )
    report.new_problems.append((outcome.path, outcome.reason))
    if outcome.reason != DISAPPEARED:  # a vanished file needs no note: the next scan drops it
        store.drop_file(outcome.path)
        store.record_error(outcome.path, outcome.size, outcome.mtime_ns, outcome.reason)
    return None
