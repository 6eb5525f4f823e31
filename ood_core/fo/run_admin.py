"""Renaming and deleting this package's runs, with what depends on them (flags runs, audits)."""

from ..errors import OODInputError
from . import runs
from .documents import has_values, unset_key


def rename_ood_run(samples, run_key, new_run_key):
    """Rename a run key (fields keep their names; the record still lists them; flags runs made from a
    renamed score run follow it). An embeddings run cannot be renamed: its key is its field's name, by which
    scoring finds the backbone and levels."""
    runs.require_run(samples, run_key)
    runs.validate_key(new_run_key)
    dataset = samples._dataset
    if dataset.has_run(new_run_key):
        raise OODInputError(f"run key {new_run_key!r} already exists; delete it first or pick another")
    if _kind_of(dataset, run_key) == "embeddings":
        raise OODInputError(
            f"{run_key!r} is an embeddings run: its key is its field's name, by which score runs find the "
            f"backbone and pyramid levels, so it cannot be renamed. Compute the embeddings again under the new "
            f"name (ood.compute_pyramid_embeddings(dataset, {new_run_key!r})) and delete the old run if unwanted"
        )
    dependants = [key for key in runs.list_ood_runs(samples, kind="flags")
                  if getattr(dataset.get_run_info(key).config, "score_run", None) == run_key]
    dataset.rename_run(run_key, new_run_key)
    for key in dependants:
        runs.update_run(samples, key, score_run=new_run_key)
    for audit in runs.list_ood_runs(samples, kind="audit"):  # an audit's record follows its renamed run
        listed = getattr(dataset.get_run_info(audit).config, "audit_runs", None) or {}
        if run_key in listed.values():
            renamed = {role: new_run_key if key == run_key else key for role, key in listed.items()}
            runs.update_run(samples, audit, audit_runs=renamed)


def _kind_of(dataset, run_key):
    return getattr(dataset.get_run_info(run_key).config, "kind", None)


def delete_ood_run(samples, run_key, *, delete_fields=True):
    """Delete a run record and (by default) the fields it wrote; returns the fields deleted.

    Deleting a flags run also removes the tags it added (as :func:`ood_core.fo.evaluation.delete_flags`);
    deleting a score run deletes the flags runs made from it the same way; deleting an audit removes its
    near-duplicate tags (its score and flags runs stay, as runs of their own).

    ``delete_fields=False`` deletes the records only and keeps every field and tag: the run's fields (and an
    audit's near-duplicate tags), and for a score run also the flags runs made from it (their records go too,
    so none points to a deleted run; their flag fields and tags stay). The kept fields and tags then belong to
    no run: this package never writes into such a field again, and re-flagging treats such tags as set by hand.
    Returns ``[]`` then.

    An audit that lists a deleted run forgets it (``audit_runs``, ``audit_fields``), and the audit's saved views
    that sort or filter by a deleted field go with it; the rest of the audit stays. Renaming an audit's run
    updates the audit's record.
    """
    from .evaluation import list_flag_runs

    runs.require_run(samples, run_key)
    gone = [run_key] + (list_flag_runs(samples, run_key) if _kind_of(samples._dataset, run_key) != "flags" else [])
    fields = _delete(samples, run_key, delete_fields)
    _forget_in_audits(samples, gone, fields)
    return fields


def _forget_in_audits(samples, keys, fields):
    """Audits listing a deleted run forget it (and its deleted fields); their saved views that sort or filter by
    a deleted field, which FiftyOne could no longer load, are deleted."""
    import json

    dataset = samples._dataset
    for audit in runs.list_ood_runs(samples, kind="audit"):
        config = dataset.get_run_info(audit).config
        listed = getattr(config, "audit_runs", None) or {}
        if audit in keys or not set(listed.values()) & set(keys):
            continue
        views = getattr(config, "saved_views", None) or []
        dropped = [name for name in views if dataset.has_saved_view(name) and any(
            json.dumps(f) in json.dumps(dataset.load_saved_view(name)._serialize()) for f in fields)]
        for name in dropped:
            dataset.delete_saved_view(name)
        runs.update_run(samples, audit, audit_runs={r: k for r, k in listed.items() if k not in keys},
                        audit_fields=[f for f in (getattr(config, "audit_fields", None) or []) if f not in fields],
                        saved_views=[name for name in views if name not in dropped])


def _delete(samples, run_key, delete_fields):
    from .evaluation import delete_flags, list_flag_runs

    kind = _kind_of(samples._dataset, run_key)
    if delete_fields and kind == "flags":
        return delete_flags(samples, run_key)["fields"]
    if kind == "audit":
        from .audit import untag_near_duplicates
        from .audit_recovery import release

        release(samples, run_key)  # its score and flags runs stay, as runs of their own
        if delete_fields:  # its near-duplicate tags
            untag_near_duplicates(samples, run_key)
    removed = []
    for flag_key in list_flag_runs(samples, run_key):  # the dependants first: none ever points to a missing run
        if delete_fields:
            removed += delete_flags(samples, flag_key)["fields"]
        else:
            delete_run_record(samples, flag_key, delete_fields=False)
    fields = delete_run_record(samples, run_key, delete_fields=delete_fields)
    return removed + fields if delete_fields else []


def delete_run_record(samples, run_key, *, delete_fields=True):
    """Delete a run record and (by default) the fields it wrote, nothing else (no tags, no dependent runs)."""
    runs.require_run(samples, run_key)
    dataset = samples._dataset
    fields = dataset.get_run_info(run_key).config.fields or []
    if delete_fields:
        for path in fields:
            if dataset.get_field(path) is not None:
                dataset.delete_sample_field(path)
            elif has_values(dataset, path):  # the schema lost it (a concurrent save elsewhere): values stay
                unset_key(dataset, path)
    dataset.delete_run(run_key)
    return fields
