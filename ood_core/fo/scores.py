"""FiftyOne SDK functions: embed, score, visualise, in FiftyOne Brain style.

All public functions accept a ``Dataset`` or any view, validate first, compute
on numpy, then write fields atomically and record a custom run (see
:mod:`ood_core.fo.runs`). Nothing is written when validation or computation
fails, and no existing field or run is replaced unless ``overwrite=True``.

Score convention: **higher = more out-of-distribution / more suspicious**.

Object patches: when ``patches_field`` (or a ``Detections`` ``label_field``)
is given, each object is cropped from its image, embedded and scored on its
own; values are stored as attributes of the objects
(``<patches_field>.detections.<field>``).
"""

import logging

import numpy as np

from . import runs
from ..errors import OODInputError
from ..progress import DetectorSteps, Progress
from .canonical_order import in_canonical_order
from .class_coverage import uncovered_classes, uncovered_classes_sentence
from .inventory import embedding_coverage
from .score_outputs import extra_outputs
from .items import (
    DEFAULT_EMBEDDINGS_FIELD,
    check_patches_field,
    label_kind,
    patch_path,
    read_embeddings,
    read_embeddings_and_ids,
    refuse_label_tagged_reference,
    require_nonempty,
    union_view,
)
# the maps live in .maps; their names stay importable from here (ood_core's public API and the App's form use them)
from .maps import (  # noqa: F401
    MIN_MAP_POINTS,
    VISUALIZATION_METHODS,
    check_map_points,
    compute_ood_visualization,
    first_vector_dim,
)
from .names import validate_key
from .run_kinds import score_kind
from .view_descriptions import resolve_view, view_from_description

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- scoring


def score_arrays(X, *, method, labels=None, X_ref=None, labels_ref=None, ref_index=None,
                 k=None, class_conditional=None, reduce=None, n_components=None, seed=0,
                 neighbor_backend=None, neighbor_index=None, level_dims=None, return_reference_scores=False,
                 transductive=None, progress=None):
    """Score ``X`` with a detector (numpy level, no FiftyOne).

    With a reference set, the detector is fitted on ``X_ref`` and scores
    ``X``; rows of ``X`` that are also reference rows (see ``ref_index``) get the
    self-excluded ``fit_reference_scores`` value instead, so a trusted sample is not its
    own nearest neighbour. ``ref_index[i]`` is the row of ``X_ref`` that is
    the same item as ``X[i]``, or -1. Without a reference, ``fit_score`` scores ``X``
    against itself. ``level_dims``: widths of the pyramid levels of ``X``, for
    detectors that work per level (more than one level: ``levels="auto"``).
    Returns ``(scores, detector, reducer)``, plus the reference's
    leave-one-out scores (the scored set's own without a reference) with
    ``return_reference_scores``. ``progress``: a :class:`~ood_core.progress.Progress` (or None) told of
    :func:`score_steps` steps: fitting, the detector's own while it scores, scoring done (its total must count
    them).
    """
    from ..validation import as_embeddings, check_same_dim

    X = as_embeddings(X, "scored embeddings")
    det, reducer = make_scorer(method, k=k, class_conditional=class_conditional, reduce=reduce,
                               n_components=n_components, seed=seed, neighbor_backend=neighbor_backend,
                               neighbor_index=neighbor_index, level_dims=level_dims, transductive=transductive)
    y = np.asarray(labels, dtype=object) if labels is not None else None
    steps = DetectorSteps(progress, det)
    if X_ref is None:
        if reducer is not None:
            X = reducer.fit_transform(X)
        with steps.detector_reports():
            scores = np.asarray(det.fit_score(X, y), dtype=np.float64)
        steps.fitted()
        steps.scored()
        return (scores, det, reducer, scores) if return_reference_scores else (scores, det, reducer)

    X_ref = as_embeddings(X_ref, "reference embeddings")
    check_same_dim(X_ref, X)
    y_ref = np.asarray(labels_ref, dtype=object) if labels_ref is not None else None
    if reducer is not None:
        X_ref = reducer.fit_transform(X_ref)
        X = reducer.transform(X)
    scores = np.empty(len(X), dtype=np.float64)
    ref_index = np.full(len(X), -1) if ref_index is None else np.asarray(ref_index, np.int64)
    ref_mask = ref_index >= 0
    # fit_reference_scores fits on the reference set too, so the detector is fitted exactly once
    self_scores = None
    if ref_mask.any() or return_reference_scores:
        self_scores = np.asarray(det.fit_reference_scores(X_ref, y_ref), dtype=np.float64)
        scores[ref_mask] = self_scores[ref_index[ref_mask]]
    else:
        det.fit(X_ref, y_ref)
    steps.fitted()
    if (~ref_mask).any():
        with steps.detector_reports():
            scores[~ref_mask] = det.score_samples(X[~ref_mask], None if y is None else y[~ref_mask])
        # a detector whose batch scores include a term relative to the batch (pyramid_knn's density ratio)
        # gives the reference scores on the same scale; trusted rows and calibration use those
        batch_ref = getattr(det, "batch_reference_scores_", None)
        if batch_ref is not None and self_scores is not None:
            self_scores = np.asarray(batch_ref, dtype=np.float64)
            scores[ref_mask] = self_scores[ref_index[ref_mask]]
    steps.scored()
    return (scores, det, reducer, self_scores) if return_reference_scores else (scores, det, reducer)


def make_scorer(method, *, k=None, class_conditional=None, reduce=None, n_components=None, seed=0,
                neighbor_backend=None, neighbor_index=None, level_dims=None, transductive=None):
    """The unfitted detector and reducer (None without ``reduce``) that :func:`score_arrays` scores with: their
    ``get_params()`` are what the run records (:mod:`.view_overwrite` compares them before computing)."""
    from ..detectors import detector_kwargs, make_detector
    from ..reduction import make_reducer

    multi_level = level_dims is not None and len(level_dims) > 1 and not reduce
    det = make_detector(method, **detector_kwargs(
        method, k=k, class_conditional=class_conditional, backend=neighbor_backend, index=neighbor_index,
        level_dims=list(level_dims) if multi_level else None, levels="auto" if multi_level else None,
        transductive=transductive))
    return det, make_reducer(reduce, n_components, seed=seed) if reduce else None


def score_steps(method, transductive=None):
    """The progress steps :func:`score_arrays` reports for ``method``: fitting, scoring and the detector's own."""
    from ..detectors import detector_kwargs, make_detector

    return 2 + make_detector(method, **detector_kwargs(method, transductive=transductive)).progress_units()


def compute_ood_scores(
    samples,
    embeddings_field=DEFAULT_EMBEDDINGS_FIELD,
    score_field="ood_score",
    *,
    method="pyramid_knn",
    reference=None,
    label_field=None,
    patches_field=None,
    k=None,
    class_conditional=None,
    reduce=None,
    n_components=None,
    seed=0,
    neighbor_backend=None, neighbor_index=None,
    run_key=None, score_reference=True, transductive=None, overwrite=False, progress=None,
):
    """Score every sample (or object) of a view; higher = more OOD.

    Supervised (``reference`` given): the detector is fitted on the reference
    samples (a sample tag such as ``"trusted"``, or a view) and scores
    ``samples``; reference samples are scored too (``score_reference=True``),
    with their self-match excluded, so thresholds relative to the reference
    and the App's Embeddings plot have a score for every sample. Unsupervised (``reference=None``): the detector is
    fitted and scored on ``samples`` themselves (per class of
    ``label_field`` for ``"class_lof"`` / ``"label_agreement"``).

    Args:
        method: ``"pyramid_knn"`` (default), ``"knn"``, ``"mahalanobis"``,
            ``"mahalanobis_pp"``, ``"level_fusion"`` or ``"lof"``; wrong-label detectors
            (``"weighted_label_vote"``, ``"label_agreement"``, ``"class_lof"``): see
            :func:`compute_label_issues` (all: :func:`ood_core.detectors.detector_names`).
        label_field: Classification field (or Detections field: objects are
            scored) with the labels the method needs. The default method
            works without labels, but **give the trusted labels when you have
            them**: it then searches neighbours per class and also scores the
            whole pyramid (README "Why the defaults" has the measurements
            with and without them).
        k: neighbours for knn/lof/label_agreement (detector default if None).
        class_conditional: Mahalanobis with class means (needs labels).
        reduce: ``None``, ``"pca"``, ``"umap"`` or ``"random"``, fitted on the
            reference set (or the scored set when unsupervised).
        n_components: target dimension of ``reduce``.
        neighbor_backend: None / ``"auto"`` (faiss when installed, else
            scikit-learn), ``"faiss"`` or ``"sklearn"``; both give the same
            scores with the exact ``"flat"`` index.
        neighbor_index: ``"flat"`` (exact, default), ``"ivf"`` or ``"hnsw"``
            (approximate, faiss only, for very large reference sets).
        run_key: key of the recorded run (default: ``score_field``).
        score_reference: also score the reference samples outside ``samples``
            (self-excluded); False scores ``samples`` only.
        transductive: ``pyramid_knn`` only: ``"auto"`` (default), ``"never"`` or ``"always"`` add the
            scored set's density ratio (README "Options"); ``detector_fitted["transductive"]`` says if it was.
        overwrite: replace the run and its field; on a view, only the view's
            values are replaced and the other samples keep theirs.
        progress: None/True (tqdm), False or ``f(done, total)``, told of each step: reading, fitting,
            the default detector's density-ratio search and each of its permutations, scoring, writing.

    Returns:
        a dict summary (run key, field, counts, score quantiles).
    """
    with Progress(progress, 2, "scoring", unit="step") as bar:
        return _compute_ood_scores(samples, embeddings_field, score_field, method=method, reference=reference,
                                   label_field=label_field, patches_field=patches_field, k=k,
                                   class_conditional=class_conditional, reduce=reduce, n_components=n_components,
                                   seed=seed, neighbor_backend=neighbor_backend, neighbor_index=neighbor_index,
                                   run_key=run_key, score_reference=score_reference, transductive=transductive,
                                   overwrite=overwrite, bar=bar)


def _compute_ood_scores(samples, embeddings_field, score_field, *, method, reference, label_field, patches_field, k,
                        class_conditional, reduce, n_components, seed, neighbor_backend, neighbor_index, run_key,
                        score_reference, transductive, overwrite, bar):
    from ..detectors import detector_class

    require_nonempty(samples)
    run_key = run_key or score_field
    patches_field, use_labels = _check_score_call(samples, score_field, method, label_field, patches_field, k,
                                                  class_conditional, reduce, n_components, embeddings_field,
                                                  score_reference)
    target = patch_path(patches_field, score_field) if patches_field else score_field
    reads = [patch_path(patches_field, embeddings_field) if patches_field else embeddings_field, label_field]
    kind = score_kind(detector_class(method).task)
    runs.check_new_run(samples, run_key, [target], overwrite, reads=reads, kind=kind)  # before any work
    refuse_label_tagged_reference(samples, reference, patches_field)
    if reference is not None and score_reference:
        ref_view, _ = resolve_view(samples, reference, "reference", "trusted in-distribution samples")
        samples = union_view(samples, ref_view)
    bar.extend(score_steps(method, transductive))
    keys, X, labels, X_ref, labels_ref, ref_index, ref_info, read_ids = _read_score_inputs(
        samples, reference, embeddings_field, patches_field, label_field, use_labels, method)
    bar.update(1)
    check_k_fits(k, method, len(X if X_ref is None else X_ref), *fit_set_words(reference, method))
    backbone = runs.embedding_run_config(samples, embeddings_field)
    if overwrite:  # replacing from a view with scores on another scale: refused now rather than after scoring
        from .view_overwrite import refuse_before_scoring

        refuse_before_scoring(samples, run_key, kind, planned_settings(
            samples, embeddings_field, method=method, reference_info=ref_info, label_field=label_field, k=k,
            class_conditional=class_conditional, reduce=reduce, n_components=n_components, seed=seed,
            backbone=backbone, dim=X.shape[1]))
    scores, det, reducer, ref_scores = score_arrays(
        X, method=method, labels=labels, X_ref=X_ref, labels_ref=labels_ref, ref_index=ref_index,
        k=k, class_conditional=class_conditional, reduce=reduce, n_components=n_components, seed=seed,
        neighbor_backend=neighbor_backend, neighbor_index=neighbor_index,
        level_dims=stored_level_dims(backbone, X.shape[1]), return_reference_scores=True, transductive=transductive,
        progress=bar)
    summary = score_summary(run_key, target, scores, len(read_ids), method=method,
                            **_fitted_summary(det),
                            **(uncovered_classes(labels, labels_ref) if det.uses_reference_classes else {}))
    _log_warnings(run_key, summary, label_field)
    extra_writes, extra_record = extra_outputs(samples, det, keys, labels, scores, ref_scores, score_field,
                                                patches_field, read_ids)
    summary.update({k: v["field"] for k, v in extra_record.items()})
    if "suggestion" in extra_record:
        summary["num_suggested"] = extra_record["suggestion"]["num_suggested"]
    runs.record_scores(
        samples, run_key, kind=kind, score_field=score_field,
        scores_by_key=dict(zip(keys, scores)), patches_field=patches_field, extra_writes=extra_writes,
        overwrite=overwrite, results=summary, reads=reads, read_ids=read_ids, embeddings_field=embeddings_field,
        label_field=label_field, detector=det.get_params(), detector_fitted=det.fitted_params(),
        reduction=reducer.get_params() if reducer is not None else None, reference=ref_info, backbone=backbone,
        **extra_record,
    )
    bar.update(1)
    return summary


def _log_warnings(run_key, summary, label_field):
    """Log what the result view warns about: classes without a reference item, and an imbalanced reference
    under the density ratio."""
    if summary.get("uncovered_classes"):
        logger.warning("%s: %s", run_key, uncovered_classes_sentence(summary["uncovered_classes"], label_field))
    if (summary.get("density_ratio") or {}).get("warning"):
        logger.warning("%s: %s", run_key, summary["density_ratio"]["warning"])


def _read_score_inputs(samples, reference, embeddings_field, patches_field, label_field, use_labels, method):
    """Scored and reference embeddings and labels: ``(keys, X, labels, X_ref, labels_ref, ref_index, ref_info,
    read_ids)``; ``read_ids``: every item of the scored read (scored or skipped), the items the write replaces."""
    from ..detectors import detector_class

    keys, X, labels, read_ids = read_embeddings_and_ids(samples, embeddings_field, patches_field, use_labels)
    # rows in canonical order, not the view's: the scores of a set of items do not depend on how a view orders them
    keys, X, labels = in_canonical_order(samples, patches_field, keys, X, labels)
    X_ref, labels_ref, ref_index, ref_info, ref_keys = _read_reference(samples, reference, keys, embeddings_field,
                                                                       patches_field, use_labels)
    if use_labels is None and label_field is not None and detector_class(method).accepts_optional_labels:
        labels, labels_ref = _optional_labels(samples, keys, ref_info, ref_keys, label_field, patches_field)
    return keys, X, labels, X_ref, labels_ref, ref_index, ref_info, read_ids


def _fitted_summary(det):
    """What fitting decided that the result view shows: the density-ratio decision (``density_ratio``), the
    feature components' label accuracy and which sat out (``component_gate``), the number of samples left
    out of the second label vote (``label_suspects``) and of the refitted LDA (``label_lda_issues``); absent when
    not applicable."""
    fitted = det.fitted_params()
    out = {}
    if fitted.get("transductive"):
        out["density_ratio"] = fitted["transductive"]
    if fitted.get("component_accuracy"):
        accuracy = fitted["component_accuracy"]
        out["component_gate"] = {"accuracy": accuracy,
                                 "left_out": [n for n in accuracy if n not in fitted["active_components"]]}
    if fitted.get("num_suspects") is not None:
        out["label_suspects"] = int(fitted["num_suspects"])
    if fitted.get("num_lda_issues") is not None:
        out["label_lda_issues"] = int(fitted["num_lda_issues"])
    return out


def stored_level_dims(backbone, dim):
    """Column widths of the pyramid levels stored in embeddings of dimension ``dim`` (None: unknown or one level)."""
    from ..levels import level_blocks

    if not backbone or not backbone.get("levels"):
        return None
    try:
        blocks = level_blocks(backbone, dim)
    except (OODInputError, ImportError):
        return None  # e.g. projected embeddings: the level blocks are gone
    return [b[3] - b[2] for b in blocks] if len(blocks) > 1 else None


def _optional_labels(samples, keys, ref_info, ref_keys, label_field, patches_field):
    """Labels of the scored and reference items, None where an item has none (they only inform the detector).

    Read from the scored view and the reference view only, not the whole dataset.
    """
    from .items import item_columns

    path = f"{patches_field}.detections.label" if patches_field else f"{label_field}.label"
    id_path = patch_path(patches_field, "id") if patches_field else "id"
    # ids and labels of one read: a view's order may change between two reads
    by_id = dict(zip(*item_columns(samples, [id_path, path], patches_field)[0]))
    if ref_keys is None:
        return [by_id.get(key) for key in keys], None
    ref_view = view_from_description(samples, ref_info)
    by_id.update(zip(*item_columns(ref_view, [id_path, path], patches_field)[0]))
    return [by_id.get(key) for key in keys], [by_id.get(key) for key in ref_keys]


def _check_score_call(samples, score_field, method, label_field, patches_field, k, class_conditional, reduce,
                      n_components, embeddings_field, score_reference=True):
    """Validate a scoring call before anything is read; returns ``(patches_field, label field to read)``."""
    from ..detectors import detector_class, detector_kwargs, requires_labels
    from ..reduction import REDUCERS
    from ..validation import is_int

    validate_key(score_field, "score field")
    for name, value, optional in (("embeddings_field", embeddings_field, False), ("label_field", label_field, True)):
        if not (isinstance(value, str) and value) and not (optional and value is None):
            raise OODInputError(f"{name}={value!r} is not a field name; pass the name of a field as a string"
                                + (", or None" if optional else ", e.g. 'ood_embeddings'"))
    if not isinstance(score_reference, (bool, np.bool_)):
        raise OODInputError(f"score_reference={score_reference!r} is not valid; pass True (also score the trusted "
                            "samples outside the view) or False")
    if reduce and reduce not in REDUCERS:
        raise OODInputError(f"reduce={reduce!r} is not a reducer; pass one of {list(REDUCERS)} or None")
    if reduce and n_components is not None and (not is_int(n_components) or n_components < 1):
        raise OODInputError(f"n_components={n_components!r} is not valid; pass a whole number >= 1, e.g. "
                            f"n_components={DEFAULT_N_COMPONENTS}")
    label_type = label_kind(samples, label_field) if label_field is not None else None
    if label_type == "detections":
        patches_field = patches_field or label_field
    if patches_field is not None:
        check_patches_field(samples, patches_field)
        refuse_other_label_field(label_field, label_type, patches_field)
    needs_labels = requires_labels(method, **detector_kwargs(method, k=k, class_conditional=class_conditional))
    if needs_labels and label_field is None:
        alone = ", or class_conditional=False (one mean and covariance for every class)" if "class_conditional" in \
            detector_class(method)._param_names else ""
        raise OODInputError(
            f"method {method!r} needs class labels: pass label_field='<a Classification or Detections field>'{alone}"
        )
    if reduce and not n_components:
        raise OODInputError(f"reduce={reduce!r} needs n_components (e.g. {DEFAULT_N_COMPONENTS})")
    if n_components is not None and not reduce:
        raise OODInputError(f"n_components={n_components!r} sets the dimension of a reduction, but reduce={reduce!r}; "
                            "pass reduce='pca' (or 'umap', 'random') with it, or leave n_components out")
    return patches_field, (label_field if needs_labels else None)


def refuse_other_label_field(label_field, label_type, patches_field):
    """Refuse labels from another field than the objects scored: an object's label is its own
    (``<patches_field>.detections.label``), so those of ``label_field`` would be recorded but never read."""
    if label_field is None or label_field == patches_field:
        return
    other = (f"to score the objects of {label_field!r}, embed them (compute_pyramid_embeddings(..., "
             f"patches_field={label_field!r})) and pass patches_field={label_field!r}") \
        if label_type == "detections" else \
        f"image labels ({label_field!r} is a Classification field) go with image embeddings, without patches_field"
    raise OODInputError(
        f"label_field={label_field!r} but the objects scored are those of patches_field={patches_field!r}, whose "
        f"labels are their own ({patch_path(patches_field, 'label')!r}): the labels of {label_field!r} would be "
        f"ignored. Pass label_field={patches_field!r} (or leave it out), or, {other}")


#: the target dimension the App's score form (and its operator called without ``n_components``) reduces to
DEFAULT_N_COMPONENTS = 30


#: the fewest items any detector is fitted on: each is also scored with the others, itself left out
MIN_FIT_ITEMS = 2


def check_fit_size(num_fit, what="the reference set", fix="add reference samples"):
    """Refuse a fit set of fewer than :data:`MIN_FIT_ITEMS` items, whatever the method and k."""
    if num_fit < MIN_FIT_ITEMS:
        have = f"only {num_fit:,} item(s)" if num_fit else "no item"
        raise OODInputError(f"{what} has {have} with an embedding; every method needs at least {MIN_FIT_ITEMS} (each "
                            f"item is also scored with the others, itself left out): {fix}")


def check_k_fits(k, method, num_fit, what="the reference set", fix="add reference samples", class_sizes=None):
    """Refuse a fit set too small for any k (:func:`check_fit_size`), and a whole-number ``k`` (None: ``method``'s
    default) that the ``num_fit`` items the detector is fitted on cannot give: each is also scored with itself left
    out, so ``k`` must be below ``num_fit``. Used by :func:`compute_ood_scores` and the App's score form, which also
    gives ``class_sizes`` (items per class of the fit set) for class-conditional and per-class detectors."""
    from ..detectors import detector_class
    from ..validation import is_int

    check_fit_size(num_fit, what, fix)
    params = detector_class(method).default_params()
    k = params.get("k") if k is None else k
    sizes = sorted(class_sizes or (), reverse=True)
    if is_int(k) and sizes and params.get("per_class") and sizes[-1] <= k:  # one model per class (per-class LOF)
        lower = f"lower k to at most {sizes[-1] - 1}, or " if sizes[-1] > 1 else ""
        raise OODInputError(f"k={k} but {sum(n <= k for n in sizes)} of the {len(sizes)} classes of {what} have at "
                            f"most k item(s) (the smallest has {sizes[-1]:,}); a per-class method fits one model "
                            f"per class, which needs more than k items: {lower}drop or merge those classes")
    if is_int(k) and num_fit <= k:
        raise OODInputError(f"k={k} but {what} has only {num_fit:,} item(s) with an embedding; each of them is "
                            f"also scored with itself left out, so k must be < {num_fit:,}: lower k or {fix}")
    # a class-conditional detector searches each class: some class must offer k neighbours to its own members
    # (itself left out: k + 1 items) or two classes k each (the same rule as the detector's fit)
    if is_int(k) and sizes and params.get("class_conditional") and not (
            sizes[0] > k or (len(sizes) > 1 and sizes[1] >= k)):
        raise OODInputError(f"k={k} but the classes of {what} are too small: the largest has {sizes[0]:,} item(s) "
                            f"and an item is never its own neighbour; lower k, leave k empty (auto) or {fix}")


def fit_set_words(reference, method=None):
    """``(what, fix)`` naming the fit set in errors: the reference, else the scored set (a wrong-label ``method``
    takes no reference: its fix offers none)."""
    from ..detectors import detector_class

    if reference is None:
        label_task = method is not None and detector_class(method).task == "label_issues"
        return "the scored set", "score a larger view" + ("" if label_task else " (or give a trusted reference)")
    if isinstance(reference, str):
        return f"the reference (samples tagged {reference!r})", f"tag more samples {reference!r}"
    return "the reference view", "add samples to the reference view"


def missing_reference_embeddings(reference, embeddings_field, patches_field=None, fix="pass another reference"):
    """The message for a reference none of whose items has an embedding (the scored view may have some)."""
    whose = f"the samples tagged {reference!r}" if isinstance(reference, str) else "the samples of the reference view"
    return f"{'no object of' if patches_field else 'none of'} {whose} has an embedding in {embeddings_field!r}; " \
           f"compute embeddings for them or {fix}"


def check_reduction(reduce, n_components, num_fit, dim):
    """Refuse a reduction the fit set cannot give, by the check of :class:`~ood_core.reduction.Reducer`, from
    the sizes only: ``num_fit`` items of dimension ``dim`` (the App's score form calls it)."""
    from ..reduction import Reducer

    # a zero-stride array of the fit set's shape: the reducer checks the shape, nothing is allocated
    Reducer(method=reduce, n_components=n_components).check_size(np.broadcast_to(np.float32(0), (num_fit, dim)))


def embedded_items(view, embeddings_field, patches_field=None):
    """``(number of items with an embedding, dimension of the first one or None)`` of a view."""
    from .inventory import embedding_coverage

    num, _ = embedding_coverage(view, embeddings_field, patches_field)
    if not num:
        return 0, None
    if patches_field is None:
        return num, first_vector_dim(view.exists(embeddings_field), embeddings_field, None)
    from fiftyone import ViewField as F

    with_values = view.filter_labels(patches_field, F(embeddings_field) != None)  # noqa: E711
    return num, first_vector_dim(with_values, embeddings_field, patches_field)


def _read_reference(samples, reference, keys, embeddings_field, patches_field, label_field):
    """Reference embeddings, labels, the reference row of each scored key (-1: none) and the run's description."""
    if reference is None:
        return None, None, None, None, None
    ref_view, ref_info = resolve_view(samples, reference, "reference", "trusted in-distribution samples")
    if not embedding_coverage(ref_view, embeddings_field, patches_field)[0]:  # else "no item in this view" below
        raise OODInputError(missing_reference_embeddings(reference, embeddings_field, patches_field))
    ref_keys, X_ref, labels_ref = read_embeddings(ref_view, embeddings_field, patches_field, label_field)
    ref_keys, X_ref, labels_ref = in_canonical_order(ref_view, patches_field, ref_keys, X_ref, labels_ref)
    pos = {key: i for i, key in enumerate(ref_keys)}
    ref_index = np.array([pos.get(key, -1) for key in keys], np.int64)
    ref_info["num_reference"] = len(ref_keys)
    return X_ref, labels_ref, ref_index, ref_info, ref_keys


def score_summary(run_key, field, scores, num_items, **extra):
    """The dict every score writer returns (and stores as run results)."""
    scores = np.asarray(scores, np.float64)
    return {
        "run_key": run_key,
        "field": field,
        **extra,
        "num_scored": int(len(scores)),
        "num_skipped": int(num_items - len(scores)),
        "score_quantiles": {q: float(np.quantile(scores, q / 100)) for q in (5, 50, 95)} if len(scores) else {},
    }


def compute_label_issues(
    samples,
    label_field,
    embeddings_field=DEFAULT_EMBEDDINGS_FIELD,
    score_field="label_issue",
    *,
    method="weighted_label_vote",
    k=None,
    reduce=None,
    n_components=None,
    seed=0,
    neighbor_backend=None,
    neighbor_index=None,
    run_key=None,
    overwrite=False,
    progress=None,
):
    """Score how likely each sample's (or object's) label is wrong; higher = more suspicious.

    Unsupervised, per class of ``label_field``. Methods (the detector
    registry's ``task="label_issues"`` entries): ``"weighted_label_vote"``
    (default: distance-weighted votes of the nearest neighbours against the
    given label, k from the smallest class; with multi-level embeddings the
    levels whose neighbours agree best with the labels; it also writes
    ``<score_field>_suggestion``, the class the blended votes favour, only where it differs from the given
    label: None elsewhere, and no field when no label is contradicted; the summary's ``num_suggested`` counts
    them),
    ``"label_agreement"`` (1 - share of the k nearest neighbours with the same
    label) or ``"class_lof"`` (the paper's per-class Local Outlier Factor).
    Measured over 46 wrong-label conditions (``benchmarks/robustness.py``):
    weighted votes mean / worst AUROC 0.953 / 0.765 on the deepest level
    (0.961 / 0.774 with ``levels="auto"``; 0.963 / 0.813 with a second vote without the
    first vote's suspects averaged in; 0.965 / 0.826 with the margin weight 0.2 as well; 0.969 /
    0.840 with 5-fold out-of-fold shrinkage-LDA probabilities averaged into the votes; 0.973 /
    0.859 with the default's 10 folds, fitted temperature and LDA-judged suspects), label
    agreement k=20 0.935 / 0.743 with 51 samples tied at the top score on average.

    ``neighbor_backend``, ``neighbor_index`` (the neighbour search) and ``progress`` (None/True: tqdm, False or
    ``f(done, total)``): as in :func:`compute_ood_scores`.
    """
    from ..detectors import detector_names

    if method not in detector_names("label_issues"):
        raise OODInputError(f"label-issue method must be one of {detector_names('label_issues')}, got {method!r}")
    return compute_ood_scores(
        samples, embeddings_field, score_field, method=method, label_field=label_field, k=k,
        reduce=reduce, n_components=n_components, seed=seed, neighbor_backend=neighbor_backend,
        neighbor_index=neighbor_index, run_key=run_key, overwrite=overwrite, progress=progress,
    )


def planned_settings(samples, embeddings_field, *, method, reference_info, label_field, k=None,
                     class_conditional=None, reduce=None, n_components=None, seed=0, backbone=None, dim=None):
    """The settings (:data:`.view_overwrite.SCALE_PARAMS`) a score run of these arguments records, known before it
    reads or computes anything but the reference's description (``reference_info``:
    :func:`.view_descriptions.resolve_view`'s, with ``num_reference``), the embeddings' backbone record and width
    ``dim`` (None: not known; the per-level detector parameters are then left out)."""
    settings = {"embeddings_field": embeddings_field, "label_field": label_field, "reference": reference_info,
                "backbone": backbone}
    det, reducer = make_scorer(method, k=k, class_conditional=class_conditional, reduce=reduce,
                               n_components=n_components, seed=seed,
                               level_dims=stored_level_dims(backbone, dim) if dim else None)
    if dim:
        settings["detector"] = det.get_params()
    settings["reduction"] = reducer.get_params() if reducer is not None else None
    return settings
