"""Operator: 2-D UMAP of the embeddings for the App's Embeddings panel."""

import fiftyone.operators.types as types

from . import base as common


class ComputeOODVisualization(common.OODOperator):
    name = "compute_ood_visualization"
    label = "OOD: compute embeddings visualization"
    description = ("UMAP / t-SNE / PCA map of pyramid embeddings; colour it by an OOD score field")
    positional_params = ("embeddings_field", "brain_key")

    def resolve_input(self, ctx):
        from ood_core.fo import runs as fo_runs

        ctx.target_view()
        inputs = types.Object()
        emb_runs = fo_runs.list_ood_runs(ctx.dataset, kind="embeddings")
        prop = common.add_field_choice(inputs, "embeddings_field", emb_runs, label="Embeddings",
                                       description="An embeddings run of this dataset",
                                       default=emb_runs[0] if emb_runs else None)
        if not emb_runs:
            prop.invalid = True
            prop.error_message = "no embeddings yet: run 'OOD: compute pyramid embeddings' first"
        inputs.enum("method", ["umap", "tsne", "pca"], default="umap", label="Method", view=types.RadioGroup())
        brain = inputs.str("brain_key", default="ood_umap", required=True, label="Brain key")
        key = ctx.params.get("brain_key", "ood_umap")
        if key in ctx.dataset.list_brain_runs() and not ctx.params.get("overwrite", False):
            brain.invalid = True
            brain.error_message = f"brain key {key!r} exists; pick another or tick 'overwrite'"
        common.add_overwrite_input(inputs)
        common.add_delegation_input(inputs, ctx)
        return types.Property(inputs, view=types.View(label="Embeddings visualization"))

    def execute(self, ctx):
        import ood_core as ood
        from ood_core.fo import runs as fo_runs

        p = ctx.params
        info = fo_runs.get_ood_run_info(ctx.dataset, p["embeddings_field"])
        summary = ood.compute_ood_visualization(
            ctx.target_view(), p["embeddings_field"], p.get("brain_key", "ood_umap"),
            method=p.get("method", "umap"), patches_field=info.get("patches_field"),
            overwrite=bool(p.get("overwrite", False)),
        )
        return common.finish(ctx, summary)
