"""Tests of ood_core.detectors.label_votes against scikit-learn and direct computations."""

import json

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from ood_core.detectors import LabelAgreementDetector
from ood_core.detectors.label_votes import WeightedLabelVoteDetector
from ood_core.errors import OODInputError
from vote_helpers import loo_votes

DIMS = [4, 6]


def blobs(n_per_class, seed, classes=3, d=sum(DIMS)):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d)) * 2
    y = np.repeat(np.arange(classes), n_per_class)
    X = centres[y] + rng.normal(size=(y.size, d))
    return X.astype(np.float32), y


def unit(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


DELTA = 0.01  # TIE_BREAK_WEIGHT
W = 0.2  # the default margin_weight


def vote_term(probs, y, w=W):
    """(1 - p[label] + w * max over the other classes of p) / (1 + w), row by row."""
    out = np.empty(y.size)
    for i in range(y.size):
        others = [probs[i, c] for c in range(probs.shape[1]) if c != y[i]]
        out[i] = (1 - probs[i, y[i]] + w * max(others)) / (1 + w)
    return out


def same_label_ratio(ref, y_ref, q, y_q, loo):
    """1 - d(nearest) / d(nearest with the given label), by brute force (q is ref when loo)."""
    d = np.linalg.norm(q[:, None, :] - ref[None], axis=-1)
    if loo:
        np.fill_diagonal(d, np.inf)
    d1 = d.min(1)
    d_same = np.where(y_ref[None, :] == y_q[:, None], d, np.inf).min(1)
    return np.where(d_same > 0, 1 - d1 / d_same, 0.0)


def test_new_samples_match_sklearn_distance_weighted_knn():
    X, y = blobs(30, 0)
    Xq, yq = blobs(10, 1)
    det = WeightedLabelVoteDetector(lda_weight=0.0, k=7, backend="sklearn").fit(X, y)
    clf = KNeighborsClassifier(n_neighbors=7, weights="distance", algorithm="brute").fit(unit(X), y)
    expected = clf.predict_proba(unit(Xq))
    np.testing.assert_allclose(det.predict_proba(Xq), expected, rtol=1e-4, atol=1e-6)
    ratio = same_label_ratio(unit(X), y, unit(Xq), yq, loo=False)
    np.testing.assert_allclose(
        det.score_samples(Xq, yq),
        (1 - DELTA) * vote_term(expected, yq) + DELTA * ratio,
        rtol=1e-4, atol=1e-6,
    )
    assert det.suggest_labels(Xq) == list(expected.argmax(1))


def test_leave_one_out_votes_by_hand_and_levels_average():
    X, y = blobs(15, 2)
    det = WeightedLabelVoteDetector(lda_weight=0.0, k=5, level_dims=DIMS, prune_suspects=False, backend="sklearn")
    scores = det.fit_score(X, y)
    probs = np.zeros((y.size, 3))
    ratio = np.zeros(y.size)
    for sl in (slice(0, 4), slice(4, 10)):
        Z = unit(X[:, sl])
        ratio += same_label_ratio(Z, y, Z, y, loo=True) / 2
        d, idx = NearestNeighbors(algorithm="brute").fit(Z).kneighbors(n_neighbors=5)  # self excluded
        w = 1 / (d + 1e-6)
        for i in range(y.size):
            p = np.bincount(y[idx[i]], weights=w[i], minlength=3)
            probs[i] += p / p.sum() / 2
    np.testing.assert_allclose(det.class_probabilities_, probs, rtol=1e-5)
    expected = (1 - DELTA) * vote_term(probs, y) + DELTA * ratio
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-7)
    assert det.suggested_labels_ == list(probs.argmax(1))


def test_uniform_weights_equal_label_agreement_and_weights_break_ties():
    X, y = blobs(20, 3)
    y_noisy = y.copy()
    y_noisy[::7] = (y_noisy[::7] + 1) % 3
    la = LabelAgreementDetector(k=10, backend="sklearn").fit_score(X, y_noisy)
    uni = WeightedLabelVoteDetector(lda_weight=0.0, k=10, weighting="uniform", prune_suspects=False, margin_weight=0.0,
                                    backend="sklearn").fit_score(X, y_noisy)
    ratio = same_label_ratio(unit(X), y_noisy, unit(X), y_noisy, loo=True)
    np.testing.assert_allclose(uni, (1 - DELTA) * la + DELTA * ratio, atol=1e-9)
    # the tie-breaker never reorders different vote counts, only breaks ties within one
    order = np.argsort(-uni, kind="stable")
    assert np.all(np.diff(la[order]) <= 1e-12)
    wtd = WeightedLabelVoteDetector(lda_weight=0.0, k=10, backend="sklearn").fit_score(X, y_noisy)
    assert np.unique(wtd).size > np.unique(la).size
    # where the nearest neighbour carries another label (the suspicious end) no two samples tie
    nearest_disagrees = ratio > 0
    assert nearest_disagrees.sum() >= 10 and np.unique(la[nearest_disagrees]).size < nearest_disagrees.sum()
    assert np.unique(uni[nearest_disagrees]).size == nearest_disagrees.sum()
    # the flipped labels are found: they rank above the clean ones
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y_noisy != y, wtd) > 0.9


def test_suspects_do_not_vote_in_the_second_vote_by_hand():
    X, y = blobs(20, 9)
    y_noisy = y.copy()
    y_noisy[::5] = (y_noisy[::5] + 1) % 3  # 20% flipped
    det = WeightedLabelVoteDetector(lda_weight=0.0, k=5, level_dims=DIMS, backend="sklearn")
    scores = det.fit_score(X, y_noisy)
    everyone = np.arange(y.size)
    first = second = 0
    ratio = np.zeros(y.size)
    for sl in (slice(0, 4), slice(4, 10)):
        Z = unit(X[:, sl])
        first = first + loo_votes(Z, y_noisy, 5, everyone) / 2
        ratio += same_label_ratio(Z, y_noisy, Z, y_noisy, loo=True) / 2
    suspects = first.argmax(1) != y_noisy
    assert 0 < suspects.sum() < y.size - 5
    for sl in (slice(0, 4), slice(4, 10)):
        second = second + loo_votes(unit(X[:, sl]), y_noisy, 5, np.flatnonzero(~suspects)) / 2
    probs = (first + second) / 2
    np.testing.assert_allclose(det.class_probabilities_, probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(scores, (1 - DELTA) * vote_term(probs, y_noisy) + DELTA * ratio,
                               rtol=1e-5, atol=1e-7)
    assert det.suggested_labels_ == list(probs.argmax(1))
    assert det.fitted_params() == {"k": 5, "levels": [0, 1], "num_suspects": int(suspects.sum()),
                                   "lda_temperature": None, "num_lda_issues": None}
    # a reference given to fit is trusted: new samples are voted on by all of it
    plain = WeightedLabelVoteDetector(lda_weight=0.0, k=5, level_dims=DIMS, prune_suspects=False, backend="sklearn")
    np.testing.assert_allclose(det.score_samples(X[:7] + 0.01, y_noisy[:7]),
                               plain.fit(X, y_noisy).score_samples(X[:7] + 0.01, y_noisy[:7]))
    # the pruned votes find the flipped labels better here than the first vote alone
    from sklearn.metrics import roc_auc_score

    unpruned = plain.fit_score(X, y_noisy)
    assert roc_auc_score(y_noisy != y, scores) >= roc_auc_score(y_noisy != y, unpruned)


def test_too_few_voters_left_keeps_the_first_vote():
    X, y = blobs(15, 10)
    y_random = np.random.default_rng(11).integers(0, 3, y.size)  # labels unrelated to the data
    det = WeightedLabelVoteDetector(k=20, backend="sklearn")
    scores = det.fit_score(X, y_random)
    assert y.size - det.num_suspects_ <= 20  # at most k voters left: no second vote
    plain = WeightedLabelVoteDetector(k=20, prune_suspects=False, backend="sklearn").fit_score(X, y_random)
    np.testing.assert_allclose(scores, plain)
    with pytest.raises(OODInputError, match="prune_suspects="):
        WeightedLabelVoteDetector(prune_suspects="yes")


def test_rank_weights_and_auto_k():
    X, y = blobs(12, 4)
    det = WeightedLabelVoteDetector(lda_weight=0.0, k=3, weighting="rank", backend="sklearn").fit(X, y)
    Xq = X[:2] + 0.01
    d, idx = NearestNeighbors(algorithm="brute").fit(unit(X)).kneighbors(unit(Xq), n_neighbors=3)
    p = np.zeros((2, 3))
    for i in range(2):
        p[i] = np.bincount(y[idx[i]], weights=[1, 1 / 2, 1 / 3], minlength=3) / (1 + 1 / 2 + 1 / 3)
    np.testing.assert_allclose(det.predict_proba(Xq), p)
    auto = WeightedLabelVoteDetector(lda_weight=0.0, k="auto", k_fraction=0.5).fit(X, y)
    assert auto.k_ == 6  # round(0.5 * (12 - 1)) = 6 (5.5 rounds up)


def test_unknown_label_scores_one_and_params_json():
    X, y = blobs(10, 5)
    det = WeightedLabelVoteDetector(k=3, level_dims=DIMS, levels=[1]).fit(X, [str(v) for v in y])
    assert det.score_samples(X[:2], ["zzz", "0"])[0] == 1.0
    params = json.loads(json.dumps(det.get_params()))
    assert params["method"] == "weighted_label_vote" and params["levels"] == [1]


def test_errors():
    X, y = blobs(5, 6)
    with pytest.raises(OODInputError, match="needs class labels"):
        WeightedLabelVoteDetector(k=2).fit(X)
    with pytest.raises(OODInputError, match="k=20 but the reference set has only 15"):
        WeightedLabelVoteDetector(k=20).fit(X, y)
    with pytest.raises(OODInputError, match="weighting="):
        WeightedLabelVoteDetector(weighting="gauss")
    with pytest.raises(OODInputError, match="levels needs level_dims"):
        WeightedLabelVoteDetector(levels=[0])


def test_auto_levels_pick_the_level_with_class_structure():
    X, y = blobs(20, 7)
    X[:, :4] = np.random.default_rng(8).normal(size=(X.shape[0], 4))  # level 0: noise
    det = WeightedLabelVoteDetector(k=3, level_dims=DIMS, levels="auto", backend="sklearn").fit(X, y)
    assert det.levels_ == [1] and det.level_accuracy_[0] < det.level_accuracy_[1]
    fixed = WeightedLabelVoteDetector(k=3, level_dims=DIMS, levels=[1], backend="sklearn")
    np.testing.assert_allclose(det.fit_score(X, y), fixed.fit_score(X, y))


def test_margin_weight_ends_are_cleanlabs_self_confidence_and_normalized_margin():
    """margin_weight=0 ranks by 1 - self-confidence, 1 by 1 - cleanlab's normalised margin (same votes)."""
    from cleanlab.rank import get_label_quality_scores

    X, y = blobs(25, 11, classes=4)
    y_noisy = y.copy()
    y_noisy[::6] = (y_noisy[::6] + 2) % 4
    scores = {}
    for w in (0.0, W, 1.0):
        det = WeightedLabelVoteDetector(k=8, margin_weight=w, backend="sklearn")
        scores[w] = det.fit_score(X, y_noisy)
        probs = det.class_probabilities_
        ratio = same_label_ratio(unit(X), y_noisy, unit(X), y_noisy, loo=True)
        method = {0.0: "self_confidence", 1.0: "normalized_margin"}.get(w)
        if method is not None:  # the vote term is exactly 1 - cleanlab's label quality on these votes
            quality = get_label_quality_scores(y_noisy, probs, method=method)
            np.testing.assert_allclose(scores[w], (1 - DELTA) * (1 - quality) + DELTA * ratio, atol=1e-9)
        np.testing.assert_allclose(scores[w], (1 - DELTA) * vote_term(probs, y_noisy, w) + DELTA * ratio, atol=1e-9)
    # the strongest other class's vote reorders: split votes rank below a vote for one other class
    assert not np.array_equal(np.argsort(scores[0.0]), np.argsort(scores[1.0]))
    assert scores[W].min() >= 0 and scores[W].max() <= 1
    for bad in (-0.1, 1.5, "0.2", True, None):
        with pytest.raises(OODInputError, match="margin_weight="):
            WeightedLabelVoteDetector(margin_weight=bad)


def test_margin_weight_is_a_no_op_with_two_classes_and_scores_an_unseen_label_one():
    X, y = blobs(20, 12, classes=2)
    y_noisy = y.copy()
    y_noisy[::5] = 1 - y_noisy[::5]
    a = WeightedLabelVoteDetector(k=6, margin_weight=0.0, backend="sklearn").fit_score(X, y_noisy)
    b = WeightedLabelVoteDetector(k=6, margin_weight=1.0, backend="sklearn").fit_score(X, y_noisy)
    assert np.array_equal(np.argsort(a, kind="stable"), np.argsort(b, kind="stable"))
    # a label the reference never saw has no votes: the highest score, whatever the other classes' votes
    det = WeightedLabelVoteDetector(k=6, backend="sklearn").fit(X, y_noisy)
    unseen = det.score_samples(X[:3] + 0.3, np.array([7, 7, 7]))
    np.testing.assert_array_equal(unseen, 1.0)
