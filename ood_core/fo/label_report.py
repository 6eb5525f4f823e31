"""Per-class wrong-label report (Wulz & Krispel, Exp. 3) on a FiftyOne view.

Positive class: "label is wrong"; higher score = label more likely wrong.
"""

import numpy as np

from ..errors import OODInputError
from . import runs
from .canonical_order import in_canonical_order
from .experiments import Table, record_table


def _wrong_label_truth(samples, gt_field, patches, keys, labels):
    """Per-key True (label wrong) / False / None from a boolean field or a true-label field."""
    import fiftyone.core.fields as fof
    import fiftyone.core.labels as fol

    from .items import item_columns

    dataset = samples._dataset
    path = gt_field
    if patches is not None and "." not in gt_field and dataset.get_field(gt_field) is None:
        path = f"{patches}.detections.{gt_field}"
    field = dataset.get_field(path)
    if getattr(field, "document_type", None) is fol.Classification:
        path = f"{path}.label"
    elif field is not None and not isinstance(field, (fof.BooleanField, fof.IntField, fof.StringField)):
        raise OODInputError(
            f"gt_field {gt_field!r} is a {type(field).__name__}; pass a boolean field (True = label is wrong, e.g. "
            "'label_is_wrong'), a string or Classification field with the true class names"
        )
    elif field is None and not (patches and dataset.count(path)):
        raise OODInputError(
            f"gt_field {gt_field!r} does not exist; pass a boolean field (True = label is wrong, e.g. "
            "'label_is_wrong') or a field with the true class names"
        )
    id_path = "id" if patches is None else f"{patches}.detections.id"
    by_id = dict(zip(*item_columns(samples, [id_path, path], patches)[0]))  # one read: ids with their own values
    values = [by_id.get(key) for key in keys]
    flags = _is_flag_field(gt_field, [v for v in values if v is not None])
    if not flags:
        _require_shared_names(gt_field, values, labels)
    # a "label is wrong" flag, or a true class name compared with the given label (decided once for the field)
    truth = [None if v is None else bool(v) if flags else str(v) != str(label) for v, label in zip(values, labels)]
    return truth, path


def _require_shared_names(gt_field, values, labels):
    """True class names that share none with the labels (e.g. "yes" / "no" flags as strings) would call every
    label wrong: refuse."""
    names = {str(v) for v in values if v is not None}
    if names and not names & {str(label) for label in labels if label is not None}:
        raise OODInputError(
            f"gt_field {gt_field!r} holds {sorted(names)[:5]}, none of them a class of the label field, so every "
            "label would count as wrong; pass the true class names as the label field names them, or a boolean "
            "field (True = label is wrong)")


def _is_flag_field(gt_field, values):
    """Whether ``values`` are "label is wrong" flags (bools, or integers 0 / 1) rather than true class names."""
    is_bool = [isinstance(v, (bool, np.bool_)) for v in values]
    is_int = [isinstance(v, (int, np.integer)) and not b for v, b in zip(values, is_bool)]
    if all(b or (i and v in (0, 1)) for v, b, i in zip(values, is_bool, is_int)):
        return True
    if any(is_bool) or any(is_int):
        raise OODInputError(
            f"gt_field {gt_field!r} holds numbers other than 0 / 1 (class indices?); pass a boolean field (True = "
            "label is wrong) or a field with the true class names, as the label field names them")
    return False


def _require_float_field(dataset, path, patches):
    import fiftyone.core.fields as fof

    field = dataset.get_field(path)
    if field is None and not (patches and dataset.count(path)):
        raise OODInputError(f"score_field {path!r} does not exist; pass the field of a label-issue score run "
                            "(e.g. 'label_issue'), or embeddings_field= to compute the scores")
    if field is not None and not isinstance(field, (fof.FloatField, fof.IntField)):
        raise OODInputError(f"score_field {path!r} is a {type(field).__name__}, not one number per item; pass the "
                            "field of a label-issue score run (e.g. 'label_issue')")


def label_error_report(samples, label_field, embeddings_field=None, *, method="label_agreement", k=None,
                       gt_field=None, score_field=None, run_key=None, overwrite=False):
    """Per-class table of wrong-label scores (paper Exp. 3); higher score = more suspicious.

    Scores come from ``score_field`` when given (e.g. an existing
    ``compute_label_issues`` field), else they are computed unsupervised on
    ``samples`` with ``method`` and **not written**: any wrong-label detector (the paper's Exp. 3 compares
    ``"label_agreement"``, this function's default, with ``"class_lof"``; the package's default for
    ``compute_label_issues`` is ``"weighted_label_vote"``).

    Args:
        label_field: Classification field (or Detections: one row per object class).
        gt_field: optional ground truth: a boolean field (True = label is wrong)
            or a field with the true class names (Classification or string);
            positive class = "label is wrong".

    Returns:
        :class:`Table`, one row per given class, sorted by ``mean_score``
        (most suspicious class first): ``class``, ``count``, ``mean_score``,
        ``median_score``, ``max_score``; with ground truth also ``num_wrong``,
        ``wrong_rate`` and ``auroc`` (positive = wrong label; None when the
        class has no wrong or no correct labels).
    """
    from sklearn.metrics import roc_auc_score

    from ..detectors import detector_names
    from .scores import label_kind, read_embeddings, score_arrays

    if method not in detector_names("label_issues"):
        raise OODInputError(f"method must be one of {detector_names('label_issues')}; got {method!r}")
    if run_key is not None:
        runs.check_new_run(samples, run_key, [], overwrite, kind="experiment")
    patches = label_field if label_kind(samples, label_field) == "detections" else None
    if score_field is not None:
        from .items import item_columns

        label_path = f"{patches}.detections.label" if patches else f"{label_field}.label"
        spath = f"{patches}.detections.{score_field}" if patches and "." not in score_field else score_field
        _require_float_field(samples._dataset, spath, patches)
        id_path = "id" if patches is None else f"{patches}.detections.id"
        columns, _ = item_columns(samples, [id_path, spath, label_path], patches)  # one read: a view may reorder
        triples = [t for t in zip(*columns) if t[1] is not None and t[2] is not None]
        if not triples:
            raise OODInputError(f"no item has both a score in {spath!r} and a label in {label_field!r}")
        keys, scores, labels = (list(x) for x in zip(*triples))
        from .score_reads import check_score_values  # NaN: a NaN class mean sorted anywhere, or sklearn's raw error

        scores = np.asarray(check_score_values(spath, scores), np.float64)
        source = {"score_field": spath}
    else:
        if embeddings_field is None:
            raise OODInputError("pass embeddings_field (to compute scores) or score_field (existing scores)")
        keys, X, labels = read_embeddings(samples, embeddings_field, patches, label_field)
        keys, X, labels = in_canonical_order(samples, patches, keys, X, labels)  # scores independent of view order
        scores, det, _ = score_arrays(X, method=method, labels=labels, k=k)
        source = {"detector": det.get_params(), "embeddings_field": embeddings_field}
    truth, gt_path = (None, None) if gt_field is None else _wrong_label_truth(samples, gt_field, patches, keys, labels)

    labels = np.asarray(labels, dtype=object)
    rows = []
    for cls in sorted(set(labels.tolist()), key=str):
        rows_c = np.flatnonzero(labels == cls)
        s = scores[rows_c]
        row = {"class": cls, "count": int(rows_c.size), "mean_score": float(s.mean()),
               "median_score": float(np.median(s)), "max_score": float(s.max())}
        if truth is not None:
            known = [i for i in rows_c if truth[i] is not None]
            y = np.array([truth[i] for i in known], dtype=bool)
            row["num_wrong"] = int(y.sum())
            row["wrong_rate"] = float(y.mean()) if known else None
            row["auroc"] = float(roc_auc_score(y, scores[known])) if 0 < y.sum() < len(y) else None
        rows.append(row)
    rows.sort(key=lambda r: -r["mean_score"])
    table = Table(rows, info={
        "experiment": "label_error_report",
        "label_field": label_field,
        "level": "object" if patches else "sample",
        "positive_class": "label is wrong" + (f" ({gt_path})" if gt_path else ""),
        "score_convention": "higher = label more likely wrong",
        "num_items": int(len(scores)),
        **source,
    })
    if run_key is not None:
        record_table(samples, run_key, "experiment", overwrite, table, experiment="label_error_report",
                label_field=label_field, gt_field=gt_field)
    return table
