"""The canonical order in which the FiftyOne layer hands items to a detector: samples by sample id, objects by
(sample id, object id).

A view's order is not always stable (``$sample`` stages, natural order while another process inserts), and some
detectors depend on the order of their rows (``weighted_label_vote`` assigns its cross-validation folds by row
position). Sorting the rows read from a view makes the scores of a set of items independent of the view's order;
results are written back by id. A dataset in natural insertion order already has increasing ids, so its rows keep
their order.
"""

import numpy as np

from .items import patch_path


def _sample_of_objects(samples, patches_field, object_ids):
    """Sample id of each object id in ``object_ids`` (read from the view; objects this read of an unstable view
    did not return are looked up by id on the dataset)."""
    wanted = set(object_ids)
    sids, oids = samples.values(["id", patch_path(patches_field, "id")])
    sample_of = {oid: sid for sid, row in zip(sids, oids) for oid in (row or []) if oid in wanted}
    missing = [k for k in wanted if k not in sample_of]
    if missing:
        found = samples._dataset.select_labels(ids=missing, fields=patches_field)
        sids, oids = found.values(["id", patch_path(patches_field, "id")])
        sample_of.update((oid, sid) for sid, row in zip(sids, oids) for oid in (row or []) if oid in wanted)
    return sample_of


def canonical_positions(samples, keys, patches_field=None):
    """Positions that put ``keys`` (sample ids, or object ids of ``patches_field``) in canonical order."""
    if patches_field is None:
        sort_keys = [str(k) for k in keys]
    else:
        sample_of = _sample_of_objects(samples, patches_field, keys)
        sort_keys = [(str(sample_of.get(k, "")), str(k)) for k in keys]
    return sorted(range(len(keys)), key=sort_keys.__getitem__)


def in_canonical_order(samples, patches_field, keys, X, labels=None):
    """``(keys, X, labels)`` rows reordered canonically (``labels`` may be None)."""
    order = canonical_positions(samples, keys, patches_field)
    if order == list(range(len(keys))):
        return keys, X, labels
    index = np.asarray(order, dtype=np.int64)
    return [keys[i] for i in order], X[index], None if labels is None else [labels[i] for i in order]
