"""Values in sample documents that the dataset's schema does not declare.

FiftyOne does not declare dynamic label attributes (``gt.detections.my_note``
set on objects by a curator) in the schema, and a dataset's field list can
lose entries when processes save it concurrently, so "the schema has no such
field" does not mean "no document holds such a key". These helpers look at the
documents themselves: whether a path holds any value (:func:`field_exists`,
used before every write, so a curator's undeclared attributes are never
overwritten), removing a key the schema does not declare (:func:`unset_key`,
used by rollback, discard and repair), and finding this package's undeclared
temporary keys left in documents (:func:`stray_internal_keys`), and naming arrays stored under an undeclared key
(:func:`undeclared_vectors_problem`).
"""

from .names import INTERNAL_NAME as _INTERNAL, TMP_PREFIX  # the package's temporary names exactly


def field_exists(dataset, path):
    """Whether ``path`` is declared in the schema or any sample document holds a value there."""
    if dataset.get_field(path) is not None:
        return True
    return has_values(dataset, path)


def has_values(dataset, path):
    """Whether any sample document (or object of a label list) holds a non-null value at ``path``.

    Through a list (``gt.detections.note``) the test is per object (``$elemMatch``): ``$ne: None`` on the
    list path alone fails for a sample where any object lacks the key, so a note on some objects only went
    unseen."""
    return dataset._sample_collection.find_one(_value_query(dataset, path), {"_id": 1}) is not None


def _value_query(dataset, path):
    import fiftyone.core.fields as fof

    parts = path.split(".")
    for i in range(len(parts) - 1):
        if isinstance(dataset.get_field(".".join(parts[: i + 1])), fof.ListField):
            rest = ".".join("_id" if p == "id" else p for p in parts[i + 1:])
            return {_db_path(dataset, ".".join(parts[: i + 1]), positional=False):
                    {"$elemMatch": {rest: {"$exists": True, "$ne": None}}}}
    return {_db_path(dataset, path, positional=False): {"$exists": True, "$ne": None}}


def unset_key(dataset, path):
    """Remove ``path`` from every sample document (and object), declared or not; returns documents changed."""
    coll = dataset._sample_collection
    query = {_db_path(dataset, path, positional=False): {"$exists": True}}
    return coll.update_many(query, {"$unset": {_db_path(dataset, path, positional=True): ""}}).modified_count


def _db_path(dataset, path, positional):
    """The MongoDB path of ``path``: ``$[]`` after each list level when ``positional`` (for updates)."""
    parts = path.split(".")
    out = []
    for i, part in enumerate(parts):
        out.append("_id" if part == "id" else part)
        if positional and i < len(parts) - 1:
            import fiftyone.core.fields as fof

            field = dataset.get_field(".".join(parts[: i + 1]))
            if isinstance(field, fof.ListField):
                out.append("$[]")
    return ".".join(out)


def _keys_pipeline(source, prefix, unwind):
    stages = [{"$match": {source[1:]: {"$exists": True}}}, {"$project": {"d": source}}]
    if unwind:
        stages.append({"$unwind": "$d"})
    return stages + [
        {"$match": {"d": {"$type": "object"}}},
        {"$project": {"k": {"$map": {"input": {"$objectToArray": "$d"}, "in": "$$this.k"}}}},
        {"$unwind": "$k"},
        {"$match": {"k": {"$regex": prefix}}},
        {"$group": {"_id": "$k"}},
    ]


def stray_internal_keys(dataset):
    """Paths of this package's temporary keys (``tmp_ood_*``) that documents hold but the schema does not
    declare: at the top level, in embedded labels, and in the objects of label lists (``gt.detections``)."""
    import fiftyone.core.fields as fof

    dataset.reload()
    schema = dataset.get_field_schema(flat=True)
    coll = dataset._sample_collection
    found = {doc["_id"] for doc in coll.aggregate([
        {"$project": {"k": {"$map": {"input": {"$objectToArray": "$$ROOT"}, "in": "$$this.k"}}}},
        {"$unwind": "$k"}, {"$match": {"k": {"$regex": _INTERNAL}}}, {"$group": {"_id": "$k"}}])}
    for path, field in schema.items():
        if path.startswith(TMP_PREFIX):
            continue
        is_doc = isinstance(field, fof.EmbeddedDocumentField)
        is_list = isinstance(field, fof.ListField) and isinstance(field.field, fof.EmbeddedDocumentField)
        parent = path.rpartition(".")[0]
        if is_doc and "." not in path:
            found |= {f"{path}.{d['_id']}" for d in coll.aggregate(_keys_pipeline(f"${path}", _INTERNAL, False))}
        elif is_list and parent and "." not in parent and isinstance(schema.get(parent), fof.EmbeddedDocumentField):
            found |= {f"{path}.{d['_id']}" for d in coll.aggregate(_keys_pipeline(f"${path}", _INTERNAL, True))}
    return sorted(p for p in found if p not in schema)


def undeclared_vectors_problem(dataset, path, value, then="call again"):
    """Why arrays FiftyOne hands back as bytes at ``path`` (``value``: one of them) cannot be read, with the fix;
    None when ``value`` is not such an array or ``path`` is declared. Set on objects (``det["emb"] =
    np.array(...)``) without the field being declared, arrays are stored serialized and read back undecoded;
    declaring the field (what ``compute_pyramid_embeddings`` does) makes FiftyOne decode them. ``then``: what to
    do after declaring it."""
    import fiftyone.core.utils as fou

    if not isinstance(value, bytes) or dataset.get_field(path) is not None:
        return None
    try:
        dim = fou.deserialize_numpy_array(value).size
    except Exception:  # not a serialized array
        return None
    name = path.rsplit(".", 1)[-1]
    return (f"embeddings {path!r} are stored as serialized arrays (bytes; the first holds {dim} numbers): the "
            f"field is not declared on dataset {dataset.name!r} (arrays set on the objects without declaring it, "
            f"e.g. det[{name!r}] = np.array(...)), so FiftyOne cannot decode them. Declare it once, then {then}: "
            f"dataset.add_sample_field({path!r}, fo.VectorField) (import fiftyone as fo)")


def declared(dataset, path):
    """Whether the schema of ``dataset`` declares ``path``."""
    return dataset.get_field(path) is not None
