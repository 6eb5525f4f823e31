"""The runs of an audit that was killed or failed before its record was written.

An audit writes its score and flags runs one after the other and records
itself last. Every run it writes names it (``made_by_audit``, see
:func:`ood_core.fo.run_records.made_by_audit`), and a running audit holds a lease
lock, so a run whose audit has no record listing it, whose audit is not
running, and that was never marked as recorded (:func:`mark_recorded`), was
left by an interrupted audit (runs of versions before the marks, without ``AUDIT_MARKS``, are never taken
for one: their record may have been deleted with FiftyOne's ``delete_run``): the next audit of that key says so (and how to
redo or clean it), and :func:`ood_core.fo.repair.repair_ood_runs` removes such
runs with their fields, flags runs and tags.

Which of the saved views an audit made are still its own is :mod:`.audit_views`' question.
"""

import contextlib

from . import coordination
from ..errors import BackendError, OODInputError
from .audit_views import RECORDED, VIEW_MARKS, left_marks_held
from .run_info import get_ood_run_info
from .run_records import AUDIT_MARKS, list_ood_runs, made_by_audit, update_run


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
        stack.enter_context(made_by_audit(audit_key))
        # the views a deleted record left, as its runs tell them before this audit rewrites those runs
        stack.enter_context(left_marks_held(dataset, audit_key))
        yield


def interrupted_runs(samples, audit_key=None):
    """``{audit key: [run keys]}``: runs made by an audit that has no record listing them and is not running."""
    dataset = samples._dataset
    from .links import audit_runs_of

    # also under a renamed audit key, and runs renamed with FiftyOne's rename_run (found by the fields they own)
    listed = {key for audit in list_ood_runs(samples, kind="audit")
              for key in audit_runs_of(dataset, audit).values()}
    out = {}
    for key in list_ood_runs(samples):
        config = dataset.get_run_info(key).config
        owner = getattr(config, "made_by_audit", None)
        if owner is None or (audit_key is not None and owner != audit_key) or key in listed:
            continue
        if getattr(config, RECORDED, False):  # its audit was recorded; the record went by FiftyOne's delete_run
            continue
        if not getattr(config, AUDIT_MARKS, False):  # an earlier version's audit made it: recorded or not,
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
    before = set(list_ood_runs(samples))
    for keys in interrupted_runs(samples).values():
        flags_first = sorted(keys, key=lambda k: get_ood_run_info(samples, k)["kind"] != "flags")
        for key in flags_first:
            if key in list_ood_runs(samples):  # a score run's flags runs go with it
                delete_ood_run(samples, key)
    return sorted(before - set(list_ood_runs(samples)))


def mark_recorded(samples, audit_key):
    """After the audit's record is committed, each of its runs says so: a record deleted later with FiftyOne's own
    ``dataset.delete_run`` (which does not release them: :func:`.links.release_audit_runs`) then leaves runs of their
    own, not runs an interrupted audit left, which ``ood.repair_ood_runs`` would delete with their fields and tags.
    A process killed before the marks are all written leaves the record, which lists the runs: nothing is lost
    either way."""
    from .links import audit_runs_of

    dataset = samples._dataset
    # the fingerprints of its saved views go along: a record deleted with FiftyOne's delete_run leaves its views,
    # which a redo of the key may then replace as its own (:func:`own_views`)
    marks = dict(getattr(dataset.get_run_info(audit_key).config, VIEW_MARKS, None) or {})
    for key in audit_runs_of(dataset, audit_key).values():
        if key in list_ood_runs(samples):
            update_run(samples, key, **{RECORDED: True, VIEW_MARKS: marks})
