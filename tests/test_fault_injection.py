"""Nothing lost: the write path crashed on purpose at every step.

Each scenario starts from a committed score field ("old": k-NN with k=3) and
overwrites it ("new": k=6) while a fault hits the n-th database-changing call
of the write path, for every n until the write goes through:

- an exception raised in the same process (the commit must undo itself);
- ``kill -9`` of a writer process at that point (the next call must repair).

After every attempt the field holds exactly the old or exactly the new
scores, the run record says which (its detector k), and no temporary field
or backup run is left. Concurrent writers on one field are tested with real
processes too. ``benchmarks/fault_injection.py`` runs longer versions.
"""

import os
import signal
import subprocess
import sys
import time

import fiftyone.core.collections as foc
import fiftyone.core.dataset as fod
import numpy as np
import pytest

import ood_core as ood
from fault_helpers import Crash, FaultAt, kill_9_at, run_faulted
from forked_python import run_python
from ood_core.errors import OODInputError
from ood_core.fo import commit
from ood_core.fo import runs as fo_runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: the database-changing calls of the write path, where faults are injected
STEPS = (
    (fod.Dataset, "add_sample_field"),
    (fod.Dataset, "clone_sample_field"),
    (foc.SampleCollection, "set_values"),
    (fod.Dataset, "rename_sample_field"),
    (fod.Dataset, "rename_run"),
    (foc.SampleCollection, "register_run"),
    (foc.SampleCollection, "save_run_results"),
    (fod.Dataset, "delete_sample_field"),
    (fod.Dataset, "delete_run"),
)


@pytest.fixture
def scored(dataset_factory):
    """40 samples with random embeddings and a committed default (pyramid k-NN) score field 's' (k=3)."""
    rng = np.random.default_rng(0)
    ds = dataset_factory([f"/tmp/fault_{i}.png" for i in range(40)])
    ds.set_values("emb", list(rng.normal(size=(40, 8)).astype(np.float32)))
    ood.compute_ood_scores(ds, "emb", "s", k=3)
    return ds


def _expected(ds, k):
    from ood_core.detectors import make_detector

    X = np.stack(ds.values("emb"))
    return make_detector("pyramid_knn", k=k).fit_score(X)  # the default detector of compute_ood_scores


def assert_old_or_new(ds, old, new):
    """The field equals one complete result and the record names the same one; after the next call's
    repair, nothing temporary is left."""
    ds.reload()
    _assert_consistent(ds, old, new)
    ood.repair_ood_runs(ds)
    ds.reload()
    k = _assert_consistent(ds, old, new)
    assert commit.internal_fields(ds) == []
    assert [key for key in ds.list_runs() if key.startswith("tmp_ood")] == []
    assert fo_runs.list_ood_runs(ds) == ["s"]
    return k


def _assert_consistent(ds, old, new):
    values = np.array(ds.values("s"), dtype=float)
    k = fo_runs.get_ood_run_info(ds, "s")["detector"]["k"]
    if k == 3:
        np.testing.assert_allclose(values, old, rtol=1e-6)
    else:
        assert k == 6
        np.testing.assert_allclose(values, new, rtol=1e-6)
    return k


def test_an_exception_at_every_step_leaves_old_or_new(scored, monkeypatch):
    ds = scored
    old, new = _expected(ds, 3), _expected(ds, 6)
    outcomes = []
    n = 1
    while True:
        fault, failed = run_faulted(monkeypatch, n, STEPS,
                                    lambda: ood.compute_ood_scores(ds, "emb", "s", k=6, overwrite=True))
        if len(fault.calls) < n:  # the write went through without reaching call n: every step was hit
            assert not failed and assert_old_or_new(ds, old, new) == 6
            break
        k = assert_old_or_new(ds, old, new)
        outcomes.append((fault.calls[n - 1], failed, k))
        if k == 6:  # the fault hit after the new record was in place: start again from the old state
            ood.compute_ood_scores(ds, "emb", "s", k=3, overwrite=True)
        n += 1
    steps_hit = {name for name, failed, _ in outcomes if failed}
    assert {"set_values", "rename_sample_field", "rename_run", "register_run"} <= steps_hit
    assert any(k == 3 for _, failed, k in outcomes if failed)  # rolled back
    assert any(k == 6 for _, _, k in outcomes)  # a fault during cleanup leaves the committed new state
    assert len(outcomes) >= 8


def test_multi_field_writes_commit_all_or_none(dataset_factory, monkeypatch):
    import fiftyone.core.fields as fof

    ds = dataset_factory([f"/tmp/fault_multi_{i}.png" for i in range(10)])
    fo_runs.write_and_record(ds, [("a", [1.0] * 10, fof.FloatField), ("b", [1.0] * 10, fof.FloatField)], "pair",
                             kind="experiment")
    n = 1
    while True:
        with monkeypatch.context() as m:
            fault = FaultAt(m, n, STEPS)
            try:
                fo_runs.write_and_record(ds, [("a", [2.0] * 10, fof.FloatField), ("b", [2.0] * 10, fof.FloatField)],
                                         "pair", kind="experiment", overwrite=True, generation=2)
            except Crash:
                pass
        ood.repair_ood_runs(ds)
        ds.reload()
        a, b = set(ds.values("a")), set(ds.values("b"))
        generation = getattr(ds.get_run_info("pair").config, "generation", 1)
        assert a == b == {float(generation)}, (n, a, b, generation)
        assert commit.internal_fields(ds) == []
        if len(fault.calls) < n:
            assert generation == 2
            break
        if generation == 2:
            fo_runs.write_and_record(ds, [("a", [1.0] * 10, fof.FloatField), ("b", [1.0] * 10, fof.FloatField)],
                                     "pair", kind="experiment", overwrite=True)
        n += 1
    assert n >= 8


def test_overwrite_on_a_view_replaces_only_the_view(scored):
    """Against a trusted reference each sample's score is its own: a view's overwrite keeps the others'."""
    ds = scored
    ds.skip(20).tag_samples("trusted")
    kw = dict(reference="trusted", transductive="never")
    ood.compute_ood_scores(ds, "emb", "t", k=3, **kw)
    before = ds.values("t")
    ds.limit(10).set_values("emb", [np.asarray(v)[::-1].copy() for v in ds.limit(10).values("emb")])  # new values
    ood.compute_ood_scores(ds.limit(10), "emb", "t", k=3, overwrite=True, **kw)
    after = ds.values("t")
    assert after[10:20] == before[10:20]  # the 10 samples neither in the view nor trusted keep their scores
    assert after[:10] != before[:10]  # (the trusted ones are scored with the view, self-excluded)


def test_overwrite_on_a_view_refuses_scores_relative_to_the_scored_set(scored):
    """Without a trusted reference (or with the scored set's density ratio) a score depends on the samples scored
    with it: a view's scores would sit beside the others' from another set under the new record."""
    ds = scored
    before = ds.values("s")
    with pytest.raises(OODInputError, match=r"run 's': without a trusted reference the scored samples are their own "
                                            r"reference.*Overwrite on the whole dataset"):
        ood.compute_ood_scores(ds.limit(10), "emb", "s", k=3, overwrite=True)
    assert ds.values("s") == before and ood.get_ood_run_info(ds, "s")["detector"]["k"] == 3
    # the ratio used by either run: refused too (a batch of 20 whose half is far away makes the test fire)
    ds.skip(20).tag_samples("trusted")
    far = ds.limit(10)
    far.set_values("emb", [np.asarray(v) + 25.0 for v in far.values("emb")])
    out = ood.compute_ood_scores(ds.limit(20), "emb", "r", k=3, reference="trusted", score_reference=False)
    assert out["density_ratio"]["used"]
    with pytest.raises(OODInputError, match=r"run 'r': the scored set's density ratio was used"):
        ood.compute_ood_scores(ds.limit(5), "emb", "r", k=3, reference="trusted", transductive="never",
                               score_reference=False, overwrite=True)


def test_kill_9_at_every_step_is_repaired_by_the_next_call(scored, monkeypatch):
    monkeypatch.setenv("FIFTYONE_OOD_LOCK_LEASE", "1")
    ds = scored
    old, new = _expected(ds, 3), _expected(ds, 6)
    killed = rolled_back = 0
    n = 1
    while True:
        out = kill_9_at(ds.name, n, "test_fault_injection",
                        'ood.compute_ood_scores(ds, "emb", "s", k=6, overwrite=True)')
        if out.returncode == 0:
            assert out.stdout.startswith("done")
            assert_old_or_new(ds, old, new)
            break
        assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
        killed += 1
        time.sleep(1.2)  # the dead writer's 1 s lease runs out (a live writer's fields are never touched)
        ood.repair_ood_runs(ds)  # what the next write does first
        k = assert_old_or_new(ds, old, new)
        rolled_back += k == 3
        if k == 6:
            ood.compute_ood_scores(ds, "emb", "s", k=3, overwrite=True)
        n += 1
    assert killed >= 8 and rolled_back >= 1


_RACER = """
import sys
import fiftyone as fo
import ood_core as ood
from ood_core.errors import OODInputError
ds = fo.load_dataset(sys.argv[1])
try:
    ood.compute_ood_scores(ds, "emb", sys.argv[2], k=int(sys.argv[3]), overwrite=sys.argv[4] == "1")
    print("ok", flush=True)
except OODInputError as e:
    print("refused:", e, flush=True)
"""


def _race(ds, field, overwrite):
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, ds.name, field, str(k), "1" if overwrite else "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
             for k in (3, 6)]
    outs = [p.communicate(timeout=300) for p in procs]
    return [out.strip() or f"crashed: {err[-1500:]}" for out, err in outs]


def test_two_writers_of_a_new_field_one_wins_and_the_other_is_told(scored):
    ds = scored
    results = _race(ds, "fresh", overwrite=False)
    assert sorted(r.split(":")[0] for r in results) == ["ok", "refused"], results
    refusal = [r for r in results if r.startswith("refused")][0]
    assert any(why in refusal for why in ("already exists", "appeared while writing", "being written by another")), \
        refusal
    ds.reload()
    k = fo_runs.get_ood_run_info(ds, "fresh")["detector"]["k"]
    np.testing.assert_allclose(ds.values("fresh"), _expected(ds, k), rtol=1e-6)


def test_a_stale_view_of_another_writers_field_is_not_called_foreign(scored, monkeypatch):
    """A dataset document read while another writer was between renaming its field into place and
    recording its run shows the field without its run; once that commit has finished, the check looks
    again and says the field exists (it does not call a plugin field foreign)."""
    ds = scored
    real = fo_runs._owning_run
    calls = []

    def stale_first(dataset, path, prefer=None):
        calls.append(path)
        return None if len(calls) == 1 else real(dataset, path, prefer)  # the first look sees no run (stale)

    monkeypatch.setattr(fo_runs, "_owning_run", stale_first)
    with pytest.raises(OODInputError, match=r"field 's' already exists .* \(written by run 's'\)"):
        fo_runs.check_new_run(ds, "another_key", ["s"], False)
    assert calls == ["s", "s"]


def test_two_overwriting_writers_serialise_and_the_record_matches_the_field(scored):
    ds = scored
    assert _race(ds, "s", overwrite=True) == ["ok", "ok"]
    ds.reload()
    k = fo_runs.get_ood_run_info(ds, "s")["detector"]["k"]
    np.testing.assert_allclose(ds.values("s"), _expected(ds, k), rtol=1e-6)
    assert commit.internal_fields(ds) == [] and fo_runs.list_ood_runs(ds) == ["s"]


def test_a_run_replaced_by_another_process_is_seen_not_called_corrupted(scored, caplog):
    """A dataset held open while another process overwrites its run: the old run document is gone,
    so FiftyOne would warn that the run references are corrupted and list no run (seen in the
    two-writer race above). The package's reads load the dataset again and see the new record."""
    ds = scored
    ds.reload()  # a fresh document whose run records are not read yet, as after fo.load_dataset
    other = run_python(_RACER, ds.name, "s", "6", "1")
    assert other.stdout.strip() == "ok", other.stderr[-1500:]
    with caplog.at_level("WARNING"):
        assert fo_runs.list_ood_runs(ds) == ["s"]
        assert fo_runs.get_ood_run_info(ds, "s")["detector"]["k"] == 6
        fo_runs.check_new_run(ds, "s", ["s"], True)  # this writer may overwrite it again
    assert not [r for r in caplog.records if "corrupted" in r.getMessage()]
    np.testing.assert_allclose(ds.values("s"), _expected(ds, 6), rtol=1e-6)


def test_reading_fields_and_user_fields_are_never_written(scored):
    ds = scored
    emb_before = [v.tolist() for v in ds.values("emb")]
    with pytest.raises(OODInputError, match="'emb' is read by this call"):
        ood.compute_ood_scores(ds, "emb", "emb", k=3, overwrite=True)
    ds.set_values("ground_truth_like", ["x"] * len(ds))
    with pytest.raises(OODInputError, match="no fiftyone-ood run wrote it"):
        ood.compute_ood_scores(ds, "emb", "ground_truth_like", k=3, overwrite=True)
    with pytest.raises(OODInputError, match="built-in field"):
        ood.compute_ood_scores(ds, "emb", "filepath", k=3, overwrite=True)
    assert [v.tolist() for v in ds.values("emb")] == emb_before
    assert ds.values("ground_truth_like") == ["x"] * len(ds)


def test_backup_runs_and_temporary_fields_are_hidden_and_cannot_be_deleted(scored, monkeypatch):
    ds = scored
    # leave a crashed commit behind: the process "dies" right after moving the old record aside
    with monkeypatch.context() as m:
        m.setattr(commit, "_roll_back", lambda dataset, entry: None)  # a kill leaves no chance to undo
        original = fod.Dataset.rename_run

        def die_after_rename(self, *a, **k):
            original(self, *a, **k)
            raise Crash("killed")

        m.setattr(fod.Dataset, "rename_run", die_after_rename)
        with pytest.raises(Crash):
            ood.compute_ood_scores(ds, "emb", "s", k=6, overwrite=True)
    ds.reload()
    assert any(key.startswith("tmp_ood_backup_") for key in ds.list_runs())  # the leftover exists...
    assert fo_runs.list_ood_runs(ds) == []  # ...but is not listed (the live record is moved aside)
    backup = next(key for key in ds.list_runs() if key.startswith("tmp_ood_backup_"))
    with pytest.raises(OODInputError, match="no fiftyone-ood run"):
        ood.delete_ood_run(ds, backup)
    with pytest.raises(OODInputError, match="reserved"):
        ood.compute_ood_scores(ds, "emb", "tmp_ood_mine", k=3)
    done = ood.repair_ood_runs(ds)
    assert done["rolled_back"] == 1
    assert_old_or_new(ds, _expected(ds, 3), _expected(ds, 6))
