r"""Pyramid k-NN: per-class k-NN on the deepest level and on the whole pyramid, the larger z-score wins.

The product's default OOD detector. It combines four measured facts
(``benchmarks/robustness.py``, 127 OOD conditions over five real image
sources, results in ``benchmarks/results/robustness.txt``; the design sweep in
``benchmarks/pyramid_knn_choices.py``):

1. **Which features** depends on the data: on Fashion-MNIST the deepest
   EfficientNet-Lite0 level separates held-out classes best, on 8x8 digits the
   whole pooled pyramid does (k=1 on all levels 0.980 AUROC where the deepest
   level gives 0.889, 100 per class). Neither wins everywhere, so both are scored.
2. **Per class** neighbours survive a polluted reference: OOD images that slip
   into the trusted set carry random in-distribution labels, so within each
   class there are only a few of them, and the k-th neighbour *inside a class*
   is rarely a polluter even when k is small enough for multi-modal classes.
3. Scores of different feature sets are put on one scale by standardising
   each against the reference set's own leave-one-out scores (the score
   pyramid of :mod:`.level_fusion`), and the **maximum** keeps whichever
   component sees the sample as unusual (the mean of the two: 0.860 mean
   AUROC against 0.872 for the maximum over 86 conditions with a reference).
4. **A component that separates the trusted classes clearly worse sits out**
   (``component_gate``): on natural-object photos the shallow levels follow
   colour and texture, not the category, and their distances add noise to the
   max. With trusted labels, each component's leave-one-out 1-NN label
   accuracy on the reference is measured, and a component more than 0.05 below
   the best one is left out of the max and of the density ratio. Over the 127
   OOD conditions of ``benchmarks/robustness.py`` (the default with the density
   ratio): mean AUROC 0.935 against 0.934 without the gate, 8 losses to the
   best anchor instead of 9, natural objects 0.911 against 0.907; the gate
   changed 11 conditions by more than 0.005, 9 for the better. Margins 0.05 /
   0.1 / 0.2 / 0.02 gave 0.876 / 0.876 / 0.876 / 0.873 on their own
   (``benchmarks/pyramid_knn_choices.py``, 123 conditions, against 0.875 ungated);
   0.02 reacts to the noise of small references.

Without the density ratio below, mean / worst AUROC over the 103 conditions
whose scored set is 20-50% OOD: 0.875 / 0.651 (an earlier release's k-NN on the
deepest level 0.841 / 0.628; the best anchor of each condition, picked after
the fact, 0.877 / 0.506). It loses to that per-condition best in 25 of them,
nearly all near-OOD Fashion-MNIST where k=1 on the deepest level wins.

For a component (a block of columns, rows L2-normalised), class :math:`c`
with reference embeddings :math:`Z_c` and neighbour rank :math:`k`:

.. math::

    s(x) = \min_c \lVert z(x) - z_{c,(k_c)}(x) \rVert_2, \qquad
    \tilde s(x) = \frac{s(x) - \mathrm{mean}(r)}{\mathrm{std}(r)}, \qquad
    \mathrm{score}(x) = \max_{\text{active components}} \tilde s(x)

where :math:`z_{c,(k_c)}(x)` is the :math:`k_c`-th nearest reference embedding of class
:math:`c` (Sun, Ming, Zhu & Li, ICML 2022, applied per class) and :math:`r`
are the reference set's own scores with each point left out of its class.
Components: the deepest level's block and the whole embedding, when
``level_dims`` gives more than one level; the whole embedding otherwise. All
are active, except that with trusted labels (two classes or more) a component
whose leave-one-out 1-NN label accuracy on the reference is more than
``component_gate`` below the best component's is not (fact 4).

``k="auto"``: each class gets its own rank, :math:`k_c` =
``adaptive_k(size of class c, fraction=class_k_fraction)`` (default 5% of the
class, at least 1, at most ``k_max``; rows without a label form one more
group with its own rank), so every class is read at the same share of its
members. On a balanced reference this is the rank the smallest class gives
(the rule of earlier releases); on an **imbalanced** one the smallest class no
longer forces k=1 on the large ones, where a few polluting images then decide
every distance. Measured on 32 imbalanced references
(``benchmarks/imbalanced_reference.py``: Fashion-MNIST and 8x8 digits, 6
classes in with 400..8 or 110..4 reference images, clean or 5% polluted, 50%
or 3% of a class-balanced scored set OOD): each image scored on its own, mean
/ worst AUROC 0.769 / 0.402 with the smallest class's rank, 0.844 / 0.650 per
class (the best single anchor, cleanlab's ``OutOfDistribution``, 0.769 / 0.557;
k=1 k-NN 0.757 / 0.452); with the density ratio and no class-mix gate
(below) 0.712 / 0.278 and 0.755 / 0.425: the ratio misreads the class-mix
difference. An explicit ``k`` is used for every class. Without
labels (or with ``class_conditional=False``) the whole reference is one
class and k is ``adaptive_k(n_ref, fraction=k_fraction)`` (default 2% of the
reference: over the 86 conditions with a reference, their labels withheld,
fractions 0.01 / 0.02 / 0.03 / 0.05 gave mean / worst AUROC 0.860 / 0.500,
0.856 / 0.603, 0.847 / 0.598 and 0.822 / 0.576; on the 4 unsupervised
conditions 0.795 / 0.793 / 0.775 for 0.02 / 0.03 / 0.05).

**Without a trusted reference** (``fit_score``: the set to audit scores
itself, every sample left out of its own neighbours) the search is the same
with one difference: a labelled class is read at
``unsupervised_class_k_fraction`` (15%) of its size instead of 5%. The OOD
images are then inside the classes: images of a class that does not belong
arrive together and carry in-distribution labels (at random, or all as the
most similar class), so inside a class they form a clump, and at 5% a clump
member's k-th neighbour is usually another member. Over 336 such sets
(``benchmarks/unsupervised_k.py``: Fashion-MNIST, 8x8 digits and natural
objects, 15-300 images per class plus held-out-class images numbering 3-50% of
them, three seeds the held-out check does not use), mean / worst AUROC 0.750 /
0.305 at 5%, 0.789 / 0.318 at 10%, **0.800 / 0.363 at 15%**, 0.797 / 0.373 at
20%, 0.789 / 0.373 at 30%; losses to the per-condition best anchor 117 / 65 /
57 / 66 / 87 of 336 (the best anchor of each condition 0.757; at 3% OOD every
fraction gives 0.83-0.85). The cost: a label made of unequal sub-modes (merged
Fashion-MNIST classes, same script) puts 7.5% of its minority sub-modes' images
in the top 5% of the scores at 15% against 6.1% at 5%, at the same AUROC.
``fit`` and :meth:`~ood_core.detectors.Detector.fit_reference_scores`
(a trusted reference) keep ``class_k_fraction``. Without labels the set is
read at ``k_fraction`` (2%) either way: 5% gained at 20-50% OOD (0.735 mean
against 0.719 over the 336) but lost two of the robustness study's four
unsupervised conditions (digits, 10% OOD: 0.910 -> 0.844 and 0.926 -> 0.902,
below k=10 k-NN's 0.928 and 0.923).

**Scored-set density ratio** (``transductive="auto"``, :mod:`.transductive`).
When a batch of at least 20 images is scored against the reference and a
permutation test finds the batch different from the reference (p <= 0.01),
the density-ratio z-score of each scored image (how much denser its
neighbourhood is among the scored images than among the reference ones) is
added to the score above, with a weight from 1 to 2 that grows with how
strongly the batch differs (``transductive_weight="auto"``,
:func:`.transductive.ratio_weight`), and the reference's own scores get their
weighted density-ratio z-score too, so calibrated p-values stay on one scale. Held-out
classes that arrive in numbers crowd together among the scored images, which
the distance to the reference alone cannot see: over the benchmark's 99
conditions with a reference (20-50% of the scored set OOD) the sum reaches a
mean AUROC of 0.959 instead of 0.878 (0.953 / 0.651 mean / worst over all 103,
against 0.875 / 0.651 for the score above alone; 0.950 with the weight fixed
at 1); over 24 conditions where
only 1-10% of the scored set is OOD the test fired once and the mean is 0.872
against 0.868 (``benchmarks/results/robustness.txt``, README "Why the defaults", ``docs/defaults.md``). A batch's
scores then depend on the batch: ``transductive_`` records whether the ratio
was used, and ``transductive="never"`` scores each image on its own.

**Class-mix gate** (``class_mix_gate=0.23``, :mod:`.class_mix`,
:meth:`PyramidKNNDetector.class_mix_shift`, :meth:`PyramidKNNDetector.class_mix_rows`).
The ratio assumes the scored images hold the trusted classes in the trusted
proportions. When the in-distribution-looking scored images hold them in
other proportions (total variation more than 0.23 above what as many images
show by chance), ``"auto"`` compares the scored set with the largest seeded
draw of trusted images in the scored set's class mix instead of the whole
reference, unless the extra images of the over-represented classes lie
farther from their class than its trusted members do: then they are a crowd
of OOD images that resembles the class (:func:`.class_mix.crowd_size`),
not a class mix, and the whole reference is used; :mod:`.class_mix` gives the
rule, its numbers and its measurements.

Higher = more OOD; 0 is "as unusual as the average reference sample" on the
component that finds the sample most unusual (plus the density-ratio z-score
when it is used).
"""

import numpy as np

from ..errors import OODInputError
from ..neighbors import NeighborIndex, group_kth_distances
from ..validation import as_embeddings, check_number, check_positive_int, check_same_dim
from .class_mix import ClassMixGate
from .transductive import MIN_SCORED, DensityRatio, ratio_weight
from .base import (
    REFERENCE_NAME,
    SCORED_NAME,
    Detector,
    adaptive_k,
    check_bool,
    check_choice,
    check_fraction,
    check_search,
    l2_normalize,
    label_list,
    level_part,
    level_slices,
    loo_label_accuracy,
    near_best,
)

__all__ = ["PyramidKNNDetector"]

_UNLABELLED = object()  # the group of reference rows without a label

#: values of ``transductive``
TRANSDUCTIVE_CHOICES = ("auto", "always", "never")
#: largest / smallest trusted class size from which a used density ratio carries a warning (README, Known limits)
IMBALANCE_WARNING = 4
#: with index="flat", groups of at most this many reference rows are searched by float64 matrix products
GEMM_GROUP_ROWS = 4096


class PyramidKNNDetector(ClassMixGate, Detector):
    """Per-class k-NN on the deepest level and on all levels, standardised, max-fused (default OOD detector).

    Formulas and measurements: module docstring. Detector contract of
    :class:`ood_core.detectors.Detector`; labels are optional: given to
    ``fit`` / ``fit_score`` (one per reference row, ``None`` = unlabelled) they
    make the search per class; scoring never uses the scored samples' labels.

    Args:
        level_dims: column count of each pyramid level, in embedding order
            (must sum to the embedding dimension); None = one level.
        k: neighbour rank, or ``"auto"`` (see module docstring).
        class_k_fraction: the ``"auto"`` fraction of each class (per-class search: every class its own rank).
        k_fraction: the ``"auto"`` fraction of the reference size (no labels).
        unsupervised_class_k_fraction: ``class_k_fraction`` when there is no trusted reference and a labelled
            set scores itself (``fit_score``; module docstring, "Without a trusted reference"); ``fit`` and
            ``fit_reference_scores`` (a trusted reference) use ``class_k_fraction``.
        k_max: the ``"auto"`` cap.
        class_conditional: search per class when labels are given (True), or
            one global search that ignores the labels (False).
        component_gate: with trusted labels (two classes or more), a component
            whose leave-one-out 1-NN label accuracy on the reference is more than
            this below the best component's sits out of the max and of the
            density ratio (module docstring); None keeps every component.
        transductive: add the scored-set density ratio (:mod:`.transductive`)
            to the scores of a scored batch: ``"auto"`` when a permutation test
            finds the batch different from the reference (p <= ``transductive_alpha``),
            ``"always"``, or ``"never"``. It needs at least 20 scored samples;
            above 20,000 reference + scored samples its neighbours come from a
            seeded sample of 20,000 (:meth:`.transductive.DensityRatio.compute`);
            it is never used by ``fit_score`` (no reference).
        transductive_alpha: the permutation test's level for ``"auto"``.
        transductive_weight: the density ratio's weight when it is used: ``"auto"`` grows it from 1 to 2
            with the test's effect (:func:`.transductive.ratio_weight`), or a fixed positive number.
        class_mix_gate: with ``transductive="auto"`` and two labelled trusted classes or more, when the
            in-distribution-looking scored images hold the trusted classes in proportions whose total
            variation from the trusted ones exceeds the chance level of as many images by more than this
            (:meth:`class_mix_shift`, :func:`.class_mix.chance_total_variation`), the density ratio compares the scored
            set with a draw of trusted images in the scored set's class mix (:meth:`class_mix_rows`; module
            docstring) instead of the whole reference, unless the excess is gone once the estimated crowd of
            OOD images near the over-represented classes is taken out (:func:`.class_mix.crowd_size`); None always
            uses the whole reference.
        backend, index: neighbour search, see :mod:`ood_core.neighbors`.

    Fitted attributes: ``k_`` (the smallest rank used), ``group_k_`` (the rank of each label group),
    ``components_`` (names: ``"deepest level"``,
    ``"all levels"``), ``classes_`` (number of label groups searched), ``class_size_range_``
    (smallest and largest labelled class, None without two labelled classes),
    ``component_accuracy_`` (leave-one-out 1-NN label accuracy per component,
    None when not gated), ``active_`` (per component: takes part in the max),
    ``loc_`` / ``scale_`` (per component), ``reference_scores_`` (the
    reference's leave-one-out scores), ``member_median_`` (per component and labelled class, the median
    leave-one-out distance of a member to its class's k-th nearest other member; inf when the class is
    too small), ``n_samples_fit_``, ``n_features_in_``.
    After ``score_samples``: ``transductive_`` (whether the density ratio was
    used for that batch, its p-value, effect, weight, ranks and reason, and a
    ``warning`` when it was used although the largest trusted class is at least
    ``IMBALANCE_WARNING`` times the smallest) and
    ``batch_reference_scores_`` (the reference's leave-one-out scores on the
    batch's scale: plus the reference rows' density ratio when it was used;
    calibrate p-values against these).
    """

    method = "pyramid_knn"
    label = "Pyramid k-NN (default)"
    summary = ("k-NN per class on the deepest level and on all levels, each standardised on the reference, "
               "the larger wins, plus the scored set's density ratio when the scored set differs from the "
               "reference; labels optional")
    _param_names = ("level_dims", "k", "class_k_fraction", "k_fraction", "unsupervised_class_k_fraction", "k_max",
                    "class_conditional", "component_gate", "transductive", "transductive_alpha",
                    "transductive_weight", "class_mix_gate", "backend", "index")
    _score_uses_labels = False
    accepts_optional_labels = True

    def __init__(self, *, level_dims=None, k="auto", class_k_fraction=0.05, k_fraction=0.02,
                 unsupervised_class_k_fraction=0.15, k_max=50, class_conditional=True, component_gate=0.05,
                 transductive="auto", transductive_alpha=0.01, transductive_weight="auto", class_mix_gate=0.23,
                 backend="auto", index="flat"):
        slices = level_slices(level_dims) if level_dims is not None else None
        self.level_dims = [s.stop - s.start for s in slices] if slices is not None else None
        self.k = "auto" if k == "auto" else check_positive_int(k, "k")
        fractions = {"class_k_fraction": class_k_fraction, "k_fraction": k_fraction,
                     "unsupervised_class_k_fraction": unsupervised_class_k_fraction}
        for name, value in fractions.items():  # numpy numbers too (np.float32 is no Python float)
            setattr(self, name, check_fraction(value, name))
        self.k_max = check_positive_int(k_max, "k_max")
        self.class_conditional = check_bool(class_conditional, "class_conditional")
        self.component_gate = None if component_gate is None else check_number(
            component_gate, "component_gate", low=0, high=1, hint=" (an accuracy margin) or None")
        self.transductive = check_choice(transductive, TRANSDUCTIVE_CHOICES, "transductive")
        self.transductive_alpha = check_fraction(transductive_alpha, "transductive_alpha")
        if not (isinstance(transductive_weight, str) and transductive_weight == "auto"):
            transductive_weight = check_number(transductive_weight, "transductive_weight", low=0, low_open=True,
                                               hint=' or "auto"')
        self.transductive_weight = transductive_weight
        self.class_mix_gate = None if class_mix_gate is None else check_number(
            class_mix_gate, "class_mix_gate", low=0, high=1, low_open=True, hint=" or None")
        self.backend, self.index = check_search(backend, index)

    @property
    def uses_reference_classes(self):
        return self.class_conditional  # given labels, the neighbours are searched per class

    def fitted_params(self):
        if not hasattr(self, "k_"):
            return {}
        out = {"k": int(self.k_), "components": list(self.components_), "classes": int(self.classes_)}
        if len(set(self.group_k_)) > 1:
            out["k_per_class"] = {"min": int(min(self.group_k_)), "max": int(max(self.group_k_))}
        if self.component_accuracy_ is not None:
            out["component_accuracy"] = {n: round(float(a), 4) for n, a in zip(self.components_,
                                                                            self.component_accuracy_)}
            out["active_components"] = [n for n, a in zip(self.components_, self.active_) if a]
        info = getattr(self, "transductive_", None)
        if info is not None:
            keys = ("used", "p_value", "p_value_at_least", "permutations_run",
                    "effect", "weight", "k_reference", "k_scored", "class_mix_shift",
                    "class_mix_chance", "class_mix_reference", "class_mix_crowd", "class_mix_excess_without_crowd",
                    "pool_sample", "reason", "warning")
            out["transductive"] = {key: info[key] for key in keys if key in info}
        return out

    # ----------------------------------------------------------------- helpers

    def _labels(self, y, num_rows, name):
        """Group codes per row (unlabelled rows share one group), or None without usable labels."""
        if y is None or not self.class_conditional:
            return None
        labels = label_list(y, num_rows, name)  # None where missing; 1 and "1" refused, so values key like text
        if all(label is None for label in labels):
            return None
        keys = [_UNLABELLED if label is None else label for label in labels]
        # the unlabelled group (if any) gets the last code, wherever its rows are
        order = [key for key in dict.fromkeys(keys) if key is not _UNLABELLED] + (
            [_UNLABELLED] if _UNLABELLED in keys else [])
        index = {key: i for i, key in enumerate(order)}
        return np.fromiter((index[key] for key in keys), dtype=np.int64, count=num_rows), _UNLABELLED in index

    def _component_names(self):
        if self.level_dims is None or len(self.level_dims) == 1:
            return ["all levels"]
        return ["deepest level", "all levels"]

    def _components(self, X, name, names):
        if self.level_dims is not None and X.shape[1] != sum(self.level_dims):
            raise OODInputError(
                f"{name} have dimension {X.shape[1]} but level_dims {self.level_dims} sum to "
                f"{sum(self.level_dims)}; pass the level widths of the extractor that made them."
            )
        cols, parts = {"all levels": slice(0, X.shape[1])}, {"all levels": None}
        if self.level_dims is not None:
            cols["deepest level"] = level_slices(self.level_dims)[-1]
            parts["deepest level"] = level_part(cols["deepest level"], len(self.level_dims) - 1, len(self.level_dims))
        return [(n, l2_normalize(X[:, cols[n]], name, parts[n])) for n in names]

    def _resolve_k(self, group_rows, labelled, self_excluded, unsupervised=False):
        """The rank of each group: ``k`` when given, else ``adaptive_k`` of the group's own size (classes of an
        untrusted labelled set that scores itself: ``unsupervised_class_k_fraction``)."""
        if self.k != "auto":
            return [self.k] * len(group_rows)
        if not labelled:
            fraction = self.k_fraction
        else:
            fraction = self.unsupervised_class_k_fraction if unsupervised else self.class_k_fraction
        return [adaptive_k(max(1, rows.size - (1 if self_excluded else 0)), fraction=fraction, k_max=self.k_max)
                for rows in group_rows]

    def _group_rows(self, groups, n_ref):
        if groups is None:
            return [np.arange(n_ref)]
        codes = groups[0]
        return [np.flatnonzero(codes == g) for g in range(int(codes.max()) + 1)]

    def _kth_per_group(self, c, queries=None, groups=None):
        """``(N, groups)``: distance to each group's k-th nearest reference embedding on component ``c`` (its
        own k; inf when the group holds fewer than k). ``queries=None``: the reference rows themselves, each
        left out of its own group. ``groups``: the first ``groups`` groups only (default all).

        Exact either way: with ``index="flat"``, groups of at most ``GEMM_GROUP_ROWS`` rows are searched
        together by :func:`~ood_core.neighbors.group_kth_distances` (one float64 matrix product per chunk of
        queries and group, instead of one index search per group), larger ones by their own index.
        """
        indexes = self.indexes_[c][:groups]
        ks = self.group_k_[:len(indexes)]
        Z = self.reference_components_[c] if queries is None else queries
        out = np.full((Z.shape[0], len(indexes)), np.inf)
        small = [g for g, (rows, _) in enumerate(indexes) if self.index == "flat" and rows.size <= GEMM_GROUP_ROWS]
        if small:
            out[:, small] = group_kth_distances(self.reference_components_[c], [indexes[g][0] for g in small],
                                                [ks[g] for g in small], queries)
        for g in sorted(set(range(len(indexes))) - set(small)):
            (rows, nn), k = indexes[g], ks[g]
            if queries is not None:
                if rows.size >= k:
                    out[:, g] = nn.kneighbors(queries, k=k)[0][:, k - 1]
                continue
            others = np.ones(Z.shape[0], bool)
            others[rows] = False
            if rows.size >= k and others.any():
                out[others, g] = nn.kneighbors(Z[others], k=k)[0][:, k - 1]
            if rows.size > k:
                out[rows, g] = nn.kneighbors(None, k=k)[0][:, k - 1]
        return out

    def _check_k(self, group_rows, unsupervised):
        """Every point must find its groups' k neighbours in some group (its own, itself left out, or another).

        Checked with each point left out of its own group whether the set is trusted or not: a trusted
        reference is standardised on its own leave-one-out scores, which a point without k neighbours
        outside itself would make infinite (every later score NaN or -inf)."""
        sizes = sorted(rows.size for rows in group_rows)
        room = [rows.size - k for rows, k in zip(group_rows, self.group_k_)]  # >= 0: the group offers k
        # a point's own group offers size - 1, another group its full size
        ok = all(r >= 1 or any(o >= 0 for h, o in enumerate(room) if h != g) for g, r in enumerate(room))
        if not ok and len(sizes) == 1 and unsupervised:
            raise OODInputError(
                f"k={self.k_} but only {sizes[0]} sample(s) are scored against each other and a sample is never "
                f"its own neighbour; score at least {self.k_ + 1} samples, lower k, or pass a trusted reference."
            )
        if not ok and len(sizes) == 1:
            raise OODInputError(
                f"k={self.k_} but the {REFERENCE_NAME} have only {sizes[0]} sample(s) and pyramid_knn standardises "
                "its scores on the reference's leave-one-out scores, where a sample is never its own neighbour; "
                f"lower k to at most {sizes[0] - 1}, use k='auto', or add reference samples."
            )
        if not ok:
            raise OODInputError(
                f"k={self.k_} but the reference classes are too small: the largest has {sizes[-1]} sample(s) "
                f"and a sample is never its own neighbour; lower k, use k='auto', or add reference samples."
            )

    # ----------------------------------------------------------------- contract

    def _fit_from(self, X, groups, self_excluded, unsupervised=False):
        if X.shape[0] < 2 and not unsupervised:  # a trusted reference (a set scoring itself: _check_k says why)
            # each component is standardised on the reference's leave-one-out scores: one row has none
            raise OODInputError(
                f"{REFERENCE_NAME} has {X.shape[0]} sample(s) but pyramid_knn standardises its scores on the "
                "reference's own leave-one-out scores, which needs at least 2; add reference samples (a few per "
                "class)."
            )
        group_rows = self._group_rows(groups, X.shape[0])
        self.group_k_ = self._resolve_k(group_rows, groups is not None, self_excluded, unsupervised)
        self.k_ = min(self.group_k_)
        self._check_k(group_rows, unsupervised)
        self.classes_ = len(group_rows)
        self.labelled_groups_ = 0 if groups is None else len(group_rows) - int(groups[1])  # unlabelled group last
        labelled = [rows.size for rows in group_rows[:self.labelled_groups_]]
        self.class_size_range_ = (min(labelled), max(labelled)) if len(labelled) > 1 else None
        self.components_ = self._component_names()
        comps = self._components(X, REFERENCE_NAME, self.components_)
        self.indexes_ = [
            [(rows, NeighborIndex(backend=self.backend, index=self.index).fit(Z[rows])) for rows in group_rows]
            for _, Z in comps
        ]
        # leave-one-out reference scores: each row left out of its own group's neighbours
        self.reference_components_ = [Z for _, Z in comps]
        columns, self.member_median_ = [], []
        for c in range(len(comps)):
            kth = self._kth_per_group(c)
            columns.append(kth.min(axis=1))
            # each labelled class's median distance of a member to its k-th nearest other member (crowd check)
            self.member_median_.append(np.array([np.median(kth[rows, g]) for g, rows in
                                                 enumerate(group_rows[:self.labelled_groups_])]))
        raw = np.stack(columns, axis=1)
        # _check_k guarantees every row k neighbours in some group, so every score is finite
        self.loc_ = raw.mean(axis=0)
        scale = raw.std(axis=0)
        # a constant component (duplicated reference images) carries no ranking information
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        self.component_accuracy_, self.active_ = self._gate(comps, groups)
        self.reference_scores_ = self._fuse(raw)
        self.transductive_ = None
        self.batch_reference_scores_ = None
        return raw

    def _gate(self, comps, groups):
        """Leave-one-out 1-NN label accuracy per component, and which components take part in the max.

        With ``component_gate`` set and at least two labelled classes, a component whose accuracy is more
        than ``component_gate`` below the best component's sits out.
        """
        active = np.ones(len(comps), bool)
        if self.component_gate is None or groups is None or len(comps) < 2:
            return None, active
        codes, has_unlabelled = groups
        rows = np.flatnonzero(codes != codes.max()) if has_unlabelled else np.arange(codes.size)
        if np.unique(codes[rows]).size < 2:
            return None, active
        acc = np.array(loo_label_accuracy(
            [NeighborIndex(backend=self.backend, index=self.index).fit(Z[rows]) for _, Z in comps], codes[rows]))
        return acc, near_best(acc, self.component_gate)

    def _fuse(self, raw):
        return ((raw - self.loc_) / self.scale_)[:, self.active_].max(axis=1)

    def _fit(self, X, labels):
        self._fit_from(X, labels, self_excluded=False)

    def _fit_score(self, X, labels):
        # the untrusted set scores itself: the wider unsupervised ranks (module docstring)
        self._fit_from(X, labels, self_excluded=True, unsupervised=True)
        return self.reference_scores_.copy()

    def _fit_reference_score(self, X, labels):
        self._fit_from(X, labels, self_excluded=True)
        return self.reference_scores_.copy()

    def _raw_scores(self, comps):
        """Raw k-th-neighbour distances ``(N, n_components)`` of the scored components (from ``_components``)."""
        return np.stack([self._kth_per_group(c, Z).min(axis=1) for c, (_, Z) in enumerate(comps)], axis=1)

    def progress_units(self):
        """The density ratio's steps (the neighbour search and each permutation), unless it is never used."""
        return 0 if self.transductive == "never" else DensityRatio().progress_units()

    def _score(self, X, labels):
        comps = self._components(X, SCORED_NAME, self.components_)  # normalised once, for both terms
        scores = self._fuse(self._raw_scores(comps))
        self.transductive_ = None
        self.batch_reference_scores_ = self.reference_scores_.copy()
        if self.transductive == "never":
            return scores
        decision = self._class_mix_decision(comps, scores) if X.shape[0] >= MIN_SCORED else (None,) * 5
        rows = decision[-1]
        ratio = DensityRatio(k_fraction=self.k_fraction, k_max=self.k_max,
                             alpha=1.0 if self.transductive == "always" else self.transductive_alpha,
                             backend=self.backend, index=self.index)
        references = [R if rows is None else R[rows] for R, a in zip(self.reference_components_, self.active_) if a]
        info = ratio.compute(references, [Z for (_, Z), a in zip(comps, self.active_) if a], normalized=True,
                             progress=self.progress_callback)
        weight = None
        if info["used"]:
            weight = ratio_weight(info["effect"]) if self.transductive_weight == "auto" else self.transductive_weight
            scores = scores + weight * info["scored"]
            if rows is None:
                self.batch_reference_scores_ = self.reference_scores_ + weight * info["reference"]
            else:  # trusted rows outside the matched draw get the draw's mean ratio z-score, 0
                self.batch_reference_scores_[rows] += weight * info["reference"]
        self.transductive_ = {key: value for key, value in info.items() if key not in ("scored", "reference")}
        self.transductive_["weight"] = weight
        self.transductive_.update(self._class_mix_record(decision, info["reason"]))
        if decision[2] is None and info["used"] and self.class_size_range_ and self.class_size_range_[1] >= \
                IMBALANCE_WARNING * self.class_size_range_[0]:  # the gate's rule did not fire
            small, large = self.class_size_range_
            self.transductive_["warning"] = (
                f"the trusted classes are imbalanced (largest {large}, smallest {small} samples): the density ratio "
                "assumes the scored samples hold the classes in the trusted proportions, and ranks the classes "
                "the trusted set under-represents as OOD when they do not; if your trusted samples were not "
                "picked in proportion to the classes, score with transductive='never'")
        return scores

    def component_scores(self, X):
        """``(N, n_components)`` standardised scores before the max (columns: ``components_``, gated ones included)."""
        self._check_fitted()
        X = as_embeddings(X, SCORED_NAME)  # NaN rows and another dimension are named, as in score_samples
        check_same_dim(np.empty((0, self.n_features_in_), np.float32), X, REFERENCE_NAME, SCORED_NAME)
        comps = self._components(X, SCORED_NAME, self.components_)
        return (self._raw_scores(comps) - self.loc_) / self.scale_
