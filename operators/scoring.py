"""Operator: score OOD-ness or label issues from stored embeddings."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common as common

METHODS = ("knn", "mahalanobis", "lof", "class_lof", "label_agreement")
LABEL_METHODS = ("class_lof", "label_agreement")
REDUCTIONS = ("none", "pca", "umap", "random")


class ScoreOOD(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="score_ood",
            label="OOD: score samples",
            description="k-NN / Mahalanobis / LOF OOD scores or per-class label-issue scores (higher = more suspicious)",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_delegation(self, ctx):
        return common.resolve_delegation(ctx)

    def resolve_input(self, ctx):
        from ood_core import fo_runs

        ctx.target_view()
        inputs = types.Object()
        dataset = ctx.dataset
        emb_runs = fo_runs.list_ood_runs(dataset, kind="embeddings")
        if not emb_runs:
            warning = inputs.view("no_embeddings", types.Warning(
                label="No embeddings yet",
                description="Run 'OOD: compute pyramid embeddings' first"))
            warning.invalid = True
            warning.error_message = "no embeddings run on this dataset"
            return types.Property(inputs)
        common.add_field_choice(inputs, "embeddings_field", emb_runs, label="Embeddings",
                                description="An embeddings run of this dataset", default=emb_runs[0])
        inputs.enum("method", list(METHODS), default="knn", label="Method", view=types.DropdownView(),
                    description="knn/mahalanobis/lof: OOD images; class_lof/label_agreement: wrong labels (need a label field)")
        method = ctx.params.get("method", "knn")
        label_fields = common.label_fields(dataset)
        needs_labels = method in LABEL_METHODS or method == "mahalanobis"
        prop = common.add_field_choice(inputs, "label_field", label_fields, label="Label field",
                                       description="Classification or Detections labels", required=needs_labels)
        if needs_labels and not label_fields:
            prop.invalid = True
            prop.error_message = f"method {method!r} needs a Classification or Detections field; this dataset has none"
        if method not in LABEL_METHODS:
            tags = sorted(dataset.distinct("tags"))
            common.add_field_choice(inputs, "reference_tag", tags, label="Reference tag (trusted samples)",
                                    description="Fit on samples with this tag; empty = unsupervised on the view",
                                    required=False)
        if method == "knn":
            indexes = _similarity_indexes(dataset)
            if indexes:
                common.add_field_choice(
                    inputs, "similarity_index", indexes, label="Similarity index (optional)", required=False,
                    description="Query this FiftyOne Brain similarity index (pgvector, Milvus, ...) for the "
                                "neighbours instead of searching in memory; the index holds the reference")
        inputs.int("k", default=20 if method == "label_agreement" else 50, min=1, label="k (neighbours)")
        inputs.enum("reduce", list(REDUCTIONS), default="none", label="Reduction", view=types.DropdownView(),
                    description="Optional dimensionality reduction fitted on the reference set")
        if ctx.params.get("reduce", "none") != "none":
            inputs.int("n_components", default=30, min=1, label="Reduced dimensions")
        common.add_new_key(inputs, ctx, "score_field", label="Score field",
                           default="label_issue" if method in LABEL_METHODS else "ood_score",
                           description="Float field for the scores (higher = more suspicious); also the run key",
                           field_paths=lambda v: _score_paths(ctx, v))
        common.add_overwrite_input(inputs)
        common.add_delegation_input(inputs, ctx)
        return types.Property(inputs, view=types.View(label="Score OOD / label issues"))

    def execute(self, ctx):
        from ood_core import fo_api

        p = ctx.params
        reduce = p.get("reduce", "none")
        if ctx.delegated:
            ctx.set_progress(progress=0.0, label="scoring")
        if p.get("method", "knn") == "knn" and p.get("similarity_index"):
            from ood_core import fo_similarity

            summary = fo_similarity.compute_knn_scores_with_index(
                ctx.target_view(),
                p["embeddings_field"],
                p.get("score_field", "ood_score"),
                brain_key=p["similarity_index"],
                reference=p.get("reference_tag") or None,
                k=p.get("k") or 50,
                overwrite=bool(p.get("overwrite", False)),
                progress=common.progress_callback(ctx),
            )
            return common.finish(ctx, summary, keep=("run_key", "field", "method", "num_scored", "num_skipped"))
        summary = fo_api.compute_ood_scores(
            ctx.target_view(),
            p["embeddings_field"],
            p.get("score_field", "ood_score"),
            method=p.get("method", "knn"),
            reference=p.get("reference_tag") or None,
            label_field=p.get("label_field") or None,
            k=p.get("k"),
            reduce=None if reduce in (None, "none") else reduce,
            n_components=p.get("n_components"),
            overwrite=bool(p.get("overwrite", False)),
        )
        return common.finish(ctx, summary, keep=("run_key", "field", "method", "num_scored", "num_skipped"))

    def __call__(self, sample_collection, embeddings_field="ood_embeddings", score_field="ood_score", *,
                 method="knn", reference_tag=None, label_field=None, k=None, reduce=None, n_components=None,
                 similarity_index=None, overwrite=False, delegate=False):
        """Run from Python: ``op = foo.get_operator(uri); op(view, method="knn", reference_tag="trusted")``."""
        params = dict(
            embeddings_field=embeddings_field, score_field=score_field, method=method,
            reference_tag=reference_tag, label_field=label_field, k=k, reduce=reduce or "none",
            n_components=n_components, similarity_index=similarity_index, overwrite=overwrite,
            delegate=delegate,
        )
        return foo.execute_operator(self.uri, dict(view=sample_collection.view()), params=params)


def _score_paths(ctx, value):
    label_field = ctx.params.get("label_field")
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
