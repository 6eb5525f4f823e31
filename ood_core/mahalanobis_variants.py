r"""Mahalanobis++ and relative Mahalanobis: two fixes of the class-conditional Mahalanobis score.

Both reuse :class:`ood_core.detectors.MahalanobisDetector` (class means, one
tied, shrunk covariance; score = squared distance to the closest class).
Higher = more OOD.

- :class:`MahalanobisPlusPlusDetector` (Mueller & Hein, ICML 2025,
  "Mahalanobis++: Improving OOD Detection via Feature Normalization"):
  :math:`z = x / \lVert x \rVert_2`, then
  :math:`s(x) = \min_c (z - \mu_c)^\top \Sigma^{-1} (z - \mu_c)` with the means
  and covariance estimated on the normalised features. Removes the feature-norm
  variation that makes the plain score collapse on some backbones.
- :class:`RelativeMahalanobisDetector` (Ren, Fort, Liu, Roy, Padhy &
  Lakshminarayanan 2021, "A Simple Fix to Mahalanobis Distance for Improving
  Near-OOD Detection"):
  :math:`s(x) = \min_c [\mathrm{MD}_c(x) - \mathrm{MD}_0(x)]
  = \min_c \mathrm{MD}_c(x) - \mathrm{MD}_0(x)`, with :math:`\mathrm{MD}_0`
  the squared distance under one "background" Gaussian (mean and covariance of
  all reference features). Directions in which every class varies alike stop
  counting. Optional L2 normalisation first (``normalize=True``).

``fit_score`` is ``fit`` then ``score_samples`` (no self-exclusion), as for
:class:`~ood_core.detectors.MahalanobisDetector`.
"""

import numpy as np

from .detectors import Detector, MahalanobisDetector
from .errors import OODInputError
from .score_fusion import _unit_rows

__all__ = ["MahalanobisPlusPlusDetector", "RelativeMahalanobisDetector"]


class _NormalizedMahalanobisBase(Detector):
    _param_names = ("shrinkage",)
    _score_uses_labels = False

    @property
    def requires_labels(self):
        return True

    def _prepare(self, X, name):
        return _unit_rows(X, name) if getattr(self, "normalize", True) else X

    def _inner(self, class_conditional):
        return MahalanobisDetector(class_conditional=class_conditional, shrinkage=self.shrinkage)


class MahalanobisPlusPlusDetector(_NormalizedMahalanobisBase):
    """Class-conditional Mahalanobis on L2-normalised features (Mueller & Hein 2025).

    Args:
        shrinkage: covariance estimator of
            :class:`~ood_core.detectors.MahalanobisDetector` (``"ledoit_wolf"``,
            a float in [0, 1], or None).

    Fitted attribute: ``mahalanobis_`` (the inner detector on normalised rows).
    """

    method = "mahalanobis_pp"

    def __init__(self, *, shrinkage="ledoit_wolf"):
        self.shrinkage = MahalanobisDetector(shrinkage=shrinkage).shrinkage

    def _fit(self, X, labels):
        classes, codes = labels
        self.mahalanobis_ = self._inner(True).fit(
            self._prepare(X, "reference embeddings"), [classes[c] for c in codes]
        )

    def _score(self, X, labels):
        return self.mahalanobis_.score_samples(self._prepare(X, "scored embeddings"))


class RelativeMahalanobisDetector(_NormalizedMahalanobisBase):
    """Relative Mahalanobis distance (Ren et al. 2021), optionally on L2-normalised rows.

    Args:
        shrinkage: covariance estimator of both Gaussians (see
            :class:`~ood_core.detectors.MahalanobisDetector`).
        normalize: L2-normalise rows first (Mahalanobis++ style).

    Fitted attributes: ``class_model_`` (class means, tied covariance) and
    ``background_model_`` (one Gaussian on all reference rows).
    """

    method = "relative_mahalanobis"
    _param_names = ("shrinkage", "normalize")

    def __init__(self, *, shrinkage="ledoit_wolf", normalize=False):
        self.shrinkage = MahalanobisDetector(shrinkage=shrinkage).shrinkage
        if not isinstance(normalize, (bool, np.bool_)):
            raise OODInputError(f"normalize={normalize!r} is not valid; pass True or False.")
        self.normalize = bool(normalize)

    def _fit(self, X, labels):
        classes, codes = labels
        Z = self._prepare(X, "reference embeddings")
        self.class_model_ = self._inner(True).fit(Z, [classes[c] for c in codes])
        self.background_model_ = self._inner(False).fit(Z)

    def _score(self, X, labels):
        Z = self._prepare(X, "scored embeddings")
        return self.class_model_.score_samples(Z) - self.background_model_.score_samples(Z)
