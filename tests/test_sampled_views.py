"""Overwriting scores from a view whose samples change at each query (``dataset.mongo([{"$sample": ...}])``)
replaces the values of exactly the items the run read, and keeps every other item's.

The write gave a value to every item of the view as read AGAIN at write time, None to those without a score
(meant for items read but not scored): on a ``$sample`` view that read holds other samples, which the run never
looked at, and their earlier scores and p-values were cleared to None although the README promises that an
overwrite from a view keeps the other samples' values. Each test scores the whole dataset, moves the inputs of the
items that may be rescored (so a rescored item gets a new value), overwrites from a small random subset and checks
that exactly the rescored items changed, each to what scoring exactly them gives, and nothing else changed.
"""

import fiftyone as fo
import fiftyone.core.fields as fof
import numpy as np
import pytest
from clip_helpers import small_clip_run
from test_fo_similarity import EXACT, pg  # noqa: F401 (the module's loopback PostgreSQL server)

import ood_core as ood

N = 40
SIZE = 4  # samples per random subset: another 4 of the 20 candidates at almost every query
KNN = dict(method="knn", k=3, reference="trusted", progress=False)


def _sampled(view, size):
    """A view returning another random ``size`` of ``view``'s samples at every query."""
    return view.mongo([{"$sample": {"size": size}}])


def _by_id(ds, path):
    return dict(zip(*ds.values(["id", path])))


def _by_object(ds, path):
    return dict(zip(ds.values("objs.detections.id", unwind=True), ds.values(path, unwind=True)))


def _check_overwrite(before, after, want, num):
    """``after`` (item id -> value per field, after the overwrite) equals ``before`` except on ``num`` items,
    which hold the values ``want`` (scoring exactly those) gives them. Returns those items."""
    score = next(iter(before))
    cleared = [i for i in before[score] if after[score][i] is None]
    assert not cleared, f"{len(cleared)} items this run never read lost their scores"
    changed = [i for i in before[score] if after[score][i] != before[score][i]]
    assert len(changed) == num
    for path in before:
        assert {i: v for i, v in after[path].items() if i not in changed} == \
               {i: v for i, v in before[path].items() if i not in changed}, f"{path}: another item changed"
        got, expected = [after[path][i] for i in changed], [want[path][i] for i in changed]
        assert all(g is not None for g in got)
        if isinstance(got[0], float):
            np.testing.assert_allclose(got, expected, rtol=1e-6)
        else:
            assert got == expected
    return changed


@pytest.fixture
def vectors(dataset_factory):
    """40 samples with 8-d embeddings, the last 20 tagged 'trusted'."""
    ds = dataset_factory([f"/tmp/sampled_{i}.png" for i in range(N)])
    ds.set_values("emb", list(np.random.default_rng(0).normal(size=(N, 8)).astype(np.float32)))
    ds.skip(N // 2).tag_samples("trusted")
    return ds


def _move(view, path, by):
    """Shift the vectors at ``path`` of ``view`` (a rescored item then gets another score)."""
    vecs = view.values(path)
    view.set_values(path, [[np.asarray(v) + by for v in row] if isinstance(row, list) else np.asarray(row) + by
                           for row in vecs])


@pytest.mark.parametrize("score_reference", [False, True])
def test_overwriting_from_a_random_subset_keeps_the_other_samples_scores(vectors, score_reference):
    ds = vectors
    ood.compute_ood_scores(ds, "emb", "s", **KNN)
    untrusted = ds.match_tags("trusted", bool=False)
    for round_ in range(2):  # the write-time read differs from the scoring read almost surely: twice
        before = {p: _by_id(ds, p) for p in ("s", "s_pvalue")}
        _move(untrusted, "emb", 0.5)
        ood.compute_ood_scores(_sampled(untrusted, SIZE), "emb", "s", **KNN, score_reference=score_reference,
                               overwrite=True)
        after = {p: _by_id(ds, p) for p in ("s", "s_pvalue")}
        scored = [i for i in before["s"] if after["s"][i] != before["s"][i]]
        ood.compute_ood_scores(ds.select(scored), "emb", f"want{round_}", **KNN, score_reference=False)
        want = {"s": _by_id(ds, f"want{round_}"), "s_pvalue": _by_id(ds, f"want{round_}_pvalue")}
        _check_overwrite(before, after, want, SIZE)


def test_score_with_config_from_a_random_subset_keeps_the_other_samples_scores(vectors):
    ds = vectors
    config = {"embeddings_field": "emb", "method": "knn", "k": 3, "reference": {"tag": "trusted"}}
    ood.score_with_config(ds, "c", config)
    untrusted = ds.match_tags("trusted", bool=False)
    before = {p: _by_id(ds, p) for p in ("c", "c_pvalue")}
    _move(untrusted, "emb", 0.5)
    ood.score_with_config(_sampled(untrusted, SIZE), "c", config, overwrite=True)
    after = {p: _by_id(ds, p) for p in ("c", "c_pvalue")}
    scored = [i for i in before["c"] if after["c"][i] != before["c"][i]]
    ood.score_with_config(ds.select(scored), "want", config)
    _check_overwrite(before, after, {"c": _by_id(ds, "want"), "c_pvalue": _by_id(ds, "want_pvalue")}, SIZE)


@pytest.fixture
def objects(dataset_factory):
    """20 samples with 2 boxes each, each box with an 8-d embedding; the last 10 samples tagged 'trusted'."""
    n = 20
    ds = dataset_factory([f"/tmp/sampled_obj_{i}.png" for i in range(n)])
    for sample in ds.iter_samples(autosave=True):
        sample["objs"] = fo.Detections(detections=[
            fo.Detection(label="a", bounding_box=[0.1, 0.1, 0.3, 0.3]) for _ in range(2)])
    X = np.random.default_rng(1).normal(size=(2 * n, 8)).astype(np.float32)
    ds.add_sample_field("objs.detections.emb", fof.VectorField)
    ds.set_values("objs.detections.emb", [[X[2 * i], X[2 * i + 1]] for i in range(n)])
    ds.skip(n // 2).tag_samples("trusted")
    return ds


def test_overwriting_objects_from_a_random_subset_keeps_the_other_objects_scores(objects):
    ds = objects
    ood.compute_ood_scores(ds, "emb", "s", patches_field="objs", **KNN)
    untrusted = ds.match_tags("trusted", bool=False)
    paths = ("objs.detections.s", "objs.detections.s_pvalue")
    before = {p: _by_object(ds, p) for p in paths}
    _move(untrusted, "objs.detections.emb", 0.5)
    ood.compute_ood_scores(_sampled(untrusted, 3), "emb", "s", patches_field="objs", **KNN, score_reference=False,
                           overwrite=True)
    after = {p: _by_object(ds, p) for p in paths}
    scored = [i for i in before[paths[0]] if after[paths[0]][i] != before[paths[0]][i]]
    ood.compute_ood_scores(ds.select_labels(ids=scored, fields="objs"), "emb", "want", patches_field="objs", **KNN,
                           score_reference=False)
    want = {p: _by_object(ds, p.replace(".s", ".want")) for p in paths}
    _check_overwrite(before, after, want, 6)  # the 2 boxes of the 3 samples scored


def test_clip_scores_from_a_random_subset_keep_the_other_samples_scores(dataset_factory, fashion_files, tiny_clip,
                                                                         tmp_path, one_torch_thread):
    """NegLabel (zero-shot: a view may replace its scores) with its predicted classes, images encoded now."""
    ds, kw = small_clip_run(dataset_factory, fashion_files, tiny_clip, tmp_path, num_negatives=10, num_groups=2,
                            label_field="ground_truth", prediction_field="pred")
    ood.compute_neglabel_scores(ds, "s", **kw)
    paths, _ = fashion_files
    # another image of the same class each: a rescored sample gets another score
    ds.set_values("filepath", [paths[paths.index(f) + 10] for f in ds.values("filepath")])
    before = {p: _by_id(ds, p) for p in ("s", "pred.label", "pred.confidence")}
    ood.compute_neglabel_scores(_sampled(ds, SIZE), "s", **kw, overwrite=True)
    after = {p: _by_id(ds, p) for p in before}
    scored = [i for i in before["s"] if after["s"][i] != before["s"][i]]
    ood.compute_neglabel_scores(ds.select(scored), "want", **dict(kw, prediction_field="want_pred"))
    want = {"s": _by_id(ds, "want"), "pred.label": _by_id(ds, "want_pred.label"),
            "pred.confidence": _by_id(ds, "want_pred.confidence")}
    _check_overwrite(before, after, want, SIZE)


def test_index_scores_from_a_random_subset_keep_the_other_samples_scores(pg, vectors):  # noqa: F811
    ds = vectors
    kw = dict(k=3, reference="trusted", connection_string=pg.connection_string, progress=False, **EXACT)
    ood.compute_knn_scores_with_index(ds, "emb", "s", **kw)
    untrusted = ds.match_tags("trusted", bool=False)
    before = {p: _by_id(ds, p) for p in ("s", "s_pvalue")}
    _move(untrusted, "emb", 0.5)
    ood.compute_knn_scores_with_index(_sampled(untrusted, SIZE), "emb", "s", **kw, overwrite=True)
    after = {p: _by_id(ds, p) for p in before}
    scored = [i for i in before["s"] if after["s"][i] != before["s"][i]]
    ood.compute_knn_scores_with_index(ds.select(scored), "emb", "want", **kw)
    _check_overwrite(before, after, {"s": _by_id(ds, "want"), "s_pvalue": _by_id(ds, "want_pvalue")}, SIZE)


def test_flagging_objects_from_a_random_subset_keeps_the_other_objects_flags(objects):
    """Object flags are written by object id: only the objects whose scores the call read get a flag."""
    ds = objects
    ood.compute_ood_scores(ds, "emb", "s", patches_field="objs", **KNN)
    ood.flag_samples(ds, "s", rule="threshold", value=-1e9, flag_field="f")  # every object flagged True
    before = {"objs.detections.f": _by_object(ds, "objs.detections.f")}
    untrusted = ds.match_tags("trusted", bool=False)
    ood.flag_samples(_sampled(untrusted, 3), "s", rule="threshold", value=1e9, flag_field="f", overwrite=True)
    after = {"objs.detections.f": _by_object(ds, "objs.detections.f")}
    want = {"objs.detections.f": {i: False for i in before["objs.detections.f"]}}
    _check_overwrite(before, after, want, 6)  # the 2 boxes of the 3 samples flagged again, now False


def test_clip_embeddings_from_a_random_subset_keep_the_other_samples_embeddings(dataset_factory, fashion_files,
                                                                                 tiny_clip, tmp_path,
                                                                                 one_torch_thread):
    ds, kw = small_clip_run(dataset_factory, fashion_files, tiny_clip, tmp_path)
    model = dict(model_name=kw["model_name"], pretrained=kw["pretrained"], progress=False)
    ood.compute_clip_embeddings(ds, "clip", **model)
    paths, _ = fashion_files
    ds.set_values("filepath", [paths[paths.index(f) + 10] for f in ds.values("filepath")])
    before = {i: np.asarray(v).tolist() for i, v in _by_id(ds, "clip").items()}
    ood.compute_clip_embeddings(_sampled(ds, SIZE), "clip", overwrite=True, **model)
    after = {i: None if v is None else np.asarray(v).tolist() for i, v in _by_id(ds, "clip").items()}
    ood.compute_clip_embeddings(ds, "want", **model)  # every image as it is now
    want = {i: np.asarray(v).tolist() for i, v in _by_id(ds, "want").items()}
    cleared = [i for i in before if after[i] is None]
    assert not cleared, f"{len(cleared)} samples this run never encoded lost their embeddings"
    changed = [i for i in before if after[i] != before[i]]
    assert len(changed) == SIZE
    for i in before:
        np.testing.assert_allclose(after[i], want[i] if i in changed else before[i], rtol=1e-5, atol=1e-6)
