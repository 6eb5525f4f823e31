"""Bad input and edge cases of the numpy layer: validation, reduction, label votes, calibration, thresholds,
metrics. Each test is one thing a careful user did that went wrong (a raw error or a silent wrong answer)."""

import json

import numpy as np
import pytest

from ood_core import calibration, metrics, thresholds
from ood_core.detectors.label_votes import WeightedLabelVoteDetector
from ood_core.errors import OODInputError
from ood_core.reduction import Reducer
from ood_core.validation import as_embeddings, check_number, check_positive_int
from vote_helpers import loo_votes


def blobs(seed=0, n=30, d=8, spread=1.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n)
    X = (rng.normal(size=(3, d)) * 2)[y] + rng.normal(size=(y.size, d))
    return (X * spread).astype(np.float32), y


# ------------------------------------------------------------------ as_embeddings: values below float32's range

def test_embeddings_too_small_for_float32_are_refused_with_the_rescaling_fix():
    X = np.random.default_rng(0).normal(size=(5, 4)) * 1e-50  # float64; float32 would store zeros
    with pytest.raises(OODInputError) as e:
        as_embeddings(X, "reference embeddings")
    msg = str(e.value)
    assert "reference embeddings has 5 row(s)" in msg and "too small for float32" in msg
    assert "first rows: [0, 1, 2, 3, 4]" in msg and "X / abs(X).max()" in msg
    # the fix the message names works, and ordinary input is stored as before
    ok = as_embeddings(X / np.abs(X).max(), "reference embeddings")
    assert np.array_equal(ok, (X / np.abs(X).max()).astype(np.float32))


def test_only_the_rows_that_would_vanish_are_named_and_negligible_parts_are_kept():
    X = np.array([[1.0, 1e-50], [0.0, 0.0], [3e-45, -1e-39], [2.0, 3.0]])
    with pytest.raises(OODInputError) as e:
        as_embeddings(X, "scored embeddings")
    assert "scored embeddings has 1 row(s)" in str(e.value) and "first rows: [2]" in str(e.value)
    # a tiny value beside an ordinary one and an all-zero row are as float32 has them (nothing of weight lost)
    assert np.array_equal(as_embeddings(X[[0, 1, 3]]), X[[0, 1, 3]].astype(np.float32))


# ------------------------------------------------------------------ Reducer.from_linear_state: malformed state

def _state(method="pca"):
    X = np.random.default_rng(1).normal(size=(12, 5))
    return Reducer(method=method, n_components=2).fit(X).linear_state()


@pytest.mark.parametrize("change, says", [
    (lambda s: None, "needs a dict, not a NoneType"),
    (lambda s: [s], "needs a dict, not a list"),
    (lambda s: {**s, "method": "umap"}, "method is 'umap'; only 'pca' and 'random'"),
    (lambda s: {k: v for k, v in s.items() if k != "mean"}, "has no 'mean'"),
    (lambda s: {k: v for k, v in s.items() if k != "n_features_in"}, "has no 'n_features_in'"),
    (lambda s: {k: v for k, v in s.items() if k not in ("seed", "components")}, "has no 'seed', 'components'"),
    (lambda s: {**s, "n_features_in": "5"}, "n_features_in='5' is not an integer >= 1"),
    (lambda s: {**s, "n_features_in": 6}, "'components' should be finite numbers of shape (6, 2)"),
    (lambda s: {**s, "n_components": 3}, "'components' should be finite numbers of shape (5, 3)"),
    (lambda s: {**s, "n_components": 0}, "n_components=0 is not valid"),
    (lambda s: {**s, "components": "x"}, "got not numbers"),
    (lambda s: {**s, "mean": s["mean"][:2]}, "'mean' should be finite numbers of shape (5,) (n_features_in,); got "
                                               "shape (2,)"),
    (lambda s: {**s, "components": [[float("nan")] * 2] * 5}, "got NaN or infinite values"),
])
def test_a_malformed_linear_state_is_refused_naming_the_entry_and_the_fix(change, says):
    with pytest.raises(OODInputError) as e:
        Reducer.from_linear_state(change(_state()))
    assert says in str(e.value)
    assert "linear_state() of a fitted 'pca' or 'random' Reducer" in str(e.value)


@pytest.mark.parametrize("method", ["pca", "random"])
def test_a_stored_linear_state_still_restores_the_same_reducer(method):
    X = np.random.default_rng(2).normal(size=(12, 5))
    fitted = Reducer(method=method, n_components=2).fit(X)
    restored = Reducer.from_linear_state(json.loads(json.dumps(fitted.linear_state())))
    assert np.array_equal(restored.transform(X), fitted.transform(X))


# ------------------------------------------------------------------ weighted label votes at tiny scale

@pytest.mark.parametrize("lda_weight", [0.0, 0.5])
def test_inverse_distance_votes_of_tiny_embeddings_are_those_of_the_same_embeddings_at_spread_1(lda_weight):
    X, y = blobs()
    X = X / np.float32(4)  # spread below 1
    y[[0, 31, 62]] = [1, 2, 0]
    ref = WeightedLabelVoteDetector(normalize=False, lda_weight=lda_weight).fit_score(X, y)
    tiny = WeightedLabelVoteDetector(normalize=False, lda_weight=lda_weight).fit_score(X * np.float32(1e-8), y)
    np.testing.assert_allclose(tiny, ref, atol=1e-6)
    # the weighting is kept, not turned into a plain count
    plain = WeightedLabelVoteDetector(normalize=False, lda_weight=lda_weight, weighting="uniform").fit_score(X, y)
    assert np.abs(tiny - plain).max() > 1e-3
    # new samples: a fitted sample scored again is its own nearest neighbour (distance 0) and its vote dominates
    det = WeightedLabelVoteDetector(normalize=False, lda_weight=0.0).fit(X * np.float32(1e-8), y)
    again = det.score_samples(X[:5] * np.float32(1e-8), y[:5])
    assert again.max() < 0.01


def test_ordinary_scale_votes_are_unchanged_by_the_scale_free_epsilon():
    X, y = blobs(seed=3)  # spread > 1: epsilon 1e-6 as before
    det = WeightedLabelVoteDetector(normalize=False, lda_weight=0.0, prune_suspects=False, margin_weight=0.0)
    det.fit_score(X, y)
    expected = loo_votes(X.astype(np.float64), y, det.k_, np.arange(y.size))
    np.testing.assert_allclose(det.class_probabilities_, expected, atol=1e-6)


# ------------------------------------------------------------------ scores: complex, huge integers, names

@pytest.mark.parametrize("call", [
    lambda v: calibration.conformal_p_values(v, [1.0]),
    lambda v: calibration.ConformalCalibrator().fit([1.0, 2.0]).p_values(v),
    lambda v: thresholds.percentile_of_reference(v),
    lambda v: thresholds.top_n(v, 1),
    lambda v: metrics.ood_metrics(v, [False, True]),
])
def test_complex_scores_are_refused_not_cut_to_their_real_part(call):
    with pytest.raises(OODInputError) as e:
        call(np.array([1 + 5j, 2 - 5j]))
    assert "holds complex numbers, whose imaginary part would be dropped; pass real numbers" in str(e.value)


@pytest.mark.parametrize("call, name", [
    (lambda v: calibration.conformal_p_values(v, [1.0]), "reference_scores"),
    (lambda v: thresholds.percentile_of_reference(v), "ref_scores"),
    (lambda v: metrics.ood_metrics(v, [False, True]), "scores"),
])
def test_an_integer_beyond_float_range_is_named_not_a_raw_overflow(call, name):
    with pytest.raises(OODInputError) as e:
        call([10 ** 400, 1])
    assert str(e.value).startswith(f"{name} must be") and "too large" in str(e.value)


@pytest.mark.parametrize("fn", [metrics.fpr_at_95_id_accepted, metrics.fpr_at_95_ood_flagged])
def test_fpr95_names_which_score_array_holds_nan(fn):
    with pytest.raises(OODInputError) as e:
        fn([0.1, 0.2], [0.5, float("nan")])
    assert str(e.value).startswith("ood_scores has 1 NaN")
    with pytest.raises(OODInputError) as e:
        fn(["low"], [0.5])
    assert str(e.value).startswith("id_scores must be numeric")


def test_an_unknown_threshold_rule_is_named_with_the_valid_ones():
    with pytest.raises(OODInputError) as e:
        thresholds.check_rule_value("top", 5)
    assert "rule='top' is not a threshold rule" in str(e.value) and "top_n" in str(e.value)
    assert thresholds.check_rule_value("top_n", 5) == 5


def test_format_metrics_refuses_what_is_not_ood_metrics_output():
    with pytest.raises(OODInputError, match="needs the dict that ood_metrics returns, not a list"):
        metrics.format_metrics([0.9])
    with pytest.raises(OODInputError, match="auroc='0.9' is not a number"):
        metrics.format_metrics({"auroc": "0.9"})
    line = metrics.format_metrics(metrics.ood_metrics([0.1, 0.2, 0.9], [False, False, True]))
    assert line.startswith("AUROC 1.0000") and "OOD = positive class" in line


# ------------------------------------------------------------------ settings

def test_a_number_beyond_float_range_is_refused_as_a_setting():
    with pytest.raises(OODInputError, match="must be a finite number >= 0 and <= 1"):
        check_number(10 ** 400, "margin_weight", low=0, high=1)


@pytest.mark.parametrize("value, says", [
    ("\u00b2", "pass a whole number >= 1, e.g. k=10"),  # a superscript two: isdigit() but not int()
    ("0", "pass a whole number >= 1, e.g. k=10"),  # not "pass the number itself: k=0"
])
def test_digit_strings_that_are_not_a_valid_k_get_the_general_fix(value, says):
    with pytest.raises(OODInputError) as e:
        check_positive_int(value, "k")
    assert says in str(e.value) and f"k={value!r} is a str" in str(e.value)


@pytest.mark.parametrize("call, name", [
    (lambda v: thresholds.top_n(v, 1), "scores"),
    (lambda v: thresholds.threshold_at_fpr([0.1, 0.2], v), "is_ood"),
    (lambda v: metrics.ood_metrics(v, [False, True]), "scores"),
    (lambda v: metrics.ood_metrics([0.1, 0.2], v), "is_ood"),
    (lambda v: metrics.fpr_at_95_ood_flagged([0.1], v), "ood_scores"),
])
def test_nested_lists_of_different_lengths_are_named_not_a_raw_numpy_error(call, name):
    with pytest.raises(OODInputError) as e:
        call([[0.1, 0.2], [1]])
    assert str(e.value).startswith(f"{name} holds sequences of different lengths; pass a flat list")


@pytest.mark.parametrize("call, name", [
    (lambda v: calibration.conformal_p_values(v, [1.0]), "reference_scores"),
    (lambda v: calibration.flag_at_alpha(v, 0.1), "p_values"),
])
def test_calibration_still_names_nested_lists_of_different_lengths(call, name):
    with pytest.raises(OODInputError) as e:
        call([[0.1, 0.2], [1]])
    assert str(e.value).startswith(name)
