"""Choice (enum) inputs of the App forms: a value the form does not offer, left from stale params (the dataset or the
form changed) or given by a Python ``op(...)`` call, is refused on its input with the value, the choices and the fix
(FiftyOne said only "Invalid enum value", or, for an input of a hidden advanced group, nothing until the run failed),
and the run refuses it by name before any work."""

import pytest

import form_helpers as forms
import ood_core as ood
from ood_core.errors import OODInputError

LITE = dict(model_name="tf_efficientnet_lite0", levels="1", grid=1)  # the bundled backbone, one small level


def _run_refusal(name, ds, params):
    """The message with which the operator's run itself (no form validation before it) refuses ``params``."""
    import fiftyone.operators as foo

    with pytest.raises(OODInputError) as info:
        foo.get_operator(forms.uri(name)).execute(forms.context(ds, params))
    return str(info.value)


def _embed(**params):
    return dict(dict(embeddings_field="e", show_advanced=True, overwrite=False, delegate=False, **LITE), **params)


def test_embeddings_form_names_a_mode_it_does_not_offer(form_dataset):
    ds = form_dataset
    message = "mode='grid' is not one of the choices ('pool', 'flatten'): pick one of them"
    assert forms.invalid(forms.props("compute_pyramid_embeddings", ds, _embed(mode="grid"))) == {"mode": message}
    assert message in forms.refusal("compute_pyramid_embeddings", ds, _embed(mode="grid"))
    # the advanced group hidden (a Python call, or the switch turned off after): the form says it, with the label
    hidden = forms.invalid(forms.props("compute_pyramid_embeddings", ds, _embed(mode="grid", show_advanced=False)))
    assert list(hidden) == ["mode_error"] and hidden["mode_error"] == message
    shown = forms.props("compute_pyramid_embeddings", ds, _embed(mode="grid", show_advanced=False))
    assert "('Mode' is under 'Show advanced settings')" in shown["mode_error"].view.label
    assert message in forms.refusal("compute_pyramid_embeddings", ds, _embed(mode="grid", show_advanced=False))
    assert message in _run_refusal("compute_pyramid_embeddings", ds, _embed(mode="grid"))
    assert "e" not in ds.get_field_schema()  # refused before anything was written
    assert not forms.invalid(forms.props("compute_pyramid_embeddings", ds, _embed(mode="flatten")))


def test_embeddings_form_names_a_reduction_it_does_not_offer_with_or_without_project_dim(form_dataset):
    ds = form_dataset
    message = "project_method='svd' is not one of the choices ('pca', 'random'): pick one of them"
    props = forms.props("compute_pyramid_embeddings", ds, _embed(project_dim=4, project_method="svd"))
    assert forms.invalid(props) == {"project_method": message}
    # without a reduction the SDK refuses a misspelt method all the same: the form shows the input to fix it
    props = forms.props("compute_pyramid_embeddings", ds, _embed(project_dim=0, project_method="svd"))
    assert forms.invalid(props) == {"project_method": message}
    assert message in forms.refusal("compute_pyramid_embeddings", ds, _embed(project_method="svd", show_advanced=False))
    assert message in _run_refusal("compute_pyramid_embeddings", ds, _embed(project_dim=4, project_method="svd"))
    props = forms.props("compute_pyramid_embeddings", ds, _embed(project_dim=0))
    assert "project_method" not in props and not forms.invalid(props)


def test_map_form_names_a_method_it_does_not_offer(form_dataset):
    ds = form_dataset
    params = dict(embeddings_field="vec", brain_key="m", method="mds", overwrite=False, delegate=False)
    message = "method='mds' is not one of the choices ('umap', 'tsne', 'pca'): pick one of them"
    assert forms.invalid(forms.props("compute_ood_visualization", ds, params)) == {"method": message}
    assert message in forms.refusal("compute_ood_visualization", ds, params)
    assert message in _run_refusal("compute_ood_visualization", ds, params)
    assert "m" not in ds.list_brain_runs()


def _score(**params):
    return dict(dict(embeddings_field="vec", score_field="s", method="knn", reference_tag="trusted",
                     show_advanced=False, overwrite=False, delegate=False), **params)


def test_score_form_names_a_reduction_it_does_not_offer_even_when_the_group_is_hidden(form_dataset):
    ds = form_dataset
    message = "reduce='lda' is not one of the choices ('none', 'pca', 'umap', 'random'): pick one of them"
    assert forms.invalid(forms.props("score_ood", ds, _score(reduce="lda", show_advanced=True))) == {"reduce": message}
    hidden = forms.invalid(forms.props("score_ood", ds, _score(reduce="lda")))
    assert hidden == {"reduce_error": message}
    assert message in forms.refusal("score_ood", ds, _score(reduce="lda"))
    assert message in _run_refusal("score_ood", ds, _score(reduce="lda"))
    assert "s" not in ds.get_field_schema()


def test_score_run_refuses_a_method_by_name(form_dataset):
    from ood_core.detectors import detector_names

    ds = form_dataset
    message = _run_refusal("score_ood", ds, _score(method="knnn"))
    assert message.startswith("method='knnn' is not one of the choices (")
    assert message.endswith("): pick one of them\n\nIn this form: `method` is the input 'Method'.")
    assert all(repr(name) in message for name in detector_names())


def test_score_form_refuses_a_reference_tag_no_sample_carries(form_dataset):
    ds = form_dataset
    props = forms.props("score_ood", ds, _score(reference_tag="gone"))
    assert forms.invalid(props) == {"reference_tag": "no sample is tagged 'gone' (removed since the form opened?): "
                                                     "choose another tag, or leave it empty to fit on the target "
                                                     "itself (unsupervised)"}
    assert "no sample is tagged 'gone'" in forms.refusal("score_ood", ds, _score(reference_tag="gone"))


def test_score_form_refuses_a_similarity_index_that_is_gone(form_dataset):
    ds = form_dataset
    params = _score(similarity_index="old_index", k=5)
    message = ("similarity_index='old_index' is not among this dataset's similarity indexes for 'vec' (deleted "
               "since the form opened?): leave 'Similarity index' empty to search in memory")
    assert forms.invalid(forms.props("score_ood", ds, params)) == {"similarity_index": message}
    assert message in forms.refusal("score_ood", ds, params)


def test_manage_runs_names_an_action_it_does_not_know(form_dataset):
    ds = form_dataset
    ood.compute_ood_scores(ds, "vec", "s", reference="trusted", progress=False)
    message = "action='purge' is not one of the choices ('list', 'rename', 'delete'): pick one of them"
    assert forms.invalid(forms.props("manage_ood_runs", ds, dict(action="purge", run_key="s"))) == {"action": message}
    assert message in forms.refusal("manage_ood_runs", ds, dict(action="purge", run_key="s"))
    assert message in _run_refusal("manage_ood_runs", ds, dict(action="purge", run_key="s"))
    assert "s" in ds.list_runs()


def test_manage_runs_does_not_take_no_for_a_confirmation(form_dataset):
    """``confirm_delete="no"`` from a Python call was read as ticked (FiftyOne does not check a box's type): the run
    was deleted."""
    ds = form_dataset
    ood.compute_ood_scores(ds, "vec", "s", reference="trusted", progress=False)
    params = dict(action="delete", run_key="s", delete_fields=True, confirm_delete="no")
    message = "confirm_delete='no' is not a yes/no value; pass confirm_delete=True or confirm_delete=False"
    assert forms.invalid(forms.props("manage_ood_runs", ds, params)) == {"confirm_delete": message}
    assert message in forms.refusal("manage_ood_runs", ds, params)
    assert "s" in ds.list_runs() and "s" in ds.get_field_schema()
    # a wrong 'Also delete the run's fields' is said on its box, not only by the run
    props = forms.props("manage_ood_runs", ds, dict(params, delete_fields="yes", confirm_delete=True))
    assert forms.invalid(props) == {"delete_fields": "delete_fields='yes' is not a yes/no value; pass "
                                                     "delete_fields=True or delete_fields=False"}
    forms.execute("manage_ood_runs", ds, dict(params, confirm_delete=True))
    assert "s" not in ds.list_runs()


# --------------------------------------------------------------------------- yes/no values and field names from Python


def test_delegate_no_is_refused_not_read_as_yes(form_dataset):
    """``op(view, ..., delegate="no")`` queued the run as a delegated operation (``bool("no")`` is True)."""
    ds = form_dataset
    params = dict(embeddings_field="vec", brain_key="m", method="pca", overwrite=False, delegate="no")
    message = "delegate='no' is not a yes/no value; pass delegate=True or delegate=False"
    assert forms.invalid(forms.props("compute_ood_visualization", ds, params)) == {"delegate": message}
    assert message in forms.refusal("compute_ood_visualization", ds, params)
    assert "m" not in ds.list_brain_runs()
    assert not forms.invalid(forms.props("compute_ood_visualization", ds, dict(params, delegate=False)))


def test_forms_refuse_a_yes_no_box_given_as_text(form_dataset):
    """FiftyOne does not check the type of a box's value: the forms accepted "no" and only the run refused it."""
    ds = form_dataset
    message = "{0}='no' is not a yes/no value; pass {0}=True or {0}=False"
    props = forms.props("score_ood", ds, _score(overwrite="no"))
    assert forms.invalid(props) == {"overwrite": message.format("overwrite")}
    props = forms.props("compute_pyramid_embeddings", ds, _embed(skip_failures="no"))
    assert forms.invalid(props) == {"skip_failures": message.format("skip_failures")}
    props = forms.props("audit_dataset", ds, dict(embeddings_field="vec", audit_key="a", near_duplicates="no"))
    assert forms.invalid(props) == {"near_duplicates": message.format("near_duplicates")}
    assert message.format("near_duplicates") in forms.refusal("audit_dataset", ds, dict(
        embeddings_field="vec", audit_key="a", near_duplicates="no"))


def test_label_field_that_is_not_a_name_is_refused_not_a_crash(form_dataset):
    """A list or a number as ``label_field`` crashed the score and audit forms (AttributeError in FiftyOne)."""
    ds = form_dataset
    for value in (["ground_truth"], 3):
        message = f"label_field={value!r} is not a field name (pass the name as a string): pick 'ground_truth'"
        props = forms.props("score_ood", ds, _score(method="knn", label_field=value))
        assert forms.invalid(props) == {"label_field": message}
        props = forms.props("audit_dataset", ds, dict(embeddings_field="vec", audit_key="a", label_field=value))
        assert forms.invalid(props) == {"label_field": message}


def test_embeddings_operator_takes_levels_by_name_or_one_index_from_python(form_dataset):
    """``op(view, "e", levels="blocks.1")`` became the form text "b,l,o,c,k,s,.,1" (refused), ``levels=2`` a bare
    TypeError, as the SDK takes both."""
    import fiftyone.operators as foo

    from ood_core.fo import runs as fo_runs

    ds = form_dataset
    op = foo.get_operator(forms.uri("compute_pyramid_embeddings"))
    few = ds.limit(4)
    op(few, "e1", levels="blocks.1", model_name="tf_efficientnet_lite0", grid=1)
    op(few, "e2", levels=2, model_name="tf_efficientnet_lite0", grid=1)
    op(few, "e3", levels=("blocks.1", 2), model_name="tf_efficientnet_lite0", grid=1)
    recorded = [fo_runs.get_ood_run_info(ds, key)["backbone"]["level_indices"] for key in ("e1", "e2", "e3")]
    assert recorded == [[1], [2], [1, 2]]
    with pytest.raises(OODInputError, match=r"levels=2\.5 is not a list of pyramid levels; pass indices or module"):
        op(few, "e4", levels=2.5)
