"""What `index` shows while it works, and the rate it reports (issue 17)."""

from __future__ import annotations

from pathlib import Path

from conftest import TINY, run_in_terminal, save_photo

from clipsearch.output.summary import human_summary
from clipsearch.results import IndexReport


def test_the_rate_counts_embedding_time_not_model_loading() -> None:
    report = IndexReport(indexed=1, seconds=10.0, embed_seconds=0.5)
    assert "(2.0 img/s)" in human_summary(report)


def test_a_terminal_sees_each_stage_skips_as_they_happen_and_the_bar(
    tmp_path: Path, home: Path, tiny_checkpoint: Path
) -> None:
    photos = tmp_path / "photos"
    for seed in range(3):
        save_photo(photos / f"p{seed}.jpg", seed=seed)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    # In torch, as a model's first run on a machine loads it: the tiny model's onnxruntime
    # export (once the suite's user cache holds it) loads faster than the bar redraws.
    args = ("index", str(photos), "--model", TINY, "--pretrained", str(tiny_checkpoint))
    code, shown = run_in_terminal(*args, "--backend", "torch")
    text = shown.decode(errors="replace")
    assert code == 0, text
    assert "loading the model to embed 4 photos" in text
    assert "img/s, skipped" in text and "0:00:0" in text  # rate, skipped count, elapsed
    assert text.count("skipped " + str(photos / "broken.jpg")) == 1  # once, not again after
    assert "indexed 3" in text
