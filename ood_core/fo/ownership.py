"""Whether a field a run record lists is still the field that run wrote.

A run record lists its fields by name. A user can delete such a field by hand
(``dataset.delete_sample_field``) and later create a field of their own under
the same name; the record, now stale, still lists the name, and the name alone
would let ``overwrite=True`` (or deleting the run) replace the user's data.

So every run records, beside each field, a **mark**: a random token that
registering the run also stores in the field's own schema entry
(``field.info``). FiftyOne keeps a field's schema entry, info included, through
renames (the commit renames staged fields into place) and dataset clones; a field
made by hand (``set_values``, ``add_sample_field``) has no mark, or another one.
A record whose mark differs from its field's no longer owns that field:
writes refuse it, and deleting or replacing the run leaves it alone.

Records written before marks existed carry none (``field_marks`` missing) and
are trusted by name, as they always were.
"""

import uuid

from ..errors import OODInputError
from .commit_journal import in_flight

#: the key of the mark in a field's ``info`` dict
INFO_KEY = "fiftyone_ood_mark"


def field_mark(dataset, path):
    """The mark in the schema entry of ``path``; None when it has none or the schema does not declare it."""
    field = dataset.get_field(path)
    if field is None:
        return None
    return (getattr(field, "info", None) or {}).get(INFO_KEY)


def mark_fields(dataset, paths):
    """The marks of ``paths`` (aligned list) for a run record, giving a declared field without one a new mark.

    An existing mark is kept (a run re-registered over the same field, an overwrite staged as a copy of the old
    field), so a field carries one mark for as long as runs of this package keep it. Undeclared paths get None
    (nothing to check). The caller holds the dataset's schema lock, on a freshly reloaded dataset.
    """
    marks = []
    for path in paths:
        field = dataset.get_field(path)
        if field is None:
            marks.append(None)
            continue
        info = dict(getattr(field, "info", None) or {})
        if not info.get(INFO_KEY):
            info[INFO_KEY] = uuid.uuid4().hex[:16]
            field.info = info
            field.save()
        marks.append(info[INFO_KEY])
    return marks


def new_mark_info():
    """The ``info`` of a field this package creates itself before any record lists it (the embeddings' partial
    field): marked from its creation, so a leftover of a killed call is told from a user's field of that name."""
    return {INFO_KEY: uuid.uuid4().hex[:16]}


def run_owns(dataset, run_key, path):
    """Whether the record of ``run_key`` lists ``path`` and the field there is still the one that run wrote.

    True for a listed path of a record without marks (older records) or whose mark is None (the path was not
    declared when the run was recorded); False when the record's mark differs from the field's (the field was
    deleted and made again by hand, or the schema no longer declares it).
    """
    config = dataset.get_run_info(run_key).config
    fields = list(getattr(config, "fields", None) or [])
    if path not in fields:
        return False
    marks = getattr(config, "field_marks", None)
    if not marks or len(marks) != len(fields):
        return True
    recorded = marks[fields.index(path)]
    return recorded is None or recorded == field_mark(dataset, path)


def owns_all(dataset, run_key):
    """Whether every field the record of ``run_key`` lists is still the one that run wrote (:func:`run_owns`)."""
    fields = getattr(dataset.get_run_info(run_key).config, "fields", None) or []
    return all(run_owns(dataset, run_key, path) for path in fields)


def refuse_stale_records(dataset, path):
    """Refuse ``path`` when a record lists it whose field was deleted and made again by hand: the field is
    the user's now, whatever the record says; refuse to write there.

    A commit in flight on ``path`` (another writer between renaming its new field into place and recording its
    run) shows a new field beside the old record: not a user's field; nor is what a stale copy of the dataset
    document shows (looked at again). Inside a commit, under the field's lock, no other writer is in flight.
    A path that holds nothing (the field was deleted or renamed by hand, and not made again) is no one's data:
    the run is scored again there (before, such an overwrite was refused as if the field were a user's).
    """
    from .documents import field_exists
    from .run_records import ood_run_configs

    if not field_exists(dataset, path):
        return

    def stale_records():
        return [key for key, config in ood_run_configs(dataset).items() if path in (config.get("fields") or [])
                and not run_owns(dataset, key, path)]

    stale = stale_records()
    if stale and not in_flight(dataset, path):
        dataset.reload()  # found by the two-overwriting-writers race test: a snapshot taken mid-commit
        stale = stale_records()
    if stale and not in_flight(dataset, path):
        raise OODInputError(
            f"field {path!r} on dataset {dataset.name!r} is listed by run {stale[0]!r}, but it is not the field that "
            "run wrote: it was deleted and made again outside fiftyone-ood (or its schema entry was changed), so "
            "it holds data this plugin did not create; refusing to replace it, even with overwrite=True. Choose "
            f"another field name; to drop the stale record and keep the field, run "
            f"ood.delete_ood_run(dataset, {stale[0]!r}, delete_fields=False)"
        )
