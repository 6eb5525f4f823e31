"""fiftyone-ood: out-of-distribution images and wrong labels from pretrained networks.

Use it like FiftyOne Brain::

    import fiftyone as fo
    import ood_core as ood

    ds = fo.load_dataset("my-dataset")
    ood.compute_pyramid_embeddings(ds, "ood_embeddings")
    ood.compute_ood_scores(ds, "ood_embeddings", "ood_score", reference="trusted")
    ood.compute_label_issues(ds, "ground_truth", "ood_embeddings", "label_issue")

Score convention, everywhere in this package: **a higher score means more
out-of-distribution** (more suspicious: unlike the trusted reference data, or a
label that is probably wrong). Every metric states which class is positive.

The names below are the public API. They are imported lazily on first use, so
``import ood_core`` (and registering the FiftyOne plugin) stays fast and needs
neither torch nor fiftyone.

Layers (imports point downwards only):

- ``ood_core.fo``: the only package that imports fiftyone (reads views, writes
  fields, records runs);
- ``ood_core.clip``: the CLIP negative-label family (encoder, lexicon, text
  cache, NegLabel, RAP) on numpy/torch;
- everything else (``detectors``, ``features``, ``neighbors``, ``metrics``,
  ``thresholds``, ...): numpy/torch algorithms, usable without FiftyOne.
"""

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it (the one place the public API is listed)
_PUBLIC = {
    # embeddings, scores, maps
    "compute_pyramid_embeddings": "ood_core.fo.embeddings",
    "compute_ood_scores": "ood_core.fo.scores",
    "compute_label_issues": "ood_core.fo.scores",
    "compute_ood_visualization": "ood_core.fo.maps",
    "compute_knn_scores_with_index": "ood_core.fo.similarity",
    # CLIP negative labels
    "compute_clip_embeddings": "ood_core.fo.clip_embeddings",
    "compute_neglabel_scores": "ood_core.fo.neglabel",
    "compute_rap_scores": "ood_core.fo.rap",
    "compute_adaneg_scores": "ood_core.fo.adaneg",
    "explain_sample": "ood_core.fo.clip_explain",
    # evaluation and flags
    "evaluate_ood_run": "ood_core.fo.evaluation",
    "flag_samples": "ood_core.fo.evaluation",
    "delete_flags": "ood_core.fo.evaluation",
    "list_flag_runs": "ood_core.fo.evaluation",
    "get_flag_info": "ood_core.fo.evaluation",
    # one-call audit (scores, flags, near duplicates, HTML report)
    "audit": "ood_core.fo.audit",
    # runs
    "list_ood_runs": "ood_core.fo.run_records",
    "get_ood_run_info": "ood_core.fo.run_info",
    "load_ood_results": "ood_core.fo.run_info",
    "rename_ood_run": "ood_core.fo.run_admin",
    "delete_ood_run": "ood_core.fo.run_admin",
    "repair_ood_runs": "ood_core.fo.repair",
    # the paper's experiment workflows
    "pollution_sweep": "ood_core.fo.experiments",
    "config_sweep": "ood_core.fo.experiments",
    "auto_config": "ood_core.fo.experiments",
    "score_with_config": "ood_core.fo.experiments",
    "label_error_report": "ood_core.fo.label_report",
    # plots (plotly figures from arrays)
    "plot_roc_pr": "ood_core.plots",
    "plot_score_histogram": "ood_core.plots",
    "save_figure": "ood_core.plots",
    # numpy level, no FiftyOne
    "make_detector": "ood_core.detectors",
    "PyramidExtractor": "ood_core.features",
    "ood_metrics": "ood_core.metrics",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'ood_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
