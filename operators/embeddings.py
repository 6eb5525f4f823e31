"""Operator: compute feature-pyramid embeddings for the target view."""

import functools

import fiftyone.operators.types as types

from . import base as common
from .field_inputs import check_patches_choice


def _project_methods():
    """The on-the-fly reductions of ``compute_pyramid_embeddings(project_method=...)``."""
    from ood_core.reduction import LINEAR_REDUCERS

    return LINEAR_REDUCERS


def _modes(default):
    """The pyramid modes (the SDK's list, :data:`ood_core.features.MODES`), the default first."""
    from ood_core.features import MODES

    return sorted(MODES, key=lambda mode: mode != default)


class ComputePyramidEmbeddings(common.OODOperator):
    name = "compute_pyramid_embeddings"
    label = "OOD: compute pyramid embeddings"
    description = ("Multi-level timm backbone embeddings for every sample or object")
    icon = "layers"
    positional_params = ("embeddings_field",)

    def resolve_delegation(self, ctx):
        from ood_core.errors import OODInputError

        try:
            if _num_shards(ctx) > 1 and ctx.params.get("shard") is None:
                return False  # the dispatcher itself runs at once; it queues one delegated operation per shard
        except OODInputError:  # a bad num_shards: the form (and the run) say so
            pass
        return common.resolve_delegation(ctx)

    def resolve_input(self, ctx):
        inputs = types.Object()
        target = common.target_view(ctx)
        if not common.add_target_input(inputs, ctx, "Embed"):
            return types.Property(inputs)
        patches = ctx.params.get("patches_field") or None
        key = common.add_new_key(
            inputs, ctx, "embeddings_field", label="Embeddings field", default="ood_embeddings",
            description="Sample field (or object attribute) that will hold the embeddings; its run is recorded under "
                        "the same name (OOD: manage runs lists it)",
            field_paths=lambda v: [f"{patches}.detections.{v}" if patches else v], resumable_kind="embeddings",
        )
        if "embeddings_field_resume" in inputs.properties:  # resumes or fills a run: same settings only
            _check_resume(inputs, ctx, key, patches)
            _pending_notice(inputs, ctx)
        objects = [f for f in common.label_fields(ctx.dataset) if _is_detections(ctx, f)]
        check_patches_choice(common.add_field_choice(
            inputs, "patches_field", objects, label="Objects field (optional)",
            description="Embed each object crop of this Detections field", required=False,
        ), target, patches, objects)  # a field deleted since the form opened: the SDK's reason, on the field
        adv = common.advanced_inputs(inputs, ctx, label="Show advanced settings (backbone, levels, speed)")
        default = dict(_sdk_settings(), **_resumed_settings(ctx))  # a resume keeps the stored settings
        model = adv.str("model_name", default=default["model_name"], label="timm backbone",
                        description="'auto' = ResNet50 hub weights if reachable, else bundled EfficientNet-Lite0")
        levels = adv.str("levels", default=default["levels"], required=False, label="Pyramid levels",
                         description="Comma-separated indices or module names (e.g. 'layer1,layer2'); empty = the "
                                     "deepest level")
        _check_backbone(ctx, model, levels, default)
        common.enum_input(adv, "mode", _modes(default["mode"]), ctx, default=default["mode"], label="Mode",
                          view=types.RadioGroup(),
                          description="'pool': per-level grid pooling (compact); "
                                      "'flatten': the paper's resize + flatten (large)")
        common.int_input(adv, ctx, "grid", default=default["grid"], maximum=8, label="Pooling grid",
                         description="Side of the pooling grid (mode 'pool'), 1 to 8")
        common.add_file_input(adv, ctx, "weights", label="Weights file", may_be_tag=True,
                              description="Optional local .safetensors / state-dict file (in an allowed folder); "
                                          "empty = hub/cache, then bundled")
        project_dim = adv.int("project_dim", default=default["project_dim"],
                              label="Reduce to dimensions (0 = keep)",
                              description="On-the-fly reduction while extracting, e.g. for the large 'flatten' mode")
        reduces = common.check_input(project_dim, common.int_param, _params(ctx), "project_dim", 0, minimum=0)
        # shown with a reduction, or to refuse a value the run refuses all the same (the SDK checks it always)
        if reduces or common.refusal(common.choice_param, ctx.params, "project_method", _project_methods()):
            common.enum_input(adv, "project_method", _project_methods(), ctx, default=default["project_method"],
                              label="Reduction", view=types.RadioGroup(),
                              description="'pca': fitted on a seeded sample of the view first; 'random': seeded "
                                          "Gaussian projection, nothing to fit")
        common.int_input(adv, ctx, "batch_size", default=_default("batch_size"), label="Batch size")
        common.int_input(adv, ctx, "num_workers", default=_default("num_workers"), minimum=0, label="Decoding workers")
        shards = adv.int(
            "num_shards", default=1, label="Parallel workers (shards)",
            description="Split the view into this many delegated operations, one slice each, for several "
                        "'fiftyone delegated launch' workers; the last to finish completes the field")
        num_shards = common.check_input(shards, _num_shards, ctx)
        if num_shards and num_shards > 1 and ctx.params.get("overwrite"):
            common.invalidate(shards, "shards cannot overwrite: delete the old embeddings run first")
        common.surface_hidden_errors(inputs)  # every refused input of the hidden advanced group, with its label
        common.bool_input(inputs, ctx, "skip_failures", default=_default("skip_failures"),
                          label="Skip unreadable images", description=SKIP_FAILURES_HELP, view=types.CheckboxView())
        common.add_overwrite_input(inputs, ctx)
        common.add_delegation_input(inputs, ctx)
        common.add_target_size_check(inputs, target)  # an empty target: "empty_target", with the fix
        return types.Property(inputs, view=types.View(label=self.label))

    def run(self, ctx):
        import ood_core as ood

        p = _params(ctx)
        if _num_shards(ctx) > 1 and p.get("shard") is None:
            return _queue_shards(self.uri, ctx)
        target = common.target_view(ctx)
        summary = ood.compute_pyramid_embeddings(
            target,
            p.get("embeddings_field", "ood_embeddings"),
            **_settings(p),
            weights=_weights(p.get("weights")),
            patches_field=p.get("patches_field") or None,
            batch_size=common.int_param(p, "batch_size", _default("batch_size")),
            num_workers=common.int_param(p, "num_workers", _default("num_workers"), minimum=0),
            skip_failures=common.flag_param(p, "skip_failures", _default("skip_failures")),
            overwrite=common.flag_param(p, "overwrite", False),
            progress=common.progress_callback(ctx),
            shard=tuple(p["shard"]) if p.get("shard") is not None else None,
        )
        result = common.finish(ctx, summary, keep=("run_key", "field", "status", "shard", "num_embedded",
                                                   "num_computed", "num_failed", "dim"),
                               report=_report(summary, len(target)))
        return dict(result, failures=summary.get("failures", [])[:MAX_FAILURES_LISTED])

    def to_form_params(self, *, levels=None, weights=None, **params):
        """``op(view, "ood_embeddings", levels=[1, 2], mode="pool", ...)``."""
        return dict(params, levels=levels_text(levels), weights=weights or "")


def levels_text(levels):
    """The pyramid ``levels`` of a Python call as the form's comma-separated 'Pyramid levels' text: a list or tuple
    of indices / module names, one index or one name (as the SDK takes them), or that text itself. A text was split
    into its characters ("layer1" became "l,a,y,e,r,1") and one index crashed with a bare TypeError."""
    from ood_core.errors import OODInputError
    from ood_core.validation import is_int

    if levels is None or isinstance(levels, str):
        return levels or ""
    if is_int(levels):
        return str(levels)
    if isinstance(levels, (list, tuple)) and all(is_int(x) or isinstance(x, str) for x in levels):
        return ",".join(str(x) for x in levels)
    raise OODInputError(f"levels={levels!r} is not a list of pyramid levels; pass indices or module names, e.g. "
                        "levels=[1, 2] or levels=['layer1', 'layer2'], or leave it out for the default")


#: the skipped images a result (its view and its JSON) lists; the run's results keep them all
MAX_FAILURES_LISTED = 20


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
         ("unreadable, skipped (no embedding)", _skipped_line(summary) if failed else None),
         *(("skipped", f["error"]) for f in summary.get("failures", [])[:MAX_FAILURES_LISTED]),
         ("dimensions", summary.get("dim"))],
        [f"score them: **OOD: score samples** with embeddings `{summary.get('run_key')}`",
         "or run **OOD: audit dataset** for OOD + wrong-label scores and an HTML report",
         "map them: **OOD: compute embeddings visualization**, then the Embeddings panel",
         *([f"fix or remove the skipped files, then run again: only what is missing is computed "
            f"(all of them: `ood.load_ood_results(dataset, {summary.get('run_key')!r}).failures`)"]
           if failed else [])],
    )


def _skipped_line(summary):
    failed = summary.get("num_failed") or 0
    more = failed - min(failed, MAX_FAILURES_LISTED)
    return f"{failed:,}" + (f" (the first {MAX_FAILURES_LISTED} below)" if more else " (below)")


#: the form's help on "Skip unreadable images" (its default is the SDK's, :func:`ood_core.compute_pyramid_embeddings`)
SKIP_FAILURES_HELP = ("Ticked (what FiftyOne's compute_embeddings does): missing or corrupt image files get no "
                      "embedding and are listed in the result and the run's record; unticked: the first one stops "
                      "the run (what is computed until then is kept and resumed)")


def _check_backbone(ctx, model_prop, levels_prop, default):
    """The SDK's checks of the backbone name (:func:`ood_core.weights.require_timm_model`) and of the pyramid
    levels (:func:`ood_core.features.resolve_levels` on the backbone's levels, read from timm without weights
    and cached per backbone), done only for a backbone or levels the user typed."""
    from ood_core.errors import OODInputError
    from ood_core.features import resolve_levels
    from ood_core.weights import AUTO_BACKBONES, require_timm_model

    model = ctx.params.get("model_name") or default["model_name"]
    if model != "auto":
        common.check_input(model_prop, require_timm_model, model)
    levels = _parse_levels(ctx.params.get("levels"))
    if model_prop.invalid or not levels:
        return
    errors = []
    for name in AUTO_BACKBONES if model == "auto" else (model,):
        module_names = _level_names(name)
        if module_names is None:  # timm cannot tell without building more: the run checks
            return
        try:
            resolve_levels(list(module_names), levels)
            return
        except OODInputError as e:
            errors.append(f"{name}: {e}" if model == "auto" else str(e))
    auto = (f" ('auto' is {' or '.join(AUTO_BACKBONES)}; their level names differ: give indices 0..4, or type "
            "the backbone)") if model == "auto" else ""
    common.invalidate(levels_prop, "; ".join(errors) + auto)


@functools.lru_cache(maxsize=32)
def _level_names(model_name):
    """The pyramid level (module) names of a timm backbone, as :class:`ood_core.features.PyramidExtractor` reads
    them (built without weights: ~0.05-0.8 s, once per backbone and process); None when timm cannot build it."""
    import timm

    try:
        return tuple(timm.create_model(model_name, pretrained=False, features_only=True).feature_info.module_name())
    except Exception:  # e.g. an architecture without features_only: the run says why
        return None


def _pending_notice(inputs, ctx):
    """Say that an interrupted overwrite is pending and that its settings (pre-filled) resume it."""
    field = ctx.params.get("embeddings_field", "ood_embeddings")
    if ctx.params.get("overwrite") or not _pending_overwrite(ctx, field):
        return
    inputs.view("embeddings_field_pending", types.Notice(
        label=f"An overwrite of {field!r} with other settings was interrupted; with its settings (filled in) this "
              "run resumes it, and the old embeddings stay in use until it completes. The old run's settings fill "
              "in the old field instead; 'overwrite' starts over"))


def _weights(value):
    """``weights`` from the form: ``hub`` / ``bundled`` / ``random`` pass; a file must be in an allowed folder."""
    from ood_core.paths import check_app_file

    return check_app_file(value, "weights", may_be_tag=True)


def _default(param):
    return common.sdk_default("compute_pyramid_embeddings", param)


def _num_shards(ctx):
    return common.int_param(ctx.params, "num_shards", 1)


def _check_resume(inputs, ctx, key, patches):
    """Refuse on the field a resume (or fill-in) of an existing run with other settings, listing what differs
    as the SDK does when it refuses the run."""
    from ood_core.errors import OODInputError

    field = ctx.params.get("embeddings_field", "ood_embeddings")
    try:
        conflicts = _resume_conflicts(ctx, field, patches)
    except OODInputError:  # a bad setting: its own field says so
        return
    clip = _clip_backbone(ctx, field) if conflicts else None
    if clip is not None:  # its settings are no pyramid settings to set: the form pre-filled none of them
        inputs.properties.pop("embeddings_field_resume", None)
        common.invalidate(key, f"embeddings {field!r} are CLIP image embeddings (model {clip.get('model_name')!r}, "
                               "made by compute_clip_embeddings for the CLIP scores), not pyramid embeddings, so "
                               "they cannot be resumed here: choose another embeddings field, or tick 'overwrite' "
                               "to replace them with pyramid embeddings")
    elif conflicts:
        inputs.properties.pop("embeddings_field_resume", None)
        common.invalidate(key, f"embeddings {field!r} exist with other settings ({conflicts}); a resume computes "
                               "only what is missing with the same settings: set them as stored, tick 'overwrite' "
                               "to recompute everything, or choose another embeddings field")


#: the settings a resume (or fill-in) must keep: the form's names, the SDK's defaults (levels "" = the default)
SETTINGS = ("model_name", "levels", "mode", "grid", "project_dim", "project_method", "project_seed", "pca_fit_size",
            "dtype")


def _sdk_settings():
    """:data:`SETTINGS` with the SDK's defaults, as form parameters."""
    out = {name: _default(name) for name in SETTINGS if name not in ("levels", "project_dim")}
    return dict(out, levels="", project_dim=0)


def _settings(p):
    """:data:`SETTINGS` from form parameters, as the SDK's keyword arguments."""
    default = _sdk_settings()
    return dict(
        model_name=p.get("model_name") or default["model_name"], levels=_parse_levels(p.get("levels")),
        mode=common.choice_param(p, "mode", _modes(default["mode"]), default["mode"]),
        grid=common.int_param(p, "grid", default["grid"]),
        project_dim=common.int_param(p, "project_dim", 0, minimum=0) or None,
        project_method=common.choice_param(p, "project_method", _project_methods(), default["project_method"]),
        project_seed=common.int_param(p, "project_seed", default["project_seed"], minimum=0),
        pca_fit_size=common.int_param(p, "pca_fit_size", default["pca_fit_size"]),
        dtype=p.get("dtype") or default["dtype"],
    )


def _resumed_settings(ctx):
    """The settings of the embeddings run the form would resume or fill in, as form parameters ({} for a new
    field, or with 'overwrite')."""
    from ood_core.fo import runs as fo_runs

    field = ctx.params.get("embeddings_field", "ood_embeddings")
    if ctx.params.get("overwrite") or field not in fo_runs.list_ood_runs(ctx.dataset, kind="embeddings") or \
            _field_gone(ctx, field):
        return {}
    # an interrupted overwrite is what the form resumes (its settings; the SDK does the same without overwrite)
    info = _pending_overwrite(ctx, field) or fo_runs.get_ood_run_info(ctx.dataset, field)
    backbone, projection = info.get("backbone") or {}, info.get("projection") or {}
    if backbone.get("kind") == "clip":  # CLIP embeddings: no timm backbone or pyramid settings to resume
        return {}
    stored = dict(model_name=backbone.get("model_name"), mode=backbone.get("mode"), grid=backbone.get("grid"),
                  levels=",".join(str(i) for i in backbone.get("level_indices") or []),
                  project_dim=projection.get("n_components", 0), project_method=projection.get("method"),
                  project_seed=projection.get("seed"), pca_fit_size=projection.get("fit_size"),
                  dtype=info.get("dtype"))
    return {k: v for k, v in stored.items() if v not in (None, "")}


def _params(ctx):
    """The run's parameters: those given, and for a resume the stored run's settings in place of those not
    given (the SDK refuses other settings)."""
    given = {k: v for k, v in ctx.params.items() if v not in (None, "")}
    return dict(_resumed_settings(ctx), **given)


def _resume_conflicts(ctx, field, patches):
    """What differs between the stored run ``field`` and the form's settings, as the SDK lists it ("" = nothing
    that is known without loading the backbone differs: the model name unless 'auto', levels given as indices
    or as the stored run's level names, mode, grid, the projection, the storage dtype, the objects field)."""
    from ood_core.fo import runs as fo_runs

    if field not in fo_runs.list_ood_runs(ctx.dataset, kind="embeddings") or _field_gone(ctx, field):
        return ""
    asked = _settings(_params(ctx))
    conflicts = _conflicts_with(fo_runs.get_ood_run_info(ctx.dataset, field), asked, patches)
    pending = _pending_overwrite(ctx, field) if conflicts else {}
    # the settings of an interrupted overwrite resume it: no conflict either
    return "" if pending and not _conflicts_with(pending, asked, patches) else conflicts


def _clip_backbone(ctx, field):
    """The backbone record of the CLIP embeddings run ``field`` (:func:`ood_core.compute_clip_embeddings`), or
    None for a pyramid embeddings run."""
    from ood_core.fo import runs as fo_runs

    backbone = fo_runs.get_ood_run_info(ctx.dataset, field).get("backbone") or {}
    return backbone if backbone.get("kind") == "clip" else None


def _field_gone(ctx, field):
    """Whether the run's field was deleted or renamed by hand: the SDK computes it afresh (any settings), as new."""
    from ood_core.fo.embedding_runs import field_gone, field_paths

    return field_gone(ctx.dataset, field, field_paths(field, ctx.params.get("patches_field") or None)[0])


def _pending_overwrite(ctx, field):
    """The record of an interrupted overwrite of embeddings ``field`` (its progress, kept apart), or {}."""
    from ood_core.fo.embedding_runs import field_paths, pending_side_record

    return pending_side_record(ctx.dataset, field, *field_paths(field, ctx.params.get("patches_field") or None))


def _conflicts_with(info, asked, patches):
    """What differs between the embeddings run record ``info`` and the form's settings ``asked``."""
    from ood_core.fo.embedding_plans import settings_diff
    from ood_core.fo.embeddings import projection_record
    from ood_core.images import READER_VERSION

    stored = info.get("backbone") or {}
    backbone = {"mode": asked["mode"], "grid": asked["grid"] if asked["mode"] == "pool" else None}
    if asked["model_name"] != "auto":
        backbone["model_name"] = asked["model_name"]
    levels = _level_indices(asked["levels"], stored)
    if levels is not None:
        backbone["level_indices"] = levels
    projection = projection_record(asked["project_dim"], asked["project_method"], asked["project_seed"],
                                   asked["pca_fit_size"])
    # the reader's version, not the decoded size: that follows from the backbone, compared above
    old = {"backbone": {k: stored.get(k) for k in backbone}, "projection": info.get("projection"),
           "dtype": info.get("dtype"), "patches_field": info.get("patches_field"),
           "decoding": {"reader": (info.get("decoding") or {}).get("reader")}}
    new = {"backbone": backbone, "projection": projection, "dtype": asked["dtype"], "patches_field": patches,
           "decoding": {"reader": READER_VERSION}}
    return settings_diff(old, new)


def _level_indices(levels, stored):
    """``levels`` as level indices when known without the backbone (indices >= 0, or the stored run's level
    names), else None."""
    if not levels:
        return None
    by_name = dict(zip(stored.get("levels") or [], stored.get("level_indices") or []))
    out = set()
    for level in levels:
        if isinstance(level, int) and level >= 0:
            out.add(level)
        elif level in by_name:
            out.add(by_name[level])
        else:
            return None
    return sorted(out)


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
    return {"num_shards": n, "queued_operations": queued,
            "report": _shards_report(ctx.params.get("embeddings_field", "ood_embeddings"), n, queued,
                                     len(common.target_view(ctx)))}


def _shards_report(field, n, queued, num_target):
    """The result view of a sharded run: what was queued, how to start the workers, where to follow them."""
    return common.report(
        f"{n} delegated operations queued for embeddings `{field}` (one slice of the target each)",
        [("target", f"{num_target:,} samples, about {-(-num_target // n):,} per shard"),
         ("queued operations", ", ".join(f"`{q}`" for q in queued))],
        [f"start the workers: run `fiftyone delegated launch` in {n} terminals (same database) to compute the "
         f"{n} shards side by side; one worker runs them one after the other",
         "follow them: `fiftyone delegated list` (queued / running / completed, with progress), or the App's "
         "runs page",
         f"the last shard to finish completes the field `{field}` and its run; a failed shard is redone by "
         "running its operation again, or by one run without shards (it computes whatever is missing)"],
    )


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
