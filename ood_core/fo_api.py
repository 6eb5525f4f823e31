"""FiftyOne SDK functions: embed, score, visualise, in FiftyOne Brain style.

All public functions accept a ``Dataset`` or any view, validate first, compute
on numpy, then write fields atomically and record a custom run (see
:mod:`ood_core.fo_runs`). Nothing is written when validation or computation
fails, and no existing field or run is replaced unless ``overwrite=True``.

Score convention: **higher = more out-of-distribution / more suspicious**.

Object patches: when ``patches_field`` (or a ``Detections`` ``label_field``)
is given, each object is cropped from its image, embedded and scored on its
own; values are stored as attributes of the objects
(``<patches_field>.detections.<field>``).
"""

import logging

import numpy as np

from . import fo_runs
from .errors import OODInputError

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDINGS_FIELD = "ood_embeddings"


# --------------------------------------------------------------------------- reading


def _require_nonempty(samples, what="samples"):
    if len(samples) == 0:
        raise OODInputError(f"{what} is an empty view: nothing to process; check the view's filters or tags")


def _label_kind(samples, label_field):
    """``"classification"`` or ``"detections"`` for a label field, else raise."""
    import fiftyone.core.labels as fol

    dataset = samples._dataset
    field = dataset.get_field(label_field)
    if field is None:
        raise OODInputError(
            f"label field {label_field!r} does not exist on dataset {dataset.name!r}; "
            f"label fields here: {_label_fields(dataset)}"
        )
    doc_type = getattr(field, "document_type", None)
    if doc_type is fol.Classification:
        return "classification"
    if doc_type is fol.Detections:
        return "detections"
    raise OODInputError(
        f"field {label_field!r} has type {getattr(doc_type, '__name__', type(field).__name__)}; "
        "expected a Classification field (image labels) or a Detections field (object labels)"
    )


def _label_fields(dataset):
    import fiftyone.core.labels as fol

    return sorted(dataset.get_field_schema(embedded_doc_type=fol.Classification)) + sorted(
        dataset.get_field_schema(embedded_doc_type=fol.Detections)
    )


def _patch_path(patches_field, attr):
    return f"{patches_field}.detections.{attr}"


def _check_patches_field(samples, patches_field):
    if _label_kind(samples, patches_field) != "detections":
        raise OODInputError(f"patches_field {patches_field!r} must be a Detections field")


def read_embeddings(samples, embeddings_field, patches_field=None, label_field=None):
    """Read stored embeddings (and optionally labels) as arrays.

    Returns ``(keys, X, labels)`` where ``keys`` are sample ids (or object ids
    for patches) of the items that have an embedding (and a label, when
    ``label_field`` is given), ``X`` is ``(N, D)`` float32 and ``labels`` is a
    list of strings or None.
    """
    dataset = samples._dataset
    if patches_field is None:
        if dataset.get_field(embeddings_field) is None:
            raise OODInputError(
                f"embeddings field {embeddings_field!r} does not exist; run "
                "compute_pyramid_embeddings(samples, embeddings_field=...) first"
            )
        keys = samples.values("id")
        vecs = samples.values(embeddings_field)
        labs = samples.values(f"{label_field}.label") if label_field else [None] * len(keys)
    else:
        if dataset.get_field(_patch_path(patches_field, embeddings_field)) is None:
            raise OODInputError(
                f"object embeddings {_patch_path(patches_field, embeddings_field)!r} do not exist; run "
                f"compute_pyramid_embeddings(samples, {embeddings_field!r}, patches_field={patches_field!r}) first"
            )
        keys = _flatten(samples.values(_patch_path(patches_field, "id")))
        vecs = _flatten(samples.values(_patch_path(patches_field, embeddings_field)))
        labs = _flatten(samples.values(_patch_path(patches_field, "label"))) if label_field else [None] * len(keys)
    keep = [i for i, v in enumerate(vecs) if v is not None and (label_field is None or labs[i] is not None)]
    if not keep:
        raise OODInputError(
            f"no item in this view has both an embedding in {embeddings_field!r}"
            + (f" and a label in {label_field!r}" if label_field else "")
            + "; compute embeddings for this view first"
        )
    dims = {np.asarray(vecs[i]).shape for i in keep}
    if len(dims) > 1:
        raise OODInputError(
            f"embeddings in {embeddings_field!r} have mixed shapes {sorted(dims)}; recompute them with "
            "one backbone configuration (overwrite=True)"
        )
    X = np.stack([np.asarray(vecs[i], dtype=np.float32).ravel() for i in keep])
    labels = [labs[i] for i in keep] if label_field else None
    return [keys[i] for i in keep], X, labels


def _flatten(nested):
    return [x for row in nested for x in (row or [])]


# --------------------------------------------------------------------------- embeddings


#: Default pyramid: the deepest level, average-pooled to a 2x2 grid. Chosen on the
#: demo data (benchmarks/choose_defaults.py, README "Why the defaults"): with
#: EfficientNet-Lite0 the deepest level alone beat every multi-level pyramid and the
#: paper's flattened mode on both tasks, and grid 2 was within 0.002 AUROC of grid 4
#: at a quarter of the size.
DEFAULT_LEVELS = [-1]
DEFAULT_GRID = 2


def default_levels(model_name):
    """The package's default pyramid levels (the deepest level, for any backbone)."""
    return list(DEFAULT_LEVELS)


def compute_pyramid_embeddings(
    samples,
    embeddings_field=DEFAULT_EMBEDDINGS_FIELD,
    *,
    model_name="auto",
    levels=None,
    mode="pool",
    grid=DEFAULT_GRID,
    weights=None,
    patches_field=None,
    project_dim=None,
    project_seed=0,
    dtype="float32",
    batch_size=32,
    num_workers=0,
    chunk_size=1024,
    skip_failures=False,
    overwrite=False,
    progress=None,
):
    """Compute feature-pyramid embeddings for every sample (or object) of a view.

    Extraction streams: embeddings are written every ``chunk_size`` items, so
    memory depends on the batch and chunk sizes and the embedding dimension,
    not on the size of the view. While running, values go to a partial field
    ``tmp_ood_partial_<field>`` recorded as a run with ``status="partial"``; it
    is renamed to ``embeddings_field`` when every item is done.

    **Resuming**: calling again with the same settings after an interruption
    (or after new samples were added) computes only the items that have no
    embedding yet. A call with different settings (backbone, weights, levels,
    mode, grid, projection, dtype) refuses to mix them and says how to proceed.

    Args:
        samples: a Dataset or view.
        embeddings_field: sample field (or object attribute, for patches) to
            store the embeddings in; ``None`` returns them without writing.
            Also the run key of the recorded ``embeddings`` run.
        model_name: timm model name, or ``"auto"`` (ResNet50 hub weights when
            reachable, else the bundled offline ``tf_efficientnet_lite0``).
        levels: pyramid levels by index or module name (``None`` = the
            deepest level, see :data:`DEFAULT_LEVELS`).
        mode: ``"pool"`` (bounded, per-level grid pooling) or ``"flatten"`` (paper).
        grid: pooling grid side for ``mode="pool"`` (default 2).
        weights: weight source: ``None`` (hub/cache, then bundled), a local
            safetensors / state-dict file, ``"bundled"`` or ``"random"``.
        patches_field: a Detections field: embed each object crop instead.
        project_dim: reduce on the fly with a seeded Gaussian random
            projection to this many dimensions (distances are preserved
            approximately; useful for flattened pyramids).
        project_seed: seed of that projection.
        dtype: ``"float32"`` or ``"float16"`` (half the storage).
        batch_size, num_workers: forward batch size; decoding worker processes.
        chunk_size: items per database write.
        skip_failures: skip unreadable images (they get no embedding and are
            listed in the run results) instead of raising.
        overwrite: recompute everything and replace an existing field/run.
        progress: ``None``/``True`` tqdm bar, ``False``, or ``f(done, total)``.

    Returns:
        a dict summary; with ``embeddings_field=None`` also ``"embeddings"``
        (an ``(N, D)`` array aligned with ``"keys"``).
    """
    import fiftyone.core.fields as fof

    from .features import PyramidExtractor, random_projection_matrix

    _require_nonempty(samples)
    if patches_field is not None:
        _check_patches_field(samples, patches_field)
    if dtype not in ("float32", "float16"):
        raise OODInputError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    if embeddings_field is not None:
        fo_runs.validate_key(embeddings_field, "embeddings field")
    dataset = samples._dataset
    target = _patch_path(patches_field, embeddings_field) if patches_field else embeddings_field
    partial = _patch_path(patches_field, f"tmp_ood_partial_{embeddings_field}") if patches_field else \
        f"tmp_ood_partial_{embeddings_field}"

    # Refuse early (before loading a model) when the field belongs to someone else.
    if embeddings_field is not None and not overwrite:
        if dataset.has_run(embeddings_field):
            kind = dataset.get_run_info(embeddings_field).config.__dict__.get("kind")
            if kind != "embeddings":
                fo_runs.check_new_run(samples, embeddings_field, [target], overwrite)
        elif dataset.get_field(target) is not None:
            fo_runs.check_new_run(samples, embeddings_field, [target], overwrite)

    extractor = PyramidExtractor(
        model_name, levels=default_levels(model_name) if levels is None else levels,
        mode=mode, grid=grid, weights=weights,
    )
    projection = None
    out_dim = extractor.dim
    if project_dim:
        matrix = random_projection_matrix(extractor.dim, int(project_dim), project_seed)
        projection = {"method": "random", "n_components": int(project_dim), "seed": int(project_seed)}
        out_dim = int(project_dim)
    settings = {"backbone": extractor.config, "projection": projection, "dtype": dtype, "patches_field": patches_field}

    keys, items, sample_of = _embedding_items(samples, patches_field)

    def finish_array(emb):
        if projection is not None:
            emb = emb @ matrix
        return emb.astype(np.float16 if dtype == "float16" else np.float32)

    if embeddings_field is None:
        chunks, ok, failures = [], [], []
        for idx, emb, failed in extractor.iter_extract(items, batch_size=batch_size, num_workers=num_workers,
                                                       skip_failures=skip_failures, progress=progress):
            chunks.append(finish_array(emb))
            ok.extend(idx.tolist())
            failures.extend(failed)
        return {
            "num_embedded": len(ok), "num_failed": len(failures), "dim": out_dim, "config": settings,
            "keys": [keys[i] for i in ok], "embeddings": np.concatenate(chunks) if chunks else np.zeros((0, out_dim)),
            "failures": [{"id": keys[i], "item": str(items[i]), "error": m} for i, m in failures],
        }

    write_path, mode_ = _plan_embedding_write(samples, embeddings_field, target, partial, settings, overwrite)
    done = _keys_with_values(samples, write_path, patches_field) if mode_ != "fresh" else set()
    todo = [i for i, key in enumerate(keys) if key not in done]
    if mode_ in ("fresh", "resume"):
        if dataset.get_field(write_path) is None:
            dataset.add_sample_field(write_path, fof.VectorField)
        fo_runs.register_run(samples, embeddings_field, kind="embeddings", fields=[write_path], overwrite=True,
                             status="partial", embeddings_field=embeddings_field, **settings)

    failed_items = []
    pending = {}

    def flush():
        if pending:
            _write_vectors(samples, write_path, pending, patches_field, sample_of)
            pending.clear()

    if todo:
        for idx, emb, failed in extractor.iter_extract(
            [items[i] for i in todo], batch_size=batch_size, num_workers=num_workers,
            skip_failures=skip_failures, progress=progress,
        ):
            emb = finish_array(emb)
            for j, row in zip(idx, emb):
                pending[keys[todo[j]]] = row
            failed_items.extend({"id": keys[todo[j]], "item": str(items[todo[j]]), "error": m} for j, m in failed)
            if len(pending) >= chunk_size:
                flush()
        flush()

    if mode_ in ("fresh", "resume"):
        if dataset.get_field(target) is not None:
            dataset.delete_sample_field(target)
        dataset.rename_sample_field(write_path, target)
    num_embedded = len(_keys_with_values(samples, target, patches_field))
    fo_runs.register_run(
        samples, embeddings_field, kind="embeddings", fields=[target], overwrite=True, status="complete",
        embeddings_field=embeddings_field, batch_size=batch_size, **settings,
        results={"failures": failed_items, "num_embedded": num_embedded, "num_computed_this_call": len(todo)},
    )
    return {
        "run_key": embeddings_field,
        "field": target,
        "num_embedded": num_embedded,
        "num_computed": len(todo) - len(failed_items),
        "num_failed": len(failed_items),
        "dim": out_dim,
        "config": settings,
        "resumed": mode_ != "fresh",
    }


def _embedding_items(samples, patches_field):
    """Keys (sample or object ids), image items, and the sample id of each key."""
    if patches_field is None:
        keys = samples.values("id")
        return keys, samples.values("filepath"), None
    paths = samples.values("filepath")
    sids = samples.values("id")
    boxes = samples.values(_patch_path(patches_field, "bounding_box"))
    ids = samples.values(_patch_path(patches_field, "id"))
    keys, items, sample_of = [], [], {}
    for sid, path, sample_boxes, sample_ids in zip(sids, paths, boxes, ids):
        for box, det_id in zip(sample_boxes or [], sample_ids or []):
            keys.append(det_id)
            items.append((path, box))
            sample_of[det_id] = sid
    if not items:
        raise OODInputError(f"no objects in {patches_field!r} in this view: nothing to embed")
    return keys, items, sample_of


def _plan_embedding_write(samples, run_key, target, partial, settings, overwrite):
    """Decide where this call writes: ``("fresh"|"resume", partial)`` or ``("fill", target)``."""
    dataset = samples._dataset
    if overwrite:
        if dataset.get_field(partial) is not None:
            dataset.delete_sample_field(partial)
        return partial, "fresh"
    if not dataset.has_run(run_key):
        if dataset.get_field(partial) is not None:
            dataset.delete_sample_field(partial)  # orphan without a record: cannot be trusted
        return partial, "fresh"
    info = fo_runs.get_ood_run_info(samples, run_key)
    old = {k: info.get(k) for k in settings}
    if _jsonable(old) != _jsonable(settings):
        diffs = _settings_diff(old, settings)
        raise OODInputError(
            f"embeddings {run_key!r} on dataset {dataset.name!r} were computed with different settings "
            f"({diffs}); refusing to mix embeddings. Pass overwrite=True to recompute all of them, or choose "
            "another embeddings_field"
        )
    if info.get("status") == "partial":
        return partial, "resume"
    return target, "fill"


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _settings_diff(old, new):
    old_b, new_b = _jsonable(old), _jsonable(new)
    parts = []
    for k in sorted(set(old_b) | set(new_b)):
        a, b = old_b.get(k), new_b.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            for kk in sorted(set(a) | set(b)):
                if a.get(kk) != b.get(kk):
                    parts.append(f"{k}.{kk}: stored {a.get(kk)!r} vs requested {b.get(kk)!r}")
        elif a != b:
            parts.append(f"{k}: stored {a!r} vs requested {b!r}")
    return "; ".join(parts[:4])


def _keys_with_values(samples, path, patches_field):
    """Ids of samples (or objects) that already have a value at ``path`` (only ids are read)."""
    if samples._dataset.get_field(path) is None:
        return set()
    if patches_field is None:
        return set(samples.exists(path).values("id"))
    from fiftyone import ViewField as F

    leaf = path.rsplit(".", 1)[1]
    with_values = samples.filter_labels(patches_field, F(leaf) != None, only_matches=True)  # noqa: E711
    return set(_flatten(with_values.values(_patch_path(patches_field, "id"))))


def _write_vectors(samples, path, by_key, patches_field, sample_of):
    if patches_field is None:
        samples.set_values(path, by_key, key_field="id")
    else:
        samples.set_label_values(
            path, [{"sample_id": sample_of[k], "label_id": k, "value": v} for k, v in by_key.items()]
        )


def _values_by_key(samples, by_key, patches_field):
    """Values aligned to samples (or nested per object) from a ``{key: value}`` dict."""
    if patches_field is None:
        return [_to_storable(by_key.get(k)) for k in samples.values("id")]
    ids = samples.values(_patch_path(patches_field, "id"))
    return [[_to_storable(by_key.get(k)) for k in (row or [])] for row in ids]


def _to_storable(v):
    if v is None:
        return None
    if isinstance(v, np.ndarray) and v.ndim >= 1:
        return v.astype(np.float32)
    return float(v)


# --------------------------------------------------------------------------- scoring


def _resolve_reference(samples, reference):
    if reference is None:
        return None, None
    return fo_runs.resolve_view(samples, reference, "reference", "trusted in-distribution samples")


def _detector_kwargs(method, k, class_conditional, neighbor_backend=None, neighbor_index=None):
    kwargs = {}
    if method in ("knn", "lof", "class_lof", "label_agreement"):
        if k is not None:
            kwargs["k"] = int(k)
        if neighbor_backend is not None:
            kwargs["backend"] = neighbor_backend
        if neighbor_index is not None:
            kwargs["index"] = neighbor_index
    if method == "mahalanobis" and class_conditional is not None:
        kwargs["class_conditional"] = bool(class_conditional)
    return kwargs


def score_arrays(X, *, method, labels=None, X_ref=None, labels_ref=None, ref_index=None,
                 k=None, class_conditional=None, reduce=None, n_components=None, seed=0,
                 neighbor_backend=None, neighbor_index=None):
    """Score ``X`` with a detector (numpy level, no FiftyOne).

    With a reference set, the detector is fitted on ``X_ref`` and scores
    ``X``; rows of ``X`` that are also reference rows (see ``ref_index``) get the
    self-excluded ``fit_score`` value instead, so a trusted sample is not its
    own nearest neighbour. ``ref_index[i]`` is the row of ``X_ref`` that is
    the same item as ``X[i]``, or -1. Without a reference, ``fit_score`` scores ``X``
    against itself. Returns ``(scores, detector, reducer)``.
    """
    from .detectors import make_detector
    from .reduction import make_reducer
    from .validation import as_embeddings, check_same_dim

    X = as_embeddings(X, "scored embeddings")
    det = make_detector(method, **_detector_kwargs(method, k, class_conditional, neighbor_backend, neighbor_index))
    reducer = make_reducer(reduce, n_components, seed=seed) if reduce else None
    y = np.asarray(labels, dtype=object) if labels is not None else None
    if X_ref is None:
        if reducer is not None:
            X = reducer.fit_transform(X)
        return np.asarray(det.fit_score(X, y), dtype=np.float64), det, reducer

    X_ref = as_embeddings(X_ref, "reference embeddings")
    check_same_dim(X_ref, X)
    y_ref = np.asarray(labels_ref, dtype=object) if labels_ref is not None else None
    if reducer is not None:
        X_ref = reducer.fit_transform(X_ref)
        X = reducer.transform(X)
    scores = np.empty(len(X), dtype=np.float64)
    ref_index = np.full(len(X), -1) if ref_index is None else np.asarray(ref_index, np.int64)
    ref_mask = ref_index >= 0
    # fit_score fits on the reference set too, so the detector is fitted exactly once
    if ref_mask.any():
        self_scores = det.fit_score(X_ref, y_ref)
        scores[ref_mask] = self_scores[ref_index[ref_mask]]
    else:
        det.fit(X_ref, y_ref)
    if (~ref_mask).any():
        scores[~ref_mask] = det.score_samples(X[~ref_mask], None if y is None else y[~ref_mask])
    return scores, det, reducer


def compute_ood_scores(
    samples,
    embeddings_field=DEFAULT_EMBEDDINGS_FIELD,
    score_field="ood_score",
    *,
    method="knn",
    reference=None,
    label_field=None,
    patches_field=None,
    k=None,
    class_conditional=None,
    reduce=None,
    n_components=None,
    seed=0,
    neighbor_backend=None,
    neighbor_index=None,
    run_key=None,
    overwrite=False,
):
    """Score every sample (or object) of a view; higher = more OOD.

    Supervised (``reference`` given): the detector is fitted on the reference
    samples (a sample tag such as ``"trusted"``, or a view) and scores
    ``samples``; reference samples inside ``samples`` are scored with their
    self-match excluded. Unsupervised (``reference=None``): the detector is
    fitted and scored on ``samples`` themselves (per class of
    ``label_field`` for ``"class_lof"`` / ``"label_agreement"``).

    Args:
        method: ``"knn"`` (default), ``"mahalanobis"``, ``"lof"``,
            ``"class_lof"`` or ``"label_agreement"``.
        label_field: Classification field (or Detections field: objects are
            scored) with the labels the method needs.
        k: neighbours for knn/lof/label_agreement (detector default if None).
        class_conditional: Mahalanobis with class means (needs labels).
        reduce: ``None``, ``"pca"``, ``"umap"`` or ``"random"``, fitted on the
            reference set (or the scored set when unsupervised).
        n_components: target dimension of ``reduce``.
        neighbor_backend: ``"auto"`` (faiss when installed, else
            scikit-learn), ``"faiss"`` or ``"sklearn"``; both give the same
            scores with the exact ``"flat"`` index.
        neighbor_index: ``"flat"`` (exact, default), ``"ivf"`` or ``"hnsw"``
            (approximate, faiss only, for very large reference sets).
        run_key: key of the recorded run (default: ``score_field``).

    Returns:
        a dict summary (run key, field, counts, score quantiles).
    """
    from .detectors import requires_labels

    _require_nonempty(samples)
    run_key = run_key or score_field
    fo_runs.validate_key(score_field, "score field")
    if label_field is not None and _label_kind(samples, label_field) == "detections":
        patches_field = patches_field or label_field
    if patches_field is not None:
        _check_patches_field(samples, patches_field)
    needs_labels = requires_labels(method, **_detector_kwargs(method, k, class_conditional))
    if needs_labels and label_field is None:
        raise OODInputError(
            f"method {method!r} needs class labels: pass label_field='<a Classification or Detections field>'"
        )
    if reduce and not n_components:
        raise OODInputError(f"reduce={reduce!r} needs n_components (e.g. 30)")
    target = _patch_path(patches_field, score_field) if patches_field else score_field
    fo_runs.check_new_run(samples, run_key, [target], overwrite)

    use_labels = label_field if needs_labels else None
    keys, X, labels = read_embeddings(samples, embeddings_field, patches_field, use_labels)
    ref_view, ref_info = _resolve_reference(samples, reference)
    X_ref = labels_ref = ref_index = None
    if ref_view is not None:
        ref_keys, X_ref, labels_ref = read_embeddings(ref_view, embeddings_field, patches_field, use_labels)
        pos = {key: i for i, key in enumerate(ref_keys)}
        ref_index = np.array([pos.get(key, -1) for key in keys], np.int64)
        ref_info["num_reference"] = len(ref_keys)
    scores, det, reducer = score_arrays(
        X, method=method, labels=labels, X_ref=X_ref, labels_ref=labels_ref, ref_index=ref_index,
        k=k, class_conditional=class_conditional, reduce=reduce, n_components=n_components, seed=seed,
        neighbor_backend=neighbor_backend, neighbor_index=neighbor_index,
    )

    emb_info = _embedding_run_config(samples, embeddings_field)
    kind = "label_issues" if method in ("class_lof", "label_agreement") else "ood_scores"
    summary = {
        "run_key": run_key,
        "field": target,
        "method": method,
        "num_scored": int(len(scores)),
        "num_skipped": int(_count_items(samples, patches_field) - len(scores)),
        "score_quantiles": {q: float(np.quantile(scores, q / 100)) for q in (5, 50, 95)},
    }
    import fiftyone.core.fields as fof

    fo_runs.write_and_record(
        samples,
        [(target, _values_by_key(samples, dict(zip(keys, scores)), patches_field), fof.FloatField)],
        run_key,
        kind=kind,
        overwrite=overwrite,
        score_field=score_field,
        embeddings_field=embeddings_field,
        label_field=label_field,
        patches_field=patches_field,
        detector=det.get_params(),
        reduction=reducer.get_params() if reducer is not None else None,
        reference=ref_info,
        backbone=emb_info,
        score_convention="higher = more out-of-distribution",
        results=summary,
    )
    return summary


def compute_label_issues(
    samples,
    label_field,
    embeddings_field=DEFAULT_EMBEDDINGS_FIELD,
    score_field="label_issue",
    *,
    method="label_agreement",
    k=None,
    reduce=None,
    n_components=None,
    seed=0,
    run_key=None,
    overwrite=False,
):
    """Score how likely each sample's (or object's) label is wrong; higher = more suspicious.

    Unsupervised, per class of ``label_field``: ``"label_agreement"``
    (default; 1 - the out-of-fold k-NN probability of the given label) or
    ``"class_lof"`` (the paper's per-class Local Outlier Factor).
    """
    if method not in ("label_agreement", "class_lof"):
        raise OODInputError(f"label-issue method must be 'label_agreement' or 'class_lof', got {method!r}")
    return compute_ood_scores(
        samples, embeddings_field, score_field, method=method, label_field=label_field, k=k,
        reduce=reduce, n_components=n_components, seed=seed, run_key=run_key, overwrite=overwrite,
    )


def _count_items(samples, patches_field):
    if patches_field is None:
        return len(samples)
    return int(samples.count(_patch_path(patches_field, "id")))


def _embedding_run_config(samples, embeddings_field):
    dataset = samples._dataset
    if embeddings_field in fo_runs.list_ood_runs(samples, kind="embeddings"):
        return getattr(dataset.get_run_info(embeddings_field).config, "backbone", None)
    return None


# --------------------------------------------------------------------------- visualization


def compute_ood_visualization(
    samples,
    embeddings_field=DEFAULT_EMBEDDINGS_FIELD,
    brain_key="ood_umap",
    *,
    method="umap",
    patches_field=None,
    seed=0,
    overwrite=False,
):
    """2-D map of the embeddings for the App's Embeddings panel (a brain run).

    Colour the points by an OOD score field in the panel to see where the
    suspicious samples sit. Samples (objects) without an embedding are left out.
    """
    import fiftyone.brain as fob

    _require_nonempty(samples)
    fo_runs.validate_key(brain_key, "brain key")
    dataset = samples._dataset
    if brain_key in dataset.list_brain_runs():
        if not overwrite:
            raise OODInputError(f"brain key {brain_key!r} already exists; pick another or pass overwrite=True")
        dataset.delete_brain_run(brain_key)
    if patches_field is None:
        view = samples.exists(embeddings_field)
        embeddings = embeddings_field
    else:
        from fiftyone import ViewField as F

        view = samples.filter_labels(patches_field, F(embeddings_field) != None)  # noqa: E711
        embeddings = embeddings_field
    _require_nonempty(view, f"samples with embeddings in {embeddings_field!r}")
    fob.compute_visualization(
        view, embeddings=embeddings, patches_field=patches_field, brain_key=brain_key,
        method=method, num_dims=2, seed=seed, verbose=False,
    )
    return {"brain_key": brain_key, "num_points": _count_items(view, patches_field)}
