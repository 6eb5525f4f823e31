"""The "OOD review" panel on a patches view of an object run's label field reviews the objects that view shows:
histogram, counts, slider range, metrics and Save as flags cover them only (the objects outside keep their flags),
and the flagged patches view the panel opens is recognised. Other generated views are reviewed as before.

Real datasets with detections and an object-level score run (``objects`` of ``tests/test_panel_views.py``: 4
samples x 2 objects, scores 0.0 0.1 0.2 0.3 (``is_odd`` False) and 0.5 0.6 0.7 0.8 (``is_odd`` True)), driven
through FiftyOne's panel machinery like the other panel tests.
"""

import pytest
from test_panel import _markdown, _presets, _rendered, _run_panel, _state_writes, _tag
from test_panel_similarity import _hist_total, _slider
from test_panel_views import _notes, objects  # noqa: F401 (fixture)

GT = "objects.detections.is_odd"


def _patches(ds, expr):
    return ds.to_patches("objects").match(expr)


def test_a_filtered_patches_view_is_reviewed_as_the_objects_it_shows(objects):
    import fiftyone as fo
    from fiftyone import ViewField as F

    ds = objects
    user = _patches(ds, F("objects.obj_ood") >= 0.25).select_fields("objects.label")  # 0.3, 0.5 ... 0.8
    _, ops = _run_panel(ds, "on_load", {"run_key": "obj_ood", "gt_field": GT}, view=user)
    out = _rendered(ops)
    key, span = _slider(out)
    assert span == pytest.approx((0.3, 0.8)) and _hist_total(out) == 5
    text = _markdown(out, "flag_count")
    assert text.startswith("**1** of 5 scored objects flagged in the current view (5 of 8 objects)"), text
    assert "4 objects) vs ID (1)" in _markdown(out, "metrics")  # ground truth of the shown objects only

    # Show flagged opens the flagged patches; on that view the panel still reviews the 5 objects
    state = {"run_key": "obj_ood", "gt_field": GT, key: 0.55}
    _, ops = _run_panel(ds, "show_flagged", state, view=user)
    (params,) = [p for name, p in ops if name == "set_view"]
    flagged = fo.DatasetView._build(ds, params["view"])
    assert sorted(flagged.values("objects.id")) == sorted(
        ds.to_patches("objects").match(F("objects.obj_ood") >= 0.55).values("objects.id"))
    state.update(_state_writes(ops))
    _, ops = _run_panel(ds, "on_change_input", state, view=flagged)
    out = _rendered(ops)
    assert _slider(out) == (key, span) and _hist_total(out) == 5
    assert _markdown(out, "flag_count").startswith("**3** of 5 scored objects flagged in the current view (5 of 8")
    # Show flagged again from the flagged patches, at a lower threshold: the flagged patches of the user's view
    state[key] = 0.45
    _, ops = _run_panel(ds, "show_flagged", state, view=flagged)
    (params,) = [p for name, p in ops if name == "set_view"]
    again = fo.DatasetView._build(ds, params["view"])
    assert again.values("objects.obj_ood") == [None] * 4  # 0.8 ... 0.5, the scores still hidden as the user hid them
    assert "4 flagged objects" in _notes(ops, "info")[0]

    # another filter on the same patches: its own objects (the kept reads tell the two views apart)
    other = _patches(ds, F("objects.obj_ood") < 0.55)
    _, ops = _run_panel(ds, "on_load", {"run_key": "obj_ood"}, view=other)
    out = _rendered(ops)
    assert _slider(out)[1] == pytest.approx((0.0, 0.5)) and _hist_total(out) == 5
    assert "5 of 8 objects" in _markdown(out, "flag_count")


def test_save_as_flags_on_a_patches_view_flags_only_its_objects(objects):
    from fiftyone import ViewField as F

    import ood_core as ood

    ds = objects
    _run_panel(ds, "save_flags", {"run_key": "obj_ood", "threshold_obj__ood": 0.75, **_tag("odd")})  # 0.8 only
    user = _patches(ds, F("objects.obj_ood") < 0.75)  # 7 objects; 0.8 is not shown
    _, ops = _run_panel(ds, "on_load", {"run_key": "obj_ood"}, view=user)
    key, _ = _slider(_rendered(ops))
    _, ops = _run_panel(ds, "save_flags", {"run_key": "obj_ood", key: 0.55, **_tag("odd")}, view=user)
    (note,) = _notes(ops, "success")
    assert note.startswith("saved 2 flags in 'objects.detections.obj_ood_review_flag'"), note
    assert "1 objects outside the current view keep the flags of an earlier save (3 in the field)" in note
    ds.reload()
    flags = sorted(zip(ds.values("objects.detections.obj_ood", unwind=True),
                       ds.values("objects.detections.obj_ood_review_flag", unwind=True)))
    assert [f for _, f in flags] == [False] * 5 + [True] * 3  # 0.6, 0.7 in the view, 0.8 kept from the first save
    assert ds.count_label_tags("objects") == {"odd": 3}
    assert ood.get_flag_info(ds, "obj_ood_review_flag")["num_flagged"] == 3


def test_other_generated_views_are_reviewed_as_before(objects):
    from fiftyone import ViewField as F

    ds = objects
    shown = _patches(ds, F("objects.obj_ood") >= 0.25)
    # a sample-level run on a patches view: the whole dataset (its samples are images, not patches)
    _, ops = _run_panel(ds, "on_load", {"run_key": "img_ood"}, view=shown)
    assert _markdown(_rendered(ops), "flag_count").startswith("**1** of 4 scored samples flagged (`img_ood`")
    # patches of another label field: the whole dataset's objects of the run
    ds.clone_sample_field("objects", "objects2")
    _, ops = _run_panel(ds, "on_load", {"run_key": "obj_ood"}, view=ds.to_patches("objects2").limit(2))
    assert _markdown(_rendered(ops), "flag_count").startswith("**1** of 8 scored objects flagged (`objects")
    # every object of the run's field shown: the same review (and slider) as the whole dataset
    _, ops = _run_panel(ds, "on_load", {"run_key": "obj_ood"}, view=ds.to_patches("objects"))
    out = _rendered(ops)
    assert _slider(out)[0] == "threshold_obj__ood" and _markdown(out, "flag_count").startswith("**1** of 8 scored")


def test_a_patches_view_showing_no_object_says_so(objects):
    from fiftyone import ViewField as F

    ds = objects
    _, ops = _run_panel(ds, "on_load", {"run_key": "obj_ood"}, view=_patches(ds, F("objects.obj_ood") > 5))
    assert "shows no object of 'objects'" in _markdown(_rendered(ops), "read_error")
    _, ops = _run_panel(ds, "save_flags", {"run_key": "obj_ood"}, view=_patches(ds, F("objects.obj_ood") > 5))
    assert "nothing was done" in _notes(ops, "warning")[0] and ds.get_field(
        "objects.detections.obj_ood_review_flag") is None


def test_evaluation_patches_holding_the_runs_field_are_reviewed_as_their_objects(objects):
    from fiftyone import ViewField as F

    ds = objects
    ds.clone_sample_field("objects", "gt")
    ds.evaluate_detections("objects", gt_field="gt", eval_key="ev")  # every object matches its copy: 8 TP patches
    user = ds.to_evaluation_patches("ev").match(F("objects.detections.obj_ood").max() >= 0.65)  # 0.7, 0.8
    _, ops = _run_panel(ds, "on_load", {"run_key": "obj_ood"}, view=user)
    out = _rendered(ops)
    assert _slider(out)[1] == pytest.approx((0.7, 0.8)) and _hist_total(out) == 2
    assert _markdown(out, "flag_count").startswith("**1** of 2 scored objects flagged in the current view (2 of 8")
    # a preset cuts the shown objects' scores: top 2 of them is 0.7 (of the whole dataset it would be 0.7 too,
    # top 3 tells them apart: all 2 shown objects, 0.6 on the whole dataset)
    state = {"run_key": "obj_ood", **_presets("top_n", 3)}
    _, ops = _run_panel(ds, "apply_preset", state, view=user)
    assert [w["threshold"] for k, w in _state_writes(ops).items() if k.startswith("preset_")] == [
        pytest.approx(0.7)]
