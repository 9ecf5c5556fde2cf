"""Printing results the way shells expect: a table for people, bare paths for pipes.

Paths go to pipes byte-for-byte (so `xargs` gets the real file name); anything shown on a
terminal has control characters made visible, so a hostile file name cannot drive it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import BinaryIO

from ..errors import safe_for_terminal
from ..results import Hit

__all__ = ["safe_for_terminal"]  # kept here too, where the other printing lives


def console(stderr: bool = False):
    """A Rich console that honours NO_COLOR fully: no colour, and no bold or dim either
    (Rich's own NO_COLOR support drops colours only)."""
    from rich.console import Console

    plain = bool(os.environ.get("NO_COLOR"))
    return Console(stderr=stderr, color_system=None if plain else "auto")


def pick_mode(json_out: bool, jsonl: bool, null: bool, is_tty: bool) -> str:
    if json_out:
        return "json"
    if jsonl:
        return "jsonl"
    if null:
        return "null"
    return "table" if is_tty else "plain"


def hit_record(hit: Hit) -> dict:
    """A result as JSON: where, how well (null in a listing without terms), when, with what."""
    return {
        "path": hit.path,
        "score": None if hit.score is None else round(hit.score, 6),
        "rank": hit.rank,
        "taken": hit.taken,
        "lat": hit.lat,
        "lon": hit.lon,
        "place": hit.place,
        "camera": hit.camera,
        "available": hit.available,
    }


def score_text(hit: Hit) -> str:
    return "" if hit.score is None else f"{hit.score:.3f}"


def date_text(hit: Hit) -> str:
    """'2023-07-14 18:03' (the camera's clock), or '' when the photo has no date."""
    return hit.taken[:16].replace("T", " ") if hit.taken else ""


def write_hits(hits: Sequence[Hit], mode: str, out: BinaryIO | None = None) -> None:
    out = out or sys.stdout.buffer
    if mode == "table":
        _table(hits)
    elif mode == "json":
        write_json([hit_record(h) for h in hits], out)
    elif mode == "jsonl":
        write_json_lines([hit_record(h) for h in hits], out)
    else:
        end = b"\0" if mode == "null" else b"\n"
        out.write(b"".join(os.fsencode(h.path) + end for h in hits))
    out.flush()


def _table(hits: Sequence[Hit]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold")
    table.add_column("#", justify="right", style="dim")
    table.add_column("score", justify="right")
    table.add_column("date", no_wrap=True)
    table.add_column("path", overflow="fold")
    for hit in hits:
        path = Text(safe_for_terminal(hit.path))
        style = None if hit.available else "dim"  # its root is offline
        table.add_row(str(hit.rank), score_text(hit), date_text(hit), path, style=style)
    console().print(table)


def group_record(group) -> dict:
    """A duplicate group as JSON: its paths, the scores of the pairs inside it, each photo's
    resolution, size, format and date, and the suggested keeper (results.KEEPER_RULE)."""
    keeper = group.paths[group.keeper] if group.keeper is not None else None
    return {
        "best": round(group.best, 6),
        "paths": group.paths,
        "keeper": keeper,
        "photos": [{**m, "keeper": m["path"] == keeper} for m in group.members],
        "pairs": [
            {"a": group.paths[i], "b": group.paths[j], "score": round(score, 6)}
            for i, j, score in group.pairs
        ],
    }


def write_others(groups: Sequence, mode: str, out: BinaryIO | None = None) -> None:
    """Every path but each group's keeper (`dupes --others -0 | xargs -0 trash`): plain,
    NUL-separated or a JSON array."""
    out = out or sys.stdout.buffer
    others = [p for g in groups for k, p in enumerate(g.paths) if k != g.keeper]
    if mode in ("json", "jsonl"):
        write_json(others, out)
        return
    end = b"\0" if mode == "null" else b"\n"
    out.write(b"".join(os.fsencode(p) + end for p in others))
    out.flush()


def write_groups(groups: Sequence, mode: str, out: BinaryIO | None = None) -> None:
    """Groups as JSON, a table per group, or paths with a blank line (NUL) between groups."""
    out = out or sys.stdout.buffer
    if mode == "table":
        _group_tables(groups)
    elif mode in ("json", "jsonl"):
        records = [group_record(g) for g in groups]
        if mode == "json":
            write_json(records, out)
        else:
            write_json_lines(records, out)
    else:
        end = b"\0" if mode == "null" else b"\n"
        blocks = [b"".join(os.fsencode(p) + end for p in g.paths) for g in groups]
        out.write(end.join(blocks))
    out.flush()


def _group_tables(groups: Sequence) -> None:
    from rich.text import Text

    from ..results import KEEPER_RULE

    out = console()
    if groups:
        out.print(Text(f"({KEEPER_RULE})", style="dim"))
    for number, group in enumerate(groups, 1):
        out.print(Text(f"group {number} · best {group.best:.3f}", style="bold"))
        for k, path in enumerate(group.paths):
            mark = "keep " if k == group.keeper else "     "
            facts = _member_facts(group.members[k]) if k < len(group.members) else ""
            out.print(Text(f"  {mark}{facts}  {safe_for_terminal(path)}"))


def _member_facts(member: dict) -> str:
    """'4032×3024  3.1 MiB  JPEG  2023-07-14' (blanks where unknown)."""
    width, height = member.get("width"), member.get("height")
    size = member.get("bytes")
    return "  ".join(
        [
            f"{width}×{height}" if width and height else "?×?",
            f"{size / 2**20:.1f} MiB" if size is not None else "? MiB",
            member.get("format") or "?",
            (member.get("taken") or "")[:10] or "no date",
        ]
    )


def write_json_lines(records: Sequence[dict], out: BinaryIO | None = None) -> None:
    out = out or sys.stdout.buffer
    out.write(b"".join(json.dumps(r).encode() + b"\n" for r in records))
    out.flush()


def write_json(value: object, out: BinaryIO | None = None) -> None:
    out = out or sys.stdout.buffer
    out.write(json.dumps(value, indent=2).encode() + b"\n")
    out.flush()
