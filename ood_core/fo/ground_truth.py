"""Ground truth of the evaluation and of the fpr flag rule (:mod:`.evaluation`): a boolean (or 0/1) field or a
tag, read per item (sample, or object of a label field), and the checks that name a typo, a field that is no
ground truth, or a class left empty, before any metric is computed.
"""

import numpy as np

from ..errors import OODInputError
from .items import item_columns


def read_ground_truth(samples, where, gt_field, gt_tag, positive_value):
    """``({item id: True (positive) / False / None (unknown)}, info, description)``; ids and values come from one
    read of the view (its order may change between reads), item ids as :func:`.items.item_ids`."""
    patches = where["patches_field"]
    id_path = "id" if patches is None else f"{patches}.detections.id"
    if (gt_field is None) == (gt_tag is None):
        raise OODInputError("pass exactly one of gt_field (a boolean field) or gt_tag (a tag marking positives)")
    if gt_field is not None and (not isinstance(gt_field, str) or not gt_field):
        raise OODInputError(f"gt_field={gt_field!r} is not a field name; pass the name (a string) of a boolean field "
                            "that is True for the positive class, e.g. gt_field='is_ood'")
    if gt_tag is not None:
        if not isinstance(gt_tag, str) or not gt_tag:
            raise OODInputError(f"gt_tag={gt_tag!r} is not a tag; pass the tag (a string) that marks the positives")
        if not (isinstance(positive_value, (bool, np.bool_, int, np.integer)) and positive_value == 1):
            raise OODInputError(  # (it was ignored: the tagged items stayed the positives, against the request)
                f"positive_value={positive_value!r} applies to gt_field only: with gt_tag={gt_tag!r} the tagged items "
                "are the positives; leave positive_value out, or tag the items of the positive class and pass that "
                "tag")
        tags_path = "tags" if patches is None else f"{patches}.detections.tags"
        what = f"sample has tag {gt_tag!r}" if patches is None else f"object has label tag {gt_tag!r}"
        (ids, tags), _ = item_columns(samples, [id_path, tags_path], patches)
        return {i: gt_tag in (t or []) for i, t in zip(ids, tags)}, {"tag": gt_tag}, what
    dataset = samples._dataset
    path = gt_field
    if patches is not None and "." not in gt_field and dataset.get_field(gt_field) is None:
        path = f"{patches}.detections.{gt_field}"
    if dataset.get_field(path) is None and not (patches and path.startswith(f"{patches}.") and dataset.count(path)):
        raise OODInputError(
            f"ground-truth field {gt_field!r} does not exist on dataset {dataset.name!r}; pass a boolean "
            "field that is True for the positive class (e.g. 'is_ood'), or gt_tag='<tag>'"
        )
    if not (isinstance(positive_value, (bool, np.bool_)) or (isinstance(positive_value, (int, np.integer))
                                                              and positive_value in (0, 1))):
        raise OODInputError(f"positive_value={positive_value!r} is not valid; pass True (the field is True for the "
                            "positive class) or False")
    (ids, raw), _ = item_columns(samples, [id_path, path], patches)
    _require_boolean(dataset, path, raw)
    return {i: None if v is None else bool(v) == bool(positive_value) for i, v in zip(ids, raw)}, {"field": path}, \
        f"{path} == {bool(positive_value)}"


def _is_binary(v):
    if isinstance(v, (bool, np.bool_)):
        return True
    return isinstance(v, (int, float, np.integer, np.floating)) and v in (0, 1)


def _require_boolean(dataset, path, raw):
    """Refuse a ground-truth field that is not boolean (or numeric 0/1), naming what it holds."""
    import fiftyone.core.fields as fof

    accepted = ("gt_field must be a BooleanField (True = positive class) or an int/float field holding only 0 "
                "and 1; pass such a field (e.g. gt_field='is_ood'), or mark the positives with a tag and pass "
                "gt_tag='<tag>'")
    field = dataset.get_field(path)
    if field is not None and not isinstance(field, (fof.BooleanField, fof.IntField, fof.FloatField)):
        kind = getattr(getattr(field, "document_type", None), "__name__", None) or type(field).__name__
        raise OODInputError(f"ground-truth field {path!r} has type {kind}; {accepted}")
    bad = next((v for v in raw if v is not None and not _is_binary(v)), None)
    if bad is not None:
        shown = repr(bad) if np.ndim(bad) == 0 and len(repr(bad)) <= 40 else f"a {type(bad).__name__}"
        raise OODInputError(f"ground-truth field {path!r} holds values that are not boolean or 0/1 (e.g. "
                            f"{shown}); {accepted}")


def require_known_tag(samples, gt_info, where, y):
    """The fpr rule needs only negatives, so a view without the positives' tag is valid; a tag that no sample
    (object) of the whole dataset carries is a typo, which would silently flag the top scores instead."""
    if "tag" not in gt_info or y.any():
        return
    dataset = samples._dataset
    counts = dataset.count_label_tags() if where["patches_field"] else dataset.count_sample_tags()
    if gt_info["tag"] not in counts:
        raise OODInputError(f"gt_tag={gt_info['tag']!r} is on no {'object' if where['patches_field'] else 'sample'} "
                            f"of dataset {dataset.name!r} (its tags: {sorted(counts)[:10]}); pass the tag that marks "
                            "the positives")


def require_both_classes(y, gt_info, where, negatives_only=False):
    """Name the ground truth (tag or field) when it leaves a class empty, before the metrics refuse it."""
    item = "object" if where["patches_field"] else "sample"
    if "tag" in gt_info:
        kind = "label tag" if where["patches_field"] else "tag"
        arg, has = f"gt_tag={gt_info['tag']!r}", f"the {kind} {gt_info['tag']!r}"
        fix_pos = f"tag the positive {item}s with {gt_info['tag']!r} first, or pass the tag that marks them"
    else:
        arg, has = f"gt_field={gt_info['field']!r}", "a positive value"
        fix_pos = "set the field to True on the positives (or check positive_value), or evaluate a view with some"
    if not y.any() and not negatives_only:
        raise OODInputError(f"{arg}: no scored {item} in this view has {has}, so there are no positives to "
                            f"evaluate; {fix_pos}")
    if y.all():
        raise OODInputError(f"{arg}: every scored {item} in this view has {has}, so there are no negatives; "
                            f"evaluate a view that also holds {item}s without it")
