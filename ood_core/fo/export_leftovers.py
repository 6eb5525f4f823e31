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

The next export into the folder, and ``ood.repair_ood_runs`` (for every folder an audit's record names, the
folders runs journaled, :func:`journal_export`, and those of the dataset's staged tokens), do this; so does deleting
an audit or its runs (:func:`recover_run_exports`, before the records that name the folder go).

A kill between making the staged folder and writing its claim leaves it empty and unclaimed: every staged folder's
token is written into the database first (:func:`stage`, collection :data:`STAGING`), so an EMPTY staged folder of
such a token is ours too (nothing in it to lose); an empty one of another token may be the user's and stays.
Folders are deleted with their proof last (:func:`remove_ours`): a kill half-way leaves them provably ours.
"""

import contextlib
import datetime
import os
import re
import shutil

from . import coordination
from ..errors import BackendError, OODInputError
from .run_records import list_ood_runs, update_run

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


#: the database collection of staged exports' tokens, ``{"path", "token", "dataset_id", "at"}``: written before the
#: staged folder is made, deleted once no folder of the token is left beside ``path``
STAGING = "ood_plugin_export_staging"


def _staging():
    import fiftyone.core.odm as foo

    return foo.get_db_conn()[STAGING]


def stage(samples, path, token):
    """Record that an export into ``path`` is about to make ``<path>.tmp-<token>`` (before it makes it)."""
    _staging().insert_one({"path": path, "token": token, "dataset_id": str(samples._dataset._doc.id),
                           "at": datetime.datetime.now(datetime.timezone.utc)})


def unstage(path, token, force=False):
    """Forget the staged token once neither ``<path>.tmp-<token>`` nor ``<path>.old-<token>`` is left (``force``:
    at once, e.g. when the staged folder could not be made: a folder of that name is someone else's)."""
    if force or not any(os.path.lexists(f"{path}.{kind}-{token}") for kind in ("tmp", "old")):
        _staging().delete_many({"path": path, "token": token})


def _staged_tokens(path):
    return {doc["token"] for doc in _staging().find({"path": path}, {"token": 1})}


def remove_ours(folder, ignore_errors=False):
    """Delete a folder judged this package's so that a kill half-way leaves it provably ours: its entries first,
    then the folder with its marker and claim (an emptied staged folder of a staged token, or an emptied earlier
    export, is still ours)."""
    from .export_files import CLAIM, MARKER

    try:
        for name in os.listdir(folder):
            entry = os.path.join(folder, name)
            if name in (MARKER, CLAIM):
                continue
            if os.path.isdir(entry) and not os.path.islink(entry):
                shutil.rmtree(entry)
            else:
                os.remove(entry)
        shutil.rmtree(folder)  # now nothing but its proof
    except OSError:
        if not ignore_errors:
            raise


def journal_export(samples, found, path, entry=EXPORT_JOURNAL):
    """Name ``path`` on the audit's score run (as its config's ``entry``): an audit killed before its record leaves
    it for ``repair_ood_runs`` (the export folder; the report path uses another ``entry``)."""
    key = found["runs"].get("ood")
    if key and key in list_ood_runs(samples):
        update_run(samples, key, **{entry: path})


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
    from .export_files import CLAIM, is_export_or_empty

    claim = os.path.join(folder, CLAIM)
    if os.path.isfile(claim) and not os.path.islink(claim):
        try:
            with open(claim, encoding="utf-8") as f:
                return f.read(64).strip() == token
        except (OSError, ValueError):
            return False
    return _has_marker(folder) and is_export_or_empty(folder)


def _is_empty(folder):
    try:
        return not os.listdir(folder)
    except OSError:
        return False


def _has_marker(folder):
    from .export_files import MARKER

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
    from .export_files import is_export_or_empty

    done = {"restored": None, "removed": []}
    found = leftovers(path)
    tokens = _staged_tokens(path)
    olds = sorted((f for kind, _, f in found if kind == "old"), key=lambda f: -os.stat(f).st_mtime_ns)
    for folder in olds:
        if not is_export_or_empty(folder):
            continue  # the user's (or changed since): left as it is
        if not os.path.lexists(path):  # killed between moving it aside and putting the new export in place
            os.rename(folder, path)
            done["restored"] = folder
            continue
        remove_ours(folder)
        done["removed"].append(folder)
    for kind, token, folder in found:
        if kind == "tmp" and (_is_staged_export(folder, token) or (token in tokens and _is_empty(folder))):
            remove_ours(folder)
            done["removed"].append(folder)
    for token in tokens:  # the staged tokens whose folders are all gone (or never made)
        unstage(path, token)
    return done


def recover_recorded_exports(samples, run_keys=()):
    """:func:`recover_export_dir` for every folder an audit record of ``samples``' dataset names, every folder a run
    of it journaled (``run_keys``: kept for callers naming the runs of interrupted audits; every run is read) and
    every folder of its staged tokens; returns ``{folder: what was done}`` of those where something was."""
    dataset = samples._dataset
    folders = set()
    for key in list_ood_runs(samples):
        folders |= _named_folders(dataset, key)
    folders |= {doc["path"] for doc in _staging().find({"dataset_id": str(dataset._doc.id)}, {"path": 1})}
    return _recover_all(folders)


def recover_run_exports(samples, run_keys):
    """Before the runs ``run_keys`` are deleted: :func:`recover_export_dir` for the folders they name (an audit's
    ``export_dir`` and the folders its runs journaled; a run's journaled folder), while a record still names them.
    The export folder itself is the user's result and stays; returns ``{folder: what was done}``."""
    from .links import audit_runs_of

    dataset = samples._dataset
    folders, present = set(), set(list_ood_runs(samples))
    for key in run_keys:
        if key not in present:
            continue
        folders |= _named_folders(dataset, key)
        if getattr(dataset.get_run_info(key).config, "kind", None) == "audit":
            for run in audit_runs_of(dataset, key).values():
                folders |= _named_folders(dataset, run) if run in present else set()
    return _recover_all(folders)


def _named_folders(dataset, key):
    """The real export folders the run ``key``'s record names: an audit's ``export_dir``, a run's journaled one."""
    config = dataset.get_run_info(key).config
    named = [getattr(config, "export_dir", None), getattr(config, EXPORT_JOURNAL, None)]
    return {os.path.realpath(os.path.expanduser(p)) for p in named if isinstance(p, str) and p}


def _recover_all(folders):
    out = {}
    for folder in sorted(folders):
        done = recover_export_dir(folder)
        if done["restored"] or done["removed"]:
            out[folder] = done
    return out
