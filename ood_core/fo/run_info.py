"""A run's record and results as users read them: the links between runs resolved (:mod:`.links`).

FiftyOne's own ``dataset.rename_run`` changes a run's key and nothing else; a flags run's ``score_run`` or an
audit's ``audit_runs`` may then name an old key. :func:`get_ood_run_info` and :func:`load_ood_results` answer
with the runs meant, and an audit's summary names only the outputs that are still its own.
"""

from .links import resolved_info, resolved_results
from .run_records import require_run


def get_ood_run_info(samples, run_key):
    """The run's config as a plain dict (method, parameters, fields, backbone...)."""
    require_run(samples, run_key)
    info = samples._dataset.get_run_info(run_key)
    cfg = info.config.serialize()
    cfg.pop("cls", None)
    cfg["run_key"] = run_key
    cfg["timestamp"] = str(info.timestamp)
    return resolved_info(samples._dataset, cfg)  # links as FiftyOne's rename_run left them: the runs meant


def load_ood_results(samples, run_key):
    """The run's stored results (a FiftyOne ``RunResults`` with JSON attributes); an audit's summary names only the
    outputs that are still its own (:func:`.links.resolved_results`)."""
    require_run(samples, run_key)
    return resolved_results(samples._dataset, run_key, samples._dataset.load_run_results(run_key, cache=False))
