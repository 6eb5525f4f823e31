"""The records of an embeddings run in progress: under its own key, or apart while an overwrite runs.

A resumable extraction (:mod:`.embeddings`) records its progress as a run with ``status="partial"`` listing the
partial field ``tmp_ood_partial_<field>``. When the key already has a complete field (an overwrite), that record
must not replace the complete field's own: the field would stay under a record describing other vectors (another
backbone, projection or dtype) if the overwrite failed or was killed. So an overwrite records its progress under
the internal key :func:`side_key` (hidden from ``list_ood_runs``, never removed by the repair as an orphan); the
journaled commit that renames the partial field into place records the new run under the key and drops the side
record in the same all-or-nothing step.
"""

import json

from .names import PLUGIN_TAG
from .run_sync import refresh_stale_runs


def side_key(run_key):
    """The internal run key recording an overwrite in progress of embeddings run ``run_key``: the complete field
    keeps the record under ``run_key`` (which describes it) until the overwrite's field replaces it."""
    return f"tmp_ood_partial_{run_key}"


def field_paths(run_key, patches_field=None):
    """``(target, partial)``: the field an embeddings run ``run_key`` completes and the partial field it writes
    first (``tmp_ood_partial_<key>``; object attributes of ``patches_field``)."""
    from .items import patch_path

    leaves = (run_key, side_key(run_key))  # the partial field is named as the overwrite's side record
    return tuple(patch_path(patches_field, leaf) if patches_field else leaf for leaf in leaves)


def record_info(dataset, key):
    """The config of this package's embeddings run ``key`` (internal keys too) as a dict; ``{}`` when none."""
    refresh_stale_runs(dataset)
    if not dataset.has_run(key):
        return {}
    config = dataset.get_run_info(key).config
    if getattr(config, "ood_plugin", None) != PLUGIN_TAG or getattr(config, "kind", None) != "embeddings":
        return {}
    info = config.serialize()
    info.pop("cls", None)
    return info


def field_gone(dataset, run_key, target):
    """Whether the complete (or filling) embeddings run ``run_key`` lists ``target`` but nothing is there any more:
    the field was deleted or renamed by hand. Its record describes nobody's data: the next call computes the field
    afresh, with any settings, as a new one (a field made again by hand there holds values: not gone)."""
    from .documents import field_exists

    return record_info(dataset, run_key).get("status") in ("complete", "filling") and \
        not field_exists(dataset, target)


def same_settings(info, settings):
    """Whether the record ``info`` was computed with ``settings`` (backbone, projection, dtype, patches_field,
    decoding)."""
    def canonical(obj):
        return json.loads(json.dumps(obj, sort_keys=True, default=str))

    return bool(info) and canonical({k: info.get(k) for k in settings}) == canonical(settings)


def pending_overwrite(dataset, run_key, target, partial, overwrite=False):
    """``(side record of a resumable overwrite or {}, whether a complete field of run_key exists)``.

    A side record is stale when the complete field it was to replace or its partial field is gone (the run was
    deleted or computed afresh, or a failed commit dropped the partial field); it is deleted, unless this call
    (``overwrite``) replaces it in place right away. The caller holds the schema lock on a reloaded dataset.
    """
    side, protected, valid = _side_record(dataset, run_key, target, partial)
    if side and not valid:
        if not (protected and overwrite):
            dataset.delete_run(side_key(run_key))
        side = {}
    return side, protected


def pending_side_record(dataset, run_key, target, partial):
    """The side record of a resumable overwrite of ``run_key`` ({} when none or stale), read only (the App's form
    offers to resume it: a call with its settings without ``overwrite``)."""
    side, _, valid = _side_record(dataset, run_key, target, partial)
    return side if valid else {}


def _side_record(dataset, run_key, target, partial):
    """``(side record or {}, whether a complete field of run_key exists, whether the side record is live)``."""
    main = record_info(dataset, run_key)
    protected = main.get("status") in ("complete", "filling") and dataset.get_field(target) is not None
    side = record_info(dataset, side_key(run_key))
    valid = bool(side) and protected and dataset.get_field(partial) is not None and \
        partial in (side.get("fields") or [])
    return side, protected, valid
