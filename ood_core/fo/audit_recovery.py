"""The runs of an audit that was killed or failed before its record was written.

An audit writes its score and flags runs one after the other and records
itself last. Every run it writes names it (``made_by_audit``, see
:func:`ood_core.fo.runs.made_by_audit`), and a running audit holds a lease
lock, so a run whose audit has no record listing it, whose audit is not
running, and that was never marked as recorded (:func:`mark_recorded`), was
left by an interrupted audit (runs of versions before the marks, without ``runs.AUDIT_MARKS``, are never taken
for one: their record may have been deleted with FiftyOne's ``delete_run``): the next audit of that key says so (and how to
redo or clean it), and :func:`ood_core.fo.runs.repair_ood_runs` removes such
runs with their fields, flags runs and tags.

It also tells the audit's saved views from a user's (:func:`own_views`). A saved view is the audit's only while
it is exactly as the audit saved it: the audit's record keeps, for each view it saves, a fingerprint of its name,
description and stages (``saved_view_marks``); a view of that name saved by the user (deleted and saved again,
narrowed, described otherwise) has another one, and is never deleted or replaced. A record of an earlier version,
without fingerprints, vouches for none of its views: they are left as they are. Its runs keep the fingerprints
too (:func:`mark_recorded`): a record deleted with FiftyOne's own ``delete_run`` leaves views a redo of its key may
still replace.
"""

import contextlib
import contextvars
import hashlib

from ..errors import BackendError, OODInputError
from . import coordination, runs


def _lock_key(dataset, audit_key):
    return coordination.job_key(dataset, f"__audit__:{audit_key}")


@contextlib.contextmanager
def running(samples, audit_key):
    """Hold the audit's lease lock and mark the runs recorded inside as made by it (for the audit's duration)."""
    dataset = samples._dataset
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(coordination.locked(_lock_key(dataset, audit_key), timeout=2.0))
        except BackendError:
            raise _running_elsewhere(dataset, audit_key) from None
        stack.enter_context(runs.made_by_audit(audit_key))
        # the views a deleted record left, as its runs tell them before this audit rewrites those runs
        token = _LEFT_MARKS.set((str(dataset._doc.id), audit_key, _left_marks(dataset, audit_key)))
        stack.callback(_LEFT_MARKS.reset, token)
        yield


def interrupted_runs(samples, audit_key=None):
    """``{audit key: [run keys]}``: runs made by an audit that has no record listing them and is not running."""
    dataset = samples._dataset
    from .links import audit_runs_of

    # also under a renamed audit key, and runs renamed with FiftyOne's rename_run (found by the fields they own)
    listed = {key for audit in runs.list_ood_runs(samples, kind="audit")
              for key in audit_runs_of(dataset, audit).values()}
    out = {}
    for key in runs.list_ood_runs(samples):
        config = dataset.get_run_info(key).config
        owner = getattr(config, "made_by_audit", None)
        if owner is None or (audit_key is not None and owner != audit_key) or key in listed:
            continue
        if getattr(config, RECORDED, False):  # its audit was recorded; the record went by FiftyOne's delete_run
            continue
        if not getattr(config, runs.AUDIT_MARKS, False):  # an earlier version's audit made it: recorded or not,
            continue                                       # nothing tells; kept (delete_ood_run removes it)
        if coordination.is_held(_lock_key(dataset, owner)):
            continue
        out.setdefault(owner, []).append(key)
    return out


def refuse_interrupted(samples, audit_key, overwrite):
    """Refuse an audit of a key an audit is running under in another process, and (without ``overwrite``) one an
    interrupted audit left runs under, saying so."""
    left = None if overwrite else interrupted_runs(samples, audit_key).get(audit_key)
    if left:
        raise OODInputError(
            f"an earlier audit {audit_key!r} of dataset {samples._dataset.name!r} was interrupted (killed or failed) "
            f"before it was recorded; it left the runs {sorted(left)} with their fields and tags. Redo it with "
            f"overwrite=True (replaces them), or remove them with ood.repair_ood_runs(dataset)"
        )
    if coordination.is_held(_lock_key(samples._dataset, audit_key)):
        raise _running_elsewhere(samples._dataset, audit_key)


def _running_elsewhere(dataset, audit_key):
    return OODInputError(f"an audit {audit_key!r} of dataset {dataset.name!r} is running in another process; wait "
                         "for it to finish (then redo it with overwrite=True if needed), or use another audit_key")


def remove_interrupted(samples):
    """Delete the runs interrupted audits left (fields, flags runs, tags); returns the run keys removed. What
    killed exports left beside the folders audit records name, or an interrupted audit's run journaled, is put
    right first (:func:`.export_leftovers.recover_recorded_exports`), and so is what killed report publishes left
    beside the report each audit record names (:func:`.report_leftovers.recover_recorded_reports`)."""
    from .export_leftovers import recover_recorded_exports
    from .report_leftovers import recover_recorded_reports
    from .run_admin import delete_ood_run

    recover_recorded_reports(samples)
    recover_recorded_exports(samples, [key for keys in interrupted_runs(samples).values() for key in keys])
    before = set(runs.list_ood_runs(samples))
    for keys in interrupted_runs(samples).values():
        flags_first = sorted(keys, key=lambda k: runs.get_ood_run_info(samples, k)["kind"] != "flags")
        for key in flags_first:
            if key in runs.list_ood_runs(samples):  # a score run's flags runs go with it
                delete_ood_run(samples, key)
    return sorted(before - set(runs.list_ood_runs(samples)))


#: set on each run of an audit once the audit's record is committed (:func:`mark_recorded`)
RECORDED = "audit_recorded"


def mark_recorded(samples, audit_key):
    """After the audit's record is committed, each of its runs says so: a record deleted later with FiftyOne's own
    ``dataset.delete_run`` (which does not :func:`release` them) then leaves runs of their own, not runs an
    interrupted audit left, which ``ood.repair_ood_runs`` would delete with their fields and tags. A process killed
    before the marks are all written leaves the record, which lists the runs: nothing is lost either way."""
    from .links import audit_runs_of

    dataset = samples._dataset
    # the fingerprints of its saved views go along: a record deleted with FiftyOne's delete_run leaves its views,
    # which a redo of the key may then replace as its own (:func:`own_views`)
    marks = dict(getattr(dataset.get_run_info(audit_key).config, VIEW_MARKS, None) or {})
    for key in audit_runs_of(dataset, audit_key).values():
        if key in runs.list_ood_runs(samples):
            runs.update_run(samples, key, **{RECORDED: True, VIEW_MARKS: marks})


def release(samples, audit_key):
    """An audit record is being deleted: its runs stay as runs of their own, no longer named as made by it."""
    from .links import audit_runs_of

    dataset = samples._dataset
    for key in audit_runs_of(dataset, audit_key).values():  # also those renamed with FiftyOne's rename_run
        if key in runs.list_ood_runs(samples) and \
                getattr(dataset.get_run_info(key).config, "made_by_audit", None) is not None:
            runs.update_run(samples, key, made_by_audit=None)


# --------------------------------------------------------------------------- the audit's saved views

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
    if audit_key not in runs.list_ood_runs(dataset, kind="audit"):
        return _left_views(dataset, audit_key)
    config = dataset.get_run_info(audit_key).config
    marks = getattr(config, VIEW_MARKS, None) or {}
    return {name for name in (getattr(config, "saved_views", None) or [])
            if marks.get(name) is not None and saved_view_mark(dataset, name) == marks[name]}


#: ``(dataset id, audit key, {view name: fingerprints})`` of :func:`_left_marks` as a running audit found them
_LEFT_MARKS = contextvars.ContextVar("ood_left_view_marks", default=None)


def _left_marks(dataset, audit_key):
    """``{saved view name: fingerprints}`` the runs of a recorded audit ``audit_key`` keep (:func:`mark_recorded`)."""
    marks = {}
    for key in runs.list_ood_runs(dataset):
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
