"""Plain result records: what the Python API returns and every output mode prints."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hit:
    """One search result: its 1-based rank, cosine score and absolute path."""

    rank: int
    score: float
    path: str


@dataclass
class DupeGroup:
    """Photos that look alike: `pairs` are (i, j, cosine) indices into `paths`, i < j."""

    paths: list[str]
    pairs: list[tuple[int, int, float]]
    best: float


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
