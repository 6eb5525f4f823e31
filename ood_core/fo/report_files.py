"""The audit report's files on disk: their paths, the checks before writing them, and the mark that tells them apart.

The report (an HTML page) carries a first line of this package's (``<!-- fiftyone-ood audit report: ... -->``): the
SHA-256 of the CSVs it vouches for and of everything after that line. A file at the report's path is the audit's
only while that mark matches (:func:`is_audit_report`); the CSV beside it only while the report lists its hash
(:func:`is_audit_csv`). Anything else there is the user's, and is never replaced (:func:`check_report_files`).
"""

import hashlib
import os
import re

from ..errors import OODInputError
from ..publish import name_limits


#: the report's first line, the package's mark (as ``save_figure`` marks its pages): the SHA-256 of the CSVs the
#: report vouches for, and the SHA-256 of those hashes plus everything after this line
_MARK = re.compile(rb"<!-- fiftyone-ood audit report: csv ((?:[0-9a-f]{64},?)*); sha256 ([0-9a-f]{64}) -->\n")


def csv_path_for(report_path):
    """The CSV of flagged samples written beside the report."""
    return os.path.splitext(report_path)[0] + "_flagged.csv"


def report_file_path(report_path):
    """The absolute path of the report file ``report_path`` names (``~`` expanded); refuses a value that is no file
    path: not a string, or ending with a path separator (a folder: it became a file of the folder's name)."""
    fix = "pass the HTML file to write, e.g. report_path='~/fiftyone/ood_reports/audit.html'"
    if not isinstance(report_path, (str, os.PathLike)):
        raise OODInputError(f"report_path={report_path!r} is not a file path; {fix}")
    text = os.fsdecode(os.fspath(report_path))
    if not text.strip() or "\0" in text:
        raise OODInputError(f"report_path={report_path!r} is not a file path; {fix}")
    if text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)):
        raise OODInputError(f"report_path={report_path!r} ends with a path separator: it names a folder; pass the "
                            f"HTML file to write, e.g. {os.path.join(text, 'audit.html')!r}")
    return os.path.abspath(os.path.expanduser(text))


#: the longest name publishing a file gives beside it, over the file's own (:mod:`ood_core.publish`: the earlier
#: file renamed aside to ``<name>.old-<12 hex>``; the temporary folder ``.<name>.tmp-<8 chars>`` is shorter)
_PUBLISH_EXTRA_BYTES = len(".old-") + 12


def _check_name_lengths(report_path):
    """Refuse a report or CSV name the file system cannot hold (with the names publishing gives beside it): found
    only when the report was published, after the audit had written its scores, flags and tags."""
    name_max, path_max = name_limits(os.path.dirname(report_path))
    for path in (report_path, csv_path_for(report_path)):
        name, size = os.path.basename(path), len(os.fsencode(os.path.basename(path))) + _PUBLISH_EXTRA_BYTES
        if size > name_max or len(os.fsencode(path)) + _PUBLISH_EXTRA_BYTES > path_max:
            raise OODInputError(
                f"report_path={report_path!r}: the file name {name!r} is too long for the file system (names of "
                f"at most {name_max - _PUBLISH_EXTRA_BYTES} bytes, paths of {path_max - _PUBLISH_EXTRA_BYTES}: the "
                "audit writes its files under names a little longer while it puts them in place; the CSV is "
                "'<name>_flagged.csv'). Pass a shorter report_path")


def _check_report_folder(report_path):
    """Refuse a report whose folder cannot be made or written to, without making it: a missing folder is made
    only when the report is written (:func:`.audit_report.publish_report`), so an audit refused by a later check leaves none."""
    folder = os.path.dirname(report_path)
    existing = folder
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OODInputError(f"report_path={report_path!r}: {existing!r} is a file, not a folder, so the report's "
                            f"folder {folder!r} cannot be created; pass a report_path in a folder, e.g. "
                            f"{os.path.join(os.path.dirname(existing), 'audit.html')!r}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OODInputError(f"report_path={report_path!r}: the folder {existing!r} is not writable, so the report "
                            f"{'cannot be written there' if existing == folder else 'folder cannot be created in it'}; "
                            "pass a report_path in a folder you can write to")


#: the endings of a report's name (an HTML page: a browser shows another as text, or not at all)
REPORT_SUFFIXES = (".html", ".htm")


def check_report_files(report_path):
    """Refuse a report path that is a folder, too long a name for the file system or not ending with
    :data:`REPORT_SUFFIXES`, or one (or the CSV path beside it) that holds something this package did not write,
    or that was changed since (:func:`_vouched_csvs`)."""
    if os.path.isdir(report_path):
        raise OODInputError(f"report_path={report_path!r} is a folder; pass the HTML file to write, e.g. "
                            f"{os.path.join(report_path, 'audit.html')!r}")
    _check_report_folder(report_path)
    _check_name_lengths(report_path)
    csv_path = csv_path_for(report_path)
    for path, ours in ((report_path, is_audit_report(report_path)), (csv_path, is_audit_csv(csv_path, report_path))):
        sibling = _sibling_report(csv_path, report_path) if path == csv_path and not ours else None
        if sibling and os.path.lexists(path):
            raise OODInputError(
                f"report_path={report_path!r}: its CSV {csv_path!r} is the CSV of the audit report {sibling!r}, "
                "whose name differs only in its ending (both write '<name>_flagged.csv'); the audit never replaces "
                f"another report's CSV. Pass {sibling!r} to redo that report, or a report_path of another name")
        if os.path.lexists(path) and not ours:
            raise OODInputError(
                f"{path!r} exists and is not a fiftyone-ood audit report (or its CSV of flagged samples) as the "
                "audit wrote it: it carries no mark of the audit, or it was changed after the audit wrote it (a "
                "CSV is the audit's while the unchanged report beside it vouches for it; files of versions "
                "before the mark count as yours). The audit never replaces a file it did not write. Pass another "
                "report_path (the CSV is written beside it as '<name>_flagged.csv'), or move that file away")
    if os.path.splitext(report_path)[1].lower() not in REPORT_SUFFIXES:
        raise OODInputError(
            f"report_path={report_path!r} does not end with '.html': the report is an HTML page, which browsers "
            "open by that ending (the CSV of flagged samples is written beside it as '<name>_flagged.csv'). Pass "
            f"e.g. {os.path.splitext(report_path)[0] + '.html'!r}, or {os.path.join(report_path, 'audit.html')!r} "
            "for a folder")


def _sibling_report(csv_path, report_path):
    """Another report beside ``report_path`` of the same name but another ending (``r.htm`` for ``r.html``, any
    case) that vouches for ``csv_path`` (both reports name the same CSV), or None."""
    folder, stem = os.path.split(os.path.splitext(report_path)[0])
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    for name in sorted(names):
        base, suffix = os.path.splitext(name)
        path = os.path.join(folder, name)
        if base == stem and suffix.lower() in REPORT_SUFFIXES and path != report_path and is_audit_csv(csv_path, path):
            return path
    return None


def marked(page, csv_hashes):
    """The report's bytes: the mark line, then the page."""
    body = page.encode("utf-8")
    listed = ",".join(csv_hashes).encode()
    digest = hashlib.sha256(listed + b"\n" + body).hexdigest().encode()
    return b"<!-- fiftyone-ood audit report: csv " + listed + b"; sha256 " + digest + b" -->\n" + body


def _vouched_csvs(path):
    """The SHA-256 of the CSVs the report at ``path`` vouches for; None when it is not a report of the audit
    exactly as written: no mark, a mark of another content (edited since), a link, or not a file.

    Why a hash and not a title or header: a user's notes titled like the report, or a CSV of theirs with the same
    columns, carry no valid hash by accident, and any edit of a written report changes its hash. The CSV holds no
    mark (a comment line would break ``pandas.read_csv`` and the csv module): the report, written just before
    it, lists its hash, and also the earlier CSV's when that was the audit's, so a crash between the two files
    leaves both recognised."""
    data = read_regular_file(path)
    found = _MARK.match(data) if data is not None else None
    if found is None:
        return None
    listed, body = found.group(1), data[found.end():]
    if hashlib.sha256(listed + b"\n" + body).hexdigest().encode() != found.group(2):
        return None
    return {h for h in listed.decode().split(",") if h}


def is_audit_report(path):
    """Whether ``path`` is a report of an audit exactly as written (its mark and hash: :func:`_vouched_csvs`)."""
    return _vouched_csvs(path) is not None


def is_audit_csv(path, report_path):
    """Whether ``path`` is a CSV the report at ``report_path`` vouches for, unchanged."""
    vouched = _vouched_csvs(report_path)
    data = read_regular_file(path) if vouched else None
    return data is not None and hashlib.sha256(data).hexdigest() in vouched


def written_csv_hash(report_path):
    """The SHA-256 of the CSV written with the report at ``report_path`` (its mark lists it first), or None."""
    data = read_regular_file(report_path) if is_audit_report(report_path) else None
    if data is None:
        return None
    return _MARK.match(data).group(1).decode().split(",")[0] or None


def read_regular_file(path):
    """The bytes of a regular file (never through a link), or None."""
    if os.path.islink(path) or not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None
