"""The "OOD review" panel on the views a curator really has open: views hiding fields, patches views,
object-level runs, and the values typed into the preset input.

Driven like ``tests/test_panel.py``: the panel's handlers run through FiftyOne's own panel machinery and
what the App would receive (rendered layout, ``set_view``, ``notify``, state writes) is inspected.
"""

import pytest
from test_panel import (SCORES, _markdown, _presets, _rendered, _run_panel, _slider, _state_writes,  # noqa: F401
                        _tag, scored)


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
    _, ops = _run_panel(scored, "apply_preset", {"run_key": "ood", **_presets("top_n", value)})
    (note,) = _notes(ops, "warning")
    assert "'N' of the 'Top N' preset" in note and f"{value!r}" in note and "whole number" in note
    assert "threshold_version_ood" not in _state_writes(ops)  # nothing applied, not even top 2


def test_top_n_preset_takes_whole_numbers_as_floats_or_text(scored):
    for value in (3.0, " 3 "):
        _, ops = _run_panel(scored, "apply_preset", {"run_key": "ood", **_presets("top_n", value)})
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
    _, ops = _run_panel(scored, "apply_preset", {"run_key": "ood", **_presets(preset, value)})
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
    state = {"run_key": "ood", _slider("ood", ds.limit(10)): 0.3}  # the slider of the view with every field shown
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
    _, ops = _run_panel(ds, "show_flagged", {"run_key": "obj_ood", "threshold_obj__ood": 0.55}, view=user)
    (params,) = [p for name, p in ops if name == "set_view"]
    shown = fo.DatasetView._build(ds, params["view"])
    assert [st["_cls"].rsplit(".", 1)[1] for st in params["view"]] == [
        "ToPatches", "Match", "Match", "SortBy", "SelectFields"]  # the user's stages kept, the field stage last
    assert shown.values("objects.obj_ood") == [None] * 3  # the scores stay hidden, as the user wanted
    best_first = ds.to_patches("objects").sort_by("objects.obj_ood", reverse=True)
    assert shown.values("id") == best_first.values("id")[:3]  # the flagged objects: 0.8, 0.7, 0.6
    assert "3 flagged objects" in _notes(ops, "info")[0]


def test_save_as_flags_on_an_object_run_tags_the_objects(objects):
    import ood_core as ood

    ds = objects
    _, ops = _run_panel(ds, "save_flags", {"run_key": "obj_ood", "threshold_obj__ood": 0.65, **_tag("odd")})
    assert _notes(ops, "success") == ["saved 2 flags in 'objects.detections.obj_ood_review_flag' (run "
                                      "'obj_ood_review_flag'), tagged 'odd'; 2 objects carry 'odd' now"]
    ds.reload()
    assert ds.count_label_tags("objects") == {"odd": 2} and ds.count_sample_tags() == {}
    assert ds.values("objects.detections.obj_ood_review_flag")[2:] == [[False, True], [False, True]]
    assert ood.get_flag_info(ds, "obj_ood_review_flag")["rule"]["threshold"] == 0.65
    _, ops = _run_panel(ds, "on_load", {"run_key": "obj_ood"})  # the panel starts at the saved threshold
    assert _markdown(_rendered(ops), "flag_count").startswith(
        "**2** of 8 scored objects flagged (`objects.detections.obj_ood` >= 0.6500 (saved flags "
        "'obj_ood_review_flag': fixed threshold)")


def test_flags_of_a_sample_run_and_an_object_run_of_the_same_score_name_never_replace_each_other(objects):
    """Both keys were ``<score name>_review_flag`` (the panel) / ``<score name>_flag`` (``flag_samples``): saving
    the object run's flags deleted the sample run's flag field and its tags."""
    import ood_core as ood
    from ood_core.errors import OODInputError
    from ood_core.fo import runs as fo_runs

    ds = objects
    fo_runs.write_and_record(ds, [("objects.detections.img_ood", [[0.1 * i, 0.9] for i in range(4)])], "obj_img",
                             kind="ood_scores", score_field="img_ood", patches_field="objects")
    _run_panel(ds, "save_flags", {"run_key": "img_ood", "threshold_img__ood": 0.25, **_tag("looked")})
    _, ops = _run_panel(ds, "save_flags", {"run_key": "obj_img", "threshold_obj__img": 0.5, **_tag("odd")})
    assert _notes(ops, "success")[0].startswith("saved 4 flags in 'objects.detections.obj_img_review_flag'")
    ds.reload()
    assert ds.values("img_ood_review_flag") == [False, False, True, True] and ds.count_sample_tags() == {"looked": 2}
    assert {"img_ood_review_flag", "obj_img_review_flag"} <= set(ood.list_flag_runs(ds))
    ood.flag_samples(ds, "img_ood", rule="top_n", value=2, tag="top")  # flags run 'img_ood_flag'
    with pytest.raises(OODInputError, match=r"flags run 'img_ood_flag' holds the flags of score run 'img_ood', not "
                                            r"of 'obj_img'.*Pass another flag_key and flag_field"):
        ood.flag_samples(ds, "obj_img", rule="top_n", value=2, overwrite=True)  # the same default key
    assert ds.values("img_ood_flag") == [False, False, True, True] and len(ds.match_tags("top")) == 2


# --------------------------------------------------------------------------- the state shape of the real App


def _input_paths(obj, prefix=""):
    """Panel-state paths of the inputs of a rendered layout: the App nests the inputs of a stack (an Object
    property) under the stack's name."""
    paths = {}
    for name, prop in obj["properties"].items():
        if prop["type"].get("name") == "Object":
            paths.update(_input_paths(prop["type"], f"{prefix}{name}."))
        else:
            paths[f"{prefix}{name}"] = prop
    return paths


def test_the_panel_reads_its_inputs_where_the_app_keeps_them(scored):
    from operators import panel_state

    _, ops = _run_panel(scored, "on_load")
    paths = _input_paths(_rendered(ops)["type"])
    for path in (panel_state.PRESET_PATH, panel_state.preset_value_path("top_fraction"), panel_state.FLAG_TAG_PATH):
        assert path in paths, sorted(paths)
    assert {"run_key", "gt_field", "threshold_ood"} <= set(paths)  # top-level inputs stay flat
    # a preset picked in the dropdown (nested state): its own value input, with its own label
    _, ops = _run_panel(scored, "on_change_input", {"run_key": "ood", **_presets("top_n")})
    paths = _input_paths(_rendered(ops)["type"])
    assert paths["presets.preset"]["default"] == "top_n"
    value = paths["presets.preset_value_top_n"]
    assert value["view"]["label"] == "N" and value["default"] == 50
    assert "presets.preset_value_top_fraction" not in paths


def test_presets_typed_in_the_app_are_applied_or_refused(scored):
    ds = scored
    _, ops = _run_panel(ds, "apply_preset", {"run_key": "ood", **_presets("top_n", 3)})
    writes = _state_writes(ops)
    assert writes["preset_ood"]["label"] == "top 3" and not _notes(ops, "warning")
    _, ops = _run_panel(ds, "on_change_input", {"run_key": "ood", **_presets("top_n", 3), **writes})
    assert _markdown(_rendered(ops), "flag_count").startswith("**3** of 20 scored samples flagged (`ood` >= 0.9000 "
                                                              "(preset: top 3)")
    # a fraction of 7 is refused, not replaced by the default
    _, ops = _run_panel(ds, "apply_preset", {"run_key": "ood", **_presets("top_fraction", 7)})
    (note,) = _notes(ops, "warning")
    assert "'fraction flagged' of the 'Top fraction of scores' preset must be between 0 and 1; got 7" in note
    assert not _state_writes(ops)


def test_histogram_draws_the_threshold_inside_the_plot_with_whole_count_ticks(scored):
    _, ops = _run_panel(scored, "on_load", {"run_key": "ood"})  # default threshold: the highest score, 0.95
    layout = _rendered(ops)["type"]["properties"]["histogram"]["view"]["layout"]
    assert layout["shapes"][0]["x0"] == 0.95
    lo, hi = layout["xaxis"]["range"]
    assert lo < 0.10 and hi > 0.95 + 0.01  # a margin beyond the lowest and the highest score
    assert layout["yaxis"]["dtick"] == 1 and layout["yaxis"]["tickformat"] == "d"  # counts of 2 at most here
    _, ops = _run_panel(scored, "on_load", {"run_key": "ood", "threshold_ood": 0.1})
    layout = _rendered(ops)["type"]["properties"]["histogram"]["view"]["layout"]
    assert layout["xaxis"]["range"][0] < 0.1 - 0.01


# --------------------------------------------------------------------------- after an audit


@pytest.fixture
def audited(dataset_factory, fashion_files, session_extractor, tmp_path):
    """40 real images (4 per class; Bag and Ankle boot untrusted) audited with ``ood.audit``: runs audit_ood /
    audit_label_issue, their flags runs, tags and saved views ``ood_audit-ood`` / ``ood_audit-label-issues``."""
    import ood_core as ood

    paths, names = fashion_files
    idx = list(range(0, 200, 5))
    tags = [["trusted"] if names[i] not in ("Bag", "Ankle boot") and j % 2 == 0 else [] for j, i in enumerate(idx)]
    ds = dataset_factory([paths[i] for i in idx], [names[i] for i in idx], tags)
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1, 2, 3], grid=1)
    summary = ood.audit(ds, report_path=str(tmp_path / "audit.html"), near_duplicates=False)
    assert summary["num_ood_flagged"] >= 2  # so a narrower preset differs from the audit's flags
    return ds, summary


def test_the_audits_saved_view_opens_on_its_run_at_the_audits_threshold(audited):
    import ood_core as ood

    ds, summary = audited
    n = summary["num_ood_flagged"]
    t_audit = ood.get_flag_info(ds, "audit_ood_flag")["rule"]["threshold"]
    saved = ds.load_saved_view("ood_audit-ood")
    # README step 3: the saved view, then the panel (empty state): the run the view is sorted by, the audit's cut
    _, ops = _run_panel(ds, "on_load", {}, view=saved, view_name="ood_audit-ood")
    out = _rendered(ops)
    assert out["type"]["properties"]["run_key"]["default"] == "audit_ood"
    text = _markdown(out, "flag_count")
    assert text.startswith(f"**{n}** of {n} scored samples flagged in the current view ({n} of 40 samples) "
                           f"(`audit_ood` >= {t_audit:.4f} (saved flags 'audit_ood_flag': 95% of 'trusted' pass)")
    assert _rendered(ops)["type"]["properties"][_slider("audit_ood", saved)]["default"] == t_audit
    # the label-issue saved view opens on its own run; the whole dataset on the OOD run, at the audit's cut
    _, ops = _run_panel(ds, "on_load", {}, view_name="ood_audit-label-issues")
    assert _rendered(ops)["type"]["properties"]["run_key"]["default"] == "audit_label_issue"
    _, ops = _run_panel(ds, "on_load", {})
    assert _markdown(_rendered(ops), "flag_count").startswith(f"**{n}** of 40 scored samples flagged (`audit_ood` >= "
                                                              f"{t_audit:.4f} (saved flags 'audit_ood_flag'")
    # the panel open on another run (the App keeps the panel and its state) when the user picks the saved view:
    # it follows the view once, with a new run dropdown drawn with the view's run (the App keeps a dropdown's own
    # value, whatever the server writes into it)
    state = {"run_key": "audit_label_issue", "view_seen": ""}
    _, ops = _run_panel(ds, "on_change_view", state, view_name="ood_audit-ood")
    writes = _state_writes(ops)
    assert writes["run_version"] == 1 and writes["run_start"] == "audit_ood" and "run_key" not in writes
    out = _rendered(ops)
    assert out["type"]["properties"]["run_key_v1"]["default"] == "audit_ood" and "run_key" not in out["type"][
        "properties"]
    assert "`audit_ood` >=" in _markdown(out, "flag_count")
    # a run the user picks afterwards on the same view stays (the App holds it in the new dropdown)
    state.update(writes, run_key_v1="audit_label_issue")
    _, ops = _run_panel(ds, "on_change_view", state, view_name="ood_audit-ood")
    assert not _state_writes(ops) and "`audit_label_issue` >=" in _markdown(_rendered(ops), "flag_count")
    # ... and on a view sorted by nothing (the whole dataset)
    _, ops = _run_panel(ds, "on_change_view", state)
    assert _state_writes(ops) == {"view_seen": ""}
    assert "`audit_label_issue` >=" in _markdown(_rendered(ops), "flag_count")


def test_a_preset_stays_on_its_view_and_a_moved_slider_says_so(audited):
    ds, summary = audited
    n = summary["num_ood_flagged"]
    saved = ds.load_saved_view("ood_audit-ood")
    state = {"run_key": "audit_ood", **_presets("top_n", 1)}
    _, ops = _run_panel(ds, "apply_preset", state, view_name="ood_audit-ood")
    state.update(_state_writes(ops))
    _, ops = _run_panel(ds, "on_change_input", state, view_name="ood_audit-ood")
    out = _rendered(ops)
    assert "(preset: top 1)" in _markdown(out, "flag_count")
    t_preset = state[f"preset_audit__ood__view_{_slider('audit_ood', saved).rsplit('_', 1)[1]}"]["threshold"]
    assert out["type"]["properties"][_slider("audit_ood", saved, version=1)]["default"] == t_preset
    # back on the whole dataset: neither the view's threshold nor its preset label
    _, ops = _run_panel(ds, "on_change_view", state)
    text = _markdown(_rendered(ops), "flag_count")
    assert text.startswith(f"**{n}** of 40 scored samples flagged") and "preset" not in text
    assert "(saved flags 'audit_ood_flag'" in text
    # the slider moved by hand on the saved view (the App holds the new value)
    scores = saved.values("audit_ood")
    moved = dict(state, **{_slider("audit_ood", saved, version=1): min(scores)})
    _, ops = _run_panel(ds, "on_change_input", moved, view_name="ood_audit-ood")
    text = _markdown(_rendered(ops), "flag_count")
    assert text.startswith(f"**{n}** of {n} scored samples flagged") and "(set by hand)" in text
    assert "preset" not in text


def test_save_as_flags_uses_the_typed_tag_and_keeps_the_audits_flags(audited):
    from fiftyone import ViewField as F

    import ood_core as ood

    ds, summary = audited
    n = summary["num_ood_flagged"]
    state = {"run_key": "audit_ood", **_presets("top_n", 1)}
    _, ops = _run_panel(ds, "apply_preset", state, view_name="ood_audit-ood")
    state.update(_state_writes(ops), **_tag("my_tag"))
    _, ops = _run_panel(ds, "save_flags", state, view_name="ood_audit-ood")
    (note,) = _notes(ops, "success")
    assert note.startswith("saved 1 flags in 'audit_ood_review_flag' (run 'audit_ood_review_flag'), tagged 'my_tag'; "
                           "kept the flags run(s) 'audit_ood_flag' of this score run")
    ds.reload()
    assert ds.count_sample_tags()["my_tag"] == 1 and ds.count_sample_tags()["ood"] == n  # the audit's tags stay
    info = ood.get_flag_info(ds, "audit_ood_flag")
    assert info["num_flagged"] == n == len(ds.match(F("audit_ood_flag") == True))  # noqa: E712
    assert ood.get_ood_run_info(ds, "ood_audit")["num_ood_flagged"] == n  # the audit's record still holds
    assert ood.get_flag_info(ds, "audit_ood_review_flag")["tag"] == "my_tag"
    # the newest saved flags are where the panel starts on a view without a preset
    _, ops = _run_panel(ds, "on_load", {"run_key": "audit_ood"})
    assert "(saved flags 'audit_ood_review_flag': fixed threshold)" in _markdown(_rendered(ops), "flag_count")
    # an empty tag: flags without a tag
    state.update(_tag("  "))
    _, ops = _run_panel(ds, "save_flags", state, view_name="ood_audit-ood")
    ds.reload()
    assert "my_tag" not in ds.count_sample_tags() and ood.get_flag_info(ds, "audit_ood_review_flag")["tag"] is None
