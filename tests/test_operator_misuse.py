"""Operator forms and runs driven with what the App really sends (stale choices, values the form cannot hold,
advanced settings over a refused input): each test shows a form that raised (a raising ``resolve_input`` breaks
the App's form) and checks that it now marks the input at fault, and that a run with those values is refused
with that message, writing nothing."""

import pytest

import form_helpers as forms


def _score(**params):
    return dict(dict(embeddings_field="vec", score_field="s", method="knn", label_field="ground_truth",
                     overwrite=False, delegate=False), **params)


def test_a_refused_reference_with_a_reduction_is_marked_on_the_tag_not_a_crash(form_dataset):
    """A reference tag deleted since the form opened (or one too small to fit on) with *Reduction* set under the
    advanced settings: the reduction's check read the refused reference and the form raised AttributeError."""
    ds = form_dataset
    ds.select(ds.match_tags("trusted").first().id).tag_samples("solo")
    for tag in ("gone", "solo"):
        params = _score(reference_tag=tag, show_advanced=True, reduce="pca", n_components=4)
        bad = forms.invalid(forms.props("score_ood", ds, params))
        assert list(bad) == ["reference_tag"] and f"'{tag}'" in bad["reference_tag"], (tag, bad)
        assert "choose another tag" in bad["reference_tag"] or f"tag more samples '{tag}'" in bad["reference_tag"]
        message = forms.refusal("score_ood", ds, params)
        assert "reference_tag" in message and "AttributeError" not in message, message
    assert "s" not in ds.get_field_schema()


def test_an_unknown_method_is_marked_on_the_method_input_not_a_crash(form_dataset):
    """A method the form does not offer (a run's saved params from another plugin version, a Python call): the
    form raised the SDK's 'unknown detector' error instead of marking *Method*."""
    ds = form_dataset
    for method in ("bogus", 5, "true"):
        bad = forms.invalid(forms.props("score_ood", ds, _score(method=method, reference_tag="trusted")))
        assert list(bad) == ["method"], (method, bad)
        assert f"{method!r}" in bad["method"] and "pick one of" in bad["method"] and "'knn'" in bad["method"]
    message = forms.refusal("score_ood", ds, _score(method="bogus", reference_tag="trusted"))
    assert "method" in message and "pick one of" in message, message
    assert "s" not in ds.get_field_schema()


@pytest.mark.parametrize("name", ["score_ood", "compute_ood_visualization", "audit_dataset"])
def test_an_embeddings_field_deleted_since_the_form_opened_is_marked_on_its_input(form_dataset, name):
    """The dropdown silently showed its checks for the first remaining field, and Execute failed with FiftyOne's
    bare "Invalid enum value" that names no fix."""
    params = _score(embeddings_field="gone") if name == "score_ood" else dict(embeddings_field="gone")
    bad = forms.invalid(forms.props(name, form_dataset, params))
    assert "is not among this dataset's embeddings any more" in bad.get("embeddings_field", ""), bad
    assert "pick one in the list" in bad["embeddings_field"]


def test_a_run_deleted_since_the_manage_form_opened_is_marked_on_its_input(form_dataset):
    """Manage runs with a run key the dataset no longer has: the form said nothing, and Execute failed with
    FiftyOne's bare "Invalid enum value"."""
    import ood_core as ood

    ood.compute_ood_scores(form_dataset, "vec", "sc", method="knn", k=3)
    for action in ("delete", "rename"):
        bad = forms.invalid(forms.props("manage_ood_runs", form_dataset, dict(action=action, run_key="gone")))
        assert "run 'gone' is not among this dataset's fiftyone-ood runs" in bad.get("run_key", ""), bad
    assert "run_key" not in forms.invalid(forms.props("manage_ood_runs", form_dataset,
                                                      dict(action="delete", run_key="sc")))


def test_the_audit_form_marks_a_trusted_tag_it_cannot_use(form_dataset):
    """A trusted tag removed since the form opened, or one the audit gives itself ('ood'), passed the form and
    was refused only on Execute."""
    ds = form_dataset
    ds.take(3, seed=0).tag_samples("ood")
    bad = forms.invalid(forms.props("audit_dataset", ds, dict(label_field="ground_truth", reference_tag="gone")))
    assert "no sample is tagged 'gone'" in bad.get("reference_tag", ""), bad
    bad = forms.invalid(forms.props("audit_dataset", ds, dict(label_field="ground_truth", reference_tag="ood")))
    assert "is a tag the audit gives to flagged samples" in bad.get("reference_tag", ""), bad
    assert "reference_tag" not in forms.invalid(forms.props("audit_dataset", ds, dict(label_field="ground_truth",
                                                                                      reference_tag="trusted")))


def test_a_hidden_yes_no_parameter_given_as_text_is_refused_not_read_as_yes(form_images, tiny_clip_params):
    """FiftyOne validates only the inputs a form shows: RAP's *Mirror half of the crops* (hidden under the advanced
    settings) given as ``flip="no"`` by a Python ``op(...)`` call was ``bool("no")``, i.e. True, and the run went
    on mirroring. Text or numbers for a yes/no parameter are refused with its name; nothing is written."""
    from ood_core.errors import OODInputError
    from operators.base import flag_param

    ds = form_images
    params = dict(few_shot_mode="tag", few_shot_tag="trusted", label_field="ground_truth", score_field="rap",
                  num_crops=4, num_keep=2, num_negatives=8, num_groups=2, words_per_sample=1, flip="no",
                  **tiny_clip_params)
    message = forms.refusal("compute_rap_scores", ds, params)
    assert "flip='no' is not a yes/no value; pass flip=True or flip=False" in message, message
    assert "rap" not in ds.get_field_schema()
    assert flag_param({"x": None}, "x", True) is True and flag_param({}, "x") is False
    assert flag_param({"x": False}, "x", True) is False
    for bad in ("no", "yes", 1, 0):
        with pytest.raises(OODInputError, match=r"is not a yes/no value; pass x=True or x=False"):
            flag_param({"x": bad}, "x")
