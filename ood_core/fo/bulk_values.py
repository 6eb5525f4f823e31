"""Writing values keyed by item id, and a field whose values are few distinct scalars (flags) in bulk.

Every value the package writes is keyed by the id of its sample or object (:func:`write_by_id`), never by its
position in a list read from the view: a view whose order or content changes between two queries (``$sample``,
natural order while another process inserts) would otherwise put one item's value on another.

FiftyOne's ``set_values`` sends one update per sample: at 200,000 samples about 12 s, most of a *Save as
flags*. :func:`set_by_id` sends one ``update_many`` per distinct value (per batch of ids) instead; the same
documents end with the same values and a new ``last_modified_at``, as with ``set_values``.
"""

#: ids per ``$in`` filter (a command is limited to 16 MB of BSON; 50,000 ObjectIds take about 1 MB)
IDS_PER_UPDATE = 50_000
#: more distinct values than this are written by ``set_values`` (one update per value gains nothing then)
MAX_GROUPS = 64
_SCALARS = (bool, int, float, str)


class ObjectValues:
    """Values of an attribute of objects, each with its sample's id and its own: ``(sample id, object id,
    value)`` rows, written by :func:`write_by_id` with FiftyOne's ``set_label_values`` (one update per object,
    as positional ``set_values`` sends, without reading the view again)."""

    def __init__(self, rows):
        self.rows = list(rows)

    def __len__(self):
        return len(self.rows)


def write_by_id(samples, path, values):
    """Write ``values`` to the declared field ``path`` by id: an :class:`ObjectValues` per object, a dict
    (sample id -> value) per sample (flags, True / False / None, in bulk: :func:`set_by_id`; other values as
    before, by FiftyOne's ``set_values``). Returns False, having written nothing, for anything else (a list
    aligned with ``samples``, which the caller writes by position)."""
    if isinstance(values, ObjectValues):
        samples.set_label_values(path, [{"sample_id": sid, "label_id": oid, "value": value}
                                        for sid, oid, value in values.rows])
        return True
    if isinstance(values, dict):
        flags = all(v is None or type(v) is bool for v in values.values())
        if not (flags and set_by_id(samples._dataset, path, values)):
            samples.set_values(path, values, key_field="id")
        return True
    return False


def set_by_id(dataset, path, values_by_id):
    """Set the declared top-level field ``path`` of the samples with the ids of ``values_by_id`` (sample id ->
    value) to their values, one ``update_many`` per distinct value and batch of ids.

    Returns False, having written nothing, when the values are not a few distinct scalars (``None``, bool, int,
    float, str) of a declared top-level field: the caller then writes them with ``set_values``. Values are checked
    and converted by the field as ``set_values`` does (an invalid one raises ``ValueError`` before any write).
    """
    from datetime import datetime

    from bson import ObjectId
    from pymongo import UpdateMany

    field = dataset.get_field(path)
    groups = _groups(values_by_id)
    if "." in path or field is None or groups is None:
        return False
    now = datetime.utcnow()
    ops, ids = [], []
    for value, group in groups.values():
        stored = _to_mongo(path, field, value)
        group = [ObjectId(i) for i in group]
        ids.extend(group)
        for start in range(0, len(group), IDS_PER_UPDATE):
            ops.append(UpdateMany({"_id": {"$in": group[start:start + IDS_PER_UPDATE]}},
                                  {"$set": {path: stored, "last_modified_at": now}}))
    if ops:
        dataset._bulk_write(ops, ids=ids)  # FiftyOne's: also reloads the samples held in memory
    return True


def _groups(values_by_id):
    """``{(type, value): (value, [ids])}``, or None when a value is no scalar or there are too many distinct ones.
    Keyed by type too, so ``True`` and ``1`` (equal in Python) stay apart."""
    groups = {}
    for sample_id, value in values_by_id.items():
        if value is not None and type(value) not in _SCALARS:
            return None
        key = (type(value), value)
        group = groups.get(key)
        if group is None:
            if len(groups) == MAX_GROUPS:
                return None
            group = groups[key] = (value, [])
        group[1].append(sample_id)
    return groups


def _to_mongo(path, field, value):
    """``value`` as stored, checked by ``field`` (as ``set_values`` with ``validate=True`` does)."""
    if value is None:
        return None
    try:
        field.validate(value)
    except Exception as e:
        raise ValueError(f"Invalid value for field '{path}'. Reason: {e}") from e
    return field.to_mongo(value)
