"""Run records and safe field writes on FiftyOne datasets.

Every computation of this package is recorded as a FiftyOne *custom run*
(``init_run`` / ``register_run`` / ``save_run_results``) whose config carries
``ood_plugin="fiftyone-ood"``, the run ``kind``, every parameter and the
fields it wrote. Custom runs reload in any process without the plugin being
importable (no plugin classes are stored, only JSON).

Writes go through :func:`write_and_record`: values land in hidden temporary
fields, the run is recorded, and only then are the temporary fields renamed
to their targets, so an interrupted run never leaves a half-filled field (or
a field without its run record) under the real name.
"""

import logging
import uuid

from .errors import OODInputError

logger = logging.getLogger(__name__)

PLUGIN_TAG = "fiftyone-ood"
RUN_KINDS = ("embeddings", "ood_scores", "label_issues", "neglabel", "rap", "visualization")


def validate_key(key, what="run key"):
    if not isinstance(key, str) or not key.isidentifier() or key.startswith("_"):
        raise OODInputError(
            f"{what} {key!r} is not valid: use letters, digits and underscores, not starting "
            "with a digit or underscore (e.g. 'ood_knn')"
        )
    return key


def check_new_run(samples, run_key, fields, overwrite):
    """Refuse to clobber an existing run or field unless ``overwrite``.

    ``fields`` are the sample-level (or embedded ``a.detections.b``) field
    paths the run will write.
    """
    validate_key(run_key)
    dataset = samples._dataset
    if dataset.has_run(run_key) and not overwrite:
        raise OODInputError(
            f"run key {run_key!r} already exists on dataset {dataset.name!r}; choose another "
            "key or pass overwrite=True to replace the run and its fields"
        )
    for path in fields:
        if _field_exists(dataset, path) and not overwrite:
            owner = _owning_run(dataset, path)
            hint = f" (written by run {owner!r})" if owner else ""
            raise OODInputError(
                f"field {path!r} already exists on dataset {dataset.name!r}{hint}; choose another "
                "field name or pass overwrite=True to replace it"
            )
        if overwrite and _field_exists(dataset, path):
            owner = _owning_run(dataset, path)
            if owner is None and path.split(".")[0] in _protected_fields(dataset):
                raise OODInputError(f"refusing to overwrite built-in field {path!r}")


def _protected_fields(dataset):
    return {"id", "filepath", "tags", "metadata", "created_at", "last_modified_at"}


def _field_exists(dataset, path):
    return dataset.get_field(path) is not None


def _owning_run(dataset, path):
    for key in dataset.list_runs(ood_plugin=PLUGIN_TAG):
        if path in (dataset.get_run_info(key).config.fields or []):
            return key
    return None


def stage_values(samples, path, values, field_type=None):
    """Write ``values`` (aligned with ``samples``) to a hidden temporary field.

    ``path`` is a sample field (``"ood_score"``) or an attribute of a list of
    labels (``"ground_truth.detections.ood_score"``; then ``values`` are
    nested lists). ``field_type`` (e.g. ``fiftyone.core.fields.VectorField``)
    declares the field first, so arrays inside labels read back as arrays.
    Returns the temporary path, to be passed to :func:`commit_staged` or
    :func:`discard_staged`.
    """
    prefix, _, _ = path.rpartition(".")
    tmp_leaf = f"tmp_ood_{uuid.uuid4().hex[:10]}"
    tmp = f"{prefix}.{tmp_leaf}" if prefix else tmp_leaf
    try:
        if field_type is not None:
            samples._dataset.add_sample_field(tmp, field_type)
        samples.set_values(tmp, values)
    except BaseException:
        discard_staged(samples, tmp)
        raise
    return tmp


def commit_staged(samples, tmp, path, *, overwrite=False):
    """Rename a staged temporary field to ``path`` (replacing it if ``overwrite``)."""
    dataset = samples._dataset
    if _field_exists(dataset, path):
        if not overwrite:
            raise OODInputError(f"field {path!r} appeared while writing; pass overwrite=True")
        dataset.delete_sample_field(path)
    dataset.rename_sample_field(tmp, path)


def discard_staged(samples, tmp):
    dataset = samples._dataset
    if _field_exists(dataset, tmp):
        dataset.delete_sample_field(tmp)


def write_and_record(samples, writes, run_key, *, kind, overwrite=False, results=None, **params):
    """Write fields and record their run all-or-nothing.

    ``writes`` is a list of ``(path, values)`` or ``(path, values, field_type)``. Values are staged in temporary
    fields, the run is registered, and only then are the temporary fields
    renamed to their real names. Any error removes the temporary fields (and
    the new run record), so no half-written field ever carries a real name.
    """
    dataset = samples._dataset
    staged = []
    registering = False
    backup = None
    try:
        for path, values, *field_type in writes:
            staged.append((stage_values(samples, path, values, *field_type), path))
        if overwrite and dataset.has_run(run_key):
            # keep the old record under a hidden key until the new one is in place
            backup = f"tmp_ood_backup_{uuid.uuid4().hex[:12]}"
            dataset.rename_run(run_key, backup)
        registering = True
        register_run(samples, run_key, kind=kind, fields=[w[0] for w in writes], overwrite=overwrite,
                     results=results, **params)
        for tmp, path in staged:
            commit_staged(samples, tmp, path, overwrite=overwrite)
    except BaseException:
        for tmp, _ in staged:
            discard_staged(samples, tmp)
        # a record this call created (even one that failed while being saved) goes too
        if registering and dataset.has_run(run_key):
            dataset.delete_run(run_key)
        if backup is not None:
            dataset.rename_run(backup, run_key)
        raise
    if backup is not None:
        dataset.delete_run(backup)


_RESERVED_RESULT_NAMES = {"run_key", "key", "samples", "config", "backend"}


def register_run(samples, run_key, *, kind, fields, overwrite=False, results=None, **params):
    """Record a completed computation as a custom run (config + JSON results)."""
    dataset = samples._dataset
    if dataset.has_run(run_key):
        if not overwrite:
            raise OODInputError(f"run key {run_key!r} already exists; pass overwrite=True")
        dataset.delete_run(run_key)
    config = dataset.init_run(
        method=f"{PLUGIN_TAG}/{kind}",
        ood_plugin=PLUGIN_TAG,
        kind=kind,
        fields=list(fields),
        **params,
    )
    samples.register_run(run_key, config, overwrite=overwrite)
    stored = {k: v for k, v in (results or {}).items() if k not in _RESERVED_RESULT_NAMES}
    res = samples.init_run_results(run_key, **stored)
    samples.save_run_results(run_key, res)
    return run_key


def resolve_view(samples, view_or_tag, what="reference", purpose="in-distribution samples"):
    """A view of ``samples``' dataset from a sample tag or a view: ``(view, description)``.

    The description is JSON a run record can hold: ``{"tag": ...}`` or
    ``{"view": <JSON string of the view's stages>, "num_samples": n}``. Stages
    are stored as a string because raw serialized stages in a run config fail
    to deserialize when the run is reloaded. :func:`view_from_description`
    rebuilds the view.
    """
    import json

    dataset = samples._dataset
    if isinstance(view_or_tag, str):
        view = dataset.match_tags(view_or_tag)
        if len(view) == 0:
            raise OODInputError(
                f"{what} tag {view_or_tag!r} matches no samples on dataset {dataset.name!r}; tag the "
                f"{purpose} first (e.g. view.tag_samples({view_or_tag!r}))"
            )
        return view, {"tag": view_or_tag}
    if not hasattr(view_or_tag, "_dataset"):
        raise OODInputError(f"{what} must be a sample tag (str) or a view of dataset {dataset.name!r}")
    if view_or_tag._dataset.name != dataset.name:
        raise OODInputError(
            f"{what} view belongs to dataset {view_or_tag._dataset.name!r} but the scored samples belong to "
            f"{dataset.name!r}; use a view of the same dataset"
        )
    if len(view_or_tag) == 0:
        raise OODInputError(f"{what} view is empty; it must contain the {purpose}")
    stages = view_or_tag._serialize() if hasattr(view_or_tag, "_serialize") else []
    return view_or_tag, {"view": json.dumps(stages, default=str), "num_samples": len(view_or_tag)}


def view_from_description(samples, description):
    """Rebuild the view (or tag view) that :func:`resolve_view` described; None if there is nothing to rebuild."""
    import json

    import fiftyone.core.view as fov

    description = description or {}
    if description.get("tag"):
        return samples._dataset.match_tags(description["tag"])
    if description.get("view"):
        return fov.DatasetView._build(samples._dataset, json.loads(description["view"]))
    return None


def list_ood_runs(samples, kind=None):
    """Keys of this package's runs on the dataset, optionally of one ``kind``."""
    kwargs = {"ood_plugin": PLUGIN_TAG}
    if kind is not None:
        kwargs["kind"] = kind
    return samples._dataset.list_runs(**kwargs)


def _require_run(samples, run_key):
    if run_key not in list_ood_runs(samples):
        raise OODInputError(
            f"no fiftyone-ood run {run_key!r} on dataset {samples._dataset.name!r}; "
            f"existing runs: {list_ood_runs(samples)}"
        )


def get_ood_run_info(samples, run_key):
    """The run's config as a plain dict (method, parameters, fields, backbone...)."""
    _require_run(samples, run_key)
    info = samples._dataset.get_run_info(run_key)
    cfg = info.config.serialize()
    cfg.pop("cls", None)
    cfg["run_key"] = run_key
    cfg["timestamp"] = str(info.timestamp)
    return cfg


def load_ood_results(samples, run_key):
    """The run's stored results (a FiftyOne ``RunResults`` with JSON attributes)."""
    _require_run(samples, run_key)
    return samples._dataset.load_run_results(run_key, cache=False)


def rename_ood_run(samples, run_key, new_run_key):
    """Rename a run key (fields keep their names; the record still lists them)."""
    _require_run(samples, run_key)
    validate_key(new_run_key)
    if samples._dataset.has_run(new_run_key):
        raise OODInputError(f"run key {new_run_key!r} already exists; delete it first or pick another")
    samples._dataset.rename_run(run_key, new_run_key)


def delete_ood_run(samples, run_key, *, delete_fields=True):
    """Delete a run record and (by default) the fields it wrote."""
    _require_run(samples, run_key)
    dataset = samples._dataset
    fields = dataset.get_run_info(run_key).config.fields or []
    if delete_fields:
        for path in fields:
            if _field_exists(dataset, path):
                dataset.delete_sample_field(path)
    dataset.delete_run(run_key)
    return fields
