"""Tests of ood_core.detectors.level_fusion against direct numpy / scikit-learn computations."""

import json

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from ood_core.detectors.base import adaptive_k, level_slices
from ood_core.detectors.level_fusion import LevelFusionDetector
from ood_core.errors import NotFittedError, OODInputError

DIMS = [3, 5, 4]


def data(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, sum(DIMS))) + shift).astype(np.float32)


def unit(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def kth_distance(ref, X, k, loo):
    """Independent k-th neighbour distance with scikit-learn (loo: X is ref, skip self)."""
    nn = NearestNeighbors(algorithm="brute").fit(ref)
    if loo:
        d, _ = nn.kneighbors(n_neighbors=k)
    else:
        d, _ = nn.kneighbors(X, n_neighbors=k)
    return d[:, k - 1]


def reference_formula(ref, X, k, standardize, fusion):
    comps, ref_comps = [], []
    for sl in level_slices(DIMS):
        r, x = unit(ref[:, sl]), unit(X[:, sl])
        loo = kth_distance(r, r, k, loo=True)
        s = kth_distance(r, x, k, loo=False)
        if standardize == "zscore":
            z = (s - loo.mean()) / loo.std()
            zr = (loo - loo.mean()) / loo.std()
        elif standardize == "robust":
            med = np.median(loo)
            mad = 1.4826 * np.median(np.abs(loo - med))
            z, zr = (s - med) / mad, (loo - med) / mad
        else:
            z = -np.log(np.array([(1 + np.sum(loo >= v)) / (loo.size + 1) for v in s]))
            zr = -np.log(np.array([(1 + np.sum(loo >= v)) / (loo.size + 1) for v in loo]))
        comps.append(z)
        ref_comps.append(zr)
    agg = np.mean if fusion == "mean" else np.max
    return agg(np.stack(comps, 1), axis=1), agg(np.stack(ref_comps, 1), axis=1)


@pytest.mark.parametrize("standardize", ["zscore", "robust", "rank"])
@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_matches_the_formula(standardize, fusion):
    ref, X = data(60, 0), data(25, 1, shift=0.3)
    det = LevelFusionDetector(level_dims=DIMS, k=3, standardize=standardize, fusion=fusion, backend="sklearn")
    expected, expected_ref = reference_formula(ref, X, 3, standardize, fusion)
    np.testing.assert_allclose(det.fit(ref).score_samples(X), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(det.fit_score(ref), expected_ref, rtol=1e-5, atol=1e-5)


def test_reference_leave_one_out_zscores_have_mean_zero_unit_std_per_level():
    ref = data(80, 2)
    det = LevelFusionDetector(level_dims=DIMS, k=2, backend="sklearn").fit(ref)
    z = det._standardize(det.reference_scores_)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-9)


def test_levels_subset_and_multi_k_components():
    ref, X = data(50, 3), data(10, 4)
    det = LevelFusionDetector(level_dims=DIMS, levels=[2, 0], k=[1, 4], backend="sklearn").fit(ref)
    comps = det.component_scores(X)
    assert comps.shape == (10, 4)  # 2 levels x 2 ks, level-major
    sl = level_slices(DIMS)[2]
    loo = kth_distance(unit(ref[:, sl]), None, 4, loo=True)
    s = kth_distance(unit(ref[:, sl]), unit(X[:, sl]), 4, loo=False)
    np.testing.assert_allclose(comps[:, 3], (s - loo.mean()) / loo.std(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(det.score_samples(X), comps.mean(1))


def test_far_points_score_higher_than_inliers():
    # On unit vectors "far" is a different direction: the reference clusters around
    # +1 in every coordinate, the outliers around -1.
    ref = data(200, 5, shift=1.0)
    inl, far = data(50, 6, shift=1.0), data(50, 7, shift=-1.0)
    det = LevelFusionDetector(level_dims=DIMS, backend="sklearn").fit(ref)
    s_in, s_far = det.score_samples(inl), det.score_samples(far)
    assert np.median(s_far) > np.percentile(s_in, 90)


def test_adaptive_k_rule_and_auto_resolution():
    assert [adaptive_k(n) for n in (1, 9, 15, 100, 499, 5000)] == [1, 2, 3, 20, 50, 50]
    assert [adaptive_k(n, fraction=0.1) for n in (1, 9, 15, 100, 499)] == [1, 1, 2, 10, 50]
    assert adaptive_k(100, fraction=0.05, k_max=3) == 3
    ref = data(120, 8)
    y = np.repeat(["a", "b", "c"], [20, 40, 60])
    assert LevelFusionDetector(level_dims=DIMS).fit(ref).ks_ == [12]  # 0.1 * (120 - 1)
    assert LevelFusionDetector(level_dims=DIMS).fit(ref, y).ks_ == [2]  # 0.1 * smallest class 20


def test_params_are_json_and_round_trip():
    det = LevelFusionDetector(level_dims=np.array(DIMS), levels=(0, 2), k=[2, 1], fusion="max")
    params = json.loads(json.dumps(det.get_params()))
    assert params["method"] == "level_fusion" and params["k"] == [1, 2] and params["levels"] == [0, 2]
    params.pop("method")
    again = LevelFusionDetector(**params)
    assert again.get_params() == det.get_params()


def test_errors_name_the_problem():
    with pytest.raises(NotFittedError):
        LevelFusionDetector(level_dims=DIMS).score_samples(data(3, 0))
    with pytest.raises(OODInputError, match="level_dims"):
        LevelFusionDetector(level_dims=[3, 3]).fit(data(20, 0))
    with pytest.raises(OODInputError, match="k=30 but the reference set has only 20"):
        LevelFusionDetector(level_dims=DIMS, k=30).fit(data(20, 0))
    with pytest.raises(OODInputError, match="standardize="):
        LevelFusionDetector(level_dims=DIMS, standardize="minmax")
    with pytest.raises(OODInputError, match="levels="):
        LevelFusionDetector(level_dims=DIMS, levels=[5])
    with pytest.raises(OODInputError, match="dimension 12"):
        LevelFusionDetector(level_dims=DIMS, k=1).fit(data(20, 0)).score_samples(np.ones((2, 5)))
    bad = data(20, 0)
    bad[3, :3] = 0
    with pytest.raises(OODInputError, match="all-zero"):
        LevelFusionDetector(level_dims=DIMS, k=1).fit(bad)


def test_auto_levels_keep_the_levels_that_classify_the_reference():
    rng = np.random.default_rng(9)
    y = np.repeat([0, 1, 2], 30)
    centres = rng.normal(size=(3, sum(DIMS))) * 3
    X = centres[y] + rng.normal(size=(90, sum(DIMS)))
    X[:, :3] = rng.normal(size=(90, 3))  # level 0: no class structure
    X = X.astype(np.float32)
    det = LevelFusionDetector(level_dims=DIMS, levels="auto", k=2, backend="sklearn").fit(X, y)
    expected_acc = []
    for sl in level_slices(DIMS):
        _, idx = NearestNeighbors(algorithm="brute").fit(unit(X[:, sl])).kneighbors(n_neighbors=1)
        expected_acc.append(np.mean(y[idx[:, 0]] == y))
    np.testing.assert_allclose(det.level_accuracy_, expected_acc)
    assert expected_acc[0] < 0.7 and min(expected_acc[1:]) > 0.95
    assert det.levels_ == [1, 2]
    # same scores as fixing those levels by hand
    Xq = X[:7] + 0.1
    fixed = LevelFusionDetector(level_dims=DIMS, levels=[1, 2], k=2, backend="sklearn").fit(X)
    np.testing.assert_allclose(det.score_samples(Xq), fixed.score_samples(Xq))
    # without labels every level is scored
    assert LevelFusionDetector(level_dims=DIMS, levels="auto", k=2).fit(X).levels_ == [0, 1, 2]
    assert json.loads(json.dumps(det.get_params()))["levels"] == "auto"


# ------------------------------------------------- trusted reference: fit_reference_scores


def numpy_loo_kth(Z, k):
    """k-th neighbour distance of every row among the *other* rows, from the full distance matrix."""
    D = np.sqrt(((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(D, np.inf)
    return np.sort(D, axis=1)[:, k - 1]


def numpy_reference_scores(ref, ks, standardize, fusion):
    """The reference's fused leave-one-out scores, written out with numpy only."""
    comps = []
    for sl in level_slices(DIMS):
        Z = unit(ref[:, sl])
        for k in ks:
            r = numpy_loo_kth(Z, k)
            if standardize == "zscore":
                comps.append((r - r.mean()) / r.std())
            elif standardize == "robust":
                med = np.median(r)
                comps.append((r - med) / (1.4826 * np.median(np.abs(r - med))))
            else:  # -log conformal p-value against the reference's own scores
                comps.append(-np.log((1 + (r[None, :] >= r[:, None]).sum(1)) / (r.size + 1)))
    comps = np.stack(comps, 1)
    return comps.mean(1) if fusion == "mean" else comps.max(1)


@pytest.mark.parametrize("standardize", ["zscore", "robust", "rank"])
@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_fit_reference_scores_are_the_self_excluded_formula(standardize, fusion):
    ref = data(40, 10)
    det = LevelFusionDetector(level_dims=DIMS, k=[1, 3], standardize=standardize, fusion=fusion, backend="sklearn")
    scores = det.fit_reference_scores(ref)
    assert scores.shape == (40,) and scores.dtype == np.float64 and np.isfinite(scores).all()
    np.testing.assert_allclose(scores, numpy_reference_scores(ref, [1, 3], standardize, fusion), rtol=1e-5, atol=1e-5)
    assert det.is_fitted and det.n_samples_fit_ == 40
    params = {name: value for name, value in det.get_params().items() if name != "method"}
    np.testing.assert_allclose(scores, LevelFusionDetector(**params).fit_score(ref))  # trusted = unsupervised read


def test_each_reference_row_scores_as_if_fitted_without_it():
    # Row i's raw distance = score of x_i by a detector fitted on the other rows; put on the full
    # reference's z-scale and averaged over levels, that is row i's fit_reference_scores value.
    ref = data(30, 11)
    full = LevelFusionDetector(level_dims=DIMS, k=2, backend="sklearn")
    scores = full.fit_reference_scores(ref)
    for i in (0, 7, 29):
        rest = LevelFusionDetector(level_dims=DIMS, k=2, backend="sklearn").fit(np.delete(ref, i, axis=0))
        raw = rest.component_scores(ref[i:i + 1]) * rest.scale_ + rest.loc_
        np.testing.assert_allclose(scores[i], ((raw - full.loc_) / full.scale_).mean(), rtol=1e-5, atol=1e-6)
    # self-excluded: not the score of a row that finds itself in the reference (distance 0 at k=1)
    assert not np.allclose(scores, full.score_samples(ref))


def test_trusted_reference_scores_share_the_scale_of_score_samples():
    ref = data(200, 5, shift=1.0)
    inl, far = data(100, 6, shift=1.0), data(50, 7, shift=-1.0)
    det = LevelFusionDetector(level_dims=DIMS, backend="sklearn")
    self_scores = det.fit_reference_scores(ref)
    s_in, s_far = det.score_samples(inl), det.score_samples(far)
    assert np.median(s_far) > np.percentile(s_in, 90)  # higher = more OOD
    # calibrated against the reference's own scores: far points are flagged, inliers rarely
    cut = np.quantile(self_scores, 0.95)
    assert np.mean(s_far > cut) >= 0.9 and np.mean(s_in > cut) <= 0.2
    np.testing.assert_allclose(self_scores.mean(), 0, atol=1e-9)  # z-scores averaged over levels


def test_make_detector_level_fusion_fits_a_trusted_reference():
    from ood_core.detectors import make_detector

    X = np.random.default_rng(0).normal(size=(60, 32))
    det = make_detector("level_fusion", level_dims=[16, 16])
    scores = det.fit_reference_scores(X)
    assert scores.shape == (60,) and np.isfinite(scores).all()
    np.testing.assert_allclose(scores, make_detector("level_fusion", level_dims=[16, 16]).fit_score(X))
    assert det.fit(X) is det and det.score_samples(X[:5]).shape == (5,)


def test_fit_reference_scores_use_the_labels_like_fit():
    rng = np.random.default_rng(9)
    y = np.repeat([0, 1, 2], [20, 30, 40])
    X = (rng.normal(size=(3, sum(DIMS))) * 3)[y] + rng.normal(size=(90, sum(DIMS)))
    X[:, :3] = rng.normal(size=(90, 3))  # level 0: no class structure
    X = X.astype(np.float32)
    fitted = LevelFusionDetector(level_dims=DIMS, levels="auto", backend="sklearn").fit(X, y)
    det = LevelFusionDetector(level_dims=DIMS, levels="auto", backend="sklearn")
    det.fit_reference_scores(X, list(y))
    assert det.ks_ == fitted.ks_ == [2] and det.levels_ == fitted.levels_ == [1, 2]
    np.testing.assert_allclose(det.score_samples(X[:5] + 0.1), fitted.score_samples(X[:5] + 0.1))
    with pytest.raises(OODInputError, match="one label per embedding row"):
        det.fit_reference_scores(X, y[:10])


def test_level_fusion_scores_a_dataset_against_trusted_samples(dataset_factory, fashion_files):
    """Through the SDK with a trusted reference (it crashed with a bare NotImplementedError): trusted samples get
    their self-excluded reference scores, held-out classes rank high (positive class = OOD)."""
    import ood_core as ood

    paths, names = fashion_files
    idx = [c * 20 + j for c in range(10) for j in range(8)]
    held_out = {"Bag", "Ankle boot"}
    tags = [["trusted"] if names[i] not in held_out and i % 20 < 5 else [] for i in idx]
    ds = dataset_factory([paths[i] for i in idx], [names[i] for i in idx], tags)
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1, 2], grid=1,
                                   progress=False)
    out = ood.compute_ood_scores(ds, "emb", "lf", method="level_fusion", reference="trusted")
    assert out["num_scored"] == len(ds)
    scores = np.array(ds.values("lf"))
    assert np.isfinite(scores).all()
    untrusted = np.array(["trusted" not in t for t in ds.values("tags")])
    is_ood = np.array([n in held_out for n in ds.values("ground_truth.label")])
    assert ood.ood_metrics(scores[untrusted], is_ood[untrusted])["auroc"] > 0.6
