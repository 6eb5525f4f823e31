"""Tests of ood_core.detectors.confident_learning against cleanlab's find_label_issues, and its use by the
wrong-label votes (the LDA fitted a second time without the flagged samples)."""

import warnings

import numpy as np
import pytest
from cleanlab.count import compute_confident_joint
from cleanlab.filter import _keep_at_least_n_per_class, find_label_issues

from ood_core.detectors.confident_learning import _keep_one_per_class, confident_joint, label_issues
from ood_core.detectors.label_votes import WeightedLabelVoteDetector
from ood_core.detectors.lda import lda_probabilities


def cleanlab_issues(codes, probs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return find_label_issues(codes, probs, n_jobs=1)


def noisy(labels, share, seed, n_classes):
    rng = np.random.default_rng(seed)
    y = np.asarray(labels).copy()
    flip = rng.choice(y.size, int(share * y.size), replace=False)
    y[flip] = (y[flip] + rng.integers(1, n_classes, flip.size)) % n_classes
    return y, flip


@pytest.fixture(scope="module")
def fashion_probs(fashion_files, fashion_arrays, extractor):
    """Out-of-fold LDA probabilities of 200 real Fashion-MNIST embeddings with 15% of the labels changed."""
    X = extractor.extract(fashion_files[0], progress=False).embeddings
    y, flip = noisy(fashion_arrays[1], 0.15, 0, 10)
    probs, ok, _ = lda_probabilities(np.asarray(X), y, 10, folds=5)
    assert ok.all()
    return y, probs, flip


def test_the_flags_on_real_probabilities_are_cleanlabs(fashion_probs):
    y, probs, flip = fashion_probs
    ours = label_issues(y, probs)
    np.testing.assert_array_equal(ours, cleanlab_issues(y, probs))
    # and they find wrong labels: most changed labels are flagged, few of the others
    changed = np.zeros(y.size, bool)
    changed[flip] = True
    recall, false_rate = ours[changed].mean(), ours[~changed].mean()
    assert recall >= 0.7 and recall > 3 * false_rate
    # the calibrated confident joint is cleanlab's too
    np.testing.assert_array_equal(confident_joint(y, probs), compute_confident_joint(y, probs))


@pytest.mark.parametrize("seed", range(12))
def test_the_flags_on_random_probabilities_are_cleanlabs(seed):
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 8))
    n = int(rng.integers(30, 300))
    truth = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 3 * rng.random() * np.eye(n_classes)[truth]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y, _ = noisy(truth, float(rng.uniform(0, 0.4)), seed, n_classes)
    np.testing.assert_array_equal(label_issues(y, probs), cleanlab_issues(y, probs))
    np.testing.assert_array_equal(confident_joint(y, probs), compute_confident_joint(y, probs))


@pytest.mark.parametrize("seed", range(6))
def test_a_class_whose_calibrated_diagonal_is_zero_keeps_one_sample_as_in_cleanlab(seed):
    # the prune counts of a class all of whose samples look like other classes: its diagonal is raised to 1 and
    # its non-zero off-diagonal counts give that sample up (cleanlab works on the transposed matrix)
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 7))
    joint = rng.integers(0, 5, size=(n_classes, n_classes)) * (rng.random((n_classes, n_classes)) < 0.7)
    zero = rng.choice(n_classes, int(rng.integers(1, n_classes + 1)), replace=False)
    joint[zero, zero] = 0
    ours = _keep_one_per_class(joint)
    assert (ours.diagonal() >= 1).all()
    for i in zero:  # one sample fewer in the off-diagonal counts of every non-empty row (none below 0)
        others = np.flatnonzero(np.arange(n_classes) != i)
        np.testing.assert_array_equal(ours[i, others], np.maximum(joint[i, others] - 1, 0))
    np.testing.assert_array_equal(ours, _keep_at_least_n_per_class(joint.T.astype(float), 1).T)


def test_a_sample_favouring_its_own_label_and_a_class_of_one_are_never_flagged():
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.2, 0.8, 0.0], [0.3, 0.7, 0.0], [0.6, 0.4, 0.0],
                      [0.1, 0.1, 0.8], [0.0, 0.9, 0.1]])
    y = np.array([0, 0, 1, 1, 1, 2, 0])
    flags = label_issues(y, probs)
    assert flags[4] and flags[6]  # labelled 1 / 0 but favouring 0 / 1
    assert not flags[[0, 1, 2, 3]].any()  # favour their own label
    assert not flags[5]  # the only sample of class 2
    np.testing.assert_array_equal(flags, cleanlab_issues(y, probs))


def test_the_vote_detector_averages_its_lda_with_one_fitted_without_the_flagged_samples():
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(4, 24)) * 1.5
    truth = np.repeat(np.arange(4), 40)
    X = (centres[truth] + rng.normal(size=(truth.size, 24))).astype(np.float32)
    # a confusion: a third of class 0 labelled 1, so class 1's mean moves towards class 0
    y = truth.copy()
    y[:13] = 1
    refit = WeightedLabelVoteDetector(k=5, backend="sklearn")
    plain = WeightedLabelVoteDetector(k=5, backend="sklearn", lda_refit=False)
    s_refit, s_plain = refit.fit_score(X, y), plain.fit_score(X, y)
    first = WeightedLabelVoteDetector(k=5, backend="sklearn", prune_suspects=False, lda_weight=0.0)
    first.fit_score(X, y)
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    lda, ok, _ = lda_probabilities(Z, y, 4)
    judged = 0.5 * first.class_probabilities_ + 0.5 * lda
    flagged = label_issues(y, judged)
    assert ok.all() and refit.num_lda_issues_ == flagged.sum() >= 3 and plain.num_lda_issues_ is None
    again, ok2, _ = lda_probabilities(Z, y, 4, fit_rows=~flagged)
    assert ok2.all()
    # the only difference: half the LDA weight moves from the first LDA to the refitted one
    np.testing.assert_allclose(refit.class_probabilities_ - plain.class_probabilities_, 0.25 * (again - lda),
                               atol=1e-7)  # float32 normalisation inside the detector
    assert not np.allclose(again, lda)
    assert refit.fitted_params()["num_lda_issues"] == flagged.sum()
    # the refit sees class 1 without most of its wrong members: the changed labels rank higher
    from sklearn.metrics import roc_auc_score
    wrong = y != truth
    assert roc_auc_score(wrong, s_refit) >= roc_auc_score(wrong, s_plain)


def test_lda_fitted_on_some_rows_predicts_every_row_from_its_fold():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 5)) + np.repeat(np.eye(3, 5) * 3, 20, axis=0)
    y = np.repeat(np.arange(3), 20)
    keep = rng.random(60) > 0.3
    probs, ok, _ = lda_probabilities(X, y, 3, folds=5, fit_rows=keep, calibrate=False)
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from ood_core.detectors.lda import fold_ids
    folds = fold_ids(y, 5)
    for f in range(5):
        test, fit = folds == f, (folds != f) & keep
        expected = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X[fit], y[fit]).predict_proba(X[test])
        np.testing.assert_allclose(probs[test], expected, rtol=1e-6, atol=1e-9)
    assert ok.all()


def test_lda_fitted_on_some_rows_of_wide_embeddings_uses_those_rows_principal_components():
    # wider than max_dim: every fold's PCA comes from the Gram of the fitting rows (one Gram minus the fold's)
    from ood_core.detectors.lda import ShrinkageLDA, fold_ids
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(3), 40)
    X = rng.normal(size=(120, 24)) + np.eye(3, 24)[y] * 2.5
    keep = rng.random(120) > 0.25
    probs, ok, _ = lda_probabilities(X, y, 3, folds=5, max_dim=6, fit_rows=keep, calibrate=False)
    folds = fold_ids(y, 5)
    for f in range(5):
        test, fit = folds == f, (folds != f) & keep
        model = ShrinkageLDA(3, 6).fit(X[fit], y[fit])  # its own PCA of exactly these rows
        assert type(model.pca_).__name__ == "GramPCA"  # the Gram path, as inside lda_probabilities
        np.testing.assert_allclose(probs[test], np.exp(model.predict_log_proba(X[test])), rtol=1e-6, atol=1e-9)
    assert ok.all()
