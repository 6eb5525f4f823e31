"""What a killed report publish leaves beside an audit's report, and putting it right.

The audit publishes its report, then its CSV, each with :func:`ood_core.publish.publish_file`: the earlier file is
renamed aside to ``<name>.old-<12 hex>``, the new one (written into a private folder ``.<name>.tmp-<random>``) is
hard-linked in, then the earlier file and the folder are removed. A process killed between the rename and the link
leaves no report at all, the earlier one aside and the new one staged; the CSV beside it is then judged the user's
(no report vouches for it), so the audit's record names no report, and a redo into the path is refused.

Publishes into one path take turns (:func:`report_lock`), so while the lock is held, such leftovers are a dead
publish's; :func:`recover_report` then, with only provably safe steps:

- puts the earlier report back when no report is in place and it carries the audit's mark unchanged (its hash);
  for the CSV, the one the report in place was written with (staged or aside), else an earlier one it vouches for;
- deletes an earlier file aside only when the file in place is the audit's too (the publish had replaced it);
- deletes a staging folder only when it is empty, holds nothing but the audit's file under the destination's
  name, unchanged, or carries its claim (:data:`ood_core.publish.CLAIM`, written before the file: then a
  half-written file goes too; one without the claim proves nothing and stays).

A file or folder of those names that is not provably the package's is left as it is, and nothing is ever moved over
a file at the destination. The next audit into the path (its call check), every publish, ``ood.repair_ood_runs``
(for the report every audit record names) and deleting an audit (before its record goes) do this.
"""

import contextlib
import hashlib
import os

from . import coordination
from ..errors import BackendError, OODInputError
from ..publish import recover_beside
from .report_files import csv_path_for, is_audit_csv, is_audit_report, written_csv_hash
from .run_records import list_ood_runs


#: the kind named in the claims of the report's and CSV's staging folders (:func:`ood_core.publish.temporary_beside`)
STAGED_KIND = "report"


def _lock_key(report_path):
    """One key for a report and its CSV, named by the CSV (``r.html`` and ``r.htm`` share ``r_flagged.csv``)."""
    csv = csv_path_for(os.path.abspath(report_path))
    return f"ood_report:{os.path.join(os.path.realpath(os.path.dirname(csv)), os.path.basename(csv))}"


@contextlib.contextmanager
def report_lock(report_path, timeout=120.0):
    """Hold the lock of report publishes into ``report_path`` (waiting up to ``timeout`` s for another one)."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(coordination.locked(_lock_key(report_path), timeout=timeout))
        except BackendError:
            raise OODInputError(f"report_path={report_path!r}: another process has been writing a report there for "
                                f"{timeout:.0f} s; wait for it to finish, or pass another report_path") from None
        yield


def recover_report(report_path, locked=False):
    """Put right what killed publishes of the report at ``report_path`` and its CSV left (see the module); returns
    ``{"restored": [files put back in place], "removed": [files and folders deleted]}``. Without ``locked`` (the
    caller holds :func:`report_lock`) the lock is taken briefly; a publish running meanwhile leaves all as it is."""
    done = {"restored": [], "removed": []}
    with contextlib.ExitStack() as stack:
        if not locked:
            try:
                stack.enter_context(coordination.locked(_lock_key(report_path), timeout=2.0))
            except BackendError:
                return done
        report_path = os.path.abspath(report_path)
        # a staged report is never put in place: the audit that wrote it died before its record
        recover_beside(report_path, is_audit_report, lambda asides, staged: asides, done, kind=STAGED_KIND)
        csv_path = csv_path_for(report_path)
        recover_beside(csv_path, lambda p: is_audit_csv(p, report_path),
                      lambda asides, staged: _written_first(asides, staged, written_csv_hash(report_path)), done,
                      kind=STAGED_KIND)
    return done


def _written_first(asides, staged, digest):
    """Of the audit's CSVs that could go back in place, the one the report in place was written with (staged or
    aside); else the earlier ones aside it vouches for."""
    made = [f for f in asides + staged if digest and _sha256(f) == digest]
    return made or asides


def _sha256(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


#: the entry of an audit's score run naming the report path, written before the report is published: an audit
#: killed before its record exists leaves it for ``repair_ood_runs``
REPORT_JOURNAL = "audit_report_path"


def journal_report(samples, found, path):
    """Name the report ``path`` on the audit's score run (:func:`.export_leftovers.journal_export`)."""
    from .export_leftovers import journal_export

    journal_export(samples, found, os.path.abspath(path), entry=REPORT_JOURNAL)


def recover_recorded_reports(samples, audit_keys=None):
    """:func:`recover_report` for the report every audit record of ``samples``' dataset names and every report path
    a run of it journaled (:func:`journal_report`; ``audit_keys``: only those audits and their runs); returns
    ``{report path: what was done}`` of those where something was."""
    from .links import audit_runs_of

    dataset = samples._dataset
    present = list_ood_runs(samples)
    audits = set(list_ood_runs(samples, kind="audit"))
    keys = present if audit_keys is None else [k for k in audit_keys if k in audits]
    if audit_keys is not None:  # the runs of those audits journaled their report paths too
        keys = keys + [r for k in keys for r in audit_runs_of(dataset, k).values() if r in present]
    paths = set()
    for key in keys:
        config = dataset.get_run_info(key).config
        for recorded in (getattr(config, "report_path", None) if key in audits else None,
                         getattr(config, REPORT_JOURNAL, None)):
            if isinstance(recorded, str) and recorded:
                paths.add(os.path.abspath(os.path.expanduser(recorded)))
    out = {}
    for path in sorted(paths):
        done = recover_report(path)
        if done["restored"] or done["removed"]:
            out[path] = done
    return out
