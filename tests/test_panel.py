"""The "OOD review" panel without a browser: its data functions and its event handlers.

The handlers run through FiftyOne's own panel machinery (``Panel.execute`` with an
``ExecutionContext`` and an ``Executor``), so what the App would receive (rendered
layout, ``set_view``, ``notify``) is inspected as the list of triggered operations.
"""

import numpy as np
import pytest

PLUGIN = "@fiftyone-ood/ood"

# 20 scores with a tie at the top (0.95, 0.95) and at 0.5; None = unscored sample.
SCORES = [0.10, 0.20, 0.30, 0.35, 0.40, 0.45, 0.50, 0.50, 0.55, 0.60,
          0.62, 0.64, 0.66, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95, 0.95]
IS_OOD = [False] * 14 + [True, False, True, True, True, True]


@pytest.fixture
def scored(dataset_factory, fashion_files):
    """22 real Fashion-MNIST samples: 20 with a known score run ``ood``, 2 unscored; ``is_ood`` truth."""
    from ood_core.fo import runs as fo_runs

    paths, names = fashion_files
    ds = dataset_factory(paths[:22], names[:22])
    ds.set_values("is_ood", IS_OOD + [None, None])
    fo_runs.write_and_record(ds, [("ood", SCORES + [None, None])], "ood", kind="ood_scores",
                             detector={"method": "knn", "k": 3})
    ds.reload()
    return ds


def test_score_runs_lists_score_runs_only(scored):
    import ood_core as ood
    from ood_core.fo import runs as fo_runs
    from operators import review

    ds = scored
    fo_runs.write_and_record(ds, [("issue", [0.5] * len(ds))], "issue", kind="label_issues")
    fo_runs.register_run(ds, "emb", kind="embeddings", fields=["emb"])  # not a score run
    ood.flag_samples(ds, "ood", rule="top_n", value=2, tag=None)  # a "flags" run + boolean field
    assert sorted(review.score_runs(ds)) == ["issue", "ood"]
    s = review.run_summary(ds, "issue")
    assert (s["score_field"], s["positive"], s["negative"]) == ("issue", "wrong label", "correct label")
    s = review.run_summary(ds, "ood")
    assert (s["score_field"], s["positive"], s["method"]) == ("ood", "OOD", "knn")
    # flag fields are decisions, not ground truth
    assert review.boolean_fields(ds) == ["is_ood"]
    with pytest.raises(ValueError, match="not a score run"):
        review.run_summary(ds, "emb")


def test_read_scores_drops_unscored_and_unlabelled_samples(scored):
    from operators import review

    ds = scored
    ids, scores, is_pos = review.read_scores(ds, "ood")
    assert len(ids) == 20 and is_pos is None
    np.testing.assert_allclose(scores, SCORES)
    ds.set_values("is_ood", [None] + IS_OOD[1:] + [None, None])  # first sample loses its label
    ids, scores, is_pos = review.read_scores(ds, "ood", "is_ood")
    assert len(ids) == 19 and ids[0] == ds.values("id")[1]
    assert is_pos.tolist() == IS_OOD[1:]


def test_threshold_count_is_inclusive_and_default_flags_top_5_percent_with_ties():
    from operators import panel, review

    scores = np.array(SCORES)
    assert review.count_flagged(scores, 0.95) == 2  # score >= threshold: both tied maxima
    assert review.count_flagged(scores, 0.5) == 14  # the tie at 0.5 is flagged
    assert review.count_flagged(scores, 0.951) == 0
    assert review.count_flagged(scores, -1.0) == 20
    # top 5% of 20 = 1 sample, but its score is tied: both are flagged
    assert review.default_threshold(scores) == 0.95
    assert panel.pick_threshold(0.6, scores) == 0.6
    assert panel.pick_threshold(7.0, scores) == 0.95  # out of range (e.g. another dataset) -> default
    assert panel.pick_threshold(None, scores) == 0.95
    # with a starting threshold (a preset, saved flags) the slider's range reaches it, even beyond the scores
    assert panel.pick_threshold(1.2, scores, 1.5) == 1.2 and panel.pick_threshold(2.0, scores, 1.5) == 1.5
    assert panel.pick_threshold(None, scores, 0.05) == 0.05 and panel.pick_threshold(None, scores[:0], 0.7) == 0.7


def test_flagged_view_is_sorted_by_score_descending(scored):
    from operators import review

    ds = scored
    view = review.flagged_view(ds, "ood", 0.66)
    values = view.values("ood")
    assert values == sorted(values, reverse=True)
    assert len(view) == review.count_flagged(np.array(SCORES), 0.66) == 8
    assert min(values) == 0.66 and max(values) == 0.95
    assert None not in values  # unscored samples never appear


def test_review_tags_are_exclusive_and_counted(scored):
    from ood_core.errors import OODInputError
    from operators import review

    ds = scored
    ids = ds.values("id")
    out = review.review_samples(ds, ids[:3], "confirmed")
    assert out == {"tag": "ood_confirmed", "num_samples": 3, "num_tagged": 3, "num_untagged": 0}
    out = review.review_samples(ds, ids[2:5], "dismissed")  # one sample changes its decision
    assert out == {"tag": "ood_dismissed", "num_samples": 3, "num_tagged": 3, "num_untagged": 1}
    assert sorted(ds.match_tags("ood_confirmed").values("id")) == sorted(ids[:2])
    assert sorted(ds.match_tags("ood_dismissed").values("id")) == sorted(ids[2:5])
    assert review.review_samples(ds, ids[2:5], "dismissed")["num_tagged"] == 0  # idempotent
    assert review.review_samples(ds, [], "confirmed")["num_samples"] == 0
    with pytest.raises(OODInputError, match="decision"):
        review.review_samples(ds, ids[:1], "maybe")
    with pytest.raises(OODInputError, match="not in this dataset"):
        review.review_samples(ds, ["0" * 24], "confirmed")


def test_metrics_and_curves_match_the_reference_functions():
    from sklearn.metrics import roc_auc_score

    from ood_core import thresholds
    from ood_core.metrics import ood_metrics
    from operators import review

    scores, is_pos = np.array(SCORES), np.array(IS_OOD)
    m = review.evaluate(scores, is_pos, 0.8)
    assert m["auroc"] == pytest.approx(roc_auc_score(is_pos, scores))
    assert {k: m[k] for k in ood_metrics(scores, is_pos)} == ood_metrics(scores, is_pos)
    assert m["at_threshold"] == thresholds.rates_at_threshold(scores, is_pos, 0.8)
    assert m["at_threshold"]["num_flagged"] == 5 and m["at_threshold"]["tpr"] == pytest.approx(4 / 5)
    assert review.evaluate(scores, np.zeros(20, bool), 0.8) is None  # one class: no AUROC

    text = review.metrics_markdown(m, {"positive": "OOD", "negative": "ID"}, "is_ood")
    assert "positive class: **OOD**".lower() in text.lower() and "is_ood == True" in text
    assert f"AUROC {m['auroc']:.3f}" in text

    roc, pr = review.curve_traces(scores, is_pos, 0.8)
    assert roc[0]["x"][0] == 0 and roc[0]["x"][-1] == 1 and roc[0]["y"][-1] == 1
    assert (roc[-1]["x"], roc[-1]["y"]) == ([m["at_threshold"]["fpr"]], [m["at_threshold"]["tpr"]])
    assert (pr[-1]["x"], pr[-1]["y"]) == ([m["at_threshold"]["tpr"]], [m["at_threshold"]["precision"]])

    hist = review.histogram_traces(scores)
    assert len(hist) == 1 and sum(hist[0]["y"]) == 20
    hist = review.histogram_traces(scores, is_pos, ("OOD", "ID"))
    assert [t["name"] for t in hist] == ["ID", "OOD"]
    assert [sum(t["y"]) for t in hist] == [15, 5]
    assert review.histogram_traces(np.array([0.3, 0.3]))[0]["y"][0] == 2  # constant scores still bin


def _run_panel(ds, method, state=None, selected=None, view=None, view_name=None):
    """Call a panel method the way the App does; returns (result, triggered operations).

    ``view``: the App's current view (a DatasetView), sent as serialized stages like the App does;
    ``view_name``: a saved view picked in the App's menu (the App sends its name).
    ``state``: the panel state *as the real App holds it*: inputs inside an ``h_stack`` are nested under the
    stack's name (:func:`_presets`, :func:`_tag`), the threshold slider is per run and view (:func:`_slider`).
    """
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext, Executor

    op = foo.get_operator(f"{PLUGIN}/ood_review")
    executor = Executor()
    request = dict(dataset_name=ds.name, selected=selected or [],
                   params=dict(__method__=method, panel_id="test-panel", panel_state=state or {}))
    if view is not None:
        request["view"] = view._serialize()
    if view_name is not None:
        request["view_name"] = view_name
    ctx = ExecutionContext(request_params=request, executor=executor)
    result = op.execute(ctx)
    return result, [(r.operator_uri, r.params) for r in executor._requests]


def _presets(name, value=None):
    """The panel state of the preset inputs as the App stores them: nested under the ``presets`` stack."""
    inputs = {"preset": name}
    if value is not None:
        inputs[f"preset_value_{name}"] = value
    return {"presets": inputs}


def _tag(tag):
    """The panel state of the "Tag for flags" input as the App stores it: nested under the ``flags`` stack."""
    return {"flags": {"flag_tag": tag}}


def _slider(run_key, view=None, version=0):
    """State key of the threshold slider of ``run_key`` on ``view`` (None = the whole dataset)."""
    from operators.panel_state import threshold_state_key, view_signature

    return threshold_state_key(run_key, version, view_signature(view) if view is not None else "")


def _rendered(ops):
    outputs = [p["output"] for name, p in ops if name == "show_panel_output"]
    assert outputs, f"panel did not render; triggered: {[name for name, _ in ops]}"
    return outputs[-1]


def _markdown(output, name):
    return output["type"]["properties"][name]["default"]


def test_panel_renders_state_and_runs_its_buttons(scored):
    import fiftyone as fo

    ds = scored
    # first load: the only score run, default threshold (top 5% = the two tied 0.95 scores)
    _, ops = _run_panel(ds, "on_load")
    out = _rendered(ops)
    props = out["type"]["properties"]
    assert props["run_key"]["default"] == "ood"
    assert props["threshold_ood"]["default"] == 0.95
    assert props["threshold_ood"]["type"]["min"] == 0.10 and props["threshold_ood"]["type"]["max"] == 0.95
    assert _markdown(out, "flag_count").startswith("**2** of 20 scored samples flagged")
    assert "metrics" not in props and "curves" not in props  # no ground truth chosen

    # the App stored a new threshold and a ground-truth field: live count, metrics and curves
    state = {"run_key": "ood", "gt_field": "is_ood", "threshold_ood": 0.66}
    _, ops = _run_panel(ds, "on_change_input", state)
    out = _rendered(ops)
    assert _markdown(out, "flag_count").startswith("**8** of 20 scored samples flagged")
    assert "Positive class: **OOD**" in _markdown(out, "metrics")
    assert {"histogram", "curves"} <= set(out["type"]["properties"])
    assert not any(name == "patch_panel_state" for name, _ in ops)  # never echoes the App's values

    # "show flagged": the App gets the flagged view, highest score first
    _, ops = _run_panel(ds, "show_flagged", state)
    (view_params,) = [p for name, p in ops if name == "set_view"]
    view = fo.DatasetView._build(ds, view_params["view"])
    assert view.values("ood") == sorted([s for s in SCORES if s >= 0.66], reverse=True)

    # tagging acts on the App's selection
    ids = view.values("id")[:2]
    _, ops = _run_panel(ds, "confirm_selected", state, selected=ids)
    assert sorted(ds.match_tags("ood_confirmed").values("id")) == sorted(ids)
    assert any(name == "reload_samples" for name, _ in ops)
    assert any(name == "clear_selected_samples" for name, _ in ops)  # the selection is cleared after tagging
    assert _markdown(_rendered(ops), "review_counts") == "Reviewed in this view: **2** confirmed · **0** dismissed"
    _, ops = _run_panel(ds, "dismiss_selected", state, selected=ids[:1])
    assert ds.match_tags("ood_dismissed").values("id") == ids[:1]
    assert ds.match_tags("ood_confirmed").values("id") == ids[1:2]
    _, ops = _run_panel(ds, "dismiss_selected", state, selected=[])
    assert any(name == "notify" and p["variant"] == "warning" for name, p in ops)


def test_panel_without_score_runs_says_what_to_run(dataset_factory, fashion_files):
    ds = dataset_factory(fashion_files[0][:3])
    _, ops = _run_panel(ds, "on_load")
    out = _rendered(ops)
    assert "OOD: score samples" in _markdown(out, "no_runs")


def _state_writes(ops):
    """Panel-state keys the server wrote (set_panel_state / patch_panel_state)."""
    out = {}
    for name, p in ops:
        if name in ("set_panel_state", "patch_panel_state"):
            out.update(p.get("state") or {})
    return out


def test_panel_reads_the_current_view_not_the_dataset(scored):
    import fiftyone as fo

    ds = scored
    half = ds.limit(10)  # the App's current view: the first 10 samples
    state = {"run_key": "ood", "gt_field": "is_ood", _slider("ood", half): 0.3}
    _, ops = _run_panel(ds, "on_change_input", state, view=half)
    out = _rendered(ops)
    # 10 scored samples in the view; 0.30, 0.35, ..., 0.60 are >= 0.3 (8 of them)
    assert _markdown(out, "flag_count").startswith(
        "**8** of 10 scored samples flagged in the current view (10 of 22 samples)")
    # the first 10 samples are all in-distribution: no metrics, and the panel says why
    assert "only one class" in _markdown(out, "metrics")
    # the flagged view this panel opens is recognised: reading it gives back its base (the 10 samples)
    result, ops = _run_panel(ds, "show_flagged", state, view=half)
    (view_params,) = [p for name, p in ops if name == "set_view"]
    flagged = fo.DatasetView._build(ds, view_params["view"])
    assert len(flagged) == 8
    stored = _state_writes(ops)
    state2 = dict(state, **stored)
    _, ops = _run_panel(ds, "on_change_input", state2, view=flagged)
    assert _markdown(_rendered(ops), "flag_count").startswith("**8** of 10 scored samples flagged")


def test_presets_set_the_threshold(scored):
    import ood_core as ood
    from operators import review

    ds = scored
    ids = ds.values("id")
    ds.select(ids[:12]).tag_samples("trusted")  # scores 0.10 ... 0.62 are the trusted ones
    summary = review.run_summary(ds, "ood")
    _, scores, is_pos = review.read_scores(ds, "ood", "is_ood")
    t, text = review.preset_threshold(ds, summary, "top_n", 3, scores)
    assert review.count_flagged(scores, t) == 3 and text == "top 3"
    t, text = review.preset_threshold(ds, summary, "percentile", 0.75, scores)
    trusted = np.array(SCORES[:12])
    assert (trusted < t).sum() >= 9 and "trusted" in text  # at least 75% of 12 trusted pass
    assert t == ood.flag_samples(ds, "ood", rule="percentile", value=0.75, reference="trusted")["threshold"]
    t, _ = review.preset_threshold(ds, summary, "fpr", 0.1, scores, is_pos)
    at = review.evaluate(scores, is_pos, t)["at_threshold"]
    assert at["fpr"] <= 0.1
    with pytest.raises(ValueError, match="ground-truth"):
        review.preset_threshold(ds, summary, "fpr", 0.1, scores, None)
    assert review.available_presets(summary, None) == ["top_fraction", "percentile", "top_n"]

    # the event, with the state the App sends (the preset inputs nested in their stack): a new slider
    # (version 1) whose default is the preset's threshold
    state = {"run_key": "ood", **_presets("top_n", 4)}
    _, ops = _run_panel(ds, "apply_preset", state)
    writes = _state_writes(ops)
    assert writes["threshold_version_ood"] == 1 and writes["preset_ood"]["label"] == "top 4"
    _, ops = _run_panel(ds, "on_change_input", dict(state, **writes))
    out = _rendered(ops)
    assert out["type"]["properties"]["threshold_ood_v1"]["default"] == writes["preset_ood"]["threshold"]
    assert _markdown(out, "flag_count").startswith("**4** of 20 scored samples flagged")
    assert "preset: top 4" in _markdown(out, "flag_count")


def test_pvalue_preset_only_for_calibrated_runs(scored):
    from ood_core.fo import runs as fo_runs
    from operators import review

    ds = scored
    pvalues = [1 - s for s in SCORES]  # falls as the score rises
    fo_runs.write_and_record(ds, [("cal", SCORES + [None, None]), ("cal_pvalue", pvalues + [None, None])], "cal",
                             kind="ood_scores", score_field="cal",
                             calibration={"pvalue_field": "cal_pvalue", "reference": "trusted"})
    summary = review.run_summary(ds, "cal")
    assert review.available_presets(summary, "is_ood")[-1] == "pvalue"
    assert "pvalue" not in review.available_presets(review.run_summary(ds, "ood"), "is_ood")
    _, scores, _ = review.read_scores(ds, "cal")
    t, text = review.preset_threshold(ds, summary, "pvalue", 0.2, scores)
    # p <= 0.2  <=>  score >= 0.8: 0.80, 0.85, 0.90, 0.95, 0.95
    assert t == 0.8 and review.count_flagged(scores, t) == 5 and text == "p-value <= 0.2"


def test_save_as_flags_goes_through_flag_samples(scored):
    import ood_core as ood

    ds = scored
    view = ds.limit(20)
    state = {"run_key": "ood", _slider("ood", view): 0.85, **_tag("ood")}
    _, ops = _run_panel(ds, "save_flags", state, view=view)
    ds.reload()
    assert ds.values("ood_review_flag")[:20] == [s >= 0.85 for s in SCORES]  # the panel's own flags run
    assert len(ds.match_tags("ood")) == 4
    info = ood.get_flag_info(ds, "ood_review_flag")
    assert info["rule"]["threshold"] == 0.85 and info["value"] == 0.85
    assert any(name == "notify" and "saved 4 flags in 'ood_review_flag'" in p["message"] for name, p in ops)
    # re-saving at another threshold replaces the flags and the tags it added
    _run_panel(ds, "save_flags", dict(state, threshold_ood=0.95))
    ds.reload()
    assert len(ds.match_tags("ood")) == 2


def test_object_level_runs_are_reviewed_per_object(dataset_factory, fashion_files):
    import fiftyone as fo

    from ood_core.fo import runs as fo_runs
    from operators import review

    paths, _ = fashion_files
    ds = dataset_factory(paths[:4])
    for i, sample in enumerate(ds):
        sample["objects"] = fo.Detections(detections=[
            fo.Detection(label="a", bounding_box=[0.1, 0.1, 0.3, 0.3], is_odd=bool(j == 1))
            for j in range(2)])
        sample.save()
    obj_scores = [[0.1 * i, 0.1 * i + 0.5] for i in range(4)]
    fo_runs.write_and_record(ds, [("objects.detections.obj_ood", obj_scores)], "obj_ood", kind="ood_scores",
                             score_field="obj_ood", patches_field="objects")
    assert "obj_ood" in review.score_runs(ds)
    summary = review.run_summary(ds, "obj_ood")
    assert summary["score_field"] == "objects.detections.obj_ood" and summary["patches_field"] == "objects"
    assert review.boolean_fields(ds, "objects") == ["objects.detections.is_odd"]
    ids, scores, is_pos = review.read_scores(ds, summary["score_field"], "objects.detections.is_odd", "objects")
    assert len(ids) == 8 and is_pos.sum() == 4
    assert review.evaluate(scores, is_pos, 0.5)["auroc"] == 1.0
    view = review.flagged_view(ds, summary["score_field"], 0.65, "objects")
    assert view.values("objects.detections.obj_ood") == [[0.8], [0.7]]  # flagged objects only, best first
    _, ops = _run_panel(ds, "on_load", {"run_key": "obj_ood"})
    assert _markdown(_rendered(ops), "flag_count").startswith("**1** of 8 scored objects flagged")


def test_panel_survives_hand_edits_hidden_fields_and_bad_requests(scored):
    """A score field deleted by hand, a view hiding fields, an empty view, an unknown preset: the panel renders
    or says why, it never raises."""
    from operators import review

    ds = scored
    ds.clone_sample_field("ood", "ood_copy")
    from ood_core.fo import runs as fo_runs

    fo_runs.register_run(ds, "gone", kind="ood_scores", fields=["ood_copy"], score_field="ood_copy")
    ds.delete_sample_field("ood_copy")
    assert review.score_runs(ds) == ["ood"]  # the run whose field was deleted is not offered
    _, ops = _run_panel(ds, "on_load", {"run_key": "gone"}, view=ds.select_fields("is_ood"))
    assert "ood" in str(_rendered(ops))  # falls back to the run that exists; the hidden score field is read
    _, ops = _run_panel(ds, "save_flags", {"run_key": "ood", "threshold_ood": 0.5, **_tag("x")},
                        view=ds.limit(0))
    assert any(name == "notify" and p["variant"] == "warning" and "empty view" in p["message"] for name, p in ops)
    _, ops = _run_panel(ds, "apply_preset", {"run_key": "ood", **_presets("bogus")})
    assert any(name == "notify" and "unknown threshold preset 'bogus'" in p["message"] for name, p in ops)
    _, ops = _run_panel(ds, "confirm_selected", {"run_key": "ood"}, selected=["notanid"])
    assert any(name == "notify" and "not sample ids" in p["message"] for name, p in ops)


def test_runs_whose_keys_extend_each_other_keep_their_own_sliders_and_presets(scored):
    """Run ``ood_v1``'s slider was run ``ood``'s slider of version 1 (``threshold_ood_v1``), and run
    ``version_ood``'s slider was ``ood``'s version counter: a preset applied to ``ood`` moved the other runs'
    thresholds. Each run's state keys are now its own."""
    from ood_core.fo import runs as fo_runs

    ds = scored
    for key in ("ood_v1", "version_ood"):
        fo_runs.write_and_record(ds, [(key, [1 - s for s in SCORES] + [None, None])], key, kind="ood_scores",
                                 detector={"method": "knn", "k": 3})
    state = {"run_key": "ood", **_presets("top_n", 4)}
    _, ops = _run_panel(ds, "apply_preset", state)
    writes = _state_writes(ops)
    assert writes["threshold_version_ood"] == 1
    ood_t = writes["preset_ood"]["threshold"]
    state = dict(state, **writes, threshold_ood_v1=ood_t)  # the App keeps the new slider's value
    for other in ("ood_v1", "version_ood"):
        _, ops = _run_panel(ds, "on_change_input", dict(state, run_key=other))
        out = _rendered(ops)
        sliders = [k for k, v in out["type"]["properties"].items() if k.startswith("threshold_") and "default" in v]
        assert len(sliders) == 1 and "preset" not in _markdown(out, "flag_count"), (other, sliders)
        assert out["type"]["properties"][sliders[0]]["default"] != ood_t
        assert "default: top 5%" in _markdown(out, "flag_count") and "set by hand" not in _markdown(out, "flag_count")
