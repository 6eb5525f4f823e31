"""The "OOD review" panel and the run-management operator probed the way a curator meets them: a run scored again
while the panel holds a preset cut on its old scores, a panel state the App sends back with values of another type
(a state left by another version of the panel, a stale client), Save as flags on a view after an earlier save, a
threshold just above the scores it stops, and deleting a run that takes flags runs, tags and saved views with it.
Driven like ``tests/test_panel.py`` and ``tests/test_operators.py``."""

import numpy as np
import pytest
from test_panel import SCORES, _markdown, _presets, _rendered, _run_panel, _state_writes, _tag, scored  # noqa: F401
from test_panel_views import _notes

import ood_core as ood
from ood_core.fo import runs as fo_runs
from operators import review

#: the run scored again: other scores on the same samples (0.855 ... 0.09, the old top 4 cut 0.85 flags 2)
NEW_SCORES = [0.9 * s for s in SCORES][::-1]


@pytest.mark.parametrize("how", ["overwrite", "delete_and_score_again"])
def test_a_preset_cut_on_a_runs_old_scores_is_dropped_when_the_run_is_scored_again(scored, how):
    ds = scored
    state = {"run_key": "ood", **_tag("x"), **_presets("top_n", 4)}
    _, ops = _run_panel(ds, "apply_preset", state)
    state.update(_state_writes(ops))
    _, ops = _run_panel(ds, "on_change_input", state)
    out = _rendered(ops)
    state["threshold_ood_v1"] = out["type"]["properties"]["threshold_ood_v1"]["default"]  # the App keeps it
    assert _markdown(out, "flag_count").startswith("**4** of 20") and "(preset: top 4)" in _markdown(out, "flag_count")

    if how == "overwrite":  # e.g. OOD: score samples again with 'overwrite' ticked, or from a notebook
        fo_runs.write_and_record(ds, [("ood", NEW_SCORES + [None, None])], "ood", kind="ood_scores", overwrite=True)
    else:
        ood.delete_ood_run(ds, "ood")
        fo_runs.write_and_record(ds, [("ood", NEW_SCORES + [None, None])], "ood", kind="ood_scores")
    ds.reload()
    _, ops = _run_panel(ds, "on_change_input", state)
    out = _rendered(ops)
    text = _markdown(out, "flag_count")
    default = review.default_threshold(np.array(NEW_SCORES))
    # was: "**2** of 20 ... >= 0.8500 (preset: top 4)": the old run's cut, labelled as a top 4 it no longer is
    assert "preset" not in text and "set by hand" not in text and "(default: top 5%)" in text
    assert text.startswith(f"**{review.count_flagged(np.array(NEW_SCORES), default)}** of 20 scored samples flagged "
                           f"(`ood` >= {default:.4f}")
    sliders = [k for k in out["type"]["properties"] if k.startswith("threshold_ood")]
    assert sliders and all(k not in state for k in sliders)  # a new slider: the App's old value is not taken
    state[sliders[0]] = out["type"]["properties"][sliders[0]]["default"]
    _, ops = _run_panel(ds, "save_flags", state)  # saves what the panel showed, not the old run's 0.85
    assert _notes(ops, "success")
    assert ood.get_flag_info(ds, "ood_review_flag")["rule"]["threshold"] == default
    # the preset applied again cuts the new scores
    _, ops = _run_panel(ds, "apply_preset", state)
    state.update(_state_writes(ops))
    _, ops = _run_panel(ds, "on_change_input", state)
    assert _markdown(_rendered(ops), "flag_count").startswith("**4** of 20")
    assert "(preset: top 4)" in _markdown(_rendered(ops), "flag_count")


@pytest.mark.parametrize("stale", [{"run_version": "x"}, {"threshold_version_ood": "a"},
                                   {"threshold_version_ood": 1, "preset_ood": "top 4"},
                                   {"threshold_version_ood": 1, "preset_ood": {"threshold": "0.5"}},
                                   {"presets": {"preset": ["top_n"]}},
                                   {"flagged_stages": ["x"], "flagged_base": "[]"},
                                   {"flagged_stages": "not json", "flagged_base": "[]"},
                                   {"flagged_stages": "[]", "flagged_base": '[{"_cls": "no.such.Stage"}]'}])
def test_panel_state_of_another_type_is_ignored_not_raised(scored, stale):
    ds = scored
    for method in ("on_load", "show_flagged", "apply_preset", "on_change_input"):
        _, ops = _run_panel(ds, method, {"run_key": "ood", **stale})  # raised ValueError / AttributeError / TypeError
        out = _rendered(ops)
        assert _markdown(out, "flag_count").startswith("**2** of 20 scored samples flagged (`ood` >= 0.9500")
    _, ops = _run_panel(ds, "save_flags", {"run_key": "ood", **stale, **_tag("x")})
    assert _notes(ops, "success")
    assert ood.get_flag_info(ds, "ood_review_flag")["rule"]["threshold"] == 0.95


@pytest.mark.parametrize("tag", [["a", "b"], 5, {"tag": "a"}])
def test_a_tag_for_flags_that_is_no_text_is_refused_before_anything_is_written(scored, tag):
    ds = scored
    _, ops = _run_panel(ds, "save_flags", {"run_key": "ood", "threshold_ood": 0.9, "flags": {"flag_tag": tag}})
    (note,) = _notes(ops, "warning")  # was: 3 samples tagged "['a', 'b']" (the list's str), "5", "{'tag': 'a'}"
    assert f"'Tag for flags' is {tag!r}" in note and "not text" in note and "type a tag, e.g. 'ood'" in note
    ds.reload()
    assert not ds.has_field("ood_review_flag") and ds.count_sample_tags() == {}


def test_save_as_flags_on_a_view_says_how_many_it_flagged_there_not_the_whole_fields_count(scored):
    from operators.panel_state import threshold_state_key, view_signature

    ds = scored
    _run_panel(ds, "save_flags", {"run_key": "ood", "threshold_ood": 0.6, **_tag("x")})  # 11 flags, whole dataset
    view = ds.limit(10)  # scores 0.10 ... 0.60: the panel shows 1 flagged at 0.6
    state = {"run_key": "ood", threshold_state_key("ood", 0, view_signature(view)): 0.6, **_tag("x")}
    _, ops = _run_panel(ds, "on_change_input", state, view=view)
    assert _markdown(_rendered(ops), "flag_count").startswith("**1** of 10 scored samples flagged in the current view")
    _, ops = _run_panel(ds, "save_flags", state, view=view)
    (note,) = _notes(ops, "success")
    # was: "saved 11 flags in 'ood_review_flag' ...": the 10 kept outside the view counted as saved from this view
    assert note.startswith("saved 1 flags in 'ood_review_flag' (run 'ood_review_flag'), tagged 'x'; 10 samples "
                           "outside the current view keep the flags of an earlier save (11 in the field)")
    assert ood.get_flag_info(ds, "ood_review_flag")["num_flagged_in_view"] == 1


def test_the_threshold_written_in_the_panel_is_the_cut_it_counts_and_saves(scored):
    ds = scored
    ds.set_values("ood", [0.5] * 20 + [None, None])  # constant scores: the default flags none of them
    _, ops = _run_panel(ds, "on_load", {"run_key": "ood"})
    text = _markdown(_rendered(ops), "flag_count")
    # was: "**0** of 20 scored samples flagged (`ood` >= 0.5000 ...": every score is 0.5, so >= 0.5 flags all 20
    assert text.startswith("**0** of 20 scored samples flagged (`ood` >= 0.5000000000000001 (default: top 5%)")
    _run_panel(ds, "save_flags", {"run_key": "ood", **_tag("x")})
    saved = ood.get_flag_info(ds, "ood_review_flag")["rule"]["threshold"]
    assert repr(saved) == "0.5000000000000001" and ds.count_sample_tags() == {}
    _, ops = _run_panel(ds, "on_load", {"run_key": "ood", "threshold_ood": 0.5})  # a cut at a score: 4 decimals
    assert _markdown(_rendered(ops), "flag_count").startswith("**20** of 20 scored samples flagged (`ood` >= 0.5000 (")


def test_deleting_a_score_run_says_its_flags_runs_and_their_tags_go_too(scored):
    import fiftyone.operators as foo
    from form_helpers import props, uri

    ds = scored
    _run_panel(ds, "save_flags", {"run_key": "ood", "threshold_ood": 0.9, **_tag("ood")})  # the panel's own flags
    ood.flag_samples(ds, "ood", rule="top_n", value=5, flag_field="top5", tag="suspect")
    ds.select(ds.values("id")[0]).tag_samples("ood")  # by hand: stays
    warning = props("manage_ood_runs", ds, dict(action="delete", run_key="ood"))["delete_warning"].view.label
    # was: "This deletes the run record 'ood' and its fields: ood, ood_review_flag, top5. It cannot be undone.",
    # and then 3 'ood' and 5 'suspect' tags went with the flags runs, unannounced
    assert "flags runs deleted with it: 'ood_review_flag', 'top5'" in warning or \
        "flags runs deleted with it: 'top5', 'ood_review_flag'" in warning
    assert "tags removed: 'ood', 'suspect' where these flags added them (tags set by hand stay)" in warning
    kept = props("manage_ood_runs", ds, dict(action="delete", run_key="ood", delete_fields=False))
    assert "(their records only: their fields and tags stay)" in kept["delete_warning"].view.label
    out = foo.execute_operator(uri("manage_ood_runs"), dict(view=ds.view()),
                               params=dict(action="delete", run_key="ood", confirm_delete=True))
    assert "- tags removed: 'ood', 'suspect' where these flags added them" in out.result["report"]
    ds.reload()
    assert ds.count_sample_tags() == {"ood": 1} and ood.list_ood_runs(ds) == []


def test_deleting_an_audit_says_its_saved_views_go_too(scored):
    from form_helpers import props

    from ood_core.fo.audit_views import VIEW_MARKS, saved_view_mark

    ds = scored
    ds.save_view("aud-ood", ds.sort_by("ood", reverse=True))
    ds.save_view("aud-changed", ds.limit(3))
    marks = {"aud-ood": saved_view_mark(ds, "aud-ood"), "aud-changed": "changed since"}
    fo_runs.register_run(ds, "aud", kind="audit", fields=[], saved_views=["aud-ood", "aud-changed"],
                         **{VIEW_MARKS: marks})
    warning = props("manage_ood_runs", ds, dict(action="delete", run_key="aud"))["delete_warning"].view.label
    # was: "This deletes the run record 'aud' (no fields). It cannot be undone.", and then its saved view went
    assert warning == "This deletes the run record 'aud' (no fields); also removed: saved view 'aud-ood'. It cannot " \
                      "be undone."
    warning = props("manage_ood_runs", ds, dict(action="delete", run_key="aud", delete_fields=False))[
        "delete_warning"].view.label
    assert warning == "This deletes the run record 'aud' (no fields). It cannot be undone."
    ood.delete_ood_run(ds, "aud")
    assert ds.list_saved_views() == ["aud-changed"]  # what the warning said
