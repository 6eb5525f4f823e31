"""Data-safety cases found by QA with real processes: a curator's undeclared object attributes, exact sample
counts, two writers of one embeddings field, keys left in documents that the schema lost, interrupted audits,
and the audit record kept consistent when its runs are renamed or deleted.

Real Fashion-MNIST images on the private MongoDB; each case fails without its fix.
"""

import os
import uuid

import pytest

from ood_core.errors import OODInputError

EMB = dict(model_name="tf_efficientnet_lite0", levels=[1], grid=1, progress=False)


@pytest.fixture
def make_dataset():
    import fiftyone as fo

    created = []

    def make(samples):
        ds = fo.Dataset(f"test-safety-{uuid.uuid4().hex[:8]}")
        ds.add_samples(samples, progress=False)
        created.append(ds)
        return ds

    yield make
    for ds in created:
        if not ds.deleted:
            ds.delete()


@pytest.fixture
def objects_ds(make_dataset, fashion_files):
    """24 images, one object each carrying a curator's own (undeclared) attributes; object embeddings 'pemb'."""
    import fiftyone as fo

    import ood_core as ood

    paths, names = fashion_files
    idx = [c * 20 + j for c in range(8) for j in range(3)]
    ds = make_dataset([
        fo.Sample(filepath=paths[i], tags=["trusted"] if n % 3 else [], gt=fo.Detections(detections=[
            fo.Detection(label=names[i], bounding_box=[0.1, 0.1, 0.6, 0.6], my_note=42.0,
                         lab_suggestion="curator says X", s2_pvalue=7.0, s_flag="keep")]))
        for n, i in enumerate(idx)])
    ood.compute_pyramid_embeddings(ds, "pemb", patches_field="gt", **EMB)
    return ds


# --------------------------------------------------------------------------- 1. undeclared object attributes


def test_a_curators_undeclared_object_attributes_are_never_overwritten(objects_ds):
    import ood_core as ood

    ds = objects_ds
    attrs = ("my_note", "lab_suggestion", "s2_pvalue", "s_flag")
    assert all(ds.get_field(f"gt.detections.{a}") is None for a in attrs)  # FiftyOne leaves them undeclared
    before = {a: ds.values(f"gt.detections.{a}") for a in attrs}
    for overwrite in (False, True):
        with pytest.raises(OODInputError, match=r"'gt.detections.my_note' exists .*hold values there.* no "
                                                r"fiftyone-ood run wrote it"):
            ood.compute_ood_scores(ds, "pemb", "my_note", patches_field="gt", reference="trusted",
                                   overwrite=overwrite)
        with pytest.raises(OODInputError, match="'gt.detections.lab_suggestion' exists"):  # the suggestion
            ood.compute_label_issues(ds, "gt", "pemb", "lab", overwrite=overwrite)
        with pytest.raises(OODInputError, match="'gt.detections.s2_pvalue' exists"):  # the p-value companion
            ood.compute_ood_scores(ds, "pemb", "s2", patches_field="gt", reference="trusted", overwrite=overwrite)
        with pytest.raises(OODInputError, match="'gt.detections.my_note' exists"):  # object embeddings too
            ood.compute_pyramid_embeddings(ds, "my_note", patches_field="gt", overwrite=overwrite, **EMB)
    assert not {"my_note", "lab", "s2"} & set(ood.list_ood_runs(ds))
    assert ds.get_field("gt.detections.lab") is None and ds.get_field("gt.detections.s2") is None
    ood.compute_ood_scores(ds, "pemb", "s", patches_field="gt", method="knn", k=3, reference="trusted")
    for overwrite in (False, True):  # the flags of a score run
        with pytest.raises(OODInputError, match="'gt.detections.s_flag' exists"):
            ood.flag_samples(ds, "s", rule="top_n", value=3, overwrite=overwrite)
    assert {a: ds.values(f"gt.detections.{a}") for a in attrs} == before


# --------------------------------------------------------------------------- 2. exact sample counts


@pytest.fixture
def labelled_ds(make_dataset, fashion_files):
    """30 images, 3 per class; 2 per class tagged 'trusted'; embeddings 'emb'."""
    import fiftyone as fo

    import ood_core as ood

    paths, names = fashion_files
    idx = [c * 20 + j for c in range(10) for j in range(3)]
    ds = make_dataset([fo.Sample(filepath=paths[i], tags=["trusted"] if i % 20 < 2 else [],
                                 ground_truth=fo.Classification(label=names[i])) for i in idx])
    ood.compute_pyramid_embeddings(ds, "emb", **EMB)
    return ds


def test_samples_are_counted_exactly_when_mongodbs_estimate_is_wrong(labelled_ds, tmp_path, monkeypatch):
    """After an unclean mongod shutdown ``len(dataset)`` (MongoDB's estimated count) said 0 for 1,500 samples and
    the audit refused "needs at least 2 samples"; the package counts the documents instead."""
    import fiftyone.core.dataset as fod

    import ood_core as ood

    ds = labelled_ds
    monkeypatch.setattr(fod.Dataset, "_estimated_count", lambda self, frames=False: 0)
    assert len(ds) == 0 and ds.count() == 0 and len(ds.view()) == 0  # what FiftyOne's shortcut says now
    from ood_core.fo.items import num_samples

    assert num_samples(ds) == num_samples(ds.view()) == 30
    out = ood.audit(ds, embeddings_field="emb", report_path=str(tmp_path / "a.html"), near_duplicates=False)
    assert out["num_samples"] == 30


# --------------------------------------------------------------------------- 3. two writers of one field; lost schema


def test_a_second_writer_of_one_embeddings_field_stops_when_the_other_completed_it(make_dataset, fashion_files,
                                                                                  session_extractor, monkeypatch):
    """A computes 'emb3'; B (same call) resumes the same partial field; A finishes first and renames it. B's next
    chunk used to land in the gone partial field: a raw AttributeError and undeclared keys in 476 documents
    (FieldDoesNotExist on iteration). B now stops with an error saying another process completed the field."""
    import threading

    import fiftyone as fo

    import ood_core as ood

    paths, _ = fashion_files
    ds = make_dataset([fo.Sample(filepath=p) for p in paths[:30]])
    kwargs = dict(model_name="tf_efficientnet_lite0", levels=[1, 2, 3], grid=1, batch_size=8, chunk_size=8,
                  progress=False)
    real = type(session_extractor).iter_extract
    state = {"batches": 0}

    def other_process():
        state["other"] = ood.compute_pyramid_embeddings(ds, "emb3", **kwargs)

    def iter_extract(self, items, **kw):
        for out in real(self, items, **kw):
            yield out
            state["batches"] += 1
            if state["batches"] == 2 and "other" not in state:  # this call wrote its first chunks
                t = threading.Thread(target=other_process)
                t.start()
                t.join()

    monkeypatch.setattr(type(session_extractor), "iter_extract", iter_extract)
    with pytest.raises(OODInputError, match="'emb3' .* was completed by another process .*Run the call again"):
        ood.compute_pyramid_embeddings(ds, "emb3", **kwargs)
    assert state["other"]["status"] == "complete" and state["other"]["resumed"]
    ds.reload()
    assert ds._sample_collection.count_documents({"tmp_ood_partial_emb3": {"$exists": True}}) == 0
    assert len(list(ds.iter_samples())) == 30 and ds.count("emb3") == 30
    assert ood.get_ood_run_info(ds, "emb3")["status"] == "complete"
    assert ood.compute_pyramid_embeddings(ds, "emb3", **kwargs)["num_computed"] == 0  # nothing missing


def _lose_declaration(ds, path):
    """What a concurrent save of a stale dataset copy elsewhere does: the field's schema entry goes, values stay."""
    import fiftyone.core.odm as foo

    root, _, leaf = path.rpartition(".")
    db = foo.get_db_conn()
    if not root:
        db.datasets.update_one({"_id": ds._doc.id}, {"$pull": {"sample_fields": {"name": leaf}}})
    else:  # an object attribute: gt.detections.<leaf>
        top, _, lst = root.partition(".")
        doc = db.datasets.find_one({"_id": ds._doc.id})
        for f in doc["sample_fields"]:
            if f["name"] == top:
                for g in f["fields"]:
                    if g["name"] == lst:
                        g["fields"] = [h for h in g["fields"] if h["name"] != leaf]
        db.datasets.update_one({"_id": ds._doc.id}, {"$set": {"sample_fields": doc["sample_fields"]}})
    ds.reload()
    assert ds.get_field(path) is None


def test_repair_removes_undeclared_temporary_keys_and_dead_writers_locks(objects_ds):
    import datetime

    import fiftyone.core.odm as foo

    import ood_core as ood
    from ood_core.fo import coordination

    ds = objects_ds
    coll = ds._sample_collection
    coll.update_many({}, {"$set": {"tmp_ood_partial_emb9": [0.5, 0.5], "tmp_ood_0123456789": 1.0}})
    coll.update_many({}, {"$set": {"gt.detections.$[].tmp_ood_abcdef0123": 2.0}})
    jobs = foo.get_db_conn()[coordination.COLLECTION]
    past = datetime.datetime.utcnow() - datetime.timedelta(minutes=5)
    future = datetime.datetime.utcnow() + datetime.timedelta(minutes=5)
    jobs.insert_many([
        {"_id": f"{ds._doc.id}:dead", "lock": "x", "locked_at": past, "expires_at": past},
        {"_id": f"{ds._doc.id}:dead_job", "lock": "y", "locked_at": past, "expires_at": past, "num_shards": 2,
         "done": [0]},
        {"_id": f"{ds._doc.id}:alive", "lock": "z", "locked_at": past, "expires_at": future},
    ])
    with pytest.raises(Exception):  # FiftyOne cannot load such samples
        list(ds.iter_samples())
    done = ood.repair_ood_runs(ds)
    assert done["stray_keys_removed"] == 3 and done["stale_locks_removed"] == 2
    assert len(list(ds.iter_samples())) == 24
    assert coll.count_documents({"$or": [{"tmp_ood_partial_emb9": {"$exists": True}},
                                         {"gt.detections.tmp_ood_abcdef0123": {"$exists": True}}]}) == 0
    assert ds.values("gt.detections.my_note") == [[42.0]] * 24  # a curator's undeclared attribute stays
    assert jobs.find_one({"_id": f"{ds._doc.id}:dead"}) is None
    job = jobs.find_one({"_id": f"{ds._doc.id}:dead_job"})  # a sharded job keeps its progress, unlocked
    assert job["lock"] is None and (job["num_shards"], job["done"]) == (2, [0])
    assert jobs.find_one({"_id": f"{ds._doc.id}:alive"})["lock"] == "z"
    jobs.delete_many({"_id": {"$regex": f"^{ds._doc.id}:"}})


@pytest.mark.parametrize("patches", [False, True])
def test_a_failed_write_removes_its_values_even_when_the_schema_lost_the_field(objects_ds, labelled_ds,
                                                                               monkeypatch, patches):
    """A concurrent save elsewhere dropped the new field's schema entry; the rollback used to delete only fields
    still in the schema, so the staged scores stayed in the documents (undeclared: samples fail to load)."""
    import ood_core as ood
    from ood_core.fo import runs as fo_runs

    ds, emb, kw, path = ((objects_ds, "pemb", {"patches_field": "gt"}, "gt.detections.s") if patches
                         else (labelled_ds, "emb", {}, "s"))
    real = fo_runs.register_run

    def lost_then_failed(samples, run_key, **kwargs):
        if run_key == "s":
            _lose_declaration(ds, path)
            raise RuntimeError("simulated failure while recording the run")
        return real(samples, run_key, **kwargs)

    monkeypatch.setattr(fo_runs, "register_run", lost_then_failed)
    with pytest.raises(RuntimeError, match="simulated"):
        ood.compute_ood_scores(ds, emb, "s", method="knn", k=3, **kw)
    ds.reload()
    assert ds._sample_collection.count_documents({path: {"$exists": True}}) == 0
    assert "s" not in ood.list_ood_runs(ds) and ds.get_field(path) is None
    list(ds.iter_samples())
    from ood_core.fo import commit

    ds._sample_collection.update_many({}, {"$set": {"tmp_ood_feedbeef00": 1.0}})
    commit.discard(ds, ["tmp_ood_feedbeef00"])  # discarding a staged field the schema lost
    assert ds._sample_collection.count_documents({"tmp_ood_feedbeef00": {"$exists": True}}) == 0


# --------------------------------------------------------------------------- 4. interrupted audits


def test_an_interrupted_audit_is_named_and_repair_removes_what_it_left(labelled_ds, tmp_path, monkeypatch):
    import ood_core as ood
    from ood_core.fo import audit as fo_audit

    ds = labelled_ds
    kw = dict(audit_key="aud4", embeddings_field="emb", near_duplicates=False, report_path=str(tmp_path / "a.html"))

    def broken_report(*args, **kwargs):
        raise RuntimeError("simulated crash while writing the report")

    with monkeypatch.context() as m:
        m.setattr(fo_audit, "write_report", broken_report)
        with pytest.raises(RuntimeError, match="simulated"):
            ood.audit(ds, **kw)
    left = {"aud4_ood", "aud4_ood_flag", "aud4_label_issue", "aud4_label_issue_flag"}
    assert left <= set(ood.list_ood_runs(ds)) and "aud4" not in ood.list_ood_runs(ds)
    assert ds.match_tags("ood").count() > 0
    with pytest.raises(OODInputError, match=r"earlier audit 'aud4' .* was interrupted .*'aud4_label_issue', "
                                            r"'aud4_label_issue_flag', 'aud4_ood', 'aud4_ood_flag'.*overwrite=True"
                                            r".*ood.repair_ood_runs"):
        ood.audit(ds, **kw)
    assert sorted(ood.repair_ood_runs(ds)["interrupted_audit_runs_removed"]) == sorted(left)
    ds.reload()
    assert not left & set(ood.list_ood_runs(ds)) and ds.get_field("aud4_ood") is None
    assert ds.match_tags(["ood", "label_issue"]).count() == 0  # the tags its flags added went with them
    out = ood.audit(ds, **kw)  # now a clean audit
    assert set(out["runs"].values()) == left
    assert ood.repair_ood_runs(ds)["interrupted_audit_runs_removed"] == []  # a recorded audit's runs stay
    ood.rename_ood_run(ds, "aud4", "aud5")
    assert ood.repair_ood_runs(ds)["interrupted_audit_runs_removed"] == []  # ... also under a renamed key
    ood.delete_ood_run(ds, "aud5")  # deleting an audit keeps its runs, as runs of their own
    assert ood.repair_ood_runs(ds)["interrupted_audit_runs_removed"] == [] and left <= set(ood.list_ood_runs(ds))


def test_redoing_an_audit_from_a_view_refuses_other_embeddings_before_writing(labelled_ds, tmp_path):
    import ood_core as ood

    ds = labelled_ds
    kw = dict(embeddings_field="emb", near_duplicates=False, report_path=str(tmp_path / "a.html"))
    ood.audit(ds, **kw)
    ood.compute_pyramid_embeddings(ds, "emb2", **EMB)
    # the OOD run now matches the new embeddings; the label-issue run is refused second (a wrong-label run is never
    # replaced from a view), and used to be refused only after the new OOD score and flags runs and their tags had
    # been written
    ood.compute_ood_scores(ds, "emb2", "audit_ood", reference="trusted", label_field="ground_truth", overwrite=True)
    ds.reload()
    before = {k: str(ds.get_run_info(k).timestamp) for k in ood.list_ood_runs(ds)}
    tags, flags = ds.values("tags"), ds.values("audit_ood_flag")
    with pytest.raises(OODInputError, match="run 'audit_label_issue': a wrong-label score weighs each sample's"):
        ood.audit(ds.match_tags("trusted"), overwrite=True, **dict(kw, embeddings_field="emb2"))
    ds.reload()
    assert {k: str(ds.get_run_info(k).timestamp) for k in ood.list_ood_runs(ds)} == before
    assert ds.values("tags") == tags and ds.values("audit_ood_flag") == flags


# --------------------------------------------------------------------------- 5. an audit's runs renamed or deleted


def test_renaming_or_deleting_an_audits_run_keeps_the_audit_record_and_its_views_consistent(labelled_ds, tmp_path):
    import ood_core as ood

    ds = labelled_ds
    kw = dict(embeddings_field="emb", near_duplicates=False, report_path=str(tmp_path / "a.html"))
    ood.audit(ds, **kw)
    assert {"ood_audit-ood", "ood_audit-label-issues"} <= set(ds.list_saved_views())
    ood.rename_ood_run(ds, "audit_ood", "x")
    info = ood.get_ood_run_info(ds, "ood_audit")
    assert info["audit_runs"]["ood"] == "x" and info["audit_runs"]["ood_flags"] == "audit_ood_flag"
    ood.delete_ood_run(ds, "x")  # its field, its flags run and field go
    ds.reload()
    info = ood.get_ood_run_info(ds, "ood_audit")
    assert set(info["audit_runs"]) == {"label_issues", "label_issue_flags"}
    assert not {"audit_ood", "audit_ood_pvalue", "audit_ood_flag"} & set(info["audit_fields"])
    assert "ood_audit-ood" not in ds.list_saved_views() and "ood_audit-ood" not in info["saved_views"]
    assert "ood_audit-label-issues" in ds.list_saved_views()
    for name in ds.list_saved_views():  # every saved view left still loads
        ds.load_saved_view(name).count()
    out = ood.audit(ds, overwrite=True, **kw)  # redoing the audit writes everything again
    assert set(out["runs"]) == {"ood", "ood_flags", "label_issues", "label_issue_flags"}
    assert "ood_audit-ood" in ds.list_saved_views()


# --------------------------------------------------------------------------- 6. the report


def test_the_report_tells_scores_at_the_threshold_apart_names_files_and_sorts_the_csv(labelled_ds, tmp_path):
    import csv

    import ood_core as ood
    from ood_core.fo import audit_report

    ds = labelled_ds
    ids, paths = ds.values("id"), ds.values("filepath")
    scores = [0.8651234 + (0.0000001 * i if i < 3 else 0.01 * i) for i in range(len(ids))]
    ds.set_values("sc", scores)
    tiles = audit_report.worst_tiles(ds, "sc", 30, flagged_ids=set(ids[1:]))
    by_id = {t["sample_id"]: t for t in tiles}
    assert by_id[ids[0]]["lines"] == [("muted", "not flagged")] and by_id[ids[1]]["lines"] == [("flagged", "flagged")]
    # the gallery prints every score (and the threshold) with the digits that tell them apart: one precision
    from ood_core import report

    gallery = report.gallery(tiles, threshold=scores[1])
    assert "score 0.8651234<" in gallery and "score 0.8651235<" in gallery and "score 0.9151234<" in gallery
    assert "Flagged when score &gt;= 0.8651235 " in gallery
    gallery = report.gallery([by_id[i] for i in ids[5:]], threshold=0.9)  # far apart: 3 digits
    assert "score 0.915<" in gallery and "Flagged when score &gt;= 0.9 " in gallery
    assert os.path.basename(paths[0]) in by_id[ids[0]]["id"] and ids[0] in by_id[ids[0]]["id"]
    out = ood.audit(ds, embeddings_field="emb", near_duplicates=False, report_path=str(tmp_path / "a.html"))
    with open(out["csv_path"]) as f:
        rows = list(csv.DictReader(f))
    for issue in ("ood", "label_issue"):  # the tag each sample got
        got = [float(r["score"]) for r in rows if r["issue"] == issue]
        assert got and got == sorted(got, reverse=True)
    assert os.path.basename(paths[0]) in open(out["report_path"]).read()
