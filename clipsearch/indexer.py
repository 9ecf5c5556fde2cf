"""One `index` run: compare the scan with the library, carry over moves, embed what changed.

Nothing heavy is imported unless some file really needs embedding, so re-running over an
unchanged library costs a directory walk and one SQLite read.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .pipeline import DISAPPEARED, Embedded, Failed, embed_files
from .scanner import FoundFile, ScanResult, fingerprint
from .store import Known, Store

COMMIT_SECONDS = 10.0  # how much work a crash may cost; $CLIPSEARCH_COMMIT_SECONDS overrides
Progress = Callable[[int, int], None]


@dataclass
class IndexReport:
    """What one run did; `as_dict` is the `index --json` summary."""

    indexed: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    videos: int = 0
    raw_paired: int = 0
    missing_extras: dict[str, int] = field(default_factory=dict)
    new_problems: list[tuple[str, str]] = field(default_factory=list)
    known_problems: int = 0
    interrupted: bool = False

    def as_dict(self) -> dict:
        return {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "moved": self.moved,
            "removed": self.removed,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "videos": self.videos,
            "raw_paired": self.raw_paired,
            "missing_extras": self.missing_extras,
            "errors": [{"path": p, "reason": r} for p, r in self.new_problems],
            "interrupted": self.interrupted,
        }


@dataclass
class Plan:
    embed: list[FoundFile]
    moves: list[tuple[Known, FoundFile]]
    removed_ids: list[int]
    unchanged: int
    known_problems: int
    new_problems: list[tuple[str, str]] = field(default_factory=list)
    stale_errors: list[str] = field(default_factory=list)


def plan_changes(store: Store, roots: Sequence[str], scan: ScanResult) -> Plan:
    """Decide per file: unchanged, moved (same content, new path), gone, or to embed.

    What lies at or under a path the scan could not read (a folder without permission, a
    dropped network share) is kept as it was: it is out of sight, not gone.  A scan problem
    already on record with the same reason is not reported again.
    """
    known = store.known_files(roots)
    errors = store.known_errors(roots)
    seen = {f.path for f in scan.files}
    unreadable = {path for path, _ in scan.problems}
    fresh, unchanged, known_problems = [], 0, 0
    for f in scan.files:
        k = known.get(f.path)
        err = errors.get(f.path)
        if k is not None and (k.size, k.mtime_ns) == (f.size, f.mtime_ns):
            unchanged += 1
        elif k is None and err is not None and (err.size, err.mtime_ns) == (f.size, f.mtime_ns):
            known_problems += 1
        else:
            fresh.append(f)
    vanished = {p: k for p, k in known.items() if p not in seen and not _covered(p, unreadable)}
    moves, embed = _match_moves(fresh, vanished, known)
    moved_ids = {k.id for k, _ in moves}
    removed = [k.id for k in vanished.values() if k.id not in moved_ids]
    new = [(p, r) for p, r in scan.problems if p not in errors or errors[p].reason != r]
    known_problems += len(scan.problems) - len(new)
    stale = [p for p in errors if p not in seen and not _covered(p, unreadable)]
    return Plan(embed, moves, removed, unchanged, known_problems, new, stale)


def _covered(path: str, unreadable: set[str]) -> bool:
    """True when path itself, or a folder above it, could not be read in this scan."""
    if not unreadable:
        return False
    while path not in unreadable:
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return True


def _match_moves(
    fresh: list[FoundFile], vanished: dict[str, Known], known: dict[str, Known]
) -> tuple[list[tuple[Known, FoundFile]], list[FoundFile]]:
    """Pair new paths with vanished files of equal size and fingerprint.

    Size is checked first, so fingerprints are read only for plausible candidates.
    """
    by_size: dict[int, list[Known]] = defaultdict(list)
    for k in vanished.values():
        by_size[k.size].append(k)
    moves, embed = [], []
    for f in fresh:
        candidates = by_size.get(f.size) if f.path not in known else None
        match = _take_match(f, candidates) if candidates else None
        if match is None:
            embed.append(f)
        else:
            moves.append((match, f))
    return moves, embed


def _take_match(f: FoundFile, candidates: list[Known]) -> Known | None:
    try:
        mark = fingerprint(f.path, f.size)
    except OSError:
        return None
    for k in candidates:
        if k.fingerprint == mark:
            candidates.remove(k)
            return k
    return None


def run_index(
    store: Store,
    roots: Sequence[str],
    scan: ScanResult,
    load_encoder: Callable[[], object],
    *,
    batch_size: int | None,
    max_pixels: int | None,
    progress: Progress | None = None,
) -> IndexReport:
    """Apply the plan in committed steps; an interrupt keeps everything committed so far."""
    started = time.monotonic()
    plan = plan_changes(store, roots, scan)
    report = _scan_report(scan, plan)
    store.begin()
    for k, f in plan.moves:
        store.move(k.id, f.path, f.size, f.mtime_ns)
    store.remove(plan.removed_ids)
    store.remove_errors(plan.stale_errors)
    for path, reason in plan.new_problems:
        store.record_error(path, *_stamp(path), reason)
    for root in roots:
        store.add_root(root)
    store.commit()
    try:
        if plan.embed:
            _embed_all(store, plan.embed, load_encoder(), report, batch_size, max_pixels, progress)
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


def _embed_all(store, files, encoder, report, batch_size, max_pixels, progress) -> None:
    total, done = len(files), 0
    if progress:
        progress(0, total)
    interval = commit_seconds()
    last_commit = time.monotonic()
    batches = embed_files(files, encoder, batch_size=batch_size, max_pixels=max_pixels)
    store.begin()
    # closing(): on Ctrl-C the decode workers stop at once, not when the process exits.
    # The finally commits what was embedded; Store.commit is safe wherever Ctrl-C lands.
    try:
        with contextlib.closing(batches):
            for outcomes in batches:
                for outcome in outcomes:
                    _record(store, outcome, report)
                done += len(outcomes)
                if progress:
                    progress(done, total)
                if time.monotonic() - last_commit >= interval:
                    store.commit()
                    store.begin()
                    last_commit = time.monotonic()
    finally:
        store.commit()


def commit_seconds() -> float:
    """The commit interval; tests shorten it so that kills land between commits."""
    try:
        return float(os.environ.get("CLIPSEARCH_COMMIT_SECONDS", COMMIT_SECONDS))
    except ValueError:
        return COMMIT_SECONDS


def _record(store: Store, outcome: Embedded | Failed, report: IndexReport) -> None:
    if isinstance(outcome, Embedded):
        store.add(outcome.path, outcome.size, outcome.mtime_ns, outcome.fingerprint, outcome.vector)
        report.indexed += 1
        return
    report.new_problems.append((outcome.path, outcome.reason))
    if outcome.reason != DISAPPEARED:  # a vanished file needs no note: the next scan drops it
        store.drop_file(outcome.path)
        store.record_error(outcome.path, outcome.size, outcome.mtime_ns, outcome.reason)
