"""Tests of ood_core.metrics against scikit-learn and hand-computed examples."""

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ood_core.errors import OODInputError
from ood_core.metrics import (
    format_metrics,
    fpr_at_95_id_accepted,
    fpr_at_95_ood_flagged,
    ood_metrics,
)


def random_scores(seed, n=300, ood_fraction=0.3, rounding=None):
    rng = np.random.default_rng(seed)
    is_ood = rng.random(n) < ood_fraction
    scores = rng.normal(size=n) + 1.2 * is_ood
    if rounding is not None:  # coarse scores -> many ties
        scores = np.round(scores, rounding)
    return scores, is_ood


def mann_whitney_auroc(scores, is_ood):
    """P(OOD score > ID score) + 0.5 P(tie), by brute force over all pairs."""
    ood, ind = scores[is_ood][:, None], scores[~is_ood][None, :]
    return np.mean((ood > ind) + 0.5 * (ood == ind))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_and_aupr_match_sklearn_and_pairwise_count(seed):
    scores, is_ood = random_scores(seed, rounding=1)
    m = ood_metrics(scores, is_ood)
    assert m["auroc"] == pytest.approx(roc_auc_score(is_ood, scores))
    assert m["auroc"] == pytest.approx(mann_whitney_auroc(scores, is_ood))
    assert m["aupr_out"] == pytest.approx(average_precision_score(is_ood, scores))
    assert m["aupr_in"] == pytest.approx(average_precision_score(~is_ood, -scores))
    assert m["num_id"] == int((~is_ood).sum()) and m["num_ood"] == int(is_ood.sum())


def test_fpr95_hand_example_where_conventions_differ():
    id_scores = np.arange(20, dtype=float)  # 0..19; 95% of 20 = 19 accepted -> threshold 18
    ood_scores = np.array([5, 18, 18.5, 19, 25, 30, 40, 50, 60, 70], dtype=float)
    scores = np.concatenate([id_scores, ood_scores])
    is_ood = np.r_[np.zeros(20, bool), np.ones(10, bool)]
    m = ood_metrics(scores, is_ood)
    # OOD accepted as ID (score <= 18): 5 and 18 (tie at the threshold counts) -> 2/10.
    assert m["fpr95"] == pytest.approx(0.2)
    # 95% of 10 OOD -> all 10 must be flagged -> threshold 5; ID with score >= 5: 15/20.
    assert m["fpr95_openood"] == pytest.approx(0.75)
    assert fpr_at_95_id_accepted(id_scores, ood_scores) == pytest.approx(0.2)
    assert fpr_at_95_ood_flagged(id_scores, ood_scores) == pytest.approx(0.75)


def test_fpr95_threshold_accepts_at_least_95_percent_of_id():
    # 21 ID samples: 95% = 19.95 -> 20 must be accepted -> threshold = 20th smallest = 19.
    id_scores = np.arange(21, dtype=float)
    ood_scores = np.array([19.0, 19.5, 20.0])
    assert fpr_at_95_id_accepted(id_scores, ood_scores) == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_both_fpr95_conventions_match_roc_curve_reading(seed):
    scores, is_ood = random_scores(seed, n=400, rounding=1)
    m = ood_metrics(scores, is_ood)
    # Hendrycks: ID positive, score -s; FPR (OOD accepted) at the first TPR >= 95%.
    fpr, tpr, _ = roc_curve(~is_ood, -scores, drop_intermediate=False)
    assert m["fpr95"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)])
    # OpenOOD: OOD positive, score s; FPR (ID flagged) at the first TPR >= 95%.
    fpr, tpr, _ = roc_curve(is_ood, scores, drop_intermediate=False)
    assert m["fpr95_openood"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)])


def test_perfect_and_reversed_scores():
    is_ood = np.r_[np.zeros(50, bool), np.ones(30, bool)]
    perfect = np.r_[np.linspace(0, 1, 50), np.linspace(2, 3, 30)]
    m = ood_metrics(perfect, is_ood)
    assert m["auroc"] == 1.0
    assert m["aupr_in"] == pytest.approx(1.0) and m["aupr_out"] == pytest.approx(1.0)
    assert m["fpr95"] == 0.0 and m["fpr95_openood"] == 0.0
    r = ood_metrics(-perfect, is_ood)
    assert r["auroc"] == 0.0 and r["fpr95"] == 1.0 and r["fpr95_openood"] == 1.0


def test_integer_flags_equal_boolean_flags_and_result_is_json():
    scores, is_ood = random_scores(6, n=50)
    m_bool = ood_metrics(scores, is_ood)
    m_int = ood_metrics(list(scores), is_ood.astype(int).tolist())
    assert m_bool == m_int
    assert json.loads(json.dumps(m_bool)) == m_bool
    assert all(type(m_bool[k]) is float for k in ("auroc", "aupr_in", "aupr_out", "fpr95",
                                                  "fpr95_openood"))
    assert type(m_bool["num_id"]) is int and type(m_bool["num_ood"]) is int


def test_input_errors_name_the_problem():
    with pytest.raises(OODInputError, match=r"scores has 3 values but is_ood has 4"):
        ood_metrics([0.1, 0.2, 0.3], [True, False, True, False])
    with pytest.raises(OODInputError, match=r"is_ood has no positive \(OOD\) samples; AUROC "
                                            r"needs both classes"):
        ood_metrics([0.1, 0.2], [False, False])
    with pytest.raises(OODInputError, match=r"is_ood has no negative \(ID\) samples"):
        ood_metrics([0.1, 0.2], [True, True])
    with pytest.raises(OODInputError, match=r"scores has 1 NaN or infinite value.*\[1\]"):
        ood_metrics([0.1, np.nan, 0.3], [True, False, True])
    with pytest.raises(OODInputError, match=r"empty"):
        ood_metrics([], [])
    with pytest.raises(OODInputError, match=r"is_ood must be boolean"):
        ood_metrics([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(OODInputError, match=r"1-D"):
        ood_metrics(np.zeros((2, 2)), [True, False])


def test_format_metrics_states_convention():
    m = ood_metrics(np.r_[0.0, 1.0, 2.0, 3.0], [False, False, True, True])
    line = format_metrics(m)
    assert "OOD = positive class, higher score = more OOD" in line
    assert "AUROC 1.0000" in line and "FPR@95%ID-accepted 0.0%" in line
    assert "2 ID / 2 OOD" in line and "\n" not in line
    assert format_metrics({"auroc": 0.5}).startswith("AUROC 0.5000 (")
    wrong = format_metrics(m, positive="wrong label", negative="correct label")
    assert "2 correct label / 2 wrong label; wrong label = positive class, higher score = more likely wrong label" in wrong
