"""The review panel's data, plots and text, on datasets and arrays (no App event code).

The :class:`~operators.panel.OODReviewPanel` only wires these to App events, so
they are tested without a browser (``tests/test_panel.py``). Conventions: scores
are higher = more suspicious; an item is flagged when ``score >= threshold``;
the ground-truth field is True for the positive class.
"""

import numpy as np

REVIEW_TAGS = {"confirmed": "ood_confirmed", "dismissed": "ood_dismissed"}

#: Fraction of samples flagged by the default threshold (top 5% of scores).
DEFAULT_TOP_FRACTION = 0.05

_HIST_BINS = 40
_MAX_CURVE_POINTS = 400


# --------------------------------------------------------------------------- data (no App needed)


def score_runs(samples):
    """Keys of the score runs on the dataset (score kinds of the run-kind registry), sample- or object-level,
    whose score field exists."""
    from ood_core.fo import runs as fo_runs
    from ood_core.fo.run_sync import one_look

    with one_look():  # one look at the runs for the listing and every record read below (not one per run)
        return _score_run_keys(samples, fo_runs)


def _score_run_keys(samples, fo_runs):
    keys = []
    for key in fo_runs.list_ood_runs(samples):
        info = fo_runs.get_ood_run_info(samples, key)
        path = fo_runs.score_path(info)
        # a run whose score field (object runs: their label field) was deleted or renamed by hand has nothing
        # to review; object attributes need not be declared in the schema, so only their label field is checked
        kept = path and samples._dataset.get_field(info.get("patches_field") or path) is not None
        if fo_runs.run_kind(info["kind"]).is_score and kept:
            keys.append(key)
    return keys


def run_summary(samples, run_key):
    """``{"run_key", "kind", "score_field", "patches_field", "positive", "negative", "method",
    "reference_tag", "calibration", "timestamp"}`` of a score run (``timestamp``: when it was computed, new
    when it is computed again under the same key).

    ``score_field`` comes from the run record (:func:`ood_core.fo.runs.score_path`);
    for object runs it is ``<patches_field>.detections.<score>``.
    """
    from ood_core.errors import OODInputError
    from ood_core.fo import runs as fo_runs

    info = fo_runs.get_ood_run_info(samples, run_key)
    kind = info.get("kind")
    path = fo_runs.score_path(info)
    if path is None:
        raise OODInputError(
            f"run {run_key!r} is a {kind!r} run, not a score run; pick one of {score_runs(samples)}"
        )
    positive, negative = fo_runs.run_kind(kind).class_names
    detector = info.get("detector") or {}
    method = detector.get("method") or detector.get("name") or kind
    return {"run_key": run_key, "kind": kind, "score_field": path, "patches_field": info.get("patches_field"),
            "positive": positive, "negative": negative, "method": method,
            "reference_tag": (info.get("reference") or {}).get("tag"),
            "calibration": info.get("calibration") or None, "timestamp": info.get("timestamp")}


def boolean_fields(samples, patches_field=None):
    """Boolean fields usable as ground truth (True = positive class).

    Sample-level runs: top-level boolean fields. Object-level runs
    (``patches_field``): boolean attributes of the objects
    (``<patches_field>.detections.<attr>``). Flag fields written by
    ``ood.flag_samples`` are left out: they are decisions derived from the
    scores, not ground truth.
    """
    import fiftyone.core.fields as fof

    from ood_core.fo import runs as fo_runs

    dataset = samples._dataset
    flag_fields = set()
    for key in fo_runs.list_ood_runs(samples, kind="flags"):
        flag_fields.update(dataset.get_run_info(key).config.fields or [])
    if patches_field:
        prefix = f"{patches_field}.detections"
        # declared attributes, plus dynamic ones that nobody declared with add_dynamic_sample_fields()
        schema = dict(dataset.get_field_schema(flat=True))
        schema.update(dataset.get_dynamic_field_schema() or {})
        names = [name for name, f in schema.items() if isinstance(f, fof.BooleanField)
                 and name.startswith(prefix + ".") and name.count(".") == 2]
    else:
        names = list(dataset.get_field_schema(ftype=fof.BooleanField))
    return sorted(name for name in names if name not in flag_fields)


def read_scores(samples, score_field, gt_field=None, patches_field=None, *, with_ids=True):
    """Scores of the items (samples, or objects of ``patches_field``) that have one: ``(ids, scores, is_positive)``.

    ``scores`` is a float array (higher = more suspicious). With ``gt_field``,
    only items with both a score and a ground-truth value are returned and
    ``is_positive`` is a bool array (True = positive class); else it is None.
    ``with_ids=False`` skips reading the item ids (``ids`` is then None). One
    pass over the view (:func:`ood_core.fo.items.item_columns`).
    """
    ids, scores, is_positive, _, _ = _read_score_columns(samples, score_field, gt_field, patches_field, with_ids)
    return ids, scores, is_positive


def _read_score_columns(samples, score_field, gt_field, patches_field, with_ids, keep_unlabelled=False):
    """:func:`read_scores` plus the number of samples of the view and the mask of the returned items that have
    ground truth (None without ``gt_field``). ``keep_unlabelled``: every scored item is returned (``is_positive``
    then covers the labelled ones only). NaN / infinite scores are refused, naming the field."""
    from ood_core.errors import OODInputError
    from ood_core.fo.score_reads import check_score_values
    from ood_core.fo.items import item_columns

    id_path = "id" if patches_field is None else f"{patches_field}.detections.id"
    paths = ([id_path] if with_ids else []) + [score_field] + ([gt_field] if gt_field else [])
    columns, num_samples = item_columns(samples, paths, patches_field)
    ids = columns.pop(0) if with_ids else None
    raw = columns[0]
    gt = columns[1] if gt_field else [False] * len(raw)
    keep = [i for i, (s, g) in enumerate(zip(raw, gt)) if s is not None and (keep_unlabelled or g is not None)]
    kept = check_score_values(score_field, [raw[i] for i in keep])  # numbers, finite: else named with the fix
    if any(isinstance(v, bool) for v in kept):
        raise OODInputError(f"field {score_field!r} must hold one number per sample; found a bool")
    scores = np.array(kept, dtype=np.float64)
    labelled = np.array([gt[i] is not None for i in keep], dtype=bool) if gt_field else None
    is_positive = np.array([bool(gt[i]) for i in keep if gt[i] is not None], dtype=bool) if gt_field else None
    return ([ids[i] for i in keep] if with_ids else None), scores, is_positive, num_samples, labelled


# --------------------------------------------------------------------------- kept between App events

def view_scores(samples, score_field, gt_field=None, patches_field=None):
    """What the panel shows of a view, kept between App events until the dataset changes
    (:func:`ood_core.fo.form_cache.memo`): ``{"scores", "is_positive", "labelled", "num_samples"}``: the scores
    of every scored item (also those without ground truth: the flag counts and thresholds cover them), the mask
    ``labelled`` of those with ground truth (None without ``gt_field``) and ``is_positive`` of those.

    A slider move re-renders the panel, and reading the scores scans every document of the view (about 1 s at
    200,000 samples with an embeddings field); re-scoring, editing a score by hand, tagging or deleting
    samples all read again.
    """
    from ood_core.fo.form_cache import SCORE_READS, memo
    from ood_core.fo.view_checks import GROUP_BY_APP_FIX, require_not_dynamic_groups

    # the App's "group by": values() reads one sample per group, so the histogram, threshold and flags would be theirs
    require_not_dynamic_groups(samples, app_fix=f"{GROUP_BY_APP_FIX} to review the run on all of them")

    def read(view, *_):
        _, scores, is_positive, num_samples, labelled = _read_score_columns(view, score_field, gt_field,
                                                                            patches_field, False, True)
        return {"scores": scores, "is_positive": is_positive, "labelled": labelled, "num_samples": num_samples}

    return memo(samples, "panel_scores", read, score_field, gt_field, patches_field, store=SCORE_READS)


def shown_objects(patches, patches_field):
    """What the panel reviews on a patches view of an object run's label field ``patches_field`` (``to_patches``,
    or evaluation patches holding it): ``{"samples", "shown", "total"}``, the view of the source dataset (where the
    run and its scores are) that shows exactly the patches' objects
    (:func:`ood_core.fo.patches_views.source_objects_view`, the path ``ood.evaluate_ood_run`` takes; the whole
    dataset when they are every object of the field), and the numbers of objects shown and in the dataset.

    Kept until the patches or the source dataset change (:func:`ood_core.fo.form_cache.memo`, keyed by the
    patches view's stages: two filters of the same patches are two answers). Raises OODInputError when the patches
    show no object, or more than ``MAX_LISTED_OBJECTS`` objects while hiding as many."""
    from ood_core.fo.form_cache import data_version, memo
    from ood_core.fo.patches_views import source_objects_view

    root = patches._root_dataset

    def build(view, field, _):
        path = f"{field}.detections"
        total = int(root.count(path))
        source = source_objects_view(view, field)
        shown = int(source.count(path))
        return {"samples": root.view() if shown == total else source, "shown": shown, "total": total}

    return memo(patches, "panel_source_objects", build, patches_field, data_version(root))


def default_threshold(scores):
    """The threshold that flags the top :data:`DEFAULT_TOP_FRACTION` of ``scores`` (ties flagged)."""
    from ood_core import thresholds

    if len(scores) == 0:
        return 0.0
    return float(thresholds.top_fraction(scores, DEFAULT_TOP_FRACTION).threshold)


def count_flagged(scores, threshold):
    """How many scores are flagged: ``score >= threshold``."""
    from ood_core import thresholds

    return int(thresholds.apply_threshold(scores, threshold).sum())


def flagged_view(samples, score_field, threshold, patches_field=None):
    """The samples with ``score >= threshold``, highest score first.

    Object runs: the samples with a flagged object, showing only their flagged
    objects, ordered by their highest object score.
    """
    from fiftyone import ViewField as F

    if patches_field:
        attr = score_field.rsplit(".", 1)[1]
        view = samples.filter_labels(patches_field, F(attr) >= float(threshold))
        return view.sort_by(F(f"{patches_field}.detections").map(F(attr)).max(), reverse=True)
    return samples.match(F(score_field) >= float(threshold)).sort_by(score_field, reverse=True)


#: threshold presets: name -> (label, value label, default value)
PRESETS = {
    "top_fraction": ("Top fraction of scores", "fraction flagged", DEFAULT_TOP_FRACTION),
    "percentile": ("Percentile of the trusted samples", "share of trusted samples that pass", 0.95),
    "fpr": ("Target false-positive rate (needs ground truth)", "allowed FPR", 0.05),
    "top_n": ("Top N", "N", 50),
    "pvalue": ("Calibrated p-value", "flag when p-value <=", 0.05),
}


def available_presets(summary, gt_field):
    """The presets that make sense for this run: FPR needs ground truth, p-value needs a calibration."""
    names = ["top_fraction", "percentile", "top_n"]
    if gt_field:
        names.insert(2, "fpr")
    if pvalue_field(summary):
        names.append("pvalue")
    return names


def pvalue_field(summary):
    """The p-value field a calibrated score run records (``calibration``), or None."""
    calibration = summary.get("calibration") or {}
    if not isinstance(calibration, dict):
        return None
    return calibration.get("pvalue_field") or calibration.get("field")


def preset_threshold(samples, summary, preset, value, scores, is_positive=None, labelled=None):
    """The threshold of a preset on the scores of ``samples``: ``(threshold, sentence)``.

    ``is_positive`` is aligned with ``scores``, or with ``scores[labelled]`` when the mask ``labelled`` of the
    items with ground truth is given (:func:`view_scores`).

    - ``top_fraction`` / ``top_n``: the top ``value`` (fraction / count) of the scores (ties flagged,
      except a tie at the lowest score);
    - ``percentile``: ``value`` of the trusted samples (the run's reference tag, else ``trusted``) pass;
    - ``fpr``: at most ``value`` of the negative class flagged (ground truth needed);
    - ``pvalue``: flagged when the calibrated p-value is ``<= value`` (runs with a calibration).
    """
    from ood_core import thresholds
    from ood_core.errors import OODInputError
    from ood_core.fo import inventory

    if len(scores) == 0:
        raise OODInputError("no scored item in the current view: nothing to threshold")
    if preset == "top_fraction":
        return float(thresholds.top_fraction(scores, float(value)).threshold), f"top {100 * float(value):g}%"
    if preset == "top_n":
        n = min(int(value), len(scores))
        return float(thresholds.top_n(scores, n).threshold), f"top {n}"
    if preset == "fpr":
        if is_positive is None:
            raise OODInputError("the FPR preset needs a ground-truth field: choose one above")
        labelled_scores = scores if labelled is None else scores[labelled]
        if len(labelled_scores) == 0:
            raise OODInputError("no scored item in the current view has ground truth: the FPR preset needs some")
        return (float(thresholds.threshold_at_fpr(labelled_scores, is_positive, float(value)).threshold),
                f"FPR <= {100 * float(value):g}%")
    if preset == "percentile":
        tag = summary.get("reference_tag") or inventory.default_reference_tag(samples)
        if not tag:
            raise OODInputError("the percentile preset needs trusted samples: tag them 'trusted' (or score the run "
                                "with a reference tag)")
        ref = view_scores(samples._dataset.match_tags(tag), summary["score_field"],
                          patches_field=summary.get("patches_field"))["scores"]
        if len(ref) == 0:
            raise OODInputError(
                f"no '{tag}' sample has a score in {summary['score_field']!r}: score the trusted samples too "
                "(score the whole dataset with reference_tag='trusted')")
        return (float(thresholds.percentile_of_reference(ref, float(value)).threshold),
                f"{100 * float(value):g}% of '{tag}' pass")
    if preset == "pvalue":
        field = pvalue_field(summary)
        if not field:
            raise OODInputError(f"run {summary['run_key']!r} has no calibrated p-values")
        from ood_core.fo.score_reads import require_recorded_field
        from ood_core.fo.items import item_columns

        require_recorded_field(samples._dataset, summary["run_key"], field, summary.get("patches_field"),
                                "its calibrated p-values")

        (raw, pvalues), _ = item_columns(samples, [summary["score_field"], field], summary.get("patches_field"))
        pairs = zip(raw, pvalues)
        flagged = [sc for sc, pv in pairs if sc is not None and pv is not None and pv <= float(value)]
        # p-values fall as scores rise: the lowest flagged score is the score threshold
        threshold = float(min(flagged)) if flagged else float(np.nextafter(scores.max(), np.inf))
        return threshold, f"p-value <= {float(value):g}"
    raise OODInputError(f"unknown preset {preset!r}; presets are {sorted(PRESETS)}")


def review_samples(samples, sample_ids, decision):
    """Record a review decision on samples as a tag; returns what changed.

    ``decision`` is ``"confirmed"`` (tag ``ood_confirmed``) or ``"dismissed"``
    (tag ``ood_dismissed``); the opposite decision's tag is removed from the
    same samples, so a sample carries at most one of the two.
    Returns ``{"tag", "num_samples", "num_tagged", "num_untagged"}``.
    """
    from ood_core.errors import OODInputError

    if decision not in REVIEW_TAGS:
        raise OODInputError(f"decision must be one of {sorted(REVIEW_TAGS)}; got {decision!r}")
    tag = REVIEW_TAGS[decision]
    other = next(t for d, t in REVIEW_TAGS.items() if d != decision)
    ids = list(dict.fromkeys(sample_ids or []))
    if not ids:
        return {"tag": tag, "num_samples": 0, "num_tagged": 0, "num_untagged": 0}
    from bson import ObjectId

    bad = [i for i in ids if not ObjectId.is_valid(i)]
    if bad:
        raise OODInputError(f"{len(bad)} of the selected ids are not sample ids (e.g. {bad[0]!r})")
    view = samples._dataset.select(ids)
    if len(view) != len(ids):
        raise OODInputError(f"{len(ids) - len(view)} of the selected sample ids are not in this dataset")
    num_tagged = len(view) - view.count_sample_tags().get(tag, 0)
    num_untagged = view.count_sample_tags().get(other, 0)
    view.untag_samples(other)
    view.tag_samples(tag)
    return {"tag": tag, "num_samples": len(ids), "num_tagged": num_tagged, "num_untagged": num_untagged}


def review_counts(samples):
    """``{"confirmed": n, "dismissed": n}``: review tags among ``samples``."""
    # only the reviewed samples are unwound: counting every tag of the view costs 0.25 s at 200,000 samples
    counts = samples.match_tags(list(REVIEW_TAGS.values())).count_sample_tags()
    return {decision: int(counts.get(tag, 0)) for decision, tag in REVIEW_TAGS.items()}


def default_flag_tag(summary):
    """The tag "save as flags" suggests: ``label_issue`` for wrong-label runs, else ``ood``."""
    return "label_issue" if summary["kind"] == "label_issues" else "ood"


def strip_panel_view(view, stored_stages, stored_base):
    """The view to read: the App's view, unless it is the flagged view this panel opened (then its base).
    ``stored_*``: the views' stages as extended JSON (``bson.json_util``: ObjectIds stay ObjectIds)."""
    import fiftyone.core.view as fov
    from bson import json_util

    try:
        stages, base = json_util.loads(stored_stages), json_util.loads(stored_base)
    except Exception:  # none stored, or a value this panel did not write (json_util raises many error types)
        return view
    if not _is_stage_list(stages) or not _is_stage_list(base):
        return view
    if _stage_signature(view._serialize()) != _stage_signature(stages):
        return view
    try:
        return fov.DatasetView._build(view._root_dataset, base)  # (a patches view's stages start at its source)
    except Exception:  # stages that no longer load (another FiftyOne version's): read the App's view as it is
        return view


def _is_stage_list(stages):
    return isinstance(stages, list) and all(isinstance(st, dict) for st in stages)


def _stage_signature(stages):
    import json

    return json.dumps([(st.get("_cls"), st.get("kwargs")) for st in stages], sort_keys=True, default=str)


def evaluate(scores, is_positive, threshold):
    """Metrics (``ood_core.metrics.ood_metrics``) plus the rates at ``threshold``, or None.

    None when the ground truth has only one class (AUROC is undefined).
    """
    from ood_core import thresholds
    from ood_core.metrics import ood_metrics

    if is_positive is None or len(scores) == 0 or is_positive.all() or not is_positive.any():
        return None
    metrics = ood_metrics(scores, is_positive)
    metrics["at_threshold"] = thresholds.rates_at_threshold(scores, is_positive, threshold)
    return metrics


# --------------------------------------------------------------------------- plots (plotly JSON)


def histogram_traces(scores, is_positive=None, names=("OOD", "ID"), noun="samples", labelled=None):
    """Plotly bar traces of the score histogram (pre-binned, so large datasets stay small).

    Without ground truth: one trace "all <noun>"; with it, one trace per class
    (``names`` = (positive, negative)) on shared bins. ``labelled``: the mask of the scores with ground truth
    (``is_positive`` is aligned with ``scores[labelled]``); the others get a trace "no ground truth".
    """
    if len(scores) == 0:
        return []
    lo, hi = float(scores.min()), float(scores.max())
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, _HIST_BINS + 1)
    centers = ((edges[:-1] + edges[1:]) / 2).tolist()
    width = float(edges[1] - edges[0])
    known = scores if labelled is None or is_positive is None else scores[labelled]
    groups = [(f"all {noun}", scores, "#6c8ebf")] if is_positive is None else [
        (names[1], known[~is_positive], "#4e9a06"), (names[0], known[is_positive], "#cc0000")]
    if is_positive is not None and labelled is not None and not labelled.all():
        groups.append(("no ground truth", scores[~labelled], "#9e9e9e"))
    traces = []
    for name, values, color in groups:
        counts, _ = np.histogram(values, bins=edges)
        traces.append({"type": "bar", "name": name, "x": centers, "y": counts.tolist(), "width": width,
                       "opacity": 0.65, "marker": {"color": color}})
    return traces


def _thin(*arrays):
    n = len(arrays[0])
    if n <= _MAX_CURVE_POINTS:
        return [a.tolist() for a in arrays]
    idx = np.unique(np.linspace(0, n - 1, _MAX_CURVE_POINTS).round().astype(int))
    return [a[idx].tolist() for a in arrays]


def curve_traces(scores, is_positive, threshold):
    """ROC and PR curves (positive class = True) with the operating point at ``threshold``.

    Returns ``(roc_traces, pr_traces)`` for plotly.
    """
    from sklearn.metrics import precision_recall_curve, roc_curve

    from ood_core import thresholds

    fpr, tpr, _ = roc_curve(is_positive, scores)
    precision, recall, _ = precision_recall_curve(is_positive, scores)
    at = thresholds.rates_at_threshold(scores, is_positive, threshold)
    fpr_l, tpr_l = _thin(fpr, tpr)
    rec_l, prec_l = _thin(recall, precision)
    point = {"type": "scatter", "mode": "markers", "name": "threshold", "marker": {"size": 11, "color": "#f57c00"}}
    roc = [{"type": "scatter", "mode": "lines", "name": "ROC", "x": fpr_l, "y": tpr_l},
           {"type": "scatter", "mode": "lines", "name": "chance", "x": [0, 1], "y": [0, 1],
            "line": {"dash": "dot", "color": "#888"}},
           dict(point, x=[at["fpr"]], y=[at["tpr"]])]
    pr = [{"type": "scatter", "mode": "lines", "name": "PR", "x": rec_l, "y": prec_l}]
    if at["precision"] is not None:
        pr.append(dict(point, x=[at["tpr"]], y=[at["precision"]]))
    return roc, pr


# --------------------------------------------------------------------------- text


def item_noun(summary):
    """What a run scores, for the panel's text: ``objects`` (object runs) or ``samples``."""
    return "objects" if summary.get("patches_field") else "samples"


def metrics_markdown(metrics, summary, gt_field, num_unlabelled=0):
    """Short lines that fit a narrow panel: classes, ranking metrics, rates at the threshold (``num_unlabelled``
    scored items without ground truth are left out of the metrics)."""
    pos, neg = summary["positive"], summary["negative"]
    at = metrics["at_threshold"]

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    return "\n\n".join([
        f"Positive class: **{pos}** (`{gt_field} == True`, {metrics['num_ood']} {item_noun(summary)}) vs {neg} "
        f"({metrics['num_id']}); higher score = more {pos}." + (
            f" {num_unlabelled} scored {item_noun(summary)} without ground truth left out." if num_unlabelled else ""),
        f"**AUROC {metrics['auroc']:.3f}** · AUPR-IN {metrics['aupr_in']:.3f} · AUPR-OUT "
        f"{metrics['aupr_out']:.3f} · FPR95 {pct(metrics['fpr95'])} ({pos} accepted when 95% of {neg} pass)",
        f"At the threshold: TPR {pct(at['tpr'])} of {pos} flagged · FPR {pct(at['fpr'])} of {neg} flagged · "
        f"precision {pct(at['precision'])}",
    ])
