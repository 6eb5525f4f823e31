"""The one atomic, locked commit of field writes and their run record.

Every write of the package ends here (through
:func:`ood_core.fo.runs.write_and_record`). The guarantee: after the call,
after an exception at any step, or after the process is killed at any point
(followed by the next call on the dataset, or :func:`repair`), every target
field holds either its complete old values or its complete new values, and
the run record matches them.

Steps, with the journal document (collection ``ood_plugin_commits``) updated
before each state change so a crash can be undone or finished:

1. **stage** (no lock): new values go to fresh temporary fields
   ``tmp_ood_<hex>``. Overwriting from a view first copies the old values, so
   samples outside the view keep theirs.
2. under the per-field lease locks (:mod:`.coordination`), with the dataset
   reloaded so concurrent writers are seen: re-check that nothing appeared
   meanwhile (without ``overwrite``);
3. **move aside**: each existing target, and each field of the replaced run
   (or of the runs dropped with it, ``drop_runs``) that the new run does not
   write, is renamed to ``tmp_ood_old_<hex>``, and an existing run record and
   each dropped run's record to ``tmp_ood_backup_<hex>`` (never deleted first);
4. **rename** the staged fields to the targets;
5. **record** the new run (``register``);
6. **follow up**: the journaled operations outside fields and records (:mod:`.followups`: tags and saved
   views of removed runs, the audits that listed them), computed before step 3;
7. **drop** the moved-aside copies and the journal.

Removing runs (:func:`remove_runs`) is the same commit without new fields: the records and the fields only they
list are moved aside, and dropped once every one of them is aside.

A failure in steps 3-5 undoes them in reverse (:func:`_roll_back`). A journal
left by a killed process is rolled back (crash before step 5 completed) or
forward (after it) by :func:`repair`, which every write calls first.

A clone of the dataset made while a commit was in flight or left half-way (``dataset.clone()``, ``view.clone()``)
copies its temporary fields: :mod:`.commit_clones` keeps the journal for it and settles the copy by its own state.
"""

import logging
import uuid

from ..errors import OODInputError
from .commit_journal import journal
from .documents import declared
from .names import BACKUP_RUN_PREFIX, TMP_PREFIX, is_internal

logger = logging.getLogger(__name__)

#: seconds to wait for another writer of the same field before giving up
LOCK_TIMEOUT = 600.0


def _drop(dataset, path):
    """Delete a field of this package; when the schema lost it (FiftyOne saves a dataset's field list from each
    process's copy, so a concurrent save elsewhere can drop an entry), remove its key from the documents."""
    from .documents import unset_key

    if declared(dataset, path):
        dataset.delete_sample_field(path)
    else:
        unset_key(dataset, path)


def _tmp_path(path, tag=""):
    prefix, _, _ = path.rpartition(".")
    leaf = f"{TMP_PREFIX}{tag}{uuid.uuid4().hex[:10]}"
    return f"{prefix}.{leaf}" if prefix else leaf


# --------------------------------------------------------------------------- staging


def reserve_tmp_path(path):
    """A fresh temporary path next to ``path`` (same parent label list for object attributes)."""
    return _tmp_path(path)


def stage_values(samples, path, values, field_type=None, *, tmp, keep_others=False):
    """Write ``values`` to the temporary field ``tmp``; returns it.

    ``values``: a dict sample id -> value, one entry per sample of ``samples`` (a top-level field; few distinct
    scalars, flags, are written in bulk: :func:`.bulk_values.set_by_id`), or an
    :class:`.bulk_values.ObjectValues` (object attributes, by object id): written by id, so a view whose order
    changes between queries still gets each value on its own item. A plain list is written by position, aligned
    with the view as it is read again here (only safe for a view of stable order; prefer ids: items.values_by_key).
    With ``keep_others``, ``tmp`` starts as a copy of ``path``, so the samples
    (objects) outside ``samples`` keep their current values. The caller holds
    the lease lock of ``tmp`` until the commit ends, so :func:`repair` in
    another process never mistakes it for an orphan.
    """
    from . import coordination
    from .bulk_values import write_by_id

    dataset = samples._dataset
    try:
        with coordination.schema_lock(dataset):  # declaring a field changes the dataset's schema
            dataset.reload()
            if keep_others and declared(dataset, path):
                dataset.clone_sample_field(path, tmp)
            elif field_type is not None:
                dataset.add_sample_field(tmp, field_type)
            if not write_by_id(samples, tmp, values):
                samples.set_values(tmp, values)
    except BaseException:
        discard(dataset, [tmp])
        raise
    return tmp


def discard(dataset, paths):
    """Delete temporary fields that exist (best effort, in order)."""
    from . import coordination

    with coordination.schema_lock(dataset):
        dataset.reload()
        for path in paths:
            _drop(dataset, path)


# --------------------------------------------------------------------------- commit


def commit(samples, staged, run_key, register, *, overwrite, check=None, drop_runs=(), cleanup=None,
           keep_fields=False, reads=()):
    """Replace the targets by their staged fields and record the run, all or nothing.

    Args:
        staged: ``[(staged temporary path, target path)]``.
        register: ``f()`` that records the new run under ``run_key``.
        check: ``f(dataset)`` re-validating under the lock (raises to refuse).
        drop_runs: keys of other runs of this package that the new run replaces (an audit redone without the
            label-issue runs of the earlier one): their records and the fields only they list are removed in
            the same commit (moved aside, dropped after the new record is in place, restored on failure).
        cleanup: ``f(dataset, dropped fields, dropped run keys)`` returning the :mod:`.followups` operations to
            carry out once the commit is recorded; called under the locks, before anything moves, and journaled,
            so a crash after the commit is finished by the next call's repair.
        keep_fields: drop the records of ``drop_runs`` (and of a replaced ``run_key``) but none of their fields.
        reads: fields the new run reads: never dropped with the run it replaces.

    Returns:
        ``(dropped fields, dropped run keys)``: what the commit removed besides replacing the targets.
    """
    from . import coordination

    dataset = samples._dataset
    locks = sorted({coordination.job_key(dataset, t) for _, t in staged}
                   | {coordination.job_key(dataset, key) for key in (run_key, *drop_runs)})
    with _all_locked(locks), coordination.schema_lock(dataset):
        dataset.reload()
        if check is not None:
            check(dataset)
        drop_runs = [key for key in drop_runs if key != run_key and dataset.has_run(key)]
        targets = [t for _, t in staged]
        dropped = [] if keep_fields else dropped_fields(dataset, run_key, targets, also=drop_runs, replace=overwrite,
                                                        keep=[r for r in reads if r])
        ops = cleanup(dataset, list(dropped), list(drop_runs)) if cleanup is not None else []
        entry = _open_journal(dataset, staged, run_key, dropped, drop_runs, ops)
        try:
            _move_aside(dataset, entry, overwrite)
            for tmp, target in staged:
                dataset.rename_sample_field(tmp, target)
            register()
            _set_phase(entry, "recorded")
        except BaseException:
            _roll_back(dataset, entry)
            raise
        try:
            _roll_forward(dataset, entry)
        except Exception:  # the new state is committed; the journal lets the next call finish the cleanup
            logger.warning("committed %r, but finishing the commit (its follow-ups, removing the old copies) "
                           "failed; the next write on this dataset (or ood.repair_ood_runs) finishes it", run_key,
                           exc_info=True)
    return list(dropped), list(drop_runs)


class _all_locked:
    """Hold several coordination locks (acquired in sorted order, so writers cannot deadlock)."""

    def __init__(self, keys):
        self.keys, self.stack = keys, None

    def __enter__(self):
        import contextlib

        from . import coordination

        self.stack = contextlib.ExitStack()
        try:
            for key in self.keys:
                self.stack.enter_context(coordination.locked(key, timeout=LOCK_TIMEOUT))
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc):
        return self.stack.__exit__(*exc)


def remove_runs(samples, run_keys, *, delete_fields=True, cleanup=None):
    """Delete the records of ``run_keys`` and (``delete_fields``) the fields only they list, all or nothing.

    The journaled commit without new fields: records and fields are moved aside, and only when every one of them
    is aside are they dropped, so a failure or a killed process (then the next call, or :func:`repair`) leaves
    all of them or none. A listed field that is no longer the run's (:mod:`.ownership`) stays. ``cleanup`` as in
    :func:`commit`. Returns ``(deleted fields, deleted run keys)``.
    """
    first, *others = run_keys
    dataset = samples._dataset

    def check(reloaded):
        if not any(reloaded.has_run(key) for key in run_keys):
            raise OODInputError(f"runs {list(run_keys)} are not on dataset {dataset.name!r} (deleted meanwhile by "
                                "another process?); list the runs with ood.list_ood_runs(dataset)")

    fields, dropped = commit(samples, [], first, lambda: None, overwrite=True, check=check, drop_runs=others,
                             cleanup=cleanup, keep_fields=not delete_fields)
    return fields, [key for key in run_keys if key in dropped or key == first]


def dropped_fields(dataset, run_key, targets, also=(), replace=True, keep=()):
    """Fields the run being replaced wrote that the new run (writing ``targets``) does not (another method, fewer
    outputs), and the fields of the runs ``also`` dropped with it: they go with the old records, moved aside and
    dropped like the replaced fields (unless a run that stays lists them, or the field is no longer the one the run
    wrote: :mod:`.ownership`). ``replace=False``: ``run_key`` is not being replaced (a new run), only ``also``
    goes. ``keep``: fields the new run reads, which stay (they then belong to no run)."""
    from .ownership import run_owns

    going = [key for key in ((run_key,) if replace else ()) + tuple(also) if dataset.has_run(key)]
    if not going:
        return []
    new = set(targets) | set(keep)
    others = {p for key in dataset.list_runs() if key not in going
              for p in (getattr(dataset.get_run_info(key).config, "fields", None) or [])}
    old = [p for key in going for p in (getattr(dataset.get_run_info(key).config, "fields", None) or [])
           if run_owns(dataset, key, p)]
    old = list(dict.fromkeys(old))
    return [p for p in old if p not in new and p not in others and not is_internal(p) and declared(dataset, p)]


def _open_journal(dataset, staged, run_key, dropped=(), drop_runs=(), cleanup=()):
    """The journal entry of a commit; a dropped field is a target with nothing staged (``staged`` None), a dropped
    run a ``dropped_runs`` entry with the key its record is moved aside to."""
    entry = {
        "_id": uuid.uuid4().hex,
        "dataset_id": str(dataset._doc.id),
        "run_key": run_key,
        "targets": [{"target": t, "staged": s, "existed": declared(dataset, t), "backup": _tmp_path(t, "old_")}
                    for s, t in [*staged, *((None, p) for p in dropped)]],
        "had_run": dataset.has_run(run_key),
        "backup_run": _backup_run_key(),
        "dropped_runs": [{"run_key": key, "backup_run": _backup_run_key()} for key in drop_runs],
        "cleanup": list(cleanup),  # :mod:`.followups` operations, carried out when the commit rolls forward
        "phase": "staged",
    }
    import pymongo.errors

    try:
        journal().insert_one(entry)
    except pymongo.errors.DocumentTooLarge:
        raise OODInputError(
            f"run {run_key!r} on dataset {dataset.name!r} would change the tags of more items than one journal "
            "entry holds (16 MB, about a million ids); nothing was changed. Flagging: flag fewer items at once (a "
            "view, a stricter rule) or pass tag=None; deleting: delete_fields=False keeps the fields and tags"
        ) from None
    return entry


def _backup_run_key():
    return f"{BACKUP_RUN_PREFIX}{uuid.uuid4().hex[:12]}"


def _dropped_runs(entry):
    return entry.get("dropped_runs") or []  # journals written before runs could be dropped have none


def _set_phase(entry, phase):
    entry["phase"] = phase
    journal().update_one({"_id": entry["_id"]}, {"$set": {"phase": phase}})


def _move_aside(dataset, entry, overwrite):
    for t in entry["targets"]:
        if t["existed"]:
            if not overwrite and t["staged"]:
                raise OODInputError(f"field {t['target']!r} appeared while writing; pass overwrite=True to replace it")
            dataset.rename_sample_field(t["target"], t["backup"])
    if entry["had_run"]:
        if not overwrite:
            raise OODInputError(f"run key {entry['run_key']!r} appeared while writing; pass overwrite=True")
        dataset.rename_run(entry["run_key"], entry["backup_run"])
    for run in _dropped_runs(entry):
        dataset.rename_run(run["run_key"], run["backup_run"])


def _roll_back(dataset, entry):
    """Undo a commit that did not reach "recorded": old fields and old run record come back."""
    dataset.reload()
    for t in entry["targets"]:
        if t["staged"] and declared(dataset, t["staged"]):
            dataset.delete_sample_field(t["staged"])  # never renamed: the target is still the old one
        elif declared(dataset, t["backup"]) or not t["existed"]:
            if declared(dataset, t["target"]) or t["staged"]:
                _drop(dataset, t["target"])  # the new values (also when the schema lost them)
        if t["staged"]:
            _drop(dataset, t["staged"])  # values the schema lost stay in documents otherwise
        if declared(dataset, t["backup"]):
            dataset.rename_sample_field(t["backup"], t["target"])
    if dataset.has_run(entry["backup_run"]):
        if dataset.has_run(entry["run_key"]):
            dataset.delete_run(entry["run_key"])
        dataset.rename_run(entry["backup_run"], entry["run_key"])
    elif not entry["had_run"] and dataset.has_run(entry["run_key"]):
        dataset.delete_run(entry["run_key"])  # a record this commit started
    for run in _dropped_runs(entry):
        if dataset.has_run(run["backup_run"]) and not dataset.has_run(run["run_key"]):
            dataset.rename_run(run["backup_run"], run["run_key"])
    _end_journal(entry)


def _roll_forward(dataset, entry):
    """Finish a commit whose new run is recorded: its follow-up operations, then drop the moved-aside copies."""
    from .followups import apply

    apply(dataset, entry.get("cleanup"))  # journals written before follow-ups existed have none
    for t in entry["targets"]:
        if t["existed"] or declared(dataset, t["backup"]):  # only an existing target was moved aside
            _drop(dataset, t["backup"])
        if t["staged"] and declared(dataset, t["staged"]):
            dataset.delete_sample_field(t["staged"])
    for key in [entry["backup_run"], *(run["backup_run"] for run in _dropped_runs(entry))]:
        if dataset.has_run(key):
            dataset.delete_run(key)
    _end_journal(entry)


def _end_journal(entry):
    """Drop the journal entry of an ended commit; kept for a clone that copied it in flight (:mod:`.commit_clones`)."""
    from .commit_clones import keep_if_copied

    keep_if_copied(entry)
    journal().delete_one({"_id": entry["_id"]})


def rename_run(dataset, run_key, new_run_key, ops):
    """Rename a run record and carry out ``ops`` (:mod:`.followups`: the references to it), all or nothing, also
    after a crash: the journal entry written first lets the next call's repair finish the references once the
    record has its new key, or drop the entry when it has not (:func:`_settle_rename`)."""
    from . import coordination

    locks = sorted({coordination.job_key(dataset, key) for key in (run_key, new_run_key)})
    with _all_locked(locks), coordination.schema_lock(dataset):
        dataset.reload()
        if dataset.has_run(new_run_key) or not dataset.has_run(run_key):
            raise OODInputError(f"cannot rename run {run_key!r} to {new_run_key!r} on dataset {dataset.name!r}: "
                                "one of them changed meanwhile (another process); list the runs and try again")
        entry = {"_id": uuid.uuid4().hex, "dataset_id": str(dataset._doc.id), "kind": "rename", "run_key": new_run_key,
                 "old_run_key": run_key, "targets": [], "had_run": False, "backup_run": _backup_run_key(),
                 "dropped_runs": [], "cleanup": list(ops), "phase": "staged"}
        journal().insert_one(entry)
        try:
            dataset.rename_run(run_key, new_run_key)
        except BaseException:
            _settle_rename(dataset, entry)
            raise
        _settle_rename(dataset, entry)


def _settle_rename(dataset, entry):
    """Finish a rename whose record has its new key (its references follow), or forget one that did not happen."""
    dataset.reload()
    if entry["phase"] == "recorded" or (dataset.has_run(entry["run_key"])
                                        and not dataset.has_run(entry["old_run_key"])):
        _set_phase(entry, "recorded")
        try:
            _roll_forward(dataset, entry)
        except Exception:
            logger.warning("renamed run %r to %r, but updating the references to it failed; the next write on this "
                           "dataset (or ood.repair_ood_runs) finishes it", entry["old_run_key"], entry["run_key"],
                           exc_info=True)
    else:
        journal().delete_one({"_id": entry["_id"]})


# --------------------------------------------------------------------------- repair


def repair(dataset):
    """Finish or undo commits a killed process left on ``dataset``; drop orphan temporary fields.

    Safe to call any time: a commit in progress in another live process holds
    its field locks, and its journal is left alone. Returns a dict of what was
    repaired (``rolled_back``, ``rolled_forward``, ``orphans_removed``).
    """
    from . import coordination

    from .commit_clones import adopt_journals, keep_settled, rolls_forward

    done = {"rolled_back": 0, "rolled_forward": 0, "orphans_removed": 0}
    with coordination.schema_lock(dataset):
        names = set(internal_fields(dataset)) | {k for k in dataset.list_runs() if k.startswith(BACKUP_RUN_PREFIX)}
        adopt_journals(dataset, names - _claimed(dataset))  # a clone's copies of another dataset's commit
    for entry in list(journal().find({"dataset_id": str(dataset._doc.id)})):
        keys = (entry["run_key"], *(run["run_key"] for run in _dropped_runs(entry)), entry.get("old_run_key"))
        locks = sorted({coordination.job_key(dataset, t["target"]) for t in entry["targets"]}
                       | {coordination.job_key(dataset, key) for key in keys if key is not None})
        with _all_locked(locks), coordination.schema_lock(dataset):
            if journal().find_one({"_id": entry["_id"]}) is None:
                continue  # finished by its owner meanwhile
            dataset.reload()
            if entry.get("kind") == "rename":  # never rolled back by deleting the record under its new key
                _settle_rename(dataset, entry)
                done["rolled_forward" if entry["phase"] == "recorded" else "rolled_back"] += 1
                continue
            keep_settled(entry)  # before it is settled: a clone of the crashed state can still follow it
            if rolls_forward(dataset, entry):
                _roll_forward(dataset, entry)
                done["rolled_forward"] += 1
            else:
                _roll_back(dataset, entry)
                done["rolled_back"] += 1
    with coordination.schema_lock(dataset):
        done["orphans_removed"] = _remove_orphans(dataset)
    return done


def _remove_orphans(dataset):
    """Temporary fields and backup runs that no journal claims and no live writer holds.

    A writer holds the lease lock of each temporary field from staging to the
    end of its commit, so only leftovers of killed processes are removed.
    Partial fields of resumable extractions belong to their embeddings run.
    """
    from . import coordination

    dataset.reload()
    candidates = internal_fields(dataset)  # read before the journals: a field seen here whose commit is
    claimed = _claimed(dataset)            # in flight is claimed by a journal written before it existed
    removed = 0
    for path in candidates:
        if path in claimed or path.rpartition(".")[2].startswith(f"{TMP_PREFIX}partial_"):
            continue
        if coordination.is_held(coordination.job_key(dataset, path)):
            continue
        dataset.delete_sample_field(path)
        removed += 1
    for key in dataset.list_runs():
        if key.startswith(BACKUP_RUN_PREFIX) and is_internal(key) and key not in claimed:
            dataset.delete_run(key)
            removed += 1
    return removed


def _claimed(dataset):
    """Temporary fields and backup runs that a journal (a commit in flight or left by a killed process) names."""
    claimed = set()
    for entry in journal().find({"dataset_id": str(dataset._doc.id)}):
        claimed.update(p for t in entry["targets"] for p in (t["staged"], t["backup"]) if p)
        claimed.add(entry["backup_run"])
        claimed.update(run["backup_run"] for run in _dropped_runs(entry))
    return claimed


def remove_stray_keys(dataset):
    """Remove the package's temporary keys that documents hold but the schema does not declare; returns how many.

    They are left when a write landed in a temporary field another process had just renamed, or when a
    concurrent save elsewhere dropped the field from the schema: FiftyOne then fails to iterate the samples
    (``FieldDoesNotExist``). Keys of a commit in flight (claimed by a journal, or locked by a live writer) stay.
    """
    from . import coordination
    from .documents import stray_internal_keys, unset_key

    partial = f"{TMP_PREFIX}partial_"
    removed = 0
    with coordination.schema_lock(dataset):
        claimed = _claimed(dataset)
        for path in stray_internal_keys(dataset):
            prefix, _, leaf = path.rpartition(".")
            owner = leaf[len(partial):] if leaf.startswith(partial) else leaf  # a partial field's target
            owner = f"{prefix}.{owner}" if prefix else owner
            if path in claimed or any(coordination.is_held(coordination.job_key(dataset, p)) for p in (path, owner)):
                continue
            unset_key(dataset, path)
            removed += 1
    return removed


def internal_fields(dataset):
    """Paths of the package's temporary fields on ``dataset`` (top level and object attributes)."""
    return [path for path in dataset.get_field_schema(flat=True) if is_internal(path)]
