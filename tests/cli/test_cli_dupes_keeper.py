"""`dupes` gives what a person needs to pick a copy, and the others for a trash tool
(issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import TINY, run_cli, save_photo


def test_dupes_show_each_copy_and_suggest_a_keeper(
    tmp_path: Path, home: Path, tiny_checkpoint: Path
) -> None:
    photos = tmp_path / "photos"
    jpeg = save_photo(photos / "a" / "b" / "beach.jpg", seed=1)
    png = save_photo(photos / "beach.png", seed=1)  # the same pixels, a bigger file
    save_photo(photos / "other.jpg", seed=2)
    model = ("--model", TINY, "--pretrained", str(tiny_checkpoint))
    assert run_cli("index", str(photos), *model).returncode == 0

    done = run_cli("dupes", "--threshold", "0.99", "--json")
    assert done.returncode == 0, done.stderr
    (group,) = json.loads(done.stdout)
    assert group["keeper"] == str(png)
    by_path = {p["path"]: p for p in group["photos"]}
    assert by_path[str(png)] == {
        "path": str(png),
        "width": 160,
        "height": 120,
        "bytes": png.stat().st_size,
        "format": "PNG",
        "taken": None,
        "keeper": True,
    }
    assert by_path[str(jpeg)]["format"] == "JPG" and not by_path[str(jpeg)]["keeper"]

    others = run_cli("dupes", "--threshold", "0.99", "--others", "-0")
    assert others.returncode == 0 and others.stdout == str(jpeg).encode() + b"\0"
