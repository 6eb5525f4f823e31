"""Where a stored OOD score lives, and reading it: a score run key or a score field resolved to its path
(sample field or object attribute), its values read in one pass with their item ids, and the checks every reader
shares (a finite number per item; the recorded field still present; a p-value field is not a score).

Used by :func:`ood_core.fo.evaluation.evaluate_ood_run` and :func:`~ood_core.fo.evaluation.flag_samples`, the
threshold rules (:mod:`.flag_rules`), the review panel and the label report.
"""

import numpy as np

from ..errors import OODInputError
from .items import detections_root, item_columns
from .run_info import get_ood_run_info
from .run_kinds import score_kinds, score_path
from .run_records import list_ood_runs
from .run_values import refuse_values_from_elsewhere
from .view_checks import require_not_generated


def resolve_scores(samples, run_key_or_score_field):
    """Where the scores live: ``{"run_key", "kind", "path", "patches_field", "info"}``."""
    require_not_generated(samples, reads_a_run=True)  # its runs are recorded on the source dataset
    dataset = samples._dataset
    name = run_key_or_score_field
    if not isinstance(name, str) or not name:
        raise OODInputError(f"pass a score run key or score field name (a string); got {name!r}")
    if name in list_ood_runs(samples):
        info = get_ood_run_info(samples, name)
        path = score_path(info)
        if path is None:
            raise OODInputError(
                f"run {name!r} is a {info.get('kind')!r} run, not a score run; pass the key of a "
                f"scoring run: {score_run_keys(samples)}"
            )
        patches = info.get("patches_field")
        patches = patches or detections_root(dataset, path)
        require_recorded_field(dataset, name, path, patches)
        refuse_values_from_elsewhere(dataset, name, path)  # merged from another dataset's run (:mod:`.run_values`)
        return {"run_key": name, "kind": info.get("kind"), "path": path, "patches_field": patches, "info": info}
    patches = detections_root(dataset, name)
    if patches is not None:
        if dataset.count(name) == 0:
            raise OODInputError(f"no object in {patches!r} has a value in {name!r}; score the objects first")
        return {"run_key": None, "kind": None, "path": name, "patches_field": patches, "info": None}
    if dataset.get_field(name) is None:
        raise OODInputError(
            f"{name!r} is neither a fiftyone-ood score run nor a field of dataset {dataset.name!r}; "
            f"score runs here: {score_run_keys(samples)}"
        )
    return {"run_key": None, "kind": None, "path": name, "patches_field": None, "info": None}


def score_run_keys(samples):
    """The keys of the fiftyone-ood score runs of ``samples``' dataset (named in refusals)."""
    return [k for k in list_ood_runs(samples)
            if samples._dataset.get_run_info(k).config.kind in score_kinds()]


def field_present(dataset, path, patches):
    """Whether ``path`` exists: a declared field, or an object attribute of ``patches`` some object holds."""
    if dataset.get_field(path) is not None:
        return True
    if not patches or dataset.get_field(patches) is None:
        return False
    try:  # an object attribute that is set but not declared in the schema
        return dataset.count(path) > 0
    except Exception:
        return False


def require_recorded_field(dataset, run_key, path, patches, what="its scores"):
    """Refuse a run whose recorded field was renamed or deleted by hand (FiftyOne would raise a raw error)."""
    if field_present(dataset, path, patches):
        return
    raise OODInputError(
        f"run {run_key!r} recorded {what} in field {path!r}, but dataset {dataset.name!r} has no field "
        f"{path!r} (renamed or deleted outside fiftyone-ood?); rename the field back "
        f"(dataset.rename_sample_field(<its new name>, {path!r})), or delete the run with "
        f"ood.delete_ood_run(dataset, {run_key!r}) and compute the scores again"
    )


def read_scores(samples, where):
    """``(item ids, scores)``, read in one pass over the view."""
    patches = where["patches_field"]
    id_path = "id" if patches is None else f"{patches}.detections.id"
    (ids, raw), _ = item_columns(samples, [id_path, where["path"]], patches)
    return ids, check_score_values(where["path"], raw)


def given_scores(where, item_scores):
    """``(ids, scores)`` a caller passed to :func:`flag_samples`, checked like the ones read here."""
    try:
        ids, raw = (list(x) for x in item_scores)
    except (TypeError, ValueError):
        raise OODInputError(f"item_scores must be a pair (ids, scores) of two lists; got {type(item_scores)}; pass "
                            "item_scores=None to read them from the view") from None
    if len(ids) != len(raw):
        raise OODInputError(f"item_scores holds {len(ids)} ids but {len(raw)} scores; pass one score (or None) per "
                            "id, or item_scores=None to read them from the view")
    return ids, check_score_values(where["path"], raw)


def check_score_values(path, raw):
    """``raw`` (a score or None per item of ``path``) when every score is a finite number, else OODInputError
    naming the field and the fix (shared with the review panel)."""
    bad = [i for i, v in enumerate(raw) if v is not None and not isinstance(v, (int, float, np.number))]
    if bad:
        raise OODInputError(
            f"{path!r} does not hold one number per item (e.g. {raw[bad[0]]!r}); "
            "pass a score field, not an embeddings or label field"
        )
    bad = [i for i, v in enumerate(raw) if v is not None and not np.isfinite(v)]
    if bad:
        raise OODInputError(
            f"{path!r} holds {len(bad)} NaN or infinite score(s) (e.g. {raw[bad[0]]!r}); set those items' "
            "values to None (no score: left out) or score them again"
        )
    return raw


def refuse_p_value_field(samples, path):
    """A run's p-value field is small = more OOD: read as a score (higher = more OOD) it inverts every metric."""
    for key in score_run_keys(samples):
        if (get_ood_run_info(samples, key).get("calibration") or {}).get("field") == path:
            raise OODInputError(f"{path!r} holds the p-values of run {key!r} (small = more OOD), not scores (higher = "
                                f"more OOD); evaluate the run instead: ood.evaluate_ood_run(samples, {key!r}, ...)")
