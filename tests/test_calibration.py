"""Tests of ood_core.calibration (conformal p-values)."""

import json

import numpy as np
import pytest
from scipy import stats

from ood_core.calibration import ConformalCalibrator, conformal_p_values, flag_at_alpha
from ood_core.detectors import KNNDetector
from ood_core.errors import NotFittedError, OODInputError


def test_hand_computed_example_with_ties():
    ref = [0.1, 0.5, 0.5, 0.9]
    # p = (1 + #{ref >= s}) / 5
    p = conformal_p_values(ref, [0.0, 0.1, 0.5, 0.7, 0.9, 1.0])
    np.testing.assert_allclose(p, [5 / 5, 5 / 5, 4 / 5, 2 / 5, 2 / 5, 1 / 5])


def test_p_values_match_a_direct_count():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=57)
    s = np.concatenate([rng.normal(size=40), ref[:5]])  # some exact ties with the reference
    direct = np.array([(1 + np.sum(ref >= v)) / (ref.size + 1) for v in s])
    np.testing.assert_allclose(conformal_p_values(ref, s), direct)


def test_exchangeable_scores_give_uniform_p_values():
    rng = np.random.default_rng(0)
    ref = rng.gamma(2.0, size=2000)  # any continuous score distribution
    new = rng.gamma(2.0, size=3000)
    p = conformal_p_values(ref, new)
    assert stats.kstest(p, "uniform").pvalue > 0.01
    # the share flagged at alpha is alpha within a 4-sigma binomial bound
    for alpha in (0.01, 0.05, 0.2):
        share = flag_at_alpha(p, alpha).mean()
        sigma = np.sqrt(alpha * (1 - alpha) / new.size)
        assert abs(share - alpha) < 4 * sigma + 1.0 / (ref.size + 1)


def test_knn_leave_one_out_reference_calibrates_new_in_distribution_data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1500, 8)).astype(np.float32)
    X_ref, X_new = X[:700], X[700:]
    det = KNNDetector(k=5, normalize=False, backend="sklearn")
    cal = ConformalCalibrator().fit(det.fit_score(X_ref))
    p = cal.p_values(det.score_samples(X_new))
    assert stats.kstest(p, "uniform").pvalue > 0.01
    share = cal.flag(det.score_samples(X_new), 0.1).mean()
    assert abs(share - 0.1) < 4 * np.sqrt(0.1 * 0.9 / 800)
    # far-away points get the smallest attainable p-value
    far = cal.p_values(det.score_samples(X_new[:10] + 50.0))
    np.testing.assert_allclose(far, cal.min_attainable_alpha())


def test_calibrator_round_trip_and_params():
    cal = ConformalCalibrator().fit([3.0, 1.0, 2.0])
    d = json.loads(json.dumps(cal.to_dict()))
    again = ConformalCalibrator.from_dict(d)
    np.testing.assert_allclose(again.p_values([2.0, 5.0]), [3 / 4, 1 / 4])
    assert json.loads(json.dumps(cal.get_params())) == {"method": "conformal"}
    assert cal.min_attainable_alpha() == 0.25


@pytest.mark.parametrize(
    "ref, scores, words",
    [
        ([], [1.0], "reference_scores is empty"),
        ([[1.0, 2.0]], [1.0], "reference_scores must be 1-D"),
        ([1.0, np.nan], [1.0], "reference_scores has 1 NaN"),
        ([1.0], [np.inf], "scores has 1 NaN or infinite"),
        ([1.0], "abc", "scores must be a 1-D array of numbers"),
        ([1.0], [["a"]], "scores must be numeric"),
    ],
)
def test_bad_input_errors_name_the_input(ref, scores, words):
    with pytest.raises(OODInputError, match=words):
        conformal_p_values(ref, scores)


def test_flag_and_fit_errors():
    with pytest.raises(OODInputError, match="alpha=1.5"):
        flag_at_alpha([0.5], 1.5)
    with pytest.raises(OODInputError, match="p_values must lie in"):
        flag_at_alpha([3.0], 0.1)
    with pytest.raises(NotFittedError, match="not fitted"):
        ConformalCalibrator().p_values([1.0])
    with pytest.raises(OODInputError, match="reference_scores"):
        ConformalCalibrator.from_dict({"x": 1})


def test_a_stored_state_of_another_method_is_refused_not_read_as_conformal():
    from ood_core.calibration import ConformalCalibrator

    state = ConformalCalibrator().fit([0.1, 0.5, 0.9]).to_dict()
    assert ConformalCalibrator.from_dict(state).to_dict() == state
    with pytest.raises(OODInputError, match="method 'platt'.*only 'conformal'"):
        ConformalCalibrator.from_dict({**state, "method": "platt"})
