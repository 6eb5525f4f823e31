"""PyramidKNNDetector (the default OOD detector) against an independent brute-force computation."""

import numpy as np
import pytest

from ood_core.detectors import make_detector
from ood_core.detectors.pyramid_knn import PyramidKNNDetector
from ood_core.errors import OODInputError

DIMS = [3, 5, 8]  # three levels; the deepest is the last 8 columns
# the formulas below are the inductive score; the scored-set density ratio has its own tests
# (tests/test_transductive.py)
INDUCTIVE = dict(transductive="never")


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _kth_per_class(R, y, T, k, leave_out=None):
    """Brute force: min over classes of the k-th smallest Euclidean distance (unit rows).

    ``k``: one rank for every class, or a dict class -> rank.
    """
    D = np.linalg.norm(T[:, None, :] - R[None, :, :], axis=2)
    if leave_out is not None:
        D[np.arange(len(T)), leave_out] = np.inf
    out = np.full(len(T), np.inf)
    for c in np.unique(y):
        kc = k[c] if isinstance(k, dict) else k
        Dc = np.sort(D[:, y == c], axis=1)
        if Dc.shape[1] >= kc:
            out = np.minimum(out, Dc[:, kc - 1])
    return out


def _expected(X_ref, y, X, k):
    """The module docstring's formula, written out with numpy only."""
    comps = [slice(sum(DIMS[:-1]), sum(DIMS)), slice(0, sum(DIMS))]  # deepest level, all levels
    z = []
    for sl in comps:
        R, T = _unit(X_ref[:, sl]), _unit(X[:, sl])
        loo = _kth_per_class(R, y, R, k, leave_out=np.arange(len(R)))
        s = _kth_per_class(R, y, T, k)
        z.append((s - loo.mean()) / loo.std())
    return np.max(z, axis=0), z


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(3, sum(DIMS))) * 3
    y = np.repeat(np.array(["a", "b", "c"]), [40, 60, 50])
    X_ref = (centers[np.searchsorted(["a", "b", "c"], y)] + rng.normal(size=(150, sum(DIMS)))).astype(np.float32)
    X_id = (centers[rng.integers(0, 3, 30)] + rng.normal(size=(30, sum(DIMS)))).astype(np.float32)
    X_ood = (rng.normal(size=(30, sum(DIMS))) * 3).astype(np.float32)
    return X_ref, y, X_id, X_ood


# groups of at most GEMM_GROUP_ROWS rows are searched by float64 matrix products, larger ones by their own index:
# both paths against the formula (40-60 rows per class: 60 = the matrix products, 0 = every class's index, 45 = both)
@pytest.mark.parametrize("gemm_rows", [60, 0, 45])
def test_scores_match_the_formula_with_labels(data, gemm_rows, monkeypatch):
    monkeypatch.setattr("ood_core.detectors.pyramid_knn.GEMM_GROUP_ROWS", gemm_rows)
    X_ref, y, X_id, X_ood = data
    X = np.concatenate([X_id, X_ood])
    det = PyramidKNNDetector(level_dims=DIMS, **INDUCTIVE).fit(X_ref, y)
    # each class its own rank: adaptive_k(class size, fraction 0.05) = round(2.0), round(3.0), round(2.5) up
    assert det.group_k_ == [2, 3, 3] and det.k_ == 2
    assert det.fitted_params()["k_per_class"] == {"min": 2, "max": 3}
    assert det.active_.all()  # both components separate the classes equally well: the gate keeps both
    assert det.components_ == ["deepest level", "all levels"]
    expected, parts = _expected(X_ref, y, X, {"a": 2, "b": 3, "c": 3})
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(det.component_scores(X), np.stack(parts, 1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("gemm_rows", [60, 0, 45])
def test_fit_score_leaves_each_point_out_of_its_class(data, gemm_rows, monkeypatch):
    monkeypatch.setattr("ood_core.detectors.pyramid_knn.GEMM_GROUP_ROWS", gemm_rows)
    X_ref, y, _, _ = data
    det = PyramidKNNDetector(level_dims=DIMS, k=3)
    scores = det.fit_score(X_ref, y)
    z = []
    for sl in (slice(8, 16), slice(0, 16)):
        R = _unit(X_ref[:, sl])
        loo = _kth_per_class(R, y, R, 3, leave_out=np.arange(len(R)))
        z.append((loo - loo.mean()) / loo.std())
    np.testing.assert_allclose(scores, np.max(z, axis=0), rtol=1e-4, atol=1e-4)


def test_unsupervised_fit_score_reads_each_class_at_its_wider_rank(data):
    """fit_score (no trusted reference: the set scores itself) reads each class at the unsupervised 15%;
    fit_reference_scores (a trusted reference) keeps 5%, each point left out of its own class; an unlabelled
    set is read at 2% either way."""
    X_ref, y, _, _ = data  # classes of 40 / 60 / 50
    det = PyramidKNNDetector(level_dims=DIMS)
    scores = det.fit_score(X_ref, y)
    # adaptive_k(size - 1, 0.15): round(5.85), round(8.85), round(7.35)
    assert det.group_k_ == [6, 9, 7]
    z = []
    for sl in (slice(8, 16), slice(0, 16)):
        R = _unit(X_ref[:, sl])
        loo = _kth_per_class(R, y, R, {"a": 6, "b": 9, "c": 7}, leave_out=np.arange(len(R)))
        z.append((loo - loo.mean()) / loo.std())
    np.testing.assert_allclose(scores, np.max(z, axis=0), rtol=1e-4, atol=1e-4)
    unlabelled = PyramidKNNDetector(level_dims=DIMS)
    unlabelled.fit_score(X_ref)
    assert unlabelled.group_k_ == [3]  # adaptive_k(149, 0.02)
    trusted = PyramidKNNDetector(level_dims=DIMS)
    trusted.fit_reference_scores(X_ref, y)
    assert trusted.group_k_ == [2, 3, 2]  # adaptive_k(size - 1, 0.05): round(1.95), round(2.95), round(2.45)
    trusted.fit_reference_scores(X_ref)
    assert trusted.group_k_ == [3]  # adaptive_k(149, 0.02)
    chosen = PyramidKNNDetector(level_dims=DIMS, unsupervised_class_k_fraction=0.05)
    chosen.fit_score(X_ref, y)
    assert chosen.group_k_ == [2, 3, 2] and "unsupervised_class_k_fraction" in chosen.get_params()
    with pytest.raises(OODInputError, match="unsupervised_class_k_fraction"):
        PyramidKNNDetector(unsupervised_class_k_fraction=0)


def test_trusted_rows_of_a_scored_view_keep_the_trusted_ranks(data):
    """The FiftyOne layer's scoring (score_arrays): trusted samples inside the scored view get the trusted
    reference's leave-one-out scores (5% of each class), not the unsupervised self-scores."""
    from ood_core.fo.scores import score_arrays

    X_ref, y, X_id, X_ood = data
    X = np.concatenate([X_ref[:10], X_id, X_ood])
    ref_index = np.r_[np.arange(10), np.full(len(X_id) + len(X_ood), -1)]
    scores, det, _ = score_arrays(X, method="pyramid_knn", X_ref=X_ref, labels_ref=y, ref_index=ref_index,
                                  level_dims=DIMS, transductive="never")
    assert det.group_k_ == [2, 3, 2]
    trusted = PyramidKNNDetector(level_dims=DIMS).fit_reference_scores(X_ref, y)
    np.testing.assert_allclose(scores[:10], trusted[:10], rtol=1e-6)
    assert not np.allclose(scores[:10], PyramidKNNDetector(level_dims=DIMS).fit_score(X_ref, y)[:10])


def test_unsupervised_scoring_finds_a_clump_hidden_inside_a_class():
    """Without a trusted reference, OOD images that arrive together and carry an in-distribution label form a
    tight clump inside that class. Read at 5% of the class, each clump member's k-th neighbour is another
    member (it looks typical); at the unsupervised 15% it is outside the clump."""
    rng = np.random.default_rng(11)
    dim = 16
    centers = rng.normal(size=(3, dim)) * 4
    X_id = np.concatenate([centers[c] + rng.normal(size=(200, dim)) for c in range(3)])
    clump = centers[0] + 6 + 0.3 * rng.normal(size=(20, dim))  # 20 images (9% of the class) off class "a"
    X = np.concatenate([X_id, clump]).astype(np.float32)
    y = np.repeat(np.array(["a", "b", "c"]), 200).tolist() + ["a"] * 20
    is_ood = np.r_[np.zeros(600, bool), np.ones(20, bool)]

    def auroc(s):
        return float(np.mean(s[is_ood][:, None] > s[~is_ood][None, :]))

    wide = auroc(PyramidKNNDetector().fit_score(X, y))
    narrow = auroc(PyramidKNNDetector(unsupervised_class_k_fraction=0.05).fit_score(X, y))
    assert wide > 0.95 and narrow < 0.6, (wide, narrow)


def test_without_labels_the_whole_reference_is_one_class(data):
    X_ref, _, X_id, X_ood = data
    X = np.concatenate([X_id, X_ood])
    det = PyramidKNNDetector(level_dims=DIMS, **INDUCTIVE).fit(X_ref)
    assert det.components_ == ["deepest level", "all levels"] and det.classes_ == 1
    assert det.k_ == 3  # adaptive_k(150, fraction 0.02)
    expected, _ = _expected(X_ref, np.zeros(len(X_ref)), X, 3)
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-4, atol=1e-4)
    knn = make_detector("knn", k=8).fit(X_ref[:, 8:])
    one_level = PyramidKNNDetector(k=8, **INDUCTIVE).fit(X_ref[:, 8:])  # one level: the k-NN ranking, standardised
    assert np.array_equal(np.argsort(one_level.score_samples(X[:, 8:])), np.argsort(knn.score_samples(X[:, 8:])))


def test_ood_ranks_above_in_distribution_and_higher_is_more_ood(data):
    X_ref, y, X_id, X_ood = data
    det = make_detector("pyramid_knn", level_dims=DIMS).fit(X_ref, y)
    s_id, s_ood = det.score_samples(X_id), det.score_samples(X_ood)
    assert s_ood.min() > np.median(s_id)
    assert det.get_params()["method"] == "pyramid_knn"
    fitted = det.fitted_params()
    assert {k: fitted[k] for k in ("k", "components", "classes")} == {
        "k": 2, "components": ["deepest level", "all levels"], "classes": 3}
    assert set(fitted["transductive"]) == {"used", "p_value", "p_value_at_least", "permutations_run",
                                           "effect", "weight", "k_reference", "k_scored",
                                           "class_mix_shift", "class_mix_chance", "class_mix_reference",
                                           "class_mix_crowd", "class_mix_excess_without_crowd",
                                           "pool_sample", "reason"}


def test_polluters_with_random_labels_do_not_hide_ood():
    """OOD images in the reference, spread over the classes, stay unusual per class (not globally)."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16)) * 4
    y = np.repeat(np.arange(3), 100)
    X_ref = centers[y] + rng.normal(size=(300, 16))
    polluters = centers[3] + rng.normal(size=(12, 16))  # 4% from an OOD cluster, 4 per class
    X_ref = np.concatenate([X_ref, polluters]).astype(np.float32)
    y = np.concatenate([y, np.repeat(np.arange(3), 4)])
    X_ood = (centers[3] + rng.normal(size=(50, 16))).astype(np.float32)
    X_id = (centers[rng.integers(0, 3, 50)] + rng.normal(size=(50, 16))).astype(np.float32)
    from ood_core.metrics import ood_metrics

    is_ood = np.r_[np.zeros(50, bool), np.ones(50, bool)]
    X = np.concatenate([X_id, X_ood])
    per_class = ood_metrics(PyramidKNNDetector(k=5, **INDUCTIVE).fit(X_ref, y).score_samples(X), is_ood)["auroc"]
    global_k = ood_metrics(make_detector("knn", k=5).fit(X_ref).score_samples(X), is_ood)["auroc"]
    assert per_class > 0.95 and global_k < 0.8


def test_errors_name_the_input():
    X = np.random.default_rng(0).normal(size=(20, 16)).astype(np.float32)
    with pytest.raises(OODInputError, match="level_dims"):
        PyramidKNNDetector(level_dims=[3, 5]).fit(X, ["a"] * 20)
    with pytest.raises(OODInputError, match="reference classes are too small"):
        PyramidKNNDetector(k=15).fit(X, ["a", "b"] * 10)
    with pytest.raises(OODInputError, match="reference classes are too small"):
        PyramidKNNDetector(k=2).fit_score(X[:4], ["a", "a", "b", "c"])  # no group offers 2 other samples
    with pytest.raises(OODInputError, match="only 1 sample.s. are scored against each other.*at least 2"):
        PyramidKNNDetector().fit_score(X[:1])  # unsupervised: one sample has no neighbour
    for labels in (None, ["a"]):  # a trusted reference of one image: nothing to standardise on
        with pytest.raises(OODInputError, match="reference embeddings has 1 sample.s.*at least 2"):
            PyramidKNNDetector(level_dims=[8, 8]).fit(X[:1], labels)
        with pytest.raises(OODInputError, match="reference embeddings has 1 sample.s.*at least 2"):
            PyramidKNNDetector(level_dims=[8, 8]).fit_reference_scores(X[:1], labels)
    with pytest.raises(OODInputError, match="class_k_fraction"):
        PyramidKNNDetector(class_k_fraction=0)
    with pytest.raises(OODInputError, match="one label"):
        PyramidKNNDetector().fit(X, ["a"] * 3)


def test_unlabelled_rows_are_one_group():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 16)).astype(np.float32)
    y = ["a"] * 25 + ["b"] * 25 + [None] * 10
    det = PyramidKNNDetector().fit(X, y)
    assert det.classes_ == 3 and det.k_ == 1  # k from the smallest *labelled* class (25)
    assert np.isfinite(det.score_samples(X)).all()


def test_one_sample_per_class_scores_against_the_other_classes():
    """Tiny references (the audit of a 20-image dataset): a class of one sample left out of itself
    is scored against the other classes instead of failing."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(8, 16)).astype(np.float32)
    y = list("abcdefgh")
    scores = PyramidKNNDetector().fit_score(X, y)
    D = np.linalg.norm(_unit(X)[:, None] - _unit(X)[None], axis=2)
    np.fill_diagonal(D, np.inf)
    nearest_other = D.min(axis=1)  # k=1: every other sample is another class
    z = (nearest_other - nearest_other.mean()) / nearest_other.std()
    np.testing.assert_allclose(scores, z, rtol=1e-4, atol=1e-4)


def test_each_group_gets_the_rank_of_its_own_size():
    """k="auto": every class (and the group of unlabelled rows, wherever they are: here first) is read at its
    own rank, so a small class does not force its rank on the large ones."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(70, 16)).astype(np.float32)
    y = [None] * 10 + ["a"] * 40 + ["b"] * 20
    det = PyramidKNNDetector(class_k_fraction=0.1, **INDUCTIVE).fit(X, y)
    assert det.classes_ == 3 and det.group_k_ == [4, 2, 1] and det.k_ == 1  # groups: a, b, unlabelled (last)
    T = rng.normal(size=(5, 16)).astype(np.float32)
    lab = np.array(["u"] * 10 + ["a"] * 40 + ["b"] * 20)
    raw = _kth_per_class(_unit(X), lab, _unit(T), {"a": 4, "b": 2, "u": 1})
    loo = _kth_per_class(_unit(X), lab, _unit(X), {"a": 4, "b": 2, "u": 1}, leave_out=np.arange(70))
    np.testing.assert_allclose(det.score_samples(T), (raw - loo.mean()) / loo.std(), rtol=1e-4, atol=1e-4)
    # an explicit k is every group's rank
    assert PyramidKNNDetector(k=3).fit(X, y).group_k_ == [3, 3, 3]


def _loo_1nn_accuracy(Z, y):
    """Brute force: share of rows whose nearest other row (unit rows, Euclidean) has the same label."""
    Z = _unit(Z)
    D = np.linalg.norm(Z[:, None] - Z[None], axis=2)
    np.fill_diagonal(D, np.inf)
    return float(np.mean(y[D.argmin(1)] == y))


@pytest.fixture
def noisy_shallow_levels():
    """Classes separated only in the deepest level; the shallow levels are loud noise."""
    rng = np.random.default_rng(5)
    centers = np.zeros((3, sum(DIMS)))
    centers[:, 8:] = rng.normal(size=(3, 8)) * 3
    y = np.repeat(np.array(["a", "b", "c"]), 50)
    X_all = centers[np.searchsorted(["a", "b", "c"], y)] + rng.normal(size=(150, 16))
    X_all[:, :8] += rng.normal(size=(150, 8)) * 6
    ref = np.r_[0:40, 50:90, 100:140]  # 40 per class; the other 10 per class are scored
    X_ref, X = X_all[ref], X_all[np.setdiff1d(np.arange(150), ref)]
    return X_ref.astype(np.float32), y[ref], X.astype(np.float32)


def test_component_gate_drops_a_component_that_separates_the_classes_worse(noisy_shallow_levels):
    X_ref, y, X = noisy_shallow_levels
    acc_deep, acc_all = _loo_1nn_accuracy(X_ref[:, 8:], y), _loo_1nn_accuracy(X_ref, y)
    assert acc_deep - acc_all > 0.05  # the data make the gate's case
    det = PyramidKNNDetector(level_dims=DIMS, **INDUCTIVE).fit(X_ref, y)  # the default gate, 0.05
    np.testing.assert_allclose(det.component_accuracy_, [acc_deep, acc_all])
    assert det.active_.tolist() == [True, False]
    fitted = det.fitted_params()
    assert fitted["active_components"] == ["deepest level"]
    assert fitted["component_accuracy"] == {"deepest level": round(acc_deep, 4), "all levels": round(acc_all, 4)}
    # the max runs over the deepest level alone: its z-score, for the scored and the reference samples
    np.testing.assert_allclose(det.score_samples(X), det.component_scores(X)[:, 0], rtol=1e-5)
    ungated = PyramidKNNDetector(level_dims=DIMS, component_gate=None, **INDUCTIVE).fit(X_ref, y)
    assert ungated.active_.tolist() == [True, True] and ungated.component_accuracy_ is None
    assert not np.allclose(ungated.score_samples(X), det.score_samples(X))
    # a margin wider than the gap keeps both; without labels there is no accuracy to gate on
    wide = PyramidKNNDetector(level_dims=DIMS, component_gate=acc_deep - acc_all + 0.01, **INDUCTIVE).fit(X_ref, y)
    assert wide.active_.tolist() == [True, True]
    unlabelled = PyramidKNNDetector(level_dims=DIMS, **INDUCTIVE).fit(X_ref)
    assert unlabelled.active_.tolist() == [True, True] and "active_components" not in unlabelled.fitted_params()


def test_component_gate_also_keeps_the_component_out_of_the_density_ratio(noisy_shallow_levels):
    from ood_core.detectors.transductive import DensityRatio

    X_ref, y, X = noisy_shallow_levels
    det = PyramidKNNDetector(level_dims=DIMS, transductive="always").fit(X_ref, y)
    scores = det.score_samples(X)
    ratio = DensityRatio(alpha=1.0).compute([X_ref[:, 8:]], [X[:, 8:]])
    np.testing.assert_allclose(scores, det.component_scores(X)[:, 0] + ratio["scored"], rtol=1e-4, atol=1e-4)


def test_component_gate_is_checked():
    for bad in (-0.1, 1.5, True, "0.05"):
        with pytest.raises(OODInputError, match="component_gate"):
            PyramidKNNDetector(component_gate=bad)


def test_a_small_class_does_not_make_a_polluted_large_class_fragile():
    """Imbalanced, polluted reference: 200 images of 'big' (8 of them OOD images carrying the label) and 10
    of 'small'. With the smallest class's rank (k=1) the polluters hide the OOD images; with each class
    at its own rank ('big': 10) they cannot."""
    from ood_core.metrics import ood_metrics

    rng = np.random.default_rng(4)
    big, small, ood = (rng.normal(size=16) * 4 for _ in range(3))
    X_ref = np.concatenate([big + rng.normal(size=(192, 16)), ood + 0.5 * rng.normal(size=(8, 16)),
                            small + rng.normal(size=(10, 16))]).astype(np.float32)
    y = ["big"] * 200 + ["small"] * 10
    X = np.concatenate([big + rng.normal(size=(40, 16)), small + rng.normal(size=(40, 16)),
                        ood + 0.5 * rng.normal(size=(40, 16))]).astype(np.float32)
    is_ood = np.r_[np.zeros(80, bool), np.ones(40, bool)]
    det = PyramidKNNDetector(**INDUCTIVE).fit(X_ref, y)
    assert det.group_k_ == [10, 1]
    per_class = ood_metrics(det.score_samples(X), is_ood)["auroc"]
    smallest = ood_metrics(PyramidKNNDetector(k=1, **INDUCTIVE).fit(X_ref, y).score_samples(X), is_ood)["auroc"]
    assert per_class > 0.95 and smallest < 0.8
