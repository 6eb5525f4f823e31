"""Flagging, evaluation and experiments as a user drives them from the SDK: inputs that used to give silently wrong
results, raw library errors, or a write into the field the call read."""

import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError
from ood_core.fo import runs as fo_runs


@pytest.fixture
def synthetic(dataset_factory):
    """60 samples with known scores 0..59 (run 'ood', reference tag 'trusted'); OOD = the top 12."""
    n = 60
    scores = np.random.default_rng(0).permutation(n).astype(float)
    ds = dataset_factory([f"/tmp/probe_{i}.png" for i in range(n)],
                         tags=[["trusted"] if i < 20 and scores[i] < 48 else [] for i in range(n)])
    ds.set_values("is_ood", (scores >= 48).tolist())
    fo_runs.write_and_record(ds, [("ood", scores.tolist())], "ood", kind="ood_scores", score_field="ood",
                             patches_field=None, reference={"tag": "trusted"})
    return ds, scores


@pytest.fixture
def small(dataset_factory):
    """16 samples with random 4-d embeddings 'emb', 6 tagged 'trusted', is_ood True on the last 4."""
    n = 16
    ds = dataset_factory([f"/tmp/probe_small_{i}.png" for i in range(n)], labels=["a"] * 8 + ["b"] * 8,
                         tags=[["trusted"] if i < 6 else [] for i in range(n)])
    ds.set_values("emb", list(np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)))
    ds.set_values("is_ood", [i >= 12 for i in range(n)])
    return ds


def test_fpr_rule_never_writes_its_flags_into_the_ground_truth_field_it_reads(synthetic):
    """Re-flagging with the fpr rule and gt_field = the flags' own field overwrote the ground truth the rule had
    just read with flags computed from it."""
    ds, _ = synthetic
    ood.flag_samples(ds, "ood", rule="threshold", value=50.0, tag="high")
    before, tags = ds.values("ood_flag"), ds.values("tags")
    with pytest.raises(OODInputError, match="'ood_flag' is read by this call"):
        ood.flag_samples(ds, "ood", rule="fpr", value=0.1, gt_field="ood_flag", tag="high", overwrite=True)
    assert ds.values("ood_flag") == before and ds.values("tags") == tags
    assert ood.get_flag_info(ds, "ood_flag")["rule_name"] == "fixed_threshold"
    # the fpr rule with another flag field reads the same ground truth as before
    out = ood.flag_samples(ds, "ood", rule="fpr", value=0.1, gt_field="ood_flag", flag_field="fpr_flag")
    assert out["rule"]["num_ood"] == sum(before)


def test_p_value_rule_refuses_scored_items_without_a_p_value(dataset_factory):
    """A scored sample whose p-value was cleared was read as NaN: flag False (not flagged, counted as scored),
    however high its score."""
    rng = np.random.default_rng(0)
    ds = dataset_factory([f"/tmp/probe_p_{i}.png" for i in range(30)],
                         tags=[["trusted"] if i < 10 else [] for i in range(30)])
    ds.set_values("emb", list(rng.normal(size=(30, 8)).astype(np.float32)))
    ood.compute_ood_scores(ds, "emb", "s", method="knn", k=3, reference="trusted")
    top = int(np.argmax(ds.values("s")))
    p = ds.values("s_pvalue")
    p[top] = None
    ds.set_values("s_pvalue", p)
    with pytest.raises(OODInputError, match=r"1 scored item\(s\) of this view have no p-value in 's_pvalue'"):
        ood.flag_samples(ds, "s", rule="pvalue", value=0.2, tag="x")
    assert not ds.has_field("s_flag") and not ds.match_tags("x") and ood.list_flag_runs(ds) == []
    # items without a score are left out as before (no flag), whatever their p-value
    s = ds.values("s")
    s[top] = None
    ds.set_values("s", s)
    ood.flag_samples(ds, "s", rule="pvalue", value=0.2)
    assert ds.values("s_flag")[top] is None and ds.count("s_flag") == 29


def test_positive_value_with_a_ground_truth_tag_is_refused_not_ignored(synthetic):
    """positive_value=False with gt_tag was ignored: the metrics kept the tagged samples as positives."""
    ds, _ = synthetic
    ds.match({"is_ood": True}).tag_samples("truth")
    with pytest.raises(OODInputError, match="positive_value=False applies to gt_field only"):
        ood.evaluate_ood_run(ds, "ood", gt_tag="truth", positive_value=False)
    assert ood.evaluate_ood_run(ds, "ood", gt_tag="truth", positive_value=True)["auroc"] == 1.0
    assert ood.evaluate_ood_run(ds, "ood", gt_field="is_ood", positive_value=False)["auroc"] == 0.0


def test_experiments_name_an_ood_field_of_lists_or_vectors(small):
    """ood_field='tags' (lists) raised a raw 'unhashable type: list', a vector field numpy's 'truth value of an
    array is ambiguous'."""
    calls = (lambda f: ood.pollution_sweep(small, "emb", reference="trusted", ood_field=f, fractions=(0,), k=(1,)),
             lambda f: ood.config_sweep(small, "emb", reference="trusted", ood_field=f, k=(1,)),
             lambda f: ood.auto_config(small, "emb", validation=small.skip(6), reference="trusted", ood_field=f,
                                       k=(1,)))
    for field, found in (("tags", "a list"), ("emb", "a ndarray"), ("ground_truth", "a Classification")):
        for call in calls:
            with pytest.raises(OODInputError, match=rf"ood_field '{field}' must be boolean .*found \['{found}'\]"):
                call(field)
    assert small.list_runs() == []
    assert len(ood.config_sweep(small, "emb", reference="trusted", k=(1,))) == 1


def test_label_error_report_names_nan_scores(small):
    """A NaN in the score field gave sklearn's raw 'Input contains NaN' (with ground truth), or a NaN class mean
    sorted anywhere in the table (without)."""
    scores = np.linspace(0, 1, len(small)).tolist()
    scores[3] = float("nan")
    small.set_values("li", scores)
    small.set_values("wrong", [i % 4 == 0 for i in range(len(small))])
    for kwargs in (dict(gt_field="wrong"), {}):
        with pytest.raises(OODInputError, match="'li' holds 1 NaN or infinite score"):
            ood.label_error_report(small, "ground_truth", score_field="li", **kwargs)
    scores[3] = None  # no score: left out
    small.set_values("li", scores)
    table = ood.label_error_report(small, "ground_truth", score_field="li", gt_field="wrong")
    assert [r["count"] for r in table] == [8, 7]
