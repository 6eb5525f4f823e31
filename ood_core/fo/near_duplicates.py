"""An audit's near duplicates (FiftyOne Brain) and the near-duplicate tags audits claim."""

from .items import num_samples, read_embeddings
from .run_info import load_ood_results
from .run_records import list_ood_runs

#: the tag an audit puts on near duplicates (all but one sample of each group)
TAG = "near_duplicate"


def find(samples, embeddings, threshold, audit_key):
    """Near duplicates by cosine distance (FiftyOne Brain): all but one sample of each group are duplicates.

    ``neighbors`` maps each kept sample to ``[(duplicate id, distance)]`` and each duplicate to ``[(its nearest
    kept sample, distance)]``, computed here (:func:`nearest_kept`) as the Brain's threshold measures them (its own
    ``neighbors_map`` centres query and index differently: an exact copy came out 0.15 apart).
    The Brain centres the embeddings before measuring, so identical vectors at their mean (all of the view's
    vectors identical, say) have no direction and are never its duplicates: exact copies are added here
    (:func:`exact_copies`), all but one of each group, at distance 0.
    ``tagged_ids`` are the duplicates the audit claims: all but those whose tag was set by hand (a tag no audit
    claims), which it never records and so never removes; ``to_tag`` those without the tag yet, tagged in the
    commit of the audit's record (:func:`ood_core.fo.audit._record`).
    """
    import fiftyone.brain as fob

    view = samples.exists(embeddings)
    if num_samples(view) < 2:
        return {}
    keys, X, _ = read_embeddings(view, embeddings)  # NaN, mixed lengths: refused by name before the Brain
    index = fob.compute_near_duplicates(view, threshold=threshold, embeddings=embeddings, progress=False)
    inside = set(keys)  # the brain may also name samples outside the view: only the view is audited
    found = {str(i) for i in index.duplicate_ids or []} & inside
    groups = identical_rows(X)
    duplicate_ids = sorted(found | exact_copies(keys, groups, found))
    neighbors = nearest_kept(keys, X, duplicate_ids, groups=groups)
    dataset = samples._dataset
    tagged = set(dataset.match_tags(TAG).values("id"))
    by_hand = tagged - claims(samples, audit_key) - claims_of_other_audits(samples, audit_key)
    return {"neighbors": neighbors, "duplicate_ids": duplicate_ids, "tagged_ids": sorted(set(duplicate_ids) - by_hand),
            "to_tag": sorted(set(duplicate_ids) - tagged)}


def identical_rows(X):
    """Groups (lists of row positions in ascending order, two or more each) of the rows of ``X`` that are exactly
    identical (numpy's ``unique`` over rows, as the t-SNE map finds its repeated vectors)."""
    import numpy as np

    _, inverse, counts = np.unique(X, axis=0, return_inverse=True, return_counts=True)
    inverse = np.asarray(inverse).ravel()
    order = np.argsort(inverse, kind="stable")  # rows of each distinct vector together, in ascending order
    bounds = np.cumsum(counts)[:-1]
    return [rows.tolist() for rows in np.split(order, bounds) if len(rows) > 1]


def exact_copies(keys, groups, found=()):
    """The keys of exact copies: all but one of each group of identical rows (``groups`` from
    :func:`identical_rows`, positions in ``keys``); the one kept is a row not in ``found`` (the duplicates found
    already), when any."""
    copies = set()
    for rows in groups:
        members = [keys[i] for i in rows]
        kept = next((key for key in members if key not in found), None)
        copies.update(key for key in members if key != kept)
    return copies


def nearest_kept(keys, X, duplicate_ids, chunk=1024, groups=None):
    """``{kept id: [(duplicate id, distance)], duplicate id: [(kept id, distance)]}``: each duplicate's nearest
    sample that is not a duplicate, by the cosine distance of the rows of ``X`` (aligned with ``keys``) centred on
    their mean, the distance FiftyOne Brain's near-duplicate threshold applies to (a row at the mean has no
    direction: distance 1 from every other). An exact copy of a kept row (``groups``: :func:`identical_rows` of
    ``X``) is that row's, at distance 0."""
    import numpy as np

    dup = set(duplicate_ids)
    kept = [i for i, key in enumerate(keys) if key not in dup]
    dups = [i for i, key in enumerate(keys) if key in dup]
    if not kept or not dups:
        return {}
    position = {i: pos for pos, i in enumerate(kept)}
    same = {}  # row of an exact copy -> the position in ``kept`` of a kept row identical to it
    for rows in identical_rows(X) if groups is None else groups:
        pos = next((position[i] for i in rows if i in position), None)
        same.update({i: pos for i in rows if pos is not None and i not in position})
    X = X - X.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    unit = X / np.where(norms > 0, norms, 1.0)
    kept_unit = unit[kept].T
    pairs = [(row, same[row], 0.0) for row in dups if row in same]  # (duplicate row, kept position, distance)
    todo = [row for row in dups if row not in same]
    for start in range(0, len(todo), chunk):
        rows = todo[start:start + chunk]
        sims = unit[rows] @ kept_unit
        best = sims.argmax(axis=1)
        pairs += [(row, j, float(max(0.0, 1.0 - sim))) for row, j, sim in zip(rows, best, sims[np.arange(len(rows)),
                                                                                            best])]
    neighbors = {}
    for row, j, dist in sorted(pairs):  # in row order, as the duplicates come
        neighbors.setdefault(keys[kept[j]], []).append((keys[row], dist))
        neighbors[keys[row]] = [(keys[kept[j]], dist)]
    return {k: sorted(v, key=lambda t: t[1]) for k, v in neighbors.items()}


def claims(samples, audit_key):
    """The ids whose near-duplicate tag the audit ``audit_key`` claims (older audits recorded every duplicate)."""
    if audit_key not in list_ood_runs(samples, kind="audit"):
        return set()
    results = load_ood_results(samples, audit_key)
    claimed = getattr(results, "tagged_duplicate_ids", None)
    return set(getattr(results, "duplicate_ids", None) or [] if claimed is None else claimed)


def claims_of_other_audits(samples, audit_key):
    return {i for key in list_ood_runs(samples, kind="audit") if key != audit_key
            for i in claims(samples, key)}


def to_untag(samples, audit_key):
    """The samples whose near-duplicate tag deleting the audit ``audit_key`` removes (:func:`ood_core.fo.runs.
    delete_ood_run`): those it claims that no other audit claims; tags set by hand were never claimed and stay."""
    return claims(samples, audit_key) - claims_of_other_audits(samples, audit_key)
