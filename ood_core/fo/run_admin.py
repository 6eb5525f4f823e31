"""Renaming and deleting this package's runs, with what depends on them (flags runs, audits); deleting a flags run
with the tags it added (:func:`delete_flags`)."""

import numpy as np

from ..errors import OODInputError
from .documents import has_values
from .names import validate_key
from .run_info import get_ood_run_info, load_ood_results
from .run_kinds import run_kind
from .run_records import require_run
from .view_checks import require_collection


def rename_ood_run(samples, run_key, new_run_key):
    """Rename a run key (fields keep their names; the record still lists them; flags runs made from a
    renamed score run and the audits listing it follow it, all or nothing, also after a crash:
    :func:`ood_core.fo.commit.rename_run`; so do the links that still named a key FiftyOne's own ``rename_run``
    changed and that resolve to this run, :mod:`.links`: they name the new key, true again). An embeddings run
    cannot be renamed: its key is its field's name, by which scoring finds the backbone and levels."""
    from . import commit, followups
    from .links import repair as repair_links

    require_collection(samples)
    dataset = samples._dataset
    commit.repair(dataset)  # an earlier rename (or write) killed half-way is finished or undone first
    require_run(samples, run_key)
    validate_key(new_run_key)
    if dataset.has_run(new_run_key):
        raise OODInputError(f"run key {new_run_key!r} already exists; delete it first or pick another")
    if _kind_of(dataset, run_key) == "embeddings":
        raise OODInputError(
            f"{run_key!r} is an embeddings run: its key is its field's name, by which score runs find the "
            f"backbone and pyramid levels, so it cannot be renamed. Compute the embeddings again under the new "
            f"name (ood.compute_pyramid_embeddings(dataset, {new_run_key!r})) and delete the old run if unwanted"
        )
    repair_links(dataset)  # links naming a key another run took since FiftyOne's rename_run: the runs they mean
    commit.rename_run(dataset, run_key, new_run_key, [followups.rename_references(run_key, new_run_key)])


def _kind_of(dataset, run_key):
    return getattr(dataset.get_run_info(run_key).config, "kind", None)


def delete_ood_run(samples, run_key, *, delete_fields=True):
    """Delete a run record and (by default) the fields it wrote; returns the fields deleted.

    Deleting a flags run also removes the tags it added (as :func:`delete_flags`);
    deleting a score run deletes the flags runs made from it the same way; deleting an audit removes its
    near-duplicate tags and its saved views (its score and flags runs stay, as runs of their own).

    ``delete_fields=False`` deletes the records only and keeps every field, tag and view: the run's fields (and an
    audit's near-duplicate tags and saved views), and for a score run also the flags runs made from it (their
    records go too, so none points to a deleted run; their flag fields and tags stay). The kept fields and tags
    then belong to no run: this package never writes into such a field again, and re-flagging treats such tags
    as set by hand; an audit of the same key refuses to replace the kept views.
    Returns ``[]`` then.

    An audit that lists a deleted run forgets it (``audit_runs``, ``audit_fields``), and the audit's saved views
    that sort or filter by a deleted field go with it; the rest of the audit stays (also when the audit lists the
    run under a key FiftyOne's own ``rename_run`` changed: :mod:`.links`). Renaming an audit's run updates the
    audit's record.

    Folders a killed export left beside the export folder the deleted records name (:mod:`.export_leftovers`)
    are put right first: only those provably this package's are removed, and the audit's export folder stays (an
    earlier export a kill left aside is put back in its place). So is what a killed report publish left beside an
    audit's report (:mod:`.report_leftovers`: its earlier report put back, only provably the package's files removed).

    All or nothing, also after a crash (:func:`remove_runs`). A field the record lists that is no longer the one
    the run wrote (deleted and made again by hand, :mod:`.ownership`) is not deleted.
    """
    from .commit import repair
    from .names import is_internal
    from .export_leftovers import recover_run_exports
    from .flags import list_flag_runs
    from .links import repair as repair_links

    require_collection(samples)
    if not isinstance(run_key, str):
        require_run(samples, run_key)  # names the problem
    if not isinstance(delete_fields, (bool, np.bool_)):
        raise OODInputError(f"delete_fields={delete_fields!r} is not valid; pass True (delete the run's fields "
                            "too) or False (the records only)")
    dataset = samples._dataset
    if is_internal(run_key):  # a backup of a crashed commit is not a run: refused, left to the repair
        require_run(samples, run_key)
    repair(dataset)  # an earlier delete (or write) killed half-way is finished or undone first
    require_run(samples, run_key)
    repair_links(dataset)  # links naming a key another run took since FiftyOne's rename_run name the runs they mean
    kind = _kind_of(dataset, run_key)
    dependants = list_flag_runs(samples, run_key) if kind != "flags" else []
    # what killed exports left beside the folders these records name, put right while a record still names them
    # (the export folder itself, the user's result, stays)
    recover_run_exports(samples, [run_key, *dependants])
    if kind == "audit":
        from .links import release_audit_runs
        from .report_leftovers import recover_recorded_reports

        recover_recorded_reports(samples, [run_key])  # a killed publish's earlier report back, its leftovers gone
        release_audit_runs(samples, run_key)  # its score and flags runs stay, runs of their own (not "interrupted")
    fields = remove_runs(samples, [run_key, *dependants], delete_fields=delete_fields)
    return fields if delete_fields else []


def remove_runs(samples, run_keys, *, delete_fields=True):
    """Delete runs all or nothing (:func:`ood_core.fo.commit.remove_runs`): their records, the fields only they
    list (``delete_fields``), the tags their flags added and an audit's near-duplicate tags and saved views; the
    audits that list them forget them. What lies outside fields and records is journaled with the commit
    (:mod:`.followups`), so a process killed at any point leaves all of it to the next call or
    ``ood.repair_ood_runs``. Returns the fields deleted."""
    from . import followups
    from .commit import remove_runs as commit_removal
    from .links import dangling_aliases

    def cleanup(dataset, fields, dropped):
        gone = [run_keys[0], *dropped]
        kinds = {key: _kind_of(dataset, key) for key in gone if dataset.has_run(key)}
        ops = []
        if delete_fields:
            ops += followups.untag_flags(samples, [key for key in gone if kinds.get(key) == "flags"])
            ops += [op for key in gone if kinds.get(key) == "audit" for op in _audit_extras(dataset, key)]
            ops += [followups.unset_values(p) for p in _lost_fields(dataset, gone)]
        aliases = dangling_aliases(dataset, gone)  # old keys of runs renamed with FiftyOne's rename_run
        return [op for op in ops if op] + [followups.forget_in_audits([*gone, *aliases], fields)]

    return commit_removal(samples, list(run_keys), delete_fields=delete_fields, cleanup=cleanup)[0]


def _audit_extras(dataset, audit_key):
    """Removing the near-duplicate tags the audit claims alone, and its saved views: only those still exactly as
    it saved them (:func:`.audit_views.own_views`); a view of the user's under one of their names, one changed
    since, and the views of a record without fingerprints (an earlier version's) stay, with a warning."""
    import logging

    from . import followups
    from .audit_views import own_views, saved_view_mark
    from .near_duplicates import TAG, to_untag

    ids = to_untag(dataset, audit_key)
    listed = getattr(dataset.get_run_info(audit_key).config, "saved_views", None) or []
    ours = own_views(dataset, audit_key)
    kept = [name for name in listed if name not in ours and dataset.has_saved_view(name)]
    if kept:
        logging.getLogger(__name__).warning(
            "audit %r: the saved views %s are not as the audit saved them (yours, changed since, or recorded by an "
            "earlier version); they stay. Delete them with dataset.delete_saved_view(name) if unwanted",
            audit_key, kept)
    return ([followups.untag(TAG, None, ids)] if ids else []) + \
        [followups.delete_saved_view(name, saved_view_mark(dataset, name)) for name in listed if name in ours]


def _lost_fields(dataset, keys):
    """Listed fields the schema no longer declares but documents still hold (a concurrent save elsewhere dropped the
    entry), of records that still own them (:func:`ood_core.fo.ownership.run_owns`: records without marks)."""
    from .ownership import run_owns

    return [p for key in keys for p in (dataset.get_run_info(key).config.fields or [])
            if dataset.get_field(p) is None and has_values(dataset, p) and run_owns(dataset, key, p)]


def delete_run_record(samples, run_key, *, delete_fields=True):
    """Delete a run record and (by default) the fields it wrote, nothing else (no tags, no dependent runs), all or
    nothing; returns the fields deleted."""
    from . import followups
    from .commit import remove_runs as commit_removal

    require_run(samples, run_key)

    def cleanup(dataset, fields, dropped):
        lost = _lost_fields(dataset, [run_key]) if delete_fields else []
        return [followups.unset_values(p) for p in lost]

    return commit_removal(samples, [run_key], delete_fields=delete_fields, cleanup=cleanup)[0]


def fields_to_delete(dataset, run_key):
    """The fields that deleting ``run_key`` (with its fields) removes: the existing ones it wrote, and those of
    the flags runs made from it (deleted with it)."""
    from .flags import list_flag_runs

    fields = []
    for key in [run_key, *list_flag_runs(dataset, run_key)]:
        fields += get_ood_run_info(dataset, key).get("fields") or []
    return [f for f in fields if dataset.get_field(f) is not None]


def deleted_along(dataset, run_key, delete_fields=True):
    """What deleting ``run_key`` removes besides its record and fields, as ``(what, value)`` facts of the
    confirmation and the result view: the flags runs made from a score run (deleted with it), the tags flags
    runs added (removed with their fields; tags set by hand stay), an audit's saved views and near-duplicate tags
    (removed with its fields, those still as the audit left them)."""
    from .flags import list_flag_runs

    info = get_ood_run_info(dataset, run_key)
    kind = info.get("kind")
    flags = list_flag_runs(dataset, run_key) if run_kind(kind).is_score else []
    names = ", ".join(repr(k) for k in flags)
    if not delete_fields:
        return [("flags runs deleted with it", f"{names} (their records only: their fields and tags stay)")] \
            if flags else []
    facts = [("flags runs deleted with it", names)] if flags else []
    tags = {get_ood_run_info(dataset, k).get("tag") for k in (flags if kind != "flags" else [run_key])}
    if tags - {None}:
        facts.append(("tags removed", ", ".join(repr(t) for t in sorted(tags - {None}))
                      + " where these flags added them (tags set by hand stay)"))
    if kind == "audit":
        from .audit_views import own_views

        ours = own_views(dataset, run_key)  # a view changed since (or of an earlier version's record) stays
        views = [f"saved view {v!r}" for v in info.get("saved_views") or [] if v in ours]
        if getattr(load_ood_results(dataset, run_key), "tagged_duplicate_ids", None):
            views.append("the 'near_duplicate' tags it added")
        if views:
            facts.append(("also removed", ", ".join(views)))
    return facts


def delete_flags(samples, flag_key):
    """Delete a flags run, its flag field and the tags it added (tags set by hand stay), all or nothing, also after
    a crash (:func:`delete_ood_run`)."""
    from .flags import claimed_by_other_runs, list_flag_runs, previous_flags

    require_collection(samples)
    dataset = samples._dataset
    if isinstance(flag_key, str) and dataset.has_run(flag_key) and \
            getattr(dataset.get_run_info(flag_key).config, "kind", None) != "flags":
        kind = getattr(dataset.get_run_info(flag_key).config, "kind", "non-fiftyone-ood")
        raise OODInputError(
            f"{flag_key!r} is a {kind!r} run, not a flags run; pass the key of its flags "
            f"(ood.list_flag_runs(dataset, {flag_key!r}) lists them: {list_flag_runs(samples, flag_key)}), or "
            "delete the run with ood.delete_ood_run (its flags go with it)")
    tag, patches, ids = previous_flags(samples, flag_key) or (None, None, set())
    if tag is not None:
        ids = ids - claimed_by_other_runs(samples, tag, patches, flag_key)
    fields = delete_ood_run(samples, flag_key)
    return {"flag_key": flag_key, "fields": fields, "tags_removed": len(ids) if tag else 0}
