"""Conformal p-values: calibrated versions of any OOD or wrong-label score.

A raw detector score (k-NN distance, Mahalanobis distance, fused level score)
has no fixed scale: a threshold that flags 1% of in-distribution images on one
backbone flags 20% on another. The split-conformal p-value (Vovk, Gammerman &
Shafer 2005, "Algorithmic Learning in a Random World"; for OOD detection:
Bates, Candes, Lei, Romano & Sesia 2023, "Testing for outliers with conformal
p-values") turns the score into a rank against the reference set's own
scores:

.. math::

    p(x) = \\frac{1 + \\#\\{r \\in \\mathrm{ref} : s(r) \\ge s(x)\\}}{n_\\mathrm{ref} + 1}

where :math:`s(r)` are the **leave-one-out** scores of the reference samples
(each scored without itself, e.g. ``detector.fit_reference_scores(X_ref)``) and
:math:`s(x)` the score of a new sample against the full reference
(``detector.score_samples(X)``).

Conventions:

- Scores are **higher = more OOD** (the product's convention, unchanged).
- p-values run the **other way: a small p is more extreme** (more OOD / more
  suspicious). ``p = 1 / (n_ref + 1)`` (the smallest possible value) means
  "scores higher than every reference sample"; ``p = 1`` means "scores at most
  as high as the lowest reference sample". Ties count against the sample
  (``>=``), so p is conservative.
- Guarantee: if the scored sample and the reference samples are exchangeable
  (the sample is in-distribution and scored the same way as the leave-one-out
  reference scores), then ``P(p <= alpha) <= alpha`` for every ``alpha`` in
  ``[0, 1]``, and p is (discretely) uniform on ``{1, ..., n_ref + 1} / (n_ref + 1)``
  when there are no ties. So "flag p <= 0.01" flags about 1% of
  in-distribution samples on any detector and backbone. The guarantee is
  marginal (averaged over reference draws), not per class.

Only numpy is needed; nothing here imports FiftyOne.
"""

import numpy as np

from .errors import NotFittedError, OODInputError
from .validation import as_array, finite_floats

__all__ = ["ConformalCalibrator", "conformal_p_values", "flag_at_alpha"]


def _as_scores(scores, name):
    """Return ``scores`` as a finite 1-D float64 array, or raise naming ``name``."""
    if isinstance(scores, (str, bytes)):
        raise OODInputError(f"{name} must be a 1-D array of numbers, not a string.")
    arr = as_array(scores, name)  # names nested lists of different lengths and complex numbers
    arr = finite_floats(arr, name, "recompute those scores or drop the samples.", where="positions")
    if arr.ndim != 1:
        raise OODInputError(
            f"{name} must be 1-D with one score per sample; got shape {arr.shape}. "
            "Pass the (N,) output of score_samples / fit_reference_scores."
        )
    return arr


def conformal_p_values(reference_scores, scores):
    """Conformal p-values of ``scores`` against leave-one-out ``reference_scores``.

    ``p_i = (1 + #{r : reference_scores[r] >= scores[i]}) / (n_ref + 1)``.

    Args:
        reference_scores: ``(n_ref,)`` leave-one-out scores of the reference
            (calibration) samples, higher = more OOD; e.g.
            ``detector.fit_reference_scores(X_ref)``.
        scores: ``(N,)`` scores of the samples to calibrate, same detector and
            convention, e.g. ``detector.score_samples(X)``.

    Returns:
        ``(N,)`` float64 p-values in ``[1 / (n_ref + 1), 1]``; **small = more
        extreme** (more OOD). Exchangeable in-distribution samples get uniform
        p-values.

    Raises:
        OODInputError: a non-1-D, empty (reference) or non-finite input.
    """
    ref = _as_scores(reference_scores, "reference_scores")
    if ref.size == 0:
        raise OODInputError(
            "reference_scores is empty; conformal p-values need the leave-one-out scores "
            "of at least one reference sample (more than 1 / alpha for a useful alpha)."
        )
    s = _as_scores(scores, "scores")
    ref_sorted = np.sort(ref)
    # Number of reference scores >= s = n_ref - (number strictly below s).
    at_least = ref.size - np.searchsorted(ref_sorted, s, side="left")
    return (1.0 + at_least) / (ref.size + 1.0)


def _check_alpha(alpha):
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise OODInputError(f"alpha={alpha!r} is not valid; pass a number in (0, 1), e.g. 0.01.")
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise OODInputError(f"alpha={alpha!r} is not valid; pass a number in (0, 1), e.g. 0.01.")
    return alpha


def flag_at_alpha(p_values, alpha):
    """Boolean flags ``p <= alpha``: the samples flagged as OOD at level ``alpha``.

    On exchangeable in-distribution data at most a fraction ``alpha`` is
    flagged in expectation (the conformal guarantee).
    """
    p = _as_scores(p_values, "p_values")
    if ((p <= 0) | (p > 1)).any():
        raise OODInputError(
            "p_values must lie in (0, 1]; pass the output of conformal_p_values, not raw scores."
        )
    return p <= _check_alpha(alpha)


class ConformalCalibrator:
    """Stores leave-one-out reference scores and maps new scores to p-values.

    ::

        cal = ConformalCalibrator().fit(detector.fit_reference_scores(X_ref))
        p = cal.p_values(detector.score_samples(X))   # small p = more OOD
        flagged = cal.flag(detector.score_samples(X), alpha=0.01)

    Fitted attributes: ``reference_scores_`` (sorted ascending) and
    ``n_reference_``. :meth:`get_params` is JSON-serialisable (no
    hyperparameters beyond the method name); :meth:`to_dict` /
    :meth:`from_dict` store and restore the fitted state.
    """

    method = "conformal"

    def fit(self, reference_scores):
        """Store the ``(n_ref,)`` leave-one-out reference scores; returns ``self``."""
        ref = _as_scores(reference_scores, "reference_scores")
        if ref.size == 0:
            raise OODInputError(
                "reference_scores is empty; pass the leave-one-out scores of the reference "
                "samples (detector.fit_reference_scores(X_ref))."
            )
        self.reference_scores_ = np.sort(ref)
        self.n_reference_ = int(ref.size)
        return self

    def _check_fitted(self):
        if getattr(self, "reference_scores_", None) is None:
            raise NotFittedError(
                "this ConformalCalibrator is not fitted yet; call fit(reference_scores) "
                "with the reference set's leave-one-out scores first."
            )

    def p_values(self, scores):
        """``(N,)`` conformal p-values of ``scores`` (small = more OOD)."""
        self._check_fitted()
        return conformal_p_values(self.reference_scores_, scores)

    def flag(self, scores, alpha):
        """Boolean flags ``p <= alpha`` for ``scores``."""
        return flag_at_alpha(self.p_values(scores), alpha)

    def min_attainable_alpha(self):
        """The smallest p-value possible, ``1 / (n_ref + 1)``: smaller alphas flag nothing."""
        self._check_fitted()
        return 1.0 / (self.n_reference_ + 1)

    def get_params(self):
        return {"method": self.method}

    def to_dict(self):
        """JSON-serialisable fitted state."""
        self._check_fitted()
        return {"method": self.method, "reference_scores": self.reference_scores_.tolist()}

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict) or "reference_scores" not in d:
            raise OODInputError(
                'ConformalCalibrator.from_dict needs the dict from to_dict() (with a '
                '"reference_scores" key).'
            )
        if d.get("method", cls.method) != cls.method:
            raise OODInputError(
                f'ConformalCalibrator.from_dict got a state of method {d["method"]!r}; it restores only '
                f'{cls.method!r} states (the dict from ConformalCalibrator.to_dict()).'
            )
        return cls().fit(d["reference_scores"])
