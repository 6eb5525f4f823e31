"""Probes of the numpy detectors with inputs a careful user may pass: each test failed before its fix."""

import numpy as np
import pytest

from ood_core.detectors import make_detector
from ood_core.errors import OODInputError


def _data(n=40, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(7, d)).astype(np.float32)


# --------------------------------------------------------------------------- pyramid_knn: k as large as the reference


@pytest.mark.parametrize("labels", [None, ["a"] * 5])
def test_pyramid_knn_fit_refuses_k_equal_to_the_reference_size_instead_of_nan_scores(labels):
    """fit(X_ref) with k = the number of reference samples used to succeed: the reference's leave-one-out scores
    (each sample left out) had no k-th neighbour, so every reference score was NaN and every score -inf."""
    X, T = _data(5)
    det = make_detector("pyramid_knn", k=5)
    with pytest.raises(OODInputError, match=r"k=5 but the reference embeddings have only 5 sample.*at most 4"):
        det.fit(X, labels)
    # the largest k the reference allows still gives finite scores, and they are the leave-one-out ones
    det = make_detector("pyramid_knn", k=4).fit(X, labels)
    assert np.isfinite(det.score_samples(T)).all() and np.isfinite(det.reference_scores_).all()
    np.testing.assert_allclose(det.reference_scores_, make_detector("pyramid_knn", k=4).fit_reference_scores(X, labels))


def test_pyramid_knn_fit_refuses_classes_too_small_for_their_own_leave_one_out_scores():
    """Classes of 3 and 2 with k=3: fit passed (the class of 3 offers 3 neighbours to a new sample) but the
    reference's own rows found at most 2 others in any class: NaN reference scores, -inf scores."""
    X, T = _data(5)
    with pytest.raises(OODInputError, match="reference classes are too small: the largest has 3"):
        make_detector("pyramid_knn", k=3).fit(X, ["a", "a", "a", "b", "b"])
    # a class of 3 next to a class of 3: every row finds 3 neighbours in the other class
    det = make_detector("pyramid_knn", k=3).fit(_data(6)[0], ["a", "a", "a", "b", "b", "b"])
    assert np.isfinite(det.reference_scores_).all() and np.isfinite(det.score_samples(T)).all()


# --------------------------------------------------------------------------- pyramid_knn.component_scores input


def test_pyramid_knn_component_scores_checks_its_input_like_score_samples():
    """component_scores took any array: another dimension crashed in a numpy matmul, NaN rows gave NaN scores."""
    X, T = _data()
    det = make_detector("pyramid_knn").fit(X)
    with pytest.raises(OODInputError, match="reference embeddings have dimension 6 but scored embeddings have "
                                            "dimension 4"):
        det.component_scores(T[:, :4])
    with pytest.raises(OODInputError, match="NaN or infinite"):
        det.component_scores(np.full((2, 6), np.nan))
    np.testing.assert_allclose(det.component_scores(T.tolist())[:, 0], det.score_samples(T), rtol=1e-6)


# --------------------------------------------------------------------------- LOF on embeddings of a small scale


@pytest.mark.parametrize("backend", ["faiss", "sklearn"])
@pytest.mark.parametrize("scale", [1e-8, 1e-20])
def test_lof_does_not_depend_on_the_scale_of_the_embeddings(backend, scale):
    """LOF is scale-free, but its 1e-10 guard on the reachability mean was absolute: embeddings whose
    distances are ~1e-8 moved the scores by ~0.005, at ~1e-20 every score was 1.0 (no ranking at all)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 8))
    T = rng.normal(size=(50, 8)) * 1.5
    ref = make_detector("lof", k=10, backend=backend).fit(X)
    small = make_detector("lof", k=10, backend=backend).fit(X * scale)
    np.testing.assert_allclose(small.score_samples(T * scale), ref.score_samples(T), rtol=1e-5)
    np.testing.assert_allclose(make_detector("lof", k=10, backend=backend).fit_score(X * scale),
                               make_detector("lof", k=10, backend=backend).fit_score(X), rtol=1e-5)
    y = np.repeat(["a", "b"], 100)
    np.testing.assert_allclose(make_detector("class_lof", k=10, backend=backend).fit_score(X * scale, y),
                               make_detector("class_lof", k=10, backend=backend).fit_score(X, y), rtol=1e-5)


# --------------------------------------------------------------------------- a zero level is not a zero row


@pytest.mark.parametrize("method, level_dims, zero_cols, says", [
    ("level_fusion", [2, 4], slice(0, 2), r"level 0 \(columns 0:2\)"),
    ("weighted_label_vote", [2, 4], slice(0, 2), r"level 0 \(columns 0:2\)"),
    ("pyramid_knn", [4, 2], slice(4, 6), r"level 1 \(columns 4:6\)"),
])
def test_an_all_zero_pyramid_level_is_named_not_called_an_all_zero_row(method, level_dims, zero_cols, says):
    """A row zero in one level only was reported as an "all-zero row", and the fix offered (normalize=False)
    named only knn and label_agreement, not the multi-level detectors that take it."""
    X, _ = _data()
    X[3, zero_cols] = 0
    assert np.abs(X[3]).sum() > 0
    says = r"1 all-zero row\(s\) in " + says + r" \(first rows: \[3\]\).*level_fusion"
    with pytest.raises(OODInputError, match=says):
        make_detector(method, level_dims=level_dims).fit_score(X, np.repeat(["a", "b"], 20))


# --------------------------------------------------------------------------- level_fusion on a tiny scale


@pytest.mark.parametrize("standardize", ["zscore", "robust"])
def test_level_fusion_without_normalisation_does_not_flatten_embeddings_of_a_tiny_scale(standardize):
    """With normalize=False the reference's spread of k-NN distances was compared with an absolute 1e-12: on
    embeddings of scale 1e-20 every component counted as constant (scale 1) and every score was about 0."""
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(60, 8)), rng.normal(size=(20, 8)) * 1.5
    def scores(scale):
        det = make_detector("level_fusion", level_dims=[3, 5], normalize=False, standardize=standardize)
        return det.fit(X * scale).score_samples(T * scale), det.fit_score(X * scale)
    for tiny, ordinary in zip(scores(1e-20), scores(1.0)):
        assert np.ptp(ordinary) > 1
        np.testing.assert_allclose(tiny, ordinary, rtol=1e-4, atol=1e-4)
    # duplicated reference images (every leave-one-out distance 0) still count as constant: finite scores
    dup = make_detector("level_fusion", normalize=False, k=1).fit(np.repeat(X[:10], 2, axis=0))
    assert np.all(dup.scale_ == 1.0) and np.isfinite(dup.score_samples(T)).all()


# --------------------------------------------------------------------------- PCA fitted on one embedding


def test_pca_fitted_on_a_single_embedding_is_refused():
    """PCA(n_components=1) fitted on one row passed the size check (1 <= min(1, D)) and returned an arbitrary
    axis with a NaN explained variance: every later projection was meaningless, with only a numpy warning."""
    from ood_core.reduction import Reducer

    X, T = _data()
    with pytest.raises(OODInputError, match="1 row: PCA has no direction of variance.*at least 2"):
        Reducer(method="pca", n_components=1).fit(X[:1])
    with pytest.raises(OODInputError, match="1 row: PCA"):
        Reducer(method="pca", n_components=1).fit_transform(X[:1])
    two = Reducer(method="pca", n_components=1).fit(X[:2])  # two different rows: one real direction
    assert np.isfinite(two.linear_state()["explained_variance_ratio"]) and two.transform(T).shape == (7, 1)


# --------------------------------------------------------------------------- Mahalanobis: one sample per class


@pytest.mark.parametrize("method", ["mahalanobis", "mahalanobis_pp"])
def test_mahalanobis_with_one_sample_per_class_says_so(method):
    """Three different samples, one per class, were refused as "all rows identical within their class ... use
    more varied reference samples", which they already are: the error now names the single-sample classes."""
    X, _ = _data(3)
    with pytest.raises(OODInputError, match="each of the 3 classes has a single sample.*at least 2 different "
                                            "samples in some class.*class_conditional=False"):
        make_detector(method).fit(X, ["a", "b", "c"])
    assert np.isfinite(make_detector("mahalanobis", class_conditional=False).fit(X).score_samples(X)).all()


# --------------------------------------------------------------------------- numpy floats as hyperparameters


@pytest.mark.parametrize("method, param, value", [
    ("pyramid_knn", "class_k_fraction", 0.05), ("pyramid_knn", "k_fraction", 0.02),
    ("pyramid_knn", "unsupervised_class_k_fraction", 0.15), ("pyramid_knn", "component_gate", 0.05),
    ("pyramid_knn", "transductive_alpha", 0.01), ("pyramid_knn", "class_mix_gate", 0.23),
    ("weighted_label_vote", "margin_weight", 0.2), ("weighted_label_vote", "lda_weight", 0.5),
])
def test_numpy_float32_hyperparameters_are_accepted(method, param, value):
    """A value read from a float32 array (np.float32 is no Python float) was refused as "not valid; pass a
    number in (0, 1]" although it is one; the other detectors' fractions (check_number) took it."""
    det = make_detector(method, **{param: np.float32(value)})
    assert getattr(det, param) == pytest.approx(value) and type(getattr(det, param)) is float
    for bad in (True, "0.1", float("nan"), 1.5):
        with pytest.raises(OODInputError, match=param):
            make_detector(method, **{param: bad})


# --------------------------------------------------------------------------- faiss's IVF on a small set


def test_ivf_index_on_a_small_reference_prints_no_faiss_warning(capfd):
    """index="ivf" on fewer than 39 points (one cell) made faiss print "WARNING clustering 20 points to 1
    centroids: please provide at least 39 training points" to stderr on every fit; the search is the same."""
    from ood_core.neighbors import NeighborIndex

    X, T = _data(20)
    capfd.readouterr()
    dist, idx = NeighborIndex(index="ivf").fit(X).kneighbors(T, k=3)
    assert "WARNING clustering" not in capfd.readouterr().err
    exact = NeighborIndex(index="flat").fit(X).kneighbors(T, k=3)
    np.testing.assert_array_equal(idx, exact[1])
    np.testing.assert_allclose(dist, exact[0], rtol=1e-5)
