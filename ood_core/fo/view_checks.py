"""Which datasets and views a call can work on, and the refusals of the others, each naming the fix.

A call needs a live FiftyOne dataset or view (:func:`require_collection`) that shows every field
(:func:`show_all_fields` drops the App's field-visibility stages), is not a generated view whose values live in a
temporary dataset (patches, frames, clips: :func:`require_not_generated`), nor a view that reads one sample per
group (the App's "group by": :func:`require_not_dynamic_groups`), and of a grouped dataset shows its active slice
(:func:`require_active_slice`); a call that decodes images needs image samples (:func:`require_images`).
"""

from ..errors import OODInputError
from .patches_views import patches_view_fields

_FIELD_STAGES = ("SelectFields", "ExcludeFields")


def field_stages(samples):
    """The view's own stages that only hide fields (``select_fields`` / ``exclude_fields``), in order; for a
    patches, frames or clips view, the stages after the one that generated it."""
    return [stage for stage in getattr(samples, "_stages", ()) if type(stage).__name__ in _FIELD_STAGES]


def _hiding_stages(samples):
    """Names of the view's stages that only hide fields (``select_fields`` / ``exclude_fields``)."""
    return [type(stage).__name__ for stage in field_stages(samples)]


def show_all_fields(samples):
    """The same samples without the view's ``select_fields`` / ``exclude_fields`` stages (they only hide
    fields: the App's field visibility), so every field can be read and written; other views unchanged."""
    if not _hiding_stages(samples):
        return samples
    view = samples._dataset.view()
    for stage in samples._stages:
        if type(stage).__name__ not in _FIELD_STAGES:
            view = view.add_stage(stage)
    return view


def is_collection(obj):
    """Whether ``obj`` is a FiftyOne dataset or view (a ``Sample`` also has ``_dataset``, but is neither)."""
    import fiftyone.core.collections as foc

    return isinstance(obj, foc.SampleCollection)


def _short_repr(obj, limit=80):
    text = repr(obj)
    return text if len(text) <= limit else f"<{type(obj).__name__}>"


def require_collection(samples, what="samples"):
    """Refuse what is not a FiftyOne dataset or view, or a dataset deleted since it was loaded (FiftyOne answers
    every other attribute of a deleted ``Dataset`` with a bare ValueError, so ``deleted`` is read first)."""
    if getattr(samples, "deleted", False) is True:
        raise OODInputError(f"dataset {samples.name!r} was deleted; load an existing dataset "
                            "(fo.list_datasets() lists them)")
    if not is_collection(samples):
        raise OODInputError(f"{what}={_short_repr(samples)} is a {type(samples).__name__}, not a FiftyOne dataset or "
                            "view; pass one, e.g. fo.load_dataset('my-dataset') or a view of it (for given samples: "
                            "dataset.select(sample_ids))")
    if getattr(samples._dataset, "deleted", False):
        raise OODInputError(f"dataset {samples._dataset.name!r} was deleted; load an existing dataset "
                            "(fo.list_datasets() lists them)")


def require_own_dataset(samples):
    """Refuse a view that hides fields (``select_fields`` / ``exclude_fields``), or a generated view
    (``to_patches``, ``to_frames``, ``to_clips``, evaluation patches): its values live in a temporary dataset
    while FiftyOne records runs on the source dataset, so results and records would part."""
    require_collection(samples)
    hiding = _hiding_stages(samples)
    if hiding:
        raise OODInputError(
            f"the view hides fields ({', '.join(hiding)} stage): this call reads and writes fields the view must "
            "show. Pass the view without its select_fields / exclude_fields stage "
            "(ood_core.fo.view_checks.show_all_fields(view) removes them; the App's operators do)"
        )
    require_not_dynamic_groups(samples)
    require_not_generated(samples)
    require_active_slice(samples)


#: what an App user does instead of ``view.flatten()`` (the App's forms show the SDK's refusal as it is)
GROUP_BY_APP_FIX = "in the App, remove the group-by (the GroupBy stage in the view bar above the grid)"


def require_not_dynamic_groups(samples, app_fix=f'{GROUP_BY_APP_FIX} or choose the target "Dataset"'):
    """Refuse a view that groups its samples (``group_by``, the App's "group by"; ``app_fix``: what an App user does
    instead): FiftyOne reads one sample per group of it, so a call would work on those only (slice lookups fail)."""
    if not getattr(samples, "_is_dynamic_groups", False):
        return
    raise OODInputError(
        f"this view groups its samples (group_by): FiftyOne reads one sample per group of it, so only "
        f"{samples.count()} of its {samples.flatten().count()} samples would be worked on. Pass view.flatten() "
        f"(all samples of the groups, in a view of their own) or the view without its group_by stage; {app_fix}")


def require_active_slice(samples):
    """Refuse a view of a grouped dataset that shows other slices than the active one (``select_group_slices``):
    the package's own selections of a grouped dataset (trusted tags, sample ids) see its active slice, so such a
    view would be scored against, and tagged on, another slice than it shows."""
    dataset = samples._dataset
    if dataset.media_type != "group" or samples.media_type == "group":
        return
    raise OODInputError(
        f"this view of grouped dataset {dataset.name!r} shows other group slices than the active one "
        f"({dataset.group_slice!r}; select_group_slices): the package works on one slice at a time. Set "
        "dataset.group_slice = '<slice>' and pass the dataset, or a view of it, for each slice")


def every_sample(dataset):
    """``dataset`` with all of its samples visible: a grouped dataset's every slice (its own view shows the active
    slice only), for selections by id or tag that must find a sample on whichever slice it lies."""
    if dataset.media_type != "group":
        return dataset
    return dataset.select_group_slices(_allow_mixed=True)


def require_not_generated(samples, reads_a_run=False):
    """Refuse a generated view (:func:`require_own_dataset`); ``reads_a_run``: the call reads a recorded run."""
    require_collection(samples)  # a deleted dataset is named as such before its attributes raise ValueError
    root = getattr(samples, "_root_dataset", None)
    if root is None or samples._dataset.name == root.name:
        return
    fields = patches_view_fields(samples)
    if fields and reads_a_run:
        raise OODInputError(f"this is a patches view of {root.name!r}, where the runs on its objects are recorded: "
                            f"pass {root.name!r} (or a view of it), whose run names the objects it scored; for the "
                            f"objects this view shows: ood_core.fo.items.source_objects_view(patches_view, "
                            f"{fields[-1]!r})")
    these = "" if not fields else (
        f". This patches view shows objects of {fields}: pass patches_field={fields[-1]!r}, and for exactly the "
        f"objects it shows the view ood_core.fo.items.source_objects_view(patches_view, {fields[-1]!r}) of "
        f"{root.name!r}")
    raise OODInputError(
        f"this is a generated view (patches, frames or clips) of dataset {root.name!r}; its values would go to a "
        f"temporary dataset while the run is recorded on {root.name!r}. For objects, pass the dataset (or a view "
        "of it) with patches_field='<your Detections field>'; otherwise clone the view into a dataset of its own "
        f"(view.clone('name')) and work on that{these}"
    )


def require_images(samples, what):
    """Refuse a view whose media are not images (``what`` names the step that would decode them)."""
    require_not_dynamic_groups(samples)  # its media type is "group" too, but it has no slices
    media = samples.media_type
    if media == "group":  # a grouped dataset: the active slice's media
        media = samples.group_media_types.get(samples.group_slice)
    if media == "image":
        return
    if media == "video":
        fix = ("make an image dataset of its frames and work on that: "
               "dataset.to_frames(sample_frames=True).clone('my-frames')")
    else:
        fix = "select an image slice first (select_group_slices(...))" if samples.media_type == "group" else \
            "use an image dataset"
    raise OODInputError(f"{what} decodes images, but {samples._dataset.name!r} holds {media} samples here; {fix}")


def deleted_elsewhere(dataset):
    """The error for a call on ``dataset`` that another process deleted since this one loaded it (FiftyOne's own
    ``deleted`` knows only of deletions in this process)."""
    return OODInputError(f"dataset {dataset.name!r} was deleted (by another process, e.g. a notebook or the App) "
                         "since it was loaded here; load an existing dataset (fo.list_datasets() lists them)")
