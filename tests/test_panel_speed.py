"""How often the "OOD review" panel reads the view, and that what it keeps between App events is never stale.

Reading a column scans every document of the view (about 1 s at 200,000 samples with an embeddings field), so
the panel reads each column once per App request, keeps the read between events while the dataset does not
change, and hands its ids and scores to ``flag_samples`` on Save as flags. The reads are counted on FiftyOne's
own ``values()`` (every read of the panel goes through it); timings are in the report, not here.
"""

import numpy as np
import pytest
from test_panel import SCORES, _markdown, _presets, _rendered, _run_panel, _slider, _tag, scored  # noqa: F401


@pytest.fixture
def reads(monkeypatch):
    """The fields of every ``values()`` call on a sample collection, in order (a spy: the calls still run)."""
    import fiftyone.core.collections as foc

    calls = []
    original = foc.SampleCollection.values

    def values(self, field_or_expr, *args, **kwargs):
        calls.append(list(field_or_expr) if isinstance(field_or_expr, (list, tuple)) else [field_or_expr])
        return original(self, field_or_expr, *args, **kwargs)

    monkeypatch.setattr(foc.SampleCollection, "values", values)
    return calls


def _reading(calls, field):
    return [c for c in calls if field in c]


def _flag_count(ops):
    return _markdown(_rendered(ops), "flag_count")


def test_a_slider_move_reads_the_scores_once_and_the_next_one_not_at_all(scored, reads):
    state = {"run_key": "ood", _slider("ood"): 0.6}
    _, ops = _run_panel(scored, "on_change_input", state)
    assert len(_reading(reads, "ood")) == 1 and not _reading(reads, "id")  # no ids: the render does not use them
    assert _flag_count(ops).startswith("**11** of 20 scored samples flagged")
    reads.clear()
    _, ops = _run_panel(scored, "on_change_input", dict(state, **{_slider("ood"): 0.9}))
    assert reads == [] and _flag_count(ops).startswith("**3** of 20")


def test_ground_truth_is_read_with_the_scores_in_one_pass(scored, reads):
    _run_panel(scored, "on_change_input", {"run_key": "ood", "gt_field": "is_ood"})
    assert _reading(reads, "ood") == [["ood", "is_ood"]]


@pytest.mark.parametrize("method", ["apply_preset", "show_flagged", "save_flags"])
def test_handler_and_render_share_one_read(scored, reads, method):
    state = dict({"run_key": "ood", _slider("ood"): 0.6}, **_presets("top_n", 3), **_tag("ood"))
    _run_panel(scored, method, state)
    # save_flags reads ids and scores once more, in one pass, and flag_samples reads neither again
    expected = [["ood"], ["id", "ood"]] if method == "save_flags" else [["ood"]]
    assert _reading(reads, "ood") == expected


def test_a_changed_score_is_shown_at_once(scored):
    state = {"run_key": "ood", _slider("ood"): 0.6}
    _, ops = _run_panel(scored, "on_change_input", state)
    assert _flag_count(ops).startswith("**11** of 20")
    scored.set_values("ood", [0.0] * 12 + SCORES[12:] + [None, None])  # a hand edit through FiftyOne
    _, ops = _run_panel(scored, "on_change_input", state)
    assert _flag_count(ops).startswith("**8** of 20")
    histogram = _rendered(ops)["type"]["properties"]["histogram"]["view"]["data"]
    assert sum(histogram[0]["y"]) == 20 and histogram[0]["x"][0] < 0.02  # the zeros are in the plot
    sample = scored.first()
    sample["ood"] = None  # one sample edited and saved: unscored now
    sample.save()
    _, ops = _run_panel(scored, "on_change_input", state)
    assert _flag_count(ops).startswith("**8** of 19")


def test_rescoring_deleting_and_tagging_are_shown_at_once(scored):
    from ood_core.fo import runs as fo_runs

    state = {"run_key": "ood", _slider("ood"): 0.6}
    _run_panel(scored, "on_change_input", state)
    fo_runs.write_and_record(scored, [("ood", np.linspace(2, 3, 22).tolist())], "ood", kind="ood_scores",
                             overwrite=True, detector={"method": "knn", "k": 3})  # the product's own write path
    state[_slider("ood")] = 2.5
    _, ops = _run_panel(scored, "on_change_input", state)
    assert _flag_count(ops).startswith("**11** of 22")
    scored.delete_samples(scored.limit(2))
    _, ops = _run_panel(scored, "on_change_input", state)
    assert _flag_count(ops).startswith("**11** of 20")
    scored.limit(3).tag_samples("ood_confirmed")
    _, ops = _run_panel(scored, "on_change_input", state)
    assert _markdown(_rendered(ops), "review_counts").startswith("Reviewed in this view: **3** confirmed")


def test_each_view_keeps_its_own_read(scored):
    view = scored.match_tags("x")  # empty first, then tagged samples join it
    state = {"run_key": "ood", _slider("ood"): 0.6, _slider("ood", view): 0.85}
    _, ops = _run_panel(scored, "on_change_input", state)
    assert _flag_count(ops).startswith("**11** of 20")
    _, ops = _run_panel(scored, "on_change_input", state, view=view)
    assert _flag_count(ops).startswith("**0** of 0")
    scored.skip(15).tag_samples("x")  # 5 scored + 2 unscored samples
    _, ops = _run_panel(scored, "on_change_input", state, view=view)
    assert _flag_count(ops).startswith("**4** of 5") and "(7 of 22 samples)" in _flag_count(ops)


def test_flag_samples_with_the_callers_scores_writes_what_it_would_read(scored):
    import ood_core as ood
    from ood_core.errors import OODInputError

    ids, raw = scored.values("id"), scored.values("ood")
    mine = ood.flag_samples(scored, "ood", rule="top_n", value=3, flag_field="mine", item_scores=(ids, raw))
    read = ood.flag_samples(scored, "ood", rule="top_n", value=3, flag_field="read")
    assert scored.values("mine") == scored.values("read") and mine["threshold"] == read["threshold"]
    assert mine["num_flagged"] == read["num_flagged"] == 3
    with pytest.raises(OODInputError, match="2 ids but 1 scores"):
        ood.flag_samples(scored, "ood", rule="top_n", value=3, flag_field="bad", item_scores=(ids[:2], raw[:1]))


def test_save_as_flags_from_a_view_flags_that_view(scored):
    view = scored.skip(10)
    state = dict({"run_key": "ood", _slider("ood", view): 0.9}, **_tag("ood"))
    _, ops = _run_panel(scored, "save_flags", state, view=view)
    note = [p["message"] for name, p in ops if name.endswith("notify")][-1]
    assert note.startswith("saved 3 flags in 'ood_review_flag'") and "3 samples carry 'ood' now" in note
    flags = scored.values("ood_review_flag")
    assert flags[:10] == [None] * 10 and sum(bool(f) for f in flags) == 3
    assert np.array_equal(np.array(SCORES)[10:] >= 0.9, np.array(flags[10:20], dtype=bool))
