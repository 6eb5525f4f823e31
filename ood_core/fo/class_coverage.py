"""Classes of the scored items that the trusted reference lacks: per-class detectors compare their items with
other classes' references, so they score as OOD; runs report them and the App warns."""

from collections import Counter

#: classes named in ``uncovered_classes`` (the largest first; ``count`` covers all of them)
UNCOVERED_CLASSES_SHOWN = 10


def uncovered_classes(labels, labels_ref):
    """``{"uncovered_classes": {...}}`` when labelled scored items carry classes the labelled reference lacks
    (per-class search: their items are compared with other classes' references, so they score as OOD); ``count``
    classes, ``num_items`` items and the ``largest`` few ``{class: items}``. Empty dict otherwise."""
    if labels is None or labels_ref is None:
        return {}
    return uncovered_class_counts(Counter(str(c) for c in labels if c is not None), labels_ref)


def uncovered_class_counts(counts, reference_classes):
    """:func:`uncovered_classes` from ``{class: scored items}`` and the reference's classes (None ignored)."""
    covered = {str(c) for c in reference_classes if c is not None}
    missing = {str(c): n for c, n in counts.items() if c is not None and str(c) not in covered and n}
    if not covered or not missing:
        return {}
    largest = sorted(missing, key=lambda c: (-missing[c], c))[:UNCOVERED_CLASSES_SHOWN]
    return {"uncovered_classes": {"count": len(missing), "num_items": sum(missing.values()),
                                  "largest": {c: missing[c] for c in largest}}}


def uncovered_classes_sentence(info, label_field, shown=5,
                               fix="add a few known-good items of each to the reference"):
    """The warning for :func:`uncovered_classes`' ``info``, in one sentence for people (``fix``: what to do).

    Plain text (it goes into the HTML report, the App's result views and forms, and the log): a right-to-left
    class name is isolated with U+2068 / U+2069 (:func:`ood_core.report.isolate_text`; the report shows them as
    ``<bdi>``), else it took the count after it along and ``'<name>' (2), 'b' (1)`` read ``'(2) '<name>, 'b' (1)``:
    the count beside the class before it."""
    from ..report import isolate_text

    names = ", ".join(f"{isolate_text(repr(c))} ({n:,})" for c, n in list(info["largest"].items())[:shown])
    more = f" and {info['count'] - shown} more" if info["count"] > shown else ""
    return (f"{info['count']} class(es) of {isolate_text(repr(label_field))} among the scored items have no "
            "reference (trusted) item: "
            f"{names}{more}. Their {info['num_items']:,} items are compared with the other classes' references, so "
            f"they score as out-of-distribution; if they belong, {fix}")
