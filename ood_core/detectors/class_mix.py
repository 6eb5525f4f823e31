r"""The class-mix gate of the default OOD detector's density ratio (``PyramidKNNDetector(class_mix_gate=0.23)``,
:meth:`~.pyramid_knn.PyramidKNNDetector.class_mix_shift`, :meth:`~.pyramid_knn.PyramidKNNDetector.class_mix_rows`).

The scored-set density ratio (:mod:`.transductive`) assumes the scored
images hold the trusted classes in the trusted proportions. When they do not,
the classes the trusted set under-represents are denser among the scored
images, the permutation test fires on that and those in-distribution images
rank as OOD. So, with two labelled trusted classes or more, the scored images
that look in-distribution (score at most the 90th percentile of the
reference's own scores) are each given the class whose k-th nearest trusted
image is closest, and the total variation between their class shares and the
trusted shares is measured. Part of it is chance: ``n`` images drawn in
exactly the trusted proportions differ from them by
:func:`chance_total_variation` on average (0.20 for 20 images of 6 equal
classes, 0.05 for 300). When the total variation exceeds that chance level by
more than 0.23, ``"auto"`` compares the scored set not with the whole trusted
set but with the largest draw of trusted images (without repeats, seeded) that
holds the classes in the scored set's estimated shares: the permutation test
and the ratio then see only what the class mix does not explain, such as a
crowd of OOD images. Trusted images outside the draw keep their own score in
``batch_reference_scores_`` (the draw's mean ratio z-score, 0, added).
``transductive_["reason"]`` says so; ``["class_mix_shift"]``,
``["class_mix_chance"]`` and ``["class_mix_reference"]`` (the draw's size) hold
the numbers; ``"always"`` uses the whole reference.

OOD images that look in-distribution count in the mix of their nearest
class, so a crowd of held-out images that all resemble one trusted class
(Sandals and Ankle boots when Sneakers are trusted) looks like more of that
class. Before the draw replaces the reference, the extra images are checked:
a member of a class lies beyond the median of its class members' own
leave-one-out k-th in-class distances half the time, an image of such a
crowd nearly always, so of the ``n`` images given to a class the scored set
over-represents, ``above`` of them beyond that median, about
``2 * above - n`` are a crowd (:func:`crowd_size`). Without them
(:func:`excess_without_crowd`) the excess is measured again; when it is then
within the gate the shift was the crowd's, not a class mix, and the whole
reference is used (``["class_mix_crowd"]``: the estimated crowd,
``["class_mix_excess_without_crowd"]``; ``["reason"]`` says so). Measured
below and in ``benchmarks/unseen_images.py --part crowd``.

Measured (``benchmarks/imbalanced_reference.py``, positive = OOD):

- the 127-condition study and the held-out check (303 scored sets, rare draws
  included): the excess is at most 0.186, so the gate never fires and nothing
  changes;
- trusted classes of 400..8 images scored against a balanced set (32
  conditions): it fires in all (excess 0.31 or more): mean / worst AUROC
  0.755 / 0.425 without the gate, 0.844 / 0.650 leaving the ratio out, 0.852 /
  0.686 with the matched draw (18 / 5 / 3 losses to the per-condition best
  anchor); with 3% OOD the matched test still fired in some draws (one
  polluted digits condition: 0.816 each image alone, 0.720);
- a balanced trusted set scored against other class mixes (48 conditions:
  one class ten times as common, 2:1, a long tail; 50% or 3% OOD): mean /
  worst AUROC 0.855 / 0.413 without the gate, 0.904 / 0.696 leaving the ratio
  out when it fires (the previous release), 0.922 / 0.714 with the matched
  draw (19 / 10 / 6 losses; 10x mix with 50% OOD 0.924 / 0.891 / 0.942, with
  3% OOD 0.644 / 0.888 / 0.888); the scored sets that the plain ratio would harm (3% OOD with
  a 10x or long-tail mix) have an excess of 0.27 or more; the crowd check takes one set (2:1
  mix, 50% OOD) for a crowd: 0.909 -> 0.935, the plain ratio's, and none of the imbalanced 32;
- small balanced batches (20-100 images): a threshold on the total variation
  alone (0.25, an earlier release) fired by chance in up to 17 of 24
  batches of 20 and cost up to 0.06 AUROC at 50% OOD (Fashion-MNIST, 30
  images: 0.835 against 0.892 without a gate); against the excess it fires
  in at most 2 of 24 and is within 0.004 of no gate.

0.23 is the middle of the gap between the largest excess of a matched scored
set (0.186) and the smallest of a harmed one (0.27), both measured on these sets.
"""

import numpy as np

#: scored images count as in-distribution-looking for the class mix up to this quantile of the reference's scores
CLASS_MIX_QUANTILE = 0.9
#: seed of the class-mix-matched draw of trusted rows (:meth:`PyramidKNNDetector.class_mix_rows`)
CLASS_MIX_SEED = 0
#: class count x draws above which :func:`chance_total_variation` uses the normal approximation
_EXACT_CHANCE_CELLS = 2_000_000


def chance_total_variation(n, shares):
    r"""The total variation that ``n`` draws from the class ``shares`` show by chance alone.

    :math:`E\,\tfrac12\sum_c |X_c / n - p_c|` with :math:`X_c \sim \mathrm{Binomial}(n, p_c)` (the expectation
    of the sum is the sum of the per-class mean absolute deviations), exact from the binomial probabilities, or
    :math:`\tfrac12\sum_c \sqrt{2 p_c (1 - p_c) / (\pi n)}` (normal approximation) when the classes times the draws
    exceed a few million. Small batches show a large total variation by chance: 0.20 for 20 draws
    from 6 equal classes, 0.05 for 300.
    """
    shares = np.asarray(shares, dtype=float)
    n = int(n)
    if n < 1:
        return 0.0
    if shares.size * (n + 1) > _EXACT_CHANCE_CELLS:
        return float(0.5 * np.sqrt(2 * shares * (1 - shares) / (np.pi * n)).sum())
    from scipy.stats import binom

    k = np.arange(n + 1)[None, :]
    pmf = binom.pmf(k, n, shares[:, None])
    return float(0.5 * (pmf * np.abs(k / n - shares[:, None])).sum())


def crowd_size(distances, member_median):
    """How many of the scored images given to one class are estimated to be an OOD crowd, not class members.

    ``distances``: each such image's distance to the class's k-th nearest trusted image; ``member_median``: the
    median of the trusted members' own leave-one-out k-th distances. A member lies beyond that median with
    probability one half, an image of a crowd that only resembles the class nearly always: of ``n`` images with
    ``above`` beyond it, about ``2 * above - n`` are the crowd (never below 0).
    """
    distances = np.asarray(distances, dtype=float)
    above = int(np.count_nonzero(distances > member_median))
    return max(0, 2 * above - distances.size)


def excess_without_crowd(counts, shares, crowd):
    """The class mix's excess total variation over chance once the estimated crowd is taken out of the counts.

    ``counts``: scored images given to each class; ``shares``: the trusted class shares; ``crowd``: the images
    to take out of each class (:func:`crowd_size`). 0 when nothing is left.
    """
    counts = np.asarray(counts, dtype=float) - np.asarray(crowd, dtype=float)
    total = counts.sum()
    if total < 1:
        return 0.0
    shares = np.asarray(shares, dtype=float)
    return float(0.5 * np.abs(counts / total - shares).sum()) - chance_total_variation(int(round(total)), shares)


class ClassMixGate:
    """The class-mix gate as methods of :class:`~.pyramid_knn.PyramidKNNDetector` (a mixin). It reads the
    detector's settings (``transductive``, ``class_mix_gate``) and fitted per-class search (``indexes_``,
    ``labelled_groups_``, ``active_``, ``reference_scores_``, ``member_median_``, ``_kth_per_group``)."""

    def _class_mix(self, comps, scores):
        """``(scored shares, trusted shares, n, distances)`` of the labelled classes among the ``n``
        in-distribution-looking scored images, with their ``(n, classes)`` distances to each class's k-th nearest
        trusted image (None when it cannot be measured); see :meth:`class_mix_shift`."""
        if self.labelled_groups_ < 2:
            return None
        keep = scores <= np.quantile(self.reference_scores_, CLASS_MIX_QUANTILE)
        if not keep.any():
            return None
        c = int(np.flatnonzero(self.active_)[0])
        dist = self._kth_per_group(c, comps[c][1][keep], groups=self.labelled_groups_)
        sizes = np.array([rows.size for rows, _ in self.indexes_[c][:self.labelled_groups_]], float)
        scored = np.bincount(dist.argmin(axis=1), minlength=self.labelled_groups_) / dist.shape[0]
        return scored, sizes / sizes.sum(), dist.shape[0], dist

    def class_mix_shift(self, comps, scores):
        """``(shift, chance)``: total variation between the trusted class shares and the scored set's, and the
        part of it that sampling alone gives (both None when it cannot be measured).

        The scored images whose score is at most the ``CLASS_MIX_QUANTILE`` quantile of the reference's own
        scores (the in-distribution-looking ones) are each given the labelled class whose k-th nearest
        reference image (its own k) is closest on the first active component; their class shares are
        compared with the trusted ones. ``chance`` is :func:`chance_total_variation` of as many draws from
        the trusted shares.
        """
        return self._shift_and_chance(self._class_mix(comps, scores))

    @staticmethod
    def _shift_and_chance(mix):
        if mix is None:
            return None, None
        scored, trusted, n = mix[:3]
        return float(0.5 * np.abs(scored - trusted).sum()), chance_total_variation(n, trusted)

    def _class_mix_crowd(self, mix):
        """``(crowd, excess)``: per labelled class, the estimated OOD crowd among the in-distribution-looking
        scored images given to it (:func:`crowd_size`, for the classes the scored set over-represents; 0 for
        the others), and the class mix's excess over chance without it (:func:`excess_without_crowd`).
        ``mix``: from :meth:`_class_mix` (its distances give each image's class and its distance to it)."""
        scored, trusted, _, dist = mix
        c = int(np.flatnonzero(self.active_)[0])
        given = dist.argmin(axis=1)
        crowd = np.zeros(trusted.size, dtype=np.int64)
        for g in np.flatnonzero(scored > trusted):
            crowd[g] = crowd_size(dist[given == g, g], self.member_median_[c][g])
        return crowd, excess_without_crowd(np.bincount(given, minlength=trusted.size), trusted, crowd)

    def class_mix_rows(self, scored_shares):
        """Reference rows (sorted) that hold the labelled trusted classes in ``scored_shares``: the largest such
        draw without repeats, each class's rows drawn at random (seeded, ``CLASS_MIX_SEED``)."""
        groups = [rows for rows, _ in self.indexes_[0][:self.labelled_groups_]]
        sizes = np.array([rows.size for rows in groups], float)
        present = scored_shares > 0
        total = np.min(sizes[present] / scored_shares[present])
        rng = np.random.default_rng(CLASS_MIX_SEED)
        take = [rng.choice(rows, min(rows.size, int(round(q * total))), replace=False)
                for rows, q in zip(groups, scored_shares)]
        return np.sort(np.concatenate(take))

    def _class_mix_decision(self, comps, scores):
        """``(shift, chance, crowd, excess without the crowd, rows)`` for a scored batch: the class mix
        (:meth:`class_mix_shift`); when the gate's rule fires (``"auto"``), the estimated crowd per class and
        the excess without it (:meth:`_class_mix_crowd`); ``rows``, the matched draw (:meth:`class_mix_rows`)
        when the excess stays above the gate, else None (the whole reference). Unmeasured parts are None."""
        mix = self._class_mix(comps, scores)
        shift, chance = self._shift_and_chance(mix)
        crowd = without_crowd = rows = None
        if shift is not None and self.transductive == "auto" and self.class_mix_gate is not None and \
                shift - chance > self.class_mix_gate:
            crowd, without_crowd = self._class_mix_crowd(mix)
            if without_crowd > self.class_mix_gate:  # a class-mix shift; otherwise a crowd of OOD images
                rows = self.class_mix_rows(mix[0])
        return shift, chance, crowd, without_crowd, rows

    def _class_mix_record(self, decision, reason):
        """The run record's class-mix keys for a :meth:`_class_mix_decision`, and, when the gate's rule fired,
        its ``"reason"`` (``reason``: the density ratio's own, appended)."""
        shift, chance, crowd, without_crowd, rows = decision
        record = {"class_mix_shift": shift, "class_mix_chance": chance,
                  "class_mix_reference": None if rows is None else int(rows.size),
                  "class_mix_crowd": None if crowd is None else int(crowd.sum()),
                  "class_mix_excess_without_crowd": without_crowd}
        if crowd is not None and rows is None:
            record["reason"] = (
                f"the in-distribution-looking scored samples seem to hold the trusted classes in other proportions "
                f"(excess total variation over chance {shift - chance:.2f} > {self.class_mix_gate:g}), but about "
                f"{int(crowd.sum())} of them lie farther from their class than its trusted samples typically do, an "
                f"OOD crowd rather than a class mix (excess without them {without_crowd:.2f}), so the whole trusted "
                "set was used: " + reason)
        elif rows is not None:
            record["reason"] = (
                f"the scored set holds the trusted classes in other proportions (total variation {shift:.2f}, "
                f"{chance:.2f} of it expected by chance, excess {shift - chance:.2f} > {self.class_mix_gate:g}), "
                f"so it was compared with {rows.size} trusted samples drawn in its class mix: " + reason)
        return record
