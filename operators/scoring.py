"""Operator: score OOD-ness or label issues from stored embeddings."""

import fiftyone.operators.types as types

from ood_core.detectors.transductive import decision_line, decision_sentence
from ood_core.fo import form_cache
from ood_core.fo.scores import DEFAULT_N_COMPONENTS

from . import base as common
from .field_inputs import add_hidden_labels_warning
from .markdown import code


def _reductions():
    """The 'Reduction' choices: none, then the SDK's reducers (:data:`ood_core.reduction.REDUCERS`)."""
    from ood_core.reduction import REDUCERS

    return ("none", *REDUCERS)


def _method_choices():
    """Dropdown of the registered detectors: the default first, then the other OOD methods, then the wrong-label
    ones, each "<task>: <name>" with its one-line help."""
    import re

    from ood_core.detectors import detector_class, detector_names

    default = common.sdk_default("compute_ood_scores", "method")
    ordered = sorted(detector_names(), key=lambda n: (n != default, detector_class(n).task != "ood"))
    dropdown = types.DropdownView()
    for name in ordered:
        cls = detector_class(name)
        task = "OOD" if cls.task == "ood" else "Wrong labels"
        label = cls.label.replace(" (default)", "") + (" (default)" if name == default else "")
        # a keyword argument the form does not offer is left out of the help ("needs labels unless x=False")
        summary = re.sub(r" unless \w+=\w+", "", cls.summary)
        dropdown.add_choice(name, label=f"{task}: {label}", description=summary)
    return dropdown


class ScoreOOD(common.OODOperator):
    name = "score_ood"
    label = "OOD: score samples"
    description = ("k-NN / Mahalanobis / LOF OOD scores or per-class label-issue scores (higher = more suspicious)")
    icon = "troubleshoot"
    positional_params = ("embeddings_field", "score_field")

    def resolve_input(self, ctx):
        from ood_core.detectors import detector_class, requires_labels
        from ood_core.fo import inventory

        inputs = types.Object()
        target = common.target_view(ctx)
        if not common.add_target_input(inputs, ctx, "Score"):
            return types.Property(inputs)
        target_ok = common.add_target_size_check(inputs, target)
        dataset = ctx.dataset
        if not inventory.embedding_choices(dataset):
            warning = inputs.view("no_embeddings", types.Warning(
                label="No embeddings yet",
                description="Run 'OOD: compute pyramid embeddings' first (or 'OOD: audit dataset', which does both)"))
            common.invalidate(warning, "no embeddings run or vector field on this dataset")
            return types.Property(inputs)
        embeddings = common.add_embeddings_choice(inputs, ctx, target)
        methods = _method_choices()
        default_method = common.sdk_default("compute_ood_scores", "method")
        inputs.enum("method", methods.values(), default=default_method, label="Method", view=methods,
                    description="OOD methods score images unlike the reference; wrong-label methods need a label field")
        method = ctx.params.get("method") or default_method
        if not isinstance(method, str) or method not in methods.values():  # a stale or typed value: not offered
            common.invalidate(inputs.properties["method"], f"unknown method {method!r}: pick one of "
                                                           + ", ".join(repr(m) for m in methods.values()))
            return types.Property(inputs, view=types.View(label=self.label))
        detector = detector_class(method)
        label_task = detector.task == "label_issues"
        # image-level embeddings go with image labels; object embeddings with the labels of their own objects
        patches = inventory.embeddings_patches_field(dataset, embeddings) if embeddings else None
        label_fields = [patches] if patches else common.label_fields(dataset, detections=False)
        needs_labels = requires_labels(method)
        optional = "" if needs_labels else (
            "; optional: the trusted samples' labels improve this method's scores (give them when you have them)"
            if detector.accepts_optional_labels else "")
        # preselected whenever the method uses labels (needs them, or scores per class with them), as the audit
        label_default = (patches or inventory.default_label_field(dataset)) if (
            needs_labels or detector.accepts_optional_labels) else None
        whose = (f"The objects' own labels ('{patches}': the embeddings are theirs)" if patches
                 else "Image labels (a Classification field; object labels go with object embeddings)")
        prop = common.add_field_choice(inputs, "label_field", label_fields, label="Label field",
                                       description=whose + optional, required=needs_labels, default=label_default)
        if needs_labels and not label_fields:
            common.invalidate(prop, _no_label_field(dataset, method))
        label_field = common.check_label_field(prop, dataset, ctx.params.get("label_field", label_default),
                                               label_fields)  # None when refused: the other checks go without
        label_field = common.check_label_pairing(prop, dataset, label_field, embeddings, patches, label_fields)
        if needs_labels:  # the App's sidebar filter may hide labels of the target (read as unlabelled)
            add_hidden_labels_warning(inputs, target, label_field)
        reference_tag = None if label_task else _add_reference_input(inputs, ctx, target, method, label_field)
        index = method == "knn" and _add_index_choice(inputs, ctx, embeddings)
        # the detector is fitted on the reference, else on the target (an index holds its own reference)
        fit_view = dataset.match_tags(reference_tag) if reference_tag else (None if index or not target_ok else target)
        num_fit = _check_fit_set(inputs, method, fit_view, embeddings, patches, reference_tag)
        if "k" in detector.default_params():
            k_prop = _add_k_input(inputs, ctx, _index_k({}) if index else common.detector_default(method, "k"))
            # the labels the run will use: those in the params (the App fills in the preselected default; an
            # operator called from Python without label_field scores without labels, as the SDK does)
            _check_k(k_prop, ctx, method, fit_view if num_fit else None, embeddings, num_fit, reference_tag, index,
                     label_field if ctx.params.get("label_field") else None)
        key = common.add_new_key(inputs, ctx, "score_field", label="Score field",
                                 default=common.sdk_default("compute_label_issues" if label_task
                                                            else "compute_ood_scores", "score_field"),
                                 description="Float field for the scores (higher = more suspicious); its run is "
                                             "recorded under the same name (OOD: manage runs lists it)",
                                 field_paths=lambda v: _score_paths(ctx, v, embeddings, label_field),
                                 kind="label_issues" if label_task else "ood_scores",
                                 reads=[embeddings, label_field])
        _add_reduction_inputs(inputs, ctx, fit_view if num_fit else None, embeddings, patches)
        _check_replacing_from_a_view(key, ctx, target, method, reference_tag and num_fit and fit_view,
                                     embeddings, patches, label_field)
        # a refused 'Reduction' of the hidden advanced group, with its label (not 'Reduced dimensions': its check
        # reads the preselected reference tag, which a Python call that gives none does not use)
        common.surface_hidden_errors(inputs, only=("reduce",))
        common.add_overwrite_input(inputs, ctx)
        common.add_delegation_input(inputs, ctx)
        return types.Property(inputs, view=types.View(label=self.label))

    def run(self, ctx):
        import ood_core as ood
        from ood_core.detectors import detector_class, detector_names
        from ood_core.fo import inventory

        p = ctx.params
        reduce = common.choice_param(p, "reduce", _reductions(), "none")
        method = common.choice_param(p, "method", detector_names(), common.sdk_default("compute_ood_scores", "method"))
        target = common.target_view(ctx)
        keep = ("run_key", "field", "method", "num_scored", "num_skipped", "density_ratio", "component_gate",
                "label_suspects", "label_lda_issues", "uncovered_classes")
        if method == "knn" and p.get("similarity_index"):
            summary = ood.compute_knn_scores_with_index(
                target,
                p["embeddings_field"],
                p.get("score_field", "ood_score"),
                brain_key=p["similarity_index"],
                reference=p.get("reference_tag") or None,
                k=_index_k(p),
                overwrite=common.flag_param(p, "overwrite", False),
                progress=common.progress_callback(ctx),
            )
            return common.finish(ctx, summary, keep=keep, report=score_report(summary, p["embeddings_field"],
                                                                               run_info=_run_info(ctx, summary)))
        label_field = p.get("label_field") or None
        # the form hides 'Reference tag' for wrong-label methods: a value left from another method must not count
        reference = None if detector_class(method).task == "label_issues" else p.get("reference_tag") or None
        summary = ood.compute_ood_scores(
            target,
            p["embeddings_field"],
            p.get("score_field", "ood_score"),
            method=method,
            reference=reference,
            label_field=label_field,
            # the embeddings say what is scored (the SDK refuses another label field than the objects')
            patches_field=inventory.embeddings_patches_field(ctx.dataset, p["embeddings_field"]),
            k=_k_param(p),
            reduce=None if reduce == "none" else reduce,
            n_components=None if reduce == "none" else common.int_param(p, "n_components", DEFAULT_N_COMPONENTS),
            overwrite=common.flag_param(p, "overwrite", False),
            progress=common.progress_callback(ctx),
        )
        return common.finish(ctx, summary, keep=keep,
                             report=score_report(summary, p["embeddings_field"], label_field,
                                                 run_info=_run_info(ctx, summary)))

    def to_form_params(self, *, reduce=None, **params):
        """``op(view, "ood_embeddings", "ood_score", method="knn", reference_tag="trusted", ...)``."""
        return dict(params, reduce=reduce or "none")

def score_report(summary, embeddings_field, label_field=None, run_info=None):
    """The result view of a score run: what was written, what was skipped, where to look next (``run_info``: the
    run's record, for the k the detector used, the reference size and the p-value field)."""
    from ood_core.fo.class_coverage import uncovered_classes_sentence

    field = summary["field"]
    item = "objects" if ".detections." in field else "samples"
    scored, skipped = summary.get("num_scored", 0), summary.get("num_skipped", 0)
    info = run_info or {}
    calibration = (info.get("calibration") or {}).get("field") or summary.get("calibration")
    return common.report(
        f"Scores written to `{field}` (higher = more suspicious)",
        [("method", summary.get("method")),
         ("k (neighbours)", _k_line(info, item)),
         ("reference", _reference_line(info, item)),
         ("p-values", _p_value_line(calibration, info, item)),
         ("in plain words", decision_sentence(summary.get("density_ratio"), item)),
         ("scored-set density ratio", decision_line(summary.get("density_ratio"))),
         ("feature levels", _gate_line(summary.get("component_gate"))),
         ("second vote", _suspects_line(summary.get("label_suspects"), item)),
         ("second LDA", _lda_issues_line(summary.get("label_lda_issues"), item)),
         ("suggested labels", _suggestion_line(info.get("suggestion"), item)),
         (f"{item} scored", f"{scored:,} of {scored + skipped:,}"),
         (f"{item} skipped", None if not skipped else
          f"{skipped:,} without an embedding in `{embeddings_field}`{_or_label(summary, label_field)}"),
         ("scores", _spread_line(summary, info, item)),
         ("warning", uncovered_classes_sentence(summary["uncovered_classes"], label_field)
          if summary.get("uncovered_classes") else None)],
        [*common.review_steps(field), f"colour the Embeddings panel by `{field}`"],
    )


def _or_label(summary, label_field):
    """What else a skipped item lacks: a label, for a method that needs them (e.g. hidden by the App's filter)."""
    from ood_core.detectors import detector_names, requires_labels

    method = summary.get("method")
    uses = label_field and method in detector_names() and requires_labels(method)
    return f" or a label in `{label_field}`" if uses else ""


def _run_info(ctx, summary):
    """The record of the score run just written (``{}`` when it cannot be read)."""
    from ood_core.fo import runs as fo_runs

    try:
        return fo_runs.get_ood_run_info(ctx.dataset, summary["run_key"])
    except (KeyError, ValueError):
        return {}


def _k_line(info, item):
    """The k the detector used, and what 'auto' sized it from (None: the method has no k): the classes of the
    labels when the run had a label field, else the number of items; of the trusted items, else of the scored
    ones (the run's record: ``reference``, ``label_field``)."""
    fitted, params = info.get("detector_fitted") or {}, info.get("detector") or {}
    k = fitted.get("k", params.get("k"))
    if not isinstance(k, int):
        return None
    per_class = fitted.get("k_per_class")
    spread = f" ({per_class['min']} to {per_class['max']} per class)" if per_class else ""
    if params.get("k") != "auto":
        return f"{k}{spread}"
    trusted = bool((info.get("reference") or {}).get("num_reference"))
    if info.get("label_field"):
        basis = "the trusted classes" if trusted else f"the classes of the scored {item}"
    else:
        basis = f"the number of {'trusted' if trusted else 'scored'} {item}"
    return f"{k}{spread}, chosen by 'auto' from {basis}"


def _p_value_line(field, info, item):
    """Where the p-values are and what they rank against: the trusted items' leave-one-out scores, or without a
    reference the scored items' own (:func:`ood_core.fo.scores.score_arrays`; None: no p-values)."""
    if not field:
        return None
    if not info:
        return f"`{field}` (small = more unusual)"
    if (info.get("reference") or {}).get("num_reference"):
        return f"`{field}` (small = more unusual than the trusted {item})"
    return (f"`{field}` (small = more unusual than most of the scored {item}: without a trusted reference, each "
            f"score is ranked among the scored {item}' own scores)")


def _suggestion_line(suggestion, item):
    """Where the suggested labels went (None: the method suggests none)."""
    if not suggestion:
        return None
    n = suggestion.get("num_suggested", 0)
    if not n:
        return f"none: the votes favour the given label of every {item[:-1]}"
    return f"`{suggestion['field']}` on the {n:,} {item} whose votes favour another class than the given label"


def _reference_line(info, item):
    """What the detector was fitted on: the trusted items, or the scored set itself."""
    if not info:
        return None
    reference = info.get("reference") or {}
    n = reference.get("num_reference")
    if not n:
        return f"none: the scored {item} themselves, each scored with itself left out"
    return f"{n:,} trusted {item}" + (f" (tag {code(reference['tag'])})" if reference.get("tag") else "")


def _spread_line(summary, info, item="samples"):
    """The scores' median and 95th percentile; for the default detector, what its standardised scale means."""
    spread = common.score_spread(summary.get("score_quantiles"))
    if not spread or summary.get("method") != "pyramid_knn":
        return spread
    whom = f"the trusted {item}" if info.get("reference") else f"the scored {item}"
    return f"{spread} (0 = as typical as {whom}, 1 = one of their standard deviations further)"


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


def _lda_issues_line(num_issues, item):
    """How many items the refitted LDA left out (None: no refit in this run)."""
    if num_issues is None:
        return None
    return (f"fitted without the {num_issues:,} {item} that Confident Learning flags as likely mislabelled "
            "(averaged with the LDA of all)")


def _no_label_field(dataset, method):
    """Why a method that needs labels has no label field to offer with image embeddings (object embeddings offer
    their objects' field): this dataset has no Classification field; a Detections field's labels need the
    embeddings of its objects."""
    boxes = [f for f in common.label_fields(dataset) if f not in common.label_fields(dataset, detections=False)]
    objects = (f"; to check the labels of the objects of {boxes[0]!r}, choose their object embeddings in "
               f"'Embeddings' (or compute them: 'OOD: compute pyramid embeddings' with 'Objects field' "
               f"{boxes[0]!r})") if boxes else ""
    return (f"method {method!r} needs labels: with image embeddings, a Classification field, and this dataset has "
            f"none{objects}")


def _score_paths(ctx, value, embeddings_field=None, label_field=None):
    from ood_core.fo import inventory

    patches = inventory.embeddings_patches_field(ctx.dataset, embeddings_field) if embeddings_field else None
    if patches:
        return [f"{patches}.detections.{value}"]
    if label_field:
        import fiftyone.core.labels as fol

        f = ctx.dataset.get_field(label_field)
        if getattr(f, "document_type", None) is fol.Detections:
            return [f"{label_field}.detections.{value}"]
    return [value]


def _add_reference_input(inputs, ctx, target, method, label_field):
    """The reference tag (trusted samples) and the uncovered-classes warning; returns the chosen tag or None."""
    from ood_core.detectors import make_detector
    from ood_core.fo import inventory

    tag_counts = form_cache.tag_counts(ctx.dataset)
    tags = sorted(tag_counts)
    default_tag = inventory.default_reference_tag(ctx.dataset, tag_counts)
    common.add_field_choice(inputs, "reference_tag", tags, label="Reference tag (trusted samples)",
                            description="Fit on samples with this tag; empty = unsupervised on the target",
                            required=False, default=default_tag)
    # as the run reads it: absent (a Python call without reference_tag) is no reference, not the preselected tag
    # (the App sends the preselected tag in the params, so its form checks the tag it shows)
    tag = ctx.params.get("reference_tag") or None
    if tag and tag not in tags:  # removed since the form opened, or typed: not "compute embeddings for them"
        common.invalidate(inputs.properties["reference_tag"], f"no sample is tagged {tag!r} (removed since the form "
                                                              "opened?): choose another tag, or leave it empty to fit "
                                                              "on the target itself (unsupervised)")
        return None
    if make_detector(method).uses_reference_classes:  # per-class search or statistics
        common.add_uncovered_classes_warning(inputs, target, tag, label_field)
    return tag


def _add_k_input(inputs, ctx, default):
    """k: a whole number; for detectors that size k from the reference (default ``auto``) empty = auto."""
    if isinstance(default, int):
        return inputs.int("k", default=default, label="k (neighbours)")  # checked by _check_k, as the run does
    return inputs.int("k", required=False, label="k (neighbours)",
                      description=f"Empty = {default!r}: sized from the trusted classes (recommended); or a whole "
                                  "number")


def _check_replacing_from_a_view(prop, ctx, target, method, reference, embeddings, patches, label_field):
    """Overwriting a score run from a view: what the SDK refuses before scoring is refused on the score field
    (:func:`ood_core.fo.view_overwrite.refuse_before_scoring`): a wrong-label run, an OOD run without a trusted
    reference (now or before), one whose density ratio was used, or other settings than the run's (embeddings,
    labels, detector parameters, the trusted samples). ``reference``: the reference view when the form accepted
    it (else its settings are left out). Whether a new OOD run uses the ratio is known only once it is computed:
    the run refuses it then, before writing."""
    from ood_core.detectors import detector_class
    from ood_core.fo.items import is_whole_dataset
    from ood_core.fo.scores import planned_settings
    from ood_core.fo.view_overwrite import refuse_before_scoring, refuse_scored_set_dependence

    key = ctx.params.get("score_field") or prop.default
    if prop.invalid or not ctx.params.get("overwrite") or ctx.dataset is None or not ctx.dataset.has_run(key) \
            or is_whole_dataset(target):
        return
    label_task = detector_class(method).task == "label_issues"
    if label_task or not embeddings or not reference or ctx.params.get("similarity_index"):
        common.check_input(prop, refuse_scored_set_dependence, ctx.dataset, key,
                           "label_issues" if label_task else "ood_scores",
                           {"reference": ctx.params.get("reference_tag") or None})
        return
    from ood_core.fo.runs import embedding_run_config
    from ood_core.fo.scores import embedded_items

    p = ctx.params
    num_reference, dim = form_cache.memo(reference, "embedded_items", embedded_items, embeddings, patches)
    reference_info = form_cache.memo(reference, "reference_description", _reference_description, p["reference_tag"])
    reduce = p.get("reduce")
    try:
        settings = planned_settings(target, embeddings, method=method,
                                    reference_info=dict(reference_info, num_reference=num_reference),
                                    label_field=label_field if p.get("label_field") else None, k=_k_param(p),
                                    reduce=None if reduce in (None, "none") else reduce,
                                    n_components=common.int_param(p, "n_components", DEFAULT_N_COMPONENTS),
                                    backbone=embedding_run_config(target, embeddings), dim=dim)
    except ValueError:
        return  # a setting the form refuses on its own input
    common.check_input(prop, refuse_before_scoring, target, key, "ood_scores", settings)


def _reference_description(reference, tag):
    """The reference's description a score run records (:func:`ood_core.fo.runs.resolve_view`)."""
    from ood_core.fo.view_descriptions import resolve_view

    return resolve_view(reference, tag, "reference")[1]


def _check_fit_set(inputs, method, fit_view, embeddings, patches, reference_tag):
    """The fit set's own checks, before k's: a reference none of whose items has an embedding, and fewer than 2
    items whatever k (:func:`ood_core.fo.scores.check_fit_size`), refused on the reference tag (or on the form,
    for the target). Returns the number of items, or None when refused or not known here (``fit_view`` None)."""
    from ood_core.fo.scores import (MIN_FIT_ITEMS, check_fit_size, embedded_items, fit_set_words,
                                    missing_reference_embeddings)

    if embeddings is None or fit_view is None:
        return None
    num_fit, _ = form_cache.memo(fit_view, "embedded_items", embedded_items, embeddings, patches)
    if num_fit >= MIN_FIT_ITEMS:
        return num_fit
    if reference_tag and not num_fit:
        message = missing_reference_embeddings(reference_tag, embeddings, patches, fix="choose another tag")
    elif not num_fit:  # the target's coverage warning counts them
        message = (f"no {'object' if patches else 'sample'} of the target has an embedding in {embeddings!r}: "
                   "compute embeddings for the target first, or choose other embeddings")
    else:
        message = common.refusal(check_fit_size, num_fit, *fit_set_words(reference_tag, method))
    if reference_tag:
        common.invalidate(inputs.properties["reference_tag"], message)
    else:
        common.invalidate(inputs.view("fit_set_too_small", types.Warning(label="Too few items to fit on",
                                                                         description=message)), message)
    return None


def _check_k(prop, ctx, method, fit_view, embeddings, num_fit, reference_tag, index=False, label_field=None):
    """The SDK's k checks on the form's k: a whole number (:func:`_k_param`), below the ``num_fit`` items the
    detector is fitted on and, for per-class detectors, below what their classes give
    (:func:`ood_core.fo.scores.check_k_fits`; ``fit_view`` None: not known here, or refused)."""
    from ood_core.fo.scores import check_k_fits, fit_set_words

    k = common.check_input(prop, _index_k if index else _k_param, ctx.params)  # None: the detector's default
    if prop.invalid or embeddings is None or fit_view is None:
        return
    common.check_input(prop, check_k_fits, k, method, num_fit, *fit_set_words(reference_tag, method),
                       class_sizes=_class_sizes(fit_view, embeddings, label_field))


def _class_sizes(fit_view, embeddings, label_field):
    """Items per class of ``label_field`` among the fit set's items with an embedding (None: no labels)."""
    from fiftyone import ViewField as F

    kind = common.label_kind_or_none(fit_view, label_field)
    if kind is None:
        return None
    if kind == "classification":
        view, path = fit_view.exists(embeddings), f"{label_field}.label"
    else:  # object embeddings live on the objects of the label field
        path = f"{label_field}.detections.label"
        view = fit_view.filter_labels(label_field, F(embeddings) != None)  # noqa: E711
    return [n for label, n in form_cache.count_values(view, path).items() if label is not None]


def _k_param(params):
    """The k for the SDK: None (the detector's default, e.g. 'auto') when empty, else a whole number (``3.0``
    from the App's JSON or a Python call is 3)."""
    if params.get("k") == "auto":
        return None
    return common.int_param(params, "k", None)


def _index_k(params):
    """The k of a run through a similarity index: the form's, else the SDK's default for it (a whole number:
    :func:`ood_core.compute_knn_scores_with_index` has no 'auto')."""
    return _k_param(params) or common.sdk_default("compute_knn_scores_with_index", "k")


def _add_reduction_inputs(inputs, ctx, fit_view, embeddings, patches):
    """The reduction choice (advanced); *Reduced dimensions* is checked as the reducer checks the fit set."""
    from ood_core.fo.scores import check_reduction, embedded_items

    adv = common.advanced_inputs(inputs, ctx, label="Show advanced settings (dimensionality reduction)")
    prop = common.enum_input(adv, "reduce", _reductions(), ctx, default="none", label="Reduction",
                             description="Optional dimensionality reduction fitted on the reference set")
    reduce = ctx.params.get("reduce", "none")
    if prop.invalid or reduce in (None, "", "none"):
        return
    prop = adv.int("n_components", default=DEFAULT_N_COMPONENTS, label="Reduced dimensions")
    n_components = common.check_input(prop, common.int_param, ctx.params, "n_components", DEFAULT_N_COMPONENTS)
    if n_components is None or embeddings is None or fit_view is None:  # None: the fit set is refused or unknown
        return
    num_fit, dim = embedded_items(fit_view, embeddings, patches)
    if num_fit:
        common.check_input(prop, check_reduction, reduce, n_components, num_fit, dim)


def _add_index_choice(inputs, ctx, embeddings):
    """The similarity indexes the k-NN run can query for ``embeddings`` (shown only when the dataset has one);
    the others are named in a notice with the SDK's reason, and refused on the field when chosen anyway.
    Returns whether the run goes through an index."""
    usable, refused = _similarity_indexes(ctx.dataset, embeddings)
    chosen = ctx.params.get("similarity_index")
    if usable or chosen:
        prop = common.add_field_choice(
            inputs, "similarity_index", usable, label="Similarity index (optional)", required=False,
            description="Query this FiftyOne Brain similarity index (pgvector, Milvus, ...) for the "
                        "neighbours instead of searching in memory; the index holds the reference")
        if isinstance(chosen, str) and chosen in refused:
            common.invalidate(prop, f"similarity index {chosen!r} cannot be used: {refused[chosen]}; leave "
                                    "'Similarity index' empty to search in memory")
        elif chosen and chosen not in usable:  # deleted since the form opened, typed, or no key (a Python call)
            pick = f"pick {' or '.join(repr(key) for key in usable)}, or " if usable else ""
            common.invalidate(prop, f"similarity_index={chosen!r} is not among this dataset's similarity indexes "
                                    f"for {embeddings!r} (deleted since the form opened?): {pick}leave 'Similarity "
                                    "index' empty to search in memory")
    if refused:
        inputs.view("similarity_index_refused", types.Notice(
            label=f"Similarity index{'es' if len(refused) > 1 else ''} not offered: "
                  + "; ".join(f"{key!r}: {why}" for key, why in refused.items()),
            description="Build one with ood.compute_knn_scores_with_index(view, embeddings_field, score_field, "
                        "reference='trusted', brain_key='...', backend='pgvector', ...) (README: 'Neighbours "
                        "from a vector database')"))
    return bool(chosen)


def _similarity_indexes(dataset, embeddings_field):
    """``(usable brain keys, {brain key: why not})`` of the dataset's similarity indexes for k-NN scores of
    ``embeddings_field``, by the checks the SDK applies when it opens an index (backend and metric:
    :func:`ood_core.fo.similarity.index_metric`, then the embeddings field the index holds)."""
    from types import SimpleNamespace

    from ood_core.errors import OODInputError
    from ood_core.fo.similarity import index_metric

    usable, refused = [], {}
    for key in dataset.list_brain_runs():
        config = dataset.get_brain_info(key).config
        if getattr(config, "type", None) != "similarity":
            continue
        stored = getattr(config, "embeddings_field", None) or _index_built_from(dataset, key)
        try:
            index_metric(SimpleNamespace(config=config))  # reads the config only: no connection to the backend
        except OODInputError as e:
            refused[key] = str(e)
            continue
        if stored is not None and stored != embeddings_field:
            refused[key] = f"it holds embeddings of field {stored!r}, not {embeddings_field!r}"
        else:
            usable.append(key)
    return usable, refused


def _index_built_from(dataset, brain_key):
    """The embeddings field an index built by ``compute_knn_scores_with_index`` holds (its Brain config names
    none: the embeddings are uploaded): that of the oldest score run of this plugin that used the index."""
    from ood_core.fo import runs as fo_runs

    used = []
    for key in fo_runs.list_ood_runs(dataset, kind="ood_scores"):
        info = fo_runs.get_ood_run_info(dataset, key)
        if (info.get("similarity") or {}).get("brain_key") == brain_key:
            used.append((info["timestamp"], info.get("embeddings_field")))
    return min(used)[1] if used else None
