"""2-D maps of embeddings for the App's Embeddings panel: FiftyOne Brain visualization runs, replaced safely.

A map is computed by ``fiftyone.brain.compute_visualization`` without a brain key (nothing is written then).
Only then, under the dataset's schema lock (:func:`.coordination.schema_lock`), on a freshly reloaded dataset:

1. the new map is registered with its results under a temporary key ``tmp_ood_map_<hex>``;
2. an existing map under the key is moved aside to ``tmp_ood_mapold_<hex>_<key>`` (never deleted first);
3. the new map is renamed to the key;
4. the moved-aside map is deleted.

An exception at steps 1-3 undoes them: the old map goes back under its key and the temporary one is deleted. A
process killed in between leaves only keys of these two recognisable forms, each carrying this plugin's mark;
since they exist only while their writer holds the schema lock, the next map call on the dataset (or
:func:`repair_maps`) knows their writer is dead: it renames a moved-aside map back to its key when that key is
free (else deletes it: the new map made it in) and deletes temporary maps.

Ownership: every map of this package records ``ood_plugin="fiftyone-ood"`` in its brain config (the mark every
custom run of the package carries). A brain run under the key without it (a user's own
``fob.compute_visualization``, possibly with a ``points_field``, which FiftyOne's run cleanup deletes) is never
replaced, whatever ``overwrite`` says. The package deletes its own maps without FiftyOne's cleanup, so no field
is deleted with them.
"""

import contextlib
import logging
import re
import uuid

from ..errors import OODInputError
from .documents import undeclared_vectors_problem
from .names import TMP_PREFIX
from .items import (
    DEFAULT_EMBEDDINGS_FIELD,
    check_patches_field,
    count_items,
    patch_path,
    read_embeddings,
    require_embeddings_field,
    require_nonempty,
)
from .names import PLUGIN_TAG, validate_key

logger = logging.getLogger(__name__)

#: the map methods of FiftyOne Brain's compute_visualization offered here
VISUALIZATION_METHODS = ("umap", "tsne", "pca")
#: the fewest points a 2-D map is computed for
MIN_MAP_POINTS = 4
#: key of a new map while it is recorded (``<prefix><hex>``)
MAP_TMP_PREFIX = f"{TMP_PREFIX}map_"
#: key an existing map is moved aside to while it is replaced (``<prefix><hex>_<its key>``)
MAP_BACKUP_PREFIX = f"{TMP_PREFIX}mapold_"
_HEX = 10


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

    ``overwrite=True`` replaces only a map this plugin made under ``brain_key``; any other brain run there (a
    similarity index, a map made with ``fiftyone.brain`` directly) is refused. After an exception, or a crash
    followed by the next map call on the dataset, ``brain_key`` holds the complete old map or the new one.
    """
    import fiftyone.brain as fob

    require_nonempty(samples)
    validate_key(brain_key, "brain key")
    if method not in VISUALIZATION_METHODS:
        raise OODInputError(f"method={method!r} is not a map method; use one of {VISUALIZATION_METHODS}")
    if not isinstance(embeddings_field, str) or not embeddings_field:
        raise OODInputError(f"embeddings_field={embeddings_field!r} is not a field name; pass the name of an "
                            "embeddings field, e.g. 'ood_embeddings' (made by compute_pyramid_embeddings)")
    dataset = samples._dataset
    if patches_field is None:
        require_embeddings_field(dataset, embeddings_field)
    else:  # a name that is no Detections field is refused by name, not met as FiftyOne's error or an empty view
        check_patches_field(samples, patches_field)
    repair_maps(dataset)  # a map left moved aside by a killed call is back under its key before the check
    check_map_key(dataset, brain_key, overwrite)
    if patches_field is None:
        view = samples.exists(embeddings_field)
    else:
        from fiftyone import ViewField as F

        view = samples.filter_labels(patches_field, F(embeddings_field) != None)  # noqa: E711
    _require_embedded(samples, view, embeddings_field, patches_field)
    num_points = count_items(view, patches_field)
    check_map_points(num_points, embeddings_field)
    dim = _check_vectors(view, embeddings_field, patches_field, seed)
    points = _tsne_of_distinct(view, embeddings_field, patches_field, seed) if method == "tsne" else None
    # no brain key: computing writes nothing; the mark in the config says the map is this plugin's
    if points is not None:  # repeated embeddings: laid out once each, given as the map's points ('manual')
        results = fob.compute_visualization(view, points=points, patches_field=patches_field, brain_key=None,
                                            num_dims=2, ood_plugin=PLUGIN_TAG, ood_method="tsne")
    else:
        results = fob.compute_visualization(view, embeddings=embeddings_field, patches_field=patches_field,
                                            brain_key=None, method=method, num_dims=2, seed=seed, verbose=False,
                                            ood_plugin=PLUGIN_TAG, **_tsne_settings(num_points, dim, method))
    from .coordination import schema_lock

    with schema_lock(dataset):
        dataset.reload()
        _repair_locked(dataset)
        check_map_key(dataset, brain_key, overwrite)  # again: another process may have made one meanwhile
        _record_and_swap(dataset, view, results, brain_key)
    return {"brain_key": brain_key, "num_points": num_points}


def is_own_map(dataset, brain_key):
    """Whether ``brain_key`` is a map this plugin made (its brain config carries the plugin's mark)."""
    try:
        config = dataset.get_brain_info(brain_key).config
    except Exception:  # a config FiftyOne cannot load is nobody's we know
        return False
    return (getattr(config, "type", None) == "visualization"
            and getattr(config, "ood_plugin", None) == PLUGIN_TAG)


def check_map_key(dataset, brain_key, overwrite):
    """Refuse ``brain_key`` when a brain run is there and cannot be replaced: without ``overwrite``, or (whatever
    ``overwrite`` says) when it is not a map, or a map this plugin did not make; and an ``overwrite`` that is not
    a bool."""
    import numpy as np

    if not isinstance(overwrite, (bool, np.bool_)):
        raise OODInputError(f"overwrite={overwrite!r} is not valid; pass True (replace a map this plugin made under "
                            "this brain key) or False")
    if brain_key not in dataset.list_brain_runs():
        return
    if not overwrite:
        raise OODInputError(f"brain key {brain_key!r} already exists; pick another or pass overwrite=True")
    config = dataset.get_brain_info(brain_key).config
    kind = getattr(config, "type", None)
    if kind != "visualization":
        raise OODInputError(
            f"brain key {brain_key!r} is a {kind!r} run (e.g. a similarity index), not a map; overwrite=True "
            "replaces only a map. Choose another key"
        )
    if not is_own_map(dataset, brain_key):
        points = getattr(config, "points_field", None)
        kept = f"it and its points field {points!r} stay" if points else "it stays"
        deletes = f", which also deletes the field {points!r}" if points else ""
        raise OODInputError(
            f"brain key {brain_key!r} on dataset {dataset.name!r} is a map fiftyone-ood did not make (made with "
            f"fiftyone.brain directly, or by an older version of this plugin); refusing to replace it, even with "
            f"overwrite=True, so {kept} as before. Choose another brain key, or, if the map is yours to drop, "
            f"delete it first with dataset.delete_brain_run({brain_key!r}){deletes}"
        )


def repair_maps(samples):
    """Put back or remove the maps a killed :func:`compute_ood_visualization` left under temporary keys (every map
    call does this first). Returns ``{"restored": [keys], "removed": [temporary keys]}``."""
    from .coordination import schema_lock

    dataset = samples._dataset
    with schema_lock(dataset):
        dataset.reload()
        return _repair_locked(dataset)


def _repair_locked(dataset):
    """:func:`repair_maps` under the schema lock: any temporary map key seen now belongs to a dead writer."""
    done = {"restored": [], "removed": []}
    if _repair_references(dataset):
        dataset.reload()
    for key in dataset.list_brain_runs():
        if not _is_temporary(key) or not is_own_map(dataset, key):
            continue
        target = key[len(MAP_BACKUP_PREFIX) + _HEX + 1:] if key.startswith(MAP_BACKUP_PREFIX) else None
        if target and not dataset.has_brain_run(target):
            dataset.rename_brain_run(key, target)  # killed between moving the old map aside and the new one in
            done["restored"].append(target)
        else:
            _drop(dataset, key)
            done["removed"].append(key)
    if done["restored"] or done["removed"]:
        logger.warning("maps left by an interrupted call on dataset %r: restored %s, removed %s", dataset.name,
                       done["restored"], done["removed"])
    return done


def _is_temporary(key):
    """A key this module makes (a random token after the prefix): a user's ``tmp_ood_map_notes`` is not one."""
    return isinstance(key, str) and re.match(rf"^(?:{MAP_TMP_PREFIX}[0-9a-f]{{{_HEX}}}|{MAP_BACKUP_PREFIX}"
                                             rf"[0-9a-f]{{{_HEX}}}_.+)$", key) is not None


def _repair_references(dataset):
    """FiftyOne saves a run's document (collection ``runs``) and the dataset's list of brain runs in two writes; a
    process killed between them leaves the two disagreeing. Where a temporary map key is involved, make them agree:
    drop a listed key whose document is gone, give a listed document the key it is listed under, delete a marked
    temporary map document listed nowhere. Returns whether anything changed (raw database writes)."""
    import fiftyone.core.odm as foo

    conn = foo.get_db_conn()
    dataset_id = dataset._doc.id
    listed = (conn.datasets.find_one({"_id": dataset_id}, {"brain_methods": 1}) or {}).get("brain_methods") or {}
    docs = {d["_id"]: d for d in conn.runs.find({"_dataset_id": dataset_id},
                                                  {"key": 1, "config.ood_plugin": 1, "config.type": 1})}
    changed = False
    for key, ref in listed.items():
        doc = docs.get(ref)
        if doc is None and _is_temporary(key):  # killed between deleting the document and the list entry
            conn.datasets.update_one({"_id": dataset_id}, {"$unset": {f"brain_methods.{key}": ""}})
            changed = True
        elif doc is not None and doc.get("key") != key and (_is_temporary(key) or _is_temporary(doc.get("key"))):
            conn.runs.update_one({"_id": ref}, {"$set": {"key": key}})  # killed inside a rename: the list rules
            changed = True
    for ref, doc in docs.items():
        config = doc.get("config") or {}
        if (ref not in listed.values() and _is_temporary(doc.get("key")) and config.get("type") == "visualization"
                and config.get("ood_plugin") == PLUGIN_TAG):  # killed inside registering a new map
            conn.runs.delete_one({"_id": ref})
            changed = True
    return changed


def _record_and_swap(dataset, view, results, brain_key):
    """Steps 1-4 of the module docstring, under the schema lock; an exception undoes them."""
    tmp = f"{MAP_TMP_PREFIX}{uuid.uuid4().hex[:_HEX]}"
    backup = None
    try:
        method = results.config.build()
        method.register_run(view, tmp, overwrite=False, cleanup=False)
        method.save_run_results(view, tmp, results, cache=False)
        if dataset.has_brain_run(brain_key):
            backup = f"{MAP_BACKUP_PREFIX}{uuid.uuid4().hex[:_HEX]}_{brain_key}"
            dataset.rename_brain_run(brain_key, backup)
        dataset.rename_brain_run(tmp, brain_key)
    except BaseException:
        _undo(dataset, brain_key, tmp, backup)
        raise
    if backup is not None:
        try:
            _drop(dataset, backup)
        except Exception:  # the new map is in place; the old one waits, recognisable, for the next call
            logger.warning("map %r replaced, but its old version could not be deleted yet (kept as %r); the next "
                           "map call on dataset %r deletes it", brain_key, backup, dataset.name, exc_info=True)
            with contextlib.suppress(Exception):  # e.g. its document deleted, the dataset's list not saved
                _repair_references(dataset)
                dataset.reload()


def _undo(dataset, brain_key, tmp, backup):
    """The old map back under ``brain_key``, no temporary map. A failure here is logged: what is left keeps its
    temporary key, which the next call repairs."""
    def restore():
        if backup is not None and dataset.has_brain_run(backup):
            if dataset.has_brain_run(brain_key):  # the new map got in (under the lock nobody else writes here)
                _drop(dataset, brain_key)
            dataset.rename_brain_run(backup, brain_key)

    def discard():
        if dataset.has_brain_run(tmp):
            _drop(dataset, tmp)
        _repair_references(dataset)  # e.g. the temporary map's document saved, the dataset's list not

    for step in (restore, discard):  # each on its own: a failed restore still discards the temporary map
        try:
            dataset.reload()  # a failed FiftyOne call may have changed the in-memory run list only
            step()
            dataset.reload()
        except Exception:
            logger.warning("could not undo the replacement of map %r on dataset %r (%s); the next map call on it "
                           "finishes the undo", brain_key, dataset.name, step.__name__, exc_info=True)


def _drop(dataset, brain_key):
    """Delete a map of this plugin without FiftyOne's cleanup (which deletes a run's points field)."""
    import fiftyone.core.brain as fobr

    fobr.BrainMethod.delete_run(dataset, brain_key, cleanup=False)


def _require_embedded(samples, view, embeddings_field, patches_field):
    """Refuse a map when no item of ``samples`` has an embedding (``view``: those that have one), saying why:
    object embeddings that do not exist on these objects (as scoring says it), or items not embedded yet."""
    if count_items(view, patches_field):
        return
    if patches_field is not None and samples._dataset.get_field(patch_path(patches_field, embeddings_field)) is None:
        read_embeddings(samples, embeddings_field, patches_field)  # raises: where the vectors are and the fix
    what = f"objects in {patches_field!r}" if patches_field else "samples"
    total = count_items(samples, patches_field)
    if not total:
        raise OODInputError(f"this view has no {what}: nothing to map; map a view whose samples have objects in "
                            f"{patches_field!r}")
    raise OODInputError(
        f"none of the {total:,} {what} of this view has an embedding in {embeddings_field!r}, so there is nothing "
        f"to map; compute them first (compute_pyramid_embeddings(view, {embeddings_field!r}"
        f"{f', patches_field={patches_field!r}' if patches_field else ''})), or map a view of {what} that have them")


def _tsne_settings(num_points, dim, method="tsne"):
    """t-SNE first reduces to 50 dimensions by PCA, perplexity 30: no more than the points allow."""
    if method != "tsne":
        return {}
    pca_dims = min(50, num_points - 1, dim)
    return {"pca_dims": pca_dims if pca_dims >= 2 else None, "perplexity": min(30.0, (num_points - 1) / 3)}


def _tsne_of_distinct(view, embeddings_field, patches_field, seed):
    """t-SNE points ``{sample or object id: point}`` of a view whose embeddings repeat; None if all differ.

    FiftyOne Brain's t-SNE gives identical vectors equal affinities, so they repel each other: copies land far
    apart and the map spreads over thousands of units. Here each distinct vector is laid out once by the
    brain's own t-SNE with the same settings, and its copies share its point. Views without repeats are mapped
    by the brain directly, as before."""
    import numpy as np
    from fiftyone.brain.visualization import TSNEVisualizationConfig

    keys, X, _ = read_embeddings(view, embeddings_field, patches_field)
    _, first, inverse = np.unique(X, axis=0, return_index=True, return_inverse=True)
    if len(first) == len(X):
        return None
    order = np.argsort(first)  # distinct vectors in the view's order (t-SNE's layout depends on the order)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    settings = _tsne_settings(len(first), X.shape[1])
    config = TSNEVisualizationConfig(num_dims=2, seed=seed, verbose=False, **settings)
    points, _ = config.build().fit_reducer(X[first[order]])
    points = np.asarray(points)[rank[np.asarray(inverse).ravel()]]
    return {key: row for key, row in zip(keys, points)}


def check_map_points(num_points, embeddings_field):
    """Refuse a map of fewer than :data:`MIN_MAP_POINTS` points (also the App's map form's check)."""
    if num_points < MIN_MAP_POINTS:
        raise OODInputError(f"a 2-D map needs at least {MIN_MAP_POINTS} points with embeddings in "
                            f"{embeddings_field!r}; the view has {num_points}: map a larger view")


def _check_vectors(view, embeddings_field, patches_field, seed):
    """The embeddings' dimension; refuses a field that does not hold vectors of at least 2 numbers (a 2-D map
    needs them), every one of them numbers, of one shape and finite (read as every scoring call reads them), not
    all one vector, and a seed that is not a whole number."""
    import numpy as np

    from ..validation import is_int

    if not is_int(seed) or not 0 <= seed < 2**32:  # the methods' random_state takes 0..2**32 - 1
        raise OODInputError(f"seed={seed!r} is not valid; pass a whole number from 0 to 2**32 - 1, e.g. seed=0")
    value = _first_vector(view, embeddings_field, patches_field)
    path = patch_path(patches_field, embeddings_field) if patches_field else embeddings_field
    problem = undeclared_vectors_problem(view._dataset, path, value, then="map again")
    if problem:
        raise OODInputError(problem)
    try:
        vector = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        vector = None
    if vector is None or vector.ndim != 1 or isinstance(value, str) or vector.size < 2:
        raise OODInputError(
            f"{embeddings_field!r} does not hold embedding vectors of at least 2 numbers (its first value is a "
            f"{type(value).__name__}); pass an embeddings field, e.g. one computed with compute_pyramid_embeddings")
    _, X, _ = read_embeddings(view, embeddings_field, patches_field)  # all of them, not only the first
    if not np.ptp(X, axis=0).any():  # t-SNE divides by their spread (0) and crashes the process
        raise OODInputError(
            f"all {len(X)} embeddings in {embeddings_field!r} of this view are the same vector, so a map has "
            "nothing to lay out (PCA would put every point on one spot; t-SNE crashes on it). Identical "
            "embeddings usually come from blank or constant images or a failed extraction: check the images, "
            "recompute the embeddings (overwrite=True), or map a view whose embeddings differ")
    _check_scale(X, embeddings_field)
    return int(vector.size)


#: embeddings differing by less than this (in every dimension) are mapped as one vector: t-SNE's PCA start then
#: underflows to a spread of 0 and the process dies (a segmentation fault)
MIN_MAP_SPREAD = 1e-12
#: values larger than this overflow the float32 squared distances UMAP computes (a ValueError from deep inside)
MAX_MAP_VALUE = 1e15


def _check_scale(X, embeddings_field):
    """Refuse embeddings of a scale the map methods cannot lay out: spread too small or values too large."""
    import numpy as np

    spread = float(np.ptp(X.astype(np.float64), axis=0).max())
    largest = float(np.abs(X).max())
    if spread < MIN_MAP_SPREAD or largest > MAX_MAP_VALUE:
        problem = (f"differ by at most {spread:.3g}, below {MIN_MAP_SPREAD:g}" if spread < MIN_MAP_SPREAD
                   else f"reach {largest:.3g}, above {MAX_MAP_VALUE:g}")
        raise OODInputError(
            f"the {len(X)} embeddings in {embeddings_field!r} of this view {problem}: at that scale the map "
            "methods fail (t-SNE crashes the process, UMAP overflows). Such values usually come from a failed "
            "extraction: recompute the embeddings (overwrite=True), or store them rescaled to values around 1 "
            "(e.g. divided by their largest absolute value) in another field and map that")


def _first_vector(view, embeddings_field, patches_field):
    value = view.limit(1).values(patch_path(patches_field, embeddings_field) if patches_field else embeddings_field)[0]
    if patches_field:
        value = next(v for v in value if v is not None)
    return value


def first_vector_dim(view, embeddings_field, patches_field):
    return len(_first_vector(view, embeddings_field, patches_field))
