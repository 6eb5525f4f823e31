"""Answers that the App's forms compute from a dataset's samples, kept until the dataset changes.

The App resolves a form again on every keystroke, and every count, ``distinct`` or ``exists`` over the samples
reads every sample document: with an embeddings field in each document that is 0.1-0.4 s per scan at 200,000
samples, and a score form made 9-17 of them per keystroke (1.7-2.4 s). :func:`memo` keeps such an answer
under a key made of the question, the view and the dataset's :func:`data_version`, so the next keystroke
reuses it and any change to the samples, the schema, the runs or the saved views asks again.

Only the App uses this (the forms, and the review panel's score cache through :func:`data_version`): a run
always checks the database itself, so an answer that went stale some way this key does not see (a write to
MongoDB that bypasses FiftyOne) can at most leave a form's hint or the panel's histogram behind, never let a
run do something it should refuse.
"""

import json
import threading
from collections import OrderedDict

class Store:
    """Answers kept per process (the App server's), the least recently used dropped beyond ``max_entries``."""

    def __init__(self, max_entries):
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._answers = OrderedDict()

    def get(self, key, compute):
        with self._lock:
            if key in self._answers:
                self._answers.move_to_end(key)
                return self._answers[key]
        answer = compute()
        with self._lock:
            self._answers[key] = answer
            while len(self._answers) > self.max_entries:
                self._answers.popitem(last=False)
        return answer

    def clear(self):
        with self._lock:
            self._answers.clear()


#: the forms' counts and checks (small answers)
ANSWERS = Store(256)
#: the review panel's score columns (up to a few MB each at 200,000 samples)
SCORE_READS = Store(16)


def data_version(samples):
    """What changes whenever FiftyOne changes the dataset: the newest sample edit (every sample write and tag
    sets ``last_modified_at``, and FiftyOne indexes it), the last deletion, the number of samples, and the
    dataset document's own ``last_modified_at`` (schema, runs, saved views). Three indexed lookups."""
    import fiftyone.core.odm as foo

    dataset = samples._dataset
    newest = dataset._sample_collection.find_one({}, sort=[("last_modified_at", -1)],
                                                 projection={"last_modified_at": 1})
    doc = foo.get_db_conn().datasets.find_one({"_id": dataset._doc.id},
                                              {"last_modified_at": 1, "last_deletion_at": 1}) or {}
    return (str(dataset._doc.id), (newest or {}).get("last_modified_at"), doc.get("last_modified_at"),
            doc.get("last_deletion_at"), dataset._sample_collection.estimated_document_count())


def view_key(samples):
    """The view's stages as text (a dataset: ``[]``) and its group slice. Each stage's ``_uuid`` is left out:
    FiftyOne gives every new stage object its own, so the same view built twice would never match."""
    stages = [{k: v for k, v in stage.items() if k != "_uuid"} for stage in samples.view()._serialize()]
    return json.dumps([stages, getattr(samples, "group_slice", None)], sort_keys=True, default=str)


def memo(samples, question, compute, *args, store=ANSWERS):
    """``compute(samples, *args)``, or the answer kept from the same ``question`` on the same view with the
    same ``args`` while the dataset has not changed. ``args`` must have a stable ``repr``. The key is made
    before computing: a write meanwhile only makes the next call compute again."""
    key = (question, view_key(samples), repr(args), data_version(samples))
    return store.get(key, lambda: compute(samples, *args))


def clear():
    """Forget every kept answer."""
    ANSWERS.clear()
    SCORE_READS.clear()


# ----------------------------------------------------------------------------- the questions the forms ask


def refusal(samples, check, *args, **kwargs):
    """The message with which ``check(samples, *args, **kwargs)`` refuses (``ValueError``), or None; kept. For
    the SDK's checks of a run's outputs, which look into the sample documents for values the schema does not
    declare (one scan per output path when there are none)."""
    def ask(view, args, kwargs):
        try:
            check(view, *args, **dict(kwargs))
        except ValueError as e:
            return str(e)
        return None

    question = f"refusal:{check.__module__}.{check.__qualname__}"
    return memo(samples, question, ask, args, tuple(sorted(kwargs.items())))


def tag_counts(samples):
    """``{tag: number of samples}`` of the dataset (one scan for both the tag list and the trusted default)."""
    return memo(samples._dataset, "tag_counts", lambda ds: dict(ds.count_sample_tags()))


def embedding_coverage(samples, embeddings_field, patches_field=None):
    """:func:`ood_core.fo.inventory.embedding_coverage`, kept."""
    from .inventory import embedding_coverage as compute

    return memo(samples, "embedding_coverage", compute, embeddings_field, patches_field)


def count_values(samples, path):
    """``samples.count_values(path)``, kept."""
    return memo(samples, "count_values", lambda s, p: dict(s.count_values(p)), path)


def distinct(samples, path):
    """``samples.distinct(path)``, kept."""
    return memo(samples, "distinct", lambda s, p: list(s.distinct(p)), path)
