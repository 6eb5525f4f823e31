"""Links between runs, resolved by the fields the runs own.

A flags run names the score run it was made from (``score_run``), an audit the runs it made (``audit_runs``,
``{role: run key}``). FiftyOne's own ``dataset.rename_run`` changes a run's key and nothing else, so such a link can
name a key no run has any more. The run it meant is still there, recognised by the fields it owns
(:mod:`.ownership`): a flags run's score run owns the scores it read (``score_field``, :func:`score_run_of`);
an audit's runs are keyed by the field they wrote (the score field, the flag field), so the run of the role's kind
that owns the field of the listed key's name is the run the audit made.

A key FiftyOne's ``rename_run`` freed can be taken again by another run (``ood.compute_ood_scores(..., run_key=<the
old key>)`` into another field): a link naming it would then name a run that is not the one it meant, so the key's
run answers for the link only while it is that run (a flags run's score run lists the scores it read; an audit's
run was made by an audit, or writes the field of its key's name), else the run owning the field does, as for a key
no run has (found by a probe: deleting the new run took the renamed run's flags and their tags with it, and
``ood.repair_ood_runs`` deleted an audit's renamed run with its scores as an interrupted audit's).

Reads resolve links (:func:`audit_runs_of`, :func:`resolved_info`); the package's own renames and deletes, and
``ood.repair_ood_runs``, write the resolved keys back (:func:`repair`), so the records become true again. A key no
run has and no run answers for (the run was deleted) is returned as it is. An audit record being deleted lets go
of its runs (:func:`release_audit_runs`): they stay, as runs of their own.
"""

from .run_kinds import score_kinds
from .run_records import list_ood_runs, update_run

#: the roles of an audit's runs whose runs are flags runs (the others are score runs)
FLAG_ROLES = ("ood_flags", "label_issue_flags")


def owner_of(dataset, path, kinds, keys=None, by_audit=False):
    """The package's run of one of ``kinds`` that owns the field ``path`` (lists it, and it is still the one that run
    wrote: :mod:`.ownership`), or None. ``keys``: the package's run keys, when the caller has them; ``by_audit``: only
    a run an audit made (``made_by_audit``)."""
    from .ownership import run_owns

    for other in list_ood_runs(dataset) if keys is None else keys:
        if not dataset.has_run(other):
            continue
        config = dataset.get_run_info(other).config
        if getattr(config, "kind", None) in kinds and run_owns(dataset, other, path) \
                and (not by_audit or getattr(config, "made_by_audit", None) is not None):
            return other
    return None


def _fields(dataset, key):
    return getattr(dataset.get_run_info(key).config, "fields", None) or []


def score_run_of(dataset, config, keys=None):
    """The key of the score run a flags run (``config``) was made from: its ``score_run``, or, when no run has that
    key any more (renamed with FiftyOne's own ``dataset.rename_run``, which leaves the flags naming the old key),
    the score run that now owns the scores it read (``score_field``), as a key that still named it would. A key no
    run has, and nothing owns the scores, is returned as it is (the score run was deleted); None for flags of a
    field."""
    key = getattr(config, "score_run", None)
    path = getattr(config, "score_field", None)
    if key is None or not path or (dataset.has_run(key) and path in _fields(dataset, key)):
        return key
    # no run has the key, or the run that has it now writes other scores (the key was freed by FiftyOne's
    # rename_run and taken again): the run owning the scores read is the one meant, as a key that still named it
    return owner_of(dataset, path, score_kinds(), keys) or key


def audit_run_of(dataset, role, key, keys=None):
    """The run an audit lists as ``key`` for ``role``: ``key`` while a run has it, else the run of the role's kind
    owning the field named ``key`` (renamed with FiftyOne's ``rename_run``), else ``key`` (deleted)."""
    if not isinstance(key, str):
        return key
    kinds = ("flags",) if role in FLAG_ROLES else score_kinds()
    if not dataset.has_run(key):
        return owner_of(dataset, key, kinds, keys) or key
    config = dataset.get_run_info(key).config
    if getattr(config, "made_by_audit", None) is not None or key in (getattr(config, "fields", None) or []):
        return key  # the audit's run (also one renamed with ood.rename_ood_run), or one of its shape
    # a run made by no audit, not writing the field of its key's name, took a key FiftyOne's rename_run freed:
    # the audit's run is the one an audit made that owns that field
    return owner_of(dataset, key, kinds, keys, by_audit=True) or key


def audit_runs_of(dataset, audit_key):
    """``{role: run key}`` of the audit ``audit_key``, each resolved (:func:`audit_run_of`)."""
    listed = getattr(dataset.get_run_info(audit_key).config, "audit_runs", None) or {}
    keys = list_ood_runs(dataset)
    return {role: audit_run_of(dataset, role, key, keys) for role, key in listed.items()}


def resolved_info(dataset, info):
    """A run's info dict (:func:`.run_info.get_ood_run_info`) with its links resolved: a flags run's ``score_run``, an
    audit's ``audit_runs``; an audit's outputs that are no longer its own (another audit's file, or gone: a process
    killed before the record stopped naming it) are None, with a note (:func:`.audit_owners.hide_unowned_outputs`)."""
    if info.get("kind") == "flags" and info.get("score_run") is not None:
        info["score_run"] = score_run_of(dataset, dataset.get_run_info(info["run_key"]).config)
    elif info.get("kind") == "audit":
        from .audit_owners import hide_unowned_outputs

        if info.get("audit_runs"):
            info["audit_runs"] = audit_runs_of(dataset, info["run_key"])
        hide_unowned_outputs(info)
    return info


def resolved_results(dataset, run_key, results):
    """A run's stored results (``load_ood_results``) with an audit's ``summary`` checked as
    :func:`resolved_info` checks its record (the summary keeps the record's ``output_token``)."""
    from .audit_owners import hide_unowned_outputs

    summary = getattr(results, "summary", None)
    config = dataset.get_run_info(run_key).config
    if getattr(config, "kind", None) == "audit" and isinstance(summary, dict):
        token = summary.get("output_token") or getattr(config, "output_token", None)
        checked = hide_unowned_outputs({**summary, "output_token": token})
        summary.update({k: v for k, v in checked.items() if k != "output_token"})
    return results


def dangling_links(dataset):
    """``[(run key, link, old key, resolved key)]`` of the links (flags' ``score_run``, audits'
    ``audit_runs.<role>``) that name a key no run has, or a run other than the one they meant (a key freed by
    FiftyOne's ``rename_run`` and taken again); the resolved key is the old one when no run answers for it
    (deleted)."""
    keys = list_ood_runs(dataset)
    out = []
    for key, config in _configs(dataset):
        if getattr(config, "kind", None) == "flags":
            named = getattr(config, "score_run", None)
            now = score_run_of(dataset, config, keys) if named is not None else None
            if named is not None and (now != named or not dataset.has_run(named)):
                out.append((key, "score_run", named, now))
        else:
            for role, named in (getattr(config, "audit_runs", None) or {}).items():
                now = audit_run_of(dataset, role, named, keys)
                if now != named or not dataset.has_run(named):
                    out.append((key, f"audit_runs.{role}", named, now))
    return out


def dangling_aliases(dataset, keys):
    """The keys no run has that links name and that resolve to one of the runs ``keys``: the old keys of runs
    renamed with FiftyOne's ``rename_run``."""
    keys = set(keys)
    return sorted({old for _, _, old, now in dangling_links(dataset) if now in keys} - keys)


def repair(dataset, keys=None):
    """Write the resolved keys into dangling links (all of them, or those resolving to one of the runs ``keys``);
    returns ``[(run key, link, old key, new key)]`` changed. Each record is updated in one write: an interrupted
    repair leaves every link either as it was (resolved again on read) or true."""
    def changes():
        return [link for link in dangling_links(dataset) if link[3] != link[2] and (keys is None or link[3] in keys)]

    changed = changes()
    if changed:  # read again: a dataset held open while another process renamed or deleted the runs
        dataset.reload()
        changed = changes()
    for key in dict.fromkeys(key for key, _, _, _ in changed):
        config = dataset.get_run_info(key).config
        if getattr(config, "kind", None) == "flags":
            update_run(dataset, key, score_run=next(now for k, _, _, now in changed if k == key))
        else:
            fixed = dict(getattr(config, "audit_runs", None) or {})
            fixed.update({link.split(".", 1)[1]: now for k, link, _, now in changed if k == key})
            update_run(dataset, key, audit_runs=fixed)
    return changed


def _configs(dataset):
    """``(key, config)`` of the package's flags runs and audits."""
    return [(key, dataset.get_run_info(key).config) for kind in ("flags", "audit")
            for key in list_ood_runs(dataset, kind=kind)]


def release_audit_runs(samples, audit_key):
    """An audit record is being deleted: its runs stay as runs of their own, no longer named as made by it."""
    dataset = samples._dataset
    for key in audit_runs_of(dataset, audit_key).values():  # also those renamed with FiftyOne's rename_run
        if key in list_ood_runs(samples) and \
                getattr(dataset.get_run_info(key).config, "made_by_audit", None) is not None:
            update_run(samples, key, made_by_audit=None)
