"""The paper's workflows as SDK functions (Wulz & Krispel, Exp. 1-2); Exp. 3 is :mod:`.label_report`.

- :func:`pollution_sweep`: fit on a trusted reference set polluted with 0/1/5/10%
  OOD samples, measure OOD metrics on the rest (Exp. 1).
- :func:`config_sweep`: pyramid level subsets x reduced dimensions x k x
  detector (Exp. 2). Level subsets are sliced from the stored embeddings using
  the embeddings run's backbone config, so nothing is re-extracted.
- :func:`auto_config`: pick levels / dims / k / detector on a small labelled
  validation subset and record the winner as a run of kind ``"auto_config"``;
  :func:`score_with_config` applies a winning config to a view.

Every experiment returns a :class:`Table` (a list of dicts, one row per
setting, with ``to_dataframe()``) and writes **nothing** to the dataset unless
``run_key`` is given (then the table is stored as a run of kind
``"experiment"``). Metrics are those of :func:`ood_core.metrics.ood_metrics`:
**OOD is the positive class, higher score = more OOD**; in
:func:`label_error_report` the positive class is "label is wrong".
"""

import logging

import numpy as np

from ..errors import OODInputError
from ..levels import level_blocks, level_columns, resolve_level_subset
from . import runs

logger = logging.getLogger(__name__)

__all__ = [
    "Table",
    "auto_config",
    "config_sweep",
    "pollution_sweep",
    "score_with_config",
]

_METRIC_KEYS = ("auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_openood", "num_id", "num_ood")
_LOWER_IS_BETTER = ("fpr95", "fpr95_openood")


def _sweep_methods():
    """The label-free OOD detectors of the registry (label-based ones: see label_report)."""
    from ..detectors import detector_names

    return detector_names("ood")


def _takes_k(method):
    from ..detectors import detector_class

    return "k" in detector_class(method).default_params()


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


def _check_ks(k):
    """``k`` (one or several) as a tuple of Python ints >= 1, else OODInputError (rows report the k they used)."""
    ks = _as_tuple(k, "k")
    for value in ks:
        if not _is_number(value) or not np.isfinite(value) or int(value) != value or value < 1:
            raise OODInputError(f"k={k!r}: every k must be an integer >= 1 (the k-th nearest reference "
                                f"neighbour gives the score); {value!r} is not")
    return tuple(int(value) for value in ks)


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _check_fractions(fractions):
    """The pollution fractions as floats in [0, 1), else OODInputError."""
    fractions = _as_tuple(fractions, "fractions")
    if fractions == (None,) or not all(_is_number(f) for f in fractions):
        raise OODInputError(f"fractions={fractions!r}: pass numbers in [0, 1), e.g. fractions=(0, 0.05, 0.1)")
    bad = [float(f) for f in fractions if not 0.0 <= f < 1.0]
    if bad:
        raise OODInputError(f"fractions must be in [0, 1) (share of OOD in the polluted reference); got {bad}")
    return tuple(float(f) for f in fractions)


def _check_seed(seed):
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)) or seed < 0:
        raise OODInputError(f"seed={seed!r} is not valid; pass a whole number >= 0")
    return int(seed)


def _plain(values, name):
    """``values`` as a tuple with NumPy numbers turned into Python ones (rows and runs are stored as JSON)."""
    return tuple(v.item() if isinstance(v, np.generic) else v for v in _as_tuple(values, name))


def _pollution_args(method, k, fractions, seed, reduce, n_components):
    """:func:`pollution_sweep`'s settings checked and JSON-safe: ``(method, ks, fractions, seed, n_components)``."""
    method = _check_method(method)
    ks = _check_ks(k) if _takes_k(method) else (None,)
    n_components = n_components.item() if isinstance(n_components, np.generic) else n_components
    if reduce is None and n_components is not None:
        raise OODInputError(f"n_components={n_components!r} asks for a reduction but reduce=None; pass reduce='pca' "
                            "(or 'umap', 'random'), or n_components=None")
    return method, ks, _check_fractions(fractions), _check_seed(seed), n_components


def _read(view, embeddings_field):
    from .scores import read_embeddings

    keys, X, _ = read_embeddings(view, embeddings_field)
    return keys, X


def _bool_by_id(view, field, what="ood_field"):
    if view._dataset.get_field(field) is None:
        raise OODInputError(f"{what} {field!r} does not exist on dataset {view._dataset.name!r}; pass a boolean "
                            "field that is True for OOD samples (e.g. 'is_ood')")
    vals = view.values(field)
    odd = {repr(v) if isinstance(v, (str, int, float)) else f"a {type(v).__name__}" for v in vals if v is not None
           and not (isinstance(v, (bool, int, float, np.bool_, np.number)) and v in (0, 1))}  # (lists: unhashable)
    if odd:
        raise OODInputError(f"{what} {field!r} must be boolean (True = OOD); found {sorted(odd)[:3]}")
    return {i: (None if v is None else bool(v)) for i, v in zip(view.values("id"), vals)}


def _metrics_row(scores, is_ood):
    from ..metrics import ood_metrics

    m = ood_metrics(scores, is_ood)
    return {key: m[key] for key in _METRIC_KEYS}


def _empty_metrics():
    return {key: None for key in _METRIC_KEYS}


def _check_method(method):
    if method not in _sweep_methods():
        raise OODInputError(
            f"method {method!r} is not available in sweeps; use one of {_sweep_methods()} (label-based methods "
            "are covered by label_error_report)"
        )
    return method


def _score(X_eval, X_ref, ref_index, method, k, seed):
    from .scores import score_arrays

    scores, _, _ = score_arrays(
        X_eval, method=method, X_ref=X_ref, ref_index=ref_index, k=k if _takes_k(method) else None,
        class_conditional=False,  # label-free (ignored by detectors without it) seed=seed,
    )
    return scores


def _reduce(X_ref, X_eval, reduce, n_components, seed):
    from ..reduction import make_reducer

    if n_components is None or reduce is None:
        return X_ref, X_eval
    reducer = make_reducer(reduce, n_components, seed=seed)
    return reducer.fit_transform(X_ref), reducer.transform(X_eval)


def record_table(samples, run_key, kind, overwrite, table, **params):
    runs.record_run(samples, run_key, kind=kind, overwrite=overwrite,
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
    method, ks, fractions, seed, n_components = _pollution_args(method, k, fractions, seed, reduce, n_components)
    if run_key is not None:
        runs.check_new_run(samples, run_key, [], overwrite, kind="experiment")

    ref_view, ref_info = runs.resolve_view(samples, reference, "reference")
    ref_ids, X_ref = _read(ref_view, embeddings_field)
    ids, X = _read(samples, embeddings_field)
    is_ood = _bool_by_id(samples, ood_field)
    ref_set = set(ref_ids)
    if ood_pool is None:
        pool_rows = [i for i, key in enumerate(ids) if key not in ref_set and is_ood.get(key)]
        pool_ids, X_pool = [ids[i] for i in pool_rows], X[pool_rows]
        pool_info = {"field": ood_field}
    else:
        pool_view, pool_info = runs.resolve_view(samples, ood_pool, "ood_pool")
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
        record_table(samples, run_key, "experiment", overwrite, table, experiment="pollution_sweep",
                embeddings_field=embeddings_field, reference=ref_info, ood_field=ood_field)
    return table


# --------------------------------------------------------------------------- Exp. 2: configurations


def _backbone(samples, embeddings_field):
    if embeddings_field in runs.list_ood_runs(samples, kind="embeddings"):
        return runs.get_ood_run_info(samples, embeddings_field).get("backbone")
    return None


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
        chosen = resolve_level_subset(blocks, subset)
        cols = np.concatenate([np.arange(b[2], b[3]) for b in chosen])
        out.append(("+".join(b[0] for b in chosen), [b[0] for b in chosen], [b[1] for b in chosen], cols))
    return out


def _sweep(samples, embeddings_field, *, reference, evaluation, ood_field, level_subsets, dims, k, methods,
           reduce, seed, progress):
    """Shared core of :func:`config_sweep` and :func:`auto_config`: ``(rows, info)``."""
    methods = tuple(_check_method(m) for m in _as_tuple(methods, "methods"))
    ks = _check_ks(k) if any(_takes_k(m) for m in methods) else _as_tuple(k, "k")
    dims = _plain(dims, "dims")
    seed = _check_seed(seed)
    if reduce is None and any(d is not None for d in dims):
        raise OODInputError(f"dims={dims!r} asks for reduced dimensions but reduce=None; pass reduce='pca' (or "
                            "'umap', 'random'), or dims=(None,)")
    if level_subsets is not None and not isinstance(level_subsets, str):
        level_subsets = list(level_subsets)
    if isinstance(level_subsets, str) or level_subsets == []:
        raise OODInputError(f"level_subsets={level_subsets!r}: pass a list of level lists, e.g. "
                            "[['blocks.4'], ['blocks.4', 'blocks.6']], or None for every contiguous run of levels")
    if reference is None:
        ref_view, ref_info = samples, {"unsupervised": True}
    else:
        ref_view, ref_info = runs.resolve_view(samples, reference, "reference")
    ref_ids, X_ref = _read(ref_view, embeddings_field)
    if evaluation is None:
        eval_view = samples if reference is None else samples.exclude(ref_ids)
        eval_info = {"default": "samples outside the reference" if reference is not None else "all samples"}
    else:
        eval_view, eval_info = runs.resolve_view(samples, evaluation, "evaluation")
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
    total = sum(len(ks) if _takes_k(m) else 1 for m in methods) * len(dims) * len(subsets)
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
                for kk in (ks if _takes_k(method) else (None,)):
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
    :func:`ood_core.fo.scores.compute_ood_scores` scores them.

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
        runs.check_new_run(samples, run_key, [], overwrite, kind="experiment")
    rows, info = _sweep(samples, embeddings_field, reference=reference, evaluation=evaluation, ood_field=ood_field,
                        level_subsets=level_subsets, dims=dims, k=k, methods=methods, reduce=reduce, seed=seed,
                        progress=progress)
    table = Table(rows, info={"experiment": "config_sweep", **info})
    if run_key is not None:
        record_table(samples, run_key, "experiment", overwrite, table, experiment="config_sweep",
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
    runs.check_new_run(samples, run_key, [], overwrite, kind="auto_config")
    seed, dims, k = _check_seed(seed), _plain(dims, "dims"), _plain(k, "k")
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
    runs.record_run(
        samples, run_key, kind="auto_config", overwrite=overwrite,
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
    from .items import read_embeddings_and_ids
    from .score_outputs import p_value_outputs
    from .scores import score_arrays

    if isinstance(config, str):
        info = runs.get_ood_run_info(samples, config)
        if info.get("kind") != "auto_config":
            raise OODInputError(f"run {config!r} is a {info.get('kind')!r} run, not an auto_config run")
        config = info["best_config"]
    if not isinstance(config, dict) or not {"embeddings_field", "method"} <= set(config):
        raise OODInputError(
            f"config={config!r} is not an auto_config config; pass the 'config' dict that ood.auto_config returned, "
            "or the run key of an auto_config run"
        )
    run_key = run_key or score_field
    runs.validate_key(score_field, "score field")
    emb = config["embeddings_field"]
    runs.check_new_run(samples, run_key, [score_field], overwrite, reads=[emb], kind="ood_scores")
    if reference is None and not (config.get("reference") or {}).get("unsupervised"):
        recorded = config.get("reference") or {}
        reference = recorded.get("tag") or runs.view_from_description(samples, recorded)
        if reference is None:
            raise OODInputError("the config records no reference; pass reference=<tag or view of trusted samples>")
    keys, X, _, read_ids = read_embeddings_and_ids(samples, emb)  # read_ids: what the write replaces
    cols = None
    if config.get("level_indices") is not None:
        backbone = _backbone(samples, emb)
        if backbone is None:
            raise OODInputError(
                f"the config picks pyramid levels {config['level_indices']} of {emb!r}, but {emb!r} is not an "
                "embeddings run of this package (no level layout recorded); score the embeddings run the config "
                "was chosen on"
            )
        cols = level_columns(backbone, X.shape[1], config["level_indices"])
        X = X[:, cols]
    X_ref = ref_index = ref_info = None
    if reference is not None:
        ref_view, ref_info = runs.resolve_view(samples, reference, "reference")
        ref_keys, X_ref = _read(ref_view, emb)
        X_ref = X_ref if cols is None else X_ref[:, cols]
        pos = {key: i for i, key in enumerate(ref_keys)}
        ref_index = np.array([pos.get(key, -1) for key in keys], np.int64)
    method = config["method"]
    scores, det, reducer, ref_scores = score_arrays(
        X, method=method, X_ref=X_ref, ref_index=ref_index, k=config.get("k"),
        class_conditional=False,  # label-free (ignored by detectors without it)
        reduce=config.get("reduce"), n_components=config.get("n_components"), seed=config.get("seed", 0),
        return_reference_scores=True,
    )
    p_writes, calibration = p_value_outputs(samples, keys, scores, ref_scores, score_field, read_ids=read_ids)
    summary = {"run_key": run_key, "field": score_field, "method": method, "num_scored": int(len(scores)),
               "score_quantiles": {q: float(np.quantile(scores, q / 100)) for q in (5, 50, 95)}}
    runs.record_scores(
        samples, run_key, kind="ood_scores", score_field=score_field, scores_by_key=dict(zip(keys, scores)),
        extra_writes=p_writes, overwrite=overwrite, results=summary, reads=[emb], read_ids=read_ids,
        embeddings_field=emb, label_field=None, detector=det.get_params(),
        reduction=reducer.get_params() if reducer else None,
        reference=ref_info, levels=config.get("levels"), level_indices=config.get("level_indices"),
        backbone=_backbone(samples, emb), **calibration,
    )
    return summary
