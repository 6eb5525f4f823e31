"""Values land on their own samples and objects when a view returns its samples in another order (or other
samples) at each query, as ``dataset.mongo([{"$sample": ...}])`` does.

The writes were lists aligned with one ``values("id")`` read and written by position in another read: on such a
view one sample's OOD score, p-value, suggestion or CLIP embedding went to another sample. Each test compares
what a call on a ``$sample`` view wrote with what the same call writes on a view of stable order.
"""

import fiftyone as fo
import fiftyone.core.fields as fof
import numpy as np
import pytest

import ood_core as ood

N = 40
OUTLIERS = 3


def _embeddings(n, seed=0, outliers=OUTLIERS):
    """Inliers around one direction, the first ``outliers`` items each alone along a direction of its own."""
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=0.3, size=(n, 6)).astype(np.float32)
    X[:, 0] += 10.0
    for i in range(outliers):
        X[i, 0] -= 10.0
        X[i, i + 1] += 10.0
    return X


@pytest.fixture
def ds(dataset_factory):
    ds = dataset_factory([f"/tmp/order_{i}.png" for i in range(N)], ["a" if i % 2 else "b" for i in range(N)])
    ds.set_values("emb", list(_embeddings(N)))
    ds.set_values("idx", list(range(N)))
    return ds


def _shuffled(samples, size=None):
    """A view that returns its samples in a new random order (a random subset with ``size``) at every query."""
    return samples.mongo([{"$sample": {"size": size or len(samples)}}])


def _by_id(ds, path):
    return dict(zip(ds.values("id"), ds.values(path)))


def _assert_same(got, want):
    assert got.keys() == want.keys()
    wrong = [k for k in want if (got[k] is None) != (want[k] is None)
             or (want[k] is not None and not np.allclose(got[k], want[k], rtol=1e-5, atol=1e-6))]
    assert not wrong, f"{len(wrong)} of {len(want)} items got another item's value"


def test_scores_and_p_values_of_a_shuffled_view_land_on_their_samples(ds):
    ood.compute_ood_scores(_shuffled(ds), "emb", "s", method="knn", k=3, progress=False)
    ood.compute_ood_scores(ds, "emb", "want", method="knn", k=3, progress=False)
    _assert_same(_by_id(ds, "s"), _by_id(ds, "want"))
    _assert_same(_by_id(ds, "s_pvalue"), _by_id(ds, "want_pvalue"))
    assert sorted(ds.sort_by("s", reverse=True).limit(OUTLIERS).values("idx")) == list(range(OUTLIERS))


def test_a_random_subset_view_scores_exactly_the_samples_it_scored(ds):
    """``$sample`` of 20 of 40: another 20 at each query. The 20 scored ones hold their own scores, no other
    sample holds one."""
    ood.compute_ood_scores(_shuffled(ds, 20), "emb", "s", method="knn", k=3, progress=False)
    scored = [i for i, s in _by_id(ds, "s").items() if s is not None]
    assert len(scored) == 20
    ood.compute_ood_scores(ds.select(scored), "emb", "want", method="knn", k=3, progress=False)
    _assert_same(_by_id(ds, "s"), _by_id(ds, "want"))
    _assert_same(_by_id(ds, "s_pvalue"), _by_id(ds, "want_pvalue"))


def test_label_issues_and_suggestions_of_a_shuffled_view_land_on_their_samples(ds):
    """The default label-issue detector's scores depend a little on the order it reads the samples in (its folds),
    so its result on a shuffled view is checked by what each sample must get: the three samples given the wrong
    class score highest and are suggested their own class, and no sample is suggested the label it has."""
    swapped = [4, 9, 17]
    for sample in ds.match(fo.ViewField("idx").is_in(swapped)):
        sample["ground_truth"].label = "b" if sample["ground_truth"].label == "a" else "a"
        sample.save()
    X = _embeddings(N, outliers=0)
    X[1::2, 1] += 5.0  # the two classes apart
    ds.set_values("emb", list(X))
    ood.compute_label_issues(_shuffled(ds), "ground_truth", "emb", "li", progress=False)
    assert sorted(ds.sort_by("li", reverse=True).limit(len(swapped)).values("idx")) == swapped
    suggested = ds.exists("li_suggestion")
    assert sorted(suggested.values("idx")) == swapped
    for idx, given, suggestion in zip(*suggested.values(["idx", "ground_truth.label", "li_suggestion.label"])):
        assert suggestion == ("a" if idx % 2 else "b") != given


@pytest.fixture
def objects(dataset_factory):
    """20 samples with 2 boxes each; each box has an embedding (``objs.detections.emb``) and a label."""
    n = 20
    ds = dataset_factory([f"/tmp/order_obj_{i}.png" for i in range(n)])
    X = _embeddings(2 * n, seed=1)
    for i, sample in enumerate(ds.iter_samples(autosave=True)):
        sample["objs"] = fo.Detections(detections=[
            fo.Detection(label="a" if (2 * i + j) % 2 else "b", bounding_box=[0.1, 0.1, 0.3, 0.3], idx=2 * i + j)
            for j in range(2)])
    ds.add_sample_field("objs.detections.emb", fof.VectorField)
    ds.set_values("objs.detections.emb", [[X[2 * i], X[2 * i + 1]] for i in range(n)])
    return ds


def _by_object(ds, path):
    ids, values = ds.values("objs.detections.id", unwind=True), ds.values(path, unwind=True)
    return dict(zip(ids, values))


def test_object_scores_of_a_shuffled_view_land_on_their_objects(objects):
    ood.compute_ood_scores(_shuffled(objects), "emb", "s", method="knn", k=3, patches_field="objs", progress=False)
    ood.compute_ood_scores(objects, "emb", "want", method="knn", k=3, patches_field="objs", progress=False)
    _assert_same(_by_object(objects, "objs.detections.s"), _by_object(objects, "objs.detections.want"))
    _assert_same(_by_object(objects, "objs.detections.s_pvalue"), _by_object(objects, "objs.detections.want_pvalue"))
    top = objects.filter_labels("objs", fo.ViewField("s") > 0).values("objs.detections", unwind=True)
    assert sorted(d["idx"] for d in sorted(top, key=lambda d: -d["s"])[:OUTLIERS]) == list(range(OUTLIERS))


def test_object_label_suggestions_of_a_shuffled_view_land_on_their_objects(objects):
    """As for samples: the objects given the wrong class score highest and are suggested their own class."""
    swapped = [6, 13, 21]
    X = _embeddings(2 * len(objects), seed=2, outliers=0)
    X[1::2, 1] += 5.0  # the two classes apart
    objects.set_values("objs.detections.emb", [[X[2 * i], X[2 * i + 1]] for i in range(len(objects))])
    swap = objects.filter_labels("objs", fo.ViewField("idx").is_in(swapped))
    objects.set_label_values("objs.detections.label", {
        i: "b" if d["idx"] % 2 else "a" for i, d in zip(swap.values("objs.detections.id", unwind=True),
                                                        swap.values("objs.detections", unwind=True))})
    ood.compute_label_issues(_shuffled(objects), "objs", "emb", "li", progress=False)
    dets = objects.values("objs.detections", unwind=True)
    top = sorted(dets, key=lambda d: -d["li"])[:len(swapped)]
    assert sorted(d["idx"] for d in top) == swapped
    suggested = {d["idx"]: d["li_suggestion"] for d in dets if d.get_field("li_suggestion") is not None}
    assert suggested == {i: "a" if i % 2 else "b" for i in swapped}


def test_object_scores_of_a_random_subset_view_land_on_the_objects_scored(objects):
    ood.compute_ood_scores(_shuffled(objects, 10), "emb", "s", method="knn", k=3, patches_field="objs",
                           progress=False)
    scored = [i for i, s in _by_object(objects, "objs.detections.s").items() if s is not None]
    assert len(scored) == 20  # the 2 boxes of the 10 samples scored
    view = objects.select_labels(ids=scored, fields="objs")
    ood.compute_ood_scores(view, "emb", "want", method="knn", k=3, patches_field="objs", progress=False)
    _assert_same(_by_object(objects, "objs.detections.s"), _by_object(objects, "objs.detections.want"))


def test_a_repeated_object_id_is_named_with_the_samples_that_hold_it(objects):
    """The error about one object id in several samples named the samples by zipping the view's sample ids
    with object ids from another read: on a shuffled view, other samples."""
    import ast

    from ood_core.errors import OODInputError

    holders = [objects.skip(i).first() for i in (7, 13)]
    holders[1]["objs"].detections.append(holders[0]["objs"].detections[0])  # the same object, by id
    holders[1].save()
    with pytest.raises(OODInputError, match="occur more than once") as raised:
        ood.compute_ood_scores(_shuffled(objects), "emb", "s", method="knn", k=3, patches_field="objs",
                               progress=False)
    named = raised.value.args[0].split("in samples ")[1].split("...")[0]
    assert sorted(ast.literal_eval(named)) == sorted(s.id for s in holders)
