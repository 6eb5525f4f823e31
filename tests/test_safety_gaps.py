"""Gaps of "nothing lost" probes found, each reproduced on real FiftyOne datasets (private mongod):

1. a user's field made under the name a stale run record still lists was replaced by ``overwrite=True`` (and
   deleted with the run);
2. ``delete_ood_run(..., delete_fields=True)`` killed half-way left records and fields out of step;
3. an audit killed between its commit and the removal of the earlier audit's tags and saved views left them
   belonging to no run (tested with the redone audit's other faults in ``tests/test_audit_rerun.py``);
4. ``flag_samples`` killed between its commit and its tag changes left tags no run claims (or claims of tags
   never set), and an audit killed before its record left near-duplicate tags and saved views belonging to no
   run; an audit replaced a user's saved view of the name it uses.

Crashes are injected at every database-changing step: as an exception, as a process that dies without undoing
anything (the in-process undo skipped, as ``tests/test_audit_rerun.py`` does) and, for deletion and re-flagging,
as a real ``kill -9`` of a separate process. Each test fails without the fix it covers.
"""

import os
import signal
import time

import fiftyone.core.collections as foc
import fiftyone.core.dataset as fod
import fiftyone.core.fields as fof
import numpy as np
import pytest

import ood_core as ood
from fault_helpers import RUN_TAG_VIEW_STEPS, Crash, FaultAt, kill_9_at, run_faulted
from ood_core.errors import OODInputError
from ood_core.fo import commit
from ood_core.fo import runs as fo_runs

#: database-changing calls of run deletion, flagging and an audit's record, where faults are injected
STEPS = RUN_TAG_VIEW_STEPS


def _nothing_temporary_left(ds):
    ds.reload()
    assert commit.internal_fields(ds) == []
    assert not [key for key in ds.list_runs() if key.startswith("tmp_ood")]


@pytest.fixture
def scored(dataset_factory):
    """30 samples with random embeddings 'emb'; score run 's' (k-NN) and its flags run 's_flag' tagging 5 samples
    'look'; one more sample tagged 'look' by hand."""
    rng = np.random.default_rng(0)
    ds = dataset_factory([f"/tmp/gaps_{i}.png" for i in range(30)])
    ds.set_values("emb", list(rng.normal(size=(30, 8)).astype(np.float32)))
    ood.compute_ood_scores(ds, "emb", "s", method="knn", k=3)
    ood.flag_samples(ds, "s", rule="top_n", value=5, tag="look")
    hand = ds.match_tags("look", bool=False).first()
    hand.tags.append("look")
    hand.save()
    return ds, hand.id


# --------------------------------------------------------------------------- 1. a user's field, a stale record


def test_a_users_field_under_a_stale_records_name_is_refused_and_never_deleted(scored):
    ds, _ = scored
    copy = ds.clone()  # a clone's fields keep their marks: still the runs' own, replaced as usual
    try:
        ood.compute_ood_scores(copy, "emb", "s", method="knn", k=4, overwrite=True)
    finally:
        copy.delete()
    ds.delete_sample_field("s")  # by hand: the run record 's' still lists the name
    ds.set_values("s", [f"note {i}" for i in range(len(ds))])  # the user's own field, same name
    mine = ds.values("s")
    fix = (r"field 's' .* is listed by run 's', but it is not the field that run wrote.*refusing to replace it, "
           r"even with overwrite=True.*ood.delete_ood_run\(dataset, 's', delete_fields=False\)")
    with pytest.raises(OODInputError, match=fix):
        ood.compute_ood_scores(ds, "emb", "s", method="knn", k=4, overwrite=True)
    with pytest.raises(OODInputError, match=fix):  # nor may another run take it
        ood.compute_ood_scores(ds, "emb", "s", method="knn", k=4, run_key="other", overwrite=True)
    assert ds.values("s") == mine
    deleted = ood.delete_ood_run(ds, "s")  # deleting the stale run (and its flags) leaves the user's field alone
    assert "s" not in deleted and "s_flag" in deleted and ds.values("s") == mine
    assert ood.list_ood_runs(ds) == []


def test_a_replaced_run_does_not_drop_a_users_field_made_under_its_old_name(dataset_factory):
    ds = dataset_factory([f"/tmp/gaps_pair_{i}.png" for i in range(10)])
    fo_runs.write_and_record(ds, [("a", [1.0] * 10, fof.FloatField), ("b", [1.0] * 10, fof.FloatField)], "pair",
                             kind="experiment")
    ds.delete_sample_field("b")
    ds.add_sample_field("b", fof.StringField)  # made again by hand
    ds.set_values("b", ["kept"] * 10)
    # the run replaced by one writing only 'a' used to take the field 'b' it had listed along with it
    fo_runs.write_and_record(ds, [("a", [2.0] * 10, fof.FloatField)], "pair", kind="experiment", overwrite=True)
    assert ds.values("a") == [2.0] * 10 and ds.values("b") == ["kept"] * 10
    assert ood.get_ood_run_info(ds, "pair")["fields"] == ["a"]
    # the field a run wrote stays its own through the overwrite: replaced again, not refused
    fo_runs.write_and_record(ds, [("a", [3.0] * 10, fof.FloatField)], "pair", kind="experiment", overwrite=True)
    assert ds.values("a") == [3.0] * 10
    _nothing_temporary_left(ds)


# --------------------------------------------------------------------------- 2. deleting runs, crashed


def _state(ds):
    """What deleting 's' changes: its records, fields (with values) and the tag its flags added."""
    ds.reload()
    schema = ds.get_field_schema()
    return {
        "runs": sorted(fo_runs.list_ood_runs(ds)),
        "fields": {f: ds.values(f) for f in ("s", "s_pvalue", "s_flag") if f in schema},
        "look": set(ds.match_tags("look").values("id")),
    }


def _deleted_whole_or_not_at_all(ds, hand, before, only_flags=False):
    """After the next call's repair: 's' and its flags run with every field and tag as before, or all of it gone
    (the hand-set tag stays; ``only_flags``: all of the flags run gone, 's' as before); each record lists only
    fields that exist."""
    ood.repair_ood_runs(ds)
    _nothing_temporary_left(ds)
    now = _state(ds)
    for key in now["runs"]:
        assert all(ds.has_field(f) for f in ood.get_ood_run_info(ds, key)["fields"]), key
    if now == before:
        return "kept"
    if only_flags:
        assert now == {"runs": ["s"], "fields": {f: before["fields"][f] for f in ("s", "s_pvalue")},
                       "look": {hand}}, now
    else:
        assert now == {"runs": [], "fields": {}, "look": {hand}}, now
    return "deleted"


@pytest.mark.parametrize("delete", ["run", "flags"])
@pytest.mark.parametrize("killed", [False, True], ids=["exception", "killed"])
def test_deleting_a_run_failing_at_any_step_deletes_all_of_it_or_nothing(scored, monkeypatch, killed, delete):
    """``delete_ood_run`` of the score run (its flags go with it) or ``delete_flags`` of its flags run (which used
    to untag before, and outside, the removal of the record)."""
    ds, hand = scored
    only_flags = delete == "flags"
    before = _state(ds)
    outcomes, n = [], 1
    while True:
        fault, failed = run_faulted(monkeypatch, n, STEPS, killed=killed, call=lambda: ood.delete_flags(
            ds, "s_flag") if only_flags else ood.delete_ood_run(ds, "s"))
        state = _deleted_whole_or_not_at_all(ds, hand, before, only_flags)
        if not fault.reached:  # went through without reaching call n: every step was hit
            assert not failed and state == "deleted"
            break
        outcomes.append((fault.calls[n - 1], failed, state))
        if state == "deleted":  # start again from the run and its flags
            if not only_flags:
                ood.compute_ood_scores(ds, "emb", "s", method="knn", k=3)
            ood.flag_samples(ds, "s", rule="top_n", value=5, tag="look")
            before = _state(ds)
        n += 1
    # a fault after the commit (tags, dropping the moved-aside copies) is left to the repair, not raised
    assert {"rename_sample_field", "rename_run", "delete_sample_field", "delete_run", "untag_samples"} <= \
        {name for name, _, _ in outcomes}, outcomes
    assert any(state == "kept" for _, failed, state in outcomes if failed)  # undone (or by the repair)
    assert any(state == "deleted" for _, _, state in outcomes)  # finished by the repair


def test_kill_9_while_deleting_a_run_is_finished_or_undone_by_the_next_call(scored, monkeypatch):
    monkeypatch.setenv("FIFTYONE_OOD_LOCK_LEASE", "1")
    ds, hand = scored
    before = _state(ds)
    outcomes, n = [], 1
    while True:
        out = kill_9_at(ds.name, n, "test_safety_gaps", 'ood.delete_ood_run(ds, "s")')
        if out.returncode == 0:
            assert out.stdout.startswith("done"), out.stdout
            assert _deleted_whole_or_not_at_all(ds, hand, before) == "deleted"
            break
        assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
        time.sleep(1.2)  # the dead process's 1 s leases run out
        state = _deleted_whole_or_not_at_all(ds, hand, before)
        outcomes.append(state)
        if state == "deleted":
            ood.compute_ood_scores(ds, "emb", "s", method="knn", k=3)
            ood.flag_samples(ds, "s", rule="top_n", value=5, tag="look")
            before = _state(ds)
        n += 1
    assert len(outcomes) >= 8 and {"kept", "deleted"} <= set(outcomes), outcomes


# --------------------------------------------------------------------------- 3. an audit's tags and views, crashed
# (tests/test_audit_rerun.py: a redone audit failing at every step of its commit and of what follows it)


# --------------------------------------------------------------------------- 4. tags of flags and audits, crashed


def _tags_match_claims(ds, hand):
    """After the next call's repair: the 'look' and 'peek' tags are the hand-set 'look' and those the flags run
    claims under its tag, which its flag field marks; returns that tag (which of the two flag rules is in place)."""
    ood.repair_ood_runs(ds)
    _nothing_temporary_left(ds)
    info = ood.get_flag_info(ds, "s_flag")
    claimed = set(info["tagged_ids"])
    assert set(ds.match_tags("look").values("id")) == (claimed if info["tag"] == "look" else set()) | {hand}
    assert set(ds.match_tags("peek").values("id")) == (claimed if info["tag"] == "peek" else set())
    assert {i for i, f in zip(ds.values("id"), ds.values("s_flag")) if f} - {hand} == claimed
    return info["tag"]


@pytest.mark.parametrize("killed", [False, True], ids=["exception", "killed"])
def test_reflagging_failing_at_any_step_leaves_tags_matching_the_record(scored, monkeypatch, killed):
    """Re-flagging moves the flags from the top 5 tagged 'look' to the top 12 tagged 'peek' and back; the tags
    used to change after the commit, outside its journal."""
    ds, hand = scored
    rules = {"look": 5, "peek": 12}
    outcomes, n, tag = [], 1, "peek"
    assert _tags_match_claims(ds, hand) == "look"
    while True:
        fault, failed = run_faulted(monkeypatch, n, STEPS, killed=killed, call=lambda: ood.flag_samples(
            ds, "s", rule="top_n", value=rules[tag], tag=tag, overwrite=True))
        done = _tags_match_claims(ds, hand) == tag
        if not fault.reached:
            assert not failed and done
            break
        outcomes.append((fault.calls[n - 1], done))
        if done:  # the new flags are in: next time, go back
            tag = "look" if tag == "peek" else "peek"
        n += 1
    assert {"tag_samples", "untag_samples", "rename_run"} <= {name for name, _ in outcomes}, outcomes
    assert {True, False} == {done for _, done in outcomes}


def test_kill_9_while_reflagging_leaves_tags_matching_the_record(scored, monkeypatch):
    monkeypatch.setenv("FIFTYONE_OOD_LOCK_LEASE", "1")
    ds, hand = scored
    rules = {"look": 5, "peek": 12}
    outcomes, n, tag = [], 1, "peek"
    while True:
        out = kill_9_at(ds.name, n, "test_safety_gaps",
                        f'ood.flag_samples(ds, "s", rule="top_n", value={rules[tag]}, tag="{tag}", overwrite=True)')
        if out.returncode == 0:
            assert out.stdout.startswith("done") and _tags_match_claims(ds, hand) == tag
            break
        assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
        time.sleep(1.2)  # the dead process's 1 s leases run out
        done = _tags_match_claims(ds, hand) == tag
        outcomes.append(done)
        if done:
            tag = "look" if tag == "peek" else "peek"
        n += 1
    assert len(outcomes) >= 8 and {True, False} <= set(outcomes), outcomes


@pytest.fixture
def duplicated(dataset_factory, fashion_files):
    """12 real images, two of them twice (exact duplicates), embeddings 'emb'; a curator's saved view 'mine'."""
    paths, names = fashion_files
    ds = dataset_factory(paths[:20:2] + [paths[0], paths[2]], names[:20:2] + [names[0], names[2]])
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1,
                                   progress=False)
    ds.save_view("mine", ds.limit(3))
    return ds


@pytest.mark.parametrize("killed", [False, True], ids=["exception", "killed"])
def test_an_audit_crashed_anywhere_leaves_no_tag_or_view_belonging_to_no_run(duplicated, tmp_path, monkeypatch,
                                                                             killed):
    """Near-duplicate tags and saved views used to be written before the audit's record: a crash before it left
    them to no run (no audit claimed the tags; redoing the audit took the views for a user's)."""
    ds = duplicated
    outcomes, n = [], 1
    while True:
        fault, failed = run_faulted(monkeypatch, n, STEPS, killed=killed, call=lambda: ood.audit(
            ds, report_path=str(tmp_path / "d.html"), embeddings_field="emb", overwrite=True))
        ood.repair_ood_runs(ds)  # also removes the runs of an audit interrupted before its record
        _nothing_temporary_left(ds)
        recorded = "ood_audit" in ood.list_ood_runs(ds, kind="audit")
        views = set(ood.get_ood_run_info(ds, "ood_audit")["saved_views"]) if recorded else set()
        assert set(ds.list_saved_views()) == views | {"mine"}
        claimed = set(ood.load_ood_results(ds, "ood_audit").tagged_duplicate_ids) if recorded else set()
        assert set(ds.match_tags("near_duplicate").values("id")) == claimed
        assert len(claimed) == (2 if recorded else 0)
        if not fault.reached:
            assert not failed and recorded and "ood_audit-near-duplicates" in views
            break
        outcomes.append((fault.calls[n - 1], recorded))
        if recorded:  # start again from no audit
            ood.delete_ood_run(ds, "ood_audit")  # its views and tags go with it; its score runs stay
            assert set(ds.list_saved_views()) == {"mine"} and not ds.match_tags("near_duplicate")
            for key in ood.list_ood_runs(ds, kind="ood_scores"):
                ood.delete_ood_run(ds, key)
        n += 1
    assert {"tag_samples", "save_view", "register_run"} <= {name for name, _ in outcomes}, outcomes
    assert {True, False} == {recorded for _, recorded in outcomes}
    assert len(ds.load_saved_view("mine")) == 3


def test_an_audit_never_replaces_a_users_saved_view_of_its_name(duplicated, tmp_path):
    ds = duplicated
    ds.save_view("ood_audit-ood", ds.limit(2), description="my picks")
    with pytest.raises(OODInputError, match=r"saved views \['ood_audit-ood'\], which no audit 'ood_audit' made.*"
                                            r"Rename those views, or pass another audit_key"):
        ood.audit(ds, report_path=str(tmp_path / "d.html"), embeddings_field="emb")
    assert len(ds.load_saved_view("ood_audit-ood")) == 2 and ood.list_ood_runs(ds) == ["emb"]
    out = ood.audit(ds, report_path=str(tmp_path / "d.html"), embeddings_field="emb", audit_key="second")
    assert "second-ood" in out["saved_views"] and len(ds.load_saved_view("ood_audit-ood")) == 2
    assert ds.get_saved_view_info("second-ood")["description"].startswith("fiftyone-ood audit 'second'")
    ood.audit(ds, report_path=str(tmp_path / "d.html"), embeddings_field="emb", audit_key="second", overwrite=True)
    assert set(ds.list_saved_views()) == {"mine", "ood_audit-ood", *out["saved_views"]}


def test_tag_changes_too_many_for_one_journal_entry_are_refused_before_anything_changes(scored):
    import bson

    from ood_core.fo import followups

    ds, _ = scored
    ids = [str(bson.ObjectId()) for _ in range(1_500_000)]  # 18 MB packed
    with pytest.raises(OODInputError, match=r"run 's_flag' on dataset .* more items than one journal entry holds.*"
                                            r"nothing was changed.*pass tag=None"):
        commit._open_journal(ds, [], "s_flag", cleanup=[followups.tag("look", None, ids)])
    assert commit.journal().count_documents({"dataset_id": str(ds._doc.id)}) == 0
    op = followups.tag("look", None, ids[:1000])  # packed: 12 bytes an id, read back as the same ids
    assert len(op["packed_ids"]) == 12_000 and followups._ids(op) == set(ids[:1000])


# --------------------------------------------------------------------------- 5. the audit's export folder


def test_the_audit_never_exports_into_a_folder_of_the_users_files(duplicated, tmp_path, monkeypatch):
    """FiftyOne's ``export(..., overwrite=True)``, which the audit used, deletes the export folder first: a folder
    of the user's files named as ``export_dir`` was deleted."""
    import fiftyone.core.collections as foc

    from ood_core.fo.export_files import MARKER

    ds, mine = duplicated, tmp_path / "my_project"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    kw = dict(report_path=str(tmp_path / "d.html"), embeddings_field="emb")
    with pytest.raises(OODInputError, match=r"export_dir=.*my_project.* already holds files that fiftyone-ood did "
                                            r"not export.*Pass a new folder"):
        ood.audit(ds, export_dir=str(mine), **kw)
    assert (mine / "notes.txt").read_text() == "keep me" and os.listdir(mine) == ["notes.txt"]
    assert ood.list_ood_runs(ds) == ["emb"]  # refused before anything was written
    out = ood.audit(ds, export_dir=str(tmp_path / "export"), **kw)
    first = sorted(os.listdir(tmp_path / "export"))
    assert MARKER in first and "samples.json" in first and out["export_dir"] == str(tmp_path / "export")

    def broken(self, *args, **kwargs):  # fails half-way: writes a file, then raises
        os.makedirs(kwargs["export_dir"], exist_ok=True)  # (as FiftyOne: the staged folder exists)
        open(os.path.join(kwargs["export_dir"], "samples.json"), "w").close()
        raise Crash("export")

    monkeypatch.setattr(foc.SampleCollection, "export", broken)
    with pytest.raises(Crash):
        ood.audit(ds, export_dir=str(tmp_path / "export"), overwrite=True, **kw)
    assert sorted(os.listdir(tmp_path / "export")) == first  # the earlier export, whole
    assert sorted(os.listdir(tmp_path)) == ["d.html", "d_flagged.csv", "export", "my_project"]  # nothing staged
    monkeypatch.undo()
    ood.audit(ds, export_dir=str(tmp_path / "export"), overwrite=True, **kw)  # an earlier export is replaced
    assert sorted(os.listdir(tmp_path / "export")) == first


def test_files_put_into_the_export_folder_while_the_audit_ran_are_kept(duplicated, tmp_path, monkeypatch):
    """The folder is checked when the audit starts; files the user puts there while it runs (or a folder created
    under the name of a new one) were moved aside with the earlier export and deleted with it."""
    import fiftyone.core.collections as foc

    ds = duplicated
    kw = dict(report_path=str(tmp_path / "d.html"), embeddings_field="emb", near_duplicates=False)
    export = tmp_path / "export"
    ood.audit(ds, export_dir=str(export), **kw)
    first = sorted(os.listdir(export))
    real_export = foc.SampleCollection.export

    def racing(self, *args, **kwargs):  # the user copies notes into the folder while the new export is staged
        real_export(self, *args, **kwargs)
        (export / "notes.txt").write_text("keep me")

    monkeypatch.setattr(foc.SampleCollection, "export", racing)
    with pytest.raises(OODInputError, match=r"export_dir=.*export.* received files that fiftyone-ood did not "
                                            r"export while the audit ran; it was left as it is"):
        ood.audit(ds, export_dir=str(export), overwrite=True, **kw)
    assert sorted(os.listdir(export)) == sorted(first + ["notes.txt"]) and (export / "notes.txt").read_text() == \
        "keep me"
    new = tmp_path / "new_export"

    def creating(self, *args, **kwargs):  # a folder of the user's appears under the new export's name
        real_export(self, *args, **kwargs)
        new.mkdir()
        (new / "mine.txt").write_text("mine")

    monkeypatch.setattr(foc.SampleCollection, "export", creating)
    with pytest.raises(OODInputError, match=r"new_export.* received files that fiftyone-ood did not export while"):
        ood.audit(ds, export_dir=str(new), overwrite=True, **kw)
    assert os.listdir(new) == ["mine.txt"]
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n or ".old-" in n]  # nothing staged left
    # a file the user added to an earlier export since is theirs: that export is no longer replaced
    monkeypatch.undo()
    with pytest.raises(OODInputError, match=r"export_dir=.*export.* already holds files that fiftyone-ood did not "
                                            r"export \(e.g. 'notes.txt'\)"):
        ood.audit(ds, export_dir=str(export), overwrite=True, **kw)
    (export / "notes.txt").unlink()
    ood.audit(ds, export_dir=str(export), overwrite=True, **kw)  # without it, it is again
    assert sorted(os.listdir(export)) == first


def test_the_audit_never_replaces_a_users_file_with_its_report_or_csv(duplicated, tmp_path, monkeypatch):
    """The report and the CSV beside it were written over any file of those names."""
    import ood_core.fo.audit_report as audit_report

    ds = duplicated
    kw = dict(embeddings_field="emb", near_duplicates=False)
    for name in ("mine.html", "mine_flagged.csv"):  # the report's name, or the CSV's beside it
        (tmp_path / name).write_text("my own notes")
        with pytest.raises(OODInputError, match=rf"{name}' exists and is not a fiftyone-ood audit report .*Pass "
                                                r"another report_path"):
            ood.audit(ds, report_path=str(tmp_path / "mine.html"), **kw)
        assert (tmp_path / name).read_text() == "my own notes" and ood.list_ood_runs(ds) == ["emb"]
        (tmp_path / name).unlink()
    out = ood.audit(ds, report_path=str(tmp_path / "a.html"), **kw)
    report, table = os.stat(tmp_path / "a.html").st_ino, (tmp_path / "a_flagged.csv").read_text()

    def broken(*args, **kwargs):  # the CSV writer fails half-way through the redo
        raise Crash("csv")

    monkeypatch.setattr(audit_report.csv, "writer", broken)
    with pytest.raises(Crash):
        ood.audit(ds, report_path=str(tmp_path / "a.html"), overwrite=True, **kw)
    assert (tmp_path / "a_flagged.csv").read_text() == table  # the earlier CSV, whole; no temporary file left
    assert sorted(os.listdir(tmp_path)) == ["a.html", "a_flagged.csv"]
    monkeypatch.undo()
    ood.audit(ds, report_path=str(tmp_path / "a.html"), overwrite=True, **kw)  # its own files are replaced
    assert os.stat(tmp_path / "a.html").st_ino != report and out["csv_path"] == str(tmp_path / "a_flagged.csv")


# --------------------------------------------------------------------------- 6. renaming, crashed


def _names_of_s(ds):
    """After the next call's repair: the score run is 's' or 't', and every flags run and audit names that key."""
    ood.repair_ood_runs(ds)
    keys = set(ood.list_ood_runs(ds, kind="ood_scores"))
    assert keys in ({"s"}, {"t"}), keys
    key = keys.pop()
    assert {ood.get_ood_run_info(ds, f)["score_run"] for f in ("s_flag", "s_flag2")} == {key}
    assert ood.get_ood_run_info(ds, "aud")["audit_runs"] == {"ood": key, "ood_flags": "s_flag"}
    return key


@pytest.mark.parametrize("killed", [False, True], ids=["exception", "killed"])
def test_renaming_a_run_failing_at_any_step_renames_every_reference_or_none(scored, monkeypatch, killed):
    """The flags runs and audits naming the renamed run were updated one by one after it: a failure left some
    naming a run that no longer existed (deleting the run then left their fields and tags to no run)."""
    ds, _ = scored
    ood.flag_samples(ds, "s", rule="top_n", value=3, flag_field="s_flag2", tag="other")
    fo_runs.register_run(ds, "aud", kind="audit", fields=[], audit_runs={"ood": "s", "ood_flags": "s_flag"})
    outcomes, n, names = [], 1, {"s": "t", "t": "s"}
    while True:
        key = _names_of_s(ds)
        with monkeypatch.context() as m:
            fault = FaultAt(m, n, STEPS)
            if killed:  # a kill leaves the journal entry to the next call
                m.setattr(commit, "_settle_rename", lambda dataset, entry: None)
            try:
                ood.rename_ood_run(ds, key, names[key])
                failed = False
            except Crash:
                failed = True
        done = _names_of_s(ds) == names[key]
        if not fault.reached:
            assert not failed and done
            break
        outcomes.append((fault.calls[n - 1], done))
        n += 1
    if killed:  # killed at the rename, or after it (the last round: the references are left to the repair)
        assert outcomes == [("rename_run", False)], outcomes
    else:  # a failure after the rename is finished by the repair
        assert {"rename_run", "update_run_config"} <= {name for name, _ in outcomes}, outcomes
        assert {True, False} <= {done for _, done in outcomes}
