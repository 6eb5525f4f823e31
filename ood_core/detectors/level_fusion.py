r"""Score pyramid: k-NN scores per feature level, standardised, then fused.

A pooled feature pyramid (:mod:`ood_core.features`, ``mode="pool"``) is one
embedding made of contiguous column blocks, one per backbone level. A single
k-NN over the concatenation lets the widest block dominate the distance (the
deepest EfficientNet-Lite0 level is 1,280 of 2,048 columns at grid 2). The
score pyramid instead scores **each level on its own** and puts the scores on
one scale before combining them, the multi-layer ensemble idea of Lee, Lee,
Lee & Shin (NeurIPS 2018, "A Simple Unified Framework for Detecting
Out-of-Distribution Samples and Adversarial Attacks") without a trained
combiner, with the k-NN score of Sun, Ming, Zhu & Li (ICML 2022) per level.

For level :math:`l` (its block of columns, L2-normalised row by row) and
neighbour rank :math:`k`:

.. math::

    s_{l,k}(x) = \lVert z_l(x) - z_{l,(k)}(x) \rVert_2

the distance to the k-th nearest reference embedding of that level. Each
component is standardised against the **reference set's own leave-one-out
scores** :math:`r_{l,k}` (every reference point scored without itself), which
is what makes the components comparable whatever their dimension:

- ``"zscore"``: :math:`(s - \mathrm{mean}(r)) / \mathrm{std}(r)`;
- ``"robust"``: :math:`(s - \mathrm{median}(r)) / (1.4826\,\mathrm{MAD}(r))`;
- ``"rank"``: :math:`-\log p` with the conformal p-value
  :math:`p = (1 + \#\{r \ge s\}) / (n_\mathrm{ref} + 1)`
  (:mod:`ood_core.calibration`); bounded by :math:`\log(n_\mathrm{ref}+1)`, so
  every sample beyond the whole reference ties.

The fused score is the mean (``fusion="mean"``) or maximum (``"max"``) of the
standardised components. Higher = more OOD; a fused z-score of 0 is "as typical
as the average reference sample".

``levels="auto"`` keeps only the levels that carry the reference's class
structure: with labels given to ``fit``, each level's leave-one-out 1-NN
classification accuracy on the reference is measured, and the levels within
``level_tolerance`` of the best level are scored (e.g. on Fashion-MNIST only
the two deepest EfficientNet-Lite0 levels, on 8x8 digits the four upper
ones; see ``benchmarks/results/robustness.txt``). Low levels that describe
texture shared by all classes then no longer dilute the fused score. Without
labels every level is used.

``k`` may be one integer, a list of integers (a score pyramid over levels *and*
k, robust to the choice of k), or ``"auto"``: :func:`adaptive_k` of the
reference size (per class when labels are given to ``fit``), so 20 and 2,000
images per class get a k that suits them.

Unsupervised use (no trusted reference): ``fit_score(X)`` fits on the scored
set itself; every sample's neighbours are the *other* samples, and the
standardisation uses those same leave-one-out scores. With a trusted reference,
``fit_reference_scores(X_ref)`` fits the same way and returns the reference's
own fused leave-one-out scores (what trusted rows and calibration use), on the
scale of the later ``score_samples`` calls.

Measured in ``benchmarks/robustness.py`` (results in
``benchmarks/results/robustness.txt``).
"""


import numpy as np

from ..calibration import conformal_p_values
from ..errors import OODInputError
from ..neighbors import NeighborIndex, check_backend, check_index
from ..validation import as_embeddings, check_flag, check_number, check_positive_int, check_same_dim
from .base import (
    Detector,
    adaptive_k,
    check_choice,
    check_fraction,
    check_k,
    check_levels,
    l2_normalize,
    label_list,
    level_part,
    level_slices,
    loo_label_accuracy,
    near_best,
)

__all__ = ["FUSIONS", "STANDARDIZERS", "LevelFusionDetector", "adaptive_k", "level_slices"]

#: Standardisations of one level's scores against its reference scores.
STANDARDIZERS = ("zscore", "robust", "rank")
#: Ways to combine the standardised components.
FUSIONS = ("mean", "max")

_MAD_TO_STD = 1.4826  # MAD of a normal distribution times this = its standard deviation
_REF_NAME = "reference embeddings"
_SCORED_NAME = "scored embeddings"


def _labelled_rows(y):
    """Indices of the rows of the object label array ``y`` that carry a label (not None)."""
    return np.flatnonzero(np.array([label is not None for label in y], dtype=bool))


class LevelFusionDetector(Detector):
    """Per-level k-NN scores, standardised on the reference's leave-one-out scores, fused.

    See the module docstring for the formulas. Detector contract of
    :class:`ood_core.detectors.Detector`: ``fit(X_ref, y_ref=None)`` returns
    self, ``score_samples(X)`` gives ``(N,)`` float64 scores (higher = more OOD),
    ``fit_score(X)`` scores the fitted set with self-matches excluded,
    ``fit_reference_scores(X_ref)`` does the same for a trusted reference (its
    leave-one-out scores on the scale of later ``score_samples`` calls),
    ``get_params()`` is JSON-serialisable. Labels are never required; when
    given to ``fit``/``fit_score`` they only set ``k="auto"`` from the smallest
    class and pick ``levels="auto"``; a missing label (None or NaN) marks an
    unlabelled row, left out of both.

    Args:
        level_dims: column count of each pyramid level, in embedding order
            (``channels[l] * grid**2`` for ``PyramidExtractor(mode="pool")``);
            must sum to the embedding dimension.
        levels: indices of the levels to score, None (all), or ``"auto"``
            (levels whose leave-one-out 1-NN accuracy on the labelled reference
            is within ``level_tolerance`` of the best level; all levels when
            ``fit`` gets no labels).
        level_tolerance: the ``"auto"`` rule's accuracy margin.
        k: neighbour rank(s): an int, a list of ints (each scored and
            standardised separately, then fused), or ``"auto"``
            (:func:`adaptive_k` with ``k_fraction`` and ``k_max``).
        k_fraction, k_max: the ``"auto"`` rule.
        standardize: ``"zscore"``, ``"robust"`` or ``"rank"`` (see module docstring).
        fusion: ``"mean"`` or ``"max"``.
        normalize: L2-normalise each level's block before the search.
        backend, index: neighbour search, see :mod:`ood_core.neighbors`.

    Fitted attributes: ``ks_`` (resolved k list), ``levels_`` (scored level
    indices), ``level_accuracy_`` (per-level leave-one-out 1-NN accuracy, or
    None without labels / with fixed levels), ``slices_``, ``neighbors_``
    (one :class:`~ood_core.neighbors.NeighborIndex` per scored level),
    ``reference_scores_`` (``(n_ref, n_components)`` leave-one-out raw scores),
    ``loc_`` / ``scale_`` (per component), ``n_samples_fit_``,
    ``n_features_in_``.
    """

    method = "level_fusion"
    label = "Score pyramid (per-level k-NN, fused)"
    summary = "Each pyramid level scored by k-NN, standardised on the reference, averaged; multi-level embeddings"
    _param_names = (
        "level_dims", "levels", "level_tolerance", "k", "k_fraction", "k_max", "standardize", "fusion",
        "normalize", "backend", "index",
    )

    def __init__(
        self,
        *,
        level_dims=None,
        levels=None,
        level_tolerance=0.05,
        k="auto",
        k_fraction=0.1,
        k_max=50,
        standardize="zscore",
        fusion="mean",
        normalize=True,
        backend="auto",
        index="flat",
    ):
        slices = level_slices(level_dims) if level_dims is not None else None
        self.level_dims = [s.stop - s.start for s in slices] if slices is not None else None
        if levels is not None and slices is None:
            raise OODInputError(f"levels={levels!r} needs level_dims (the width of every level); pass both.")
        if levels is not None and not (isinstance(levels, str) and levels == "auto"):
            levels = check_levels(levels, len(slices))
        self.levels = levels
        self.level_tolerance = check_number(level_tolerance, "level_tolerance", low=0, high=1,
                                            hint=" (an accuracy margin)")
        self.k = check_k(k)
        self.k_fraction = check_fraction(k_fraction, "k_fraction")
        self.k_max = check_positive_int(k_max, "k_max")
        self.standardize = check_choice(standardize, STANDARDIZERS, "standardize")
        self.fusion = check_choice(fusion, FUSIONS, "fusion")
        self.normalize = check_flag(normalize, "normalize")
        self.backend = check_backend(backend)
        self.index = check_index(index, backend)

    # ----------------------------------------------------------------- helpers

    def _resolve_ks(self, n_ref, y):
        if self.k != "auto":
            ks = [self.k] if isinstance(self.k, int) else list(self.k)
        else:
            n = n_ref - 1  # leave-one-out neighbours available to every reference point
            if y is not None:  # checked by _labels: one label per reference row, None = unlabelled
                _, counts = np.unique(y[_labelled_rows(y)].astype(str), return_counts=True)
                n = int(counts.min())
            ks = [adaptive_k(max(n, 1), fraction=self.k_fraction, k_max=self.k_max)]
        if max(ks) >= n_ref:
            raise OODInputError(
                f"k={max(ks)} but the reference set has only {n_ref} samples; leave-one-out "
                f"scoring of the reference needs k < {n_ref}: lower k or add reference samples."
            )
        return ks

    def _blocks(self, X, name):
        if self.level_dims is not None and X.shape[1] != sum(self.level_dims):
            raise OODInputError(
                f"{name} have dimension {X.shape[1]} but level_dims {self.level_dims} sum to "
                f"{sum(self.level_dims)}; pass the level widths of the extractor that made them."
            )
        out = []
        all_slices = level_slices(self.level_dims or [X.shape[1]])
        for sl in self.slices_:
            block = X[:, sl]
            part = level_part(sl, all_slices.index(sl), len(all_slices))
            out.append(l2_normalize(block, name, part) if self.normalize else np.ascontiguousarray(block))
        return out

    def _raw_scores(self, X=None):
        """``(N, n_components)`` raw k-NN distances; ``X=None`` = fitted set, self excluded."""
        k_top = max(self.ks_)
        cols = []
        blocks = None if X is None else self._blocks(X, _SCORED_NAME)
        for i, nn in enumerate(self.neighbors_):
            dist, _ = nn.kneighbors(None if blocks is None else blocks[i], k=k_top)
            cols.extend(dist[:, k - 1] for k in self.ks_)
        return np.stack(cols, axis=1)

    def _standardize(self, raw):
        if self.standardize == "rank":
            return np.stack(
                [-np.log(conformal_p_values(self.reference_scores_[:, j], raw[:, j]))
                 for j in range(raw.shape[1])],
                axis=1,
            )
        return (raw - self.loc_) / self.scale_

    def _fuse(self, z):
        return z.mean(axis=1) if self.fusion == "mean" else z.max(axis=1)

    # ----------------------------------------------------------------- contract
    # The base class's fit / score_samples / fit_score / fit_reference_scores call the hooks
    # _labels, _fit, _score and _fit_score below (fit_reference_scores = fit_score here: a
    # trusted reference is read exactly like a set that scores itself).

    #: scoring never reads the scored samples' labels
    _score_uses_labels = False

    def _labels(self, y, num_rows, name):
        """Reference labels as a 1-D object array, ``None`` where a label is missing (they only size ``k="auto"`` and
        pick ``levels="auto"``, both from the labelled rows), or None without any label."""
        if y is None:
            return None
        labels = label_list(y, num_rows, name)  # None where missing (None / NaN); 1 and "1" refused
        if all(label is None for label in labels):
            return None
        return np.asarray(labels, dtype=object)

    def _level_accuracy(self, neighbors, blocks, y):
        """Leave-one-out 1-NN label accuracy per level among the labelled reference rows."""
        rows = _labelled_rows(y)
        if rows.size == y.size:
            return loo_label_accuracy(neighbors, y)
        return loo_label_accuracy(
            [NeighborIndex(backend=self.backend, index=self.index).fit(block[rows]) for block in blocks], y[rows])

    def _fit_from(self, X, y):
        X = as_embeddings(X, _REF_NAME, min_rows=2)
        all_slices = level_slices(self.level_dims or [X.shape[1]])  # None: the whole embedding is one level
        self.ks_ = self._resolve_ks(X.shape[0], y)
        if self.levels == "auto":
            self.slices_ = all_slices
            blocks = self._blocks(X, _REF_NAME)
            neighbors = [NeighborIndex(backend=self.backend, index=self.index).fit(block) for block in blocks]
            self.level_accuracy_ = None if y is None else self._level_accuracy(neighbors, blocks, y)
            if self.level_accuracy_ is None:
                chosen = list(range(len(all_slices)))
            else:
                chosen = np.flatnonzero(near_best(self.level_accuracy_, self.level_tolerance)).tolist()
            self.neighbors_ = [neighbors[i] for i in chosen]
        else:
            chosen = self.levels if self.levels is not None else list(range(len(all_slices)))
            self.level_accuracy_ = None
            self.slices_ = [all_slices[i] for i in chosen]
            self.neighbors_ = [
                NeighborIndex(backend=self.backend, index=self.index).fit(block)
                for block in self._blocks(X, _REF_NAME)
            ]
        self.levels_ = list(chosen)
        self.slices_ = [all_slices[i] for i in chosen]
        raw = self._raw_scores(None)
        self.reference_scores_ = raw
        if self.standardize == "robust":
            loc = np.median(raw, axis=0)
            scale = _MAD_TO_STD * np.median(np.abs(raw - loc), axis=0)
        else:
            loc = raw.mean(axis=0)
            scale = raw.std(axis=0)
        # A constant component (e.g. duplicated reference images at distance 0) carries no
        # ranking information; scale 1 keeps it finite instead of dividing by zero. "Constant" is relative
        # to the distances' own size below 1: with normalize=False, embeddings of a tiny scale (distances
        # ~1e-15) have a spread below 1e-12 that still ranks them, and scale 1 would put every score at 0.
        self.loc_ = loc
        self.scale_ = np.where(scale > 1e-12 * np.minimum(1.0, np.abs(loc)), scale, 1.0)
        self.n_samples_fit_ = X.shape[0]
        self.n_features_in_ = X.shape[1]
        return raw

    def _fit(self, X, labels):
        """Fit on reference embeddings ``X``; ``labels`` (optional) only set ``k="auto"`` / ``levels="auto"``."""
        self._fit_from(X, labels)

    def _fit_score(self, X, labels):
        r"""Fit on ``X`` and return its fused leave-one-out scores.

        Row :math:`i` gets :math:`\mathrm{fuse}_{l,k}\, t_{l,k}(r_{l,k,i})` with
        :math:`r_{l,k,i} = \lVert z_l(x_i) - z_{l,(k)}(x_i) \rVert_2` its k-th neighbour distance among the
        *other* reference rows and :math:`t_{l,k}` the standardisation fitted on :math:`r_{l,k}` (module
        docstring): the scale of :meth:`score_samples`. Serves ``fit_score`` (unsupervised use) and
        ``fit_reference_scores`` (a trusted reference's own scores, for trusted rows and calibration).
        """
        return self._fuse(self._standardize(self._fit_from(X, labels)))

    def _score(self, X, labels):
        """Fused scores of (validated) ``X`` against the fitted reference, no self-exclusion."""
        return self._fuse(self._standardize(self._raw_scores(X)))

    def component_scores(self, X):
        """``(N, len(levels) * len(ks_))`` standardised scores, level-major, before fusion."""
        self._check_fitted()
        X = as_embeddings(X, _SCORED_NAME)
        check_same_dim(np.empty((0, self.n_features_in_), np.float32), X, _REF_NAME, _SCORED_NAME)
        return self._standardize(self._raw_scores(X))

    def get_params(self):
        params = super().get_params()
        params["level_dims"] = list(self.level_dims) if self.level_dims is not None else None
        params["levels"] = self.levels if self.levels in (None, "auto") else list(self.levels)
        params["k"] = self.k if not isinstance(self.k, list) else list(self.k)
        return params
