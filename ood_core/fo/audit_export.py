"""The audit's export of its flagged samples (media + labels, a FiftyOne dataset) into a folder of its own.

FiftyOne's ``export(..., overwrite=True)`` deletes the whole export folder first, so exporting into a folder the
user named could delete their files. The export goes only into a new folder, an empty one, or one this package
exported to before (it holds :data:`MARKER`, which lists the files the export wrote with their size and modification
time: a file added there later, or one of them changed since, is the user's, and the folder is then no longer
replaced); it is written beside the folder first and swapped in when
complete, so a failure or a crash never leaves half an export in place of the earlier one. The folder is judged
again after it is moved aside, so files put there while the audit ran are never deleted. An earlier export holding
media files of a dataset (one loaded from it with ``fo.Dataset.from_dir``: its media stay in the folder) is not
replaced either. A folder given through a symbolic link is the link's target.
"""

import contextlib
import json
import os
import re
import uuid

from ..errors import OODInputError
from ..publish import name_limits
from .export_files import CLAIM, MARKER, foreign_files, is_export_or_empty, listed_entries, stamp

def _export_path(export_dir):
    """The absolute folder ``export_dir`` names (``~`` expanded); refuses a value that is no folder path."""
    text = os.fsdecode(os.fspath(export_dir)) if isinstance(export_dir, (str, os.PathLike)) else None
    if text is None or not text.strip() or "\0" in text:
        raise OODInputError(f"export_dir={export_dir!r} is not a folder path; pass a new folder to export the flagged "
                            "samples to, e.g. export_dir='~/fiftyone/ood_exports/audit'")
    return os.path.abspath(os.path.expanduser(text))


#: the longest name the export gives beside its folder, over the folder's own: ``<name>.tmp-<12 hex>`` (staged)
#: and ``<name>.old-<12 hex>`` (the earlier export, until the new one is in place)
_EXTRA_BYTES = len(".tmp-") + 12


def _check_name_length(export_dir, path, parent):
    """Refuse a folder name too long for the file system with the names the export stages beside it (found only at
    the export step, after the audit had written its scores, flags and tags)."""
    limits = name_limits(parent)
    if (len(os.fsencode(os.path.basename(path))) + _EXTRA_BYTES > limits[0]
            or len(os.fsencode(path)) + _EXTRA_BYTES > limits[1]):
        raise OODInputError(f"export_dir={export_dir!r}: the folder name is too long for the file system (names of "
                            f"at most {limits[0] - _EXTRA_BYTES} bytes, paths of {limits[1] - _EXTRA_BYTES}: the "
                            "export is staged beside it under a name a little longer). Pass a shorter export_dir")


def check_export_dir(export_dir):
    """The real folder to export into (a symbolic link resolved: a link to a folder exports into that folder);
    refuses a value that is no folder path, a file, a name too long for the file system, a folder holding anything
    but an earlier export of this package (one holding media of a dataset included), or a folder whose parent
    cannot be written."""
    path = os.path.realpath(_export_path(export_dir))
    if os.path.exists(path) and not os.path.isdir(path):
        raise OODInputError(f"export_dir={export_dir!r} is a file, not a folder; pass a new folder to export to")
    foreign = foreign_files(path) if os.path.isdir(path) else []
    if foreign:
        raise OODInputError(
            f"export_dir={export_dir!r} already holds files that fiftyone-ood did not export (e.g. {foreign[0]!r}); "
            "an export replaces its folder's contents, so it writes only into a new or empty folder or one it "
            "exported to before, with its files unchanged (a file it exported counts as yours once changed). "
            f"Pass a new folder (e.g. {os.path.join(path, 'ood_audit_export')!r})")
    if os.path.isdir(path) and listed_entries(path):
        _refuse_media_inside(export_dir, path)
    parent = _existing_parent(path)
    _check_name_length(export_dir, path, parent)
    if not os.access(parent, os.W_OK):
        raise OODInputError(f"export_dir={export_dir!r}: {parent!r} is not writable; pass a folder you can write to")
    return path


def media_inside(folder):
    """``(dataset name, filepath)`` of a sample of any dataset of the database whose media file lies inside
    ``folder`` (as stored: absolute paths), or None."""
    import fiftyone.core.odm as foo

    conn = foo.get_db_conn()
    prefixes = [os.path.join(folder, ""), os.path.join(os.path.realpath(folder), "")]
    query = {"$or": [{"filepath": {"$regex": "^" + re.escape(p)}} for p in dict.fromkeys(prefixes)]}
    for doc in conn.datasets.find({}, {"name": 1, "sample_collection_name": 1}):
        if doc.get("sample_collection_name"):
            hit = conn[doc["sample_collection_name"]].find_one(query, {"filepath": 1})
            if hit is not None:
                return doc.get("name"), hit["filepath"]
    return None


def _refuse_media_inside(export_dir, path):
    """Refuse replacing an earlier export that holds media files of a dataset (loaded from it: replacing it would
    delete them)."""
    found = media_inside(path)
    if found is not None:
        raise OODInputError(
            f"export_dir={export_dir!r} holds media files of dataset {found[0]!r} (e.g. {found[1]!r}: a dataset "
            "loaded from this earlier export keeps its media there); an export replaces its folder's contents, "
            "which would delete them. Pass a new folder to export to (or move that dataset's media elsewhere "
            "first, e.g. with its export)")


def refuse_export_over_report(export_dir, report_path):
    """Refuse an export folder that is the report's folder or holds it (at any depth): the export replaces its
    folder's contents (so it refuses a folder holding the report and CSV, which the audit would only find at the
    export step, after its runs are written) and the report would land inside the export."""
    from .report_files import csv_path_for

    real_export = os.path.realpath(_export_path(export_dir))
    for path in (report_path, csv_path_for(report_path)):
        if os.path.commonpath([real_export, os.path.realpath(path)]) == real_export:
            raise OODInputError(
                f"export_dir={export_dir!r} would hold the report {report_path!r} and its CSV "
                f"{csv_path_for(report_path)!r} (the export replaces its folder's contents, and takes only a "
                "folder of its own). Pass an export_dir outside the report's folder (e.g. "
                f"{os.path.join(os.path.dirname(report_path), 'export')!r}) or a report_path outside the export")


def refuse_other_audits_export(samples, audit_key, export_dir, overwrite):
    """Refuse, unless ``overwrite``, an ``export_dir`` holding the export of another audit (another key, or another
    dataset) whose record still names that folder: the export would replace it. With ``overwrite``, returns the
    warning that says whose export was replaced (else None)."""
    from .audit_owners import other_audit

    path = os.path.realpath(_export_path(export_dir))
    whose = other_audit(samples, audit_key, export_owner(samples, audit_key, export_dir))
    if whose is None:
        return None
    if overwrite:
        return (f"the export replaced the export of {whose} in {export_dir!r}; that audit's record no longer names "
                "it (its export_dir is None, its replaced_outputs says why)")
    raise OODInputError(
        f"export_dir={export_dir!r} holds the export of {whose} (its record names this folder); this audit "
        f"({audit_key!r} of dataset {samples._dataset.name!r}) would replace it. Pass another export_dir, e.g. "
        f"{os.path.join(os.path.dirname(path), audit_key + '_export')!r}, or overwrite=True to replace that export")


def export_owner(samples, audit_key, export_dir):
    """``(dataset, audit key)`` of the audit whose export is in ``export_dir`` and whose record still names that
    folder (:func:`.audit_owners.recorded_owner`), or None."""
    from .audit_owners import recorded_owner

    path = os.path.realpath(_export_path(export_dir))
    marker = os.path.join(path, MARKER)
    if not os.path.isfile(marker) or os.path.islink(marker) or foreign_files(path):
        return None  # no export of this package's there (a folder of the user's is refused by check_export_dir)
    try:
        with open(marker, encoding="utf-8") as f:
            lines = f.read().splitlines()
        named = json.loads(lines[2]) if len(lines) > 2 else None
    except (OSError, ValueError):
        named = None
    return recorded_owner(samples, audit_key, named, "export_dir", path)


def export_findings(samples, found, export_dir, summary):
    """Export every sample the audit flagged (:func:`export_flagged`); another audit's export there (refused by
    the audit's checks unless ``overwrite``) is named in ``summary``'s warnings, and its record stops naming the
    folder once it is replaced (:func:`.audit_owners.disclaim`). Returns the folder."""
    from .audit_owners import disclaim
    from .export_leftovers import export_lock, journal_export, recover_export_dir

    key = summary["audit_key"]
    path = os.path.realpath(_export_path(export_dir))
    with export_lock(export_dir, path):  # one export at a time into a folder: leftovers beside it are dead ones
        recover_export_dir(path, locked=True)  # a killed export's earlier folder back in place before it is judged
        replaced = export_owner(samples, key, export_dir)
        replacing = refuse_other_audits_export(samples, key, export_dir, True)
        summary["warnings"] += [replacing] if replacing else []
        ids = {i for v in found["flagged"].values() for i in v}
        journal_export(samples, found, path)  # repair_ood_runs finds the folder of an audit killed from here on
        out = export_flagged(samples, ids, export_dir, key, summary["output_token"])  # none flagged: empty export
    if replacing:
        disclaim(replaced, "export_dir", path, f"audit {key!r} of dataset {samples._dataset.name!r}")
    return out


def _existing_parent(path):
    parent = os.path.dirname(path)
    while parent and not os.path.isdir(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    return parent or os.sep


def refuse_missing_media(samples, export_dir, what, then):
    """Refuse exporting ``samples`` (described by ``what``) when media files of them are missing: FiftyOne's export
    copies the media and would stop at the first with a bare FileNotFoundError. ``then``: what to do once the files
    are back."""
    missing = [p for p in samples.values("filepath") if not os.path.isfile(p)]
    if missing:
        raise OODInputError(
            f"export_dir={export_dir!r}: the media files of {len(missing):,} {what} are missing (e.g. "
            f"{missing[0]!r}), and the export copies them. Put them back where the samples' filepaths say (or fix "
            f"the filepaths, or delete those samples), {then}; or audit without export_dir")


def export_flagged(samples, ids, export_dir, audit_key=None, audit_token=None):
    """Export the samples ``ids`` of ``samples`` into ``export_dir`` (checked again right before writing), its
    marker naming the audit ``audit_key`` and its ``audit_token`` (:func:`refuse_other_audits_export`); returns the
    folder."""
    from .audit_owners import owner_json

    import fiftyone as fo

    path = check_export_dir(export_dir)  # the real folder: renaming a link aside would leave its target behind
    # checked before the audit wrote anything (:func:`refuse_missing_media`); a file removed since then is named here
    refuse_missing_media(samples.select(sorted(ids)), export_dir, "flagged samples",
                         "then redo the audit with overwrite=True")
    from .export_leftovers import remove_ours, stage, unstage

    token = uuid.uuid4().hex[:12]
    staged, old = f"{path}.tmp-{token}", f"{path}.old-{token}"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    stage(samples, path, token)  # the token recorded first: killed before the claim, the empty folder is ours
    try:
        os.mkdir(staged)  # a new folder (fails on one that exists, left as it is, its token forgotten)
    except BaseException:
        unstage(path, token, force=True)
        raise
    try:  # claimed at once: a killed export leaves it provably ours (:mod:`.export_leftovers`)
        with open(os.path.join(staged, CLAIM), "x", encoding="utf-8") as f:
            f.write(token)
        samples.select(sorted(ids)).export(export_dir=staged, dataset_type=fo.types.FiftyOneDataset)
        written = {name: stamp(os.path.join(staged, name)) for name in listed_entries(staged) if name != CLAIM}
        with open(os.path.join(staged, MARKER), "w", encoding="utf-8") as f:
            f.write(f"exported by fiftyone-ood from dataset {samples._dataset.name!r}; a later export replaces it "
                    "when it holds only these files, unchanged:\n")
            f.write(json.dumps(written) + "\n")
            f.write((owner_json(samples, audit_key, audit_token) if audit_key else "{}") + "\n")  # the audit that wrote it
        os.remove(os.path.join(staged, CLAIM))  # its marker vouches for it from here on
        if os.path.isdir(path):
            os.rename(path, old)  # an earlier export (or an empty folder): kept until the new one is in place
            if not is_export_or_empty(old):  # filled by someone else after the check: put back, untouched
                os.rename(old, path)
                raise OODInputError(f"export_dir={export_dir!r} received files that fiftyone-ood did not export while "
                                    "the audit ran; it was left as it is. Pass a new folder")
        try:
            os.rename(staged, path)  # fails on a folder (not empty) or file that appeared meanwhile
        except OSError as e:
            if not os.path.lexists(path):
                raise
            raise OODInputError(f"export_dir={export_dir!r} was created by someone else while the audit ran ({e}); "
                                "it was left as it is. Pass a new folder") from None
    except BaseException:
        remove_ours(staged, ignore_errors=True)  # its proof last: a kill half-way leaves it ours
        if os.path.isdir(old) and not os.path.exists(path):
            os.rename(old, path)
        with contextlib.suppress(Exception):  # kept when a folder of its token is left (the repair's then)
            unstage(path, token)
        raise
    remove_ours(old, ignore_errors=True)
    unstage(path, token)
    return _export_path(export_dir)
