"""Panel: what the review buttons ("Tag selected: ood_confirmed / ood_dismissed") act on, the App's selection.

That is the samples (or patches, frames, clips) checked in the grid (``ctx.selected``) and, on an object run,
the labels clicked in the sample modal (``ctx.selected_labels``). Each selection is checked against the current
view (all or nothing: a selection the view does not show tags nothing) and tagged with the decision's tag
(:data:`review.REVIEW_TAGS`, the opposite decision's tag removed). The functions take a dataset (or view) and
plain values, so they are tested without a browser (``tests/test_panel_labels.py``, ``tests/test_panel_views.py``).
"""

from . import review as review_data

_GENERATED_NOUNS = {"PatchesView": "patches", "EvaluationPatchesView": "patches", "FramesView": "frames",
                    "ClipsView": "clips"}


_SELECTED = {"samples": "sample(s)", "patches": "patch(es)", "frames": "frame(s)", "clips": "clip(s)"}


def is_generated(view):
    """Whether ``view`` is a generated view (patches, frames, clips): its samples are not the dataset's."""
    return view is not None and view._dataset.name != view._root_dataset.name


def selected_noun(view):
    """What the App's grid selects: samples, or the patches / frames / clips of a generated view."""
    return _GENERATED_NOUNS.get(type(view).__name__, "items") if is_generated(view) else "samples"


def review_selection(dataset, view, selected, patches_field, decision):
    """Record a review decision on the App's selection; returns ``{"tag", "num", "noun"}``.

    In a sample view the selected samples are tagged (:func:`review.review_samples`). In a generated view the
    selection holds patch / frame / clip ids: in a patches view of an object run's label field the selected
    objects are tagged (label tags, the opposite decision's tag removed; FiftyOne syncs them to the dataset),
    elsewhere the samples they come from (``_sample_id``).
    """
    from bson import ObjectId

    from ood_core.errors import OODInputError

    if not is_generated(view):
        _require_in_view(view if view is not None else dataset, selected)
        out = review_data.review_samples(dataset, selected, decision)
        return {"tag": out["tag"], "num": out["num_samples"], "noun": "sample(s)"}
    noun = selected_noun(view)
    ids = list(dict.fromkeys(selected))
    bad = [i for i in ids if not ObjectId.is_valid(i)]
    chosen = view.select([i for i in ids if i not in bad])
    missing = len(ids) - len(chosen)
    if missing:
        raise OODInputError(f"{missing} of the {len(ids)} selected {noun} are not in the current view (e.g. "
                            f"{(bad or [i for i in ids if i not in set(chosen.values('id'))])[0]!r}): clear the "
                            "selection and select them again")
    fields = [getattr(view, name, None) for name in ("patches_field", "gt_field", "pred_field")]
    if patches_field and patches_field in fields:
        return review_objects(chosen, patches_field, decision)
    sample_ids = list(dict.fromkeys(str(i) for i in chosen.values("_sample_id")))
    out = review_data.review_samples(dataset, sample_ids, decision)
    return {"tag": out["tag"], "num": out["num_samples"], "noun": "sample(s)"}


def _require_in_view(view, selected):
    """Refuse selected samples the current view does not show (a selection kept from another view or group
    slice, or samples deleted meanwhile): tagging them would change samples the curator does not see. Ids that
    are no sample ids are left to :func:`review.review_samples`, which names them."""
    from bson import ObjectId

    from ood_core.errors import OODInputError

    ids = [i for i in dict.fromkeys(selected) if isinstance(i, str) and ObjectId.is_valid(i)]
    shown = set(view.select(ids).values("id")) if ids else set()
    missing = [i for i in ids if i not in shown]
    if missing:
        raise OODInputError(f"{len(missing)} of the {len(ids)} selected samples are not in the current view (e.g. "
                            f"{missing[0]!r}: selected on another view or group slice, or deleted meanwhile); "
                            "nothing was tagged: clear the selection and select them again")


def review_objects(patches, label_field, decision):
    """Tag the objects of ``label_field`` in ``patches`` (a patches view, or a view selecting labels) with the
    decision's tag, removing the opposite one; returns ``{"tag", "num", "noun"}``."""
    tag = review_data.REVIEW_TAGS[decision]
    other = next(t for d, t in review_data.REVIEW_TAGS.items() if d != decision)
    patches.untag_labels(other, label_fields=label_field)
    patches.tag_labels(tag, label_fields=label_field)
    return {"tag": tag, "num": int(patches.count_label_tags(label_field).get(tag, 0)), "noun": "object(s)"}


# --------------------------------------------------------------------------- labels selected in the modal


def review_labels(dataset, view, selected_labels, patches_field, decision):
    """Record a review decision on the labels selected in the App's sample modal for an object run whose label
    field is ``patches_field``; returns ``{"tag", "num", "noun", "field", "left_alone"}``.

    ``selected_labels``: ``ctx.selected_labels``, dicts with ``label_id``, ``sample_id``, ``field`` and
    ``frame_number`` (in a patches view ``sample_id`` is the patch's id: only the label id is used). Only the
    selected objects of ``patches_field`` are tagged (:func:`review_objects`); the labels of other fields are left
    alone and counted per field in ``left_alone``. All or nothing, as for selected samples: when a selected object
    of the run's field is not in the current view (``view``, else the dataset: filtered out, selected on another
    view, deleted meanwhile) nothing is tagged.
    """
    from ood_core.errors import OODInputError

    ids, left_alone = [], {}
    for label in selected_labels:
        field = label.get("field") if isinstance(label, dict) else None
        if field == patches_field:
            ids.append(label.get("label_id"))
        else:
            left_alone[str(field)] = left_alone.get(str(field), 0) + 1
    if not ids:
        raise OODInputError(f"none of the {len(selected_labels)} selected labels is an object of {patches_field!r}, "
                            f"the label field of the score run (selected: labels of {sorted(left_alone)}); nothing "
                            f"was tagged: select objects of {patches_field!r}, or pick the score run of their field")
    ids = list(dict.fromkeys(ids))
    chosen, shown = _shown_objects(view if view is not None else dataset, patches_field, ids)
    missing = [i for i in ids if i not in shown]
    if missing:
        raise OODInputError(f"{len(missing)} of the {len(ids)} selected objects of {patches_field!r} are not in the "
                            f"current view (e.g. {missing[0]!r}: selected on another view, or deleted meanwhile); "
                            "nothing was tagged: clear the selection and select them again")
    return dict(review_objects(chosen, patches_field, decision), field=patches_field, left_alone=left_alone)


def _shown_objects(samples, field, ids):
    """``samples`` reduced to the objects of ``field`` with these ids, and the ids it shows (a patches view's
    field holds one object per patch, a sample view's Detections field a list)."""
    from bson import ObjectId

    valid = [i for i in ids if isinstance(i, str) and ObjectId.is_valid(i)]
    schema = samples.get_field(field)
    if not valid or schema is None:  # a view hiding the field shows none of its objects
        return None, set()
    chosen = samples.select_labels(ids=valid, fields=field)
    path = f"{field}.detections.id" if schema.document_type.__name__ == "Detections" else f"{field}.id"
    return chosen, {i for row in chosen.values(path) for i in (row if isinstance(row, list) else [row]) if i}


def _labels_text(num):
    return f"{num} selected label{'' if num == 1 else 's'}"


def review_message(out):
    """The notification after a review: what was tagged, and the selected labels of other fields left alone."""
    text = f"tagged {out['num']} {out['noun']} '{out['tag']}'"
    for field, num in sorted(out.get("left_alone", {}).items()):
        text += (f"; {_labels_text(num)} of field {field!r} {'is' if num == 1 else 'are'} not the run's field "
                 f"{out['field']!r} and {'was' if num == 1 else 'were'} left alone")
    return text


def review_app_selection(dataset, view, selected, selected_labels, patches_field, decision):
    """What a "Tag selected" button does with the App's selection; returns the review (:func:`review_labels` or
    :func:`review_selection`) plus ``message`` (the notification) and ``cleared`` (``"labels"`` or
    ``"samples"``: the selection the panel clears afterwards). Raises OODInputError when nothing is to be tagged.

    The rule when both samples (grid) and labels (modal) are selected: on an object run (``patches_field``) the
    labels win (the finer choice, made on the objects the run scores) and the grid's selection is kept, untouched,
    for a later click; on a sample run the samples win and the labels are left alone (a sample run has no objects
    to tag). The message says which selection was left alone.
    """
    from ood_core.errors import OODInputError

    selected, labels = list(selected or []), list(selected_labels or [])
    grid = f"{len(selected)} {_SELECTED.get(selected_noun(view), 'item(s)')}"
    if patches_field and labels:
        out = review_labels(dataset, view, labels, patches_field, decision)
        kept = f"; the {grid} checked in the grid were not tagged (the labels selected in the modal come first on " \
               "an object run) and stay selected" if selected else ""
        return dict(out, message=review_message(out) + kept, cleared="labels")
    in_modal = f"{len(labels)} label{'' if len(labels) == 1 else 's'} selected in the modal"
    if not selected:
        hint = f"; the {in_modal} {'is' if len(labels) == 1 else 'are'} tagged only on an object-level run (pick one " \
               "in 'Score run')" if labels else ""
        raise OODInputError(f"Select {selected_noun(view)} in the grid first (checkbox on each one){hint}")
    out = review_selection(dataset, view, selected, patches_field, decision)
    left = f"; the {in_modal} {'was' if len(labels) == 1 else 'were'} left alone: labels are tagged only on an " \
           "object-level run" if labels else ""
    return dict(out, message=review_message(out) + left, cleared="samples")


def selection_text(view, selected, selected_labels, patches_field):
    """The panel's count of what the buttons act on: the grid's selection and, on an object run, the objects of
    the run's field selected in the modal (labels of other fields counted apart: they are left alone)."""
    text = f"{len(selected or [])} {_SELECTED.get(selected_noun(view), 'item(s)')} selected in the grid"
    if not patches_field:
        return text
    labels = [label for label in selected_labels or [] if isinstance(label, dict)]
    ours = sum(label.get("field") == patches_field for label in labels)
    others = f" (and {len(labels) - ours} label(s) of other fields)" if len(labels) > ours else ""
    return f"{text}, {ours} object(s) of `{patches_field}` selected in the modal{others}"
