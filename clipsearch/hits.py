"""Plain result records shared by search, rendering and the gallery."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hit:
    """One search result: its 1-based rank, cosine score and absolute path."""

    rank: int
    score: float
    path: str
