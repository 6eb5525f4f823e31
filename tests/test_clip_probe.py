"""The CLIP scorers used the way a FiftyOne user would, on a real dataset: each test failed before its fix.

- numpy numbers as settings (``seed=np.int64(1)`` from a sweep over ``np.arange``) were accepted, then the run
  stopped after all the work with a raw "TypeError: Object of type int64 is not JSON serializable";
  ``tau=np.float32(0.01)`` was refused as "not a positive number";
- a word list saved with a UTF-8 byte-order mark kept the mark on its first word, which then matched no ID class
  name: an ID class could become a negative label;
- a few-shot sample without a label stopped RAP with an error about ``few_shot_labels`` (a numpy-layer argument
  the user never passed) and a class named 'None', naming neither the sample nor the field;
- the App's result view said the samples without a stored CLIP embedding were skipped as "unreadable images".
"""

import numpy as np
import pytest

import ood_core as ood
from ood_core.clip.lexicon import read_word_list
from ood_core.errors import OODInputError
from ood_core.fo import runs as fo_runs
from clip_helpers import WORDS, small_clip_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def setup(dataset_factory, fashion_files, tiny_clip, tmp_path):
    """20 labelled Fashion-MNIST images, the tiny CLIP model, a 33-word list, a private text cache."""
    return small_clip_run(dataset_factory, fashion_files, tiny_clip, tmp_path)


def _plain(value):
    """Whether a recorded setting holds only Python numbers (no numpy scalar survived into the record)."""
    if isinstance(value, dict):
        return all(_plain(v) for v in value.values())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return not isinstance(value, np.generic)


def test_neglabel_numpy_number_settings_run_and_are_recorded_as_python_numbers(setup):
    ds, kw = setup
    ood.compute_neglabel_scores(ds, "nl", label_field="ground_truth", num_negatives=10, num_groups=2, seed=1,
                                percentile=95.0, **kw)
    ood.compute_neglabel_scores(ds, "nl_np", label_field="ground_truth", num_negatives=np.int64(10),
                                num_groups=np.int64(2), seed=np.int64(1), percentile=np.float32(95.0),
                                prediction_field="p_np", **kw)
    assert ds.values("nl_np") == ds.values("nl")
    params = fo_runs.get_ood_run_info(ds, "nl_np")["neglabel"]
    assert params["seed"] == 1 and type(params["seed"]) is int and type(params["num_groups"]) is int
    assert _plain(params) and _plain(fo_runs.load_ood_results(ds, "nl_np").params)
    # a float32 temperature is a positive number (it was refused as "not a positive number")
    ood.compute_neglabel_scores(ds, "nl_tau", label_field="ground_truth", num_negatives=10, num_groups=2, seed=1,
                                tau=np.float32(0.01), prediction_field=None, **kw)
    np.testing.assert_allclose(ds.values("nl_tau"), ds.values("nl"), rtol=1e-4, atol=1e-6)
    with pytest.raises(OODInputError, match="tau must be a positive number"):
        ood.compute_neglabel_scores(ds, "nl_bool", label_field="ground_truth", tau=True, prediction_field=None, **kw)


def test_adaneg_and_rap_numpy_number_settings_run_and_are_recorded(setup):
    ds, kw = setup
    common = dict(label_field="ground_truth", num_negatives=10, num_groups=2, **kw)
    ood.compute_adaneg_scores(ds, "ada", memory_size=2, gap=0.25, weight=0.5, **common)
    ood.compute_adaneg_scores(ds, "ada_np", memory_size=np.int64(2), gap=np.float32(0.25), weight=np.float32(0.5),
                              prediction_field=None, **common)
    assert ds.values("ada_np") == ds.values("ada")
    assert _plain(fo_runs.get_ood_run_info(ds, "ada_np")["adaneg"])
    rap = dict(common, k_per_class=1, words_per_sample=1, test_time=True)
    ood.compute_rap_scores(ds, "rap", num_crops=4, num_keep=2, seed=3, u1=0.25, u2=0.75, **rap)
    ood.compute_rap_scores(ds, "rap_np", num_crops=np.int64(4), num_keep=np.int64(2), seed=np.int64(3),
                           u1=np.float32(0.25), u2=np.float32(0.75), prediction_field=None, **rap)
    assert ds.values("rap_np") == ds.values("rap")
    info = fo_runs.get_ood_run_info(ds, "rap_np")
    assert _plain(info["rap"]) and type(info["rap"]["num_crops"]) is int
    assert fo_runs.load_ood_results(ds, "rap_np").thresholds == [0.25, 0.75]


def test_word_list_with_a_byte_order_mark_still_excludes_an_id_class_name(setup, tmp_path):
    ds, kw = setup
    path = tmp_path / "notepad.txt"  # Windows Notepad's "UTF-8 with BOM"; the first word is an ID class name
    path.write_bytes("\ufeffbag\n".encode() + "\n".join(WORDS).encode() + b"\n")
    assert read_word_list(path).words[:2] == ["bag", "dog"]
    ood.compute_neglabel_scores(ds, "nl", label_field="ground_truth", remove_id_names=True, num_negatives=10,
                                num_groups=2, **dict(kw, word_list=str(path)))
    res = fo_runs.load_ood_results(ds, "nl")
    assert res.excluded_words == ["bag"]
    assert not [w for w in res.negative_words if "bag" in w]


def test_rap_names_the_unlabelled_few_shot_samples(setup, tmp_path):
    ds, kw = setup
    unlabelled = ds.first()
    unlabelled["ground_truth"] = None
    unlabelled.tags = ["few"]
    unlabelled.save()
    ds.skip(5).limit(3).tag_samples("few")
    missing_weights = dict(kw, pretrained=str(tmp_path / "missing.safetensors"))  # refused before the model loads
    with pytest.raises(OODInputError, match=rf"1 of the 4 few-shot samples have no label in 'ground_truth'.*"
                                            rf"{unlabelled.id}.*crop_ranking='all_prompts'"):
        ood.compute_rap_scores(ds, "rap", label_field="ground_truth", few_shot="few", num_crops=4, num_keep=2,
                               num_negatives=10, num_groups=2, **missing_weights)
    assert not ds.has_field("rap") and "rap" not in ood.list_ood_runs(ds)
    # ranking by the best ID prompt needs no class: the unlabelled sample is a valid few-shot image
    summary = ood.compute_rap_scores(ds, "rap", label_field="ground_truth", few_shot="few", num_crops=4, num_keep=2,
                                     num_negatives=10, num_groups=2, crop_ranking="all_prompts", test_time=False,
                                     **kw)
    assert summary["num_few_shot"] == 4


def test_operator_report_says_why_samples_were_skipped(setup):
    import fiftyone.operators as foo

    import form_helpers as forms

    ds, kw = setup
    ood.compute_clip_embeddings(ds.limit(15), "clip", model_name=kw["model_name"], pretrained=kw["pretrained"],
                                progress=False)  # 5 samples added to the dataset since have no embedding
    params = dict(id_source="labels", id_labels="Bag, Coat", embeddings_field="clip", num_negatives=10,
                  num_groups=2, model_name=kw["model_name"], weights=kw["pretrained"], word_list=kw["word_list"])
    out = foo.execute_operator(forms.uri("compute_neglabel_scores"), dict(view=ds.view()),
                               params=dict(params, score_field="nl"))
    assert out.error is None, out.error
    report = out.result["report"]
    assert "samples scored: 15 of 20" in report
    assert "samples skipped: 5 without an embedding in `clip`" in report and "unreadable" not in report
    # encoding the images themselves, the skipped ones are the unreadable images
    gone = ds.skip(19).first()
    gone.filepath = "/nonexistent/gone.png"
    gone.save()
    del params["embeddings_field"]
    out = foo.execute_operator(forms.uri("compute_neglabel_scores"), dict(view=ds.view()),
                               params=dict(params, score_field="nl2", prediction_field="p2"))
    assert out.error is None, out.error
    assert "samples skipped: 1 (unreadable images)" in out.result["report"]


def test_rap_few_shot_given_as_samples_says_how_to_pass_them(setup, tmp_path):
    """A Sample as few_shot stopped the run with a raw "AttributeError: Sample has no field 'values'"."""
    ds, kw = setup
    missing_weights = dict(kw, pretrained=str(tmp_path / "missing.safetensors"))  # refused before the model loads
    ids = ds.values("id")[:3]
    for few_shot, kind in ((ds.first(), "Sample"), (ids, "list"), (ds.select(ids).first(), "SampleView")):
        with pytest.raises(OODInputError, match=rf"few_shot must be a sample tag \(str\) or a view of dataset .*got a "
                                                rf"{kind}.*few_shot=dataset\.select\(sample_ids\)"):
            ood.compute_rap_scores(ds, "rap", label_field="ground_truth", few_shot=few_shot, num_crops=4, num_keep=2,
                                   num_negatives=10, num_groups=2, **missing_weights)
    assert not ds.has_field("rap") and "rap" not in ood.list_ood_runs(ds)


def test_an_empty_word_list_path_is_named(setup, tmp_path):
    """word_list='' was read as the current folder: "word_list file '.' does not exist"."""
    ds, kw = setup
    for empty in ("", " "):
        with pytest.raises(OODInputError, match=rf"word_list='{empty}' is not a file path; .*word_list=None for "
                                                "WordNet"):
            ood.compute_neglabel_scores(ds, "nl", label_field="ground_truth",
                                        **dict(kw, word_list=empty, pretrained=str(tmp_path / "missing.safetensors")))
    assert not ds.has_field("nl")
