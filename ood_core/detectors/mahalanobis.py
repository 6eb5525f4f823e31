"""Mahalanobis-distance detector (Lee et al., NeurIPS 2018). Higher = more OOD."""

import numpy as np

from ..errors import OODInputError
from .base import REFERENCE_NAME, SCORED_NAME, Detector, check_bool, l2_normalize

#: Mahalanobis builds a ``(D, D)`` covariance; above this dimension that is too
#: large to be useful, and the error asks for a reduction first.
MAHALANOBIS_MAX_DIM = 8192

_SHRINKAGE_HELP = 'shrinkage must be "ledoit_wolf", a float in [0, 1], or None'


def _check_shrinkage(shrinkage):
    if shrinkage is None or shrinkage == "ledoit_wolf":
        return shrinkage
    if isinstance(shrinkage, (int, float, np.integer, np.floating)) and not isinstance(
        shrinkage, bool
    ):
        value = float(shrinkage)
        if 0.0 <= value <= 1.0:
            return value
    raise OODInputError(f"shrinkage={shrinkage!r} is not valid; {_SHRINKAGE_HELP}.")


def _eigh(cov):
    """Eigen-decomposition of a symmetric covariance: LAPACK's divide-and-conquer driver (``evd``), then the
    QR driver (``ev``) if that fails. SciPy's default driver (``evr``) stopped with "Internal Error" on a
    valid shrunk covariance of real embeddings (1,280 columns, 48 rows: over a thousand equal eigenvalues),
    which ``evd`` and ``ev`` both decompose with a residual below 1e-17."""
    from scipy.linalg import LinAlgError, eigh

    try:
        return eigh(cov, driver="evd")
    except LinAlgError:
        return eigh(cov, driver="ev")


class MahalanobisDetector(Detector):
    r"""Mahalanobis-distance OOD score (Lee, Lee, Lee & Shin, NeurIPS 2018).

    "A Simple Unified Framework for Detecting Out-of-Distribution Samples and
    Adversarial Attacks". With class means :math:`\mu_c` and one covariance
    :math:`\Sigma` shared by all classes (estimated on the class-centred data
    :math:`x_i - \mu_{y_i}`):

    .. math::

        s(x) = \min_c \, (x - \mu_c)^\top \Sigma^{-1} (x - \mu_c)

    i.e. the *squared* Mahalanobis distance to the closest class. With
    ``class_conditional=False`` there is a single mean and covariance (one
    Gaussian; ``y`` is ignored). Higher = more OOD.

    Covariance estimates, by ``shrinkage``:

    - ``"ledoit_wolf"`` (default): :class:`sklearn.covariance.LedoitWolf`
      (data already centred, ``assume_centered=True``).
    - a float ``a`` in ``[0, 1]``: :math:`(1-a) S + a\,\frac{\mathrm{tr}\,S}{D} I`
      with :math:`S` the maximum-likelihood covariance (divisor N).
    - ``None``: :math:`S + \epsilon I` with the small jitter
      :math:`\epsilon = 10^{-6}\,\mathrm{tr}\,S / D`.

    The inverse is taken stably from an eigen-decomposition of the symmetric
    covariance (a pseudo-inverse: directions with eigenvalue below
    ``D * eps * max_eigenvalue`` are dropped, as in ``scipy.linalg.pinvh``);
    scoring whitens the data once, so cost is ``O(N * C * D)`` for C classes.

    ``fit_score`` is plain ``fit`` then ``score_samples``: the model is a few
    means and one covariance, so no self-match exclusion is applied (each point
    contributes to the mean and covariance it is scored against).

    Args:
        class_conditional: one mean per class (needs ``y`` at fit) and a tied
            covariance; False for a single Gaussian.
        shrinkage: covariance estimator, see above.
    """

    method = "mahalanobis"
    label = "Mahalanobis"
    summary = "Squared Mahalanobis distance to the closest class mean (needs labels unless class_conditional=False)"
    _param_names = ("class_conditional", "shrinkage")

    def __init__(self, *, class_conditional=True, shrinkage="ledoit_wolf"):
        self.class_conditional = check_bool(class_conditional, "class_conditional")
        self.shrinkage = _check_shrinkage(shrinkage)

    # Scoring takes the min over all classes, so only fit needs labels.
    _score_uses_labels = False

    @property
    def requires_labels(self):
        return self.class_conditional

    def _without_labels_hint(self):
        return ", or use class_conditional=False for a single Gaussian"

    def _covariance(self, centred):
        """Shrunk covariance ``(D, D)`` float64 of already-centred data."""
        n, d = centred.shape
        if self.shrinkage == "ledoit_wolf":
            from sklearn.covariance import LedoitWolf

            return LedoitWolf(assume_centered=True).fit(centred).covariance_
        emp = centred.T @ centred / n
        mu = np.trace(emp) / d
        if self.shrinkage is None:
            jitter = 1e-6 * mu if mu > 0 else 1e-12
            return emp + jitter * np.eye(d)
        a = self.shrinkage
        return (1.0 - a) * emp + a * mu * np.eye(d)

    def _fit(self, X, labels):
        d = X.shape[1]
        if d > MAHALANOBIS_MAX_DIM:
            raise OODInputError(
                f"{REFERENCE_NAME} have dimension {d}, too large for a ({d}, {d}) covariance "
                f"(limit {MAHALANOBIS_MAX_DIM}); reduce them first (PCA/UMAP, or pooled "
                "feature levels)."
            )
        X64 = X.astype(np.float64)
        if self.class_conditional:
            classes, codes = labels
            means = np.zeros((len(classes), d))
            np.add.at(means, codes, X64)
            means /= np.bincount(codes, minlength=len(classes))[:, None]
        else:
            classes, codes = [None], np.zeros(X.shape[0], dtype=np.int64)
            means = X64.mean(axis=0, keepdims=True)
        cov = self._covariance(X64 - means[codes])

        evals, evecs = _eigh(cov)
        keep = evals > max(evals.max(), 0.0) * d * np.finfo(np.float64).eps
        if not keep.any():
            singletons = self.class_conditional and len(classes) == X.shape[0]
            raise OODInputError(
                f"{REFERENCE_NAME} have zero variance (all rows identical within their class"
                + (f": each of the {len(classes)} classes has a single sample" if singletons else "")
                + "); Mahalanobis distance is undefined: use more varied reference samples"
                + (" (at least 2 different samples in some class), or, with \"mahalanobis\", class_conditional=False "
                   "for one Gaussian over all of them." if singletons else ".")
            )
        # x -> W^T x whitens: ||W^T (x - mu)||^2 = (x - mu)^T pinv(cov) (x - mu).
        whitening = evecs[:, keep] / np.sqrt(evals[keep])
        self.classes_ = classes
        self.means_ = means
        self.covariance_ = cov
        self.precision_ = whitening @ whitening.T
        self.whitening_ = whitening
        self.whitened_means_ = means @ whitening

    def _score(self, X, labels):
        z = X.astype(np.float64) @ self.whitening_
        m = self.whitened_means_
        sq = (z * z).sum(1)[:, None] - 2.0 * z @ m.T + (m * m).sum(1)[None, :]
        return np.maximum(sq.min(axis=1), 0.0)


class MahalanobisPlusPlusDetector(Detector):
    """Class-conditional Mahalanobis on L2-normalised features (Mueller & Hein 2025).

    Args:
        shrinkage: covariance estimator of
            :class:`~ood_core.detectors.MahalanobisDetector` (``"ledoit_wolf"``,
            a float in [0, 1], or None).

    Fitted attribute: ``mahalanobis_`` (the inner detector on normalised rows).
    """

    method = "mahalanobis_pp"
    label = "Mahalanobis++"
    summary = "Class-conditional Mahalanobis on L2-normalised embeddings (needs labels)"
    _param_names = ("shrinkage",)
    _score_uses_labels = False

    @property
    def requires_labels(self):
        return True

    def __init__(self, *, shrinkage="ledoit_wolf"):
        self.shrinkage = MahalanobisDetector(shrinkage=shrinkage).shrinkage

    def _fit(self, X, labels):
        classes, codes = labels
        self.mahalanobis_ = MahalanobisDetector(class_conditional=True, shrinkage=self.shrinkage).fit(
            l2_normalize(X, REFERENCE_NAME), [classes[c] for c in codes]
        )

    def _score(self, X, labels):
        return self.mahalanobis_.score_samples(l2_normalize(X, SCORED_NAME))
