"""Recording runs and writing their fields all or nothing, on FiftyOne datasets.

Every computation of this package is recorded as a FiftyOne *custom run* (``init_run`` / ``register_run`` /
``save_run_results``) whose config carries ``ood_plugin="fiftyone-ood"``, the run ``kind``, every parameter and the
fields it wrote. Custom runs reload in any process without the plugin being importable (only JSON is stored).

Writes go through :func:`write_and_record`: values land in hidden temporary fields, the run is recorded, and only
then are the temporary fields renamed to their targets, so an interrupted run never leaves a half-filled field (or
a field without its run record) under the real name.

Reading records lives below (:mod:`.run_records`, :mod:`.run_info`, :mod:`.view_descriptions`, the registry of
kinds in :mod:`.run_kinds`); their public names stay importable from here.
"""

import contextlib
import logging

from ..errors import OODInputError
from .commit_journal import in_flight
from .names import PLUGIN_TAG, validate_key
# the reading side, importable from here as before (its homes are below this module)
from .run_info import get_ood_run_info, load_ood_results  # noqa: F401
from .run_kinds import RUN_KINDS, RunKind, run_kind, score_kind, score_kinds, score_path  # noqa: F401
from .run_records import (AUDIT_MARKS, list_ood_runs, made_by_audit, ood_run_configs, recording_audit,  # noqa: F401
                          require_run, require_run_dataset, source_dataset, update_run, written_fields)
from .run_sync import refresh_stale_runs  # noqa: F401
from .view_descriptions import resolve_view, view_from_description  # noqa: F401

logger = logging.getLogger(__name__)


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
        if owner is None and not in_flight(dataset, path):
            # this dataset document may have been read while another process was between renaming its new
            # field into place and recording its run, and that commit may have finished since: look again
            # before calling the field foreign (found by the fresh-clone CI: two writers of a new field)
            dataset.reload()
            owner = _owning_run(dataset, path, prefer=run_key)
        if owner is None and in_flight(dataset, path):
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


def _register(samples, run_key, kind, fields, overwrite, results, params):
    dataset = samples._dataset
    audit_key = recording_audit()
    if audit_key is not None and kind not in ("embeddings", "audit"):
        params = {"made_by_audit": audit_key, AUDIT_MARKS: True, **params}
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

