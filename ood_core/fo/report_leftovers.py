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
- deletes a staging folder only when it is empty or holds nothing but the audit's file under the destination's
  name, unchanged (a half-written file proves nothing and stays).

A file or folder of those names that is not provably the package's is left as it is, and nothing is ever moved over
a file at the destination. The next audit into the path (its call check), every publish, ``ood.repair_ood_runs``
(for the report every audit record names) and deleting an audit (before its record goes) do this.
"""

import contextlib
import hashlib
import os

from ..errors import BackendError, OODInputError
from ..publish import leftovers_beside, put_back
from . import coordination, runs
from .audit_report import csv_path_for, is_audit_csv, is_audit_report, written_csv_hash


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
        _recover_file(report_path, is_audit_report, lambda asides, staged: asides, done)
        csv_path = csv_path_for(report_path)
        _recover_file(csv_path, lambda p: is_audit_csv(p, report_path),
                      lambda asides, staged: _written_first(asides, staged, written_csv_hash(report_path)), done)
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


def _recover_file(path, is_ours, choose, done):
    """Recover one published file ``path``: ``choose(asides, staged)`` lists, in order, which of the package's own
    files (earlier ones aside, newest first; staged ones) may go back in place when nothing is there."""
    asides, folders = leftovers_beside(path)
    asides = sorted((f for f in asides if is_ours(f)), key=lambda f: -os.stat(f).st_mtime_ns)
    name = os.path.basename(path)
    staged = {folder: _staged_content(folder, name, is_ours) for folder in folders}
    if not os.path.lexists(path):
        for candidate in choose(asides, [f for f in staged.values() if f]):
            if put_back(candidate, path):  # never over a file that appeared meanwhile
                done["restored"].append(candidate)
                break
    if os.path.lexists(path) and is_ours(path):  # replaced by the file in place: what the publish would delete
        for aside in asides:
            if os.path.lexists(aside):
                os.remove(aside)
                done["removed"].append(aside)
    for folder, content in staged.items():
        if content is False:
            continue  # holds something that is not provably ours: left as it is
        if content and os.path.lexists(content):
            os.remove(content)
        with contextlib.suppress(OSError):
            os.rmdir(folder)
            done["removed"].append(folder)


def _staged_content(folder, name, is_ours):
    """What a staging folder holds: None when empty, the path of the package's own staged file when it holds only
    that (under the destination's ``name``, unchanged), False when anything else."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return False
    if not entries:
        return None
    staged = os.path.join(folder, name)
    if entries == [name] and not os.path.islink(staged) and os.path.isfile(staged) and is_ours(staged):
        return staged
    return False


def recover_recorded_reports(samples, audit_keys=None):
    """:func:`recover_report` for the report every audit record of ``samples``' dataset names (``audit_keys``: only
    those audits); returns ``{report path: what was done}`` of those where something was."""
    dataset = samples._dataset
    present = runs.list_ood_runs(samples, kind="audit")
    paths = set()
    for key in present if audit_keys is None else [k for k in audit_keys if k in present]:
        recorded = getattr(dataset.get_run_info(key).config, "report_path", None)
        if isinstance(recorded, str) and recorded:
            paths.add(os.path.abspath(os.path.expanduser(recorded)))
    out = {}
    for path in sorted(paths):
        done = recover_report(path)
        if done["restored"] or done["removed"]:
            out[path] = done
    return out
