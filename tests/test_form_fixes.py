"""Form bugs found by driving the App's forms like a user: each test shows a form that crashed, accepted what the
run then refused (after Execute, often with advice the user could not follow) or a result view that said something
false, and checks that the form now refuses on the field, with the run's reason and a fix the user can do."""

import numpy as np
import pytest

import form_helpers as forms
import ood_core as ood
from ood_core.errors import OODInputError


def _score(**params):
    return dict(dict(embeddings_field="vec", score_field="s", show_advanced=False, overwrite=False, delegate=False),
                **params)


# --------------------------------------------------------------------------- 1. a label field that holds no labels


def test_a_label_field_without_labels_is_refused_on_the_field_not_a_crash(form_dataset):
    ds = form_dataset
    ds.set_values("labelstr", ["a"] * len(ds))
    for method in ("knn", "mahalanobis", "pyramid_knn", "weighted_label_vote", "class_lof"):
        props = forms.props("score_ood", ds, _score(method=method, reference_tag="trusted", label_field="labelstr"))
        message = forms.invalid(props).get("label_field", "")
        assert "'labelstr'" in message and "StringField" in message, (method, message)
        assert "expected a Classification field" in message and "pick 'ground_truth'" in message, method
    # from Python: the operator call is refused on the field too (no NameError)
    assert "label_field" in forms.refusal("score_ood", ds, _score(method="knn", label_field="labelstr"))
    props = forms.props("audit_dataset", ds, dict(label_field="labelstr", reference_tag="trusted"))
    assert forms.invalid(props).get("label_field") == ("field 'labelstr' has type StringField, but the audit's "
                                                       "wrong-label check needs a Classification field: pick "
                                                       "'ground_truth'")


# --------------------------------------------------------------------------- 2. a fit set of one item


FIT_METHODS = ("knn", "lof", "mahalanobis", "mahalanobis_pp", "level_fusion", "pyramid_knn")


def test_a_reference_of_one_sample_is_refused_whatever_k_with_a_fix_the_user_can_do(form_dataset):
    ds = form_dataset
    ds.select(ds.match_tags("trusted").first().id).tag_samples("solo")
    test = ds.match_tags("test")
    message = ("the reference (samples tagged 'solo') has only 1 item(s) with an embedding; every method needs at "
               "least 2 (each item is also scored with the others, itself left out): tag more samples 'solo'")
    for method in FIT_METHODS:
        with pytest.raises(OODInputError) as sdk:
            ood.compute_ood_scores(test, "vec", "s", method=method, reference="solo", label_field="ground_truth",
                                   progress=False)
        assert str(sdk.value) == message, method
        props = forms.props("score_ood", ds, _score(method=method, reference_tag="solo",
                                                    label_field="ground_truth"), view=test)
        assert forms.invalid(props) == {"reference_tag": message}, method
    assert not forms.invalid(forms.props("score_ood", ds, _score(method="knn", reference_tag="trusted",
                                                                 label_field="ground_truth"), view=test))


def test_an_unsupervised_run_on_one_sample_is_refused_by_the_form(form_dataset):
    ds = form_dataset
    one = ds.match_tags("test").limit(1)
    for method in FIT_METHODS + ("weighted_label_vote",):
        props = forms.props("score_ood", ds, _score(method=method, reference_tag=None, label_field="ground_truth"),
                            view=one)
        invalid = forms.invalid(props)
        assert list(invalid) == ["fit_set_too_small"], (method, invalid)
        assert invalid["fit_set_too_small"].startswith("the scored set has only 1 item(s) with an embedding; every "
                                                       "method needs at least 2"), method
        assert "k must be < 1" not in invalid["fit_set_too_small"]
    with pytest.raises(OODInputError, match="score a larger view") as sdk:
        ood.compute_ood_scores(one, "vec", "s", method="knn", label_field="ground_truth", progress=False)
    assert "k must be < 1" not in str(sdk.value)
    # a wrong-label method takes no reference: its fix does not offer one
    with pytest.raises(OODInputError) as sdk:
        ood.compute_label_issues(one, "ground_truth", "vec", "li", progress=False)
    assert str(sdk.value).endswith(": score a larger view")


def test_pyramid_knn_does_not_advise_knn_for_a_single_reference_sample():
    from ood_core.detectors import make_detector

    with pytest.raises(OODInputError) as error:
        make_detector("pyramid_knn").fit(np.random.default_rng(0).normal(size=(1, 8)).astype(np.float32))
    assert "needs at least 2" in str(error.value) and "knn" not in str(error.value).split("pyramid_knn", 1)[1]


# --------------------------------------------------------------------------- 3. a reference without embeddings


def test_a_reference_tag_without_embeddings_is_refused_and_named(form_dataset):
    ds = form_dataset
    ds.match_tags("trusted").limit(3).tag_samples("noemb")
    ds.set_values("vec_part", [None if "noemb" in t else v for t, v in zip(ds.values("tags"), ds.values("vec"))])
    test = ds.match_tags("test")
    params = _score(embeddings_field="vec_part", method="knn", reference_tag="noemb", label_field="ground_truth")
    props = forms.props("score_ood", ds, params, view=test)
    assert forms.invalid(props) == {"reference_tag": "none of the samples tagged 'noemb' has an embedding in "
                                                     "'vec_part'; compute embeddings for them or choose another tag"}
    for method in ("knn", "mahalanobis"):
        with pytest.raises(OODInputError) as sdk:
            ood.compute_ood_scores(test, "vec_part", "s", method=method, reference="noemb",
                                   label_field="ground_truth", progress=False)
        assert str(sdk.value) == ("none of the samples tagged 'noemb' has an embedding in 'vec_part'; compute "
                                  "embeddings for them or pass another reference"), method


# --------------------------------------------------------------------------- 4. per-class LOF


def test_per_class_lof_k_is_checked_against_every_class(form_dataset):
    ds = form_dataset  # 10 classes of 4 samples
    params = _score(method="class_lof", label_field="ground_truth")
    for k in (4, 10, 39):
        message = forms.invalid(forms.props("score_ood", ds, dict(params, k=k))).get("k", "")
        assert message.startswith(f"k={k} but 10 of the 10 classes of the scored set have at most k item(s) (the "
                                  "smallest has 4)"), (k, message)
        assert message.endswith("lower k to at most 3, or drop or merge those classes")
        assert "Path: k" in forms.refusal("score_ood", ds, dict(params, k=k))  # before Execute, no longer by the run:
        with pytest.raises(OODInputError, match=f"per-class LOF with k={k} needs more than k samples in every class"):
            ood.compute_label_issues(ds, "ground_truth", "vec", "li", method="class_lof", k=k, progress=False)
    assert not forms.invalid(forms.props("score_ood", ds, dict(params, k=3)))
    assert forms.execute("score_ood", ds, dict(params, k=3)).result["num_scored"] == 40


def test_per_class_lof_k_of_objects_is_checked_against_every_class(form_images, session_extractor):
    import fiftyone as fo

    ds = form_images
    ds.set_values("objs", [fo.Detections(detections=[fo.Detection(label=g.label, bounding_box=[0, 0, .9, .9])])
                           for g in ds.values("ground_truth")])
    ood.compute_pyramid_embeddings(ds, "oemb", model_name="tf_efficientnet_lite0", levels=[1], grid=1,
                                   patches_field="objs")
    params = dict(embeddings_field="oemb", score_field="os", method="class_lof", label_field="objs")
    message = forms.invalid(forms.props("score_ood", ds, dict(params, k=4))).get("k", "")
    assert message.startswith("k=4 but 10 of the 10 classes of the scored set have at most k item(s)"), message
    assert "Path: k" in forms.refusal("score_ood", ds, dict(params, k=4))
    with pytest.raises(OODInputError, match="per-class LOF with k=4 needs more than k samples in every class"):
        ood.compute_label_issues(ds, "objs", "oemb", "li", method="class_lof", k=4, progress=False)
    assert not forms.invalid(forms.props("score_ood", ds, dict(params, k=3)))


# --------------------------------------------------------------------------- 5. empty and too small targets


def test_forms_refuse_an_empty_target_before_execute(form_dataset, tiny_clip):
    ds = form_dataset
    empty = ds.match_tags("no-such-tag")
    for name, params in (("score_ood", _score()), ("audit_dataset", dict(embeddings_field="vec", audit_key="a0")),
                         ("compute_neglabel_scores", dict(score_field="n")),
                         ("compute_adaneg_scores", dict(score_field="n")),
                         ("compute_rap_scores", dict(score_field="n", few_shot_tag="trusted")),
                         ("compute_pyramid_embeddings", dict(embeddings_field="e"))):
        props = forms.props(name, ds, params, view=empty)
        assert forms.invalid(props).get("empty_target", "").startswith("the chosen target has no samples"), name
        message = forms.refusal(name, empty, params)
        assert "empty_target" in message and "nothing to process" not in message, name


def test_audit_form_refuses_a_target_of_one_sample(form_dataset):
    ds = form_dataset
    one = ds.limit(1)
    params = dict(embeddings_field="vec", audit_key="a1")
    message = forms.invalid(forms.props("audit_dataset", ds, params, view=one)).get("small_target", "")
    assert message.startswith("the audit needs at least 2 samples"), message
    assert "the chosen target has 1" in message
    assert "ood.audit needs at least 2" not in forms.refusal("audit_dataset", one, params)
    assert "small_target" not in forms.props("audit_dataset", ds, params, view=ds.limit(2))


# --------------------------------------------------------------------------- 6. CLIP number inputs


@pytest.fixture
def clip_params(tiny_clip_params):
    return dict(tiny_clip_params, label_field="ground_truth", num_negatives=8, num_groups=2)


def test_clip_forms_take_a_cleared_number_as_its_default_and_refuse_text(form_dataset, clip_params):
    ds = form_dataset
    for name, field in (("compute_neglabel_scores", "percentile"), ("compute_neglabel_scores", "tau"),
                        ("compute_adaneg_scores", "weight"), ("compute_adaneg_scores", "gap"),
                        ("compute_rap_scores", "lambda1"), ("compute_rap_scores", "eta")):
        base = dict(clip_params, score_field="x", show_advanced=True, few_shot_tag="trusted")
        assert not forms.invalid(forms.props(name, ds, dict(base, **{field: None}))), (name, field)
        invalid = forms.invalid(forms.props(name, ds, dict(base, **{field: "95"})))
        assert list(invalid) == [field] and invalid[field].startswith(f"{field}='95' is not a number"), invalid
    props = forms.props("compute_rap_scores", ds, dict(clip_params, few_shot_tag="trusted", show_advanced=True,
                                                       num_crops=2.5))
    assert forms.invalid(props)["num_crops"].startswith("num_crops=2.5 is not a whole number")


def test_clip_runs_with_a_cleared_number_use_its_default(form_dataset, clip_params, one_torch_thread):
    from ood_core.fo import runs as fo_runs

    ds = form_dataset
    forms.execute("compute_neglabel_scores", ds, dict(clip_params, score_field="n1", prediction_field="p1",
                                                 show_advanced=True, tau=None, percentile=None))
    info = fo_runs.get_ood_run_info(ds, "n1")
    assert info["neglabel"]["tau"] == 0.01 and info["neglabel"]["percentile"] == 95.0
    forms.execute("compute_adaneg_scores", ds, dict(clip_params, score_field="a1", prediction_field="p2",
                                               show_advanced=True, weight=None))
    assert fo_runs.get_ood_run_info(ds, "a1")["adaneg"]["weight"] == ood.compute_adaneg_scores.__kwdefaults__[
        "weight"]
    forms.execute("compute_rap_scores", ds, dict(clip_params, score_field="r1", prediction_field="p3",
                                            few_shot_tag="trusted", show_advanced=True, lambda1=None, num_crops=2,
                                            num_keep=1, test_time=False))
    assert fo_runs.get_ood_run_info(ds, "r1")["rap"]["lambdas"][0] == 0.2


def test_rap_form_checks_the_signs_its_labels_give(form_dataset, clip_params):
    ds = form_dataset
    base = dict(clip_params, score_field="r", few_shot_tag="trusted", show_advanced=True)
    for field, bad, good in (("lambda1", -0.2, 0.5), ("lambda2", 0.2, -0.5), ("lambda3", 0.0, -2.0)):
        invalid = forms.invalid(forms.props("compute_rap_scores", ds, dict(base, **{field: bad})))
        assert list(invalid) == [field] and invalid[field].startswith(f"{field} must be"), (field, invalid)
        assert not forms.invalid(forms.props("compute_rap_scores", ds, dict(base, **{field: good}))), field


# --------------------------------------------------------------------------- 7. NegLabel num_negatives


def test_neglabel_forms_refuse_more_negatives_than_the_word_list_holds(form_dataset, clip_params):
    ds = form_dataset
    for name in ("compute_neglabel_scores", "compute_adaneg_scores"):
        params = dict(clip_params, score_field="n", show_advanced=True, num_negatives=100)
        invalid = forms.invalid(forms.props(name, ds, params))
        assert list(invalid) == ["num_negatives"], (name, invalid)
        assert invalid["num_negatives"].startswith("num_negatives=100 is larger than the 22 candidate words"), name
        assert not forms.invalid(forms.props(name, ds, dict(params, num_negatives=21))), name
    # from Python, with the paper's settings hidden: the form shows the refusal of the hidden input
    props = forms.props("compute_neglabel_scores", ds, dict(clip_params, score_field="n", num_negatives=100))
    assert list(forms.invalid(props)) == ["num_negatives_error"]
    assert "('Number of negative labels (optional)' is under 'Show the papers' hyper-parameters')" in \
        props["num_negatives_error"].view.label
    message = forms.refusal("compute_neglabel_scores", ds, dict(clip_params, score_field="n", num_negatives=100))
    assert "Path: num_negatives_error" in message and "must be an integer in [1, 22]" not in message


# --------------------------------------------------------------------------- 8. RAP with a Detections field


def test_rap_form_refuses_a_detections_field_where_the_run_needs_image_classes(form_dataset, clip_params):
    import fiftyone as fo

    ds = form_dataset
    ds.set_values("objs", [fo.Detections(detections=[fo.Detection(label=g.label, bounding_box=[0, 0, .9, .9])])
                           for g in ds.values("ground_truth")])
    base = dict(clip_params, score_field="r", label_field="objs", id_source="label_field")
    props = forms.props("compute_rap_scores", ds, dict(base, few_shot_mode="k_per_class", k_per_class=1))
    message = forms.invalid(props).get("label_field", "")
    assert message == ("field 'objs' has type Detections, but picking k images per class (k_per_class) needs a "
                       "Classification field: pick 'ground_truth', or pick the few-shot images by tag"), message
    assert "k_per_class" in forms.refusal("compute_rap_scores", ds, dict(base, few_shot_mode="k_per_class"))
    props = forms.props("compute_rap_scores", ds, dict(base, few_shot_mode="tag", few_shot_tag="trusted"))
    assert list(forms.invalid(props)) == ["crop_ranking_needs_classes"]
    assert "a Detections field" in props["crop_ranking_needs_classes"].view.label
    assert not forms.invalid(forms.props("compute_rap_scores", ds, dict(
        base, few_shot_mode="tag", few_shot_tag="trusted", show_advanced=True, crop_ranking="all_prompts")))


# --------------------------------------------------------------------------- 9. the result view of a score run


def test_score_result_view_says_what_k_and_the_p_values_were_computed_from(form_dataset):
    ds = form_dataset
    report = forms.execute("score_ood", ds, _score(embeddings_field="vec40", score_field="u", method="knn",
                                              reference_tag=None, label_field="ground_truth")).result["report"]
    assert "chosen by 'auto' from the classes of the scored samples" in report
    assert "from the trusted classes" not in report and "than the trusted samples" not in report
    assert "- p-values: `u_pvalue` (small = more unusual than most of the scored samples" in report
    report = forms.execute("score_ood", ds, _score(embeddings_field="vec40", score_field="t", method="knn",
                                              reference_tag="trusted")).result["report"]
    assert "chosen by 'auto' from the number of trusted samples" in report
    assert "(small = more unusual than the trusted samples)" in report
    report = forms.execute("score_ood", ds, _score(embeddings_field="vec40", score_field="c", method="knn",
                                              reference_tag="trusted", label_field="ground_truth")).result["report"]
    assert "chosen by 'auto' from the trusted classes" in report


def test_audit_form_refuses_an_export_folder_that_would_hold_the_report(form_dataset, tmp_path):
    """The SDK refuses it before writing anything (tests/test_audit_safety.py); the form says so on the field."""
    out = tmp_path / "out"
    params = dict(report_path=str(out / "r.html"), export_dir=str(out))
    props = forms.props("audit_dataset", form_dataset, params)
    assert props["export_dir"].invalid
    assert props["export_dir"].error_message.startswith(f"export_dir={str(out)!r} would hold the report")
    props = forms.props("audit_dataset", form_dataset, dict(params, export_dir=str(tmp_path / "elsewhere")))
    assert not props["export_dir"].invalid


def test_score_form_refuses_replacing_from_a_view_what_the_run_would_refuse(form_dataset):
    """A wrong-label run, or an OOD run scored without a trusted reference, is never replaced from a view (the
    samples outside it would keep scores from another set): refused on the score field, before Execute."""
    ds = form_dataset
    ood.compute_label_issues(ds, "ground_truth", "vec", "li", method="label_agreement", k=3)
    ood.compute_ood_scores(ds, "vec", "u", method="knn", k=2)  # no reference: the set is its own
    view = ds.limit(10)
    for params, named in ((dict(method="label_agreement", label_field="ground_truth", score_field="li", k=3),
                           "run 'li': a wrong-label score weighs each sample's label"),
                          (dict(method="knn", score_field="u", k=2, reference_tag="trusted"),
                           "run 'u': without a trusted reference the scored samples are their own reference")):
        params = dict(embeddings_field="vec", overwrite=True, **params)
        assert forms.invalid(forms.props("score_ood", ds, params, view=view)).get("score_field", "").startswith(
            named)
        assert "score_field" not in forms.invalid(forms.props("score_ood", ds, params))  # the whole dataset: fine
        assert forms.refusal("score_ood", view, params)


def test_score_form_refuses_replacing_from_a_view_with_other_settings(form_dataset):
    """Other k, other trusted samples, other embeddings or labels than the run's: refused on the score field,
    naming what differs, as the run refuses before scoring; the run's own settings are accepted."""
    ds = form_dataset
    ds.set_values("vec2", ds.values("vec"))
    ood.compute_ood_scores(ds, "vec", "s", method="knn", k=3, reference="trusted", progress=False)
    view = ds.match_tags("test").limit(6)
    same = dict(embeddings_field="vec", method="knn", score_field="s", k=3, reference_tag="trusted", overwrite=True)
    assert "score_field" not in forms.invalid(forms.props("score_ood", ds, same, view=view))
    for change, named in (({"k": 2}, "other detector"), ({"embeddings_field": "vec2"}, "other embeddings_field"),
                          ({"method": "mahalanobis"}, "other detector")):
        params = dict(same, **change)
        message = forms.invalid(forms.props("score_ood", ds, params, view=view)).get("score_field", "")
        assert message.startswith("run 's' was computed with other") and named in message, (change, message)
        assert "score_field" not in forms.invalid(forms.props("score_ood", ds, params))  # the whole dataset: fine
    # one more trusted sample: the p-values would count another set
    ds.match_tags("test").limit(1).tag_samples("trusted")
    message = forms.invalid(forms.props("score_ood", ds, same, view=view)).get("score_field", "")
    assert "other reference" in message, message


def test_the_audit_result_names_the_form_input_its_warnings_ask_for(form_dataset, tmp_path, monkeypatch):
    """The SDK's warnings say "re-run with overwrite=True": in the App that is a checkbox, named beside it."""
    ds = form_dataset
    ds.match_tags("trusted").skip(3).untag_samples("trusted")  # 3 trusted samples: a coarse 95% cut, warned
    monkeypatch.setenv("FIFTYONE_OOD_ALLOWED_DIRS", str(tmp_path))
    result = forms.execute("audit_dataset", ds, dict(embeddings_field="vec", reference_tag="trusted",
                                                 report_path=str(tmp_path / "r.html"), near_duplicates=False,
                                                 delegate=False))
    assert result.error is None, result.error
    warning = next(w for w in result.result["warnings"] if w.startswith("only 3 trusted sample(s)"))
    assert "re-run with overwrite=True. In this form: `overwrite` is the input 'Overwrite" in warning, warning


# --------------------------------------------------------------------------- 10. class names in the form's warning


MARKUP_LABEL = "*bold* [x](http://evil) <img src=x>"


def test_the_uncovered_classes_warning_shows_class_names_as_written_not_as_markdown(form_dataset):
    """The App renders a form warning's description as markdown: a class named ``*bold*`` showed in bold, a link
    label as a live link and ``<img>`` as markup. The form escapes them, as the score run's result view does."""
    from operators.scoring import score_report

    ds = form_dataset
    sample = ds.match_tags("test").first()
    sample.ground_truth.label = MARKUP_LABEL
    sample.save()
    shown = r"'\*bold\* \[x\](http\://evil) \<img src=x\>' (1)"
    params = _score(method="pyramid_knn", reference_tag="trusted", label_field="ground_truth")
    for name, form in (("score_ood", params), ("audit_dataset", {})):
        description = forms.props(name, ds, form)["uncovered_classes"].view.description
        assert shown in description and "'ground\\_truth'" not in description, (name, description)
        assert description.startswith("1 class(es) of 'ground_truth' among the scored items"), description
    # the score run's result view escapes the same sentence (its warnings are plain text)
    summary = {"field": "s", "method": "pyramid_knn", "num_scored": 20,
               "uncovered_classes": {"count": 1, "num_items": 1, "largest": {MARKUP_LABEL: 1}}}
    assert f"- warning: 1 class(es) of 'ground_truth' among the scored items have no reference (trusted) item: " \
           f"{shown}." in score_report(summary, "vec", "ground_truth")
