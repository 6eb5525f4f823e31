"""Dimensionality reduction of embeddings before OOD scoring (PCA, UMAP, random).

Fit the reducer on the reference (trusted) set, then transform the scored set
with the same fitted reducer so both live in one space. All methods are seeded.
UMAP can help on huge flattened feature pyramids (Wulz & Krispel) but can also
hurt on compact pooled features: validate it per dataset, it is never a default.

scikit-learn and umap-learn are imported inside the methods that need them.
"""

import numpy as np

from .errors import NotFittedError, OODInputError
from .validation import as_embeddings, check_same_dim

__all__ = ["LINEAR_REDUCERS", "REDUCERS", "Reducer", "make_reducer"]

#: Reduction methods accepted by :class:`Reducer` / :func:`make_reducer`.
REDUCERS = ("pca", "umap", "random")

#: The linear ones: a state to store and restore (:meth:`Reducer.linear_state`), and the embeddings extractor's
#: ``project_method`` choices.
LINEAR_REDUCERS = ("pca", "random")

_FIT_NAME = "embeddings to fit the reducer on"
_TRANSFORM_NAME = "embeddings to transform"


class Reducer:
    """Seeded dimensionality reduction with a scikit-learn-like contract.

    Methods:

    - ``"pca"``: :class:`sklearn.decomposition.PCA` (``random_state=seed``);
      needs ``n_components <= min(N, D)`` of the fit set.
    - ``"umap"``: ``umap.UMAP(n_components, random_state=seed)`` from
      umap-learn (single-threaded when seeded, so results are reproducible).
      ``fit_transform`` returns UMAP's own embedding of the fit set, which is
      not identical to ``fit(X).transform(X)``.
    - ``"random"``: Gaussian random projection ``X @ R`` with
      ``R[i, j] ~ N(0, 1/n_components)`` drawn from
      ``numpy.random.default_rng(seed)``; approximately preserves distances
      (Johnson-Lindenstrauss). Needs ``n_components <= D``.

    Outputs are float32 ``(N, n_components)``.

    Args:
        method: one of :data:`REDUCERS`.
        n_components: output dimension (integer >= 1).
        seed: random seed (PCA solver, UMAP, projection matrix).
    """

    def __init__(self, *, method="pca", n_components, seed=0):
        if method not in REDUCERS:
            raise OODInputError(
                f"unknown reduction method {method!r}; valid methods are: "
                f"{', '.join(REDUCERS)} (or None for no reduction)."
            )
        if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) \
                or n_components < 1:
            raise OODInputError(
                f"n_components={n_components!r} is not valid; pass an integer >= 1."
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise OODInputError(f"seed={seed!r} is not valid; pass an integer >= 0.")
        self.method = method
        self.n_components = int(n_components)
        self.seed = int(seed)

    def __repr__(self):
        return (
            f"Reducer(method={self.method!r}, n_components={self.n_components}, "
            f"seed={self.seed})"
        )

    def get_params(self):
        """Return ``{"method", "n_components", "seed"}`` (JSON-serialisable)."""
        return {"method": self.method, "n_components": self.n_components, "seed": self.seed}

    @property
    def is_fitted(self):
        return getattr(self, "n_features_in_", None) is not None

    def check_size(self, X):
        """Refuse a fit on ``X`` (only its shape is read) that this reducer cannot make, naming the fix."""
        n, d = X.shape
        if self.method == "pca" and self.n_components > min(n, d):
            raise OODInputError(
                f"PCA with n_components={self.n_components} needs n_components <= "
                f"min(num_samples, dim) = min({n}, {d}) = {min(n, d)}; lower n_components "
                "or fit on more samples."
            )
        if self.method == "random" and self.n_components > d:
            raise OODInputError(
                f"random projection to n_components={self.n_components} dims would not "
                f"reduce {d}-dim embeddings; use n_components <= {d}."
            )
        if self.method == "umap" and self.n_components >= n - 1:
            raise OODInputError(
                f"UMAP with n_components={self.n_components} needs n_components < "
                f"num_samples - 1 = {n - 1} (fit set has {n} samples); lower n_components "
                "or fit on more samples."
            )

    def _make_umap(self, num_samples):
        try:
            import umap
        except ImportError as exc:
            raise OODInputError(
                'reduction method "umap" needs the umap-learn package: pip install umap-learn '
                f"(import failed: {exc})."
            ) from exc
        # UMAP's default of 15 neighbours fails on tiny fit sets.
        n_neighbors = min(15, num_samples - 1)
        return umap.UMAP(
            n_components=self.n_components,
            n_neighbors=n_neighbors,
            random_state=self.seed,
            n_jobs=1,  # a seeded UMAP is single-threaded anyway; say so to avoid a warning
        )

    def _fit(self, X):
        self.check_size(X)
        if self.method == "pca" and X.shape[0] == 1:
            raise OODInputError(
                f"the {_FIT_NAME} are 1 row: PCA has no direction of variance to keep (its component would "
                "be an arbitrary axis and the explained variance NaN); fit it on at least 2 different embeddings "
                "(the reference set, or the scored set when there is none), or pass no reduction "
                "(reduce=None / method=None)"
            )
        if self.method != "random" and X.shape[0] > 1 and not np.ptp(X, axis=0).any():
            raise OODInputError(
                f"the {X.shape[0]} {_FIT_NAME} are all identical, so {self.method.upper()} has nothing to keep "
                "(PCA would reduce every row to zero, UMAP would scatter them at random); identical embeddings "
                "usually come from blank or constant images: check the embeddings field, or pass no reduction "
                "(reduce=None / method=None)"
            )
        if self.method == "pca":
            from sklearn.decomposition import PCA

            self.model_ = PCA(n_components=self.n_components, random_state=self.seed).fit(X)
            # kept as a plain affine map so a fitted PCA can be stored and restored (linear_state)
            self.mean_ = self.model_.mean_.astype(np.float32)
            self.components_ = np.ascontiguousarray(self.model_.components_.T, dtype=np.float32)
            self.explained_variance_ratio_ = float(self.model_.explained_variance_ratio_.sum())
            return None
        if self.method == "random":
            rng = np.random.default_rng(self.seed)
            self.components_ = (
                rng.standard_normal((X.shape[1], self.n_components)) / np.sqrt(self.n_components)
            ).astype(np.float32)
            return None
        self.model_ = self._make_umap(X.shape[0])
        return self.model_.fit_transform(X)

    def fit(self, X):
        """Fit on ``X`` (``(N, D)``); returns ``self``."""
        X = as_embeddings(X, _FIT_NAME)
        self._fit(X)
        self.n_features_in_ = X.shape[1]
        return self

    def fit_transform(self, X):
        """Fit on ``X`` and return it reduced, float32 ``(N, n_components)``."""
        X = as_embeddings(X, _FIT_NAME)
        embedding = self._fit(X)
        self.n_features_in_ = X.shape[1]
        if embedding is None:
            return self._transform(X)
        return np.ascontiguousarray(embedding, dtype=np.float32)

    def transform(self, X):
        """Return ``X`` reduced with the fitted reducer, float32 ``(N, n_components)``."""
        if not self.is_fitted:
            raise NotFittedError(
                f"this {self!r} is not fitted yet; call fit(X_ref) or fit_transform(X_ref) "
                "before transform(X)."
            )
        X = as_embeddings(X, _TRANSFORM_NAME)
        check_same_dim(
            np.empty((0, self.n_features_in_), np.float32), X,
            "embeddings the reducer was fitted on", _TRANSFORM_NAME,
        )
        return self._transform(X)

    def _transform(self, X):
        if self.method == "random":
            out = X @ self.components_
        elif self.method == "pca":
            out = (X - self.mean_) @ self.components_  # = PCA.transform without whitening
        else:
            out = self.model_.transform(X)
        return np.ascontiguousarray(out, dtype=np.float32)

    def linear_state(self):
        """JSON-able parameters of a fitted PCA / random reducer, for :meth:`from_linear_state`."""
        if self.method not in LINEAR_REDUCERS or not self.is_fitted:
            raise OODInputError(f"linear_state() needs a fitted 'pca' or 'random' reducer, not {self!r}")
        state = {"method": self.method, "n_components": self.n_components, "seed": self.seed,
                 "n_features_in": int(self.n_features_in_), "components": self.components_.tolist()}
        if self.method == "pca":
            state["mean"] = self.mean_.tolist()
            ratio = getattr(self, "explained_variance_ratio_", None)  # a restored state may lack it
            if ratio is not None:
                state["explained_variance_ratio"] = float(ratio)
        return state

    @classmethod
    def from_linear_state(cls, state):
        """A fitted reducer from :meth:`linear_state` output (no refit); a malformed ``state`` is refused naming
        the entry at fault (a stored run record edited by hand or cut short)."""
        fix = "pass the dict that linear_state() of a fitted 'pca' or 'random' Reducer returned, or fit it again"
        if not isinstance(state, dict):
            raise OODInputError(f"Reducer.from_linear_state needs a dict, not a {type(state).__name__}; {fix}.")
        if state.get("method") not in LINEAR_REDUCERS:
            raise OODInputError(f"the reducer state's method is {state.get('method')!r}; only 'pca' and 'random' "
                                f"reducers have a linear state: {fix}.")
        keys = ("method", "n_components", "seed", "n_features_in", "components") + (
            ("mean",) if state["method"] == "pca" else ())
        missing = [k for k in keys if k not in state]
        if missing:
            raise OODInputError(f"the reducer state has no {', '.join(map(repr, missing))}; {fix}.")
        dim = state["n_features_in"]
        if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise OODInputError(f"the reducer state's n_features_in={dim!r} is not an integer >= 1; {fix}.")
        try:
            reducer = cls(method=state["method"], n_components=state["n_components"], seed=state["seed"])
        except OODInputError as exc:
            raise OODInputError(f"the reducer state is not valid: {exc} ({fix})") from None
        shapes = {"components": ((int(dim), reducer.n_components), "(n_features_in, n_components)"),
                  "mean": ((int(dim),), "(n_features_in,)")}
        for key in keys[4:]:
            try:
                value = np.asarray(state[key], dtype=np.float64)
            except (TypeError, ValueError):
                value = None
            shape, axes = shapes[key]
            if value is None or value.shape != shape or not np.isfinite(value).all():
                got = "not numbers" if value is None else (
                    f"shape {value.shape}" if value.shape != shape else "NaN or infinite values")
                raise OODInputError(f"the reducer state's {key!r} should be finite numbers of shape {shape} {axes}; "
                                    f"got {got}; {fix}.")
            setattr(reducer, f"{key}_", value.astype(np.float32))
        if reducer.method == "pca":
            reducer.model_ = None  # marks the reducer fitted; transform uses mean_/components_
            ratio = state.get("explained_variance_ratio")
            if isinstance(ratio, (int, float, np.number)) and not isinstance(ratio, (bool, np.bool_)) \
                    and np.isfinite(ratio):  # kept so linear_state() of the restored reducer gives it back
                reducer.explained_variance_ratio_ = float(ratio)
        reducer.n_features_in_ = int(dim)
        return reducer


def make_reducer(method, n_components=None, seed=0):
    """Return an unfitted :class:`Reducer`, or ``None`` when ``method`` is None/``"none"``."""
    if method is None or (isinstance(method, str) and method.lower() == "none"):
        return None
    if isinstance(method, str):
        method = method.lower()
    if n_components is None:
        raise OODInputError(
            f"reduction method {method!r} needs n_components (the output dimension); pass "
            "an integer >= 1, or method=None for no reduction."
        )
    return Reducer(method=method, n_components=n_components, seed=seed)
