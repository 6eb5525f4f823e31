"""Nothing lost on a clone: a dataset cloned after a write was killed half-way keeps the run.

A killed overwrite leaves its moved-aside old field (``tmp_ood_old_*``), its staged new field and the old run
record (``tmp_ood_backup_*``) on the dataset, and its journal names the dataset by id. ``dataset.clone()`` copies
those fields and runs to a dataset with another id. The clone's first call used to find no journal of its own,
take them for orphans and delete them: the clone lost the run's field (and its record pointed at nothing). Now
the clone takes over the original's journal (or, once the original was repaired, the settled record of what its
repair did) and ends in the same complete state. Both orders are tested: the clone repaired first, and the
original first. Each fault is as a killed process (its in-process undo skipped).
"""

import numpy as np
import pytest

import ood_core as ood
from fault_helpers import run_faulted
from ood_core.fo import commit
from ood_core.fo import runs as fo_runs
from test_fault_injection import STEPS, scored  # noqa: F401 (fixture: 40 samples, score run 's' with k=3)


def _expected(ds, k):
    from ood_core.detectors import make_detector

    return make_detector("pyramid_knn", k=k).fit_score(np.stack(ds.values("emb")))


def _repaired_state(ds, old, new):
    """After the repair: "old" or "new" (field and record agree), nothing temporary left."""
    ood.repair_ood_runs(ds)
    ds.reload()
    assert commit.internal_fields(ds) == []
    assert [key for key in ds.list_runs() if key.startswith("tmp_ood")] == []
    assert fo_runs.list_ood_runs(ds) == ["s"], fo_runs.list_ood_runs(ds)
    assert ds.has_field("s"), "the run's field was lost"
    values = np.array(ds.values("s"), dtype=float)
    k = fo_runs.get_ood_run_info(ds, "s")["detector"]["k"]
    np.testing.assert_allclose(values, old if k == 3 else new, rtol=1e-6)
    return "old" if k == 3 else "new"


@pytest.mark.parametrize("clone_first", [True, False], ids=["clone-repaired-first", "original-repaired-first"])
def test_a_clone_made_after_a_killed_overwrite_keeps_the_run(scored, monkeypatch, clone_first):
    ds = scored
    old, new = _expected(ds, 3), _expected(ds, 6)
    clones, outcomes, n = [], [], 1
    try:
        while True:
            fault, failed = run_faulted(monkeypatch, n, STEPS, killed=True, call=lambda: ood.compute_ood_scores(
                ds, "emb", "s", k=6, overwrite=True))
            if not fault.reached:
                break
            clone = ds.clone()
            clones.append(clone)
            leftovers = bool(commit.internal_fields(clone))
            first, second = (clone, ds) if clone_first else (ds, clone)
            a, b = _repaired_state(first, old, new), _repaired_state(second, old, new)
            assert a == b, (fault.calls[n - 1], a, b)  # the clone ends where the original does
            outcomes.append((fault.calls[n - 1], leftovers, a))
            if a == "new":
                ood.compute_ood_scores(ds, "emb", "s", k=3, overwrite=True)
            n += 1
    finally:
        for clone in clones:
            clone.delete()
    # the clones that copied a moved-aside field are the cases that lost data
    assert any(leftovers for _, leftovers, _ in outcomes), outcomes
    assert {"old", "new"} <= {state for _, _, state in outcomes}, outcomes


def test_a_user_field_named_like_a_temporary_field_of_another_dataset_is_not_taken(dataset_factory, monkeypatch):
    """Only a clone (the same sample ids) takes over another dataset's journal: a dataset that merely holds a field
    of that name is not rolled back or forward by it."""
    rng = np.random.default_rng(2)
    ds = dataset_factory([f"/tmp/clone_other_{i}.png" for i in range(20)])
    ds.set_values("emb", list(rng.normal(size=(20, 8)).astype(np.float32)))
    ood.compute_ood_scores(ds, "emb", "s", k=3)
    fault, failed = run_faulted(monkeypatch, 6, STEPS, killed=True, call=lambda: ood.compute_ood_scores(
        ds, "emb", "s", k=6, overwrite=True))
    assert failed
    names = commit.internal_fields(ds)
    assert names
    other = dataset_factory([f"/tmp/clone_unrelated_{i}.png" for i in range(5)])
    other.add_sample_field(names[0], __import__("fiftyone").core.fields.FloatField)
    other.set_values(names[0], [1.0] * 5)
    ood.repair_ood_runs(other)
    other.reload()
    assert not other.has_field("s") and "s" not in other.list_runs()  # nothing of the other run moved in
    assert _repaired_state(ds, _expected(ds, 3), _expected(ds, 6)) in ("old", "new")  # its journal still there


def test_a_clone_of_a_crashed_dataset_deleted_since_keeps_the_run(dataset_factory, monkeypatch):
    """The original deleted before the clone's first call: the journal left by the killed process still serves."""
    rng = np.random.default_rng(3)
    embeddings = list(rng.normal(size=(20, 8)).astype(np.float32))
    outcomes, n = [], 1
    while True:
        ds = dataset_factory([f"/tmp/clone_gone_{i}.png" for i in range(20)])
        ds.set_values("emb", embeddings)
        ood.compute_ood_scores(ds, "emb", "s", k=3)
        old, new = _expected(ds, 3), _expected(ds, 6)
        fault, failed = run_faulted(monkeypatch, n, STEPS, killed=True, call=lambda: ood.compute_ood_scores(
            ds, "emb", "s", k=6, overwrite=True))
        if not fault.reached:
            break
        clone = ds.clone()
        moved_aside = any(".tmp_ood_old_" in f"." + p for p in commit.internal_fields(clone))
        ds.delete()
        try:
            outcomes.append((fault.calls[n - 1], moved_aside, _repaired_state(clone, old, new)))
        finally:
            clone.delete()
        n += 1
    assert any(moved for _, moved, _ in outcomes), outcomes
