"""Retrieval figures from two sets of unit vectors, as papers report them.

Text→image: for each caption, the rank of its own image among all images.  Image→text: for
each image, the rank of the best-placed of its captions among all captions.  Recall@k is the
share of queries whose rank is at most k; with n images, chance gives recall@k ≈ k/n and a
median rank ≈ n/2.  Ties count against the answer: a model that gives every image the same
vector scores chance, not perfect recall.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KS = (1, 5, 10)


def retrieval_metrics(
    text_vectors: np.ndarray, image_vectors: np.ndarray, image_of: Sequence[int]
) -> dict:
    """Recall@1/5/10 and median rank both ways; ranks count from 1."""
    image_of = np.asarray(image_of, dtype=np.int64)
    scores = text_vectors @ image_vectors.T  # (captions, images)
    own = scores[np.arange(len(image_of)), image_of]
    text_ranks = (scores >= own[:, None]).sum(axis=1)  # ties count against the answer
    image_ranks = np.array(
        [_best_caption_rank(scores[:, i], image_of == i) for i in range(len(image_vectors))]
    )
    return {
        "images": int(len(image_vectors)),
        "captions": int(len(text_vectors)),
        "text_to_image": _summary(text_ranks),
        "image_to_text": _summary(image_ranks),
    }


def _best_caption_rank(column: np.ndarray, mine: np.ndarray) -> int:
    """Rank of this image's best caption when all captions are sorted by score for it."""
    if not mine.any():
        return len(column)  # an image without captions cannot be found
    best = column[mine].max()
    return int((column >= best).sum())  # ties count against the answer


def _summary(ranks: np.ndarray) -> dict:
    out: dict = {f"recall@{k}": round(float((ranks <= k).mean()), 4) for k in KS}
    out["median_rank"] = float(np.median(ranks))
    return out
