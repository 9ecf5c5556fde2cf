"""Reading query terms the way rclip users write them, and adding concepts up.

`2:cat`, `--add sunset`, `--sub 0.5:./blurry.jpg`: each term is text or an image file, with a
weight; the query vector is the weighted sum of the terms' unit vectors, normalised.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ClipsearchError
from ..photos.formats import is_image

_WEIGHTED = re.compile(r"^([^\s:/\\]+):(?!//)(\S.*)$", re.DOTALL)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_PATH_PREFIXES = ("/", "./", "../", "~")


@dataclass(frozen=True)
class Term:
    weight: float
    text: str | None = None
    image: str | None = None

    def describe(self) -> str:
        return self.text if self.text is not None else f"image {self.image}"


def parse_terms(terms: Sequence[str], add: Sequence[str] = (), sub: Sequence[str] = ()) -> list:
    """All terms with their signed weights; raises ClipsearchError on anything malformed."""
    parsed = [parse_term(t) for t in [*terms, *add]]
    parsed += [_negate(parse_term(t)) for t in sub]
    if not parsed:
        raise ClipsearchError('empty query: give some text or an image path, e.g. "dog on a beach"')
    return parsed


def parse_term(raw: str) -> Term:
    weight, body = _split_weight(raw)
    if not body.strip():
        raise ClipsearchError(f"empty query term {raw!r}: give some text or an image path")
    if not body.startswith(_PATH_PREFIXES):
        return Term(weight, text=body)
    path = os.path.abspath(os.path.expanduser(body))
    if os.path.isfile(path):
        return Term(weight, image=path)
    if os.path.isdir(path) or is_image(path) or not body.startswith("/"):
        raise ClipsearchError(f"no such image file: {body}")
    return Term(weight, text=body)


def _split_weight(raw: str) -> tuple[float, str]:
    match = _WEIGHTED.match(raw)
    if not match:
        return 1.0, raw
    prefix, body = match.groups()
    if not _NUMBER.match(prefix):
        raise ClipsearchError(
            f"bad weight {prefix!r} in {raw!r}: write weights as numbers, like 2:cat or "
            "0.5:./cat.jpg"
        )
    return float(prefix), body


def _negate(term: Term) -> Term:
    return Term(-term.weight, term.text, term.image)


def combine(
    terms: Sequence[Term],
    embed: Callable[[Term], np.ndarray],
    vectors: Sequence[tuple[float, np.ndarray]] = (),
) -> np.ndarray:
    """Weighted sum of unit vectors (the terms' and any given as (weight, vector) pairs, such
    as a photo embedded in memory), normalised back to the unit sphere."""
    total = sum(t.weight * embed(t) for t in terms) + sum(w * v for w, v in vectors)
    norm = float(np.linalg.norm(total))
    if norm < 1e-9:
        raise ClipsearchError("the query terms cancel each other out: change the weights")
    return (total / norm).astype(np.float32)
