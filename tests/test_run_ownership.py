"""Which fields and runs a call may replace: overwrite=True never takes a user's field, another run's field or a
run of another kind; overwrites keep what lies outside the view and drop what the replaced run alone wrote;
deleting and renaming runs carry their flags along; views that hide fields or are generated are handled.

Real Fashion-MNIST images on the embedded MongoDB; each case fails if its guard is removed.
"""

import numpy as np
import pytest

from ood_core.errors import OODInputError


@pytest.fixture
def ds(dataset_factory, fashion_files):
    """24 real images, 3 per class of 8 classes; the first 2 of each class tagged 'trusted'; embeddings 'emb'."""
    import ood_core as ood

    paths, names = fashion_files
    idx = [c * 20 + j for c in range(8) for j in range(3)]
    tags = [["trusted"] if j < 2 else [] for j in [i % 20 for i in idx]]
    d = dataset_factory([paths[i] for i in idx], [names[i] for i in idx], tags)
    ood.compute_pyramid_embeddings(d, "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1,
                                   progress=False)
    return d


def _emb(d, field):
    import ood_core as ood

    ood.compute_pyramid_embeddings(d, field, model_name="tf_efficientnet_lite0", levels=[1], grid=1, progress=False)


def test_overwrite_never_turns_a_user_field_or_another_kind_of_run_into_embeddings(ds):
    import ood_core as ood

    ood.compute_ood_scores(ds, "emb", "s", method="knn", reference="trusted")
    with pytest.raises(OODInputError, match="'ground_truth' exists .* no fiftyone-ood run wrote it"):
        ood.compute_pyramid_embeddings(ds, "ground_truth", overwrite=True, progress=False)
    assert ds.get_field("ground_truth").document_type.__name__ == "Classification"
    with pytest.raises(OODInputError, match="'s' .* is a 'ood_scores' run; overwrite=True replaces only a run "
                                            "of the same kind"):
        ood.compute_pyramid_embeddings(ds, "s", overwrite=True, progress=False)
    assert ood.get_ood_run_info(ds, "s")["kind"] == "ood_scores"
    assert ood.get_ood_run_info(ds, "s")["fields"] == ["s", "s_pvalue"]


def test_overwrite_refuses_a_field_another_run_wrote(ds):
    import ood_core as ood

    ood.compute_ood_scores(ds, "emb", "s", method="knn", reference="trusted")
    pvalues, scores = ds.values("s_pvalue"), ds.values("s")
    with pytest.raises(OODInputError, match="'s_pvalue' .* written by another run, 's'"):
        ood.flag_samples(ds, "s", rule="top_n", value=3, flag_field="s_pvalue", overwrite=True)
    with pytest.raises(OODInputError, match="'s' .* written by another run, 's'.*only the fields of run 'k2'"):
        ood.compute_ood_scores(ds, "emb", "s", method="lof", k=3, run_key="k2", overwrite=True)
    with pytest.raises(OODInputError, match="is a 'ood_scores' run"):
        ood.compute_label_issues(ds, "ground_truth", "emb", "s", overwrite=True)
    assert ds.values("s_pvalue") == pvalues and "k2" not in ood.list_ood_runs(ds)
    assert ds.values("s") == scores and ood.get_ood_run_info(ds, "s")["kind"] == "ood_scores"


def test_embeddings_overwrite_on_a_view_keeps_the_other_samples(ds):
    import ood_core as ood

    before = np.array(ds.values("emb"))
    out = ood.compute_pyramid_embeddings(ds.limit(5), "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1,
                                         overwrite=True, progress=False)
    assert out["num_computed"] == 5 and ds.count("emb") == len(ds)
    assert np.allclose(np.array(ds.values("emb")), before, atol=1e-5)
    # other settings would leave the samples outside the view under a record that does not describe them
    with pytest.raises(OODInputError, match="different settings .*run the overwrite on the whole dataset"):
        ood.compute_pyramid_embeddings(ds.limit(5), "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=2,
                                       overwrite=True, progress=False)
    assert ds.count("emb") == len(ds) and ood.get_ood_run_info(ds, "emb")["status"] == "complete"
    # a PCA-projected run: a view would get a new PCA, the others keep the old one's vectors
    pca = dict(model_name="tf_efficientnet_lite0", levels=[1], grid=1, project_dim=4, project_method="pca",
               pca_fit_size=20, progress=False)
    ood.compute_pyramid_embeddings(ds, "pe", **pca)
    with pytest.raises(OODInputError, match="PCA-projected: overwriting them on a view"):
        ood.compute_pyramid_embeddings(ds.limit(5), "pe", overwrite=True, **pca)
    assert ds.count("pe") == len(ds)


def test_overwrite_with_fewer_outputs_drops_the_fields_only_the_old_run_wrote(ds):
    import ood_core as ood

    ood.compute_label_issues(ds, "ground_truth", "emb", "li")
    assert ood.get_ood_run_info(ds, "li")["fields"] == ["li", "li_suggestion"]
    ood.compute_label_issues(ds, "ground_truth", "emb", "li", method="label_agreement", k=2, overwrite=True)
    assert ood.get_ood_run_info(ds, "li")["fields"] == ["li"] and not ds.has_field("li_suggestion")
    ood.compute_label_issues(ds, "ground_truth", "emb", "li", overwrite=True)  # was refused: an orphan field
    assert ds.has_field("li_suggestion")
    # from a view, dropping the suggestions would delete those of the samples outside it: refused (a wrong-label
    # run is refused from a view before it is computed anyway; the write's own check is asked directly)
    from ood_core.fo.view_overwrite import refuse_dropping_from_a_view

    suggestions = ds.values("li_suggestion.label")
    with pytest.raises(OODInputError, match="a wrong-label score weighs each sample's label"):
        ood.compute_label_issues(ds.limit(10), "ground_truth", "emb", "li", method="label_agreement", k=2,
                                 overwrite=True)
    with pytest.raises(OODInputError, match="also wrote \\['li_suggestion'\\].*Overwrite on the whole dataset"):
        refuse_dropping_from_a_view(ds, "li", ["li"])
    assert ds.values("li_suggestion.label") == suggestions
    assert not [f for f in ds.get_field_schema() if f.startswith("tmp_ood")]


def test_deleting_or_renaming_a_score_run_carries_its_flags(ds):
    import ood_core as ood

    ood.compute_ood_scores(ds, "emb", "s", method="knn", reference="trusted")
    ood.flag_samples(ds, "s", rule="top_n", value=4, tag="look")
    ood.rename_ood_run(ds, "s", "s2")
    assert ood.list_flag_runs(ds, "s2") == ["s_flag"]
    assert sorted(ood.delete_ood_run(ds, "s2")) == ["s", "s_flag", "s_pvalue"]
    assert ood.list_ood_runs(ds) == ["emb"] and len(ds.match_tags("look")) == 0
    # deleting a flags run with delete_ood_run removes its tags, as delete_flags does
    ood.compute_ood_scores(ds, "emb", "s", method="knn", reference="trusted")
    ood.flag_samples(ds, "s", rule="top_n", value=4, tag="look")
    ood.delete_ood_run(ds, "s_flag")
    assert len(ds.match_tags("look")) == 0 and not ds.has_field("s_flag") and ds.has_field("s")


def test_an_embeddings_run_cannot_be_renamed(ds):
    import ood_core as ood

    with pytest.raises(OODInputError, match="'emb' is an embeddings run: its key is its field's name"):
        ood.rename_ood_run(ds, "emb", "emb2")
    assert "emb" in ood.list_ood_runs(ds, kind="embeddings")


def test_views_that_hide_fields_or_are_generated_are_refused_or_shown_whole(ds):
    import fiftyone as fo

    import ood_core as ood
    from ood_core.fo.view_checks import show_all_fields

    hidden = ds.match_tags("trusted", bool=False).select_fields("ground_truth")
    with pytest.raises(OODInputError, match="hides fields \\(SelectFields stage\\)"):
        ood.compute_ood_scores(hidden, "emb", "s", method="knn", reference="trusted")
    shown = show_all_fields(hidden)
    assert shown.values("id") == hidden.values("id") and shown.has_field("emb")
    out = ood.compute_ood_scores(shown, "emb", "s", method="knn", reference="trusted", score_reference=False)
    assert out["num_scored"] == len(hidden) == ds.count("s")

    ds.set_values("dets", [fo.Detections(detections=[fo.Detection(label="a", bounding_box=[.1, .1, .8, .8])])
                           for _ in range(len(ds))])
    patches = ds.to_patches("dets")
    with pytest.raises(OODInputError, match="generated view .*patches_field='<your Detections field>'"):
        ood.compute_pyramid_embeddings(patches, "pe", progress=False)
    assert "pe" not in ood.list_ood_runs(ds)


def test_audit_checks_keys_fields_and_report_folder_before_writing(ds, tmp_path):
    import ood_core as ood

    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(OODInputError, match="report_path=.*cannot be created"):
        ood.audit(ds, report_path=str(blocked / "r.html"), near_duplicates=False)
    with pytest.raises(OODInputError, match="must all differ"):
        ood.audit(ds, audit_key="a", ood_field="a", report_path=str(tmp_path / "r.html"), near_duplicates=False)
    assert ood.list_ood_runs(ds) == ["emb"]  # nothing written by the refused calls
    # a second audit under another key writes its own fields
    first = ood.audit(ds, report_path=str(tmp_path / "r.html"), near_duplicates=False)
    second = ood.audit(ds, audit_key="again", report_path=str(tmp_path / "r2.html"), near_duplicates=False)
    assert first["runs"]["ood"] == "audit_ood" and second["runs"]["ood"] == "again_ood"
    assert second["runs"]["label_issues"] == "again_label_issue"
    assert np.allclose(ds.values("audit_ood"), ds.values("again_ood"))


def test_a_grouped_dataset_counts_its_active_slice(fashion_files):
    """Counts, skips and coverage refer to the slice the calls see (they said '10 of 20 scored, 10 skipped')."""
    import fiftyone as fo

    import ood_core as ood
    from ood_core.fo.items import num_samples

    paths, names = fashion_files
    ds = fo.Dataset()
    try:
        ds.add_group_field("group", default="left")
        samples = []
        for i in range(10):
            group = fo.Group()
            samples += [fo.Sample(filepath=paths[2 * i + j], group=group.element(side),
                                  ground_truth=fo.Classification(label=names[2 * i + j]))
                        for j, side in enumerate(("left", "right"))]
        ds.add_samples(samples)
        assert num_samples(ds) == len(ds.values("id")) == 10
        ood.compute_pyramid_embeddings(ds, "e", model_name="tf_efficientnet_lite0", levels=[1], grid=1,
                                       progress=False)
        out = ood.compute_ood_scores(ds, "e", "s", method="knn", k=2)
        assert (out["num_scored"], out["num_skipped"]) == (10, 0)
    finally:
        ds.delete()


def test_an_interrupted_embeddings_overwrite_leaves_the_old_field_and_a_record_that_owns_it(ds, monkeypatch):
    """Completion goes through the journaled commit (the old vectors were renamed aside outside any journal and
    then removed as an orphan); a record replaced in place is never absent; while an overwrite runs, its record
    lists the old field too, so deleting the run deletes it and re-running is not refused as a user's field."""
    import fiftyone.core.collections as foc
    import fiftyone.core.dataset as fod

    import ood_core as ood

    old = np.array(ds.values("emb"))
    real = fod.Dataset.rename_sample_field
    calls = []

    def killed_at_second_rename(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 2:  # the old field is aside, the new one not yet in place
            raise KeyboardInterrupt("killed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(fod.Dataset, "rename_sample_field", killed_at_second_rename)
    with pytest.raises(KeyboardInterrupt):
        ood.compute_pyramid_embeddings(ds.limit(5), "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1,
                                       overwrite=True, progress=False)
    monkeypatch.setattr(fod.Dataset, "rename_sample_field", real)
    ood.repair_ood_runs(ds)
    ds.reload()
    assert np.allclose(np.array(ds.values("emb")), old)
    assert ood.get_ood_run_info(ds, "emb")["fields"] == ["emb"]  # the old record; the overwrite keeps its own apart
    # a record replaced in place: interrupted there, the key keeps its (old) record
    monkeypatch.setattr(fod.Dataset, "update_run_config", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    monkeypatch.setattr(foc.SampleCollection, "register_run",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("a record was deleted and re-made")))
    with pytest.raises(KeyboardInterrupt):
        ood.compute_pyramid_embeddings(ds.limit(5), "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1,
                                       overwrite=True, progress=False)
    monkeypatch.undo()
    assert "emb" in ood.list_ood_runs(ds)
    ood.compute_pyramid_embeddings(ds.limit(5), "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1,
                                   overwrite=True, progress=False)
    assert ood.get_ood_run_info(ds, "emb")["status"] == "complete" and np.allclose(np.array(ds.values("emb")), old)


def test_object_overwrite_through_filter_labels_keeps_the_hidden_objects(ds):
    import fiftyone as fo
    from fiftyone import ViewField as F

    import ood_core as ood

    ds.set_values("dets", [fo.Detections(detections=[fo.Detection(label="a", bounding_box=[.1, .1, .5, .5]),
                                                     fo.Detection(label="b", bounding_box=[.4, .4, .5, .5])])
                           for _ in range(len(ds))])
    kw = dict(model_name="tf_efficientnet_lite0", levels=[1], grid=1, progress=False)
    ood.compute_pyramid_embeddings(ds, "pemb", patches_field="dets", **kw)
    ds.limit(len(ds) // 2).tag_samples("trusted")  # against trusted objects each object's score is its own
    score = dict(patches_field="dets", method="knn", k=5, reference="trusted")
    ood.compute_ood_scores(ds, "pemb", "ps", **score)
    b = ds.filter_labels("dets", F("label") == "b")
    before = (b.values("dets.detections.ps"), b.values("dets.detections.pemb"))
    only_a = ds.filter_labels("dets", F("label") == "a")
    ood.compute_ood_scores(only_a, "pemb", "ps", overwrite=True, **score)
    ood.compute_pyramid_embeddings(only_a, "pemb", patches_field="dets", overwrite=True, **kw)
    assert b.values("dets.detections.ps") == before[0]
    assert np.allclose(np.array(b.values("dets.detections.pemb")), np.array(before[1]))
    # the same key cannot move to another target (the object field would lose its run)
    with pytest.raises(OODInputError, match="holds 'dets.detections.pemb'; this call would write 'pemb'"):
        ood.compute_pyramid_embeddings(ds, "pemb", overwrite=True, **kw)


def test_audit_checks_its_flag_fields_before_writing(ds, tmp_path):
    import ood_core as ood

    ds.set_values("audit_ood_flag", [True] * len(ds))  # a user's field under the audit's flag name
    with pytest.raises(OODInputError, match="'audit_ood_flag' exists .* no fiftyone-ood run wrote it"):
        ood.audit(ds, report_path=str(tmp_path / "r.html"), near_duplicates=False)
    assert ood.list_ood_runs(ds) == ["emb"] and not ds.has_field("audit_ood")


def test_a_score_run_overwritten_from_a_view_keeps_its_method(ds):
    """The samples outside the view keep their scores: only when they stay on the same scale (same detector,
    reduction, embeddings and labels); another method mixed two scales under one record before."""
    import ood_core as ood

    ood.compute_ood_scores(ds, "emb", "m", method="knn", k=3, reference="trusted")
    _emb(ds, "emb2")
    before = ds.values("m")
    view = ds.match_tags("trusted", bool=False).limit(4)
    with pytest.raises(OODInputError, match="other detector than this call"):
        ood.compute_ood_scores(view, "emb", "m", method="lof", k=3, reference="trusted", overwrite=True)
    with pytest.raises(OODInputError, match="other embeddings_field than this call"):
        ood.compute_ood_scores(view, "emb2", "m", method="knn", k=3, reference="trusted", overwrite=True)
    assert ds.values("m") == before and ood.get_ood_run_info(ds, "m")["detector"]["method"] == "knn"
    ood.compute_ood_scores(view, "emb", "m", method="knn", k=3, reference="trusted", overwrite=True)  # same: fine
    assert np.allclose(ds.values("m"), before)


def test_audit_near_duplicates_stay_in_the_view_and_go_with_the_audit(ds, tmp_path):
    import fiftyone as fo

    import ood_core as ood

    copies = [fo.Sample(filepath=s.filepath, ground_truth=s.ground_truth, tags=["batch"]) for s in ds.limit(3)]
    ds.add_samples(copies)
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1, progress=False)
    batch = ds.match_tags("batch")
    out = ood.audit(batch, report_path=str(tmp_path / "b.html"))
    tagged = set(ds.match_tags("near_duplicate").values("id"))
    assert tagged <= set(batch.values("id")) and len(tagged) == out["num_duplicates"]
    whole = ood.audit(ds, audit_key="whole", report_path=str(tmp_path / "w.html"))
    assert whole["num_duplicates"] >= 3  # at least one of each copy and its original
    assert len(ds.match_tags("near_duplicate")) >= whole["num_duplicates"]
    ood.delete_ood_run(ds, "whole")  # deleting an audit removes the tags it added
    ood.delete_ood_run(ds, "ood_audit")
    assert len(ds.match_tags("near_duplicate")) == 0


def test_a_patches_view_is_evaluated_on_its_objects_and_writing_through_it_is_refused(ds):
    """Evaluating only reads: a patches view of the run's objects gives the dataset's numbers (positive = OOD);
    flagging through it (a write into the view's temporary dataset) is still refused with the view to pass."""
    import fiftyone as fo

    import ood_core as ood

    ds.set_values("dets", [fo.Detections(detections=[fo.Detection(label="a", bounding_box=[.1, .1, .5, .5],
                                                                  is_ood=i % 3 == 0)])
                           for i in range(len(ds))])
    ood.compute_pyramid_embeddings(ds, "pemb", patches_field="dets", model_name="tf_efficientnet_lite0", levels=[1],
                                   grid=1, progress=False)
    ood.compute_ood_scores(ds, "pemb", "os", patches_field="dets", method="knn", k=3)
    whole = ood.evaluate_ood_run(ds, "os", gt_field="is_ood")
    patches = ood.evaluate_ood_run(ds.to_patches("dets"), "os", gt_field="is_ood")
    assert patches["auroc"] == pytest.approx(whole["auroc"]) and patches["num_ood"] == whole["num_ood"] == 8
    with pytest.raises(OODInputError, match="patches view of .*, where the runs on its objects are recorded: pass"):
        ood.flag_samples(ds.to_patches("dets"), "os", rule="top_n", value=2)
