"""Tests of ood_core.detectors against independent numpy / scikit-learn computations."""

import json
import sys

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf, shrunk_covariance
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor

from ood_core.detectors import (
    DETECTORS,
    KNNDetector,
    LabelAgreementDetector,
    LOFDetector,
    MahalanobisDetector,
    detector_class,
    detector_from_params,
    make_detector,
    requires_labels,
)
from ood_core.detectors import lof as lof_module
from ood_core.errors import NotFittedError, OODInputError
from ood_core.neighbors import faiss_available

# --------------------------------------------------------------------------- helpers


def gaussian(n, d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) + shift).astype(np.float32)


def unit_rows(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def pairwise_distances(A, B):
    diff = np.asarray(A, np.float64)[:, None, :] - np.asarray(B, np.float64)[None, :, :]
    return np.sqrt((diff**2).sum(-1))


def clustered(n_per_class, d, centers_seed, seed, spread=0.3, scale=4.0):
    """Classes as tight Gaussian blobs around random centres; returns X, y (str labels)."""
    rng = np.random.default_rng(centers_seed)
    centers = rng.normal(size=(len(n_per_class), d)) * scale
    rng = np.random.default_rng(seed)
    X = np.concatenate(
        [c + spread * rng.normal(size=(n, d)) for c, n in zip(centers, n_per_class)]
    ).astype(np.float32)
    y = np.concatenate([[f"class_{i}"] * n for i, n in enumerate(n_per_class)])
    return X, y


def make_fitted(name):
    """A small fitted detector of each kind with data it accepts."""
    X, y = clustered([30, 30], 5, centers_seed=0, seed=1)
    det = make_detector(name, k=5) if "k" in detector_class(name)._param_names else make_detector(name)
    return det.fit(X, y), X, y


# --------------------------------------------------------------------------- k-NN


def test_knn_score_samples_is_kth_neighbour_distance_on_unit_rows():
    X_ref, X = gaussian(80, 6, seed=0), gaussian(15, 6, seed=1, shift=0.5)
    k = 7
    scores = KNNDetector(k=k).fit(X_ref).score_samples(X)
    expected = np.sort(pairwise_distances(unit_rows(X), unit_rows(X_ref)), axis=1)[:, k - 1]
    assert scores.shape == (15,) and scores.dtype == np.float64
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)


def test_knn_fit_score_excludes_self_but_counts_duplicates():
    X = gaussian(50, 4, seed=2)
    X[10] = X[3]  # exact duplicate pair: each is the other's nearest neighbour
    k = 3
    scores = KNNDetector(k=k).fit_score(X)
    dist = pairwise_distances(unit_rows(X), unit_rows(X))
    np.fill_diagonal(dist, np.inf)
    expected = np.sort(dist, axis=1)[:, k - 1]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    nearest = KNNDetector(k=1).fit_score(X)
    assert nearest[3] == pytest.approx(0.0, abs=1e-6)
    assert nearest[10] == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.delete(nearest, [3, 10]) > 1e-3)


def test_knn_without_normalisation_uses_raw_distances():
    X_ref, X = gaussian(40, 3, seed=3), gaussian(5, 3, seed=4) * 3
    scores = KNNDetector(k=4, normalize=False).fit(X_ref).score_samples(X)
    expected = np.sort(pairwise_distances(X, X_ref), axis=1)[:, 3]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_knn_normalised_score_ignores_row_scale():
    X = gaussian(30, 5, seed=5)
    scales = np.linspace(0.1, 10, 30, dtype=np.float32)[:, None]
    np.testing.assert_allclose(
        KNNDetector(k=5).fit_score(X * scales), KNNDetector(k=5).fit_score(X), atol=1e-6
    )


def test_knn_ranks_far_cluster_as_ood():
    rng = np.random.default_rng(6)
    d = 16
    id_dir, ood_dir = np.eye(d)[0], np.eye(d)[1]
    X_ref = (id_dir + 0.3 * rng.normal(size=(200, d))).astype(np.float32)
    X_id = (id_dir + 0.3 * rng.normal(size=(50, d))).astype(np.float32)
    X_ood = (ood_dir + 0.3 * rng.normal(size=(50, d))).astype(np.float32)
    scores = KNNDetector(k=10).fit(X_ref).score_samples(np.concatenate([X_id, X_ood]))
    assert roc_auc_score(np.r_[np.zeros(50), np.ones(50)], scores) > 0.95


def test_knn_k_too_large_names_sizes_and_fix():
    X = gaussian(10, 3, seed=7)
    with pytest.raises(OODInputError, match=r"k=10 but the reference set has only 10 samples.*"
                                            r"lower k or add reference samples"):
        KNNDetector(k=10).fit_score(X)
    det = KNNDetector(k=11).fit(X)
    with pytest.raises(OODInputError, match=r"k=11 .* only 10 samples.*lower k"):
        det.score_samples(X)
    # k == n is fine when scoring new data (no self-match to exclude).
    assert KNNDetector(k=10).fit(X).score_samples(X[:2]).shape == (2,)


def test_knn_rejects_all_zero_rows_when_normalising():
    X = gaussian(10, 3, seed=8)
    X[4] = 0
    with pytest.raises(OODInputError, match=r"all-zero row.*\[4\].*normalize=False"):
        KNNDetector(k=2).fit(X)
    assert KNNDetector(k=2, normalize=False).fit_score(X).shape == (10,)


def test_knn_invalid_k():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(OODInputError, match="k="):
            KNNDetector(k=bad)


# --------------------------------------------------------------------------- Mahalanobis


def ledoit_wolf_covariance(centred):
    return LedoitWolf(assume_centered=True).fit(centred).covariance_


def hand_mahalanobis(X_ref, y_ref, X, cov_fn):
    """min over classes of (x - mu_c)^T inv(cov) (x - mu_c), computed directly."""
    X_ref, X = np.asarray(X_ref, np.float64), np.asarray(X, np.float64)
    classes = sorted(set(y_ref))
    means = np.stack([X_ref[np.asarray(y_ref) == c].mean(0) for c in classes])
    centred = X_ref - means[[classes.index(c) for c in y_ref]]
    inv = np.linalg.inv(cov_fn(centred))
    per_class = [np.einsum("ij,jk,ik->i", X - m, inv, X - m) for m in means]
    return np.min(per_class, axis=0)


def test_mahalanobis_plain_covariance_matches_hand_formula():
    X_ref, y_ref = clustered([40, 50, 30], 5, centers_seed=1, seed=2, spread=1.0)
    X = gaussian(20, 5, seed=3, shift=1.0)

    def cov_with_jitter(c):
        emp = c.T @ c / len(c)
        return emp + 1e-6 * np.trace(emp) / emp.shape[0] * np.eye(emp.shape[0])

    det = MahalanobisDetector(shrinkage=None).fit(X_ref, y_ref)
    np.testing.assert_allclose(
        det.score_samples(X), hand_mahalanobis(X_ref, y_ref, X, cov_with_jitter), rtol=1e-6
    )
    assert det.classes_ == ["class_0", "class_1", "class_2"]


def test_mahalanobis_ledoit_wolf_matches_hand_inverse():
    X_ref, y_ref = clustered([40, 50], 8, centers_seed=4, seed=5, spread=1.0)
    X = gaussian(10, 8, seed=6)

    scores = MahalanobisDetector().fit(X_ref, y_ref).score_samples(X)
    np.testing.assert_allclose(scores, hand_mahalanobis(X_ref, y_ref, X, ledoit_wolf_covariance), rtol=1e-6)


def test_mahalanobis_float_shrinkage_matches_sklearn_shrunk_covariance():
    X_ref, y_ref = clustered([25, 25], 6, centers_seed=7, seed=8, spread=1.0)
    X = gaussian(10, 6, seed=9)

    def shrunk(c):
        return shrunk_covariance(c.T @ c / len(c), shrinkage=0.3)

    scores = MahalanobisDetector(shrinkage=0.3).fit(X_ref, y_ref).score_samples(X)
    np.testing.assert_allclose(scores, hand_mahalanobis(X_ref, y_ref, X, shrunk), rtol=1e-6)


def test_mahalanobis_single_gaussian_ignores_labels():
    X_ref, X = gaussian(60, 4, seed=10), gaussian(8, 4, seed=11, shift=2.0)
    y_ref = ["a"] * 60
    det = MahalanobisDetector(class_conditional=False, shrinkage=None)
    s_no_y = det.fit(X_ref).score_samples(X)
    s_y = MahalanobisDetector(class_conditional=False, shrinkage=None).fit(
        X_ref, np.arange(60)).score_samples(X)

    def emp(c):
        e = c.T @ c / len(c)
        return e + 1e-6 * np.trace(e) / 4 * np.eye(4)

    np.testing.assert_allclose(s_no_y, hand_mahalanobis(X_ref, y_ref, X, emp), rtol=1e-6)
    np.testing.assert_allclose(s_y, s_no_y)


def test_mahalanobis_fit_score_equals_fit_then_score():
    X, y = clustered([20, 20], 4, centers_seed=12, seed=13, spread=1.0)
    np.testing.assert_allclose(
        MahalanobisDetector().fit_score(X, y), MahalanobisDetector().fit(X, y).score_samples(X)
    )


def test_mahalanobis_survives_a_failing_eigen_driver(monkeypatch):
    """SciPy's default eigen driver stopped with "Internal Error" on a real shrunk covariance (1,280 columns,
    48 rows); the detector uses divide-and-conquer and falls back to the QR driver if that fails too.
    Here the divide-and-conquer driver is made to fail: the scores must still match the hand formula."""
    import scipy.linalg

    real_eigh = scipy.linalg.eigh
    drivers = []

    def flaky_eigh(a, *args, driver=None, **kwargs):
        drivers.append(driver)
        if driver != "ev":
            raise scipy.linalg.LinAlgError("Internal Error.")
        return real_eigh(a, *args, driver=driver, **kwargs)

    monkeypatch.setattr(scipy.linalg, "eigh", flaky_eigh)
    X_ref, y_ref = clustered([40, 50], 8, centers_seed=4, seed=5, spread=1.0)
    X = gaussian(10, 8, seed=6)

    scores = MahalanobisDetector().fit(X_ref, y_ref).score_samples(X)
    assert drivers == ["evd", "ev"]
    np.testing.assert_allclose(scores, hand_mahalanobis(X_ref, y_ref, X, ledoit_wolf_covariance), rtol=1e-6)


def test_mahalanobis_is_finite_when_dim_exceeds_samples():
    X = gaussian(10, 30, seed=14)  # empirical covariance has rank <= 9
    y = [0, 1] * 5
    for shrinkage in ("ledoit_wolf", None, 0.1):
        scores = MahalanobisDetector(shrinkage=shrinkage).fit_score(X, y)
        assert np.all(np.isfinite(scores)) and np.all(scores >= 0)


def test_mahalanobis_separates_far_class_mixture():
    X_ref, y_ref = clustered([50, 50, 50], 10, centers_seed=15, seed=16, spread=1.0)
    X_id, _ = clustered([20, 20, 20], 10, centers_seed=15, seed=17, spread=1.0)
    X_ood = gaussian(60, 10, seed=18, shift=8.0)
    scores = MahalanobisDetector().fit(X_ref, y_ref).score_samples(np.concatenate([X_id, X_ood]))
    assert roc_auc_score(np.r_[np.zeros(60), np.ones(60)], scores) > 0.95


def test_mahalanobis_needs_labels_only_when_class_conditional():
    X = gaussian(20, 3, seed=19)
    with pytest.raises(OODInputError, match=r"needs class labels.*class_conditional=False"):
        MahalanobisDetector().fit(X)
    with pytest.raises(OODInputError, match=r"y \(reference labels\) has 19 labels but the "
                                            r"embeddings have 20 rows"):
        MahalanobisDetector().fit(X, ["a"] * 19)
    with pytest.raises(OODInputError, match=r"missing \(None\) label"):
        MahalanobisDetector().fit(X, ["a"] * 19 + [None])
    det = MahalanobisDetector().fit(X, ["a", "b"] * 10)
    assert det.score_samples(X[:3]).shape == (3,)  # scoring needs no labels


def test_mahalanobis_bad_shrinkage_and_huge_dim():
    for bad in ("oas", 1.5, -0.1, True):
        with pytest.raises(OODInputError, match="shrinkage="):
            MahalanobisDetector(shrinkage=bad)
    with pytest.raises(OODInputError, match=r"dimension 9000.*reduce them first"):
        MahalanobisDetector(class_conditional=False).fit(np.ones((2, 9000), np.float32))


# --------------------------------------------------------------------------- LOF


def test_lof_fit_score_is_sklearn_lof_with_sign_flipped():
    X = gaussian(120, 5, seed=20)
    scores = LOFDetector(k=10).fit_score(X)
    ref = LocalOutlierFactor(n_neighbors=10, novelty=False).fit(X)
    np.testing.assert_allclose(scores, -ref.negative_outlier_factor_, rtol=1e-6)
    assert np.median(scores) == pytest.approx(1.0, abs=0.1)


def test_lof_score_samples_is_sklearn_novelty_lof_with_sign_flipped():
    X_ref, X = gaussian(100, 4, seed=21), gaussian(20, 4, seed=22, shift=1.0)
    scores = LOFDetector(k=15).fit(X_ref).score_samples(X)
    ref = LocalOutlierFactor(n_neighbors=15, novelty=True).fit(X_ref)
    np.testing.assert_allclose(scores, -ref.score_samples(X), rtol=1e-6)


def test_lof_planted_outlier_has_largest_score():
    X = gaussian(100, 3, seed=23)
    X[42] = [8.0, -8.0, 8.0]
    scores = LOFDetector(k=10).fit_score(X)
    assert np.argmax(scores) == 42 and scores[42] > 2.0


def test_class_lof_matches_sklearn_run_within_each_class():
    X, y = clustered([40, 35, 50], 4, centers_seed=24, seed=25, spread=1.0)
    order = np.random.default_rng(26).permutation(len(y))  # interleave the classes
    X, y = X[order], y[order]
    X_new, y_new = X[:12] + 0.1, y[:12]
    det = make_detector("class_lof", k=8)
    fit_scores = det.fit_score(X, y)
    new_scores = det.score_samples(X_new, y_new)
    for c in np.unique(y):
        rows, new_rows = y == c, y_new == c
        ref = LocalOutlierFactor(n_neighbors=8, novelty=True).fit(X[rows])
        np.testing.assert_allclose(fit_scores[rows], -ref.negative_outlier_factor_, rtol=1e-6)
        np.testing.assert_allclose(new_scores[new_rows], -ref.score_samples(X_new[new_rows]),
                                   rtol=1e-6)


def test_class_lof_ranks_flipped_labels_on_top():
    X, y = clustered([60, 60, 60], 6, centers_seed=27, seed=28, spread=1.0)
    flipped = np.array([3, 70, 150])
    y = y.copy()
    y[flipped] = ["class_1", "class_2", "class_0"]
    scores = LOFDetector(k=10, per_class=True).fit_score(X, y)
    assert set(np.argsort(scores)[-3:]) == set(flipped.tolist())


def test_class_lof_rejects_small_class_and_unseen_class():
    X, y = clustered([30, 5], 3, centers_seed=29, seed=30)
    y = np.where(y == "class_1", "tiny", y)
    with pytest.raises(OODInputError, match=r"k=10.*'tiny' \(5 samples\).*lower k, or drop or "
                                            r"merge"):
        LOFDetector(k=10, per_class=True).fit(X, y)
    det = LOFDetector(k=4, per_class=True).fit(X, y)
    with pytest.raises(OODInputError, match=r"not in the fitted reference.*'unknown'"):
        det.score_samples(X[:2], ["class_0", "unknown"])
    with pytest.raises(OODInputError, match=r"needs class labels.*per_class=False"):
        det.score_samples(X[:2])


def test_lof_k_too_large_for_reference_set():
    with pytest.raises(OODInputError, match=r"10 samples but LOF with k=10.*lower k"):
        LOFDetector(k=10).fit(gaussian(10, 3, seed=31))


# --------------------------------------------------------------------------- label agreement


def hand_label_disagreement(X_ref, y_ref, X, y, k, exclude_self):
    """Loop version: 1 - fraction of the k nearest (unit-row) reference points with label y."""
    dist = pairwise_distances(unit_rows(X), unit_rows(X_ref))
    out = []
    for i in range(len(X)):
        d = dist[i].copy()
        if exclude_self:
            d[i] = np.inf
        nearest = np.argsort(d, kind="stable")[:k]
        out.append(1.0 - np.mean([y_ref[j] == y[i] for j in nearest]))
    return np.array(out)


def test_label_agreement_fit_score_matches_hand_loop():
    rng = np.random.default_rng(32)
    X = rng.normal(size=(12, 3)).astype(np.float32)
    y = ["cat", "dog", "cat", "bird", "dog", "dog", "cat", "bird", "cat", "dog", "bird", "cat"]
    scores = LabelAgreementDetector(k=3).fit_score(X, y)
    np.testing.assert_allclose(scores, hand_label_disagreement(X, y, X, y, 3, True))
    assert set(np.round(scores * 3, 9)) <= {0.0, 1.0, 2.0, 3.0}  # unweighted votes


def test_label_agreement_score_samples_matches_hand_loop_and_unseen_label_scores_one():
    rng = np.random.default_rng(33)
    X_ref = rng.normal(size=(15, 4)).astype(np.float32)
    y_ref = list(rng.choice(["a", "b", "c"], size=15))
    X = rng.normal(size=(6, 4)).astype(np.float32)
    y = ["a", "b", "c", "a", "b", "zebra"]
    scores = LabelAgreementDetector(k=4).fit(X_ref, y_ref).score_samples(X, y)
    np.testing.assert_allclose(scores, hand_label_disagreement(X_ref, y_ref, X, y, 4, False))
    assert scores[-1] == 1.0


def test_label_agreement_ranks_flipped_labels_on_top():
    X, y = clustered([50, 50, 50], 8, centers_seed=34, seed=35, spread=1.5)
    rng = np.random.default_rng(36)
    flipped = rng.choice(150, size=8, replace=False)
    y_noisy = y.copy()
    for i in flipped:
        y_noisy[i] = rng.choice([c for c in np.unique(y) if c != y[i]])
    scores = LabelAgreementDetector(k=10).fit_score(X, y_noisy)
    is_flipped = np.isin(np.arange(150), flipped)
    assert roc_auc_score(is_flipped, scores) > 0.95


def test_label_agreement_needs_labels_and_enough_samples():
    X = gaussian(10, 3, seed=37)
    with pytest.raises(OODInputError, match=r"needs class labels"):
        LabelAgreementDetector(k=3).fit_score(X)
    with pytest.raises(OODInputError, match=r"k=10 but the reference set has only 10 samples.*"
                                            r"lower k"):
        LabelAgreementDetector(k=10).fit_score(X, [0, 1] * 5)
    det = LabelAgreementDetector(k=3).fit(X, [0, 1] * 5)
    with pytest.raises(OODInputError, match=r"labels of the scored samples"):
        det.score_samples(X[:2])


def test_integer_and_string_labels_give_same_scores():
    X, y = clustered([20, 20], 3, centers_seed=38, seed=39, spread=2.0)
    y_int = (y == "class_1").astype(int)
    for name in ("label_agreement", "class_lof"):
        np.testing.assert_allclose(
            make_detector(name, k=5).fit_score(X, y), make_detector(name, k=5).fit_score(X, y_int)
        )


# --------------------------------------------------------------------------- shared contract


@pytest.mark.parametrize("name", DETECTORS)
def test_unfitted_detector_raises_not_fitted(name):
    with pytest.raises(NotFittedError, match=r"not fitted yet.*fit\("):
        make_detector(name).score_samples(gaussian(3, 2, seed=40), ["a", "b", "c"])


@pytest.mark.parametrize("name", DETECTORS)
def test_nan_rows_are_rejected_with_row_index(name):
    det, X, y = make_fitted(name)
    X_bad = X.copy()
    X_bad[7, 2] = np.nan
    with pytest.raises(OODInputError, match=r"reference embeddings has 1 row\(s\) with NaN.*\[7\]"):
        make_detector(name).fit(X_bad, y)
    with pytest.raises(OODInputError, match=r"scored embeddings has 1 row\(s\) with NaN"):
        det.score_samples(X_bad, y)


@pytest.mark.parametrize("name", DETECTORS)
def test_dimension_mismatch_and_empty_input(name):
    det, X, y = make_fitted(name)
    with pytest.raises(OODInputError, match=r"dimension 5 but scored embeddings have dimension 4"):
        det.score_samples(X[:, :4], y)
    with pytest.raises(OODInputError, match=r"scored embeddings has 0 rows"):
        det.score_samples(np.zeros((0, 5), np.float32), [])
    with pytest.raises(OODInputError, match=r"reference embeddings has 0 rows"):
        make_detector(name).fit_score(np.zeros((0, 5), np.float32), [])
    with pytest.raises(OODInputError, match=r"2-D array"):
        det.score_samples(X[0], y[:1])


@pytest.mark.parametrize("name", DETECTORS)
def test_get_params_is_json_and_round_trips(name):
    det = make_detector(name)
    params = det.get_params()
    assert params["method"] == name
    assert json.loads(json.dumps(params)) == params
    assert detector_from_params(params).get_params() == params


def test_make_detector_classes_and_errors():
    assert isinstance(make_detector("knn", k=3), KNNDetector)
    assert make_detector("knn", k=3).k == 3
    assert make_detector("class_lof").per_class is True
    assert make_detector("lof").per_class is False
    assert isinstance(make_detector("mahalanobis"), MahalanobisDetector)
    assert isinstance(make_detector("label_agreement"), LabelAgreementDetector)
    with pytest.raises(OODInputError, match=r"unknown detector 'knm'.*class_lof, knn, "
                                            r"label_agreement, level_fusion, lof, mahalanobis, mahalanobis_pp, pyramid_knn, "
                                            r"weighted_label_vote"):
        make_detector("knm")
    with pytest.raises(OODInputError, match=r"unknown parameter\(s\) \['n_neighbors'\].*k, k_fraction, k_max, "
                                            r"normalize"):
        make_detector("knn", n_neighbors=5)
    with pytest.raises(OODInputError, match=r"per_class=False contradicts"):
        make_detector("class_lof", per_class=False)


def test_requires_labels():
    assert requires_labels("knn") is False
    assert requires_labels("lof") is False
    assert requires_labels("class_lof") is True
    assert requires_labels("label_agreement") is True
    assert requires_labels("mahalanobis") is True
    assert requires_labels("mahalanobis", class_conditional=False) is False
    with pytest.raises(OODInputError, match="unknown detector"):
        requires_labels("nope")


def test_fit_returns_self_and_sets_trailing_underscore_state():
    X = gaussian(20, 3, seed=41)
    det = KNNDetector(k=2)
    assert det.fit(X) is det
    assert det.n_samples_fit_ == 20 and det.n_features_in_ == 3
    # fit_score leaves the detector fitted, so new data can be scored afterwards.
    det2 = LOFDetector(k=5)
    det2.fit_score(X)
    assert det2.score_samples(X[:4]).shape == (4,)


# --------------------------------------------------------------------------- neighbour backends


needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")


@pytest.fixture(scope="module")
def backend_data():
    """Interleaved classes, a duplicate pair, and new points both near and off the data."""
    X, y = clustered([60, 45, 70], 12, centers_seed=50, seed=51, spread=1.0)
    order = np.random.default_rng(52).permutation(len(y))
    X, y = X[order], y[order]
    X[17] = X[5]
    y[17] = y[5]
    rng = np.random.default_rng(53)
    X_new = np.concatenate([X[:25] + 0.2 * rng.normal(size=(25, 12)),
                            rng.normal(size=(10, 12)) * 4]).astype(np.float32)
    y_new = np.concatenate([y[:25], y[25:35]])
    return X, y, X_new, y_new


@needs_faiss
@pytest.mark.parametrize("name", ["knn", "lof", "class_lof", "label_agreement"])
@pytest.mark.parametrize("k", [1, 7])
def test_faiss_flat_scores_equal_sklearn_scores(backend_data, name, k):
    X, y, X_new, y_new = backend_data
    fa = make_detector(name, k=k, backend="faiss")
    sk = make_detector(name, k=k, backend="sklearn")
    np.testing.assert_allclose(fa.fit_score(X, y), sk.fit_score(X, y), rtol=1e-5, atol=1e-7)
    for rows in (slice(None), slice(0, 5)):  # faiss uses another kernel below 20 queries
        np.testing.assert_allclose(fa.score_samples(X_new[rows], y_new[rows]),
                                   sk.score_samples(X_new[rows], y_new[rows]),
                                   rtol=1e-5, atol=1e-7)
    assert fa.get_params()["backend"] == "faiss" and fa.get_params()["index"] == "flat"


@needs_faiss
def test_faiss_lof_matches_sklearn_novelty_false_and_novelty_true(backend_data):
    X, _, X_new, _ = backend_data
    det = LOFDetector(k=10, backend="faiss")
    fit_scores = det.fit_score(X)
    assert isinstance(det.models_[None], lof_module.GraphLOF)
    plain = LocalOutlierFactor(n_neighbors=10, novelty=False).fit(X)
    np.testing.assert_allclose(fit_scores, -plain.negative_outlier_factor_, rtol=1e-5)
    novelty = LocalOutlierFactor(n_neighbors=10, novelty=True).fit(X)
    np.testing.assert_allclose(det.score_samples(X_new), -novelty.score_samples(X_new), rtol=1e-5)


def test_sklearn_backend_lof_is_sklearn_model(backend_data, monkeypatch):
    X, _, _, _ = backend_data
    det = LOFDetector(k=5, backend="sklearn").fit(X)
    assert isinstance(det.models_[None].model_, LocalOutlierFactor)
    monkeypatch.setitem(sys.modules, "faiss", None)  # "auto" without faiss: scikit-learn
    det = LOFDetector(k=5).fit(X)
    assert det.backend_ == "sklearn" and isinstance(det.models_[None], lof_module.SklearnLOF)
    assert KNNDetector(k=5).fit(X).neighbors_.backend_ == "sklearn"


@needs_faiss
@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_approximate_index_scores_never_smaller_and_keep_the_ranking(index):
    X_ref, _ = clustered([400] * 10, 16, centers_seed=54, seed=55, spread=1.0)
    X_id, _ = clustered([30] * 10, 16, centers_seed=54, seed=56, spread=1.0)
    X = np.concatenate([X_id, gaussian(100, 16, seed=57, shift=3.0)])
    is_ood = np.r_[np.zeros(len(X_id)), np.ones(100)]
    exact = KNNDetector(k=10).fit(X_ref).score_samples(X)
    approx = KNNDetector(k=10, index=index).fit(X_ref).score_samples(X)
    # A missed neighbour is replaced by a farther one, so a score can only grow.
    assert np.all(approx >= exact * (1 - 1e-5))
    assert roc_auc_score(is_ood, approx) >= roc_auc_score(is_ood, exact) - 0.01
    assert KNNDetector(k=10, index=index).get_params()["index"] == index


def test_backend_and_index_are_validated_and_round_trip():
    with pytest.raises(OODInputError, match=r"backend='gpu' is not valid"):
        KNNDetector(backend="gpu")
    with pytest.raises(OODInputError, match=r"index='ivf' needs faiss but backend=\"sklearn\""):
        LOFDetector(backend="sklearn", index="ivf")
    det = make_detector("label_agreement", k=3, backend="sklearn", index="flat")
    params = det.get_params()
    assert params == {"method": "label_agreement", "k": 3, "normalize": True,
                      "backend": "sklearn", "index": "flat"}
    assert detector_from_params(params).get_params() == params
    # Run records written before these keywords existed still rebuild (defaults apply).
    assert detector_from_params({"method": "knn", "k": 5, "normalize": True}).backend == "auto"


def test_knn_auto_k_follows_the_smallest_class_or_the_reference_size():
    X, y = clustered([30, 12], 5, centers_seed=0, seed=2)
    labels = [f"c{c}" for c in y]
    det = KNNDetector().fit(X, labels)  # k="auto": 0.2 x smallest class (12) -> 2
    assert det.k_ == 2
    np.testing.assert_allclose(det.score_samples(X[:5]), KNNDetector(k=2).fit(X).score_samples(X[:5]))
    assert KNNDetector().fit(X).k_ == 8  # no labels: 0.2 x 42 reference rows
    assert KNNDetector(k_max=5).fit(X).k_ == 5
    # unlabelled rows (None) do not count; scoring the reference excludes each row itself (11 classmates -> 2)
    det = KNNDetector()
    scores = det.fit_score(X, labels[:-1] + [None])
    assert det.k_ == 2
    np.testing.assert_allclose(scores, KNNDetector(k=2).fit_score(X))
    assert KNNDetector(k=7).fit(X, labels).k_ == 7  # a fixed k is never changed
    with pytest.raises(OODInputError, match="k_fraction"):
        KNNDetector(k_fraction=0)
