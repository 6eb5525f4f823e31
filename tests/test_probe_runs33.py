"""Run records seen across processes and views, and the review panel's threshold slider when its run is scored
again: a process that already holds a dataset while another one (a second notebook, the App) records, deletes,
renames or replaces runs, or deletes the dataset; a run asked of a patches view; a slider the curator never moved.
Other processes are real ones (``python -c`` against the tests' own mongod); the panel is driven like
``tests/test_panel.py``."""

import numpy as np
import pytest
from test_panel import SCORES, _markdown, _rendered, _run_panel, _state_writes, scored  # noqa: F401

import ood_core as ood
from fault_helpers import in_another_process
from ood_core.errors import OODInputError
from ood_core.fo import runs as fo_runs
from operators import review


def _score(ds, key, scores, **kw):
    fo_runs.write_and_record(ds, [(key, list(scores))], key, kind="ood_scores", **kw)


def test_runs_another_process_deleted_renamed_recorded_or_replaced_are_listed_as_they_are_now(scored):
    ds = scored  # this process holds the dataset (and has read its runs) all along
    _score(ds, "b", [0.5] * len(ds), detector={"method": "knn", "k": 1})
    _score(ds, "c", [0.5] * len(ds), detector={"method": "knn", "k": 1})
    assert ood.list_ood_runs(ds) == ["b", "c", "ood"] and ood.get_ood_run_info(ds, "c")["detector"]["k"] == 1
    in_another_process(ds, "ood.delete_ood_run(ds, 'ood')\nood.rename_ood_run(ds, 'b', 'b2')\n"
                            "fo_runs.write_and_record(ds, [('d', [0.1] * len(ds))], 'd', kind='ood_scores')\n"
                            "fo_runs.write_and_record(ds, [('c', [0.2] * len(ds))], 'c', kind='ood_scores', "
                            "overwrite=True, detector={'method': 'knn', 'k': 2})\n")
    # was: ['b', 'c', 'ood'] (the runs as this process first read them) until ds.reload()
    assert ood.list_ood_runs(ds) == ["b2", "c", "d"]
    assert ood.list_ood_runs(ds, kind="ood_scores") == ["b2", "c", "d"]
    assert ood.get_ood_run_info(ds, "c")["detector"]["k"] == 2  # was 1: the replaced record
    assert ood.get_ood_run_info(ds, "b2")["fields"] == ["b"]
    with pytest.raises(OODInputError, match="no fiftyone-ood run 'ood'.*existing runs: \\['b2', 'c', 'd'\\]"):
        ood.get_ood_run_info(ds, "ood")
    assert review.score_runs(ds) == ["b2", "c", "d"]  # what the App's forms and the panel offer


def test_unsaved_sample_edits_survive_a_listing_that_reads_the_runs_again(scored):
    ds = scored
    sample = ds.first()
    sample["note"] = "typed, not saved yet"
    in_another_process(ds, "ood.rename_ood_run(ds, 'ood', 'ood2')\n")
    assert ood.list_ood_runs(ds) == ["ood2"]
    assert sample["note"] == "typed, not saved yet"  # a whole dataset.reload() would have dropped it
    sample.save()
    assert ds.first()["note"] == "typed, not saved yet"


def test_a_run_asked_of_a_patches_view_names_the_dataset_that_holds_it(scored):
    import fiftyone as fo

    ds = scored
    for sample in ds.iter_samples(autosave=True, progress=False):
        sample["gt"] = fo.Detections(detections=[fo.Detection(label="a", bounding_box=[0.1, 0.1, 0.5, 0.5])])
    patches = ds.to_patches("gt")
    # was: "no fiftyone-ood run 'ood' on dataset '2026.12.06.10.46.43.300312'; existing runs: []" (the patches
    # view's temporary dataset), while its dataset holds the run
    for call in (lambda: ood.get_ood_run_info(patches, "ood"), lambda: fo_runs.load_ood_results(patches, "ood"),
                 lambda: ood.rename_ood_run(patches, "ood", "ood2"), lambda: ood.delete_ood_run(patches, "ood")):
        with pytest.raises(OODInputError, match=f"generated view .* of dataset '{ds.name}'.*pass the dataset"):
            call()
    assert ood.list_ood_runs(ds) == ["ood"] and ds.has_field("ood")


# --------------------------------------------------------------------------- the review panel's slider

#: the run scored again: the old default (0.95) lies inside the new scores' range and flags 3 of them, the new
#: default (top 5%) flags 2
NEW_SCORES = [round(1.2 * s - 0.1, 6) for s in SCORES]


def _drawn_and_stored(ds, state):
    """Render the panel, then do what the App does with a newly drawn slider: store its default and call its
    on_change (``on_change_input``); the server's state writes are kept in ``state``. Returns the rendering."""
    _, ops = _run_panel(ds, "on_change_input", state)
    out = _rendered(ops)
    state.update(_state_writes(ops))
    sliders = [k for k in out["type"]["properties"] if k.startswith("threshold_ood")]
    assert len(sliders) == 1
    if sliders[0] not in state:
        state[sliders[0]] = out["type"]["properties"][sliders[0]]["default"]
        _, ops = _run_panel(ds, "on_change_input", state)
        state.update(_state_writes(ops))
        out = _rendered(ops)
    return out


def _rescore(ds, how, scores):
    if how == "overwrite":
        _score(ds, "ood", scores + [None, None], overwrite=True)
    else:
        ood.delete_ood_run(ds, "ood")
        _score(ds, "ood", scores + [None, None])
    ds.reload()


@pytest.mark.parametrize("how", ["overwrite", "delete_and_score_again"])
def test_a_slider_never_moved_follows_the_run_scored_again_and_a_moved_one_stays(scored, how):
    ds = scored
    state = {"run_key": "ood"}
    out = _drawn_and_stored(ds, state)
    assert _markdown(out, "flag_count").startswith("**2** of 20 scored samples flagged (`ood` >= 0.9500 (default")

    _rescore(ds, how, NEW_SCORES)
    new = np.array(NEW_SCORES)
    default = review.default_threshold(new)
    out = _drawn_and_stored(ds, state)
    text = _markdown(out, "flag_count")
    # was: "**3** of 20 scored samples flagged (`ood` >= 0.9500 (set by hand)": the old scores' default, kept by
    # the App in the slider it first drew, taken for the curator's threshold
    assert text.startswith(f"**{review.count_flagged(new, default)}** of 20 scored samples flagged (`ood` >= "
                           f"{default:.4f} (default: top 5%)"), text
    _run_panel(ds, "save_flags", dict(state, flags={"flag_tag": ""}))
    assert ood.get_flag_info(ds, "ood_review_flag")["rule"]["threshold"] == default  # what it showed is saved

    # the curator moves this slider: scored again, the threshold stays theirs
    (slider,) = [k for k in out["type"]["properties"] if k.startswith("threshold_ood")]
    state[slider] = 0.66
    _, ops = _run_panel(ds, "on_change_input", state)
    assert not _state_writes(ops)  # a moved slider: nothing to note
    _rescore(ds, how, SCORES)
    out = _drawn_and_stored(ds, state)
    assert _markdown(out, "flag_count").startswith("**8** of 20 scored samples flagged (`ood` >= 0.6600 (set by hand)")
    assert slider in out["type"]["properties"]


def test_a_slider_record_of_another_type_is_ignored(scored):
    ds = scored
    for record in ("x", {"key": 5}, {"key": "threshold_other", "run": "t", "start": 0.5},
                   {"key": "threshold_ood", "run": "t", "start": "0.5"}):
        state = {"run_key": "ood", "threshold_ood": 0.95, "drawn_threshold_ood": record}
        _, ops = _run_panel(ds, "on_change_input", state)
        assert _markdown(_rendered(ops), "flag_count").startswith("**2** of 20 scored samples flagged (`ood` >= 0.95")


def test_a_dataset_another_process_deleted_is_named_not_listed_with_its_old_runs(scored):
    ds = scored
    assert ood.list_ood_runs(ds) == ["ood"]
    in_another_process(ds, "ds.delete()\n")
    # was: ['ood'] and the run's record, read from what this process held
    for call in (lambda: ood.list_ood_runs(ds), lambda: ood.get_ood_run_info(ds, "ood"),
                 lambda: fo_runs.load_ood_results(ds, "ood"),
                 lambda: ood.flag_samples(ds, "ood", rule="top_n", value=2)):  # (was "an empty view")
        with pytest.raises(OODInputError, match=f"dataset '{ds.name}' was deleted \\(by another process.*"
                                                "fo.list_datasets\\(\\)"):
            call()
