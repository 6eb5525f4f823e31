"""The paper's workflows as SDK functions (Wulz & Krispel, Exp. 1-3), plus plots.

- :func:`pollution_sweep`: fit on a trusted reference set polluted with 0/1/5/10%
  OOD samples, measure OOD metrics on the rest (Exp. 1).
- :func:`config_sweep`: pyramid level subsets x reduced dimensions x k x
  detector (Exp. 2). Level subsets are sliced from the stored embeddings using
  the embeddings run's backbone config, so nothing is re-extracted.
- :func:`label_error_report`: per-class wrong-label table (Exp. 3).
- :func:`auto_config`: pick levels / dims / k / detector on a small labelled
  validation subset and record the winner as a run of kind ``"auto_config"``;
  :func:`score_with_config` applies a winning config to a view.
- :func:`plot_roc_pr`, :func:`plot_score_histogram`, :func:`save_figure`.

Every experiment returns a :class:`Table` (a list of dicts, one row per
setting, with ``to_dataframe()``) and writes **nothing** to the dataset unless
``run_key`` is given (then the table is stored as a run of kind
``"experiment"``). Metrics are those of :func:`ood_core.metrics.ood_metrics`:
**OOD is the positive class, higher score = more OOD**; in
:func:`label_error_report` the positive class is "label is wrong".
"""

import logging

import numpy as np

from . import fo_runs
from .errors import OODInputError

logger = logging.getLogger(__name__)

__all__ = [
    "Table",
    "auto_config",
    "config_sweep",
    "label_error_report",
    "level_columns",
    "plot_roc_pr",
    "plot_score_histogram",
    "pollution_sweep",
    "save_figure",
    "score_with_config",
]

_METRIC_KEYS = ("auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_openood", "num_id", "num_ood")
_LOWER_IS_BETTER = ("fpr95", "fpr95_openood")
_K_METHODS = ("knn", "lof")
_SWEEP_METHODS = ("knn", "lof", "mahalanobis")


class Table(list):
    """Rows of an experiment: a plain list of JSON-serialisable dicts.

    ``info`` holds what the rows mean (positive class, fixed parameters).
    """

    def __init__(self, rows=(), info=None):
        super().__init__(rows)
        self.info = dict(info or {})

    @property
    def columns(self):
        cols = []
        for row in self:
            cols.extend(c for c in row if c not in cols)
        return cols

    def to_dataframe(self):
        """The rows as a pandas DataFrame (pandas is imported here, only when asked)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas ships with fiftyone
            raise OODInputError("to_dataframe() needs pandas: pip install pandas; the Table itself is a list "
                                "of dicts") from exc
        return pd.DataFrame(list(self), columns=self.columns)


# --------------------------------------------------------------------------- helpers


def _as_tuple(value, name):
    if value is None or isinstance(value, (int, float, str, np.integer, np.floating)):
        return (value,)
    try:
        out = tuple(value)
    except TypeError:
        raise OODInputError(f"{name} must be a value or a sequence of values; got {value!r}") from None
    if not out:
        raise OODInputError(f"{name} is empty; give at least one value")
    return out


def _read(view, embeddings_field):
    from .fo_api import read_embeddings

    keys, X, _ = read_embeddings(view, embeddings_field)
    return keys, X


def _bool_by_id(view, field, what="ood_field"):
    if view._dataset.get_field(field) is None:
        raise OODInputError(
            f"{what} {field!r} does not exist on dataset {view._dataset.name!r}; pass a boolean field that is "
            "True for OOD samples (e.g. 'is_ood')"
        )
    vals = view.values(field)
    odd = {v for v in vals if v is not None and v not in (True, False, 0, 1)}
    if odd:
        raise OODInputError(f"{what} {field!r} must be boolean (True = OOD); found {sorted(map(repr, odd))[:3]}")
    return {i: (None if v is None else bool(v)) for i, v in zip(view.values("id"), vals)}


def _metrics_row(scores, is_ood):
    from .metrics import ood_metrics

    m = ood_metrics(scores, is_ood)
    return {key: m[key] for key in _METRIC_KEYS}


def _empty_metrics():
    return {key: None for key in _METRIC_KEYS}


def _check_method(method):
    if method not in _SWEEP_METHODS:
        raise OODInputError(
            f"method {method!r} is not available in sweeps; use one of {_SWEEP_METHODS} (label-based methods "
            "are covered by label_error_report)"
        )
    return method


def _score(X_eval, X_ref, ref_index, method, k, seed):
    from .fo_api import score_arrays

    scores, _, _ = score_arrays(
        X_eval, method=method, X_ref=X_ref, ref_index=ref_index, k=k if method in _K_METHODS else None,
        class_conditional=False if method == "mahalanobis" else None, seed=seed,
    )
    return scores


def _reduce(X_ref, X_eval, reduce, n_components, seed):
    from .reduction import make_reducer

    if n_components is None or reduce is None:
        return X_ref, X_eval
    reducer = make_reducer(reduce, n_components, seed=seed)
    return reducer.fit_transform(X_ref), reducer.transform(X_eval)


def _record(samples, run_key, kind, overwrite, table, **params):
    fo_runs.register_run(samples, run_key, kind=kind, fields=[], overwrite=overwrite,
                         results={"rows": list(table), "info": table.info}, **params)


def _tick(progress, done, total):
    if callable(progress):
        progress(done, total)


# --------------------------------------------------------------------------- Exp. 1: pollution


def pollution_sweep(samples, embeddings_field, *, reference, ood_field="is_ood", ood_pool=None,
                    fractions=(0.0, 0.01, 0.05, 0.1), method="knn", k=(1, 10), reduce=None, n_components=None,
                    seed=0, run_key=None, overwrite=False, progress=None):
    """OOD metrics when the reference set is polluted with OOD samples (paper Exp. 1).

    For each fraction ``f``, ``n = round(f * R / (1 - f))`` OOD samples are
    added to the ``R`` reference samples, so OOD samples make up ``f`` of the
    polluted reference. They are the first ``n`` of one seeded permutation of
    the OOD pool, so larger fractions add to smaller ones. The detector (and
    reducer) are fitted on the polluted reference and score the **evaluation
    set**: the samples of ``samples`` that are neither reference samples nor
    among the pollution drawn for the largest fraction, and have a value in
    ``ood_field``. The evaluation set is the same for every row.

    Args:
        samples: Dataset or view holding reference, pool and evaluation samples.
        embeddings_field: stored embeddings.
        reference: tag or view of trusted in-distribution samples.
        ood_field: boolean field, True = OOD (the positive class).
        ood_pool: tag or view to draw the polluting samples from (default: the
            non-reference samples of ``samples`` with ``ood_field`` True).
        fractions: OOD shares of the polluted reference, each in ``[0, 1)``.
        method: ``"knn"``, ``"lof"`` or ``"mahalanobis"`` (without classes).
        k: one k or several (one row per fraction and k); ignored by Mahalanobis.
        reduce, n_components: optional reduction fitted on the polluted reference.
        run_key: store the table as a run of kind ``"experiment"``; None = write nothing.
        progress: None/False or a callable ``f(done, total)``.

    Returns:
        :class:`Table` with ``fraction``, ``num_polluting``, ``num_reference``,
        ``method``, ``k`` and the metrics of :func:`ood_core.metrics.ood_metrics`.
    """
    method = _check_method(method)
    ks = _as_tuple(k, "k") if method in _K_METHODS else (None,)
    fractions = tuple(float(f) for f in _as_tuple(fractions, "fractions"))
    bad = [f for f in fractions if not 0.0 <= f < 1.0]
    if bad:
        raise OODInputError(f"fractions must be in [0, 1) (share of OOD in the polluted reference); got {bad}")
    if run_key is not None:
        fo_runs.check_new_run(samples, run_key, [], overwrite)

    ref_view, ref_info = fo_runs.resolve_view(samples, reference, "reference")
    ref_ids, X_ref = _read(ref_view, embeddings_field)
    ids, X = _read(samples, embeddings_field)
    is_ood = _bool_by_id(samples, ood_field)
    ref_set = set(ref_ids)
    if ood_pool is None:
        pool_rows = [i for i, key in enumerate(ids) if key not in ref_set and is_ood.get(key)]
        pool_ids, X_pool = [ids[i] for i in pool_rows], X[pool_rows]
        pool_info = {"field": ood_field}
    else:
        pool_view, pool_info = fo_runs.resolve_view(samples, ood_pool, "ood_pool")
        pool_ids, X_pool = _read(pool_view, embeddings_field)
        keep = [i for i, key in enumerate(pool_ids) if key not in ref_set]
        pool_ids, X_pool = [pool_ids[i] for i in keep], X_pool[keep]

    n_ref = len(ref_ids)
    n_add = [int(round(f * n_ref / (1.0 - f))) for f in fractions]
    if max(n_add) > len(pool_ids):
        raise OODInputError(
            f"fraction {max(fractions)} needs {max(n_add)} OOD samples added to the {n_ref} reference samples but "
            f"the OOD pool has only {len(pool_ids)}; lower the fractions or give a larger ood_pool"
        )
    order = np.random.default_rng(seed).permutation(len(pool_ids))
    drawn = order[:max(n_add)]
    excluded = ref_set | {pool_ids[i] for i in drawn}
    eval_rows = [i for i, key in enumerate(ids) if key not in excluded and is_ood.get(key) is not None]
    X_eval = X[eval_rows]
    y_eval = np.array([is_ood[ids[i]] for i in eval_rows], dtype=bool)
    if not len(eval_rows) or y_eval.all() or not y_eval.any():
        raise OODInputError(
            f"the evaluation set (samples outside the reference and the pollution) has {int(y_eval.sum())} OOD and "
            f"{int((~y_eval).sum())} ID samples; it needs both: add labelled samples or lower the fractions"
        )

    rows = []
    total = len(fractions) * len(ks)
    for f, n in zip(fractions, n_add):
        X_fit = np.concatenate([X_ref, X_pool[order[:n]]]) if n else X_ref
        X_fit_r, X_eval_r = _reduce(X_fit, X_eval, reduce, n_components, seed)
        for kk in ks:
            row = {"fraction": f, "num_polluting": n, "num_reference": n_ref + n,
                   "pollution_share": n / (n_ref + n), "method": method, "k": kk,
                   "reduce": reduce if n_components else None, "n_components": n_components}
            row.update(_metrics_row(_score(X_eval_r, X_fit_r, None, method, kk, seed), y_eval))
            rows.append(row)
            _tick(progress, len(rows), total)
    table = Table(rows, info={
        "experiment": "pollution_sweep",
        "positive_class": f"OOD ({ood_field} == True)",
        "score_convention": "higher = more OOD",
        "reference": ref_info,
        "ood_pool": pool_info,
        "num_evaluated": len(eval_rows),
        "seed": seed,
    })
    if run_key is not None:
        _record(samples, run_key, "experiment", overwrite, table, experiment="pollution_sweep",
                embeddings_field=embeddings_field, reference=ref_info, ood_field=ood_field)
    return table


# --------------------------------------------------------------------------- Exp. 2: configurations


def _backbone(samples, embeddings_field):
    if embeddings_field in fo_runs.list_ood_runs(samples, kind="embeddings"):
        return fo_runs.get_ood_run_info(samples, embeddings_field).get("backbone")
    return None


def _channels(backbone):
    """Channels per stored level: from the config, else from timm's feature_info (no weights loaded)."""
    if backbone.get("channels"):
        return [int(c) for c in backbone["channels"]]
    import timm

    model = timm.create_model(backbone["model_name"], pretrained=False, features_only=True,
                              out_indices=tuple(backbone["level_indices"]))
    return [int(c) for c in model.feature_info.channels()]


def level_blocks(backbone, dim):
    """``[(level name, backbone level index, start column, stop column)]`` of stored embeddings.

    Both pyramid modes store one contiguous block per level, in level order:
    ``channels[l] * spatial`` columns where ``spatial = dim / sum(channels)``
    (``grid**2`` in pool mode, the deepest level's ``h * w`` in flatten mode).
    """
    names = list(backbone.get("levels") or [])
    indices = list(backbone.get("level_indices") or range(len(names)))
    channels = _channels(backbone)
    if len(channels) != len(names):
        raise OODInputError(
            f"the embeddings config lists {len(names)} levels but {len(channels)} channel counts; recompute the "
            "embeddings with this version of fiftyone-ood"
        )
    spatial, rem = divmod(int(dim), sum(channels))
    if rem or spatial == 0:
        raise OODInputError(
            f"embeddings have dimension {dim}, not a multiple of the {sum(channels)} channels of levels {names}; "
            "they were not made by this backbone config, so levels cannot be sliced"
        )
    blocks, start = [], 0
    for name, index, c in zip(names, indices, channels):
        blocks.append((name, int(index), start, start + c * spatial))
        start += c * spatial
    return blocks


def _resolve_subset(blocks, subset):
    if subset is None or subset == "all":
        return list(blocks)
    if isinstance(subset, (int, str, np.integer)):
        subset = [subset]
    chosen = []
    for level in subset:
        match = [b for b in blocks if (isinstance(level, str) and b[0] == level)
                 or (not isinstance(level, str) and b[1] == int(level))]
        if not match:
            raise OODInputError(
                f"level {level!r} is not among the stored levels {[b[0] for b in blocks]} (backbone indices "
                f"{[b[1] for b in blocks]}); choose level subsets of the stored embeddings"
            )
        if match[0] not in chosen:
            chosen.append(match[0])
    if not chosen:
        raise OODInputError("a level subset is empty; give at least one level per subset")
    return sorted(chosen, key=lambda b: b[2])


def level_columns(backbone, dim, levels):
    """Column indices of ``levels`` (names or backbone indices) in stored embeddings of dimension ``dim``."""
    blocks = _resolve_subset(level_blocks(backbone, dim), levels)
    return np.concatenate([np.arange(b[2], b[3]) for b in blocks])


def _level_subsets(samples, embeddings_field, level_subsets, dim):
    """``[(label, names, indices, columns)]``; columns None = all columns."""
    backbone = _backbone(samples, embeddings_field)
    if level_subsets is None and (not backbone or not backbone.get("levels")):
        return [("all", None, None, None)]
    if backbone is None or not backbone.get("levels"):
        raise OODInputError(
            f"{embeddings_field!r} has no recorded backbone config (levels), so level subsets cannot be sliced; "
            "compute the embeddings with compute_pyramid_embeddings, or pass level_subsets=None"
        )
    blocks = level_blocks(backbone, dim)
    if level_subsets is None:  # every contiguous run of stored levels
        level_subsets = [[b[0] for b in blocks[i:j]] for i in range(len(blocks)) for j in range(i + 1, len(blocks) + 1)]
    out = []
    for subset in level_subsets:
        chosen = _resolve_subset(blocks, subset)
        cols = np.concatenate([np.arange(b[2], b[3]) for b in chosen])
        out.append(("+".join(b[0] for b in chosen), [b[0] for b in chosen], [b[1] for b in chosen], cols))
    return out


def _sweep(samples, embeddings_field, *, reference, evaluation, ood_field, level_subsets, dims, k, methods,
           reduce, seed, progress):
    """Shared core of :func:`config_sweep` and :func:`auto_config`: ``(rows, info)``."""
    methods = tuple(_check_method(m) for m in _as_tuple(methods, "methods"))
    ks = _as_tuple(k, "k")
    dims = _as_tuple(dims, "dims")
    if reference is None:
        ref_view, ref_info = samples, {"unsupervised": True}
    else:
        ref_view, ref_info = fo_runs.resolve_view(samples, reference, "reference")
    ref_ids, X_ref = _read(ref_view, embeddings_field)
    if evaluation is None:
        eval_view = samples if reference is None else samples.exclude(ref_ids)
        eval_info = {"default": "samples outside the reference" if reference is not None else "all samples"}
    else:
        eval_view, eval_info = fo_runs.resolve_view(samples, evaluation, "evaluation")
    eval_ids, X_eval = _read(eval_view, embeddings_field)
    is_ood = _bool_by_id(eval_view, ood_field)
    keep = [i for i, key in enumerate(eval_ids) if is_ood.get(key) is not None]
    eval_ids, X_eval = [eval_ids[i] for i in keep], X_eval[keep]
    y = np.array([is_ood[key] for key in eval_ids], dtype=bool)
    if y.all() or not y.any():
        raise OODInputError(
            f"the evaluation samples have {int(y.sum())} OOD and {int((~y).sum())} ID labels in {ood_field!r}; "
            "metrics need both"
        )
    pos = {key: i for i, key in enumerate(ref_ids)}
    ref_index = np.array([pos.get(key, -1) for key in eval_ids], np.int64)

    subsets = _level_subsets(samples, embeddings_field, level_subsets, X_ref.shape[1])
    total = sum(len(ks) if m in _K_METHODS else 1 for m in methods) * len(dims) * len(subsets)
    rows = []
    for label, names, indices, cols in subsets:
        Xr = X_ref if cols is None else X_ref[:, cols]
        Xe = X_eval if cols is None else X_eval[:, cols]
        for d in dims:
            try:
                Xr_d, Xe_d = _reduce(Xr, Xe, reduce, d, seed)
                reduce_error = None
            except OODInputError as exc:
                reduce_error = str(exc)
            for method in methods:
                for kk in (ks if method in _K_METHODS else (None,)):
                    row = {"levels": label, "level_indices": indices, "dim_in": int(Xr.shape[1]),
                           "reduce": reduce if d is not None else None, "n_components": d,
                           "method": method, "k": kk}
                    error = reduce_error
                    if error is None:
                        try:
                            row.update(_metrics_row(_score(Xe_d, Xr_d, ref_index, method, kk, seed), y))
                        except OODInputError as exc:
                            error = str(exc)
                    if error is not None:
                        row.update(_empty_metrics())
                    row["error"] = error
                    rows.append(row)
                    _tick(progress, len(rows), total)
    info = {
        "positive_class": f"OOD ({ood_field} == True)",
        "score_convention": "higher = more OOD",
        "reference": ref_info,
        "evaluation": eval_info,
        "num_evaluated": len(eval_ids),
        "num_reference": len(ref_ids),
        "num_reference_in_evaluation": int((ref_index >= 0).sum()),
        "seed": seed,
    }
    return rows, info


def config_sweep(samples, embeddings_field, *, reference=None, evaluation=None, ood_field="is_ood",
                 level_subsets=None, dims=(None,), k=(10,), methods=("knn",), reduce="pca", seed=0,
                 run_key=None, overwrite=False, progress=None):
    """OOD metrics over level subsets x reduced dimensions x detectors x k (paper Exp. 2).

    Level subsets are column slices of the stored embeddings (one block per
    pyramid level, see :func:`level_blocks`), so a subset gives exactly the
    embedding that extracting only those levels would give (pool mode; in
    flatten mode the shallower levels are still resized to the deepest
    *stored* level). The detector (and reducer) are fitted on the reference
    and score the evaluation samples; evaluation samples that are also
    reference samples are scored with their self-match excluded, exactly as
    :func:`ood_core.fo_api.compute_ood_scores` scores them.

    Args:
        reference: tag or view of trusted samples; None = unsupervised: fit on
            all of ``samples``.
        evaluation: tag or view with ``ood_field`` labels (default: the samples
            outside the reference; all samples when unsupervised).
        ood_field: boolean field, True = OOD (the positive class).
        level_subsets: list of subsets, each a list of level names or backbone
            level indices (``[["layer1"], ["layer1", "layer2"]]``); None =
            every contiguous run of the stored levels ("all" = all levels).
        dims: reduced dimensions; None in the list = no reduction.
        k: neighbour counts for ``"knn"`` / ``"lof"``.
        methods: any of ``"knn"``, ``"lof"``, ``"mahalanobis"`` (tied covariance,
            no class means).
        reduce: ``"pca"``, ``"umap"`` or ``"random"``, fitted on the reference.
        run_key: store the table as a run of kind ``"experiment"``; None = write nothing.

    Returns:
        :class:`Table`, one row per setting (``levels``, ``level_indices``,
        ``dim_in``, ``reduce``, ``n_components``, ``method``, ``k``, metrics,
        ``error``); a setting that cannot run (e.g. more PCA dims than samples)
        has ``error`` set and metrics None.
    """
    if run_key is not None:
        fo_runs.check_new_run(samples, run_key, [], overwrite)
    rows, info = _sweep(samples, embeddings_field, reference=reference, evaluation=evaluation, ood_field=ood_field,
                        level_subsets=level_subsets, dims=dims, k=k, methods=methods, reduce=reduce, seed=seed,
                        progress=progress)
    table = Table(rows, info={"experiment": "config_sweep", **info})
    if run_key is not None:
        _record(samples, run_key, "experiment", overwrite, table, experiment="config_sweep",
                embeddings_field=embeddings_field, ood_field=ood_field)
    return table


def _best(rows, metric):
    valid = [r for r in rows if r.get("error") is None and r.get(metric) is not None]
    if not valid:
        errors = sorted({r.get("error") for r in rows if r.get("error")})
        raise OODInputError(f"no configuration could be evaluated; errors: {errors[:3]}")
    sign = -1.0 if metric in _LOWER_IS_BETTER else 1.0
    best_value = max(sign * r[metric] for r in valid)
    return next(r for r in valid if sign * r[metric] == best_value)  # ties: first in table order


def auto_config(samples, embeddings_field, *, validation, reference=None, ood_field="is_ood", level_subsets=None,
                dims=(None,), k=(1, 5, 10, 20), methods=("knn",), reduce="pca", metric="auroc", seed=0,
                run_key="auto_config", overwrite=False, progress=None):
    """Choose levels, reduced dims, k and detector on a small labelled validation set.

    Runs :func:`config_sweep` with ``evaluation=validation`` and picks the row
    with the best ``metric`` (``auroc``, ``aupr_in``, ``aupr_out``: highest;
    ``fpr95``, ``fpr95_openood``: lowest; ties go to the earliest row in table
    order, i.e. the order of ``level_subsets``, ``dims``, ``methods``, ``k``).
    The winning config, the metric and the whole table are recorded as a run
    of kind ``"auto_config"`` under ``run_key``; no field is written. Apply it
    with :func:`score_with_config`.

    Beware: a configuration chosen on a validation set is optimistic on that
    set; report metrics on held-out samples.

    Returns:
        ``{"run_key", "best" (the winning row), "config" (what
        score_with_config needs), "table"}``.
    """
    if metric not in ("auroc", "aupr_in", "aupr_out") + _LOWER_IS_BETTER:
        raise OODInputError(f"metric must be one of auroc, aupr_in, aupr_out, fpr95, fpr95_openood; got {metric!r}")
    fo_runs.check_new_run(samples, run_key, [], overwrite)
    rows, info = _sweep(samples, embeddings_field, reference=reference, evaluation=validation, ood_field=ood_field,
                        level_subsets=level_subsets, dims=dims, k=k, methods=methods, reduce=reduce, seed=seed,
                        progress=progress)
    table = Table(rows, info={"experiment": "auto_config", "metric": metric, **info})
    best = _best(rows, metric)
    config = {
        "embeddings_field": embeddings_field,
        "level_indices": best["level_indices"],
        "levels": best["levels"],
        "reduce": best["reduce"],
        "n_components": best["n_components"],
        "method": best["method"],
        "k": best["k"],
        "seed": seed,
        "reference": info["reference"],
    }
    fo_runs.register_run(
        samples, run_key, kind="auto_config", fields=[], overwrite=overwrite,
        results={"rows": rows, "best": best, "info": table.info},
        embeddings_field=embeddings_field, ood_field=ood_field, metric=metric, best_value=best[metric],
        best_config=config, validation=info["evaluation"], reference=info["reference"],
        search_space={"level_subsets": sorted({r["levels"] for r in rows}), "dims": list(_as_tuple(dims, "dims")),
                      "k": list(_as_tuple(k, "k")), "methods": list(_as_tuple(methods, "methods")),
                      "reduce": reduce},
    )
    return {"run_key": run_key, "best": best, "config": config, "table": table}


def score_with_config(samples, score_field, config, *, reference=None, run_key=None, overwrite=False):
    """Score a view with a config from :func:`auto_config` and write it as an ``ood_scores`` run.

    Args:
        config: the ``"config"`` dict returned by :func:`auto_config`, or the
            key of an ``auto_config`` run.
        reference: tag or view to fit on (default: the reference the config
            was chosen with; unsupervised when that was None).
    """
    from .fo_api import _values_by_key, score_arrays

    if isinstance(config, str):
        info = fo_runs.get_ood_run_info(samples, config)
        if info.get("kind") != "auto_config":
            raise OODInputError(f"run {config!r} is a {info.get('kind')!r} run, not an auto_config run")
        config = info["best_config"]
    run_key = run_key or score_field
    fo_runs.validate_key(score_field, "score field")
    fo_runs.check_new_run(samples, run_key, [score_field], overwrite)
    emb = config["embeddings_field"]
    if reference is None and not (config.get("reference") or {}).get("unsupervised"):
        recorded = config.get("reference") or {}
        reference = recorded.get("tag") or fo_runs.view_from_description(samples, recorded)
        if reference is None:
            raise OODInputError("the config records no reference; pass reference=<tag or view of trusted samples>")
    keys, X = _read(samples, emb)
    cols = None
    if config.get("level_indices") is not None:
        cols = level_columns(_backbone(samples, emb), X.shape[1], config["level_indices"])
        X = X[:, cols]
    X_ref = ref_index = None
    ref_info = None
    if reference is not None:
        ref_view, ref_info = fo_runs.resolve_view(samples, reference, "reference")
        ref_keys, X_ref = _read(ref_view, emb)
        X_ref = X_ref if cols is None else X_ref[:, cols]
        pos = {key: i for i, key in enumerate(ref_keys)}
        ref_index = np.array([pos.get(key, -1) for key in keys], np.int64)
    method = config["method"]
    scores, det, reducer = score_arrays(
        X, method=method, X_ref=X_ref, ref_index=ref_index, k=config.get("k"),
        class_conditional=False if method == "mahalanobis" else None,
        reduce=config.get("reduce"), n_components=config.get("n_components"), seed=config.get("seed", 0),
    )
    summary = {"run_key": run_key, "field": score_field, "method": method, "num_scored": int(len(scores)),
               "score_quantiles": {q: float(np.quantile(scores, q / 100)) for q in (5, 50, 95)}}
    fo_runs.write_and_record(
        samples, [(score_field, _values_by_key(samples, dict(zip(keys, scores)), None))], run_key,
        kind="ood_scores", overwrite=overwrite, score_field=score_field, embeddings_field=emb, label_field=None,
        patches_field=None, detector=det.get_params(), reduction=reducer.get_params() if reducer else None,
        reference=ref_info, levels=config.get("levels"), level_indices=config.get("level_indices"),
        backbone=_backbone(samples, emb), score_convention="higher = more out-of-distribution", results=summary,
    )
    return summary


# --------------------------------------------------------------------------- Exp. 3: label errors


def _wrong_label_truth(samples, gt_field, patches, keys, labels):
    """Per-key True (label wrong) / False / None from a boolean field or a true-label field."""
    import fiftyone.core.labels as fol

    from .fo_eval import _item_ids, _item_values

    dataset = samples._dataset
    path = gt_field
    if patches is not None and "." not in gt_field and dataset.get_field(gt_field) is None:
        path = f"{patches}.detections.{gt_field}"
    field = dataset.get_field(path)
    if getattr(field, "document_type", None) is fol.Classification:
        path = f"{path}.label"
    elif field is None and not (patches and dataset.count(path)):
        raise OODInputError(
            f"gt_field {gt_field!r} does not exist; pass a boolean field (True = label is wrong, e.g. "
            "'label_is_wrong') or a field with the true class names"
        )
    by_id = dict(zip(_item_ids(samples, patches), _item_values(samples, path, patches)))
    truth = []
    for key, label in zip(keys, labels):
        v = by_id.get(key)
        if v is None:
            truth.append(None)
        elif isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer)) and v in (0, 1)):
            truth.append(bool(v))  # a "label is wrong" flag
        else:
            truth.append(str(v) != str(label))  # a true class name
    return truth, path


def label_error_report(samples, label_field, embeddings_field=None, *, method="label_agreement", k=None,
                       gt_field=None, score_field=None, run_key=None, overwrite=False):
    """Per-class table of wrong-label scores (paper Exp. 3); higher score = more suspicious.

    Scores come from ``score_field`` when given (e.g. an existing
    ``compute_label_issues`` field), else they are computed unsupervised on
    ``samples`` with ``method`` (``"label_agreement"`` or the paper's
    ``"class_lof"``) and **not written**.

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

    from .fo_api import _label_kind, read_embeddings, score_arrays

    if method not in ("label_agreement", "class_lof"):
        raise OODInputError(f"method must be 'label_agreement' or 'class_lof'; got {method!r}")
    if run_key is not None:
        fo_runs.check_new_run(samples, run_key, [], overwrite)
    patches = label_field if _label_kind(samples, label_field) == "detections" else None
    if score_field is not None:
        from .fo_eval import _item_ids, _item_values

        label_path = f"{patches}.detections.label" if patches else f"{label_field}.label"
        spath = f"{patches}.detections.{score_field}" if patches and "." not in score_field else score_field
        triples = [t for t in zip(_item_ids(samples, patches), _item_values(samples, spath, patches),
                                  _item_values(samples, label_path, patches)) if t[1] is not None and t[2] is not None]
        if not triples:
            raise OODInputError(f"no item has both a score in {spath!r} and a label in {label_field!r}")
        keys, scores, labels = (list(x) for x in zip(*triples))
        scores = np.asarray(scores, np.float64)
        source = {"score_field": spath}
    else:
        if embeddings_field is None:
            raise OODInputError("pass embeddings_field (to compute scores) or score_field (existing scores)")
        keys, X, labels = read_embeddings(samples, embeddings_field, patches, label_field)
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
        _record(samples, run_key, "experiment", overwrite, table, experiment="label_error_report",
                label_field=label_field, gt_field=gt_field)
    return table


# --------------------------------------------------------------------------- plots


def _plot_inputs(scores, is_ood):
    from .metrics import _validate

    return _validate(scores, is_ood)


def plot_roc_pr(scores, is_ood, *, title=None):
    """ROC and precision-recall curves (OOD = positive class, higher score = more OOD) as a plotly figure."""
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go
    from sklearn.metrics import precision_recall_curve, roc_curve

    from .metrics import ood_metrics

    scores, is_ood = _plot_inputs(scores, is_ood)
    m = ood_metrics(scores, is_ood)
    fpr, tpr, _ = roc_curve(is_ood, scores)
    precision, recall, _ = precision_recall_curve(is_ood, scores)
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"ROC (AUROC {m['auroc']:.3f})", f"Precision-recall, OOD positive (AUPR-OUT {m['aupr_out']:.3f})"))
    fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name="ROC"), row=1, col=1)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "gray"},
                             name="chance", showlegend=False), row=1, col=1)
    fig.add_trace(go.Scatter(x=recall, y=precision, mode="lines", name="PR"), row=1, col=2)
    fig.update_xaxes(title_text="false positive rate (ID flagged)", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text="true positive rate (OOD flagged)", range=[0, 1.02], row=1, col=1)
    fig.update_xaxes(title_text="recall (OOD flagged)", range=[0, 1], row=1, col=2)
    fig.update_yaxes(title_text="precision", range=[0, 1.02], row=1, col=2)
    fig.update_layout(title=title or f"{m['num_ood']} OOD vs {m['num_id']} ID samples; "
                      f"FPR@95%ID-accepted {100 * m['fpr95']:.1f}%", showlegend=False)
    return fig


def plot_score_histogram(scores, is_ood, *, threshold=None, nbins=50, title=None):
    """Overlaid score histograms of ID and OOD samples; optional threshold line (flag = score >= threshold)."""
    import plotly.graph_objects as go

    scores, is_ood = _plot_inputs(scores, is_ood)
    edges = np.histogram_bin_edges(scores, bins=nbins)
    bins = {"start": float(edges[0]), "end": float(edges[-1]), "size": float(edges[1] - edges[0]) or 1.0}
    fig = go.Figure()
    fig.add_trace(go.Histogram(x=scores[~is_ood], name=f"ID ({int((~is_ood).sum())})", opacity=0.6, xbins=bins))
    fig.add_trace(go.Histogram(x=scores[is_ood], name=f"OOD ({int(is_ood.sum())})", opacity=0.6, xbins=bins))
    fig.update_layout(barmode="overlay", xaxis_title="OOD score (higher = more OOD)", yaxis_title="samples",
                      title=title or "Score distribution")
    if threshold is not None:
        fig.add_vline(x=float(threshold), line_dash="dash", line_color="red",
                      annotation_text=f"threshold {float(threshold):.4g} (flag if score >= threshold)")
    return fig


def save_figure(fig, path, *, include_plotlyjs=True):
    """Write ``fig`` as standalone HTML, plus PNG when kaleido is installed.

    ``path`` may end with ``.html``, ``.png`` or nothing; both files share its
    stem. HTML embeds plotly.js by default (works offline). Returns
    ``{"html": path, "png": path or None}``.
    """
    import os

    stem, ext = os.path.splitext(str(path))
    if ext.lower() not in (".html", ".htm", ".png", ""):
        stem = str(path)
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    html = stem + ".html"
    fig.write_html(html, include_plotlyjs=include_plotlyjs)
    png = None
    try:
        import kaleido  # noqa: F401
    except ImportError:
        logger.info("kaleido is not installed: wrote %s only (pip install kaleido for PNG)", html)
    else:
        png = stem + ".png"
        fig.write_image(png)
    return {"html": html, "png": png}
