"""`clipsearch models`: the recommended models and what each is good for."""

from __future__ import annotations

import sys

from .options import JsonOpt
from .output import print_json


def models(json_out: JsonOpt = False) -> None:
    """Recommended models: languages, vector size, download, speed here, published recall.
    Use one with `clipsearch index DIR --model NAME --pretrained TAG`.

    Example: clipsearch models --json
    """
    from ..model.catalog import entries

    rows = [e.as_dict() for e in entries()]
    if json_out:
        print_json(rows)
        return
    header = ("model", "tag", "languages", "dim", "download", "img/s here", "recall", "good for")
    table = [header] + [
        (
            r["name"],
            r["pretrained"],
            r["languages"],
            str(r["dim"]),
            f"{r['download_mb']} MB",
            "—" if r["img_s"] is None else f"{r['img_s']:g}",
            r["recall"] or "—",
            r["good_for"],
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        sys.stdout.write("  ".join(cells + [row[-1]]).rstrip() + "\n")
    sources = sorted({r["recall_source"] for r in rows if r["recall_source"]})
    sys.stdout.write("recall: " + "; ".join(sources) + "\n")
