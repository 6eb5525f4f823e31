"""The audit's own embeddings: computed into ``ood_embeddings`` for the audited view and for the trusted samples
outside it (they set the OOD cut), when the dataset holds no embeddings the audit can use."""

from ..errors import OODInputError, SettingsConflictError
from .items import num_samples


def compute_audit_embeddings(samples, reference, model_name, skip_failures, failures, progress):
    """Embed the view into ``ood_embeddings``, with the ``reference`` samples outside it (the trusted samples of
    the dataset set the OOD cut, also for a view holding none of them: a new batch); ``failures`` receives
    ``{sample id: error}`` of skipped images."""
    from .embeddings import compute_pyramid_embeddings

    field = "ood_embeddings"
    try:
        out = compute_pyramid_embeddings(samples, field, model_name=model_name, overwrite=False, progress=progress,
                                         skip_failures=skip_failures)
    except SettingsConflictError as e:  # its advice (overwrite=True) is the embeddings call's, not the audit's
        raise _embeddings_conflict(e, field, model_name) from e
    failures.update((f["id"], f["error"]) for f in out["failures"])
    if failures and not len(samples.exists(field)):
        first = next(iter(failures.values()))
        raise OODInputError(f"none of the {len(failures):,} images of the view could be read (the first: {first}); "
                            "check that the media files are where the samples' filepaths say (a moved dataset?)")
    outside = _reference_without(samples, reference, field)
    if outside is not None:  # the same settings: the run goes on with the samples that have no embedding yet
        compute_pyramid_embeddings(outside, field, model_name=model_name, overwrite=False, progress=progress,
                                   skip_failures=skip_failures)  # one that fails is no reference (outside the view)
    return field


def _embeddings_conflict(error, field, model_name):
    """The audit's own fix for embeddings ``field`` that exist with other settings (an interrupted run of another
    backbone, or of a release that read files another way): recompute or delete them, then audit again."""
    model = "" if model_name == "auto" else f", model_name={model_name!r}"
    return OODInputError(
        f"the audit computes its embeddings into {field!r}, but {error.problem}, and adding to them would mix two "
        f"kinds. Recompute them with ood.compute_pyramid_embeddings(dataset, {field!r}{model}, overwrite=True) or "
        f"delete them (ood.delete_ood_run(dataset, {field!r})), then audit again; or pass embeddings_field= an "
        "embeddings field of the whole view"
    )


def _reference_without(samples, reference, field):
    """The ``reference`` samples (a tag of the dataset or a view) outside ``samples`` without an embedding in
    ``field``, or None."""
    from .items import is_whole_dataset

    if reference is None or is_whole_dataset(samples):
        return None
    view = samples._dataset.match_tags(reference) if isinstance(reference, str) else reference
    view = view.exists(field, False).exclude(samples.exists(field, False).values("id"))
    return view if num_samples(view) else None
