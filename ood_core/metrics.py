"""OOD evaluation metrics. Convention: **OOD is the positive class** and scores
are **higher = more OOD**, unless a metric's name says otherwise (AUPR-IN).

- ``auroc``: area under the ROC curve, OOD positive, score = OOD score.
- ``aupr_in``: average precision with ID positive, score = -OOD score.
- ``aupr_out``: average precision with OOD positive, score = OOD score.
- ``fpr95``: fraction of OOD samples accepted as ID at the threshold where 95%
  of ID samples are accepted (Hendrycks & Gimpel; kNN-OOD; NegLabel).
- ``fpr95_openood``: the mirror definition reported by OpenOOD: fraction of ID
  samples flagged as OOD at the threshold where 95% of OOD samples are flagged.

scikit-learn is imported inside :func:`ood_metrics`.
"""

import numpy as np

from .errors import OODInputError
from .validation import as_array, finite_floats

__all__ = ["fpr_at_95_id_accepted", "fpr_at_95_ood_flagged", "format_metrics", "ood_metrics"]

_RECALL = 95  # percent


def _min_count(n, percent=_RECALL):
    """Smallest integer m with m / n >= percent / 100 (exact integer arithmetic)."""
    return -(-percent * n // 100)


def _score_pair(id_scores, ood_scores):
    """``id_scores`` and ``ood_scores`` as float64 arrays, each checked: 1-D, not empty, numbers, finite."""
    out = []
    for name, values in (("id_scores", id_scores), ("ood_scores", ood_scores)):
        arr = as_array(values, name)
        if arr.ndim != 1 or arr.size == 0:
            raise OODInputError(f"{name} must be a non-empty 1-D array (one score per sample); got shape "
                                f"{arr.shape}. FPR95 needs at least one ID and one OOD score.")
        out.append(validate_scores(arr, np.zeros(arr.size, bool), both_classes=False, name=name)[0])
    return out


def fpr_at_95_id_accepted(id_scores, ood_scores):
    """FPR95, Hendrycks / kNN-OOD / NegLabel convention.

    A sample is *accepted as ID* when ``score <= t``. The threshold ``t`` is the
    smallest ID score that accepts at least 95% of the ID samples: with the ID
    scores sorted ascending, ``t = sorted_id[m - 1]`` where
    ``m = ceil(0.95 * num_id)``. Returns the fraction of OOD samples with
    ``score <= t``. Ties are pessimistic: an OOD sample whose score equals the
    threshold counts as accepted (a false positive), and ID samples tied at the
    threshold are all accepted.
    """
    id_scores, ood_scores = _score_pair(id_scores, ood_scores)
    id_scores = np.sort(id_scores)
    threshold = id_scores[_min_count(id_scores.size) - 1]
    return float(np.mean(ood_scores <= threshold))


def fpr_at_95_ood_flagged(id_scores, ood_scores):
    """FPR95, OpenOOD convention (the mirror of :func:`fpr_at_95_id_accepted`).

    A sample is *flagged as OOD* when ``score >= t``. The threshold ``t`` is the
    largest OOD score that flags at least 95% of the OOD samples: with the OOD
    scores sorted descending, ``t = sorted_ood[m - 1]`` where
    ``m = ceil(0.95 * num_ood)``. Returns the fraction of ID samples with
    ``score >= t``. Ties are pessimistic: an ID sample whose score equals the
    threshold counts as flagged (a false positive).
    """
    id_scores, ood_scores = _score_pair(id_scores, ood_scores)
    ood_scores = np.sort(ood_scores)[::-1]
    threshold = ood_scores[_min_count(ood_scores.size) - 1]
    return float(np.mean(id_scores >= threshold))


def validate_scores(scores, is_ood, *, both_classes=True, name="scores"):
    """``(float scores, bool is_ood)`` checked: 1-D, same length, finite, boolean/0-1 labels; with
    ``both_classes`` (metrics) both classes present. ``name``: the scores' name in messages."""
    scores = as_array(scores, name)
    is_ood_arr = as_array(is_ood, "is_ood", "one True/False (OOD) flag per sample")
    if scores.ndim != 1 or is_ood_arr.ndim != 1:
        raise OODInputError(
            f"scores and is_ood must be 1-D (one value per sample); got shapes "
            f"{scores.shape} and {is_ood_arr.shape}."
        )
    if scores.shape[0] != is_ood_arr.shape[0]:
        raise OODInputError(
            f"scores has {scores.shape[0]} values but is_ood has {is_ood_arr.shape[0]}; "
            "pass one score and one OOD flag per sample, in the same order."
        )
    if scores.size == 0:
        raise OODInputError(
            "scores and is_ood are empty; evaluate at least one ID and one OOD sample."
        )
    scores = finite_floats(scores, name, "fix or drop those samples before computing metrics.")
    if is_ood_arr.dtype != np.bool_:
        values = is_ood_arr.tolist()
        bad = [v for v in values if not (isinstance(v, (bool, np.bool_))
                                         or (isinstance(v, (int, float, np.integer, np.floating)) and v in (0, 1)))]
        if bad:
            raise OODInputError(
                f"is_ood must be boolean (True = OOD) or 0/1; got other values such as {bad[:3]!r}."
            )
        is_ood_arr = np.array([bool(v) for v in values], dtype=bool)
    if not both_classes:
        return scores, is_ood_arr
    if not is_ood_arr.any():
        raise OODInputError(
            "is_ood has no positive (OOD) samples; AUROC needs both classes: include OOD "
            "samples in the evaluation set."
        )
    if is_ood_arr.all():
        raise OODInputError(
            "is_ood has no negative (ID) samples; AUROC needs both classes: include "
            "in-distribution samples in the evaluation set."
        )
    return scores, is_ood_arr


def ood_metrics(scores, is_ood):
    """Return OOD detection metrics as a dict of Python numbers.

    Args:
        scores: ``(N,)`` OOD scores, **higher = more OOD**.
        is_ood: ``(N,)`` booleans (or 0/1), True = OOD = the **positive class**.

    Returns:
        ``{"auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_openood"}`` as floats
        in ``[0, 1]`` and ``"num_id"``, ``"num_ood"`` as ints. See the module
        docstring for each definition; ``fpr95`` and ``fpr95_openood`` are
        lower-is-better, the others higher-is-better.

    Raises:
        OODInputError: length mismatch, empty input, NaN/inf scores, non-binary
            ``is_ood``, or only one class present.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores, is_ood = validate_scores(scores, is_ood)
    id_scores, ood_scores = scores[~is_ood], scores[is_ood]
    return {
        "auroc": float(roc_auc_score(is_ood, scores)),
        "aupr_in": float(average_precision_score(~is_ood, -scores)),
        "aupr_out": float(average_precision_score(is_ood, scores)),
        "fpr95": fpr_at_95_id_accepted(id_scores, ood_scores),
        "fpr95_openood": fpr_at_95_ood_flagged(id_scores, ood_scores),
        "num_id": int(id_scores.size),
        "num_ood": int(ood_scores.size),
    }


def format_metrics(d, positive="OOD", negative="ID"):
    """One-line human summary of :func:`ood_metrics` output (missing keys are skipped).

    ``positive`` / ``negative`` name the two classes in the text, e.g.
    ``positive="wrong label", negative="correct label"`` for label-issue scores.
    """
    if not isinstance(d, dict):
        raise OODInputError(f"format_metrics needs the dict that ood_metrics returns, not a {type(d).__name__}.")
    parts = []
    for key, label, pct in (
        ("auroc", "AUROC", False),
        ("aupr_in", "AUPR-IN", False),
        ("aupr_out", "AUPR-OUT", False),
        ("fpr95", "FPR@95%ID-accepted", True),
        ("fpr95_openood", "FPR@95%OOD-flagged (OpenOOD)", True),
    ):
        if d.get(key) is not None:
            value = d[key]
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise OODInputError(f"format_metrics: {key}={value!r} is not a number; pass the dict that "
                                    "ood_metrics returns (None for a metric that was not computed).")
            parts.append(f"{label} {100 * value:.1f}%" if pct else f"{label} {value:.4f}")
    counts = ""
    if "num_id" in d and "num_ood" in d:
        counts = f"{d['num_id']} {negative} / {d['num_ood']} {positive}; "
    meaning = "more OOD" if positive == "OOD" else f"more likely {positive}"
    return " | ".join(parts) + f" ({counts}{positive} = positive class, higher score = {meaning})"
