"""Vector index: exact and IVF search, id bookkeeping, filters, persistence, sizing rules."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
from bounded import run_capped

from clipsearch.bench import vectors as benchquery
from clipsearch.bench.vectors import recall_at_k, synthetic_vectors
from clipsearch.storage import vectorindex

DIM = 32
N = 4000
IVF_KIND = "IVF64,SQ8"


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clustered library vectors, ids that are not 0..n-1, and fresh queries."""
    vectors = synthetic_vectors(N, DIM, clusters=64)
    ids = np.arange(N, dtype=np.int64) * 3 + 1000
    queries = synthetic_vectors(50, DIM, clusters=64, stream=1)
    return vectors, ids, queries


def exact_top(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ground truth by brute force in numpy."""
    order = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]
    return ids[order]


@pytest.fixture(params=["flat", IVF_KIND])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def test_synthetic_vectors_are_unit_clustered_and_reproducible() -> None:
    x = synthetic_vectors(500, DIM, clusters=16)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(x, synthetic_vectors(500, DIM, clusters=16))
    queries = synthetic_vectors(20, DIM, clusters=16, stream=1)
    assert not np.isin(queries, x).all(axis=1).any()
    sims = queries @ x.T
    # Clustered, not uniform: a query's best match is much closer than a typical photo.
    assert np.median(sims.max(axis=1)) > np.median(sims) + 0.2


def test_flat_search_returns_exact_neighbours(data) -> None:
    vectors, ids, queries = data
    index = vectorindex.build(vectors, ids, "flat")
    scores, found = vectorindex.search(index, queries, 10)
    assert np.array_equal(found, exact_top(vectors, ids, queries, 10))
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert vectorindex.kind_of(index) == "flat"


def probe(index: faiss.Index, nprobe: int) -> faiss.Index:
    """Probe fewer lists than build chose (it scans all of them at test sizes), to test IVF."""
    faiss.extract_index_ivf(index).nprobe = nprobe
    return index


def test_ivf_forced_at_small_size_has_high_recall(data) -> None:
    vectors, ids, queries = data
    index = probe(vectorindex.build(vectors, ids, IVF_KIND), 8)
    _, found = vectorindex.search(index, queries, 10)
    assert vectorindex.kind_of(index) == IVF_KIND
    assert recall_at_k(found, exact_top(vectors, ids, queries, 10)) >= 0.9


def test_nprobe_scans_a_fixed_number_of_candidates() -> None:
    assert vectorindex._nprobe_for(1984, 1_000_000) == 100  # 100 lists of ~504 vectors
    assert vectorindex._nprobe_for(64, 4000) == 64  # small libraries: every list


def test_single_query_and_empty_slots(data) -> None:
    vectors, ids, queries = data
    index = vectorindex.build(vectors[:5], ids[:5], "flat")
    scores, found = vectorindex.search(index, queries[0], 8)
    assert found.shape == (1, 5)  # k is clamped to what the index holds
    assert sorted(found[0, :5]) == sorted(ids[:5])
    index.remove_ids(np.array(ids[:2]))
    scores, found = vectorindex.search(index, queries[0], 5, allowed_ids=ids[:4])
    assert sorted(found[0, :2]) == sorted(ids[2:4])
    assert np.all(found[0, 2:] == -1)
    assert np.all(np.isneginf(scores[0, 2:]))


@pytest.mark.parametrize("k", [2**31, 10**9, 2**63, 2**70])
def test_huge_k_is_clamped_to_the_index_size(k: int) -> None:
    """-n 2147483648 died in bad_alloc after 16.9 GB; -n 2**63 overflowed into a traceback.
    Run in a child allowed 1 GB more than its imports, so the unfixed code cannot hurt."""
    code = (
        "import sys\n"
        "vectors = synthetic_vectors(4000, 32, clusters=64)\n"
        "ids = np.arange(4000, dtype=np.int64) * 3 + 1000\n"
        "for kind in ('flat', 'IVF64,SQ8'):\n"
        "    index = vectorindex.build(vectors, ids, kind)\n"
        "    _, found = vectorindex.search(index, vectors[:2], int(sys.argv[1]))\n"
        "    assert found.shape == (2, 4000), found.shape\n"
        "    k = int(sys.argv[1])\n"
        "    _, found = vectorindex.search(index, vectors[:2], k, allowed_ids=ids[:7])\n"
        "    assert found.shape == (2, 7) and set(found[0]) == set(ids[:7]), found\n"
    )
    imports = (
        "import numpy as np\n"
        "from clipsearch.bench.vectors import synthetic_vectors\n"
        "from clipsearch.storage import vectorindex\n"
    )
    out = run_capped(imports, code, str(k), extra_mb=1024)
    assert out.returncode == 0, out.stderr[-1500:]


def test_ids_of_lists_every_id(data, kind) -> None:
    vectors, ids, _ = data
    index = vectorindex.build(vectors, ids, kind)
    assert np.array_equal(np.sort(vectorindex.ids_of(index)), ids)


def test_removed_ids_never_return_and_added_ids_do(data, kind) -> None:
    vectors, ids, queries = data
    index = vectorindex.build(vectors[:3000], ids[:3000], kind)
    gone = ids[:3000:2]
    assert vectorindex.remove(index, gone) == len(gone)
    assert vectorindex.remove(index, gone) == 0
    vectorindex.add(index, vectors[3000:], ids[3000:])
    _, found = vectorindex.search(index, np.vstack([queries, vectors[:3000:2]]), 50)
    assert not np.isin(found, gone).any()
    _, top = vectorindex.search(index, vectors[3000:3100], 1)
    assert np.array_equal(top[:, 0], ids[3000:3100])
    assert set(vectorindex.ids_of(index)) == set(ids) - set(gone)


def test_add_replaces_an_existing_id(data, kind) -> None:
    vectors, ids, _ = data
    index = vectorindex.build(vectors, ids, kind)
    vectorindex.add(index, vectors[:1], ids[1:2])  # photo 1 now looks like photo 0
    assert index.ntotal == N
    _, found = vectorindex.search(index, vectors[:1], 2)
    assert set(found[0]) == {ids[0], ids[1]}


def test_allowed_ids_restricts_results(data, kind) -> None:
    vectors, ids, queries = data
    index = vectorindex.build(vectors, ids, kind)
    allowed = ids[::7]
    _, found = vectorindex.search(index, queries, 10, allowed_ids=allowed)
    assert np.isin(found, allowed).all()
    truth = exact_top(vectors[::7], allowed, queries, 10)
    assert recall_at_k(found, truth) >= (1.0 if kind == "flat" else 0.9)


def test_tiny_allowed_set_still_fills_k_on_ivf(data) -> None:
    """Probing grows as the subset shrinks, so 12 scattered photos are all found."""
    vectors, ids, queries = data
    index = probe(vectorindex.build(vectors, ids, IVF_KIND), 2)
    allowed = ids[::333]
    _, found = vectorindex.search(index, queries[:5], 10, allowed_ids=allowed)
    assert (found >= 0).all()
    assert np.isin(found, allowed).all()


def test_empty_allowed_set_finds_nothing(data, kind) -> None:
    vectors, ids, queries = data
    index = vectorindex.build(vectors, ids, kind)
    scores, found = vectorindex.search(index, queries[:3], 5, allowed_ids=np.array([], np.int64))
    assert (found == -1).all()
    assert np.isneginf(scores).all()


@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_round_trip(data, kind, mmap, tmp_path: Path) -> None:
    vectors, ids, queries = data
    index = vectorindex.build(vectors, ids, kind)
    path = tmp_path / "vectors.faiss"
    vectorindex.save(index, path)
    loaded = vectorindex.load(path, mmap=mmap)
    before, after = vectorindex.search(index, queries, 10), vectorindex.search(loaded, queries, 10)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[0], after[0])
    assert vectorindex.kind_of(loaded) == kind
    assert list(tmp_path.iterdir()) == [path]


def test_mapped_index_refuses_changes(data, kind, tmp_path: Path) -> None:
    vectors, ids, _ = data
    path = tmp_path / "vectors.faiss"
    vectorindex.save(vectorindex.build(vectors, ids, kind), path)
    mapped = vectorindex.load(path, mmap=True)
    with pytest.raises(ValueError, match="read-only"):
        vectorindex.add(mapped, vectors[:1], ids[:1])
    with pytest.raises(ValueError, match="read-only"):
        vectorindex.remove(mapped, ids[:1])
    writable = vectorindex.load(path)
    assert vectorindex.remove(writable, ids[:1]) == 1


def test_failed_save_keeps_old_file_and_no_temp(data, tmp_path: Path, monkeypatch) -> None:
    vectors, ids, _ = data
    path = tmp_path / "vectors.faiss"
    vectorindex.save(vectorindex.build(vectors[:10], ids[:10], "flat"), path)
    old = path.read_bytes()

    def half_written(index: faiss.Index, target: str) -> None:
        Path(target).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", half_written)
    with pytest.raises(OSError, match="disk full"):
        vectorindex.save(vectorindex.build(vectors, ids, "flat"), path)
    assert path.read_bytes() == old
    assert list(tmp_path.iterdir()) == [path]


def test_choose_kind_switches_at_crossover() -> None:
    assert vectorindex.choose_kind(0) == "flat"
    assert vectorindex.choose_kind(vectorindex.CROSSOVER - 1) == "flat"
    assert vectorindex.choose_kind(vectorindex.CROSSOVER).startswith("IVF")
    assert vectorindex.choose_kind(1_000_000) == "IVF1984,SQ8"


@pytest.mark.parametrize("n", [vectorindex.CROSSOVER, 300_000, 1_000_000, 7_000_000])
def test_freshly_chosen_ivf_does_not_need_rebuild(n: int) -> None:
    nlist = int(vectorindex.choose_kind(n)[3:].split(",")[0])
    sized = vectorindex._sized_for(nlist)
    assert sized / vectorindex.GROWTH < n < sized * vectorindex.GROWTH


def test_needs_rebuild_flat(data) -> None:
    vectors, ids, _ = data
    index = vectorindex.build(vectors[:100], ids[:100], "flat")
    assert not vectorindex.needs_rebuild(index, vectorindex.CROSSOVER - 1)
    assert vectorindex.needs_rebuild(index, vectorindex.CROSSOVER)


def test_needs_rebuild_ivf_has_hysteresis(data) -> None:
    vectors, ids, _ = data
    index = vectorindex.build(vectors, ids, IVF_KIND)
    sized = vectorindex._sized_for(64)
    assert not vectorindex.needs_rebuild(index, sized)
    assert not vectorindex.needs_rebuild(index, 2 * sized)
    assert vectorindex.needs_rebuild(index, 2 * sized + 1)
    assert not vectorindex.needs_rebuild(index, sized // 2)
    assert vectorindex.needs_rebuild(index, sized // 2 - 1)


def test_unknown_kind_is_refused(data) -> None:
    vectors, ids, _ = data
    with pytest.raises(ValueError, match="unsupported"):
        vectorindex.build(vectors, ids, "HNSW32")


def test_memory_bytes_tracks_codes(data, kind) -> None:
    vectors, ids, _ = data
    index = vectorindex.build(vectors, ids, kind)
    per_vector = DIM * 4 if kind == "flat" else DIM
    assert N * per_vector < vectorindex.memory_bytes(index) < N * (per_vector + 64) + 64 * DIM * 4


@pytest.mark.parametrize("kind", [None, IVF_KIND])
def test_benchquery_run_reports_every_figure(kind: str | None) -> None:
    result = benchquery.run(3000, dim=DIM, queries=20, kind=kind)
    assert result["vectors"] == 3000
    assert result["index_type"] == (kind or "flat")
    assert 0.0 <= result["recall_at_10"] <= 1.0
    assert result["exact_ms"] > 0 and result["ann_ms"] > 0
    assert result["index_ram_mb"] > 0 and result["build_s"] >= 0
    if kind is None:
        assert result["recall_at_10"] == 1.0
        assert result["ann_ms"] == result["exact_ms"]
    else:
        assert result["recall_at_10"] >= 0.8
