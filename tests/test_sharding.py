"""One extraction split across workers: shards, the shared partial field, the job lock."""

import datetime
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from ood_core.errors import BackendError, OODInputError
from ood_core.fo import coordination as fo_coordination
from ood_core.fo import runs as fo_runs
from ood_core.fo.embeddings import compute_pyramid_embeddings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = dict(model_name="tf_efficientnet_lite0", levels=[1, 2, 3], mode="pool", grid=1)  # = extractor fixture

WORKER = """
import json, sys
import fiftyone as fo
import torch
torch.set_num_threads(1)
from ood_core.fo.embeddings import compute_pyramid_embeddings
ds = fo.load_dataset(sys.argv[1])
out = compute_pyramid_embeddings(ds, "emb", shard=(int(sys.argv[2]), int(sys.argv[3])), batch_size=8,
                                 chunk_size=4, progress=False, **json.loads(sys.argv[4]))
print("RESULT " + json.dumps({k: out[k] for k in ("status", "num_computed", "shard", "field")}))
"""


@pytest.fixture
def shared_dataset(dataset_factory, fashion_files):
    """40 real images in a persistent dataset, visible to worker processes."""
    paths, names = fashion_files
    ds = dataset_factory(paths[:40], names[:40])
    ds.persistent = True
    return ds


def _expected(extractor, ds):
    return extractor.extract(ds.values("filepath"), progress=False).embeddings


def test_two_worker_processes_share_one_extraction(shared_dataset, extractor):
    ds = shared_dataset
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, ds.name, str(i), "2", json.dumps(SETTINGS)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        for i in range(2)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(next(line[7:] for line in out.splitlines() if line.startswith("RESULT "))))
    # each worker computed its own half; exactly one (the last to finish) completed the job
    assert sorted(r["num_computed"] for r in results) == [20, 20]
    assert sorted(r["status"] for r in results) == ["complete", "partial"]
    ds.reload()
    info = fo_runs.get_ood_run_info(ds, "emb")
    assert info["status"] == "complete" and info["fields"] == ["emb"]
    assert ds.get_field("tmp_ood_partial_emb") is None
    got = np.stack(ds.values("emb"))
    np.testing.assert_allclose(got, _expected(extractor, ds), rtol=1e-4, atol=1e-5)
    assert fo_coordination.state(fo_coordination.job_key(ds, "emb")) is None  # job forgotten once complete


def test_unfinished_shard_leaves_a_partial_field_that_a_plain_call_completes(
        shared_dataset, session_extractor):
    ds = shared_dataset
    extractor = session_extractor
    out = compute_pyramid_embeddings(ds, "emb", shard=(0, 3), progress=False, **SETTINGS)
    assert out["status"] == "partial" and out["field"] == "tmp_ood_partial_emb"
    assert out["num_computed"] == 13 and out["shards_done"] == [0]
    assert ds.get_field("emb") is None  # nothing under the real name until every shard is done
    assert fo_runs.get_ood_run_info(ds, "emb")["status"] == "partial"
    # the same count of shards is required of every worker
    with pytest.raises(OODInputError, match="3 shards"):
        compute_pyramid_embeddings(ds, "emb", shard=(1, 2), progress=False, **SETTINGS)
    out = compute_pyramid_embeddings(ds, "emb", shard=(2, 3), progress=False, **SETTINGS)
    assert out["status"] == "partial" and out["shards_done"] == [0, 2] and out["num_computed"] == 14
    # shard 1 "crashed": one call without shard= computes only what is missing and completes
    out = compute_pyramid_embeddings(ds, "emb", progress=False, **SETTINGS)
    assert out["status"] == "complete" and out["num_computed"] == 13 and out["num_embedded"] == 40
    np.testing.assert_allclose(np.stack(ds.values("emb")), _expected(extractor, ds), rtol=1e-4, atol=1e-5)
    assert fo_runs.get_ood_run_info(ds, "emb")["status"] == "complete"


def test_a_shard_of_another_view_is_refused_before_it_writes(shared_dataset, session_extractor):
    """Shards slice the view by position: a worker given other filters, another order or more samples would
    leave samples to no shard while the job completes."""
    ds = shared_dataset
    out = compute_pyramid_embeddings(ds, "emb", shard=(0, 2), progress=False, **SETTINGS)
    assert out["status"] == "partial" and out["num_embedded"] == 20
    for other, size in [(ds.sort_by("filepath", reverse=True), 40), (ds.limit(30), 30), (ds.skip(1), 39)]:
        with pytest.raises(OODInputError, match=f"view of 40 samples; this call's view \\({size} samples\\)"):
            compute_pyramid_embeddings(other, "emb", shard=(1, 2), progress=False, **SETTINGS)
        ds.reload()
        assert len(ds.exists("tmp_ood_partial_emb")) == 20 and ds.get_field("emb") is None
    # the same view (a view equal to the dataset, built again) joins the job and completes it
    out = compute_pyramid_embeddings(ds.sort_by("filepath").sort_by("_id"), "emb", shard=(1, 2), progress=False,
                                     **SETTINGS)
    assert out["status"] == "complete" and out["num_embedded"] == 40 and out["num_computed"] == 20
    np.testing.assert_allclose(np.stack(ds.values("emb")), _expected(session_extractor, ds), rtol=1e-4, atol=1e-5)


def test_bad_shards_are_refused(shared_dataset):
    ds = shared_dataset
    for bad in [(2, 2), (-1, 2), (0,), "0/2", (0.0, 2), (True, 2)]:
        with pytest.raises(OODInputError, match="shard="):
            compute_pyramid_embeddings(ds, "emb", shard=bad, progress=False, **SETTINGS)
    with pytest.raises(OODInputError, match="overwrite=True cannot be combined"):
        compute_pyramid_embeddings(ds, "emb", shard=(0, 2), overwrite=True, progress=False, **SETTINGS)
    assert ds.get_field("emb") is None and not ds.has_run("emb")


def test_lock_serialises_workers_and_breaks_stale_locks():
    key = "test-lock-key"
    fo_coordination.clear(key)
    inside, overlaps = [], []

    def worker():
        for _ in range(5):
            with fo_coordination.locked(key, poll=0.005):
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(True)
                time.sleep(0.01)
                inside.pop()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    # a lock whose lease runs out (a holder that stopped renewing): waited for, then broken
    coll = fo_coordination._collection()
    coll.update_one({"_id": key}, {"$set": {"lock": "dead-worker", "locked_at": fo_coordination._now(),
                                            "expires_at": fo_coordination._now() + datetime.timedelta(seconds=3)}}, upsert=True)
    with pytest.raises(BackendError, match="held the lock"):
        with fo_coordination.locked(key, timeout=0.5):
            pass
    time.sleep(3)
    with fo_coordination.locked(key, timeout=5):
        assert coll.find_one({"_id": key})["lock"] not in (None, "dead-worker")
    assert coll.find_one({"_id": key}) is None  # a pure lock document is removed when released
    fo_coordination.clear(key)


_HOLD_LOCK = """
import sys, time
import fiftyone  # noqa: F401  (connects to FIFTYONE_DATABASE_URI)
from ood_core.fo import coordination
with coordination.locked(sys.argv[1], lease=1.0):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_live_holder_keeps_its_lease_and_a_killed_one_loses_it_within_the_lease():
    import signal
    import subprocess
    import sys

    key = "test-lease-key"
    fo_coordination.clear(key)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, key], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        assert holder.stdout.readline().strip() == "locked"
        # alive and renewing: 3 leases later the lock is still its own
        with pytest.raises(BackendError, match="still alive"):
            with fo_coordination.locked(key, timeout=3.0, lease=1.0):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        t0 = time.monotonic()
        with fo_coordination.locked(key, timeout=10.0, lease=1.0):
            waited = time.monotonic() - t0
        assert waited < 2.5  # broken within about one lease (1 s) of the last heartbeat
    finally:
        if holder.poll() is None:
            holder.kill()
        fo_coordination.clear(key)


def test_operator_queues_one_delegated_operation_per_shard(shared_dataset, extractor):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    ds = shared_dataset
    uri = "@fiftyone-ood/ood/compute_pyramid_embeddings"
    out = foo.execute_operator(uri, dict(view=ds.view()), params=dict(
        embeddings_field="emb", model_name="tf_efficientnet_lite0", levels="1,2,3", grid=1, num_shards=3))
    assert out.error is None, out.error
    assert out.result["num_shards"] == 3 and len(out.result["queued_operations"]) == 3
    assert ds.get_field("emb") is None and not ds.has_run("emb")  # queued, nothing computed yet
    service = DelegatedOperationService()
    queued = service.list_operations(operator=uri, dataset_name=ds.name)
    assert sorted(op.context.request_params["params"]["shard"][0] for op in queued) == [0, 1, 2]
    service.execute_queued_operations(operator=uri, dataset_name=ds.name)
    ds.reload()
    assert [op.run_state for op in service.list_operations(operator=uri, dataset_name=ds.name)] == ["completed"] * 3
    assert fo_runs.get_ood_run_info(ds, "emb")["status"] == "complete"
    np.testing.assert_allclose(np.stack(ds.values("emb")), _expected(extractor, ds), rtol=1e-4, atol=1e-5)
    # the form lets an existing embeddings run be resumed / filled instead of calling its name taken
    from fiftyone.operators.executor import ExecutionContext

    ctx = ExecutionContext(request_params=dict(dataset_name=ds.name, params=dict(embeddings_field="emb")))
    prop = foo.get_operator(uri).resolve_input(ctx).type.properties["embeddings_field"]
    assert not prop.invalid and "computes only what is missing" in prop.description
