"""Plain result records: what the Python API returns and every output mode prints."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hit:
    """One search result: its 1-based rank, cosine score and absolute path, and what the
    photo's metadata says (None when unknown).

    `score` is None in a listing without query terms (filters alone, ordered by date).
    `taken` is ISO 8601 with the UTC offset when the file records one; `place` is the
    nearest town ("Lisbon, PT"); `camera` is make and model ("Apple iPhone 13").
    """

    rank: int
    score: float | None
    path: str
    taken: str | None = None
    lat: float | None = None
    lon: float | None = None
    place: str | None = None
    camera: str | None = None
    available: bool = True  # False while the photo's root is offline (see Library.index)


@dataclass(frozen=True)
class PhotoDetails:
    """What a photo's metadata says, for any view of it (`Library.details`); every field
    None when unknown.  `taken` and `place` are as on Hit; `altitude` in metres."""

    taken: str | None = None
    lat: float | None = None
    lon: float | None = None
    altitude: float | None = None
    place: str | None = None
    camera: str | None = None
    lens: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass
class DupeGroup:
    """Photos that look alike: `pairs` are (i, j, cosine) indices into `paths`, i < j.

    `members` (parallel to `paths`) say what decides which copy to keep: width, height,
    bytes, format, taken; `keeper` is the index of the suggested one (see KEEPER_RULE)."""

    paths: list[str]
    pairs: list[tuple[int, int, float]]
    best: float
    members: list[dict] = field(default_factory=list)
    keeper: int | None = None


KEEPER_RULE = "keep: most pixels, then largest file, then earliest date, then shortest path"


@dataclass
class IndexReport:
    """What one run did; `as_dict` is the `index --json` summary."""

    indexed: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0  # of `seconds`, the time spent embedding (img/s counts this)
    videos: int = 0
    raw_paired: int = 0
    missing_extras: dict[str, int] = field(default_factory=dict)
    new_problems: list[tuple[str, str]] = field(default_factory=list)
    known_problems: int = 0
    metadata_read: int = 0  # files indexed before metadata existed, read now (no re-embedding)
    interrupted: bool = False
    reused: int = 0  # new files whose stored vector was reused (nothing embedded)
    # Roots left alone because they are offline: {"root", "reason", "photos"} each.
    offline: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # remembered settings this run replaced
    ray: dict | None = None  # `index --ray`: workers used and their img/s (RayRun.as_dict)
    backend: dict | None = None  # what embedded the photos (backend, precision, reason)

    def as_dict(self) -> dict:
        return {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "moved": self.moved,
            "removed": self.removed,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "embed_seconds": round(self.embed_seconds, 3),
            "videos": self.videos,
            "raw_paired": self.raw_paired,
            "missing_extras": self.missing_extras,
            "errors": [{"path": p, "reason": r} for p, r in self.new_problems],
            "interrupted": self.interrupted,
            "metadata_read": self.metadata_read,
            "reused": self.reused,
            "offline": self.offline,
            **({"ray": self.ray} if self.ray is not None else {}),
            "backend": self.backend,
        }
