"""Operator: compute feature-pyramid embeddings for the target view."""

import fiftyone.operators.types as types

from . import base as common

MODES = ("pool", "flatten")


class ComputePyramidEmbeddings(common.OODOperator):
    name = "compute_pyramid_embeddings"
    label = "OOD: compute pyramid embeddings"
    description = ("Multi-level timm backbone embeddings for every sample or object")
    icon = "layers"
    positional_params = ("embeddings_field",)

    def resolve_delegation(self, ctx):
        if _num_shards(ctx) > 1 and ctx.params.get("shard") is None:
            return False  # the dispatcher itself runs at once; it queues one delegated operation per shard
        return common.resolve_delegation(ctx)

    def resolve_input(self, ctx):
        inputs = types.Object()
        target = common.target_view(ctx)
        common.add_target_input(inputs, ctx, "Embed")
        patches = ctx.params.get("patches_field")
        common.add_new_key(
            inputs, ctx, "embeddings_field", label="Embeddings field", default="ood_embeddings",
            description="Sample field (or object attribute) that will hold the embeddings; also the run key",
            field_paths=lambda v: [f"{patches}.detections.{v}" if patches else v], resumable_kind="embeddings",
        )
        common.add_field_choice(
            inputs, "patches_field", [f for f in common.label_fields(ctx.dataset) if _is_detections(ctx, f)],
            label="Objects field (optional)", description="Embed each object crop of this Detections field",
            required=False,
        )
        adv = common.advanced_inputs(inputs, ctx, label="Show advanced settings (backbone, levels, speed)")
        adv.str("model_name", default=_default("model_name"), label="timm backbone",
                description="'auto' = ResNet50 hub weights if reachable, else bundled EfficientNet-Lite0")
        adv.str("levels", default="", required=False, label="Pyramid levels",
                description="Comma-separated indices or module names (e.g. 'layer1,layer2'); empty = the deepest level")
        adv.enum("mode", list(MODES), default=_default("mode"), label="Mode", view=types.RadioGroup(),
                 description="'pool': per-level grid pooling (compact); 'flatten': the paper's resize + flatten (large)")
        adv.int("grid", default=_default("grid"), min=1, max=8, label="Pooling grid",
                description="Side of the pooling grid (mode 'pool')")
        adv.str("weights", default="", required=False, label="Weights file",
                description="Optional local .safetensors / state-dict file; empty = hub/cache, then bundled")
        adv.int("project_dim", default=0, min=0, label="Reduce to dimensions (0 = keep)",
                description="On-the-fly reduction while extracting, e.g. for the large 'flatten' mode")
        if int(ctx.params.get("project_dim") or 0) > 0:
            adv.enum("project_method", ["pca", "random"], default=_default("project_method"), label="Reduction",
                     view=types.RadioGroup(),
                     description="'pca': fitted on a seeded sample of the view first; 'random': seeded "
                                 "Gaussian projection, nothing to fit")
        adv.int("batch_size", default=_default("batch_size"), min=1, label="Batch size")
        adv.int("num_workers", default=_default("num_workers"), min=0, label="Decoding workers")
        adv.bool("skip_failures", default=_default("skip_failures"), label="Skip unreadable images",
                 description="Unreadable images get no embedding and are listed in the run results")
        shards = adv.int(
            "num_shards", default=1, min=1, label="Parallel workers (shards)",
            description="Split the view into this many delegated operations, one slice each, for several "
                        "'fiftyone delegated launch' workers; the last to finish completes the field")
        if _num_shards(ctx) > 1 and ctx.params.get("overwrite"):
            shards.invalid = True
            shards.error_message = "shards cannot overwrite: delete the old embeddings run first"
        common.add_overwrite_input(inputs)
        common.add_delegation_input(inputs, ctx)
        if len(target) == 0:
            empty = inputs.view("empty_target", types.Warning(label="The target has no samples"))
            empty.invalid = True
            empty.error_message = "the chosen target (view or selection) is empty"
        return types.Property(inputs, view=types.View(label="Compute pyramid embeddings"))

    def run(self, ctx):
        import ood_core as ood

        p = ctx.params
        if _num_shards(ctx) > 1 and p.get("shard") is None:
            return _queue_shards(self.uri, ctx)
        levels = _parse_levels(p.get("levels"))
        target = common.target_view(ctx)
        summary = ood.compute_pyramid_embeddings(
            target,
            p.get("embeddings_field", "ood_embeddings"),
            model_name=p.get("model_name") or _default("model_name"),
            levels=levels,
            mode=p.get("mode") or _default("mode"),
            grid=common.int_param(p, "grid", _default("grid")),
            weights=_weights(p.get("weights")),
            patches_field=p.get("patches_field") or None,
            batch_size=common.int_param(p, "batch_size", _default("batch_size")),
            num_workers=common.int_param(p, "num_workers", _default("num_workers"), minimum=0),
            project_dim=common.int_param(p, "project_dim", 0, minimum=0) or None,
            project_method=p.get("project_method") or _default("project_method"),
            skip_failures=bool(p.get("skip_failures", _default("skip_failures"))),
            overwrite=bool(p.get("overwrite", False)),
            progress=common.progress_callback(ctx),
            shard=tuple(p["shard"]) if p.get("shard") is not None else None,
        )
        return common.finish(ctx, summary, keep=("run_key", "field", "status", "shard", "num_embedded",
                                                 "num_computed", "num_failed", "dim"),
                             report=_report(summary, len(target)))

    def to_form_params(self, *, levels=None, weights=None, **params):
        """``op(view, "ood_embeddings", levels=[1, 2], mode="pool", ...)``."""
        return dict(params, levels=",".join(str(x) for x in levels) if levels else "", weights=weights or "")

def _report(summary, num_target):
    field = summary.get("field") or summary.get("run_key")
    item = "objects" if "detections" in str(field) else "samples"
    computed, failed = summary.get("num_computed"), summary.get("num_failed") or 0
    reused = None if computed is None else max(int(summary.get("num_embedded") or 0) - int(computed), 0)
    return common.report(
        f"Embeddings written to `{field}` ({summary.get('status', 'complete')})",
        [("target", f"{num_target:,} samples"),
         (f"{item} with an embedding", f"{summary.get('num_embedded', 0):,}"),
         ("computed now", None if computed is None else f"{computed:,}"),
         ("already there (kept)", reused or None),
         ("unreadable, skipped", failed or None),
         ("dimensions", summary.get("dim"))],
        [f"score them: **OOD: score samples** with embeddings `{summary.get('run_key')}`",
         "or run **OOD: audit dataset** for OOD + wrong-label scores and an HTML report",
         "map them: **OOD: compute embeddings visualization**, then the Embeddings panel"],
    )


def _weights(value):
    """``weights`` from the form: ``hub`` / ``bundled`` / ``random`` pass; a file must be in an allowed folder."""
    from ood_core.paths import check_app_file

    return check_app_file(value, "weights", may_be_tag=True)


def _default(param):
    return common.sdk_default("compute_pyramid_embeddings", param)


def _num_shards(ctx):
    return int(ctx.params.get("num_shards") or 1)


def _queue_shards(uri, ctx):
    """Queue one delegated operation per shard of the target view; return their ids."""
    import copy

    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionContext

    if ctx.params.get("overwrite"):
        raise ValueError("num_shards > 1 cannot overwrite: delete the old embeddings run first, then start the shards")
    n = _num_shards(ctx)
    service = DelegatedOperationService()
    queued = []
    for i in range(n):
        request = copy.deepcopy(ctx.request_params)
        request["params"] = dict(request.get("params", {}), shard=[i, n], delegate=True)
        request["delegated"] = True
        op = service.queue_operation(
            operator=uri, label=f"OOD embeddings {request['params'].get('embeddings_field', '')} shard {i + 1}/{n}",
            context=ExecutionContext(request_params=request).serialize(),
        )
        queued.append(str(op.id))
    return {"num_shards": n, "queued_operations": queued}


def _is_detections(ctx, field):
    import fiftyone.core.labels as fol

    f = ctx.dataset.get_field(field)
    return getattr(f, "document_type", None) is fol.Detections


def _parse_levels(text):
    if not text:
        return None
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if part:
            out.append(int(part) if part.lstrip("-").isdigit() else part)
    return out or None
