"""Evaluating and flagging stored scores: metrics, flag fields, tags and their ownership."""

import re

import numpy as np
import pytest
from fiftyone import ViewField as F
from sklearn.metrics import roc_auc_score

import ood_core as ood
from ood_core.errors import OODInputError
from ood_core.fo import runs as fo_runs
from ood_core.fo.items import flatten
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


def test_ground_truth_typos_are_named_not_read_as_no_positives(synthetic):
    """A tag on no sample gave the fpr rule no positives (a top-scores rule, silently); a string positive_value
    'False' was read as True; the score run deleted by another process while flagging left flags of no run."""
    ds, scores = synthetic
    with pytest.raises(OODInputError, match=r"gt_tag='nomatch' is on no sample of dataset .*its tags: \['trusted'\]"):
        ood.flag_samples(ds, "ood", rule="fpr", value=0.1, gt_tag="nomatch")
    ds.limit(5).tag_samples("ood_truth")
    out = ood.flag_samples(ds.skip(5), "ood", rule="fpr", value=0.1, gt_tag="ood_truth")  # a tag elsewhere: valid
    assert out["num_scored_in_view"] == 55
    for bad, named in ((dict(gt_tag=["ood_truth"]), r"gt_tag=\['ood_truth'\] is not a tag"),
                       (dict(gt_field="is_ood", positive_value="False"), "positive_value='False' is not valid"),
                       (dict(gt_field="is_ood", positive_value=2), "positive_value=2 is not valid")):
        with pytest.raises(OODInputError, match=named):
            ood.evaluate_ood_run(ds, "ood", **bad)
    assert ood.evaluate_ood_run(ds, "ood", gt_field="is_ood", positive_value=0)["positive_means"] == "is_ood == False"


def test_flags_of_a_score_run_deleted_meanwhile_are_not_written(synthetic, monkeypatch):
    ds, _ = synthetic
    real = fo_runs.write_and_record

    def deleted_meanwhile(*args, **kwargs):
        ood.delete_ood_run(ds, "ood")  # another process deletes the score run before the commit
        return real(*args, **kwargs)

    monkeypatch.setattr(fo_runs, "write_and_record", deleted_meanwhile)
    with pytest.raises(OODInputError, match="score run 'ood' was deleted .* while these flags were computed"):
        ood.flag_samples(ds, "ood", rule="top_n", value=3, tag="ood")
    ds.reload()
    assert ood.list_ood_runs(ds) == [] and not ds.has_field("ood_flag") and not ds.match_tags("ood")
    assert not [f for f in ds.get_field_schema() if f.startswith("tmp_ood")]  # the staged flags went too


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


def test_reflagging_while_another_process_reflags_leaves_tags_matching_the_record(synthetic, monkeypatch):
    """Two processes re-flagging one score run: each planned its tag changes before the commit's lock, from the
    flags run as it was then; the second to commit removed the first one's claims from the record but not its
    tags (300 tagged, 10 claimed), which no run then owned. The plan is made under the lock now."""
    ds, scores = synthetic
    ids = np.array(ds.values("id"))
    order = np.argsort(-scores)
    ood.flag_samples(ds, "ood", rule="top_n", value=2, tag="ood")
    real = fo_runs.write_and_record
    calls = []

    def another_process_commits_first(*args, **kwargs):
        if not calls:  # the first call's commit: another process re-flags (top 30) between its plan and its lock
            calls.append(1)
            monkeypatch.setattr(fo_runs, "write_and_record", real)
            ood.flag_samples(ds, "ood", rule="top_n", value=30, tag="ood", overwrite=True)
        return real(*args, **kwargs)

    monkeypatch.setattr(fo_runs, "write_and_record", another_process_commits_first)
    out = ood.flag_samples(ds, "ood", rule="top_n", value=10, tag="ood", overwrite=True)
    ds.reload()
    tagged = set(ds.match_tags("ood").values("id"))
    claims = set(fo_runs.load_ood_results(ds, "ood_flag").tagged_ids)
    assert tagged == claims == set(ids[order[:10]]) and out["num_tagged"] == 10
    assert out["tags_removed"] == 20 and sum(ds.values("ood_flag")) == 10
    ood.delete_flags(ds, "ood_flag")
    assert not ds.match_tags("ood")  # nothing left to no run


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


def test_reflagging_another_view_keeps_flags_tags_and_record_outside_it(synthetic):
    ds, scores = synthetic
    trusted, rest = ds.match_tags("trusted"), ds.match_tags("trusted", bool=False)

    def state(tag):
        flagged = set(ds.match(F("ood_flag") == True).values("id"))  # noqa: E712
        return flagged, set(ds.match_tags(tag).values("id")), set(ood.get_flag_info(ds, "ood_flag")["tagged_ids"])

    ood.flag_samples(trusted, "ood", rule="top_n", value=3, tag="ood")
    out = ood.flag_samples(rest, "ood", rule="top_n", value=5, tag="ood", overwrite=True)
    flagged, tagged, recorded = state("ood")
    assert len(flagged) == 8 and len(set(trusted.values("id")) & flagged) == 3  # trusted keep their flags...
    assert tagged == flagged and recorded == flagged  # ...and their tags, and the record still lists them
    assert out["tags_removed"] == 0 and out["tags_added"] == 5 and out["num_tagged"] == 8

    # a new tag moves to every flagged sample, in the view and outside it
    ood.flag_samples(rest, "ood", rule="top_n", value=2, tag="review", overwrite=True)
    flagged, tagged, recorded = state("review")
    assert len(flagged) == 5 and tagged == flagged and recorded == flagged
    assert len(ds.match_tags("ood")) == 0
    ood.delete_flags(ds, "ood_flag")
    assert ds.count_sample_tags() == {"trusted": len(trusted)}


def test_reflagging_some_samples_keeps_the_label_tags_of_the_other_objects(dataset_factory):
    import fiftyone as fo

    ds = dataset_factory([f"/tmp/obj_{i}.png" for i in range(10)])
    ds.set_values("objects", [fo.Detections(detections=[fo.Detection(label="a"), fo.Detection(label="b")])
                              for _ in range(10)])
    scores = [[float(2 * i), float(2 * i + 1)] for i in range(10)]  # 0..19
    fo_runs.write_and_record(ds, [("objects.detections.ood", scores)], "ood", kind="ood_scores",
                             score_field="ood", patches_field="objects")
    ids = ds.values("id")
    ood.flag_samples(ds.select(ids[5:]), "ood", rule="top_n", value=2, tag="ood")  # objects 18, 19
    ood.flag_samples(ds.select(ids[:5]), "ood", rule="top_n", value=2, tag="ood", overwrite=True)  # 8, 9
    flags = flatten(ds.values("objects.detections.ood_flag"))
    tagged = ["ood" in t for t in flatten(ds.values("objects.detections.tags"))]
    assert [i for i, f in enumerate(flags) if f] == [8, 9, 18, 19] and tagged == [bool(f) for f in flags]
    object_ids = flatten(ds.values("objects.detections.id"))
    assert sorted(ood.get_flag_info(ds, "ood_flag")["tagged_ids"]) == sorted(object_ids[i] for i in (8, 9, 18, 19))


@pytest.mark.parametrize("rule, value, expected", [
    ("pvalue", "a", "alpha for rule 'pvalue'; pass a number strictly between 0 and 1"),
    ("pvalue", 1.0, "alpha for rule 'pvalue'"),
    ("top_n", 2.5, "n for rule 'top_n'; pass a whole number >= 0"),
    ("top_n", -1, "n for rule 'top_n'"),
    ("top_n", True, "n for rule 'top_n'"),
    ("top_fraction", 1.5, "fraction for rule 'top_fraction'; pass a number in \\[0, 1\\]"),
    ("percentile", 0, "pass rate for rule 'percentile'; pass a number in \\(0, 1\\]"),
    ("fpr", "0.1", "target FPR for rule 'fpr'; pass a number in \\[0, 1\\]"),
    ("threshold", float("nan"), "threshold for rule 'threshold'; pass a finite number"),
    ("threshold", [1.0], "threshold for rule 'threshold'"),
])
def test_every_rule_value_is_checked_with_a_clear_error(synthetic, rule, value, expected):
    ds, _ = synthetic
    with pytest.raises(OODInputError, match=f"value={value!r}".replace("[", "\\[").replace("]", "\\]")
                       .replace("(", "\\(").replace(")", "\\)") + f" is not a valid {expected}"):
        ood.flag_samples(ds, "ood", rule=rule, value=value, gt_field="is_ood", tag="ood")
    assert not ds.has_field("ood_flag") and "ood" not in ds.count_sample_tags()


def test_a_whole_float_is_a_valid_top_n(synthetic):
    ds, _ = synthetic
    out = ood.flag_samples(ds, "ood", rule="top_n", value=np.float32(4.0))
    assert out["num_flagged"] == 4 and ood.get_flag_info(ds, "ood_flag")["value"] == 4


def test_a_ground_truth_field_that_is_not_boolean_is_refused(synthetic):
    ds, _ = synthetic
    ds.set_values("emb", [np.arange(3, dtype=float) for _ in range(60)])
    ds.set_values("name", ["a"] * 60)
    ds.set_values("count", [i % 3 for i in range(60)])
    accepted = "must be a BooleanField .* or an int/float field holding only 0 and 1.*gt_tag="
    with pytest.raises(OODInputError, match=f"'emb' has type VectorField; gt_field {accepted}"):
        ood.evaluate_ood_run(ds, "ood", gt_field="emb")
    with pytest.raises(OODInputError, match=f"'name' has type StringField; gt_field {accepted}"):
        ood.evaluate_ood_run(ds, "ood", gt_field="name")
    with pytest.raises(OODInputError, match=f"'count' holds values that are not boolean or 0/1 \\(e.g. 2\\)"):
        ood.evaluate_ood_run(ds, "ood", gt_field="count")
    with pytest.raises(OODInputError, match="'emb' has type VectorField"):
        ood.flag_samples(ds, "ood", rule="fpr", value=0.1, gt_field="emb")
    assert not ds.has_field("ood_flag")


def test_ground_truth_with_one_class_names_the_tag_or_field(synthetic):
    ds, _ = synthetic
    with pytest.raises(OODInputError, match="gt_tag='nosuch': no scored sample in this view has the tag 'nosuch'.*"
                                            "tag the positive samples with 'nosuch'"):
        ood.evaluate_ood_run(ds, "ood", gt_tag="nosuch")
    ds.tag_samples("all")
    with pytest.raises(OODInputError, match="gt_tag='all': every scored sample in this view has the tag 'all'"):
        ood.evaluate_ood_run(ds, "ood", gt_tag="all")
    with pytest.raises(OODInputError, match="gt_tag='all': every scored sample"):
        ood.flag_samples(ds, "ood", rule="fpr", value=0.1, gt_tag="all")
    ds.set_values("never", [False] * 60)
    with pytest.raises(OODInputError, match="gt_field='never': no scored sample in this view has a positive value"):
        ood.evaluate_ood_run(ds, "ood", gt_field="never")
    assert not ds.has_field("ood_flag")


def test_a_score_field_renamed_by_hand_is_named_with_the_fix(synthetic):
    ds, scores = synthetic
    ds.rename_sample_field("ood", "ood_renamed")
    fix = "run 'ood' recorded its scores in field 'ood', but .* has no field 'ood'.*rename the field back.*" \
          "ood.delete_ood_run\\(dataset, 'ood'\\)"
    with pytest.raises(OODInputError, match=fix):
        ood.flag_samples(ds, "ood", rule="top_n", value=3, tag="ood")
    with pytest.raises(OODInputError, match=fix):
        ood.evaluate_ood_run(ds, "ood", gt_field="is_ood")
    assert not ds.has_field("ood_flag") and len(ds.match_tags("ood")) == 0
    ds.rename_sample_field("ood_renamed", "ood")  # the first fix works
    assert ood.flag_samples(ds, "ood", rule="top_n", value=3)["num_flagged"] == 3

    # a renamed p-value field of a calibrated run is named the same way
    fo_runs.write_and_record(ds, [("cal", scores.tolist()), ("cal_p", (1 - scores / 60).tolist())], "cal",
                             kind="ood_scores", score_field="cal", patches_field=None,
                             calibration={"field": "cal_p"})
    ds.rename_sample_field("cal_p", "p_by_hand")
    with pytest.raises(OODInputError, match="run 'cal' recorded its calibrated p-values in field 'cal_p'"):
        ood.flag_samples(ds, "cal", rule="pvalue", value=0.05)
    ood.delete_ood_run(ds, "cal")  # the other fix works too: the run goes, the user's field stays
    assert "cal" not in fo_runs.list_ood_runs(ds) and ds.has_field("p_by_hand")


def test_a_score_field_no_run_wrote_is_flagged_and_unflagged(synthetic):
    """A user's own numbers (a float field no run of this package wrote) are flagged like a run's scores (was
    refused: 'score run None was deleted by another process')."""
    ds, scores = synthetic
    ds.set_values("my_score", (-scores).tolist())  # higher = more suspicious, as for every flag rule
    out = ood.flag_samples(ds, "my_score", rule="top_n", value=5, tag="look")
    top = np.argsort(scores)[:5]
    assert out["num_flagged"] == 5 and sorted(np.flatnonzero(ds.values("my_score_flag"))) == sorted(top)
    assert sorted(np.flatnonzero(["look" in t for t in ds.values("tags")])) == sorted(top)
    ood.flag_samples(ds, "my_score", rule="top_n", value=2, tag="look", overwrite=True)
    assert sum(["look" in t for t in ds.values("tags")]) == 2
    ood.delete_flags(ds, "my_score_flag")
    assert not ds.has_field("my_score_flag") and not any("look" in t for t in ds.values("tags"))
    assert ds.values("my_score") == (-scores).tolist()  # the user's field is only read


def test_evaluation_reads_through_a_view_that_hides_the_fields(synthetic):
    """A view that hides the score or the ground truth (the App's field visibility) is evaluated on the same
    samples as without the hiding stage (was FiftyOne's raw "DatasetView has no field 'ood'")."""
    ds, _ = synthetic
    view = ds.match(F("ood") >= 10)
    expected = ood.evaluate_ood_run(view, "ood", gt_field="is_ood")
    for hiding in (view.select_fields("is_ood"), view.exclude_fields(["ood", "is_ood"])):
        out = ood.evaluate_ood_run(hiding, "ood", gt_field="is_ood")
        assert out["auroc"] == expected["auroc"] and out["num_evaluated"] == expected["num_evaluated"] == 50


def test_flag_calls_given_a_score_run_or_an_unknown_key_say_what_to_pass(synthetic):
    ds, _ = synthetic
    ood.flag_samples(ds, "ood", rule="top_n", value=3, tag="look")
    with pytest.raises(OODInputError, match=r"'ood' is a 'ood_scores' run, not a flags run; pass the key of its "
                                            r"flags \(ood.list_flag_runs\(dataset, 'ood'\) lists them: \['ood_flag'\]"):
        ood.delete_flags(ds, "ood")
    assert ds.has_field("ood") and ds.has_field("ood_flag")  # nothing deleted
    with pytest.raises(OODInputError, match="run_key='nope' is neither a run nor a field"):
        ood.list_flag_runs(ds, "nope")
    assert ood.list_flag_runs(ds, "ood") == ["ood_flag"]


def test_nan_scores_are_named_by_their_field(synthetic):
    ds, scores = synthetic
    ds.set_values("odd", [float("nan") if i == 3 else float(v) for i, v in enumerate(scores)])
    for call in (lambda: ood.flag_samples(ds, "odd", rule="top_n", value=2),
                 lambda: ood.evaluate_ood_run(ds, "odd", gt_field="is_ood")):
        with pytest.raises(OODInputError, match=r"'odd' holds 1 NaN or infinite score\(s\).*set those items' "
                                                r"values to None"):
            call()
    assert not ds.has_field("odd_flag")


def test_flags_never_tag_with_the_default_trusted_tag_before_any_run_read_it(dataset_factory):
    """With no score run that read 'trusted' yet, tag='trusted' was accepted: the next audit (reference="auto")
    and the App's forms then took the flagged, most OOD samples as the trusted reference."""
    ds = dataset_factory([f"/tmp/trusted_flag_{i}.png" for i in range(20)])
    ds.set_values("emb", list(np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)))
    ood.compute_ood_scores(ds, "emb", "ood", method="knn", k=2)  # unsupervised: no run records a trusted tag
    with pytest.raises(OODInputError, match=r"tag='trusted' is the tag the audit and the App's forms take as the "
                                            r"trusted reference by default.*Pass another tag"):
        ood.flag_samples(ds, "ood", rule="top_n", value=5, tag="trusted")
    ds.reload()
    assert ds.count_sample_tags() == {} and not ds.has_field("ood_flag") and ood.list_flag_runs(ds) == []


def test_flags_never_tag_with_the_trusted_or_ground_truth_tag_they_read(synthetic):
    """tag='trusted' made the flagged (most OOD) samples trusted for the next score run; the tag of the reference
    or of the ground truth a call reads is refused before anything is written."""
    ds, _ = synthetic
    ds.set_values("tags", [t + (["truth"] if o else []) for t, o in zip(ds.values("tags"), ds.values("is_ood"))])
    tags = ds.values("tags")
    for call, named in ((lambda: ood.flag_samples(ds, "ood", rule="top_n", value=5, tag="trusted"),
                         "the trusted-samples tag (reference) of run 'ood'"),
                        (lambda: ood.flag_samples(ds, "ood", rule="percentile", reference="mine", tag="mine"),
                         "the reference tag this call reads"),
                        (lambda: ood.flag_samples(ds, "ood", rule="fpr", gt_tag="truth", tag="truth"),
                         "the ground-truth tag this call reads")):
        with pytest.raises(OODInputError, match=f"is {re.escape(named)}.*: flagged samples tagged with it would "
                                                "count as trusted .*Pass another tag, such as tag='ood'"):
            call()
        ds.reload()
        assert ds.values("tags") == tags and not ds.has_field("ood_flag") and ood.list_flag_runs(ds) == []
    out = ood.flag_samples(ds, "ood", rule="fpr", gt_tag="truth", tag="ood")  # another tag: flagged as before
    assert out["num_tagged"] == len(ds.match_tags("ood")) > 0
