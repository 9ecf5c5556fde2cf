"""FAISS index over the library's photo vectors: the fast path for search.

SQLite keeps every vector; this index is a rebuildable cache of them, keyed by the photo's int64
file id. Small libraries use exact (flat) search. Past a measured crossover, one-query flat
search gets slower than a user will wait, so the index switches to IVF with 8-bit scalar
quantisation (a quarter of the flat RAM, recall@10 ~0.98). IVF keeps the ids itself, so photos
can be removed in place, which HNSW cannot do.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import faiss
import numpy as np

from ..fsutil import replace_atomically

FLAT = "flat"
CROSSOVER = 100_000  # vectors: exact one-query search took ~8 ms at 100k and ~19 ms at 150k
CODEC = "SQ8"
LISTS_PER_SQRT_N = 2  # nlist = 2 * sqrt(n): half the build time of 4 * sqrt(n) for the same
# recall at the same query time (finer lists need fewer candidates but cost more per list)
TRAIN_PER_LIST = 40  # k-means sample per list: FAISS's minimum for stable centroids, bounded time
TRAIN_SEED = 0
CANDIDATES = 50_000  # vectors scanned per query (~5 ms at 1M): recall@10 ~0.985 from 100k to 1M
# on the default benchmark mixture, with margin for data whose neighbours spread over more lists
SERIAL_QUERIES = 20  # searches of fewer queries run on one thread
SERIAL_ROWS = 20_000  # builds and adds of fewer vectors run on one thread
GROWTH = 2.0  # rebuild once the library is this factor larger (or smaller) than sized for

_MAPPED: weakref.WeakSet[faiss.Index] = weakref.WeakSet()  # loaded zero-copy: read-only
_CODECS = {faiss.ScalarQuantizer.QT_8bit: "SQ8", faiss.ScalarQuantizer.QT_fp16: "SQfp16"}


def choose_kind(n: int) -> str:
    """The index kind for a library of n vectors: flat below the crossover, else sized IVF."""
    if n < CROSSOVER:
        return FLAT
    return f"IVF{_nlist_for(n)},{CODEC}"


def _nlist_for(n: int) -> int:
    """Lists for n vectors, rounded to 64 so that the sizing survives a save and load."""
    return max(64, round(LISTS_PER_SQRT_N * math.sqrt(n) / 64) * 64)


def _sized_for(nlist: int) -> int:
    """The library size an IVF with nlist lists was built for (inverse of _nlist_for)."""
    return round((nlist / LISTS_PER_SQRT_N) ** 2)


def _nprobe_for(nlist: int, n: int) -> int:
    """Lists to visit per query so that about CANDIDATES vectors are compared.

    Recall tracks how many vectors are scanned rather than the share of lists probed.
    """
    return min(nlist, max(1, math.ceil(CANDIDATES * nlist / max(1, n))))


def _ivf(index: faiss.Index) -> faiss.IndexIVF | None:
    """The IVF inside the index, or None for flat."""
    try:
        return faiss.downcast_index(faiss.extract_index_ivf(index))
    except RuntimeError:
        return None


def _matrix(vectors: np.ndarray) -> np.ndarray:
    """Vectors as FAISS wants them: 2-D, float32, C-contiguous (one query may come as 1-D)."""
    return np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)


def _id_array(ids: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(ids, dtype=np.int64).ravel()


def build(vectors: np.ndarray, ids: np.ndarray, kind: str | None = None) -> faiss.Index:
    """A searchable index over vectors keyed by ids; kind defaults to choose_kind(len(vectors))."""
    vectors, ids = _matrix(vectors), _id_array(ids)
    kind = kind or choose_kind(len(vectors))
    dim = vectors.shape[1]
    with _threads_for(len(vectors), SERIAL_ROWS):
        if kind == FLAT:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        else:
            index = _trained_ivf(vectors, kind)
        index.add_with_ids(vectors, ids)
    return index


def _trained_ivf(vectors: np.ndarray, kind: str) -> faiss.Index:
    """An empty IVF trained on a bounded, seeded sample, with nprobe set for the recall target."""
    index = faiss.index_factory(vectors.shape[1], kind, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.downcast_index(index)  # a view: index keeps ownership of the C++ object
    if not isinstance(ivf, faiss.IndexIVF):  # only IVF keeps ids and can remove in place
        raise ValueError(f"unsupported index kind {kind!r}: use {FLAT!r} or an IVF spec")
    ivf.cp.spherical = True  # unit vectors: centroids on the sphere make IP assignment cosine
    ivf.cp.seed = TRAIN_SEED
    sample_size = min(len(vectors), ivf.nlist * TRAIN_PER_LIST)
    rng = np.random.default_rng(TRAIN_SEED)
    sample = np.sort(rng.choice(len(vectors), size=sample_size, replace=False))
    index.train(vectors[sample])
    ivf.nprobe = _nprobe_for(ivf.nlist, len(vectors))
    return index


def needs_rebuild(index: faiss.Index, n: int) -> bool:
    """True when a library of n vectors has outgrown (or shrunk away from) what index was built for.

    Flat switches to IVF at the crossover. An IVF is rebuilt when n leaves [sized/2, 2*sized],
    where sized is read back from its list count; the gap gives hysteresis so that adding and
    removing one photo at a boundary never rebuilds back and forth.
    """
    ivf = _ivf(index)
    if ivf is None:
        return choose_kind(n) != FLAT
    sized = _sized_for(ivf.nlist)
    return not sized / GROWTH <= n <= sized * GROWTH


def add(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray) -> None:
    """Insert or replace the vectors of ids (an id already present is replaced, never doubled)."""
    ids = _id_array(ids)
    vectors = _matrix(vectors)
    remove(index, ids)
    with _threads_for(len(vectors), SERIAL_ROWS):
        index.add_with_ids(vectors, ids)


def remove(index: faiss.Index, ids: np.ndarray) -> int:
    """Drop ids from the index; returns how many were there."""
    _require_writable(index)
    ids = _id_array(ids)
    if len(ids) == 0 or index.ntotal == 0:
        return 0
    return int(index.remove_ids(_selector(ids)))


def _require_writable(index: faiss.Index) -> None:
    """Refuse to change a memory-mapped index: FAISS would abort the whole process instead."""
    if index in _MAPPED:
        raise ValueError("index was loaded with mmap=True, so it is read-only; load it without")


def ids_of(index: faiss.Index) -> np.ndarray:
    """Every id stored, read from the id map or the IVF lists without touching vectors."""
    ivf = _ivf(index)
    if ivf is None:
        return faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    lists = ivf.invlists
    parts = [
        faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
        for i in range(ivf.nlist)
        if lists.list_size(i)
    ]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def search(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    *,
    allowed_ids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) per query; empty slots have id -1 and score -inf.

    allowed_ids restricts results to a subset (the CLI's --in DIR). For IVF the number of
    lists probed grows as the subset shrinks, so a small subset still finds k neighbours.
    """
    queries = _matrix(queries)
    # FAISS allocates k slots per query before looking: -n 2147483648 died in bad_alloc after
    # 16.9 GB and -n 2**63 overflowed. More than the photos there are is never useful.
    k = max(1, min(k, index.ntotal, len(allowed_ids) if allowed_ids is not None else k))
    with _threads_for(len(queries), SERIAL_QUERIES):
        if allowed_ids is None:
            scores, found = index.search(queries, k)
        else:
            scores, found = _filtered_search(index, queries, k, _id_array(allowed_ids))
    scores[found < 0] = -np.inf
    return scores, found


@contextmanager
def _threads_for(rows: int, parallel_from: int) -> Iterator[None]:
    """Run small jobs on one thread: waking a second OpenMP thread costs more than it saves, and
    on a busy machine it made one-query search 3-10x and tiny builds 20x slower (measured)."""
    before = faiss.omp_get_max_threads()
    if rows < parallel_from:
        faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _filtered_search(
    index: faiss.Index, queries: np.ndarray, k: int, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    if len(allowed) == 0:
        empty = np.full((len(queries), k), -1, dtype=np.int64)
        return np.full(empty.shape, -np.inf, dtype=np.float32), empty
    selector = _selector(allowed)
    ivf = _ivf(index)
    if ivf is None:
        params = faiss.SearchParameters(sel=selector)
    else:
        share = min(1.0, len(allowed) / max(1, index.ntotal))
        nprobe = min(ivf.nlist, math.ceil(ivf.nprobe / share))
        params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
    return index.search(queries, k, params=params)


def _selector(ids: np.ndarray) -> faiss.IDSelector:
    """A membership test for ids: a bitmap when they are dense enough for it to be no larger than
    the id list (1 ms to build for 500k ids), else a hash set (120 ms for 500k, measured)."""
    top = int(ids.max()) + 1
    if ids.min() >= 0 and top <= 64 * len(ids):
        mask = np.zeros(top, dtype=bool)
        mask[ids] = True
        return faiss.IDSelectorBitmap(np.packbits(mask, bitorder="little"))
    return faiss.IDSelectorBatch(ids)


def kind_of(index: faiss.Index) -> str:
    """The kind string the index was built from, e.g. "flat" or "IVF1984,SQ8"."""
    ivf = _ivf(index)
    if ivf is None:
        return FLAT
    return f"IVF{ivf.nlist},{_codec_of(ivf)}"


def _codec_of(ivf: faiss.IndexIVF) -> str:
    if isinstance(ivf, faiss.IndexIVFScalarQuantizer):
        return _CODECS.get(ivf.sq.qtype, "SQ")
    if isinstance(ivf, faiss.IndexIVFPQ):
        return f"PQ{ivf.pq.M}x{ivf.pq.nbits}"
    return "Flat"


def memory_bytes(index: faiss.Index) -> int:
    """RAM the index needs, from its data sizes rather than serialising a possibly 2 GB copy.

    Counts the stored codes, 8 bytes per id, and the id-map's reverse hash map (about 40 bytes
    per entry) or the IVF's centroids.
    """
    ivf = _ivf(index)
    n = index.ntotal
    if ivf is None:
        return n * (faiss.downcast_index(index.index).code_size + 8 + 40)
    return n * (ivf.code_size + 8) + ivf.nlist * ivf.d * 4


def save(index: faiss.Index, path: str | os.PathLike) -> None:
    """Write index to path atomically: a crash leaves either the old file or the new one."""
    replace_atomically(path, lambda tmp: faiss.write_index(index, tmp))


def load(path: str | os.PathLike, mmap: bool = False) -> faiss.Index:
    """Read an index written by save().

    mmap=True maps the file instead of copying it, for search-only use. Measured here: with the
    file in the page cache, loading took 5-15 ms instead of 150-400 ms (100k flat, 1M IVF);
    uncached, the 1M IVF still won (0.85 s vs 1.8 s) but a flat index lost badly (4.4 s vs
    0.5 s), since its first search faults in the whole file page by page. A mapped index is
    read-only (add and remove raise ValueError); it stays valid while another process saves,
    because save() replaces the file instead of rewriting it.
    """
    path = os.fspath(path)
    if not mmap:
        return faiss.read_index(path)
    index = faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC)
    _MAPPED.add(index)
    return index
