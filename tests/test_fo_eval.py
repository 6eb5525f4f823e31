"""Evaluating and flagging stored scores: metrics, flag fields, tags and their ownership."""

import numpy as np
import pytest
from fiftyone import ViewField as F
from sklearn.metrics import roc_auc_score

import ood_core as ood
from ood_core.errors import OODInputError
from ood_core.fo import runs as fo_runs
from ood_core.metrics import ood_metrics
from ood_core.thresholds import percentile_of_reference, threshold_at_fpr

ID_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker")


@pytest.fixture
def fashion_scored(dataset_factory, fashion_files, fashion_arrays):
    """200 real Fashion-MNIST samples, trusted = 10 per ID class, scored with k-NN (run 'ood').

    The embeddings are the images' raw pixels: real data with a known OOD
    split, without the backbone's cost (the backbone is covered by test_fo_api).
    """
    import fiftyone.core.fields as fof

    paths, names = fashion_files
    seen, tags = {}, []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        tags.append(["trusted"] if n in ID_CLASSES and seen[n] <= 10 else ["test"])
    ds = dataset_factory(paths, names, tags)
    ds.set_values("is_ood", [n not in ID_CLASSES for n in names])
    pixels = fashion_arrays[0].reshape(len(paths), -1).astype(np.float32) / 255.0
    fo_runs.write_and_record(ds, [("emb", list(pixels), fof.VectorField)], "emb", kind="embeddings",
                             embeddings_field="emb", patches_field=None, backbone=None)
    ood.compute_ood_scores(ds, "emb", "ood", method="knn", reference="trusted", k=5)
    return ds


@pytest.fixture
def synthetic(dataset_factory):
    """60 samples with known scores 0..59 (run 'ood', reference tag 'trusted'); OOD = the top 12."""
    n = 60
    rng = np.random.default_rng(0)
    scores = rng.permutation(n).astype(float)
    ds = dataset_factory([f"/tmp/fake_{i}.png" for i in range(n)],
                         tags=[["trusted"] if i < 20 and scores[i] < 48 else [] for i in range(n)])
    ds.set_values("is_ood", (scores >= 48).tolist())
    fo_runs.write_and_record(ds, [("ood", scores.tolist())], "ood", kind="ood_scores", score_field="ood",
                             patches_field=None, reference={"tag": "trusted"})
    return ds, scores


def test_metrics_from_fields_equal_ood_metrics_and_sklearn(fashion_scored):
    ds = fashion_scored
    test = ds.match_tags("test")
    scores = np.array(test.values("ood"))
    is_ood = np.array(test.values("is_ood"))
    out = ood.evaluate_ood_run(test, "ood", gt_field="is_ood")
    expected = ood_metrics(scores, is_ood)
    for key, value in expected.items():
        assert out[key] == pytest.approx(value), key
    assert out["auroc"] == pytest.approx(roc_auc_score(is_ood, scores))
    assert out["auroc"] > 0.7  # held-out Bag / Ankle boot stand out even in pixel space
    assert out["positive_class"] == "ood" and out["positive_means"] == "is_ood == True"
    assert out["num_ood"] == 40 and out["num_evaluated"] == 120 and out["num_missing"] == 0

    # the same metrics from a tag, and from the field name instead of the run key
    test.match({"is_ood": True}).tag_samples("heldout")
    by_tag = ood.evaluate_ood_run(test, "ood", gt_tag="heldout", positive="held-out class")
    assert by_tag["auroc"] == pytest.approx(expected["auroc"]) and by_tag["fpr95"] == pytest.approx(expected["fpr95"])
    assert by_tag["positive_class"] == "held-out class" and by_tag["ground_truth"] == {"tag": "heldout"}
    # positive_value=False makes ID the positive class: AUROC mirrors
    flipped = ood.evaluate_ood_run(test, "ood", gt_field="is_ood", positive_value=False)
    assert flipped["auroc"] == pytest.approx(1 - expected["auroc"])


def test_items_without_score_or_truth_are_left_out(synthetic):
    ds, scores = synthetic
    values = ds.values("ood")
    values[0] = None
    ds.set_values("ood", values)
    truth = ds.values("is_ood")
    truth[1] = None
    ds.set_values("is_ood", truth)
    out = ood.evaluate_ood_run(ds, "ood", gt_field="is_ood")
    keep = np.arange(2, 60)
    assert out["num_missing"] == 2 and out["num_evaluated"] == 58
    assert out["auroc"] == pytest.approx(roc_auc_score(scores[keep] >= 48, scores[keep]))


def test_flag_field_and_tags_written_with_percentile_rule(synthetic):
    ds, scores = synthetic
    out = ood.flag_samples(ds, "ood", rule="percentile", value=0.9, tag="ood")  # reference = run's 'trusted'
    trusted = np.array(["trusted" in t for t in ds.values("tags")])
    expected = percentile_of_reference(scores[trusted], 0.9, scores=scores)
    assert out["flag_field"] == "ood_flag" and out["flag_key"] == "ood_flag"
    assert ds.values("ood_flag") == expected.flags.tolist()
    assert out["threshold"] == expected.threshold and out["num_flagged"] == int(expected.flags.sum())
    tagged = np.array(["ood" in t for t in ds.values("tags")])
    assert tagged.tolist() == expected.flags.tolist()
    info = ood.get_flag_info(ds, "ood_flag")
    assert info["kind"] == "flags" and info["score_run"] == "ood" and info["rule_name"] == "percentile_of_reference"
    assert info["rule"]["pass_rate"] == 0.9 and info["rule"]["threshold"] == expected.threshold
    assert info["reference"]["tag"] == "trusted" and info["tag"] == "ood"
    assert sorted(info["tagged_ids"]) == sorted(np.array(ds.values("id"))[expected.flags].tolist())
    assert ood.list_flag_runs(ds, "ood") == ["ood_flag"]

    # a reference view (not a tag) is recorded so that the run record reloads
    low = ds.match(F("ood") < 30)
    out = ood.flag_samples(ds, "ood", rule="percentile", value=0.5, reference=low, flag_field="low_flag")
    assert out["threshold"] == percentile_of_reference(scores[scores < 30], 0.5).threshold
    info = ood.get_flag_info(ds, "low_flag")
    assert info["reference"]["num_samples"] == 30
    assert fo_runs.view_from_description(ds, info["reference"]).values("id") == low.values("id")


def test_fpr_rule_on_labelled_field(synthetic):
    ds, scores = synthetic
    is_ood = scores >= 48
    noisy = is_ood.copy()
    noisy[np.argsort(scores)[40:44]] = True  # some high-scoring ID samples make the FPR bound bite
    ds.set_values("is_ood", noisy.tolist())
    out = ood.flag_samples(ds, "ood", rule="fpr", value=0.1, gt_field="is_ood", flag_field="fpr_flag")
    expected = threshold_at_fpr(scores, noisy, 0.1)
    assert ds.values("fpr_flag") == expected.flags.tolist()
    assert out["rule"]["fpr"] <= 0.1 and out["rule"]["tpr"] == expected.rule["tpr"]


def test_manual_tags_survive_and_stale_auto_tags_go_when_reflagging(synthetic):
    ds, scores = synthetic
    ids = np.array(ds.values("id"))
    order = np.argsort(-scores)  # highest score first
    low, high = ids[order[-1]], ids[order[1]]
    ds.select([low, high]).tag_samples("ood")  # set by a user before any flagging

    first = ood.flag_samples(ds, "ood", rule="top_n", value=10, tag="ood")
    assert first["tags_added"] == 9  # the hand-tagged top sample already had the tag
    assert set(ds.match_tags("ood").values("id")) == set(ids[order[:10]]) | {low}

    with pytest.raises(OODInputError, match="already exists"):
        ood.flag_samples(ds, "ood", rule="top_n", value=3, tag="ood")
    second = ood.flag_samples(ds, "ood", rule="top_n", value=3, tag="ood", overwrite=True)
    assert second["tags_removed"] == 7
    assert set(ds.match_tags("ood").values("id")) == set(ids[order[:3]]) | {low}
    assert sum(ds.values("ood_flag")) == 3

    # a second flags run claiming the same tag keeps it on its samples when the first one lets go
    ood.flag_samples(ds, "ood", rule="top_n", value=5, tag="ood", flag_field="top5")
    ood.flag_samples(ds, "ood", rule="top_n", value=1, tag="ood", overwrite=True)
    assert set(ds.match_tags("ood").values("id")) == set(ids[order[:5]]) | {low}

    ood.delete_flags(ds, "top5")
    ood.delete_flags(ds, "ood_flag")
    assert set(ds.match_tags("ood").values("id")) == {low, high}  # only the user's tags remain
    assert not ds.has_field("ood_flag") and not ds.has_field("top5")
    assert ood.list_flag_runs(ds) == []


def test_changing_the_tag_moves_it(synthetic):
    ds, scores = synthetic
    ood.flag_samples(ds, "ood", rule="threshold", value=50.0, tag="ood")
    assert len(ds.match_tags("ood")) == 10
    ood.flag_samples(ds, "ood", rule="threshold", value=55.0, tag="review", overwrite=True)
    assert len(ds.match_tags("ood")) == 0 and len(ds.match_tags("review")) == 5
    ood.flag_samples(ds, "ood", rule="threshold", value=55.0, overwrite=True)  # no tag: tags removed
    assert len(ds.match_tags("review")) == 0 and sum(ds.values("ood_flag")) == 5


def test_existing_flag_field_refused_and_nothing_touched(synthetic):
    ds, scores = synthetic
    ds.set_values("ood_flag", [False] * 60)
    before_tags = ds.values("tags")
    with pytest.raises(OODInputError, match="'ood_flag' exists.*no fiftyone-ood run wrote it"):
        ood.flag_samples(ds, "ood", rule="top_n", value=5, tag="ood")
    assert ds.values("ood_flag") == [False] * 60
    assert ds.values("tags") == before_tags and "ood_flag" not in ds.list_runs()
    # a score run's key is never replaced by a flags run, even with overwrite
    with pytest.raises(OODInputError, match="'ood_scores' run"):
        ood.flag_samples(ds, "ood", rule="top_n", value=5, flag_field="x", flag_key="ood", overwrite=True)
    assert ds.values("ood") == scores.tolist()
    # the user's own field is not replaced even with overwrite=True
    with pytest.raises(OODInputError, match="no fiftyone-ood run wrote it"):
        ood.flag_samples(ds, "ood", rule="top_n", value=5, overwrite=True)
    assert ds.values("ood_flag") == [False] * 60
    ds.delete_sample_field("ood_flag")
    out = ood.flag_samples(ds, "ood", rule="top_n", value=5)
    assert sum(ds.values("ood_flag")) == 5 and out["num_tagged"] == 0


def test_flags_only_inside_the_view(synthetic):
    ds, scores = synthetic
    view = ds.match_tags("trusted", bool=False)
    ood.flag_samples(view, "ood", rule="top_fraction", value=0.1, tag="ood")
    flags = ds.values("ood_flag")
    in_view = np.array(["trusted" not in t for t in ds.values("tags")])
    assert all(f is None for f, v in zip(flags, in_view) if not v)
    n_view = int(in_view.sum())
    assert sum(f for f in flags if f) == int(np.ceil(0.1 * n_view))


def test_object_scores_are_flagged_with_label_tags(dataset_factory):
    import fiftyone as fo

    ds = dataset_factory([f"/tmp/obj_{i}.png" for i in range(10)])
    ds.set_values("objects", [fo.Detections(detections=[fo.Detection(label="a"), fo.Detection(label="b")])
                              for _ in range(10)])
    scores = [[float(2 * i), float(2 * i + 1)] for i in range(10)]  # 0..19
    fo_runs.write_and_record(ds, [("objects.detections.ood", scores)], "ood", kind="ood_scores",
                             score_field="ood", patches_field="objects")
    ds.set_values("objects.detections.is_ood", [[s >= 15 for s in row] for row in scores])
    out = ood.flag_samples(ds, "ood", rule="top_n", value=4, tag="ood")
    assert out["flag_field"] == "objects.detections.ood_flag"
    assert ds.values("objects.detections.ood_flag") == [[s >= 16 for s in row] for row in scores]
    assert ds.count_label_tags() == {"ood": 4} and ds.count_sample_tags() == {}
    metrics = ood.evaluate_ood_run(ds, "ood", gt_field="is_ood")
    assert metrics["level"] == "object" and metrics["auroc"] == 1.0 and metrics["num_ood"] == 5
    with pytest.raises(OODInputError, match="already exists"):
        ood.flag_samples(ds, "ood", rule="top_n", value=2, tag="ood")
    ood.flag_samples(ds, "ood", rule="top_n", value=2, tag="ood", overwrite=True)
    assert ds.count_label_tags() == {"ood": 2}
    ood.delete_flags(ds, "ood_flag")
    assert ds.count_label_tags() == {}


def test_bad_flag_requests_have_clear_errors(synthetic):
    ds, _ = synthetic
    with pytest.raises(OODInputError, match="unknown rule"):
        ood.flag_samples(ds, "ood", rule="median")
    with pytest.raises(OODInputError, match="needs value"):
        ood.flag_samples(ds, "ood", rule="top_n")
    with pytest.raises(OODInputError, match="needs labelled data"):
        ood.flag_samples(ds, "ood", rule="fpr")
    with pytest.raises(OODInputError, match="neither a fiftyone-ood score run nor a field"):
        ood.evaluate_ood_run(ds, "nope", gt_field="is_ood")
    with pytest.raises(OODInputError, match="exactly one of gt_field"):
        ood.evaluate_ood_run(ds, "ood")
    with pytest.raises(OODInputError, match="tag must be"):
        ood.flag_samples(ds, "ood", rule="top_n", value=3, tag="")
    fo_runs.write_and_record(ds, [("plain", list(range(60)))], "plain", kind="ood_scores")
    with pytest.raises(OODInputError, match="percentile rule needs reference"):
        ood.flag_samples(ds, "plain", rule="percentile")
    assert not ds.has_field("plain_flag")


def test_runs_with_a_prediction_field_are_evaluated_on_their_score_field(synthetic):
    import fiftyone as fo

    ds, scores = synthetic
    preds = [fo.Classification(label="x") for _ in range(60)]
    fo_runs.write_and_record(ds, [("nl", (-scores).tolist()), ("nl_pred", preds)], "nl", kind="neglabel",
                             score_field="nl", prediction_field="nl_pred", patches_field=None)
    out = ood.evaluate_ood_run(ds, "nl", gt_field="is_ood")
    assert out["score_field"] == "nl" and out["auroc"] == 0.0 and out["positive_class"] == "ood"
    assert ood.flag_samples(ds, "nl", rule="top_n", value=3)["flag_field"] == "nl_flag"
