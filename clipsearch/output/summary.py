"""Human-readable lines for stderr: the index summary, `status` and `status --errors`."""

from __future__ import annotations

import sys

from ..indexing.settings import describe
from ..results import IndexReport
from .text import console, safe_for_terminal


def human_summary(report: IndexReport) -> str:
    spent = report.embed_seconds or report.seconds  # img/s: embedding, not model loading
    rate = report.indexed / spent if spent > 0 else 0.0
    parts = [
        f"indexed {report.indexed}",
        f"unchanged {report.unchanged}",
        f"moved {report.moved}",
        f"removed {report.removed}",
        *([f"reused {report.reused}"] if report.reused else []),
        f"skipped {report.skipped}",
    ]
    line = ", ".join(parts) + f" in {report.seconds:.1f} s"
    if report.indexed:
        line += f" ({rate:.1f} img/s)"
    notes = [line]
    notes += [f"settings replaced: {note}" for note in report.notes]
    for gone in report.offline:
        notes.append(offline_note(gone))
    if report.ray:
        notes.append(_ray_line(report.ray))
    for extra, count in sorted(report.missing_extras.items()):
        notes.append(f"{count} {_kind(extra)} files skipped: install clipsearch[{extra}]")
    if report.known_problems:
        notes.append(
            f"{report.known_problems} files that failed before were not retried "
            "(see clipsearch status --errors)"
        )
    if report.metadata_read:
        notes.append(
            f"read the capture time, place and camera of {report.metadata_read} photos "
            "indexed before (nothing re-embedded)"
        )
    if report.raw_paired:
        notes.append(f"{report.raw_paired} RAW files left out beside their JPEG/HEIC (--raw-too)")
    if report.videos:
        notes.append(f"{report.videos} videos ignored (video search is not supported yet)")
    if report.interrupted:
        notes.append("interrupted: what was embedded so far is saved; run again to continue")
    return "\n".join(notes)


def offline_note(gone: dict) -> str:
    """One line per offline root: what is kept, and how to remove it on purpose."""
    return (
        f"offline: {safe_for_terminal(gone['root'])} is {gone['reason']}; its "
        f"{gone['photos']} photos are kept (mount it and index again, `clipsearch move` it, "
        "or `index --remove-offline` to drop them)"
    )


def _ray_line(ray: dict) -> str:
    rates = [w["img_per_s"] for w in ray["per_worker"] if w["img_per_s"]]
    each = f", {min(rates):.1f}-{max(rates):.1f} img/s each" if rates else ""
    gpu = " (a GPU each)" if ray["gpus_per_worker"] else ""
    used = ray["workers_used"]
    workers = f"{used} worker{'s' if used != 1 else ''}"
    return f"embedded on Ray ({ray['address']}): {workers}{gpu}{each}"


def _kind(extra: str) -> str:
    return {"heif": "HEIC/HEIF/AVIF", "raw": "camera RAW"}.get(extra, extra)


def print_status(status: dict) -> None:
    from rich.table import Table
    from rich.text import Text

    rows = [(key, str(status[key])) for key in _STATUS_KEYS]
    rows += [
        ("indexed by", str(status.get("index_backend") or "-")),
        ("dates", _date_range(status)),
        ("dated", f"{status['dated']} of {status['images']} have a capture time"),
        ("located", f"{status['located']} of {status['images']} have a location"),
    ]
    if status.get("without_metadata"):
        rows.append(("metadata", f"{status['without_metadata']} not read yet: run index"))
    rows += [("size", _bytes(status["size_bytes"])), ("updated", str(status["updated"] or "never"))]
    if status.get("retained"):
        rows.append(("retained", f"{status['retained']} vectors of removed photos (purge)"))
    offline = status.get("offline", {})
    for i, root in enumerate(status["roots"] or ["(none)"]):
        note = f"  (offline: {offline[root]}; photos kept)" if root in offline else ""
        if status.get("settings", {}).get(root):
            note += f"  [{describe(status['settings'][root])}]"
        rows.append(("roots" if i == 0 else "", root + note))
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        # Text, never a str: rich would read `[old] photos` or `a[/b]` in a path as markup.
        table.add_row(key, Text(safe_for_terminal(value)))
    console().print(table)


_STATUS_KEYS = ("library", "images", "model", "pretrained", "dim", "index_type", "errors")


def _date_range(status: dict) -> str:
    if status.get("earliest") is None:
        return "(none recorded)"
    return f"{status['earliest'][:10]} to {status['latest'][:10]}"


def print_errors(errors: list[dict]) -> None:
    for e in errors:
        # Reasons name files too (a broken symlink's target, the folder a loop leads to).
        sys.stdout.write(f"{safe_for_terminal(e['path'])}: {safe_for_terminal(e['reason'])}\n")


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GiB"
