"""Edge cases of 2-D maps and near duplicates: object embeddings set without declaring their field (FiftyOne
reads them back as bytes), exact copies among the embeddings (FiftyOne Brain centres the vectors first, so
copies at the mean have no direction and were never found)."""

import fiftyone as fo
import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError
from ood_core.fo import near_duplicates


def _undeclared_object_embeddings(dataset_factory, n=6, per=3, dim=8):
    """``n`` samples with ``per`` objects in ``gt``, each given an 8-d array ``emb`` the way a user does it by hand:
    ``det["emb"] = np.array(...)`` and ``sample.save()``, the field never declared."""
    rng = np.random.default_rng(0)
    ds = dataset_factory([f"/tmp/map_edges_obj_{i}.png" for i in range(n)])
    for sample in ds:
        sample["gt"] = fo.Detections(detections=[fo.Detection(label="a", bounding_box=[0.1, 0.1, 0.3, 0.3])
                                                 for _ in range(per)])
        for det in sample.gt.detections:
            det["emb"] = rng.normal(size=dim).astype(np.float32)
        sample.save()
    return ds


def test_object_embeddings_of_an_undeclared_field_are_refused_naming_the_declaration(dataset_factory):
    """FiftyOne stores such arrays serialized and ``values()`` returns them as bytes: the map said only that the
    field held "a bytes", with no way out. It now names the field, why, and the one call that fixes it; after that
    call (as the error words it) the map is made of every object."""
    ds = _undeclared_object_embeddings(dataset_factory)
    assert isinstance(ds.values("gt.detections.emb")[0][0], bytes)  # what FiftyOne hands back
    with pytest.raises(OODInputError, match=r"'gt\.detections\.emb'.*serialized arrays \(bytes.*8 numbers.*not "
                                            r"declared.*add_sample_field\('gt\.detections\.emb', fo\.VectorField\)"):
        ood.compute_ood_visualization(ds, "emb", "m", patches_field="gt", method="pca")
    ds.reload()
    assert ds.list_brain_runs() == []
    ds.add_sample_field("gt.detections.emb", fo.VectorField)  # the fix the error names
    assert ood.compute_ood_visualization(ds, "emb", "m", patches_field="gt", method="pca")["num_points"] == 18


def _identical(rng):
    return np.tile(rng.normal(size=8), (10, 1)), [list(range(10))]


def _copies_at_the_mean(rng):
    """Two copies of the vector ``c`` that is also the mean of all rows (exactly, in float32): centred, they are
    zero vectors."""
    c = np.ones(8)
    v, w = rng.integers(-3, 4, size=(2, 8))
    return np.stack([c + v, c - v, c + w, c - w, c, c]), [[4, 5]]


def _two_copies(rng):
    x = rng.normal(size=8)
    return np.stack([x, x]), [[0, 1]]


def _few_copies_among_others(rng):
    X = rng.normal(size=(20, 8))
    X[5] = X[7] = X[3]
    X[9] = X[1]
    return X, [[3, 5, 7], [1, 9]]


@pytest.mark.parametrize("make", [_identical, _copies_at_the_mean, _two_copies, _few_copies_among_others])
def test_exact_copies_are_near_duplicates_at_distance_zero(dataset_factory, make):
    """All but one of each group of identical embeddings is a duplicate of a kept member, at distance 0. Before,
    a view whose embeddings were all the same (blank images), two identical samples, or copies equal to the mean
    found no duplicate at all (the Brain's centring made them zero vectors), and exact copies elsewhere were
    reported ~1e-7 apart."""
    X, groups = make(np.random.default_rng(1))
    ds = dataset_factory([f"/tmp/map_edges_dup_{i}.png" for i in range(len(X))])
    ds.set_values("emb", list(X.astype(np.float32)))
    ids = ds.values("id")
    found = near_duplicates.find(ds, "emb", 0.02, "audit_edges")
    in_groups = {ids[i] for g in groups for i in g}
    assert set(found["duplicate_ids"]) <= in_groups
    assert len(found["duplicate_ids"]) == sum(len(g) - 1 for g in groups)
    for g in groups:
        members = {ids[i] for i in g}
        kept = members - set(found["duplicate_ids"])
        assert len(kept) == 1  # one of each group stays
        for dup in members - kept:
            assert found["neighbors"][dup] == [(next(iter(kept)), 0.0)]
    assert sorted(found["to_tag"]) == sorted(found["duplicate_ids"])


def test_a_restored_pca_reducer_gives_its_state_back():
    """A PCA reducer rebuilt with ``Reducer.from_linear_state`` (how a stored on-the-fly PCA is restored) raised
    AttributeError from ``linear_state()`` (it read the explained variance from a scikit-learn model it does not
    have), so a restored reducer could not be stored again. Its state now comes back as it was saved, and it
    transforms as the fitted one."""
    from ood_core.reduction import Reducer

    X = np.random.default_rng(2).normal(size=(30, 8)).astype(np.float32)
    fitted = Reducer(method="pca", n_components=3, seed=0).fit(X)
    state = fitted.linear_state()
    restored = Reducer.from_linear_state(state)
    assert restored.linear_state() == state
    assert 0 < state["explained_variance_ratio"] <= 1
    np.testing.assert_allclose(restored.transform(X), fitted.transform(X), rtol=1e-5, atol=1e-5)
    # a state saved without the ratio (it is informative only) still restores and gives back what it holds
    del state["explained_variance_ratio"]
    assert Reducer.from_linear_state(state).linear_state() == state


def test_a_random_projection_to_more_dimensions_than_the_embeddings_names_project_dim(
        dataset_factory, fashion_files, session_extractor):
    """``compute_pyramid_embeddings(..., project_dim=<more than the backbone gives>)`` with the default random
    projection was refused as "n_components=... must be between 1 and the embedding dimension": a setting the
    user never passed. The error now names project_dim, the largest value allowed, and nothing is written."""
    paths, _ = fashion_files
    ds = dataset_factory(paths[:4])
    dim = session_extractor.dim
    with pytest.raises(OODInputError, match=rf"project_dim={dim + 1} is larger than the embedding dimension {dim}; "
                                            rf"a random projection can only reduce.*at most {dim}"):
        ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1, 2, 3], mode="pool",
                                       grid=1, project_dim=dim + 1, progress=False)
    assert ds.get_field("emb") is None
    # the largest allowed value embeds every image
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1, 2, 3], mode="pool",
                                   grid=1, project_dim=dim, progress=False)
    assert np.asarray(ds.values("emb")).shape == (4, dim)


@pytest.mark.parametrize("embedded", [0, 1])
def test_an_index_reference_of_fewer_than_two_embedded_samples_names_a_fix_that_exists(dataset_factory, embedded):
    """k-NN scoring through a similarity index with a reference of 0 or 1 samples with embeddings said "k must be
    < 0" (or "< 1"): no k is. The error now says 2 are needed and how to get them; nothing is created (it is
    refused before any server is contacted) and nothing written."""
    ds = dataset_factory([f"/tmp/map_edges_ref_{i}.png" for i in range(6)],
                         tags=[["trusted"]] * 3 + [[]] * 3)
    vectors = np.random.default_rng(3).normal(size=(6, 8)).astype(np.float32)
    trusted = set(ds.match_tags("trusted").values("id")[:embedded])
    ds.set_values("emb", [v if (sid in trusted or i >= 3) else None
                          for i, (sid, v) in enumerate(zip(ds.values("id"), vectors))])
    with pytest.raises(OODInputError, match=rf"k=1 but the reference has {embedded} samples with embeddings in "
                                            r"'emb'; k-NN scoring needs at least 2: compute their embeddings") as err:
        ood.compute_knn_scores_with_index(ds, "emb", "s", reference="trusted", k=1, progress=False,
                                          connection_string="postgresql://nobody@127.0.0.1:1/none")
    assert "k must be <" not in str(err.value)
    ds.reload()
    assert ds.get_field("s") is None and ds.list_brain_runs() == [] and ds.list_runs() == []


def test_scoring_object_embeddings_of_an_undeclared_field_names_the_declaration(dataset_factory):
    """The same arrays given to scoring: the error said the object embeddings "do not exist" and to compute them,
    which would have replaced the user's vectors. It now names the declaration, and after it the objects score."""
    ds = _undeclared_object_embeddings(dataset_factory)
    with pytest.raises(OODInputError, match=r"'gt\.detections\.emb'.*serialized arrays.*then call again: "
                                            r"dataset\.add_sample_field\('gt\.detections\.emb', fo\.VectorField\)"):
        ood.compute_ood_scores(ds, "emb", "s", patches_field="gt", method="knn", k=2)
    ds.add_sample_field("gt.detections.emb", fo.VectorField)
    ood.compute_ood_scores(ds, "emb", "s", patches_field="gt", method="knn", k=2)
    assert sum(s is not None for row in ds.values("gt.detections.s") for s in row) == 18
