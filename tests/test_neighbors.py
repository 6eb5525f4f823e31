"""Tests of ood_core.neighbors: exact search vs brute-force numpy, approximate recall, errors."""

import sys

import numpy as np
import pytest

from ood_core.errors import NotFittedError, OODInputError
from ood_core.neighbors import NeighborIndex, faiss_available, resolve_backend

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")
EXACT_BACKENDS = [pytest.param("faiss", marks=needs_faiss), "sklearn"]


# --------------------------------------------------------------------------- helpers


def gaussian(n, d, seed):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def clustered_unit_rows(n, d, n_clusters, seed, spread=0.5):
    """Unit vectors around ``n_clusters`` random directions (embedding-like structure)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, d))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    X = centers[rng.integers(0, n_clusters, n)] + spread / np.sqrt(d) * rng.normal(size=(n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def brute_force(X_ref, X, k, exclude_self=False):
    """Exact k-NN in float64: ascending distance, ties to the lower index."""
    diff = np.asarray(X, np.float64)[:, None, :] - np.asarray(X_ref, np.float64)[None, :, :]
    dist = np.sqrt((diff**2).sum(-1))
    if exclude_self:
        np.fill_diagonal(dist, np.inf)
    idx = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, idx, axis=1), idx


def recall(idx, exact_idx):
    k = exact_idx.shape[1]
    return np.mean([len(set(a) & set(b)) / k for a, b in zip(idx, exact_idx)])


@pytest.fixture(scope="module")
def data_with_duplicates():
    X = gaussian(300, 12, seed=0)
    X[10] = X[3]  # a duplicate pair: each is the other's nearest neighbour, at distance 0
    X[200] = X[150]
    return X, gaussian(40, 12, seed=1)


# --------------------------------------------------------------------------- exact search


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
# faiss uses a direct kernel below 20 queries and BLAS above.
@pytest.mark.parametrize("num_queries", [5, 40])
@pytest.mark.parametrize("k", [1, 7, 50])
def test_exact_search_matches_brute_force(data_with_duplicates, backend, num_queries, k):
    X, queries = data_with_duplicates
    queries = queries[:num_queries]
    nn = NeighborIndex(backend=backend).fit(X)
    dist, idx = nn.kneighbors(queries, k=k)
    exp_dist, exp_idx = brute_force(X, queries, k)
    assert dist.shape == idx.shape == (num_queries, k)
    assert dist.dtype == np.float64 and idx.dtype == np.int64
    np.testing.assert_array_equal(idx, exp_idx)
    np.testing.assert_allclose(dist, exp_dist, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
@pytest.mark.parametrize("k", [1, 5, 299])
def test_self_search_excludes_own_index_but_keeps_duplicates(data_with_duplicates, backend, k):
    X, _ = data_with_duplicates
    dist, idx = NeighborIndex(backend=backend).fit(X).kneighbors(k=k)
    exp_dist, exp_idx = brute_force(X, X, k, exclude_self=True)
    np.testing.assert_array_equal(idx, exp_idx)
    np.testing.assert_allclose(dist, exp_dist, rtol=1e-12, atol=1e-12)
    assert not np.any(idx == np.arange(len(X))[:, None])
    if k == 1:  # duplicates are exactly 0 apart (not float32 GEMM noise of ~3e-4)
        assert idx[3, 0] == 10 and idx[10, 0] == 3 and idx[150, 0] == 200
        assert dist[3, 0] == 0.0 and dist[10, 0] == 0.0 and dist[200, 0] == 0.0
        assert np.all(np.delete(dist[:, 0], [3, 10, 150, 200]) > 1e-3)


@needs_faiss
def test_faiss_flat_and_sklearn_agree_exactly_on_larger_data():
    X = clustered_unit_rows(3000, 64, 30, seed=2)
    queries = clustered_unit_rows(500, 64, 30, seed=3)
    fa = NeighborIndex(backend="faiss").fit(X)
    sk = NeighborIndex(backend="sklearn").fit(X)
    for q in (queries, None):
        d_fa, i_fa = fa.kneighbors(q, k=20)
        d_sk, i_sk = sk.kneighbors(q, k=20)
        np.testing.assert_array_equal(i_fa, i_sk)
        np.testing.assert_array_equal(d_fa, d_sk)  # both recomputed in float64 from the rows


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_many_duplicates_each_excludes_only_itself(backend):
    X = gaussian(60, 5, seed=4)
    group = np.arange(20, 35)  # 15 identical rows: more than k + 1
    X[group] = X[20]
    dist, idx = NeighborIndex(backend=backend).fit(X).kneighbors(k=4)
    for i in group:
        assert dist[i].tolist() == [0.0] * 4
        assert i not in idx[i] and set(idx[i]) <= set(group.tolist())


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_batching_does_not_change_results(data_with_duplicates, backend):
    X, queries = data_with_duplicates
    full = NeighborIndex(backend=backend).fit(X)
    batched = NeighborIndex(backend=backend, batch_size=7).fit(X)
    for q in (queries, None):  # self-exclusion must use global row numbers in every batch
        for a, b in zip(full.kneighbors(q, k=6), batched.kneighbors(q, k=6)):
            np.testing.assert_array_equal(a, b)


def test_float64_and_non_contiguous_input_is_accepted(data_with_duplicates):
    X, queries = data_with_duplicates
    X64 = np.asfortranarray(X.astype(np.float64))
    a = NeighborIndex().fit(X64).kneighbors(queries.astype(np.float64)[:, :], k=3)
    b = NeighborIndex().fit(X).kneighbors(queries, k=3)
    np.testing.assert_array_equal(a[1], b[1])


# --------------------------------------------------------------------------- approximate search


@pytest.fixture(scope="module")
def clustered_set():
    X = clustered_unit_rows(8000, 48, 40, seed=5)
    queries = clustered_unit_rows(400, 48, 40, seed=6)
    k = 20
    exact = NeighborIndex(backend="sklearn").fit(X)
    return X, queries, k, exact.kneighbors(queries, k=k), exact.kneighbors(k=k)


@needs_faiss
@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_approximate_index_defaults_have_high_recall_on_clustered_data(clustered_set, index):
    X, queries, k, (exact_dist, exact_idx), (self_dist, self_idx) = clustered_set
    nn = NeighborIndex(index=index).fit(X)
    dist, idx = nn.kneighbors(queries, k=k)
    assert recall(idx, exact_idx) >= 0.9
    # A missed neighbour is replaced by a farther point: the j-th distance never shrinks.
    assert np.all(dist >= exact_dist * (1 - 1e-5) - 1e-6)
    assert np.all(np.diff(dist, axis=1) >= 0)
    dist, idx = nn.kneighbors(k=k)
    assert recall(idx, self_idx) >= 0.9
    assert not np.any(idx == np.arange(len(X))[:, None])


@needs_faiss
def test_ivf_short_cells_fall_back_to_exact_search():
    X = clustered_unit_rows(800, 16, 20, seed=7)
    # 20 cells of ~40 points and one probed: k=60 is short for most queries, and
    # k=300 exceeds every cell, so every row must come from the exact fallback.
    nn = NeighborIndex(index="ivf", nlist=20, nprobe=1).fit(X)
    dist, idx = nn.kneighbors(X[:50], k=60)
    assert np.all(idx >= 0) and np.all(np.isfinite(dist))
    assert all(len(set(row)) == 60 for row in idx)
    dist, idx = nn.kneighbors(X[:50], k=300)
    exp_dist, exp_idx = brute_force(X, X[:50], 300)
    np.testing.assert_array_equal(idx, exp_idx)
    np.testing.assert_allclose(dist, exp_dist, rtol=1e-12, atol=1e-12)
    dist, idx = nn.kneighbors(k=300)
    np.testing.assert_array_equal(idx, brute_force(X, X, 300, exclude_self=True)[1])


@needs_faiss
def test_ivf_parameters_are_resolved_and_bounded():
    X = clustered_unit_rows(2000, 8, 10, seed=8)
    nn = NeighborIndex(index="ivf").fit(X)
    assert nn.nlist_ == 45 and nn.nprobe_ == 8  # round(sqrt(2000)), max(8, ceil(45 / 16))
    big = NeighborIndex(index="ivf", nlist=200).fit(np.tile(X, (5, 1)))
    assert big.nprobe_ == 13  # ceil(200 / 16)
    nn = NeighborIndex(index="ivf", nlist=500, nprobe=1000).fit(X)
    assert nn.nlist_ == 2000 // 39 and nn.nprobe_ == nn.nlist_


@needs_faiss
def test_num_threads_is_restored_after_use():
    import faiss

    before = faiss.omp_get_max_threads()
    X = gaussian(100, 4, seed=9)
    NeighborIndex(backend="faiss", num_threads=1).fit(X).kneighbors(k=3)
    assert faiss.omp_get_max_threads() == before


# --------------------------------------------------------------------------- backends and errors


def test_auto_backend_uses_faiss_when_importable_else_sklearn(monkeypatch):
    X = gaussian(30, 3, seed=10)
    expected = "faiss" if faiss_available() else "sklearn"
    assert NeighborIndex().fit(X).backend_ == expected
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    assert resolve_backend("auto") == "sklearn"
    assert NeighborIndex().fit(X).backend_ == "sklearn"
    with pytest.raises(OODInputError, match=r"needs the faiss package: pip install faiss-cpu"):
        NeighborIndex(backend="faiss").fit(X)
    with pytest.raises(OODInputError, match=r"index='hnsw'.*needs the faiss package"):
        NeighborIndex(index="hnsw").fit(X)


def test_k_too_large_names_sizes():
    nn = NeighborIndex().fit(gaussian(10, 3, seed=11))
    with pytest.raises(OODInputError, match=r"k=11 but the index holds only 10 points.*lower k"):
        nn.kneighbors(gaussian(2, 3, seed=12), k=11)
    with pytest.raises(OODInputError, match=r"k=10 but the index holds only 10 points.*leaves "
                                            r"each one out, so k must be < 10"):
        nn.kneighbors(k=10)
    assert nn.kneighbors(gaussian(2, 3, seed=12), k=10)[0].shape == (2, 10)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(OODInputError, match="k="):
            nn.kneighbors(k=bad)


def test_dimension_mismatch_and_bad_queries():
    nn = NeighborIndex().fit(gaussian(10, 3, seed=13))
    with pytest.raises(OODInputError, match=r"fitted embeddings have dimension 3 but query "
                                            r"embeddings have dimension 4"):
        nn.kneighbors(gaussian(2, 4, seed=14), k=1)
    with pytest.raises(OODInputError, match=r"query embeddings must be a 2-D array"):
        nn.kneighbors(np.zeros(3, np.float32), k=1)
    bad = gaussian(2, 3, seed=15)
    bad[1, 0] = np.nan
    with pytest.raises(OODInputError, match=r"query embeddings has 1 row\(s\) with NaN"):
        nn.kneighbors(bad, k=1)


def test_unknown_backend_index_and_bad_combinations():
    with pytest.raises(OODInputError, match=r"backend='annoy' is not valid.*'auto', 'faiss', "
                                            r"'sklearn'"):
        NeighborIndex(backend="annoy")
    with pytest.raises(OODInputError, match=r"index='lsh' is not valid.*'flat', 'ivf', 'hnsw'"):
        NeighborIndex(index="lsh")
    with pytest.raises(OODInputError, match=r"index='ivf' needs faiss but backend=\"sklearn\""):
        NeighborIndex(backend="sklearn", index="ivf")
    for name in ("nlist", "nprobe", "hnsw_m", "ef_search", "batch_size", "num_threads"):
        with pytest.raises(OODInputError, match=f"{name}=0 is not valid"):
            NeighborIndex(**{name: 0})


def test_unfitted_index_raises():
    with pytest.raises(NotFittedError, match=r"not fitted yet.*fit\(X_ref\)"):
        NeighborIndex().kneighbors(gaussian(2, 3, seed=16), k=1)


# --------------------------------------------------------------------------- k-th distance per group


def _group_kth_by_sorting(X_ref, groups, ks, X=None):
    """Independent computation: float64 differences, sorted per group; own row left out when X is None."""
    queries = np.asarray(X_ref if X is None else X, np.float64)
    out = np.full((queries.shape[0], len(groups)), np.inf)
    for g, (rows, k) in enumerate(zip(groups, ks)):
        for i, q in enumerate(queries):
            members = [r for r in rows if X is not None or r != i]
            if len(members) >= k:
                d = np.sqrt(((np.asarray(X_ref, np.float64)[members] - q) ** 2).sum(-1))
                out[i, g] = np.sort(d)[k - 1]
    return out


def test_group_kth_distances_match_sorting_and_keep_duplicates_at_zero():
    rng = np.random.default_rng(5)
    X = clustered_unit_rows(90, 24, n_clusters=3, seed=5)
    X[7] = X[3]  # a duplicate inside group 0
    X[40] = X[3]  # and one in group 1
    perm = rng.permutation(90)
    groups = [perm[:40], perm[40:85], perm[85:]]  # the last group (5 rows) is smaller than its k
    groups[0] = np.union1d(groups[0], [3, 7])
    groups[1] = np.setdiff1d(np.union1d(groups[1], [40]), [3, 7])
    groups[2] = np.setdiff1d(groups[2], [3, 7, 40])
    ks = [1, 4, 6]
    Q = np.vstack([clustered_unit_rows(12, 24, n_clusters=3, seed=6), X[3:4]])
    from ood_core.neighbors import group_kth_distances

    got = group_kth_distances(X, groups, ks, Q)
    np.testing.assert_allclose(got, _group_kth_by_sorting(X, groups, ks, Q), rtol=1e-10, atol=1e-12)
    assert got[-1, 0] == 0.0 and np.isinf(got[:, 2]).all()  # a copy of a row is at exactly 0; 5 rows < k=6
    own = group_kth_distances(X, groups, ks)  # the rows themselves, each left out of its own group
    np.testing.assert_allclose(own, _group_kth_by_sorting(X, groups, ks), rtol=1e-10, atol=1e-12)
    assert own[3, 0] == 0.0 and own[7, 0] == 0.0  # its duplicate stays a neighbour
    assert own[40, 1] > 0.0  # k=4 in group 1: the duplicate of row 3 there is one of four neighbours


@pytest.mark.parametrize("chunk_bytes", [64 * 2**20, 8 * 300 * 7])  # one chunk, or chunks of 7 rows
@pytest.mark.parametrize("k", [1, 7, 120])
def test_product_kneighbors_match_the_exact_index_search(data_with_duplicates, chunk_bytes, k, monkeypatch):
    from ood_core import neighbors

    monkeypatch.setattr(neighbors, "_GROUP_CHUNK_BYTES", chunk_bytes)
    X, _ = data_with_duplicates
    dist, idx = neighbors.product_kneighbors(X, k)
    want_dist, want_idx = brute_force(X, X, k, exclude_self=True)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-12, atol=1e-12)
    # the same neighbours, except that rows at the same distance (the duplicate pairs) may swap places
    differ = idx != want_idx
    assert differ.sum() <= 2 * np.isin(want_idx, [3, 10, 150, 200]).sum()
    exact = np.sqrt(((X[idx].astype(np.float64) - X[:, None, :].astype(np.float64)) ** 2).sum(-1))
    np.testing.assert_allclose(exact, want_dist, rtol=1e-12, atol=1e-12)  # each listed row is at that distance
    assert (np.isin(idx[differ], [3, 10, 150, 200])).all()
    assert idx[3, 0] == 10 and dist[3, 0] == 0.0 and idx[200, 0] == 150 and dist[200, 0] == 0.0
    with pytest.raises(OODInputError, match="k=300"):
        neighbors.product_kneighbors(X, 300)


def test_product_kneighbors_of_queries_match_brute_force(data_with_duplicates, monkeypatch):
    from ood_core import neighbors

    monkeypatch.setattr(neighbors, "_GROUP_CHUNK_BYTES", 8 * 300 * 9)  # chunks of 9 queries
    X, Q = data_with_duplicates
    Q = np.vstack([Q, X[[150, 42]]])  # a query that copies a duplicated row, and one that copies a single row
    for k in (1, 5, 300):  # k may reach every row: nothing is left out for queries
        dist, idx = neighbors.product_kneighbors(X, k, queries=Q)
        want_dist, want_idx = brute_force(X, Q, k)
        np.testing.assert_allclose(dist, want_dist, rtol=1e-12, atol=1e-12)
        assert (idx[:40] == want_idx[:40]).all()
    assert dist[-1, 0] == 0.0 and idx[-1, 0] == 42  # a copy is its own nearest row, at exactly 0
    assert dist[-2, 0] == 0.0 and dist[-2, 1] == 0.0 and set(idx[-2, :2]) == {150, 200}
    with pytest.raises(OODInputError, match="k=301"):
        neighbors.product_kneighbors(X, 301, queries=Q)


def test_product_kneighbors_recompute_near_duplicates_lost_to_cancellation():
    """Rows far from the origin: ``|q|^2 + |x|^2 - 2 q.x`` keeps ~1e-9 of absolute error, which swamps
    distances of 1e-4; the near-duplicates must come out at their true distance (and copies at 0)."""
    from ood_core import neighbors

    rng = np.random.default_rng(3)
    X = 1000.0 + rng.normal(size=(60, 12))
    X[1] = X[0] + 1e-4 * rng.normal(size=12)  # a near-duplicate pair
    X[2] = X[0]  # and an exact copy
    dist, idx = neighbors.product_kneighbors(X, 3)
    want_dist, _ = brute_force(X, X, 3, exclude_self=True)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-9, atol=0)
    assert dist[0, 0] == 0.0 and idx[0, 0] == 2 and dist[0, 1] == pytest.approx(want_dist[0, 1], rel=1e-9)
    q_dist, _ = neighbors.product_kneighbors(X, 2, queries=X[:1] + 1e-5)
    np.testing.assert_allclose(q_dist, brute_force(X, X[:1] + 1e-5, 2)[0], rtol=1e-9, atol=0)
