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
from dataclasses import dataclass

from ..errors import OODInputError

logger = logging.getLogger(__name__)

PLUGIN_TAG = "fiftyone-ood"


@dataclass(frozen=True)
class RunKind:
    """What a run kind is: the one place evaluation, flags, the panel and run management look.

    ``positive_class`` is set for *score* runs (one number per item, higher =
    more of the positive class) and None for the others.
    """

    name: str
    description: str
    positive_class: str = None
    #: (positive, negative) class names as shown to a user (panel, reports)
    class_names: tuple = None

    @property
    def is_score(self):
        return self.positive_class is not None


#: run kind name -> :class:`RunKind`; every run of this package has one of these kinds
RUN_KINDS = {kind.name: kind for kind in (
    RunKind("embeddings", "pyramid or CLIP embeddings"),
    RunKind("ood_scores", "OOD scores (k-NN, Mahalanobis, LOF, ...)", "ood", ("OOD", "ID")),
    RunKind("label_issues", "wrong-label scores (label agreement, per-class LOF)", "wrong label",
            ("wrong label", "correct label")),
    RunKind("neglabel", "NegLabel zero-shot CLIP OOD scores", "ood", ("OOD", "ID")),
    RunKind("rap", "RAP few-shot CLIP OOD scores", "ood", ("OOD", "ID")),
    RunKind("flags", "threshold rule applied to a score run (flag field + tags)"),
    RunKind("auto_config", "configuration chosen on a labelled validation set"),
    RunKind("experiment", "a table of an experiment workflow (no fields)"),
    RunKind("audit", "one-call audit: scores, flags and an HTML report"),
)}

#: detector task (:mod:`ood_core.detectors`) -> the kind of the score run it records
_KIND_BY_TASK = {"ood": "ood_scores", "label_issues": "label_issues"}


def run_kind(name):
    """The :class:`RunKind` called ``name`` (raises for unknown kinds)."""
    if name not in RUN_KINDS:
        raise OODInputError(f"unknown run kind {name!r}; kinds are {sorted(RUN_KINDS)}")
    return RUN_KINDS[name]


def score_kinds():
    """Names of the kinds whose runs hold one score per item."""
    return tuple(name for name, kind in RUN_KINDS.items() if kind.is_score)


def score_kind(task):
    """The run kind recording scores of a detector ``task`` (``"ood"`` / ``"label_issues"``)."""
    return _KIND_BY_TASK[task]


def score_path(info):
    """The field path of a score run's scores, from its record (``get_ood_run_info``).

    ``score_field`` for sample scores, ``<patches>.detections.<score_field>``
    for object scores; None when the run is not a score run. A record without
    ``score_field`` (written by hand with :func:`write_and_record`) that lists
    exactly one field scores that field.
    """
    if not run_kind(info.get("kind")).is_score:
        return None
    fields = info.get("fields") or []
    if not info.get("score_field"):
        return fields[0] if len(fields) == 1 else None
    patches = info.get("patches_field")
    return f"{patches}.detections.{info['score_field']}" if patches else info["score_field"]


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


def record_scores(samples, run_key, *, kind, score_field, scores_by_key, patches_field=None, extra_writes=(),
                  overwrite=False, results=None, **params):
    """Write one score per item and record the score run: the one path of every score writer.

    ``scores_by_key`` maps sample ids (object ids with ``patches_field``) to
    scores; items without a score get None. ``extra_writes`` are further
    ``(path, values[, field_type])`` written in the same all-or-nothing step
    (e.g. a predicted label). The record always carries ``score_field``,
    ``patches_field``, the kind's positive class and the score convention, so
    :func:`score_path` finds the scores of any score run.
    """
    import fiftyone.core.fields as fof

    from .items import patch_path, values_by_key

    kind_info = run_kind(kind)
    if not kind_info.is_score:
        raise OODInputError(f"record_scores records score runs; {kind!r} is not a score kind")
    target = patch_path(patches_field, score_field) if patches_field else score_field
    writes = [(target, values_by_key(samples, scores_by_key, patches_field), fof.FloatField), *extra_writes]
    params.setdefault("score_convention", f"higher = more {kind_info.positive_class}")
    write_and_record(samples, writes, run_key, kind=kind, overwrite=overwrite, results=results,
                     score_field=score_field, patches_field=patches_field,
                     positive_class=kind_info.positive_class, **params)
    return target


def embedding_run_config(samples, embeddings_field):
    """The backbone config recorded by the embeddings run ``embeddings_field``, or None."""
    dataset = samples._dataset
    if embeddings_field in list_ood_runs(samples, kind="embeddings"):
        return getattr(dataset.get_run_info(embeddings_field).config, "backbone", None)
    return None


_RESERVED_RESULT_NAMES = {"run_key", "key", "samples", "config", "backend"}


def register_run(samples, run_key, *, kind, fields, overwrite=False, results=None, **params):
    """Record a completed computation as a custom run (config + JSON results)."""
    run_kind(kind)
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
