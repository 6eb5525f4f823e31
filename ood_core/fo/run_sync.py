"""A held dataset's runs as the database holds them now, whatever another process did meanwhile.

FiftyOne reads a dataset's run map (key -> run record) and the records themselves once per load. Another process
(a second notebook, the App, a delegated operator) changes them in two ways: it records, deletes, renames or
replaces a run, which changes the map; or it changes a record in place (:func:`.run_records.update_run`, FiftyOne's own
``dataset.update_run_config``: a flags run's tag, an embeddings run's status, a link's key), which leaves the map
as it was. It may also change the dataset's schema (rename or delete a field) or rename the dataset.
:func:`refresh_stale_runs` looks for all of these with two small queries, and reads the dataset document again
only when something changed.
"""

import contextlib
import contextvars
import time

import bson
from bson import DBRef

from .view_checks import deleted_elsewhere

#: the datasets already looked at inside :func:`one_look` blocks (None outside them)
_LOOKED_AT = contextvars.ContextVar("ood_runs_looked_at", default=None)


@contextlib.contextmanager
def one_look():
    """Inside the block, :func:`refresh_stale_runs` looks at the database once per dataset, not on every call:
    one App request (a panel render lists the runs, then reads each run's record) sees the runs as they were when
    it began, in one look instead of one look per run (each look reads every record: quadratic in the runs)."""
    outer = _LOOKED_AT.get()
    token = _LOOKED_AT.set([] if outer is None else outer)
    try:
        yield
    finally:
        _LOOKED_AT.reset(token)


def held_configs(dataset):
    """``{key: config dict}`` of the run records ``dataset`` holds, sorted by key as FiftyOne's ``list_runs``
    sorts them, without dangling references (which it leaves out); one pass and nothing parsed
    (``list_runs(**filters)`` builds every record's config, finding each by a pass over all runs). The dicts are
    the held ones: read only."""
    runs = dataset._doc.runs
    return {key: runs[key].config or {} for key in sorted(runs) if not isinstance(runs[key], DBRef)}


def refresh_stale_runs(dataset, attempts=5):
    """Read ``dataset`` again if another process recorded, deleted, renamed or replaced a run since this process
    read it (FiftyOne reads the run map once per load: such runs were missed, or listed under their old keys), or
    changed a record's settings in place (they were read as they were at the load), or changed the dataset's
    document otherwise (its schema: a field renamed or deleted there).
    Two queries: the dataset document's run map and time of change (0.3 ms), the records' settings and results
    (0.6 ms with 20 runs); a reload takes 12 ms;
    on a change the dataset document and schema are read again, not the samples held in memory (``reload()``
    would drop the caller's unsaved sample edits).
    A record replaced while being read leaves a dangling reference (FiftyOne calls the run references
    "corrupted" and leaves the run out): read again up to ``attempts`` times, then left to ``patch_runs``.
    Inside :func:`one_look`: only the first call for ``dataset`` looks."""
    def intact():
        return not any(isinstance(doc, DBRef) for doc in dataset._doc.runs.values())

    looked = _LOOKED_AT.get()
    if looked is not None and any(seen is dataset for seen in looked) and intact():
        return True
    fresh = _look(dataset, intact, attempts)  # (raises for a dataset deleted or renamed elsewhere: not noted)
    if looked is not None:
        looked.append(dataset)
    return fresh


def _look(dataset, intact, attempts):
    if intact() and not runs_changed_elsewhere(dataset):
        return True
    dataset._reload(hard=True)  # (FiftyOne's reload() without its second half, the in-memory samples)
    for attempt in range(attempts):
        if intact():
            return True
        time.sleep(0.05 * attempt)  # a commit in progress elsewhere: give it a moment
        dataset.reload()
    return intact()


def runs_changed_elsewhere(dataset):
    """Whether the dataset document in the database was changed since it was read here (its schema: a field
    another process renamed or deleted was still offered and read here as empty), its run map (key -> record id)
    differs from the one held, or a held record's settings or results differ from the stored ones; raises when the
    dataset was deleted meanwhile (its old runs would be listed, and calls on it would say "empty view") or
    renamed (FiftyOne would fail to read it again by its old name)."""
    import fiftyone.core.odm as foo

    db = foo.get_db_conn()
    stored = db.datasets.find_one({"_id": dataset._doc.id}, {"runs": 1, "name": 1, "last_modified_at": 1})
    if stored is None:  # (FiftyOne's own ``deleted`` knows only of deletions in this process)
        raise deleted_elsewhere(dataset)
    if stored.get("name") != dataset._doc.name:
        raise renamed_elsewhere(dataset, stored.get("name"))
    if _millis(stored.get("last_modified_at")) != _millis(dataset._doc.last_modified_at):
        return True  # its document changed elsewhere: a field renamed, deleted or added (the schema), a run...
    held = dict(dataset._doc.runs)
    if {key: doc.id for key, doc in held.items()} != dict(stored.get("runs") or {}):
        return True
    return records_changed_elsewhere(db, [doc for doc in held.values() if not isinstance(doc, DBRef)])


def records_changed_elsewhere(db, docs):
    """Whether any of the held run records ``docs`` was changed in the database since it was read: its config
    (compared as BSON, so a tuple written here and the list read back are the same) or its results file."""
    if not docs:
        return False
    stored = {d["_id"]: d for d in db.runs.find({"_id": {"$in": [doc.id for doc in docs]}}, {"config": 1,
                                                                                             "results": 1})}
    for doc in docs:
        now = stored.get(doc.id)
        if now is None or _encoded(doc.config) != _encoded(now.get("config")):
            return True
        if getattr(doc.results, "grid_id", None) != now.get("results"):
            return True
    return False


def renamed_elsewhere(dataset, new_name):
    """The error for a call on ``dataset`` that another process renamed (``dataset.name = ...``) since this one
    loaded it: FiftyOne reads it again by its old name, which no dataset has any more."""
    from ..errors import OODInputError

    return OODInputError(f"dataset {dataset.name!r} was renamed to {new_name!r} (by another process, e.g. a notebook "
                         f"or the App) since it was loaded here; load it under its new name: "
                         f"fo.load_dataset({new_name!r})")


def _millis(when):
    """A document's ``last_modified_at`` to the millisecond, as MongoDB stores it (the one held after a save
    here has microseconds)."""
    return None if when is None else when.replace(microsecond=when.microsecond // 1000 * 1000, tzinfo=None)


def _encoded(value):
    return bson.encode({"v": value})
