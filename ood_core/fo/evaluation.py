"""Evaluate and threshold OOD scores stored on a FiftyOne dataset.

- :func:`evaluate_ood_run`: metrics of a score field (or score run) against a
  boolean ground-truth field or a tag. The output names its positive class.
- :func:`flag_samples`: apply a threshold rule (:mod:`ood_core.thresholds`)
  to a score field; writes a boolean flag field and, optionally, tags.
- :func:`delete_flags`, :func:`list_flag_runs`, :func:`get_flag_info` (in :mod:`.flags` and :mod:`.run_admin`,
  importable from here).

Score convention: **higher = more OOD / more suspicious**; a sample (or
object) is flagged when ``score >= threshold``.

Where flag rules are stored: every :func:`flag_samples` call is its own
custom run of kind ``"flags"`` (key ``flag_key``, default = the flag field
name), linked to the score run by its ``score_run`` config entry (a score run
renamed with FiftyOne's own ``rename_run`` is found by the scores it owns:
:func:`.links.score_run_of`). Its config
holds the rule description (rule, value, threshold, what the rule achieved),
the tag and the reference/ground truth used; its results hold the ids of the
samples (or objects) that *this run* tagged. The score run is never modified,
so one score can carry several flag rules side by side.

Tags: re-flagging (``overwrite=True`` on the same ``flag_key``) or
:func:`delete_flags` removes the tag only from the ids its run recorded, and
only when no other flags run with the same tag still claims them. A tag a user
put on a sample by hand is never recorded (flagging skips samples that already
carry the tag), so it survives re-flagging. Re-flagging a view keeps the
flags of the items outside it, and with them their tag and their place in the
run's record (a new tag moves to them too). Sample scores get sample tags;
object scores (``<patches>.detections.<score>``) get label tags on the objects,
and the flag is an attribute of each object.

Order of writes: the flag field and the flags run are written all-or-nothing
(:func:`ood_core.fo.runs.write_and_record`); tags are changed only after that
succeeded (two bulk updates: remove stale tags, then add new ones). If the
process dies between them, tags added are still recorded (flag again with
``overwrite=True`` to finish), but stale tags the old record listed are no
longer tracked and then look as if set by hand.
"""

import logging

import numpy as np

from . import runs
from ..errors import OODInputError
from .flag_rules import compute_rule, parse_rule
from .flags import get_flag_info, list_flag_runs  # noqa: F401 (public here too)
from .flags import check_flag_tag, flag_values, previous_flags, refuse_tags_the_flags_read, tag_plan
from .ground_truth import read_ground_truth, require_both_classes
from .items import is_whole_dataset, item_columns, patches_view_fields, require_nonempty, source_objects_view
from .names import validate_key
from .run_admin import delete_flags  # noqa: F401 (public here too)
from .run_kinds import run_kind
from .score_reads import field_present, given_scores, read_scores, refuse_p_value_field, resolve_scores
from .view_checks import require_collection, require_not_generated, show_all_fields
from .view_descriptions import resolve_view, view_from_description

logger = logging.getLogger(__name__)

__all__ = ["delete_flags", "evaluate_ood_run", "flag_samples", "get_flag_info", "list_flag_runs", "resolve_view",
           "view_from_description"]


# --------------------------------------------------------------------------- evaluation


def evaluate_ood_run(samples, run_key_or_score_field, *, gt_field=None, gt_tag=None, positive=None,
                     positive_value=True):
    """OOD metrics of a stored score against ground truth (see :mod:`ood_core.metrics`).

    Args:
        samples: a Dataset or view; only its samples (objects) are evaluated. A patches view
            (``to_patches(<the run's patches_field>)``, or evaluation patches holding that field) evaluates the
            objects it shows.
        run_key_or_score_field: a fiftyone-ood score run key, or a numeric
            field (``"ood_knn"`` or ``"objects.detections.ood"``).
        gt_field: boolean field, True = positive class (e.g. ``"is_ood"``,
            ``"label_is_wrong"``). For object scores: an object attribute
            (``"is_ood"`` or the full ``"objects.detections.is_ood"``) or a
            sample field that all of a sample's objects inherit.
        gt_tag: alternatively, a tag marking the positives (a sample tag;
            a label tag for object scores).
        positive: name of the positive class in the output (default ``"ood"``
            for OOD runs, ``"wrong label"`` for label-issue runs).
        positive_value: the ``gt_field`` value that marks the positive class (with ``gt_tag``: only True).

    Returns:
        ``ood_metrics`` (``auroc``, ``aupr_in``, ``aupr_out``, ``fpr95``,
        ``fpr95_openood``, ``num_id`` = negatives, ``num_ood`` = positives)
        plus ``positive_class``, ``positive_means``, ``score_field``,
        ``run_key``, ``ground_truth``, ``num_evaluated`` and ``num_missing``
        (items without a score or ground truth, left out).
    """
    from ..metrics import ood_metrics

    require_collection(samples)
    if patches_view_fields(samples) is not None:  # to_patches: its objects, on the dataset their run is recorded on
        where = resolve_scores(samples._root_dataset, run_key_or_score_field)
        patches, samples = samples, source_objects_view(samples, where["patches_field"],
                                                        f"the scores in {where['path']!r}")
        _refuse_patch_sample_tag(patches, where["patches_field"], gt_tag)
    samples = show_all_fields(samples)  # only read: a field the view hides (the App's visibility) is read anyway
    where = resolve_scores(samples, run_key_or_score_field)
    refuse_p_value_field(samples, where["path"])
    ids, scores = read_scores(samples, where)
    if gt_field is not None and gt_field == where["path"]:
        raise OODInputError(f"gt_field={gt_field!r} is the field being evaluated: the scores would be measured against "
                            "themselves (AUROC 1); pass the ground-truth field (True = OOD) or gt_tag=")
    gt_by_id, gt_info, means = read_ground_truth(samples, where, gt_field, gt_tag, positive_value)
    gt = [gt_by_id.get(i) for i in ids]  # paired by id: the view's order may change between reads
    keep = [i for i, (s, g) in enumerate(zip(scores, gt)) if s is not None and g is not None]
    if not keep:
        raise OODInputError(
            f"no item of this view has both a score in {where['path']!r} and ground truth; score the view first"
        )
    s = np.array([scores[i] for i in keep], dtype=np.float64)
    y = np.array([gt[i] for i in keep], dtype=bool)
    require_both_classes(y, gt_info, where)
    metrics = ood_metrics(s, y)
    name = positive or (run_kind(where["kind"]).positive_class if where["kind"] else "positive")
    metrics.update(
        positive_class=name,
        positive_means=means,
        score_field=where["path"],
        run_key=where["run_key"],
        ground_truth=gt_info,
        level="object" if where["patches_field"] else "sample",
        num_evaluated=len(keep),
        num_missing=len(scores) - len(keep),
        score_convention=f"higher = more {name}; {name} is the positive class (num_ood = positives)",
    )
    return metrics


def _refuse_patch_sample_tag(patches, patches_field, gt_tag):
    """Refuse a ``gt_tag`` that a patches view's patches carry as sample tags (tagged as samples in the patches view,
    which stays on its temporary dataset, or their images' tags) while none of its objects carries it as a label
    tag: object scores are evaluated against label tags, so every object would count as a negative."""
    if not isinstance(gt_tag, str) or not patches.count_sample_tags().get(gt_tag):
        return
    if patches.count_label_tags(label_fields=patches_field).get(gt_tag):
        return
    raise OODInputError(
        f"gt_tag={gt_tag!r} is a sample tag of {patches.count_sample_tags()[gt_tag]:,} patches of this view (patches "
        "tagged as samples stay on the view's temporary dataset; an image's tags are copied to its patches), but no "
        f"object of {patches_field!r} carries it as a label tag, which object scores are evaluated against. Tag the "
        f"objects: patches.match_tags({gt_tag!r}).tag_labels({gt_tag!r}, label_fields={patches_field!r})")


# --------------------------------------------------------------------------- flags


# Part of this module's public API (evaluation works on tag/view references); implemented in runs.
resolve_view = resolve_view
view_from_description = view_from_description


def flag_samples(samples, run_key, *, rule="percentile", value=None, flag_field=None, flag_key=None, tag=None,
                 reference=None, gt_field=None, gt_tag=None, overwrite=False, item_scores=None):
    """Flag the samples (or objects) of a view whose score passes a threshold rule.

    Writes a boolean field (True = flagged, ``score >= threshold``; None where
    the item has no score) all-or-nothing, records the rule as a run of kind
    ``"flags"`` and optionally tags the flagged items.

    Args:
        samples: a Dataset or view; only its items are flagged, and the
            data-driven rules (top_n, top_fraction, fpr) look only at them.
        run_key: a score run key (or a score field, see :func:`evaluate_ood_run`).
        rule: ``"percentile"`` (``value`` = pass rate of the reference, default
            0.95), ``"fpr"`` (``value`` = allowed fraction of ID samples flagged,
            default 0.05, computed on items with ground truth),
            ``"top_n"`` (``value`` = n), ``"top_fraction"`` (``value`` =
            fraction), ``"threshold"`` (``value`` = the threshold),
            ``"pvalue"`` (``value`` = alpha, default 0.05: flag items whose
            calibrated p-value is <= alpha, i.e. more extreme than all but a
            share alpha of the trusted reference; about alpha of
            in-distribution items are flagged, on any detector). Tie handling:
            see :mod:`ood_core.thresholds`.
        flag_field: field name of the flags (default ``f"{score_field}_flag"``;
            an object attribute for object scores).
        flag_key: run key of the flags run (default: ``flag_field``).
        tag: tag to add to flagged items (e.g. ``"ood"``, ``"label_issue"``):
            sample tags, or label tags for object scores. None = no tags.
        reference: tag or view of trusted samples for the percentile rule
            (default: the score run's reference tag).
        gt_field, gt_tag: ground truth (True / tagged = OOD) for the fpr rule.
        overwrite: replace an existing flag field / flags run (re-flagging).
        item_scores: ``(ids, scores)`` of the view's items (ids as ``items.item_ids``,
            a score or None per id) already read by the caller; default: read here.

    Returns:
        a dict: ``flag_key``, ``flag_field``, ``threshold``, ``rule`` (the
        stored description; its counts are the rule's, on this view), the counts
        stored in the run's record (:func:`_flag_counts`: ``num_flagged`` and
        ``num_scored`` over the whole flag field, ``num_flagged_in_view`` and
        ``num_scored_in_view`` over this view), ``tag``, ``num_tagged`` (items
        this run now claims), ``tags_added``, ``tags_removed``.
    """
    import fiftyone.core.fields as fof

    rule_name, value = parse_rule(rule, value)
    tag = check_flag_tag(tag)
    require_not_generated(samples, reads_a_run=True)  # (before the generic refusal of require_nonempty)
    require_nonempty(samples, "samples to flag")
    where, flag_path, flag_key = _flag_target(samples, run_key, flag_field, flag_key, overwrite,
                                              gt_field if rule_name == "threshold_at_fpr" else None)
    refuse_tags_the_flags_read(tag, samples, reference, gt_tag)
    patches = where["patches_field"]
    previous_flags(samples, flag_key)  # refuses a flag key of another kind of run, before any work

    ids, raw = read_scores(samples, where) if item_scores is None else given_scores(where, item_scores)
    scored = np.array([s is not None for s in raw])
    if not scored.any():
        raise OODInputError(f"no item of this view has a score in {where['path']!r}; score the view first")
    scores = np.array([s for s in raw if s is not None], dtype=np.float64)
    scored_ids = [i for i, ok in zip(ids, scored) if ok]
    result, extra = compute_rule(samples, where, rule_name, value, scores, reference, gt_field, gt_tag, scored_ids)
    flags_by_id = dict(zip(scored_ids, result.flags.tolist()))
    flagged = {i for i, f in flags_by_id.items() if f}
    kept, scored_outside = _flags_kept_outside(samples, flag_path, patches, ids, overwrite)
    counts = _flag_counts(flagged, kept, int(scored.sum()), scored_outside)
    results, plan = {"threshold": result.threshold, **counts}, {}

    runs.write_and_record(
        samples,
        [(flag_path, flag_values(samples, patches, flags_by_id, ids if item_scores is None else None),
          fof.BooleanField)],
        flag_key,
        kind="flags",
        overwrite=overwrite,
        reads=[where["path"]],
        score_run=where["run_key"],
        score_field=where["path"],
        patches_field=patches,
        flag_field=flag_path,
        rule_name=rule_name,
        value=value,
        rule=result.rule,
        tag=tag,
        flag_convention="True = flagged: score >= threshold (higher score = more suspicious)",
        **extra,
        results=results,
        cleanup=_tags_planned_at_commit(samples, where["run_key"], flag_key, (flagged, kept), tag, patches, results,
                                        plan),
    )
    return {
        "flag_key": flag_key,
        "flag_field": flag_path,
        "threshold": result.threshold,
        "rule": result.rule,
        **counts,
        "tag": tag,
        "num_tagged": len(results["tagged_ids"]),
        "tags_added": len(plan["added"]),
        "tags_removed": len(plan["removed"]),
    }


def _tags_planned_at_commit(samples, score_key, flag_key, flags, tag, level, results, plan):
    """The ``cleanup`` of a flags run's commit: the tag changes planned under the commit's locks on the reloaded
    dataset, from the tags and the flags run this one replaces as they are then (another process may have
    re-flagged since this call began: planned before the lock, that run's claims were lost and its tags left to
    no run). Fills ``results["tagged_ids"]`` (recorded next, in the same commit) and ``plan`` (added, removed).
    Refuses, before anything moves, when the score run was deleted meanwhile (the flags would name no run; a
    score field that no run wrote, ``score_key`` None, has nothing to lose). ``flags``: ``(flagged in the view,
    flags kept outside it)``."""
    def cleanup(dataset, *_):
        if score_key is not None and not dataset.has_run(score_key):
            raise OODInputError(f"score run {score_key!r} was deleted (or renamed) by another process while these "
                                "flags were computed; nothing was written. Score again, then flag")
        now = previous_flags(samples, flag_key)
        plan["added"], plan["removed"], claimed = tag_plan(samples, flags[0], tag, level, flag_key, now, kept=flags[1])
        results["tagged_ids"] = sorted(claimed)
        return _tag_changes(now, plan["removed"], tag, level, plan["added"])

    return cleanup


def _tag_changes(previous, tags_removed, tag, level, tags_added):
    """The tag changes of a flags run, as :mod:`.followups` of its commit: journaled with it, so a crash right
    after the commit is finished by the next call, and tags always match the record's claims."""
    from . import followups

    ops = [followups.untag(previous[0], previous[1], tags_removed)] if previous and tags_removed else []
    return ops + ([followups.tag(tag, level, tags_added)] if tag is not None and tags_added else [])


def _flag_target(samples, run_key, flag_field, flag_key, overwrite, gt_field=None):
    """Where the scores are and where the flags go: ``(where, flag path, flag run key)``; refuses clobbering, and
    writing into a field the rule reads (the scores, the fpr rule's ground truth ``gt_field``)."""
    dataset = samples._dataset
    where = resolve_scores(samples, run_key)
    patches = where["patches_field"]
    leaf = where["path"].rpartition(".")[2]
    flag_field = flag_field or f"{leaf}_flag"
    validate_key(flag_field, "flag field")
    flag_key = flag_key or flag_field
    flag_path = f"{patches}.detections.{flag_field}" if patches else flag_field
    if flag_path == where["path"]:
        raise OODInputError(f"flag_field {flag_field!r} would overwrite the scores; choose another name")
    reads = [where["path"]]
    if isinstance(gt_field, str):  # as :func:`.ground_truth.read_ground_truth` finds it
        reads += [gt_field] + ([f"{patches}.detections.{gt_field}"] if patches else [])
    runs.check_new_run(samples, flag_key, [flag_path], overwrite, reads=reads)
    _refuse_flags_of_another_run(dataset, flag_key, where)
    if patches and not overwrite and dataset.get_field(flag_path) is None and dataset.count(flag_path):
        raise OODInputError(f"field {flag_path!r} already exists; choose another flag_field or pass overwrite=True")
    return where, flag_path, flag_key


def _refuse_flags_of_another_run(dataset, flag_key, where):
    """Re-flagging replaces a flags run only with flags of the same scores (score run, or score field without one):
    the default keys of a sample run and of an object run whose score attribute has the same name coincide, and
    replacing would delete the other's flags and tags. A score run renamed or deleted with FiftyOne's own API is
    followed by its scores (:func:`.flags.made_from_other_scores`)."""
    from .flags import made_from_other_scores

    if not dataset.has_run(flag_key):
        return
    config = dataset.get_run_info(flag_key).config
    if getattr(config, "kind", None) != "flags":
        return
    run_key, path = where["run_key"], where["path"]
    other = made_from_other_scores(dataset, config, run_key, path)
    if other is not None:
        leaf = run_key or path.rpartition(".")[2]
        raise OODInputError(
            f"flags run {flag_key!r} holds the flags of {other}, not of {run_key or path!r}; replacing it "
            f"would delete those flags and their tags. Pass another flag_key and flag_field (e.g. "
            f"flag_field='{leaf}_flag'), or delete it first with ood.delete_flags(dataset, {flag_key!r})")


def _flags_kept_outside(samples, flag_path, patches, view_ids, overwrite):
    """``(ids whose flag stays True, number of items with a flag)`` outside the view: overwriting from a view
    keeps the values of the other items (:func:`runs.write_and_record`), so the tags and the record of those
    items must stay too."""
    dataset = samples._dataset
    if not overwrite or is_whole_dataset(samples) or not field_present(dataset, flag_path, patches):
        return set(), 0
    inside = set(view_ids)
    id_path = "id" if patches is None else f"{patches}.detections.id"
    (ids, values), _ = item_columns(dataset, [id_path, flag_path], patches)  # one pass over the dataset
    outside = [(i, f) for i, f in zip(ids, values) if i not in inside]
    return {i for i, f in outside if f}, sum(f is not None for _, f in outside)


def _flag_counts(flagged, kept, num_scored_in_view, num_scored_outside):
    """The counts a flags run records: ``num_flagged`` / ``num_scored`` describe the whole flag field (after
    re-flagging a view, the items outside it keep their flags), ``num_flagged_in_view`` /
    ``num_scored_in_view`` the view this call flagged."""
    return {"num_flagged": len(flagged | kept), "num_scored": num_scored_in_view + num_scored_outside,
            "num_flagged_in_view": len(flagged), "num_scored_in_view": num_scored_in_view}

