"""The "OOD review" panel on the views a curator really has open: views hiding fields, patches views,
object-level runs, and the values typed into the preset input.

Driven like ``tests/test_panel.py``: the panel's handlers run through FiftyOne's own panel machinery and
what the App would receive (rendered layout, ``set_view``, ``notify``, state writes) is inspected.
"""

import pytest
from test_panel import SCORES, _markdown, _rendered, _run_panel, _state_writes, scored  # noqa: F401


@pytest.fixture
def objects(dataset_factory, fashion_files):
    """4 samples with 2 objects each in ``objects``: an object run ``obj_ood`` (scores 0.1 i and 0.1 i + 0.5),
    ``objects.detections.is_odd`` ground truth (the second object of each sample) and a sample run ``img_ood``."""
    import fiftyone as fo

    from ood_core.fo import runs as fo_runs

    paths, _ = fashion_files
    ds = dataset_factory(paths[:4])
    for sample in ds:
        sample["objects"] = fo.Detections(detections=[
            fo.Detection(label="a", bounding_box=[0.1, 0.1, 0.3, 0.3], is_odd=bool(j == 1)) for j in range(2)])
        sample.save()
    fo_runs.write_and_record(ds, [("objects.detections.obj_ood", [[0.1 * i, 0.1 * i + 0.5] for i in range(4)])],
                             "obj_ood", kind="ood_scores", score_field="obj_ood", patches_field="objects")
    fo_runs.write_and_record(ds, [("img_ood", [0.1, 0.2, 0.3, 0.4])], "img_ood", kind="ood_scores")
    ds.reload()
    return ds


def _notes(ops, variant=None):
    return [p["message"] for name, p in ops if name == "notify" and (variant is None or p["variant"] == variant)]


def _run_choices(output):
    return [c["value"] for c in output["type"]["properties"]["run_key"]["view"]["choices"]]


# --------------------------------------------------------------------------- the run list


def test_object_run_whose_score_attribute_was_deleted_is_not_offered(objects):
    from ood_core.fo import runs as fo_runs

    ds = objects
    ds.clone_sample_field("objects", "objects2")  # a second object run, on its own label field
    ds.set_values("objects2.detections.gone_ood", [[0.2, 0.9]] * 4)
    fo_runs.register_run(ds, "gone_ood", kind="ood_scores", fields=["objects2.detections.gone_ood"],
                         score_field="gone_ood", patches_field="objects2")
    _, ops = _run_panel(ds, "on_load", {"run_key": "gone_ood"})
    assert "gone_ood" in _run_choices(_rendered(ops))  # offered while its scores exist
    ds.delete_sample_field("objects2.detections.gone_ood")  # the label field stays, its score attribute goes
    _, ops = _run_panel(ds, "on_load", {"run_key": "gone_ood"})
    out = _rendered(ops)
    assert sorted(_run_choices(out)) == ["img_ood", "obj_ood"]
    assert out["type"]["properties"]["run_key"]["default"] != "gone_ood"


# --------------------------------------------------------------------------- what the panel says


def test_metrics_line_counts_objects_for_object_runs(objects):
    _, ops = _run_panel(objects, "on_load", {"run_key": "obj_ood", "gt_field": "objects.detections.is_odd"})
    metrics = _markdown(_rendered(ops), "metrics")
    assert "`objects.detections.is_odd == True`, 4 objects) vs ID (4)" in metrics
    assert "samples" not in metrics
    _, ops = _run_panel(objects, "on_load", {"run_key": "obj_ood"})
    hist = _rendered(ops)["type"]["properties"]["histogram"]["view"]["data"]  # no ground truth: one trace
    assert [t["name"] for t in hist] == ["all objects"]


# --------------------------------------------------------------------------- preset values


@pytest.mark.parametrize("value", [2.7, "2.7", 0.5])
def test_top_n_preset_refuses_a_number_that_is_not_whole(scored, value):
    _, ops = _run_panel(scored, "apply_preset", {"run_key": "ood", "preset": "top_n", "preset_value_top_n": value})
    (note,) = _notes(ops, "warning")
    assert "'N' of the 'Top N' preset" in note and f"{value!r}" in note and "whole number" in note
    assert "threshold_version_ood" not in _state_writes(ops)  # nothing applied, not even top 2


def test_top_n_preset_takes_whole_numbers_as_floats_or_text(scored):
    for value in (3.0, " 3 "):
        _, ops = _run_panel(scored, "apply_preset", {"run_key": "ood", "preset": "top_n", "preset_value_top_n": value})
        assert _state_writes(ops)["preset_ood"]["label"] == "top 3" and not _notes(ops, "warning")


@pytest.mark.parametrize("preset, value, problem", [
    ("top_n", "abc", "must be a number"),
    ("top_fraction", "ten percent", "must be a number"),
    ("percentile", "", "is empty"),
    ("top_fraction", float("nan"), "must be a finite number"),
    ("top_fraction", 5, "between 0 and 1"),
    ("top_n", -2, "whole number >= 1"),
    ("top_n", True, "must be a number"),
])
def test_bad_preset_values_name_the_input_the_problem_and_the_fix(scored, preset, value, problem):
    from operators import review

    label, value_label, default = review.PRESETS[preset]
    _, ops = _run_panel(scored, "apply_preset", {"run_key": "ood", "preset": preset, f"preset_value_{preset}": value})
    (note,) = _notes(ops, "warning")
    assert f"'{value_label}' of the '{label}' preset" in note and problem in note
    assert repr(value) in note and f"e.g. {default:g}" in note
    assert "could not convert" not in note
    assert "threshold_version_ood" not in _state_writes(ops)


# --------------------------------------------------------------------------- views the panel opens


@pytest.mark.parametrize("hide", ["select", "exclude"])
def test_show_flagged_keeps_the_field_stages_of_the_current_view(scored, hide):
    import fiftyone as fo

    ds = scored
    user = ds.limit(10)
    user = user.select_fields("is_ood") if hide == "select" else user.exclude_fields("ood")  # hides the scores
    state = {"run_key": "ood", "threshold_ood": 0.3}
    _, ops = _run_panel(ds, "show_flagged", state, view=user)
    (params,) = [p for name, p in ops if name == "set_view"]
    shown = fo.DatasetView._build(ds, params["view"])
    user_stages = [st["_cls"] for st in user._serialize()]
    assert [st["_cls"] for st in params["view"]][:len(user_stages) - 1] == user_stages[:1]  # the limit first
    assert [st["_cls"] for st in params["view"]][-1] == user_stages[-1]  # the user's field stage is kept
    assert "ood" not in shown.get_field_schema()  # ... and still hides the score field
    assert len(shown) == 8  # 0.30 ... 0.60 of the first 10 samples
    assert shown.values("id") == ds.limit(10).match(fo.ViewField("ood") >= 0.3).sort_by(
        "ood", reverse=True).values("id")
    # the flagged view is recognised with its field stage: the panel still reads the 10 samples
    _, ops = _run_panel(ds, "on_change_input", dict(state, **_state_writes(ops)), view=shown)
    assert _markdown(_rendered(ops), "flag_count").startswith("**8** of 10 scored samples flagged")


# --------------------------------------------------------------------------- selections in a patches view


def test_patches_selected_in_a_patches_view_are_tagged(objects):
    from fiftyone import ViewField as F

    ds = objects
    patches = ds.to_patches("objects")
    odd = patches.match(F("objects.is_odd") == True)  # noqa: E712  # any filter on top of the patches view
    selected = odd.values("id")[:2]  # patch ids (= the ids of their objects), not sample ids
    sample_ids = odd.values("_sample_id")[:2]

    # an object run on the patches' label field: the objects are tagged
    _, ops = _run_panel(ds, "confirm_selected", {"run_key": "obj_ood"}, selected=selected, view=odd)
    assert not _notes(ops, "warning") and "tagged 2 object(s) 'ood_confirmed'" in _notes(ops)[0]
    ds.reload()
    assert sorted(ds.filter_labels("objects", F("tags").contains("ood_confirmed")).values(
        "objects.detections.id", unwind=True)) == sorted(selected)
    assert ds.count_sample_tags() == {}
    assert patches.select(selected).count_label_tags("objects") == {"ood_confirmed": 2}  # the patches see it
    assert any(name == "clear_selected_samples" for name, _ in ops)
    assert _markdown(_rendered(ops), "review_counts").endswith(
        "objects of `objects`: **2** confirmed · **0** dismissed")
    # the opposite decision replaces it on the same object
    _, ops = _run_panel(ds, "dismiss_selected", {"run_key": "obj_ood"}, selected=selected[:1], view=odd)
    assert ds.count_label_tags("objects") == {"ood_confirmed": 1, "ood_dismissed": 1}

    # a sample run: the samples the patches come from are tagged (as in a sample view)
    _, ops = _run_panel(ds, "confirm_selected", {"run_key": "img_ood"}, selected=selected, view=odd)
    assert "tagged 2 sample(s) 'ood_confirmed'" in _notes(ops, "success")[0]
    assert sorted(ds.match_tags("ood_confirmed").values("id")) == sorted(str(i) for i in sample_ids)

    # ids that are no patch of the view: said, nothing tagged
    _, ops = _run_panel(ds, "dismiss_selected", {"run_key": "obj_ood"}, selected=["0" * 24], view=odd)
    (note,) = _notes(ops, "warning")
    assert "1 of the 1 selected patches are not in the current view" in note
    assert ds.count_label_tags("objects") == {"ood_confirmed": 1, "ood_dismissed": 1}


def test_patches_of_another_label_field_tag_the_samples_they_come_from(objects):
    """Patches of ``objects2`` while reviewing the ``objects`` run: the selection is mapped to the patches'
    samples."""
    ds = objects
    ds.clone_sample_field("objects", "objects2")
    patches = ds.to_patches("objects2")
    selected = patches.values("id")[:1]
    _, ops = _run_panel(ds, "confirm_selected", {"run_key": "obj_ood"}, selected=selected, view=patches)
    assert "tagged 1 sample(s) 'ood_confirmed'" in _notes(ops, "success")[0]
    assert ds.match_tags("ood_confirmed").values("id") == [str(patches.values("_sample_id")[0])]


def test_show_flagged_in_a_patches_view_shows_the_flagged_patches(objects):
    import fiftyone as fo
    from fiftyone import ViewField as F

    ds = objects
    user = ds.to_patches("objects").match(F("objects.label") == "a").select_fields("objects.label")
    _, ops = _run_panel(ds, "on_load", {"run_key": "obj_ood"}, view=user, selected=user.values("id")[:3])
    assert "3 patch(es) selected in the grid" in _markdown(_rendered(ops), "flag_count")
    _, ops = _run_panel(ds, "show_flagged", {"run_key": "obj_ood", "threshold_obj_ood": 0.55}, view=user)
    (params,) = [p for name, p in ops if name == "set_view"]
    shown = fo.DatasetView._build(ds, params["view"])
    assert [st["_cls"].rsplit(".", 1)[1] for st in params["view"]] == [
        "ToPatches", "Match", "Match", "SortBy", "SelectFields"]  # the user's stages kept, the field stage last
    assert shown.values("objects.obj_ood") == [None] * 3  # the scores stay hidden, as the user wanted
    best_first = ds.to_patches("objects").sort_by("objects.obj_ood", reverse=True)
    assert shown.values("id") == best_first.values("id")[:3]  # the flagged objects: 0.8, 0.7, 0.6
    assert "3 flagged objects" in _notes(ops, "info")[0]
