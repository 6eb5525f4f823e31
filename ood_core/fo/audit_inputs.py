"""The audit's inputs, resolved and checked before it writes anything: its numeric options, and which label
field, trusted tag and embeddings it works from (``"auto"``: what the dataset holds, :mod:`.inventory`)."""

from . import inventory
from ..errors import OODInputError
from .audit_report import TAGS
from .scores import MIN_FIT_ITEMS
from .view_descriptions import resolve_view


def check_options(*, ood_pass_rate, ood_fraction, label_issue_fraction, duplicate_threshold, num_worst, **flags):
    """Refuse, before anything is written, an audit option that is not a number of its range or a bool: a typo
    found only at the flags or report step left the earlier steps' runs and tags as an interrupted audit."""
    import math
    import numbers

    import numpy as np

    from ..validation import check_flag, is_int

    def number(name, value, low, high, what, example, high_open=False):
        ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value) \
            and low < value and (value < high if high_open else value <= high)
        if not ok:
            raise OODInputError(f"{name}={value!r} is not valid; pass {what}, e.g. {name}={example}")

    number("ood_pass_rate", ood_pass_rate, 0, 1, "the share of trusted samples that pass, a number in (0, 1]", 0.95)
    for name, value in (("ood_fraction", ood_fraction), ("label_issue_fraction", label_issue_fraction)):
        number(name, value, 0, 1, "the top fraction of the scores to flag, a number in (0, 1]", 0.05)
    number("duplicate_threshold", duplicate_threshold, 0, 1, "a cosine distance in (0, 1) under which two samples "
           "are near duplicates", 0.02, high_open=True)
    if not is_int(num_worst) or num_worst < 0:
        raise OODInputError(f"num_worst={num_worst!r} is not valid; pass the number of thumbnails per gallery of "
                            "the report, a whole number >= 0, e.g. num_worst=24")
    for name, value in flags.items():
        check_flag(value, name)


def check_reference_tag(reference):
    """Refuse a trusted tag that is one of the tags the audit gives (its flags step would refuse it, after
    scoring)."""
    if isinstance(reference, str) and reference in TAGS.values():
        raise OODInputError(f"audit reference={reference!r} is a tag the audit gives to flagged samples: they would "
                            "count as trusted from then on. Tag your trusted samples with another tag, such as "
                            "'trusted', and pass it")


def plan_inputs(samples, label_field, reference, embeddings_field):
    """Resolve the ``"auto"`` inputs; validate the given ones."""
    auto_labels = label_field == "auto"
    if auto_labels:
        label_field = inventory.default_label_field(samples)  # too few labels in the view: none (below)
    elif label_field is not None and _label_type(samples, label_field) != "Classification":
        kind, fields = _label_type(samples, label_field), inventory.labelled_classification_fields(samples)
        choices = f"pass {' or '.join(repr(f) for f in fields)}" if fields else "pass a Classification field"
        objects = "; audit object labels with compute_label_issues(..., patches) instead" if kind == "Detections" \
            else ""
        raise OODInputError(f"audit label_field {label_field!r} must be a Classification field (image labels); it is "
                            f"a {kind} field: {choices}, or label_field=None to audit without wrong-label scores"
                            f"{objects}")
    elif label_field is not None and not samples.count(f"{label_field}.label"):
        raise OODInputError(f"audit label_field {label_field!r} holds no label in the view; pass a field with "
                            "labels, or label_field=None to audit without wrong-label scores")
    if reference == "auto":
        reference = inventory.default_reference_tag(samples)
    check_reference_tag(reference)
    if embeddings_field == "auto":
        sample_level = [f for f, _ in inventory.embedding_choices(samples)
                        if inventory.embeddings_patches_field(samples, f) is None]
        embeddings_field = sample_level[0] if sample_level else None
    elif inventory.embeddings_patches_field(samples, embeddings_field) is not None:
        objects = inventory.embeddings_patches_field(samples, embeddings_field)
        raise OODInputError(
            f"embeddings {embeddings_field!r} are object embeddings (one per object of {objects!r}), but the audit "
            "scores images and needs image embeddings (one per sample): pass an image embeddings field, or "
            "embeddings_field='auto' to use or compute them; to score the objects, call "
            f"compute_ood_scores(samples, {embeddings_field!r}, ..., patches_field={objects!r})")
    elif samples._dataset.get_field(embeddings_field) is None:
        raise OODInputError(f"embeddings field {embeddings_field!r} does not exist on dataset "
                            f"{samples._dataset.name!r}; pass embeddings_field='auto' to compute embeddings")
    if reference is not None and embeddings_field is None:
        _check_reference_size(samples, reference)
    if label_field is not None and _labelled_items(samples, label_field, embeddings_field) < MIN_FIT_ITEMS:
        if auto_labels:  # too few labels to weigh any of them: audited without wrong-label scores, as without labels
            label_field = None
        else:
            with_embedding = f" and an embedding in {embeddings_field!r}" if embeddings_field else ""
            raise OODInputError(
                f"audit label_field {label_field!r}: fewer than {MIN_FIT_ITEMS} samples of the view have a label"
                f"{with_embedding}, and a wrong-label score weighs each label against the others; pass a field with "
                "more labels, or label_field=None to audit without wrong-label scores")
    return {"label_field": label_field, "reference": reference, "embeddings_field": embeddings_field}


def _label_type(samples, label_field):
    """The type of a label field, by name (``"Classification"``, ``"Detections"``, ``"StringField"``, ...); refuses a
    name that is no field of the dataset (:func:`.items.label_kind`)."""
    from .items import label_kind

    try:
        return "Classification" if label_kind(samples, label_field) == "classification" else "Detections"
    except OODInputError:
        field = samples._dataset.get_field(label_field) if isinstance(label_field, str) and label_field else None
        if field is None:
            raise
        doc_type = getattr(field, "document_type", None)
        return getattr(doc_type, "__name__", type(field).__name__)


def _check_reference_size(samples, reference):
    """Refuse a reference the OOD scores cannot use (a tag no sample carries, fewer than :data:`MIN_FIT_ITEMS`
    samples) before the audit computes embeddings, which takes minutes on a large dataset (the score step refused
    it only after them). With embeddings already there the score step refuses it, before it writes anything."""
    from .items import num_samples

    view, _ = resolve_view(samples, reference)  # refuses a tag no sample carries
    count = num_samples(view)
    if count < MIN_FIT_ITEMS:
        what, fix = ((f"the reference (samples tagged {reference!r})", f"tag more samples {reference!r}")
                     if isinstance(reference, str) else ("the reference view", "add samples to the reference view"))
        raise OODInputError(f"{what} has only {count} sample(s); OOD scores against a reference need at least "
                            f"{MIN_FIT_ITEMS} (each is also scored with the others, itself left out): {fix}, or pass "
                            "reference=None for unsupervised OOD scores")


def _labelled_items(samples, label_field, embeddings_field):
    """The samples the wrong-label step can score: with a label and (when they exist already) an embedding."""
    from .items import num_samples

    labelled = samples.exists(f"{label_field}.label")
    return num_samples(labelled.exists(embeddings_field) if embeddings_field else labelled)


def persistence_warnings(samples):
    """The warning for a dataset FiftyOne deletes when the process exits (``fo.Dataset.from_dir`` and
    ``fo.Dataset()`` make such a dataset unless told otherwise): the audit's fields, tags and saved views go with
    it, while its report, which says how to open them in the App, stays on disk."""
    dataset = samples._dataset
    if dataset.persistent:
        return []
    return [f"dataset {dataset.name!r} is not persistent: FiftyOne deletes it, with this audit's scores, flags, tags "
            "and saved views, when the Python process that made it exits (the report and CSV stay on disk, and "
            "the App cannot open what they name). Keep it: dataset.persistent = True"]
