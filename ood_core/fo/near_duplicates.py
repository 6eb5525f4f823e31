"""An audit's near duplicates (FiftyOne Brain) and the near-duplicate tags audits claim."""

from . import runs
from .items import num_samples

#: the tag an audit puts on near duplicates (all but one sample of each group)
TAG = "near_duplicate"


def find(samples, embeddings, threshold, audit_key):
    """Near duplicates by cosine distance (FiftyOne Brain): all but one sample of each group are duplicates.

    ``tagged_ids`` are the duplicates the audit claims: all but those whose tag was set by hand (a tag no audit
    claims), which it never records and so never removes; ``to_tag`` those without the tag yet, tagged in the
    commit of the audit's record (:func:`ood_core.fo.audit._record`).
    """
    import fiftyone.brain as fob

    view = samples.exists(embeddings)
    if num_samples(view) < 2:
        return {}
    index = fob.compute_near_duplicates(view, threshold=threshold, embeddings=embeddings, progress=False)
    inside = set(view.values("id"))  # the brain may also name samples outside the view: only the view is audited
    neighbors = {k: [(d, float(dist)) for d, dist in v if d in inside]
                 for k, v in (index.neighbors_map or {}).items() if k in inside}
    neighbors = {k: v for k, v in neighbors.items() if v}
    duplicate_ids = sorted(set(index.duplicate_ids or []) & inside)
    dataset = samples._dataset
    tagged = set(dataset.match_tags(TAG).values("id"))
    by_hand = tagged - claims(samples, audit_key) - claims_of_other_audits(samples, audit_key)
    return {"neighbors": neighbors, "duplicate_ids": duplicate_ids, "tagged_ids": sorted(set(duplicate_ids) - by_hand),
            "to_tag": sorted(set(duplicate_ids) - tagged)}


def claims(samples, audit_key):
    """The ids whose near-duplicate tag the audit ``audit_key`` claims (older audits recorded every duplicate)."""
    if audit_key not in runs.list_ood_runs(samples, kind="audit"):
        return set()
    results = runs.load_ood_results(samples, audit_key)
    claimed = getattr(results, "tagged_duplicate_ids", None)
    return set(getattr(results, "duplicate_ids", None) or [] if claimed is None else claimed)


def claims_of_other_audits(samples, audit_key):
    return {i for key in runs.list_ood_runs(samples, kind="audit") if key != audit_key
            for i in claims(samples, key)}


def to_untag(samples, audit_key):
    """The samples whose near-duplicate tag deleting the audit ``audit_key`` removes (:func:`ood_core.fo.runs.
    delete_ood_run`): those it claims that no other audit claims; tags set by hand were never claimed and stay."""
    return claims(samples, audit_key) - claims_of_other_audits(samples, audit_key)
