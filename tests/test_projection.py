"""On-the-fly reduction during extraction: PCA fitted on a seeded sample, stored, reused on resume."""

import numpy as np
import pytest

from ood_core.errors import OODInputError
from ood_core.fo import runs as fo_runs
from ood_core.fo.embeddings import compute_pyramid_embeddings
from ood_core.reduction import Reducer

SETTINGS = dict(model_name="tf_efficientnet_lite0", levels=[1, 2, 3], mode="pool", grid=1)  # = extractor fixture


@pytest.fixture
def ds40(dataset_factory, fashion_files, session_extractor):
    paths, names = fashion_files
    return dataset_factory(paths[:40], names[:40])


def _pairwise(X):
    return np.linalg.norm(X[:, None, :] - X[None, :, :], axis=-1)


def test_pca_on_the_fly_equals_pca_of_the_full_embeddings(ds40, extractor):
    from sklearn.decomposition import PCA

    out = compute_pyramid_embeddings(ds40, "emb", project_method="pca", project_dim=8, pca_fit_size=100,
                                     progress=False, **SETTINGS)
    assert out["dim"] == 8 and out["status"] == "complete"
    got = np.stack(ds40.values("emb"))
    raw = extractor.extract(ds40.values("filepath"), progress=False).embeddings
    expected = PCA(n_components=8).fit_transform(raw)  # fit size >= 40: fitted on every item
    # components are defined up to sign: compare magnitudes and the (sign-free) geometry
    np.testing.assert_allclose(np.abs(got), np.abs(expected), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(_pairwise(got), _pairwise(expected), rtol=1e-3, atol=1e-3)
    state = fo_runs.load_ood_results(ds40, "emb").projection_state
    assert np.asarray(state["components"]).shape == (raw.shape[1], 8)
    info = fo_runs.get_ood_run_info(ds40, "emb")
    assert info["projection"] == {"method": "pca", "n_components": 8, "seed": 0, "fit_size": 100}


def test_resumed_and_sharded_runs_reuse_the_stored_pca(ds40, dataset_factory, fashion_files):
    kwargs = dict(project_method="pca", project_dim=6, pca_fit_size=12, progress=False, **SETTINGS)
    first = compute_pyramid_embeddings(ds40, "emb", shard=(0, 2), **kwargs)
    assert first["status"] == "partial"
    # the 12 fit images were embedded while fitting and stored, not computed twice
    stored_after_shard = len(ds40.exists("tmp_ood_partial_emb"))
    assert 20 <= stored_after_shard <= 32
    fit_in_shard = 12 - (stored_after_shard - 20)  # fit images that fell into shard 0
    assert first["num_computed"] == 20 - fit_in_shard
    state = fo_runs.load_ood_results(ds40, "emb").projection_state
    rest = compute_pyramid_embeddings(ds40, "emb", **kwargs)
    assert rest["status"] == "complete" and rest["num_computed"] == 40 - stored_after_shard
    # the same PCA as an uninterrupted run with the same seed
    paths, names = fashion_files
    fresh = dataset_factory(paths[:40], names[:40])
    compute_pyramid_embeddings(fresh, "emb", **kwargs)
    np.testing.assert_allclose(np.stack(ds40.values("emb")), np.stack(fresh.values("emb")), rtol=1e-4, atol=1e-5)
    assert fo_runs.load_ood_results(ds40, "emb").projection_state == state


def test_linear_state_round_trip():
    X = np.random.default_rng(0).normal(size=(50, 12)).astype(np.float32)
    for method in ("pca", "random"):
        fitted = Reducer(method=method, n_components=4, seed=3).fit(X)
        restored = Reducer.from_linear_state(fitted.linear_state())
        np.testing.assert_allclose(restored.transform(X), fitted.transform(X), rtol=1e-6, atol=1e-6)
    with pytest.raises(OODInputError, match="linear_state"):
        Reducer(method="pca", n_components=2).linear_state()


def test_bad_projection_settings_are_refused_before_writing(ds40):
    with pytest.raises(OODInputError, match="project_method"):
        compute_pyramid_embeddings(ds40, "emb", project_dim=4, project_method="svd", progress=False, **SETTINGS)
    with pytest.raises(OODInputError, match="PCA can only reduce"):
        compute_pyramid_embeddings(ds40, "emb", project_dim=500, project_method="pca", progress=False, **SETTINGS)
    with pytest.raises(OODInputError, match="pca_fit_size=5"):
        compute_pyramid_embeddings(ds40, "emb", project_dim=8, project_method="pca", pca_fit_size=5,
                                   progress=False, **SETTINGS)
    for bad in (2.5, "8", True):  # integers only: no silent truncation or coercion
        with pytest.raises(OODInputError, match="project_dim"):
            compute_pyramid_embeddings(ds40, "emb", project_dim=bad, progress=False, **SETTINGS)
    assert ds40.get_field("emb") is None


def test_embeddings_operator_reduces_with_pca(ds40):
    import fiftyone.operators as foo

    op = foo.get_operator("@fiftyone-ood/ood/compute_pyramid_embeddings")
    result = op(ds40, "emb", model_name="tf_efficientnet_lite0", levels=[1, 2, 3], grid=1, project_dim=5,
                project_method="pca")
    assert result.error is None, result.error
    assert {np.asarray(v).shape for v in ds40.values("emb")} == {(5,)}
    assert fo_runs.get_ood_run_info(ds40, "emb")["projection"]["method"] == "pca"
