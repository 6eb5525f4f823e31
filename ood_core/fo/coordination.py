"""Coordination of several workers writing one embeddings field (FiftyOne's MongoDB).

A sharded extraction (``compute_pyramid_embeddings(..., shard=(i, n))``) runs
as ``n`` independent processes, typically delegated operations picked up by
several ``fiftyone delegated launch`` workers. They share one partial field
and one run record, so two steps must not interleave: planning (create or
resume the partial field and its run) and finishing (record which shards are
done; the last one renames the field and marks the run complete).

Both steps run under a lock document in the collection ``ood_plugin_jobs`` of
FiftyOne's database; the same document records the shard count, the shards
that are done, and the failures of each. The same locks guard every field
write of the package (:mod:`.commit`).

Taking the lock is one atomic upsert that only matches an unlocked document (a
held lock makes the upsert collide on ``_id``). A lock is a **lease**: its
holder renews ``expires_at`` from a heartbeat thread every ``lease / 3``
seconds, so a holder killed with ``kill -9`` stops renewing and its lock is
broken by the next waiter within ``lease`` seconds (default 15 s), while a
live holder keeps it for as long as it works (a long PCA fit, say).
"""

import contextlib
import datetime
import hashlib
import logging
import os
import threading
import time
import uuid

from ..errors import BackendError

logger = logging.getLogger(__name__)

COLLECTION = "ood_plugin_jobs"

#: Seconds a lock outlives its last heartbeat (a killed holder's lock is broken after this);
#: the environment variable FIFTYONE_OOD_LOCK_LEASE overrides it.
DEFAULT_LEASE = 15.0


def lease_seconds():
    return float(os.environ.get("FIFTYONE_OOD_LOCK_LEASE", DEFAULT_LEASE))

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


#: (thread, key) pairs held by this process, with their nesting depth (locks are re-entrant per thread)
_HELD = {}
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def locked(key, *, timeout=900.0, lease=None, poll=0.1):
    """Hold the lease lock of ``key`` for the ``with`` block; yields the job collection.

    Waits up to ``timeout`` seconds for a live holder, then raises
    :class:`~ood_core.errors.BackendError`; breaks a lock whose lease expired.
    Re-entrant within a thread: a nested block on a key the same thread holds
    just enters.
    """
    mine = (threading.get_ident(), key)
    with _HELD_GUARD:
        nested = mine in _HELD
        if nested:
            _HELD[mine] += 1
    if nested:
        try:
            yield _collection()
        finally:
            with _HELD_GUARD:
                _HELD[mine] -= 1
        return
    with _hold(key, timeout, lease, poll) as coll:
        with _HELD_GUARD:
            _HELD[mine] = 1
        try:
            yield coll
        finally:
            with _HELD_GUARD:
                _HELD.pop(mine, None)


@contextlib.contextmanager
def _hold(key, timeout, lease, poll):
    from pymongo.errors import DuplicateKeyError

    lease = lease_seconds() if lease is None else float(lease)
    coll = _collection()
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        now = _now()
        try:
            coll.update_one({"_id": key, "lock": None},
                            {"$set": {"lock": owner, "locked_at": now, "expires_at": _later(now, lease)}},
                            upsert=True)
            break
        except DuplicateKeyError:
            doc = coll.find_one({"_id": key}, {"lock": 1, "locked_at": 1, "expires_at": 1}) or {}
            expires = doc.get("expires_at")
            if doc.get("lock") and (expires is None or expires < _now()):
                logger.warning("breaking the lock of %r: its holder stopped renewing it (dead worker)", key)
                coll.update_one({"_id": key, "lock": doc["lock"]}, {"$set": {"lock": None}})
                continue
            if time.monotonic() > deadline:
                held = (_now() - doc["locked_at"]).total_seconds() if doc.get("locked_at") else 0.0
                raise BackendError(
                    f"another process is writing {key!r} (it has held the lock for {held:.0f} s and is still "
                    "alive); wait for it to finish and run again"
                )
            if not announced:
                logger.info("waiting for another process writing %r", key)
                announced = True
            time.sleep(poll)
    stop = threading.Event()
    heartbeat = threading.Thread(target=_renew, args=(coll, key, owner, lease, stop), daemon=True)
    heartbeat.start()
    try:
        yield coll
    finally:
        stop.set()
        heartbeat.join()
        # a pure lock document goes; a sharded job's document (num_shards, done, ...) stays
        if coll.delete_one({"_id": key, "lock": owner, "num_shards": {"$exists": False}}).deleted_count == 0:
            coll.update_one({"_id": key, "lock": owner}, {"$set": {"lock": None}})


def _later(now, seconds):
    return now + datetime.timedelta(seconds=seconds)


def _renew(coll, key, owner, lease, stop):
    """Heartbeat: push the lease forward while the holder is alive."""
    while not stop.wait(lease / 3):
        try:
            coll.update_one({"_id": key, "lock": owner}, {"$set": {"expires_at": _later(_now(), lease)}})
        except Exception:  # a lost database: the holder's own calls fail and report it
            logger.debug("could not renew the lock of %r", key, exc_info=True)


def schema_lock(dataset, timeout=900.0):
    """The dataset-wide lock of every change this package makes to a dataset's schema or runs.

    FiftyOne saves a dataset's whole field list and run list from the process's
    in-memory copy, so two processes changing them at once lose one another's
    change. Every such change of this package happens under this lock, on a
    freshly reloaded dataset. Always taken last (after field locks), so
    writers cannot deadlock.
    """
    return locked(job_key(dataset, "__schema__"), timeout=timeout)


def is_held(key):
    """Whether a live process holds the lock of ``key`` (its lease has not expired)."""
    doc = lock_holder(key)
    return bool(doc and doc.get("lock") and doc.get("expires_at") and doc["expires_at"] > _now())


def lock_holder(key):
    """``{"lock", "locked_at", "expires_at"}`` of ``key``'s lock document, or None (tests, diagnostics)."""
    return _collection().find_one({"_id": key}, {"lock": 1, "locked_at": 1, "expires_at": 1})


def state(key):
    """The job document (``num_shards``, ``done``, ``failures``), or None."""
    return _collection().find_one({"_id": key})


def start(key, num_shards, view=None):
    """Begin a job: no shard done yet. ``view``: the :func:`view_fingerprint` every shard must match."""
    _collection().update_one(
        {"_id": key}, {"$set": {"num_shards": int(num_shards), "done": [], "failures": [], "num_failed": 0,
                                "view": view}},
        upsert=True,
    )


def view_fingerprint(samples, ordered=True):
    """``{"size", "hash"}`` of a view's samples in their order: the shards of one job slice the view by position,
    so workers given different views (other filters, another order, samples added in between) would leave samples
    to no shard. A SHA-256 over the ordered sample ids (12 bytes each); ``ordered=False``: over the sorted ids
    (which samples, in any order: a run's trusted reference)."""
    ids = [i.binary for i in samples.values("_id")]
    return {"size": len(ids), "hash": hashlib.sha256(b"".join(ids if ordered else sorted(ids))).hexdigest()[:32]}


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


def remove_stale_locks(dataset):
    """Locks on ``dataset`` whose holder died (lease expired): a pure lock document is deleted, a sharded job's
    document keeps its progress with the lock released. Returns how many were cleaned."""
    coll = _collection()
    expired = {"_id": {"$regex": f"^{dataset._doc.id}:"}, "lock": {"$ne": None}, "expires_at": {"$lt": _now()}}
    removed = coll.delete_many({**expired, "num_shards": {"$exists": False}}).deleted_count
    released = coll.update_many({**expired, "num_shards": {"$exists": True}}, {"$set": {"lock": None}})
    return removed + released.modified_count
