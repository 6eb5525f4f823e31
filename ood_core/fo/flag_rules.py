"""The threshold rules of :func:`ood_core.fo.evaluation.flag_samples` on stored scores: the accepted ``rule=``
names and their default values, and each rule's threshold from the view's scores (percentile of the trusted
reference's scores, a target FPR on ground truth, top N / top fraction, a fixed threshold, or the run's calibrated
p-values). The rules themselves are numpy functions in :mod:`ood_core.thresholds`; this module finds their inputs
on the dataset. Score convention: higher = more OOD; an item is flagged when ``score >= threshold``.
"""

import numpy as np

from .. import thresholds
from ..errors import OODInputError
from .ground_truth import read_ground_truth, require_both_classes, require_known_tag
from .items import item_columns, refuse_label_tagged_reference
from .score_reads import check_score_values, read_scores, require_recorded_field
from .view_descriptions import resolve_view, view_from_description


#: ``rule=`` names accepted by :func:`flag_samples` -> (thresholds rule, default value).
RULE_ALIASES = {
    "percentile": ("percentile_of_reference", 0.95),
    "percentile_of_reference": ("percentile_of_reference", 0.95),
    "fpr": ("threshold_at_fpr", 0.05),
    "threshold_at_fpr": ("threshold_at_fpr", 0.05),
    "top_n": ("top_n", None),
    "top_fraction": ("top_fraction", None),
    "threshold": ("fixed_threshold", None),
    "fixed_threshold": ("fixed_threshold", None),
    "pvalue": ("p_value", 0.05),
    "p_value": ("p_value", 0.05),
}


def _reference_scores(samples, where, reference):
    """Scores of the reference items (a tag or a view; default: the score run's reference tag)."""
    if reference is None:
        recorded = (where["info"] or {}).get("reference") or {}
        reference = recorded.get("tag") or _recorded_reference_view(samples, where, recorded)
        if reference is None:
            raise OODInputError(
                "the percentile rule needs reference=<tag or view of trusted samples>; the score run "
                "records no reference to default to"
            )
    refuse_label_tagged_reference(samples, reference, where["patches_field"])
    view, ref_info = resolve_view(samples, reference, "reference")
    _, raw = read_scores(view, where)
    vals = [v for v in raw if v is not None]
    if not vals:
        raise OODInputError(f"no reference item has a score in {where['path']!r}; score the reference samples too")
    return np.array(vals, dtype=np.float64), ref_info


def _recorded_reference_view(samples, where, recorded):
    """The trusted view a score run recorded, rebuilt (None: it recorded none); refused, naming the run and the fix,
    when it matches no sample now: its samples were deleted, or a field its stages read was renamed or deleted
    (the bare "reference view is empty" named neither)."""
    from .items import num_samples

    gone = OODInputError(
        f"score run {where['run_key']!r} recorded as its reference a view of {recorded.get('num_samples')} samples, "
        f"which matches no sample of dataset {samples._dataset.name!r} now (its samples were deleted, or a field its "
        "stages read was renamed or deleted); pass reference=<a tag or view of the trusted samples> to the "
        "percentile rule"
    )
    try:
        view = view_from_description(samples, recorded)
    except Exception as e:  # a stage that no longer applies (some stages check their fields when built)
        raise gone from e
    if view is not None and num_samples(view) == 0:
        raise gone
    return view


def compute_rule(samples, where, rule_name, value, scores, reference, gt_field, gt_tag, scored_ids):
    """Apply a rule; returns (ThresholdResult over ``scores``, extra config). ``scored_ids``: the item id of each
    of ``scores``."""
    extra = {}
    if rule_name == "p_value":
        return _p_value_rule(samples, where, value, scores, scored_ids), extra
    if rule_name == "percentile_of_reference":
        ref_scores, extra["reference"] = _reference_scores(samples, where, reference)
        return thresholds.percentile_of_reference(ref_scores, value, scores=scores), extra
    if rule_name == "threshold_at_fpr":
        if gt_field is None and gt_tag is None:
            raise OODInputError("the fpr rule needs labelled data: pass gt_field='is_ood' (or gt_tag=...)")
        gt_by_id, extra["ground_truth"], _ = read_ground_truth(samples, where, gt_field, gt_tag, True)
        ids, raw = read_scores(samples, where)
        gt = [gt_by_id.get(i) for i in ids]  # paired by id: the view's order may change between reads
        lab = [i for i, (s, g) in enumerate(zip(raw, gt)) if s is not None and g is not None]
        if not lab:
            raise OODInputError("no scored item in this view has ground truth for the fpr rule")
        y = np.array([gt[i] for i in lab], bool)
        require_known_tag(samples, extra["ground_truth"], where, y)
        require_both_classes(y, extra["ground_truth"], where, negatives_only=True)
        res = thresholds.threshold_at_fpr(np.array([raw[i] for i in lab], np.float64), y, value)
        return thresholds.ThresholdResult(res.threshold, scores >= res.threshold, res.rule), extra
    if rule_name == "top_n":
        return thresholds.top_n(scores, value), extra
    if rule_name == "top_fraction":
        return thresholds.top_fraction(scores, value), extra
    return thresholds.fixed_threshold(scores, value), extra


def _values_by_id(samples, where, path, ids):
    """The value of ``path`` (None: none) of each item id of ``ids``, ids and values read in one pass (ids that
    this read of an unstable view missed: by id from the dataset)."""
    patches = where["patches_field"]
    id_path = "id" if patches is None else f"{patches}.detections.id"
    (got, raw), _ = item_columns(samples, [id_path, path], patches)
    by_id = dict(zip(got, raw))
    missing = [i for i in ids if i not in by_id]
    if missing:
        ds = samples._dataset
        (got, raw), _ = item_columns(ds.select(missing) if patches is None else ds.select_labels(
            ids=missing, fields=patches), [id_path, path], patches)
        by_id.update(zip(got, raw))
    return [by_id.get(i) for i in ids]


def _p_value_rule(samples, where, alpha, scores, scored_ids):
    """Flag items whose calibrated p-value is <= ``alpha`` (about ``alpha`` of in-distribution items)."""
    calibration = (where["info"] or {}).get("calibration")
    if not calibration:
        raise OODInputError(
            f"{where['path']!r} has no calibrated p-values; the p-value rule needs a score run made with a "
            "reference (compute_ood_scores(..., reference='trusted')) or use rule='percentile'"
        )
    require_recorded_field(samples._dataset, where["run_key"], calibration["field"], where["patches_field"],
                            "its calibrated p-values")
    raw_p = check_score_values(calibration["field"], _values_by_id(samples, where, calibration["field"], scored_ids))
    missing = [i for i, pv in zip(scored_ids, raw_p) if pv is None]
    if missing:  # (a missing p-value read as NaN: "not flagged", however high the score)
        raise OODInputError(
            f"{len(missing)} scored item(s) of this view have no p-value in {calibration['field']!r} (e.g. "
            f"{missing[0]!r}), so the p-value rule cannot decide them; score them again (ood.compute_ood_scores(..., "
            f"overwrite=True) on run {where['run_key']!r}), or use rule='percentile'")
    flags = np.array(raw_p, dtype=np.float64) <= float(alpha)  # aligned with ``scores`` by id
    threshold = float(scores[flags].min()) if flags.any() else float("inf")
    rule = {"name": "p_value", "alpha": float(alpha), "p_value_field": calibration["field"],
            "flag_if": "p_value <= alpha (p = share of reference items scoring at least as high)",
            "num_flagged": int(flags.sum())}
    return thresholds.ThresholdResult(threshold, flags, rule)


def parse_rule(rule, value):
    """``(thresholds rule name, value)`` from a ``rule=`` alias and its value (or the rule's default)."""
    if not isinstance(rule, str) or rule not in RULE_ALIASES:
        raise OODInputError(f"unknown rule {rule!r}; use one of {sorted(set(RULE_ALIASES))}")
    rule_name, default = RULE_ALIASES[rule]
    value = default if value is None else value
    if value is None:
        raise OODInputError(f"rule {rule!r} needs value=... (n for top_n, a fraction for top_fraction, "
                            "the threshold for 'threshold')")
    return rule_name, thresholds.check_rule_value(rule_name, value, alias=rule)
