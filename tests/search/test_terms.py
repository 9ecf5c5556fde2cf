"""How a query term is read: weights only where nothing else is meant, image files as images
(issue 17)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import save_photo

from clipsearch.search.terms import Term, parse_term


@pytest.mark.parametrize(
    "raw", ["12:30 on a clock", "16:9 frame", "Note: sunset", "3:2", "abc:cat", "IMG_0001.jpg"]
)
def test_text_that_only_looks_weighted_is_text(raw: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_term(raw) == Term(1.0, text=raw)


def test_weights_still_work() -> None:
    assert parse_term("2:cat") == Term(2.0, text="cat")
    assert parse_term("-0.5:a dog") == Term(-0.5, text="a dog")


def test_an_existing_image_file_is_an_image_term_unless_text_is_asked(
    tmp_path: Path, monkeypatch
) -> None:
    save_photo(tmp_path / "IMG_0042.jpg", seed=1)
    monkeypatch.chdir(tmp_path)
    image = str(tmp_path / "IMG_0042.jpg")
    assert parse_term("IMG_0042.jpg") == Term(1.0, image=image)
    assert parse_term("2:IMG_0042.jpg") == Term(2.0, image=image)
    assert parse_term("./IMG_0042.jpg") == Term(1.0, image=image)
    assert parse_term("IMG_0042.jpg", as_text=True) == Term(1.0, text="IMG_0042.jpg")
    assert parse_term("./IMG_0042.jpg", as_text=True) == Term(1.0, text="./IMG_0042.jpg")
