"""Exception types raised by fiftyone-ood.

Every message names the input, the problem and the fix, e.g.
``"reference embeddings have dimension 512 but the scored embeddings have
dimension 1280: compute both with the same backbone and levels"``.
"""


class OODError(Exception):
    """Base class of all fiftyone-ood errors."""


class OODInputError(OODError, ValueError):
    """An argument, array, field or view is not usable as given."""


class SettingsConflictError(OODInputError):
    """An existing run was computed with other settings than a call that would add to it asked for.

    ``problem`` says what differs; the message adds what the call refuses and its fix. A caller that chose the
    run's key itself (the audit) names its own fix with ``problem``."""

    def __init__(self, message, problem=None):
        super().__init__(message)
        self.problem = problem or message

    def __reduce__(self):
        return type(self), (str(self), self.problem)


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
