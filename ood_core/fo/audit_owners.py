"""Which audit an output (the HTML report with its CSV, the export folder) belongs to, and handing it over.

Each output names the audit that wrote it (:func:`owner_json`: its dataset, key and ``output_token``); it is that
audit's only while the audit's record still names its path (:func:`recorded_owner`). When another audit replaces
it (``overwrite=True``), the earlier audit's record stops naming it (:func:`disclaim`): its ``report_path`` /
``csv_path`` or ``export_dir`` become None and :data:`REPLACED_OUTPUTS` says which audit took the path, so listing
or inspecting the earlier audit never points at a file that is now another audit's.

A process killed between publishing an output and that update (or a killed redo of the audit, whose report shows
the redo's results) still leaves a record naming a file that is not its audit's; reads check it
(:func:`hide_unowned_outputs`): an output whose token is not the record's ``output_token``, or that is gone, is
shown as None with a note.
"""

import html
import json
import os
import re

from .names import PLUGIN_TAG

#: the audit record's entry ``{"report_path" | "export_dir": sentence}``: its outputs another audit replaced since
REPLACED_OUTPUTS = "replaced_outputs"
#: an output's entries in an audit's record and summary (the CSV goes with its report)
OUTPUT_ENTRIES = {"report_path": ("report_path", "csv_path"), "export_dir": ("export_dir",)}
#: the ``<meta>`` of the report's head naming the audit that wrote it (:func:`owner_json`)
OWNER_META = "fiftyone-ood-audit"


def other_audit(samples, audit_key, owner):
    """"audit <key> of dataset <name>" when ``owner`` (:func:`recorded_owner`) is an audit other than ``audit_key``
    of ``samples``' dataset, else None (no owner, or this audit's own output)."""
    if owner is None:
        return None
    dataset, key = owner
    if str(dataset._doc.id) == str(samples._dataset._doc.id) and key == audit_key:
        return None
    return f"audit {key!r} of dataset {dataset.name!r}"


def recorded_owner(samples, audit_key, named, field, path):
    """``(dataset, audit key)`` of the audit an output at ``path`` names as its writer (``named``: :func:`owner_json`
    parsed) when that audit's record still names ``path`` in its config ``field``
    (``report_path``, ``export_dir``), else None; with no ``named`` (written by an earlier version), the audit of
    ``samples``' dataset whose record names it (``audit_key`` first)."""
    if not isinstance(named, dict):
        keys = _claimants(samples._dataset, field, path)
        return (samples._dataset, audit_key if audit_key in keys else keys[0]) if keys else None
    dataset = _dataset_by_id(samples, named.get("dataset_id"))
    if dataset is None:
        return None
    keys = _claimants(dataset, field, path)
    if named.get("token"):  # the record of the very audit that wrote it, also under a key renamed since
        same = [key for key in keys if getattr(dataset.get_run_info(key).config, "output_token", None)
                == named["token"]]
        if same:
            return dataset, same[0]
        # a redo of the key whose record names the path, killed or failed after writing it (never recorded): the
        # file is still the one that record names, not one no audit names
        return (dataset, named["audit_key"]) if named.get("audit_key") in keys else None
    if named.get("audit_key") not in keys:
        return None  # the audit redone elsewhere, or its record deleted: what is there is no longer its own
    return dataset, named["audit_key"]


def owner_json(samples, audit_key, token=None):
    """What an audit's output records of its writer (:func:`recorded_owner`); ``token``: the audit's
    ``output_token``, which its record keeps under whatever key FiftyOne's ``rename_run`` gives it."""
    return json.dumps({"dataset_id": str(samples._dataset._doc.id), "dataset": samples._dataset.name,
                       "audit_key": audit_key, "token": token})


def disclaim(owner, field, path, by):
    """The output at ``path`` of the audit ``owner`` (``(dataset, key)``) was replaced by ``by`` (another audit,
    in words): that audit's record and stored summary stop naming it (its :data:`OUTPUT_ENTRIES` of ``field`` set
    to None) and say in :data:`REPLACED_OUTPUTS` who took the path. A record that names another path by now (redone
    meanwhile) is left as it is. Returns whether the record changed."""
    from .coordination import schema_lock
    from .run_sync import refresh_stale_runs

    dataset, key = owner
    what = "report (and its CSV)" if field == "report_path" else "export"
    note = f"its {what} at {path!r} was replaced by {by}; that file is no longer this audit's"
    with schema_lock(dataset):
        refresh_stale_runs(dataset)  # the records as they are now (not reload(): it drops unsaved sample edits)
        if key not in _claimants(dataset, field, path):
            return False
        config = dataset.get_run_info(key).config
        for entry in OUTPUT_ENTRIES[field]:
            setattr(config, entry, None)
        setattr(config, REPLACED_OUTPUTS, {**(getattr(config, REPLACED_OUTPUTS, None) or {}), field: note})
        dataset.update_run_config(key, config)
        results = dataset.load_run_results(key, cache=False)
        summary = getattr(results, "summary", None)
        if isinstance(summary, dict):
            summary.update({entry: None for entry in OUTPUT_ENTRIES[field]})
            summary[REPLACED_OUTPUTS] = getattr(config, REPLACED_OUTPUTS)
            dataset.save_run_results(key, results, overwrite=True, cache=False)
    return True


def _dataset_by_id(samples, dataset_id):
    """The dataset of id ``dataset_id`` (``samples``' own, or loaded), or None when there is none."""
    import bson
    import fiftyone as fo
    import fiftyone.core.odm as foo

    if str(samples._dataset._doc.id) == dataset_id:
        return samples._dataset
    try:
        doc = foo.get_db_conn().datasets.find_one({"_id": bson.ObjectId(dataset_id)}, {"name": 1})
        return fo.load_dataset(doc["name"]) if doc else None
    except (bson.errors.InvalidId, TypeError, ValueError):
        return None


def _claimants(dataset, field, path):
    """The keys of the audits of ``dataset`` whose record names ``path`` in its config ``field``."""
    from .names import is_internal

    real, keys = os.path.realpath(path), []
    for key in dataset.list_runs(ood_plugin=PLUGIN_TAG, kind="audit"):
        recorded = getattr(dataset.get_run_info(key).config, field, None)
        if not is_internal(key) and isinstance(recorded, str) and os.path.realpath(recorded) == real:
            keys.append(key)
    return keys


#: the longest line read from a report for its writer (its ``<meta>`` of the writer is on the second line, after the
#: hash comment)
_HEAD_BYTES = 1 << 16


def written_token(field, path):
    """The ``output_token`` the output at ``path`` names as its writer (``field``: ``report_path`` or
    ``export_dir``): '' when it names none (an earlier version's, or not this package's), None when it is gone.
    Cheap: the report's first two lines, or the export marker's first three lines."""
    from .export_files import MARKER

    try:
        if field == "report_path":
            with open(path, "rb") as f:  # its hash comment line, then the document's head
                head = f.readline(_HEAD_BYTES) + f.readline(_HEAD_BYTES)
            found = re.search(rb"<meta name='" + re.escape(OWNER_META.encode()) + rb"' content='([^']*)'>", head)
            named = json.loads(html.unescape(found.group(1).decode("utf-8"))) if found else None
        else:
            if not os.path.isdir(path):
                return None
            with open(os.path.join(path, MARKER), encoding="utf-8") as f:
                lines = [f.readline(_HEAD_BYTES) for _ in range(3)]
            named = json.loads(lines[2]) if lines[2].strip() else None
    except FileNotFoundError:
        return None if field == "report_path" else ""
    except (OSError, ValueError, UnicodeDecodeError):
        return ""
    token = named.get("token") if isinstance(named, dict) else None
    return token if isinstance(token, str) else ""


def unowned_outputs(info):
    """``{"report_path" | "export_dir": note}``: the outputs an audit's record (or summary) ``info`` names that are
    not its audit's: gone, or written by another audit (or an unrecorded redo of this one) since. A record without
    ``output_token`` (an earlier version's) vouches for none and is taken as it is."""
    token = info.get("output_token")
    out = {}
    for field in OUTPUT_ENTRIES if token else ():
        path = info.get(field)
        if not isinstance(path, str):
            continue
        found = written_token(field, os.path.abspath(os.path.expanduser(path)))
        if found == token:
            continue
        what = "report (and its CSV)" if field == "report_path" else "export"
        why = ("no longer exists" if found is None else
               "now holds the output of another audit (or of a redo of this one that was not recorded)")
        out[field] = f"its {what} at {path!r} {why}; that file is not this audit's"
    return out


def hide_unowned_outputs(info):
    """``info`` (an audit's record or summary, a dict) with the outputs that are not its audit's
    (:func:`unowned_outputs`) set to None and the reason in :data:`REPLACED_OUTPUTS`; changed in place, returned."""
    notes = unowned_outputs(info)
    for field in notes:
        info.update({entry: None for entry in OUTPUT_ENTRIES[field]})
    if notes:
        info[REPLACED_OUTPUTS] = {**(info.get(REPLACED_OUTPUTS) or {}), **notes}
    return info
