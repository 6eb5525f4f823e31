"""Tests of Mahalanobis++ (ood_core.detectors.mahalanobis) against a direct numpy computation."""

import json

import numpy as np
import pytest

from ood_core.detectors.mahalanobis import MahalanobisPlusPlusDetector
from ood_core.errors import OODInputError


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


def test_params_and_errors():
    assert json.loads(json.dumps(MahalanobisPlusPlusDetector().get_params())) == {
        "method": "mahalanobis_pp", "shrinkage": "ledoit_wolf"}
    X, y = data(4)
    with pytest.raises(OODInputError, match="needs class labels"):
        MahalanobisPlusPlusDetector().fit(X)
    with pytest.raises(OODInputError, match="shrinkage"):
        MahalanobisPlusPlusDetector(shrinkage=2.0)
