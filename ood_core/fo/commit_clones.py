"""The commits (:mod:`.commit`) a clone copied half-way: kept for it, taken over by it, settled by its own state.

``dataset.clone()`` (and ``view.clone()``) copies the temporary fields and backup runs of a commit that was between
its steps when the clone ran (another process or App tab writing meanwhile), or that a killed process left
half-way. The journal entry names the original by id, and is dropped when the original's commit ends. Without it,
the clone's first call takes the copies for orphans and deletes them: the run's field (moved aside) is lost. So:

- a commit that ends (finished, undone, or settled by :func:`.commit.repair`) while another dataset holds one of
  its temporary names keeps its entry in :data:`.commit_journal.SETTLED` (:func:`keep_if_copied`, :func:`keep_settled`);
- the clone's first call takes over the entries naming its temporary names (:func:`adopt_journals`);
- the copy may be from an earlier step than the one the original's entry reached, so a copy is rolled forward only
  when it holds the new fields and the new record (or the dropping of the old ones had begun), and rolled back
  otherwise (:func:`rolls_forward`): every field ends old or new, complete, matching its record.
"""

import datetime
import uuid


def keep_settled(entry):
    """Keep journal ``entry`` as it ends (its outcome: its phase) for the clones that copied it."""
    from .commit_journal import SETTLED, SETTLED_DAYS, journal

    now = datetime.datetime.now(datetime.timezone.utc)
    settled = journal(SETTLED)
    settled.delete_many({"settled_at": {"$lt": now - datetime.timedelta(days=SETTLED_DAYS)}})
    settled.replace_one({"_id": entry["_id"]}, {**entry, "settled_at": now}, upsert=True)


def keep_if_copied(entry):
    """:func:`keep_settled` when another dataset holds one of the temporary names of ``entry`` (a clone made while
    the commit was in flight); called as the commit ends, after its last drop, so any such clone exists by then."""
    import bson
    import fiftyone.core.odm as foo

    if entry.get("kind") == "rename":
        return False
    # a nested path's leaf sits as deep in the dataset document's field list as the path has parts
    ors = [{"sample_fields." + "fields." * p.count(".") + "name": p.rpartition(".")[2]}
           for t in entry["targets"] for p in (t["staged"], t["backup"]) if p]
    ors += [{f"runs.{key}": {"$exists": True}}
            for key in (entry["backup_run"], *(run["backup_run"] for run in entry.get("dropped_runs") or []))]
    query = {"_id": {"$ne": bson.ObjectId(entry["dataset_id"])}, "$or": ors}
    if foo.get_db_conn().datasets.find_one(query, {"_id": 1}) is None:
        return False
    keep_settled(entry)
    return True


def adopt_journals(dataset, names):
    """Take over the journals of the dataset this one was cloned from that name one of ``names`` (its temporary
    fields and backup runs that no journal of its own claims); returns how many.

    A journal (live, or kept: :func:`keep_settled`) is copied for this dataset when the two share their samples (a
    clone keeps sample ids; a ``merge_samples`` target does not, and its own fields stay untouched; the original
    gone, when this dataset holds the run record, which only a clone copies).
    """
    from .commit_journal import JOURNAL, SETTLED, journal

    if not names:
        return 0
    names = sorted(names)
    dataset_id = str(dataset._doc.id)
    query = {"dataset_id": {"$ne": dataset_id}, "kind": {"$ne": "rename"},
             "$or": [{"targets.staged": {"$in": names}}, {"targets.backup": {"$in": names}},
                     {"backup_run": {"$in": names}}, {"dropped_runs.backup_run": {"$in": names}}]}
    adopted, seen = 0, set()
    for entry in [*journal(JOURNAL).find(query), *journal(SETTLED).find(query)]:
        # one commit, once: its live entry, its kept one, a kept copy another clone adopted share the backup key
        if entry["backup_run"] in seen or not _cloned_from(dataset, entry):
            continue
        seen.add(entry["backup_run"])
        entry.pop("settled_at", None)
        copy = {**entry, "_id": uuid.uuid4().hex, "dataset_id": dataset_id,
                "adopted_from": entry.get("adopted_from", entry["dataset_id"])}
        journal(JOURNAL).insert_one(copy)
        adopted += 1
    return adopted


def _cloned_from(dataset, entry):
    """Whether ``dataset`` is a copy of the dataset of journal ``entry`` (see :func:`adopt_journals`)."""
    import bson
    import fiftyone.core.odm as foo

    doc = foo.get_db_conn().datasets.find_one({"_id": bson.ObjectId(entry["dataset_id"])},
                                                {"sample_collection_name": 1})
    if doc is None:
        return any(dataset.has_run(key) for key in (entry["run_key"], entry["backup_run"]))
    ids = [bson.ObjectId(i) for i in dataset.limit(20).values("id")]
    original = foo.get_db_conn()[doc["sample_collection_name"]]
    return bool(ids) and original.count_documents({"_id": {"$in": ids}}) == len(ids)


def rolls_forward(dataset, entry):
    """Whether :func:`.commit.repair` finishes (rather than undoes) journal ``entry`` on ``dataset``.

    The dataset's own entry: when its new run was recorded. An adopted one (a clone's copy) names the step the
    original reached, which may be later than the step the clone copied: forward only when the copy holds every
    new field (no staged one left) and the new record, or the original had begun dropping the old copies; back
    otherwise (the copy still holds the old ones, so nothing is lost; a view's clone, which copies no runs, holds
    no record and goes back unless the dropping had begun).
    """
    from .documents import declared

    if entry["phase"] != "recorded":
        return False  # nothing was dropped anywhere: undoing is always complete
    if "adopted_from" not in entry:
        return True
    targets = entry["targets"]
    if any(t["staged"] and declared(dataset, t["staged"]) for t in targets):
        return False  # copied before the new fields were renamed into place
    dropping = any(t["existed"] and not declared(dataset, t["backup"])
                   and (t["staged"] or not declared(dataset, t["target"])) for t in targets)
    recorded = dataset.has_run(entry["run_key"]) and (not entry["had_run"] or dataset.has_run(entry["backup_run"]))
    return dropping or recorded
