"""Operator: one-call dataset audit (OOD, wrong labels, near duplicates, flags, HTML report)."""

import fiftyone.operators.types as types

from ood_core.detectors.transductive import decision_sentence
from ood_core.fo import form_cache

from . import base as common
from . import markdown
from .field_inputs import add_hidden_labels_warning


class AuditDataset(common.OODOperator):
    name = "audit_dataset"
    label = "OOD: audit dataset"
    # the App's operator browser orders matches by the first character of the description: "A" puts the audit
    # first among this plugin's operators (tests/test_form_ux.py)
    description = ("Audit in one click: embeddings if missing, OOD and wrong-label scores, near duplicates, flags, "
                   "tags, saved views and a self-contained HTML report")
    icon = "fact_check"
    positional_params = ()

    def resolve_input(self, ctx):
        from ood_core.fo import inventory

        inputs = types.Object()
        target = common.target_view(ctx)
        if common.add_target_input(inputs, ctx, "Audit"):  # the size ood.audit refuses below
            common.add_target_size_check(inputs, target, minimum=2, needs="the audit needs at least 2 samples (wrong "
                                         "labels and near duplicates compare samples with each other)")
        dataset = ctx.dataset
        classification = inventory.classification_fields(dataset)
        prop = common.add_field_choice(inputs, "label_field", classification, label="Label field (optional)",
                                       description="Its labels are checked for wrong ones; empty = no wrong-label "
                                                   "scores", required=False,
                                       default=inventory.default_label_field(dataset))
        label_field = common.check_label_field(prop, target, ctx.params.get(
            "label_field", inventory.default_label_field(dataset)), classification, kinds=("classification",),
            needs="the audit's wrong-label check")
        tag_counts = form_cache.tag_counts(dataset)
        tags = sorted(tag_counts)
        default_tag = inventory.default_reference_tag(dataset, tag_counts)
        ref_prop = common.add_field_choice(inputs, "reference_tag", tags, label="Trusted samples tag (optional)",
                                           description="Reference of in-distribution samples; empty = unsupervised "
                                                       "OOD scores", required=False, default=default_tag)
        _check_reference_input(ref_prop, ctx.params.get("reference_tag", default_tag), tags)
        common.add_uncovered_classes_warning(inputs, target, ctx.params.get("reference_tag", default_tag), label_field)
        add_hidden_labels_warning(inputs, target, label_field)  # the App's sidebar filter: read as unlabelled
        choices = inventory.embedding_choices(dataset)
        sample_level = [f for f, _ in choices if inventory.embeddings_patches_field(dataset, f) is None]
        if sample_level or ctx.params.get("embeddings_field"):  # a value not offered is refused on its input
            common.add_embeddings_choice(inputs, ctx, target, required=False, sample_level=True,
                                         description="Existing image embeddings to reuse (newest preselected); "
                                                     "object embeddings are scored by 'OOD: score samples'")
        if not sample_level:
            objects = " of images (the audit scores images: object embeddings are not used)" if choices else ""
            inputs.view("embeddings_note", types.Notice(
                label=f"No embeddings yet{objects}: they are computed first for the {len(target):,} target samples "
                      "(default backbone; about a minute per 3,000 small images on 2 CPU cores). "
                      "Tick 'Delegate execution?' for large datasets."))
            common.bool_input(inputs, ctx, "skip_failures", default=common.sdk_default("audit", "skip_failures"),
                              label="Skip unreadable images",
                              description="Missing or corrupt image files get no score and are listed in the report, "
                                          "instead of stopping the audit")
        common.bool_input(inputs, ctx, "near_duplicates", default=common.sdk_default("audit", "near_duplicates"),
                          label="Find near duplicates",
                          description="FiftyOne Brain near-duplicate search on the embeddings")
        key = inputs.str("audit_key", default=common.sdk_default("audit", "audit_key"), required=False,
                         label="Audit key", description="Run key of the audit; also names the saved views")
        audit_key = ctx.params.get("audit_key") or common.sdk_default("audit", "audit_key")
        try:  # the SDK's own checks of the key, of the score and flag fields it names, and of what it replaces
            _check_outputs(inputs, ctx, target, audit_key)
        except ValueError as e:
            key.invalid = True
            key.error_message = str(e)
        path = inputs.str("report_path", default=_default_report(ctx, audit_key), required=False,
                          label="HTML report file", description="Self-contained HTML; the CSV of flagged samples "
                                                                "is written beside it")
        owner = (target, audit_key, bool(ctx.params.get("overwrite")))  # another audit's report / export is refused
        error = _report_path_error(ctx.params.get("report_path") or _default_report(ctx, audit_key), owner)
        if error:
            path.invalid = True
            path.error_message = error
        export = inputs.str("export_dir", default="", required=False, label="Export flagged samples to (optional)",
                            description="A folder: the flagged samples (media + labels) as a FiftyOne dataset")
        if ctx.params.get("export_dir"):
            error = _export_dir_error(ctx.params["export_dir"],
                                      ctx.params.get("report_path") or _default_report(ctx, audit_key), owner)
            if error:
                export.invalid = True
                export.error_message = error
        common.add_overwrite_input(inputs, ctx)
        common.add_delegation_input(inputs, ctx)
        return types.Property(inputs, view=types.View(label=self.label))

    def run(self, ctx):
        import ood_core as ood
        from ood_core.fo.report_files import report_file_path
        from ood_core.paths import check_allowed_path

        p = ctx.params
        audit_key = p.get("audit_key") or common.sdk_default("audit", "audit_key")
        report_path = p.get("report_path") or _default_report(ctx, audit_key)
        report_file_path(report_path)  # a file path: "reports/" names a folder (the real path drops the "/")
        report_path = check_allowed_path(report_path, "report_path")
        export_dir = check_allowed_path(p["export_dir"], "export_dir") if p.get("export_dir") else None
        summary = ood.audit(
            common.target_view(ctx),
            # absent (a Python call that leaves them out) = "auto", as the SDK and the form's preselection;
            # present but empty = none
            label_field=(p["label_field"] or None) if "label_field" in p else "auto",
            reference=(p["reference_tag"] or None) if "reference_tag" in p else "auto",
            embeddings_field=p.get("embeddings_field") or "auto",
            audit_key=audit_key,
            near_duplicates=common.flag_param(p, "near_duplicates", common.sdk_default("audit", "near_duplicates")),
            skip_failures=common.flag_param(p, "skip_failures", common.sdk_default("audit", "skip_failures")),
            report_path=report_path,
            export_dir=export_dir,
            overwrite=common.flag_param(p, "overwrite", False),
            progress=common.progress_callback(ctx),
        )
        warnings = summary.get("warnings", [])
        hints = self.form_hints(ctx, warnings)
        summary["warnings"] = self.with_form_hints(ctx, warnings, hints)
        summary["report_url"] = report_link(summary["report_path"])
        # the result view: the SDK's warnings escaped (they name labels and tags), the form's hints as markdown
        shown = [markdown.Markdown(f"{markdown.escape(m.rstrip('.'))}. {hint}" if hint else markdown.escape(m))
                 for m, hint in zip(warnings, hints)]
        return common.finish(ctx, summary, report=audit_report(dict(summary, warnings=shown)))

    def resolve_output(self, ctx):
        """The result view, and a button that opens the HTML report in the browser (from the App server)."""
        prop = super().resolve_output(ctx)
        url = ctx.results.get("report_url")
        if url:
            # a new tab (MUI's button renders a link and takes its target): the App keeps its place and this result
            prop.type.view("open_report", types.Button(label="Open the HTML report", href=url,
                                                       componentsProps={"button": {"target": "_blank",
                                                                                   "rel": "noopener"}}))
        return prop

    def to_form_params(self, *, reference="auto", **params):
        """``op(view, label_field="ground_truth", reference_tag="trusted", report_path=..., ...)``; ``reference``
        as in :func:`ood_core.audit` ("auto", a tag, or None for none)."""
        if reference is None:
            params["reference_tag"] = None  # present but empty = no reference
        elif reference != "auto":
            params["reference_tag"] = reference
        return params


def audit_report(summary):
    """The result view of an audit: counts, where the report is (``~/...`` inside the home folder), what to open
    in the App. The names in it (audit key, fields, runs, saved views, paths) are code spans and the warnings plain
    text (:mod:`operators.markdown`), unless they are :class:`~operators.markdown.Markdown` already."""
    from ood_core.paths import home_relative

    code = markdown.code
    facts = [("samples audited", f"{summary['num_samples']:,}"),
             ("embeddings", code(summary["embeddings_field"])
              + (" (computed now)" if summary["embeddings_computed"] else " (existing)")),
             ("flagged out-of-distribution (tag `ood`)", f"{summary['num_ood_flagged']:,}"),
             ("flagged wrong labels (tag `label_issue`)",
              f"{summary['num_label_flagged']:,}" if summary["label_field"] else "not checked: no label field"),
             ("near duplicates (tag `near_duplicate`)",
              f"{summary['num_duplicates']:,}" if summary["duplicate_threshold"] is not None else None),
             ("skipped (no embedding)", f"{summary['num_skipped']:,}" if summary["num_skipped"] else None),
             ("OOD scores", decision_sentence(summary.get("density_ratio"))),
             *(("warning", w) for w in summary.get("warnings", [])),
             ("HTML report", code(home_relative(summary["report_path"]))),
             ("flagged samples (CSV)", code(home_relative(summary["csv_path"]))),
             ("flagged samples exported (FiftyOne dataset)",
              code(home_relative(summary["export_dir"])) if summary.get("export_dir") else None),
             ("runs written", ", ".join(code(key) for key in summary["runs"].values())),
             ("fields written", ", ".join(code(field) for field in summary.get("fields", []))),
             ("removed from the earlier audit (not written this time)",
              ", ".join(code(key) for key in summary.get("removed_runs") or []) or None)]
    scores = " or ".join(code(summary["runs"][task]) for task in ("ood", "label_issues") if task in summary["runs"])
    views = summary["saved_views"]
    steps = [f"sort the grid by {scores} (**Sort by**, highest first = most suspicious)",
             f"saved views: {', '.join(code(v) for v in views)} (saved views menu above the grid)" if views else
             "saved views: none (nothing was flagged, so there is nothing to review in one)",
             "review and tag: the **OOD review** panel (+ next to the Samples tab)",
             "open the HTML report (thumbnails of the worst samples, score plots): the button below opens it in "
             "a new tab"]
    return common.report(f"Audit {code(summary['audit_key'])} done", facts, steps)


def report_link(path):
    """The App server's own URL of a file on its disk (its ``/media`` route, which serves the grid's images): the
    report opens from the App's browser tab, also when the browser runs on another machine than the server."""
    from urllib.parse import quote

    return "/media?filepath=" + quote(path, safe="")


def _check_outputs(inputs, ctx, target, audit_key):
    """The SDK's checks of the audit's outputs (raise ValueError); with *overwrite* ticked, a notice naming the
    earlier audit's runs that redoing it removes (those this audit does not write)."""
    from ood_core.fo import inventory
    from ood_core.fo.audit import audit_fields, check_outputs, replaced_runs

    overwrite = bool(ctx.params.get("overwrite"))
    problem = form_cache.refusal(target, check_outputs, audit_key, overwrite)
    if problem:
        raise ValueError(problem)
    if not overwrite:
        return
    ood_field, label_issue_field = audit_fields(audit_key)
    label_field = ctx.params.get("label_field", inventory.default_label_field(ctx.dataset))
    removed = replaced_runs(target, audit_key, ood_field, label_issue_field if label_field else None)
    if removed:
        inputs.view("replaced_note", types.Notice(
            label=f"Redoing audit '{audit_key}' removes the runs of the earlier one that this audit does not write, "
                  f"with their fields and the tags they added: {', '.join(removed)}"))


def _check_reference_input(prop, tag, tags):
    """Mark the trusted tag invalid when no sample carries it any more, or when the audit gives it itself."""
    from ood_core.errors import OODInputError
    from ood_core.fo.audit_inputs import check_reference_tag

    if not tag:
        return
    if tag not in tags:
        common.invalidate(prop, f"no sample is tagged {tag!r} (removed since the form opened?): pick a tag in the "
                                "list, or leave it empty for unsupervised OOD scores")
        return
    try:
        check_reference_tag(tag)
    except OODInputError as e:
        common.invalidate(prop, str(e))


def _default_report(ctx, audit_key):
    from ood_core.fo.audit import default_report_path
    from ood_core.paths import home_relative

    # "~/fiftyone/...": a scheduled run writes into the home of the worker that runs it, as the SDK would
    return home_relative(default_report_path(ctx.dataset, audit_key))


def _report_path_error(path, owner):
    """Why the report file cannot be written (not a file path, outside the allowed folders, a file of the user's,
    or, without overwrite, the report of another audit; ``owner``: the ``(view, audit key, overwrite)`` of the
    audit), or None."""
    from ood_core.errors import OODInputError
    from ood_core.fo.audit_report import refuse_other_audits_report
    from ood_core.fo.report_files import check_report_files, report_file_path
    from ood_core.paths import check_allowed_path

    try:
        report_file_path(path)
        path = check_allowed_path(path, "report_path")
        check_report_files(path)
        view, audit_key, overwrite = owner
        refuse_other_audits_report(view, audit_key, path, overwrite)
    except OODInputError as e:
        return str(e)
    return None


def _export_dir_error(path, report_path, owner):
    """Why the export folder cannot be used (outside the allowed folders, holding the user's files, the report
    ``report_path`` and its CSV, or, without overwrite, another audit's export), or None."""
    from ood_core.errors import OODInputError
    from ood_core.fo.audit_export import check_export_dir, refuse_export_over_report, refuse_other_audits_export
    from ood_core.paths import check_allowed_path

    try:
        refuse_export_over_report(path, report_path)
        path = check_allowed_path(path, "export_dir")
        check_export_dir(path)
        view, audit_key, overwrite = owner
        refuse_other_audits_export(view, audit_key, path, overwrite)
    except OODInputError as e:
        return str(e)
    return None
