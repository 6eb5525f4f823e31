"""The scored-set density ratio (ood_core.detectors.transductive) and its use in the default detector."""

import numpy as np
import pytest

from ood_core.detectors.pyramid_knn import PyramidKNNDetector
from ood_core.detectors import transductive
from ood_core.detectors.transductive import DensityRatio, density_ratio_ranks, pool_sample_sizes, ratio_weight
from ood_core.errors import OODInputError
from ood_core.fo.scores import score_arrays
from ood_core.metrics import ood_metrics

DIMS = [4, 12]


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _brute_ratio(R, T, k_ref, k_scored):
    """The docstring formula with full sorts: log r_kR - log t_kT, standardised on the reference rows."""
    P = _unit(np.concatenate([R, T]))
    n_ref = len(R)
    D = np.linalg.norm(P[:, None] - P[None], axis=2)
    np.fill_diagonal(D, np.inf)
    r = np.sort(D[:, :n_ref], axis=1)[:, k_ref - 1]
    t = np.sort(D[:, n_ref:], axis=1)[:, k_scored - 1]
    floor = 0.5 * np.percentile(np.r_[r, t], 5)  # no duplicates here: every radius is positive
    s = np.log(np.maximum(r, floor)) - np.log(np.maximum(t, floor))
    return (s - s[:n_ref].mean()) / s[:n_ref].std()


def _mixture(rng, n, centers, spread=1.0):
    return (centers[rng.integers(0, len(centers), n)] + spread * rng.normal(size=(n, centers.shape[1]))).astype(
        np.float32)


@pytest.fixture
def near_ood():
    """Reference: 4 classes; scored: the same 4 classes plus a held-out 5th class (30% of the scored set)."""
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(5, sum(DIMS))) * 0.6  # overlapping classes: k-NN alone reaches ~0.92 AUROC
    y_ref = rng.integers(0, 4, 200)
    X_ref = (centers[y_ref] + rng.normal(size=(200, sum(DIMS)))).astype(np.float32)
    X_id = _mixture(rng, 140, centers[:4])
    X_ood = _mixture(rng, 60, centers[4:], spread=0.5)
    return X_ref, y_ref, np.concatenate([X_id, X_ood]), np.r_[np.zeros(140, bool), np.ones(60, bool)]


def test_ratio_matches_the_formula_when_the_lists_cover_every_point():
    rng = np.random.default_rng(0)
    R = rng.normal(size=(10, 6)).astype(np.float32)
    T = rng.normal(size=(20, 6)).astype(np.float32)
    k_ref, k_scored, m = density_ratio_ranks(10, 20)
    assert (k_ref, k_scored) == (1, 2)  # 2% of 9 -> 1; 1 * 19 / 9 -> 2
    assert m == 29  # the whole pooled set: every rank is exact
    info = DensityRatio(alpha=1.0, n_permutations=19).compute([R], [T])
    expected = _brute_ratio(R, T, k_ref, k_scored)
    np.testing.assert_allclose(info["reference"], expected[:10], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(info["scored"], expected[10:], rtol=1e-4, atol=1e-4)
    assert info["used"] and info["k_reference"] == 1 and info["k_scored"] == 2


def test_kth_masked_neighbour_matches_a_row_by_row_count():
    rng = np.random.default_rng(3)
    dist = np.sort(rng.random((60, 25)), axis=1)
    for share in (0.05, 0.3, 0.9):
        mask = rng.random(dist.shape) < share
        mask[:3] = False  # rows with no masked neighbour at all
        for k in (1, 2, 5, 25):
            expected = [row[np.flatnonzero(keep)[k - 1]] if keep.sum() >= k else row[-1]
                        for row, keep in zip(dist, mask)]
            np.testing.assert_array_equal(transductive._kth_with(dist, mask, k), expected)


def test_the_gate_fires_on_a_held_out_class_and_the_ratio_ranks_it(near_ood):
    X_ref, _, X, is_ood = near_ood
    info = DensityRatio().compute([X_ref], [X])
    assert info["used"] and info["p_value"] <= 0.01
    assert ood_metrics(info["scored"], is_ood)["auroc"] > 0.9


def test_the_gate_rarely_fires_on_exchangeable_sets():
    """Scored and reference drawn from one distribution: used with probability <= alpha (0.05 here)."""
    rng = np.random.default_rng(11)
    centers = rng.normal(size=(4, 8)) * 2
    fired, p_values = 0, []
    for _ in range(20):
        seed, ref, scored = int(rng.integers(1 << 30)), _mixture(rng, 80, centers), _mixture(rng, 60, centers)
        info = DensityRatio(alpha=0.05, n_permutations=99, seed=seed).compute([ref], [scored])
        fired += info["used"]
        # the gated test stops once p > alpha is certain (p_value None then): alpha = 1 runs every draw
        p_values.append(DensityRatio(alpha=1.0, n_permutations=99, seed=seed).compute([ref], [scored])["p_value"])
    # P(>= 4 of 20 | rate 0.05) = 0.016: a gate that ignores the data would fail here
    assert fired <= 3
    assert np.mean(p_values) > 0.3  # uniform p-values average 0.5


def test_exact_duplicates_in_the_scored_set_are_not_outliers_for_that_alone(near_ood):
    """A radius of 0 (an image scored twice) must not give an infinite ratio."""
    X_ref, _, X, is_ood = near_ood
    X_id = X[~is_ood]
    X_dup = np.concatenate([X_id, X_id[:10]])  # ten in-distribution images scored twice
    info = DensityRatio(alpha=1.0, k_fraction=0.005).compute([X_ref], [X_dup])  # k_R = k_T = 1
    z = info["scored"]
    assert np.isfinite(z).all() and np.isfinite(info["reference"]).all()
    dup_rows = np.r_[np.arange(10), len(X_id) + np.arange(10)]
    # counting the copy as a neighbour at distance 0 gives these rows z ~ 176 (no floor) or ~ 6 (floor only)
    assert np.median(z[dup_rows]) < 1.5 and z[dup_rows].max() < 4
    # an exact copy of a reference image has r = 0: finite, and very in-distribution
    info = DensityRatio(alpha=1.0, k_fraction=0.005).compute([X_ref], [np.concatenate([X_id, X_ref[:3]])])
    assert np.isfinite(info["scored"]).all() and (info["scored"][-3:] < np.median(info["scored"])).all()


def test_small_sets_are_not_searched():
    rng = np.random.default_rng(1)
    info = DensityRatio().compute([rng.normal(size=(50, 4))], [rng.normal(size=(10, 4))])
    assert not info["used"] and info["scored"] is None and "at least 20 scored" in info["reason"]
    assert info["reason"].endswith("had 10 and 50")  # the counts it had, not only the rule (read as a contradiction)


def test_pool_sample_sizes_keep_the_smaller_set_whole_up_to_half():
    assert pool_sample_sizes(300, 200, 1000) == (300, 200)  # everything fits
    assert pool_sample_sizes(300, 5000, 1000) == (300, 700)
    assert pool_sample_sizes(5000, 300, 1000) == (700, 300)
    assert pool_sample_sizes(5000, 3000, 1000) == (500, 500)
    assert pool_sample_sizes(30000, 10, 1000) == (990, 10)


def _pool_rows(n_ref, n_scored, p_ref, p_scored, seed=0):
    """The rows DensityRatio draws into its pool (its documented seeded stream)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    return np.sort(rng.choice(n_ref, p_ref, replace=False)), np.sort(rng.choice(n_scored, p_scored, replace=False))


# an IVF index over the 150-row pool has 3 cells and probes all of them: exact, through the index's own search
@pytest.mark.parametrize("index", ["flat", "ivf"])
def test_a_pool_above_max_pooled_is_sampled_and_every_row_scored_against_it(near_ood, index):
    """Independent formula: the sampled pool's rows as in the docstring; every other row's radii measured
    against the pool's reference and scored rows, standardised with the pool's reference statistics."""
    X_ref, _, X, is_ood = near_ood
    ref_rows, scored_rows = _pool_rows(200, 200, 75, 75)
    X = X.copy()
    outside = np.setdiff1d(np.arange(140), scored_rows)[0]
    X[outside] = X_ref[ref_rows[0]]  # a copy of a pooled reference image: r = 0, so the pool's floor decides
    info = DensityRatio(max_pooled=150, index=index).compute([X_ref], [X])
    assert info["pool_sample"] == [75, 75] and info["used"]
    k_ref, k_scored, _ = density_ratio_ranks(75, 75)
    assert (info["k_reference"], info["k_scored"]) == (k_ref, k_scored)
    P = _unit(np.concatenate([X_ref[ref_rows], X[scored_rows]]))
    D = np.linalg.norm(P[:, None] - P[None], axis=2)
    np.fill_diagonal(D, np.inf)  # pooled rows leave themselves out; the others are not in the pool
    Q = _unit(np.concatenate([X_ref, X]))
    DQ = np.linalg.norm(Q[:, None] - P[None], axis=2)
    in_pool = np.r_[np.isin(np.arange(200), ref_rows), np.isin(np.arange(200), scored_rows)]
    where = np.r_[np.searchsorted(ref_rows, np.arange(200)), 75 + np.searchsorted(scored_rows, np.arange(200))]
    DQ[in_pool] = D[where[in_pool]]

    def radii(dist):
        return np.sort(dist[:, :75], axis=1)[:, k_ref - 1], np.sort(dist[:, 75:], axis=1)[:, k_scored - 1]

    r, t = radii(D)
    floor = 0.5 * np.percentile(np.r_[r, t], 5)
    s_pool = np.log(np.maximum(r, floor)) - np.log(np.maximum(t, floor))
    rq, tq = radii(DQ)
    s = np.log(np.maximum(rq, floor)) - np.log(np.maximum(tq, floor))
    expected = (s - s_pool[:75].mean()) / s_pool[:75].std()
    np.testing.assert_allclose(info["reference"], expected[:200], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(info["scored"], expected[200:], rtol=1e-4, atol=1e-4)
    assert ood_metrics(info["scored"], is_ood)["auroc"] > 0.85
    full = DensityRatio().compute([X_ref], [X])
    assert full["pool_sample"] is None and np.corrcoef(full["scored"], info["scored"])[0, 1] > 0.8


def test_the_default_detector_records_a_sampled_pool(near_ood, monkeypatch):
    X_ref, y_ref, X, is_ood = near_ood
    monkeypatch.setattr(transductive, "MAX_POOLED", 150)
    det = PyramidKNNDetector(level_dims=DIMS).fit(X_ref, y_ref)
    scores = det.score_samples(X)
    assert det.transductive_["used"] and det.transductive_["pool_sample"] == [75, 75]
    record = det.fitted_params()["transductive"]  # what the run record keeps
    assert record["pool_sample"] == [75, 75] and "seeded sample of 75 reference + 75 scored" in record["reason"]
    assert np.isfinite(scores).all() and np.isfinite(det.batch_reference_scores_).all()
    assert ood_metrics(scores, is_ood)["auroc"] > 0.9


def test_a_sampled_pool_whose_ratio_is_not_used_leaves_each_image_on_its_own(monkeypatch):
    """Exchangeable sets: the test keeps the ratio out, the rows outside the sample are not measured, and the
    default detector's scores are those of each image on its own."""
    rng = np.random.default_rng(11)
    centers = rng.normal(size=(4, sum(DIMS))) * 2
    y_ref = rng.integers(0, 4, 200)
    X_ref = (centers[y_ref] + rng.normal(size=(200, sum(DIMS)))).astype(np.float32)
    X = _mixture(rng, 200, centers)
    info = DensityRatio(max_pooled=100).compute([X_ref], [X])
    assert not info["used"] and info["pool_sample"] == [50, 50]
    assert info["scored"] is None and info["reference"] is None
    monkeypatch.setattr(transductive, "MAX_POOLED", 100)
    det = PyramidKNNDetector(level_dims=DIMS).fit(X_ref, y_ref)
    scores = det.score_samples(X)
    assert not det.transductive_["used"] and det.transductive_["pool_sample"] == [50, 50]
    alone = PyramidKNNDetector(level_dims=DIMS, transductive="never").fit(X_ref, y_ref)
    np.testing.assert_array_equal(scores, alone.score_samples(X))
    np.testing.assert_array_equal(det.batch_reference_scores_, det.reference_scores_)


def test_default_detector_adds_the_ratio_only_when_the_gate_fires(near_ood):
    X_ref, y_ref, X, is_ood = near_ood
    never = PyramidKNNDetector(level_dims=DIMS, transductive="never").fit(X_ref, y_ref)
    auto = PyramidKNNDetector(level_dims=DIMS).fit(X_ref, y_ref)
    base, fused = never.score_samples(X), auto.score_samples(X)
    assert never.transductive_ is None
    assert auto.transductive_["used"] and auto.fitted_params()["transductive"]["p_value"] <= 0.01
    comps = auto._components(X, "scored", auto.components_)
    ratio = DensityRatio(alpha=1.0).compute(auto.reference_components_, [Z for _, Z in comps])
    w = auto.transductive_["weight"]
    assert w == pytest.approx(ratio_weight(ratio["effect"]), rel=1e-6) and 1 <= w <= 2
    np.testing.assert_allclose(fused, base + w * ratio["scored"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(auto.batch_reference_scores_, auto.reference_scores_ + w * ratio["reference"],
                               rtol=1e-6, atol=1e-6)
    assert auto.fitted_params()["transductive"]["weight"] == w
    assert ood_metrics(fused, is_ood)["auroc"] > ood_metrics(base, is_ood)["auroc"] + 0.02
    # in-distribution batch only: the gate stays closed and the scores are the inductive ones
    X_id = X[~is_ood]
    np.testing.assert_allclose(auto.score_samples(X_id), never.score_samples(X_id))
    assert not auto.transductive_["used"]


def test_a_used_ratio_warns_when_the_trusted_classes_are_imbalanced(near_ood):
    """The ratio assumes the scored set holds the classes in the trusted proportions; with a largest trusted
    class at least IMBALANCE_WARNING times the smallest, a used ratio says so in the fitted parameters."""
    from ood_core.detectors.pyramid_knn import IMBALANCE_WARNING

    X_ref, y_ref, X, _ = near_ood
    balanced = PyramidKNNDetector(level_dims=DIMS).fit(X_ref, y_ref)
    balanced.score_samples(X)
    assert balanced.transductive_["used"] and "warning" not in balanced.fitted_params()["transductive"]
    keep = np.flatnonzero(y_ref == 0).tolist() + [i for c in (1, 2, 3) for i in np.flatnonzero(y_ref == c)[:10]]
    small, large = 10, int(np.sum(y_ref == 0))
    assert large >= IMBALANCE_WARNING * small
    # forced on ("auto" would leave it out here: the class mixes differ, see the next test)
    imbalanced = PyramidKNNDetector(level_dims=DIMS, transductive="always").fit(X_ref[keep], y_ref[keep])
    imbalanced.score_samples(X)
    info = imbalanced.fitted_params()["transductive"]
    assert info["used"] and f"largest {large}, smallest {small}" in info["warning"]
    assert "transductive='never'" in info["warning"]
    # each image on its own: no ratio, no warning
    never = PyramidKNNDetector(level_dims=DIMS, transductive="never").fit(X_ref[keep], y_ref[keep])
    never.score_samples(X)
    assert never.transductive_ is None and "transductive" not in never.fitted_params()


def _brute_mix(det, X_ref, y_ref, X):
    """Brute force of the class mix's inputs for a ``transductive="never"`` detector: the unit-norm reference
    rows on the first active component, the classes in label order, each scored row scoring at most the
    reference's 90th percentile with its distance to each class's k-th nearest reference row (the class's own
    k), and the trusted shares."""
    from ood_core.detectors.class_mix import CLASS_MIX_QUANTILE

    scores = det.score_samples(X) if det.transductive == "never" else None
    keep = scores <= np.quantile(det.reference_scores_, CLASS_MIX_QUANTILE)
    sl = slice(DIMS[0], sum(DIMS)) if det.active_[0] else slice(0, sum(DIMS))  # deepest level, else all levels
    R, T = _unit(X_ref[:, sl]), _unit(X[keep][:, sl])
    classes = list(dict.fromkeys(y_ref.tolist()))
    dist = np.stack([np.sort(np.linalg.norm(T[:, None] - R[None, y_ref == c], axis=2), axis=1)[:, k - 1]
                     for c, k in zip(classes, det.group_k_)], axis=1)
    trusted = np.array([np.mean(y_ref == c) for c in classes])
    return R, classes, dist, trusted


def _shares_tv(det, X_ref, y_ref, X, chance=False):
    """Brute force of the class-mix shift: nearest class of each in-distribution-looking scored row
    (:func:`_brute_mix`), total variation against trusted shares (``chance=True``: also the number of those
    rows and the trusted shares)."""
    _, classes, dist, trusted = _brute_mix(det, X_ref, y_ref, X)
    scored = np.bincount(dist.argmin(axis=1), minlength=len(classes)) / dist.shape[0]
    tv = 0.5 * np.abs(scored - trusted).sum()
    return (tv, dist.shape[0], trusted, scored) if chance else tv


def _simulated_chance(n, shares, draws=200_000, seed=0):
    counts = np.random.default_rng(seed).multinomial(n, shares, size=draws)
    return float((0.5 * np.abs(counts / n - shares).sum(axis=1)).mean())


def test_the_chance_total_variation_is_the_sampling_expectation():
    """chance_total_variation = E[TV] of n multinomial draws from the shares (checked by simulation, exact and
    normal-approximation branches); small batches show a large total variation by chance alone."""
    from ood_core.detectors.class_mix import chance_total_variation

    for n, shares in ((20, np.full(6, 1 / 6)), (300, np.full(6, 1 / 6)), (57, np.array([0.5, 0.25, 0.125, 0.125]))):
        assert chance_total_variation(n, shares) == pytest.approx(_simulated_chance(n, shares), abs=2e-3)
    many = np.full(1000, 1e-3)  # 1000 classes x 3000 draws: the normal approximation
    assert chance_total_variation(3000, many) == pytest.approx(_simulated_chance(3000, many, draws=3000), rel=0.03)
    assert chance_total_variation(20, np.full(6, 1 / 6)) > 4 * chance_total_variation(300, np.full(6, 1 / 6)) / 2
    assert chance_total_variation(0, np.full(6, 1 / 6)) == 0.0


def _skewed_mix(n_ood, seed=11):
    """Separated classes (the nearest class of a scored image is its class): 40 trusted images per class,
    the skewed trusted set keeps 6 of classes 1-3; 30 scored per class plus ``n_ood`` of a held-out class."""
    rng = np.random.default_rng(seed)
    centers = np.eye(5, sum(DIMS)) * 6.0
    y_ref = np.repeat(np.arange(4), 40)
    X_ref = (centers[y_ref] + rng.normal(size=(160, sum(DIMS)))).astype(np.float32)
    X = np.concatenate([centers[np.repeat(np.arange(4), 30)] + rng.normal(size=(120, sum(DIMS))),
                        centers[4] + 0.5 * rng.normal(size=(n_ood, sum(DIMS)))]).astype(np.float32)
    keep = np.flatnonzero(y_ref == 0).tolist() + [i for c in (1, 2, 3) for i in np.flatnonzero(y_ref == c)[:6]]
    return X_ref, y_ref, keep, X, np.r_[np.zeros(120, bool), np.ones(n_ood, bool)]


def _blocks(det, X):
    """The active components of ``det`` as column blocks (deepest level = the last DIMS block)."""
    blocks = [X[:, DIMS[0]:], X]
    return [b for b, a in zip(blocks, det.active_) if a]


def test_a_class_mix_shift_matches_the_reference_to_the_scored_mix():
    """'auto': when the in-distribution-looking scored images hold the trusted classes in clearly other
    proportions (total variation beyond chance > class_mix_gate), the plain ratio would rank the
    under-represented classes as OOD. The ratio then compares the scored set with the largest draw of trusted
    images in the scored set's class mix (here about 6 of each class), and the record says so."""
    from ood_core.detectors.class_mix import chance_total_variation

    X_ref, y_ref, keep, X, is_ood = _skewed_mix(50)
    gate = PyramidKNNDetector().class_mix_gate  # the default
    never = PyramidKNNDetector(level_dims=DIMS, transductive="never").fit(X_ref[keep], y_ref[keep])
    expected, n_kept, trusted, scored = _shares_tv(never, X_ref[keep], y_ref[keep], X, chance=True)
    auto = PyramidKNNDetector(level_dims=DIMS).fit(X_ref[keep], y_ref[keep])
    scores = auto.score_samples(X)
    info = auto.fitted_params()["transductive"]
    assert info["class_mix_shift"] == pytest.approx(expected, abs=1e-9)
    assert info["class_mix_chance"] == pytest.approx(chance_total_variation(n_kept, trusted), abs=1e-12)
    assert info["class_mix_shift"] - info["class_mix_chance"] > gate and "other proportions" in info["reason"]
    # the matched draw: the largest draw without repeats in the scored shares (about equal: about 6 of each)
    rows = auto.class_mix_rows(scored)
    sizes = np.bincount(y_ref[keep], minlength=4)
    total = min(sizes[c] / scored[c] for c in range(4) if scored[c] > 0)
    assert np.bincount(y_ref[keep][rows], minlength=4).tolist() == [
        min(sizes[c], int(round(scored[c] * total))) for c in range(4)]
    assert 20 <= rows.size <= 30 and len(set(rows)) == rows.size
    assert info["class_mix_reference"] == rows.size
    # the classes 1-3 the skewed trusted set under-represents hold their members, not a crowd: the mix stays
    assert info["class_mix_crowd"] is not None and info["class_mix_excess_without_crowd"] > gate
    assert f"{rows.size} trusted samples drawn in its class mix" in info["reason"]
    # the scores: each image alone plus the weighted ratio against those rows, as DensityRatio computes it
    ref = DensityRatio().compute(_blocks(auto, X_ref[keep][rows]), _blocks(auto, X))
    assert info["used"] and ref["used"]
    np.testing.assert_allclose(scores, never.score_samples(X) + info["weight"] * ref["scored"], rtol=1e-4,
                               atol=1e-4)
    moved = np.flatnonzero(~np.isclose(auto.batch_reference_scores_, auto.reference_scores_))
    assert set(moved) <= set(rows)  # trusted rows outside the draw keep their own score
    # against the whole skewed reference the under-represented classes 1-3 look denser among the scored images
    # and crowd toward the OOD images; against the matched draw the OOD crowd stands out further from them
    plain = DensityRatio().compute(_blocks(auto, X_ref[keep]), _blocks(auto, X))["scored"]
    rare_classes = np.r_[np.zeros(30, bool), np.ones(90, bool), np.zeros(len(X) - 120, bool)]
    assert ref["scored"][is_ood].mean() - ref["scored"][rare_classes].mean() > \
        plain[is_ood].mean() - plain[rare_classes].mean() + 1.0
    # the gate switched off: the plain ratio's permutation test decides, as before
    ungated = PyramidKNNDetector(level_dims=DIMS, class_mix_gate=None).fit(X_ref[keep], y_ref[keep])
    ungated.score_samples(X)
    assert ungated.transductive_["used"] and ungated.transductive_["class_mix_reference"] is None
    # the balanced reference: the mixes match, the shift is small and the whole reference is used
    balanced = PyramidKNNDetector(level_dims=DIMS).fit(X_ref, y_ref)
    balanced.score_samples(X)
    shift = balanced.transductive_["class_mix_shift"]
    assert shift - balanced.transductive_["class_mix_chance"] < gate and balanced.transductive_["used"]
    assert balanced.transductive_["class_mix_reference"] is None and balanced.transductive_["class_mix_crowd"] is None
    assert shift == pytest.approx(
        _shares_tv(PyramidKNNDetector(level_dims=DIMS, transductive="never").fit(X_ref, y_ref), X_ref, y_ref, X),
        abs=1e-9)


def test_a_class_mix_shift_with_few_ood_images_scores_each_image_alone():
    """3 OOD images among 120: against the skewed trusted set the plain ratio's test fires on the class mix
    alone (and would rank the under-represented classes as OOD); against the draw in the scored mix it does
    not, so each image is scored on its own."""
    X_ref, y_ref, keep, X, is_ood = _skewed_mix(3)
    never = PyramidKNNDetector(level_dims=DIMS, transductive="never").fit(X_ref[keep], y_ref[keep])
    auto = PyramidKNNDetector(level_dims=DIMS).fit(X_ref[keep], y_ref[keep])
    np.testing.assert_allclose(auto.score_samples(X), never.score_samples(X))
    info = auto.transductive_
    assert not info["used"] and 20 <= info["class_mix_reference"] <= 30 and "does not differ" in info["reason"]
    ungated = PyramidKNNDetector(level_dims=DIMS, class_mix_gate=None).fit(X_ref[keep], y_ref[keep])
    added = ungated.score_samples(X) - never.score_samples(X)
    assert ungated.transductive_["used"]
    assert added[30:120].mean() > added[:30].mean() + 1.0  # classes 1-3 pushed toward OOD, class 0 not


def _crowd_brute(det, X_ref, y_ref, X):
    """Brute force of the crowd estimate: for each class the in-distribution-looking scored rows over-represent,
    2 x (its rows beyond the median of the members' leave-one-out k-th in-class distance) - its rows."""
    R, classes, dist, trusted = _brute_mix(det, X_ref, y_ref, X)
    given = dist.argmin(axis=1)
    crowd = np.zeros(len(classes))
    for g in np.flatnonzero(np.bincount(given, minlength=len(classes)) / given.size > trusted):
        M = R[y_ref == classes[g]]
        pairs = np.linalg.norm(M[:, None] - M[None], axis=2) + np.diag(np.full(len(M), np.inf))
        median = np.median(np.sort(pairs, axis=1)[:, det.group_k_[g] - 1])
        d = dist[given == g, g]
        crowd[g] = max(0, 2 * np.sum(d > median) - d.size)
    return crowd, np.bincount(given, minlength=len(classes)), trusted


def test_an_ood_crowd_near_one_class_is_not_taken_for_a_class_mix():
    """Balanced trusted classes; the scored set holds them equally plus a crowd of OOD images just beyond one
    class (the footwear a trusted Sneaker class attracts when Sandals and Ankle boots are held out). The crowd's
    in-distribution-looking images are given to that class, so its share alone says "class mix" and the gate's
    rule fires; but most of them lie farther from the class than half its trusted members do. Taking that
    estimated crowd out of the counts leaves no class mix, so the whole reference is used: the scores are those
    of class_mix_gate=None, where the matched draw would have hidden the crowd."""
    from ood_core.detectors.class_mix import chance_total_variation

    rng = np.random.default_rng(5)
    centers = np.eye(4, sum(DIMS)) * 8.0
    y_ref = np.repeat(np.arange(4), 50)
    X_ref = (centers[y_ref] + rng.normal(size=(200, sum(DIMS)))).astype(np.float32)
    beyond = np.zeros(sum(DIMS))
    beyond[5] = 4.0
    X = np.concatenate([centers[np.repeat(np.arange(4), 30)] + rng.normal(size=(120, sum(DIMS))),
                        centers[0] + beyond + 0.5 * rng.normal(size=(150, sum(DIMS)))]).astype(np.float32)
    det = PyramidKNNDetector(level_dims=DIMS).fit(X_ref, y_ref)
    scores = det.score_samples(X)
    info = det.transductive_
    gate = det.class_mix_gate
    assert info["class_mix_shift"] - info["class_mix_chance"] > gate  # the shares alone would fire the gate
    crowd, counts, trusted = _crowd_brute(PyramidKNNDetector(level_dims=DIMS, transductive="never").fit(
        X_ref, y_ref), X_ref, y_ref, X)
    assert crowd[1:].sum() == 0 and info["class_mix_crowd"] == crowd[0] >= 40
    left = counts - crowd
    assert info["class_mix_excess_without_crowd"] == pytest.approx(
        0.5 * np.abs(left / left.sum() - trusted).sum() - chance_total_variation(int(left.sum()), trusted),
        abs=1e-9)
    assert info["class_mix_excess_without_crowd"] <= gate
    assert info["class_mix_reference"] is None and "OOD crowd" in info["reason"] and info["used"]
    ungated = PyramidKNNDetector(level_dims=DIMS, class_mix_gate=None).fit(X_ref, y_ref)
    np.testing.assert_allclose(scores, ungated.score_samples(X))
    np.testing.assert_allclose(det.batch_reference_scores_, ungated.batch_reference_scores_)


def test_the_crowd_estimate_counts_images_beyond_the_members_median():
    """crowd_size: members fall beyond their own median half the time, so of n images with `above` beyond it
    about 2 * above - n are a crowd; excess_without_crowd re-measures the mix without them."""
    from ood_core.detectors.class_mix import chance_total_variation, crowd_size, excess_without_crowd

    rng = np.random.default_rng(0)
    members = rng.normal(1.0, 0.1, size=400)
    median = np.median(members)
    new_members = rng.normal(1.0, 0.1, size=200)
    assert crowd_size(new_members, median) <= 45  # 3 standard deviations of 2 x Binomial(200, 1/2) - 200
    crowd = crowd_size(np.r_[new_members, rng.normal(1.5, 0.1, size=100)], median)
    assert abs(crowd - 100) <= 45
    assert crowd_size(np.full(10, 0.5), median) == 0 and crowd_size(np.full(10, 2.0), median) == 10
    shares = np.full(4, 0.25)
    assert excess_without_crowd([90, 30, 30, 30], shares, [60, 0, 0, 0]) == pytest.approx(
        -chance_total_variation(120, shares), abs=1e-12)
    assert excess_without_crowd([90, 30, 30, 30], shares, [0, 0, 0, 0]) == pytest.approx(
        0.5 * (0.5 - 0.25 + 3 * (0.25 - 30 / 180)) - chance_total_variation(180, shares), abs=1e-12)
    assert excess_without_crowd([5, 0, 0, 0], shares, [5, 0, 0, 0]) == 0.0


def test_small_batches_of_the_trusted_mix_do_not_trip_the_class_mix_gate():
    """20 images drawn from the trusted classes in the trusted proportions: their class shares still differ
    from the trusted ones by chance (total variation about 0.17 for 4 classes). The gate compares only the
    excess over that chance level with class_mix_gate, so it stays shut, where the raw total variation alone
    exceeds the gate in many of these batches."""
    rng = np.random.default_rng(3)
    centers = np.eye(4, sum(DIMS)) * 8.0  # well-separated classes: every image gets its own class
    y_ref = np.repeat(np.arange(4), 50)
    X_ref = (centers[y_ref] + rng.normal(size=(200, sum(DIMS)))).astype(np.float32)
    det = PyramidKNNDetector(level_dims=DIMS).fit(X_ref, y_ref)
    gate = det.class_mix_gate
    raw_over, fired = 0, 0
    for _ in range(30):
        det.score_samples(_mixture(rng, 20, centers))
        info = det.transductive_
        raw_over += info["class_mix_shift"] > gate
        fired += "other proportions" in (info["reason"] or "")
        assert info["class_mix_chance"] > 0.1
    assert raw_over >= 5 and fired <= 1, (raw_over, fired)


def test_the_effect_is_the_statistic_over_its_standard_error(near_ood):
    X_ref, _, X, _ = near_ood
    info = DensityRatio().compute([X_ref], [X])
    t, r = info["scored"], info["reference"]
    pooled = np.r_[t, r]
    expected = (t.mean() - r.mean()) / (pooled.std() * np.sqrt(1 / t.size + 1 / r.size))
    assert info["effect"] == pytest.approx(expected, rel=1e-9)
    assert info["effect"] > 4  # a held-out class as 30% of the batch: a strong effect


def test_the_ratio_weight_grows_with_the_effect_from_one_to_two():
    scale = 2 * 2.3263478740408408  # twice the one-sided 1% normal quantile
    assert [ratio_weight(e) for e in (-1.0, 0.0, 2.5, scale)] == [1.0, 1.0, 1.0, 1.0]
    assert ratio_weight(1.5 * scale) == pytest.approx(1.5)
    assert ratio_weight(2 * scale) == pytest.approx(2.0) and ratio_weight(50.0) == 2.0


def test_a_fixed_ratio_weight_is_used_as_given(near_ood):
    X_ref, y_ref, X, _ = near_ood
    never = PyramidKNNDetector(level_dims=DIMS, transductive="never").fit(X_ref, y_ref)
    base = never.score_samples(X)
    one = PyramidKNNDetector(level_dims=DIMS, transductive_weight=1).fit(X_ref, y_ref)
    three = PyramidKNNDetector(level_dims=DIMS, transductive_weight=3.0).fit(X_ref, y_ref)
    s1, s3 = one.score_samples(X), three.score_samples(X)
    assert one.transductive_["weight"] == 1.0 and three.transductive_["weight"] == 3.0
    np.testing.assert_allclose(s3 - base, 3 * (s1 - base), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(three.batch_reference_scores_ - three.reference_scores_,
                               3 * (one.batch_reference_scores_ - one.reference_scores_), rtol=1e-5, atol=1e-5)


def test_score_arrays_gives_reference_rows_the_batch_scale(near_ood):
    X_ref, y_ref, X, _ = near_ood
    X_all = np.concatenate([X_ref[:5], X])  # the first five scored rows are reference rows 0..4
    ref_index = np.r_[np.arange(5), np.full(len(X), -1)]
    scores, det, _, ref_scores = score_arrays(
        X_all, method="pyramid_knn", X_ref=X_ref, labels_ref=list(map(str, y_ref)), ref_index=ref_index,
        level_dims=DIMS, return_reference_scores=True)
    assert det.transductive_["used"]
    np.testing.assert_allclose(ref_scores, det.batch_reference_scores_)
    np.testing.assert_allclose(scores[:5], det.batch_reference_scores_[:5])


def test_bad_options_name_the_input():
    with pytest.raises(OODInputError, match="max_pooled=10 .*at least 40"):
        DensityRatio(max_pooled=10)
    with pytest.raises(OODInputError, match="max_pooled=1.5"):
        DensityRatio(max_pooled=1.5)
    with pytest.raises(OODInputError, match="transductive='sometimes'"):
        PyramidKNNDetector(transductive="sometimes")
    with pytest.raises(OODInputError, match="transductive_alpha=0"):
        PyramidKNNDetector(transductive_alpha=0)
    with pytest.raises(OODInputError, match="transductive_weight=0"):
        PyramidKNNDetector(transductive_weight=0)
    with pytest.raises(OODInputError, match="transductive_weight='heavy'"):
        PyramidKNNDetector(transductive_weight="heavy")
    with pytest.raises(OODInputError, match="class_mix_gate=0"):
        PyramidKNNDetector(class_mix_gate=0)
    with pytest.raises(OODInputError, match="class_mix_gate=True"):
        PyramidKNNDetector(class_mix_gate=True)
