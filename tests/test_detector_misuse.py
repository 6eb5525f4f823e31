"""The numpy detectors, metrics and thresholds called the way a careless user calls them: each mistake is refused
with an OODInputError naming the input, the problem and the fix (no raw numpy / faiss error, no silent garbage),
and finite input gives finite scores. One regression test per fixed bug."""

import numpy as np
import pytest

from ood_core import metrics, thresholds
from ood_core.detectors import make_detector
from ood_core.errors import OODInputError
from ood_core.neighbors import faiss_available
from ood_core.validation import as_embeddings


def _data(n=60, d=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32) + 2 * (np.arange(n) % classes)[:, None]
    return X, [f"c{i % classes}" for i in range(n)]


def test_labels_whose_types_collide_are_refused_not_merged():
    # 1 and "1" are one class for pyramid_knn (str keys) but two for mahalanobis (value keys): refuse both
    X, _ = _data()
    mixed = [1 if i % 3 == 0 else "1" if i % 3 == 1 else 2 for i in range(60)]
    for name in ("pyramid_knn", "mahalanobis", "label_agreement"):
        with pytest.raises(OODInputError, match=r"1 \(int\) and '1' \(str\)"):
            make_detector(name).fit_score(X, mixed)


def test_nan_labels_are_missing_labels():
    # pandas reads a missing label as NaN: it is not a class of its own (before: one class per NaN)
    X, y = _data()
    y = list(y)
    y[3] = y[7] = float("nan")
    with pytest.raises(OODInputError, match="missing"):
        make_detector("mahalanobis").fit(X, y)
    # optional labels: NaN = unlabelled, like None
    with_nan = make_detector("pyramid_knn", transductive="never").fit_score(X, y)
    y[3] = y[7] = None
    with_none = make_detector("pyramid_knn", transductive="never").fit_score(X, y)
    np.testing.assert_array_equal(with_nan, with_none)


def test_knn_refuses_one_hot_labels():
    X, y = _data()
    onehot = np.eye(3)[np.arange(60) % 3]
    with pytest.raises(OODInputError, match="1-D"):
        make_detector("knn").fit(X, onehot)


def test_scored_labels_of_another_type_than_the_reference_are_refused():
    # reference labels 0/1/2, scored labels "0"/"1"/"2": every scored label looked unseen, every score was 1
    X, _ = _data()
    y_ref = [i % 3 for i in range(60)]
    y_new = [str(i % 3) for i in range(20)]
    for name in ("label_agreement", "weighted_label_vote"):
        det = make_detector(name).fit(X, y_ref)
        with pytest.raises(OODInputError, match=r"'0' \(str\).*0 \(int\)"):
            det.score_samples(X[:20], y_new)


@pytest.mark.parametrize("name,param", [("knn", "k_fraction"), ("level_fusion", "k_fraction"),
                                        ("level_fusion", "level_tolerance"),
                                        ("weighted_label_vote", "k_fraction"),
                                        ("weighted_label_vote", "level_tolerance")])
def test_fraction_parameters_are_checked_not_cast(name, param):
    for bad in ("abc", None, [0.1], "0.2", True):
        with pytest.raises(OODInputError, match=param):
            make_detector(name, **{param: bad})


@pytest.mark.parametrize("name", ["level_fusion", "weighted_label_vote"])
def test_levels_must_be_level_indices(name):
    for bad in (1, [0.5], ["1"], [True]):
        with pytest.raises(OODInputError, match="levels"):
            make_detector(name, level_dims=[3, 5], levels=bad)


def test_infinite_transductive_weight_is_refused():
    with pytest.raises(OODInputError, match="transductive_weight"):
        make_detector("pyramid_knn", transductive_weight=float("inf"))


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
@pytest.mark.parametrize("scale", [1e20, 1e-30])
def test_embeddings_of_extreme_magnitude_get_exact_neighbours_with_faiss(scale):
    # |x|^2 overflows faiss's float32 arithmetic (1e20: the exact search recursed until RecursionError) or
    # underflows (1e-30: the candidates were arbitrary, scores differed from scikit-learn's by up to 40%)
    X, _ = _data()
    X = X * scale
    faiss_scores = make_detector("knn", k=5, normalize=False, backend="faiss").fit(X).score_samples(X[:10])
    sk_scores = make_detector("knn", k=5, normalize=False, backend="sklearn").fit(X).score_samples(X[:10])
    assert np.isfinite(faiss_scores).all()
    np.testing.assert_allclose(faiss_scores, sk_scores, rtol=1e-5)


def test_values_beyond_float32_range_are_named_as_such():
    X = np.ones((4, 3)) * 1e39  # finite float64, infinite as float32
    with pytest.raises(OODInputError, match="float32"):
        as_embeddings(X, "X")


def test_fpr95_helpers_check_their_input():
    for call in (lambda: metrics.fpr_at_95_id_accepted([], [1.0]),
                 lambda: metrics.fpr_at_95_ood_flagged([1.0], []),
                 lambda: metrics.fpr_at_95_id_accepted([1.0, np.nan], [1.0, 2.0]),
                 lambda: metrics.fpr_at_95_ood_flagged([1.0, 2.0], [np.nan, 3.0])):
        with pytest.raises(OODInputError):
            call()


def test_metrics_accept_numpy_booleans_in_an_object_array():
    is_ood = np.array([np.False_, np.True_, np.True_, np.False_], dtype=object)
    out = metrics.ood_metrics([0.1, 0.5, 0.9, 0.3], is_ood)
    assert out["auroc"] == 1.0 and out["num_ood"] == 2


def test_nan_or_non_numeric_threshold_is_refused():
    for bad in (float("nan"), None, "0.5"):
        with pytest.raises(OODInputError, match="threshold"):
            thresholds.apply_threshold([0.1, 0.9], bad)
        with pytest.raises(OODInputError, match="threshold"):
            thresholds.rates_at_threshold([0.1, 0.9], [False, True], bad)


def test_level_fusion_reads_missing_labels_as_unlabelled_not_as_a_class():
    # None / NaN labels were one class "None" for level_fusion: 2 unlabelled rows made the smallest class 2, so
    # k="auto" fell to 1, and their 1-NN "agreement" entered the level accuracy. Like pyramid_knn, missing labels
    # are unlabelled rows: k and levels come from the labelled rows only.
    rng = np.random.default_rng(5)
    dims = [4, 4]
    y = np.repeat(["a", "b", "c"], 40).tolist()
    X = rng.normal(size=(120, 8)).astype(np.float32)
    X[:, 4:] += 4 * np.repeat(np.arange(3), 40)[:, None]  # only the second level separates the classes
    gaps = list(y)
    gaps[0] = None
    gaps[50] = float("nan")
    labelled = [i for i, label in enumerate(gaps) if isinstance(label, str)]
    auto = dict(level_dims=dims, levels="auto", k_fraction=0.25)
    det = make_detector("level_fusion", **auto).fit(X, gaps)
    assert det.ks_ == [10]  # 25% of the smallest labelled class (39 -> 9.75); the "None" class of 1 gave k=1
    alone = make_detector("level_fusion", **auto).fit(X[labelled], [gaps[i] for i in labelled])
    assert det.level_accuracy_ == alone.level_accuracy_
    assert det.levels_ == alone.levels_ == [1]
    # all labels missing = no labels
    none = make_detector("level_fusion", **auto).fit(X, [None] * 120)
    assert none.level_accuracy_ is None and none.ks_ == make_detector("level_fusion", **auto).fit(X).ks_


@pytest.mark.parametrize("name", ["label_agreement", "weighted_label_vote"])
def test_scored_labels_of_another_type_than_every_reference_class_are_refused(name):
    """Integer labels scored against a reference fitted on class names matched no class, and every sample silently
    scored 1.0 as an unseen class; unseen names of the reference's type still score as unseen."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 8)), np.array(["a", "b"] * 20)
    detector = make_detector(name).fit(X, y)
    with pytest.raises(OODInputError, match=r"type number \(e\.g\. 0\).*classes are str"):
        detector.score_samples(X[:6], y=[0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(detector.score_samples(X[:4], y=["c", "d", "c", "d"]), 1.0)
