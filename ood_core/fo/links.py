"""Links between runs, resolved by the fields the runs own.

A flags run names the score run it was made from (``score_run``), an audit the runs it made (``audit_runs``,
``{role: run key}``). FiftyOne's own ``dataset.rename_run`` changes a run's key and nothing else, so such a link can
name a key no run has any more. The run it meant is still there, recognised by the fields it owns
(:mod:`.ownership`): a flags run's score run owns the scores it read (``score_field``, :func:`.flags.score_run_of`);
an audit's runs are keyed by the field they wrote (the score field, the flag field), so the run of the role's kind
that owns the field of the listed key's name is the run the audit made.

Reads resolve links (:func:`audit_runs_of`, :func:`resolved_info`); the package's own renames and deletes, and
``ood.repair_ood_runs``, write the resolved keys back (:func:`repair`), so the records become true again. A key no
run has and no run answers for (the run was deleted) is returned as it is.
"""

from . import runs

#: the roles of an audit's runs whose runs are flags runs (the others are score runs)
FLAG_ROLES = ("ood_flags", "label_issue_flags")


def _fits(dataset, key, role):
    kind = getattr(dataset.get_run_info(key).config, "kind", None)
    return kind == "flags" if role in FLAG_ROLES else kind in runs.score_kinds()


def audit_run_of(dataset, role, key, keys=None):
    """The run an audit lists as ``key`` for ``role``: ``key`` while a run has it, else the run of the role's kind
    owning the field named ``key`` (renamed with FiftyOne's ``rename_run``), else ``key`` (deleted). ``keys``: the
    package's run keys, when the caller has them."""
    from .ownership import run_owns

    if not isinstance(key, str) or dataset.has_run(key):
        return key
    for other in runs.list_ood_runs(dataset) if keys is None else keys:
        if dataset.has_run(other) and _fits(dataset, other, role) and run_owns(dataset, other, key):
            return other
    return key


def audit_runs_of(dataset, audit_key):
    """``{role: run key}`` of the audit ``audit_key``, each resolved (:func:`audit_run_of`)."""
    listed = getattr(dataset.get_run_info(audit_key).config, "audit_runs", None) or {}
    if all(dataset.has_run(key) for key in listed.values()):
        return dict(listed)
    keys = runs.list_ood_runs(dataset)
    return {role: audit_run_of(dataset, role, key, keys) for role, key in listed.items()}


def resolved_info(dataset, info):
    """A run's info dict (:func:`.runs.get_ood_run_info`) with its links resolved: a flags run's ``score_run``, an
    audit's ``audit_runs``."""
    from .flags import score_run_of

    if info.get("kind") == "flags" and info.get("score_run") is not None:
        info["score_run"] = score_run_of(dataset, dataset.get_run_info(info["run_key"]).config)
    elif info.get("kind") == "audit" and info.get("audit_runs"):
        info["audit_runs"] = audit_runs_of(dataset, info["run_key"])
    return info


def dangling_aliases(dataset, keys):
    """The keys no run has that links (flags' ``score_run``, audits' ``audit_runs``) name and that resolve to one of
    the runs ``keys``: the old keys of runs renamed with FiftyOne's ``rename_run``."""
    from .flags import score_run_of

    keys = set(keys)
    aliases = set()
    for key, config in _configs(dataset):
        kind = getattr(config, "kind", None)
        if kind == "flags":
            named = getattr(config, "score_run", None)
            if named is not None and not dataset.has_run(named) and score_run_of(dataset, config) in keys:
                aliases.add(named)
        elif kind == "audit":
            listed = getattr(config, "audit_runs", None) or {}
            for role, named in listed.items():
                if not dataset.has_run(named) and audit_run_of(dataset, role, named) in keys:
                    aliases.add(named)
    return sorted(aliases - keys)


def repair(dataset, keys=None):
    """Write the resolved keys into dangling links (all of them, or those resolving to one of the runs ``keys``);
    returns ``[(run key, link, old key, new key)]`` changed. Each record is updated in one write: an interrupted
    repair leaves every link either as it was (resolved again on read) or true."""
    from .flags import score_run_of

    changed = []
    for key, config in _configs(dataset):
        kind = getattr(config, "kind", None)
        if kind == "flags":
            named = getattr(config, "score_run", None)
            if named is None or dataset.has_run(named):
                continue
            now = score_run_of(dataset, config)
            if now != named and (keys is None or now in keys):
                runs.update_run(dataset, key, score_run=now)
                changed.append((key, "score_run", named, now))
        elif kind == "audit":
            listed = dict(getattr(config, "audit_runs", None) or {})
            fixed = {role: named if dataset.has_run(named) else audit_run_of(dataset, role, named)
                     for role, named in listed.items()}
            fixed = {role: now if keys is None or now in keys else listed[role] for role, now in fixed.items()}
            if fixed != listed:
                runs.update_run(dataset, key, audit_runs=fixed)
                changed += [(key, f"audit_runs.{role}", listed[role], now) for role, now in fixed.items()
                            if now != listed[role]]
    return changed


def _configs(dataset):
    """``(key, config)`` of the package's flags runs and audits."""
    return [(key, dataset.get_run_info(key).config) for kind in ("flags", "audit")
            for key in runs.list_ood_runs(dataset, kind=kind)]
