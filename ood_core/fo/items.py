"""Shared FiftyOne-layer helpers: reading embeddings and labels, writing values per item.

Used by the embedding, scoring, similarity and CLIP modules. Items are
samples, or objects of a ``Detections`` field (``patches_field``), whose
values live at ``<patches_field>.detections.<attr>``.
"""

import numpy as np

from ..errors import OODInputError
from .patches_views import patches_view_fields, source_objects_view  # noqa: F401 (public here too)
from .view_checks import deleted_elsewhere, every_sample, require_own_dataset

DEFAULT_EMBEDDINGS_FIELD = "ood_embeddings"


# --------------------------------------------------------------------------- reading


def num_samples(samples):
    """Exact number of samples of a dataset or view.

    ``len(dataset)`` is MongoDB's *estimated* count, which is wrong (often 0)
    after the database was killed uncleanly, until it is validated; views are
    counted by aggregation, which is exact. A grouped dataset counts its active slice (the samples that
    ``values()`` and iteration see), not every slice.
    """
    if is_whole_dataset(samples):  # a view without stages is counted with FiftyOne's estimate too
        return int(samples._dataset._sample_collection.count_documents({}))
    return len(samples)  # a grouped dataset: its active slice


def is_whole_dataset(samples):
    """Whether ``samples`` is its whole dataset (the dataset, or a view without stages): an overwrite from
    anything else keeps the values of the samples and objects it does not show (``filter_labels`` hides
    objects of the samples it keeps). A grouped dataset never is: it shows (and ``values()`` reads) its active
    slice only, and the other slices' samples keep theirs."""
    if samples._dataset.media_type == "group":
        return False
    return samples is samples._dataset or not getattr(samples, "_stages", None)


def require_nonempty(samples, what="samples"):
    require_own_dataset(samples)
    if num_samples(samples) == 0:
        import fiftyone.core.odm as foo

        if foo.get_db_conn().datasets.find_one({"_id": samples._dataset._doc.id}, {"_id": 1}) is None:
            raise deleted_elsewhere(samples._dataset)  # its samples went with it: not an empty view
        raise OODInputError(f"{what} is an empty view: nothing to process; check the view's filters or tags")


#: default of every call that decodes a view's images (embeddings, CLIP scores, the audit), as in FiftyOne's
#: ``compute_embeddings``: an unreadable image is skipped, warned about and listed in the run's results
SKIP_FAILURES = True


def label_kind(samples, label_field):
    """``"classification"`` or ``"detections"`` for a label field, else raise."""
    import fiftyone.core.labels as fol

    if not isinstance(label_field, str) or not label_field:
        raise OODInputError(f"label_field={label_field!r} is not a field name; pass the name of a Classification or "
                            "Detections field as a string")
    dataset = samples._dataset
    field = dataset.get_field(label_field)
    if field is None:
        raise OODInputError(
            f"label field {label_field!r} does not exist on dataset {dataset.name!r}; "
            f"label fields here: {label_fields(dataset)}"
        )
    doc_type = getattr(field, "document_type", None)
    if doc_type is fol.Classification:
        return "classification"
    if doc_type is fol.Detections:
        return "detections"
    kind = getattr(doc_type, "__name__", type(field).__name__)
    raise OODInputError(f"field {label_field!r} has type {kind}; expected a Classification field (image labels) or a "
                        "Detections field (object labels)" + (f"; {_NO_LABEL_FIX[kind].format(f=label_field)}"
                                                              if kind in _NO_LABEL_FIX else ""))


#: how to get a label field the detectors take from one of another type
_NO_LABEL_FIX = {
    "Classifications": "for one label per image, put one of each sample's labels in a Classification field, e.g. "
                       "dataset.set_values('label', [c.classifications[0] if c and c.classifications else None for c "
                       "in dataset.values({f!r})]), and pass that field",
    "Polylines": "for object labels, turn them into boxes (Polylines.to_detections()) and pass that Detections field",
    "Detection": "put each sample's object in a Detections field and pass that field",
}


def label_fields(dataset):
    """The label fields a user can check (Classification, then Detections); the package's own outputs
    (suggested labels, CLIP predictions) are not among them."""
    import fiftyone.core.labels as fol

    from .run_records import written_fields

    ours = written_fields(dataset)
    return [f for f in sorted(dataset.get_field_schema(embedded_doc_type=fol.Classification)) + sorted(
        dataset.get_field_schema(embedded_doc_type=fol.Detections)) if f not in ours]


def patch_path(patches_field, attr):
    return f"{patches_field}.detections.{attr}"


#: what to do with a label field that has no boxes, by its type, when it is passed as ``patches_field``
_NO_BOXES_FIX = {
    "Polylines": "turn the polylines into boxes first, e.g. sample['boxes'] = sample['{f}'].to_detections() "
                 "(FiftyOne's Polylines.to_detections()), and pass that field",
    "Keypoints": "keypoints have no extent to crop; give the objects boxes in a Detections field",
    "Detection": "put a copy of each sample's object in a Detections field first (a copy gets an id of its own), "
                 "e.g. dataset.set_values('boxes', [fo.Detections(detections=[d.copy()]) if d else None for d in "
                 "dataset.values({f!r})]), and pass that field",
    "Classification": "an image label: score the images instead, with image embeddings and label_field={f!r}",
    "Classifications": "image labels: score the images instead, with image embeddings and one Classification "
                       "field as label_field",
}


def check_patches_field(samples, patches_field):
    """Refuse a ``patches_field`` that is not a Detections field, naming its type and what to pass instead."""
    import fiftyone.core.labels as fol

    if not isinstance(patches_field, str) or not patches_field:
        raise OODInputError(f"patches_field={patches_field!r} is not a field name; pass the name of a Detections "
                            "field as a string, or None to work on whole images")
    field = samples._dataset.get_field(patches_field)
    doc_type = getattr(field, "document_type", None)
    if field is None or doc_type is fol.Detections:
        label_kind(samples, patches_field)  # a missing field: named with the label fields there are
        return
    kind = doc_type.__name__ if doc_type is not None else type(field).__name__
    holds = f"{kind} labels" if doc_type is not None else f"a {kind}"
    boxes = [f for f in label_fields(samples._dataset) if samples._dataset.get_field(f).document_type is
             fol.Detections]
    fix = _NO_BOXES_FIX.get(kind, "pass a Detections field").format(f=patches_field)
    owner = next((f for f in boxes if patches_field.startswith(f"{f}.")), None)
    if owner is not None:  # the objects' list or one of their attributes, e.g. 'objs.detections'
        fix = f"pass the Detections field itself, patches_field={owner!r}"
    why = "objects are read from a Detections field (a list of objects per sample)" if kind == "Detection" else \
        "objects are cropped by their bounding boxes, which only a Detections field has"
    raise OODInputError(f"patches_field={patches_field!r} holds {holds}, but {why} (Detections fields here: "
                        f"{boxes or 'none'}); {fix}")


def require_embeddings_field(dataset, embeddings_field):
    if dataset.get_field(embeddings_field) is None:
        from .run_records import embeddings_patches_field

        patches = embeddings_patches_field(dataset, embeddings_field)
        if patches is not None:
            raise OODInputError(
                f"embeddings {embeddings_field!r} are object embeddings, stored on the objects of {patches!r} "
                f"({patch_path(patches, embeddings_field)!r}); pass patches_field={patches!r} to use them"
            )
        raise OODInputError(
            f"embeddings field {embeddings_field!r} does not exist; run "
            "compute_pyramid_embeddings(samples, embeddings_field=...) first"
        )


def _undeclared_object_vectors(samples, embeddings_field, patches_field):
    """Why object arrays stored under an undeclared key cannot be read (FiftyOne hands them back as bytes), with
    the fix; None when no object of ``samples`` holds such an array there."""
    from .documents import has_values, undeclared_vectors_problem

    path = patch_path(patches_field, embeddings_field)
    if not has_values(samples._dataset, path):
        return None
    first = next((v for v in flatten(samples.values(path)) if v is not None), None)
    return undeclared_vectors_problem(samples._dataset, path, first)


def _missing_object_embeddings(dataset, embeddings_field, patches_field):
    """Why ``<patches_field>.detections.<embeddings_field>`` is missing, and the fix: an embeddings run of that key
    that holds another field (the objects of another Detections field, or the images) cannot be made again on
    these objects under the same key, so the fix names where the vectors are and another key."""
    from .run_records import embeddings_patches_field

    where = patch_path(patches_field, embeddings_field)
    held = embeddings_patches_field(dataset, embeddings_field)
    if held is not None and held != patches_field:
        elsewhere = f"are stored on the objects of {held!r} ({patch_path(held, embeddings_field)!r})"
        use = f"pass patches_field={held!r} (and label_field={held!r} or none)"
    elif dataset.get_field(embeddings_field) is not None:
        elsewhere, use = "are image embeddings (one per sample)", "score the images (without patches_field)"
    else:
        return (f"object embeddings {where!r} do not exist; run compute_pyramid_embeddings(samples, "
                f"{embeddings_field!r}, patches_field={patches_field!r}) first")
    return (f"object embeddings {where!r} do not exist: embeddings {embeddings_field!r} {elsewhere}, not on the "
            f"objects of {patches_field!r}. To score those, {use}; to score the objects of {patches_field!r}, "
            f"embed them under a key of their own: compute_pyramid_embeddings(samples, "
            f"'{embeddings_field}_{patches_field}', patches_field={patches_field!r})")


def read_embeddings(samples, embeddings_field, patches_field=None, label_field=None):
    """Read stored embeddings (and optionally labels) as arrays.

    Returns ``(keys, X, labels)`` where ``keys`` are sample ids (or object ids
    for patches) of the items that have an embedding (and a label, when
    ``label_field`` is given), ``X`` is ``(N, D)`` float32 and ``labels`` is a
    list of strings or None.
    """
    return read_embeddings_and_ids(samples, embeddings_field, patches_field, label_field)[:3]


def read_embeddings_and_ids(samples, embeddings_field, patches_field=None, label_field=None):
    """:func:`read_embeddings` plus ``read_ids``: the ids of every item this read returned, with an embedding or
    without, i.e. the items a score run read; its write (:func:`values_by_key`) gives exactly these a value."""
    dataset = samples._dataset
    if patches_field is None:
        require_embeddings_field(dataset, embeddings_field)
        # one query: each id, vector and label come from the same document, whatever order the view has
        paths = ["id", embeddings_field] + ([f"{label_field}.label"] if label_field else [])
        keys, vecs, *rest = samples.values(paths)
        labs = rest[0] if label_field else [None] * len(keys)
    else:
        if dataset.get_field(patch_path(patches_field, embeddings_field)) is None:
            raise OODInputError(_undeclared_object_vectors(samples, embeddings_field, patches_field)
                                or _missing_object_embeddings(dataset, embeddings_field, patches_field))
        paths = [patch_path(patches_field, a) for a in ["id", embeddings_field] + (["label"] if label_field else [])]
        nested_keys, nested_vecs, *rest = samples.values(paths)
        require_unique_object_ids(samples, patches_field, nested_keys)
        keys, vecs = flatten(nested_keys), flatten(nested_vecs)
        labs = flatten(rest[0]) if label_field else [None] * len(keys)
    keep = [i for i, v in enumerate(vecs) if v is not None and (label_field is None or labs[i] is not None)]
    if not keep:
        embedded = sum(v is not None for v in vecs)
        if embedded and label_field:  # the labels are what is missing
            raise OODInputError(
                f"none of the {embedded:,} items of this view with an embedding in {embeddings_field!r} has a "
                f"label in {label_field!r}; pass the field that holds the labels (or none, to score without "
                "labels)"
            )
        raise OODInputError(
            f"no item in this view has an embedding in {embeddings_field!r}; compute embeddings for this view "
            "first"
        )
    import fiftyone.core.labels as fol

    not_vectors = [i for i in keep if isinstance(vecs[i], (str, bytes, dict, bool, fol.Label))
                   or np.ndim(vecs[i]) == 0 or np.asarray(vecs[i]).dtype.kind not in "biuf"]
    if not_vectors:
        i = not_vectors[0]
        raise OODInputError(
            f"field {embeddings_field!r} does not hold embedding vectors: item {keys[i]!r} has a "
            f"{type(vecs[i]).__name__} ({len(not_vectors)} such items); pass the field written by "
            "compute_pyramid_embeddings / compute_clip_embeddings (or any numeric vector field)"
        )
    dims = {np.asarray(vecs[i]).shape for i in keep}
    if len(dims) > 1:
        raise OODInputError(
            f"embeddings in {embeddings_field!r} have mixed shapes {sorted(dims)}; recompute them with "
            "one backbone configuration (overwrite=True)"
        )
    X = np.stack([np.asarray(vecs[i], dtype=np.float32).ravel() for i in keep])
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if bad.size:
        ids = [keys[keep[i]] for i in bad[:5]]
        raise OODInputError(
            f"{bad.size} item(s) have NaN or infinite values in {embeddings_field!r} (ids {ids}); recompute "
            "their embeddings, or exclude them from the view (e.g. view.exclude(ids))"
        )
    labels = [labs[i] for i in keep] if label_field else None
    return [keys[i] for i in keep], X, labels, keys


def item_names(keys, sample_of):
    """What an error calls each item: ``"sample <id>"``, or ``"object <id> of sample <id>"`` for object crops
    (``sample_of`` maps an object's id to its sample's; None for samples)."""
    if sample_of is None:
        return [f"sample {key}" for key in keys]
    return [f"object {key} of sample {sample_of[key]}" for key in keys]


def flatten(nested):
    return [x for row in nested for x in (row or [])]


def values_by_key(samples, by_key, patches_field, convert=None, read_ids=None):
    """The values to write from a ``{key: value}`` dict, keyed by item id (so where a view returns its samples
    in another order, or other samples, at the next query, e.g. ``$sample``, each value still lands on its
    own item): for samples a dict sample id -> value, for objects an :class:`.bulk_values.ObjectValues`, over
    every key of ``by_key`` and every item the call read (``read_ids``, from the read it computed the values
    from: :func:`read_embeddings_and_ids`); those without a key get None. Without ``read_ids``, the items of
    the view as read here: only right for a view that returns the same items at every query, for a view such
    as ``$sample`` other items, whose values (kept by an overwrite from a view) would be cleared.

    ``convert`` turns each value into what is stored (default :func:`to_storable`: numbers and arrays).
    """
    from .bulk_values import ObjectValues

    convert = convert or to_storable
    if patches_field is None:
        keys = dict.fromkeys(sample_ids(samples) if read_ids is None else read_ids)
        keys.update(dict.fromkeys(by_key))
        return {k: convert(by_key.get(k)) for k in keys}
    sids, oids = samples.values(["id", patch_path(patches_field, "id")])
    rows = [(sid, oid) for sid, row in zip(sids, oids) for oid in (row or [])]
    if read_ids is not None:  # the objects read: those of this read of the view that were, the others by id
        wanted = set(read_ids) | set(by_key)
        rows = [(sid, oid) for sid, oid in rows if oid in wanted]
    seen = {oid for _, oid in rows}
    missing = [k for k in (by_key if read_ids is None else wanted) if k not in seen]
    if missing:  # read (and scored), but not in this read of an unstable view: found by id on the dataset
        rows += _object_rows(samples._dataset.select_labels(ids=missing, fields=patches_field), patches_field,
                             set(missing))
    return ObjectValues((sid, oid, convert(by_key.get(oid))) for sid, oid in rows)


def _object_rows(samples, patches_field, wanted):
    """``(sample id, object id)`` of the objects of ``patches_field`` in ``samples`` whose ids are ``wanted``."""
    sids, oids = samples.values(["id", patch_path(patches_field, "id")])
    return [(sid, oid) for sid, row in zip(sids, oids) for oid in (row or []) if oid in wanted]


def to_storable(v):
    if v is None:
        return None
    if isinstance(v, np.ndarray) and v.ndim >= 1:
        return v.astype(np.float32)
    return float(v)


def count_items(samples, patches_field):
    if patches_field is None:
        return num_samples(samples)
    return int(samples.count(patch_path(patches_field, "id")))


def detections_root(dataset, path):
    """``"objects"`` for ``"objects.detections.score"`` when ``objects`` is a Detections field."""
    import fiftyone.core.labels as fol

    root, _, rest = path.partition(".")
    if not rest.startswith("detections.") or rest.count(".") != 1:
        return None
    field = dataset.get_field(root)
    if field is not None and getattr(field, "document_type", None) is fol.Detections:
        return root
    return None


def item_ids(samples, patches_field):
    if patches_field is None:
        return samples.values("id")
    return flatten(samples.values(f"{patches_field}.detections.id"))


def sample_ids(samples):
    """The ids of the samples of a dataset or view, as ``samples.values("id")`` (the order may differ). A whole
    dataset's are read from its ``_id`` index alone, without scanning the documents (about 1 s at 200,000 samples
    with embeddings); a grouped dataset's active slice and a view's are read by ``values``."""
    if is_whole_dataset(samples):
        cursor = samples._dataset._sample_collection.find({}, {"_id": 1}).hint([("_id", 1)])
        return [str(doc["_id"]) for doc in cursor]
    return samples.values("id")


def item_values(samples, path, patches_field):
    """Values of ``path`` aligned with :func:`item_ids` (object attributes flattened)."""
    return item_columns(samples, [path], patches_field)[0][0]


def item_columns(samples, paths, patches_field=None):
    """Per-item values of several fields read in ONE pass over the view: ``(columns, num_samples)``.

    ``values([...])`` batches plain fields into one ``$project``, so the view's documents are scanned once
    (each scan reads whole documents: about 1 s at 200,000 samples with an embeddings field). Items are
    samples, or the objects of ``patches_field``: object attributes (``<patches_field>.<...>``) are flattened
    and a sample-level field is inherited by every object of its sample. ``num_samples``: the view's samples.
    """
    paths = list(paths)
    if patches_field is None:
        columns = samples.values(paths)
        return [list(col) for col in columns], len(columns[0])
    prefix = f"{patches_field}."
    nested = [p.startswith(prefix) for p in paths]
    read = paths if any(nested) else paths + [f"{patches_field}.detections.id"]
    columns = samples.values(read)
    lengths = [len(row or []) for row in columns[nested.index(True) if any(nested) else -1]]
    out = [flatten(col) if is_nested else [v for v, n in zip(col, lengths) for _ in range(n)]
           for col, is_nested in zip(columns, nested)]
    return out, len(lengths)


def union_view(samples, other):
    """The samples of ``samples`` plus those of ``other`` (views of one dataset), in no particular order.

    Returns ``samples`` itself when ``other`` adds nothing, and the dataset when
    the union is all of it.
    """
    dataset = samples._dataset
    ids = samples.values("id")
    have = set(ids)
    extra = [i for i in other.values("id") if i not in have]
    if not extra:
        return samples
    if len(have) + len(extra) == num_samples(dataset):
        return dataset
    return dataset.select(ids + extra, ordered=False)


def refuse_label_tagged_reference(samples, tag, patches_field):
    """Refuse a reference tag that objects of ``patches_field`` carry as a label tag (tagging in the App's patches
    view tags labels): a reference tag selects samples, so those objects would be ignored, or, where no sample
    carries the tag, the error would wrongly ask for sample tags. Nothing to check for image runs
    (``patches_field`` None) or a reference that is no tag (a view, None)."""
    if patches_field is None or not isinstance(tag, str):
        return
    dataset = every_sample(samples._dataset)
    num_objects = int(dataset.count_label_tags(label_fields=patches_field).get(tag, 0))
    if not num_objects:
        return
    num_tagged = num_samples(dataset.match_tags(tag))
    now = (f"it selects the {num_tagged:,} samples tagged {tag!r} (all of their objects) and ignores the label "
           "tags" if num_tagged else "no sample carries it")
    raise OODInputError(
        f"reference={tag!r} is a sample tag, but {num_objects:,} objects of {patches_field!r} carry {tag!r} as a "
        f"label tag (as tagging in the App's patches view sets), and {now}. To trust exactly those objects pass "
        f"reference=dataset.select_labels(tags={tag!r}, fields={patches_field!r}); to trust whole samples, tag "
        f"them and remove the label tags (dataset.untag_labels({tag!r}, label_fields={patches_field!r}))")


def require_unique_object_ids(samples, patches_field, nested_ids=None):
    """Refuse objects of ``patches_field`` that share an id (one ``fo.Detection`` added to several samples, or
    samples copied with their labels): values are written by object id, so every object of the id would get the
    embedding or score of one of them. ``nested_ids``: the view's ``<patches_field>.detections.id`` if read."""
    from collections import Counter

    nested_ids = samples.values(patch_path(patches_field, "id")) if nested_ids is None else nested_ids
    ids = flatten(nested_ids)
    if len(set(ids)) == len(ids):
        return
    repeated = Counter(ids)
    first, times = repeated.most_common(1)[0]
    num = sum(1 for n in repeated.values() if n > 1)
    # the samples holding it, read with their objects (a view may return its samples in another order each read)
    where = samples.select_labels(ids=[first], fields=patches_field).limit(3).values("id")
    raise OODInputError(
        f"{num:,} object id(s) of {patches_field!r} occur more than once (object {first} {times} times, in samples "
        f"{where}...), e.g. one fo.Detection added to several samples; values are written per object id, so those "
        f"objects would all get one object's embedding or score. Give each object an id of its own (replace the "
        "repeats by copies: detection.copy() gets a new id) and save the samples")
