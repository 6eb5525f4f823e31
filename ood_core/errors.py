"""Exception types raised by fiftyone-ood.

Every message names the input, the problem and the fix, e.g.
``"reference embeddings have dimension 512 but the scored embeddings have
dimension 1280: compute both with the same backbone and levels"``.
"""


class OODError(Exception):
    """Base class of all fiftyone-ood errors."""


class OODInputError(OODError, ValueError):
    """An argument, array, field or view is not usable as given."""


class NotFittedError(OODError, RuntimeError):
    """A detector or reducer was used before ``fit``."""


class WeightsNotFoundError(OODError, RuntimeError):
    """No source of pretrained weights worked; the message lists how to supply them."""


class UnsafeCheckpointError(OODError, ValueError):
    """A checkpoint file could not be loaded safely (it needs pickle execution)."""


class ResourceNotFoundError(OODError, RuntimeError):
    """A data resource (WordNet, a word list, a dataset file) is missing."""


class BackendError(OODError, RuntimeError):
    """An external service (e.g. a vector database behind a similarity index) failed."""
