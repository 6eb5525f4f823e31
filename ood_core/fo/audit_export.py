"""The audit's export of its flagged samples (media + labels, a FiftyOne dataset) into a folder of its own.

FiftyOne's ``export(..., overwrite=True)`` deletes the whole export folder first, so exporting into a folder the
user named could delete their files. The export goes only into a new folder, an empty one, or one this package
exported to before (it holds :data:`MARKER`); it is written beside the folder first and swapped in when complete,
so a failure or a crash never leaves half an export in place of the earlier one.
"""

import os
import shutil
import uuid

from ..errors import OODInputError

#: the file that marks a folder as an export of this package (which a later export may replace)
MARKER = ".fiftyone_ood_export"


def check_export_dir(export_dir):
    """The absolute folder to export into; refuses a file, a folder holding anything but an earlier export of
    this package, or a folder whose parent cannot be written."""
    path = os.path.abspath(os.path.expanduser(os.fspath(export_dir)))
    if os.path.exists(path) and not os.path.isdir(path):
        raise OODInputError(f"export_dir={export_dir!r} is a file, not a folder; pass a new folder to export to")
    if os.path.isdir(path) and os.listdir(path) and not os.path.isfile(os.path.join(path, MARKER)):
        raise OODInputError(
            f"export_dir={export_dir!r} already holds files that fiftyone-ood did not export; an export replaces "
            "its folder's contents, so it writes only into a new or empty folder or one it exported to before. "
            f"Pass a new folder (e.g. {os.path.join(path, 'ood_audit_export')!r})")
    parent = _existing_parent(path)
    if not os.access(parent, os.W_OK):
        raise OODInputError(f"export_dir={export_dir!r}: {parent!r} is not writable; pass a folder you can write to")
    return path


def _existing_parent(path):
    parent = os.path.dirname(path)
    while parent and not os.path.isdir(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    return parent or os.sep


def export_flagged(samples, ids, export_dir):
    """Export the samples ``ids`` of ``samples`` into ``export_dir`` (checked again right before writing);
    returns the folder."""
    import fiftyone as fo

    path = check_export_dir(export_dir)
    token = uuid.uuid4().hex[:12]
    staged, old = f"{path}.tmp-{token}", f"{path}.old-{token}"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        samples.select(sorted(ids)).export(export_dir=staged, dataset_type=fo.types.FiftyOneDataset)
        with open(os.path.join(staged, MARKER), "w", encoding="utf-8") as f:
            f.write(f"exported by fiftyone-ood from dataset {samples._dataset.name!r}; a later export replaces it\n")
        if os.path.isdir(path):
            os.rename(path, old)  # an earlier export (or an empty folder): kept until the new one is in place
        os.rename(staged, path)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        if os.path.isdir(old) and not os.path.exists(path):
            os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return path
