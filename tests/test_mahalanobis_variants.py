"""Tests of ood_core.mahalanobis_variants against a direct numpy computation."""

import json

import numpy as np
import pytest

from ood_core.errors import OODInputError
from ood_core.mahalanobis_variants import MahalanobisPlusPlusDetector, RelativeMahalanobisDetector


def data(seed):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], 40)
    X = rng.normal(size=(120, 5)) * rng.uniform(0.5, 3, size=(120, 1)) + 3 * np.eye(5)[y]
    return X.astype(np.float32), y


def sq_mahalanobis(X, means, cov):
    P = np.linalg.inv(cov)
    diff = X[:, None, :] - means[None]
    return np.einsum("ncd,de,nce->nc", diff, P, diff)


def shrunk(centred, a):
    S = centred.T @ centred / centred.shape[0]
    return (1 - a) * S + a * np.trace(S) / S.shape[0] * np.eye(S.shape[0])


def unit(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_mahalanobis_pp_is_tied_mahalanobis_on_unit_rows():
    X, y = data(0)
    Xq, _ = data(1)
    Z, Zq = unit(X), unit(Xq)
    means = np.stack([Z[y == c].mean(0) for c in range(3)])
    cov = shrunk(Z - means[y], 0.1)
    expected = sq_mahalanobis(Zq, means, cov).min(1)
    det = MahalanobisPlusPlusDetector(shrinkage=0.1).fit(X, y)
    np.testing.assert_allclose(det.score_samples(Xq), expected, rtol=1e-6)
    # scale invariance: rescaling a row does not change its score
    np.testing.assert_allclose(det.score_samples(Xq * 7.5), expected, rtol=1e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_relative_mahalanobis_formula(normalize):
    X, y = data(2)
    Xq, _ = data(3)
    Z, Zq = (unit(X), unit(Xq)) if normalize else (X.astype(np.float64), Xq.astype(np.float64))
    means = np.stack([Z[y == c].mean(0) for c in range(3)])
    md_c = sq_mahalanobis(Zq, means, shrunk(Z - means[y], 0.2))
    mu0 = Z.mean(0, keepdims=True)
    md_0 = sq_mahalanobis(Zq, mu0, shrunk(Z - mu0, 0.2))[:, 0]
    det = RelativeMahalanobisDetector(shrinkage=0.2, normalize=normalize).fit(X, y)
    np.testing.assert_allclose(det.score_samples(Xq), (md_c - md_0[:, None]).min(1), rtol=1e-5, atol=1e-6)


def test_params_and_errors():
    assert json.loads(json.dumps(RelativeMahalanobisDetector().get_params())) == {
        "method": "relative_mahalanobis", "shrinkage": "ledoit_wolf", "normalize": False}
    assert MahalanobisPlusPlusDetector().get_params()["method"] == "mahalanobis_pp"
    X, y = data(4)
    with pytest.raises(OODInputError, match="needs class labels"):
        MahalanobisPlusPlusDetector().fit(X)
    with pytest.raises(OODInputError, match="shrinkage"):
        RelativeMahalanobisDetector(shrinkage=2.0)
