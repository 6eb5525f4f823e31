"""The steps that follow a commit (tags, saved views, audit records), written into its journal.

Writing and removing runs also changes what lives outside fields and records: the tags a flags run adds and
removes, an audit's near-duplicate tags and saved views, the mention of removed runs in the audits that list
them. Done by the process alone before or after the commit, a crash in between would leave tags and views
belonging to no run (they would then look as if set by hand, and stay forever) or a record claiming tags that
were never set. So they are
computed before the commit, stored in its journal entry (``cleanup``, a list of JSON operations) and carried out
when the commit rolls forward: by the process itself, or after a crash by the next write on the dataset or
``ood.repair_ood_runs``. Every operation can be done twice (a crash in the middle of them is finished by doing
them again); a commit rolled back drops them with its journal.
"""

import json

from .run_records import list_ood_runs, update_run


def untag(tag, level, ids):
    """Remove ``tag`` from the samples (``level`` None) or objects of the label field ``level`` with ``ids``."""
    return {"op": "untag", "tag": tag, "level": level, **_packed(ids)}


def tag(tag, level, ids):
    """Add ``tag`` to the samples (``level`` None) or objects of the label field ``level`` with ``ids``."""
    return {"op": "tag", "tag": tag, "level": level, **_packed(ids)}


def save_view(name, view, description, replaces=None, mark=None):
    """Save ``view`` (its stages, as FiftyOne serializes them) as the saved view ``name``. ``replaces``: the
    fingerprint (:func:`.audit_views.saved_view_mark`) of the view of that name the caller checked is its own
    (None: there was none); ``mark``: the saved view's own fingerprint. When the operation is carried out (maybe
    by a later call rolling a crashed commit forward), a view of that name with another fingerprint was saved by
    someone else meanwhile: it is left as it is."""
    return {"op": "save_view", "name": name, "stages": view._serialize(), "description": description,
            "replaces": replaces, "mark": mark}


def _packed(ids):
    """Ids as one binary string of 12-byte ObjectIds (about a third of a list of strings in the journal entry,
    whose BSON document is limited to 16 MB); a list when some id is not an ObjectId."""
    import bson

    ids = sorted(ids)
    if all(bson.ObjectId.is_valid(i) for i in ids):
        return {"packed_ids": bson.Binary(b"".join(bson.ObjectId(i).binary for i in ids))}
    return {"ids": ids}


def _ids(op):
    import bson

    if "packed_ids" in op:
        raw = bytes(op["packed_ids"])
        return {str(bson.ObjectId(raw[i:i + 12])) for i in range(0, len(raw), 12)}
    return set(op["ids"])  # journals written before ids were packed


def delete_saved_view(name, mark=None):
    """Delete the saved view ``name`` if it still has the fingerprint ``mark`` (None: whatever it has, as
    journals written before fingerprints say)."""
    return {"op": "delete_saved_view", "name": name, "mark": mark}


def forget_in_audits(keys, fields):
    """The audits listing the runs ``keys`` forget them and their ``fields`` (their saved views using those go).
    ``keys`` also holds the keys the audits still name runs by that FiftyOne's ``rename_run`` renamed
    (:func:`.links.dangling_aliases`, decided before the runs go: afterwards nothing resolves them)."""
    return {"op": "forget_in_audits", "keys": list(keys), "fields": list(fields)}


def rename_references(old, new):
    """The flags runs made from run ``old`` and the audits listing it name ``new`` instead (after a rename)."""
    return {"op": "rename_references", "old": old, "new": new}


def unset_values(path):
    """Remove undeclared values a removed run left at ``path`` (its schema entry was lost)."""
    return {"op": "unset", "path": path}


def untag_flags(samples, flag_keys):
    """Operations removing the tags the flags runs ``flag_keys`` added, except on the items a flags run that stays
    claims with the same tag and level (tags set by hand were never claimed and are never touched)."""
    from .flags import previous_flags

    going = set(flag_keys)
    claims = {key: previous_flags(samples, key) for key in list_ood_runs(samples, kind="flags")}
    ops = []
    for key in flag_keys:
        tag, level, ids = claims.get(key) or (None, None, set())
        if tag is None:
            continue
        kept = {i for other, (t, lv, claimed) in claims.items()
                if other not in going and t == tag and lv == level for i in claimed}
        if ids - kept:
            ops.append(untag(tag, level, ids - kept))
    return ops


def apply(dataset, ops):
    """Carry out the journaled operations ``ops`` on ``dataset`` (each one can be done again safely)."""
    for op in ops or ():
        _APPLY[op["op"]](dataset, op)


def _untag(dataset, op):
    from .flags import set_tags

    set_tags(dataset, _ids(op), op["tag"], op["level"], add=False)


def _tag(dataset, op):
    from .flags import set_tags

    set_tags(dataset, _ids(op), op["tag"], op["level"], add=True)


def _save_view(dataset, op):
    import fiftyone.core.view as fov

    if "mark" in op and op["mark"] is not None:
        from .audit_views import saved_view_mark

        if saved_view_mark(dataset, op["name"]) not in (op["replaces"], op["mark"]):
            return  # saved by someone else since the commit was planned: theirs
    view = fov.DatasetView._build(dataset, op["stages"])
    dataset.save_view(op["name"], view, description=op["description"], overwrite=True)


def _delete_saved_view(dataset, op):
    if not dataset.has_saved_view(op["name"]):
        return
    if op.get("mark") is not None:
        from .audit_views import saved_view_mark

        if saved_view_mark(dataset, op["name"]) != op["mark"]:
            return  # not as the package saved it: someone else's now
    dataset.delete_saved_view(op["name"])


def _unset(dataset, op):
    from .documents import unset_key

    if dataset.get_field(op["path"]) is None:  # never a declared field: one made since is someone else's
        unset_key(dataset, op["path"])


def _forget_in_audits(dataset, op):
    """Audits listing a removed run forget it (and its removed fields); their saved views that sort or filter by a
    removed field, which FiftyOne could no longer load, are deleted first (so doing this again finds them)."""
    keys, fields = set(op["keys"]), op["fields"]
    for audit in list_ood_runs(dataset, kind="audit"):
        config = dataset.get_run_info(audit).config
        listed = getattr(config, "audit_runs", None) or {}
        if audit in keys or not set(listed.values()) & keys:
            continue
        from .audit_views import own_views

        views = getattr(config, "saved_views", None) or []
        ours = own_views(dataset, audit)  # a view saved by the user under a listed name is not the audit's
        dropped = [name for name in views if name in ours and _uses_any(dataset, name, fields)]
        for name in dropped:
            dataset.delete_saved_view(name)
        update_run(dataset, audit, audit_runs={r: k for r, k in listed.items() if k not in keys},
                        audit_fields=[f for f in (getattr(config, "audit_fields", None) or []) if f not in fields],
                        saved_views=[name for name in views if dataset.has_saved_view(name)])


def _rename_references(dataset, op):
    """The links naming ``old`` name ``new``; so do the dangling links that resolve to ``new`` (the run was renamed
    with FiftyOne's own ``rename_run`` before, which left them naming a key no run has: :mod:`.links`)."""
    from . import links

    old, new = op["old"], op["new"]
    for key in list_ood_runs(dataset, kind="flags"):
        if getattr(dataset.get_run_info(key).config, "score_run", None) == old:
            update_run(dataset, key, score_run=new)
    for audit in list_ood_runs(dataset, kind="audit"):
        listed = getattr(dataset.get_run_info(audit).config, "audit_runs", None) or {}
        if old in listed.values():
            renamed = {role: new if key == old else key for role, key in listed.items()}
            update_run(dataset, audit, audit_runs=renamed)
    if dataset.has_run(new):
        links.repair(dataset, keys={new})


def _uses_any(dataset, name, fields):
    stages = json.dumps(dataset.load_saved_view(name)._serialize())
    return any(json.dumps(f) in stages for f in fields)


_APPLY = {"untag": _untag, "tag": _tag, "save_view": _save_view, "delete_saved_view": _delete_saved_view,
          "forget_in_audits": _forget_in_audits, "unset": _unset, "rename_references": _rename_references}
