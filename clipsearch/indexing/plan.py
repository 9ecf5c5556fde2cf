"""Compare a scan with the library: per file unchanged, moved, gone, or to embed.

A pure decision over what the scan found and what the store knows: nothing is written here,
and no file is opened except to fingerprint a plausible move.
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..storage.db import Known, Store
from .scan import FoundFile, ScanResult, fingerprint


@dataclass
class Plan:
    embed: list[FoundFile]
    moves: list[tuple[Known, FoundFile]]
    removed_ids: list[int]
    unchanged: int
    known_problems: int
    new_problems: list[tuple[str, str]] = field(default_factory=list)
    stale_errors: list[str] = field(default_factory=list)
    # New files whose vector is already stored: (file, fingerprint, vector bytes).
    reuse: list[tuple[FoundFile, str, bytes]] = field(default_factory=list)


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
    reuse, embed = _match_stored(store, embed, known)
    return Plan(embed, moves, removed, unchanged, known_problems, new, stale, reuse)


def _match_stored(
    store: Store, fresh: list[FoundFile], known: dict[str, Known]
) -> tuple[list[tuple[FoundFile, str, bytes]], list[FoundFile]]:
    """Split new files into those whose content already has a stored vector (a file
    removed earlier and back again, a copy of a photo under an offline root) and the rest.
    A file changed in place is embedded again, as for moves: an edit may leave the head and
    tail that the fingerprint reads untouched.  Only files whose size matches a stored one
    are fingerprinted."""
    changed = [f for f in fresh if f.path in known]
    fresh = [f for f in fresh if f.path not in known]
    if not fresh:
        return [], changed
    stored = store.reusable(f.size for f in fresh)
    if not stored:
        return [], fresh + changed
    sizes = {size for size, _ in stored}
    dim_bytes = 4 * (store.dim() or 0)
    reuse, embed = [], changed
    for f in fresh:
        vector = None
        if f.size in sizes:
            with contextlib.suppress(OSError):
                mark = fingerprint(f.path, f.size)
                vector = stored.get((f.size, mark))
        if vector is not None and len(vector) == dim_bytes:
            reuse.append((f, mark, vector))
        else:
            embed.append(f)
    return reuse, embed


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
