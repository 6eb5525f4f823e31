"""Operator: 2-D UMAP of the embeddings for the App's Embeddings panel."""

import fiftyone.operators.types as types

from ood_core.fo import form_cache

from . import base as common


class ComputeOODVisualization(common.OODOperator):
    name = "compute_ood_visualization"
    label = "OOD: compute embeddings visualization"
    description = ("UMAP / t-SNE / PCA map of pyramid embeddings; colour it by an OOD score field")
    icon = "scatter_plot"
    positional_params = ("embeddings_field", "brain_key")

    def resolve_input(self, ctx):
        from ood_core.fo import inventory, runs
        from ood_core.fo.scores import VISUALIZATION_METHODS, check_map_points

        inputs = types.Object()
        target = common.target_view(ctx)
        if not common.add_target_input(inputs, ctx, "Map"):
            return types.Property(inputs)
        if not inventory.embedding_choices(ctx.dataset):
            prop = inputs.view("no_embeddings", types.Warning(label="No embeddings yet"))
            prop.invalid = True
            prop.error_message = "no embeddings yet: run 'OOD: compute pyramid embeddings' first"
            return types.Property(inputs)
        chosen = common.add_embeddings_choice(inputs, ctx, target)
        if chosen is not None:  # the SDK's check: enough points with an embedding in the target
            covered, _ = form_cache.embedding_coverage(target, chosen, inventory.embeddings_patches_field(
                ctx.dataset, chosen))
            common.check_input(inputs.properties["embeddings_field"], check_map_points, covered, chosen)
        common.enum_input(inputs, "method", VISUALIZATION_METHODS, ctx,
                          default=common.sdk_default("compute_ood_visualization", "method"), label="Method",
                          view=types.RadioGroup())
        default_key = common.sdk_default("compute_ood_visualization", "brain_key")
        brain = inputs.str("brain_key", default=default_key, required=True, label="Brain key")
        key = ctx.params.get("brain_key", default_key)
        try:
            runs.validate_key(key, "brain key")
        except ValueError as e:
            brain.invalid = True
            brain.error_message = str(e)
        if key in ctx.dataset.list_brain_runs() and not ctx.params.get("overwrite", False):
            brain.invalid = True
            brain.error_message = f"brain key {key!r} exists; pick another or tick 'overwrite'"
        elif key in ctx.dataset.list_brain_runs():  # only a map of this plugin is replaced (the SDK's check)
            from ood_core.errors import OODInputError
            from ood_core.fo.maps import check_map_key

            try:
                check_map_key(ctx.dataset, key, True)
            except OODInputError as e:
                brain.invalid = True
                brain.error_message = str(e)
        common.add_overwrite_input(inputs, ctx)
        common.add_delegation_input(inputs, ctx)
        return types.Property(inputs, view=types.View(label=self.label))

    def run(self, ctx):
        import ood_core as ood
        from ood_core.fo import inventory
        from ood_core.fo.scores import VISUALIZATION_METHODS

        p = ctx.params
        default_key = common.sdk_default("compute_ood_visualization", "brain_key")
        summary = ood.compute_ood_visualization(
            common.target_view(ctx), p["embeddings_field"], p.get("brain_key") or default_key,
            method=common.choice_param(p, "method", VISUALIZATION_METHODS,
                                       common.sdk_default("compute_ood_visualization", "method")),
            patches_field=inventory.embeddings_patches_field(ctx.dataset, p["embeddings_field"]),
            overwrite=common.flag_param(p, "overwrite", False),
        )
        scores = score_fields(ctx.dataset, inventory.embeddings_patches_field(ctx.dataset, p["embeddings_field"]))
        colour = (f"colour the points by a score field: {', '.join(f'`{f}`' for f in scores)}" if scores else
                  "no score field yet: run **OOD: audit dataset** or **OOD: score samples**, then colour the points "
                  "by its score field")
        report = common.report(
            f"Map `{summary['brain_key']}` computed", [("points", f"{summary['num_points']:,}")],
            [f"open the **Embeddings** panel and pick `{summary['brain_key']}`", colour,
             "lasso a cluster to select its samples in the grid"])
        return common.finish(ctx, summary, report=report)


def score_fields(dataset, patches_field=None):
    """The score fields of this plugin's score runs that exist on ``dataset`` and can colour a map of its samples
    (``patches_field`` None) or of the objects of ``patches_field`` (``<patches>.detections.<score>``)."""
    from ood_core.fo import runs

    out = []
    for key in runs.list_ood_runs(dataset):
        info = runs.get_ood_run_info(dataset, key)
        path = runs.score_path(info) if info.get("kind") in runs.score_kinds() else None
        if not path or dataset.get_field(path) is None:
            continue
        prefix = f"{patches_field}.detections." if patches_field else ""
        if path.startswith(prefix) and "." not in path[len(prefix):]:
            out.append(path)
    return out
