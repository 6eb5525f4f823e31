"""Feature-pyramid embeddings of a FiftyOne view: streaming, resumable, recorded as a run."""

import logging

import numpy as np

from . import coordination, runs
from ..errors import OODInputError
from .documents import field_exists
from .embedding_plans import plan_embedding_write
from .embedding_runs import field_paths, record_info, same_settings
from .names import is_internal
from .ownership import new_mark_info, refuse_stale_records, run_owns
from .items import (
    DEFAULT_EMBEDDINGS_FIELD,
    SKIP_FAILURES,
    check_patches_field,
    flatten,
    item_names,
    num_samples,
    patch_path,
    require_nonempty,
    require_unique_object_ids,
)
from .projection import Projection, embedding_items, projection_record  # noqa: F401 (public here too)
from .view_checks import require_images
from .names import validate_key
from .run_records import update_run
from .run_sync import refresh_stale_runs

logger = logging.getLogger(__name__)

#: Default pyramid: every level, each average-pooled to a 2x2 grid (EfficientNet-Lite0:
#: 64 + 96 + 160 + 448 + 1,280 = 2,048 columns). The default detector
#: (``pyramid_knn``) scores the deepest level and the whole pyramid and keeps the more
#: unusual: over 90 OOD conditions of four real image sources
#: (benchmarks/robustness.py) neither the deepest level alone (best on Fashion-MNIST)
#: nor all levels (best on 8x8 digits) wins everywhere. Grid 2 was within 0.002 AUROC
#: of grid 4 at a quarter of the size (benchmarks/choose_defaults.py).
DEFAULT_LEVELS = None
DEFAULT_GRID = 2
#: A backbone whose pooled pyramid is wider than this (ResNet50: 15,616 columns at grid
#: 2) keeps only its deepest level by default, so stored embeddings stay bounded.
DEFAULT_MAX_DIM = 4096


def default_levels(model_name):
    """The package's default pyramid levels: ``None`` = every level (see :data:`DEFAULT_MAX_DIM`)."""
    return None if DEFAULT_LEVELS is None else list(DEFAULT_LEVELS)


def _make_extractor(model_name, levels, mode, grid, weights):
    """The extractor of a call: ``levels=None`` = :func:`default_levels`, bounded by :data:`DEFAULT_MAX_DIM`."""
    from ..features import PyramidExtractor

    extractor = PyramidExtractor(model_name, levels=default_levels(model_name) if levels is None else levels,
                                 mode=mode, grid=grid, weights=weights)
    if levels is None and extractor.dim > DEFAULT_MAX_DIM and len(extractor.level_indices) > 1:
        extractor = PyramidExtractor(extractor.model_name, levels=[-1], mode=mode, grid=grid, weights=weights)
    return extractor


def compute_pyramid_embeddings(
    samples,
    embeddings_field=DEFAULT_EMBEDDINGS_FIELD,
    *,
    model_name="auto",
    levels=None,
    mode="pool",
    grid=DEFAULT_GRID,
    weights=None,
    patches_field=None,
    project_dim=None,
    project_seed=0,
    project_method="random",
    pca_fit_size=2048,
    dtype="float32",
    batch_size=64,
    num_workers=1,
    chunk_size=1024,
    skip_failures=SKIP_FAILURES,
    overwrite=False,
    progress=None,
    shard=None,
):
    """Compute feature-pyramid embeddings for every sample (or object) of a view.

    Extraction streams: embeddings are written every ``chunk_size`` items, so
    memory depends on the batch and chunk sizes and the embedding dimension,
    not on the size of the view. While running, values go to a partial field
    ``tmp_ood_partial_<field>`` recorded as a run with ``status="partial"``; it
    is renamed to ``embeddings_field`` when every item is done.

    **Resuming**: calling again with the same settings after an interruption
    (or after new samples were added) computes only the items that have no
    embedding yet. A call with different settings (backbone, weights, levels, mode, grid,
    projection, dtype, or a release that reads files another way: ``ood_core.images.decoding_record``)
    refuses to mix them and says how to proceed.

    Args:
        samples: a Dataset or view.
        embeddings_field: sample field (or object attribute, for patches) to
            store the embeddings in; ``None`` returns them without writing.
            Also the run key of the recorded ``embeddings`` run.
        model_name: timm model name, or ``"auto"`` (ResNet50 hub weights when
            reachable, else the bundled offline ``tf_efficientnet_lite0``).
        levels: pyramid levels by index or module name (``None`` = every
            level, or only the deepest one when the pooled pyramid would be
            wider than :data:`DEFAULT_MAX_DIM` columns; see :data:`DEFAULT_LEVELS`).
        mode: ``"pool"`` (bounded, per-level grid pooling) or ``"flatten"`` (paper).
        grid: pooling grid side for ``mode="pool"`` (default 2).
        weights: weight source: ``None`` (hub/cache, then bundled), a local
            safetensors / state-dict file, ``"bundled"`` or ``"random"``.
        patches_field: a Detections field: embed each object crop instead.
        project_dim: reduce on the fly to this many dimensions (useful for
            flattened pyramids); see ``project_method``. ``None`` or 0 (the App form's "keep"): no reduction.
        project_seed: seed of the projection (and of the PCA fit sample).
        project_method: ``"random"``: a seeded Gaussian random projection (distances preserved
            approximately; nothing is fitted); ``"pca"``: PCA fitted first on ``pca_fit_size`` items drawn with
            the seed from the whole view, stored in the run, so resumes, shards and later fill-ins reuse it.
        pca_fit_size: items the PCA is fitted on (at least ``project_dim``).
        dtype: ``"float32"`` or ``"float16"`` (half the storage).
        batch_size, num_workers, chunk_size: forward batch; decoding worker processes (64 and 1:
            faster than 32 / 0 in benchmarks/bench_cpu_choices.py); items per database write.
        skip_failures: ``True`` (default, as FiftyOne's ``compute_embeddings``): an unreadable image gets no
            embedding (None), a warning, and a line in ``failures`` and in the run's results
            (``ood.load_ood_results(dataset, embeddings_field).failures``); the next call retries it. ``False``:
            the first one raises ``ImageLoadError`` (the run stays partial; the next call resumes). A view with no
            readable image is refused either way (``OODInputError``), the field unwritten.
        overwrite: recompute everything and replace an existing field/run; the old field keeps its record until
            the new one is complete (:mod:`.embedding_runs`; a call with the new settings resumes it).
        progress: ``None``/``True`` tqdm bar, ``False``, or ``f(done, total)``.
        shard: ``(index, count)``: compute only slice ``index`` of ``count`` equal slices of the view, so
            ``count`` workers (same view and count) share one extraction through the partial field; the last to
            finish completes the field and the run. A crashed shard is redone by running it again, or by one
            call without ``shard`` (which computes whatever is missing).

    Returns:
        a dict summary (``num_failed``; ``failures``: the skipped items' ``id``, ``item`` (file) and ``error``);
        with ``embeddings_field=None`` also ``"embeddings"``: an ``(N, D)`` array of the readable items, aligned
        with ``"keys"`` (where FiftyOne returns a list with None for the others).
    """
    require_nonempty(samples)
    require_images(samples, "compute_pyramid_embeddings")
    _check_batching(batch_size, num_workers, chunk_size, overwrite, skip_failures)
    shard_index, num_shards = _check_shard(shard, overwrite)
    target, partial = _check_embedding_call(samples, embeddings_field, patches_field, dtype, overwrite)
    extractor = _make_extractor(model_name, levels, mode, grid, weights)
    projection = Projection.from_args(extractor.dim, project_dim, project_method, project_seed, pca_fit_size, dtype)
    settings = {"backbone": extractor.config, "projection": projection.record, "dtype": dtype,
                "patches_field": patches_field, "decoding": extractor.decoding(bool(patches_field))}
    extract = dict(batch_size=batch_size, num_workers=num_workers, skip_failures=skip_failures, progress=progress)
    work_view = _shard_view(samples, shard_index, num_shards)
    if embeddings_field is None:
        return _embed_without_writing(samples, work_view, extractor, projection, patches_field, settings, extract)

    job = _EmbeddingJob(samples, embeddings_field, target, partial, patches_field, settings, shard, num_shards,
                        shard_index)
    job.start(extractor, projection, overwrite, extract)
    computed, failed = job.extract_missing(work_view, extractor, projection, chunk_size, extract)
    job.check_failures(computed, failed)
    return job.finish(computed, failed, batch_size, projection)


def _item_words(patches_field):
    return "object crops" if patches_field else "images"


def _log_failures(failed, attempted, patches_field, call, where):
    """One warning for the items a call skipped: how many, the first error, ``where`` the full list is."""
    logger.warning("%s: %d of %d %s could not be read and got no embedding (the first: %s); %s", call, len(failed),
                   attempted, _item_words(patches_field), failed[0]["error"], where)


def nothing_readable(failed, patches_field, consequence):
    """The error for a view none of whose images (object crops) could be read."""
    return OODInputError(
        f"none of the {len(failed):,} {_item_words(patches_field)} of the view could be read (the first: "
        f"{failed[0]['error']}); {consequence}. Check that the media files are where the samples' filepaths say "
        "(a moved dataset?), then run again: only what is missing is computed"
    )


def _check_embedding_call(samples, embeddings_field, patches_field, dtype, overwrite):
    """Validate before loading a model; returns ``(target path, partial path)``.

    Refuses early, whatever ``overwrite`` says, when the target field belongs to someone else (a user's
    field, or a run of this plugin under another key) or the run key is a run of another kind.
    """
    if patches_field is not None:
        check_patches_field(samples, patches_field)
        require_unique_object_ids(samples, patches_field)
    if dtype not in ("float32", "float16"):
        raise OODInputError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    if embeddings_field is None:
        return None, None
    validate_key(embeddings_field, "embeddings field")
    dataset = samples._dataset
    target, partial = field_paths(embeddings_field, patches_field)
    refresh_stale_runs(dataset)
    if dataset.has_run(embeddings_field):
        config = dataset.get_run_info(embeddings_field).config
        if config.__dict__.get("kind") != "embeddings":
            runs.check_new_run(samples, embeddings_field, [target], overwrite, kind="embeddings")  # refuses
        recorded = [f for f in (getattr(config, "fields", None) or []) if not is_internal(f)]
        if recorded and target not in recorded:
            raise OODInputError(
                f"embeddings run {embeddings_field!r} holds {recorded[0]!r}; this call would write {target!r} under "
                f"the same key (another patches_field), leaving the old field without its run. Choose another "
                f"embeddings_field, or delete the run first (ood.delete_ood_run(dataset, {embeddings_field!r}))"
            )
        if field_exists(dataset, target):  # the run's own field, unless deleted and made again by hand
            refuse_stale_records(dataset, target)
        # an embeddings run of this key and field: resumed, filled in, or (overwrite) recomputed
    elif field_exists(dataset, target):  # also a curator's undeclared object attribute of that name
        runs.check_new_run(samples, embeddings_field, [target], overwrite, kind="embeddings")
    return target, partial


def _embed_without_writing(samples, work_view, extractor, projection, patches_field, settings, extract):
    """``embeddings_field=None``: extract and return the arrays, write nothing."""
    if projection.is_pca:
        projection.fit_pca(extractor, samples, patches_field, extract)
    keys, items, sample_of = embedding_items(work_view, patches_field)
    chunks, ok, failures = [], [], []
    for idx, emb, failed in extractor.iter_extract(items, names=item_names(keys, sample_of), **extract):
        chunks.append(projection.apply(emb) if len(emb) else np.zeros((0, projection.out_dim), np.float32))
        ok.extend(idx.tolist())
        failures.extend(failed)
    failures = [{"id": keys[i], "item": str(items[i]), "error": m} for i, m in failures]
    if failures:
        _log_failures(failures, len(items), patches_field, "compute_pyramid_embeddings",
                      "the returned 'failures' list them")
        if not ok:
            raise nothing_readable(failures, patches_field, "no embedding to return")
    return {
        "num_embedded": len(ok), "num_failed": len(failures), "dim": projection.out_dim, "config": settings,
        "keys": [keys[i] for i in ok],
        "embeddings": np.concatenate(chunks) if chunks else np.zeros((0, projection.out_dim)),
        "failures": failures,
    }


class _EmbeddingJob:
    """One (possibly sharded) extraction into a field: start, extract what is missing, finish.

    While running, values go to the partial field under a run with
    ``status="partial"``; the call that completes the job renames it to the
    target and records the complete run. Steps that read or change the shared
    state run under the field's MongoDB lock (:mod:`.coordination`).

    The partial run is recorded under the run key itself, except while the key's complete field exists (an
    overwrite): then under :func:`side_key`, so that field keeps the record describing it until the journaled
    commit replaces both (and drops the side record) in one step.
    """

    def __init__(self, samples, run_key, target, partial, patches_field, settings, shard, num_shards, shard_index):
        self.samples, self.run_key, self.target, self.partial = samples, run_key, target, partial
        self.patches_field, self.settings = patches_field, settings
        self.shard, self.num_shards, self.shard_index = shard, num_shards, shard_index
        self.dataset = samples._dataset
        self.lock = coordination.job_key(self.dataset, target)
        self.extra_results, self.prior_status = {}, "complete"  # the record's status before a fill-in
        self.record_key = run_key  # where the partial run is recorded: run_key, or side_key(run_key)

    def start(self, extractor, projection, overwrite, extract):
        """Decide where to write (fresh / resume / fill), restore or fit the PCA, record the partial run."""
        import fiftyone.core.fields as fof

        with coordination.locked(self.lock):
            self.write_path, self.mode, self.record_key = plan_embedding_write(
                self.samples, self.run_key, self.target, self.partial, self.settings, overwrite)
            fitted = self._prepare_projection(extractor, projection, extract)
            with coordination.schema_lock(self.dataset):
                self.dataset.reload()
                if self.mode in ("fresh", "resume"):
                    if self.dataset.get_field(self.write_path) is None:  # marked as the package's from the start
                        self.dataset.add_sample_field(self.write_path, fof.VectorField, info=new_mark_info())
                    # an overwrite of a complete field records its progress under the side key: the field keeps
                    # its own record. (A partial record of an older version that lists the old field too, as
                    # an overwrite used to, keeps listing it: deleting the run deletes it.)
                    side = self.record_key != self.run_key
                    old = [self.target] if not side and self.dataset.get_field(self.target) is not None else []
                    runs.register_run(self.samples, self.record_key, kind="embeddings",
                                      fields=[self.write_path, *old], overwrite=True, status="partial",
                                      embeddings_field=self.run_key, **self.settings, results=self.extra_results)
                else:  # filling in a complete field: the record says so until every item is done
                    self.prior_status = record_info(self.dataset, self.run_key).get("status")
                    update_run(self.samples, self.run_key, status="filling")
            if fitted is not None:  # the PCA fit sample is already embedded: store it, do not compute it twice
                raw, sample_of = fitted
                _write_vectors(self.samples, self.write_path, {k: projection.apply(v[None])[0] for k, v in raw.items()},
                               self.patches_field, sample_of)
            self._join_shards()

    def _prepare_projection(self, extractor, projection, extract):
        """Fit a fresh PCA (returns its embedded fit sample) or restore the stored one (returns None)."""
        if not projection.is_pca:
            return None
        if self.mode == "fresh":
            state, raw, sample_of = projection.fit_pca(extractor, self.samples, self.patches_field, extract)
            self.extra_results["projection_state"] = state
            return raw, sample_of
        state = getattr(self.dataset.load_run_results(self.record_key, cache=False), "projection_state", None)
        if state is None:
            raise OODInputError(
                f"embeddings run {self.run_key!r} has no stored PCA to resume with; pass overwrite=True to recompute"
            )
        projection.load_pca(state)
        self.extra_results["projection_state"] = state
        return None

    def _join_shards(self):
        job_state = coordination.state(self.lock)
        view = coordination.view_fingerprint(self.samples) if self.shard is not None else None
        if self.mode == "fresh" or job_state is None:
            coordination.start(self.lock, self.num_shards, view)
        elif self.shard is None:
            return
        elif job_state.get("num_shards") != self.num_shards:
            raise OODInputError(
                f"embeddings {self.run_key!r} are being computed in {job_state.get('num_shards')} shards; this "
                f"call asked for shard {self.shard_index} of {self.num_shards}. Use the same number of shards for "
                "every worker, or run once without shard= to finish what is missing"
            )
        elif job_state.get("view") and job_state["view"] != view:
            # slices of different views would leave samples to no shard while the job completes
            raise OODInputError(
                f"embeddings {self.run_key!r} are being computed in shards of a view of {job_state['view']['size']:,} "
                f"samples; this call's view ({view['size']:,} samples) is not the same view (other filters, order "
                f"or samples). Give every worker the same view, or run once without shard= on the view to embed "
                "whatever it still misses"
            )

    def check_failures(self, computed, failed):
        """Log the items this call skipped; refuse (before anything is completed) when a call on the whole view
        could read none of its items and no item of the view has an embedding (a moved dataset?)."""
        if not failed:
            return
        _log_failures(failed, computed, self.patches_field, self.run_key,
                      f"the returned 'failures' and the run's results (ood.load_ood_results(dataset, "
                      f"{self.run_key!r}).failures) list them; a call with the same settings retries them once "
                      "their files (or objects' boxes) are fixed")
        if self.shard is None and len(failed) == computed and \
                not _keys_with_values(self.samples, self.write_path, self.patches_field):
            raise nothing_readable(failed, self.patches_field, f"nothing was written to {self.target!r}")

    def extract_missing(self, work_view, extractor, projection, chunk_size, extract):
        """Embed the items of ``work_view`` without a value yet, writing every ``chunk_size`` items.

        Returns ``(number of items attempted, failures)``.
        """
        keys, items, sample_of = embedding_items(work_view, self.patches_field)
        has_values = self.mode != "fresh" or "projection_state" in self.extra_results
        done = _keys_with_values(work_view, self.write_path, self.patches_field) if has_values else set()
        todo = [i for i, key in enumerate(keys) if key not in done]
        failed, pending = [], {}
        if not todo:
            return 0, failed
        names = item_names([keys[i] for i in todo], sample_of)  # the error that stops at one names its sample
        for idx, emb, fails in extractor.iter_extract([items[i] for i in todo], names=names, **extract):
            for j, row in zip(idx, projection.apply(emb) if len(emb) else emb):  # (a PCA refuses 0 rows)
                pending[keys[todo[j]]] = row
            failed.extend({"id": keys[todo[j]], "item": str(items[todo[j]]), "error": m} for j, m in fails)
            if len(pending) >= chunk_size:
                self._write(pending, sample_of)
                pending.clear()
        if pending:
            self._write(pending, sample_of)
        return len(todo), failed

    def _write(self, by_key, sample_of):
        """Write a chunk under the field's lock, into a field that is still this job's (see :meth:`_require_job`)."""
        with coordination.locked(self.lock):
            self._require_job()
            _write_vectors(self.samples, self.write_path, by_key, self.patches_field, sample_of)

    def _require_job(self):
        """Refuse to write on when another process completed, replaced or deleted the field this job writes.

        Two calls computing one field share its partial field; the first to finish renames it to the target. A
        write into the renamed (gone) partial field would leave undeclared keys in the documents, so every write
        checks, under the field's lock, that the field and its run are still those of this job.
        """
        self.dataset.reload()
        info = record_info(self.dataset, self.record_key)
        status, same = info.get("status"), same_settings(info, self.settings)
        # a fill-in writes into the complete field: only while it is still the one the run wrote (not deleted and
        # made again by hand meanwhile: the user's)
        ours = self.dataset.get_field(self.write_path) is not None and same and (
            status in ("filling", "complete") and run_owns(self.dataset, self.run_key, self.target)
            if self.mode == "fill" else status == "partial" and self.write_path in (info.get("fields") or []))
        if not ours:
            if self.mode == "fill" and status == "filling" and same:  # the record as it was before this call
                update_run(self.samples, self.run_key, status=self.prior_status)
            if not info and self.record_key != self.run_key:  # the overwrite's side record went with its commit
                info = record_info(self.dataset, self.run_key)
                status, same = info.get("status"), same_settings(info, self.settings)
            what = "completed" if status == "complete" and same else "replaced or deleted"
            raise OODInputError(
                f"embeddings field {self.target!r} on dataset {self.dataset.name!r} was {what} by another process "
                "while this call was computing it; this call stopped and wrote nothing more (the field is as that "
                "process left it). Run the call again without overwrite to fill in any embeddings still missing"
            )

    def finish(self, computed, failed, batch_size, projection):
        """Mark this shard done; the call that completes the job renames the field and records the run."""
        with coordination.locked(self.lock):
            self._require_job()
            coordination.mark_done(self.lock, self.shard_index, failed)
            job_state = coordination.state(self.lock)
            # a call without shard= covered the whole view, so it always completes the job
            complete = self.shard is None or set(range(self.num_shards)) <= set(job_state.get("done", []))
            if complete:
                written = self._complete(job_state, computed, failed, batch_size)
            else:
                written = self.write_path
            num_embedded = len(_keys_with_values(self.samples, written, self.patches_field))
        sharded = self.shard is not None
        return {
            "run_key": self.run_key,
            "field": written,
            "status": "complete" if complete else "partial",
            "shard": [self.shard_index, self.num_shards] if sharded else None,
            "shards_done": sorted(job_state.get("done", [])) if sharded else None,
            "num_embedded": num_embedded,
            "num_computed": computed - len(failed),
            "num_failed": len(failed),
            "failures": failed,
            "dim": projection.out_dim,
            "config": self.settings,
            "resumed": self.mode != "fresh",
        }

    def _complete(self, job_state, computed, failed, batch_size):
        """Rename the partial field to the target (an old target is moved aside, dropped last) and record."""
        from . import commit

        failures = job_state.get("failures", []) if self.shard is not None else failed

        def register():
            runs.register_run(
                self.samples, self.run_key, kind="embeddings", fields=[self.target], overwrite=True,
                status="complete", embeddings_field=self.run_key, batch_size=batch_size, **self.settings,
                results={"failures": failures,
                         "num_embedded": len(_keys_with_values(self.samples, self.target, self.patches_field)),
                         "num_computed_this_call": computed, "num_shards": self.num_shards, **self.extra_results},
            )

        if self.mode in ("fresh", "resume"):
            # the journaled commit of every write: the old field and record are moved aside until the new ones
            # are in place, so a crash here is rolled back (or forward) by the next call or repair_ood_runs
            # an overwrite's side record goes in the same commit (moved aside, dropped once the new record is in)
            side = [self.record_key] if self.record_key != self.run_key else []
            commit.commit(self.samples, [(self.write_path, self.target)], self.run_key, register, overwrite=True,
                          drop_runs=side)
        else:
            with coordination.schema_lock(self.dataset):
                self.dataset.reload()
                register()
        coordination.clear(self.lock)
        return self.target


def _check_batching(batch_size, num_workers, chunk_size, overwrite, skip_failures):
    from ..validation import check_flag, check_positive_int, is_int

    check_flag(overwrite, "overwrite")  # overwrite="no" is truthy: it would replace every embedding
    check_flag(skip_failures, "skip_failures")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(chunk_size, "chunk_size")
    if not is_int(num_workers) or num_workers < 0:
        raise OODInputError(f"num_workers={num_workers!r} is not valid; pass 0 (decode in this process) or a "
                            "positive number of decoding worker processes")


def _check_shard(shard, overwrite):
    """``(index, count)`` from ``shard`` (None = the whole view as one shard)."""
    if shard is None:
        return 0, 1
    ok = (isinstance(shard, (tuple, list)) and len(shard) == 2
          and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in shard)
          and 0 <= shard[0] < shard[1])
    if not ok:
        raise OODInputError(
            f"shard={shard!r} is not valid; pass (index, count) with 0 <= index < count, e.g. shard=(0, 4) "
            "for the first of four workers"
        )
    if overwrite:
        raise OODInputError(
            "overwrite=True cannot be combined with shard=: each worker would delete the others' results. "
            "Delete the old embeddings first (ood.delete_ood_run(dataset, field)), then start "
            "the shards without overwrite"
        )
    return int(shard[0]), int(shard[1])


def _shard_view(samples, index, count):
    """Contiguous slice ``index`` of ``count`` of the view (by position, as FiftyOne orders it)."""
    if count == 1:
        return samples
    n = num_samples(samples)
    start, stop = index * n // count, (index + 1) * n // count
    return samples.skip(start).limit(stop - start)


def _keys_with_values(samples, path, patches_field):
    """Ids of samples (or objects) that already have a value at ``path`` (only ids are read)."""
    if samples._dataset.get_field(path) is None:
        return set()
    if patches_field is None:
        return set(samples.exists(path).values("id"))
    from fiftyone import ViewField as F

    leaf = path.rsplit(".", 1)[1]
    with_values = samples.filter_labels(patches_field, F(leaf) != None, only_matches=True)  # noqa: E711
    return set(flatten(with_values.values(patch_path(patches_field, "id"))))


def _write_vectors(samples, path, by_key, patches_field, sample_of):
    if patches_field is None:
        samples.set_values(path, by_key, key_field="id")
    else:
        samples.set_label_values(
            path, [{"sample_id": sample_of[k], "label_id": k, "value": v} for k, v in by_key.items()]
        )
