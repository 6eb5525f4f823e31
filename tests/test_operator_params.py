"""Python ``op(view, ...)`` calls of the operators: the parameter names they take and the checks their forms apply."""

import pytest

import form_helpers as forms


def _op(name):
    import fiftyone.operators as foo

    return foo.get_operator(forms.uri(name))


@pytest.mark.parametrize("name, call, wrong, close", [
    ("compute_neglabel_scores", dict(label_field="ground_truth", num_negative=5), "num_negative", "num_negatives"),
    ("compute_rap_scores", dict(few_shot_tag="trusted", label_field="ground_truth", num_crops=2, num_keep=1,
                                crop_ranking="all_prompts", fraction=0.5), "fraction", None),
    ("compute_adaneg_scores", dict(label_field="ground_truth", percentil=90.0), "percentil", "percentile"),
])
def test_a_clip_call_with_an_unknown_parameter_is_refused_by_name(form_images, tiny_clip_params, name, call, wrong,
                                                                   close):
    """``num_negative=5`` (for ``num_negatives``) or ``fraction=`` to RAP, which has none, was ignored: the run
    went ahead with the default. Now the call is refused before any work, naming it, the closest known name and
    the known ones; nothing is written."""
    from ood_core.errors import OODInputError

    ds = form_images
    with pytest.raises(OODInputError) as info:
        _op(name)(ds.view(), "s", **tiny_clip_params, num_groups=1, **call)
    message = str(info.value)
    assert f"'{wrong}'" in message and "Known parameters:" in message, message
    if close:
        assert f"did you mean '{close}'" in message, message
    known = message.split("Known parameters:")[1]
    assert "label_field" in known and "prediction_field" in known and wrong not in known.split(", "), message
    assert "s" not in ds.get_field_schema()


def test_a_score_call_with_a_misspelled_parameter_is_refused_and_known_ones_pass(form_dataset):
    """``op(ds, "vec", "s", method="knn", kk=3)``: ``kk`` was dropped and k's default used. Refused now; the
    method's own input (``k``, shown only for knn), an advanced one and the FiftyOne view target still pass."""
    from ood_core.errors import OODInputError

    ds = form_dataset
    with pytest.raises(OODInputError, match=r"'kk' \(did you mean 'k'\?\).*Known parameters:.*\bk\b"):
        _op("score_ood")(ds, "vec", "s", method="knn", kk=3, reference_tag="trusted")
    assert "s" not in ds.get_field_schema()
    with pytest.raises(OODInputError, match=r"'n_component'.*did you mean 'n_components'"):
        _op("score_ood")(ds, "vec", "s", method="knn", k=3, reference_tag="trusted", n_component=4)
    _op("score_ood")(ds, "vec", "s", method="knn", k=3, reference_tag="trusted", reduce="pca", n_components=4,
                     view_target="DATASET")
    assert "s" in ds.get_field_schema()


@pytest.mark.parametrize("name, call, wrong", [
    ("compute_ood_visualization", dict(embeddings_field="vec", brain_key="viz", methd="pca"), "methd"),
    ("manage_ood_runs", dict(action="delete", run_key="x", confirm_delete=True, delete_field=False), "delete_field"),
])
def test_other_operators_refuse_an_unknown_parameter(form_dataset, name, call, wrong):
    """The same refusal for every operator (one mechanism of the base class): the map was computed with the
    default method, the run deleted with its fields. Now refused, nothing done."""
    import ood_core as ood
    from ood_core.errors import OODInputError

    ds = form_dataset
    ood.compute_ood_scores(ds, "vec", "x", method="knn", k=3)
    with pytest.raises(OODInputError, match=rf"'{wrong}'.*Known parameters:"):
        _op(name)(ds, **call)
    assert "viz" not in ds.list_brain_runs() and ds.has_run("x") and "x" in ds.get_field_schema()


CLIP_FORMS = ["compute_neglabel_scores", "compute_rap_scores", "compute_adaneg_scores"]


def _clip_params(name, tiny_clip_params, **params):
    extra = dict(few_shot_tag="trusted") if name == "compute_rap_scores" else {}
    return dict(tiny_clip_params, **extra, **params)


@pytest.mark.parametrize("name", CLIP_FORMS)
def test_a_stale_hidden_label_field_does_not_refuse_the_output_field(form_images, tiny_clip_params, name):
    """ID classes typed by hand, with a label field 's' left in the params from before (the form hides it, the
    run does not read it): the form refused score field 's' with overwrite as "read by this call". Now only the
    label field the run reads counts; a shown one is still refused, and a refused ID source is marked, not a
    crash."""
    ds = form_images
    typed = _clip_params(name, tiny_clip_params, id_source="labels", id_labels="Bag, Coat", label_field="s",
                         score_field="s", overwrite=True)
    assert "score_field" not in forms.invalid(forms.props(name, ds, typed))
    typed_pred = dict(typed, score_field="s2", prediction_field="s")
    assert "prediction_field" not in forms.invalid(forms.props(name, ds, typed_pred))
    shown = dict(typed, id_source="label_field", label_field="ground_truth", score_field="ground_truth")
    assert "read by this call" in forms.invalid(forms.props(name, ds, shown)).get("score_field", "")
    bad = forms.invalid(forms.props(name, ds, dict(typed, id_source="bogus")))
    assert "'bogus'" in bad.get("id_source", ""), bad


def test_a_score_call_without_reference_tag_is_checked_as_the_run_scores(form_dataset):
    """``op(ds, "vec", "s", method="knn", k=25)`` scores with no reference (the whole target), but the form checked
    k against the preselected 'trusted' tag and refused "k must be < 20". Now the form checks what the run does;
    with the tag given, k is still checked against the tagged samples."""
    ds = form_dataset
    num_trusted = len(ds.match_tags("trusted"))
    k = num_trusted + 5
    assert k < len(ds) - 1
    params = dict(embeddings_field="vec", score_field="s", method="knn", k=k, overwrite=False, delegate=False)
    assert "k" not in forms.invalid(forms.props("score_ood", ds, params))
    with_tag = forms.invalid(forms.props("score_ood", ds, dict(params, reference_tag="trusted")))
    assert str(num_trusted) in with_tag.get("k", ""), with_tag
    _op("score_ood")(ds, "vec", "s", method="knn", k=k)
    assert ds.count("s") == len(ds)
