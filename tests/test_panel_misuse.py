"""The "OOD review" panel and the flags / evaluation SDK used carelessly: bad score values, partial ground truth,
tags the panel reads, runs deleted meanwhile, stale selections, deleted datasets and arguments of the wrong type.

Each case ends in an error naming the input, the problem and the fix (a notification in the panel), before
anything is written, or in the right numbers; never in a raw traceback. Driven like ``tests/test_panel.py``.
"""

import pytest
from test_fo_eval import synthetic  # noqa: F401
from test_panel import IS_OOD, SCORES, _markdown, _presets, _rendered, _run_panel, _tag, scored  # noqa: F401
from test_panel_views import _notes, _state_writes

import ood_core as ood
from ood_core.errors import OODInputError
from ood_core.fo import runs as fo_runs


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_nan_or_infinite_score_is_named_in_the_panel_not_raised(scored, bad):
    ds = scored
    values = ds.values("ood")
    values[3] = bad
    ds.set_values("ood", values)
    _, ops = _run_panel(ds, "on_load", {"run_key": "ood"})  # raised from render before
    text = str(_rendered(ops))
    assert "'ood'" in text and "NaN or infinite" in text and "None" in text
    _, ops = _run_panel(ds, "save_flags", {"run_key": "ood", **_tag("x")})
    (note,) = _notes(ops, "warning")
    assert "NaN or infinite" in note
    ds.reload()
    assert not ds.has_field("ood_review_flag") and ds.count_sample_tags() == {}


def test_a_ground_truth_field_with_gaps_leaves_the_counts_and_threshold_on_every_scored_sample(scored):
    ds = scored
    ds.set_values("is_ood", [None] * 10 + IS_OOD[10:] + [None, None])  # 10 of the 20 scored samples labelled
    _, ops = _run_panel(ds, "on_load", {"run_key": "ood"})
    without = _markdown(_rendered(ops), "flag_count")
    _, ops = _run_panel(ds, "on_load", {"run_key": "ood", "gt_field": "is_ood"})
    out = _rendered(ops)
    assert _markdown(out, "flag_count") == without  # "**2** of 20 scored samples" (was: of 10)
    assert "10 scored samples without ground truth" in _markdown(out, "metrics")
    ds.set_values("is_ood", [None] * 22)  # no ground truth at all: said, not "one class"
    _, ops = _run_panel(ds, "on_load", {"run_key": "ood", "gt_field": "is_ood"})
    assert _markdown(_rendered(ops), "metrics") == "`is_ood` has no value on the scored items: no metrics."
    ds.set_values("is_ood", [None] * 10 + IS_OOD[10:] + [None, None])
    hist = out["type"]["properties"]["histogram"]["view"]["data"]
    assert sum(sum(t["y"]) for t in hist) == 20
    # a preset counts every scored sample too
    state = {"run_key": "ood", "gt_field": "is_ood", **_presets("top_n", 12)}
    _, ops = _run_panel(ds, "apply_preset", state)
    _, ops = _run_panel(ds, "on_change_input", dict(state, **_state_writes(ops)))
    assert _markdown(_rendered(ops), "flag_count").startswith("**12** of 20 scored samples flagged")


@pytest.mark.parametrize("tag", ["trusted", "ood_confirmed", " ood_dismissed "])
def test_save_as_flags_refuses_a_tag_the_panel_reads(scored, tag):
    ds = scored
    ds.select(ds.values("id")[:12]).tag_samples("trusted")  # the percentile preset's reference
    _, ops = _run_panel(ds, "save_flags", {"run_key": "ood", "threshold_ood": 0.5, **_tag(tag)})
    (note,) = _notes(ops, "warning")
    assert f"'Tag for flags' is {tag.strip()!r}" in note and "type another tag" in note
    ds.reload()
    assert not ds.has_field("ood_review_flag") and ds.count_sample_tags() == {"trusted": 12}


def test_buttons_refuse_a_run_deleted_meanwhile_instead_of_acting_on_another(scored):
    ds = scored
    fo_runs.write_and_record(ds, [("ood3", SCORES + [None, None])], "ood3", kind="ood_scores")
    ood.delete_ood_run(ds, "ood3")  # e.g. from a notebook, while the App's dropdown still holds it
    _, ops = _run_panel(ds, "save_flags", {"run_key": "ood3", **_tag("x")})
    (note,) = _notes(ops, "warning")
    assert "'ood3'" in note and "no longer exists" in note and "pick a run in 'Score run'" in note
    ds.reload()
    assert not ds.has_field("ood_review_flag") and ds.count_sample_tags() == {}  # not saved for run 'ood'
    _, ops = _run_panel(ds, "apply_preset", {"run_key": "ood3", **_presets("top_n", 3)})
    assert _notes(ops, "warning") and not _state_writes(ops)
    _, ops = _run_panel(ds, "show_flagged", {"run_key": "ood3"})
    assert _notes(ops, "warning") and not any(name == "set_view" for name, _ in ops)
    assert "'ood3' no longer exists" in _markdown(_rendered(ops), "stale_run")


def test_tag_selected_refuses_samples_outside_the_current_view(scored):
    ds = scored
    ids = ds.values("id")
    _, ops = _run_panel(ds, "confirm_selected", {"run_key": "ood"}, view=ds.limit(5), selected=ids[3:7])
    (note,) = _notes(ops, "warning")
    assert "2 of the 4 selected samples are not in the current view" in note and "select them again" in note
    assert ds.count_sample_tags() == {}
    _, ops = _run_panel(ds, "confirm_selected", {"run_key": "ood"}, view=ds.limit(5), selected=ids[3:5])
    assert ds.count_sample_tags() == {"ood_confirmed": 2}


def test_pvalue_preset_names_a_deleted_pvalue_field_and_the_fix(scored):
    ds = scored
    pvalues = [1 - s for s in SCORES]
    fo_runs.write_and_record(ds, [("cal", SCORES + [None, None]), ("cal_pvalue", pvalues + [None, None])], "cal",
                             kind="ood_scores", score_field="cal",
                             calibration={"pvalue_field": "cal_pvalue", "field": "cal_pvalue"})
    ds.delete_sample_field("cal_pvalue")
    _, ops = _run_panel(ds, "apply_preset", {"run_key": "cal", **_presets("pvalue", 0.1)})
    (note,) = _notes(ops, "warning")
    assert "has no field 'cal_pvalue'" in note and "rename_sample_field" in note and "delete_ood_run" in note
    assert not _state_writes(ops)


def test_sdk_calls_on_a_deleted_dataset_or_no_dataset_raise_input_errors(synthetic):
    ds, _ = synthetic
    with pytest.raises(OODInputError, match="not a FiftyOne dataset or view"):
        ood.evaluate_ood_run(ds.values("ood"), "ood", gt_field="is_ood")
    ood.flag_samples(ds, "ood", rule="top_n", value=3)
    view = ds.limit(10)
    ds.delete()
    calls = [lambda: ood.evaluate_ood_run(ds, "ood", gt_field="is_ood"),
             lambda: ood.evaluate_ood_run(view, "ood", gt_field="is_ood"),
             lambda: ood.flag_samples(ds, "ood", rule="top_n", value=2),
             lambda: ood.delete_flags(ds, "ood_flag"), lambda: ood.list_flag_runs(ds, "ood"),
             lambda: ood.get_flag_info(ds, "ood_flag")]
    for call in calls:
        with pytest.raises(OODInputError, match="was deleted"):
            call()


def test_sdk_arguments_of_the_wrong_type_raise_input_errors(synthetic):
    ds, _ = synthetic
    with pytest.raises(OODInputError, match=r"gt_field=5 is not a field name"):
        ood.evaluate_ood_run(ds, "ood", gt_field=5)
    with pytest.raises(OODInputError, match=r"gt_field=\['is_ood'\] is not a field name"):
        ood.evaluate_ood_run(ds, "ood", gt_field=["is_ood"])
    with pytest.raises(OODInputError, match=r"unknown rule \['top_n'\]"):
        ood.flag_samples(ds, "ood", rule=["top_n"], value=2)
    with pytest.raises(OODInputError, match=r"run_key=5 is not a run key"):
        ood.list_flag_runs(ds, 5)
    assert not ds.has_field("ood_flag")


def test_a_flag_tag_with_surrounding_spaces_is_refused_before_anything_is_written(synthetic):
    ds, _ = synthetic
    with pytest.raises(OODInputError, match=r"tag=' ood' starts or ends with a space.*pass tag='ood'"):
        ood.flag_samples(ds, "ood", rule="top_n", value=2, tag=" ood")
    assert not ds.has_field("ood_flag") and " ood" not in ds.count_sample_tags()
