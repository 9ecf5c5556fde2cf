"""Near-duplicate grouping over image embeddings.

Grouping trade-off: plain single linkage (connected components of "cosine >= threshold")
never separates a matching pair, but a burst of similar shots, or a dim threshold, chains
photos A~B~C~...~Z into one group whose ends look nothing alike. Pure centre ("star")
clustering bounds every group but can strand an image whose only match was claimed by
another centre. We combine them: greedy centres claim their neighbours, and an image left
alone joins the group of its best match. So every image with a match lands in some group
(though two matching images may end up in neighbouring groups), and every member is at most
two matches away from its group's centre: no long chains.
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

from ..results import DupeGroup

QUERY_CHUNK = 4096


def find_groups(vectors: np.ndarray, paths: Sequence[str], threshold: float) -> list[DupeGroup]:
    """Group images whose L2-normalised vectors have cosine >= threshold, likeliest first."""
    _check_inputs(vectors, paths)
    edges = _matching_pairs(vectors, threshold)
    members = _cluster(edges)
    groups = [
        _make_group(nodes, pairs, vectors, paths)
        for nodes, pairs in zip(members, _edges_by_group(members, edges), strict=True)
    ]
    groups.sort(key=lambda g: (-g.best, -len(g.paths), g.paths[0]))
    return groups


def _check_inputs(vectors: np.ndarray, paths: Sequence[str]) -> None:
    """Fail on programming errors early, before FAISS gives a less helpful message."""
    if vectors.ndim != 2 or vectors.dtype != np.float32:
        raise ValueError(f"vectors must be 2-D float32, got {vectors.dtype} {vectors.shape}")
    if len(paths) != vectors.shape[0]:
        raise ValueError(f"{len(paths)} paths for {vectors.shape[0]} vectors")


def _matching_pairs(vectors: np.ndarray, threshold: float) -> dict[tuple[int, int], float]:
    """Range-search queries in chunks so memory stays bounded; keep each pair once (i < j)."""
    edges: dict[tuple[int, int], float] = {}
    if len(vectors) == 0:
        return edges
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors))
    # FAISS keeps scores strictly above the radius; nudge it so `threshold` itself matches.
    radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
    for start in range(0, len(vectors), QUERY_CHUNK):
        lims, scores, ids = index.range_search(vectors[start : start + QUERY_CHUNK], radius)
        queries = np.repeat(np.arange(start, start + len(lims) - 1), np.diff(lims).astype(np.int64))
        keep = queries < ids
        for i, j, score in zip(queries[keep], ids[keep], scores[keep], strict=True):
            edges[(int(i), int(j))] = float(score)
    return edges


def _cluster(edges: dict[tuple[int, int], float]) -> list[list[int]]:
    """Greedy centres by (matches, total score), then strays join their best match's group.

    Each returned group lists its centre first.
    """
    neighbours: dict[int, dict[int, float]] = {}
    for (i, j), score in edges.items():
        neighbours.setdefault(i, {})[j] = score
        neighbours.setdefault(j, {})[i] = score
    order = sorted(neighbours, key=lambda k: (-len(neighbours[k]), -sum(neighbours[k].values()), k))
    owner: dict[int, int] = {}
    for centre in order:
        if centre not in owner:
            owner[centre] = centre
            for other in neighbours[centre]:
                owner.setdefault(other, centre)
    for node in order:
        # A centre that claimed nobody: all its matches belong to other (real) centres.
        if owner[node] == node and all(owner[o] != node for o in neighbours[node]):
            best = max(neighbours[node], key=neighbours[node].__getitem__)
            owner[node] = owner[best]
    groups: dict[int, list[int]] = {}
    for node in order:
        groups.setdefault(owner[node], [owner[node]])
        if node != owner[node]:
            groups[owner[node]].append(node)
    return list(groups.values())


def _edges_by_group(
    members: list[list[int]], edges: dict[tuple[int, int], float]
) -> list[list[tuple[int, int, float]]]:
    """Hand each group the pairs inside it in one pass over all pairs."""
    group_of = {node: g for g, nodes in enumerate(members) for node in nodes}
    inside: list[list[tuple[int, int, float]]] = [[] for _ in members]
    for (i, j), score in edges.items():
        if group_of[i] == group_of[j]:
            inside[group_of[i]].append((i, j, score))
    return inside


def _make_group(
    nodes: list[int],
    pairs: list[tuple[int, int, float]],
    vectors: np.ndarray,
    paths: Sequence[str],
) -> DupeGroup:
    """Order members by likeness to the centre and re-index the pairs to the group's order."""
    centre = nodes[0]
    others = sorted(nodes[1:], key=lambda n: (-float(vectors[n] @ vectors[centre]), paths[n]))
    position = {node: k for k, node in enumerate([centre, *others])}
    local = sorted(
        (min(position[i], position[j]), max(position[i], position[j]), score)
        for i, j, score in pairs
    )
    return DupeGroup(
        paths=[paths[node] for node in position],
        pairs=local,
        best=max(score for _, _, score in local),
    )
