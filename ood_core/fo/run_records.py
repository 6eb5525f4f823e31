"""This package's run records on a dataset, read as the database holds them now, and updated in place.

Every computation of this package is recorded as a FiftyOne *custom run* whose config carries
``ood_plugin="fiftyone-ood"``, the run ``kind``, every parameter and the fields it wrote (written by
:mod:`.runs`). This module lists them (internal backups hidden), refuses keys that name none, and changes a
record's entries in place. A run's record as users read it, with its links resolved, is :mod:`.run_info`'s.
"""

import contextlib
import contextvars

from ..errors import OODInputError
from .names import PLUGIN_TAG, is_internal
from .run_kinds import run_kind
from .run_sync import held_configs, refresh_stale_runs


def written_fields(samples):
    """Every field recorded by this package's runs on the dataset (scores, flags, suggestions, predictions)."""
    dataset = samples._dataset
    return {path for config in ood_run_configs(dataset).values() for path in (config.get("fields") or [])}


#: the audit whose runs are being recorded in this context (see :func:`made_by_audit`)
_MADE_BY = contextvars.ContextVar("ood_made_by_audit", default=None)
#: set beside ``made_by_audit`` by versions whose audits mark their runs recorded (:mod:`.audit_recovery`)
AUDIT_MARKS = "audit_marks_recorded"


def recording_audit():
    """The key of the audit whose runs are being recorded now (inside :func:`made_by_audit`), else None."""
    return _MADE_BY.get()


@contextlib.contextmanager
def made_by_audit(audit_key):
    """Score and flags runs recorded inside the block name the audit making them (``made_by_audit``), so the
    runs of an audit interrupted before its record was written are recognised (:mod:`.audit_recovery`)."""
    token = _MADE_BY.set(audit_key)
    try:
        yield
    finally:
        _MADE_BY.reset(token)


def update_run(samples, run_key, **changes):
    """Change entries of a run's config in place (one database update; the record is never absent)."""
    from .coordination import schema_lock

    dataset = samples._dataset
    with schema_lock(dataset):
        dataset.reload()
        config = dataset.get_run_info(run_key).config
        for name, value in changes.items():
            setattr(config, name, value)
        dataset.update_run_config(run_key, config)


def source_dataset(samples):
    """The dataset holding the runs of ``samples``: its dataset, or for a patches, frames or clips view the dataset
    it was generated from (FiftyOne records runs there)."""
    root = getattr(samples, "_root_dataset", None)
    return samples._dataset if root is None else root  # (not ``or``: an empty dataset is falsy, and counted)


def list_ood_runs(samples, kind=None):
    """Keys of this package's runs on the dataset, optionally of one ``kind`` (internal backups hidden), as the
    database holds them now (:func:`refresh_stale_runs`). For a patches, frames or clips view: the runs of the
    dataset it was generated from, which holds them (as FiftyOne's own ``list_runs``; its temporary dataset has
    none); ask that dataset for a run's record (:func:`require_run`)."""
    return list(ood_run_configs(samples, kind))


def ood_run_configs(samples, kind=None):
    """``{key: config dict}`` (read only) of the runs :func:`list_ood_runs` lists, read in one pass: look at every
    run's settings with this, not one ``get_run_info`` per key (each is a pass over all runs: quadratic)."""
    from .view_checks import require_collection

    require_collection(samples)
    if kind is not None:
        run_kind(kind)  # an unknown kind is named, not answered with no runs
    dataset = source_dataset(samples)
    refresh_stale_runs(dataset)
    return {key: config for key, config in held_configs(dataset).items() if config.get("ood_plugin") == PLUGIN_TAG
            and (kind is None or config.get("kind") == kind) and not is_internal(key)}


def require_run(samples, run_key):
    if not isinstance(run_key, str):
        raise OODInputError(f"run_key={run_key!r} is not a run key; pass the key as a string, e.g. "
                            f"{(list_ood_runs(samples) or ['ood_scores'])[0]!r}")
    require_run_dataset(samples, run_key)
    if run_key not in list_ood_runs(samples):
        raise OODInputError(
            f"no fiftyone-ood run {run_key!r} on dataset {samples._dataset.name!r}; "
            f"existing runs: {list_ood_runs(samples)}"
        )


def require_run_dataset(samples, run_key):
    """Refuse a patches, frames or clips view for a run's record: its runs live on the dataset it was generated
    from (:func:`list_ood_runs` lists them), which the error names."""
    root = source_dataset(samples)
    if samples._dataset.name == root.name:
        return
    keys = list_ood_runs(root)
    where = f"run {run_key!r} is recorded on dataset {root.name!r}, not on this view" if run_key in keys else \
        f"no fiftyone-ood run {run_key!r} on dataset {root.name!r} (existing runs: {keys})"
    raise OODInputError(f"{where}: this is a generated view (patches, frames or clips) of dataset {root.name!r}, "
                        f"whose runs are recorded on that dataset; pass the dataset instead of the view "
                        f"(fo.load_dataset({root.name!r}))")


def embeddings_patches_field(samples, embeddings_field):
    """The Detections field whose objects hold ``embeddings_field`` (None for sample-level vectors)."""
    config = ood_run_configs(samples._dataset, kind="embeddings").get(embeddings_field)
    return None if config is None else config.get("patches_field")
