"""A careless user of the embeddings and map SDK: wrong types and values are refused with an OODInputError naming
the parameter and the fix, before anything is written (no raw numpy / torch / scikit-learn error)."""

import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError


@pytest.fixture
def small(dataset_factory, fashion_files):
    paths, names = fashion_files
    return dataset_factory(paths[:12], names[:12])


@pytest.mark.parametrize("param", ["overwrite", "skip_failures"])
def test_flag_strings_are_refused_before_anything_is_recomputed(small, session_extractor, param):
    ood.compute_pyramid_embeddings(small, "emb", progress=False)
    before = np.stack(small.values("emb"))
    small.set_values("emb", list(before + 1.0))  # marks the stored vectors: a recompute would reset them
    # "no" is a truthy string: overwrite="no" recomputed (replaced) every embedding before
    with pytest.raises(OODInputError, match=f"{param}='no' is not valid; pass True or False"):
        ood.compute_pyramid_embeddings(small, "emb", progress=False, **{param: "no"})
    np.testing.assert_array_equal(np.stack(small.values("emb")), before + 1.0)


def test_negative_project_seed_is_refused(small, session_extractor):
    with pytest.raises(OODInputError, match=r"project_seed=-1 is not valid.*>= 0"):
        ood.compute_pyramid_embeddings(small, "emb", project_dim=4, project_seed=-1, progress=False)
    assert not small.has_field("emb") and not ood.list_ood_runs(small)


def test_misspelt_project_method_without_project_dim_is_refused(small, session_extractor):
    # project_method="PCA" (or "umap") without project_dim was ignored: the full-width embeddings were written as if
    # the user had asked for no reduction
    for method in ("PCA", "umap", None):
        with pytest.raises(OODInputError, match=rf"project_method={method!r} is not a reduction.*'random'"):
            ood.compute_pyramid_embeddings(small, "emb", project_method=method, progress=False)
    assert not small.has_field("emb") and not ood.list_ood_runs(small)


@pytest.mark.parametrize("levels", [1.5, np.int64(2), 2.0])
def test_scalar_levels_that_are_not_ints_or_names_are_refused(levels):
    from ood_core.features import resolve_levels

    names = ["a", "b", "c", "d", "e"]
    if isinstance(levels, np.integer):  # a numpy integer is a level index like an int
        assert resolve_levels(names, levels) == [2]
        return
    with pytest.raises(OODInputError, match=r"unknown pyramid level 1\.5|unknown pyramid level 2\.0"):
        resolve_levels(names, levels)


def test_grid_true_is_refused():
    from ood_core.features import PyramidExtractor

    with pytest.raises(OODInputError, match="grid must be a positive integer"):
        PyramidExtractor("tf_efficientnet_lite0", levels=[1], grid=True)


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size=0 is not valid"),
    (dict(batch_size=2.0), "batch_size=2.0 is a float"),
    (dict(num_workers=-1), "num_workers=-1 is not valid"),
])
def test_extractor_batching_is_checked(extractor, fashion_files, kwargs, match):
    with pytest.raises(OODInputError, match=match):
        extractor.extract(fashion_files[0][:2], progress=False, **kwargs)


@pytest.mark.parametrize("method", ["pca", "umap"])
def test_map_negative_seed_is_refused_before_fitting(dataset_factory, method):
    ds = dataset_factory([f"/tmp/emb_misuse_{i}.png" for i in range(12)])
    ds.set_values("emb", list(np.random.default_rng(0).normal(size=(12, 8)).astype(np.float32)))
    with pytest.raises(OODInputError, match=r"seed=-1 is not valid.*0"):
        ood.compute_ood_visualization(ds, "emb", "map1", method=method, seed=-1)
    assert ds.list_brain_runs() == []


@pytest.mark.parametrize("field", [None, 3, ["emb"]])
def test_map_embeddings_field_that_is_not_a_name_is_refused(dataset_factory, field):
    ds = dataset_factory([f"/tmp/emb_misuse_{i}.png" for i in range(12)])
    ds.set_values("emb", list(np.random.default_rng(0).normal(size=(12, 8)).astype(np.float32)))
    with pytest.raises(OODInputError, match=r"embeddings_field=.* is not a field name"):
        ood.compute_ood_visualization(ds, field, "map1", method="pca")
    assert ds.list_brain_runs() == []


@pytest.fixture(scope="module")
def pg():
    from pg_loopback import LoopbackPostgres

    server = LoopbackPostgres().start()
    yield server
    server.stop()


def test_kept_index_is_refused_for_another_field_or_recomputed_embeddings(pg, dataset_factory, fashion_files,
                                                                         session_extractor):
    paths, names = fashion_files
    ds = dataset_factory(paths[:40], names[:40], tags=[["trusted"] if i < 30 else [] for i in range(40)])
    ood.compute_pyramid_embeddings(ds, "emb", project_dim=8, progress=False)
    ds.set_values("other", ds.values("emb"))  # same dimension, another field
    ood.compute_knn_scores_with_index(ds, "emb", "s1", reference="trusted", brain_key="idx", k=5, progress=False,
                                      connection_string=pg.connection_string)
    # before: the index (built from 'emb') silently scored the vectors of 'other' against those of 'emb'
    with pytest.raises(OODInputError, match=r"holds embeddings of field 'emb', not 'other'"):
        ood.compute_knn_scores_with_index(ds, "other", "s2", brain_key="idx", k=5, progress=False,
                                          connection_string=pg.connection_string)
    # 'emb' recomputed with other settings since: its vectors are no longer those in the index
    ood.compute_pyramid_embeddings(ds, "emb", project_dim=8, project_seed=1, overwrite=True, progress=False)
    with pytest.raises(OODInputError, match=r"'emb' .*recomputed.*since the similarity index 'idx'"):
        ood.compute_knn_scores_with_index(ds, "emb", "s3", brain_key="idx", k=5, progress=False,
                                          connection_string=pg.connection_string)
    assert not ds.has_field("s2") and not ds.has_field("s3")
