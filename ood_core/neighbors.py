"""k-nearest-neighbour search on embedding arrays, shared by every neighbour-based detector.

One class, :class:`NeighborIndex`, with two backends and three index types::

    nn = NeighborIndex(backend="auto", index="flat").fit(X_ref)
    dist, idx = nn.kneighbors(X, k=50)      # neighbours of new points in X_ref
    dist, idx = nn.kneighbors(k=50)         # the fitted points, self-matches excluded

Conventions (all backends and indexes):

- Distances are **Euclidean** (not squared), returned as ``(Q, k)`` float64 in
  ascending order; indices are ``(Q, k)`` int64 rows of the fitted array.
  Ties are broken by the lower index.
- ``kneighbors(k=k)`` (no ``X``) searches the fitted set for its own points and
  leaves each point's *own index* out; exact duplicates of a point are other
  points and stay in (at distance 0).

Backends:

- ``"faiss"`` (``pip install faiss-cpu``; imported lazily): fast, multi-threaded
  (OpenMP) search, the only backend with approximate indexes.
- ``"sklearn"``: :class:`sklearn.neighbors.NearestNeighbors` brute force. Exact,
  always available, slow on large sets.
- ``"auto"``: faiss when it can be imported, else scikit-learn.

Indexes:

- ``"flat"`` (default, **exact**): brute-force search (faiss: ``faiss.knn``,
  the kernel behind ``IndexFlatL2.search``, run on the fitted array without
  copying it). The backend proposes a few more candidates than asked
  (``k + 8``), whose distances are then recomputed in float64 directly as
  ``||x - y||``, so results do not depend on the backend's float32 arithmetic
  (faiss computes ``|x|^2 + |y|^2 - 2 x.y`` in float32, which is off by
  ~1e-7 * |x|^2 and would put exact duplicates at ~3e-4 instead of 0). faiss
  and scikit-learn therefore return the same neighbours and the same
  distances, up to neighbours whose true distances differ by less than
  float32 rounding.
- ``"ivf"`` (faiss ``IndexIVFFlat``, approximate): k-means partitions the
  fitted set into ``nlist`` cells (trained on a seeded sample of at most
  ``64 * nlist`` points); a query scans only the ``nprobe`` nearest cells.
  Defaults ``nlist = sqrt(N)`` and ``nprobe = max(8, nlist / 16)``: about 6%
  of the points are scanned on large sets (more on small ones, where search
  is cheap).
- ``"hnsw"`` (faiss ``IndexHNSWFlat``, approximate): a navigable small-world
  graph with ``hnsw_m`` links per node, built with ``ef_construction`` and
  searched with a candidate list of ``max(ef_search, k)``. Multi-threaded
  builds are not bit-reproducible.

Speed (``benchmarks/bench_knn.py``, 2 shared cores, D=512, k=50, results in
``benchmarks/results/bench_knn.txt``): flat search is bound by
matrix-multiply speed; faiss is about 1.3x faster than scikit-learn (~470 vs
~365 queries/s against 100k references; ~22 queries/s against 1M). IVF scans
~6% of the points but without matrix-multiply reuse, so it is only 1.5-2x
faster than flat, after a short build (3 s at 100k, 33 s at 1M). HNSW
search is 5x (100k) to 75x (1M) faster than flat on clustered data (1.7x on
structureless data), but its build is long (25 s for 100k and 10 min for 1M
clustered points; 2.6 min for 100k structureless ones), so it pays off when
one index serves many queries.

Recall trade-off of the approximate indexes: on embeddings with cluster
structure (image embeddings of a labelled dataset) the defaults give a
recall@k above 0.9 (clustered benchmark data: IVF 1.00, HNSW 0.98-1.00); on
structureless data (isotropic Gaussian directions in 512 dimensions) recall
collapses (IVF 0.15, HNSW 0.21 at 100k), because every point is about equally
far from every other. Raise ``nprobe`` / ``ef_search`` to trade speed for
recall, and check recall on your own embeddings before relying on them. A
missed neighbour is replaced by a farther point, so a k-NN distance from an
approximate index is never smaller than the exact one (up to float32
rounding). A query whose probed cells hold fewer than ``k`` points is
searched exactly. Approximate indexes return faiss's float32 distances
(computed directly as ``||x - y||``, so duplicates are exactly 0), without
the float64 recomputation.

Memory: the fitted array is kept by reference (not copied when it is already
C-contiguous float32); ``"ivf"`` and ``"hnsw"`` store one more copy of it plus
their structure (HNSW: ``~2 * hnsw_m`` int32 links per point). Queries are
searched in batches of ``batch_size`` rows.
"""

import math
from contextlib import contextmanager

import numpy as np

from .errors import NotFittedError, OODInputError
from .validation import as_embeddings, check_positive_int, check_same_dim

__all__ = ["BACKENDS", "INDEXES", "NeighborIndex", "faiss_available", "group_kth_distances", "resolve_backend",
           "product_kneighbors"]

#: Backend names accepted by :class:`NeighborIndex`.
BACKENDS = ("auto", "faiss", "sklearn")
#: Index names accepted by :class:`NeighborIndex` (only "flat" is exact).
INDEXES = ("flat", "ivf", "hnsw")

# Extra candidates an exact search asks the backend for, so that neighbours
# misordered by the backend's float32 rounding still reach the float64 re-ranking.
_EXACT_MARGIN = 8
# IVF k-means is trained on at most this many points per cell (faiss warns below 39).
_IVF_TRAIN_POINTS_PER_LIST = 64
_IVF_MIN_POINTS_PER_LIST = 39
# Memory (bytes) of one float64 chunk of gathered neighbour vectors in the re-ranking.
_RERANK_CHUNK_BYTES = 32 * 2**20

# Largest squared row norms for which faiss's float32 distance arithmetic neither underflows (float32's smallest
# normal number is ~1.2e-38) nor overflows (its largest ~3.4e38); outside, exact searches use float64 products.
_FAISS_SAFE_SQ_NORMS = (1e-30, 1e36)


def _max_sq_norm(X):
    """Largest squared row norm of ``X`` (float32 arithmetic: inf when it overflows, which is what is checked)."""
    with np.errstate(over="ignore"):
        return float(np.einsum("ij,ij->i", X, X).max()) if X.size else 0.0


_FIT_NAME = "fitted embeddings"
_QUERY_NAME = "query embeddings"


def faiss_available():
    """Whether the optional ``faiss`` package can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _import_faiss(why):
    try:
        import faiss
    except ImportError as exc:
        raise OODInputError(
            f"{why} needs the faiss package: pip install faiss-cpu (or pip install "
            f"'fiftyone-ood[faiss]'), or use backend=\"sklearn\" with index=\"flat\" "
            f"(import failed: {exc})."
        ) from exc
    return faiss


def check_backend(backend):
    """Return ``backend`` if it is one of :data:`BACKENDS`, else raise OODInputError."""
    if backend not in BACKENDS:
        raise OODInputError(
            f"backend={backend!r} is not valid; use one of: {', '.join(map(repr, BACKENDS))}."
        )
    return backend


def check_index(index, backend="auto"):
    """Return ``index`` if it is valid for ``backend``, else raise OODInputError."""
    if index not in INDEXES:
        raise OODInputError(
            f"index={index!r} is not valid; use one of: {', '.join(map(repr, INDEXES))} "
            '("flat" is exact, "ivf" and "hnsw" are approximate and need faiss).'
        )
    if backend == "sklearn" and index != "flat":
        raise OODInputError(
            f'index={index!r} needs faiss but backend="sklearn" was asked for; use '
            'backend="faiss" (or "auto") for approximate search, or index="flat".'
        )
    return index


def resolve_backend(backend="auto", index="flat"):
    """Return the concrete backend, ``"faiss"`` or ``"sklearn"``, that ``backend`` means here.

    ``"auto"`` is faiss when importable, else scikit-learn; approximate indexes
    always need faiss. Raises :class:`OODInputError` for unknown names or a
    missing faiss that is required.
    """
    check_index(index, check_backend(backend))
    if backend == "sklearn":
        return "sklearn"
    if backend == "faiss" or index != "flat":
        _import_faiss(f'backend={backend!r} with index={index!r}')
        return "faiss"
    return "faiss" if faiss_available() else "sklearn"


#: query rows per float64 matrix product in :func:`group_kth_distances`
_GROUP_CHUNK_ROWS = 2048
# memory of one (chunk, N) float64 product in :func:`product_kneighbors`
_GROUP_CHUNK_BYTES = 64 * 2**20
# a k-th squared distance below this share of |q|^2 + |x|^2 has lost digits to cancellation: recomputed directly
_CANCELLATION = 1e-6


def _squared_distances(q, qq, x, xx):
    """``(Q, N)`` float64 ``|q|^2 + |x|^2 - 2 q.x`` (``qq``, ``xx``: the rows' squared norms), built in place."""
    d2 = q @ x.T
    d2 *= -2.0
    d2 += qq[:, None]
    d2 += xx[None, :]
    return d2


def _recompute_cancelled(d2, cols, q, qq, x, xx):
    """Where an entry of ``d2`` (``(Q, c)`` squared distances of query row i to rows ``cols[i]`` of ``x``) lost
    its digits to cancellation (below ``_CANCELLATION * (|q|^2 + |x|^2)``: near-duplicates), recompute it in
    place directly as ``|q - x|^2``, so copies are at exactly 0."""
    r, c = np.nonzero(d2 < _CANCELLATION * (qq[:, None] + xx[cols]))
    if r.size:
        diff = x[cols[r, c]] - q[r]
        d2[r, c] = np.einsum("ij,ij->i", diff, diff)


def group_kth_distances(data, groups, ks, queries=None):
    """Exact distance from each query to its ``ks[g]``-th nearest row of each group ``g`` of ``data``.

    For many small groups (per-class neighbour ranks) this replaces one
    :class:`NeighborIndex` search per group and query batch: each chunk of
    queries is multiplied once with each group's rows in float64
    (``|q|^2 + |x|^2 - 2 q.x``), and the k-th smallest value of each row is
    kept; where that value is small enough for cancellation to matter
    (below ``1e-6 * (|q|^2 + |x|^2)``: near-duplicates) it is recomputed
    directly as ``||q - x||``, so duplicates are at exactly 0 as in
    :class:`NeighborIndex`'s exact search. Values agree with an exact search
    to float64 rounding. Measured in ``benchmarks/bench_group_knn.py``.

    Args:
        data: ``(N, D)`` array, the rows the groups index into.
        groups: list of integer row-index arrays into ``data`` (disjoint).
        ks: one neighbour rank (>= 1) per group.
        queries: ``(Q, D)`` array, or None for the rows of ``data`` themselves,
            each left out of its own group's neighbours (its duplicates stay).

    Returns:
        ``(Q, len(groups))`` float64 distances; ``inf`` where a group offers
        fewer than ``k`` rows (for a row of the group itself, fewer than
        ``k + 1``).
    """
    data = np.asarray(data)
    self_mode = queries is None
    queries = data if self_mode else np.asarray(queries)
    out = np.full((queries.shape[0], len(groups)), np.inf)
    if self_mode:  # each row's group and position in it, to leave it out of its own group
        owner = np.full(data.shape[0], -1, dtype=np.int64)
        position = np.zeros(data.shape[0], dtype=np.int64)
        for g, rows in enumerate(groups):
            owner[rows] = g
            position[rows] = np.arange(len(rows))
    for start in range(0, queries.shape[0], _GROUP_CHUNK_ROWS):
        stop = min(start + _GROUP_CHUNK_ROWS, queries.shape[0])
        q = queries[start:stop].astype(np.float64)
        qq = np.einsum("ij,ij->i", q, q)
        for g, (rows, k) in enumerate(zip(groups, ks)):
            rows = np.asarray(rows)
            if rows.size < k:
                continue
            x = data[rows].astype(np.float64)
            xx = np.einsum("ij,ij->i", x, x)
            d2 = _squared_distances(q, qq, x, xx)
            if self_mode:
                mine = np.flatnonzero(owner[start:stop] == g)
                d2[mine, position[start:stop][mine]] = np.inf
            at = np.argpartition(d2, k - 1, axis=1)[:, k - 1:k]
            kth = np.take_along_axis(d2, at, axis=1)
            _recompute_cancelled(kth, at, q, qq, x, xx)
            out[start:stop, g] = np.sqrt(np.maximum(kth[:, 0], 0.0))
    return out


def product_kneighbors(data, k, queries=None):
    """``NeighborIndex(index="flat").fit(data).kneighbors(queries, k=k)`` by float64 matrix products.

    Each query's ``k`` nearest rows of ``data`` (with ``queries=None``: each
    row's ``k`` nearest other rows, its own index left out; duplicates are
    kept at exactly 0), ascending, as the exact search returns them, except
    that rows at the same distance (copies of one image) may come in another
    order: the products of two identical rows can differ in the last bit.
    The exact search gathers ``k + 8`` candidate rows per query and
    recomputes them in float64, which dominates when ``k`` is in the hundreds
    (the density ratio's pooled lists); here each chunk of queries is
    multiplied once with all rows in float64 instead, and the k smallest kept
    (near-duplicates recomputed directly, as in :func:`group_kth_distances`).
    Temporary memory: one ``(chunk, N)`` float64 array of about 64 MiB.

    Returns:
        ``(Q, k)`` float64 distances and ``(Q, k)`` int64 indices into ``data``.
    """
    data = np.asarray(data)
    n = data.shape[0]
    self_mode = queries is None
    limit = n - 1 if self_mode else n
    if not 1 <= k <= limit:
        raise OODInputError(f"k={k} but {n} rows leave at most {limit} neighbours per "
                            f"{'row' if self_mode else 'query'}; lower k.")
    x = data.astype(np.float64)
    xx = np.einsum("ij,ij->i", x, x)
    queries = x if self_mode else np.asarray(queries)
    n_queries = queries.shape[0]
    dist = np.empty((n_queries, k))
    idx = np.empty((n_queries, k), dtype=np.int64)
    chunk = max(1, min(n_queries, _GROUP_CHUNK_BYTES // (8 * n)))
    for start in range(0, n_queries, chunk):
        stop = min(start + chunk, n_queries)
        q = queries[start:stop].astype(np.float64, copy=False)  # rows of data: views, no copy
        qq = xx[start:stop] if self_mode else np.einsum("ij,ij->i", q, q)
        d2 = _squared_distances(q, qq, x, xx)
        if self_mode:
            rows = np.arange(stop - start)
            d2[rows, rows + start] = np.inf  # leave each row out of its own list
        cand = np.argpartition(d2, k - 1, axis=1)[:, :k]
        near = np.take_along_axis(d2, cand, axis=1)
        _recompute_cancelled(near, cand, q, qq, x, xx)
        near = np.sqrt(np.maximum(near, 0.0))
        order = np.lexsort((cand, near), axis=-1)
        dist[start:stop] = np.take_along_axis(near, order, axis=1)
        idx[start:stop] = np.take_along_axis(cand, order, axis=1)
    return dist, idx


class NeighborIndex:
    """k-nearest-neighbour search over a fitted ``(N, D)`` embedding array.

    See the module docstring for the conventions, backends and the recall
    trade-off of the approximate indexes.

    Args:
        backend: ``"auto"`` (faiss if importable, else scikit-learn), ``"faiss"``
            or ``"sklearn"``.
        index: ``"flat"`` (exact), ``"ivf"`` or ``"hnsw"`` (approximate, faiss).
        nlist: IVF cells; default ``round(sqrt(N))``, at most ``N // 39``.
        nprobe: IVF cells scanned per query; default ``max(8, ceil(nlist / 16))``,
            at most ``nlist``.
        hnsw_m: HNSW links per node (memory and recall grow with it).
        ef_construction: HNSW candidate list size while building.
        ef_search: HNSW candidate list size while searching (raised to the
            number of neighbours asked for when smaller).
        seed: seed of the IVF training sample and of faiss's k-means.
        num_threads: threads for the search (faiss OpenMP and BLAS, or
            scikit-learn's thread pools), restored afterwards; None leaves the
            process-wide setting alone.
        batch_size: query rows per backend call, bounding temporary memory.
    """

    def __init__(
        self,
        *,
        backend="auto",
        index="flat",
        nlist=None,
        nprobe=None,
        hnsw_m=32,
        ef_construction=80,
        ef_search=128,
        seed=0,
        num_threads=None,
        batch_size=16384,
    ):
        self.backend = check_backend(backend)
        self.index = check_index(index, backend)
        self.nlist = check_positive_int(nlist, "nlist", allow_none=True)
        self.nprobe = check_positive_int(nprobe, "nprobe", allow_none=True)
        self.hnsw_m = check_positive_int(hnsw_m, "hnsw_m")
        self.ef_construction = check_positive_int(ef_construction, "ef_construction")
        self.ef_search = check_positive_int(ef_search, "ef_search")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise OODInputError(f"seed={seed!r} is not valid; pass an integer >= 0.")
        self.seed = int(seed)
        self.num_threads = check_positive_int(num_threads, "num_threads", allow_none=True)
        self.batch_size = check_positive_int(batch_size, "batch_size")

    def __repr__(self):
        return f"NeighborIndex(backend={self.backend!r}, index={self.index!r})"

    @property
    def exact(self):
        """Whether searches are exact (``index="flat"``)."""
        return self.index == "flat"

    # ----------------------------------------------------------------- fit

    def fit(self, X):
        """Index the ``(N, D)`` array ``X``; returns ``self``.

        ``X`` is kept by reference when it is already C-contiguous float32:
        do not modify it while the index is in use.
        """
        X = as_embeddings(X, _FIT_NAME)
        backend = resolve_backend(self.backend, self.index)
        n, d = X.shape
        self.backend_ = backend
        self.data_ = X
        self.max_sq_norm_ = _max_sq_norm(X)
        self.n_samples_fit_ = n
        self.n_features_in_ = d
        with self._thread_limit():
            if backend == "sklearn":
                from sklearn.neighbors import NearestNeighbors

                self._searcher = NearestNeighbors(algorithm="brute").fit(X)
            elif self.index == "flat":
                self._searcher = None  # faiss.knn searches data_ directly, without a copy
            elif self.index == "ivf":
                self._searcher = self._build_ivf(X)
            else:
                self._searcher = self._build_hnsw(X)
        return self

    def _build_ivf(self, X):
        faiss = _import_faiss('index="ivf"')
        n, d = X.shape
        nlist = self.nlist if self.nlist is not None else round(math.sqrt(n))
        nlist = max(1, min(nlist, n // _IVF_MIN_POINTS_PER_LIST))
        nprobe = self.nprobe if self.nprobe is not None else max(8, math.ceil(nlist / 16))
        self.nlist_ = nlist
        self.nprobe_ = min(nprobe, nlist)
        quantizer = faiss.IndexFlatL2(d)
        ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2)
        ivf.cp.seed = self.seed
        train_size = min(n, _IVF_TRAIN_POINTS_PER_LIST * nlist)
        if train_size < _IVF_MIN_POINTS_PER_LIST * nlist:
            # fewer than 39 points per cell only below 39 points in all (nlist is then 1): faiss would print a
            # "WARNING clustering ..." line to stderr on every fit, which only that threshold decides
            ivf.cp.min_points_per_centroid = 1
        if train_size < n:
            rows = np.sort(np.random.default_rng(self.seed).choice(n, train_size, replace=False))
            sample = X[rows]
        else:
            sample = X
        ivf.train(sample)
        ivf.add(X)
        self._quantizer = quantizer  # the IVF index does not own its quantizer
        return ivf

    def _build_hnsw(self, X):
        faiss = _import_faiss('index="hnsw"')
        hnsw = faiss.IndexHNSWFlat(X.shape[1], self.hnsw_m, faiss.METRIC_L2)
        hnsw.hnsw.efConstruction = self.ef_construction
        hnsw.add(X)
        return hnsw

    # ----------------------------------------------------------------- search

    def kneighbors(self, X=None, k=1):
        """Return ``(distances, indices)`` of the ``k`` nearest fitted points.

        Args:
            X: ``(Q, D)`` query embeddings, or None for the fitted points
                themselves with each point's own index excluded.
            k: number of neighbours; at most ``N`` (``N - 1`` when ``X`` is None).

        Returns:
            ``(Q, k)`` float64 Euclidean distances (ascending) and ``(Q, k)``
            int64 indices into the fitted array.
        """
        if getattr(self, "n_samples_fit_", None) is None:
            raise NotFittedError(
                "this NeighborIndex is not fitted yet; call fit(X_ref) before kneighbors()."
            )
        k = check_positive_int(k, "k")
        n = self.n_samples_fit_
        exclude_self = X is None
        if exclude_self:
            if k >= n:
                raise OODInputError(
                    f"k={k} but the index holds only {n} points; searching the fitted points "
                    f"themselves leaves each one out, so k must be < {n}: lower k or fit on "
                    "more points."
                )
            queries = self.data_
        else:
            if k > n:
                raise OODInputError(
                    f"k={k} but the index holds only {n} points (k must be <= {n}); lower k "
                    "or fit on more points."
                )
            queries = as_embeddings(X, _QUERY_NAME)
            check_same_dim(self.data_, queries, _FIT_NAME, _QUERY_NAME)

        num_queries = queries.shape[0]
        dist = np.empty((num_queries, k), dtype=np.float64)
        idx = np.empty((num_queries, k), dtype=np.int64)
        with self._thread_limit():
            for start in range(0, num_queries, self.batch_size):
                stop = min(start + self.batch_size, num_queries)
                own = np.arange(start, stop) if exclude_self else None
                dist[start:stop], idx[start:stop] = self._search_batch(
                    queries[start:stop], k, own, exact=self.exact
                )
        return dist, idx

    def _search_batch(self, queries, k, own, exact):
        """Search one batch; ``own`` holds each query's own index when excluding self."""
        n = self.n_samples_fit_
        num_candidates = min(n, k + (own is not None) + (_EXACT_MARGIN if exact else 0))
        if exact:
            cand = self._exact_candidates(queries, num_candidates)
            cand_dist = self._exact_distances(queries, cand)
        else:
            cand_dist, cand = self._approximate_search(queries, num_candidates)
        valid = cand >= 0  # faiss marks missing results (e.g. small IVF cells) with -1
        if own is not None:
            valid &= cand != own[:, None]
        cand_dist = np.where(valid, cand_dist, np.inf)
        # Ascending distance, ties by index; invalid candidates sort last.
        order = np.lexsort((np.where(valid, cand, n), cand_dist), axis=-1)[:, :k]
        dist = np.take_along_axis(cand_dist, order, axis=1)
        idx = np.take_along_axis(cand, order, axis=1)
        short = ~np.take_along_axis(valid, order, axis=1).all(axis=1)
        if short.any():  # approximate search found fewer than k: search those rows exactly
            rows = np.flatnonzero(short)
            dist[rows], idx[rows] = self._search_batch(
                queries[rows], k, None if own is None else own[rows], exact=True
            )
        return dist, idx

    def _exact_candidates(self, queries, num_candidates):
        """Indices of the ``num_candidates`` nearest points by brute force (backend float math)."""
        if self.backend_ == "sklearn":
            return self._searcher.kneighbors(
                queries, n_neighbors=num_candidates, return_distance=False
            ).astype(np.int64, copy=False)
        largest = max(self.max_sq_norm_, _max_sq_norm(queries))
        if not _FAISS_SAFE_SQ_NORMS[0] <= largest <= _FAISS_SAFE_SQ_NORMS[1]:
            # faiss's float32 |q|^2 + |x|^2 - 2 q.x would overflow (it then returns no neighbours) or underflow
            # (every candidate at distance 0): float64 products instead
            return product_kneighbors(self.data_, num_candidates, queries)[1]
        faiss = _import_faiss("backend=\"faiss\"")
        _, cand = faiss.knn(queries, self.data_, num_candidates)
        return cand.astype(np.int64, copy=False)

    def _exact_distances(self, queries, cand):
        """float64 ``||q - x||`` for each query and its candidate rows (inf where cand < 0)."""
        num_queries, num_candidates = cand.shape
        d = queries.shape[1]
        out = np.empty((num_queries, num_candidates), dtype=np.float64)
        safe = np.maximum(cand, 0)
        rows_per_chunk = max(1, _RERANK_CHUNK_BYTES // (8 * num_candidates * d))
        for start in range(0, num_queries, rows_per_chunk):
            stop = min(start + rows_per_chunk, num_queries)
            diff = self.data_[safe[start:stop]].astype(np.float64)
            diff -= queries[start:stop, None, :]
            out[start:stop] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        out[cand < 0] = np.inf
        return out

    def _approximate_search(self, queries, num_candidates):
        if self.index == "ivf":
            self._searcher.nprobe = self.nprobe_
        else:
            self._searcher.hnsw.efSearch = max(self.ef_search, num_candidates)
        sq, cand = self._searcher.search(queries, num_candidates)
        cand = cand.astype(np.int64, copy=False)
        dist = np.sqrt(np.maximum(sq.astype(np.float64), 0.0))
        return dist, cand

    @contextmanager
    def _thread_limit(self):
        """Limit threads to ``num_threads`` inside the block, when it was given."""
        if self.num_threads is None:
            yield
            return
        from threadpoolctl import threadpool_limits

        faiss = None
        if getattr(self, "backend_", None) == "faiss":
            faiss = _import_faiss('backend="faiss"')
            previous = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(self.num_threads)
        try:
            with threadpool_limits(limits=self.num_threads):
                yield
        finally:
            if faiss is not None:
                faiss.omp_set_num_threads(previous)
