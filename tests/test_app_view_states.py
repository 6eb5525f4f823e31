"""The operators and the OOD review panel on the view states a FiftyOne App user produces: the App's "group by"
(a dynamic-groups view), a sidebar filter on the label field, a view sorted by similarity, a view with
skip / limit, and the target choice.

Forms are resolved and operators executed as the App does (``tests/form_helpers.py``); the panel is driven through
FiftyOne's panel machinery (``tests/test_panel.py``).
"""

import form_helpers as forms
import pytest
from test_panel import _markdown, _rendered, _run_panel, scored  # noqa: F401

#: every operator with a target choice, with parameters that run on ``form_dataset``
TARGET_OPERATORS = {
    "score_ood": dict(embeddings_field="vec", score_field="s", reference_tag="trusted", k=3),
    "compute_ood_visualization": dict(embeddings_field="vec", brain_key="m", method="pca"),
    "compute_pyramid_embeddings": dict(embeddings_field="e"),
    "audit_dataset": dict(embeddings_field="vec", audit_key="a"),
    "compute_neglabel_scores": dict(id_source="labels", id_labels="cat, dog", score_field="nl"),
    "compute_rap_scores": dict(score_field="rap"),
    "compute_adaneg_scores": dict(score_field="ad"),
}


def _state(ds):
    ds.reload()
    return set(ds.get_field_schema()), ds.list_brain_runs(), ds.list_runs(), ds.count_sample_tags()


def test_a_group_by_view_is_refused_by_every_form_in_app_terms_before_any_work(form_dataset, tmp_path):
    """Before: the form and the run's refusal of the App's "group by" told the App user to "Pass view.flatten()",
    which the App cannot do, and did not say how to get a view the operators take."""
    ds = form_dataset
    grouped = ds.group_by("ground_truth.label")
    before = _state(ds)
    for name, params in TARGET_OPERATORS.items():
        params = dict(params, report_path=str(tmp_path / "r.html")) if name == "audit_dataset" else params
        for target in (None, "CURRENT_VIEW"):  # the App preselects the current view
            chosen = params if target is None else dict(params, view_target=target)
            props = forms.props(name, ds, chosen, view=grouped)
            message = forms.invalid(props)["target_refused"]
            assert "only 10 of its 40 samples" in message, (name, message)
            # the notice's heading names the grouped view (it was headed "A patches, frames or clips view ...")
            assert props["target_refused"].view.label.startswith('A grouped view (the App\'s "group by")'), name
            assert "in the App, remove the group-by" in message and 'choose the target "Dataset"' in message
        refused = forms.refusal(name, grouped, dict(params, view_target="CURRENT_VIEW", delegate=False))
        assert "in the App, remove the group-by" in refused, name
        # the fix the message names: the target "Dataset" is accepted on the same view
        props = forms.props(name, ds, dict(params, view_target="DATASET"), view=grouped)
        assert "target_refused" not in props, name
    assert _state(ds) == before  # nothing written


def test_the_app_fix_of_a_group_by_view_works(form_dataset):
    """The "Dataset" target the refusal names runs on every sample, however the App's view is grouped."""
    ds = form_dataset
    grouped = ds.group_by("ground_truth.label")
    out = forms.execute("score_ood", grouped, dict(TARGET_OPERATORS["score_ood"], view_target="DATASET",
                                                   delegate=False))
    assert out.error is None and out.result["num_scored"] == 40


def test_the_panel_on_a_group_by_view_says_how_to_remove_it_and_acts_on_nothing(scored):
    """Before: the panel reviewed one sample per group ("1 of 3 scored samples flagged"), set its threshold from
    those, "Show flagged" opened a grouped view and "Save as flags" answered with "Pass view.flatten()"."""
    ds = scored
    ds.set_values("grp", [i % 3 for i in range(len(ds))])
    grouped = ds.group_by("grp")
    state = {"run_key": "ood", "threshold_ood": 0.66}
    before = _state(ds)
    _, ops = _run_panel(ds, "on_load", state, view=grouped)
    out = _rendered(ops)
    assert "flag_count" not in out["type"]["properties"]  # no review of one sample per group
    error = _markdown(out, "read_error")
    assert "only 3 of its 22 samples" in error and "in the App, remove the group-by" in error
    assert "view.flatten()" not in error.split("; ", 1)[-1]  # what the App user reads last is the App's fix
    for method in ("show_flagged", "save_flags"):
        _, ops = _run_panel(ds, method, state, view=grouped)
        assert not any(name == "set_view" for name, _ in ops), method
        notes = [p["message"] for name, p in ops if name == "notify"]
        assert len(notes) == 1 and "in the App, remove the group-by" in notes[0] and "nothing was done" in notes[0]
    assert _state(ds) == before
    # without the group-by the same panel reviews every scored sample
    _, ops = _run_panel(ds, "on_load", state, view=ds.view())
    assert _markdown(_rendered(ops), "flag_count").startswith("**8** of 20 scored samples flagged")


def _sidebar_excluding(ds, label):
    """The App's view when the sidebar filter of ``ground_truth`` excludes ``label``: the samples stay in the grid
    with that label hidden (``filter_labels(..., only_matches=False)``), as the App builds it from its filters."""
    from fiftyone.server.view import get_view

    return get_view(ds, filters={"ground_truth.label": {"values": [label], "exclude": True, "isMatching": False}})


@pytest.mark.parametrize("name,params", [
    ("score_ood", dict(embeddings_field="vec", score_field="li", method="label_agreement",
                       label_field="ground_truth", k=3)),
    ("audit_dataset", dict(embeddings_field="vec", label_field="ground_truth", audit_key="a")),
])
def test_forms_warn_that_a_sidebar_filter_hides_labels_the_run_would_skip(form_dataset, name, params):
    """Before: a label run on the App's view with the sidebar filter excluding a class skipped that class's samples
    without a word in the form, and the score report said they had no embedding (they had: their labels were
    hidden)."""
    ds = form_dataset
    view = _sidebar_excluding(ds, "Bag")
    assert len(view) == 40 and len(view.exists("ground_truth")) == 36  # the App's view state
    props = forms.props(name, ds, dict(params, view_target="CURRENT_VIEW"), view=view)
    warning = props["hidden_labels"].view
    text = f"{warning.label} {warning.description}"
    assert "4 of the 40" in text and "sidebar filter" in text and '"Dataset"' in text
    assert not forms.invalid(props)  # a warning: the run is the user's choice
    # the target "Dataset" and a view without the filter have nothing hidden
    assert "hidden_labels" not in forms.props(name, ds, dict(params, view_target="DATASET"), view=view)
    assert "hidden_labels" not in forms.props(name, ds, dict(params, view_target="CURRENT_VIEW"),
                                              view=ds.match_tags("test"))


def test_the_score_report_says_why_samples_without_a_visible_label_were_skipped(form_dataset):
    ds = form_dataset
    view = _sidebar_excluding(ds, "Bag")
    params = dict(embeddings_field="vec", score_field="li", method="label_agreement", label_field="ground_truth",
                  k=3, view_target="CURRENT_VIEW", delegate=False)
    out = forms.execute("score_ood", view, params)
    assert out.error is None and out.result["num_scored"] == 36
    assert "4 without an embedding in `vec` or a label in `ground_truth`" in out.result["report"]
