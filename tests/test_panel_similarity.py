"""The "OOD review" panel on a view the App's "sort by similarity" made (a ``SortBySimilarity`` stage of a Brain
similarity index, with ``k`` and ``dist_field``), on real images with real embeddings and a real k-NN score run.

The views are made the ways the App makes them: its grid's similarity search (FiftyOne's similarity search
operator, then its panel's ``apply_run``: the ids found, or the ``SortBySimilarity`` stage), the ``/sort`` route's
extended stage, a stage of the view. Requests are sent as the App sends them: JSON, decoded by the server with
``bson.json_util`` (the stage's cached pipeline holds ObjectIds). Checked in a real browser as well (the App's
similarity search, and a saved ``sort_by_similarity(k=12)`` view): same counts as here.
"""

import json

import numpy as np
import pytest
from test_panel import PLUGIN, _markdown, _rendered, _state_writes, _tag

BRAIN_KEY = "img_sim"


@pytest.fixture
def similar(form_images, session_extractor):
    """40 real Fashion-MNIST images: real backbone embeddings ``emb``, a k-NN score run ``ood`` against the trusted
    half, and an sklearn similarity index ``img_sim`` of the embeddings (what the App's similarity search uses)."""
    import fiftyone.brain as fob

    import ood_core as ood

    ds = form_images
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1, 2, 3], grid=1)
    ood.compute_ood_scores(ds, "emb", "ood", method="knn", k=3, reference="trusted")
    fob.compute_similarity(ds, embeddings="emb", brain_key=BRAIN_KEY, backend="sklearn", progress=False)
    return ds


def _call(ds, uri, params, view=None, extended=None, selected=None):
    """An operator request as the App sends it (JSON; the server decodes it with json_util): ``view`` = the view's
    stages as the App holds them, ``extended`` = the App's extended stages. Returns (result, triggered operations)."""
    import fiftyone.operators as foo
    from bson import json_util
    from fiftyone.operators.executor import ExecutionContext, Executor

    request = {"dataset_name": ds.name, "selected": selected or [], "params": params}
    if view is not None:
        request["view"] = json.loads(json_util.dumps(view))
    if extended is not None:
        request["extended"] = extended
    executor = Executor()
    result = foo.get_operator(uri).execute(
        ExecutionContext(request_params=json_util.loads(json.dumps(request)), executor=executor))
    return result, [(r.operator_uri, r.params) for r in executor._requests]


def _send(ds, method, state, **request):
    """A request of the OOD review panel (``method``, panel ``state``)."""
    params = {"__method__": method, "panel_id": "sim-panel", "panel_state": state}
    return _call(ds, f"{PLUGIN}/ood_review", params, **request)[1]


def _similarity_search(ds, sort, dynamic):
    """The grid's "sort by similarity" of the App: FiftyOne's similarity search operator on the selected samples,
    then its panel's ``apply_run``; returns the view stages the App gets (``set_view``) as the App sends them back.
    ``dynamic``: the run keeps its SortBySimilarity stage, else the ids it found (``select(ids, ordered=True)``)."""
    from bson import json_util

    search = dict(brain_key=BRAIN_KEY, query_type="image", reverse=False, run_name="similar", dynamic_results=dynamic,
                  view_target="CURRENT_VIEW", **sort)
    run, _ = _call(ds, "@voxel51/panels/similarity_search", search, view=[])
    _, ops = _call(ds, "@voxel51/panels/similarity_search_panel",
                   {"__method__": "apply_run", "panel_id": "sim-search", "panel_state": {}, "run_id": run["run_id"]})
    (params,) = [p for name, p in ops if name == "set_view"]
    return json_util.loads(json.dumps(params["view"]))


def _slider(out):
    """The drawn threshold slider's state key and its range (``(min, max)``)."""
    (key,) = [k for k in out["type"]["properties"] if k.startswith("threshold_")]
    prop = out["type"]["properties"][key]
    return key, (prop["type"]["min"], prop["type"]["max"])


def _hist_total(out):
    """How many items the drawn histogram counts."""
    return sum(sum(trace["y"]) for trace in out["type"]["properties"]["histogram"]["view"]["data"])


@pytest.mark.parametrize("how, sort", [
    ("search", {"query": [0], "k": 12}),  # the App's similarity search: the ids it found, in order
    ("search dynamic", {"query": [1, 7], "k": 12, "dist_field": "sim_dist"}),  # its SortBySimilarity stage
    ("extended", {"query": [3]}),  # the App's /sort route: an extended stage; no k: every sample, sorted
    ("stage", {"query": [5], "k": 12, "dist_field": "sim_dist"}),  # a view stage (view bar, Python session)
])
def test_review_on_a_similarity_sorted_view(similar, how, sort):
    """On the view, Show flagged, Tag selected, Save as flags: each reads and acts on the sorted view's samples."""
    import asyncio

    import fiftyone.server.view as fosv
    from bson import json_util
    from fiftyone.server.samples import paginate_samples

    ds = similar
    ids = ds.values("id")
    sort = dict(sort, query=[ids[i] for i in sort["query"]])
    if how.startswith("search"):
        app_view = {"view": _similarity_search(ds, sort, dynamic=how.endswith("dynamic"))}
        view = fosv.get_view(ds.name, stages=app_view["view"])
        assert [st["_cls"].rsplit(".", 1)[1] for st in app_view["view"]] == [
            "SortBySimilarity" if how.endswith("dynamic") else "Select"]
    elif how == "extended":
        app_view = {"view": [], "extended": {"fiftyone.core.stages.SortBySimilarity": dict(sort, brain_key=BRAIN_KEY)}}
        view = fosv.get_view(ds.name, stages=[], extended_stages=app_view["extended"])
    else:
        view = ds.sort_by_similarity(brain_key=BRAIN_KEY, **sort)
        app_view = {"view": view._serialize()}
    n = sort.get("k") or len(ds)
    scores = np.array(view.values("ood"))
    assert len(view) == n

    # the panel reads the sorted view's samples: histogram and count cover its n samples, the slider its scores
    ops = _send(ds, "on_load", {}, **app_view)
    out = _rendered(ops)
    key, span = _slider(out)
    assert _hist_total(out) == n and span == (scores.min(), scores.max())
    threshold = float(np.median(scores))
    expected = sorted((s for s in scores if s >= threshold), reverse=True)
    state = {"run_key": "ood", key: threshold}

    # Show flagged: the view the App gets builds on the server (as the App sends it back) to the flagged samples
    ops = _send(ds, "show_flagged", state, **app_view)
    (params,) = [p for name, p in ops if name == "set_view"]
    stages = json_util.loads(json.dumps(params["view"]))
    flagged = fosv.get_view(ds.name, stages=stages)
    assert flagged.values("ood") == expected and set(flagged.values("id")) <= set(view.values("id"))
    page = asyncio.run(paginate_samples(ds.name, stages, {}, first=n, pagination_data=True))  # the grid's query
    assert [str(edge.node.id) for edge in page.edges] == flagged.values("id")
    state.update(_state_writes(ops))

    # the flagged view is recognised, also once the dataset changed (Tag selected on a flagged sample)
    ops = _send(ds, "confirm_selected", state, view=stages, selected=flagged.values("id")[:1])
    assert ds.match_tags("ood_confirmed").values("id") == flagged.values("id")[:1]
    out = _rendered(ops)
    note = "" if n == len(ds) else f" in the current view ({n} of {len(ds)} samples)"
    text = _markdown(out, "flag_count")
    assert text.startswith(f"**{len(expected)}** of {n} scored samples flagged{note}"), text
    assert _slider(out) == (key, span) and _hist_total(out) == n

    # Save as flags on the flagged view flags the sorted view's samples at the threshold, and no other sample
    _send(ds, "save_flags", dict(state, **_tag("sim_flag")), view=stages)
    ds.reload()
    flags = dict(zip(ids, ds.values("ood_review_flag")))
    in_view = dict(zip(view.values("id"), scores))
    assert {i for i, f in flags.items() if f} == {i for i, s in in_view.items() if s >= threshold}
    assert all(flags[i] is None for i in ids if i not in in_view)
    assert sorted(ds.match_tags("sim_flag").values("id")) == sorted(i for i, s in in_view.items() if s >= threshold)
