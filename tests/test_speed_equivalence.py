"""The fast paths give what the slow computations they replace give.

- Weighted label votes: ``fit_score`` searches each level once and derives the level choice, the first
  vote, the second vote without suspects and the same-label distances from those lists; here every one
  of them is recomputed by brute force over all pairs.
- LDA: :class:`~ood_core.detectors.lda.GramPCA` (from one Gram matrix per fold), and
  :class:`~ood_core.detectors.lda.RowGramPCA` (every component of a small wide set, from its rows' Gram
  matrix) against scikit-learn's randomized PCA fitted on each fold's rows.
- The density ratio's permutation test stops once its decision is known: the same decision as all draws.
"""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from ood_core.detectors import label_votes
from ood_core.detectors.label_votes import WeightedLabelVoteDetector, vote_score
from ood_core.detectors.lda import (GramPCA, RowGramPCA, ShrinkageLDA, fit_temperature, fold_ids, lda_probabilities,
                                   tempered)
from ood_core.detectors.transductive import DensityRatio, permutation_test

DIMS = [5, 7]
EPS = 1e-6  # the inverse-distance weights' epsilon
DELTA = 0.01  # TIE_BREAK_WEIGHT


def noisy_blobs(seed, n_per_class=40, classes=4, noise=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, sum(DIMS))) * 1.5
    y = np.repeat(np.arange(classes), n_per_class)
    X = (centres[y] + rng.normal(size=(y.size, sum(DIMS)))).astype(np.float32)
    flip = rng.choice(y.size, int(noise * y.size), replace=False)
    y_given = y.copy()
    y_given[flip] = (y[flip] + rng.integers(1, classes, flip.size)) % classes
    return X, y_given


def unit_blocks(X):
    """Each level's block scaled to unit rows, float32 (what the detector searches)."""
    out, start = [], 0
    for d in DIMS:
        B = X[:, start:start + d]
        out.append((B / np.linalg.norm(B.astype(np.float64), axis=1)[:, None]).astype(np.float32))
        start += d
    return out


def all_distances(B):
    B = B.astype(np.float64)
    return np.sqrt(((B[:, None, :] - B[None, :, :]) ** 2).sum(axis=-1))


def brute_votes(dist, y, k, n_classes, voters):
    """Inverse-distance votes of each row's k nearest ``voters`` (itself never), ties by index."""
    probs = np.zeros((y.size, n_classes))
    for i in range(y.size):
        cand = [j for j in np.flatnonzero(voters) if j != i]
        near = sorted(cand, key=lambda j: (dist[i, j], j))[:k]
        for j in near:
            probs[i, y[j]] += 1.0 / (dist[i, j] + EPS)
        probs[i] /= probs[i].sum()
    return probs


def brute_scores(X, y, k, w=0.2):
    """Scores and class probabilities of the default vote (both levels, second vote, no LDA), all pairs."""
    n_classes = int(y.max()) + 1
    everyone = np.ones(y.size, bool)
    dists = [all_distances(B) for B in unit_blocks(X)]
    first = np.mean([brute_votes(D, y, k, n_classes, everyone) for D in dists], axis=0)
    voters = first.argmax(axis=1) == y
    second = np.mean([brute_votes(D, y, k, n_classes, voters) for D in dists], axis=0)
    probs = (first + second) / 2
    ratio = np.zeros(y.size)
    for D in dists:
        D = D + np.diag(np.full(y.size, np.inf))
        same = np.where(y[None, :] == y[:, None], D, np.inf).min(axis=1)
        ratio += np.clip(1.0 - D.min(axis=1) / same, 0.0, 1.0)
    return (1 - DELTA) * vote_score(probs, y, w) + DELTA * ratio / len(dists), probs, voters


@pytest.mark.parametrize("seed,k", [(0, 3), (1, 5), (2, 1)])
def test_votes_from_one_search_per_level_equal_votes_from_all_pairs(seed, k, monkeypatch):
    """The first vote, the second vote (suspects do not vote) and the same-label ratio, as a direct computation.

    The lists are shortened to 2k so that some rows hold fewer than k voters and take the fallback search."""
    monkeypatch.setattr(label_votes, "LIST_MARGIN", 0)
    X, y = noisy_blobs(seed)
    det = WeightedLabelVoteDetector(k=k, level_dims=DIMS, lda_weight=0.0)
    scores = det.fit_score(X, y)
    expected, probs, voters = brute_scores(X, y, k)
    # the shortened lists really leave rows without k voters (the fallback is exercised)
    dists = [all_distances(B) + np.diag(np.full(y.size, np.inf)) for B in unit_blocks(X)]
    listed_voters = [voters[np.argsort(D, axis=1, kind="stable")[:, :2 * k]].sum(axis=1) for D in dists]
    assert min(v.min() for v in listed_voters) < k
    assert det.num_suspects_ == int((~voters).sum())
    np.testing.assert_allclose(det.class_probabilities_, probs, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(scores, expected, rtol=1e-10, atol=1e-12)


def test_level_choice_from_the_shared_lists_equals_a_fresh_one_nearest_neighbour_search():
    X, y = noisy_blobs(3, noise=0.1)
    det = WeightedLabelVoteDetector(level_dims=DIMS, levels="auto", lda_weight=0.0)
    det.fit_score(X, y)
    expected = []
    for B in unit_blocks(X):
        D = all_distances(B) + np.diag(np.full(y.size, np.inf))
        expected.append(float(np.mean(y[np.argmin(D, axis=1)] == y)))
    np.testing.assert_allclose(det.level_accuracy_, expected)
    # the same levels as a detector that only fits (its level choice searches 1-NN afresh)
    fitted = WeightedLabelVoteDetector(level_dims=DIMS, levels="auto", lda_weight=0.0).fit(X, y)
    assert fitted.level_accuracy_ == det.level_accuracy_ and fitted.levels_ == det.levels_


def old_out_of_fold(Z, codes, n_classes, folds, max_dim):
    """lda_probabilities as it was: scikit-learn's randomized PCA fitted on every fold's rows."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    log_probs = np.full((Z.shape[0], n_classes), -np.inf)
    fold = fold_ids(codes, folds)
    for f in range(folds):
        test = fold == f
        n_comp = min(max_dim, int((~test).sum()) - 1, Z.shape[1])
        pca = PCA(n_components=n_comp, svd_solver="randomized", random_state=0).fit(Z[~test])
        model = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(pca.transform(Z[~test]), codes[~test])
        d = model.decision_function(pca.transform(Z[test]))
        log_probs[test] = d - np.log(np.exp(d - d.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True)) \
            - d.max(axis=1, keepdims=True)
    t = fit_temperature(log_probs, codes)
    return tempered(log_probs, t), t


def test_gram_pca_is_sklearn_randomized_pca_up_to_rounding():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(600, 80)) @ rng.normal(size=(80, 80)) + 3.0
    mean = Z.mean(axis=0)
    gram = (Z - mean).T @ (Z - mean)
    for n_comp in (5, 20, 60):  # 7 power iterations, then 4 (n_comp >= 0.1 * 80)
        ours = GramPCA(n_comp).fit(gram, mean, Z.shape[0]).transform(Z)
        ref = PCA(n_components=n_comp, svd_solver="randomized", random_state=0).fit(Z).transform(Z)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-8 * np.abs(ref).max())
    assert GramPCA(5).fit(gram[:50, :50], mean[:50], 40) is None  # fewer rows than columns: scikit-learn's own path


def test_out_of_fold_lda_with_fold_grams_equals_a_pca_fitted_on_each_fold():
    rng = np.random.default_rng(1)
    codes = np.repeat(np.arange(4), 150)
    Z = rng.normal(size=(4, 60))[codes] + rng.normal(size=(codes.size, 60)) @ rng.normal(size=(60, 60)) * 0.5
    probs, ok, t = lda_probabilities(Z, codes, 4, folds=5, max_dim=20)
    ref, t_ref = old_out_of_fold(Z, codes, 4, folds=5, max_dim=20)
    assert ok.all()
    assert t == pytest.approx(t_ref, abs=1e-6)
    np.testing.assert_allclose(probs, ref, rtol=0, atol=1e-7)
    assert np.array_equal(probs.argmax(axis=1), ref.argmax(axis=1))
    # the whole-set model (new samples) projects with GramPCA too
    model = ShrinkageLDA(4, max_dim=20).fit(Z, codes)
    assert isinstance(model.pca_, GramPCA)


def test_row_gram_pca_is_sklearn_pca_keeping_every_component_up_to_signs():
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(70, 300)) + np.outer(rng.normal(size=70), rng.normal(size=300)) + 2.0
    ours = RowGramPCA().fit(Z).transform(Z)
    ref = PCA(n_components=69, svd_solver="randomized", random_state=0).fit(Z).transform(Z)
    signs = np.sign(np.sum(ours * ref, axis=0))
    assert np.all(signs != 0)
    np.testing.assert_allclose(ours * signs, ref, rtol=0, atol=1e-8 * np.abs(ref).max())
    # repeated rows span fewer dimensions than rows - 1: declined, for scikit-learn's own PCA
    assert RowGramPCA().fit(np.vstack([Z[:30], Z[:30]])) is None


def test_out_of_fold_lda_of_a_small_wide_set_equals_sklearn_pca_on_each_fold():
    rng = np.random.default_rng(3)
    codes = np.repeat(np.arange(3), 20)  # 54 rows per fold model, 200 columns, max_dim 100: every component kept
    Z = rng.normal(size=(3, 200))[codes] + rng.normal(size=(codes.size, 200)) @ rng.normal(size=(200, 200)) * 0.2
    codes[rng.choice(codes.size, 8, replace=False)] = rng.integers(0, 3, 8)  # wrong labels: a temperature below 1
    probs, ok, t = lda_probabilities(Z, codes, 3, folds=10, max_dim=100)
    ref, t_ref = old_out_of_fold(Z, codes, 3, folds=10, max_dim=100)
    assert ok.all()
    assert t < 0.9 and t == pytest.approx(t_ref, abs=1e-6)
    np.testing.assert_allclose(probs, ref, rtol=0, atol=1e-7)
    assert isinstance(ShrinkageLDA(3, max_dim=100).fit(Z, codes).pca_, RowGramPCA)
    # repeated rows: scikit-learn's PCA, as before
    twice = [*range(50), *range(50)]
    assert isinstance(ShrinkageLDA(3, max_dim=100).fit(Z[twice], codes[twice]).pca_, PCA)


def full_test(statistic, observed, labels, n_permutations, seed):
    rng = np.random.default_rng(seed)
    null = np.array([statistic(rng.permutation(labels)) for _ in range(n_permutations)])
    return float((1 + np.sum(null >= observed)) / (n_permutations + 1))


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.3, 1.0])
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
def test_an_early_stopped_permutation_test_decides_as_the_full_test(shift, alpha):
    rng = np.random.default_rng(int(shift * 100) + int(alpha * 1000))
    values = np.r_[rng.normal(size=60), rng.normal(size=40) + shift]
    labels = np.r_[np.zeros(60, bool), np.ones(40, bool)]

    def statistic(lab):
        return values[lab].mean() - values[~lab].mean()

    observed = statistic(labels)
    p_full = full_test(statistic, observed, labels, 199, seed=5)
    out = permutation_test(statistic, observed, labels, 199, alpha, seed=5)
    assert out["used"] == (p_full <= alpha)
    assert out["p_value_at_least"] <= p_full
    if out["permutations_run"] == 199:
        assert out["p_value"] == p_full
    else:
        assert out["p_value"] is None and out["p_value_at_least"] > alpha


def test_the_density_ratio_records_a_bound_when_its_test_stops_early():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(3, 8)) * 2
    ref = centres[rng.integers(0, 3, 200)] + rng.normal(size=(200, 8))
    same = centres[rng.integers(0, 3, 150)] + rng.normal(size=(150, 8))
    crowd = np.r_[same[:75], rng.normal(size=(75, 8)) * 0.3 + 6.0]  # a cluster of OOD images
    for scored, fires in ((same, False), (crowd, True)):
        gated = DensityRatio(alpha=0.01).compute([ref], [scored])
        full = DensityRatio(alpha=1.0).compute([ref], [scored])  # every draw runs
        assert gated["used"] == fires == (full["p_value"] <= 0.01)
        assert gated["effect"] == full["effect"]  # the weight does not depend on the draws
        if fires:
            assert gated["p_value"] == full["p_value"] and gated["permutations_run"] == 200
            np.testing.assert_array_equal(gated["scored"], full["scored"])
        else:
            assert gated["p_value"] is None and gated["permutations_run"] < 200
            assert 0.01 < gated["p_value_at_least"] <= full["p_value"]
            assert f"after {gated['permutations_run']} of 200 permutations" in gated["reason"]


def test_an_approximate_index_keeps_its_separate_searches(monkeypatch):
    """Lists are shared only for the exact index: with HNSW, fit_score searches as it always did."""
    pytest.importorskip("faiss")
    X, y = noisy_blobs(4)
    det = WeightedLabelVoteDetector(k=3, level_dims=DIMS, lda_weight=0.0, backend="faiss", index="hnsw")
    monkeypatch.setattr(det, "_own_lists", lambda neighbors: pytest.fail("approximate lists were shared"))
    scores = det.fit_score(X, y)
    assert scores.shape == (y.size,) and np.isfinite(scores).all()
