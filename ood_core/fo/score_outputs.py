"""The fields a score run writes next to its scores: calibrated p-values (``<score>_pvalue``, every OOD run of
the k-NN family) and suggested labels (``<score>_suggestion``, wrong-label detectors that vote for a class)."""

from .items import patch_path


def extra_outputs(samples, det, keys, labels, scores, ref_scores, score_field, patches_field, read_ids=None):
    """Fields written next to the scores: suggested labels (label-issue detectors that vote for a class)
    and calibrated p-values (OOD detectors). Returns ``(extra writes, run-record entries)``. ``read_ids``: the
    items the scores were computed from, as for :func:`.runs.record_scores` (they alone get values)."""
    import fiftyone.core.fields as fof

    from .items import values_by_key

    writes, record = [], {}
    suggested = getattr(det, "suggested_labels_", None)
    if suggested is not None and len(suggested) == len(keys):
        path = patch_path(patches_field, f"{score_field}_suggestion") if patches_field else f"{score_field}_suggestion"
        by_key = suggestions_by_key(keys, labels, suggested, det.class_probabilities_.max(axis=1))
        if by_key:  # FiftyOne cannot declare a Classification field from None values only: no field then
            if patches_field:  # an object attribute: the class name
                writes.append((path, values_by_key(samples, by_key, patches_field, _suggested_class, read_ids),
                               fof.StringField))
            else:
                writes.append((path, values_by_key(samples, by_key, None, _suggestion_label, read_ids)))
        record["suggestion"] = {"field": path if by_key else None, "num_suggested": len(by_key),
                                "meaning": SUGGESTION_MEANING}
    if det.task == "ood" and ref_scores is not None and len(ref_scores):
        more_writes, more_record = p_value_outputs(samples, keys, scores, ref_scores, score_field, patches_field,
                                                   read_ids=read_ids)
        writes += more_writes
        record.update(more_record)
    return writes, record


def p_value_outputs(samples, keys, scores, ref_scores, score_field, patches_field=None, read_ids=None):
    """The calibrated p-values every OOD score run writes next to its scores (``<score_field>_pvalue``): the
    share of reference items scoring at least as high (:func:`ood_core.calibration.conformal_p_values`) from
    their leave-one-out scores ``ref_scores`` (the scored set's own without a reference). Returns ``(writes,
    {"calibration": ...})`` for :func:`.runs.record_scores`, given the same ``read_ids``."""
    import fiftyone.core.fields as fof

    from ..calibration import conformal_p_values
    from .items import values_by_key

    path = patch_path(patches_field, f"{score_field}_pvalue") if patches_field else f"{score_field}_pvalue"
    p_values = conformal_p_values(ref_scores, scores)
    writes = [(path, values_by_key(samples, dict(zip(keys, p_values)), patches_field, read_ids=read_ids),
               fof.FloatField)]
    return writes, {"calibration": {
        "field": path, "num_reference": int(len(ref_scores)),
        "meaning": "conformal p-value: (1 + number of reference items scoring at least as high) / "
                   "(n_reference + 1), from leave-one-out reference scores; small = more extreme",
    }}


#: what ``<score_field>_suggestion`` holds, in the run record (README "Detectors" says the same)
SUGGESTION_MEANING = ("only where it differs from the given label (None elsewhere): the class the neighbours' votes, "
                      "averaged with the LDA probabilities, favour (confidence = its share); objects store the "
                      "class name")


def suggestions_by_key(keys, labels, suggested, confidences):
    """``{key: (suggested class, confidence)}`` of the items whose suggested class differs from their given label
    (a label that agrees, or no label, suggests nothing, so the App shows no suggestion there)."""
    given = [None] * len(keys) if labels is None else labels
    return {key: (str(lab), float(p)) for key, label, lab, p in zip(keys, given, suggested, confidences)
            if label is not None and str(lab) != str(label)}


def _suggestion_label(value):
    import fiftyone.core.labels as fol

    return None if value is None else fol.Classification(label=value[0], confidence=value[1])


def _suggested_class(value):
    return None if value is None else value[0]
