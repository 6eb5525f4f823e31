"""Threshold rules: turn OOD scores into flags (numpy only).

Conventions, for every rule in this module:

- Scores are **higher = more OOD / more suspicious**.
- A sample is **flagged** when ``score >= threshold`` and **passes** when
  ``score < threshold``. Flags are a function of the score alone, so samples
  with equal scores always get the same decision; each rule says which way a
  tie at its boundary goes.
- Every rule returns a :class:`ThresholdResult` ``(threshold, flags, rule)``:
  the threshold (a float), a boolean flag array and a JSON-serialisable
  description of the rule (its name, parameters, the threshold, and what it
  achieved on the data it was computed from). The description is what the
  FiftyOne layer stores in the run record.

Rules:

- :func:`percentile_of_reference`: e.g. 95% of the trusted samples pass.
  Ties at the boundary **pass** (at least ``pass_rate`` of the reference passes).
- :func:`threshold_at_fpr`: on labelled data, the lowest threshold whose false
  positive rate (**fraction of in-distribution samples flagged**) is at most
  the target. Ties at the boundary **pass** (the FPR bound always holds).
- :func:`top_n` / :func:`top_fraction`: flag the n highest scores. Ties at the
  boundary are **flagged**, so more than n samples are flagged when the n-th
  highest score is shared (a review list never hides a sample that scores as
  high as one on it), except a tie at the **lowest** score: samples that score
  no higher than the least suspicious sample carry no evidence, so they pass
  (constant scores, e.g. wrong-label scores of a one-class label field or
  OOD scores of identical images, flag nothing unless n covers every sample).
- :func:`fixed_threshold`: a threshold chosen by hand.

Where a boundary must pass ("flag iff score > b"), the threshold is the next
float above ``b`` (``numpy.nextafter(b, inf)``), so ``score >= threshold`` is
exactly ``score > b``; the description records ``b`` as ``"boundary_score"``.

:func:`percentile_of_reference` at ``pass_rate=0.95`` uses the same boundary
as FPR95 in :mod:`ood_core.metrics` (Hendrycks convention): the fraction of OOD
samples it lets pass equals ``fpr_at_95_id_accepted``.
"""

import math
from typing import NamedTuple

import numpy as np

from .errors import OODInputError
from .validation import as_array, finite_floats

__all__ = [
    "RULES",
    "ThresholdResult",
    "apply_threshold",
    "check_rule_value",
    "fixed_threshold",
    "percentile_of_reference",
    "rates_at_threshold",
    "threshold_at_fpr",
    "top_fraction",
    "top_n",
]

#: Rule names (the ``"rule"`` entry of each description).
RULES = ("percentile_of_reference", "threshold_at_fpr", "top_n", "top_fraction", "fixed_threshold")

FLAG_IF = "score >= threshold"


class ThresholdResult(NamedTuple):
    """``threshold`` (float), ``flags`` (bool array, True = flagged) and ``rule`` (JSON dict)."""

    threshold: float
    flags: np.ndarray
    rule: dict


def _scores(scores, name="scores", allow_empty=False):
    arr = as_array(scores, name)
    if arr.ndim != 1:
        raise OODInputError(f"{name} must be 1-D (one score per sample); got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise OODInputError(f"{name} is empty; a threshold needs at least one score")
    arr = finite_floats(arr, name, "drop those samples before thresholding")
    return arr


def _fraction(value, name, *, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise OODInputError(f"{name} must be a number in [0, 1]; got {value!r}")
    value = float(value)
    if not (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0):
        raise OODInputError(f"{name} must be in {'(0, 1]' if low_open else '[0, 1]'}; got {value}")
    return value


def _count(fraction, n):
    """``fraction * n`` as an int, rounded to 9 decimals first so 0.07 * 100 is 7, not 7.000000000000001."""
    return round(fraction * n, 9)


def _above(value):
    """Smallest float greater than ``value``: ``score >= _above(b)`` is exactly ``score > b``."""
    return float(np.nextafter(float(value), np.inf))


#: rule -> (what its ``value`` is, what is accepted, test of the value as a float): the ``value=`` of
#: ``flag_samples`` (``"p_value"`` is the FiftyOne layer's calibrated p-value rule)
RULE_VALUES = {
    "percentile_of_reference": ("pass rate", "a number in (0, 1]: the fraction of reference items that pass "
                                "(e.g. 0.95)", lambda v: 0 < v <= 1),
    "threshold_at_fpr": ("target FPR", "a number in [0, 1]: the allowed fraction of in-distribution items "
                         "flagged (e.g. 0.05)", lambda v: 0 <= v <= 1),
    "top_n": ("n", "a whole number >= 0: how many items to flag (e.g. 20)", lambda v: v >= 0 and v.is_integer()),
    "top_fraction": ("fraction", "a number in [0, 1]: the share of items to flag (e.g. 0.05)",
                     lambda v: 0 <= v <= 1),
    "fixed_threshold": ("threshold", "a finite number: items with score >= value are flagged", lambda v: True),
    "p_value": ("alpha", "a number strictly between 0 and 1 (e.g. 0.01 or 0.05): items whose p-value is <= "
                "alpha are flagged", lambda v: 0 < v < 1),
}


def check_rule_value(rule, value, alias=None):
    """``value`` of ``rule`` as a Python number (an int for ``top_n``), else an error naming what is expected.

    ``alias`` is the rule name the caller used (e.g. ``"percentile"``), shown in the message.
    """
    if not isinstance(rule, str) or rule not in RULE_VALUES:
        raise OODInputError(f"rule={alias or rule!r} is not a threshold rule; pass one of {', '.join(RULE_VALUES)}")
    what, expected, ok = RULE_VALUES[rule]
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not number or not np.isfinite(value) or not ok(float(value)):
        raise OODInputError(f"value={value!r} is not a valid {what} for rule {alias or rule!r}; pass {expected}")
    return int(value) if rule == "top_n" else float(value)


def _threshold(threshold):
    """``float(threshold)`` for a real number (infinities flag nothing / everything), else OODInputError: NaN
    flagged nothing, and ``float()`` would parse a string."""
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or np.isnan(threshold):
        raise OODInputError(f"threshold must be a number (samples with score >= threshold are flagged); got "
                            f"{threshold!r}")
    return float(threshold)


def apply_threshold(scores, threshold):
    """Boolean flags ``score >= threshold`` (True = flagged as OOD / suspicious)."""
    return _scores(scores, allow_empty=True) >= _threshold(threshold)


def rates_at_threshold(scores, is_ood, threshold):
    """What a threshold does on labelled data (OOD = the positive class).

    Returns ``{"threshold", "num_flagged", "tpr", "fpr", "precision"}``:
    ``tpr`` = fraction of OOD samples flagged (recall), ``fpr`` = fraction of
    ID samples flagged, ``precision`` = fraction of flagged samples that are
    OOD (None when nothing is flagged). Flagged means ``score >= threshold``.
    """
    scores, is_ood = _labelled(scores, is_ood)
    threshold = _threshold(threshold)
    flags = scores >= threshold
    n_flag = int(flags.sum())
    return {
        "threshold": threshold,
        "num_flagged": n_flag,
        "tpr": float(flags[is_ood].mean()) if is_ood.any() else None,
        "fpr": float(flags[~is_ood].mean()) if (~is_ood).any() else None,
        "precision": float(is_ood[flags].mean()) if n_flag else None,
    }


def _labelled(scores, is_ood):
    scores = _scores(scores)
    is_ood = as_array(is_ood, "is_ood", "one True/False (OOD) flag per sample")
    if is_ood.shape != scores.shape:
        raise OODInputError(
            f"scores has shape {scores.shape} but is_ood has shape {is_ood.shape}; pass one "
            "OOD flag per score, in the same order"
        )
    if is_ood.dtype != np.bool_:
        if not np.isin(is_ood, [0, 1]).all():
            raise OODInputError("is_ood must be boolean (True = OOD) or 0/1")
        is_ood = is_ood.astype(bool)
    return scores, is_ood


def percentile_of_reference(ref_scores, pass_rate=0.95, scores=None):
    """Threshold that lets ``pass_rate`` of the reference (trusted) samples pass.

    With the ``n`` reference scores sorted ascending as ``s`` and
    ``m = ceil(pass_rate * n)``, the boundary is ``b = s[m - 1]`` and a sample
    is flagged when ``score > b`` (threshold = next float above ``b``). Ties at
    ``b`` pass, so at least ``pass_rate`` of the reference passes (more when
    scores tie at the boundary). ``pass_rate=1`` passes every reference sample.

    Args:
        ref_scores: ``(n,)`` scores of trusted in-distribution samples.
        pass_rate: fraction of reference samples that must pass, in ``(0, 1]``.
        scores: scores to flag (default: ``ref_scores`` themselves).

    Example: ``ref_scores = [1, 2, 3, 4]``, ``pass_rate=0.75``: ``m = 3``,
    ``b = 3``; 1, 2, 3 pass and 4 is flagged.
    """
    ref = _scores(ref_scores, "ref_scores")
    pass_rate = _fraction(pass_rate, "pass_rate", low_open=True)
    n = ref.size
    m = max(1, math.ceil(_count(pass_rate, n)))
    boundary = float(np.sort(ref)[m - 1])
    threshold = _above(boundary)
    target = ref if scores is None else _scores(scores, allow_empty=True)
    rule = {
        "rule": "percentile_of_reference",
        "pass_rate": pass_rate,
        "threshold": threshold,
        "boundary_score": boundary,
        "flag_if": FLAG_IF,
        "ties": "a score equal to boundary_score passes",
        "num_reference": int(n),
        "reference_pass_rate": float(np.mean(ref < threshold)),
    }
    return ThresholdResult(threshold, target >= threshold, rule)


def threshold_at_fpr(scores, is_ood, target_fpr=0.05):
    """Lowest threshold whose FPR on labelled data is at most ``target_fpr``.

    **FPR = fraction of in-distribution samples flagged** (``score >=
    threshold``; OOD = positive class). Among all thresholds that flag at most
    ``a = floor(target_fpr * num_id)`` ID samples, the lowest is chosen, which
    flags the most OOD samples (highest TPR). With the ID scores sorted
    descending as ``d``, the boundary is ``b = d[a]`` and samples with
    ``score > b`` are flagged; ID samples tied at ``b`` pass, so the FPR bound
    always holds even when ties make the achieved FPR lower than the target.
    ``target_fpr=1`` (``a = num_id``) flags everything.

    Same boundary as ``percentile_of_reference(id_scores, 1 - target_fpr)``.

    Args:
        scores: ``(N,)`` scores, higher = more OOD.
        is_ood: ``(N,)`` booleans, True = OOD. Needs at least one ID sample.
        target_fpr: allowed fraction of ID samples flagged, in ``[0, 1]``.

    Returns:
        :class:`ThresholdResult`; flags cover all ``scores``; the description
        reports the achieved ``fpr`` and ``tpr``.
    """
    scores, is_ood = _labelled(scores, is_ood)
    target_fpr = _fraction(target_fpr, "target_fpr")
    id_scores = np.sort(scores[~is_ood])[::-1]
    n_id = id_scores.size
    if n_id == 0:
        raise OODInputError(
            "is_ood marks every sample as OOD; an FPR threshold needs in-distribution samples"
        )
    allowed = math.floor(_count(target_fpr, n_id))
    if allowed >= n_id:
        boundary = None
        threshold = float(scores.min())
    else:
        boundary = float(id_scores[allowed])
        threshold = _above(boundary)
    flags = scores >= threshold
    rates = rates_at_threshold(scores, is_ood, threshold)
    rule = {
        "rule": "threshold_at_fpr",
        "target_fpr": target_fpr,
        "fpr_definition": "fraction of in-distribution samples flagged (score >= threshold)",
        "threshold": threshold,
        "boundary_score": boundary,
        "flag_if": FLAG_IF,
        "ties": "an ID score equal to boundary_score passes, so fpr <= target_fpr",
        "num_id": int(n_id),
        "num_ood": int(is_ood.sum()),
        "fpr": rates["fpr"],
        "tpr": rates["tpr"],
    }
    return ThresholdResult(threshold, flags, rule)


def top_n(scores, n):
    """Flag the ``n`` highest scores; ties with the n-th highest are flagged too.

    Threshold = the n-th highest score, so ``num_flagged >= n`` when scores tie
    at the boundary (e.g. ``[5, 4, 4, 1]``, ``n=2``: threshold 4, three
    flagged). When the n-th highest score is also the lowest score (and
    ``n < len(scores)``), the samples tied there pass: threshold = next float
    above it, so fewer than n are flagged (``[5, 1, 1, 1]``, ``n=2``: only 5;
    ``[2, 2, 2]``, ``n=1``: none). ``n=0`` flags nothing (threshold = next float
    above the maximum); ``n >= len(scores)`` flags everything.
    """
    scores = _scores(scores)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise OODInputError(f"n must be an integer >= 0 (how many samples to flag); got {n!r}")
    return _top(scores, int(n), {"rule": "top_n", "n": int(n)})


def top_fraction(scores, fraction):
    """Flag the top ``fraction`` of scores: ``top_n`` with ``n = ceil(fraction * N)``.

    Ties with the n-th highest score are flagged too (see :func:`top_n`).
    """
    scores = _scores(scores)
    fraction = _fraction(fraction, "fraction")
    n = math.ceil(_count(fraction, scores.size))
    return _top(scores, n, {"rule": "top_fraction", "fraction": fraction, "n": int(n)})


def _top(scores, n, rule):
    desc = np.sort(scores)[::-1]
    if n == 0:
        threshold = _above(desc[0])
    elif n >= desc.size:
        threshold = float(desc[-1])
    elif desc[n - 1] == desc[-1]:
        # the n-th highest is the lowest score: a tie there is no evidence, those samples pass
        threshold = _above(desc[-1])
    else:
        threshold = float(desc[n - 1])
    flags = scores >= threshold
    rule.update(
        threshold=threshold,
        flag_if=FLAG_IF,
        ties=("scores equal to the threshold are flagged, so more than n may be flagged; a tie at the lowest "
              "score passes, so fewer may be"),
        num_scored=int(scores.size),
        num_flagged=int(flags.sum()),
    )
    return ThresholdResult(threshold, flags, rule)


def fixed_threshold(scores, threshold):
    """Flag ``score >= threshold`` for a threshold chosen by hand."""
    scores = _scores(scores, allow_empty=True)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or not np.isfinite(threshold):
        raise OODInputError(f"threshold must be a finite number; got {threshold!r}")
    threshold = float(threshold)
    flags = scores >= threshold
    rule = {
        "rule": "fixed_threshold",
        "threshold": threshold,
        "flag_if": FLAG_IF,
        "num_scored": int(scores.size),
        "num_flagged": int(flags.sum()),
    }
    return ThresholdResult(threshold, flags, rule)
