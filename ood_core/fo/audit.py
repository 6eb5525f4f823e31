"""One-call dataset audit: OOD images, wrong labels, near duplicates, flags and an HTML report.

``ood.audit(dataset_or_view)`` picks sensible inputs, runs the package's scorers
and FiftyOne Brain's near-duplicate search, stores fields, flags and tags, saves
App views of what it found and writes one self-contained HTML report (plots,
counts, thumbnails of the worst samples, how to review them in the App) plus a
CSV of the flagged samples. It is recorded as a run of kind ``"audit"`` whose
config lists the runs it made, so ``ood.get_ood_run_info(ds, "ood_audit")``
says where everything is.

Inputs picked when left to ``"auto"`` (:mod:`ood_core.fo.inventory`):

- embeddings: the newest sample-level embeddings run or vector field, else
  computed now with ``compute_pyramid_embeddings`` (default backbone);
- the reference: samples tagged ``trusted``, if any (else the default OOD
  detector scores the audited samples against each other, each left out);
- the label field: the only ``Classification`` field, else ``ground_truth``
  (no label field: no wrong-label scores).

Score convention: **higher = more suspicious**; an item is flagged when
``score >= threshold``.
"""

import logging
import math
import os
import time
import uuid

from ..errors import OODInputError
from ..progress import Progress, check_progress, inner_progress
from . import audit_recovery, inventory, runs
from . import near_duplicates as duplicate_search
from .audit_embeddings import compute_audit_embeddings
from .audit_export import export_findings, refuse_missing_media
from .audit_inputs import check_options, persistence_warnings, plan_inputs
from .audit_report import TAGS, csv_table, refuse_other_audits_report, write_report
from .report_files import check_report_files, csv_path_for, report_file_path
from .items import num_samples
from .view_overwrite import refuse_other_settings_from_a_view, refuse_scored_set_dependence
from .audit_views import VIEW_MARKS, own_views, planned_view_mark, refuse_users_views, saved_view_mark

logger = logging.getLogger(__name__)

#: samples without a score listed by name in the summary and the report (the count covers all of them)
MAX_SKIPPED_LISTED = 100
#: the longest name (in UTF-8 bytes) of a default report before ".html": the longest that fits the 255 bytes of
#: common file systems as its CSV ("_flagged.csv") renamed aside while a redo publishes (".old-" + 12 hex), so
#: every default path that could be written keeps its name
MAX_DEFAULT_STEM_BYTES = 255 - len("_flagged.csv") - len(".old-") - 12
#: the audit key when none is given (its score fields are audit_ood / audit_label_issue)
DEFAULT_AUDIT_KEY = "ood_audit"
#: finding -> (suffix of its saved view's name after ``{audit_key}-``, the view's description)
VIEWS = {"ood": ("ood", "flagged as out-of-distribution, highest score first"),
         "label_issues": ("label-issues", "flagged as possibly mislabelled, highest score first"),
         "near_duplicates": ("near-duplicates", "near-duplicate groups, by filepath")}


def view_names(audit_key):
    """The names of the saved views an audit under ``audit_key`` may save."""
    return [f"{audit_key}-{suffix}" for suffix, _ in VIEWS.values()]


def _summary(samples, audit_key, plan, embeddings, found, duplicates, duplicate_threshold):
    """The audit's counts and resolved inputs (the run's results and the operator's result view)."""
    reference = plan["reference"]
    return {
        "audit_key": audit_key,
        "dataset": samples._dataset.name,
        "num_samples": num_samples(samples),
        "embeddings_field": embeddings,
        "embeddings_computed": plan["embeddings_field"] is None,
        "reference_tag": reference if isinstance(reference, str) else None,
        "reference": None if reference is None else (f"tag '{reference}'" if isinstance(reference, str) else "a view"),
        "label_field": plan["label_field"],
        "density_ratio": found.get("density_ratio"),
        "runs": found["runs"],
        "thresholds": found["thresholds"],
        "rules": found["rules"],
        "num_ood_flagged": len(found["flagged"].get("ood", ())),
        "num_label_flagged": len(found["flagged"].get("label_issues", ())),
        "num_duplicates": len(duplicates.get("duplicate_ids", ())),
        "duplicate_threshold": duplicate_threshold or None,
        "num_skipped": found.get("num_skipped", 0),
        "warnings": found.get("warnings", []),
    }


def default_report_path(samples, audit_key):
    """``~/fiftyone/ood_reports/<dataset>_<audit_key>.html`` (inside the App's allowed folders); a name longer than
    :data:`MAX_DEFAULT_STEM_BYTES` (FiftyOne takes dataset names of 1551 characters, a file system names of 255
    bytes) is cut there and ends with a hash of the whole, so it stays one name per dataset and key."""
    import hashlib

    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in samples._dataset.name)
    stem = f"{safe}_{audit_key}"
    if len(stem.encode("utf-8")) > MAX_DEFAULT_STEM_BYTES:
        digest = hashlib.sha256(stem.encode("utf-8")).hexdigest()[:12]
        cut = stem.encode("utf-8")[:MAX_DEFAULT_STEM_BYTES - len(digest) - 1].decode("utf-8", "ignore")
        stem = f"{cut}_{digest}"
    return os.path.join(os.path.expanduser("~"), "fiftyone", "ood_reports", f"{stem}.html")


def audit(
    samples,
    *,
    label_field="auto",
    reference="auto",
    embeddings_field="auto",
    audit_key=DEFAULT_AUDIT_KEY,
    ood_field=None,
    label_issue_field=None,
    ood_pass_rate=0.95,
    ood_fraction=0.05,
    label_issue_fraction=0.05,
    near_duplicates=True,
    duplicate_threshold=0.02,
    model_name="auto",
    skip_failures=True,
    report_path=None,
    export_dir=None,
    num_worst=24,
    overwrite=False,
    progress=None,
):
    """Audit a dataset or view in one call; returns a summary dict (also stored as the ``audit`` run).

    Args:
        samples: a Dataset or view: everything is scored and flagged on it.
        label_field: a Classification field, ``"auto"`` (the only one that holds a label in the view, else
            ``ground_truth``; none when it holds no label in the view) or None (no wrong-label scores).
        reference: tag (or view) of trusted in-distribution samples, ``"auto"``
            (``trusted`` when present) or None (unsupervised OOD scores).
        embeddings_field: embeddings run / vector field, or ``"auto"`` (newest, else computed for the view and the
            reference samples outside it).
        audit_key: key of the audit run; also names the saved views.
        ood_field, label_issue_field: score fields (and run keys) written; None = ``audit_ood`` /
            ``audit_label_issue`` for the default audit key, ``<audit_key>_ood`` / ``<audit_key>_label_issue``
            for another, so audits under different keys never write into each other's fields.
        ood_pass_rate: with a reference, the share of trusted samples that pass (percentile rule).
        ood_fraction: without a reference, the top fraction of OOD scores flagged.
        label_issue_fraction: top fraction of wrong-label scores flagged (ties flagged, except a tie
            at the lowest score: a one-class label field flags nothing).
        near_duplicates, duplicate_threshold: find near duplicates with FiftyOne Brain on the
            embeddings (cosine distance under the threshold).
        model_name: backbone when embeddings must be computed.
        skip_failures: when embeddings are computed, an unreadable image (missing, truncated, not an image)
            gets no embedding and no score and is listed in the summary (``skipped``) and the report,
            instead of stopping the audit (as FiftyOne's own ``compute_embeddings``); False raises on the
            first one.
        report_path: the HTML report (default :func:`default_report_path`), the CSV of flagged samples beside it;
            each replaces only a file exactly as an audit wrote it (:func:`.audit_report.check_report_files`), the
            report another audit's record names (another key or dataset) only with ``overwrite`` (then no longer its).
        export_dir: also export the flagged samples (media + labels) as a FiftyOne dataset into this folder: a new
            or empty one, or one an earlier export went to (replaced once complete; another audit's only with
            ``overwrite``, then no longer its); a folder holding other files or folders, or the report, is refused
            (FiftyOne's export would delete them). When nothing is flagged the export holds no sample.
        num_worst: thumbnails per gallery in the report.
        overwrite: replace an earlier audit of the same key, whole: its runs this audit does not write
            (:func:`replaced_runs`: label-issue runs, when this one has no label field) go with their fields,
            flags runs and tags in the commit of the new record (refused from a view); so do its saved views (those
            still as it saved them: :func:`.audit_views.own_views`) and near-duplicate tags this one does not
            make again. Embeddings it computed stay (an input).
        progress: None / True (a bar of the audit's 5 steps, with the embedding and scoring bars under it), False
            (silent) or ``f(done, total)`` called after each of the steps.

    OOD scores use the default detector (``pyramid_knn``, its k sized from the trusted classes); the wrong-label
    votes (``weighted_label_vote``) use their k cap, at most a quarter of the labelled samples. The k used is in
    each run's record.

    Returns:
        a dict: ``audit_key``, the resolved inputs, ``runs`` (the score and flags run keys it wrote, by role:
        ``ood``, ``ood_flags``, ``label_issues``, ``label_issue_flags``), ``fields`` (every field those runs
        wrote: scores, p-values, suggested labels, flags), ``removed_runs`` / ``removed_fields`` (what an
        earlier audit of this key wrote and this one does not, removed: see ``overwrite``), counts
        (``num_samples``, ``num_ood_flagged``, ``num_label_flagged``, ``num_duplicates``, ``num_skipped``),
        ``warnings`` (sentences: e.g. too few trusted samples for a steady threshold, another audit's report
        replaced), ``skipped`` (the first :data:`MAX_SKIPPED_LISTED` samples without a score: ``id``, ``filepath``
        and, for images that failed to load now, ``error``), ``report_path``, ``csv_path``, ``saved_views`` (the
        names saved: none for a finding without samples), ``seconds``.
    """
    start = time.perf_counter()
    if report_path is None or (isinstance(report_path, str) and not report_path):  # "": the default, as before
        report_path = default_report_path(samples, audit_key)
    report_path = report_file_path(report_path)
    ood_field, label_issue_field = audit_fields(audit_key, ood_field, label_issue_field)
    check_options(ood_pass_rate=ood_pass_rate, ood_fraction=ood_fraction, label_issue_fraction=label_issue_fraction,
                  duplicate_threshold=duplicate_threshold, num_worst=num_worst, near_duplicates=near_duplicates,
                  skip_failures=skip_failures, overwrite=overwrite)
    check_progress(progress)
    _check_call(samples, audit_key, overwrite, ood_field, label_issue_field, report_path, export_dir)
    plan = plan_inputs(samples, label_field, reference, embeddings_field)
    replaced = replaced_runs(samples, audit_key, ood_field, label_issue_field if plan["label_field"] else None)
    _refuse_other_scales_from_a_view(samples, overwrite, plan, ood_field, label_issue_field)
    options = dict(ood_field=ood_field, label_issue_field=label_issue_field, ood_pass_rate=ood_pass_rate,
                   ood_fraction=ood_fraction, label_issue_fraction=label_issue_fraction,
                   near_duplicates=near_duplicates, duplicate_threshold=duplicate_threshold, model_name=model_name,
                   skip_failures=skip_failures, report_path=report_path, export_dir=export_dir, num_worst=num_worst,
                   overwrite=overwrite)
    # its runs name it: an interruption is recognised later
    with audit_recovery.running(samples, audit_key), Progress(progress, 5, "audit", unit="step") as steps:
        return _run(samples, audit_key, plan, replaced, start, steps, inner_progress(progress), **options)


def _run(samples, audit_key, plan, replaced, start, steps, inner, *, ood_field, label_issue_field, ood_pass_rate,
         ood_fraction, label_issue_fraction, near_duplicates, duplicate_threshold, model_name, skip_failures,
         report_path, export_dir, num_worst, overwrite):
    """The audit's steps after every check: embed, score and flag, near duplicates, outputs, record (``steps``: a
    :class:`~ood_core.progress.Progress` of 5 steps; ``inner``: what the calls made here report to)."""
    failures = {}
    embeddings = plan["embeddings_field"] or compute_audit_embeddings(samples, plan["reference"], model_name,
                                                                      skip_failures, failures, inner)
    if export_dir:  # any sample with an embedding can be flagged and exported: its file is needed before any write
        refuse_missing_media(samples.exists(embeddings), export_dir,
                             f"samples with an embedding in {embeddings!r} (any of them can be flagged)",
                             "then audit again")
    steps.update(1)
    found = {"runs": {}, "thresholds": {}, "flagged": {}, "rules": {}, "warnings": persistence_warnings(samples)}
    _score_ood(samples, embeddings, ood_field, plan["reference"], plan["label_field"], ood_pass_rate, ood_fraction,
               overwrite, found, inner)
    steps.update(1)
    if plan["label_field"]:
        _score_labels(samples, embeddings, plan["label_field"], label_issue_field, label_issue_fraction,
                      overwrite, found, inner)
    steps.update(1)
    duplicates = duplicate_search.find(samples, embeddings, duplicate_threshold, audit_key) if near_duplicates else {}
    steps.update(1)
    summary = _summary(samples, audit_key, plan, embeddings, found, duplicates, near_duplicates and duplicate_threshold)
    summary["output_token"] = uuid.uuid4().hex  # in the report, the export and the record: which audit wrote them
    views = _views(samples, audit_key, found, duplicates)
    table = _outputs(samples, summary, found, duplicates, failures, report_path, export_dir, list(views))
    summary["removed_runs"] = replaced
    summary["seconds"] = round(time.perf_counter() - start, 2)
    write_report(samples, summary, found, duplicates, num_worst, report_path, table, overwrite=overwrite)
    _record(samples, audit_key, summary, duplicates, overwrite, replaced, views)
    steps.update(1)
    return summary


def _outputs(samples, summary, found, duplicates, failures, report_path, export_dir, saved_views):
    """The saved views' names, the export, the fields written and the samples not scored, into ``summary``;
    returns the CSV's text (written with the report: :func:`.audit_report.publish_report`)."""
    summary["fields"] = [path for key in found["runs"].values()
                         for path in runs.get_ood_run_info(samples, key)["fields"]]
    summary["skipped"] = _skipped(samples, found["runs"]["ood"], failures, summary["embeddings_field"])
    table, num_rows = csv_table(samples, found, summary["label_field"], duplicates)
    summary.update(
        saved_views=saved_views,
        report_path=report_path,
        csv_path=csv_path_for(report_path),
        num_csv_rows=num_rows,
        export_dir=export_findings(samples, found, export_dir, summary) if export_dir else None,
    )
    return table


# --------------------------------------------------------------------------- steps


def audit_fields(audit_key, ood_field=None, label_issue_field=None):
    """The score fields of an audit: as given, else derived from its key (see :func:`audit`)."""
    prefix = "audit" if audit_key == DEFAULT_AUDIT_KEY else audit_key
    return ood_field or f"{prefix}_ood", label_issue_field or f"{prefix}_label_issue"


def check_outputs(samples, audit_key, overwrite, ood_field=None, label_issue_field=None):
    """Refuse an audit key or score / flag field names the audit cannot write (also used by the App's form)."""
    runs.validate_key(audit_key, "audit key")
    ood_field, label_issue_field = audit_fields(audit_key, ood_field, label_issue_field)
    if audit_key in runs.list_ood_runs(samples, kind="audit") and not overwrite:
        raise OODInputError(f"an audit {audit_key!r} already exists on dataset {samples._dataset.name!r}; pass "
                            "overwrite=True to redo it, or another audit_key")
    audit_recovery.refuse_interrupted(samples, audit_key, overwrite)
    names = {"audit_key": audit_key, "ood_field": ood_field, "label_issue_field": label_issue_field}
    if len(set(names.values())) < len(names):
        raise OODInputError(f"the audit's run key and score fields must all differ (each names a run); got {names}. "
                            "Give them different names")
    runs.check_new_run(samples, audit_key, [], overwrite, kind="audit")
    refuse_users_views(samples, audit_key, view_names(audit_key))
    # every field the steps write: the scores with what the scoring writes beside them (ood_core.fo.scores'
    # _extra_outputs: an OOD run's p-values, a label-issue run's suggested labels), and flag_samples' flags
    for field, kind, companion in ((ood_field, "ood_scores", "pvalue"), (label_issue_field, "label_issues",
                                                                         "suggestion")):
        runs.check_new_run(samples, field, [field, f"{field}_{companion}"], overwrite, kind=kind)
        runs.check_new_run(samples, f"{field}_flag", [f"{field}_flag"], overwrite, kind="flags")


#: the roles of an audit's runs (the keys of its ``runs``) -> the kind of run each one is
_ROLE_KINDS = {"ood": "ood_scores", "ood_flags": "flags", "label_issues": "label_issues",
               "label_issue_flags": "flags"}


def replaced_runs(samples, audit_key, ood_field, label_issue_field=None):
    """The runs of an earlier audit under ``audit_key`` that an audit writing ``ood_field`` (and
    ``label_issue_field``; None = no label field) does not write, with the flags runs made from them.

    Redoing the audit removes them (:func:`_record`, in the commit of the new audit record). Runs another audit
    lists, and runs whose key now holds a run of another kind, are not the earlier audit's and stay. Refused from a
    view: their fields hold the values of the samples outside it too.
    """
    from .flags import list_flag_runs
    from .items import is_whole_dataset
    from .links import audit_runs_of

    dataset = samples._dataset
    audits = runs.list_ood_runs(samples, kind="audit")
    if audit_key not in audits:
        return []

    def listed(key):  # resolved: a run renamed with FiftyOne's own rename_run is still the audit's
        return audit_runs_of(dataset, key)

    planned = {ood_field, f"{ood_field}_flag"} | ({label_issue_field, f"{label_issue_field}_flag"}
                                                  if label_issue_field else set())
    others = {key for other in audits if other != audit_key for key in listed(other).values()}
    existing = set(runs.list_ood_runs(samples))
    stale = [key for role, key in listed(audit_key).items()
             if key not in planned | others and key in existing
             and getattr(dataset.get_run_info(key).config, "kind", None) == _ROLE_KINDS.get(role)]
    dependants = [flag for key in stale for flag in list_flag_runs(samples, key) if flag not in stale]
    if stale and not is_whole_dataset(samples):
        also = f" and the flags runs {dependants} made from them" if dependants else ""
        raise OODInputError(
            f"audit {audit_key!r} on dataset {dataset.name!r} also made the runs {stale}, which this audit does not "
            f"write (it writes {sorted(planned)}); redoing it would remove them{also}, and from a view that would "
            "delete their fields for the samples outside the view as well. Redo the audit on the whole dataset, "
            "pass the earlier audit's label_field and score fields, or use another audit_key")
    return stale + dependants


def _check_call(samples, audit_key, overwrite, ood_field, label_issue_field, report_path, export_dir):
    """Before anything is written: refuse a view too small to audit, bad or clashing keys and fields, an
    existing audit without ``overwrite``, a report path that cannot be written, or an export folder holding
    files of the user's (:func:`.audit_export.check_export_dir`)."""
    from .audit_export import check_export_dir, refuse_export_over_report, refuse_other_audits_export
    from .export_leftovers import recover_export_dir
    from .items import require_nonempty
    from .report_leftovers import recover_report

    if export_dir:
        refuse_export_over_report(export_dir, report_path)
        recover_export_dir(check_export_dir(export_dir))  # a killed export's leftovers, before the folder is judged
        check_export_dir(export_dir)
        refuse_other_audits_export(samples, audit_key, export_dir, overwrite)
    require_nonempty(samples)
    count = num_samples(samples)  # len(dataset) is an estimate, 0 after an unclean database shutdown
    if count < 2:
        raise OODInputError(f"ood.audit needs at least 2 samples (wrong labels and near duplicates compare samples "
                            f"with each other); the view has {count}: audit a larger view, or score a single "
                            "sample against trusted ones with compute_ood_scores(..., reference='trusted')")
    check_outputs(samples, audit_key, overwrite, ood_field, label_issue_field)
    recover_report(report_path)  # a killed report publish's leftovers, before the report path is judged
    check_report_files(report_path)  # its folder is checked here, made only when the report is written
    refuse_other_audits_report(samples, audit_key, report_path, overwrite)


def _refuse_other_scales_from_a_view(samples, overwrite, plan, ood_field, label_issue_field):
    """Redoing an audit from a view: refuse, before anything is written, replacing a score run computed from other
    embeddings or labels (the samples outside the view would keep scores on another scale); the score call
    itself would refuse it only after the audit's earlier steps had written their runs."""
    from .items import is_whole_dataset

    if not overwrite or is_whole_dataset(samples):
        return
    params = {"embeddings_field": plan["embeddings_field"] or "ood_embeddings", "label_field": plan["label_field"]}
    refuse_other_settings_from_a_view(samples._dataset, ood_field, params)
    # known before scoring: an unsupervised score run (no trusted samples), or an earlier one that was, and an
    # earlier wrong-label run; whether the new OOD run uses the scored set's density ratio is known only once it
    # is computed (refused then, before the audit writes anything but embeddings)
    refuse_scored_set_dependence(samples._dataset, ood_field, "ood_scores", {"reference": plan["reference"]})
    if plan["label_field"]:
        refuse_scored_set_dependence(samples._dataset, label_issue_field, "label_issues", {})


def _skipped(samples, ood_field, failures, embeddings):
    """The first :data:`MAX_SKIPPED_LISTED` samples of the view without an OOD score (no embedding), each with
    the error that kept it from one: this call's, else the one the embeddings run recorded (an audit that reuses
    the embeddings of an earlier one names the same reason and fix)."""
    failures = failures or _recorded_failures(samples, embeddings)
    view = samples.exists(ood_field, False).limit(MAX_SKIPPED_LISTED)
    return [dict(id=i, filepath=f, **({"error": failures[i]} if i in failures else {}))
            for i, f in zip(*view.values(["id", "filepath"]))]


def _recorded_failures(samples, embeddings):
    """``{sample id: error}`` the embeddings run ``embeddings`` recorded for the images it could not read ({} for a
    field of the user's, or a run that recorded none)."""
    if embeddings not in runs.list_ood_runs(samples, kind="embeddings"):
        return {}
    recorded = getattr(runs.load_ood_results(samples, embeddings), "failures", None) or []
    return {f["id"]: f["error"] for f in recorded if isinstance(f, dict) and "id" in f and "error" in f}


def neighbours_for(method, num_items):
    """The detector's k, capped at a quarter of the items it is fitted on (small datasets).

    With k close to the number of reference items every distance becomes an
    average over (almost) all of them and the scores stop separating anything.
    A ``k="auto"`` default is read as its cap (``k_max``): the audit's quarter
    rule then decides on small data, as it always has.
    """
    from ..detectors import detector_class

    params = detector_class(method).default_params()
    default = params.get("k")
    if not isinstance(default, int):
        default = params.get("k_max", 50)
    return max(1, min(default, num_items // 4))


def _score_ood(samples, embeddings, ood_field, reference, label_field, pass_rate, fraction, overwrite, found,
               progress):
    from .evaluation import flag_samples
    from .class_coverage import uncovered_classes_sentence
    from .scores import compute_ood_scores

    # the default detector; the labels (when there are some) make its neighbour search per class
    scored = compute_ood_scores(samples, embeddings, ood_field, reference=reference, label_field=label_field,
                                overwrite=overwrite, progress=progress)
    found["num_skipped"] = scored["num_skipped"]
    found["density_ratio"] = scored.get("density_ratio")  # whether the scores depend on this batch (the report says)
    trusted = _scored_reference(samples, reference, ood_field)
    if trusted is not None:
        # the trusted samples' own (self-excluded) scores set the cut, also for a view that holds none of them
        flags = flag_samples(samples, ood_field, rule="percentile", value=pass_rate, reference=trusted,
                             tag=TAGS["ood"], overwrite=overwrite)
        found["rules"]["ood"] = f"{100 * pass_rate:g}% of the trusted samples pass (percentile rule)"
        n_trusted = len(trusted)
        if pass_rate < 1 and n_trusted < 1 / (1 - pass_rate):
            found["warnings"].append(
                f"only {n_trusted} trusted sample(s) have a score: letting {100 * pass_rate:g}% of them pass "
                "puts the OOD threshold at the highest of their scores, a coarse cut; " + inventory.how_to_add_trusted(
                    reference, f"at least {math.ceil(1 / (1 - pass_rate))} known-good samples (a few per class)")
                + " and re-run with overwrite=True")
    else:
        # no trusted sample: rank the view instead
        flags = flag_samples(samples, ood_field, rule="top_fraction", value=fraction, tag=TAGS["ood"],
                             overwrite=overwrite)
        found["rules"]["ood"] = f"top {100 * fraction:g}% of the scores (no trusted samples)"
    _note_flags(samples, found, "ood", ood_field, "ood_flags", flags)
    if scored.get("uncovered_classes"):
        found["warnings"].append(uncovered_classes_sentence(
            scored["uncovered_classes"], label_field,
            fix=inventory.how_to_add_trusted(reference, "a few known-good images of each")
            + " and re-run with overwrite=True"))


def _scored_reference(samples, reference, score_field):
    """The reference samples with a score (inside the audited view or not: the score run scores them too), or
    None."""
    if reference is None:
        return None
    view = (samples._dataset.match_tags(reference) if isinstance(reference, str) else reference).exists(score_field)
    return view if num_samples(view) else None


def _score_labels(samples, embeddings, label_field, issue_field, fraction, overwrite, found, progress):
    from .evaluation import flag_samples
    from .scores import compute_label_issues

    k = neighbours_for("weighted_label_vote", len(samples.exists(embeddings).exists(label_field)))
    compute_label_issues(samples, label_field, embeddings, issue_field, k=k, overwrite=overwrite, progress=progress)
    flags = flag_samples(samples, issue_field, rule="top_fraction", value=fraction, tag=TAGS["label_issues"],
                         overwrite=overwrite)
    found["rules"]["label_issues"] = f"top {100 * fraction:g}% of the scores (ties flagged, except at the lowest score)"
    _note_flags(samples, found, "label_issues", issue_field, "label_issue_flags", flags)


def _note_flags(samples, found, task, score_field, flags_name, flags):
    """Record a task's score run, flags run, threshold and flagged ids in the audit's findings."""
    found["runs"][task] = score_field
    found["runs"][flags_name] = flags["flag_key"]
    found["thresholds"][task] = flags["threshold"]
    found["flagged"][task] = _flagged_ids(samples, flags["flag_field"])


def _flagged_ids(samples, flag_field):
    from fiftyone import ViewField as F

    return samples.match(F(flag_field) == True).values("id")  # noqa: E712


def _views(samples, audit_key, found, duplicates):
    """``{name: view}``: the saved views for the App's "saved views" menu, one per finding that flagged samples,
    worst first (saved in the commit of the audit's record, :func:`_record`). A finding that flagged none gets no
    (empty) view; a redo deletes the earlier audit's view of it (:func:`_cleanup_after_record`)."""
    from fiftyone import ViewField as F

    views = {}
    for finding in ("ood", "label_issues"):
        if found["flagged"].get(finding):
            views[f"{audit_key}-{VIEWS[finding][0]}"] = samples.select(found["flagged"][finding]).sort_by(
                found["runs"][finding], reverse=True)
    if duplicates.get("neighbors"):
        ids = sorted(set(duplicates["neighbors"]) | {d for v in duplicates["neighbors"].values() for d, _ in v})
        views[f"{audit_key}-{VIEWS['near_duplicates'][0]}"] = samples.select(ids).sort_by(F("filepath"))
    return views


def _record(samples, audit_key, summary, duplicates, overwrite, replaced, views):
    """Record the audit run, removing the earlier audit's runs it ``replaced`` in the same commit, with the tags of
    their flags, the earlier audit's near-duplicate tags and saved views this one does not make again; then tag
    the near duplicates and save the ``views``.

    The tags and views change after the commit, but are decided before it and journaled with it
    (:mod:`.followups`): a process killed in between leaves them to the next call or ``ood.repair_ood_runs``,
    never untracked, and one killed before it leaves neither (its runs are then an interrupted audit's).

    The runs and fields the commit removes (``removed_runs`` / ``removed_fields`` of ``summary``) are decided under
    its locks, before the record is written: they go into ``summary`` there, so the recorded summary
    (``runs.load_ood_results(...).summary``) is the one returned.
    """
    from . import commit

    dataset = samples._dataset
    commit.repair(dataset)
    runs.refresh_stale_runs(dataset)
    config = {k: v for k, v in summary.items()
              if k not in ("dataset", "seconds", "num_samples", "runs", "fields", "skipped")}
    marks = {}  # the fingerprints of the saved views, decided by cleanup (called first, under the locks)

    def register():
        runs.register_run(samples, audit_key, kind="audit", fields=[], overwrite=True,
                          results={"summary": summary, "duplicate_ids": duplicates.get("duplicate_ids", []),
                                   "tagged_duplicate_ids": duplicates.get("tagged_ids", [])},
                          audit_runs=summary["runs"], audit_fields=summary["fields"],
                          **{VIEW_MARKS: dict(marks)}, **config)

    def cleanup(reloaded, fields, dropped):
        # what the commit removes is known here, before register(): the record's summary is the one returned
        summary.update(removed_runs=list(dropped), removed_fields=list(fields))
        return _cleanup_after_record(samples, audit_key, views, duplicates, dropped, marks)

    removed_fields, removed_runs = commit.commit(samples, [], audit_key, register, overwrite=overwrite,
                                                 drop_runs=replaced, cleanup=cleanup)
    summary.update(removed_runs=removed_runs, removed_fields=removed_fields)
    audit_recovery.mark_recorded(samples, audit_key)


def _cleanup_after_record(samples, audit_key, views, duplicates, dropped, marks):
    """The :mod:`.followups` of recording the audit (decided under the commit's locks, before anything moves): the
    tags of the dropped flags runs, the earlier audit's near-duplicate tags this one does not claim again, and its
    saved views this one does not save again (only those still as it saved them:
    :func:`.audit_views.own_views`); then this audit's near-duplicate tags and saved ``views``, whose
    fingerprints go into ``marks`` (for its record). A saved view of the user's under one of the names (saved
    since the audit's checks) is refused here, before anything moves."""
    from . import followups

    dataset = samples._dataset
    flags = [key for key in dropped if getattr(dataset.get_run_info(key).config, "kind", None) == "flags"]
    ops = followups.untag_flags(samples, flags)
    stale = (duplicate_search.claims(samples, audit_key) - set(duplicates.get("tagged_ids", []))
             - duplicate_search.claims_of_other_audits(samples, audit_key))
    if stale:
        ops.append(followups.untag(TAGS["near_duplicates"], None, stale))
    refuse_users_views(samples, audit_key, list(views))
    old_views = own_views(dataset, audit_key)
    ops += [followups.delete_saved_view(name, saved_view_mark(dataset, name))
            for name in sorted(old_views - set(views)) if name.startswith(f"{audit_key}-")]
    if duplicates.get("to_tag"):
        ops.append(followups.tag(TAGS["near_duplicates"], None, duplicates["to_tag"]))
    descriptions = {f"{audit_key}-{suffix}": text for suffix, text in VIEWS.values()}
    saves = [followups.save_view(name, view, f"fiftyone-ood audit {audit_key!r}: {descriptions[name]}",
                                 replaces=saved_view_mark(dataset, name))
             for name, view in views.items()]
    for op in saves:
        op["mark"] = marks[op["name"]] = planned_view_mark(dataset, op)
    return ops + saves
