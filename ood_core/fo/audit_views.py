"""The saved views an audit makes, and which of them are still its own to replace or delete.

A saved view is the audit's only while it is exactly as the audit saved it: the audit's record keeps, for each view
it saves, a fingerprint of its name, description and stages (:data:`VIEW_MARKS`); a view of that name saved by the
user (deleted and saved again, narrowed, described otherwise) has another one, and is never deleted or replaced
(:func:`own_views`, :func:`refuse_users_views`). A record of an earlier version, without fingerprints, vouches for
none of its views: they are left as they are. Its runs keep the fingerprints too
(:func:`.audit_recovery.mark_recorded`): a record deleted with FiftyOne's own ``delete_run`` leaves views a redo of
its key may still replace.
"""

import contextlib
import contextvars
import hashlib

from ..errors import OODInputError
from .run_records import list_ood_runs


#: set on each run of an audit once the audit's record is committed (:func:`.audit_recovery.mark_recorded`)
RECORDED = "audit_recorded"
#: the audit record's entry ``{saved view name: fingerprint of the view as the audit saved it}``
VIEW_MARKS = "saved_view_marks"


def _fingerprint(name, description, stages):
    """SHA-256 of a saved view's name, description and stages (as FiftyOne stores them: without stage uuids).
    Its colour and the times it was loaded are left out: the App changes those without changing the view."""
    from bson import json_util

    text = json_util.dumps({"name": name, "description": description or None, "stages": stages}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def planned_view_mark(dataset, op):
    """The fingerprint the view of a :func:`.followups.save_view` operation ``op`` will have once saved (as
    :mod:`.followups` saves it: built from the operation's stages, serialized without uuids)."""
    import fiftyone.core.view as fov
    from bson import json_util

    view = fov.DatasetView._build(dataset, op["stages"])
    stages = [json_util.loads(json_util.dumps(s)) for s in view._serialize(include_uuids=False)]
    return _fingerprint(op["name"], op["description"], stages)


def saved_view_mark(dataset, name):
    """The fingerprint of the saved view ``name`` of ``dataset`` as it is stored now; None when there is none."""
    from bson import json_util

    dataset._doc.reload("saved_views")
    for doc in dataset._doc.get_saved_views():
        if getattr(doc, "name", None) == name:
            return _fingerprint(name, doc.description, [json_util.loads(s) for s in doc.view_stages])
    return None


def own_views(dataset, audit_key):
    """The saved views the audit ``audit_key``'s record lists that are still exactly as it saved them (the only
    ones it may delete or replace); none for a record without fingerprints (an earlier version's)."""
    if audit_key not in list_ood_runs(dataset, kind="audit"):
        return _left_views(dataset, audit_key)
    config = dataset.get_run_info(audit_key).config
    marks = getattr(config, VIEW_MARKS, None) or {}
    return {name for name in (getattr(config, "saved_views", None) or [])
            if marks.get(name) is not None and saved_view_mark(dataset, name) == marks[name]}


#: ``(dataset id, audit key, {view name: fingerprints})`` of :func:`_left_marks` as a running audit found them
_LEFT_MARKS = contextvars.ContextVar("ood_left_view_marks", default=None)


@contextlib.contextmanager
def left_marks_held(dataset, audit_key):
    """Within the block, the views a deleted record of ``audit_key`` left count as its own as its runs tell them
    now, before a redo of the audit rewrites those runs (:func:`own_views`)."""
    token = _LEFT_MARKS.set((str(dataset._doc.id), audit_key, _left_marks(dataset, audit_key)))
    try:
        yield
    finally:
        _LEFT_MARKS.reset(token)


def _left_marks(dataset, audit_key):
    """``{saved view name: fingerprints}`` the runs of a recorded audit ``audit_key`` keep
    (:func:`.audit_recovery.mark_recorded`)."""
    marks = {}
    for key in list_ood_runs(dataset):
        config = dataset.get_run_info(key).config
        if getattr(config, "made_by_audit", None) == audit_key and getattr(config, RECORDED, False):
            for name, mark in (getattr(config, VIEW_MARKS, None) or {}).items():
                marks.setdefault(name, set()).add(mark)
    return marks


def _left_views(dataset, audit_key):
    """The saved views a recorded audit ``audit_key`` whose record FiftyOne's own ``delete_run`` deleted left, still
    exactly as it saved them: its runs keep their fingerprints (also as the redo running now found them, before it
    rewrote those runs)."""
    marks = _left_marks(dataset, audit_key)
    held = _LEFT_MARKS.get()
    if held is not None and held[:2] == (str(dataset._doc.id), audit_key):
        for name, found in held[2].items():
            marks.setdefault(name, set()).update(found)
    return {name for name, found in marks.items() if saved_view_mark(dataset, name) in found}


def refuse_users_views(samples, audit_key, names):
    """Refuse an audit whose saved views ``names`` would replace saved views that are not its own
    (:func:`own_views`), naming them and the fix."""
    dataset = samples._dataset
    ours = own_views(dataset, audit_key)
    theirs = [name for name in names if name not in ours and dataset.has_saved_view(name)]
    if theirs:
        raise OODInputError(
            f"dataset {dataset.name!r} has the saved views {theirs}, which no audit {audit_key!r} made, or not as "
            "the audit saved it (changed since, or recorded by an earlier version of fiftyone-ood, which kept no "
            f"fingerprint of its views); the audit saves its findings under {list(names)} and never replaces a "
            "view it did not make. Rename those views, or pass another audit_key (a view you no longer need: "
            "delete it with dataset.delete_saved_view(name))")
