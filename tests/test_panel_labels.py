"""The review panel's "Tag selected" buttons on the labels a curator clicks in the App's sample modal.

FiftyOne sends them as ``ctx.selected_labels`` (dicts with ``label_id``, ``sample_id``, ``field``,
``frame_number``). On an object run the selected objects of the run's label field get the decision's label tag;
the module-level function is called with a real dataset and real label ids, and the panel's handlers are driven
through FiftyOne's own panel machinery like ``tests/test_panel.py`` does (with the selected labels in the request).
"""

import pytest
from test_panel import PLUGIN, _markdown, _rendered
from test_panel_views import _notes, objects  # noqa: F401


def _labels(ds, field="objects", which=None):
    """``ctx.selected_labels`` as the App sends it, for the objects of ``field`` (``which``: their positions)."""
    rows = [{"label_id": d.id, "sample_id": s.id, "field": field, "frame_number": None}
            for s in ds for d in s[field].detections]
    return rows if which is None else [rows[i] for i in which]


def _run_panel(ds, method, state=None, selected=None, selected_labels=None, view=None):
    """``test_panel._run_panel`` with the App's selected labels in the request as well."""
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext, Executor

    op = foo.get_operator(f"{PLUGIN}/ood_review")
    executor = Executor()
    request = dict(dataset_name=ds.name, selected=selected or [], selected_labels=selected_labels or [],
                   params=dict(__method__=method, panel_id="test-panel", panel_state=state or {}))
    if view is not None:
        request["view"] = view._serialize()
    ctx = ExecutionContext(request_params=request, executor=executor)
    op.execute(ctx)
    return [(r.operator_uri, r.params) for r in executor._requests]


@pytest.fixture
def two_fields(objects):
    """The ``objects`` dataset plus a second label field ``gt`` (new objects, ids of their own)."""
    import fiftyone as fo

    for sample in objects:
        sample["gt"] = fo.Detections(detections=[fo.Detection(label="g", bounding_box=[0.2, 0.2, 0.3, 0.3])])
        sample.save()
    return objects


# --------------------------------------------------------------------------- the module-level function


def test_selected_objects_of_the_run_field_are_tagged_and_other_fields_left_alone(two_fields):
    from fiftyone import ViewField as F

    from operators.panel_selection import review_labels, review_message

    ds = two_fields
    chosen = _labels(ds, which=[0, 3])
    out = review_labels(ds, ds.view(), chosen + _labels(ds, "gt", [1]), "objects", "confirmed")
    assert (out["tag"], out["num"], out["noun"]) == ("ood_confirmed", 2, "object(s)")
    assert review_message(out) == ("tagged 2 object(s) 'ood_confirmed'; 1 selected label of field 'gt' is not the "
                                   "run's field 'objects' and was left alone")
    ds.reload()
    tagged = ds.filter_labels("objects", F("tags").contains("ood_confirmed"))
    assert sorted(tagged.values("objects.detections.id", unwind=True)) == sorted(r["label_id"] for r in chosen)
    assert ds.count_label_tags("gt") == {} and ds.count_sample_tags() == {}
    # the opposite decision replaces the tag on the same object (one source of truth: review.REVIEW_TAGS)
    out = review_labels(ds, None, chosen[:1], "objects", "dismissed")
    assert (out["tag"], out["num"], review_message(out)) == ("ood_dismissed", 1, "tagged 1 object(s) 'ood_dismissed'")
    assert ds.count_label_tags("objects") == {"ood_confirmed": 1, "ood_dismissed": 1}


def test_labels_of_other_fields_only_are_refused_naming_the_run_field(two_fields):
    from ood_core.errors import OODInputError
    from operators.panel_selection import review_labels

    ds = two_fields
    with pytest.raises(OODInputError, match=r"none of the 2 selected labels is an object of 'objects'.*'gt'"):
        review_labels(ds, ds.view(), _labels(ds, "gt", [0, 1]), "objects", "confirmed")
    assert ds.count_label_tags() == {}


def test_selected_objects_not_in_the_view_refuse_the_whole_selection(objects):
    import fiftyone as fo
    from fiftyone import ViewField as F

    from ood_core.errors import OODInputError
    from operators.panel_selection import review_labels

    ds = objects
    chosen = _labels(ds, which=[0, 1, 2])  # objects 1 is odd (is_odd), 0 and 2 are not
    view = ds.filter_labels("objects", F("is_odd") == False)  # noqa: E712  # the odd objects are filtered out
    with pytest.raises(OODInputError) as e:
        review_labels(ds, view, chosen, "objects", "confirmed")
    assert f"1 of the 3 selected objects of 'objects' are not in the current view (e.g. '{chosen[1]['label_id']}'" \
        in str(e.value) and "clear the selection and select them again" in str(e.value)
    assert ds.count_label_tags() == {}  # all or nothing
    # an object deleted meanwhile (its id is still in the App's selection)
    sample = ds[chosen[2]["sample_id"]]
    sample["objects"] = fo.Detections(detections=[d for d in sample["objects"].detections
                                                  if d.id != chosen[2]["label_id"]])
    sample.save()
    with pytest.raises(OODInputError, match=f"1 of the 3 selected .*'{chosen[2]['label_id']}'"):
        review_labels(ds, ds.view(), chosen, "objects", "dismissed")
    with pytest.raises(OODInputError, match="1 of the 1 selected .*'not-an-id'"):
        review_labels(ds, None, [dict(chosen[0], label_id="not-an-id")], "objects", "dismissed")
    assert ds.count_label_tags() == {}


# --------------------------------------------------------------------------- the panel's buttons


def test_panel_tags_the_objects_selected_in_the_modal_and_clears_them(two_fields):
    ds = two_fields
    chosen = _labels(ds, which=[2, 5])
    ops = _run_panel(ds, "confirm_selected", {"run_key": "obj_ood"}, selected_labels=chosen + _labels(ds, "gt", [0]))
    (note,) = _notes(ops, "success")
    assert note.startswith("tagged 2 object(s) 'ood_confirmed'; 1 selected label of field 'gt'")
    names = [name for name, _ in ops]
    assert "clear_selected_labels" in names and "reload_samples" in names and "clear_selected_samples" not in names
    assert ds.count_label_tags("objects") == {"ood_confirmed": 2} and ds.count_label_tags("gt") == {}
    assert _markdown(_rendered(ops), "review_counts").endswith("objects of `objects`: **2** confirmed · **0** dismissed")
    # the count line counts the modal's labels on an object run
    ops = _run_panel(ds, "on_load", {"run_key": "obj_ood"}, selected=[ds.first().id], selected_labels=chosen)
    assert "1 sample(s) selected in the grid, 2 object(s) of `objects` selected in the modal" in _markdown(
        _rendered(ops), "flag_count")
    # labels of another field only: a warning naming the run's field, nothing tagged, nothing cleared
    ops = _run_panel(ds, "dismiss_selected", {"run_key": "obj_ood"}, selected_labels=_labels(ds, "gt", [0]))
    (note,) = _notes(ops, "warning")
    assert "is an object of 'objects'" in note and "clear_selected_labels" not in [name for name, _ in ops]
    assert ds.count_label_tags("objects") == {"ood_confirmed": 2}


def test_both_selections_labels_win_on_object_runs_samples_on_sample_runs(objects):
    ds = objects
    sample_ids = ds.values("id")[:2]
    chosen = _labels(ds, which=[0])
    ops = _run_panel(ds, "dismiss_selected", {"run_key": "obj_ood"}, selected=sample_ids, selected_labels=chosen)
    (note,) = _notes(ops, "success")
    assert note.startswith("tagged 1 object(s) 'ood_dismissed'") and "2 sample(s) checked in the grid" in note
    assert ds.count_label_tags("objects") == {"ood_dismissed": 1} and ds.count_sample_tags() == {}
    assert "clear_selected_samples" not in [name for name, _ in ops]  # the grid's selection is kept for later

    ops = _run_panel(ds, "confirm_selected", {"run_key": "img_ood"}, selected=sample_ids, selected_labels=chosen)
    (note,) = _notes(ops, "success")
    assert note.startswith("tagged 2 sample(s) 'ood_confirmed'") and "1 label selected in the modal" in note
    assert ds.count_sample_tags() == {"ood_confirmed": 2} and ds.count_label_tags("objects") == {"ood_dismissed": 1}

    # a sample run with labels only: today's warning, saying labels are taken by object runs only
    ops = _run_panel(ds, "confirm_selected", {"run_key": "img_ood"}, selected_labels=chosen)
    (note,) = _notes(ops, "warning")
    assert note.startswith("Select samples in the grid first") and "only on an object-level run" in note
    assert ds.count_sample_tags() == {"ood_confirmed": 2}


def test_objects_selected_in_the_modal_of_a_patches_view_are_tagged(objects):
    """In a patches view the modal shows one patch; its selected label carries the patch's id as ``sample_id``."""
    ds = objects
    patches = ds.to_patches("objects")
    chosen = [{"label_id": p.objects.id, "sample_id": p.id, "field": "objects", "frame_number": None}
              for p in patches.limit(2)]
    ops = _run_panel(ds, "confirm_selected", {"run_key": "obj_ood"}, selected_labels=chosen, view=patches)
    assert _notes(ops, "success") == ["tagged 2 object(s) 'ood_confirmed'"]
    assert ds.count_label_tags("objects") == {"ood_confirmed": 2}
