"""Nothing lost when a 2-D map (a FiftyOne Brain visualization run) is replaced.

- a map replaced with ``overwrite=True`` while FiftyOne fails at any of its database writes (an exception, or
  ``kill -9`` of the process followed by the next map call) is afterwards the complete old map or the new
  one, never gone, and no temporary brain run is left;
- a brain run this plugin did not make (a user's own ``fob.compute_visualization``, with a points field) is
  refused even with ``overwrite=True``, and neither it nor its points field is touched.
"""

import signal
import time

import fiftyone.brain as fob
import fiftyone.core.dataset as fod
import fiftyone.core.odm as foo
import numpy as np
import pytest

import ood_core as ood
from fault_helpers import kill_9_at, run_faulted
from ood_core.errors import OODInputError

#: every database write of a brain run's registration, results, rename and deletion
STEPS = (
    (foo.RunDocument, "save"),
    (foo.RunDocument, "delete"),
    (foo.DatasetDocument, "save"),
)
OLD_CALL = dict(embeddings_field="emb", brain_key="map1", method="pca")
#: the new map covers 30 of the 40 samples, so its points tell it from the old one
NEW_VIEW = 30


@pytest.fixture
def mapped(dataset_factory):
    """40 samples with random 8-d embeddings in ``emb`` and a map ``map1`` of this plugin (PCA of all 40)."""
    rng = np.random.default_rng(0)
    ds = dataset_factory([f"/tmp/map_safety_{i}.png" for i in range(40)])
    ds.set_values("emb", list(rng.normal(size=(40, 8)).astype(np.float32)))
    ood.compute_ood_visualization(ds, **OLD_CALL)
    return ds


def _points(ds, key="map1"):
    return np.asarray(ds.load_brain_results(key, cache=False).points)


def _replace(ds):
    return ood.compute_ood_visualization(ds.limit(NEW_VIEW), **OLD_CALL, overwrite=True)


def _temporary(ds):
    """Temporary brain runs left on ``ds``, also those only one of FiftyOne's two records (the dataset's list of
    brain runs, the run's document) still names; [] when there are none and the two records agree."""
    ds.reload()
    conn = foo.get_db_conn()
    listed = conn.datasets.find_one({"_id": ds._doc.id})["brain_methods"]
    docs = {d["_id"]: d["key"] for d in conn.runs.find({"_dataset_id": ds._doc.id})}
    assert {key: docs.get(ref) for key, ref in listed.items()} == {key: key for key in listed}
    return sorted({key for key in [*listed, *docs.values()] if key.startswith("tmp_ood_")})


def _old_or_new(ds, old, new):
    """``"old"`` or ``"new"``: which complete map ``map1`` is (it must be one of them)."""
    ds.reload()
    assert "map1" in ds.list_brain_runs()
    points = _points(ds)
    if points.shape == old.shape:
        np.testing.assert_array_equal(points, old)
        return "old"
    np.testing.assert_array_equal(points, new)
    return "new"


def _old_and_new_points(ds):
    """The points of the old map and of the replacing one (computed on a copy, so ``ds`` stays as it is)."""
    old = _points(ds)
    copy = ds.clone()
    try:
        _replace(copy)
        return old, _points(copy)
    finally:
        copy.delete()


@pytest.mark.parametrize("failing", ["every rename", "the first rename into the key"])
def test_a_failed_rename_during_overwrite_keeps_the_old_map(mapped, monkeypatch, failing):
    ds = mapped
    old = _points(ds)
    original = fod.Dataset.rename_brain_run
    failed = []

    def rename(self, key, new_key):
        if failing == "every rename" or (new_key == "map1" and not failed):
            failed.append(key)
            raise RuntimeError("injected: rename failed")
        return original(self, key, new_key)

    monkeypatch.setattr(fod.Dataset, "rename_brain_run", rename)
    with pytest.raises(RuntimeError, match="injected"):
        _replace(ds)
    monkeypatch.undo()
    ds.reload()
    assert ds.list_brain_runs() == ["map1"]  # the old map, and no temporary or moved-aside run
    np.testing.assert_array_equal(_points(ds), old)
    assert ds.load_brain_view("map1").count() == 40


def test_overwrite_replaces_a_map_of_this_plugin_and_marks_it(mapped):
    ds = mapped
    assert ds.get_brain_info("map1").config.ood_plugin == "fiftyone-ood"
    assert _replace(ds) == {"brain_key": "map1", "num_points": NEW_VIEW}
    ds.reload()
    assert ds.list_brain_runs() == ["map1"]
    assert _points(ds).shape == (NEW_VIEW, 2)
    assert ds.get_brain_info("map1").config.ood_plugin == "fiftyone-ood"


def test_an_exception_at_every_step_leaves_the_old_map_or_the_new_one(mapped, monkeypatch):
    ds = mapped
    old, new = _old_and_new_points(ds)
    outcomes = []
    n = 1
    while True:
        fault, failed = run_faulted(monkeypatch, n, STEPS, lambda: _replace(ds))
        if not fault.reached:  # the call went through without reaching write n: every write was hit
            assert not failed and _old_or_new(ds, old, new) == "new" and _temporary(ds) == []
            break
        which = _old_or_new(ds, old, new)
        left = _temporary(ds)
        # a failed call undoes itself; only an old map that could not be deleted after the swap may wait
        assert left == [] or (not failed and which == "new" and all(k.startswith("tmp_ood_mapold_") for k in left))
        outcomes.append((failed, which))
        ood.compute_ood_visualization(ds, **OLD_CALL, overwrite=True)  # the next call; back to the old map
        assert _temporary(ds) == [] and _old_or_new(ds, old, new) == "old"
        n += 1
    assert (True, "old") in outcomes  # rolled back
    assert (False, "new") in outcomes  # a fault while deleting the old map after the swap: the new one stays
    assert len(outcomes) >= 8


def test_kill_9_at_every_step_then_the_next_call_or_repair_has_the_old_map_or_the_new_one(mapped, monkeypatch):
    monkeypatch.setenv("FIFTYONE_OOD_LOCK_LEASE", "1")
    ds = mapped
    old, new = _old_and_new_points(ds)
    call = f'ood.compute_ood_visualization(ds.limit({NEW_VIEW}), "emb", "map1", method="pca", overwrite=True)'
    outcomes = []
    n = 1
    while True:
        out = kill_9_at(ds.name, n, "test_map_safety", call)
        if out.returncode == 0:
            assert out.stdout.splitlines()[-1].startswith("done")
            assert _old_or_new(ds, old, new) == "new" and _temporary(ds) == []
            break
        assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
        time.sleep(1.2)  # the dead writer's 1 s lease runs out
        if n % 2:  # the repair, or the next map call, puts the old map back or finishes the new one
            ood.repair_ood_runs(ds)
        else:
            ood.compute_ood_visualization(ds, "emb", "other", method="pca", overwrite=True)
        outcomes.append(_old_or_new(ds, old, new))
        assert _temporary(ds) == [] and set(ds.list_brain_runs()) - {"other"} == {"map1"}
        if outcomes[-1] == "new":
            ood.compute_ood_visualization(ds, **OLD_CALL, overwrite=True)
        n += 1
    assert "old" in outcomes and "new" in outcomes and len(outcomes) >= 8


@pytest.mark.parametrize("points_field", ["user_pts", None])
def test_overwrite_refuses_a_map_this_plugin_did_not_make(mapped, points_field):
    ds = mapped
    fob.compute_visualization(ds, embeddings="emb", brain_key="mine", method="pca", points_field=points_field,
                              verbose=False)
    theirs = _points(ds, "mine")
    field_values = ds.values(points_field) if points_field else None
    with pytest.raises(OODInputError, match=r"'mine'.*did not make.*even with overwrite=True.*delete_brain_run"):
        ood.compute_ood_visualization(ds, "emb", "mine", method="pca", overwrite=True)
    ds.reload()
    assert sorted(ds.list_brain_runs()) == ["map1", "mine"]
    np.testing.assert_array_equal(_points(ds, "mine"), theirs)
    if points_field:
        assert ds.has_sample_field(points_field) and ds.values(points_field) == field_values


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_a_map_of_identical_embeddings_is_refused_before_anything_is_computed(dataset_factory, method):
    """Every embedding the same vector (blank images): PCA put every point on (0, 0) and t-SNE crashed the Python
    process (a segmentation fault); the call is refused, naming the field and the fix, and nothing is recorded."""
    ds = dataset_factory([f"/tmp/map_same_{i}.png" for i in range(6)])
    ds.set_values("emb", [np.full(8, 0.25, np.float32)] * 6)
    with pytest.raises(OODInputError, match=r"all 6 embeddings in 'emb' of this view are the same vector.*"
                                            r"recompute the embeddings"):
        ood.compute_ood_visualization(ds, "emb", "same", method=method)
    ds.reload()
    assert ds.list_brain_runs() == []
