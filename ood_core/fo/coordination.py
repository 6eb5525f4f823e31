"""Coordination of several workers writing one embeddings field (FiftyOne's MongoDB).

A sharded extraction (``compute_pyramid_embeddings(..., shard=(i, n))``) runs
as ``n`` independent processes, typically delegated operations picked up by
several ``fiftyone delegated launch`` workers. They share one partial field
and one run record, so two steps must not interleave: planning (create or
resume the partial field and its run) and finishing (record which shards are
done; the last one renames the field and marks the run complete).

Both steps run under a lock document in the collection ``ood_plugin_jobs`` of
FiftyOne's database; the same document records the shard count, the shards
that are done, and the failures of each. Taking the lock is one atomic upsert
that only matches an unlocked document (a held lock makes the upsert collide
on ``_id``). A lock older than ``stale_after`` seconds is taken to belong to a
dead worker and is broken.
"""

import contextlib
import datetime
import time
import uuid

from ..errors import BackendError

COLLECTION = "ood_plugin_jobs"

#: Failures kept per job in the coordination document (the rest are counted only).
MAX_FAILURES = 1000


def _collection():
    import fiftyone.core.odm as foo

    return foo.get_db_conn()[COLLECTION]


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def job_key(dataset, path):
    """Key of the job that writes ``path`` on ``dataset``."""
    return f"{dataset._doc.id}:{path}"


@contextlib.contextmanager
def locked(key, *, timeout=900.0, stale_after=1800.0, poll=0.1):
    """Hold the lock of job ``key`` for the ``with`` block; yields the job collection."""
    from pymongo.errors import DuplicateKeyError

    coll = _collection()
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + timeout
    while True:
        try:
            coll.update_one({"_id": key, "lock": None}, {"$set": {"lock": owner, "locked_at": _now()}},
                            upsert=True)
            break
        except DuplicateKeyError:
            doc = coll.find_one({"_id": key}, {"lock": 1, "locked_at": 1}) or {}
            held_for = (_now() - doc["locked_at"]).total_seconds() if doc.get("locked_at") else 0.0
            if doc.get("lock") and held_for > stale_after:
                coll.update_one({"_id": key, "lock": doc["lock"]}, {"$set": {"lock": None}})
                continue
            if time.monotonic() > deadline:
                raise BackendError(
                    f"another worker has held the lock of job {key!r} for {held_for:.0f} s; if no worker is "
                    f"running, remove it with ood_core.coordination.clear({key!r})"
                )
            time.sleep(poll)
    try:
        yield coll
    finally:
        coll.update_one({"_id": key, "lock": owner}, {"$set": {"lock": None}})


def state(key):
    """The job document (``num_shards``, ``done``, ``failures``), or None."""
    return _collection().find_one({"_id": key})


def start(key, num_shards):
    """Begin a job: no shard done yet."""
    _collection().update_one(
        {"_id": key}, {"$set": {"num_shards": int(num_shards), "done": [], "failures": [], "num_failed": 0}},
        upsert=True,
    )


def mark_done(key, shard_index, failures):
    """Record that shard ``shard_index`` finished, with its failed items."""
    _collection().update_one(
        {"_id": key},
        {"$addToSet": {"done": int(shard_index)},
         "$push": {"failures": {"$each": list(failures)[:MAX_FAILURES], "$slice": MAX_FAILURES}},
         "$inc": {"num_failed": len(failures)}},
    )


def clear(key):
    """Forget job ``key`` (after it completed, or to release a lock left by a killed worker)."""
    _collection().delete_one({"_id": key})
