"""Putting a dataset right after a killed process: :func:`repair_ood_runs`, every repair in one call."""

from .audit_recovery import remove_interrupted
from .commit import remove_stray_keys, repair
from .coordination import remove_stale_locks
from .links import repair as repair_links
from .maps import repair_maps
from .run_records import source_dataset
from .view_checks import require_collection


def repair_ood_runs(samples):
    """Finish or undo writes that a killed process left on the dataset; remove orphan temporary fields.

    Every write does this first on its dataset; call it yourself after a crash to clean up without writing anything.
    Returns counts of what was repaired; besides what every write repairs,
    temporary keys left in sample documents that the schema does not declare (``stray_keys_removed``: FiftyOne
    cannot iterate such samples), lock documents of dead writers (``stale_locks_removed``) and the runs of audits
    killed or failed before they were recorded, with their fields, flags runs and tags
    (``interrupted_audit_runs_removed``: run keys), and maps a killed ``compute_ood_visualization`` left under
    temporary keys (``maps``: restored and removed keys), and links naming keys FiftyOne's own ``rename_run``
    changed, written as the runs' new keys (``links_repaired``: ``(run, link, old key, new key)``, :mod:`.links`).
    A patches, frames or clips view repairs the dataset it was generated from (its runs and fields are there).
    """
    require_collection(samples)
    samples = dataset = source_dataset(samples)  # (of a patches view: the dataset it shows)
    done = repair(dataset)
    done["stray_keys_removed"] = remove_stray_keys(dataset)
    done["stale_locks_removed"] = remove_stale_locks(dataset)
    done["links_repaired"] = repair_links(dataset)  # links naming keys FiftyOne's rename_run changed
    done["interrupted_audit_runs_removed"] = remove_interrupted(samples)
    done["maps"] = repair_maps(samples)
    return done
