"""Reads pair each id with its own value when a view returns its samples in another order at each query
(``dataset.mongo([{"$sample": ...}])``), and scores do not depend on the order a view shows its samples in.

Ids and values were read in two queries and paired by position: on such a view one sample's image, label, ground
truth, p-value or flag went with another sample's id. And the default wrong-label detector's folds follow row
position, so a reversed view gave other label-issue scores. Each test compares a call on an order-changing view
with the same call on the dataset in its natural order.
"""

import fiftyone as fo
import fiftyone.core.fields as fof
import numpy as np
import pytest

import ood_core as ood
from ood_core.fo import runs as fo_runs

N = 40


def _shuffled(samples, size=None):
    """A view that returns its samples in a new random order (a random subset with ``size``) at every query."""
    return samples.mongo([{"$sample": {"size": size or len(samples)}}])


def _by_id(ds, path):
    return dict(zip(*ds.values(["id", path])))


def _by_object(ds, path):
    """``{object id: value}`` (read from the dataset, whose natural order is stable here)."""
    ids, values = ds.values("objs.detections.id"), ds.values(path)
    return {i: v for id_row, value_row in zip(ids, values) for i, v in zip(id_row, value_row)}


def _assert_same(got, want):
    assert got.keys() == want.keys()
    wrong = [k for k in want if (got[k] is None) != (want[k] is None)
             or (want[k] is not None and not np.allclose(got[k], want[k], rtol=1e-5, atol=1e-6))]
    assert not wrong, f"{len(wrong)} of {len(want)} items got another item's value"


def _two_classes(n, seed=0, outliers=3):
    """Class "b" (even rows) and "a" (odd rows) apart along one direction; the first ``outliers`` rows far off."""
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=0.3, size=(n, 6)).astype(np.float32)
    X[:, 0] += 10.0
    X[1::2, 1] += 5.0
    for i in range(outliers):
        X[i, 2 + i % 4] += 10.0
    return X


@pytest.fixture
def ds(dataset_factory):
    """40 samples, labels "b" / "a" alternating, 3 of them wrong (``is_wrong``), the first 3 out of distribution
    (``is_ood`` and tag ``ood``: they and every 7th), embeddings in ``emb``."""
    labels = ["a" if i % 2 else "b" for i in range(N)]
    wrong = {4, 9, 17}
    for i in wrong:
        labels[i] = "b" if labels[i] == "a" else "a"
    ds = dataset_factory([f"/tmp/reads_{i}.png" for i in range(N)], labels,
                         [["ood"] if i < 3 or i % 7 == 0 else [] for i in range(N)])
    ds.set_values("emb", list(_two_classes(N)))
    ds.set_values("idx", list(range(N)))
    ds.set_values("is_wrong", [i in wrong for i in range(N)])
    ds.set_values("is_ood", [i < 3 or (i % 7 == 0) for i in range(N)])  # some inliers positive: AUROC < 1
    return ds


@pytest.fixture
def objects(dataset_factory):
    """20 samples with 2 boxes each; each box has an embedding (``objs.detections.emb``), a label and ``is_ood``.
    Box ``idx`` (row of the embeddings) is of class "a" when odd; the first box of every other sample is."""
    n = 20
    rows = [(2 * i, 2 * i + 1) if i % 2 == 0 else (2 * i + 1, 2 * i) for i in range(n)]
    ds = dataset_factory([f"/tmp/reads_obj_{i}.png" for i in range(n)])
    for i, sample in enumerate(ds.iter_samples(autosave=True)):  # to its end: the last batch is saved then
        row = rows[i]
        sample["objs"] = fo.Detections(detections=[
            fo.Detection(label="a" if idx % 2 else "b", bounding_box=[0.1, 0.1, 0.3, 0.3], idx=idx,
                         is_ood=idx < 3 or idx % 7 == 0)
            for idx in row])
    X = _two_classes(2 * n, seed=1)
    ds.add_sample_field("objs.detections.emb", fof.VectorField)
    ds.set_values("objs.detections.emb", [[X[a], X[b]] for a, b in rows])
    return ds


# --------------------------------------------------------------------------- CLIP


def test_clip_encoding_of_a_shuffled_view_gives_each_sample_its_own_image(dataset_factory, fashion_files, tiny_clip,
                                                                           one_torch_thread):
    """``encode_samples`` read ids and file paths in two queries: each id got another image's embedding."""
    from ood_core.clip.encoder import CLIPEncoder
    from ood_core.fo.clip_common import encode_samples

    paths, _ = fashion_files
    ds = dataset_factory(paths[:12])
    enc = CLIPEncoder(tiny_clip.name, pretrained=str(tiny_clip.safetensors))
    keys, X, failures = encode_samples(_shuffled(ds), enc, batch_size=5, skip_failures=True, progress=False)
    assert not failures and sorted(keys) == sorted(ds.values("id"))
    path_of = _by_id(ds, "filepath")
    np.testing.assert_allclose(X, enc.encode_images([path_of[k] for k in keys]), rtol=1e-5, atol=1e-6)


def test_clip_predictions_of_a_shuffled_view_land_on_their_samples(dataset_factory, fashion_files, tiny_clip,
                                                                    tmp_path, one_torch_thread):
    """The predicted class was a list aligned with one read of the view and written by position in another."""
    from clip_helpers import small_clip_run

    ds, kw = small_clip_run(dataset_factory, fashion_files, tiny_clip, tmp_path)
    ood.compute_clip_embeddings(ds, "clip", model_name=kw["model_name"], pretrained=kw["pretrained"],
                                progress=False)
    common = dict(kw, label_field="ground_truth", embeddings_field="clip", num_negatives=10, num_groups=2)
    ood.compute_neglabel_scores(_shuffled(ds), "nl_s", prediction_field="pred_s", **common)
    ood.compute_neglabel_scores(ds, "nl", prediction_field="pred", **common)
    _assert_same(_by_id(ds, "nl_s"), _by_id(ds, "nl"))
    _assert_same(_by_id(ds, "pred_s.confidence"), _by_id(ds, "pred.confidence"))
    assert _by_id(ds, "pred_s.label") == _by_id(ds, "pred.label")


# --------------------------------------------------------------------------- flags


def test_object_flags_of_a_shuffled_view_land_on_their_objects(objects):
    """The object flags were nested lists aligned with one read and written by position in another: an object
    was flagged by another object's score."""
    ood.compute_ood_scores(objects, "emb", "s", method="knn", k=3, patches_field="objs", progress=False)
    scores = _by_object(objects, "objs.detections.s")
    threshold = float(np.median(list(scores.values())))
    ood.flag_samples(_shuffled(objects), "s", rule="threshold", value=threshold, flag_field="f")
    flags = _by_object(objects, "objs.detections.f")
    assert flags == {k: s >= threshold for k, s in scores.items()}
    assert all(type(v) is bool for v in flags.values())


# --------------------------------------------------------------------------- labels read with the scores


def test_optional_labels_of_a_shuffled_view_go_with_their_samples(ds):
    """Labels given to a detector that takes them optionally (per-class neighbours) were read in two queries."""
    ood.compute_ood_scores(_shuffled(ds), "emb", "s", method="pyramid_knn", label_field="ground_truth",
                           progress=False)
    ood.compute_ood_scores(ds, "emb", "want", method="pyramid_knn", label_field="ground_truth", progress=False)
    _assert_same(_by_id(ds, "s"), _by_id(ds, "want"))


def test_object_optional_labels_of_a_shuffled_view_go_with_their_objects(objects):
    ood.compute_ood_scores(_shuffled(objects), "emb", "s", method="pyramid_knn", patches_field="objs",
                           label_field="objs", progress=False)
    ood.compute_ood_scores(objects, "emb", "want", method="pyramid_knn", patches_field="objs", label_field="objs",
                           progress=False)
    _assert_same(_by_object(objects, "objs.detections.s"), _by_object(objects, "objs.detections.want"))


def _rows(table):
    """The table's rows by class, numbers rounded (a mean over the same values summed in another order)."""
    return sorted((r["class"], {k: round(v, 9) if isinstance(v, float) else v for k, v in r.items()})
                  for r in table)


def test_label_report_from_a_score_field_of_a_shuffled_view_pairs_each_score_with_its_label(ds):
    """Ids, scores and labels were read in three queries: each class averaged other samples' scores."""
    ood.compute_label_issues(ds, "ground_truth", "emb", "li", progress=False)
    got = ood.label_error_report(_shuffled(ds), "ground_truth", score_field="li", gt_field="is_wrong")
    want = ood.label_error_report(ds, "ground_truth", score_field="li", gt_field="is_wrong")
    assert _rows(got) == _rows(want)
    assert all(r["num_wrong"] for r in want)


def test_label_report_ground_truth_of_a_shuffled_view_goes_with_its_samples(ds):
    """The ground truth (wrong label or not) was read apart from its ids: the AUROC measured other samples."""
    got = ood.label_error_report(_shuffled(ds), "ground_truth", "emb", gt_field="is_wrong")
    want = ood.label_error_report(ds, "ground_truth", "emb", gt_field="is_wrong")
    assert _rows(got) == _rows(want)
    assert {r["auroc"] for r in want} != {None}


# --------------------------------------------------------------------------- evaluation and flag rules


@pytest.fixture
def scored(ds):
    """``ds`` scored with a trusted reference (samples 20..39 but the positives), so p-values exist."""
    trusted = [i for i in range(20, N) if i % 7]
    ds.select(ds.match(fo.ViewField("idx").is_in(trusted)).values("id")).tag_samples("trusted")
    ood.compute_ood_scores(ds, "emb", "s", method="knn", k=3, reference="trusted", progress=False)
    return ds


@pytest.mark.parametrize("gt", [{"gt_field": "is_ood"}, {"gt_tag": "ood"}])
def test_evaluation_of_a_shuffled_view_pairs_each_score_with_its_ground_truth(scored, gt):
    got = ood.evaluate_ood_run(_shuffled(scored), "s", **gt)
    want = ood.evaluate_ood_run(scored, "s", **gt)
    assert got["auroc"] == pytest.approx(want["auroc"]) and got["num_evaluated"] == want["num_evaluated"]
    assert 0.5 < want["auroc"] < 1.0


def test_object_evaluation_of_a_shuffled_view_pairs_each_score_with_its_ground_truth(objects):
    ood.compute_ood_scores(objects, "emb", "s", method="knn", k=3, patches_field="objs", progress=False)
    got = ood.evaluate_ood_run(_shuffled(objects), "s", gt_field="is_ood")
    want = ood.evaluate_ood_run(objects, "s", gt_field="is_ood")
    assert got["auroc"] == pytest.approx(want["auroc"]) and 0.0 < want["auroc"] < 1.0


def test_fpr_rule_of_a_shuffled_view_pairs_each_score_with_its_ground_truth(scored):
    got = ood.flag_samples(_shuffled(scored), "s", rule="fpr", value=0.1, gt_field="is_ood", flag_field="f_s")
    want = ood.flag_samples(scored, "s", rule="fpr", value=0.1, gt_field="is_ood", flag_field="f")
    assert got["threshold"] == pytest.approx(want["threshold"])
    assert _by_id(scored, "f_s") == _by_id(scored, "f")


def test_p_value_rule_of_a_shuffled_view_flags_each_sample_by_its_own_p_value(scored):
    """The p-values and scores were read in two queries and paired with the flags' ids from a third."""
    ood.flag_samples(_shuffled(scored), "s", rule="pvalue", value=0.1, flag_field="f_s")
    p_values = _by_id(scored, "s_pvalue")
    assert _by_id(scored, "f_s") == {k: p <= 0.1 for k, p in p_values.items()}
    assert any(p <= 0.1 for p in p_values.values()) and any(p > 0.1 for p in p_values.values())


# --------------------------------------------------------------------------- scores independent of the view's order


def _reversed(samples):
    return samples.sort_by("idx", reverse=True)


def test_label_issue_scores_do_not_depend_on_the_views_order(ds):
    """``weighted_label_vote`` assigns its cross-validation folds by row position: the same samples read in
    another order got other scores."""
    ood.compute_label_issues(_reversed(ds), "ground_truth", "emb", "rev", progress=False)
    ood.compute_label_issues(_shuffled(ds), "ground_truth", "emb", "shuf", progress=False)
    ood.compute_label_issues(ds, "ground_truth", "emb", "want", progress=False)
    _assert_same(_by_id(ds, "rev"), _by_id(ds, "want"))
    _assert_same(_by_id(ds, "shuf"), _by_id(ds, "want"))
    assert fo_runs.get_ood_run_info(ds, "rev")["detector"] == fo_runs.get_ood_run_info(ds, "want")["detector"]


def test_object_label_issue_scores_do_not_depend_on_the_views_order(objects):
    swap = objects.filter_labels("objs", fo.ViewField("idx").is_in([6, 13, 21]))  # 3 wrong labels
    objects.set_label_values("objs.detections.label", {
        i: "b" if idx % 2 else "a" for i, idx in zip(*swap.values(["objs.detections.id", "objs.detections.idx"],
                                                                  unwind=True))})
    view = objects.sort_by("filepath", reverse=True)  # samples in another order
    ood.compute_label_issues(view, "objs", "emb", "rev", progress=False)
    ood.compute_label_issues(objects, "objs", "emb", "want", progress=False)
    _assert_same(_by_object(objects, "objs.detections.rev"), _by_object(objects, "objs.detections.want"))


def test_label_report_scores_do_not_depend_on_the_views_order(ds):
    got = ood.label_error_report(_reversed(ds), "ground_truth", "emb", method="weighted_label_vote",
                                 gt_field="is_wrong")
    want = ood.label_error_report(ds, "ground_truth", "emb", method="weighted_label_vote", gt_field="is_wrong")
    assert _rows(got) == _rows(want)
