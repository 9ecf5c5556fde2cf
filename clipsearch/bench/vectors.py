"""Query benchmark on synthetic CLIP-like embeddings, to size the vector index by measurement.

Uniform noise on the sphere would make every neighbour equally far and every index look bad (or
trivially good), so the data is a mixture: uneven clusters around a shared mean direction (CLIP
embeddings sit in a narrow cone), with per-cluster spread mostly in a low-rank subspace. With
the defaults a query's best match has cosine ~0.88, its 10th ~0.84, a random photo ~0.38.
Neighbours are harder to find with more, smaller clusters (the nearest ones then come from
many clusters): clusters=8192 or 20000 make a useful stress test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass

import faiss
import numpy as np

from ..storage import vectorindex

_CHUNK = 65_536  # rows generated at a time, so 1M vectors never need a second full-size buffer
_RANK_SHARE = 8  # the within-cluster spread mostly lives in dim / 8 dimensions
_ISO_NOISE = 0.15  # small full-rank noise on top, so no two photos coincide


@dataclass(frozen=True)
class _Mixture:
    """The fixed shape of one synthetic library: centres, spreads, cluster sizes, noise basis."""

    centres: np.ndarray  # (clusters, dim), shared direction already added
    spread: np.ndarray  # (clusters,) norm of the within-cluster noise
    weights: np.ndarray  # (clusters,) probability of each cluster
    basis: np.ndarray  # (rank, dim) scaled rows of the low-rank noise


def _normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in place, as the library stores them."""
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _mixture(dim: int, clusters: int, seed: int) -> _Mixture:
    """Draw the mixture; the same seed gives the same library and a compatible query set."""
    rng = np.random.default_rng(seed)
    shared = _normalise(rng.standard_normal((1, dim)))
    centres = _normalise(rng.standard_normal((clusters, dim))) + shared
    spread = rng.uniform(0.5, 1.1, clusters)
    weights = rng.lognormal(0.0, 1.0, clusters)
    rank = max(1, dim // _RANK_SHARE)
    q, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
    decay = (np.arange(rank) + 1.0) ** -0.5
    decay /= np.linalg.norm(decay)
    return _Mixture(
        centres=centres.astype(np.float32),
        spread=spread.astype(np.float32),
        weights=weights / weights.sum(),
        basis=(q.T * decay[:, None]).astype(np.float32),
    )


def _sample(mix: _Mixture, n: int, rng: np.random.Generator) -> np.ndarray:
    """n unit vectors from the mixture."""
    dim = mix.centres.shape[1]
    which = rng.choice(len(mix.weights), size=n, p=mix.weights)
    low_rank = rng.standard_normal((n, len(mix.basis)), dtype=np.float32) @ mix.basis
    iso = rng.standard_normal((n, dim), dtype=np.float32) * np.float32(_ISO_NOISE / dim**0.5)
    x = mix.centres[which] + mix.spread[which, None] * low_rank + iso
    return _normalise(x)


def synthetic_vectors(
    n: int, dim: int = 512, clusters: int = 2048, seed: int = 0, stream: int = 0
) -> np.ndarray:
    """n L2-normalised float32 vectors; `stream` 1+ draws fresh queries from the same mixture."""
    mix = _mixture(dim, clusters, seed)
    out = np.empty((n, dim), dtype=np.float32)
    for chunk, start in enumerate(range(0, n, _CHUNK)):
        stop = min(n, start + _CHUNK)
        out[start:stop] = _sample(mix, stop - start, np.random.default_rng([seed, stream, chunk]))
    return out


def _per_query_ms(index: faiss.Index, queries: np.ndarray, k: int) -> float:
    """Median latency of one-query searches, the way a CLI user asks."""
    times = []
    for q in queries:
        start = time.perf_counter()
        vectorindex.search(index, q[None, :], k)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true top-k ids that the index also returned, over all queries."""
    hits = sum(len(np.intersect1d(f[f >= 0], t[t >= 0])) for f, t in zip(found, truth, strict=True))
    return hits / max(1, int((truth >= 0).sum()))


def _timed_build(vectors: np.ndarray, ids: np.ndarray, kind: str) -> tuple[faiss.Index, float]:
    start = time.perf_counter()
    index = vectorindex.build(vectors, ids, kind)
    return index, time.perf_counter() - start


def run(
    n: int,
    dim: int = 512,
    queries: int = 200,
    k: int = 10,
    seed: int = 0,
    kind: str | None = None,
) -> dict:
    """Time one-query search on n synthetic vectors: exact, and the auto-chosen (or given) kind.

    build_s covers training and adding; recall is against exact search of the same queries.
    """
    vectors = synthetic_vectors(n, dim, seed=seed)
    ids = np.arange(n, dtype=np.int64)
    qs = synthetic_vectors(queries, dim, seed=seed, stream=1)
    flat, build_s = _timed_build(vectors, ids, vectorindex.FLAT)
    _, truth = vectorindex.search(flat, qs, k)
    exact_ms = ann_ms = _per_query_ms(flat, qs, k)
    index = flat
    chosen = kind or vectorindex.choose_kind(n)
    if chosen != vectorindex.FLAT:
        del flat, index  # at 1M the flat copy is 2 GB: free it before building the next
        index, build_s = _timed_build(vectors, ids, chosen)
        ann_ms = _per_query_ms(index, qs, k)
    _, found = vectorindex.search(index, qs, k)
    return {
        "vectors": n,
        "dim": dim,
        "queries": queries,
        "index_type": vectorindex.kind_of(index),
        "exact_ms": round(exact_ms, 3),
        "ann_ms": round(ann_ms, 3),
        "recall_at_10": round(recall_at_k(found[:, :10], truth[:, :10]), 4),
        "index_ram_mb": round(vectorindex.memory_bytes(index) / 2**20, 1),
        "build_s": round(build_s, 2),
    }


def main(argv: list[str] | None = None) -> None:
    """python -m clipsearch.bench.vectors N [N ...]: one JSON line per library size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="+", type=int)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--kind", help="force an index kind instead of the automatic choice")
    args = parser.parse_args(argv)
    for n in args.sizes:
        print(json.dumps(run(n, queries=args.queries, kind=args.kind)), flush=True)


if __name__ == "__main__":
    main()
