r"""Class probabilities from shrinkage LDA, out of fold for a set that scores its own labels.

Linear discriminant analysis models every class as a Gaussian with its own
mean and one shared covariance :math:`\Sigma`, and gives

.. math::

    p(c \mid x) \propto \pi_c \exp\bigl(x^\top \Sigma^{-1} \mu_c - \tfrac12 \mu_c^\top \Sigma^{-1} \mu_c\bigr).

With a few hundred images in a space of a thousand dimensions the sample
covariance is singular, so :math:`\Sigma` is the Ledoit-Wolf shrinkage of it
towards a multiple of the identity (Ledoit & Wolf 2004); scikit-learn's
``LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")`` fits it. At
strong shrinkage the model is close to a nearest-class-mean classifier, and a
class mean averages its few wrong labels away, where a k-NN vote near a
cluster of wrong labels follows them: the two err on different samples.

When a set scores its own labels, every sample's probabilities come from a
model fitted without it (``folds``-fold, each class spread evenly over the
folds by a seeded permutation), the "out-of-fold predicted probabilities" of
Confident Learning (Northcutt, Jiang & Chuang, JAIR 2021). Wide embeddings are
first projected onto at most ``max_dim`` principal components of the rows a
model is fitted on, which bounds the cost of the covariance solve. (Not of
all rows: the components that only a held-out fold spans have almost no
variance among the fitted rows, and the held-out rows' coordinates on them
then dominate the standardised LDA; measured, mean AUROC 0.953 against 0.969.)
The projection is scikit-learn's randomized PCA computed from the fold's
centred Gram matrix (:class:`GramPCA`): one Gram of all rows minus each
fold's own gives every fold's (:func:`_fold_grams`), and the power
iterations run in feature space, ``D x D`` instead of ``N x D`` products.
The same algorithm with the same seeded start, so results differ from
scikit-learn's by rounding only (max 8e-14 on the label scores of
``benchmarks/robustness.py``'s fmnist conditions, identical rankings and
suggested labels). With fewer rows than columns and every component kept
(at most ``max_dim + 1`` rows: a small labelled set), the components are
the exact ones, from the rows' ``N x N`` Gram matrix (:class:`RowGramPCA`:
scikit-learn's randomized PCA keeps them all too, so the two agree up to
rounding and signs, which the standardised LDA does not see; 450 rows of
6,912 columns: 0.1 s against 2 s per fold); with more rows than that but
fewer than columns scikit-learn's own PCA runs (it then draws its random
subspace in sample space).

In a few hundred dimensions LDA's posteriors are too sure of themselves
(out of fold, the given labels are more likely under softened probabilities
in every wrong-label condition measured), so averaged with neighbour votes
they would overrule them. They are calibrated by **temperature scaling** (Guo,
Pleiss, Sun & Weinberger, ICML 2017): :math:`p_t(c \mid x) \propto p(c \mid
x)^t`, with the one number :math:`t` that minimises the negative
log-likelihood of the given labels under the out-of-fold probabilities
(:func:`fit_temperature`; t <= 1, and scaling does not change any sample's
most likely class). Over the wrong-label conditions of ``benchmarks/robustness.py`` the
fitted :math:`t` had median 0.34 (range 0.07-0.54).
"""

import warnings

import numpy as np

__all__ = ["LDA_FOLDS", "LDA_MAX_DIM", "GramPCA", "RowGramPCA", "ShrinkageLDA", "centred_gram", "fit_temperature",
           "fold_ids", "lda_probabilities", "tempered"]

#: folds of the out-of-fold probabilities (each model sees 90% of the rows)
LDA_FOLDS = 10
#: at most this many principal components are modelled
LDA_MAX_DIM = 512
#: W^T C W with eigenvalues below this share of the largest: the rows span too few dimensions for GramPCA
GRAM_RANK_TOL = 1e-10
#: rows per float64 chunk when accumulating a Gram matrix
GRAM_CHUNK_ROWS = 4096


def fold_ids(codes, folds=LDA_FOLDS, seed=0):
    """Fold of every row: each class's rows, in a seeded random order, dealt out to the folds in turn."""
    codes = np.asarray(codes)
    rng = np.random.default_rng(seed)
    out = np.empty(codes.size, dtype=np.int64)
    for c in np.unique(codes):
        rows = np.flatnonzero(codes == c)
        out[rng.permutation(rows)] = np.arange(rows.size) % folds
    return out


class GramPCA:
    """scikit-learn's ``PCA(n_components, svd_solver="randomized", random_state=0)`` computed from the rows'
    centred Gram matrix ``C = A^T A`` (``A`` the centred rows, ``D x D``) instead of the rows.

    The randomized SVD (Halko, Martinsson & Tropp 2011) spans ``range(A (A^T A)^q Omega)`` with the same
    seeded ``Omega`` (``D x (n_components + 10)``) and ``q`` (7, or 4 when ``n_components >= 0.1 min(N, D)``)
    as scikit-learn, and takes the SVD of ``A`` projected onto that range. Every step but the last lives in
    feature space: the subspace is ``A W`` with ``W = orth(C^q Omega)``; with ``W^T C W = E Lambda E^T`` the
    projected rows are ``Lambda^{-1/2} E^T W^T C`` (up to a rotation on the left), whose SVD gives the
    components and singular values. In exact arithmetic this is scikit-learn's result; in floating point
    the two differ by rounding (scikit-learn normalises the power iterations by LU in sample space, here by QR
    in feature space). Cost: ``q + 2`` products of ``D x D`` by ``D x (n_components + 10)`` instead of
    ``2 q + 2`` products of ``N x D`` by ``D x (n_components + 10)`` (plus the Gram, which
    :func:`lda_probabilities` computes once for all folds). Components' signs follow scikit-learn's
    ``svd_flip``; the projection is ``Z V^T - mean V^T``, as scikit-learn's ``transform``.

    :meth:`fit` returns None when the rows are fewer than the columns (scikit-learn then draws ``Omega`` in
    sample space: another algorithm) or ``W^T C W`` is numerically singular (rows spanning fewer dimensions
    than ``n_components + 10``): callers then use scikit-learn's PCA on the rows.
    """

    def __init__(self, n_components, seed=0):
        self.n_components = int(n_components)
        self.seed = seed

    def fit(self, gram, mean, n_rows):
        from sklearn.utils.extmath import svd_flip

        d = gram.shape[0]
        size = self.n_components + 10
        n_iter = 7 if self.n_components < 0.1 * min(n_rows, d) else 4
        if n_rows < d or size > d:  # scikit-learn then transposes (a random subspace of sample space): not this
            return None
        W = np.random.RandomState(self.seed).normal(size=(d, size))
        for _ in range(n_iter):
            W = np.linalg.qr(gram @ W)[0]
        CW = gram @ W
        lam, E = np.linalg.eigh(W.T @ CW)
        if lam[0] <= GRAM_RANK_TOL * lam[-1]:
            return None
        B = (E / np.sqrt(lam)).T @ CW.T
        _, _, Vt = np.linalg.svd(B, full_matrices=False)
        _, Vt = svd_flip(np.zeros((1, Vt.shape[0])), Vt, u_based_decision=False)
        self.components_ = Vt[:self.n_components]
        self.n_components_ = self.components_.shape[0]
        self.mean_ = np.asarray(mean, dtype=np.float64)
        return self

    def transform(self, Z):
        P = np.asarray(Z, dtype=np.float64) @ self.components_.T
        P -= self.mean_[None, :] @ self.components_.T
        return P


class RowGramPCA:
    """Every principal component of fewer rows than columns (``N - 1`` of them: the centred rows' rank), exactly,
    from the centred rows' ``N x N`` Gram matrix ``K = A A^T``.

    With ``K = U Lambda U^T`` the components are ``A^T U Lambda^{-1/2}`` and the rows' coordinates ``U
    Lambda^{1/2}``: the principal axes of ``A``, as scikit-learn's PCA finds them when it keeps every component
    (its randomized SVD then spans the whole row space), up to rounding and each component's sign. Cost: one
    ``N x D`` by ``D x N`` product and an ``N x N`` eigendecomposition, where scikit-learn's power iterations
    multiply ``D x N`` by ``N x (N + 9)`` several times. :meth:`fit` returns None when the rows span fewer than
    ``N - 1`` dimensions (repeated rows: the smallest kept eigenvalue is rounding), for scikit-learn's PCA.
    """

    def fit(self, Z):
        A = np.asarray(Z, dtype=np.float64)
        self.mean_ = A.mean(axis=0)
        A = A - self.mean_
        lam, U = np.linalg.eigh(A @ A.T)
        lam, U = lam[::-1][:A.shape[0] - 1], U[:, ::-1][:, :A.shape[0] - 1]  # the last is centring's null direction
        if lam.size == 0 or lam[-1] <= GRAM_RANK_TOL * lam[0]:
            return None
        self.components_ = (A.T @ U / np.sqrt(lam)).T
        self.n_components_ = self.components_.shape[0]
        return self

    def transform(self, Z):
        return (np.asarray(Z, dtype=np.float64) - self.mean_) @ self.components_.T


def centred_gram(Z, offset):
    """``(Z - offset)^T (Z - offset)`` in float64, by chunks of rows (no full centred copy)."""
    d = Z.shape[1]
    gram = np.zeros((d, d))
    for start in range(0, Z.shape[0], GRAM_CHUNK_ROWS):
        block = np.asarray(Z[start:start + GRAM_CHUNK_ROWS], dtype=np.float64) - offset
        gram += block.T @ block
    return gram


class ShrinkageLDA:
    """Shrinkage LDA on at most ``max_dim`` principal components; probabilities give every class code a column."""

    def __init__(self, n_classes, max_dim=LDA_MAX_DIM):
        self.n_classes = int(n_classes)
        self.max_dim = int(max_dim)

    def fit(self, Z, codes, gram=None):
        """Fit the projection and the LDA on ``Z`` ``(N, D)`` with class codes.

        The projection is :class:`GramPCA`, or :class:`RowGramPCA` when it keeps every component of fewer rows
        than columns (scikit-learn's randomized PCA itself with more rows than that but fewer than columns, or
        rows spanning too few dimensions). ``gram``: optional ``(C, mean)``, the rows' centred
        Gram matrix and mean when the caller has them (:func:`lda_probabilities` derives every fold's from
        one pass). ``fitted`` is False (and no
        LDA is modelled) with fewer than two classes or no more rows than classes.
        """
        Z = np.asarray(Z, dtype=np.float64)
        n_comp = min(self.max_dim, Z.shape[0] - 1, Z.shape[1])
        self.pca_ = None
        if Z.shape[1] > self.max_dim and n_comp >= 1:
            if gram is None and Z.shape[0] >= Z.shape[1]:  # else GramPCA declines: no Gram needed
                mean = Z.mean(axis=0)
                gram = (centred_gram(Z, mean), mean)
            self.pca_ = None if gram is None else GramPCA(n_comp).fit(gram[0], gram[1], Z.shape[0])
            if self.pca_ is None and n_comp == Z.shape[0] - 1 < Z.shape[1]:  # every component of a small set
                self.pca_ = RowGramPCA().fit(Z)
            if self.pca_ is None:
                from sklearn.decomposition import PCA

                self.pca_ = PCA(n_components=n_comp, svd_solver="randomized", random_state=0).fit(Z)
        self.model_ = _fit_lda(self._project(Z), codes)
        self.fitted = self.model_ is not None
        return self

    def _project(self, Z):
        Z = np.asarray(Z, dtype=np.float64)
        return Z if self.pca_ is None else self.pca_.transform(Z)

    def predict_log_proba(self, Z):
        """``(M, n_classes)`` log posteriors from the discriminant functions (no underflow); a class the fit
        never saw gets ``-inf``. All ``-inf`` when not ``fitted``."""
        P = self._project(Z)
        out = np.full((P.shape[0], self.n_classes), -np.inf)
        if self.model_ is not None:
            d = self.model_.decision_function(P)
            if d.ndim == 1:  # two classes: the log-odds of the second
                d = np.stack([np.zeros_like(d), d], axis=1)
            out[:, self.model_.classes_] = d - _logsumexp(d)
        return out

    def predict_proba(self, Z, temperature=1.0):
        """``(M, n_classes)`` posteriors raised to ``temperature`` and renormalised (module docstring); a class
        the fit never saw gets 0; zeros when not ``fitted``."""
        if self.model_ is None:
            return np.zeros((np.asarray(Z).shape[0], self.n_classes))
        return tempered(self.predict_log_proba(Z), temperature)


def _logsumexp(L):
    m = L.max(axis=1, keepdims=True)
    return m + np.log(np.exp(L - m).sum(axis=1, keepdims=True))


def tempered(log_probs, t):
    """``p^t`` renormalised per row, from log probabilities ``(N, C)`` (``-inf`` = probability 0)."""
    z = t * np.asarray(log_probs, dtype=np.float64)
    return np.exp(z - _logsumexp(z))


def fit_temperature(log_probs, codes, bounds=(1e-3, 1.0)):
    """The exponent t in ``bounds`` minimising the mean negative log-likelihood of ``codes`` under ``tempered``.

    ``log_probs`` ``(N, C)`` out-of-fold log probabilities; rows whose own class has probability 0 (its
    class unseen by the model) are left out. The objective is convex in t. The upper bound 1 only ever
    softens the model: on classes it separates perfectly the likelihood would keep rising with t.
    Returns 1.0 with no usable row.
    """
    from scipy.optimize import minimize_scalar

    L = np.asarray(log_probs, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    own = L[np.arange(L.shape[0]), codes]
    keep = np.isfinite(own)
    if not keep.any():
        return 1.0
    L, own = L[keep], own[keep]

    def nll(t):
        return float(np.mean(_logsumexp(t * L)[:, 0] - t * own))

    return float(minimize_scalar(nll, bounds=bounds, method="bounded", options={"xatol": 1e-4}).x)


def _fit_lda(P, codes):
    """scikit-learn's shrinkage LDA fitted on ``P``, or None with fewer than two classes or no more rows than
    classes (scikit-learn refuses those)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    codes = np.asarray(codes, dtype=np.int64)
    n_classes = np.unique(codes).size
    if n_classes < 2 or codes.size <= n_classes:
        return None
    with warnings.catch_warnings():
        # a class with one sample: its (zero) scatter is what the shared covariance should get
        warnings.filterwarnings("ignore", "Only one sample available", UserWarning)
        return LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(P, codes)


def _fold_grams(Z, fold, folds):
    """Per fold ``f``: the centred Gram matrix and mean of the rows outside ``f``, from one Gram of all rows
    minus the fold's own (centred on the mean of all rows first, so the subtraction cancels few digits)."""
    offset = Z.mean(axis=0)
    total = centred_gram(Z, offset)
    out = []
    for f in range(folds):
        test = fold == f
        rest = ~test
        if not test.any() or not rest.any():
            out.append(None)
            continue
        n = int(rest.sum())
        shift = (Z[rest] - offset).mean(axis=0) if n <= Z.shape[0] // 2 else \
            -(Z[test] - offset).sum(axis=0) / n  # the rest's mean from the fold's sum (all rows sum to 0)
        gram = total - centred_gram(Z[test], offset) - n * np.outer(shift, shift)
        out.append((gram, offset + shift))
    return out


def lda_probabilities(Z, codes, n_classes, *, folds=LDA_FOLDS, max_dim=LDA_MAX_DIM, calibrate=True, on_fold=None,
                      fit_rows=None):
    """Out-of-fold shrinkage-LDA class probabilities of labelled rows (module docstring).

    ``Z`` ``(N, D)``, ``codes`` the class index per row (``0..n_classes-1``).
    Returns ``(probs, ok, t)``: ``probs`` ``(N, n_classes)`` from models (projection and LDA) fitted without
    the row's fold (a class missing from those rows gets 0), tempered by ``t``
    (:func:`fit_temperature` on these rows when ``calibrate``, else 1); ``ok`` ``(N,)`` bool, False for
    rows whose fold's complement held fewer than two classes or no more rows than classes (their
    ``probs`` rows are 0). ``on_fold(1)``, when given, is called after each fold (progress). ``fit_rows``
    ``(N,)`` bool, optional: only these rows fit the models (every row is still predicted by the model of
    its fold and counts in the temperature), the folds stay those of all rows.
    """
    Z = np.asarray(Z, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    log_probs = np.full((Z.shape[0], n_classes), -np.inf)
    ok = np.zeros(Z.shape[0], bool)
    fold = fold_ids(codes, folds)
    fit = np.ones(Z.shape[0], bool) if fit_rows is None else np.asarray(fit_rows, bool)
    # the folds' Grams serve GramPCA, which needs at least as many rows as columns
    n_fit = int(fit.sum())
    wide_enough = Z.shape[1] > max_dim and n_fit * (folds - 1) >= Z.shape[1] * folds
    if not wide_enough:
        grams = None
    else:  # all rows: no copy
        grams = _fold_grams(Z, fold, folds) if fit_rows is None else _fold_grams(Z[fit], fold[fit], folds)
    for f in range(folds):
        test = fold == f
        if not test.any():
            continue
        rest = ~test & fit
        model = ShrinkageLDA(n_classes, max_dim).fit(Z[rest], codes[rest], None if grams is None else grams[f])
        if model.fitted:
            log_probs[test] = model.predict_log_proba(Z[test])
            ok[test] = True
        if on_fold is not None:  # progress
            on_fold(1)
    t = fit_temperature(log_probs[ok], codes[ok]) if calibrate and ok.any() else 1.0
    probs = np.zeros((Z.shape[0], n_classes))
    probs[ok] = tempered(log_probs[ok], t)
    return probs, ok, t


def refit_average(Z, codes, n_classes, leave_out, probs, ok, *, folds=LDA_FOLDS, on_fold=None):
    """``(probs, ok)`` of :func:`lda_probabilities` averaged with those of a second run whose models are fitted
    without the ``leave_out`` rows (same folds); rows where only one run fitted keep that one's. Nothing left
    out: returned as they are (``on_fold(folds)`` once, so progress still counts the second run's folds)."""
    if not np.any(leave_out):
        if on_fold is not None:
            on_fold(folds)
        return probs, ok
    again, ok2, _ = lda_probabilities(Z, codes, n_classes, folds=folds, fit_rows=~np.asarray(leave_out, bool),
                                      on_fold=on_fold)
    both = ok & ok2
    mean = np.where(both[:, None], (probs + again) / 2, np.where(ok2[:, None], again, probs))
    return mean, ok | ok2
