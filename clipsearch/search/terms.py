"""Reading query terms the way rclip users write them, and adding concepts up.

`2:cat`, `--add sunset`, `--sub 0.5:./blurry.jpg`: each term is text or an image file, with a
weight; the query vector is the weighted sum of the terms' unit vectors, normalised.

The rules, so that nothing is read as what it is not:
- `W:TERM` is a weight only when W is a number and TERM does not start with a digit:
  "12:30 on a clock" and "16:9 frame" are text, as is "Note: sunset" (no number before it).
- A term naming an existing image file is an image, with or without `./` (`IMG_0042.jpg`
  where it exists), as `similar` takes it; a path-like term (`/`, `./`, `../`, `~`) naming
  no file is an error.  `as_text` (`query --text`) reads every term as text.
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


def parse_terms(
    terms: Sequence[str],
    add: Sequence[str] = (),
    sub: Sequence[str] = (),
    *,
    as_text: bool = False,
) -> list:
    """All terms with their signed weights; raises ClipsearchError on anything malformed."""
    parsed = [parse_term(t, as_text=as_text) for t in [*terms, *add]]
    parsed += [_negate(parse_term(t, as_text=as_text)) for t in sub]
    if not parsed:
        raise ClipsearchError('empty query: give some text or an image path, e.g. "dog on a beach"')
    return parsed


def parse_term(raw: str, *, as_text: bool = False) -> Term:
    weight, body = _split_weight(raw)
    if not body.strip():
        raise ClipsearchError(f"empty query term {raw!r}: give some text or an image path")
    if as_text:
        return Term(weight, text=body)
    if not body.startswith(_PATH_PREFIXES):
        if is_image(body) and os.path.isfile(body):  # IMG_0042.jpg, right here
            return Term(weight, image=os.path.abspath(body))
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
    if not _NUMBER.match(prefix) or body[:1].isdigit():
        return 1.0, raw  # "Note: sunset", "12:30 on a clock": text, not a weight
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
