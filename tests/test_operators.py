"""Operators through FiftyOne's own machinery: discovery, immediate, delegated, SDK __call__, forms."""

import os

import pytest
import yaml

import form_helpers as forms
import ood_core as ood

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_operator_is_registered_and_listed_in_fiftyone_yml():
    import fiftyone.operators as foo

    from operators import OPERATORS

    with open(os.path.join(REPO, "fiftyone.yml")) as f:
        meta = yaml.safe_load(f)
    panels = {op().config.name for op in OPERATORS if issubclass(op, foo.Panel)}
    operators = {op().config.name for op in OPERATORS if not issubclass(op, foo.Panel)}
    assert operators == set(meta["operators"]) and panels == set(meta["panels"]) == {"ood_review"}
    available = {op.uri for op in foo.list_operators()}
    for name in operators | panels:
        assert forms.uri(name) in available, f"{name} not discovered from FIFTYONE_PLUGINS_DIR"
    # every operator has a Material icon (a name, not a file path)
    for op in OPERATORS:
        icon = op().config.icon
        assert icon and "/" not in icon and "." not in icon, (op, icon)


def _run(uri, view, params, **kw):
    import fiftyone.operators as foo

    result = foo.execute_operator(uri, dict(view=view.view()), params=params, **kw)
    assert result.error is None, result.error
    return result


def test_score_result_says_whether_the_density_ratio_was_used(form_images):
    """The App's result view of a default-method score run names the density-ratio decision and its reason."""
    ds = form_images
    _run(forms.uri("compute_pyramid_embeddings"), ds,
         dict(embeddings_field="emb", model_name="tf_efficientnet_lite0", levels="1,2,3", grid=1, batch_size=16))
    out = _run(forms.uri("score_ood"), ds, dict(embeddings_field="emb", score_field="ood", method="pyramid_knn",
                                          reference_tag="trusted", label_field="ground_truth"))
    ratio = out.result["density_ratio"]
    assert set(ratio) == {"used", "p_value", "p_value_at_least", "permutations_run",
                          "effect", "weight", "k_reference", "k_scored", "class_mix_shift",
                          "class_mix_chance", "class_mix_reference", "class_mix_crowd",
                          "class_mix_excess_without_crowd", "pool_sample", "reason"}
    line = f"- scored-set density ratio: {'used' if ratio['used'] else 'not used'}: {ratio['reason']}"
    assert line in out.result["report"]
    fitted = ood.get_ood_run_info(ds, "ood")["detector_fitted"]
    assert ratio == fitted["transductive"]
    # the component gate (trusted labels): each component's accuracy is reported; a line only if one sat out
    gate = out.result["component_gate"]
    assert gate["accuracy"] == fitted["component_accuracy"] and set(gate["accuracy"]) == {"deepest level",
                                                                                        "all levels"}
    assert gate["left_out"] == [n for n in fitted["components"] if n not in fitted["active_components"]]
    assert ("- feature levels:" in out.result["report"]) == bool(gate["left_out"])


def test_score_report_names_a_component_that_sat_out():
    from operators.scoring import score_report

    summary = {"field": "ood", "method": "pyramid_knn", "num_scored": 10,
               "component_gate": {"accuracy": {"deepest level": 0.8, "all levels": 0.68}, "left_out": ["all levels"]}}
    report = score_report(summary, "emb")
    assert ("- feature levels: 'all levels' sat out: it tells the trusted classes apart worse (leave-one-out "
            "1-NN label accuracy 0.680 against 0.800 for 'deepest level')") in report
    summary["component_gate"]["left_out"] = []
    assert "feature levels" not in score_report(summary, "emb")


def test_score_report_shows_the_density_ratio_warning():
    from operators.scoring import score_report

    ratio = {"used": True, "p_value": 0.005, "effect": 6.0, "weight": 1.3, "k_reference": 5, "k_scored": 5,
             "reason": "the scored set differs from the reference"}
    summary = {"field": "ood", "method": "pyramid_knn", "num_scored": 10, "density_ratio": dict(ratio)}
    assert "Warning" not in score_report(summary, "emb")
    summary["density_ratio"]["warning"] = "the trusted classes are imbalanced (largest 400, smallest 8 samples)"
    assert ("- scored-set density ratio: used: the scored set differs from the reference (permutation p = 0.005), "
            "weight 1.3. Warning: the trusted classes are imbalanced (largest 400, smallest 8 samples)") in \
        score_report(summary, "emb")


def test_score_report_warns_about_classes_without_a_reference_item():
    from operators.scoring import score_report

    summary = {"field": "ood", "method": "pyramid_knn", "num_scored": 10}
    assert "warning" not in score_report(summary, "emb", "ground_truth")
    summary["uncovered_classes"] = {"count": 7, "num_items": 30, "largest": {f"c{i}": 10 - i for i in range(7)}}
    report = score_report(summary, "emb", "ground_truth")
    assert ("- warning: 7 class(es) of 'ground_truth' among the scored items have no reference (trusted) item: "
            "'c0' (10), 'c1' (9), 'c2' (8), 'c3' (7), 'c4' (6) and 2 more. Their 30 items") in report


def test_label_issue_result_says_how_many_suspects_sat_out_the_second_vote(form_images):
    """The result view of a default wrong-label run names the samples left out of the second vote."""
    ds = form_images
    _run(forms.uri("compute_pyramid_embeddings"), ds,
         dict(embeddings_field="emb", model_name="tf_efficientnet_lite0", levels="1,2,3", grid=1, batch_size=16))
    out = _run(forms.uri("score_ood"), ds, dict(embeddings_field="emb", score_field="issue",
                                          method="weighted_label_vote", label_field="ground_truth"))
    fitted = ood.get_ood_run_info(ds, "issue")["detector_fitted"]
    # 4 images per class: some neighbours vote for another class
    assert out.result["label_suspects"] == fitted["num_suspects"] > 0
    assert (f"- second vote: {fitted['num_suspects']:,} samples for which the first vote favours another label "
            "did not vote again") in out.result["report"]
    assert out.result["label_lda_issues"] == fitted["num_lda_issues"] > 0
    assert (f"- second LDA: fitted without the {fitted['num_lda_issues']:,} samples that Confident Learning flags "
            "as likely mislabelled") in out.result["report"]
    assert "density ratio" not in out.result["report"]


def test_pipeline_through_operators_immediate(form_images):
    ds = form_images
    out = _run(forms.uri("compute_pyramid_embeddings"), ds,
               dict(embeddings_field="emb", model_name="tf_efficientnet_lite0", levels="1,2,3", grid=1, batch_size=16))
    assert out.result["num_embedded"] == 40 and out.result["dim"] == 24 + 40 + 112
    out = _run(forms.uri("score_ood"), ds, dict(embeddings_field="emb", score_field="ood", method="knn",
                                          reference_tag="trusted", k=3))
    assert out.result["num_scored"] == 40
    scores = ds.values("ood")
    assert all(isinstance(s, float) for s in scores)
    out = _run(forms.uri("score_ood"), ds, dict(embeddings_field="emb", score_field="issue", method="label_agreement",
                                          label_field="ground_truth", k=3))
    assert all(0.0 <= s <= 1.0 for s in ds.values("issue"))
    out = _run(forms.uri("compute_ood_visualization"), ds, dict(embeddings_field="emb", brain_key="viz", method="pca"))
    assert "viz" in ds.list_brain_runs()
    out = _run(forms.uri("manage_ood_runs"), ds, dict(action="list"))
    assert {r["run_key"] for r in out.result["runs"]} == {"emb", "ood", "issue"}
    out = _run(forms.uri("manage_ood_runs"), ds, dict(action="delete", run_key="issue", delete_fields=True,
                                                  confirm_delete=True))
    assert "`issue`" in out.result["report"] and "fields deleted" in out.result["report"]
    ds.reload()
    assert not ds.has_field("issue")
    assert {r["run_key"] for r in out.result["runs"]} == {"emb", "ood"}


def test_delegated_execution_runs_through_the_queue(form_images):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    ds = form_images
    uri = forms.uri("compute_pyramid_embeddings")
    queued = foo.execute_operator(
        uri, dict(view=ds.view()),
        params=dict(embeddings_field="emb", model_name="tf_efficientnet_lite0", levels="2", grid=1, delegate=True),
    )
    assert queued.delegated
    assert not ds.has_field("emb")  # nothing happens until an orchestrator runs it
    DelegatedOperationService().execute_queued_operations(operator=uri, dataset_name=ds.name)
    ds.reload()
    vecs = ds.values("emb")
    assert len(vecs) == 40 and all(v is not None and v.shape == (40,) for v in vecs)


def test_sdk_call_on_operator_objects(form_images):
    import fiftyone.operators as foo

    ds = form_images
    embed = foo.get_operator(forms.uri("compute_pyramid_embeddings"))
    score = foo.get_operator(forms.uri("score_ood"))
    embed(ds, "emb", model_name="tf_efficientnet_lite0", levels=[2, 3])
    score(ds.match_tags("test"), "emb", "ood", method="lof", reference_tag="trusted", k=3)
    test_scores = ds.match_tags("test").values("ood")
    assert all(isinstance(s, float) for s in test_scores)
    # the reference samples get their self-excluded scores too (thresholds, Embeddings plot colours)
    assert all(isinstance(s, float) for s in ds.match_tags("trusted").values("ood"))


def test_forms_flag_taken_names_and_bad_keys(form_images):
    ds = form_images
    ds.set_values("ood_score", [0.0] * len(ds))
    props = forms.props("compute_pyramid_embeddings", ds, dict(embeddings_field="ood_score"))
    assert props["embeddings_field"].invalid and "already exist" in props["embeddings_field"].error_message
    props = forms.props("compute_pyramid_embeddings", ds, dict(embeddings_field="bad name"))
    assert props["embeddings_field"].invalid and "not valid" in props["embeddings_field"].error_message
    # a field no run of the plugin wrote is the user's: overwrite does not make it an output
    props = forms.props("compute_pyramid_embeddings", ds, dict(embeddings_field="ood_score", overwrite=True))
    assert props["embeddings_field"].invalid and "no fiftyone-ood run wrote it" in props["embeddings_field"].error_message
    # scoring before any embeddings exist: the form says what to run first
    props = forms.props("score_ood", ds, dict())
    assert props["no_embeddings"].invalid and "embeddings" in props["no_embeddings"].error_message


def test_form_defaults_come_from_the_sdk_and_the_detector_registry(form_images):
    import inspect

    import ood_core as ood
    from ood_core.detectors import detector_class, detector_names

    ds = form_images
    emb_sig = inspect.signature(ood.compute_pyramid_embeddings).parameters
    props = forms.props("compute_pyramid_embeddings", ds, dict(project_dim=8, show_advanced=True))
    for name in ("model_name", "mode", "grid", "batch_size", "num_workers", "skip_failures", "project_method"):
        assert props[name].default == emb_sig[name].default, name
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1)
    # every registered detector is offered, and k defaults to that detector's own default
    props = forms.props("score_ood", ds, dict(embeddings_field="emb"))
    assert set(props["method"].type.values) == set(detector_names())
    assert props["method"].default == inspect.signature(ood.compute_ood_scores).parameters["method"].default
    for method in detector_names():
        props = forms.props("score_ood", ds, dict(embeddings_field="emb", method=method))
        k_default = detector_class(method).default_params().get("k")
        if isinstance(k_default, int):
            assert props["k"].default == k_default, method
        elif k_default is not None:  # "auto": an optional number field, empty = the detector's auto k
            assert props["k"].default is None and not props["k"].required, method
            assert "auto" in props["k"].view.description, method
        else:
            assert "k" not in props, method
    props = forms.props("score_ood", ds, dict(embeddings_field="emb", method="label_agreement"))
    assert props["score_field"].default == "label_issue" and props["label_field"].required


def test_manage_runs_list_has_a_table_of_runs(form_images):
    import fiftyone.operators as foo

    import ood_core as ood

    ds = form_images
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1)
    ood.compute_ood_scores(ds, "emb", "ood", reference="trusted", k=3)
    out = _run(forms.uri("manage_ood_runs"), ds, dict(action="list"))
    rows = {r["run_key"]: r for r in out.result["runs"]}
    assert rows["ood"]["kind"] == "ood_scores" and rows["ood"]["fields"] == "ood, ood_pvalue"
    assert rows["emb"]["kind"] == "embeddings" and rows["emb"]["date"][:2] == "20"
    # the output view is a table whose columns are exactly those row keys
    op = foo.get_operator(forms.uri("manage_ood_runs"))
    view = op.resolve_output(None).type.properties["runs"].view
    assert [c.key for c in view.columns] == list(next(iter(rows.values())))


def test_operator_refuses_bad_params_and_writes_nothing(form_images):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionError

    ds = form_images
    params = dict(embeddings_field="nope", score_field="s", method="knn")
    with pytest.raises(ExecutionError, match="no embeddings run"):
        foo.execute_operator(forms.uri("score_ood"), dict(view=ds.view()), params=params)
    _run(forms.uri("compute_pyramid_embeddings"), ds,
         dict(embeddings_field="emb", model_name="tf_efficientnet_lite0", levels="2"))
    with pytest.raises(ExecutionError, match="embeddings_field"):
        foo.execute_operator(forms.uri("score_ood"), dict(view=ds.view()), params=params)
    # a label method without a label field fails inside the SDK with its own message
    bad = dict(embeddings_field="emb", score_field="s", method="class_lof")
    with pytest.raises(ExecutionError, match="label"):
        foo.execute_operator(forms.uri("score_ood"), dict(view=ds.view()), params=bad)
    ds.reload()
    assert not ds.has_field("s") and "s" not in ds.list_runs()


# --------------------------------------------------------------------------- CLIP negative-label operators


def test_neglabel_operator_form_and_immediate_run(form_images, tiny_clip_params, one_torch_thread):
    from ood_core.fo import runs as fo_runs

    ds = form_images
    uri = forms.uri("compute_neglabel_scores")
    ds.set_values("taken", [0.0] * len(ds))
    props = forms.props(uri, ds, dict(score_field="taken"))
    assert props["score_field"].invalid and "already exist" in props["score_field"].error_message
    # a taken prediction field is the prediction field's error, not the score field's
    props = forms.props(uri, ds, dict(score_field="fresh", prediction_field="taken"))
    assert not props["score_field"].invalid and props["prediction_field"].invalid
    assert props["label_field"].type.values == ["ground_truth"]  # default ID source: a label field
    assert props["label_field"].default == "ground_truth"  # the only Classification field, preselected
    assert "tau" not in forms.props(uri, ds, dict())  # the papers' hyper-parameters sit behind a switch
    props = forms.props(uri, ds, dict(show_advanced=True, id_source="labels", id_labels=" , ", tau=0, num_groups=0,
                                   prediction_field="bad name"))
    for name in ("id_labels", "tau", "num_groups", "prediction_field"):
        assert props[name].invalid, name

    out = _run(uri, ds, dict(id_source="labels", id_labels="Trouser, Bag, Sneaker", score_field="nl",
                             num_negatives=12, num_groups=3, **tiny_clip_params))
    assert out.result["num_scored"] == 40 and out.result["num_negatives"] == 12
    # the result view: what was written, counts, the time taken
    report = out.result["report"]
    assert "NegLabel scores written to `nl`" in report and "`neglabel_prediction`" in report
    assert "samples scored: 40 of 40" in report and "negative labels: 12" in report and "Took " in report
    ds.reload()
    assert all(0.0 <= s <= 1.0 for s in ds.values("nl"))
    assert {p.label for p in ds.values("neglabel_prediction")} <= {"Trouser", "Bag", "Sneaker"}
    info = fo_runs.get_ood_run_info(ds, "nl")
    assert info["kind"] == "neglabel" and info["clip"]["pretrained"] == tiny_clip_params["weights"]
    results = fo_runs.load_ood_results(ds, "nl")
    assert len(results.negative_words) == 12 and results.excluded_words == []  # ID names kept (official default)
    # Classes of a label field; the existing run key is refused without overwrite.
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionError

    params = dict(id_source="label_field", label_field="ground_truth", score_field="nl", num_negatives=12,
                  num_groups=3, **tiny_clip_params)
    with pytest.raises(ExecutionError, match="run key 'nl' .* already exist"):
        foo.execute_operator(uri, dict(view=ds.view()), params=params)
    _run(uri, ds, dict(params, overwrite=True))
    assert fo_runs.get_ood_run_info(ds, "nl")["label_field"] == "ground_truth"
    assert len(fo_runs.load_ood_results(ds, "nl").id_names) == 10


def test_rap_operator_delegated_through_sdk_call(form_images, tiny_clip_params, one_torch_thread):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    from ood_core.fo import runs as fo_runs

    ds = form_images
    uri = forms.uri("compute_rap_scores")
    props = forms.props(uri, ds, dict(few_shot_mode="tag", few_shot_tag="trusted", u1=0.6, u2=0.4, num_crops=0,
                                   show_advanced=True))
    assert "trusted" in props["few_shot_tag"].type.values
    assert props["u2"].invalid and props["num_crops"].invalid and not props["few_shot_tag"].invalid
    props = forms.props(uri, ds, dict(id_source="labels", id_labels="Bag", few_shot_mode="k_per_class",
                                   test_time=False))
    assert props["label_field"].type.values == ["ground_truth"] and "u1" not in props
    # class names typed in and few-shot images by tag: nothing tells each image's class, which the paper's
    # crop ranking needs; the form says so unless the ranking by the best ID prompt is chosen
    props = forms.props(uri, ds, dict(id_source="labels", id_labels="Coat,Dress", few_shot_mode="tag",
                                   few_shot_tag="trusted"))
    assert props["crop_ranking_needs_classes"].invalid
    assert "crop_ranking_needs_classes" not in forms.props(uri, ds, dict(
        id_source="labels", id_labels="Coat,Dress", few_shot_mode="tag", few_shot_tag="trusted",
        show_advanced=True, crop_ranking="all_prompts"))
    op = foo.get_operator(uri)
    queued = op(ds, "rap", few_shot_tag="trusted", label_field="ground_truth", num_crops=4, num_keep=2,
                num_negatives=8, num_groups=2, words_per_sample=1, u1=0.0, u2=1.0, retrieval="new_only",
                delegate=True, **tiny_clip_params)
    assert queued.delegated and not ds.has_field("rap")
    DelegatedOperationService().execute_queued_operations(operator=uri, dataset_name=ds.name)
    ds.reload()
    scores = ds.values("rap")
    assert len(scores) == 40 and all(0.0 <= s <= 1.0 for s in scores)
    info = fo_runs.get_ood_run_info(ds, "rap")
    assert info["kind"] == "rap" and info["few_shot"] == {"tag": "trusted"} and info["test_time"] is True
    results = fo_runs.load_ood_results(ds, "rap")
    assert results.few_shot_ids == sorted(ds.match_tags("trusted").values("id"))
    assert len(results.train_negative_words) == 8
    assert len(results.test_negative_words) == len(results.test_negative_sample_ids) > 0


# --------------------------------------------------------------------------- forms: target, preselection, warnings


def test_score_form_preselects_and_warns_about_skipped_samples(form_images):
    import numpy as np

    import ood_core as ood

    ds = form_images
    ood.compute_pyramid_embeddings(ds.limit(10), "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1)
    props = forms.props("score_ood", ds, dict(method="label_agreement"))
    assert props["embeddings_field"].default == "emb"
    assert props["label_field"].default == "ground_truth"  # the only Classification field
    warning = props["embeddings_field_coverage"].view.label
    assert warning == ("Embeddings exist for 10 of 40 samples of the target in 'emb': 30 will be skipped "
                       "(compute embeddings for them first to score them)")
    props = forms.props("score_ood", ds, dict(method="knn"))
    assert props["reference_tag"].default == "trusted"
    # any vector field can be scored; the newest embeddings run comes first
    ds.set_values("other_vectors", [np.arange(1, 5, dtype=np.float32) ** (1 + i / 10) for i in range(len(ds))])
    ood.compute_pyramid_embeddings(ds, "emb2", model_name="tf_efficientnet_lite0", levels=[1], grid=1)
    props = forms.props("score_ood", ds, dict())
    assert props["embeddings_field"].type.values == ["emb2", "emb", "other_vectors"]
    assert props["embeddings_field"].default == "emb2" and "embeddings_field_coverage" not in props
    out = _run(forms.uri("score_ood"), ds, dict(embeddings_field="other_vectors", score_field="ov", k=3,
                                          reference_tag="trusted"))
    assert out.result["num_scored"] == 40
    # the result view: what was written, counts, time, where to look next
    out = _run(forms.uri("score_ood"), ds, dict(embeddings_field="emb", score_field="s10", k=3))
    report = out.result["report"]
    assert "Scores written to `s10`" in report and "samples scored: 10 of 40" in report
    assert "samples skipped: 30 without an embedding in `emb`" in report
    assert "OOD review" in report and "Took " in report
    import fiftyone.operators as foo

    assert "report" in foo.get_operator(forms.uri("score_ood")).resolve_output(None).type.properties


def test_score_and_audit_forms_warn_about_classes_without_a_trusted_sample(form_images):
    from fiftyone import ViewField as F

    import ood_core as ood

    ds = form_images
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1)
    params = dict(method="pyramid_knn", label_field="ground_truth", reference_tag="trusted")
    assert "uncovered_classes" not in forms.props("score_ood", ds, params)  # every class has trusted samples
    ds.match((F("ground_truth.label") == "Bag")).untag_samples("trusted")
    for uri, form in ((forms.uri("score_ood"), params), (forms.uri("audit_dataset"), {})):  # the audit's defaults
        warning = forms.props(uri, ds, form)["uncovered_classes"].view
        assert warning.label == "Classes without a trusted sample"
        assert warning.description.startswith("1 class(es) of 'ground_truth' among the scored items have no "
                                              "reference (trusted) item: 'Bag' (4). Their 4 items")
    assert "uncovered_classes" not in forms.props("score_ood", ds, dict(params, label_field=None))
    assert "uncovered_classes" not in forms.props("score_ood", ds, dict(params, method="knn"))  # labels unused
    # the package's own Classification outputs are not offered as label fields
    ood.compute_label_issues(ds, "ground_truth", "emb", "issue", k=3)
    choices = forms.props("score_ood", ds, params)["label_field"].type.values
    assert "ground_truth" in choices and "issue_suggestion" not in choices


def test_target_choice_dataset_view_or_selection(form_images):
    import ood_core as ood

    ds = form_images
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1)
    test_view = ds.match_tags("test")
    chosen = test_view.values("id")[:5]
    props = forms.props("score_ood", ds, dict(), view=test_view, selected=chosen)
    targets = props["view_target"].type.values
    assert {"DATASET", "CURRENT_VIEW", "SELECTED_SAMPLES"} <= set(targets)
    out = _run(forms.uri("score_ood"), test_view, dict(embeddings_field="emb", score_field="sel", k=3,
                                                 reference_tag="trusted", view_target="SELECTED_SAMPLES"),
               selected=chosen)
    # the selection is scored, and so are the trusted reference samples (self-excluded scores)
    trusted = ds.match_tags("trusted").values("id")
    assert out.result["num_scored"] == 5 + len(trusted)
    ds.reload()
    assert sorted(ds.exists("sel").values("id")) == sorted(chosen + trusted)
    out = _run(forms.uri("score_ood"), test_view, dict(embeddings_field="emb", score_field="cur", k=3,
                                                 reference_tag="trusted", view_target="CURRENT_VIEW"))
    assert out.result["num_scored"] == len(test_view) + len(trusted)


def test_embeddings_form_groups_advanced_settings_and_says_when_it_resumes(form_images):
    import ood_core as ood

    ds = form_images
    props = forms.props("compute_pyramid_embeddings", ds, dict())
    assert "batch_size" not in props and "model_name" not in props and "show_advanced" in props
    props = forms.props("compute_pyramid_embeddings", ds, dict(show_advanced=True))
    assert {"batch_size", "model_name", "levels", "grid", "num_shards"} <= set(props)
    ood.compute_pyramid_embeddings(ds.limit(5), "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1)
    same = dict(embeddings_field="emb", model_name="tf_efficientnet_lite0", levels="1", grid=1)  # as stored
    props = forms.props("compute_pyramid_embeddings", ds, same)
    assert not props["embeddings_field"].invalid
    assert "computes only what is missing" in props["embeddings_field_resume"].view.label
    out = _run(forms.uri("compute_pyramid_embeddings"), ds, dict(same, show_advanced=True))
    assert out.result["num_computed"] == 35
    assert "computed now: 35" in out.result["report"] and "already there (kept): 5" in out.result["report"]


def test_delegation_box_says_what_to_run(form_images, monkeypatch):
    import fiftyone as fo
    import fiftyone.operators.types as types

    ds = form_images
    monkeypatch.setattr(fo.config, "allow_legacy_orchestrators", False)
    props = forms.props("compute_pyramid_embeddings", ds, dict(delegate=True))
    help_ = props["delegation_help"].view
    assert isinstance(help_, types.Warning) and "FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true" in help_.label
    assert "fiftyone delegated launch" in help_.label
    monkeypatch.setattr(fo.config, "allow_legacy_orchestrators", True)
    props = forms.props("compute_pyramid_embeddings", ds, dict(delegate=True))
    assert isinstance(props["delegation_help"].view, types.Notice)
    assert "fiftyone delegated launch" in props["delegation_help"].view.label
    assert "delegation_help" not in forms.props("compute_pyramid_embeddings", ds, dict(delegate=False))


def test_manage_runs_delete_lists_the_fields_and_needs_confirmation(form_images):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionError

    import ood_core as ood

    ds = form_images
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1)
    ood.compute_ood_scores(ds, "emb", "ood", reference="trusted", k=3)
    props = forms.props("manage_ood_runs", ds, dict(action="delete", run_key="ood"))
    assert props["delete_warning"].view.label == ("This deletes the run record 'ood' and its fields: ood, ood_pvalue. "
                                                  "It cannot be undone.")
    assert props["confirm_delete"].invalid
    props = forms.props("manage_ood_runs", ds, dict(action="delete", run_key="ood", confirm_delete=True))
    assert not props["confirm_delete"].invalid
    with pytest.raises(ExecutionError, match="confirm_delete.*tick the box to confirm"):
        foo.execute_operator(forms.uri("manage_ood_runs"), dict(view=ds.view()),
                             params=dict(action="delete", run_key="ood"))
    ds.reload()
    assert ds.has_field("ood") and "ood" in ood.list_ood_runs(ds)
    # renaming offers the runs that can be renamed (an embeddings run's key is its field's name)
    props = forms.props("manage_ood_runs", ds, dict(action="rename"))
    assert props["run_key"].type.values == ["ood"]


def test_forms_refuse_with_overwrite_what_the_sdk_always_refuses(form_images):
    """Ticking 'overwrite' does not make a built-in field, a user's field, the input embeddings or another
    kind of run a valid output: the form says so before running (the SDK would refuse at execution)."""
    import ood_core as ood

    ds = form_images
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1)
    ood.compute_label_issues(ds, "ground_truth", "emb", "issue", k=3)
    uri = forms.uri("score_ood")
    base = dict(embeddings_field="emb", method="knn", reference_tag="trusted", overwrite=True, label_field=None)
    for name, message in (("filepath", "built-in field"), ("ground_truth", "no fiftyone-ood run wrote it"),
                          ("emb", "read by this call"), ("issue", "is a 'label_issues' run"),
                          ("issue_suggestion", "written by another run, 'issue'")):
        prop = forms.props(uri, ds, dict(base, score_field=name))["score_field"]
        assert prop.invalid and message in prop.error_message, name
    assert not forms.props(uri, ds, dict(base, score_field="fresh"))["score_field"].invalid
    prop = forms.props("compute_pyramid_embeddings", ds, dict(embeddings_field="ground_truth", overwrite=True))
    assert prop["embeddings_field"].invalid and "no fiftyone-ood run wrote it" in prop["embeddings_field"].error_message
    assert not forms.props("compute_pyramid_embeddings", ds,
                        dict(embeddings_field="emb", overwrite=True))["embeddings_field"].invalid
    prop = forms.props("compute_ood_visualization", ds, dict(embeddings_field="emb", brain_key="bad key"))
    assert prop["brain_key"].invalid and "not valid" in prop["brain_key"].error_message


def test_audit_operator_called_from_python_picks_labels_and_trusted_samples_like_the_sdk(form_images, tmp_path):
    import ood_core as ood
    from ood_core.fo import runs as fo_runs

    ds = form_images
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1)
    op = __import__("fiftyone.operators", fromlist=["get_operator"]).get_operator(forms.uri("audit_dataset"))
    op(ds, audit_key="a1", near_duplicates=False, report_path=str(tmp_path / "a1.html"))
    info = fo_runs.get_ood_run_info(ds, "a1")
    assert info["label_field"] == "ground_truth" and info["reference"] == "tag 'trusted'"
    # a second audit under another key writes its own score runs instead of failing on the first one's
    op(ds, audit_key="a2", near_duplicates=False, report_path=str(tmp_path / "a2.html"))
    assert {"a1_ood", "a2_ood", "a1_label_issue", "a2_label_issue"} <= set(fo_runs.list_ood_runs(ds))


def test_forms_offer_what_runs_and_refuse_what_cannot(form_images, tmp_path):
    """Found by driving every form as a user: the audit form offered object embeddings (the run then failed), a
    map overwrote a similarity index, bad audit keys and taken derived fields passed the form."""
    import fiftyone as fo
    import fiftyone.brain as fob
    import fiftyone.operators as foo

    import ood_core as ood
    from ood_core.errors import OODInputError
    from ood_core.fo import runs as fo_runs

    ds = form_images
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1)
    ds.set_values("objs", [fo.Detections(detections=[fo.Detection(label="a", bounding_box=[0, 0, .9, .9])])
                           for _ in range(len(ds))])
    ood.compute_pyramid_embeddings(ds, "oemb", model_name="tf_efficientnet_lite0", levels=[1], grid=1,
                                   patches_field="objs")
    props = forms.props("audit_dataset", ds, dict())
    assert props["embeddings_field"].type.values == ["emb"] and props["embeddings_field"].default == "emb"
    for params, message in ((dict(audit_key="bad key"), "not valid"), (dict(audit_key="emb", overwrite=True),
                                                                     "is a 'embeddings' run")):
        prop = forms.props("audit_dataset", ds, params)["audit_key"]
        assert prop.invalid and message in prop.error_message, params
    ds.set_values("zz_ood", [1.0] * len(ds))
    prop = forms.props("audit_dataset", ds, dict(audit_key="zz"))["audit_key"]
    assert prop.invalid and "'zz_ood' exists" in prop.error_message

    fob.compute_similarity(ds, embeddings="emb", brain_key="sim", backend="sklearn")
    prop = forms.props("compute_ood_visualization", ds, dict(embeddings_field="emb", brain_key="sim",
                                                                 overwrite=True))["brain_key"]
    assert prop.invalid and "not a map" in prop.error_message
    with pytest.raises(OODInputError, match="not a map"):
        ood.compute_ood_visualization(ds, "emb", "sim", method="pca", overwrite=True)
    assert ds.get_brain_info("sim").config.type == "similarity"

    # the audit operator from Python: reference=None means none, as in ood.audit
    foo.get_operator(forms.uri("audit_dataset"))(ds, audit_key="a0", near_duplicates=False, reference=None,
                                            report_path=str(tmp_path / "a0.html"))
    assert fo_runs.get_ood_run_info(ds, "a0")["reference"] is None
