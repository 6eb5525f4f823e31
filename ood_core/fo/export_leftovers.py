"""What a killed export leaves beside its folder, and putting it right.

An export (:func:`.audit_export.export_flagged`) writes the new export into ``<folder>.tmp-<token>``, moves the
earlier one aside to ``<folder>.old-<token>``, renames the new one into place and then deletes the earlier one. A
process killed on the way leaves one or both folders beside the export folder (and, killed between the two
renames, no export folder at all). Exports into one folder take turns (:func:`export_lock`), so while the lock is
held, such folders are a dead export's; :func:`recover_export_dir` then

- puts the earlier export back when no folder is in place (the kill came between the two renames);
- deletes the others, but only those provably this package's: a staged folder holding :data:`.CLAIM` with its
  name's token (written right after the folder was made) or the marker of a complete export listing every file
  in it, unchanged; an earlier export moved aside that is such an export, or empty (an empty folder the export
  replaced). A folder of that name holding anything else is the user's and is left as it is.

The next export into the folder, and ``ood.repair_ood_runs`` (for every folder an audit's record names, and the
folder an audit killed during its export journaled on its score run, :func:`journal_export`), do this.
"""

import contextlib
import os
import re
import shutil

from ..errors import BackendError, OODInputError
from . import coordination, runs

#: the entry of an audit's score run naming the folder the audit exports to (read by ``repair_ood_runs`` when the
#: audit was killed before its record)
EXPORT_JOURNAL = "audit_export_dir"


def _lock_key(path):
    return f"ood_export:{path}"


@contextlib.contextmanager
def export_lock(export_dir, path, timeout=120.0):
    """Hold the lock of exports into the real folder ``path`` (waiting up to ``timeout`` s for another export)."""
    try:
        with coordination.locked(_lock_key(path), timeout=timeout):
            yield
    except BackendError:
        raise OODInputError(f"export_dir={export_dir!r}: another process has been exporting into this folder for "
                            f"{timeout:.0f} s; wait for it to finish, or pass another export_dir") from None


def journal_export(samples, found, path):
    """Name ``path`` on the audit's score run: an audit killed before its record leaves it for ``repair_ood_runs``."""
    key = found["runs"].get("ood")
    if key and key in runs.list_ood_runs(samples):
        runs.update_run(samples, key, **{EXPORT_JOURNAL: path})


def journaled_export(samples, run_key):
    """The export folder the run ``run_key`` names (:func:`journal_export`), or None."""
    config = samples._dataset.get_run_info(run_key).config
    return getattr(config, EXPORT_JOURNAL, None)


def leftovers(path):
    """``[(kind, token, folder)]``: the folders a killed export into ``path`` may have left (``tmp`` / ``old``),
    by name only (:func:`recover_export_dir` judges them)."""
    parent, name = os.path.split(path)
    pattern = re.compile(re.escape(name) + r"\.(tmp|old)-([0-9a-f]{12})")
    try:
        entries = os.listdir(parent)
    except OSError:
        return []
    out = []
    for entry in sorted(entries):
        match = pattern.fullmatch(entry)
        folder = os.path.join(parent, entry)
        if match and os.path.isdir(folder) and not os.path.islink(folder):
            out.append((match.group(1), match.group(2), folder))
    return out


def _is_staged_export(folder, token):
    """Whether the staged folder is provably this package's: its claim holds its token, or its marker lists it."""
    from .audit_export import CLAIM, is_export_or_empty

    claim = os.path.join(folder, CLAIM)
    if os.path.isfile(claim) and not os.path.islink(claim):
        try:
            with open(claim, encoding="utf-8") as f:
                return f.read(64).strip() == token
        except (OSError, ValueError):
            return False
    return _has_marker(folder) and is_export_or_empty(folder)


def _has_marker(folder):
    from .audit_export import MARKER

    marker = os.path.join(folder, MARKER)
    return os.path.isfile(marker) and not os.path.islink(marker)


def recover_export_dir(path, locked=False):
    """Put right what killed exports into the real folder ``path`` left (see the module): returns
    ``{"restored": folder or None, "removed": [folders]}``. Without ``locked`` (the caller holds
    :func:`export_lock`), the lock is taken briefly; an export running meanwhile leaves everything as it is."""
    if not locked:
        try:
            with coordination.locked(_lock_key(path), timeout=2.0):
                return recover_export_dir(path, locked=True)
        except BackendError:
            return {"restored": None, "removed": []}
    from .audit_export import is_export_or_empty

    done = {"restored": None, "removed": []}
    found = leftovers(path)
    olds = sorted((f for kind, _, f in found if kind == "old"), key=lambda f: -os.stat(f).st_mtime_ns)
    for folder in olds:
        if not is_export_or_empty(folder):
            continue  # the user's (or changed since): left as it is
        if not os.path.lexists(path):  # killed between moving it aside and putting the new export in place
            os.rename(folder, path)
            done["restored"] = folder
            continue
        shutil.rmtree(folder)
        done["removed"].append(folder)
    for kind, token, folder in found:
        if kind == "tmp" and _is_staged_export(folder, token):
            shutil.rmtree(folder)
            done["removed"].append(folder)
    return done


def recover_recorded_exports(samples, run_keys=()):
    """:func:`recover_export_dir` for every folder an audit record of ``samples``' dataset names and the folders
    the runs ``run_keys`` journaled; returns ``{folder: what was done}`` of those where something was."""
    folders = set()
    for key in runs.list_ood_runs(samples, kind="audit"):
        named = getattr(samples._dataset.get_run_info(key).config, "export_dir", None)
        if named:
            folders.add(os.path.realpath(os.path.expanduser(named)))
    for key in run_keys:
        if key in runs.list_ood_runs(samples):
            named = journaled_export(samples, key)
            if named:
                folders.add(named)
    out = {}
    for folder in sorted(folders):
        done = recover_export_dir(folder)
        if done["restored"] or done["removed"]:
            out[folder] = done
    return out
