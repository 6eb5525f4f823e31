"""k-NN distance detector (Sun, Ming, Zhu & Li, ICML 2022). Higher = more OOD."""

from ..errors import OODInputError
from ..neighbors import NeighborIndex
from ..validation import check_positive_int
from .base import (
    REFERENCE_NAME,
    SCORED_NAME,
    Detector,
    check_bool,
    check_search,
    l2_normalize,
)


class KNNDetector(Detector):
    r"""Deep nearest-neighbour OOD score (Sun, Ming, Zhu & Li, ICML 2022).

    "Out-of-Distribution Detection with Deep Nearest Neighbors":

    .. math::

        z = x / \lVert x \rVert_2, \qquad
        s(x) = \lVert z - z_{(k)} \rVert_2

    where :math:`z_{(k)}` is the k-th nearest (L2-normalised) reference
    embedding. Higher = more OOD. On unit vectors the score lies in ``[0, 2]``.

    ``fit_score`` excludes each point's own match (its neighbours are the
    *other* reference points); exact duplicates of a point are other points and
    still count.

    Args:
        k: which neighbour's distance is the score (k=1 is the nearest). Larger
            k (10-50) is much more robust to a few OOD samples polluting the
            reference set.
        normalize: L2-normalise rows before measuring distances (the paper's
            setting). Rows that are all zero are rejected when True.
        backend: neighbour search: ``"auto"`` (faiss if installed, else
            scikit-learn), ``"faiss"`` or ``"sklearn"``; see
            :mod:`ood_core.neighbors`.
        index: ``"flat"`` (exact; the same scores on every backend), or the
            approximate faiss indexes ``"ivf"`` / ``"hnsw"`` for large reference
            sets (much faster; a missed neighbour makes a score slightly larger
            than the exact one).
    """

    method = "knn"
    label = "k-NN distance"
    summary = "Distance to the k-th nearest trusted embedding; label-free and robust"
    _param_names = ("k", "normalize", "backend", "index")

    def __init__(self, *, k=50, normalize=True, backend="auto", index="flat"):
        self.k = check_positive_int(k, "k")
        self.normalize = check_bool(normalize, "normalize")
        self.backend, self.index = check_search(backend, index)

    def _prepare(self, X, name):
        return l2_normalize(X, name) if self.normalize else X

    def _fit(self, X, labels):
        self.reference_ = self._prepare(X, REFERENCE_NAME)
        self.neighbors_ = NeighborIndex(backend=self.backend, index=self.index).fit(
            self.reference_
        )

    def _score(self, X, labels):
        n_ref = self.reference_.shape[0]
        if self.k > n_ref:
            raise OODInputError(
                f"k={self.k} but the reference set has only {n_ref} samples (k must be <= "
                f"{n_ref}); lower k or add reference samples."
            )
        dist, _ = self.neighbors_.kneighbors(self._prepare(X, SCORED_NAME), k=self.k)
        return dist[:, self.k - 1]

    def _fit_score(self, X, labels):
        n_ref = X.shape[0]
        if self.k >= n_ref:
            raise OODInputError(
                f"k={self.k} but the reference set has only {n_ref} samples; scoring the "
                f"reference set itself excludes each point's self-match, so k must be < "
                f"{n_ref}: lower k or add reference samples."
            )
        self._fit(X, labels)
        # kneighbors() without X leaves each query point out of its own neighbours.
        dist, _ = self.neighbors_.kneighbors(k=self.k)
        return dist[:, self.k - 1]
