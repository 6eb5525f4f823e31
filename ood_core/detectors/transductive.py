r"""Scored-set density ratio: OOD images that arrive together are denser among the scored images than in the reference.

A k-NN distance to the trusted reference cannot tell a near-OOD image from a
hard in-distribution one when both sit at the same distance from the
reference. When the scored set holds many images of classes the reference
lacks, those images crowd together: each has close neighbours among the
*scored* images but not among the reference ones. Comparing the two
neighbourhood radii estimates the density ratio
:math:`p_\text{scored}(x) / p_\text{ref}(x)`, which is about 1 for
in-distribution images and large inside an OOD cluster. This is the
nearest-neighbour form of the positive-unlabelled view of OOD detection with
unlabelled "wild" data (Katz-Samuels et al., ICML 2022; Du et al., ICLR 2024).

For each component (rows L2-normalised), with reference :math:`R`
(:math:`n_R` rows) and scored set :math:`T` (:math:`n_T` rows), pooled as
:math:`P = R \cup T` and every point left out of its own neighbours:

.. math::

    s(x) = \log r_{k_R}(x) - \log t_{k_T}(x), \qquad
    k_R = \mathrm{adaptive\_k}(n_R - 1, 2\%), \qquad
    k_T = \mathrm{round}\!\left(k_R \frac{n_T - 1}{n_R - 1}\right)

where :math:`r_{k_R}(x)` is the distance to the :math:`k_R`-th nearest
reference point and :math:`t_{k_T}(x)` the distance to the :math:`k_T`-th
nearest scored point; the two ranks cover the same share of each set, so
:math:`s` is about equal for the two sets when they come from one
distribution. Both are read from one list of the ``M`` nearest pooled
neighbours per point (:math:`M \approx 1.5\,k_R N / n_R + 32`; a rank not
reached within ``M`` takes the ``M``-th distance). Exact copies are handled
explicitly: scored neighbours at distance 0 do not count for :math:`t` (an
image scored twice is not a dense region), and both radii are floored at half
the 5th percentile of the positive radii (an exact copy of a reference image
has :math:`r = 0`). Each component's
:math:`s` is standardised on the reference rows; the components' maximum is
the density-ratio z-score.

**Only used when the scored set really differs.** With few OOD images the
ratio is noise and adding it hurts (``benchmarks/robustness.py``, group
``rare``). A permutation test decides: the statistic is the mean z-score of
the scored rows minus that of the reference rows; the null distribution
re-labels the pooled rows at random (same set sizes, seeded, exact under
exchangeability, ``n_permutations`` draws); the ratio is used when the
permutation p-value is at most ``alpha``. Under the null hypothesis (scored
images exchangeable with the reference) it is used with probability at most
``alpha``. The draws stop as soon as p can no longer reach ``alpha``
(:func:`permutation_test`; a batch like the reference stops after a few
draws): the decision is the full test's, the p-value is then recorded as a
lower bound (``p_value`` None, ``p_value_at_least``, ``permutations_run``).
The effect below is computed from the observed z-scores alone, so the
ratio's weight does not depend on the draws.

**Weighted by the evidence.** The test also measures how strongly the batch
differs: the effect :math:`e = (\bar z_T - \bar z_R) / (s \sqrt{1/n_T + 1/n_R})`,
the statistic in units of its standard error (:math:`s` the standard deviation
of all pooled z-scores). The ratio enters the score with the weight
:math:`w = \mathrm{clip}(e / e_1, 1, 2)`, :math:`e_1 = 2\,\Phi^{-1}(0.99) \approx 4.65`
(:func:`ratio_weight`): once when the batch barely differs, up to twice when
it clearly holds a crowd of OOD images. Held-out classes arriving as 20-50%
of a batch give effects of median 9 (10th-90th percentile 4-21); a test that fires on a mostly
in-distribution batch sees 2.5-3, where a heavier ratio only adds noise.
Measured against the fixed weight 1 (``benchmarks/robustness.py``, 127
conditions): mean AUROC 0.935 -> 0.938, no condition lost that was not lost
before; on the held-out check (``benchmarks/heldout_check.py``) 0.937 -> 0.940
on the 50%-OOD conditions, the rare ones unchanged, the same losses (a fixed
weight 2 gained about as much but added a held-out loss where the test fired
by chance; prototype).

**Large sets are sampled.** The pooled lists cost time and memory quadratic in
:math:`n_R + n_T`. Above :data:`MAX_POOLED` rows, the lists, the
standardisation and the permutation test use a seeded random sample of that
many rows (the smaller set whole up to half of it, :func:`pool_sample_sizes`);
every other row's two radii are measured against the sample's reference and
scored rows (same ranks, same floor) and standardised with the sample's
reference statistics. The ranks cover the same share of each sampled set, so
the ratio estimates the same density ratio from fewer points.
``benchmarks/bench_pool_sample.py`` measures what sampling costs.

Higher = more OOD. Numpy and :class:`~ood_core.neighbors.NeighborIndex`
only (no FiftyOne).
"""

import math
from statistics import NormalDist

import numpy as np

from ..errors import OODInputError
from ..neighbors import NeighborIndex, product_kneighbors
from .base import adaptive_k, l2_normalize

__all__ = ["N_PERMUTATIONS", "DensityRatio", "decision_line", "decision_sentence", "density_ratio_ranks",
           "permutation_test", "pool_sample_sizes", "ratio_weight"]

#: the largest pooled set searched as a whole; above it the neighbours come from a seeded sample of this size
MAX_POOLED = 20000
#: rows outside the sampled pool whose neighbour lists are searched at once (bounds their lists' memory)
OUTSIDE_CHUNK_ROWS = 16384
#: permutations of the test (p-values are multiples of 1 / (N_PERMUTATIONS + 1))
N_PERMUTATIONS = 200
#: smallest scored set the ratio is computed for
MIN_SCORED = 20
#: the effect at which the ratio's weight starts to grow above 1 (twice the one-sided 1% normal quantile)
EFFECT_SCALE = 2 * NormalDist().inv_cdf(0.99)
#: the largest weight of the ratio
MAX_RATIO_WEIGHT = 2.0


def ratio_weight(effect):
    """The density ratio's weight for a batch whose test measured ``effect`` (module docstring)."""
    return float(min(MAX_RATIO_WEIGHT, max(1.0, effect / EFFECT_SCALE)))


def density_ratio_ranks(n_ref, n_scored, k_fraction=0.02, k_max=50):
    """``(k_R, k_T, M)``: neighbour ranks in the reference and scored sets, and the pooled list length."""
    k_ref = adaptive_k(max(1, n_ref - 1), fraction=k_fraction, k_max=k_max)
    k_scored = min(n_scored - 1, max(1, int(round(k_ref * (n_scored - 1) / max(1, n_ref - 1)))))
    n = n_ref + n_scored
    m = min(n - 1, int(math.ceil(1.5 * k_ref * n / n_ref)) + 32)
    return k_ref, k_scored, m


def pool_sample_sizes(n_ref, n_scored, max_pooled=None):
    """``(reference, scored)`` rows of the sampled pool: everything when ``n_ref + n_scored <= max_pooled``;
    otherwise the smaller set whole up to half of ``max_pooled`` and the larger set filling the rest."""
    max_pooled = MAX_POOLED if max_pooled is None else max_pooled
    if n_ref + n_scored <= max_pooled:
        return n_ref, n_scored
    small = min(n_ref, n_scored, max_pooled // 2)
    large = max_pooled - small
    return (small, large) if n_ref <= n_scored else (large, small)


def _kth_with(dist, mask, k):
    """Per row: the distance of the k-th neighbour whose ``mask`` is True (the last distance if fewer).

    The flat positions of the True entries are listed row after row, so a row's k-th one sits ``k - 1`` places
    after the row's first one (3-4x faster than a cumulative count over the whole list; the same values)."""
    n, m = mask.shape
    counts = np.count_nonzero(mask, axis=1)
    flat = np.flatnonzero(mask)
    rows = np.flatnonzero(counts >= k)
    pos = np.full(n, m - 1, dtype=np.int64)
    pos[rows] = flat[np.cumsum(counts)[rows] - counts[rows] + k - 1] - rows * m
    return dist[np.arange(n), pos]


def permutation_test(statistic, observed, labels, n_permutations, alpha, seed, on_draw=None):
    """The one-sided permutation test of :meth:`DensityRatio.compute`, stopped once its decision is known.

    ``statistic(permuted_labels)`` is drawn for ``n_permutations`` seeded permutations of ``labels``
    (``np.random.default_rng(seed).permutation``, one draw after another); ``count`` is the number of draws
    at least ``observed`` and the p-value ``(1 + count) / (n_permutations + 1)``; ``used`` is ``p <= alpha``.
    Once ``count`` is so large that p can no longer reach ``alpha``, the remaining draws cannot change the
    decision and are skipped (a batch like the reference stops after a few draws instead of all of them).

    Returns a dict: ``used``; ``p_value``, the exact p-value when every draw ran (always the case when
    ``used``), else None; ``p_value_at_least``, a lower bound of it (``(1 + count) / (n_permutations + 1)``
    with the count so far; equal to ``p_value`` when every draw ran); ``permutations_run``. ``on_draw()``, when
    given, is called after each draw (progress).
    """
    rng = np.random.default_rng(seed)
    count, run = 0, 0
    while run < n_permutations:
        count += int(statistic(rng.permutation(labels)) >= observed)
        run += 1
        if on_draw is not None:
            on_draw()
        # the same float expression as the decision, which only grows with count: past alpha, it stays past
        if (1 + count) / (n_permutations + 1) > alpha:
            break
    bound = float((1 + count) / (n_permutations + 1))
    complete = run == n_permutations
    return {"used": bool(bound <= alpha) if complete else False, "p_value": bound if complete else None,
            "p_value_at_least": bound, "permutations_run": run}


class DensityRatio:
    """Density-ratio z-scores of a scored set against a reference, with the permutation gate.

    Args:
        k_fraction, k_max: the reference rank ``k_R`` (module docstring).
        alpha: the permutation p-value at or below which the ratio is used.
        n_permutations: permutation draws (p-values are multiples of ``1 / (n_permutations + 1)``).
        seed: the permutations' seed (results are deterministic).
        backend, index: neighbour search, see :mod:`ood_core.neighbors`.
        max_pooled: the largest pooled set searched as a whole (None: :data:`MAX_POOLED`); larger ones are
            sampled (:meth:`compute`).

    :meth:`compute` returns a dict: ``used`` (bool), ``reason``, ``p_value`` (None when the
    test stopped early, not used), ``p_value_at_least`` (its lower bound), ``permutations_run``,
    ``effect`` (the statistic over its standard error), ``k_reference``,
    ``k_scored``, ``pool_sample``, ``scored`` / ``reference`` (z-scores, or
    None when not computed: too few rows, or a sampled pool whose ratio is
    not used).
    """

    def __init__(self, *, k_fraction=0.02, k_max=50, alpha=0.01, n_permutations=N_PERMUTATIONS, seed=0,
                 backend="auto", index="flat", max_pooled=None):
        self.k_fraction = k_fraction
        if max_pooled is not None and (isinstance(max_pooled, bool) or not isinstance(max_pooled, (int, np.integer))
                                       or max_pooled < 2 * MIN_SCORED):
            raise OODInputError(f"max_pooled={max_pooled!r} is not a whole number of at least {2 * MIN_SCORED} "
                                f"(pooled reference + scored samples); pass None for {MAX_POOLED} or a larger number.")
        self.max_pooled = max_pooled
        self.k_max = k_max
        self.alpha = alpha
        self.n_permutations = n_permutations
        self.seed = seed
        self.backend = backend
        self.index = index

    def _searcher(self, pooled):
        """A function listing the ``m`` nearest pooled rows of each pooled row (itself left out, ``queries=None``)
        or of each query row."""
        pooled = np.ascontiguousarray(pooled, dtype=np.float32)
        # the exact index search's lists (up to the order of copies), faster for lists this long
        if self.index == "flat":
            return lambda m, queries=None: product_kneighbors(pooled, m, queries=queries)
        index = NeighborIndex(backend=self.backend, index=self.index).fit(pooled)
        return lambda m, queries=None: index.kneighbors(queries, k=m)

    @staticmethod
    def _log_ratio(dist, idx, is_scored, k_ref, k_scored, floor=None):
        """Per listed row: the log ratio of its reference to its scored radius, and the radii's floor."""
        lab = is_scored[idx]
        # an exact copy among the scored images is not evidence of a dense region (an image scored twice
        # would otherwise look like the densest point there is): scored neighbours at distance 0 are skipped
        r, t = _kth_with(dist, ~lab, k_ref), _kth_with(dist, lab & (dist > 0), k_scored)
        if floor is None:
            # a radius of 0 (an exact copy of a reference image) would make the log ratio infinite: floor both
            # radii at half the 5th percentile of the positive ones
            positive = np.concatenate([r[r > 0], t[t > 0]])
            floor = 0.5 * np.percentile(positive, 5) if positive.size else 1.0
        return np.log(np.maximum(r, floor)) - np.log(np.maximum(t, floor)), floor

    @classmethod
    def _zscores(cls, lists, is_scored, k_ref, k_scored):
        """Max over components of the standardised log radius ratio, for one labelling of the pooled rows.

        Also returns each component's ``(floor, mean, sd)`` to put rows outside the pool on the same scale."""
        out, scales = None, []
        for dist, idx in lists:
            s, floor = cls._log_ratio(dist, idx, is_scored, k_ref, k_scored)
            ref = s[~is_scored]
            sd = ref.std()
            sd = sd if sd > 1e-12 else 1.0
            z = (s - ref.mean()) / sd
            scales.append((floor, ref.mean(), sd))
            out = z if out is None else np.maximum(out, z)
        return out, scales

    def _outside_zscores(self, searchers, components, rows, is_scored, k_ref, k_scored, m, scales):
        """Density-ratio z-scores of ``rows`` (not in the pool) against the pool, on the pool's scale."""
        out = np.full(rows.size, -np.inf)
        for search, Z, (floor, mean, sd) in zip(searchers, components, scales):
            for start in range(0, rows.size, OUTSIDE_CHUNK_ROWS):
                chunk = rows[start:start + OUTSIDE_CHUNK_ROWS]
                dist, idx = search(m, np.ascontiguousarray(Z[chunk], dtype=np.float32))
                s, _ = self._log_ratio(dist, idx, is_scored, k_ref, k_scored, floor)
                np.maximum(out[start:start + chunk.size], (s - mean) / sd, out=out[start:start + chunk.size])
        return out

    def progress_units(self):
        """How many times :meth:`compute` calls its ``progress``: once after the neighbour search, once per
        permutation (the draws a test that stops early skips are reported together)."""
        return 1 + self.n_permutations

    def compute(self, components_ref, components_scored, normalized=False, progress=None):
        """``components_*``: lists of ``(N, D_c)`` arrays, one per component, rows in the same order.

        ``normalized=True``: the rows are already L2-normalised (not normalised again, no copies).
        ``progress(n)``, when given, is told of each step done (:meth:`progress_units` in all when the ratio is
        computed; none when the scored set is too small).

        When reference + scored rows exceed ``max_pooled`` (default :data:`MAX_POOLED`), the neighbour
        lists, the standardisation and the permutation test use a seeded random sample of that many rows
        (:func:`pool_sample_sizes`), and every other row is scored against that sample when the ratio is
        used (``scored`` / ``reference`` are None when it is not); ``pool_sample`` in the result gives the
        sample's ``[reference, scored]`` sizes (None when every row was pooled).
        """
        n_ref, n_scored = components_ref[0].shape[0], components_scored[0].shape[0]
        info = {"used": False, "p_value": None, "effect": None, "k_reference": None, "k_scored": None,
                "pool_sample": None, "scored": None, "reference": None}
        if n_scored < MIN_SCORED or n_ref < 2:
            return {**info, "reason": f"needs at least {MIN_SCORED} scored items (images or objects) outside the "
                                      f"reference and 2 reference items; had {n_scored} and {n_ref}"}
        p_ref, p_scored = pool_sample_sizes(n_ref, n_scored, self.max_pooled)
        sampled = (p_ref, p_scored) != (n_ref, n_scored)
        if sampled:  # a seeded stream of its own: the permutations below draw as without a sample
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(1,)))
            ref_rows = np.sort(rng.choice(n_ref, p_ref, replace=False))
            scored_rows = np.sort(rng.choice(n_scored, p_scored, replace=False))
        else:
            ref_rows, scored_rows = np.arange(n_ref), np.arange(n_scored)
        k_ref, k_scored, m = density_ratio_ranks(p_ref, p_scored, self.k_fraction, self.k_max)
        if not normalized:
            components_ref = [l2_normalize(R, "reference embeddings") for R in components_ref]
            components_scored = [l2_normalize(T, "scored embeddings") for T in components_scored]
        searchers, lists = [], []
        for R, T in zip(components_ref, components_scored):
            search = self._searcher(np.concatenate([R[ref_rows], T[scored_rows]] if sampled else [R, T]))
            lists.append(search(m))
            if sampled:  # kept to measure the rows outside the sample; otherwise freed at once
                searchers.append(search)
        is_scored = np.r_[np.zeros(p_ref, bool), np.ones(p_scored, bool)]
        tick = progress if progress is not None else (lambda n: None)
        tick(1)

        def statistic(labels):
            z, scales = self._zscores(lists, labels, k_ref, k_scored)
            return z[labels].mean() - z[~labels].mean(), z, scales

        observed, z, scales = statistic(is_scored)
        test = permutation_test(lambda labels: statistic(labels)[0], observed, is_scored, self.n_permutations,
                                self.alpha, self.seed, on_draw=lambda: tick(1))
        tick(self.n_permutations - test["permutations_run"])
        used = test["used"]
        spread = z.std() * math.sqrt(1 / p_scored + 1 / p_ref)
        effect = float(observed / spread) if spread > 1e-12 else 0.0
        z_ref, z_scored = z[:p_ref], z[p_ref:]
        if sampled and not used:  # the rows outside the sample would be measured for nothing
            z_ref = z_scored = None
        elif sampled:
            z_ref, z_scored = np.empty(n_ref), np.empty(n_scored)
            z_ref[ref_rows], z_scored[scored_rows] = z[:p_ref], z[p_ref:]
            for full, taken, comps in ((z_ref, ref_rows, components_ref), (z_scored, scored_rows, components_scored)):
                rest = np.setdiff1d(np.arange(full.size), taken)
                if rest.size:
                    full[rest] = self._outside_zscores(searchers, comps, rest, is_scored, k_ref, k_scored, m, scales)
        stopped = test["permutations_run"] < self.n_permutations
        return {
            "used": bool(used), "p_value": test["p_value"], "p_value_at_least": test["p_value_at_least"],
            "permutations_run": test["permutations_run"], "effect": effect, "k_reference": int(k_ref),
            "k_scored": int(k_scored), "pool_sample": [int(p_ref), int(p_scored)] if sampled else None,
            "reason": ("the scored set differs from the reference" if used else
                       f"the scored set does not differ significantly from the reference (p > {self.alpha}"
                       + (f": p >= {test['p_value_at_least']:.3g} after {test['permutations_run']} of "
                          f"{self.n_permutations} permutations, where the test stopped" if stopped else "") + ")")
                      + (f" (neighbours from a seeded sample of {p_ref} reference + {p_scored} scored samples, "
                         f"{n_ref + n_scored} > {self.max_pooled or MAX_POOLED})" if sampled else ""),
            "scored": z_scored, "reference": z_ref,
        }


def decision_sentence(info, item="samples"):
    """A run's density-ratio decision (the ``transductive`` entry of its record) in one plain sentence, for the
    result views and the audit's report; None when the run has no decision (another detector)."""
    if not info:
        return None
    what = "images" if item == "samples" else item
    if info.get("used"):
        return (f"the scored {what} crowd together where trusted {what} are rare, so each score also counts how much "
                f"more crowded the scored {what} are around it than the trusted ones")
    if info.get("p_value") is None and info.get("p_value_at_least") is None:  # not tested: nothing measured
        return f"each score is the distance to the trusted {what} only"
    return (f"the scored {what} are spread like the trusted ones, so each score is the distance to the trusted "
            f"{what} only")


def decision_line(info):
    """The same decision in one technical line: used or not, why, the permutation p-value, the weight and any
    warning (None when the run has no decision)."""
    if not info:
        return None
    p_value = info.get("p_value")
    p_text = f" (permutation p = {p_value:.3g})" if p_value is not None else ""
    weight = info.get("weight")
    w_text = f", weight {weight:.2g}" if info.get("used") and weight is not None else ""
    warning = f". Warning: {info['warning']}" if info.get("warning") else ""
    return f"{'used' if info.get('used') else 'not used'}: {info.get('reason')}{p_text}{w_text}{warning}"
