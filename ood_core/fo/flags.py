"""Flags runs: their tags and their records (the write side is :func:`ood_core.fo.evaluation.flag_samples`,
deleting one :func:`ood_core.fo.run_admin.delete_flags`).

A flags run (kind ``"flags"``) records the ids of the items *it* tagged; a tag is
removed only from those ids, and only when no other flags run with the same tag
(and level) still claims them, so tags set by hand are never touched.
"""

from ..errors import OODInputError
from .inventory import TRUSTED_TAG
from .items import flatten, patch_path, values_by_key
from .links import score_run_of
from .run_info import get_ood_run_info, load_ood_results
from .run_records import list_ood_runs, source_dataset
from .run_sync import refresh_stale_runs
from .view_checks import every_sample, require_collection


def check_flag_tag(tag):
    """The tag a flags run adds: None or a non-empty string without surrounding spaces."""
    if tag is not None and (not isinstance(tag, str) or not tag.strip()):
        raise OODInputError(f"tag must be a non-empty string such as 'ood' or 'label_issue', or None; got {tag!r}")
    if tag is not None and tag != tag.strip():
        raise OODInputError(f"tag={tag!r} starts or ends with a space: it would be another tag than {tag.strip()!r} "
                            f"(match_tags({tag.strip()!r}) would not find it); pass tag={tag.strip()!r}")
    return tag


def refuse_tags_the_flags_read(tag, samples, reference, gt_tag):
    """Refuse a flag tag that marks trusted or ground-truth samples: tagging flagged samples with a score run's
    trusted tag (or the reference / ground-truth tag this call reads) would make them trusted in the next run, or
    count them as OOD truth, and removing the flags later could not tell them from the samples tagged before."""
    if tag is None:
        return
    read = {reference if isinstance(reference, str) else None: "the reference tag this call reads",
            gt_tag: "the ground-truth tag this call reads"}
    for key in list_ood_runs(samples):
        recorded = get_ood_run_info(samples, key).get("reference")
        if isinstance(recorded, dict) and recorded.get("tag") == tag:
            read[tag] = f"the trusted-samples tag (reference) of run {key!r}"
    if tag == TRUSTED_TAG and not read.get(tag):  # no run read it yet: the audit and the forms will, by default
        read[tag] = "the tag the audit and the App's forms take as the trusted reference by default"
    if read.get(tag):
        raise OODInputError(f"tag={tag!r} is {read[tag]}: flagged samples tagged with it would count as trusted "
                            "(or as ground truth) from then on. Pass another tag, such as tag='ood'")


def _tagged_item_ids(dataset, tag, patches_field):
    """Ids of the samples (or objects of ``patches_field``) on the whole dataset carrying ``tag`` (every slice of a
    grouped dataset)."""
    dataset = every_sample(dataset)
    if patches_field is None:
        return set(dataset.match_tags(tag).values("id"))
    # one query, so each object's id and tags come from the same read of its document
    ids, tags = dataset.values([patch_path(patches_field, "id"), patch_path(patches_field, "tags")])
    return {i for i, t in zip(flatten(ids), flatten(tags)) if tag in (t or [])}


def claimed_by_other_runs(samples, tag, level, exclude_key):
    """Ids that other flags runs tagged with ``tag`` (same level) and still claim."""
    claimed = set()
    for key in list_ood_runs(samples, kind="flags"):
        if key == exclude_key:
            continue
        cfg = samples._dataset.get_run_info(key).config
        if cfg.tag == tag and cfg.patches_field == level:
            claimed.update(getattr(load_ood_results(samples, key), "tagged_ids", None) or [])
    return claimed


def set_tags(dataset, ids, tag, patches_field, add):
    if not ids or tag is None:
        return
    ids = sorted(ids)
    dataset = every_sample(dataset)  # the items may lie on another slice than the active one
    if patches_field is None:
        view = dataset.select(ids)
        (view.tag_samples if add else view.untag_samples)(tag)
    else:
        view = dataset.select_labels(ids=ids, fields=patches_field)
        (view.tag_labels if add else view.untag_labels)(tag, label_fields=patches_field)


def previous_flags(samples, flag_key):
    """(tag, patches_field, tagged ids) of an existing flags run under ``flag_key``, else None."""
    dataset = samples._dataset
    refresh_stale_runs(dataset)
    if not dataset.has_run(flag_key):
        return None
    cfg = dataset.get_run_info(flag_key).config
    if getattr(cfg, "kind", None) != "flags":
        raise OODInputError(
            f"run key {flag_key!r} belongs to a {getattr(cfg, 'kind', 'non-fiftyone-ood')!r} run; flags get "
            "their own run key: pass another flag_key (or flag_field)"
        )
    res = load_ood_results(samples, flag_key)
    return cfg.tag, cfg.patches_field, set(getattr(res, "tagged_ids", None) or [])


def tag_plan(samples, flagged, tag, patches, flag_key, previous, kept=frozenset()):
    """``(ids to tag, ids to untag, ids this run claims)``: never touch tags this function did not add.

    ``flagged`` = the items of the view whose flag is True after the write; ``kept`` = the items outside the view
    whose earlier flag stays True. With the same tag as before, the items outside the view keep their tags as they
    are: a tag the curator removed from one is not put back, and the run goes on claiming only the tags it added
    that are still there.
    """
    tags_added, tags_removed, claimed = set(), set(), set()
    every = set(flagged) | set(kept)
    same_tag = previous is not None and previous[0] == tag and previous[1] == patches
    if previous is not None:
        old_tag, old_level, old_ids = previous
        keep_old = every if same_tag else set()
        others = claimed_by_other_runs(samples, old_tag, old_level, flag_key) if old_tag else set()
        tags_removed = old_ids - keep_old - others
    if tag is not None:
        current = _tagged_item_ids(samples._dataset, tag, patches)
        ours_before = previous[2] if same_tag else set()
        others = claimed_by_other_runs(samples, tag, patches, flag_key)
        by_hand = current - ours_before - others
        if same_tag:  # outside the view: as they are
            in_view = set(flagged) - set(kept)
            claimed = (in_view - by_hand) | (set(kept) & ours_before & current)
            tags_added = in_view - current
            tags_removed -= every
        else:  # the run's tag moves to another name, on every item it flags
            claimed = every - by_hand
            tags_added = every - current
    return tags_added, tags_removed, claimed


def flag_values(samples, patches_field, flags_by_id, view_ids=None):
    """The flag (None: no score) of each item of ``samples``, as :func:`.commit.stage_values` takes them: for samples
    a dict sample id -> flag over the view's samples (``view_ids``: the items the caller read the scores of, else the
    view is read here), written in bulk; for objects, an :class:`.bulk_values.ObjectValues` by object id."""
    if patches_field is None and view_ids is not None:
        return {i: flags_by_id.get(i) for i in view_ids}
    # by id (objects: an ObjectValues by object id), so a view whose order changes between reads gets each flag on
    # its own item, and only the items read (``view_ids``) get one (a ``$sample`` view returns other items at the
    # write); the identity keeps True / False (the default would store 1.0 / 0.0)
    return values_by_key(samples, flags_by_id, patches_field, convert=lambda v: v, read_ids=view_ids)


def get_flag_info(samples, flag_key):
    """The flags run's config (rule description, tag, score run...) plus its tagged ids and counts: ``num_flagged``
    / ``num_scored`` over the whole flag field as it is now (the items flagged True / holding a flag on the
    samples that exist now: samples deleted since the flags were made are not counted), ``num_flagged_in_view`` /
    ``num_scored_in_view`` over the view the run last flagged, as that call counted them."""
    require_collection(samples)
    info = get_ood_run_info(samples, flag_key)
    if info.get("kind") != "flags":
        raise OODInputError(f"run {flag_key!r} is a {info.get('kind')!r} run, not a flags run")
    res = load_ood_results(samples, flag_key)
    info["tagged_ids"] = list(getattr(res, "tagged_ids", None) or [])
    for name in ("num_flagged", "num_scored", "num_flagged_in_view", "num_scored_in_view"):
        info[name] = getattr(res, name, None)  # the view last flagged (older runs: None)
    info.update(flag_counts(samples._dataset, flag_key, info.get("flag_field")))
    return info


def flag_counts(dataset, flag_key, flag_path):
    """``{"num_flagged", "num_scored"}`` of the flags run ``flag_key`` now: one count of the values of its flag field
    ``flag_path`` on the dataset (every slice of a grouped one); None for both when the field is no longer the
    run's (deleted, or made again by hand: :mod:`.ownership`) or the schema does not declare it."""
    from .ownership import run_owns

    if not flag_path or dataset.get_field(flag_path) is None or not run_owns(dataset, flag_key, flag_path):
        return {"num_flagged": None, "num_scored": None}
    values = every_sample(dataset).count_values(flag_path)
    return {"num_flagged": int(values.get(True, 0)), "num_scored": int(values.get(True, 0) + values.get(False, 0))}


def made_from_other_scores(dataset, config, run_key, path):
    """What else than the scores of ``run_key`` at ``path`` (run_key None: the field alone) the flags run
    ``config`` was made from (``"score run 'x'"`` / ``"score field 'x'"``), or None when they are the same scores:
    the same run (also renamed since), or the same field when the run that wrote it is gone."""
    made_from = score_run_of(dataset, config)
    recorded = getattr(config, "score_field", None)
    if made_from is not None and dataset.has_run(made_from):
        return None if made_from == run_key else f"score run {made_from!r}"
    if made_from is not None:  # its score run is gone: the same field holds the same scores
        return None if recorded == path else f"score run {made_from!r}"
    if recorded is None or recorded == path:
        return None  # (records before the score field was recorded: as before)
    return f"score field {recorded!r}"


def list_flag_runs(samples, run_key=None):
    """Keys of flags runs, optionally only those made from score run ``run_key``."""
    require_collection(samples)
    if run_key is not None and (not isinstance(run_key, str) or not run_key):
        raise OODInputError(f"run_key={run_key!r} is not a run key; pass the key of a score run as a string, or None "
                            "for every flags run (ood.list_ood_runs(dataset) lists the runs)")
    keys = list_ood_runs(samples, kind="flags")
    if run_key is None:
        return keys
    dataset = source_dataset(samples)  # (of a patches view: the dataset that holds the runs)
    if not dataset.has_run(run_key) and not dataset.has_field(run_key):
        raise OODInputError(f"run_key={run_key!r} is neither a run nor a field of dataset "
                            f"{dataset.name!r}; pass a score run key (ood.list_ood_runs(dataset) lists them)")
    return [k for k in keys if score_run_of(dataset, dataset.get_run_info(k).config) == run_key]
