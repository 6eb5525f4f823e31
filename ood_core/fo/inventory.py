"""What a dataset already holds, for sensible defaults: embeddings, label fields, trusted tags.

Used by the App forms (preselection, "N will be skipped" warnings), the review
panel and :func:`ood_core.fo.audit.audit`, so all of them pick the same inputs:

- embeddings: this package's embeddings runs, newest first, then any other
  vector field of the dataset (e.g. written by ``compute_embeddings`` of a
  FiftyOne zoo model) - every vector field can be scored;
- the label field: the only ``Classification`` field (not counting this package's outputs, nor a field
  without any label when there are several), else ``ground_truth``;
- the reference tag: ``trusted`` when some samples carry it.
"""

from .run_info import get_ood_run_info
from .run_records import embeddings_patches_field, list_ood_runs, written_fields  # noqa: F401 (public here too)
from .run_sync import one_look

#: the sample tag that marks the trusted in-distribution reference set by convention
TRUSTED_TAG = "trusted"


def embedding_runs_newest_first(samples):
    """Keys of the completed embeddings runs of this package whose field exists, newest first (a field deleted
    by hand leaves a run with nothing to score; vectors of the user's put under its name are not its output).

    An embeddings run's key is its field's name, and the forms and the audit pass the key as the field to score:
    a run whose key FiftyOne's own ``dataset.rename_run`` changed is left out (its key names no field: it was offered
    first, and the audit's ``embeddings_field="auto"`` failed saying the embeddings did not exist); its field is
    offered as a vector field (:func:`embedding_choices`)."""
    from .ownership import owns_all

    dataset = samples._dataset
    keys = [k for k in list_ood_runs(dataset, kind="embeddings")
            if getattr(dataset.get_run_info(k).config, "status", None) != "partial" and _keyed_by_field(dataset, k)
            and all(dataset.get_field(f.split(".")[0]) is not None
                    for f in dataset.get_run_info(k).config.fields or []) and owns_all(dataset, k)]
    return sorted(keys, key=lambda k: dataset.get_run_info(k).timestamp, reverse=True)


def _keyed_by_field(dataset, key):
    """Whether the embeddings run ``key`` writes the field of its key's name (``key`` or ``<patches>.detections.key``)."""
    return key in {f.rpartition(".")[2] for f in dataset.get_run_info(key).config.fields or []}


def renamed_embedding_runs(samples):
    """``{field: run key}`` of the embeddings runs whose key FiftyOne's ``dataset.rename_run`` changed (their key no
    longer names the field they wrote, which they still own)."""
    from .ownership import owns_all

    dataset = samples._dataset
    return {f: k for k in list_ood_runs(dataset, kind="embeddings") if not _keyed_by_field(dataset, k)
            and owns_all(dataset, k) for f in dataset.get_run_info(k).config.fields or []}


def vector_fields(samples):
    """Top-level sample fields holding vectors (``VectorField`` / ``ArrayField``), sorted; not the package's temporary
    fields, recognised by their exact shape (:func:`.names.is_internal`): a field a user named ``tmp_ood_feats``
    is the user's, and offered (the SDK scores it; by the prefix alone the forms said there was no vector field)."""
    import fiftyone.core.fields as fof

    from .names import is_internal

    schema = samples._dataset.get_field_schema()
    return sorted(name for name, field in schema.items()
                  if isinstance(field, (fof.VectorField, fof.ArrayField)) and not is_internal(name))


@one_look()  # one look at the runs for every run's record read below
def embedding_choices(samples):
    """``[(field, description)]`` of everything that can be scored: newest embeddings run first.

    Object-level embeddings runs are included (their field lives on the
    objects); other vector fields follow, described as such.
    """
    dataset = samples._dataset
    out = []
    for key in embedding_runs_newest_first(samples):
        info = get_ood_run_info(dataset, key)
        patches = info.get("patches_field")
        backbone = ((info.get("backbone") or {}).get("model_name") or (info.get("clip") or {}).get("model_name")
                    or "embeddings")
        where = f"objects of {patches!r}" if patches else "samples"
        out.append((key, f"{backbone}, {where}, {info['timestamp'][:16]}"))
    owned = {c for c, _ in out}
    renamed = renamed_embedding_runs(dataset)
    for name in vector_fields(dataset):
        if name in renamed:
            out.append((name, f"vector field of embeddings run {renamed[name]!r} (renamed: rename it back to {name!r} "
                              "to score it with its backbone's levels)"))
        elif name not in owned:
            out.append((name, "vector field"))
    return out


def embedding_coverage(samples, embeddings_field, patches_field=None):
    """``(with_embedding, total)`` items of ``samples`` (objects with ``patches_field``)."""
    from .items import count_items, patch_path

    total = count_items(samples, patches_field)
    if patches_field is None:
        return int(samples.exists(embeddings_field).count()), total
    return int(samples.count(patch_path(patches_field, embeddings_field))), total


def classification_fields(samples):
    """The dataset's ``Classification`` fields that hold labels: those written by this package's runs
    (suggested labels, CLIP predictions) are outputs, never offered or chosen as the labels to check."""
    import fiftyone.core.labels as fol

    ours = written_fields(samples)
    return sorted(f for f in samples._dataset.get_field_schema(embedded_doc_type=fol.Classification)
                  if f not in ours)


def holds_label(samples, field):
    """Whether some sample of ``samples`` has a label in the Classification ``field`` (stops at the first one)."""
    return samples.exists(f"{field}.label").limit(1).count() > 0


def labelled_classification_fields(samples):
    """The :func:`classification_fields` that hold a label in ``samples`` (a dataset or view)."""
    return [f for f in classification_fields(samples) if holds_label(samples, f)]


def default_label_field(samples):
    """The only Classification field holding a label in ``samples``, else ``ground_truth`` when it is one, else
    None. A field without any label (declared but not filled yet, or confidences only) is no choice: counting it
    made a dataset with one labelled field and one empty field default to none, which switched the audit's
    wrong-label check off without a word. The labels are looked up only when there is more than one field."""
    fields = classification_fields(samples)
    if len(fields) > 1:
        fields = [f for f in fields if holds_label(samples, f)] or fields
    if len(fields) == 1:
        return fields[0]
    return "ground_truth" if "ground_truth" in fields else None


def how_to_add_trusted(reference, what):
    """The fix sentence for a thin reference: tag ``what`` with the reference tag, or add them to the view."""
    return f"tag {what} {reference!r}" if isinstance(reference, str) else f"add {what} to the reference view"


def default_reference_tag(samples, tag_counts=None):
    """:data:`TRUSTED_TAG` when some samples of the dataset carry it, else None (``tag_counts``: the dataset's
    ``count_sample_tags()`` when already read)."""
    counts = samples._dataset.count_sample_tags() if tag_counts is None else tag_counts
    return TRUSTED_TAG if counts.get(TRUSTED_TAG) else None


def coverage_message(with_embedding, total, embeddings_field, item="samples"):
    """The "N will be skipped" sentence of the forms, or None when everything is covered."""
    if with_embedding >= total:
        return None
    return (f"embeddings exist for {with_embedding:,} of {total:,} {item} of the target in {embeddings_field!r}: "
            f"{total - with_embedding:,} will be skipped (compute embeddings for them first to score them)")
