"""k-NN OOD scores through a FiftyOne Brain similarity index (pgvector, Milvus, ...).

For reference sets that do not fit one machine, or teams that already run a
vector database: the reference embeddings live in a similarity index of
``fiftyone.brain.compute_similarity`` (any backend: ``"pgvector"``,
``"milvus"``, ``"qdrant"``, ``"lancedb"``, ``"sklearn"``, ...), and each scored
sample's k nearest reference neighbours come from that index. The score is the
same as :class:`ood_core.detectors.KNNDetector`: higher = more OOD.

- ``metric="cosine"`` index (what this module creates): the distance
  ``1 - cos`` is turned into the L2 distance of unit vectors,
  ``sqrt(2 (1 - cos))``, so scores equal the k-NN detector (``method="knn"``
  with ``normalize=True``) up to the index's precision.
- ``metric="euclidean"`` index: raw L2 distances, equal to the k-NN detector
  with ``normalize=False``.

A scored sample that is itself in the reference index is left out of its
own neighbours (``k + 1`` are asked for and its own id dropped), like the
in-memory detector.

Memory is bounded: reference vectors are uploaded and queries are read in
chunks of ``batch_size`` samples; only the scores of the view are held.
"""

import contextlib
import functools
import inspect
import itertools
import logging

import numpy as np

from ..errors import BackendError, OODInputError
from ..progress import Progress
from ..validation import check_positive_int
from . import runs
from .items import read_embeddings
from .pgvector_names import pgvector_names

logger = logging.getLogger(__name__)

#: Metrics whose distances convert to the k-NN score, and the detector setting they match.
_METRIC_NORMALIZE = {"cosine": True, "euclidean": False}


def distances_to_scores(dists, metric):
    """Convert index distances to k-NN scores (numpy, no FiftyOne)."""
    d = np.asarray(dists, dtype=np.float64)
    if metric == "cosine":
        return np.sqrt(np.clip(2.0 * d, 0.0, None))
    return d


def kth_distance(neighbor_ids, dists, query_id, k):
    """Distance to the k-th neighbour, leaving ``query_id`` out of its own neighbours.

    Returns None when fewer than ``k`` other neighbours came back.
    """
    others = [d for nid, d in zip(neighbor_ids, dists) if nid != query_id]
    return others[k - 1] if len(others) >= k else None


def _embedding_chunks(samples, embeddings_field, batch_size, metric, seen, ids=None):
    """Yield ``(ids, X)`` chunks of the samples of ``ids`` (default: those of ``samples`` with an embedding) that
    have one, read by id (``$sample`` views return others at each query), each checked before it reaches the index
    (pgvector refuses NaN with a raw error that breaks its connection): finite numeric vectors of the dimension
    ``seen["dim"]`` (the index's, else the first chunk's), none all-zero under cosine."""
    ids = samples.exists(embeddings_field).values("id") if ids is None else ids
    for start in range(0, len(ids), batch_size):
        chunk = samples._dataset.select(ids[start:start + batch_size]).exists(embeddings_field)
        if not len(chunk):
            continue
        cids, X, _ = read_embeddings(chunk, embeddings_field)
        dim = seen.setdefault("dim", X.shape[1])
        if X.shape[1] != dim:
            raise OODInputError(
                f"embeddings in {embeddings_field!r} have {X.shape[1]} dimensions (e.g. sample {cids[0]}), but "
                f"{seen.get('what', 'the others')} have {dim}: recompute them with one setting (overwrite=True), "
                "or build a new index for them (another brain_key, with reference=...)")
        zero = [i for i, n in zip(cids, np.linalg.norm(X, axis=1)) if n == 0] if metric == "cosine" else []
        if zero:
            raise OODInputError(
                f"{len(zero)} sample(s) have an all-zero embedding in {embeddings_field!r} (ids {zero[:5]}): a "
                "cosine index has no direction for them, so their distances would be NaN. Exclude them from the "
                'view (view.exclude(ids)), recompute their embeddings, or use an index with metric="euclidean"')
        yield cids, X


def _refuse_brain_sklearn(backend):
    if backend == "sklearn":
        raise OODInputError(
            "the Brain's sklearn similarity backend centres the embeddings, so its distances are not k-NN "
            'scores; for in-memory search use compute_ood_scores(method="knn"), or pass an external backend '
            'such as "pgvector"'
        )


def _check_backend_name(backend):
    """Refuse a backend name FiftyOne's Brain does not know, naming the ones it does."""
    import fiftyone.brain as fob

    known = sorted(fob.brain_config.similarity_backends)
    if not isinstance(backend, str) or backend not in known:
        raise OODInputError(f"backend={backend!r} is not a similarity backend of this FiftyOne Brain; pass one of "
                            f"{', '.join(repr(b) for b in known if b != 'sklearn')}")


def index_metric(index):
    """The metric of a FiftyOne Brain similarity index whose distances give k-NN scores (reads its config only:
    an index, or a brain run's info); refuses an index of object patches, the sklearn backend and metrics without a
    k-NN distance."""
    _refuse_patches(index.config, getattr(index, "key", None))
    _refuse_brain_sklearn(index.config.method)
    return _check_metric(getattr(index.config, "metric", None))


def _refuse_patches(config, brain_key):
    patches = getattr(config, "patches_field", None)
    if patches is not None:
        name = f"similarity index {brain_key!r}" if brain_key else "this similarity index"
        raise OODInputError(
            f"{name} holds embeddings of object patches (patches_field={patches!r}): its points are objects, not "
            "samples, so its neighbours give no sample-level k-NN score. Pass the key of an index of sample "
            "embeddings, or build one (compute_knn_scores_with_index(..., reference=..., brain_key='<new key>')); "
            f"to score the objects themselves, use compute_ood_scores(..., patches_field={patches!r})")


def _check_metric(metric):
    if metric not in _METRIC_NORMALIZE:
        raise OODInputError(
            f"similarity index metric {metric!r} cannot give k-NN distances; build the index with "
            'metric="cosine" (the k-NN detector\'s normalised distance) or metric="euclidean"')
    return metric


def _load_index(dataset, brain_key, embeddings_field, backend_kwargs=None):
    """A kept index; ``backend_kwargs`` carry its credentials (e.g. ``connection_string``) when they are not in
    FiftyOne's brain config."""
    info = dataset.get_brain_info(brain_key)
    if getattr(info.config, "type", None) != "similarity":
        raise OODInputError(
            f"brain run {brain_key!r} on dataset {dataset.name!r} is not a similarity index; pass the key "
            "of a fiftyone.brain.compute_similarity run, or a new key to build one"
        )
    index_metric(info)  # from its config, before connecting
    credentials = {k: v for k, v in (backend_kwargs or {}).items() if k != "metric"}
    try:
        index = dataset.load_brain_results(brain_key, **credentials)
    except Exception as e:
        if isinstance(e, OODInputError):
            raise
        raise BackendError(
            f"could not open the similarity index {brain_key!r}: {e}. Check that its server is running, and pass "
            "its connection settings again (e.g. connection_string=...) if they are not in FiftyOne's brain config"
        ) from e
    # an index this package built records its field and that field's settings (the Brain's own field is None)
    stored = getattr(index.config, "embeddings_field", None) or getattr(index.config, "ood_embeddings_field", None)
    if stored is not None and stored != embeddings_field:
        raise OODInputError(
            f"similarity index {brain_key!r} holds embeddings of field {stored!r}, not {embeddings_field!r}; "
            f"pass embeddings_field={stored!r} or build a new index for {embeddings_field!r}"
        )
    recorded = getattr(index.config, "ood_embeddings_settings", None)
    if recorded is not None and recorded != _embeddings_settings(dataset, embeddings_field):
        raise OODInputError(
            f"embeddings {embeddings_field!r} were recomputed with other settings since the similarity index "
            f"{brain_key!r} was built: it holds the old vectors, so its distances to the new ones mean nothing. "
            f"Build a new index (another brain_key, with reference=...), or {_delete_first(index, brain_key)}"
        )
    return index


def _embeddings_settings(dataset, embeddings_field):
    """What fixes the vectors of an embeddings run (backbone, projection, dtype) as a JSON string; "" for a field
    no embeddings run of this package wrote."""
    import json

    if embeddings_field not in runs.list_ood_runs(dataset, kind="embeddings"):
        return ""
    info = runs.get_ood_run_info(dataset, embeddings_field)
    return json.dumps({k: info.get(k) for k in ("backbone", "projection", "dtype")}, sort_keys=True, default=str)


def _build_index(ref_view, n_ref, embeddings_field, brain_key, backend, batch_size, progress, backend_kwargs,
                 seen):
    """Create a similarity index of the reference embeddings, uploading them in chunks (``seen``: see
    :func:`_embedding_chunks`)."""
    import fiftyone.brain as fob

    kwargs = dict(backend_kwargs)
    _check_metric(kwargs.setdefault("metric", "cosine"))  # before anything is created
    kwargs = pgvector_names(backend, kwargs, brain_key)  # before anything is created
    dataset = ref_view._dataset
    chunks = _embedding_chunks(ref_view, embeddings_field, batch_size, kwargs["metric"], seen)
    first = next(chunks)  # checked before anything is created
    seen["what"] = f"the reference's (in the index {brain_key or '(temporary)'!r})"
    kwargs.update(ood_embeddings_field=embeddings_field,  # what a later call with this brain_key checks
                  ood_embeddings_settings=_embeddings_settings(dataset, embeddings_field),
                  ood_embeddings_dim=seen["dim"])
    try:
        index = fob.compute_similarity(ref_view, embeddings=False, embeddings_field=None, brain_key=brain_key,
                                       backend=backend, progress=False, **kwargs)
    except Exception as e:
        # the brain registers the run before connecting: do not leave a dead index behind
        if brain_key is not None and dataset.has_brain_run(brain_key):
            dataset.delete_brain_run(brain_key)
        if isinstance(e, (ValueError, TypeError)) and not _is_connection_error(e):
            raise OODInputError(f"similarity backend {backend!r} refused its settings: {e}") from e
        raise BackendError(
            f"could not create a {backend!r} similarity index: {e}. Check that the server is running and "
            "the connection settings (e.g. connection_string=..., uri=...) are right") from e
    try:
        with Progress(progress, n_ref, "upload reference") as bar:
            for ids, X in itertools.chain([first], chunks):
                index.add_to_index(X, np.asarray(ids), reload=False)
                bar.update(len(ids))
        index.reload()
        if brain_key is not None:
            index.save()
    except BaseException as e:
        _drop_index(dataset, index, brain_key)
        if isinstance(e, ValueError) and "dimension" in str(e).lower():
            raise OODInputError(
                f"the {backend!r} index refused the embeddings of {embeddings_field!r}: {e}. Compute embeddings "
                "of fewer dimensions for it (compute_pyramid_embeddings(..., project_dim=1024)), or use another "
                "backend") from e
        raise
    return index


def _is_connection_error(e):
    return "connect" in str(e).lower() or type(e).__name__ in ("OperationalError", "ConnectionError")


def _drop_index(dataset, index, brain_key):
    """Remove an index this module created: backend storage, then the brain run."""
    _close_connections(index)  # a failed statement leaves the connection refusing every further one
    try:
        if "drop_table" in inspect.signature(index.cleanup).parameters:
            index.cleanup(drop_table=True)
        else:
            index.cleanup()
    except Exception as e:  # the original error matters more than a failed cleanup
        logger.warning("could not clean up the similarity index: %s", e)
    if brain_key is not None and dataset.has_brain_run(brain_key):
        dataset.delete_brain_run(brain_key)


def _close_connections(index):
    """Close a backend's connection (pgvector; reopened when next used): not reused after an error broke it."""
    with contextlib.suppress(Exception):  # AttributeError (a backend without one) included
        index.close_connections()


@contextlib.contextmanager
def _quiet_backend_logs():
    """Brain backends log "Connecting to ..." at INFO on every query batch; keep warnings only."""
    log = logging.getLogger("fiftyone.brain.internal.core")
    old = log.level
    log.setLevel(max(old, logging.WARNING))
    try:
        yield
    finally:
        log.setLevel(old)


def _query(index, X, k, embeddings_field):
    """Neighbour ids and distances for each row of ``X``. ``_kneighbors`` is the query method every Brain
    similarity backend implements (``sort_by_similarity`` is built on it), the only call that returns distances for
    a batch of query vectors. An index that records no dimension (not this package's) refuses another one here."""
    try:
        sample_ids, _label_ids, dists = index._kneighbors(query=X, k=k, return_dists=True)
    except Exception as e:
        if "dimension" not in str(e).lower():
            raise
        _refuse_dimension(index, X, embeddings_field, str(e).strip(), e)
    return sample_ids, dists


def _refuse_dimension(index, X, embeddings_field, problem, cause=None):
    raise OODInputError(
        f"similarity index {getattr(index, 'key', None)!r} cannot take the {X.shape[1]}-dimensional embeddings of "
        f"{embeddings_field!r} ({problem}): pass the embeddings field it was built from, or build a new index "
        "(another brain_key, with reference=...)") from cause


def _compute_knn_scores_with_index(
    samples,
    embeddings_field="ood_embeddings",
    score_field="ood_score",
    *,
    reference=None,
    brain_key=None,
    backend="pgvector",
    k=50,
    batch_size=1000,
    run_key=None,
    overwrite=False,
    progress=None,
    **backend_kwargs,
):
    """k-NN OOD scores of ``samples`` from a FiftyOne Brain similarity index.

    Either build the index from ``reference`` (a sample tag or view) with
    ``backend`` and ``backend_kwargs`` (e.g. ``connection_string=...`` for
    pgvector, ``uri=...`` for Milvus), or pass ``brain_key`` of an existing
    index of sample embeddings (an index of object patches is refused). With a
    new ``brain_key`` the built index is kept for later runs; with
    ``brain_key=None`` it is temporary and dropped afterwards. When both an
    existing index and ``reference`` are given, the call is refused when the
    index lacks reference samples that have embeddings (added since it was
    built, say), naming how many; an index holding exactly the reference's
    samples is queried as is, one holding more is restricted to the reference
    with ``use_view`` (every query filtered by the reference's ids: time
    quadratic in the reference size, as each reference sample is scored for
    the p-values). The run records which (``similarity["id_filter"]``).
    An index answering with samples deleted from the dataset since is refused
    (the error's ``sample_ids`` are theirs, for ``remove_from_index``).

    A new pgvector index never touches a table or index it did not make: a
    ``table_name`` or ``index_name`` that already names a relation in the
    database is refused before anything is written, and names left out are
    new unique ones (``fiftyone_ood_[tmp_]<uuid>`` and ``..._idx``).

    Args:
        samples: the view to score (sample-level embeddings).
        embeddings_field: field with the embeddings (see
            ``compute_pyramid_embeddings``).
        score_field: where the score goes; higher = more OOD.
        k: the k-th neighbour's distance is the score.
        batch_size: samples per upload / query chunk (bounds memory).
        progress: None/True (tqdm), False or a ``f(done, total)`` callable.

    Returns:
        a dict summary (run key, field, counts, score quantiles).
    """
    from .score_outputs import p_value_outputs
    from .scores import score_summary

    k = check_positive_int(k, "k")
    batch_size = check_positive_int(batch_size, "batch_size")
    run_key = run_key or score_field
    existing = _check_index_call(samples, embeddings_field, score_field, run_key, brain_key, backend, reference,
                                 overwrite)
    ref_view, ref_info, n_ref = _reference_with_embeddings(samples, reference, embeddings_field, k)
    dataset = samples._dataset
    seen = {}  # the dimension every chunk of embeddings must have (see _embedding_chunks)
    if existing:
        index = _load_index(dataset, brain_key, embeddings_field, backend_kwargs)
        if getattr(index.config, "ood_embeddings_dim", None) is not None:
            seen.update(dim=index.config.ood_embeddings_dim, what=f"the vectors of similarity index {brain_key!r}")
    else:
        index = _build_index(ref_view, n_ref, embeddings_field, brain_key, backend, batch_size, progress,
                             backend_kwargs, seen)
    id_filter = False  # whether queries are restricted to the reference by ids (use_view)
    try:
        if existing and ref_view is not None:
            id_filter = _restrict_to_reference(index, ref_view, n_ref, embeddings_field, brain_key, batch_size)
        metric = index_metric(index)
        read_ids = samples.values("id")  # read once: every sample scored or skipped, the ones the write replaces
        scores = _score_with_index(samples, index, embeddings_field, k, metric, batch_size, progress, seen, read_ids)
        summary = score_summary(run_key, score_field, list(scores.values()), len(read_ids), method="knn")
        ref_scores = _reference_scores(ref_view, scores, index, embeddings_field, k, metric, batch_size, seen)
        p_writes, calibration = p_value_outputs(samples, list(scores), list(scores.values()), ref_scores,
                                                score_field, read_ids=read_ids)
        runs.record_scores(
            samples, run_key, kind="ood_scores", score_field=score_field, scores_by_key=scores, read_ids=read_ids,
            extra_writes=p_writes, overwrite=overwrite, results=summary, reads=[embeddings_field],
            embeddings_field=embeddings_field, label_field=None, **calibration,
            detector={"method": "knn", "k": k, "normalize": _METRIC_NORMALIZE[metric],
                      "backend": f"fiftyone-brain:{index.config.method}", "index": "similarity"},
            similarity={"brain_key": brain_key,
                        "backend": index.config.method, "metric": metric, "kept": brain_key is not None,
                        "id_filter": id_filter},
            reduction=None, reference=ref_info, backbone=runs.embedding_run_config(samples, embeddings_field),
        )
    finally:
        if not existing and brain_key is None:
            _drop_index(dataset, index, None)
        else:
            if id_filter:
                index.clear_view()
            _close_connections(index)  # a kept index: the next call must not get a connection an error broke
    return summary


def _check_index_call(samples, embeddings_field, score_field, run_key, brain_key, backend, reference, overwrite):
    """Validate before touching any index; returns whether ``brain_key`` names an existing index."""
    from .items import require_embeddings_field, require_nonempty

    require_nonempty(samples)
    dataset = samples._dataset
    runs.validate_key(score_field, "score field")
    runs.check_new_run(samples, run_key, [score_field], overwrite, reads=[embeddings_field])
    require_embeddings_field(dataset, embeddings_field)
    if not isinstance(dataset.get_field(embeddings_field), _vector_field_types()):
        raise OODInputError(f"field {embeddings_field!r} does not hold embedding vectors")
    existing = brain_key is not None and dataset.has_brain_run(brain_key)
    if not existing:
        _check_backend_name(backend)
        _refuse_brain_sklearn(backend)
    if brain_key is not None and not existing:
        runs.validate_key(brain_key, "brain key")
    if reference is None and brain_key is not None and not existing:
        raise OODInputError(f"brain key {brain_key!r} names no brain run on dataset {dataset.name!r} (it has "
                            f"{dataset.list_brain_runs()}); pass the key of an existing similarity index (a renamed "
                            "one has its new key), or reference='<sample tag>' (or a view) to build one under it")
    if reference is None and not existing:
        raise OODInputError(
            "k-NN scoring needs trusted in-distribution samples: pass reference='<sample tag>' (or a view) "
            "to build the index, or brain_key='<key of an existing similarity index>'"
        )
    return existing


def _reference_with_embeddings(samples, reference, embeddings_field, k):
    """``(view, run description, number with embeddings)`` of the reference; Nones without one."""
    if reference is None:
        return None, None, None
    ref_view, ref_info = runs.resolve_view(samples, reference, "reference", "trusted in-distribution samples")
    n_ref = ref_view.exists(embeddings_field).count()
    if n_ref <= k:  # a sample is not its own neighbour: k < n_ref; with 0 or 1 no k can do
        fix = (f"k must be < {n_ref}: lower k or add reference samples" if n_ref > 1 else "k-NN scoring needs at "
               f"least 2: compute their embeddings (compute_pyramid_embeddings(reference view, "
               f"{embeddings_field!r})) or pass a reference with more samples")
        raise OODInputError(f"k={k} but the reference has {n_ref} samples with embeddings in {embeddings_field!r}; "
                            f"{fix}")
    return ref_view, ref_info, n_ref


def _restrict_to_reference(index, ref_view, n_ref, embeddings_field, brain_key, batch_size):
    """Restrict a kept index to the reference with ``use_view`` unless it holds exactly the reference's ``n_ref``
    samples with embeddings (checked: all of them found, and no other point); returns whether it was restricted.
    The restriction filters every query by the reference's ids (pgvector: ``id = ANY(<all ids>)``, sent and parsed
    per query), so scoring the reference leave-one-out costs time quadratic in its size; a filter that keeps every
    row changes no result."""
    if _refuse_reference_not_indexed(index, ref_view, embeddings_field, brain_key, batch_size):
        try:
            size = index.total_index_size
        except Exception:  # noqa: BLE001 (a backend that cannot count: restrict)
            size = None
            _close_connections(index)
        if size == n_ref:
            return False
    index.use_view(ref_view)
    return True


def _refuse_reference_not_indexed(index, ref_view, embeddings_field, brain_key, batch_size):
    """Refuse a reference with samples (with embeddings) the kept index does not hold: ``use_view`` would leave them
    out without a word, scoring against a smaller reference than asked for. Looked up in chunks of ``batch_size``;
    returns whether the lookup could be made (False: a backend without it, nothing was compared)."""
    ids = ref_view.exists(embeddings_field).values("id")
    missing = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        try:
            _, found, _ = index.get_embeddings(sample_ids=chunk, allow_missing=True)
        except Exception:  # noqa: BLE001 (a backend without the lookup: nothing to compare)
            _close_connections(index)
            return False
        found = set(found)
        missing += [i for i in chunk if i not in found]
    if missing:
        raise OODInputError(
            f"{len(missing)} of the {len(ids)} reference samples with embeddings in {embeddings_field!r} are not in "
            f"similarity index {brain_key!r} (e.g. sample {missing[0]}; added after the index was built?): it would "
            f"answer from the other {len(ids) - len(missing)} only, a smaller reference than asked for. Add them to "
            f"the index (dataset.load_brain_results({brain_key!r}).add_to_index(embeddings, sample_ids)), or build "
            "a new index of this reference (another brain_key, with reference=...)")
    return True


def _reference_scores(ref_view, scores, index, embeddings_field, k, metric, batch_size, seen):
    """The reference's leave-one-out scores (a sample in the index is not its own neighbour), for the p-values:
    those of the reference samples already scored are reused, the others queried; without a reference, the scored
    samples' own scores (as :func:`.scores.compute_ood_scores` without one)."""
    if ref_view is None:
        return list(scores.values())
    ids = ref_view.exists(embeddings_field).values("id")
    missing = [i for i in ids if i not in scores]
    more = _score_with_index(ref_view.select(missing), index, embeddings_field, k, metric, batch_size,
                             False, seen) if missing else {}
    return [scores[i] if i in scores else more[i] for i in ids]


def _score_with_index(samples, index, embeddings_field, k, metric, batch_size, progress, seen, read_ids=None):
    """``{sample id: k-NN score}`` of the samples of ``read_ids`` (default: those of ``samples`` with an embedding)
    from index queries in chunks (a sample in the index is not its own neighbour)."""
    scores, missing, neighbours = {}, 0, set()
    with Progress(progress, samples.exists(embeddings_field).count(), "k-NN via index") as bar:
        for ids, X in _embedding_chunks(samples, embeddings_field, batch_size, metric, seen, read_ids):
            if seen.setdefault("checks", 0) < 3:  # a lookup may scan the table: a sample of the first chunks
                seen["checks"] += 1
                _refuse_moved_vectors(index, ids[:100], X[:100], metric, embeddings_field)
            nbr_ids, dists = _query(index, X, k + 1, embeddings_field)
            if not seen.get("neighbours_checked"):
                seen["neighbours_checked"] = True
                _refuse_moved_neighbours(samples._dataset, index, nbr_ids, metric, embeddings_field)
            for row_ids in nbr_ids:
                neighbours.update(row_ids)
            for qid, row_ids, row_d in zip(ids, nbr_ids, dists):
                d = kth_distance(row_ids, row_d, qid, k)
                if d is None:
                    missing += 1
                else:
                    scores[qid] = float(distances_to_scores(d, metric))
            bar.update(len(ids))
    if missing:
        raise OODInputError(
            f"the similarity index returned fewer than k={k} neighbours for {missing} samples; lower k, "
            "add reference samples, or raise the backend's search breadth (e.g. hnsw_ef_search)"
        )
    if not scores:
        raise OODInputError(f"no sample in this view has an embedding in {embeddings_field!r}")
    _refuse_deleted_neighbours(samples._dataset, neighbours, index)
    return scores


def _refuse_deleted_neighbours(dataset, neighbour_ids, index):
    """Refuse scores that came from index points whose samples are no longer in the dataset: a kept index is not
    updated when samples are deleted, so their vectors would still count as trusted neighbours (an index used
    alone, or one holding exactly the reference, is queried without an id filter)."""
    ids = sorted(str(i) for i in neighbour_ids)
    if not ids or len(dataset.select(ids)) == len(ids):
        return
    gone = sorted(set(ids) - set(dataset.select(ids).values("id")))
    key = getattr(index, "key", None)
    error = OODInputError(
        f"similarity index {key!r} answered with {len(gone)} samples that are no longer in dataset "
        f"{dataset.name!r} (e.g. {gone[0]}; deleted after the index was built): their vectors would count as "
        "trusted neighbours. Remove them from the index (their ids are this error's sample_ids: "
        f"dataset.load_brain_results({key!r}).remove_from_index(sample_ids=error.sample_ids)) and score again, or "
        "build a new index (another brain_key, with reference=...)")
    error.sample_ids = gone
    raise error


def _refuse_moved_neighbours(dataset, index, nbr_ids, metric, embeddings_field, limit=100):
    """:func:`_refuse_moved_vectors` on the index's own points: up to ``limit`` of the samples it answered the
    first queries with (scored samples outside the index, e.g. untrusted ones scored against an index of the
    trusted ones, have no stored vector to compare)."""
    ids = list(dict.fromkeys(str(i) for row in nbr_ids for i in row))[:limit]
    present = dataset.select(ids).exists(embeddings_field)
    if ids and len(present):
        cids, X, _ = read_embeddings(present, embeddings_field)
        _refuse_moved_vectors(index, cids, X, metric, embeddings_field, who="indexed samples")


def _refuse_moved_vectors(index, ids, X, metric, embeddings_field, who="scored samples"):
    """Refuse the chunk when a sample's vector stored in the index differs from its row of ``X`` beyond rounding
    (float16 included): cosine distance above 1e-3, else relative L2 difference above 1e-2 (samples not in the
    index, or a backend that cannot return stored vectors: nothing to compare)."""
    try:
        stored, found, _ = index.get_embeddings(sample_ids=list(ids), allow_missing=True)
    except Exception:  # noqa: BLE001 (a backend without the lookup: the check is skipped)
        return _close_connections(index)
    rows = {sid: i for i, sid in enumerate(ids)}
    moved = []
    for sid, vec in ((sid, np.asarray(v, dtype=np.float64).ravel()) for sid, v in zip(found, stored) if sid in rows):
        cur = X[rows[sid]].astype(np.float64)
        if vec.shape != cur.shape:
            _refuse_dimension(index, X, embeddings_field, f"it holds {vec.size}-dimensional vectors")
        if metric == "cosine":
            gap = 1.0 - vec @ cur / max(np.linalg.norm(vec) * np.linalg.norm(cur), 1e-30)
        else:
            gap = np.linalg.norm(vec - cur) / max(np.linalg.norm(cur), 1e-30)
        if gap > (1e-3 if metric == "cosine" else 1e-2):
            moved.append((sid, float(gap)))
    if moved:
        key = getattr(index, "key", None)
        raise OODInputError(
            f"similarity index {key!r} holds other vectors than {embeddings_field!r} holds now for {len(moved)} "
            f"{who} (e.g. sample {moved[0][0]}: {moved[0][1]:.3g} apart, as a {metric} distance): the "
            "embeddings were recomputed since the index was built, so its distances to them mean nothing. Build "
            f"a new index (another brain_key, with reference=...), or {_delete_first(index, key)}")


def _delete_first(index, brain_key):
    """How to delete a kept index with its backend storage (``delete_brain_run`` alone leaves a pgvector table)."""
    cleanup = "cleanup(drop_table=True)" if getattr(index.config, "method", None) == "pgvector" else "cleanup()"
    return (f"delete this one first (dataset.load_brain_results({brain_key!r}).{cleanup}, then "
            f"dataset.delete_brain_run({brain_key!r}): the brain run alone leaves the index's storage behind)")


@functools.wraps(_compute_knn_scores_with_index)
def compute_knn_scores_with_index(*args, **kwargs):
    with _quiet_backend_logs():
        return _compute_knn_scores_with_index(*args, **kwargs)


def _vector_field_types():
    import fiftyone.core.fields as fof

    return (fof.VectorField, fof.ArrayField, fof.ListField)


__all__ = ["compute_knn_scores_with_index", "distances_to_scores", "kth_distance"]
