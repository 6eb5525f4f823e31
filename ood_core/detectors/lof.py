"""Local Outlier Factor detectors: one LOF over all samples, or one per class (wrong labels)."""

import math

import numpy as np

from ..errors import OODInputError
from ..neighbors import NeighborIndex, resolve_backend
from ..validation import check_positive_int
from .base import Detector, check_bool, check_search


def _local_reachability_density(dist, idx, k_distance):
    """``1 / mean_o max(k_distance[o], d(x, o))`` over each row's neighbours ``o``.

    ``dist``/``idx`` are ``(N, k)`` neighbour distances and indices into the
    fitted set, ``k_distance`` the fitted points' distance to their k-th
    neighbour. The ``1e-10`` is scikit-learn's guard against a zero mean when
    a point has more than k exact duplicates.
    """
    reach = np.maximum(dist, k_distance[idx])
    return 1.0 / (reach.mean(axis=1) + 1e-10)


#: spread (RMS distance of the rows to their mean) below which LOF's rows are rescaled first (:func:`unit_factor`)
SMALL_SPREAD = 2.0 ** -10
_SPREAD_CHUNK_ROWS = 16384
#: the largest rescaling factor (queries far from a tiny reference stay within float32 after it)
MAX_FACTOR_EXPONENT = 64


def unit_factor(X):
    """A power of two that brings the spread of the rows of ``X`` to about 1 when it is below ``SMALL_SPREAD``,
    else 1.

    LOF does not depend on the scale of the data, but its ``1e-10`` guard (scikit-learn's, kept here) does:
    on embeddings whose distances are ~1e-8 it moves the scores by ~0.005, on ~1e-12 every score is about 1
    (measured). Multiplying float32 rows by a power of two is exact, so the rescaled LOF is the LOF of the data
    as given, with the guard relative to its scale; rows of an ordinary spread are left as they are."""
    X = np.asarray(X)
    mean = X.mean(axis=0, dtype=np.float64)
    total = 0.0
    for start in range(0, X.shape[0], _SPREAD_CHUNK_ROWS):  # float64 by chunks: no copy of the whole set
        block = X[start:start + _SPREAD_CHUNK_ROWS].astype(np.float64) - mean
        total += float(np.einsum("ij,ij->", block, block))
    spread = math.sqrt(total / X.shape[0])
    if not 0.0 < spread < SMALL_SPREAD:
        return 1.0
    return float(2.0 ** min(MAX_FACTOR_EXPONENT, -math.floor(math.log2(spread))))


def _rescaled(X, factor):
    return X if factor == 1.0 else np.asarray(X, dtype=np.float32) * np.float32(factor)


class GraphLOF:
    """LOF of one reference set computed from its k-NN graph (Breunig et al. 2000).

    The formulas of :class:`sklearn.neighbors.LocalOutlierFactor`, evaluated on
    neighbours found by :class:`~ood_core.neighbors.NeighborIndex` (in float64):

    - fitted points: neighbours are the *other* fitted points, giving
      ``outlier_factor_`` (scikit-learn's ``-negative_outlier_factor_``, the
      ``novelty=False`` scores);
    - new points (:meth:`outlier_factor`): neighbours are fitted points, with the
      fitted points' ``k_distance_`` and ``lrd_`` (scikit-learn's
      ``novelty=True`` ``-score_samples``).
    """

    def __init__(self, k, backend, index):
        self.k = k
        self.neighbors_ = NeighborIndex(backend=backend, index=index)

    def fit(self, X):
        self.factor_ = unit_factor(X)
        self.neighbors_.fit(_rescaled(X, self.factor_))
        dist, idx = self.neighbors_.kneighbors(k=self.k)
        self.k_distance_ = dist[:, self.k - 1]
        self.lrd_ = _local_reachability_density(dist, idx, self.k_distance_)
        self.outlier_factor_ = (self.lrd_[idx] / self.lrd_[:, None]).mean(axis=1)
        return self

    def outlier_factor(self, X):
        dist, idx = self.neighbors_.kneighbors(_rescaled(X, self.factor_), k=self.k)
        lrd = _local_reachability_density(dist, idx, self.k_distance_)
        return (self.lrd_[idx] / lrd[:, None]).mean(axis=1)


class SklearnLOF:
    """The same interface over ``LocalOutlierFactor(novelty=True)``, sign flipped."""

    def __init__(self, k):
        self.k = k

    def fit(self, X):
        from sklearn.neighbors import LocalOutlierFactor

        self.factor_ = unit_factor(X)
        self.model_ = LocalOutlierFactor(n_neighbors=self.k, novelty=True).fit(_rescaled(X, self.factor_))
        self.outlier_factor_ = -self.model_.negative_outlier_factor_
        return self

    def outlier_factor(self, X):
        return -self.model_.score_samples(_rescaled(X, self.factor_))


class LOFDetector(Detector):
    r"""Local Outlier Factor (Breunig, Kriegel, Ng & Sander, SIGMOD 2000).

    "LOF: Identifying Density-Based Local Outliers". With :math:`N_k(x)` the k
    nearest neighbours, :math:`d_k(o)` the distance from :math:`o` to its k-th
    neighbour and the local reachability density
    :math:`\mathrm{lrd}_k(x) = 1 / \mathrm{mean}_{o \in N_k(x)}
    \max(d_k(o), d(x, o))`:

    .. math::

        s(x) = \mathrm{LOF}_k(x) = \mathrm{mean}_{o \in N_k(x)}
        \frac{\mathrm{lrd}_k(o)}{\mathrm{lrd}_k(x)}

    About 1 for inliers, larger = more outlying (scikit-learn's
    "higher = more normal" sign is flipped). Distances are Euclidean on the
    embeddings as given (no normalisation); embeddings of a tiny spread (below
    ``SMALL_SPREAD``) are first multiplied by a power of two (:func:`unit_factor`,
    exact in float32), so that the ``1e-10`` guard of the reachability density
    stays small next to their distances and the scores do not depend on the scale.

    - ``fit_score(X)`` returns the LOF of the fitted samples themselves
      (scikit-learn's ``-negative_outlier_factor_``, identical to a
      ``novelty=False`` model: each point is left out of its own neighbours).
    - ``score_samples(X)`` scores new data as scikit-learn's ``novelty=True``
      model does (neighbours are reference points; a query equal to a
      reference point matches it).
    - ``per_class=True`` (wrong-label finding, Wulz & Krispel Exp. 3): ``y`` is
      required, one LOF is fitted within each class, and each sample is scored
      within its *given* class. Every class needs more than ``k`` samples.

    With ``backend="sklearn"`` (or ``"auto"`` without faiss) the model is
    :class:`sklearn.neighbors.LocalOutlierFactor`; with faiss the same formulas
    are evaluated on the neighbour graph from
    :class:`~ood_core.neighbors.NeighborIndex`. With ``index="flat"`` the two
    agree to float32 rounding (scikit-learn rounds distances of float32 input
    to float32).

    Args:
        k: number of neighbours (scikit-learn's ``n_neighbors``).
        per_class: fit and score within each class of ``y``.
        backend: neighbour search: ``"auto"`` (faiss if installed, else
            scikit-learn), ``"faiss"`` or ``"sklearn"``; see
            :mod:`ood_core.neighbors`.
        index: ``"flat"`` (exact), or the approximate faiss indexes ``"ivf"`` /
            ``"hnsw"`` for large reference sets.
    """

    method = "lof"
    label = "LOF"
    summary = "Local Outlier Factor: density of a sample relative to its neighbours"
    _param_names = ("k", "per_class", "backend", "index")

    def __init__(self, *, k=50, per_class=False, backend="auto", index="flat"):
        self.k = check_positive_int(k, "k")
        self.per_class = check_bool(per_class, "per_class")
        self.backend, self.index = check_search(backend, index)

    def get_params(self):
        params = super().get_params()
        params["method"] = "class_lof" if self.per_class else "lof"
        return params

    @property
    def requires_labels(self):
        return self.per_class

    def _without_labels_hint(self):
        return ", or use per_class=False (one LOF over all samples)"

    def _fit_one(self, X, what):
        if X.shape[0] <= self.k:
            raise OODInputError(
                f"{what} has {X.shape[0]} samples but LOF with k={self.k} needs more than "
                "k samples; lower k or add reference samples."
            )
        if self.backend_ == "sklearn":
            return SklearnLOF(self.k).fit(X)
        return GraphLOF(self.k, self.backend_, self.index).fit(X)

    def _fit(self, X, labels):
        self.backend_ = resolve_backend(self.backend, self.index)
        if not self.per_class:
            self.models_ = {None: self._fit_one(X, "the reference set")}
            self.classes_ = None
            return
        classes, codes = labels
        sizes = np.bincount(codes, minlength=len(classes))
        small = [(c, int(s)) for c, s in zip(classes, sizes) if s <= self.k]
        if small:
            listing = ", ".join(f"{c!r} ({s} samples)" for c, s in small[:10])
            raise OODInputError(
                f"per-class LOF with k={self.k} needs more than k samples in every class, "
                f"but {len(small)} class(es) are too small: {listing}; lower k, or drop or "
                "merge those classes."
            )
        self.classes_ = classes
        self.models_ = {
            c: self._fit_one(X[codes == i], f"class {c!r}") for i, c in enumerate(classes)
        }

    def _fit_score(self, X, labels):
        self._fit(X, labels)
        if not self.per_class:
            return self.models_[None].outlier_factor_
        classes, codes = labels
        scores = np.empty(X.shape[0])
        for i, c in enumerate(classes):
            scores[codes == i] = self.models_[c].outlier_factor_
        return scores

    def _score(self, X, labels):
        if not self.per_class:
            return self.models_[None].outlier_factor(X)
        classes, codes = labels
        unseen = [c for c in classes if c not in self.models_]
        if unseen:
            raise OODInputError(
                f"y (labels of the scored samples) has {len(unseen)} class(es) not in the "
                f"fitted reference: {unseen[:10]!r}; per-class LOF can only score classes "
                "it was fitted on: add reference samples of those classes or drop them."
            )
        scores = np.empty(X.shape[0])
        for i, c in enumerate(classes):
            rows = codes == i
            scores[rows] = self.models_[c].outlier_factor(X[rows])
        return scores


class ClassLOFDetector(LOFDetector):
    """Per-class LOF (Wulz & Krispel, Exp. 3): ``LOFDetector(per_class=True)``.

    Each sample is scored within its *given* class, so a high score says the
    label is unlike the rest of its class. Higher = label more likely wrong.
    """

    method = "class_lof"
    task = "label_issues"
    label = "Per-class LOF (paper)"
    summary = "LOF within each given class: a sample unlike the rest of its class"

    def __init__(self, *, k=50, per_class=True, backend="auto", index="flat"):
        if per_class is not True:
            raise OODInputError(
                'detector "class_lof" is per-class LOF; per_class=False contradicts it: use '
                '"lof" for a single LOF over all samples.'
            )
        super().__init__(k=k, per_class=True, backend=backend, index=index)
