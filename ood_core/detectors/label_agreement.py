"""Neighbour label agreement: a k-NN wrong-label score. Higher = label more likely wrong."""

import numpy as np

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
    reference_codes,
)


class LabelAgreementDetector(Detector):
    r"""Neighbour label agreement: a k-NN wrong-label score.

    The idea behind cleanlab's label-issue detection from features (Northcutt,
    Jiang & Chuang, JAIR 2021, "Confident Learning"; the *self-confidence*
    ranking of Kuan & Mueller 2022), implemented directly: k-NN class
    probabilities from the sample's neighbours, then

    .. math::

        p(c \mid x) = \frac{1}{k} \sum_{j \in N_k(x)} [\,y_j = c\,], \qquad
        s(x) = 1 - p(y_x \mid x)

    where :math:`y_x` is the sample's given label. Votes are **unweighted**
    (each of the k neighbours counts 1/k), so scores lie on the grid
    ``{0, 1/k, ..., 1}``: simple, deterministic and easy to explain ("7 of 10
    neighbours carry another label"). Higher = more likely mislabeled.

    - ``fit(X, y)`` stores the labelled reference.
    - ``fit_score(X, y)`` is the leave-one-out version: a sample never votes
      for itself (exact duplicates of it are other samples and do vote).
    - ``score_samples(X, y)`` scores new samples with their given labels
      against the reference (no exclusion). A label absent from the reference
      gets no votes, so its score is 1.

    Neighbours are found on L2-normalised rows (``normalize=True``), by exact
    brute-force search with the default ``index="flat"``; ties at the k-th
    distance go to the lower reference index (deterministic, the same on every
    backend).

    Args:
        k: number of voting neighbours.
        normalize: L2-normalise rows before measuring distances.
        backend: neighbour search: ``"auto"`` (faiss if installed, else
            scikit-learn), ``"faiss"`` or ``"sklearn"``; see
            :mod:`ood_core.neighbors`.
        index: ``"flat"`` (exact; the same scores on every backend), or the
            approximate faiss indexes ``"ivf"`` / ``"hnsw"`` for large sets.
    """

    method = "label_agreement"
    task = "label_issues"
    label = "Label agreement"
    summary = "Share of the k nearest neighbours that carry another label"
    _param_names = ("k", "normalize", "backend", "index")

    def __init__(self, *, k=20, normalize=True, backend="auto", index="flat"):
        self.k = check_positive_int(k, "k")
        self.normalize = check_bool(normalize, "normalize")
        self.backend, self.index = check_search(backend, index)

    @property
    def requires_labels(self):
        return True

    def _prepare(self, X, name):
        return l2_normalize(X, name) if self.normalize else X

    def _fit(self, X, labels):
        self.classes_, self.codes_ = labels
        self.neighbors_ = NeighborIndex(backend=self.backend, index=self.index).fit(
            self._prepare(X, REFERENCE_NAME)
        )

    def _disagreement(self, neighbour_idx, given_codes):
        """1 - fraction of the k neighbours whose reference label code equals ``given_codes``."""
        agree = (self.codes_[neighbour_idx] == given_codes[:, None]).sum(axis=1)
        return 1.0 - agree / self.k

    def _score(self, X, labels):
        n_ref = self.codes_.shape[0]
        if self.k > n_ref:
            raise OODInputError(
                f"k={self.k} but the reference set has only {n_ref} samples (k must be <= "
                f"{n_ref}); lower k or add reference samples."
            )
        # Map the scored labels onto reference codes; a label the reference never saw
        # gets -1, which no neighbour carries (score 1).
        given = reference_codes(labels, self.classes_, "y (labels of the scored samples)")
        _, idx = self.neighbors_.kneighbors(self._prepare(X, SCORED_NAME), k=self.k)
        return self._disagreement(idx, given)

    def _fit_score(self, X, labels):
        n_ref = X.shape[0]
        if self.k >= n_ref:
            raise OODInputError(
                f"k={self.k} but the reference set has only {n_ref} samples; leave-one-out "
                f"scoring needs k < {n_ref}: lower k or add reference samples."
            )
        self._fit(X, labels)
        _, idx = self.neighbors_.kneighbors(k=self.k)  # each sample left out of its own
        return self._disagreement(idx, self.codes_)
