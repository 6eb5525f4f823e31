"""Nothing lost on a clone made while a write is between its steps, when the write then finishes normally.

A writer is paused (in a thread, at each database-changing call of its commit in turn) while the test clones the
dataset (or a view of it): the clone copies the commit's staged ``tmp_ood_*`` fields, its moved-aside
``tmp_ood_old_*`` fields and backup run record, without the targets. The write then finishes on the original and
drops its journal. The clone's next call (``ood.repair_ood_runs`` or any write) used to find no journal, take the
copies for orphans and delete them: the clone lost the run's fields (or kept a record without its field, a field
without its record). Now a commit that ends while another dataset holds its temporary names keeps its journal
entry for that copy, and the copy is rolled forward only when it has the new fields and record (or dropping began).
"""

import threading

import numpy as np
import pytest

import ood_core as ood
from ood_core.fo import commit
from ood_core.fo import runs as fo_runs
from test_fault_injection import STEPS, scored  # noqa: F401 (fixture: 40 samples, score run 's' with k=3)

FIELDS = ("s", "s_pvalue")  # the fields of the score run "s"


class PausedWrite:
    """``call`` in a thread that stops before each of its database-changing calls (:data:`STEPS`) numbered in
    ``at`` (1-based, counting only that thread's calls), until :meth:`resume` (as another process's write would be
    caught between its steps)."""

    def __init__(self, monkeypatch, at, call):
        self.at, self.count, self.name, self.done, self.error = set(at), 0, None, False, None
        self.stopped, self.go = threading.Event(), threading.Event()
        for owner, name in STEPS:
            monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name), name))
        self.thread = threading.Thread(target=self._run, args=(call,))
        self.thread.start()

    def _wrap(self, original, name):
        def wrapper(*args, **kwargs):
            if threading.current_thread() is self.thread:
                self.count += 1
                if self.count in self.at:
                    self.name = name
                    self.stopped.set()
                    self.go.wait(300)
                    self.go.clear()
            return original(*args, **kwargs)

        return wrapper

    def _run(self, call):
        try:
            call()
        except BaseException as e:  # re-raised in the test by finish()
            self.error = e
        finally:
            self.done = True
            self.stopped.set()

    def wait(self):
        """The name of the call the write stopped before, or None once it ended."""
        assert self.stopped.wait(300)
        self.stopped.clear()
        return None if self.done else self.name

    def resume(self):
        self.go.set()

    def finish(self):
        self.at = set()
        self.go.set()
        self.thread.join(300)
        if self.error is not None:
            raise self.error


def _by_id(samples):
    ids = samples.values("id")
    return {f: dict(zip(ids, samples.values(f))) for f in FIELDS}


def _side(clone, before, after):
    """"old" or "new": every field of the run holds the complete values of one side on the clone's samples."""
    ids = clone.values("id")
    got = {f: clone.values(f) if clone.has_field(f) else None for f in FIELDS}
    for label, side in (("old", before), ("new", after)):
        if all(got[f] == [side[f][i] for i in ids] for f in FIELDS):
            return label
    return None


def _held(clone):
    """What the clone copied: its temporary fields and backup runs, and the run's fields it lacks."""
    clone.reload()
    tmp = commit.internal_fields(clone) + [key for key in clone.list_runs() if commit.is_internal(key)]
    return sorted(p.split("_")[2] if p.startswith("tmp_ood_") and p.count("_") > 2 else "staged" for p in tmp), \
        [f for f in FIELDS if not clone.has_field(f)]


def _assert_settled(clone, before, after, k_old, k_new, is_view):
    clone.reload()
    state = _side(clone, before, after)
    assert commit.internal_fields(clone) == [] and not [k for k in clone.list_runs() if k.startswith("tmp_ood")]
    if is_view:  # a view's clone carries no run records: the fields are plain copies, complete
        assert "s" not in fo_runs.list_ood_runs(clone)
    else:
        assert "s" in fo_runs.list_ood_runs(clone), "the run's record was lost"
        k = fo_runs.get_ood_run_info(clone, "s")["detector"]["k"]
        assert k == (k_old if state == "old" else k_new), (state, k)
    return state


@pytest.mark.parametrize("kind", ["dataset", "view"])
def test_a_clone_made_between_the_steps_of_a_write_keeps_complete_fields(scored, monkeypatch, kind):
    ds, k_old, n, outcomes = scored, 3, 1, []
    while True:
        k_new = 9 - k_old  # 3 <-> 6
        before = _by_id(ds)
        with monkeypatch.context() as m:
            write = PausedWrite(m, [n], lambda: ood.compute_ood_scores(ds, "emb", "s", k=k_new, overwrite=True))
            step = write.wait()
            clone = (ds if kind == "dataset" else ds.skip(5)).clone() if step else None
            write.finish()
        if step is None:
            break
        after = _by_id(ds)
        try:
            held = _held(clone)
            if n % 2:
                ood.repair_ood_runs(clone)
            else:  # any write on the clone repairs it first
                ood.compute_ood_scores(clone, "emb", "other", k=2)
            state = _assert_settled(clone, before, after, k_old, k_new, kind == "view")
            assert state, (n, step, held, list(clone.get_field_schema()))
        finally:
            clone.delete()
        outcomes.append((step, held, state))
        k_old, n = k_new, n + 1
    # the clones that copied a state without the run's fields (moved aside) are the ones that lost them
    assert any(missing for _, (_, missing), _ in outcomes), outcomes
    assert {"old", "new"} <= {state for _, _, state in outcomes}, outcomes


def test_a_clone_repaired_while_the_write_is_still_running_keeps_what_it_copied(scored, monkeypatch):
    """The clone copies the moved-aside state, then its repair runs while the original's commit is already
    recorded (its live journal says so): the copy has no new record, so it is rolled back, not forward."""
    ds = scored
    before = _by_id(ds)
    live = {"dataset_id": str(ds._doc.id)}
    with monkeypatch.context() as m:
        write = PausedWrite(m, range(1, 200), lambda: ood.compute_ood_scores(ds, "emb", "s", k=6, overwrite=True))
        clone = None
        try:
            while write.wait() is not None:
                ds.reload()
                if clone is None and not ds.has_field("s") and ds.has_field("s_pvalue"):
                    clone = ds.clone()  # "s" moved aside, "s_pvalue" not yet
                entry = commit.journal().find_one(live)
                if clone is not None and entry and entry["phase"] == "recorded":
                    break
                write.resume()
            assert clone is not None and entry["phase"] == "recorded"
            ood.repair_ood_runs(clone)
            assert _assert_settled(clone, before, before, 3, 6, False) == "old"
        finally:
            write.finish()
            if clone is not None:
                clone.delete()
    assert _side(ds, before, _by_id(ds)) == "new"


def test_copies_and_merges_of_fields_during_a_write_leave_other_fields_alone(scored, dataset_factory, monkeypatch):
    """``clone_sample_field`` of a target between the steps copies complete old or new values (or is refused while
    the target is moved aside); ``merge_samples`` of the dataset into another one brings the temporary fields
    along, which that dataset's next call removes without touching its own fields (its samples have other ids)."""
    ds = scored
    before = _by_id(ds)
    dest = dataset_factory([f"/tmp/merge_dest_{i}.png" for i in range(6)])
    dest.set_values("s", [float(i) for i in range(6)])  # the user's own field of that name, no run
    own = dict(zip(dest.values("id"), dest.values("s")))
    copies, refused, merged = [], [], False
    with monkeypatch.context() as m:
        write = PausedWrite(m, range(1, 200), lambda: ood.compute_ood_scores(ds, "emb", "s", k=6, overwrite=True))
        try:
            while (step := write.wait()) is not None:
                ds.reload()
                name = f"user_copy_{len(copies) + len(refused)}"
                try:
                    ds.clone_sample_field("s", name)
                    copies.append(name)
                except AttributeError:  # "Sample field 's' does not exist": moved aside at this step
                    refused.append(step)
                if not merged and not ds.has_field("s"):
                    dest.merge_samples(ds)
                    merged = True
                write.resume()
        finally:
            write.finish()
    after = _by_id(ds)
    ood.repair_ood_runs(ds)
    ood.repair_ood_runs(dest)
    ds.reload(), dest.reload()
    assert merged and refused and copies
    for name in copies:  # a user's copy is the complete old or new field, and repair leaves it alone
        assert ds.values(name) in ([before["s"][i] for i in ds.values("id")], [after["s"][i] for i in ds.values("id")])
    assert commit.internal_fields(dest) == [] and "s" not in fo_runs.list_ood_runs(dest)
    assert {i: v for i, v in zip(dest.values("id"), dest.values("s")) if i in own} == own
    np.testing.assert_array_equal(ds.values("s"), [after["s"][i] for i in ds.values("id")])


def test_a_clone_made_between_the_steps_of_a_run_deletion_keeps_the_run_or_none_of_it(scored, monkeypatch):
    """Deleting a run moves its record and fields aside, then drops them: a clone copied between those steps ends
    with the whole run (record and complete fields) or none of it, never a record without its fields."""
    ds, n, outcomes = scored, 1, []
    while True:
        before = _by_id(ds)
        with monkeypatch.context() as m:
            write = PausedWrite(m, [n], lambda: ood.delete_ood_run(ds, "s"))
            step = write.wait()
            clone = ds.clone() if step else None
            write.finish()
        if step is None:
            break
        try:
            held = _held(clone)
            ood.repair_ood_runs(clone)
            clone.reload()
            assert commit.internal_fields(clone) == [] and not [k for k in clone.list_runs() if k.startswith("tmp")]
            if "s" in fo_runs.list_ood_runs(clone):
                assert _side(clone, before, before) == "old", (n, step, held)
                outcomes.append("kept")
            else:
                assert not any(clone.has_field(f) for f in FIELDS), (n, step, held)
                outcomes.append("deleted")
        finally:
            clone.delete()
        ood.compute_ood_scores(ds, "emb", "s", k=3)
        n += 1
    assert {"kept", "deleted"} <= set(outcomes), outcomes
