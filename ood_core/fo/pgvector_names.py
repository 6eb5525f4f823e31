"""New pgvector table and index names for a similarity index this package builds.

The Brain's pgvector backend writes its rows into an existing table named ``table_name``, drops an index named
``index_name`` before building its own, and its default index name is unique per table only (PostgreSQL index
names are schema-wide). :func:`pgvector_names` fixes both names before anything is created: names the caller gave
must not name any relation yet, names left out are new unique ones.
"""

import uuid

from ..errors import BackendError, OODInputError

#: PostgreSQL keeps the first 63 bytes of a name (NAMEDATALEN - 1) and drops the rest without an error.
_PG_MAX_NAME_BYTES = 63

#: ``pg_class.relkind`` -> its name in a message.
_PG_RELKINDS = {"r": "table", "p": "partitioned table", "i": "index", "I": "partitioned index", "v": "view",
                "m": "materialized view", "S": "sequence", "f": "foreign table", "c": "composite type",
                "t": "TOAST table"}

#: A relation of that name that the Brain's unqualified SQL (CREATE/INSERT/DROP) could reach.
_PG_FIND_RELATION = (
    "SELECT n.nspname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = %s AND (n.nspname = ANY(current_schemas(true)) OR n.nspname = 'public') LIMIT 1"
)

#: The Brain's pgvector SSL settings -> psycopg2's connection keywords.
_PG_SSL_OPTIONS = {"ssl_cert": "sslcert", "ssl_key": "sslkey", "ssl_root_cert": "sslrootcert"}


def _pgvector_settings(backend):
    """FiftyOne's brain config of ``backend`` when it is the pgvector backend, else None."""
    import fiftyone.brain as fob

    name = backend or fob.brain_config.default_similarity_backend
    params = dict(fob.brain_config.similarity_backends.get(name) or {})
    if name != "pgvector" and "pgvector" not in str(params.get("config_cls", "")).lower():
        return None
    return params


def pgvector_names(backend, kwargs, brain_key):
    """``kwargs`` with explicit pgvector ``table_name`` and ``index_name`` that name nothing in the database yet.

    The Brain writes its rows into an existing table named ``table_name``, drops an index named ``index_name``
    before building its own, and its default index name is unique per table only, while PostgreSQL index names
    are schema-wide; dropping a temporary index drops both names. So names given (in the call or FiftyOne's brain
    config) are refused when a relation of that name exists, and names not given are new unique ones: dropping
    them drops only what this call made. Other backends pass through unchanged.
    """
    settings = _pgvector_settings(backend)
    if settings is None:
        return kwargs
    settings.update(kwargs)
    stem = f"fiftyone_ood_{'tmp_' if brain_key is None else ''}{uuid.uuid4().hex}"
    names, given = {"table_name": stem, "index_name": f"{stem}_idx"}, set()
    for arg in names:
        if settings.get(arg) is not None:
            names[arg] = _check_pg_name(arg, settings[arg])
            given.add(arg)
    if names["table_name"] == names["index_name"]:
        raise OODInputError(
            f"table_name and index_name are both {names['table_name']!r}; PostgreSQL tables and indexes share "
            "one namespace: pass two different names, or leave index_name out"
        )
    found = _pg_find_relations(settings, names.values())
    for arg, name in names.items():
        if name not in found:
            continue
        schema, kind = found[name]
        what = f"{arg}={name!r} names an existing {_PG_RELKINDS.get(kind, 'relation')} ({schema}.{name})"
        if arg not in given:  # a fresh uuid name: practically never
            raise BackendError(f"the new {arg} {name!r} is already taken in the database; call again")
        if arg == "table_name":
            raise OODInputError(
                f"{what}: a new similarity index would write its rows into it, and a temporary one drops it "
                "afterwards. Pass a table_name that does not exist yet, or leave table_name out (a new table "
                "with a unique name is used), or pass brain_key=<key> of the similarity index that owns it"
            )
        raise OODInputError(
            f"{what}: the Brain drops an index of that name before building its own, and a temporary index "
            "drops it afterwards. Pass an index_name that does not exist yet, or leave index_name out (a "
            "unique name is used)"
        )
    return {**kwargs, **names}


def _check_pg_name(arg, value):
    """``value`` if PostgreSQL keeps it whole as a name, else the error naming ``arg``."""
    if not isinstance(value, str) or not value or "\x00" in value \
            or len(value.encode("utf-8")) > _PG_MAX_NAME_BYTES:
        raise OODInputError(
            f"{arg}={value!r} is not a usable PostgreSQL name: it must be a text of 1 to {_PG_MAX_NAME_BYTES} "
            "bytes (PostgreSQL cuts longer names, which could then name another table or index); pass such a "
            f"{arg}, or leave it out (a unique name is used)"
        )
    return value


def _pg_find_relations(settings, names):
    """``{name: (schema, relkind)}`` of the ``names`` that already are relations, on a connection of our own."""
    ssl = {opt: settings[arg] for arg, opt in _PG_SSL_OPTIONS.items() if settings.get(arg)}
    try:
        import psycopg2

        conn = psycopg2.connect(settings.get("connection_string"), **ssl)
    except Exception as e:
        raise BackendError(
            f"could not create a 'pgvector' similarity index: {e}. Check that the server is running and "
            "the connection settings (e.g. connection_string=...) are right, and that psycopg2 is installed"
        ) from e
    try:
        found = {}
        with conn.cursor() as cur:
            for name in names:
                cur.execute(_PG_FIND_RELATION, (name,))
                row = cur.fetchone()
                if row is not None:
                    found[name] = tuple(row)
        return found
    finally:
        conn.close()


__all__ = ["pgvector_names"]
