"""The form inputs that choose the dataset's fields a run reads: embeddings, label fields, and whether a label field
goes with the chosen embeddings (object embeddings go with their objects' own labels, image embeddings with image
labels). :mod:`operators.base` re-exports these names (``common.add_embeddings_choice``, ...)."""

import fiftyone.core.labels as fol
import fiftyone.operators.types as types

from ood_core.fo import form_cache

from .form_checks import invalidate, refusal
from .markdown import escape


def add_embeddings_choice(inputs, ctx, target, name="embeddings_field", *, required=True,
                          description="Embeddings run or any vector field of this dataset", sample_level=False):
    """Dropdown of what can be scored (newest embeddings run preselected) and the
    "N will be skipped" warning for the target. Returns the chosen field or None.
    ``sample_level``: only image-level embeddings (not those of objects)."""
    from ood_core.fo import inventory

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


def add_hidden_labels_warning(inputs, target, label_field):
    """Warn in a form when the target's ``filter_labels`` stages on ``label_field`` (the App's sidebar filter
    excluding labels: the samples stay, their label hidden) hide the labels of some of its samples: a run that uses
    labels reads them as unlabelled (skipped, and no neighbour's label). A warning: the filter may be meant."""
    if not label_field or label_kind_or_none(target, label_field) != "classification" or not any(
            type(stage).__name__ == "FilterLabels" and stage.field == label_field
            for stage in getattr(target, "_stages", ())):
        return
    unlabelled = target.exists(label_field, False).values("id")
    hidden = len(target._dataset.select(unlabelled).exists(label_field)) if unlabelled else 0
    if hidden:
        inputs.view("hidden_labels", types.Warning(
            label=f"The sidebar filter hides the '{label_field}' labels of {hidden:,} of the {len(target):,} "
                  "target samples",
            description="The run reads them as unlabelled: their labels are neither checked nor used. To include "
                        f"them, clear the sidebar filter of '{label_field}' in the App, or choose the target "
                        '"Dataset"'))


def check_label_field(prop, samples, label_field, choices, kinds=("classification", "detections"), needs=None,
                      or_else=None):
    """The SDK's label-field check (:func:`ood_core.fo.items.label_kind`) on the form's ``prop``: a field that holds
    no Classification / Detections labels, or none of ``kinds`` (``needs``: what needs them, named in the message),
    is refused with the fields to pick (``choices``) or the other way (``or_else``). Returns the label field, or
    None when it is empty or refused (the form's other checks then go without labels)."""
    from ood_core.fo.items import label_kind

    if not label_field:
        return None
    if not isinstance(label_field, str):  # a list or a number from a Python call: FiftyOne's field lookup crashed
        kind, problem = None, f"label_field={label_field!r} is not a field name (pass the name as a string)"
    else:
        try:
            kind = label_kind(samples, label_field)
        except ValueError as e:  # OODInputError: names the field, its type and what is expected
            kind, problem = None, str(e)
    if kind in kinds:
        return label_field
    field = samples._dataset.get_field(label_field) if isinstance(label_field, str) else None
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


def check_offered_label_field(prop, samples, label_field, choices):
    """Refuse on the dropdown ``prop`` a label field it does not offer (``choices``), as the run would: a field
    deleted or renamed since the form opened, or not a label field, gets the SDK's label-field check
    (:func:`check_label_field`: the field, its type, the fields to pick); a Classification field left out of the
    list is an output of a run of this plugin. Without this, Execute failed with FiftyOne's bare "Invalid enum
    value". Returns the label field, or None when it is refused."""
    if not label_field or label_field in choices:
        return label_field or None
    if check_label_field(prop, samples, label_field, choices) is None:
        return None
    pick = f"pick {' or '.join(repr(c) for c in choices)}" if choices else "type the class names instead"
    invalidate(prop, f"label field {label_field!r} is not offered: it holds labels written by a run of this plugin "
                     f"(such as predictions or suggested labels), not classes to use; {pick}")
    return None


def check_clip_embeddings_choice(prop, samples, embeddings_field, offered):
    """Refuse on the "Stored CLIP embeddings" dropdown ``prop`` embeddings it does not offer (``offered``), with the
    SDK's reason (:func:`ood_core.fo.clip_common.clip_embeddings_record`: deleted since the form opened, not
    recorded by a run, not CLIP embeddings) and the form's way out. Without this, Execute failed with FiftyOne's
    bare "Invalid enum value". Returns whether the choice can be used."""
    from ood_core.fo.clip_common import clip_embeddings_record

    if not embeddings_field or embeddings_field in offered:
        return True
    problem = refusal(clip_embeddings_record, samples, embeddings_field) or \
        f"embeddings {embeddings_field!r} are not among this dataset's CLIP embeddings"
    invalidate(prop, f"{problem}. In this form: pick stored CLIP embeddings in the list, or leave 'Stored CLIP "
                     "embeddings' empty to encode the images now")
    return False


def check_tag_choice(prop, tag, tags, or_else):
    """Refuse on the tag dropdown ``prop`` a tag no sample carries any more (``tags``: the dataset's tags; removed
    since the form opened, or typed), which FiftyOne refused on Execute with a bare "Invalid enum value";
    ``or_else``: the other way out. Returns whether the tag can be used."""
    if not tag or tag in tags:
        return True
    invalidate(prop, f"no sample is tagged {tag!r} (removed since the form opened?): pick a tag in the list, "
                     f"or {or_else}")
    return False


def check_patches_choice(prop, samples, patches_field, offered):
    """Refuse on the "Objects field" dropdown ``prop`` a field it does not offer (``offered``: the Detections
    fields), with the SDK's reason (:func:`ood_core.fo.items.check_patches_field`: deleted since the form opened,
    or not a Detections field) and the fix. Returns whether the choice can be used."""
    from ood_core.fo.items import check_patches_field

    if not patches_field or patches_field in offered:
        return True
    problem = refusal(check_patches_field, samples, patches_field) or f"patches_field={patches_field!r} is not offered"
    invalidate(prop, f"{problem}. In this form: pick a Detections field in 'Objects field', or leave it empty to "
                     "embed whole images")
    return False


def clip_embedding_runs(dataset):
    """The dataset's CLIP embeddings runs whose field is there (a deleted field: not offered), for the CLIP forms."""
    from ood_core.fo import runs as fo_runs

    runs = []
    for key in fo_runs.list_ood_runs(dataset, kind="embeddings"):
        backbone = fo_runs.get_ood_run_info(dataset, key).get("backbone") or {}
        if backbone.get("kind") == "clip" and dataset.get_field(key) is not None:
            runs.append(key)
    return runs


def check_clip_encoder_inputs(inputs, ctx):
    """The CLIP encoder the run would build from the form's 'CLIP model', 'CLIP weights' and 'QuickGELU' (and the
    stored embeddings' settings for those left empty: :func:`ood_core.fo.clip_common.resolve_encoder_args`), built
    lazily by the SDK (:func:`ood_core.fo.clip_common.make_encoder`: no weights loaded), so that an unknown
    architecture, a tag the architecture does not have or a missing weights file is refused on its input, and
    stored embeddings made by another encoder on 'Stored CLIP embeddings', before the run. Only typed or ticked
    values are checked (the defaults need no check; a tag's weights are looked for by the run)."""
    from ood_core.errors import OODError
    from ood_core.fo.clip_common import clip_embeddings_record, make_encoder, resolve_encoder_args
    from ood_core.paths import check_app_file

    p, props = ctx.params, inputs.properties
    if not (p.get("model_name") or p.get("weights") or p.get("quick_gelu")) or \
            any(props[n].invalid for n in ("weights", "embeddings_field")):
        return
    # as the run reads them (operators.clip._common_kwargs)
    model, quick_gelu = p.get("model_name") or None, True if p.get("quick_gelu") else None
    weights = check_app_file(p.get("weights"), "weights", may_be_tag=True)
    embeddings = p.get("embeddings_field") or None
    try:
        encoder = make_encoder(*resolve_encoder_args(ctx.dataset, embeddings, model, weights, quick_gelu), "cpu",
                               lazy=True)
    except OODError as e:
        invalidate(props["model_name" if str(e).startswith("model_name") else "weights"], str(e))
        return
    stored = clip_embeddings_record(ctx.dataset, embeddings).get("weights_identity") if embeddings else None
    if stored is not None and stored != encoder.weights_identity:
        invalidate(props["embeddings_field"], (
            f"embeddings {embeddings!r} were computed with {stored!r}, but this form's 'CLIP model' / 'CLIP weights' "
            f"/ 'QuickGELU' give {encoder.weights_identity!r}; image and text embeddings are only comparable within "
            "one CLIP model and weights: leave 'CLIP model' and 'CLIP weights' empty and 'QuickGELU' unticked to "
            "take them from the embeddings run, or leave 'Stored CLIP embeddings' empty to encode the images now"))


def id_labels_text(id_labels):
    """The ID class names of a Python ``op(view, id_labels=[...])`` call as the form's comma-separated 'ID class
    names' text (a list failed FiftyOne's validation of that text input: "Invalid value type"); text is kept."""
    from ood_core.errors import OODInputError

    if id_labels is None or isinstance(id_labels, str):
        return id_labels
    if not isinstance(id_labels, (list, tuple)):
        raise OODInputError(f"id_labels={id_labels!r} is not a list of class names; pass e.g. id_labels=['dog', "
                            "'cat'], or label_field=<a label field> for its classes")
    names = [str(name).strip() for name in id_labels]
    commas = [name for name in names if "," in name]
    if commas:
        raise OODInputError(f"id_labels: class name(s) {commas} contain a comma, which the operator's comma-separated "
                            "'ID class names' input cannot hold; call ood.compute_neglabel_scores / "
                            "compute_rap_scores / compute_adaneg_scores with id_labels=[...] directly, or rename them")
    return ", ".join(names)
