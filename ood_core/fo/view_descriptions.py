"""A reference (or other) view as a run record holds it, and the view rebuilt from the record.

A run record is JSON: a sample tag is kept as ``{"tag": ...}``, a view as its stages (a JSON string) and its size,
and a trusted reference also as a hash of its sample ids (:func:`resolve_view`).
"""

from ..errors import OODInputError


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
