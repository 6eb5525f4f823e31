"""Operator: score OOD-ness or label issues from stored embeddings."""

import fiftyone.operators.types as types

from . import base as common

REDUCTIONS = ("none", "pca", "umap", "random")


def _method_choices():
    """Dropdown of the registered detectors: readable name, one-line help."""
    from ood_core.detectors import detector_class, detector_names

    dropdown = types.DropdownView()
    for name in detector_names():
        cls = detector_class(name)
        task = "OOD" if cls.task == "ood" else "wrong labels"
        dropdown.add_choice(name, label=f"{cls.label} ({task})", description=cls.summary)
    return dropdown


class ScoreOOD(common.OODOperator):
    name = "score_ood"
    label = "OOD: score samples"
    description = ("k-NN / Mahalanobis / LOF OOD scores or per-class label-issue scores (higher = more suspicious)")
    icon = "troubleshoot"
    positional_params = ("embeddings_field", "score_field")

    def resolve_input(self, ctx):
        from ood_core.detectors import detector_class, make_detector, requires_labels
        from ood_core.fo import inventory

        inputs = types.Object()
        target = common.target_view(ctx)
        common.add_target_input(inputs, ctx, "Score")
        dataset = ctx.dataset
        if not inventory.embedding_choices(dataset):
            warning = inputs.view("no_embeddings", types.Warning(
                label="No embeddings yet",
                description="Run 'OOD: compute pyramid embeddings' first (or 'OOD: audit dataset', which does both)"))
            warning.invalid = True
            warning.error_message = "no embeddings run or vector field on this dataset"
            return types.Property(inputs)
        embeddings = common.add_embeddings_choice(inputs, ctx, target)
        methods = _method_choices()
        default_method = common.sdk_default("compute_ood_scores", "method")
        inputs.enum("method", methods.values(), default=default_method, label="Method", view=methods,
                    description="OOD methods score images unlike the reference; wrong-label methods need a label field")
        method = ctx.params.get("method") or default_method
        detector = detector_class(method)
        label_task = detector.task == "label_issues"
        # image-level embeddings go with image labels; object embeddings with the labels of their own objects
        patches = inventory.embeddings_patches_field(dataset, embeddings) if embeddings else None
        label_fields = [patches] if patches else common.label_fields(dataset, detections=False)
        needs_labels = requires_labels(method)
        optional = "" if needs_labels else (
            "; optional: the trusted samples' labels improve this method's scores (give them when you have them)"
            if detector.accepts_optional_labels else "")
        prop = common.add_field_choice(inputs, "label_field", label_fields, label="Label field",
                                       description="Classification or Detections labels" + optional,
                                       required=needs_labels,
                                       default=(patches or inventory.default_label_field(dataset)) if needs_labels
                                       else None)
        if needs_labels and not label_fields:
            prop.invalid = True
            prop.error_message = f"method {method!r} needs a Classification or Detections field; this dataset has none"
        if not label_task:
            tags = sorted(dataset.distinct("tags"))
            default_tag = inventory.default_reference_tag(dataset)
            common.add_field_choice(inputs, "reference_tag", tags, label="Reference tag (trusted samples)",
                                    description="Fit on samples with this tag; empty = unsupervised on the target",
                                    required=False, default=default_tag)
            if make_detector(method).uses_reference_classes:  # per-class search or statistics
                common.add_uncovered_classes_warning(inputs, target, ctx.params.get("reference_tag", default_tag),
                                                     ctx.params.get("label_field"))
        if "k" in detector.default_params():
            _add_k_input(inputs, ctx, common.detector_default(method, "k"))
        if method == "knn":
            indexes = _similarity_indexes(dataset)
            if indexes:  # shown only when the dataset has one
                common.add_field_choice(
                    inputs, "similarity_index", indexes, label="Similarity index (optional)", required=False,
                    description="Query this FiftyOne Brain similarity index (pgvector, Milvus, ...) for the "
                                "neighbours instead of searching in memory; the index holds the reference")
        common.add_new_key(inputs, ctx, "score_field", label="Score field",
                           default=common.sdk_default("compute_label_issues" if label_task else "compute_ood_scores",
                                                      "score_field"),
                           description="Float field for the scores (higher = more suspicious); also the run key",
                           field_paths=lambda v: _score_paths(ctx, v, embeddings),
                           kind="label_issues" if label_task else "ood_scores",
                           reads=[embeddings, ctx.params.get("label_field")])
        adv = common.advanced_inputs(inputs, ctx, label="Show advanced settings (dimensionality reduction)")
        adv.enum("reduce", list(REDUCTIONS), default="none", label="Reduction", view=types.DropdownView(),
                 description="Optional dimensionality reduction fitted on the reference set")
        if ctx.params.get("reduce", "none") != "none":
            adv.int("n_components", default=30, min=1, label="Reduced dimensions")
        common.add_overwrite_input(inputs)
        common.add_delegation_input(inputs, ctx)
        return types.Property(inputs, view=types.View(label="Score OOD / label issues"))

    def run(self, ctx):
        import ood_core as ood
        from ood_core.fo import inventory

        p = ctx.params
        reduce = p.get("reduce", "none")
        target = common.target_view(ctx)
        if ctx.delegated:
            ctx.set_progress(progress=0.0, label="scoring")
        keep = ("run_key", "field", "method", "num_scored", "num_skipped", "density_ratio", "component_gate",
                "label_suspects", "uncovered_classes")
        if p.get("method") == "knn" and p.get("similarity_index"):
            summary = ood.compute_knn_scores_with_index(
                target,
                p["embeddings_field"],
                p.get("score_field", "ood_score"),
                brain_key=p["similarity_index"],
                reference=p.get("reference_tag") or None,
                k=_k_param(p.get("k")) or common.detector_default("knn", "k"),
                overwrite=bool(p.get("overwrite", False)),
                progress=common.progress_callback(ctx),
            )
            return common.finish(ctx, summary, keep=keep, report=score_report(summary, p["embeddings_field"]))
        label_field = p.get("label_field") or None
        summary = ood.compute_ood_scores(
            target,
            p["embeddings_field"],
            p.get("score_field", "ood_score"),
            method=p.get("method") or common.sdk_default("compute_ood_scores", "method"),
            reference=p.get("reference_tag") or None,
            label_field=label_field,
            patches_field=None if label_field else inventory.embeddings_patches_field(ctx.dataset,
                                                                                      p["embeddings_field"]),
            k=_k_param(p.get("k")),
            reduce=None if reduce in (None, "none") else reduce,
            n_components=p.get("n_components"),
            overwrite=bool(p.get("overwrite", False)),
        )
        return common.finish(ctx, summary, keep=keep,
                             report=score_report(summary, p["embeddings_field"], label_field))

    def to_form_params(self, *, reduce=None, **params):
        """``op(view, "ood_embeddings", "ood_score", method="knn", reference_tag="trusted", ...)``."""
        return dict(params, reduce=reduce or "none")

def score_report(summary, embeddings_field, label_field=None):
    """The result view of a score run: what was written, what was skipped, where to look next."""
    from ood_core.fo.scores import uncovered_classes_sentence

    field = summary["field"]
    item = "objects" if ".detections." in field else "samples"
    scored, skipped = summary.get("num_scored", 0), summary.get("num_skipped", 0)
    return common.report(
        f"Scores written to `{field}` (higher = more suspicious)",
        [("method", summary.get("method")),
         ("scored-set density ratio", _ratio_line(summary.get("density_ratio"))),
         ("feature levels", _gate_line(summary.get("component_gate"))),
         ("second vote", _suspects_line(summary.get("label_suspects"), item)),
         (f"{item} scored", f"{scored:,} of {scored + skipped:,}"),
         (f"{item} skipped", f"{skipped:,} without an embedding in `{embeddings_field}`" if skipped else None),
         ("scores", common.score_spread(summary.get("score_quantiles"))),
         ("warning", uncovered_classes_sentence(summary["uncovered_classes"], label_field)
          if summary.get("uncovered_classes") else None)],
        [*common.review_steps(field), f"colour the Embeddings panel by `{field}`"],
    )


def _ratio_line(ratio):
    """Whether the default detector added the scored set's density ratio, in one line (None: not applicable)."""
    if not ratio:
        return None
    p_value = ratio.get("p_value")
    p_text = f" (permutation p = {p_value:.3g})" if p_value is not None else ""
    weight = ratio.get("weight")
    w_text = f", weight {weight:.2g}" if ratio.get("used") and weight is not None else ""
    warning = f". Warning: {ratio['warning']}" if ratio.get("warning") else ""
    return f"{'used' if ratio.get('used') else 'not used'}: {ratio.get('reason')}{p_text}{w_text}{warning}"


def _gate_line(gate):
    """Which feature component sat out of the default detector and why, in one line (None: none did)."""
    if not gate or not gate.get("left_out"):
        return None
    acc = gate["accuracy"]
    kept = [n for n in acc if n not in gate["left_out"]]
    return "; ".join(
        f"'{n}' sat out: it tells the trusted classes apart worse (leave-one-out 1-NN label accuracy "
        f"{acc[n]:.3f} against {acc[kept[0]]:.3f} for '{kept[0]}')" for n in gate["left_out"])


def _suspects_line(num_suspects, item):
    """How many items the second label vote left out (None: not a two-vote run)."""
    if num_suspects is None:
        return None
    return (f"{num_suspects:,} {item} for which the first vote favours another label did not vote again "
            "(averaged with the first vote)")


def _score_paths(ctx, value, embeddings_field=None):
    from ood_core.fo import inventory

    label_field = ctx.params.get("label_field")
    patches = inventory.embeddings_patches_field(ctx.dataset, embeddings_field) if embeddings_field else None
    if patches:
        return [f"{patches}.detections.{value}"]
    if label_field:
        import fiftyone.core.labels as fol

        f = ctx.dataset.get_field(label_field)
        if getattr(f, "document_type", None) is fol.Detections:
            return [f"{label_field}.detections.{value}"]
    return [value]


def _similarity_indexes(dataset):
    """Brain keys of the dataset's similarity indexes."""
    return [key for key in dataset.list_brain_runs()
            if getattr(dataset.get_brain_info(key).config, "type", None) == "similarity"]


def _add_k_input(inputs, ctx, default):
    """k: a whole number; for detectors that size k from the reference (default ``auto``) empty = auto."""
    if isinstance(default, int):
        inputs.int("k", default=default, min=1, label="k (neighbours)")
        return
    inputs.int("k", required=False, min=1, label="k (neighbours)",
               description=f"Empty = {default!r}: sized from the trusted classes (recommended); or a whole number")


def _k_param(value):
    """The form's k for the SDK: None (the detector's default, e.g. 'auto') when empty."""
    return None if value in (None, "") else value
