"""Threshold rules on hand-computed cases, tie handling and independent brute force."""

import json

import numpy as np
import pytest

from ood_core.errors import OODInputError
from ood_core.metrics import fpr_at_95_id_accepted
from ood_core.thresholds import (
    apply_threshold,
    fixed_threshold,
    percentile_of_reference,
    rates_at_threshold,
    threshold_at_fpr,
    top_fraction,
    top_n,
)


def _json(rule):
    return json.loads(json.dumps(rule, allow_nan=False))


def test_percentile_of_reference_hand_case():
    t, flags, rule = percentile_of_reference([4.0, 1.0, 3.0, 2.0], pass_rate=0.75)
    # m = ceil(0.75 * 4) = 3 -> boundary = 3rd smallest = 3; flag iff score > 3
    assert rule["boundary_score"] == 3.0 and 3.0 < t < 3.0 + 1e-12
    assert flags.tolist() == [True, False, False, False]
    assert rule["reference_pass_rate"] == 0.75 and rule["num_reference"] == 4
    _, flags, _ = percentile_of_reference([1, 2, 3, 4], 0.75, scores=[2.5, 3.0, 3.0001, 5.0])
    assert flags.tolist() == [False, False, True, True]
    assert _json(rule)["rule"] == "percentile_of_reference"


def test_percentile_ties_at_the_boundary_pass():
    ref = [1.0, 2.0, 2.0, 2.0, 5.0]
    _, flags, rule = percentile_of_reference(ref, pass_rate=0.5)  # m = 3 -> boundary 2
    assert flags.tolist() == [False, False, False, False, True]
    assert rule["reference_pass_rate"] == 0.8  # more than asked: the tied 2s all pass
    _, flags, _ = percentile_of_reference(ref, pass_rate=1.0)
    assert not flags.any()


def test_percentile_at_95_lets_through_exactly_fpr95_of_ood():
    rng = np.random.default_rng(0)
    for _ in range(20):
        id_scores = rng.integers(0, 30, size=rng.integers(5, 80)).astype(float)  # many ties
        ood_scores = rng.integers(10, 40, size=50).astype(float)
        _, flags, _ = percentile_of_reference(id_scores, 0.95, scores=ood_scores)
        assert np.mean(~flags) == pytest.approx(fpr_at_95_id_accepted(id_scores, ood_scores))


def test_threshold_at_fpr_hand_case():
    id_scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    ood_scores = [0.95, 0.85, 0.5]
    scores = np.array(id_scores + ood_scores)
    is_ood = np.array([False] * 10 + [True] * 3)
    t, flags, rule = threshold_at_fpr(scores, is_ood, 0.2)
    # 2 of 10 ID may be flagged: boundary = 3rd highest ID score 0.8, flag iff score > 0.8
    assert rule["boundary_score"] == 0.8 and 0.8 < t < 0.8 + 1e-12
    assert np.flatnonzero(flags).tolist() == [8, 9, 10, 11]
    assert rule["fpr"] == 0.2 and rule["tpr"] == pytest.approx(2 / 3)
    assert "fraction of in-distribution samples flagged" in rule["fpr_definition"]
    assert _json(rule)["target_fpr"] == 0.2


def test_threshold_at_fpr_ties_keep_the_bound():
    scores = np.array([1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 4.0])
    is_ood = np.array([False, False, False, False, False, True, True])
    # 1 ID flag allowed, but three ID samples tie at 3: flagging any means flagging all
    _, flags, rule = threshold_at_fpr(scores, is_ood, 0.2)
    assert flags.tolist() == [False] * 6 + [True]
    assert rule["fpr"] == 0.0 and rule["tpr"] == 0.5
    _, flags, rule = threshold_at_fpr(scores, is_ood, 0.6)  # 3 allowed: boundary 2
    assert flags.tolist() == [False, False, True, True, True, True, True] and rule["fpr"] == 0.6
    _, flags, rule = threshold_at_fpr(scores, is_ood, 1.0)
    assert flags.all() and rule["boundary_score"] is None
    _, flags, _ = threshold_at_fpr(scores, is_ood, 0.0)
    assert flags.tolist() == [False] * 6 + [True]


def test_threshold_at_fpr_matches_brute_force_and_percentile_rule():
    rng = np.random.default_rng(1)
    for _ in range(30):
        scores = rng.integers(0, 12, size=40).astype(float)
        is_ood = rng.random(40) < 0.3
        is_ood[0] = False
        target = float(rng.choice([0.0, 0.05, 0.1, 0.25, 0.5, 0.75]))
        _, flags, rule = threshold_at_fpr(scores, is_ood, target)
        # brute force: the lowest candidate threshold whose FPR is within the target
        candidates = np.append(np.unique(scores), np.inf)
        best = min(c for c in candidates if np.mean(scores[~is_ood] >= c) <= target + 1e-12)
        assert flags.tolist() == (scores >= best).tolist()
        assert rule["fpr"] <= target
        same = percentile_of_reference(scores[~is_ood], 1 - target, scores=scores) if target < 1 else None
        if same is not None:
            assert same.flags.tolist() == flags.tolist()


def test_top_n_ties_are_flagged():
    scores = [5.0, 4.0, 4.0, 1.0]
    t, flags, rule = top_n(scores, 2)
    assert t == 4.0 and flags.tolist() == [True, True, True, False]
    assert rule["num_flagged"] == 3 and rule["n"] == 2
    assert top_n(scores, 1).flags.tolist() == [True, False, False, False]
    assert not top_n(scores, 0).flags.any()
    assert top_n(scores, 10).flags.all()
    assert _json(rule)["rule"] == "top_n"


def test_top_rules_do_not_flag_a_tie_at_the_lowest_score():
    # the n-th highest is the lowest score: those samples are no more suspicious than any other, they pass
    t, flags, rule = top_n([5.0, 1.0, 1.0, 1.0], 2)
    assert flags.tolist() == [True, False, False, False] and rule["num_flagged"] == 1 and t > 1.0
    # constant scores (a one-class label field, identical images) flag nothing ...
    assert not top_fraction(np.zeros(20), 0.05).flags.any()
    assert not top_n([2.0, 2.0, 2.0], 1).flags.any()
    # ... unless n covers every sample
    assert top_n([2.0, 2.0, 2.0], 3).flags.all() and top_fraction(np.zeros(4), 1.0).flags.all()
    # a tie above the lowest score is still flagged
    assert top_n([5.0, 3.0, 3.0, 1.0], 2).flags.tolist() == [True, True, True, False]


def test_top_fraction_rounds_up_without_float_noise():
    scores = np.arange(10.0)
    _, flags, rule = top_fraction(scores, 0.25)  # ceil(2.5) = 3
    assert rule["n"] == 3 and np.flatnonzero(flags).tolist() == [7, 8, 9]
    _, flags, rule = top_fraction(np.arange(100.0), 0.07)  # 0.07 * 100 = 7.000000000000001 in floats
    assert rule["n"] == 7 and flags.sum() == 7
    assert top_fraction(scores, 0.0).flags.sum() == 0
    assert top_fraction(scores, 1.0).flags.all()


def test_fixed_threshold_is_inclusive_and_rates():
    t, flags, rule = fixed_threshold([0.1, 0.5, 0.9], 0.5)
    assert t == 0.5 and flags.tolist() == [False, True, True] and rule["num_flagged"] == 2
    assert apply_threshold([0.49, 0.5], 0.5).tolist() == [False, True]
    rates = rates_at_threshold([0.1, 0.5, 0.9, 0.7], [False, False, True, True], 0.5)
    assert rates == {"threshold": 0.5, "num_flagged": 3, "tpr": 1.0, "fpr": 0.5, "precision": pytest.approx(2 / 3)}


def test_bad_inputs_are_refused():
    with pytest.raises(OODInputError, match="NaN"):
        top_n([1.0, np.nan], 1)
    with pytest.raises(OODInputError, match="pass_rate"):
        percentile_of_reference([1.0, 2.0], 0.0)
    with pytest.raises(OODInputError, match="empty"):
        percentile_of_reference([], 0.9)
    with pytest.raises(OODInputError, match="n must be an integer"):
        top_n([1.0], -1)
    with pytest.raises(OODInputError, match="target_fpr"):
        threshold_at_fpr([1.0, 2.0], [False, True], 1.5)
    with pytest.raises(OODInputError, match="shape"):
        threshold_at_fpr([1.0, 2.0], [False], 0.1)
    with pytest.raises(OODInputError, match="in-distribution"):
        threshold_at_fpr([1.0, 2.0], [True, True], 0.1)
    with pytest.raises(OODInputError, match="finite"):
        fixed_threshold([1.0], float("inf"))
