"""The CLIP operators driven with what the App keeps in its params: the value of an input the form no longer shows
(switched to typed class names, test-time updates unticked) must not change the run; choice values the form does
not offer are refused on their input by name, with the choices; Python ``op(...)`` calls whose settings the form
cannot hold together are refused instead of silently dropped. Each test failed before its fix."""

import numpy as np
import pytest

from tests import form_helpers as forms

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLIP_FORMS = ("compute_neglabel_scores", "compute_adaneg_scores", "compute_rap_scores")
# RAP settings that keep a run on the tiny model short (the few-shot images: the 20 'trusted' samples)
QUICK_RAP = dict(few_shot_tag="trusted", num_crops=2, num_keep=1, crop_ranking="all_prompts")


def _scores(ds, field):
    return np.array(ds.sort_by("id").values(field), dtype=float)


def test_rap_label_field_hidden_by_typed_classes_does_not_reach_the_run(form_images, tiny_clip_params):
    """RAP with the ID classes typed by hand ('Bag, Coat') and a few-shot tag: the label field the user had picked
    before switching stayed in the params, hidden, and the run used it: the tagged samples got its classes and the
    run was refused ("few-shot samples are labelled [...] which are not ID classes"). Now the run is the one
    without it, and the form's crop-ranking check does not count the hidden field either."""
    import ood_core as ood

    ds = form_images
    base = dict(tiny_clip_params, **QUICK_RAP, num_groups=1, id_source="labels", id_labels="Bag, Coat",
                few_shot_mode="tag", prediction_field="")
    clean = forms.execute("compute_rap_scores", ds, dict(base, score_field="clean"))
    assert clean.error is None, clean.error
    stale = forms.execute("compute_rap_scores", ds, dict(base, score_field="stale", label_field="ground_truth"))
    assert stale.error is None, stale.error
    np.testing.assert_array_equal(_scores(ds, "stale"), _scores(ds, "clean"))
    assert ood.get_ood_run_info(ds, "stale")["label_field"] is None
    # the paper's crop ranking needs the few-shot images' classes, which the hidden field does not give
    form = dict(base, label_field="ground_truth", crop_ranking="own_class", score_field="s3")
    bad = forms.invalid(forms.props("compute_rap_scores", ds, form))
    assert bad == {"crop_ranking_needs_classes": "crop_ranking='own_class' needs the few-shot images' classes"}, bad
    assert "pick 'Classes of a label field'" in forms.props("compute_rap_scores", ds, form)[
        "crop_ranking_needs_classes"].view.label


def test_rap_test_time_settings_hidden_by_unticking_them_do_not_reach_the_run(form_images, tiny_clip_params):
    """'Test-time updates' unticked hides u1/u2, the retrieval and the scoring order, but their old values were
    still passed: an earlier u1 above u2 refused the train-time-only run ("need 0 <= u1 <= u2"), and the others
    were recorded as the run's settings. Now the hidden values are not passed."""
    import ood_core as ood

    ds = form_images
    base = dict(tiny_clip_params, **QUICK_RAP, num_groups=1, label_field="ground_truth", test_time=False,
                prediction_field="")
    stale = dict(u_preset="iNaturalist", u1=0.9, u2=0.2, words_per_sample=7, retrieval="new_only", rescore="final")
    assert forms.invalid(forms.props("compute_rap_scores", ds, dict(base, **stale, score_field="x"))) == {}
    clean = forms.execute("compute_rap_scores", ds, dict(base, score_field="clean"))
    assert clean.error is None, clean.error
    out = forms.execute("compute_rap_scores", ds, dict(base, **stale, score_field="stale"))
    assert out.error is None, out.error
    np.testing.assert_array_equal(_scores(ds, "stale"), _scores(ds, "clean"))
    recorded = ood.get_ood_run_info(ds, "stale")["rap"]
    assert recorded == ood.get_ood_run_info(ds, "clean")["rap"]
    assert recorded["u1"] is None and recorded["retrieval"] == "union", recorded


CHOICES = [
    (name, "id_source", "labelfield", "'label_field', 'labels'") for name in CLIP_FORMS
] + [
    (name, param, bad, allowed) for name in ("compute_neglabel_scores", "compute_adaneg_scores")
    for param, bad, allowed in (("vocabulary", "papers", "'paper', 'all'"), ("remainder", "first", "'last', 'random'"))
] + [
    ("compute_rap_scores", "few_shot_mode", "k", "'tag', 'k_per_class'"),
    ("compute_rap_scores", "crop_ranking", "best", "'own_class', 'all_prompts'"),
    ("compute_rap_scores", "retrieval", "all", "'union', 'new_only'"),
    ("compute_rap_scores", "rescore", "batch", "'online', 'final'"),
    ("compute_rap_scores", "u_preset", "ImageNet", None),
]


@pytest.mark.parametrize("name, param, bad, allowed", CHOICES)
def test_a_choice_the_form_does_not_offer_is_refused_on_it_by_name(form_images, tiny_clip_params, name, param, bad,
                                                                   allowed):
    """A choice input given a value it does not offer (stale params, a Python call): Execute failed with
    FiftyOne's bare "Invalid enum value" (or, under the hidden paper settings, only once the run had started).
    Now the input says which value, and the choices."""
    ds = form_images
    base = dict(tiny_clip_params, **QUICK_RAP, num_groups=1, label_field="ground_truth", score_field="s",
                show_advanced=True)
    assert forms.invalid(forms.props(name, ds, base)) == {}
    message = forms.invalid(forms.props(name, ds, dict(base, **{param: bad}))).get(param, "")
    assert message.startswith(f"{param}={bad!r} is not one of the choices (") and \
        message.endswith("): pick one of them"), message
    if allowed:
        assert f"({allowed})" in message, message
    error = forms.refusal(name, ds, dict(base, **{param: bad}))
    assert message in error and "Invalid enum value" not in error
    if param not in ("id_source", "few_shot_mode"):  # the paper settings hidden: a warning names it
        hidden = forms.invalid(forms.props(name, ds, dict(base, show_advanced=False, **{param: bad})))
        assert list(hidden) == [f"{param}_error"] and hidden[f"{param}_error"] == message, hidden
    assert "s" not in ds.get_field_schema()


@pytest.mark.parametrize("name, call, match", [
    ("compute_rap_scores", dict(few_shot_tag="trusted", k_per_class=1, label_field="ground_truth"),
     r"few_shot_tag='trusted' and k_per_class=1 were both given.*ood.compute_rap_scores\(view, few_shot=<tag>, "
     r"k_per_class=k"),
    ("compute_rap_scores", dict(few_shot_tag="trusted", label_field="ground_truth", test_time=False, u1=0.3),
     r"u1 given with test_time=False: .*pass test_time=True"),
    ("compute_rap_scores", dict(few_shot_tag="trusted", id_labels=["Bag", "Coat"], label_field="ground_truth"),
     r"id_labels=\['Bag', 'Coat'\] and label_field='ground_truth' were both given"),
    ("compute_neglabel_scores", dict(id_labels=["Bag", "Coat"], label_field="ground_truth"),
     r"id_labels=\['Bag', 'Coat'\] and label_field='ground_truth' were both given.*pass one of them"),
    ("compute_neglabel_scores", dict(label_field="ground_truth", num_negatives=5, fraction=0.5),
     r"num_negatives=5 and fraction=0.5 were both given.*pass one of them"),
    ("compute_adaneg_scores", dict(label_field="ground_truth", num_negatives=5, fraction=0.5),
     r"num_negatives=5 and fraction=0.5 were both given.*pass one of them"),
])
def test_python_call_with_settings_the_form_never_uses_together_is_refused(form_images, tiny_clip_params, name,
                                                                           call, match):
    """``op(view, ...)`` with two settings the form cannot hold together: the operator silently dropped one (the
    few-shot tag, the test-time u1, the label field, the fraction) and ran. Now the call is refused, nothing is
    written."""
    import fiftyone.operators as foo

    from ood_core.errors import OODInputError

    ds = form_images
    settings = dict(tiny_clip_params, num_groups=1, num_crops=2, num_keep=1, crop_ranking="all_prompts") \
        if name == "compute_rap_scores" else dict(tiny_clip_params, num_groups=1)
    with pytest.raises(OODInputError, match=match):
        foo.get_operator(forms.uri(name))(ds.view(), "s", **settings, **call)
    assert "s" not in ds.get_field_schema()


@pytest.mark.parametrize("name", CLIP_FORMS)
def test_typed_id_classes_the_run_refuses_are_refused_on_their_input(form_images, tiny_clip_params, name):
    """Typed class names that repeat up to case ('Bag, Coat, bag'): the form accepted them and Execute failed once
    the run had started. Now 'ID class names' says why, with the run's own words."""
    ds = form_images
    base = dict(tiny_clip_params, **QUICK_RAP, num_groups=1, score_field="s")
    typed = dict(base, id_source="labels", id_labels="Bag, Coat, bag")
    message = forms.invalid(forms.props(name, ds, typed)).get("id_labels", "")
    assert message.startswith("ID class names must be distinct (case-insensitive") and "['bag']" in message, message
    assert message in forms.refusal(name, ds, typed)
    assert "id_labels" not in forms.invalid(forms.props(name, ds, dict(typed, id_labels="Bag, Coat")))
    assert "s" not in ds.get_field_schema()


@pytest.mark.parametrize("name", CLIP_FORMS)
def test_a_label_field_whose_classes_the_run_refuses_is_refused_on_it(form_images, tiny_clip_params, name):
    """A label field whose labels repeat up to case (one sample relabelled 'bag' beside 'Bag') or that holds no
    labels: the form accepted it and Execute failed once the run had started. Now 'Label field' says why."""
    import fiftyone as fo

    ds = form_images
    base = dict(tiny_clip_params, **QUICK_RAP, num_groups=1, score_field="s")
    assert "label_field" not in forms.invalid(forms.props(name, ds, dict(base, label_field="ground_truth")))
    sample = ds.match(fo.ViewField("ground_truth.label") == "Bag").first()
    sample["ground_truth"] = fo.Classification(label="bag")
    sample.save()
    ds.add_sample_field("unlabelled", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    for field, reason in (("ground_truth", "must be distinct"), ("unlabelled", "holds no labels")):
        params = dict(base, label_field=field)
        message = forms.invalid(forms.props(name, ds, params)).get("label_field", "")
        assert reason in message and repr(field) in message, message
        assert message in forms.refusal(name, ds, params)
    assert "s" not in ds.get_field_schema()


@pytest.mark.parametrize("call, match", [
    (dict(lambdas=(0.2, -0.2)), r"lambdas=\(0.2, -0.2\) is not three numbers .*pass e.g. lambdas=\(0.2, -0.2, -1.0\)"),
    (dict(lambdas=0.2), r"lambdas=0.2 is not three numbers"),
    (dict(lambdas=(0.2, -0.2, -1.0), lambda1=0.5), r"lambdas=\(0.2, -0.2, -1.0\) and lambda1 were both given"),
])
def test_rap_python_call_with_unusable_lambdas_is_refused_by_name(form_images, tiny_clip_params, call, match):
    """``op(view, lambdas=...)`` with two numbers or one, or with the form's own ``lambda1`` as well: a raw
    IndexError / TypeError ("'float' object is not subscriptable", "got multiple values for keyword argument")."""
    import fiftyone.operators as foo

    from ood_core.errors import OODInputError

    ds = form_images
    with pytest.raises(OODInputError, match=match):
        foo.get_operator(forms.uri("compute_rap_scores"))(ds.view(), "s", label_field="ground_truth",
                                                          **dict(tiny_clip_params, **QUICK_RAP), **call)
    assert "s" not in ds.get_field_schema()


def test_rap_python_call_with_the_forms_lambda_names_runs_with_them(form_images, tiny_clip_params):
    """``op(view, lambda1=0.3, lambda2=-0.1, lambda3=-0.5)``, the form's names for the joint similarity's weights:
    refused with a raw TypeError ("got multiple values for keyword argument 'lambda1'"). Now they are the run's."""
    import fiftyone.operators as foo

    import ood_core as ood

    ds = form_images
    out = foo.get_operator(forms.uri("compute_rap_scores"))(
        ds.view(), "s", label_field="ground_truth", num_groups=1, prediction_field="", lambda1=0.3, lambda2=-0.1,
        lambda3=-0.5, **dict(tiny_clip_params, **QUICK_RAP))
    assert out.error is None and out.result["num_scored"] == len(ds)
    assert list(ood.get_ood_run_info(ds, "s")["rap"]["lambdas"]) == [0.3, -0.1, -0.5]


def test_rap_python_call_with_k_per_class_zero_names_it(form_images, tiny_clip_params):
    """``op(view, k_per_class=0, label_field=...)``: 0 was taken for "no k per class", so the run asked for a
    few-shot set ("RAP needs a few-shot in-distribution set") instead of naming the 0."""
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionError

    ds = form_images
    with pytest.raises(ExecutionError, match=r"k_per_class must be >= 1"):
        foo.get_operator(forms.uri("compute_rap_scores"))(ds.view(), "s", k_per_class=0, label_field="ground_truth",
                                                          num_groups=1, **tiny_clip_params)
    assert "s" not in ds.get_field_schema()


def test_stored_clip_embeddings_of_other_samples_name_the_clip_way_out(form_images, tiny_clip, tiny_clip_params,
                                                                        tmp_path):
    """Stored CLIP embeddings computed on the 'trusted' samples, a score of the 'test' ones: the run said "compute
    embeddings for this view first", which names no CLIP function (the pyramid embeddings would replace the CLIP
    run) and not the other way out. Now it names both; following the first, the run scores the view."""
    import ood_core as ood
    from ood_core.errors import OODInputError

    ds = form_images
    encoder = dict(model_name=tiny_clip.name, pretrained=str(tiny_clip.safetensors))
    kw = dict(encoder, word_list=tiny_clip_params["word_list"], cache_dir=str(tmp_path / "c"), progress=False,
              num_groups=1, label_field="ground_truth", embeddings_field="clip_emb")
    ood.compute_clip_embeddings(ds.match_tags("trusted"), "clip_emb", progress=False, **encoder)
    test = ds.match_tags("test")
    for call in (ood.compute_neglabel_scores, ood.compute_adaneg_scores):
        with pytest.raises(OODInputError, match=r"no sample of this view has a CLIP embedding in 'clip_emb'.*"
                                                r"ood.compute_clip_embeddings\(view, 'clip_emb', overwrite=True, "
                                                r"...\), or pass embeddings_field=None to encode the images now"):
            call(test, "s", **kw)
    assert "s" not in ds.get_field_schema()
    ood.compute_clip_embeddings(test, "clip_emb", overwrite=True, progress=False, **encoder)
    assert ood.compute_neglabel_scores(test, "s", **kw)["num_scored"] == len(test)


@pytest.mark.parametrize("name", CLIP_FORMS)
def test_stored_clip_embeddings_of_other_samples_are_refused_on_the_form(form_images, tiny_clip, tiny_clip_params,
                                                                         name):
    """'Stored CLIP embeddings' made for the 'trusted' samples, the App's view the 'test' ones: the form accepted
    them and the run failed once started. Now the input says so, with the form's way out."""
    import ood_core as ood

    ds = form_images
    ood.compute_clip_embeddings(ds.match_tags("trusted"), "clip_emb", model_name=tiny_clip.name,
                                pretrained=str(tiny_clip.safetensors), progress=False)
    params = dict(tiny_clip_params, **QUICK_RAP, num_groups=1, label_field="ground_truth", score_field="s",
                  embeddings_field="clip_emb", view_target="CURRENT_VIEW")
    assert "embeddings_field" not in forms.invalid(forms.props(name, ds, params, view=ds.view()))
    message = forms.invalid(forms.props(name, ds, params, view=ds.match_tags("test"))).get("embeddings_field", "")
    assert message.startswith("no sample of this view has a CLIP embedding in 'clip_emb'") and message.endswith(
        "In this form: leave 'Stored CLIP embeddings' empty to encode the images now"), message
