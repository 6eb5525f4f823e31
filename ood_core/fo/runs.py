"""Run records and safe field writes on FiftyOne datasets.

Every computation of this package is recorded as a FiftyOne *custom run* (``init_run`` / ``register_run`` /
``save_run_results``) whose config carries ``ood_plugin="fiftyone-ood"``, the run ``kind``, every parameter and the
fields it wrote. Custom runs reload in any process without the plugin being importable (only JSON is stored).

Writes go through :func:`write_and_record`: values land in hidden temporary fields, the run is recorded, and only
then are the temporary fields renamed to their targets, so an interrupted run never leaves a half-filled field (or
a field without its run record) under the real name.
"""

import contextlib
import contextvars
import logging
from dataclasses import dataclass

from ..errors import OODInputError
from .run_sync import held_configs, refresh_stale_runs  # (its home; runs.refresh_stale_runs stays importable)

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
    RunKind("label_issues", "wrong-label scores (weighted label votes, label agreement, per-class LOF)", "wrong label",
            ("wrong label", "correct label")),
    RunKind("neglabel", "NegLabel zero-shot CLIP OOD scores", "ood", ("OOD", "ID")),
    RunKind("rap", "RAP few-shot CLIP OOD scores", "ood", ("OOD", "ID")),
    RunKind("adaneg", "AdaNeg zero-shot CLIP OOD scores (NegLabel + test-time memory)", "ood", ("OOD", "ID")),
    RunKind("flags", "threshold rule applied to a score run (flag field + tags)"),
    RunKind("auto_config", "configuration chosen on a labelled validation set"),
    RunKind("experiment", "a table of an experiment workflow (no fields)"),
    RunKind("audit", "one-call audit: scores, flags and an HTML report"),
)}

#: detector task (:mod:`ood_core.detectors`) -> the kind of the score run it records
_KIND_BY_TASK = {"ood": "ood_scores", "label_issues": "label_issues"}


def run_kind(name):
    """The :class:`RunKind` called ``name`` (raises for unknown kinds)."""
    if not isinstance(name, str) or name not in RUN_KINDS:  # (a list: "unhashable type" from the lookup)
        raise OODInputError(f"unknown run kind {name!r}; kinds are {sorted(RUN_KINDS)}: pass one of them")
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
    if key.startswith("tmp_ood_"):
        raise OODInputError(f"{what} {key!r} is reserved: names starting with 'tmp_ood_' are the plugin's own "
                            "temporary fields; choose another name")
    return key


def check_new_run(samples, run_key, fields, overwrite, *, reads=(), kind=None):
    """Refuse writes that can only be mistakes, and clobbering without ``overwrite``.

    Always refused, whatever ``overwrite`` says: writing into a field the call reads (``reads``: embeddings,
    labels, scores), into a built-in field, into an existing field that no run of this plugin wrote (a user's
    labels) or that another run (another key) wrote, or replacing a run of another kind than ``kind`` (when
    given). Without ``overwrite``: an existing run key or field, including one another writer of this plugin is
    committing right now; with ``overwrite`` such a field is replaced after that writer's commit (the commit waits
    for its field lock). ``fields`` are sample-level (or ``a.detections.b``) paths.
    """
    import numpy as np

    from . import commit
    from .view_checks import require_own_dataset
    from .ownership import refuse_stale_records

    validate_key(run_key)
    if not isinstance(overwrite, (bool, np.bool_)):
        raise OODInputError(f"overwrite={overwrite!r} is not valid; pass True (replace an earlier run of this key) "
                            "or False")
    require_own_dataset(samples)
    dataset = samples._dataset
    refresh_stale_runs(dataset)
    read = {path for path in reads if path and isinstance(path, str)}
    for path in fields:
        if path in read:
            raise OODInputError(
                f"field {path!r} is read by this call; writing the results into it would destroy the input. "
                "Choose another output field name"
            )
        leaf = path.rpartition(".")[2]
        if path.split(".")[0] in _BUILT_IN_FIELDS or ("." in path and leaf in _BUILT_IN_LABEL_ATTRIBUTES):
            raise OODInputError(f"{path!r} is a built-in field; choose another output field name")
    if dataset.has_run(run_key):
        existing = getattr(dataset.get_run_info(run_key).config, "kind", None)
        if not overwrite:
            raise OODInputError(
                f"run key {run_key!r} already exists on dataset {dataset.name!r}; choose another "
                "key or pass overwrite=True to replace the run and its fields"
            )
        if existing is None:
            raise OODInputError(f"run key {run_key!r} belongs to another tool, not fiftyone-ood; choose another key")
        if kind is not None and existing != kind:
            raise OODInputError(
                f"run key {run_key!r} on dataset {dataset.name!r} is a {existing!r} run; overwrite=True replaces only "
                f"a run of the same kind ({kind!r}). Choose another key, or delete that run first "
                f"(ood.delete_ood_run(dataset, {run_key!r}))"
            )
    for path in fields:
        if not _field_exists(dataset, path):
            continue
        refuse_stale_records(dataset, path)
        owner = _owning_run(dataset, path, prefer=run_key)
        if owner is None and not commit.in_flight(dataset, path):
            # this dataset document may have been read while another process was between renaming its new
            # field into place and recording its run, and that commit may have finished since: look again
            # before calling the field foreign (found by the fresh-clone CI: two writers of a new field)
            dataset.reload()
            owner = _owning_run(dataset, path, prefer=run_key)
        if owner is None and commit.in_flight(dataset, path):
            if overwrite:
                # another writer is between moving its old record aside and recording the new one; the
                # commit waits for that writer's field lock and replaces its result (found by the
                # fresh-clone CI: the second of two overwriting writers was refused here)
                continue
            raise OODInputError(
                f"field {path!r} is being written by another process right now (it already exists as far as "
                "this call is concerned); wait for it to finish and choose another name, or pass overwrite=True"
            )
        if owner is None:
            held = "" if dataset.get_field(path) is not None else " (its samples or objects hold values there)"
            raise OODInputError(
                f"field {path!r} exists on dataset {dataset.name!r}{held} but no fiftyone-ood run wrote it; refusing "
                "to replace data this plugin did not create, even with overwrite=True. Choose another field name "
                "(or delete the field yourself if it is really unwanted)"
            )
        if not overwrite:
            raise OODInputError(
                f"field {path!r} already exists on dataset {dataset.name!r} (written by run {owner!r}); choose "
                "another field name or pass overwrite=True to replace it"
            )
        if owner != run_key:
            raise OODInputError(
                f"field {path!r} on dataset {dataset.name!r} was written by another run, {owner!r}; overwrite=True "
                f"replaces only the fields of run {run_key!r} itself. Choose another field name, or delete run "
                f"{owner!r} first (ood.delete_ood_run(dataset, {owner!r}))"
            )


_BUILT_IN_FIELDS = {"id", "filepath", "tags", "metadata", "created_at", "last_modified_at"}
_BUILT_IN_LABEL_ATTRIBUTES = {"id", "label", "bounding_box", "confidence", "tags", "mask", "index"}


def _field_exists(dataset, path):
    """Declared, or held by any document: FiftyOne does not declare dynamic label attributes (a curator's
    ``gt.detections.my_note``), so the schema alone would call them free and they would be overwritten."""
    from .documents import field_exists

    return field_exists(dataset, path)


def _owning_run(dataset, path, prefer=None):
    """The run that lists ``path`` among its fields (``prefer`` if it is one of them), or None."""
    owners = [key for key, config in ood_run_configs(dataset).items() if path in (config.get("fields") or [])]
    return prefer if prefer in owners else (owners[0] if owners else None)


def written_fields(samples):
    """Every field recorded by this package's runs on the dataset (scores, flags, suggestions, predictions)."""
    dataset = samples._dataset
    return {path for config in ood_run_configs(dataset).values() for path in (config.get("fields") or [])}


def write_and_record(samples, writes, run_key, *, kind, overwrite=False, results=None, reads=(), cleanup=None,
                     **params):
    """Write fields and record their run all-or-nothing (see :mod:`.commit`).

    ``writes`` is a list of ``(path, values)`` or ``(path, values, field_type)``, values aligned with ``samples``.
    Values are staged in temporary fields, then committed under per-field locks: old fields are moved aside (not
    deleted) until the new fields and the new run record are in place; any failure restores the previous state.
    Overwriting from a view replaces only the view's values: the other samples keep theirs. ``cleanup``: the
    :mod:`.followups` of the commit (tags), as in :func:`.commit.commit`.
    """
    from . import commit, coordination
    from .ownership import refuse_stale_records

    dataset = samples._dataset
    commit.repair(dataset)
    targets = [w[0] for w in writes]
    check_new_run(samples, run_key, targets, overwrite, reads=reads, kind=kind)
    from .items import is_whole_dataset

    partial_view = overwrite and not is_whole_dataset(samples)
    if partial_view:
        from .view_overwrite import refuse_dropping_from_a_view, refuse_other_settings_from_a_view

        refuse_dropping_from_a_view(dataset, run_key, targets)
        if run_kind(kind).is_score:  # (a flags run's threshold is the call's own, from the view or not)
            refuse_other_settings_from_a_view(dataset, run_key, params, kind=kind)
    staged = []
    with contextlib.ExitStack() as held:
        try:
            for path, values, *field_type in writes:
                tmp = commit.reserve_tmp_path(path)
                held.enter_context(coordination.locked(coordination.job_key(dataset, tmp)))
                commit.stage_values(samples, path, values, *field_type, tmp=tmp, keep_others=partial_view)
                staged.append((tmp, path))

            def check(reloaded):
                if not overwrite:
                    check_new_run(reloaded, run_key, targets, overwrite, reads=reads, kind=kind)
                for path in targets:  # a field made by hand since the check above, under a stale record's name
                    refuse_stale_records(reloaded, path)

            def register():
                register_run(samples, run_key, kind=kind, fields=targets, overwrite=True, results=results,
                             **params)

            commit.commit(samples, staged, run_key, register, overwrite=overwrite, check=check, cleanup=cleanup,
                          reads=reads)
        except BaseException:
            commit.discard(dataset, [tmp for tmp, _ in staged])
            raise


def record_scores(samples, run_key, *, kind, score_field, scores_by_key, patches_field=None, extra_writes=(),
                  overwrite=False, results=None, reads=(), read_ids=None, **params):
    """Write one score per item and record the score run: the one path of every score writer.

    ``scores_by_key`` maps sample ids (object ids with ``patches_field``) to scores; the items the scores were
    computed from (``read_ids``: every item of that read, scored or not) without a score get None, no other item
    a value (a view such as ``$sample`` returns others at the next query: see :func:`.items.values_by_key`).
    ``extra_writes`` are further ``(path, values[, field_type])`` written in the same all-or-nothing step
    (e.g. a predicted label). The record always carries ``score_field``, ``patches_field``, the kind's positive
    class and the score convention, so :func:`score_path` finds the scores of any score run.
    """
    import fiftyone.core.fields as fof

    from .items import patch_path, values_by_key

    kind_info = run_kind(kind)
    if not kind_info.is_score:
        raise OODInputError(f"record_scores records score runs; {kind!r} is not a score kind")
    target = patch_path(patches_field, score_field) if patches_field else score_field
    writes = [(target, values_by_key(samples, scores_by_key, patches_field, read_ids=read_ids), fof.FloatField),
              *extra_writes]
    params.setdefault("score_convention", f"higher = more {kind_info.positive_class}")
    write_and_record(samples, writes, run_key, kind=kind, overwrite=overwrite, results=results, reads=reads,
                     score_field=score_field, patches_field=patches_field,
                     positive_class=kind_info.positive_class, **params)
    _index_for_sorting(samples._dataset, target)
    return target


def _index_for_sorting(dataset, path):
    """The App's grid sorts only by indexed fields: index every score field (best effort)."""
    try:
        dataset.create_index(path)
    except Exception:  # an index is a convenience; the scores are already committed
        logger.warning("could not index %r for sorting in the App", path, exc_info=True)


def embedding_run_config(samples, embeddings_field):
    """The backbone config recorded by the embeddings run ``embeddings_field``, or None; None too when its field is
    no longer the one the run wrote (renamed away and vectors of the user's put there: :mod:`.ownership`)."""
    from .ownership import owns_all

    dataset = samples._dataset
    if embeddings_field in list_ood_runs(dataset, kind="embeddings") and owns_all(dataset, embeddings_field):
        return getattr(dataset.get_run_info(embeddings_field).config, "backbone", None)
    return None


_RESERVED_RESULT_NAMES = {"run_key", "key", "samples", "config", "backend"}


def register_run(samples, run_key, *, kind, fields, overwrite=False, results=None, **params):
    """Record a completed computation as a custom run (config + JSON results)."""
    from .coordination import schema_lock

    run_kind(kind)
    dataset = samples._dataset
    with schema_lock(dataset):  # re-entrant: inside a commit it is already held
        dataset.reload()
        _register(samples, run_key, kind, fields, overwrite, results, params)
    return run_key


def record_run(samples, run_key, *, kind, overwrite=False, results=None, **params):
    """Record a run without fields (an experiment's table, an ``auto_config`` choice) all or nothing: its config
    and results replace the old ones in one journaled commit (:mod:`.commit`), so a failure or a kill between
    writing the two never leaves a record with another run's results, or a record without results."""
    from . import commit

    commit.commit(samples, [], run_key, lambda: register_run(samples, run_key, kind=kind, fields=[],
                                                             overwrite=overwrite, results=results, **params),
                  overwrite=overwrite)
    return run_key


#: the audit whose runs are being recorded in this context (see :func:`made_by_audit`)
_MADE_BY = contextvars.ContextVar("ood_made_by_audit", default=None)
#: set beside ``made_by_audit`` by versions whose audits mark their runs recorded (:mod:`.audit_recovery`)
AUDIT_MARKS = "audit_marks_recorded"


@contextlib.contextmanager
def made_by_audit(audit_key):
    """Score and flags runs recorded inside the block name the audit making them (``made_by_audit``), so the
    runs of an audit interrupted before its record was written are recognised (:mod:`.audit_recovery`)."""
    token = _MADE_BY.set(audit_key)
    try:
        yield
    finally:
        _MADE_BY.reset(token)


def _register(samples, run_key, kind, fields, overwrite, results, params):
    dataset = samples._dataset
    if _MADE_BY.get() is not None and kind not in ("embeddings", "audit"):
        params = {"made_by_audit": _MADE_BY.get(), AUDIT_MARKS: True, **params}
    replace = dataset.has_run(run_key)
    if replace:
        if not overwrite:
            raise OODInputError(f"run key {run_key!r} already exists; pass overwrite=True")
        if getattr(dataset.get_run_info(run_key).config, "kind", None) is None:
            dataset.delete_run(run_key)  # not a run of this package (check_new_run refuses these first)
            replace = False
    from .ownership import mark_fields
    from .run_values import recorded_count

    config = dataset.init_run(
        method=f"{PLUGIN_TAG}/{kind}",
        ood_plugin=PLUGIN_TAG,
        kind=kind,
        fields=list(fields),
        field_marks=mark_fields(dataset, fields),  # which fields are still this run's (:mod:`.ownership`)
        **recorded_count(dataset, kind, fields, params),  # values in its score field (:mod:`.run_values`)
        **params,
    )
    if replace:  # one update of the record in place: a crash never leaves the key without a record
        dataset.update_run_config(run_key, config)
    else:
        samples.register_run(run_key, config, overwrite=overwrite)
    stored = {k: v for k, v in (results or {}).items() if k not in _RESERVED_RESULT_NAMES}
    res = samples.init_run_results(run_key, **stored)
    samples.save_run_results(run_key, res)
    return run_key


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


def resolve_view(samples, view_or_tag, what="reference", purpose="in-distribution samples"):
    """A view of ``samples``' dataset from a sample tag or a view: ``(view, description)``.

    The description is JSON a run record can hold: ``{"tag": ...}`` or ``{"view": <JSON string of the view's
    stages>, "num_samples": n}``. Stages are stored as a string because raw serialized stages in a run config
    fail to deserialize when the run is reloaded. :func:`view_from_description` rebuilds the view. A reference (``what="reference"``) also gets ``samples_hash``, a hash of its sample
    ids in any order, so a record says which samples it trusted, not only how many (replacing scores from a
    view needs the same ones: :mod:`.view_overwrite`).
    """
    import json

    from .items import num_samples

    dataset = samples._dataset
    if isinstance(view_or_tag, str):
        view = dataset.match_tags(view_or_tag)
        if num_samples(view) == 0:
            raise OODInputError(
                f"{what} tag {view_or_tag!r} matches no samples on dataset {dataset.name!r}; tag the "
                f"{purpose} first (e.g. view.tag_samples({view_or_tag!r}))"
            )
        return view, _with_samples_hash({"tag": view_or_tag}, view, what)
    from .view_checks import is_collection, require_not_generated, show_all_fields

    if not is_collection(view_or_tag):
        raise OODInputError(f"{what} must be a sample tag (str) or a view of dataset {dataset.name!r}; got a "
                            f"{type(view_or_tag).__name__}. For given samples pass a view of them: "
                            f"{what}=dataset.select(sample_ids)")

    require_not_generated(view_or_tag)  # (a patches view's dataset is a temporary one: named as what it is)
    if view_or_tag._dataset.name != dataset.name:
        raise OODInputError(
            f"{what} view belongs to dataset {view_or_tag._dataset.name!r} but the scored samples belong to "
            f"{dataset.name!r}; use a view of the same dataset"
        )
    view_or_tag = show_all_fields(view_or_tag)  # only read: fields it hides (the App's visibility) are read anyway
    if num_samples(view_or_tag) == 0:
        raise OODInputError(f"{what} view is empty; it must contain the {purpose}")
    stages = view_or_tag._serialize() if hasattr(view_or_tag, "_serialize") else []
    return view_or_tag, _with_samples_hash({"view": json.dumps(stages, default=str),
                                            "num_samples": num_samples(view_or_tag)}, view_or_tag, what)


def _with_samples_hash(description, view, what):
    """``description`` plus ``samples_hash`` (SHA-256 of the sorted sample ids) for a reference."""
    if what != "reference":
        return description
    from .coordination import view_fingerprint

    return dict(description, samples_hash=view_fingerprint(view, ordered=False)["hash"])


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
    from .commit import is_internal
    from .view_checks import require_collection

    require_collection(samples)
    if kind is not None:
        run_kind(kind)  # an unknown kind is named, not answered with no runs
    dataset = source_dataset(samples)
    refresh_stale_runs(dataset)
    return {key: config for key, config in held_configs(dataset).items() if config.get("ood_plugin") == PLUGIN_TAG
            and (kind is None or config.get("kind") == kind) and not is_internal(key)}


def repair_ood_runs(samples):
    """Finish or undo writes that a killed process left on the dataset; remove orphan temporary fields.

    Every write does this first on its dataset; call it yourself after a crash to clean up without writing anything.
    Returns counts of what was repaired; besides what every write repairs,
    temporary keys left in sample documents that the schema does not declare (``stray_keys_removed``: FiftyOne
    cannot iterate such samples), lock documents of dead writers (``stale_locks_removed``) and the runs of audits
    killed or failed before they were recorded, with their fields, flags runs and tags
    (``interrupted_audit_runs_removed``: run keys), and maps a killed ``compute_ood_visualization`` left under
    temporary keys (``maps``: restored and removed keys), and links naming keys FiftyOne's own ``rename_run``
    changed, written as the runs' new keys (``links_repaired``: ``(run, link, old key, new key)``, :mod:`.links`).
    A patches, frames or clips view repairs the dataset it was generated from (its runs and fields are there).
    """
    from .commit import remove_stray_keys, repair
    from .coordination import remove_stale_locks
    from .view_checks import require_collection

    require_collection(samples)
    samples = dataset = source_dataset(samples)  # (of a patches view: the dataset it shows)
    done = repair(dataset)
    done["stray_keys_removed"] = remove_stray_keys(dataset)
    done["stale_locks_removed"] = remove_stale_locks(dataset)
    from .audit_recovery import remove_interrupted
    from .links import repair as repair_links
    from .maps import repair_maps

    done["links_repaired"] = repair_links(dataset)  # links naming keys FiftyOne's rename_run changed
    done["interrupted_audit_runs_removed"] = remove_interrupted(samples)
    done["maps"] = repair_maps(samples)
    return done


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


def get_ood_run_info(samples, run_key):
    """The run's config as a plain dict (method, parameters, fields, backbone...)."""
    require_run(samples, run_key)
    info = samples._dataset.get_run_info(run_key)
    cfg = info.config.serialize()
    cfg.pop("cls", None)
    cfg["run_key"] = run_key
    cfg["timestamp"] = str(info.timestamp)
    from .links import resolved_info

    return resolved_info(samples._dataset, cfg)  # links as FiftyOne's rename_run left them: the runs meant


def load_ood_results(samples, run_key):
    """The run's stored results (a FiftyOne ``RunResults`` with JSON attributes); an audit's summary names only the
    outputs that are still its own (:func:`.links.resolved_results`)."""
    from .links import resolved_results

    require_run(samples, run_key)
    return resolved_results(samples._dataset, run_key, samples._dataset.load_run_results(run_key, cache=False))


_MOVED = ("rename_ood_run", "delete_ood_run", "delete_run_record")


def __getattr__(name):
    """Renaming and deleting runs live in :mod:`.run_admin`; their names stay importable from here."""
    if name in _MOVED:
        from . import run_admin

        return getattr(run_admin, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
