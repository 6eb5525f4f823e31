r"""Weighted neighbour votes: a wrong-label score without ties, plus a suggested label.

:class:`~ood_core.detectors.LabelAgreementDetector` counts how many of the k
neighbours share a sample's label, so its scores sit on the grid
``{0, 1/k, ..., 1}`` and many samples tie (149 demo samples at exactly 1.0):
a reviewer cannot tell which of them to look at first. Here each neighbour's
vote is weighted by how close it is, and the votes of several pyramid levels
can be averaged:

.. math::

    p_l(c \mid x) = \frac{\sum_{j \in N_k^l(x)} w_j\,[y_j = c]}{\sum_{j \in N_k^l(x)} w_j},
    \qquad p(c \mid x) = \frac{1}{L} \sum_l p_l(c \mid x),

    s(x) = (1 - \delta)\,\frac{1 - p(y_x \mid x) + w \max_{c \ne y_x} p(c \mid x)}{1 + w}
           + \delta \, \frac{1}{L} \sum_l \Bigl(1 - \frac{d^l_1(x)}{d^l_{y_x}(x)}\Bigr)

with :math:`N_k^l(x)` the k nearest neighbours of :math:`x` on level
:math:`l` (its column block, L2-normalised), :math:`y_x` the given label and
weights

- ``"uniform"``: :math:`w_j = 1` (exactly the label agreement score);
- ``"inverse_distance"``: :math:`w_j = 1 / (d_j + \varepsilon)`, the
  distance-weighted k-NN vote (Dudani 1976; scikit-learn's
  ``KNeighborsClassifier(weights="distance")``), :math:`\varepsilon = 10^{-6}`
  on L2-normalised levels; with ``normalize=False``, :math:`10^{-6}` times
  the level's spread (RMS distance of its fitted rows to their mean) when
  that is below 1, so that embeddings at any small scale (e.g. 1e-8) keep
  their distance weighting instead of voting uniformly;
- ``"rank"``: :math:`w_j = 1 / j` for the j-th nearest neighbour.

The first term blends the self-confidence ranking :math:`1 - p(y_x \mid x)`
(``margin_weight`` :math:`w = 0`) with the normalised margin
:math:`\max_{c \ne y_x} p(c \mid x) - p(y_x \mid x)` (:math:`w = 1`, up to a
monotone map), the two label-quality rankings of cleanlab's
``get_label_quality_scores`` (Northcutt et al. 2021; Kuan & Mueller 2022). The
margin also asks how strongly the neighbours agree on *another* class: a
sample whose votes are split among many classes is a hard in-distribution
sample more often than a swapped label, while a swapped label's neighbours vote
for its true class together. The margin helps under class-confusion noise and
costs under uniform noise; w = 0.2 (the default) keeps most of the gain at
little of the cost. With two classes every w ranks alike.

The second term is a tie-breaker (:math:`\delta` = ``TIE_BREAK_WEIGHT`` = 0.01,
less than one vote's share): :math:`d^l_1` is the distance to the nearest
sample, :math:`d^l_{y_x}` to the nearest sample carrying the given label
(itself excluded), so among samples that none of their k neighbours agree with
(all at :math:`p(y_x \mid x) = 0`), the one whose own class is farthest away
ranks first; the ratio is 0 when the nearest neighbour shares the label. It is
the ratio behind the "trust score" (Jiang, Kim, Guan & Gupta, NeurIPS 2018).

The **suggested label** is :math:`\arg\max_c p(c \mid x)` (ties to the first
class in sorted order), the class the neighbours vote for (with the LDA below:
the class the blended probabilities favour), as cleanlab and Datalab show next
to a label issue. Higher score = more likely mislabeled;
the votes are the out-of-fold class probabilities of "Confident Learning"
(Northcutt, Jiang & Chuang, JAIR 2021) computed by k-NN, and
:math:`1 - p(y_x \mid x)` is their self-confidence ranking.

``fit_score(X, y)`` is leave-one-out (a sample never votes for itself).

**Suspects do not vote twice** (``prune_suspects=True``, ``fit_score`` only).
When a set scores itself, its wrong labels also vote for their neighbours, and
under class-confusion noise they vote for the wrong class together. A second
vote is taken without the *suspects* of the first, the samples whose
neighbours vote for another class (:math:`\arg\max_c p(c \mid x) \ne y_x`;
with the LDA below, the first vote blended with the LDA's probabilities),
and the two votes are averaged:
:math:`p = \tfrac12\,(p^{(1)} + p^{(2)})`. This is the pruning step of
Confident Learning (Northcutt et al. 2021) applied to the votes once, not
iterated. The average, not the second vote alone, is kept because at low
noise the second vote drops correct samples of hard classes. A reference
passed to ``fit`` is trusted: ``score_samples`` votes with all of it.

**A second opinion from a class-mean model** (``lda_weight=0.5``). Before
scoring, the votes are averaged with the class probabilities of shrinkage
LDA on the same levels (:mod:`.lda`; out of fold in ``fit_score``, fitted on
the whole reference for new samples):
:math:`p = (1 - a)\,p_{\text{votes}} + a\,p_{\text{LDA}}`. A k-NN vote
sees only a sample's neighbourhood, so a group of similar images that were
all given the same wrong label vote for it together; LDA compares each image
with whole-class means, which a minority of wrong labels barely moves. The
LDA works on at most 512 principal components, which bounds its cost on wide
embeddings. Rows whose fold leaves the LDA fewer than two classes, or no
more samples than classes, to learn from keep the votes alone. Suggested
labels come from the blended probabilities. In ``fit_score`` the LDA is 10-fold
out of fold, its probabilities tempered to fit the given labels
(:func:`.lda.fit_temperature`: LDA in hundreds of dimensions is too sure of
itself), and the second vote's suspects are judged by the first vote blended
with it, so a cluster of wrong labels that all vote for each other loses its
voters too.

**The LDA fitted again without Confident Learning's label issues**
(``lda_refit=True``, ``fit_score`` only). Wrong labels pull the first LDA's
class means towards the class they came from. The samples that Confident
Learning's prune-by-noise-rate rule (:mod:`.confident_learning`) flags in the
first vote blended with the LDA are left out of a second out-of-fold LDA
(same folds and temperature fit), and the two LDAs' probabilities are
averaged before the blend (``num_lda_issues_``: how many were left out; none
flagged, no second LDA). The flags are about as many as the confident joint
estimates wrong labels, where the argmax suspects are 20-40% of a set.

Every choice above was measured over the 46 wrong-label conditions of
``benchmarks/robustness.py`` (``benchmarks/label_vote_choices.py`` one at a
time); the numbers are in ``docs/defaults.md`` ("Why a second vote" to "Why
the LDA is fitted a second time").

**One search per level.** ``fit_score`` lists each level's ``2 k + 8``
nearest other samples once (``_own_lists``) and reads from those lists the
level choice's nearest neighbour, the first vote, the second vote (the first
k *voters* of a list; rows with fewer listed voters are searched among the
voters) and the tie-breaker's same-label distance (rows without a listed
classmate search their class): what the searches they replace return, up to
float32 ties (:mod:`ood_core.neighbors`). An approximate ``index`` searches
separately (seconds and memory: the README's "Detectors"). ``score_samples``'
whole-set LDA uses the temperature fitted out of fold (``lda_temperature_``).
"""

import numpy as np

from ..errors import OODInputError
from ..neighbors import NeighborIndex, check_backend, check_index
from ..validation import check_flag, check_number, check_positive_int
from .confident_learning import label_issues
from .lda import LDA_FOLDS, ShrinkageLDA, lda_probabilities, refit_average
from .base import (
    Detector,
    adaptive_k,
    check_choice,
    check_fraction,
    check_k,
    check_levels,
    l2_normalize,
    level_part,
    level_slices,
    loo_label_accuracy,
    near_best,
    reference_codes,
)

__all__ = ["WEIGHTINGS", "WeightedLabelVoteDetector", "vote_score"]

#: Neighbour vote weightings.
WEIGHTINGS = ("uniform", "inverse_distance", "rank")
_EPS = 1e-6
_SPREAD_ROWS = 4096  # rows read to measure a level's spread for normalize=False (vote_epsilon)
#: Weight of the same-label distance ratio in the score (a tie-breaker: below one vote's share).
TIE_BREAK_WEIGHT = 0.01
#: neighbours listed per sample by ``fit_score``'s one search per level: ``2 k + LIST_MARGIN`` (see ``_own_lists``)
LIST_MARGIN = 8
_REF_NAME = "reference embeddings"
_SCORED_NAME = "scored embeddings"


def vote_score(probs, codes, margin_weight):
    """The vote term of the score (module docstring), in [0, 1]: ``(1 - p[label] + w * max other p) / (1 + w)``.

    ``probs``: ``(N, C)`` class votes (rows sum to 1 or 0); ``codes``: the given label's column per row.
    """
    rows = np.arange(probs.shape[0])
    vote = 1.0 - probs[rows, codes]
    if margin_weight > 0 and probs.shape[1] > 1:
        others = probs.copy()
        others[rows, codes] = -np.inf
        vote = (vote + margin_weight * np.maximum(others.max(axis=1), 0.0)) / (1.0 + margin_weight)
    return vote


def vote_epsilon(block, normalized):
    """The inverse-distance weights' epsilon of one level's fitted ``block``: 1e-6, times the rows' spread (RMS
    distance to their mean, on at most ``_SPREAD_ROWS`` rows) when not L2-normalised and the spread is below 1: a
    fixed 1e-6 swamped distances near 1e-8 (every vote equal); so any spread below 1 votes as spread 1 does."""
    if normalized:
        return _EPS
    rows = block[::max(1, block.shape[0] // _SPREAD_ROWS)].astype(np.float64)
    spread = float(np.sqrt(np.mean(np.sum((rows - rows.mean(axis=0)) ** 2, axis=1))))
    return _EPS * spread if 0 < spread < 1 else _EPS


class WeightedLabelVoteDetector(Detector):
    """Distance-weighted k-NN label votes over one or several pyramid levels.

    Detector contract of :class:`ood_core.detectors.Detector` (labels required):
    ``fit(X, y)`` returns self; ``fit_score(X, y)`` gives leave-one-out scores
    of the fitted set; ``score_samples(X, y)`` scores new samples with their
    given labels; scores are ``(N,)`` float64 in ``[0, 1]``, higher = more
    likely mislabeled. Fitted: ``k_``, ``levels_``, ``level_accuracy_``
    (``levels="auto"`` only). After ``fit_score``, ``suggested_labels_`` and
    ``class_probabilities_`` hold the leave-one-out votes of the fitted
    samples; :meth:`predict_proba` / :meth:`suggest_labels` give them for new
    samples.

    Args:
        k: voting neighbours per level: an int or ``"auto"``
            (:func:`ood_core.detectors.base.adaptive_k` of the smallest class size).
        k_fraction, k_max: the ``"auto"`` rule: ``k = max(1, min(k_max,
            round(k_fraction * (smallest class size - 1))))``. Defaults 0.5 / 20:
            over 40 wrong-label conditions (benchmarks/robustness.py) a fraction
            of 0.1 lost 0.04 mean AUROC at 20 images per class (k=2 votes are
            too coarse), while 0.5 matched or beat fixed k=10 and k=20.
        weighting: ``"uniform"``, ``"inverse_distance"`` or ``"rank"``.
        level_dims: column widths of the pyramid levels (see
            :class:`~ood_core.detectors.level_fusion.LevelFusionDetector`); None = the
            whole embedding is one level.
        levels: level indices whose votes are averaged (default: all), or
            ``"auto"``: the levels whose leave-one-out 1-NN label accuracy is
            within ``level_tolerance`` of the best level (as
            :class:`~ood_core.detectors.level_fusion.LevelFusionDetector`).
        level_tolerance: the ``"auto"`` rule's accuracy margin.
        normalize: L2-normalise each level's block.
        prune_suspects: in ``fit_score``, average the votes with a second vote
            in which the samples the first vote disagrees with do not vote
            (module docstring). Fitted: ``num_suspects_`` (None when off).
        margin_weight: w in [0, 1], the weight of the strongest other class's
            vote in the score (module docstring): 0 = self-confidence
            ``1 - p(label)`` alone, 1 = the normalised margin's ranking.
        lda_weight: a in [0, 1], the weight of the shrinkage-LDA class
            probabilities averaged into the votes (module docstring): 0 = the
            votes alone, 1 = the LDA alone. Fitted: ``lda_`` (the LDA of the
            whole fitted set, for new samples, fitted when first needed; None when 0).
        lda_refit: in ``fit_score`` (with ``lda_weight > 0``), average the
            LDA's probabilities with those of a second out-of-fold LDA fitted
            without the samples Confident Learning flags (module docstring).
            Fitted: ``num_lda_issues_`` (how many it left out; None when off).
        backend, index: neighbour search, see :mod:`ood_core.neighbors`.
    """

    method = "weighted_label_vote"
    task = "label_issues"
    label = "Weighted label votes"
    summary = "Distance-weighted votes of the nearest neighbours against the given label; suggests a label"
    _param_names = (
        "k", "k_fraction", "k_max", "weighting", "level_dims", "levels", "level_tolerance", "normalize",
        "prune_suspects", "margin_weight", "lda_weight", "lda_refit", "backend", "index",
    )

    def __init__(
        self,
        *,
        k="auto",
        k_fraction=0.5,
        k_max=20,
        weighting="inverse_distance",
        level_dims=None,
        levels=None,
        level_tolerance=0.05,
        normalize=True,
        prune_suspects=True,
        margin_weight=0.2,
        lda_weight=0.5,
        lda_refit=True,
        backend="auto",
        index="flat",
    ):
        k = check_k(k)
        if isinstance(k, list):
            raise OODInputError(f"k={k!r} is not valid here; pass one integer or 'auto'.")
        self.k = k
        self.k_fraction = check_fraction(k_fraction, "k_fraction")
        self.k_max = check_positive_int(k_max, "k_max")
        self.weighting = check_choice(weighting, WEIGHTINGS, "weighting")
        self.level_dims = None if level_dims is None else [s.stop - s.start for s in level_slices(level_dims)]
        if isinstance(levels, str) and levels == "auto":
            if self.level_dims is None:
                raise OODInputError("levels='auto' needs level_dims (the width of every level); pass both.")
        elif levels is not None:
            if self.level_dims is None:
                raise OODInputError("levels needs level_dims (the width of every level); pass both.")
            levels = check_levels(levels, len(self.level_dims))
        self.levels = levels
        self.level_tolerance = check_number(level_tolerance, "level_tolerance", low=0, high=1,
                                            hint=" (an accuracy margin)")
        self.normalize = check_flag(normalize, "normalize")
        self.prune_suspects = check_flag(prune_suspects, "prune_suspects")
        # numpy numbers too (np.float32 is no Python float)
        self.margin_weight = check_number(margin_weight, "margin_weight", low=0, high=1, hint=(
            " (0 = 1 - the vote for the given label, 1 = the margin to the strongest other class)"))
        self.lda_weight = check_number(lda_weight, "lda_weight", low=0, high=1, hint=(
            " (0 = the neighbour votes alone, 1 = the LDA probabilities alone)"))
        self.lda_refit = check_flag(lda_refit, "lda_refit")
        self.num_suspects_ = None
        self.num_lda_issues_ = None
        self.backend = check_backend(backend)
        self.index = check_index(index, backend)

    @property
    def requires_labels(self):
        return True

    def fitted_params(self):
        if not hasattr(self, "k_"):
            return {}
        t = self.lda_temperature_
        return {"k": int(self.k_), "levels": [int(i) for i in self.levels_], "num_suspects": self.num_suspects_,
                "lda_temperature": None if t is None else float(t), "num_lda_issues": self.num_lda_issues_}

    def get_params(self):
        params = super().get_params()
        if self.level_dims is not None:
            params["level_dims"] = list(self.level_dims)
        return params

    # ----------------------------------------------------------------- internals

    def _blocks(self, X, name):
        if self.level_dims is None:
            slices = [slice(0, X.shape[1])]
        else:
            if X.shape[1] != sum(self.level_dims):
                raise OODInputError(
                    f"{name} have dimension {X.shape[1]} but level_dims {self.level_dims} sum "
                    f"to {sum(self.level_dims)}; pass the level widths of the extractor that made them."
                )
            all_slices = level_slices(self.level_dims)
            slices = all_slices
        out = []
        for level, sl in enumerate(slices):
            block = X[:, sl]
            part = level_part(sl, level, len(slices))
            out.append(l2_normalize(block, name, part) if self.normalize else np.ascontiguousarray(block))
        return out

    def _weights(self, dist, level):
        if self.weighting == "uniform":
            return np.ones_like(dist)
        if self.weighting == "rank":
            return np.broadcast_to(1.0 / np.arange(1, dist.shape[1] + 1), dist.shape)
        eps = getattr(self, "vote_eps_", None)
        return 1.0 / (dist + (_EPS if eps is None else eps[level]))

    def _votes(self, dist, idx, level):
        """Normalised weighted votes ``(N, C)`` of neighbour lists (``idx`` indexes the fitted samples) on the
        ``level``-th chosen level."""
        votes = np.zeros((dist.shape[0], len(self.classes_)))
        rows = np.repeat(np.arange(dist.shape[0]), dist.shape[1])
        np.add.at(votes, (rows, self.codes_[idx].ravel()), np.asarray(self._weights(dist, level)).ravel())
        return votes / votes.sum(axis=1, keepdims=True)

    def _probabilities(self, blocks, lists=None):
        """Level-averaged weighted votes ``(N, C)`` and each level's nearest-neighbour distance.

        ``blocks=None`` = the fitted set, each sample left out of its own neighbours; its votes come from
        ``lists`` (each chosen level's leave-one-out lists of at least k neighbours, :meth:`_own_lists`)
        when given: the first k of a longer exact list are the k-neighbour search's list.
        """
        probs, nearest = None, []
        for i, nn in enumerate(self.neighbors_):
            if lists is not None:
                dist, idx = lists[i][0][:, :self.k_], lists[i][1][:, :self.k_]
            else:
                dist, idx = nn.kneighbors(None if blocks is None else blocks[i], k=self.k_)
            votes = self._votes(dist, idx, i)
            probs = votes if probs is None else probs + votes
            nearest.append(dist[:, 0])
        return probs / len(self.neighbors_), nearest

    def _vote_without_suspects(self, blocks, first, lists=None):
        """Leave-one-out votes of the fitted set in which only the non-suspects of ``first`` vote.

        ``blocks``: the chosen levels' blocks of the fitted set; ``lists``: optional, their leave-one-out
        neighbour lists (:meth:`_own_lists`). A row's k nearest voters are the first k voters of its list
        (everything nearer is listed, ties by index as in a search); only rows whose list holds fewer than
        k voters are searched among the voters. Returns ``(N, C)``, or None when too few samples are left
        to give every sample k voters.
        """
        is_voter = first.argmax(axis=1) == self.codes_
        voters = np.flatnonzero(is_voter)
        if voters.size <= self.k_:
            return None
        n, k = first.shape[0], self.k_
        probs = None
        for lvl, block in enumerate(blocks):
            dist, idx = np.empty((n, k)), np.empty((n, k), dtype=np.int64)
            search = np.arange(n)
            if lists is not None:
                listed = is_voter[lists[lvl][1]]
                listed &= np.cumsum(listed, axis=1) <= k  # the first k voters of each list
                found = listed.sum(axis=1) == k
                dist[found] = lists[lvl][0][found][listed[found]].reshape(-1, k)
                idx[found] = lists[lvl][1][found][listed[found]].reshape(-1, k)
                search = np.flatnonzero(~found)
            if search.size:
                dist[search], idx[search] = self._search_voters(block, voters, search)
            votes = self._votes(dist, idx, lvl)
            probs = votes if probs is None else probs + votes
        return probs / len(blocks)

    def _search_voters(self, block, voters, rows):
        """``(len(rows), k)`` distances and indices of the k nearest voters of ``rows`` of the fitted set
        (never the row itself)."""
        k = self.k_
        nn = NeighborIndex(backend=self.backend, index=self.index).fit(block[voters])
        dist, pos = nn.kneighbors(block[rows], k=k + 1)
        idx = voters[pos]
        keep = idx != rows[:, None]  # a sample never votes for itself
        keep[keep.all(axis=1), -1] = False  # itself not among the k + 1: drop the farthest
        return dist[keep].reshape(-1, k), idx[keep].reshape(-1, k)

    def _own_lists(self, neighbors):
        """Each index's leave-one-out lists of the fitted set, long enough to serve every search of
        ``fit_score`` (level choice, first vote, second vote, same-label distance) from one search."""
        n = neighbors[0].n_samples_fit_
        length = min(n - 1, 2 * self.k_ + LIST_MARGIN)
        lists = [nn.kneighbors(k=length) for nn in neighbors]
        self._step_done()
        return lists

    def progress_units(self):
        """``fit_score``'s steps: the levels' leave-one-out searches (one step), then one per LDA fold (twice
        with ``lda_refit``)."""
        return 1 + (LDA_FOLDS * (2 if self.lda_refit else 1) if self.lda_weight > 0 else 0)

    @staticmethod
    def _listed_same_label(lists, codes):
        """Per row, the distance to the first listed sample with its label (inf when none is listed)."""
        dist, idx = lists
        same = codes[idx] == codes[:, None]
        listed = same.any(axis=1)
        out = np.full(codes.shape[0], np.inf)
        out[listed] = dist[listed, same[listed].argmax(axis=1)]
        return out

    def _same_class_ratio(self, blocks, codes, nearest, lists=None):
        """Mean over levels of ``1 - d_1 / d_same`` (0 when the nearest neighbour shares the label).

        ``d_same`` is the distance to the nearest sample carrying the given label
        (itself excluded for the fitted set), ``d_1`` to the nearest sample at all.
        A label with no (other) sample gives 1. ``lists`` (fitted set only, :meth:`_own_lists`): ``d_same``
        is read from them where a list holds a sample of the row's label, searched for the other rows.
        """
        ratio = np.zeros(codes.shape[0])
        for lvl, per_class in enumerate(self.class_neighbors_):
            d_same = np.full(codes.shape[0], np.inf) if lists is None else self._listed_same_label(lists[lvl], codes)
            for c, (members, nn) in enumerate(per_class):
                rows = np.flatnonzero(codes == c)
                if rows.size == 0 or nn is None:
                    continue
                if blocks is None:
                    if members.size < 2:  # a lone sample has no other sample of its label
                        continue
                    if lists is None:
                        d_same[rows] = nn.kneighbors(k=1)[0][:, 0]
                        continue
                    rows = rows[np.isinf(d_same[rows])]
                    if rows.size:  # the nearest other member: the first of its two nearest members not itself
                        d, pos = nn.kneighbors(nn.data_[np.searchsorted(members, rows)], k=2)
                        d_same[rows] = np.where(members[pos[:, 0]] == rows, d[:, 1], d[:, 0])
                else:
                    d_same[rows] = nn.kneighbors(blocks[lvl][rows], k=1)[0][:, 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.where(d_same > 0, 1.0 - nearest[lvl] / d_same, 0.0)
            ratio += np.clip(np.nan_to_num(r, nan=0.0, posinf=1.0), 0.0, 1.0)
        return ratio / len(self.class_neighbors_)

    def _fit(self, X, labels, own_lists=False):
        """Fit on ``X``; returns the chosen levels' blocks and, with ``own_lists``, their leave-one-out
        neighbour lists (:meth:`_own_lists`; the level choice then reads its 1-NN from them), else None."""
        classes, codes = labels
        sizes = np.bincount(codes, minlength=len(classes))
        if self.k == "auto":
            # Leave-one-out: a sample of the smallest class has (size - 1) classmates.
            self.k_ = adaptive_k(max(int(sizes.min()) - 1, 1), fraction=self.k_fraction, k_max=self.k_max)
        else:
            self.k_ = self.k
        if self.k_ >= X.shape[0]:
            raise OODInputError(
                f"k={self.k_} but the reference set has only {X.shape[0]} samples; leave-one-out "
                f"votes need k < {X.shape[0]}: lower k or add reference samples."
            )
        self.classes_ = classes
        self.codes_ = codes
        self.num_suspects_ = None
        self.num_lda_issues_ = None
        blocks = self._blocks(X, _REF_NAME)
        neighbors = [NeighborIndex(backend=self.backend, index=self.index).fit(b) for b in blocks]
        lists = None
        if self.levels == "auto":
            if own_lists:
                lists = self._own_lists(neighbors)
            nearest = None if lists is None else [idx[:, 0] for _, idx in lists]
            self.level_accuracy_ = loo_label_accuracy(neighbors, codes, nearest)
            chosen = np.flatnonzero(near_best(self.level_accuracy_, self.level_tolerance)).tolist()
        else:
            self.level_accuracy_ = None
            chosen = self.levels if self.levels is not None else list(range(len(blocks)))
        if own_lists:
            lists = self._own_lists([neighbors[i] for i in chosen]) if lists is None else [lists[i] for i in chosen]
        self.levels_ = list(chosen)
        self.neighbors_ = [neighbors[i] for i in chosen]
        self.class_neighbors_ = []
        for i in chosen:
            per_class = []
            for c in range(len(classes)):
                members = np.flatnonzero(codes == c)
                nn = NeighborIndex(backend=self.backend, index="flat").fit(blocks[i][members]) if members.size else None
                per_class.append((members, nn))
            self.class_neighbors_.append(per_class)
        chosen_blocks = [blocks[i] for i in chosen]
        self.vote_eps_ = [vote_epsilon(b, self.normalize) for b in chosen_blocks]
        # The whole-set LDA serves new samples only: fitted on first use (fit_score's own scores are out of fold).
        self._lda_model = None
        self.lda_temperature_ = None
        self._lda_rows = np.hstack(chosen_blocks) if self.lda_weight > 0 else None
        return chosen_blocks, lists

    @property
    def lda_(self):
        """The shrinkage LDA of the whole fitted set (chosen levels), for new samples; None when ``lda_weight`` is 0.

        Its probabilities are tempered by ``lda_temperature_``, fitted on the set's out-of-fold
        probabilities (by ``fit_score``, or here when only ``fit`` ran)."""
        if getattr(self, "_lda_rows", None) is not None and self._lda_model is None:
            if self.lda_temperature_ is None:
                self.lda_temperature_ = lda_probabilities(self._lda_rows, self.codes_, len(self.classes_))[2]
            self._lda_model = ShrinkageLDA(len(self.classes_)).fit(self._lda_rows, self.codes_)
            self._lda_rows = None
        return getattr(self, "_lda_model", None)

    def _refit_lda(self, Z, judged, lda_probs, ok):
        """The out-of-fold LDA's probabilities averaged with those of one fitted without Confident Learning's
        label issues of ``judged`` (:func:`.lda.refit_average`)."""
        issues = label_issues(self.codes_, judged)
        self.num_lda_issues_ = int(issues.sum())
        return refit_average(Z, self.codes_, len(self.classes_), issues, lda_probs, ok, on_fold=self._step_done)

    def _blend(self, votes, lda_probs, ok):
        """``(1 - lda_weight) * votes + lda_weight * LDA probabilities`` on the rows where the LDA was fitted."""
        return np.where(ok[:, None], (1.0 - self.lda_weight) * votes + self.lda_weight * lda_probs, votes)

    def _new_probabilities(self, blocks):
        """Blended class probabilities ``(N, C)`` of new samples (chosen levels' blocks) and the votes' nearest
        distances."""
        probs, nearest = self._probabilities(blocks)
        lda = self.lda_
        if lda is not None:
            ok = np.full(probs.shape[0], lda.fitted)
            probs = self._blend(probs, lda.predict_proba(np.hstack(blocks), self.lda_temperature_), ok)
        return probs, nearest

    def _combine(self, probs, codes, ratio):
        return (1.0 - TIE_BREAK_WEIGHT) * vote_score(probs, codes, self.margin_weight) + TIE_BREAK_WEIGHT * ratio

    def _to_ref_codes(self, labels):
        return reference_codes(labels, self.classes_, "y (labels of the scored samples)")

    def _score(self, X, labels):
        blocks = self._blocks(X, _SCORED_NAME)
        blocks = [blocks[i] for i in self.levels_]
        probs, nearest = self._new_probabilities(blocks)
        ref_codes = self._to_ref_codes(labels)
        # A label the reference never saw gets no votes and no same-label neighbour: score 1.
        padded = np.concatenate([probs, np.zeros((probs.shape[0], 1))], axis=1)
        safe = np.where(ref_codes < 0, probs.shape[1], ref_codes)
        ratio = self._same_class_ratio(blocks, ref_codes, nearest)
        scores = self._combine(padded, safe, ratio)
        scores[ref_codes < 0] = 1.0
        return scores

    def _fit_score(self, X, labels):
        # one leave-one-out search per level, reused by every vote and distance below; exact searches only
        # (an approximate index's lists would not be what its separate approximate searches return)
        blocks, lists = self._fit(X, labels, own_lists=self.index == "flat")
        probs, nearest = self._probabilities(None, lists)
        lda = None
        if self.lda_weight > 0:
            # _fit keeps the chosen levels side by side for the whole-set LDA: the out-of-fold fits read them too
            lda_probs, ok, self.lda_temperature_ = lda_probabilities(self._lda_rows, self.codes_, len(self.classes_),
                                                                     on_fold=self._step_done)
            lda = (lda_probs, ok)
        # the first vote blended with the LDA: judges the suspects and Confident Learning's label issues
        judged = probs if lda is None else self._blend(probs, *lda)
        if lda is not None and self.lda_refit:
            lda = self._refit_lda(self._lda_rows, judged, *lda)
        if self.prune_suspects:
            # suspects: the samples whose first vote, blended with the LDA, favours another class
            self.num_suspects_ = int(np.sum(judged.argmax(axis=1) != self.codes_))
            second = self._vote_without_suspects(blocks, judged, lists) if self.num_suspects_ else None
            if second is not None:
                probs = (probs + second) / 2
        if lda is not None:
            probs = self._blend(probs, *lda)
        self.class_probabilities_ = probs
        self.suggested_labels_ = [self.classes_[i] for i in probs.argmax(axis=1)]
        ratio = self._same_class_ratio(None, self.codes_, nearest, lists)
        return self._combine(probs, self.codes_, ratio)

    # ----------------------------------------------------------------- extras

    def predict_proba(self, X):
        """``(N, C)`` weighted neighbour votes of new samples, blended with the LDA's probabilities; columns follow
        ``classes_``."""
        from ..validation import as_embeddings

        self._check_fitted()
        blocks = self._blocks(as_embeddings(X, _SCORED_NAME), _SCORED_NAME)
        return self._new_probabilities([blocks[i] for i in self.levels_])[0]

    def suggest_labels(self, X):
        """The class the blended votes favour (``predict_proba``'s argmax), per new sample (list of labels)."""
        return [self.classes_[i] for i in self.predict_proba(X).argmax(axis=1)]
