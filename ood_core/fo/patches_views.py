"""The objects a patches view shows (``to_patches``, ``to_evaluation_patches``), as a view of its source dataset.

Runs on objects are recorded on the source dataset, so a call given a patches view works on the view of the
source that shows the same objects (:func:`source_objects_view`).
"""

from ..errors import OODInputError


def patches_view_fields(samples):
    """The label fields whose objects a patches view (``to_patches``, ``to_evaluation_patches``) shows; None for
    any other collection."""
    import fiftyone.core.patches as fop

    if isinstance(samples, fop.EvaluationPatchesView):
        return [samples.gt_field, samples.pred_field]
    if isinstance(samples, fop.PatchesView):
        return [samples.patches_field]
    return None


#: the most object ids :func:`source_objects_view` lists in its view (about 20 bytes each in the query; MongoDB
#: refuses a query of more than 16 MB): beyond, neither the shown nor the hidden objects fit
MAX_LISTED_OBJECTS = 400_000


def source_objects_view(samples, patches_field, what="the scores"):
    """The view of a patches view's source dataset that shows exactly the objects of ``patches_field`` the patches
    show (samples without one left out), where runs are recorded. ``what`` names the run or field of those
    objects, for the error when the patches are of other objects.

    The query stays small and fast whatever the number of objects: when the patches show every object of the
    dataset it lists none (the samples with objects are matched), else it lists the shown objects or the hidden
    ones, whichever are fewer, in a membership test MongoDB answers from a set (``$setIsSubset`` of a constant
    list: a ``$in`` is a scan of the list per object, minutes at 100,000 objects).
    """
    from fiftyone import ViewField as F

    fields = patches_view_fields(samples)
    if fields is None:
        raise OODInputError(f"source_objects_view takes a patches view (to_patches, to_evaluation_patches), but was "
                            f"given a {type(samples).__name__}; pass e.g. dataset.to_patches({patches_field!r}), or "
                            "use the dataset or view itself: it is not generated")
    if patches_field not in fields:
        held = "of the images (one per sample)" if patches_field is None else f"on the objects of {patches_field!r}"
        other = "" if patches_field is None else f", or its to_patches({patches_field!r}) view"
        raise OODInputError(f"this patches view shows the objects of {fields}, but {what} are {held}; pass the "
                            f"dataset (or a view of it){other}")
    kind = samples.get_field(patches_field).document_type.__name__  # a patch holds one object of the field
    path = f"{patches_field}.detections.id" if kind == "Detections" else f"{patches_field}.id"
    shown = {i for row in samples.values(path) for i in (row if isinstance(row, list) else [row]) if i is not None}
    if not shown:
        raise OODInputError(f"this patches view shows no object of {patches_field!r}: nothing to work on; check "
                            "its filters")
    root = samples._root_dataset
    # the objects of a Detections, Polylines or Keypoints field are in its list; a Detection field's is itself
    listed = _OBJECT_LISTS.get(root.get_field(patches_field).document_type.__name__)
    path = f"{patches_field}.{listed}.id" if listed else f"{patches_field}.id"
    total = int(root.count(path))
    if len(shown) <= total - len(shown):  # few: list them
        return root.filter_labels(patches_field, _is_one_of(_listable(shown, total, patches_field)))
    rows = root.values(path)  # per sample: a list of ids (None without objects), or one id (None)
    hidden = {i for row in rows for i in ((row or []) if listed else [row]) if i is not None} - shown
    if not hidden:  # every object: no list
        has_objects = F(f"{patches_field}.{listed}").length() > 0 if listed else F(patches_field).exists()
        return root.match(has_objects)
    return root.filter_labels(patches_field, ~_is_one_of(_listable(hidden, total, patches_field)))


def _listable(object_ids, total, patches_field):
    """``object_ids``, or the error for more than :data:`MAX_LISTED_OBJECTS` (the fewer of the shown and hidden
    objects of a patches view, out of the ``total`` of the dataset)."""
    if len(object_ids) <= MAX_LISTED_OBJECTS:
        return object_ids
    raise OODInputError(
        f"this patches view shows or hides {len(object_ids):,} of the {total:,} objects of {patches_field!r}: too "
        f"many to select by id (at most {MAX_LISTED_OBJECTS:,}: MongoDB's 16 MB query limit); pass the dataset "
        f"filtered the way the patches are instead, e.g. dataset.filter_labels({patches_field!r}, F('label') == "
        "'cat'), with patches_field")


#: where the objects of a label field that FiftyOne makes patches of are listed (a Detection field's is itself)
_OBJECT_LISTS = {"Detections": "detections", "Polylines": "polylines", "Keypoints": "keypoints"}


def _is_one_of(object_ids):
    """A label filter: whether the object's id is one of ``object_ids`` (hex strings), tested against a set."""
    from bson import ObjectId
    from fiftyone import ViewExpression, ViewField as F

    return ViewExpression([F("_id")]).is_subset(sorted(ObjectId(i) for i in object_ids))
