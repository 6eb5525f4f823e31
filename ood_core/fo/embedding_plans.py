"""Where an embeddings call writes, decided before it computes anything: a fresh partial field, the resume of an
interrupted one, or the fill-in of a complete field (:func:`plan_embedding_write`), and the check that a call
continuing a run uses the run's own settings (:func:`require_same_settings`, :func:`settings_diff`).

The partial field ``tmp_ood_partial_<field>`` is the package's when a record of the run lists it or it carries the
package's mark (made with its mark, :func:`.ownership.new_mark_info`); a field of that name a user made is never
deleted: the call is refused, naming it.
"""

from . import coordination
from ..errors import OODInputError, SettingsConflictError
from .embedding_runs import field_gone, pending_overwrite, record_info, same_settings, side_key
from .items import is_whole_dataset
from .ownership import field_mark
from .run_info import get_ood_run_info


def plan_embedding_write(samples, run_key, target, partial, settings, overwrite):
    """Decide where this call writes: ``(partial, "fresh"|"resume", record key)`` or ``(target, "fill", run_key)``.

    The partial run is recorded under :func:`side_key` while a complete field of the run exists (an overwrite, or
    its resume by a call with the overwrite's settings without ``overwrite``), else under ``run_key``.
    ``overwrite`` from a view of a dataset whose other samples have embeddings of this run copies theirs into
    the fresh partial field first (same settings only), so they keep them.
    """
    dataset = samples._dataset
    with coordination.schema_lock(dataset):
        dataset.reload()
        side, protected = pending_overwrite(dataset, run_key, target, partial, overwrite)
        record_key = side_key(run_key) if protected else run_key
        # a field deleted or renamed by hand leaves the record listing a name that holds nothing: nobody's data,
        # computed afresh as a new field (filling it in wrote into a field that is not there)
        if overwrite or field_gone(dataset, run_key, target) or not dataset.has_run(run_key):
            keep = overwrite and dataset.has_run(run_key) and dataset.get_field(target) is not None \
                and not is_whole_dataset(samples)
            if keep:
                require_same_settings(samples, run_key, settings, "recomputing the view's embeddings would "
                                       "leave the other samples' under the new record; run the overwrite on the "
                                       "whole dataset, or choose another embeddings_field")
                if (settings.get("projection") or {}).get("method") == "pca":
                    raise OODInputError(
                        f"embeddings {run_key!r} are PCA-projected: overwriting them on a view would fit a new PCA "
                        "there while the other samples keep vectors of the old one; run the overwrite on the whole "
                        "dataset, or fill in missing embeddings without overwrite (the stored PCA is reused)")
            if dataset.get_field(partial) is not None:  # overwrite, or a killed call's leftover: not trusted
                require_partial_is_ours(dataset, run_key, partial)
                dataset.delete_sample_field(partial)
            if keep:  # overwriting from a view replaces only the view's values: the others are carried over
                dataset.clone_sample_field(target, partial)  # (samples, or objects a filter_labels view hides)
            return partial, "fresh", record_key
        if same_settings(side, settings):
            return partial, "resume", record_key  # an interrupted overwrite, resumed with its own settings
    pending = "" if not side else \
        f" (an interrupted overwrite is pending too: {settings_diff({k: side.get(k) for k in settings}, settings)})"
    info = require_same_settings(samples, run_key, settings, f"refusing to mix embeddings{pending}. Pass "
                                  "overwrite=True to recompute all of them, or choose another embeddings_field")
    if info.get("status") == "partial":
        return partial, "resume", run_key
    return target, "fill", run_key  # status "complete", or "filling" (a fill-in that was interrupted)


def require_same_settings(samples, run_key, settings, consequence):
    """The run's info, or OODInputError when it was computed with other settings than ``settings``."""
    info = get_ood_run_info(samples, run_key)
    old = {k: info.get(k) for k in settings}
    if _jsonable(old) != _jsonable(settings):
        problem = (f"embeddings {run_key!r} on dataset {samples._dataset.name!r} were computed with different "
                   f"settings ({settings_diff(old, settings)})")
        raise SettingsConflictError(f"{problem}; {consequence}", problem)
    return info


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def settings_diff(old, new):
    """What differs between two embeddings runs' settings, as 'name: stored X vs requested Y' parts."""
    old_b, new_b = _jsonable(old), _jsonable(new)
    parts = []
    for k in sorted(set(old_b) | set(new_b)):
        a, b = old_b.get(k), new_b.get(k)
        if k == "decoding" and (a or {}).get("reader") != (b or {}).get("reader"):
            parts.append(_reader_part((a or {}).get("reader"), (b or {}).get("reader")))
        elif isinstance(a, dict) and isinstance(b, dict):
            for kk in sorted(set(a) | set(b)):
                if a.get(kk) != b.get(kk):
                    parts.append(f"{k}.{kk}: stored {a.get(kk)!r} vs requested {b.get(kk)!r}")
        elif a != b:
            parts.append(f"{k}: stored {a!r} vs requested {b!r}")
    return "; ".join(parts[:4])


def _reader_part(stored, requested):
    """The difference of two runs' image readers (:data:`ood_core.images.READER_VERSION`), in words."""
    def words(version):
        return f"reader version {version}" if version is not None else \
            "an earlier release's (no record: colour profiles ignored, JPEGs decoded at full size)"
    return f"image reading: stored {words(stored)} vs requested {words(requested)}"


def require_partial_is_ours(dataset, run_key, partial):
    """Refuse to delete ``partial`` (``tmp_ood_partial_<field>``) unless it is the package's: a record of the run
    (or of its pending overwrite) lists it, or it carries the package's mark, which it gets when it is created
    (an older version's unrecorded leftover has none: refused too, and the error says how to delete it)."""
    listed = any(partial in (record_info(dataset, key).get("fields") or []) for key in (run_key, side_key(run_key)))
    if listed or field_mark(dataset, partial) is not None:
        return
    raise OODInputError(
        f"dataset {dataset.name!r} has a field {partial!r} that no fiftyone-ood run made (no record lists it, and it "
        f"has no mark of this package): computing embeddings {run_key!r} writes its progress there and would delete "
        f"it. Rename it (dataset.rename_sample_field({partial!r}, <another name>)), or pass another embeddings_field; "
        f"if it is the leftover of an interrupted call of an older version, delete it: "
        f"dataset.delete_sample_field({partial!r})")
