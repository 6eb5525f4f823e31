"""What a first-time App user meets: allowed folders that add to the defaults (and say the delegated workers need
them too), run errors that name the form's inputs, backbone and level names checked in the form, the same
"Skip unreadable images" in both forms that compute embeddings, and the score form preselecting the labels."""

import asyncio
import os
import pathlib
import time

import pytest

import form_helpers as forms
from ood_core.errors import OODInputError, WeightsNotFoundError

LITE = dict(model_name="tf_efficientnet_lite0", levels="1", grid=1, weights="bundled")
README = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()


def _result(name, view, params):
    """The App's execution (validation, then the run) of ``params``, with its error message as the App gets it."""
    from fiftyone.operators.executor import execute_or_delegate_operator

    request = dict(dataset_name=view._dataset.name, params=params, selected=[], view=view.view()._serialize())
    return asyncio.run(execute_or_delegate_operator(forms.uri(name), request, exhaust=True))


# ----------------------------------------------------------------------------- 1, 2: allowed folders


def test_allowed_folders_variable_adds_to_the_defaults_and_the_audit_form_opens_valid(form_dataset, tmp_path,
                                                                                      monkeypatch):
    from ood_core.fo.audit import default_report_path
    from ood_core.paths import ENV_ALLOWED_DIRS, check_allowed_path, configured_allowed_dirs, default_allowed_dirs

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FIFTYONE_OOD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(ENV_ALLOWED_DIRS, str(tmp_path / "extra"))
    assert configured_allowed_dirs() == default_allowed_dirs() + [str(tmp_path / "extra")]
    for ok in (tmp_path / "extra" / "w.safetensors", tmp_path / "home" / "fiftyone" / "ood_reports" / "r.html",
               tmp_path / "cache" / "words.txt"):
        assert check_allowed_path(str(ok), "report_path") == os.path.realpath(ok)
    with pytest.raises(OODInputError):
        check_allowed_path(str(tmp_path / "elsewhere" / "r.html"), "report_path")
    # the audit form's own default report path (~/fiftyone/ood_reports/) stays valid with the variable set
    props = forms.props("audit_dataset", form_dataset, {})
    # shown as the user's own folder (~), expanded where the run runs
    assert props["report_path"].default == "~/fiftyone/ood_reports/" + os.path.basename(
        default_report_path(form_dataset, "ood_audit"))
    assert not props["report_path"].invalid, props["report_path"].error_message


def test_a_refused_path_says_the_app_and_the_delegated_workers_need_the_variable(form_dataset, tmp_path):
    props = forms.props("audit_dataset", form_dataset, dict(report_path="/etc/r.html", export_dir="/etc/x"))
    for name in ("report_path", "export_dir"):
        message = props[name].error_message
        assert props[name].invalid and "FIFTYONE_OOD_ALLOWED_DIRS" in message, name
        assert "FiftyOne App" in message and "`fiftyone delegated launch` worker" in message, message


def test_readme_says_which_paths_are_checked_and_where_the_variable_is_needed():
    app = README.split("## The FiftyOne App")[1].split("\n## ")[0]
    paragraph = app[app.index("**Files typed into a form**"):].split("\n\n")[0]
    for words in ("FIFTYONE_OOD_ALLOWED_DIRS", "HTML report file", "export folder", "weights", "word list",
                  "`~/fiftyone`", "adds", "fiftyone delegated launch"):
        assert words in paragraph, words


# ----------------------------------------------------------------------------- 3: errors name the form's inputs


def test_run_errors_name_the_form_input_of_the_sdk_parameter(form_dataset, tmp_path):
    # an int parameter refused (the input sits in the hidden advanced group): the form shows it before the run
    params = dict(embeddings_field="e", project_dim=-5)
    shown = forms.props("compute_pyramid_embeddings", form_dataset, params)["project_dim_error"].view.label
    assert "project_dim=-5 is too small; use an integer >= 0" in shown and "Show advanced settings" in shown
    # and a run that skips the form (a Python call of the operator) names the input in the SDK's refusal
    import fiftyone.operators as foo

    with pytest.raises(Exception) as err:
        foo.get_operator(forms.uri("compute_pyramid_embeddings")).execute(forms.context(form_dataset, params))
    message = str(err.value)
    assert message.startswith("project_dim=-5 is too small; use an integer >= 0")  # the SDK's words
    assert ("`project_dim` is the input 'Reduce to dimensions (0 = keep)' (shown by 'Show advanced settings "
            "(backbone, levels, speed)')") in message
    # an unreadable image: the SDK says "pass skip_failures=True", the form names its box
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    sample = form_dataset.first()
    sample.filepath = str(bad)
    sample.save()
    result = _result("compute_pyramid_embeddings", form_dataset, dict(LITE, embeddings_field="e", show_advanced=True,
                                                               skip_failures=False))
    assert "pass skip_failures=True" in result.error_message
    assert "`skip_failures` is the input 'Skip unreadable images'." in result.error_message


def test_the_hint_maps_sdk_names_that_differ_from_the_form(form_dataset):
    import fiftyone.operators as foo

    from operators.hints import form_labels, with_form_hint

    op = foo.get_operator(forms.uri("compute_neglabel_scores"))
    form = op.resolve_input(forms.context(form_dataset, {})).type
    labels = form_labels(form)
    assert labels["weights"] == ("CLIP weights", None) and labels["tau"][1].startswith("Show the papers'")
    error = WeightsNotFoundError('Could not get pretrained weights: pass a local file: CLIPEncoder("ViT-B-16", '
                                 'pretrained="/path/to/weights.safetensors", quick_gelu=True).')
    hinted = with_form_hint(error, form)
    assert type(hinted) is WeightsNotFoundError and str(hinted).startswith(str(error))
    assert "`pretrained` is the input 'CLIP weights'" in str(hinted) and "`quick_gelu` is the input 'QuickGELU'" \
        in str(hinted)
    plain = OODInputError("the view is empty")
    assert with_form_hint(plain, form) is plain  # nothing to name: the message is left alone


# ----------------------------------------------------------------------------- 4: backbone and levels in the form


def test_embeddings_form_checks_the_backbone_and_level_names(form_dataset):
    from ood_core.weights import require_timm_model

    adv = dict(show_advanced=True, embeddings_field="e")
    props = forms.props("compute_pyramid_embeddings", form_dataset, dict(adv, model_name="not_a_model_xyz"))
    with pytest.raises(OODInputError) as sdk:
        require_timm_model("not_a_model_xyz")
    assert props["model_name"].invalid and props["model_name"].error_message == str(sdk.value)
    props = forms.props("compute_pyramid_embeddings", form_dataset, dict(adv, model_name="tf_efficientnet_lite0",
                                                             levels="blocks.99,foo"))
    assert props["levels"].invalid and "unknown pyramid level 'blocks.99'" in props["levels"].error_message
    assert "blocks.6" in props["levels"].error_message  # the backbone's own level names
    for good in ("1,2", "blocks.2", "-1"):
        props = forms.props("compute_pyramid_embeddings", form_dataset,
                            dict(adv, model_name="tf_efficientnet_lite0", levels=good))
        assert not props["levels"].invalid, good
    # 'auto': a name of either automatic backbone passes (the run picks one), a name of neither is refused
    assert not forms.props("compute_pyramid_embeddings", form_dataset, dict(adv, levels="layer1"))["levels"].invalid
    props = forms.props("compute_pyramid_embeddings", form_dataset, dict(adv, levels="foo"))
    assert props["levels"].invalid and "resnet50" in props["levels"].error_message
    # cheap once the backbone's names are cached (built without weights, once per backbone)
    start = time.perf_counter()
    forms.props("compute_pyramid_embeddings", form_dataset,
                dict(adv, model_name="tf_efficientnet_lite0", levels="blocks.99"))
    assert time.perf_counter() - start < 2.0
    # the App refuses to run it (the typed values stay in the form), naming the field
    from fiftyone.operators.executor import ExecutionError

    with pytest.raises(ExecutionError, match="Validation error. Path: levels. Reason: resnet50: unknown pyramid level"):
        _result("compute_pyramid_embeddings", form_dataset, dict(adv, levels="blocks.99,foo"))
    # typed, then the advanced group hidden: the form still says why it cannot run
    props = forms.props("compute_pyramid_embeddings", form_dataset,
                        dict(embeddings_field="e", model_name="not_a_model_xyz"))
    assert props["model_name_error"].invalid and "timm backbone" in props["model_name_error"].view.label


# ----------------------------------------------------------------------------- 5: skip unreadable images


def test_both_embedding_forms_show_skip_unreadable_images_with_the_sdk_default(form_dataset):
    import inspect

    import ood_core as ood

    embed = forms.props("compute_pyramid_embeddings", form_dataset, dict(embeddings_field="e"))  # advanced hidden
    sdk = inspect.signature(ood.compute_pyramid_embeddings).parameters["skip_failures"].default
    assert embed["skip_failures"].default is sdk and embed["skip_failures"].view.label == "Skip unreadable images"
    assert "unticked: the first one stops the run" in embed["skip_failures"].view.description
    form_dataset.delete_sample_fields(["vec", "vec40"])  # no vectors: the audit computes embeddings
    audit = forms.props("audit_dataset", form_dataset, {})
    assert audit["skip_failures"].default is inspect.signature(ood.audit).parameters["skip_failures"].default
    assert audit["skip_failures"].view.label == "Skip unreadable images"


# ----------------------------------------------------------------------------- 6: score form preselects the labels


def test_score_form_preselects_the_only_label_field_for_methods_that_use_labels(form_dataset):
    from ood_core.detectors import detector_class, detector_names, requires_labels

    for method in detector_names():
        props = forms.props("score_ood", form_dataset, dict(embeddings_field="vec", method=method))
        uses = requires_labels(method) or detector_class(method).accepts_optional_labels
        assert props["label_field"].default == ("ground_truth" if uses else None), method
    props = forms.props("score_ood", form_dataset, dict(embeddings_field="vec"))  # the default method
    assert props["label_field"].default == "ground_truth"


# ----------------------------------------------------------------------------- 7: smaller things


def test_operator_browser_lists_the_audit_first_and_the_method_dropdown_is_grouped(form_dataset):
    """FiftyOne 1.22's operator browser orders matches by the first character of the description (then label)."""
    from operators import OPERATORS

    listed = [op() for op in OPERATORS if not getattr(op().config, "unlisted", False)]
    first = min(listed, key=lambda op: (op.config.description or op.config.label)[0])
    assert first.name == "audit_dataset"
    ds = form_dataset
    method = forms.props("score_ood", ds, dict(embeddings_field="vec"))["method"]
    choices = [(c.value, c.label, c.description) for c in method.view.choices]
    assert choices[0][:2] == ("pyramid_knn", "OOD: Pyramid k-NN (default)")
    tasks = [label.split(":")[0] for _, label, _ in choices]
    assert tasks == sorted(tasks, key=lambda t: t != "OOD")  # OOD methods, then wrong-label ones
    assert all(label.count("(") <= 1 for _, label, _ in choices)
    assert not any("class_conditional" in description for _, _, description in choices)


def test_number_inputs_say_the_minimum_they_accept(form_dataset):
    props = forms.props("compute_pyramid_embeddings", form_dataset,
                        dict(embeddings_field="e", show_advanced=True, grid=0, batch_size=-1))
    assert props["grid"].error_message == "grid=0 is too small; use an integer >= 1"
    assert props["batch_size"].error_message == "batch_size=-1 is too small; use an integer >= 1"
    props = forms.props("compute_pyramid_embeddings", form_dataset,
                        dict(embeddings_field="e", show_advanced=True, grid=1, batch_size=1))
    assert not props["grid"].invalid and not props["batch_size"].invalid
    assert "too large" in forms.props("compute_pyramid_embeddings", form_dataset, dict(show_advanced=True, grid=9))[
        "grid"].error_message
    for prop in props.values():
        assert getattr(prop.type, "min", None) is None, "the App's min says 'must be greater than'"


def test_result_views_name_what_exists_and_what_was_written(form_dataset):
    from operators.scoring import score_report
    from operators.visualization import score_fields

    ds = form_dataset
    assert score_fields(ds) == []
    result = _result("score_ood", ds, dict(embeddings_field="vec", score_field="s", reference_tag="trusted"))
    assert result.error is None, result.error
    report = result.result["report"]
    assert "- p-values: `s_pvalue`" in report and "- reference: 20 trusted samples (tag `trusted`)" in report
    # the default detector's standardised scale says what its numbers mean
    assert "(0 = as typical as the trusted samples, 1 = one of their standard deviations further)" in report
    # no label field given (a Python call): the detector sized k from the number of trusted samples, not classes
    assert "chosen by 'auto' from the number of trusted samples" in report
    assert score_fields(ds) == ["s"]
    summary = {"field": "s", "num_scored": 4, "density_ratio": {"used": False, "reason": "r", "p_value": 0.4}}
    assert "- in plain words: the scored images are spread like the trusted ones" in score_report(summary, "vec")
    # a test stopped early gives only a bound: it did measure
    summary["density_ratio"].update(p_value=None, p_value_at_least=0.2)
    assert "- in plain words: the scored images are spread like the trusted ones" in score_report(summary, "vec")
    # not tested (too few images): nothing was measured about how they are spread
    summary["density_ratio"]["p_value_at_least"] = None
    assert "- in plain words: each score is the distance to the trusted images only" in score_report(summary, "vec")
    # the map's result view suggests only score fields that exist
    result = _result("compute_ood_visualization", ds, dict(embeddings_field="vec", brain_key="m", method="pca"))
    assert "colour the points by a score field: `s`" in result.result["report"]
    assert "ood_knn" not in result.result["report"]


def test_neglabel_form_says_stored_clip_embeddings_come_from_python(form_dataset):
    description = forms.props("compute_neglabel_scores", form_dataset, {})["embeddings_field"].view.description
    assert "no App operator" in description and "ood.compute_clip_embeddings(dataset, 'clip_embeddings')" in \
        description
