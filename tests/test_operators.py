"""Operators through FiftyOne's own machinery: discovery, immediate, delegated, SDK __call__, forms."""

import os

import numpy as np
import pytest
import yaml

PLUGIN = "@fiftyone-ood/ood"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _uri(name):
    return f"{PLUGIN}/{name}"


@pytest.fixture
def small(dataset_factory, fashion_files):
    paths, names = fashion_files
    idx = list(range(0, 200, 5))  # 40 images, 4 per class
    tags = [["trusted"] if i % 10 < 2 else ["test"] for i in idx]
    return dataset_factory([paths[i] for i in idx], [names[i] for i in idx], tags)


def test_every_operator_is_registered_and_listed_in_fiftyone_yml():
    import fiftyone.operators as foo

    from operators import OPERATORS

    with open(os.path.join(REPO, "fiftyone.yml")) as f:
        meta = yaml.safe_load(f)
    declared = {op().config.name for op in OPERATORS}
    assert declared == set(meta["operators"])
    available = {op.uri for op in foo.list_operators()}
    for name in declared:
        assert _uri(name) in available, f"{name} not discovered from FIFTYONE_PLUGINS_DIR"


def _run(uri, view, params, **kw):
    import fiftyone.operators as foo

    result = foo.execute_operator(uri, dict(view=view.view()), params=params, **kw)
    assert result.error is None, result.error
    return result


def test_pipeline_through_operators_immediate(small):
    ds = small
    out = _run(_uri("compute_pyramid_embeddings"), ds,
               dict(embeddings_field="emb", model_name="tf_efficientnet_lite0", levels="1,2,3", batch_size=16))
    assert out.result["num_embedded"] == 40 and out.result["dim"] == 24 + 40 + 112
    out = _run(_uri("score_ood"), ds, dict(embeddings_field="emb", score_field="ood", method="knn",
                                          reference_tag="trusted", k=3))
    assert out.result["num_scored"] == 40
    scores = ds.values("ood")
    assert all(isinstance(s, float) for s in scores)
    out = _run(_uri("score_ood"), ds, dict(embeddings_field="emb", score_field="issue", method="label_agreement",
                                          label_field="ground_truth", k=3))
    assert all(0.0 <= s <= 1.0 for s in ds.values("issue"))
    out = _run(_uri("compute_ood_visualization"), ds, dict(embeddings_field="emb", brain_key="viz", method="pca"))
    assert "viz" in ds.list_brain_runs()
    out = _run(_uri("manage_ood_runs"), ds, dict(action="list"))
    assert {r["run_key"] for r in out.result["runs"]} == {"emb", "ood", "issue"}
    out = _run(_uri("manage_ood_runs"), ds, dict(action="delete", run_key="issue", delete_fields=True))
    ds.reload()
    assert not ds.has_field("issue")
    assert {r["run_key"] for r in out.result["runs"]} == {"emb", "ood"}


def test_delegated_execution_runs_through_the_queue(small):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    ds = small
    uri = _uri("compute_pyramid_embeddings")
    queued = foo.execute_operator(
        uri, dict(view=ds.view()),
        params=dict(embeddings_field="emb", model_name="tf_efficientnet_lite0", levels="2", delegate=True),
    )
    assert queued.delegated
    assert not ds.has_field("emb")  # nothing happens until an orchestrator runs it
    DelegatedOperationService().execute_queued_operations(operator=uri, dataset_name=ds.name)
    ds.reload()
    vecs = ds.values("emb")
    assert len(vecs) == 40 and all(v is not None and v.shape == (40,) for v in vecs)


def test_sdk_call_on_operator_objects(small):
    import fiftyone.operators as foo

    ds = small
    embed = foo.get_operator(_uri("compute_pyramid_embeddings"))
    score = foo.get_operator(_uri("score_ood"))
    embed(ds, "emb", model_name="tf_efficientnet_lite0", levels=[2, 3])
    score(ds.match_tags("test"), "emb", "ood", method="lof", reference_tag="trusted", k=3)
    test_scores = ds.match_tags("test").values("ood")
    assert all(isinstance(s, float) for s in test_scores)
    assert all(s is None for s in ds.match_tags("trusted").values("ood"))  # only the view was scored


def _resolve(uri, ds, params):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    op = foo.get_operator(uri)
    ctx = ExecutionContext(request_params=dict(dataset_name=ds.name, params=params))
    return op.resolve_input(ctx).type.properties


def test_forms_flag_taken_names_and_bad_keys(small):
    ds = small
    ds.set_values("ood_score", [0.0] * len(ds))
    props = _resolve(_uri("compute_pyramid_embeddings"), ds, dict(embeddings_field="ood_score"))
    assert props["embeddings_field"].invalid and "already exist" in props["embeddings_field"].error_message
    props = _resolve(_uri("compute_pyramid_embeddings"), ds, dict(embeddings_field="bad name"))
    assert props["embeddings_field"].invalid and "not valid" in props["embeddings_field"].error_message
    props = _resolve(_uri("compute_pyramid_embeddings"), ds, dict(embeddings_field="ood_score", overwrite=True))
    assert not props["embeddings_field"].invalid
    # scoring before any embeddings exist: the form says what to run first
    props = _resolve(_uri("score_ood"), ds, dict())
    assert props["no_embeddings"].invalid and "embeddings" in props["no_embeddings"].error_message


def test_operator_refuses_bad_params_and_writes_nothing(small):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionError

    ds = small
    params = dict(embeddings_field="nope", score_field="s", method="knn")
    with pytest.raises(ExecutionError, match="no embeddings run"):
        foo.execute_operator(_uri("score_ood"), dict(view=ds.view()), params=params)
    _run(_uri("compute_pyramid_embeddings"), ds,
         dict(embeddings_field="emb", model_name="tf_efficientnet_lite0", levels="2"))
    with pytest.raises(ExecutionError, match="embeddings_field"):
        foo.execute_operator(_uri("score_ood"), dict(view=ds.view()), params=params)
    # a label method without a label field fails inside the SDK with its own message
    bad = dict(embeddings_field="emb", score_field="s", method="class_lof")
    with pytest.raises(ExecutionError, match="label"):
        foo.execute_operator(_uri("score_ood"), dict(view=ds.view()), params=bad)
    ds.reload()
    assert not ds.has_field("s") and "s" not in ds.list_runs()
