"""The embeddings and CLIP forms driven as the App drives them, with stale or odd values: each value the run (or
FiftyOne's validation, with a bare "Invalid enum value") would refuse is refused on its own field, with the fix."""

import pytest

from tests import form_helpers as forms

CLIP_FORMS = ("compute_neglabel_scores", "compute_adaneg_scores", "compute_rap_scores")


def test_hidden_advanced_embeddings_settings_are_refused_on_the_form(form_images):
    """A value of the hidden advanced group (stale params, a Python call) that the run refuses: the form said
    nothing but for the backbone and the levels, and the run failed after it started. Now each is shown as a
    warning naming its input and where it is."""
    ds = form_images
    assert forms.invalid(forms.props("compute_pyramid_embeddings", ds, {})) == {}
    for name, value, label in (("num_shards", "x", "Parallel workers (shards)"), ("grid", 0, "Pooling grid"),
                               ("batch_size", 0, "Batch size"), ("project_dim", -4, "Reduce to dimensions"),
                               ("weights", "/etc/passwd", "Weights file")):
        props = forms.props("compute_pyramid_embeddings", ds, {name: value})
        bad = forms.invalid(props)
        assert list(bad) == [f"{name}_error"], (name, bad)
        shown = props[f"{name}_error"].view.label
        assert name in shown and label in shown and "'Show advanced settings'" in shown, shown
        # the same value, shown, is refused with the same reason on its own input
        assert forms.invalid(forms.props("compute_pyramid_embeddings", ds, {name: value, "show_advanced": True})
                             )[name] == bad[f"{name}_error"]
    # what the run would say is what the form says
    message = forms.invalid(forms.props("compute_pyramid_embeddings", ds, dict(grid=0)))["grid_error"]
    assert message in forms.refusal("compute_pyramid_embeddings", ds, dict(embeddings_field="e", grid=0))
    assert "e" not in ds.get_field_schema()


def test_an_objects_field_the_form_does_not_offer_is_refused_on_it(form_images):
    """'Objects field' naming a field deleted since the form opened, or a Classification field (stale params, a
    Python call): the form said nothing and Execute failed with FiftyOne's bare "Invalid enum value"."""
    import fiftyone as fo

    ds = form_images
    ds.set_values("objs", [fo.Detections(detections=[fo.Detection(label="x", bounding_box=[0, 0, .5, .5])])] * len(ds))
    assert "patches_field" not in forms.invalid(forms.props("compute_pyramid_embeddings", ds,
                                                            dict(patches_field="objs")))
    for value, reason in (("gone", "label field 'gone' does not exist"),
                          ("ground_truth", "patches_field='ground_truth' holds Classification labels")):
        bad = forms.invalid(forms.props("compute_pyramid_embeddings", ds, dict(patches_field=value)))
        message = bad.get("patches_field", "")
        assert message.startswith(reason), bad
        assert message.endswith("In this form: pick a Detections field in 'Objects field', or leave it empty to "
                                "embed whole images")
        error = forms.refusal("compute_pyramid_embeddings", ds, dict(embeddings_field="e", patches_field=value))
        assert message in error and "Invalid enum value" not in error
    assert "e" not in ds.get_field_schema()


@pytest.mark.parametrize("name", CLIP_FORMS)
def test_a_clip_label_field_the_form_does_not_offer_is_refused_on_it(form_images, tiny_clip_params, name):
    """The ID classes' label field deleted since the form opened, or not a label field: the form said nothing and
    Execute failed with FiftyOne's bare "Invalid enum value"."""
    ds = form_images
    base = dict(tiny_clip_params, num_groups=1, few_shot_tag="trusted")
    assert "label_field" not in forms.invalid(forms.props(name, ds, dict(base, label_field="ground_truth")))
    for value, reason in (("gone", "label field 'gone' does not exist"),
                          ("filepath", "field 'filepath' has type StringField")):
        message = forms.invalid(forms.props(name, ds, dict(base, label_field=value))).get("label_field", "")
        assert message.startswith(reason) and message.endswith("pick 'ground_truth'"), message
        error = forms.refusal(name, ds, dict(base, label_field=value))
        assert message in error and "Invalid enum value" not in error


def test_a_clip_prediction_field_is_refused_as_the_id_label_field(form_images, tiny_clip_params, one_torch_thread):
    """The predictions a CLIP run wrote are a Classification field the form leaves out of 'Label field' (they are
    an output, not classes to use): named as such, not "Invalid enum value"."""
    import fiftyone.operators as foo

    ds = form_images
    base = dict(tiny_clip_params, num_groups=1)
    out = foo.execute_operator(forms.uri("compute_neglabel_scores"), dict(view=ds.view()),
                               params=dict(base, label_field="ground_truth", score_field="neglabel_score",
                                           prediction_field="neglabel_prediction"))
    assert out.error is None and out.result["prediction_field"] == "neglabel_prediction"
    params = dict(base, label_field="neglabel_prediction", score_field="s2", prediction_field="p2")
    message = forms.invalid(forms.props("compute_neglabel_scores", ds, params)).get("label_field", "")
    assert message == ("label field 'neglabel_prediction' is not offered: it holds labels written by a run of this "
                       "plugin (such as predictions or suggested labels), not classes to use; pick 'ground_truth'")
    assert message in forms.refusal("compute_neglabel_scores", ds, params)
    assert "s2" not in ds.get_field_schema()


@pytest.mark.parametrize("name", CLIP_FORMS)
def test_stored_clip_embeddings_the_form_does_not_offer_are_refused_on_them(form_dataset, tiny_clip, tiny_clip_params,
                                                                            one_torch_thread, name):
    """'Stored CLIP embeddings' naming a field deleted since the form opened, or vectors no CLIP run recorded: the
    form said nothing and Execute failed with FiftyOne's bare "Invalid enum value"."""
    import ood_core as ood

    ds = form_dataset
    base = dict(tiny_clip_params, num_groups=1, label_field="ground_truth", few_shot_tag="trusted")
    ood.compute_clip_embeddings(ds, "clip_emb", model_name=tiny_clip.name, pretrained=str(tiny_clip.safetensors),
                                progress=False)
    props = forms.props(name, ds, dict(base, embeddings_field="clip_emb"))
    assert props["embeddings_field"].type.values == ["clip_emb"] and "embeddings_field" not in forms.invalid(props)
    fix = "In this form: pick stored CLIP embeddings in the list, or leave 'Stored CLIP embeddings' empty to encode " \
          "the images now"
    message = forms.invalid(forms.props(name, ds, dict(base, embeddings_field="vec"))).get("embeddings_field", "")
    assert message.startswith("field 'vec' has no fiftyone-ood embeddings run") and message.endswith(fix), message
    ds.delete_sample_field("clip_emb")
    params = dict(base, embeddings_field="clip_emb")
    message = forms.invalid(forms.props(name, ds, params)).get("embeddings_field", "")
    assert message.startswith("embeddings field 'clip_emb' does not exist") and message.endswith(fix), message
    error = forms.refusal(name, ds, params)
    assert message in error and "Invalid enum value" not in error


def test_a_few_shot_tag_removed_since_the_form_opened_is_refused_on_it(form_images, tiny_clip_params):
    """RAP's 'Few-shot tag' naming a tag no sample carries any more: the form said nothing and Execute failed with
    FiftyOne's bare "Invalid enum value"."""
    ds = form_images
    params = dict(tiny_clip_params, num_groups=1, label_field="ground_truth", few_shot_tag="trusted")
    assert "few_shot_tag" not in forms.invalid(forms.props("compute_rap_scores", ds, params))
    ds.untag_samples("trusted")
    message = forms.invalid(forms.props("compute_rap_scores", ds, params)).get("few_shot_tag", "")
    assert message == ("no sample is tagged 'trusted' (removed since the form opened?): pick a tag in the list, or "
                       "pick k per class")
    error = forms.refusal("compute_rap_scores", ds, params)
    assert message in error and "Invalid enum value" not in error


@pytest.mark.parametrize("name", CLIP_FORMS)
def test_a_clip_encoder_the_run_cannot_build_is_refused_on_its_input(form_images, tiny_clip_params, name):
    """'CLIP model' not an open_clip architecture, 'CLIP weights' a missing file or a tag the architecture does not
    have: the form accepted them and the run refused them once started."""
    ds = form_images
    base = dict(tiny_clip_params, num_groups=1, label_field="ground_truth", few_shot_tag="trusted")
    assert forms.invalid(forms.props(name, ds, base)) == {}
    assert forms.invalid(forms.props(name, ds, dict(base, model_name="", weights=""))) == {}  # the defaults
    bad = forms.invalid(forms.props(name, ds, dict(base, model_name="no-such-clip")))
    assert list(bad) == ["model_name"] and \
        bad["model_name"].startswith("model_name='no-such-clip' is not an open_clip architecture"), bad
    missing = str(tiny_clip_params["weights"]) + ".gone"
    bad = forms.invalid(forms.props(name, ds, dict(base, weights=missing)))
    assert list(bad) == ["weights"] and bad["weights"].startswith(f"CLIP weights file {missing!r}"), bad
    assert "Pass an existing local file" in bad["weights"]
    bad = forms.invalid(forms.props(name, ds, dict(base, model_name="ViT-B-16", weights="no_such_tag")))
    assert list(bad) == ["weights"] and "is neither an existing file nor an open_clip tag of 'ViT-B-16'" in \
        bad["weights"] and "'openai'" in bad["weights"], bad
    error = forms.refusal(name, ds, dict(base, model_name="no-such-clip"))
    assert "is not an open_clip architecture" in error
    assert "s" not in ds.get_field_schema()


@pytest.mark.parametrize("name", CLIP_FORMS)
def test_stored_clip_embeddings_of_another_encoder_are_refused_on_the_form(form_images, tiny_clip, tiny_clip_factory,
                                                                           tiny_clip_params, one_torch_thread, name):
    """Stored CLIP embeddings with other 'CLIP weights' or 'QuickGELU' than those that made them: the form accepted
    them and the run refused them once started ("were computed with ..."). Left empty, the run's are taken."""
    import ood_core as ood

    ds = form_images
    ood.compute_clip_embeddings(ds, "clip_emb", model_name=tiny_clip.name, pretrained=str(tiny_clip.safetensors),
                                progress=False)
    base = dict(tiny_clip_params, num_groups=1, label_field="ground_truth", few_shot_tag="trusted",
                embeddings_field="clip_emb")
    assert forms.invalid(forms.props(name, ds, base)) == {}  # the same encoder
    assert forms.invalid(forms.props(name, ds, dict(base, model_name="", weights=""))) == {}  # the run's
    other = tiny_clip_factory(seed=1)
    for change in (dict(weights=str(other.safetensors)), dict(model_name="", weights="", quick_gelu=True)):
        message = forms.invalid(forms.props(name, ds, dict(base, **change))).get("embeddings_field", "")
        assert message.startswith("embeddings 'clip_emb' were computed with 'open_clip:ood-test-tiny-clip|file:"), \
            (change, message)
        assert message.endswith("leave 'CLIP model' and 'CLIP weights' empty and 'QuickGELU' unticked to take them "
                                "from the embeddings run, or leave 'Stored CLIP embeddings' empty to encode the "
                                "images now")
    error = forms.refusal(name, ds, dict(base, weights=str(other.safetensors)))
    assert "leave 'CLIP model' and 'CLIP weights' empty" in error
    assert ood.list_ood_runs(ds) == ["clip_emb"]


def test_pyramid_form_on_a_clip_embeddings_field_names_what_they_are(form_images, tiny_clip, one_torch_thread):
    """'Embeddings field' naming CLIP embeddings: the form pre-filled their CLIP model as the timm backbone and
    refused it ("is not a timm model name"), and asked to "set them as stored" settings no pyramid run has. Now it
    says what they are and the two ways out; 'overwrite' replaces them, as the SDK does."""
    import ood_core as ood

    ds = form_images
    ood.compute_clip_embeddings(ds, "clip_emb", model_name=tiny_clip.name, pretrained=str(tiny_clip.safetensors),
                                progress=False)
    for advanced in (False, True):
        props = forms.props("compute_pyramid_embeddings", ds, dict(embeddings_field="clip_emb", show_advanced=advanced))
        assert list(forms.invalid(props)) == ["embeddings_field"], forms.invalid(props)
        assert forms.invalid(props)["embeddings_field"] == (
            "embeddings 'clip_emb' are CLIP image embeddings (model 'ood-test-tiny-clip', made by "
            "compute_clip_embeddings for the CLIP scores), not pyramid embeddings, so they cannot be resumed here: "
            "choose another embeddings field, or tick 'overwrite' to replace them with pyramid embeddings")
        assert "embeddings_field_resume" not in props
        if advanced:
            assert props["model_name"].default == "auto"  # the SDK's default, not the CLIP model
    assert forms.invalid(forms.props("compute_pyramid_embeddings", ds,
                                     dict(embeddings_field="clip_emb", overwrite=True))) == {}


@pytest.mark.parametrize("name", CLIP_FORMS)
def test_python_call_with_id_labels_as_a_list_runs(form_images, tiny_clip_params, one_torch_thread, name):
    """``op(view, id_labels=['Bag', 'Coat'], ...)``, as the operators' docstrings say: the list reached the form's
    text input and FiftyOne refused it ("Path: id_labels. Reason: Invalid value type"). Now it is the form's
    comma-separated text and the run uses those classes; a name with a comma, which that text cannot hold, is
    refused with the way out."""
    import fiftyone.operators as foo

    from ood_core.errors import OODInputError

    ds = form_images
    op = foo.get_operator(forms.uri(name))
    params = dict(tiny_clip_params, num_groups=1, prediction_field="pred")
    params["few_shot_tag" if name == "compute_rap_scores" else "seed"] = "trusted" if name == "compute_rap_scores" \
        else 0
    if name == "compute_rap_scores":
        params.update(num_crops=2, num_keep=1, crop_ranking="all_prompts")
    out = op(ds.view(), "s", id_labels=["Bag", "Coat"], **params)
    assert out.error is None, out.error
    assert out.result["num_scored"] == len(ds)
    assert set(ds.values("pred.label")) <= {"Bag", "Coat"} and ds.count("pred") == len(ds)
    with pytest.raises(OODInputError, match=r"class name\(s\) \['Bag, large'\] contain a comma"):
        op(ds.view(), "s2", id_labels=["Bag, large", "Coat"], **params)
    assert "s2" not in ds.get_field_schema()
