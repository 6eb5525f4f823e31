"""The form inputs that choose the dataset's fields a run reads: embeddings, label fields, and whether a label field
goes with the chosen embeddings (object embeddings go with their objects' own labels, image embeddings with image
labels). :mod:`operators.base` re-exports these names (``common.add_embeddings_choice``, ...)."""

import fiftyone.core.labels as fol
import fiftyone.operators.types as types

from ood_core.fo import form_cache

from .markdown import escape


def add_embeddings_choice(inputs, ctx, target, name="embeddings_field", *, required=True,
                          description="Embeddings run or any vector field of this dataset", sample_level=False):
    """Dropdown of what can be scored (newest embeddings run preselected) and the
    "N will be skipped" warning for the target. Returns the chosen field or None.
    ``sample_level``: only image-level embeddings (not those of objects)."""
    from ood_core.fo import inventory

    from .base import invalidate

    choices = inventory.embedding_choices(ctx.dataset)
    if sample_level:
        choices = [(f, what) for f, what in choices if inventory.embeddings_patches_field(ctx.dataset, f) is None]
    dropdown = types.DropdownView()
    for field, what in choices:
        dropdown.add_choice(field, label=field, description=what)
    fields = [c for c, _ in choices]
    asked = ctx.params.get(name)
    chosen = asked if asked in fields else (fields[0] if fields else None)
    prop = inputs.enum(name, dropdown.values(), required=required, default=chosen, label="Embeddings",
                       description=description, view=dropdown)
    if asked and asked not in fields:  # FiftyOne would say "Invalid enum value"
        invalidate(prop, _embeddings_not_offered(ctx.dataset, asked, required))
        return None
    if chosen is not None and target is not None and len(target):
        patches = inventory.embeddings_patches_field(ctx.dataset, chosen)
        covered, total = form_cache.embedding_coverage(target, chosen, patches)
        message = inventory.coverage_message(covered, total, chosen, "objects" if patches else "samples")
        if message:
            inputs.view(f"{name}_coverage", types.Warning(label=message[0].upper() + message[1:]))
    return chosen


def label_fields(dataset, detections=True):
    """Names of the Classification (and Detections) fields of the dataset that hold labels, sorted per type
    (this package's own outputs, such as suggested labels, are left out)."""
    from ood_core.fo import inventory

    names = inventory.classification_fields(dataset)
    if detections:
        names += sorted(dataset.get_field_schema(embedded_doc_type=fol.Detections))
    return names


def add_uncovered_classes_warning(inputs, target, reference_tag, label_field):
    """Warn in a form when classes of ``label_field`` in the target have no sample tagged ``reference_tag``:
    per-class scores make every image of such a class look out-of-distribution."""
    from ood_core.fo import inventory
    from ood_core.fo.class_coverage import uncovered_class_counts, uncovered_classes_sentence

    kind = label_kind_or_none(target, label_field)  # None: no label field (the label-field check says why)
    if not reference_tag or kind is None:
        return
    path = f"{label_field}.label" if kind == "classification" else f"{label_field}.detections.label"
    covered = form_cache.distinct(target._dataset.match_tags(reference_tag), path)
    info = uncovered_class_counts(form_cache.count_values(target, path), covered).get("uncovered_classes")
    if info:
        inputs.view("uncovered_classes", types.Warning(
            label="Classes without a trusted sample",
            description=escape(uncovered_classes_sentence(  # markdown: the class names shown as written
                info, label_field,
                fix=inventory.how_to_add_trusted(reference_tag, "a few known-good images of each")))))


def check_label_field(prop, samples, label_field, choices, kinds=("classification", "detections"), needs=None,
                      or_else=None):
    """The SDK's label-field check (:func:`ood_core.fo.items.label_kind`) on the form's ``prop``: a field that holds
    no Classification / Detections labels, or none of ``kinds`` (``needs``: what needs them, named in the message),
    is refused with the fields to pick (``choices``) or the other way (``or_else``). Returns the label field, or
    None when it is empty or refused (the form's other checks then go without labels)."""
    from ood_core.fo.items import label_kind

    from .base import invalidate

    if not label_field:
        return None
    try:
        kind = label_kind(samples, label_field)
    except ValueError as e:  # OODInputError: names the field, its type and what is expected
        kind, problem = None, str(e)
    if kind in kinds:
        return label_field
    field = samples._dataset.get_field(label_field)
    if field is not None and len(kinds) == 1:  # a narrower need than the SDK's label-field check
        type_name = getattr(getattr(field, "document_type", None), "__name__", None) or type(field).__name__
        problem = f"field {label_field!r} has type {type_name}, but {needs} needs a {kinds[0].title()} field"
    fixes = ([f"pick {' or '.join(repr(c) for c in choices)}"] if choices else []) + ([or_else] if or_else else [])
    invalidate(prop, f"{problem}: {', or '.join(fixes)}" if fixes else f"{problem}; this dataset has no such field")
    return None


def label_kind_or_none(samples, label_field):
    """``"classification"`` / ``"detections"`` for a label field, None for no field or another kind of field."""
    from ood_core.fo.items import label_kind

    try:
        return label_kind(samples, label_field) if label_field else None
    except ValueError:  # the form's label-field check (:func:`check_label_field`) says why
        return None


def _embeddings_not_offered(dataset, asked, required):
    """Why the dropdown does not offer embeddings ``asked``: object embeddings where image ones are needed (the
    dropdown offers only those: ``sample_level``), else gone since the form opened (or typed)."""
    from ood_core.fo import inventory

    patches = inventory.embeddings_patches_field(dataset, asked) if dataset is not None else None
    if patches is None:
        return (f"embeddings field {asked!r} is not among this dataset's embeddings any more (deleted or renamed "
                "since the form opened?): pick one in the list")
    empty = ", or leave it empty to compute them" if not required else ""
    return (f"embeddings {asked!r} are object embeddings (one per object of {patches!r}), but this form scores "
            f"images and needs image embeddings (one per sample): pick image embeddings in the list{empty}; to score "
            f"the objects of {patches!r}, use 'OOD: score samples' with {asked!r}")


def check_label_pairing(prop, samples, label_field, embeddings_field, patches, choices):
    """Refuse on ``prop`` a label field that does not go with the chosen embeddings, as the SDK does
    (:func:`ood_core.fo.scores.refuse_other_label_field`): object embeddings (of the objects of ``patches``) go with
    those objects' own labels only, image embeddings with image labels (a Detections field's labels belong to its
    objects). ``label_field`` has passed :func:`check_label_field`; ``choices``: the label fields offered. Returns
    the label field, or None when it is empty or refused."""
    from .base import invalidate

    if not label_field or embeddings_field is None or label_field in choices:
        return label_field
    kind = label_kind_or_none(samples, label_field)
    embed = (f"embed the objects of {label_field!r} ('OOD: compute pyramid embeddings' with 'Objects field' "
             f"{label_field!r}) and choose those embeddings")
    if patches:
        use = embed if kind == "detections" else \
            f"to use the image labels of {label_field!r}, choose image embeddings in 'Embeddings'"
        message = (f"label field {label_field!r} does not go with embeddings {embeddings_field!r}: they are object "
                   f"embeddings of the objects of {patches!r}, whose labels are their own "
                   f"('{patches}.detections.label'), so the labels of {label_field!r} would be ignored. Pick "
                   f"{patches!r} or leave 'Label field' empty, or {use}")
    elif kind == "detections":
        pick = f"pick {' or '.join(repr(c) for c in choices)} (image labels)" if choices else \
            "leave 'Label field' empty (this dataset has no Classification field)"
        message = (f"label field {label_field!r} is a Detections field, whose labels belong to its objects, but "
                   f"embeddings {embeddings_field!r} are image embeddings (one per sample): {pick}, or, to score "
                   f"the objects, {embed}")
    else:  # a field of the right kind the form leaves out: an output of this plugin (suggested labels)
        pick = f"pick {' or '.join(repr(c) for c in choices)}" if choices else "leave 'Label field' empty"
        message = (f"label field {label_field!r} is not offered: it holds labels written by a run of this plugin "
                   f"(such as suggested labels), not labels to check; {pick}")
    invalidate(prop, message)
    return None
