"""Out-of-distribution and wrong-label detectors on embedding arrays.

Score convention, for every detector here: **a higher score means more
out-of-distribution** (more suspicious). Inputs are ``(N, D)`` arrays (stored as
float32), scores are ``(N,)`` float64 arrays.

All detectors share one small, scikit-learn-like contract (see :class:`Detector`)::

    det = make_detector("knn", k=50)
    det.fit(X_ref)                  # returns det; fitted attributes end with "_"
    det.score_samples(X)            # score new data against the fitted set
    det.fit_score(X)                # fit on X and score it, self-matches excluded (no trusted reference)
    det.fit_reference_scores(X_ref) # fit on a trusted X_ref, its leave-one-out scores (for calibration)
    det.get_params()                # JSON-serialisable, includes "method"

Neighbour search (k-NN, LOF, label agreement) goes through
:class:`~ood_core.neighbors.NeighborIndex`: ``backend="auto"`` uses faiss when it
is installed, else scikit-learn; with the exact ``index="flat"`` (default) both
backends give the same scores. scikit-learn, scipy and faiss are imported inside
the methods that need them, so importing this module stays cheap.
"""

import inspect
import math

import numpy as np

from ..errors import NotFittedError, OODInputError
from ..neighbors import check_backend, check_index
from ..validation import as_embeddings, check_flag, check_number, check_positive_int, check_same_dim, is_int

#: The two tasks a detector serves; the FiftyOne layer records a run kind per task.
TASKS = ("ood", "label_issues")

REFERENCE_NAME = "reference embeddings"
SCORED_NAME = "scored embeddings"

#: method name -> detector class; filled by :meth:`Detector.__init_subclass__`.
REGISTRY = {}


# --------------------------------------------------------------------------- helpers


def is_missing_label(label):
    """Whether ``label`` is missing: None, or a float NaN (pandas' missing value)."""
    return label is None or (isinstance(label, (float, np.floating)) and label != label)


def check_label_values(labels, name):
    """Refuse labels that look alike but are not the same class for every detector: different values with the
    same text (``1`` and ``"1"``: one class where labels are compared as text, two where they are compared as
    values) or equal values with different text (``1``, ``1.0`` and ``True``)."""
    try:
        distinct = dict.fromkeys(zip(map(type, labels), labels))
    except TypeError as exc:
        raise OODInputError(f"{name} contains unhashable labels ({exc}); pass one str/int label per sample.") from exc
    by_text, by_value = {}, {}
    for _, label in distinct:
        text = str(label)
        other = by_text.setdefault(text, label)
        if other == label:
            other = by_value.setdefault(label, label)
        if other != label or str(other) != text:
            raise OODInputError(
                f"{name} mixes labels that look alike: {other!r} ({type(other).__name__}) and {label!r} "
                f"({type(label).__name__}); detectors would read them as one class or as two. Convert every "
                "label to one type first, e.g. [str(label) for label in y]."
            )


def label_list(y, num_rows, name):
    """``y`` as a checked list of one label per row, ``None`` where a label is missing (None or NaN)."""
    if isinstance(y, (str, bytes)):
        raise OODInputError(
            f"{name} must be a sequence with one class label per sample, not a single "
            "string; pass e.g. a list of label strings."
        )
    labels = np.asarray(y, dtype=object)
    if labels.ndim != 1:
        raise OODInputError(
            f"{name} must be 1-D with one class label per sample; got shape "
            f"{labels.shape}. Pass a flat list of labels (not one-hot vectors)."
        )
    labels = [None if is_missing_label(label) else label for label in labels.tolist()]
    if len(labels) != num_rows:
        raise OODInputError(
            f"{name} has {len(labels)} labels but the embeddings have {num_rows} rows; "
            "pass exactly one label per embedding row (None where there is none), in the same order."
        )
    check_label_values([label for label in labels if label is not None], name)
    return labels


def encode_labels(y, num_rows, name="y"):
    """Return ``(classes, codes)`` for the labels ``y`` of ``num_rows`` samples.

    ``classes`` is a list of the distinct labels (sorted when the labels are
    mutually comparable, else in order of first appearance) and ``codes`` an
    int64 array with ``classes[codes[i]] == y[i]``. Labels may be any hashable
    values (str, int, ...); ``None`` or NaN means "missing" and is rejected, and
    so are labels that look alike but differ (``1`` and ``"1"``).
    """
    labels = label_list(y, num_rows, name)
    missing = [i for i, label in enumerate(labels) if label is None]
    if missing:
        raise OODInputError(
            f"{name} has {len(missing)} missing (None) label(s) (first rows: {missing[:5]}; NaN counts as missing "
            "too); "
            "drop unlabeled samples or give them a label before scoring."
        )
    classes = list(dict.fromkeys(labels))
    try:
        classes = sorted(classes)
    except TypeError:  # mixed, non-comparable label types: keep first-appearance order
        pass
    index = {label: i for i, label in enumerate(classes)}
    codes = np.fromiter((index[label] for label in labels), dtype=np.int64, count=len(labels))
    return classes, codes


def reference_codes(labels, ref_classes, name):
    """Codes into ``ref_classes`` of encoded scored ``labels`` (-1: a class the reference lacks); refuses a scored
    label that differs from a reference class only by its type (``"0"`` scored against a reference class ``0``)."""
    classes, codes = labels
    ref_index = {label: i for i, label in enumerate(ref_classes)}
    ref_text = {str(label): label for label in ref_classes}
    to_ref = np.array([ref_index.get(label, -1) for label in classes], dtype=np.int64)
    for label, code in zip(classes, to_ref):
        if code < 0 and str(label) in ref_text:
            ref = ref_text[str(label)]
            raise OODInputError(
                f"{name} has the label {label!r} ({type(label).__name__}) but the reference's class is {ref!r} "
                f"({type(ref).__name__}); pass labels of the same type as at fit, e.g. all str."
            )
    kinds, ref_kinds = {_kind(label) for label in classes}, {_kind(label) for label in ref_classes}
    if len(classes) and (to_ref < 0).all() and not kinds & ref_kinds:
        raise OODInputError(
            f"{name} has labels of type {', '.join(sorted(kinds))} (e.g. {classes[0]!r}) and the reference's classes "
            f"are {', '.join(sorted(ref_kinds))} (e.g. {ref_classes[0]!r}): no scored label is a reference class, so "
            "every sample would score as an unseen class; pass the labels the reference was fitted with (the same "
            "names and type)."
        )
    return to_ref[codes]


def _kind(label):
    """A label's kind for comparing scored with reference labels: numbers of any width alike."""
    import numbers

    if isinstance(label, (bool, np.bool_)):
        return "bool"
    if isinstance(label, numbers.Number):
        return "number"
    return "str" if isinstance(label, str) else type(label).__name__


def l2_normalize(X, name, part=None):
    """Return the rows of ``X`` scaled to unit L2 norm (float32).

    ``part``: when ``X`` holds only some columns of the embeddings (one pyramid level), the words naming them
    (e.g. ``"level 0 (columns 0:64)"``), so that an error does not call a row all-zero that is zero only there."""
    norms = np.linalg.norm(X.astype(np.float64), axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        where = "" if part is None else f" in {part}"
        raise OODInputError(
            f"{name} has {zero.size} all-zero row(s){where} (first rows: {zero[:5].tolist()}) that "
            "cannot be L2-normalised (an all-zero embedding usually comes from a blank or failed image); drop "
            "those samples from the view, or, with the numpy detectors that take it (knn, label_agreement, "
            "level_fusion, weighted_label_vote), pass normalize=False."
        )
    return np.ascontiguousarray(X / norms[:, None], dtype=np.float32)


def level_part(level_slice, level, num_levels):
    """The words :func:`l2_normalize` uses for the columns of one pyramid level (None when it is the only one)."""
    if num_levels < 2:
        return None
    return f"level {level} (columns {level_slice.start}:{level_slice.stop})"


def check_search(backend, index):
    """Validate the neighbour-search keywords shared by the neighbour-based detectors."""
    return check_backend(backend), check_index(index, backend)


check_bool = check_flag  # the detectors' name for the shared True / False check


def adaptive_k(n_per_class, *, fraction=0.2, k_max=50):
    """``max(1, min(k_max, round(fraction * n_per_class)))``.

    The k-NN k for a reference with ``n_per_class`` samples in its smallest
    class (or ``n_ref`` when there are no labels): k=1 for a handful of
    images per class, growing with the reference so that a few polluting
    outliers cannot become every sample's k-th neighbour, capped at ``k_max``.

    Default ``fraction=0.2`` (``KNNDetector``): over the first 64 OOD conditions
    of benchmarks/robustness.py, k-NN on the deepest level with
    ``adaptive_k(smallest reference class)`` never lost more than 0.02 AUROC to
    the fixed k=50 and raised mean / worst AUROC from 0.762 / 0.355 to 0.832 /
    0.670; ``fraction=0.1`` had the higher mean (0.839) but a worse worst case
    (0.598, 10% reference pollution). The default OOD detector is now
    ``pyramid_knn``, whose per-class search uses 5% of each class.
    """
    n = check_positive_int(n_per_class, "n_per_class")
    k_max = check_positive_int(k_max, "k_max")
    fraction = check_fraction(fraction, "fraction")
    return max(1, min(k_max, int(math.floor(fraction * n + 0.5))))


def loo_label_accuracy(neighbors, labels, nearest=None):
    """Leave-one-out 1-NN label accuracy of ``labels`` on each fitted index of ``neighbors`` (one per feature block).

    How well a block of features tells the labelled classes apart: the share of samples whose nearest other
    sample carries the same label. ``labels``: one per row the indexes were fitted on. ``nearest``: optional,
    per block the ``(N,)`` index of each row's nearest other row when a caller already searched it (the first
    column of ``kneighbors(k=...)`` of the fitted set); the indexes are then not searched again.
    """
    labels = np.asarray(labels, dtype=object).astype(str)
    if nearest is None:
        nearest = [nn.kneighbors(k=1)[1][:, 0] for nn in neighbors]
    return [float(np.mean(labels[first] == labels)) for first in nearest]


def near_best(accuracy, margin):
    """Boolean mask of the entries of ``accuracy`` at most ``margin`` below the best one."""
    accuracy = np.asarray(accuracy, dtype=float)
    return accuracy >= accuracy.max() - margin


def level_slices(level_dims):
    """``[slice(start, stop)]`` column blocks of consecutive levels of the given widths."""
    if isinstance(level_dims, (str, bytes)) or not hasattr(level_dims, "__iter__"):
        raise OODInputError(
            f"level_dims={level_dims!r} is not valid; pass the column count of each pyramid "
            "level in order, e.g. [64, 96, 160, 448, 1280] (channels x grid**2)."
        )
    dims = [check_positive_int(d, "level_dims entry") for d in level_dims]
    if not dims:
        raise OODInputError("level_dims is empty; pass the column count of each pyramid level.")
    stops = np.cumsum(dims).tolist()
    return [slice(stop - d, stop) for d, stop in zip(dims, stops)]


def check_levels(levels, num_levels):
    """Sorted distinct level indices in ``0..num_levels - 1`` (the ``levels`` of a multi-level detector), else
    OODInputError (``int()`` would truncate ``0.5`` and parse ``"1"``)."""
    valid = not isinstance(levels, (str, bytes)) and hasattr(levels, "__iter__")
    if valid:
        levels = list(levels)
        valid = bool(levels) and all(is_int(v) and 0 <= v < num_levels for v in levels)
    if not valid:
        raise OODInputError(f"levels={levels!r} is not valid; pass a list of level indices 0..{num_levels - 1} "
                            "(positions in level_dims), None for all levels or 'auto'.")
    return sorted({int(v) for v in levels})


def check_fraction(value, name):
    """``float(value)`` for a number in (0, 1] (a ``k_fraction``), else OODInputError."""
    return check_number(value, name, low=0, high=1, low_open=True)


def check_k(k):
    if k == "auto":
        return "auto"
    if isinstance(k, (list, tuple)):
        if not k:
            raise OODInputError("k is an empty list; pass an integer >= 1, a list of them or 'auto'.")
        return sorted({check_positive_int(v, "k entry") for v in k})
    return check_positive_int(k, "k")


def check_choice(value, options, name):
    if value not in options:
        raise OODInputError(f"{name}={value!r} is not valid; use one of: {', '.join(map(repr, options))}.")
    return value


# --------------------------------------------------------------------------- base class


class Detector:
    """Base class of the embedding detectors (scikit-learn-like contract).

    - Hyperparameters are keyword-only ``__init__`` arguments, stored unchanged
      as attributes of the same name; :meth:`get_params` returns them plus
      ``"method"`` (the :func:`make_detector` name) as a JSON-serialisable dict.
    - :meth:`fit` learns from reference embeddings and returns ``self``;
      everything learned is stored in attributes ending with ``_``.
    - :meth:`score_samples` scores new embeddings against the fitted reference.
    - :meth:`fit_score` fits on ``X`` and scores ``X`` itself, each point's own
      match excluded where the method compares a point with the reference set
      (unsupervised use: ``X`` is the set to audit, no trusted reference).
    - :meth:`fit_reference_scores` fits on a *trusted* reference and returns
      its leave-one-out scores on the scale of later :meth:`score_samples`
      calls (what calibration and trusted samples inside a scored view use);
      the same as :meth:`fit_score` unless the detector reads an untrusted set
      differently.
    - Scores are ``(N,)`` float64, **higher = more OOD**.
    - Using an unfitted detector raises :class:`~ood_core.errors.NotFittedError`;
      bad input raises :class:`~ood_core.errors.OODInputError`.

    Subclasses set ``method`` and ``_param_names`` and implement ``_fit``,
    ``_score`` and ``_fit_score``.
    """

    #: registry name (``make_detector(method)``); None for abstract classes
    method = None
    #: "ood" (scores unlike the reference) or "label_issues" (scores a given label)
    task = "ood"
    #: readable name and one-line help, shown in the App forms
    label = None
    summary = ""
    #: labels may be given but are not needed (k-NN: they only size k); the FiftyOne layer then passes
    #: a label field's values when the user names one, None for unlabelled items
    accepts_optional_labels = False
    _param_names = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("method"):
            if cls.task not in TASKS:
                raise TypeError(f"{cls.__name__}.task must be one of {TASKS}")
            REGISTRY[cls.method] = cls

    @classmethod
    def default_params(cls):
        """Hyperparameters and their defaults, read from ``__init__`` (the one source of truth)."""
        sig = inspect.signature(cls.__init__)
        return {n: p.default for n, p in sig.parameters.items()
                if p.kind is p.KEYWORD_ONLY and n in cls._param_names}

    def fitted_params(self):
        """What fitting decided from the data (e.g. the k of ``k="auto"``), JSON-serialisable; {} by default."""
        return {}

    @classmethod
    def uses_neighbors(cls):
        """Whether the detector searches neighbours (accepts ``backend`` / ``index``)."""
        return "backend" in cls._param_names

    # Subclasses that need labels override this property.
    @property
    def requires_labels(self):
        """Whether ``fit``/``score_samples``/``fit_score`` need class labels ``y``."""
        return False

    @property
    def uses_reference_classes(self):
        """Whether the reference's classes shape the scores (a search or statistics per class): then a scored
        item of a class the reference lacks looks out-of-distribution."""
        return self.requires_labels

    def get_params(self):
        """Return the hyperparameters and ``"method"`` as a JSON-serialisable dict."""
        params = {"method": self.method}
        for name in self._param_names:
            value = getattr(self, name)
            if isinstance(value, np.generic):
                value = value.item()
            params[name] = value
        return params

    def __repr__(self):
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._param_names)
        return f"{type(self).__name__}({args})"

    @property
    def is_fitted(self):
        """Whether :meth:`fit` (or :meth:`fit_score`) has been called."""
        return getattr(self, "n_samples_fit_", None) is not None

    def _check_fitted(self):
        if not self.is_fitted:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(X_ref) or "
                "fit_score(X_ref) before score_samples(X)."
            )

    #: Whether score_samples uses the labels of the scored samples (when
    #: requires_labels); Mahalanobis needs labels only to fit its class means.
    _score_uses_labels = True

    #: ``f(n)`` told of each step of a long :meth:`score_samples` or :meth:`fit_score` (not a parameter: set by
    #: the caller that shows progress); :meth:`progress_units` says how many steps a call reports at most.
    progress_callback = None

    def progress_units(self):
        """Steps :meth:`score_samples` / :meth:`fit_score` report to ``progress_callback`` at most (0: none)."""
        return 0

    def _step_done(self, n=1):
        if self.progress_callback is not None:
            self.progress_callback(n)

    def _labels(self, y, num_rows, name):
        """Encode ``y`` as ``(classes, codes)`` when this detector needs labels, else None."""
        if not self.requires_labels:
            return None
        if y is None:
            raise OODInputError(
                f"{self!r} needs class labels: pass {name} with one label per embedding "
                f"row{self._without_labels_hint()}."
            )
        return encode_labels(y, num_rows, name)

    def _without_labels_hint(self):
        """Suffix for the missing-labels message naming a label-free alternative."""
        return ""

    def fit(self, X, y=None):
        """Fit on the reference embeddings ``X`` (``(N, D)``); returns ``self``."""
        X = as_embeddings(X, REFERENCE_NAME)
        self._fit(X, self._labels(y, X.shape[0], "y (reference labels)"))
        self.n_samples_fit_ = X.shape[0]
        self.n_features_in_ = X.shape[1]
        return self

    def score_samples(self, X, y=None):
        """Return ``(N,)`` float64 scores of ``X`` against the fitted reference.

        Higher = more OOD. No self-exclusion: a point that is also in the
        reference set matches itself.
        """
        self._check_fitted()
        X = as_embeddings(X, SCORED_NAME)
        # Only the fitted dimension is kept, so compare against an empty stand-in.
        check_same_dim(np.empty((0, self.n_features_in_), np.float32), X, REFERENCE_NAME, SCORED_NAME)
        labels = (
            self._labels(y, X.shape[0], "y (labels of the scored samples)")
            if self._score_uses_labels
            else None
        )
        scores = self._score(X, labels)
        return np.asarray(scores, dtype=np.float64)

    def fit_score(self, X, y=None):
        """Fit on ``X`` and return its ``(N,)`` float64 scores, self-matches excluded.

        Unsupervised use: ``X`` is the set to audit (no trusted reference). For the
        leave-one-out scores of a trusted reference use :meth:`fit_reference_scores`.
        """
        return self._fit_then(self._fit_score, X, y)

    def fit_reference_scores(self, X, y=None):
        """Fit on a trusted reference ``X`` and return its ``(N,)`` leave-one-out scores (self-matches excluded),
        on the scale of later :meth:`score_samples` calls: calibration and trusted samples in a scored view
        use them. The same as :meth:`fit_score` unless a detector reads an untrusted set differently."""
        return self._fit_then(self._fit_reference_score, X, y)

    def _fit_then(self, fit_and_score, X, y):
        X = as_embeddings(X, REFERENCE_NAME)
        labels = self._labels(y, X.shape[0], "y (reference labels)")
        scores = fit_and_score(X, labels)
        self.n_samples_fit_ = X.shape[0]
        self.n_features_in_ = X.shape[1]
        return np.asarray(scores, dtype=np.float64)

    def _fit_reference_score(self, X, labels):
        return self._fit_score(X, labels)

    # Default: scoring the fitted set is just fit + score (no self-matching).
    def _fit_score(self, X, labels):
        self._fit(X, labels)
        return self._score(X, labels)

    def _fit(self, X, labels):  # pragma: no cover - abstract
        raise NotImplementedError

    def _score(self, X, labels):  # pragma: no cover - abstract
        raise NotImplementedError
