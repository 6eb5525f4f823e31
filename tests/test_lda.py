"""Tests of ood_core.detectors.lda (out-of-fold shrinkage LDA) and its blend into the label votes, against scikit-learn."""

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import roc_auc_score

from ood_core.detectors.label_votes import TIE_BREAK_WEIGHT, WeightedLabelVoteDetector, vote_score
from ood_core.detectors.lda import ShrinkageLDA, fit_temperature, fold_ids, lda_probabilities, tempered
from ood_core.errors import OODInputError
from vote_helpers import loo_votes


def blobs(n_per_class, seed, classes=3, d=12):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d)) * 2
    y = np.repeat(np.arange(classes), n_per_class)
    return (centres[y] + rng.normal(size=(y.size, d))).astype(np.float32), y


def sklearn_lda():
    return LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")


def unit(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_fold_ids_deal_every_class_evenly_over_the_folds():
    codes = np.repeat([0, 1, 2], [13, 5, 2])
    folds = fold_ids(codes, 5, seed=3)
    for c, n in ((0, 13), (1, 5), (2, 2)):
        counts = np.bincount(folds[codes == c], minlength=5)
        assert counts.sum() == n and counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(folds, fold_ids(codes, 5, seed=3))  # seeded: the same folds every run


def test_out_of_fold_probabilities_are_sklearn_lda_fitted_on_the_other_folds():
    X, y = blobs(20, 1)
    raw, ok, t1 = lda_probabilities(X, y, 3, calibrate=False)
    probs, ok2, t = lda_probabilities(X, y, 3)
    assert ok.all() and ok2.all() and t1 == 1.0 and 0 < t <= 1
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    folds = fold_ids(y, 10)
    for f in range(10):
        test = folds == f
        expected = sklearn_lda().fit(X[~test].astype(np.float64), y[~test]).predict_proba(X[test].astype(np.float64))
        np.testing.assert_allclose(raw[test], expected, rtol=1e-6, atol=1e-9)
        powered = expected ** t
        np.testing.assert_allclose(probs[test], powered / powered.sum(axis=1, keepdims=True), rtol=1e-6, atol=1e-9)


def test_temperature_minimises_the_negative_log_likelihood_of_the_given_labels():
    # wide, few samples: LDA is overconfident out of fold, and the fitted exponent softens it
    X, y = blobs(12, 9, classes=4, d=60)
    y = y.copy()
    y[::9] = (y[::9] + 1) % 4  # some wrong labels: confident mistakes cost likelihood
    raw, ok, _ = lda_probabilities(X, y, 4, calibrate=False)
    probs, _, t = lda_probabilities(X, y, 4)
    grid = np.linspace(0.001, 1.0, 2000)
    nll = [-np.mean(np.log((raw ** g / (raw ** g).sum(axis=1, keepdims=True))[np.arange(y.size), y])) for g in grid]
    assert abs(t - grid[int(np.argmin(nll))]) < 2e-3, (t, grid[int(np.argmin(nll))])
    assert t < 0.9
    np.testing.assert_array_equal(probs.argmax(axis=1), raw.argmax(axis=1))  # scaling keeps every argmax
    # log probabilities from the discriminants agree with scikit-learn's, without its underflow
    model = ShrinkageLDA(4).fit(X, y)
    ref = sklearn_lda().fit(X.astype(np.float64), y).predict_proba(X[:5].astype(np.float64))
    np.testing.assert_allclose(np.exp(model.predict_log_proba(X[:5])), ref, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(tempered(np.log(ref), 0.5), np.sqrt(ref) / np.sqrt(ref).sum(axis=1, keepdims=True))
    # perfectly separated classes would ask for sharpening: the exponent stays at most 1
    sep = np.log(np.array([[0.9, 0.1], [0.2, 0.8]]))
    assert fit_temperature(sep, np.array([0, 1])) == pytest.approx(1.0, abs=1e-3)
    assert fit_temperature(np.full((2, 2), -np.inf), np.array([0, 1])) == 1.0  # no usable row


def test_wide_embeddings_are_projected_onto_principal_components_first():
    X, y = blobs(15, 2, d=40)
    Xq = X[:6] + 0.05
    model = ShrinkageLDA(3, max_dim=8).fit(X, y)
    assert model.pca_.n_components_ == 8
    pca = PCA(n_components=8, svd_solver="randomized", random_state=0).fit(X.astype(np.float64))
    lda = sklearn_lda().fit(pca.transform(X.astype(np.float64)), y)
    np.testing.assert_allclose(model.predict_proba(Xq), lda.predict_proba(pca.transform(Xq.astype(np.float64))),
                               rtol=1e-6, atol=1e-9)
    assert ShrinkageLDA(3, max_dim=64).fit(X, y).pca_ is None  # narrow enough: modelled as is


def test_out_of_fold_projection_is_fitted_without_the_held_out_fold():
    # a projection fitted on all rows would give each held-out fold directions that only it spans
    X, y = blobs(10, 6, d=40)
    probs, ok, _ = lda_probabilities(X, y, 3, max_dim=8, calibrate=False)
    assert ok.all()
    folds = fold_ids(y, 10)
    for f in range(10):
        test = folds == f
        Xf = X[~test].astype(np.float64)
        pca = PCA(n_components=8, svd_solver="randomized", random_state=0).fit(Xf)
        lda = sklearn_lda().fit(pca.transform(Xf), y[~test])
        np.testing.assert_allclose(probs[test], lda.predict_proba(pca.transform(X[test].astype(np.float64))),
                                   rtol=1e-6, atol=1e-9)


def test_a_fold_without_two_classes_to_learn_from_is_left_to_the_votes():
    X, y = blobs(8, 3, classes=2)
    y = y.copy()
    y[y == 1] = 0
    y[0] = 1  # class 1 has one sample: the model without its fold sees class 0 only
    probs, ok, _ = lda_probabilities(X, y, 2)
    alone = fold_ids(y, 10) == fold_ids(y, 10)[0]
    assert not ok[alone].any() and ok[~alone].all()
    assert np.all(probs[alone] == 0)
    det = WeightedLabelVoteDetector(k=3, lda_weight=0.5, backend="sklearn")
    plain = WeightedLabelVoteDetector(k=3, lda_weight=0.0, backend="sklearn")
    s, s0 = det.fit_score(X, y), plain.fit_score(X, y)
    np.testing.assert_allclose(s[alone], s0[alone])  # those rows keep the votes alone


def test_no_more_samples_than_classes_keeps_the_votes_alone():
    # scikit-learn's LDA needs more samples than classes: a tiny set is scored by its votes, without an error
    X, y = blobs(1, 7, classes=4)  # one sample per class
    probs, ok, t = lda_probabilities(X, y, 4)
    assert not ok.any() and np.all(probs == 0) and t == 1.0
    det = WeightedLabelVoteDetector(k=1, backend="sklearn").fit(X, y)
    assert not det.lda_.fitted
    np.testing.assert_allclose(WeightedLabelVoteDetector(k=1, backend="sklearn").fit_score(X, y),
                               WeightedLabelVoteDetector(k=1, lda_weight=0.0, backend="sklearn").fit_score(X, y))
    np.testing.assert_allclose(det.predict_proba(X + 0.01),
                               WeightedLabelVoteDetector(k=1, lda_weight=0.0, backend="sklearn").fit(X, y).predict_proba(
                                   X + 0.01))


def test_votes_and_lda_probabilities_are_blended_by_lda_weight():
    X, y = blobs(20, 16)  # a seed where the LDA changes who is suspected (3 samples)
    y_noisy = y.copy()
    y_noisy[::7] = (y_noisy[::7] + 1) % 3
    w = 0.3
    det = WeightedLabelVoteDetector(k=5, lda_weight=w, backend="sklearn", lda_refit=False)  # the refit: its own test
    scores = det.fit_score(X, y_noisy)
    Z = unit(X)
    lda, ok, t = lda_probabilities(Z, y_noisy, 3)
    assert ok.all() and det.lda_temperature_ == pytest.approx(t, rel=1e-6)
    # by hand: the first vote; suspects = where the first vote blended with the LDA favours another
    # class; a second vote without them; the two votes averaged, then blended with the LDA
    first = loo_votes(Z, y_noisy, 5, np.arange(y.size))
    suspects = ((1 - w) * first + w * lda).argmax(1) != y_noisy
    assert det.num_suspects_ == suspects.sum() and np.any(suspects != (first.argmax(1) != y_noisy))
    second = loo_votes(Z, y_noisy, 5, np.flatnonzero(~suspects))
    probs = (1 - w) * (first + second) / 2 + w * lda
    np.testing.assert_allclose(det.class_probabilities_, probs, rtol=1e-5, atol=1e-7)
    votes = WeightedLabelVoteDetector(k=5, lda_weight=0.0, prune_suspects=False, backend="sklearn")
    s0 = votes.fit_score(X, y_noisy)
    tie = s0 - (1 - TIE_BREAK_WEIGHT) * vote_score(votes.class_probabilities_, y_noisy, votes.margin_weight)
    np.testing.assert_allclose(scores, (1 - TIE_BREAK_WEIGHT) * vote_score(probs, y_noisy, 0.2) + tie,
                               rtol=1e-5, atol=1e-7)
    assert det.suggested_labels_ == list(probs.argmax(axis=1))
    # new samples: the votes of the whole reference and an LDA fitted on all of it, tempered by t
    Xq = X[:9] + 0.05
    det.fit(X, y_noisy)
    votes.fit(X, y_noisy)
    full = sklearn_lda().fit(Z, y_noisy).predict_proba(unit(Xq)) ** t
    full /= full.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(det.predict_proba(Xq), (1 - w) * votes.predict_proba(Xq) + w * full,
                               rtol=1e-6, atol=1e-9)
    assert det.lda_temperature_ == pytest.approx(t)  # fitted out of fold by fit alone, too
    assert det.get_params()["lda_weight"] == w
    for bad in (-0.1, 1.5, True, "half"):
        with pytest.raises(OODInputError, match="lda_weight="):
            WeightedLabelVoteDetector(lda_weight=bad)


def test_the_whole_set_lda_is_fitted_only_when_new_samples_need_it():
    # fit_score's own probabilities are out of fold; the LDA of the whole set serves later new samples
    X, y = blobs(20, 8)
    Xq = X[:7] + 0.05
    det = WeightedLabelVoteDetector(k=5, backend="sklearn")
    det.fit_score(X, y)
    assert det._lda_model is None  # not fitted by fit_score itself
    after_fit_score = det.predict_proba(Xq)
    assert det._lda_model is not None and det._lda_rows is None  # fitted once, its rows released
    np.testing.assert_allclose(after_fit_score, WeightedLabelVoteDetector(k=5, backend="sklearn").fit(X, y)
                               .predict_proba(Xq), rtol=1e-9)
    full = sklearn_lda().fit(unit(X), y).predict_proba(unit(Xq))
    np.testing.assert_allclose(det.lda_.predict_proba(unit(Xq)), full, rtol=1e-6, atol=1e-9)
    assert det.lda_temperature_ == pytest.approx(lda_probabilities(unit(X), y, 3)[2], rel=1e-6)  # fit_score's, not refitted
    # a new fit forgets the old model
    det.fit(X[::-1][:45], y[::-1][:45])
    assert det._lda_model is None
    assert WeightedLabelVoteDetector(k=5, lda_weight=0.0, backend="sklearn").fit(X, y).lda_ is None


def test_lda_finds_a_mislabelled_sub_cluster_that_the_votes_miss():
    # class 0 has a small sub-cluster that the annotator labelled 1 throughout: inside it every
    # neighbour agrees with the wrong label, but it lies nearer class 0's mean than class 1's
    rng = np.random.default_rng(5)
    d = 16
    centres = rng.normal(size=(3, d)) * 3
    y = np.repeat([0, 1, 2], 60)
    X = centres[y] + rng.normal(size=(y.size, d))
    sub = np.flatnonzero(y == 0)[:12]
    X[sub] = centres[0] + 0.35 * (centres[1] - centres[0]) + 0.3 * rng.normal(size=(12, d))
    y_given = y.copy()
    y_given[sub] = 1
    wrong = y_given != y
    votes = WeightedLabelVoteDetector(k=5, lda_weight=0.0, backend="sklearn").fit_score(X, y_given)
    blend = WeightedLabelVoteDetector(k=5, backend="sklearn").fit_score(X, y_given)
    auc_votes, auc_blend = roc_auc_score(wrong, votes), roc_auc_score(wrong, blend)
    assert auc_votes < 0.8 and auc_blend > auc_votes + 0.1, (auc_votes, auc_blend)
