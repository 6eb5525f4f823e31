"""Tests of ood_core.reduction against independent numpy computations."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ood_core.errors import NotFittedError, OODInputError
from ood_core.reduction import REDUCERS, Reducer, make_reducer

REPO_ROOT = Path(__file__).resolve().parents[1]


def gaussian(n, d, seed):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def align_signs(A, B):
    """Flip the columns of A so each has a non-negative dot product with B's column."""
    return A * np.where((A * B).sum(0) < 0, -1.0, 1.0)


def test_pca_matches_numpy_svd_projection():
    rng = np.random.default_rng(0)
    # Distinct variances per axis so the principal directions are well defined.
    X = (rng.normal(size=(100, 6)) * [5, 4, 3, 2, 1, 0.5]).astype(np.float32)
    X_new = gaussian(10, 6, seed=1)
    reducer = Reducer(method="pca", n_components=3, seed=0)
    out_fit = reducer.fit_transform(X)
    out_new = reducer.transform(X_new)

    mean = X.astype(np.float64).mean(0)
    _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
    expected_fit = (X - mean) @ vt[:3].T
    expected_new = (X_new - mean) @ vt[:3].T
    assert out_fit.shape == (100, 3) and out_fit.dtype == np.float32
    np.testing.assert_allclose(align_signs(out_fit, expected_fit), expected_fit, atol=1e-4)
    signs = np.where((out_fit * expected_fit).sum(0) < 0, -1.0, 1.0)
    np.testing.assert_allclose(out_new * signs, expected_new, atol=1e-4)
    np.testing.assert_allclose(reducer.fit(X).transform(X), out_fit, atol=1e-5)


def test_pca_too_many_components_names_both_sizes():
    X = gaussian(5, 8, seed=2)
    with pytest.raises(OODInputError, match=r"n_components=6 .*min\(5, 8\) = 5"):
        Reducer(method="pca", n_components=6).fit(X)
    assert Reducer(method="pca", n_components=5).fit_transform(X).shape == (5, 5)


def test_random_projection_is_seeded_gaussian_matrix():
    X = gaussian(20, 50, seed=3)
    out = Reducer(method="random", n_components=10, seed=7).fit(X).transform(X)
    R = np.random.default_rng(7).standard_normal((50, 10)) / np.sqrt(10)
    np.testing.assert_allclose(out, X.astype(np.float64) @ R, rtol=1e-4, atol=1e-4)
    assert out.dtype == np.float32
    same = Reducer(method="random", n_components=10, seed=7).fit_transform(X)
    other = Reducer(method="random", n_components=10, seed=8).fit_transform(X)
    np.testing.assert_array_equal(out, same)
    assert not np.allclose(out, other)


def test_random_projection_roughly_preserves_distances():
    X = gaussian(30, 400, seed=4)
    out = Reducer(method="random", n_components=200, seed=0).fit_transform(X)
    iu = np.triu_indices(30, 1)
    d_in = np.linalg.norm(X[:, None] - X[None], axis=-1)[iu]
    d_out = np.linalg.norm(out[:, None] - out[None], axis=-1)[iu]
    ratio = d_out / d_in
    assert 0.7 < ratio.min() and ratio.max() < 1.3
    with pytest.raises(OODInputError, match=r"would not reduce 400-dim.*n_components <= 400"):
        Reducer(method="random", n_components=401).fit(X)


def test_umap_seeded_fit_and_transform_keep_clusters_apart():
    # UMAP's numba JIT compilation alone takes ~15 s on 2 cores; the same umap-learn code
    # run interpreted (NUMBA_DISABLE_JIT=1) on 30 points takes a few seconds, so this
    # test runs it in a subprocess with the JIT off.
    script = textwrap.dedent(
        """
        import json, warnings
        import numpy as np
        warnings.simplefilter("ignore")
        from ood_core.reduction import Reducer
        rng = np.random.default_rng(0)
        X = rng.normal(size=(30, 8)).astype(np.float32)
        X[15:] += 6.0
        reducer = Reducer(method="umap", n_components=2, seed=3)
        emb = reducer.fit_transform(X)
        new = reducer.transform(X[[0, 29]] + 0.01)
        print(json.dumps({
            "emb": emb.tolist(), "new": new.tolist(), "dtype": str(emb.dtype),
            "new_dtype": str(new.dtype), "random_state": reducer.model_.random_state,
        }))
        """
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env,
        cwd=REPO_ROOT, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    emb, new = np.array(result["emb"]), np.array(result["new"])
    assert emb.shape == (30, 2) and new.shape == (2, 2)
    assert result["dtype"] == result["new_dtype"] == "float32"
    assert result["random_state"] == 3
    a, b = emb[:15], emb[15:]
    gap = np.linalg.norm(a.mean(0) - b.mean(0))
    assert gap > 3 * max(a.std(0).max(), b.std(0).max())
    # New points land next to their own cluster.
    assert np.linalg.norm(new[0] - a.mean(0)) < np.linalg.norm(new[0] - b.mean(0))
    assert np.linalg.norm(new[1] - b.mean(0)) < np.linalg.norm(new[1] - a.mean(0))


def test_umap_missing_package_says_how_to_install(monkeypatch):
    # A None entry in sys.modules makes `import umap` raise ImportError, as when the
    # package is not installed.
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(OODInputError, match=r"pip install umap-learn"):
        Reducer(method="umap", n_components=2).fit(gaussian(30, 4, seed=5))


def test_umap_too_many_components_for_tiny_set():
    with pytest.raises(OODInputError, match=r"n_components=9 .*num_samples - 1 = 9"):
        Reducer(method="umap", n_components=9).fit(gaussian(10, 20, seed=6))


@pytest.mark.parametrize("method", REDUCERS)
def test_transform_before_fit_raises_not_fitted(method):
    with pytest.raises(NotFittedError, match=r"not fitted yet.*fit\(X_ref\)"):
        Reducer(method=method, n_components=2).transform(gaussian(5, 4, seed=7))


@pytest.mark.parametrize("method", ["pca", "random"])
def test_bad_inputs_to_fitted_reducer(method):
    reducer = Reducer(method=method, n_components=2).fit(gaussian(20, 6, seed=8))
    with pytest.raises(OODInputError, match=r"dimension 6 but embeddings to transform have "
                                            r"dimension 5"):
        reducer.transform(gaussian(3, 5, seed=9))
    X_bad = gaussian(4, 6, seed=10)
    X_bad[2, 0] = np.nan
    with pytest.raises(OODInputError, match=r"embeddings to transform has 1 row\(s\) with NaN"):
        reducer.transform(X_bad)
    with pytest.raises(OODInputError, match=r"embeddings to fit the reducer on has 0 rows"):
        Reducer(method=method, n_components=2).fit(np.zeros((0, 6), np.float32))


def test_constructor_validation_and_params():
    with pytest.raises(OODInputError, match=r"unknown reduction method 'tsne'.*pca, umap, random"):
        Reducer(method="tsne", n_components=2)
    for bad in (0, -3, 2.0, None, True):
        with pytest.raises(OODInputError, match="n_components="):
            Reducer(method="pca", n_components=bad)
    with pytest.raises(OODInputError, match="seed="):
        Reducer(method="pca", n_components=2, seed=-1)
    params = Reducer(method="random", n_components=4, seed=2).get_params()
    assert params == {"method": "random", "n_components": 4, "seed": 2}
    assert json.loads(json.dumps(params)) == params


def test_make_reducer():
    assert make_reducer(None) is None
    assert make_reducer("none", 5) is None
    assert make_reducer("None") is None
    reducer = make_reducer("PCA", 3, seed=1)
    assert isinstance(reducer, Reducer)
    assert reducer.get_params() == {"method": "pca", "n_components": 3, "seed": 1}
    with pytest.raises(OODInputError, match=r"needs n_components"):
        make_reducer("umap")


def test_umap_of_identical_embeddings_is_refused_as_pca_is():
    """UMAP fitted on identical rows (blank images) scattered them at random, and those positions became the
    scored space; it is refused like PCA, before umap-learn is imported."""
    with pytest.raises(OODInputError, match=r"the 10 embeddings to fit the reducer on are all identical, so UMAP "
                                            r"has nothing to keep.*reduce=None"):
        Reducer(method="umap", n_components=2).fit(np.full((10, 8), 0.5, np.float32))
