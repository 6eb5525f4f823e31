"""The FiftyOne layer on real datasets: score, label issues, runs, object scores, bad input (embedding itself:
``test_fo_embeddings.py``)."""

import hashlib

import numpy as np
import pytest
from fiftyone import ViewField as F

import ood_core as ood
from ood_core.detectors import (
    KNNDetector,
    LabelAgreementDetector,
    PyramidKNNDetector,
    WeightedLabelVoteDetector,
)
from ood_core.errors import OODInputError
from ood_core.fo import run_admin
from ood_core.fo import runs as fo_runs
from ood_core.metrics import ood_metrics

ID_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker")


def _split(names):
    tags, seen = [], {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        tags.append(["trusted"] if n in ID_CLASSES and seen[n] <= 10 else ["test"])
    return tags


@pytest.fixture(scope="session")
def fashion_embeddings(fashion_files, extractor):
    """Embeddings of the 200 real images, computed once per session."""
    return extractor.extract(fashion_files[0], progress=False).embeddings


@pytest.fixture
def embedded(dataset_factory, fashion_files, fashion_embeddings, extractor):
    """200 real Fashion-MNIST samples: trusted = half of each ID class; test = rest + 2 held-out classes.

    The session's embeddings are recorded exactly as compute_pyramid_embeddings
    records them (that function itself is covered by its own tests below).
    """
    import fiftyone.core.fields as fof

    paths, names = fashion_files
    ds = dataset_factory(paths, names, _split(names))
    ds.set_values("is_ood", [n not in ID_CLASSES for n in names])
    fo_runs.write_and_record(
        ds, [("emb", list(fashion_embeddings), fof.VectorField)], "emb", kind="embeddings",
        embeddings_field="emb", patches_field=None, backbone=extractor.config, projection=None,
        dtype="float32", status="complete",
    )
    return ds


def test_supervised_knn_matches_numpy_detector_and_finds_held_out_classes(embedded):
    ds = embedded
    test = ds.match_tags("test")
    summary = ood.compute_ood_scores(ds, "emb", "ood", method="knn", reference="trusted", k=5)
    assert summary["num_scored"] == 200

    # independent recomputation with the numpy detector
    X = np.stack(ds.values("emb"))
    trusted = np.array(["trusted" in t for t in ds.values("tags")])
    det = KNNDetector(k=5).fit(X[trusted])
    expected = np.empty(len(X))
    expected[~trusted] = det.score_samples(X[~trusted])
    expected[trusted] = det.fit_score(X[trusted])  # trusted samples: self-match excluded
    np.testing.assert_allclose(np.array(ds.values("ood")), expected, rtol=1e-5)

    scores = np.array(test.values("ood"))
    m = ood_metrics(scores, np.array(test.values("is_ood")))
    assert m["auroc"] > 0.7, m  # held-out Bag / Ankle boot stand out on real images

    info = fo_runs.get_ood_run_info(ds, "ood")
    trusted_ids = sorted(i.binary for i in ds.match_tags("trusted").values("_id"))
    assert info["reference"] == {"tag": "trusted", "num_reference": 80,  # which samples, not only how many
                                 "samples_hash": hashlib.sha256(b"".join(trusted_ids)).hexdigest()[:32]}
    assert info["detector"] == {"method": "knn", "k": 5, "k_fraction": 0.2, "k_max": 50, "normalize": True,
                                "backend": "auto", "index": "flat"}
    assert info["detector_fitted"] == {"k": 5}
    assert info["backbone"]["model_name"] == "tf_efficientnet_lite0"


def test_classes_without_a_trusted_item_are_counted_and_named(embedded):
    ds = embedded
    names = ds.values("ground_truth.label")
    held_out = {n: names.count(n) for n in set(names) if n not in ID_CLASSES}  # 2 classes, none trusted
    summary = ood.compute_ood_scores(ds, "emb", "ood", reference="trusted", label_field="ground_truth")
    info = summary["uncovered_classes"]
    assert info["count"] == 2 and info["num_items"] == sum(held_out.values()) and info["largest"] == held_out
    assert fo_runs.load_ood_results(ds, "ood").uncovered_classes == info
    # trusted images of every class: nothing to warn about; no labels: nothing to compare
    for name in held_out:
        ds.match(F("ground_truth.label") == name).limit(2).tag_samples("trusted")
    covered = ood.compute_ood_scores(ds, "emb", "ood2", reference="trusted", label_field="ground_truth")
    assert "uncovered_classes" not in covered
    assert "uncovered_classes" not in ood.compute_ood_scores(ds, "emb", "ood3", reference="trusted")
    ds.match(F("ground_truth.label").is_in(list(held_out))).untag_samples("trusted")
    # knn: the labels only size k, the search is global, so an uncovered class is not singled out
    assert "uncovered_classes" not in ood.compute_ood_scores(ds, "emb", "ood4", method="knn", reference="trusted",
                                                            label_field="ground_truth")
    assert "uncovered_classes" in ood.compute_ood_scores(ds, "emb", "ood5", method="mahalanobis",
                                                        reference="trusted", label_field="ground_truth")


def test_label_issues_take_the_neighbour_search_options(embedded):
    """compute_label_issues passes neighbor_backend / neighbor_index on, as compute_ood_scores does (the README
    names them for the label scores): faiss and scikit-learn agree on the exact index, and the run records the
    approximate one it was asked for."""
    ds = embedded
    ood.compute_label_issues(ds, "ground_truth", "emb", "agree_sk", method="label_agreement", k=10,
                             neighbor_backend="sklearn")
    ood.compute_label_issues(ds, "ground_truth", "emb", "agree_faiss", method="label_agreement", k=10,
                             neighbor_backend="faiss", neighbor_index="flat")
    np.testing.assert_allclose(ds.values("agree_faiss"), ds.values("agree_sk"))
    ood.compute_label_issues(ds, "ground_truth", "emb", "agree_hnsw", method="label_agreement", k=10,
                             neighbor_backend="faiss", neighbor_index="hnsw")
    detector = fo_runs.get_ood_run_info(ds, "agree_hnsw")["detector"]
    assert (detector["backend"], detector["index"]) == ("faiss", "hnsw")
    assert fo_runs.get_ood_run_info(ds, "agree_sk")["detector"]["backend"] == "sklearn"


def test_label_issues_rank_flipped_labels_first(embedded):
    ds = embedded
    rng = np.random.default_rng(0)
    labels = ds.values("ground_truth.label")
    flip = rng.choice(len(labels), 20, replace=False)
    classes = sorted(set(labels))
    for i in flip:
        labels[i] = classes[(classes.index(labels[i]) + 1 + rng.integers(len(classes) - 1)) % len(classes)]
    ds.set_values("ground_truth.label", labels)
    ood.compute_label_issues(ds, "ground_truth", "emb", "issue", method="label_agreement", k=10)
    scores = np.array(ds.values("issue"))
    X = np.stack(ds.values("emb"))
    expected = LabelAgreementDetector(k=10).fit_score(X, np.array(labels, dtype=object))
    np.testing.assert_allclose(scores, expected)
    wrong = np.zeros(len(labels), bool)
    wrong[flip] = True
    assert ood_metrics(scores, wrong)["auroc"] > 0.8
    # the default: distance-weighted votes, plus the label the neighbours vote for
    ood.compute_label_issues(ds, "ground_truth", "emb", "vote")
    # the embeddings hold three pyramid levels: the votes use the levels that agree best with the labels
    det = WeightedLabelVoteDetector(level_dims=[24, 40, 112], levels="auto")
    np.testing.assert_allclose(ds.values("vote"), det.fit_score(X, np.array(labels, dtype=object)), rtol=1e-6)
    # a suggestion only where the votes favour another class than the given label (None elsewhere)
    suggestions = ds.values("vote_suggestion")
    differs = [voted != given for voted, given in zip(det.suggested_labels_, labels)]
    assert [c is not None for c in suggestions] == differs
    assert [c.label for c in suggestions if c is not None] == [v for v, d in zip(det.suggested_labels_, differs) if d]
    np.testing.assert_allclose([c.confidence for c in suggestions if c is not None],
                               det.class_probabilities_.max(axis=1)[differs], rtol=1e-6)
    assert np.mean([suggestions[i] is not None for i in flip]) > 0.5  # most flips get another suggestion
    info = fo_runs.get_ood_run_info(ds, "vote")
    assert info["fields"] == ["vote", "vote_suggestion"] and info["suggestion"]["field"] == "vote_suggestion"
    assert ood_metrics(np.array(ds.values("vote")), wrong)["auroc"] > 0.8
    ood.compute_label_issues(ds, "ground_truth", "emb", "issue_lof", method="class_lof", k=5)
    assert fo_runs.get_ood_run_info(ds, "issue_lof")["kind"] == "label_issues"


def test_existing_field_or_run_refused_unless_overwrite(embedded):
    ds = embedded
    ds.set_values("mine", [1.0] * len(ds))
    for overwrite in (False, True):  # a field the plugin did not write is never replaced
        with pytest.raises(OODInputError, match="'mine' exists.*no fiftyone-ood run wrote it"):
            ood.compute_ood_scores(ds, "emb", "mine", reference="trusted", k=5, overwrite=overwrite)
    assert ds.values("mine") == [1.0] * len(ds)  # user's field untouched
    ood.compute_ood_scores(ds, "emb", "s", reference="trusted", k=5)
    with pytest.raises(OODInputError, match="already exists"):
        ood.compute_ood_scores(ds, "emb", "s", reference="trusted", k=5)
    first = ds.values("s")
    ood.compute_ood_scores(ds, "emb", "s", reference="trusted", k=1, overwrite=True)
    assert ds.values("s") != first
    assert fo_runs.get_ood_run_info(ds, "s")["detector"]["k"] == 1
    with pytest.raises(OODInputError, match="different settings.*refusing to mix"):
        ood.compute_pyramid_embeddings(ds, "emb", progress=False, model_name="tf_efficientnet_lite0")
    with pytest.raises(OODInputError, match="'mine' exists.*no fiftyone-ood run wrote it"):
        ood.compute_pyramid_embeddings(ds, "mine", progress=False)


def test_failure_midway_leaves_no_field_and_no_run(embedded, monkeypatch):
    ds = embedded
    before = set(ds.get_field_schema())

    def broken_register(*a, **k):
        raise RuntimeError("database went away")

    monkeypatch.setattr(fo_runs, "register_run", broken_register)
    with pytest.raises(RuntimeError, match="went away"):
        ood.compute_ood_scores(ds, "emb", "half", reference="trusted", k=5)
    assert set(ds.get_field_schema()) == before
    assert "half" not in ds.list_runs()


def test_failed_registration_during_overwrite_keeps_the_old_run(embedded, monkeypatch):
    ds = embedded
    ood.compute_ood_scores(ds, "emb", "s", reference="trusted", k=5)
    old_values = ds.values("s")
    old_k = fo_runs.get_ood_run_info(ds, "s")["detector"]["k"]
    runs_before = sorted(ds.list_runs())

    def broken_register(*a, **k):
        raise RuntimeError("database went away")

    monkeypatch.setattr(fo_runs, "register_run", broken_register)
    with pytest.raises(RuntimeError, match="went away"):
        ood.compute_ood_scores(ds, "emb", "s", reference="trusted", k=7, overwrite=True)
    assert sorted(ds.list_runs()) == runs_before  # the old record is back under its key, no backup left
    assert fo_runs.get_ood_run_info(ds, "s")["detector"]["k"] == old_k
    assert ds.values("s") == old_values
    monkeypatch.undo()
    ood.compute_ood_scores(ds, "emb", "s", reference="trusted", k=7, overwrite=True)
    assert fo_runs.get_ood_run_info(ds, "s")["detector"]["k"] == 7
    assert sorted(ds.list_runs()) == runs_before


def test_failure_during_overwrite_keeps_old_values(embedded, monkeypatch):
    ds = embedded
    ood.compute_ood_scores(ds, "emb", "s", reference="trusted", k=5)
    old = ds.values("s")
    import ood_core.detectors as detectors

    def exploding(*a, **k):
        raise MemoryError("boom")

    monkeypatch.setattr(detectors.PyramidKNNDetector, "score_samples", exploding)
    with pytest.raises(MemoryError):
        ood.compute_ood_scores(ds, "emb", "s", reference="trusted", k=3, overwrite=True)
    assert ds.values("s") == old
    assert fo_runs.get_ood_run_info(ds, "s")["detector"]["k"] == 5


def test_run_management_rename_and_delete_removes_fields(embedded):
    ds = embedded
    ood.compute_ood_scores(ds, "emb", "s", reference="trusted", k=5)
    assert set(fo_runs.list_ood_runs(ds)) == {"emb", "s"}
    assert fo_runs.list_ood_runs(ds, kind="ood_scores") == ["s"]
    run_admin.rename_ood_run(ds, "s", "s2")
    assert fo_runs.get_ood_run_info(ds, "s2")["fields"] == ["s", "s_pvalue"]
    assert fo_runs.load_ood_results(ds, "s2").num_scored == 200
    with pytest.raises(OODInputError, match="no fiftyone-ood run"):
        run_admin.delete_ood_run(ds, "s")
    assert run_admin.delete_ood_run(ds, "s2") == ["s", "s_pvalue"]
    assert not ds.has_field("s") and not ds.has_field("s_pvalue") and "s2" not in ds.list_runs()


def test_ood_scores_come_with_conformal_p_values_from_the_reference(embedded):
    from ood_core.calibration import conformal_p_values

    ds = embedded
    ood.compute_ood_scores(ds.match_tags("test"), "emb", "s", reference="trusted", k=5)
    trusted, test = ds.match_tags("trusted"), ds.match_tags("test")
    ref_scores = np.array(trusted.values("s"))  # leave-one-out scores of the reference (self excluded)
    np.testing.assert_allclose(test.values("s_pvalue"), conformal_p_values(ref_scores, test.values("s")))
    # the reference's own p-values are ranks among themselves: (1 + #higher-or-equal others) / (n + 1)
    n = len(ref_scores)
    expected = [(1 + np.sum(ref_scores >= v)) / (n + 1) for v in ref_scores]
    np.testing.assert_allclose(trusted.values("s_pvalue"), expected)
    info = fo_runs.get_ood_run_info(ds, "s")
    assert info["calibration"]["field"] == "s_pvalue" and info["calibration"]["num_reference"] == n
    # higher score = smaller p-value, everywhere
    s, p = np.array(ds.values("s")), np.array(ds.values("s_pvalue"))
    assert np.all(np.diff(p[np.argsort(s)]) <= 1e-12)


def test_density_ratio_is_recorded_and_the_reference_shares_the_batch_scale(embedded):
    """The default detector's scored-set density ratio: forced on, the trusted samples' stored scores are on
    the batch's scale (their p-values rank them among themselves); 'never' gives batch-independent scores."""
    ds = embedded
    test, trusted = ds.match_tags("test"), ds.match_tags("trusted")
    ood.compute_ood_scores(test, "emb", "plain", reference="trusted", label_field="ground_truth",
                           transductive="never")
    ood.compute_ood_scores(test, "emb", "ratio", reference="trusted", label_field="ground_truth",
                           transductive="always")
    plain = fo_runs.get_ood_run_info(ds, "plain")["detector_fitted"]
    ratio = fo_runs.get_ood_run_info(ds, "ratio")["detector_fitted"]
    assert "transductive" not in plain
    assert ratio["transductive"]["used"] and 0 < ratio["transductive"]["p_value"] <= 1
    # 'never' scores a test sample the same whatever else is scored with it
    one = test.limit(1)
    ood.compute_ood_scores(one, "emb", "single", reference="trusted", label_field="ground_truth",
                           transductive="never", score_reference=False)
    assert one.values("single")[0] == pytest.approx(one.values("plain")[0])
    # the density ratio changes the trusted samples' scores too, and p-values stay ranks among them
    ref_scores = np.array(trusted.values("ratio"))
    assert not np.allclose(ref_scores, trusted.values("plain"))
    n = len(ref_scores)
    np.testing.assert_allclose(trusted.values("ratio_pvalue"), [(1 + np.sum(ref_scores >= v)) / (n + 1)
                                                               for v in ref_scores])
    with pytest.raises(OODInputError, match="transductive='sometimes'"):
        ood.compute_ood_scores(test, "emb", "bad", reference="trusted", transductive="sometimes")
    assert not ds.has_field("bad")


def test_a_batch_above_the_pooled_limit_keeps_the_density_ratio_on_a_sample(embedded, monkeypatch):
    """Above MAX_POOLED trusted + scored samples the ratio searches a seeded sample and measures the rest against
    it: every sample is scored, the run record says how large the sample was, trusted p-values stay ranks."""
    from ood_core.detectors import transductive

    ds = embedded
    test, trusted = ds.match_tags("test"), ds.match_tags("trusted")
    monkeypatch.setattr(transductive, "MAX_POOLED", 60)
    ood.compute_ood_scores(test, "emb", "sampled", reference="trusted", label_field="ground_truth",
                           transductive="always")
    record = fo_runs.get_ood_run_info(ds, "sampled")["detector_fitted"]["transductive"]
    n_trusted, n_test = len(trusted), len(test)
    assert record["used"] and sorted(record["pool_sample"]) == [30, 30] and n_trusted + n_test > 60
    assert "seeded sample of 30 reference + 30 scored samples" in record["reason"]
    scores = np.array(ds.values("sampled"), dtype=float)
    assert np.isfinite(scores).all()  # trusted (self-excluded, on the batch scale) and scored samples alike
    ref_scores = np.array(trusted.values("sampled"))
    np.testing.assert_allclose(trusted.values("sampled_pvalue"), [(1 + np.sum(ref_scores >= v)) / (n_trusted + 1)
                                                                  for v in ref_scores])
    assert ood.evaluate_ood_run(test, "sampled", gt_field="is_ood")["auroc"] > 0.8


def test_bad_inputs_have_clear_errors(embedded):
    ds = embedded
    with pytest.raises(OODInputError, match="empty view"):
        ood.compute_ood_scores(ds.match_tags("nope"), "emb", "x")
    with pytest.raises(OODInputError, match="label field 'nope' does not exist"):
        ood.compute_label_issues(ds, "nope", "emb")
    ds.set_values("str_field", ["a"] * len(ds))
    with pytest.raises(OODInputError, match="expected a Classification field"):
        ood.compute_label_issues(ds, "str_field", "emb")
    with pytest.raises(OODInputError, match="needs class labels"):
        ood.compute_ood_scores(ds, "emb", "x", method="class_lof")
    with pytest.raises(OODInputError, match=r"needs class labels: pass label_field=.*, or class_conditional=False"):
        ood.compute_ood_scores(ds, "emb", "x", method="mahalanobis")
    with pytest.raises(OODInputError, match="matches no samples"):
        ood.compute_ood_scores(ds, "emb", "x", reference="not-a-tag")
    import fiftyone as fo

    ds.set_values("objs", [fo.Detections(detections=[fo.Detection(label="a", bounding_box=[0, 0, .5, .5])])
                           for _ in range(len(ds))])
    with pytest.raises(OODInputError, match=r"this is a generated view \(patches, frames or clips\) of dataset "
                                            rf"'{ds.name}'"):  # (was: "belongs to dataset '<a temporary name>'")
        ood.compute_ood_scores(ds, "emb", "x", reference=ds.to_patches("objs"))
    with pytest.raises(OODInputError, match="does not exist"):
        ood.compute_ood_scores(ds, "no_emb", "x")
    with pytest.raises(OODInputError, match="k="):
        ood.compute_label_issues(ds, "ground_truth", "emb", "x", method="class_lof", k=50)
    with pytest.raises(OODInputError, match="not valid"):
        ood.compute_ood_scores(ds, "emb", "bad name")
    with pytest.raises(OODInputError, match=r"n_components=16 sets the dimension of a reduction, but reduce=None; "
                                            r"pass reduce='pca'"):  # (was silently ignored)
        ood.compute_ood_scores(ds, "emb", "x", n_components=16)
    assert not ds.has_field("x")


def test_nan_and_mixed_dimension_embeddings_are_refused(embedded):
    ds = embedded
    vecs = ds.values("emb")
    vecs[3] = np.full_like(vecs[3], np.nan)
    ds.set_values("emb", vecs)
    bad_id = ds.values("id")[3]
    with pytest.raises(OODInputError, match=rf"1 item\(s\) have NaN.*'emb'.*{bad_id}"):
        ood.compute_ood_scores(ds, "emb", "x", reference="trusted", k=5)
    # a field of strings is named as such, not "could not convert string to float"
    ds.set_values("names", [str(i) for i in range(len(ds))])
    with pytest.raises(OODInputError, match=rf"'names' does not hold embedding vectors: item '{ds.values('id')[0]}' "
                                            r"has a str"):
        ood.compute_ood_scores(ds, "names", "x", k=5)
    vecs[3] = vecs[4][:10]
    ds.set_values("emb", vecs)
    with pytest.raises(OODInputError, match="mixed shapes"):
        ood.compute_ood_scores(ds, "emb", "x", reference="trusted", k=5)


def test_reference_of_other_dimension_is_refused(embedded):
    ds = embedded
    trusted = ds.match_tags("trusted")
    test = ds.match_tags("test")
    small = [v[:32] for v in trusted.values("emb")]
    trusted.set_values("emb2", small)
    test.set_values("emb2", test.values("emb"))
    with pytest.raises(OODInputError, match="dimension 32.*dimension"):
        ood.compute_ood_scores(test, "emb2", "x", reference=trusted, k=5, score_reference=False)
    # scoring the reference too reads both shapes at once: refused as mixed
    with pytest.raises(OODInputError, match=r"mixed shapes \[\(32,\), \(176,\)\]"):
        ood.compute_ood_scores(test, "emb2", "x", reference=trusted, k=5)
    assert ds.get_field("x") is None


def test_reduction_fitted_on_reference(embedded):
    ds = embedded
    ood.compute_ood_scores(ds, "emb", "s", method="knn", reference="trusted", k=5, reduce="pca", n_components=8)
    info = fo_runs.get_ood_run_info(ds, "s")
    assert info["reduction"]["method"] == "pca" and info["reduction"]["n_components"] == 8
    from sklearn.decomposition import PCA

    X = np.stack(ds.values("emb"))
    trusted = np.array(["trusted" in t for t in ds.values("tags")])
    pca = PCA(8, random_state=0).fit(X[trusted])
    det = KNNDetector(k=5).fit(pca.transform(X[trusted]))
    test = ~trusted
    np.testing.assert_allclose(np.array(ds.values("s"))[test], det.score_samples(pca.transform(X[test])), rtol=1e-3)


def test_visualization_is_a_brain_run_over_embedded_samples(embedded):
    ds = embedded
    out = ood.compute_ood_visualization(ds, "emb", "viz", method="pca")
    assert out == {"brain_key": "viz", "num_points": 200}
    results = ds.load_brain_results("viz")
    assert results.points.shape == (200, 2)
    with pytest.raises(OODInputError, match="already exists"):
        ood.compute_ood_visualization(ds, "emb", "viz", method="pca")
    # t-SNE on fewer points than its default 50 PCA dimensions works; a failed overwrite keeps the old map
    out = ood.compute_ood_visualization(ds.limit(12), "emb", "small", method="tsne")
    assert ds.load_brain_results("small").points.shape == (12, 2)
    with pytest.raises(OODInputError, match="method='foo' is not a map method"):
        ood.compute_ood_visualization(ds, "emb", "viz", method="foo", overwrite=True)
    with pytest.raises(OODInputError, match="needs at least 4 points"):
        ood.compute_ood_visualization(ds.limit(2), "emb", "viz", method="pca", overwrite=True)
    assert ds.load_brain_results("viz").points.shape == (200, 2)
    assert sorted(ds.list_brain_runs()) == ["small", "viz"]  # no temporary or empty run left


def test_reference_view_is_recorded_and_reloads(embedded):
    ds = embedded
    ref = ds.match_tags("trusted").limit(50)
    ood.compute_ood_scores(ds.match_tags("test"), "emb", "s", reference=ref, k=5)
    info = fo_runs.get_ood_run_info(ds, "s")  # reading the record back must work
    assert info["reference"]["num_reference"] == 50 and "Limit" in info["reference"]["view"]


def test_object_score_field_is_protected(dataset_factory, fashion_files, fashion_embeddings):
    import fiftyone as fo

    paths, names = fashion_files
    ds = dataset_factory(paths[:20])
    ds.set_values("objects", [fo.Detections(detections=[
        fo.Detection(label=names[i], bounding_box=[0, 0, 1, 1])]) for i in range(20)])
    ds.add_sample_field("objects.detections.emb", fo.VectorField)
    ds.set_values("objects.detections.emb", [[fashion_embeddings[i]] for i in range(20)])
    ood.compute_ood_scores(ds, "emb", "s", patches_field="objects", k=3)
    assert ds.get_field("objects.detections.s") is not None
    with pytest.raises(OODInputError, match="already exists"):
        ood.compute_ood_scores(ds, "emb", "s", patches_field="objects", k=3, run_key="other")


def test_neighbor_backends_give_identical_scores(embedded):
    ds = embedded
    ood.compute_ood_scores(ds, "emb", "s_sk", reference="trusted", k=5, neighbor_backend="sklearn")
    ood.compute_ood_scores(ds, "emb", "s_fa", reference="trusted", k=5, neighbor_backend="faiss")
    np.testing.assert_allclose(ds.values("s_sk"), ds.values("s_fa"), rtol=1e-6)
    assert fo_runs.get_ood_run_info(ds, "s_fa")["detector"]["backend"] == "faiss"


def test_p_value_rule_flags_about_alpha_of_the_reference(embedded):
    ds = embedded
    ood.compute_ood_scores(ds, "emb", "s", reference="trusted", k=5)
    out = ood.flag_samples(ds, "s", rule="pvalue", value=0.1, tag="ood")
    p = np.array(ds.values("s_pvalue"))
    flags = np.array(ds.values("s_flag"))
    np.testing.assert_array_equal(flags, p <= 0.1)
    trusted = np.array(["trusted" in t for t in ds.values("tags")])
    assert flags[trusted].mean() <= 0.1 + 1e-9  # conformal: at most alpha of the exchangeable reference
    assert out["num_flagged"] == int((p <= 0.1).sum()) and out["rule"]["alpha"] == 0.1
    ood.compute_ood_scores(ds, "emb", "u", k=5, score_reference=False, reference=None, overwrite=True)
    with pytest.raises(OODInputError, match="not a valid alpha"):
        ood.flag_samples(ds, "s", rule="pvalue", value=5, flag_field="f2")


def test_a_labelled_dataset_without_a_trusted_reference_reads_each_class_at_the_unsupervised_rank(embedded):
    """No trusted reference (the audit without a 'trusted' tag): the default detector scores the view against
    itself per class of the label field at 15% of each class (run record), the same values as the numpy
    detector's fit_score; a trusted reference keeps the 5% rank."""
    ds = embedded
    ood.compute_ood_scores(ds, "emb", "self_ood", label_field="ground_truth")
    info = fo_runs.get_ood_run_info(ds, "self_ood")
    labels = np.array(ds.values("ground_truth.label"), dtype=object)
    sizes = np.unique(labels, return_counts=True)[1]
    assert info["reference"] is None and info["detector"]["unsupervised_class_k_fraction"] == 0.15
    ranks = [max(1, min(50, round(0.15 * (n - 1)))) for n in sizes]  # adaptive_k(size - 1, 0.15)
    assert info["detector_fitted"]["k"] == min(ranks) > max(1, round(0.05 * (min(sizes) - 1)))
    params = {k: v for k, v in info["detector"].items() if k != "method"}
    expected = PyramidKNNDetector(**params).fit_score(np.stack(ds.values("emb")), labels)
    np.testing.assert_allclose(ds.values("self_ood"), expected, rtol=1e-6)
    ood.compute_ood_scores(ds.match_tags("test"), "emb", "trusted_ood", reference="trusted",
                           label_field="ground_truth")
    trusted_sizes = np.unique(np.array(ds.match_tags("trusted").values("ground_truth.label")), return_counts=True)[1]
    trusted_k = fo_runs.get_ood_run_info(ds, "trusted_ood")["detector_fitted"]["k"]
    assert trusted_k == max(1, round(0.05 * min(trusted_sizes)))


def test_scoring_reports_each_step_and_the_density_ratio_permutations(embedded):
    """progress: reading, fitting, the ratio's search and each of its 200 permutations, scoring, writing; a test
    that stops early reports the skipped draws at once, and the same scores come out with or without progress."""
    ds = embedded
    test = ds.match_tags("test")
    for transductive, units in (("always", 205), ("never", 4)):
        calls = []
        ood.compute_ood_scores(test, "emb", f"p_{transductive}", reference="trusted", label_field="ground_truth",
                               transductive=transductive, progress=lambda done, total: calls.append((done, total)))
        done = [d for d, _ in calls]
        assert {t for _, t in calls} == {units} and done[-1] == units
        assert done == sorted(set(done))  # strictly increasing
        if transductive == "always":
            assert len(calls) >= 200  # one call per permutation
    ood.compute_ood_scores(test, "emb", "quiet", reference="trusted", label_field="ground_truth",
                           transductive="always", progress=False)
    assert test.values("quiet") == test.values("p_always")
    # a batch like the reference: the test stops after a few draws and the rest is reported in one step
    calls = []
    ood.compute_ood_scores(test.match(F("is_ood") == False), "emb", "p_ref", reference="trusted",  # noqa: E712
                           label_field="ground_truth", score_reference=False,
                           progress=lambda done, total: calls.append((done, total)))
    info = fo_runs.get_ood_run_info(ds, "p_ref")["detector_fitted"]["transductive"]
    assert info["permutations_run"] < 200 and calls[-1] == (205, 205) and len(calls) < 205
    calls = []
    ood.compute_label_issues(ds, "ground_truth", "emb", "li", progress=lambda d, t: calls.append((d, t)))
    # reading, fitting, scoring, writing + the levels' neighbour searches and each of the 10 LDA folds, twice (the
    # LDA refitted without Confident Learning's label issues)
    assert calls[-1] == (25, 25) and [d for d, _ in calls] == list(range(1, 26))
    with pytest.raises(OODInputError, match=r"progress='yes' is not a progress setting"):
        ood.compute_ood_scores(test, "emb", "bad", reference="trusted", progress="yes")
    assert not ds.has_field("bad")
