"""Out-of-distribution and wrong-label detectors on embedding arrays, and their registry.

Score convention, for every detector here: **a higher score means more
out-of-distribution** (or, for ``task="label_issues"``, a label more likely
wrong). Inputs are ``(N, D)`` arrays, scores ``(N,)`` float64.

One module per detector; each class declares what the rest of the product
needs to know about it, and this registry is the only list of detectors:

- ``method``: the name given to :func:`make_detector` and stored in runs;
- ``task``: ``"ood"`` or ``"label_issues"`` (decides the run kind);
- ``label`` / ``summary``: readable name and one-line help for the App forms;
- hyperparameters: keyword-only ``__init__`` arguments, whose defaults are the
  defaults everywhere (:meth:`Detector.default_params`);
- ``requires_labels`` and :meth:`Detector.uses_neighbors`.

Adding a detector = one module with one :class:`Detector` subclass (it
registers itself) + its tests.
"""

import importlib
import pkgutil

from ..errors import OODInputError
from .base import REGISTRY, TASKS, Detector

__all__ = [
    "Detector",
    "TASKS",
    "detector_class",
    "detector_from_params",
    "detector_kwargs",
    "detector_names",
    "make_detector",
    "requires_labels",
]

_loaded = False


def _load_all():
    """Import every detector module of this package once (each registers its classes)."""
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            if info.name != "base":
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True
    return REGISTRY


def detector_names(task=None):
    """Registered detector names, optionally only those of one ``task`` (``"ood"`` / ``"label_issues"``)."""
    if task is not None and task not in TASKS:
        raise OODInputError(f"task={task!r} is not valid; use one of {TASKS}")
    return tuple(name for name, cls in sorted(_load_all().items()) if task is None or cls.task == task)


def detector_class(name):
    """The detector class registered under ``name``."""
    registry = _load_all()
    if name not in registry:
        raise OODInputError(f"unknown detector {name!r}; valid names are: {', '.join(detector_names())}.")
    return registry[name]


def make_detector(name, **kwargs):
    """Return an unfitted detector by name; ``kwargs`` are its keyword-only hyperparameters.

    Unknown hyperparameters raise :class:`~ood_core.errors.OODInputError`
    naming the valid ones.
    """
    cls = detector_class(name)
    unknown = sorted(set(kwargs) - set(cls._param_names))
    if unknown:
        raise OODInputError(
            f"unknown parameter(s) {unknown} for detector {name!r}; valid parameters are: "
            f"{', '.join(cls._param_names)}."
        )
    return cls(**kwargs)


def detector_kwargs(name, **candidates):
    """The subset of ``candidates`` that detector ``name`` accepts, ``None`` values dropped.

    Lets callers pass every option they have (``k``, ``backend``, ...) and get
    only those that apply, so no caller keeps its own list of which detector
    takes which parameter.
    """
    accepted = detector_class(name)._param_names
    return {key: value for key, value in candidates.items() if key in accepted and value is not None}


def detector_from_params(params):
    """Rebuild an unfitted detector from :meth:`Detector.get_params` output."""
    params = dict(params)
    if "method" not in params:
        raise OODInputError('detector params have no "method" key; pass the dict returned by get_params().')
    return make_detector(params.pop("method"), **params)


def requires_labels(name, **kwargs):
    """Whether detector ``name`` with hyperparameters ``kwargs`` needs class labels."""
    return make_detector(name, **kwargs).requires_labels


def __getattr__(name):
    # Detector classes by their class name (ood_core.detectors.KNNDetector), loaded on demand.
    for cls in _load_all().values():
        if cls.__name__ == name:
            return cls
    if name == "DETECTORS":
        return detector_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
