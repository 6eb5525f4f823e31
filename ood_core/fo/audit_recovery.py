"""The runs of an audit that was killed or failed before its record was written.

An audit writes its score and flags runs one after the other and records
itself last. Every run it writes names it (``made_by_audit``, see
:func:`ood_core.fo.runs.made_by_audit`), and a running audit holds a lease
lock, so a run whose audit has no record listing it, and whose audit is not
running, was left by an interrupted audit: the next audit of that key says so
(and how to redo or clean it), and :func:`ood_core.fo.runs.repair_ood_runs`
removes such runs with their fields, flags runs and tags.
"""

import contextlib

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
        yield


def interrupted_runs(samples, audit_key=None):
    """``{audit key: [run keys]}``: runs made by an audit that has no record listing them and is not running."""
    dataset = samples._dataset
    listed = {key for audit in runs.list_ood_runs(samples, kind="audit")  # also under a renamed audit key
              for key in (getattr(dataset.get_run_info(audit).config, "audit_runs", None) or {}).values()}
    out = {}
    for key in runs.list_ood_runs(samples):
        owner = getattr(dataset.get_run_info(key).config, "made_by_audit", None)
        if owner is None or (audit_key is not None and owner != audit_key) or key in listed:
            continue
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
    """Delete the runs interrupted audits left (fields, flags runs, tags); returns the run keys removed."""
    from .run_admin import delete_ood_run

    before = set(runs.list_ood_runs(samples))
    for keys in interrupted_runs(samples).values():
        flags_first = sorted(keys, key=lambda k: runs.get_ood_run_info(samples, k)["kind"] != "flags")
        for key in flags_first:
            if key in runs.list_ood_runs(samples):  # a score run's flags runs go with it
                delete_ood_run(samples, key)
    return sorted(before - set(runs.list_ood_runs(samples)))


def release(samples, audit_key):
    """An audit record is being deleted: its runs stay as runs of their own, no longer named as made by it."""
    dataset = samples._dataset
    listed = getattr(dataset.get_run_info(audit_key).config, "audit_runs", None) or {}
    for key in listed.values():
        if key in runs.list_ood_runs(samples) and \
                getattr(dataset.get_run_info(key).config, "made_by_audit", None) is not None:
            runs.update_run(samples, key, made_by_audit=None)
