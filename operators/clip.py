"""Operators: zero-shot (NegLabel) and few-shot (RAP) OOD scores with CLIP negative labels."""

import fiftyone.operators.types as types

from ood_core.fo import form_cache

from . import base as common
from . import clip_params
from .field_inputs import (check_clip_embeddings_choice, check_clip_encoder_inputs, check_offered_label_field,
                           check_tag_choice, clip_embedding_runs)


# --------------------------------------------------------------------------- shared form parts


def _add_id_inputs(inputs, ctx):
    """ID classes: the classes of a label field, or comma-separated names."""
    label_fields = common.label_fields(ctx.dataset)
    default = "label_field" if label_fields else "labels"
    source = clip_params.add_choice(inputs, ctx, "id_source", {"label_field": "Classes of a label field",
                                                               "labels": "Comma-separated class names"},
                                    default=default, label="In-distribution classes")
    if source.invalid:
        return
    if clip_params.by_label_field(ctx.params, default):
        from ood_core.fo import inventory

        preselected = inventory.default_label_field(ctx.dataset)
        prop = common.add_field_choice(inputs, "label_field", label_fields, label="Label field",
                                       description="Its classes are the in-distribution (ID) classes",
                                       default=preselected)
        if not label_fields:
            common.invalidate(prop, "this dataset has no Classification or Detections field; type the class names "
                                    "instead")
        # a field deleted since the form opened (or typed): the SDK's reason, on the field; then its classes
        elif check_offered_label_field(prop, ctx.dataset, ctx.params.get("label_field"), label_fields) or \
                "label_field" not in ctx.params:
            clip_params.check_label_field_classes(prop, ctx.dataset, ctx.params.get("label_field", preselected))
    else:
        prop = inputs.str("id_labels", required=True, label="ID class names",
                          description="Comma-separated, e.g. 'dog, cat, sports car'")
        value = ctx.params.get("id_labels")
        if value is not None and not clip_params.parse_labels(value):
            common.invalidate(prop, "give at least one class name")
        elif value is not None:  # duplicates (up to case), names of punctuation only: the run's check
            from ood_core.clip.neglabel import check_id_names

            common.check_input(prop, check_id_names, clip_params.parse_labels(value))


def _add_model_inputs(inputs, ctx):
    runs = clip_embedding_runs(ctx.dataset)
    prop = common.add_field_choice(
        inputs, "embeddings_field", runs, label="Stored CLIP embeddings (optional)", required=False,
        description="Reuse stored CLIP image embeddings; empty = encode the images now. They are made in Python "
                    "(no App operator): ood.compute_clip_embeddings(dataset, 'clip_embeddings')",
    )
    if check_clip_embeddings_choice(prop, ctx.dataset, ctx.params.get("embeddings_field"), runs) and \
            ctx.params.get("embeddings_field"):  # embeddings of other samples only: the run's refusal, on the input
        from ood_core.fo.clip_common import check_clip_embeddings_cover

        problem = form_cache.refusal(common.target_view(ctx), check_clip_embeddings_cover,
                                     ctx.params["embeddings_field"])
        if problem:
            common.invalidate(prop, f"{problem}. In this form: leave 'Stored CLIP embeddings' empty to encode the "
                                    "images now")
    inputs.str("model_name", default="", required=False, label="CLIP model",
               description="open_clip architecture, e.g. 'ViT-B-16'; empty = ViT-B-16 (or the embeddings run's)")
    common.add_file_input(inputs, ctx, "weights", label="CLIP weights", may_be_tag=True,
                          description="Local .safetensors/.pt file (in an allowed folder), or an open_clip tag such "
                                      "as 'openai' (needs the hub or its cache); empty = 'openai' (or the "
                                      "embeddings run's)")
    inputs.bool("quick_gelu", default=False, label="QuickGELU",
                description="Tick for OpenAI weights loaded from a file (the 'openai' tag sets it itself)",
                view=types.CheckboxView())
    common.add_file_input(inputs, ctx, "word_list", label="Word list file (optional)",
                          description="One candidate word per line (optional '<TAB>noun|adj'), in an allowed "
                                      "folder; empty = WordNet nouns and adjectives (Debian wordnet-base or NLTK "
                                      "data)")
    check_clip_encoder_inputs(inputs, ctx)  # an encoder the run cannot build, or not the stored embeddings'


def _add_grouping_inputs(inputs, ctx, function, counts):
    """tau, num_groups (checked against the negative labels the run would use: ``counts`` are the
    ``num_negatives`` / ``fraction`` / ``removes_id_names`` the SDK function ``function`` gets) and the seed
    (``inputs``: the advanced group, shown or hidden: :func:`operators.base.surface_hidden_errors`)."""
    p = ctx.params
    common.check_range(inputs.float("tau", default=0.01, label="Temperature tau",
                                    description="Softmax temperature (paper: 0.01)"),
                       p.get("tau"), low=0, low_open=True, what="tau")
    groups = common.check_range(inputs.int("num_groups", default=common.sdk_default(function, "num_groups"),
                                           label="Negative-label groups",
                                           description="Groups averaged (paper: 100); at most the number of "
                                                       "negatives"),
                                p.get("num_groups"), low=1, what="num_groups")
    if not groups.invalid:
        _check_num_groups(groups, ctx, function, counts)
    common.check_range(inputs.int("seed", default=0, label="Seed"), p.get("seed"), low=0, what="seed")


def _check_num_groups(prop, ctx, function, counts):
    """The SDK's count check (:func:`ood_core.fo.clip_vocabulary.check_counts_early`) on *num_groups* when the
    candidate words are a word-list file; with WordNet (whose first read takes seconds, too long for a form) only
    the bound every run has: at most ``num_negatives`` negative labels."""
    from ood_core.fo.clip_vocabulary import check_counts_early

    num_groups = common.check_input(prop, common.int_param, ctx.params, "num_groups",
                                    common.sdk_default(function, "num_groups"))
    if num_groups is None or counts is None:
        return
    lexicon = _form_lexicon(ctx, function)
    if lexicon is not None:
        id_names = _form_id_names(ctx)  # words naming them are never mined, whether or not the pool keeps them
        # tau has its own field and check: a valid stand-in keeps its error off this field
        # (num_negatives beyond the candidate words is refused on its own field: _check_num_negatives)
        common.check_input(prop, check_counts_early, lexicon, id_names, num_groups=num_groups, tau=1.0,
                           caps_num_negatives=True, **counts)
    elif counts.get("num_negatives") and num_groups > counts["num_negatives"]:
        common.invalidate(prop, f"num_groups={num_groups} is larger than num_negatives={counts['num_negatives']}: "
                                "every group needs at least one negative label; lower num_groups or raise "
                                "num_negatives")


def _form_lexicon(ctx, function):
    """The candidate words of the form's word-list file, read as the run reads them (memoised for the run);
    None for WordNet or a file the word-list field refuses."""
    from ood_core.errors import OODError
    from ood_core.fo.clip_vocabulary import load_vocabulary
    from ood_core.paths import check_app_file

    try:
        path = check_app_file(ctx.params.get("word_list"), "word_list")
        if path is None:
            return None
        return load_vocabulary(path, None, common.sdk_default(function, "cross_pos"),
                               common.sdk_default(function, "parts_of_speech"), None,
                               ctx.params.get("vocabulary", common.sdk_default(function, "vocabulary")))
    except OODError:  # a missing or unreadable file: the run says so
        return None


def _form_id_names(ctx):
    """The ID class names of the form (as the run resolves them), or [] when they cannot be told yet."""
    import warnings

    from ood_core.errors import OODError
    from ood_core.fo.clip_vocabulary import resolve_id_labels

    try:
        kwargs = clip_params.id_kwargs(ctx.params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "only one ID class": the run warns
            return resolve_id_labels(common.target_view(ctx), kwargs["id_labels"], kwargs["label_field"])
    except OODError:
        return []


def _picks_k_per_class(params):
    """Whether RAP's form picks k per class of a label field (False when its few-shot mode is refused)."""
    from ood_core.errors import OODError

    try:
        return clip_params.picks_k_per_class(params)
    except OODError:
        return False


# --------------------------------------------------------------------------- NegLabel


def _add_neglabel_inputs(inputs, ctx, function):
    """The target's size, ID classes, model, and NegLabel's mining choices under the advanced switch (shared by
    NegLabel and AdaNeg: ``function``, the SDK function); returns the advanced group for the caller's own
    hyper-parameters."""
    p = ctx.params
    common.add_target_size_check(inputs, common.target_view(ctx))
    _add_id_inputs(inputs, ctx)
    _add_model_inputs(inputs, ctx)
    adv = _paper_settings(inputs, ctx)
    negatives = common.check_range(
        adv.int("num_negatives", required=False, label="Number of negative labels (optional)",
                description="Empty = the least ID-like 15% of each part of speech (the paper's rule)"),
        p.get("num_negatives"), low=1, what="num_negatives")
    if not negatives.invalid:
        _check_num_negatives(negatives, ctx, function)
    if not p.get("num_negatives"):
        common.check_range(adv.float("fraction", default=0.15, label="Share of candidates kept",
                                     description="Per part of speech (paper: 0.15)"),
                           p.get("fraction"), low=0, low_open=True, high=1, what="fraction")
    common.check_range(adv.float("percentile", default=95.0, label="Mining percentile",
                                 description="Of each candidate's similarities to the ID labels (paper: 95)"),
                       p.get("percentile"), low=0, high=100, what="percentile")
    _add_neglabel_protocol_inputs(adv, ctx)
    return adv


def _check_num_negatives(prop, ctx, function):
    """NegLabel mines at most every candidate word: with a word-list file, a larger *num_negatives* is refused
    as the run refuses it (WordNet is not read by the form: see :func:`_check_num_groups`)."""
    num_negatives = common.int_param(ctx.params, "num_negatives", None)
    lexicon = _form_lexicon(ctx, function) if num_negatives else None
    if lexicon is None:
        return
    from ood_core.fo.clip_vocabulary import check_num_negatives

    removes = bool(ctx.params.get("remove_id_names", False))
    minable = lexicon.without(_form_id_names(ctx))  # never mined, whether or not the pool keeps them
    candidates = len(minable if removes else lexicon)
    common.check_input(prop, check_num_negatives, num_negatives, candidates, removes, len(minable))


def _paper_settings(inputs, ctx):
    """The papers' hyper-parameters sit behind one switch (the defaults follow the papers)."""
    return common.advanced_inputs(inputs, ctx, label="Show the papers' hyper-parameters (defaults follow them)")


def _neglabel_counts(p):
    """The negative-label counts a NegLabel / AdaNeg run gets (for :func:`_check_num_groups`); None when the
    form's values are not usable yet (their own fields say why)."""
    try:
        kwargs = clip_params.neglabel_kwargs(p)
    except ValueError:
        return None
    return dict(num_negatives=kwargs["num_negatives"], fraction=kwargs["fraction"],
                removes_id_names=kwargs["remove_id_names"])


def _add_neglabel_protocol_inputs(inputs, ctx):
    """The choices where the official NegLabel protocol and the older product defaults differ."""
    clip_params.add_choice(inputs, ctx, "vocabulary",
                      {"paper": "Paper (WordNet depictable nouns + adjectives, ~12.4k negatives)",
                       "all": "All of WordNet (~20.9k negatives)"},
                      default=common.sdk_default("compute_neglabel_scores", "vocabulary"),
                      label="WordNet vocabulary", description="Ignored with a word list file")
    inputs.bool("remove_id_names", default=False, label="Remove ID class names from the candidates",
                description="The official code keeps them (they are rarely mined: they are ID-like)",
                view=types.CheckboxView())
    clip_params.add_choice(inputs, ctx, "remainder", {"last": "Drop the most ID-like mined words (official)",
                                                 "random": "Leave a random remainder out of the groups"},
                      default=common.sdk_default("compute_neglabel_scores", "remainder"),
                      label="M mod groups remainder")


class ComputeNegLabelScores(common.OODOperator):
    name = "compute_neglabel_scores"
    label = "OOD: NegLabel zero-shot scores (CLIP)"
    description = ("Zero-shot OOD scores from CLIP and mined negative labels (NegLabel, ICLR 2024); "
                        "higher = more OOD")
    positional_params = ("score_field",)

    def resolve_input(self, ctx):
        inputs = types.Object()
        if common.add_target_refusal(inputs, ctx):
            return types.Property(inputs)
        adv = _add_neglabel_inputs(inputs, ctx, "compute_neglabel_scores")
        _add_grouping_inputs(adv, ctx, "compute_neglabel_scores", _neglabel_counts(ctx.params))
        common.add_output_inputs(inputs, ctx, "neglabel_score", "neglabel_prediction", "neglabel",
                                 reads=clip_params.read_fields(ctx.params))
        common.surface_hidden_errors(inputs)
        return types.Property(inputs, view=types.View(label=self.label))

    def run(self, ctx):
        import ood_core as ood

        summary = ood.compute_neglabel_scores(
            common.target_view(ctx),
            ctx.params.get("score_field", "neglabel_score"),
            **clip_params.neglabel_kwargs(ctx.params),
            **clip_params.common_kwargs(ctx, "neglabel_prediction"),
        )
        return common.finish(ctx, summary, keep=("run_key", "field", "prediction_field", "num_scored",
                                                 "num_skipped", "num_negatives", "score_quantiles"),
                             report=clip_report(summary, "NegLabel", ctx.params.get("embeddings_field") or None))

    def to_form_params(self, *, id_labels=None, label_field=None,
                       embeddings_field=None, model_name=None, weights=None, quick_gelu=False, word_list=None,
                       prediction_field="neglabel_prediction", **kwargs):
        """``op(view, label_field="ground_truth", ...)``: ``id_labels`` (a list) or ``label_field`` give
        the ID classes; ``weights`` is a local file or an open_clip tag. See
        :func:`ood_core.fo.neglabel.compute_neglabel_scores`."""
        clip_params.check_neglabel_call(kwargs)
        return clip_params.sdk_params(id_labels, label_field, embeddings_field, model_name, weights, quick_gelu,
                                      word_list, prediction_field=prediction_field or "", **kwargs)


# --------------------------------------------------------------------------- RAP


def _rap_default(param):
    return common.sdk_default("compute_rap_scores", param)


def _add_choice(inputs, ctx, name, choices, label, description=None):
    clip_params.add_choice(inputs, ctx, name, choices, default=_rap_default(name), label=label,
                           description=description)


def _add_rap_test_time_inputs(inputs, ctx):
    """u1/u2 (a preset of the paper's Table 1, optionally overridden), Q, retrieval, scoring order."""
    from ood_core.clip.rap_stream import U_PRESETS

    p = ctx.params
    clip_params.add_choice(inputs, ctx, "u_preset", {name: f"{name}: u1={low}, u2={high}"
                                                for name, (low, high) in U_PRESETS.items()},
                      default=_rap_default("u_preset"), label="u1/u2 preset (paper Table 1)",
                      view=types.DropdownView(), description="A sample with u1 <= S(x) <= u2 retrieves words")
    low = common.check_range(inputs.float("u1", required=False, label="u1 (optional: overrides the preset)"),
                             p.get("u1"), low=0, high=1, what="u1")
    prop = common.check_range(inputs.float("u2", required=False, label="u2 (optional: overrides the preset)"),
                              p.get("u2"), low=0, high=1, what="u2")
    u1, u2 = (None, None) if low.invalid or prop.invalid else (common.float_param(p, "u1", None),
                                                                common.float_param(p, "u2", None))
    if u1 is not None and u2 is not None and u1 > u2:
        common.invalidate(prop, "u2 must be >= u1")
    common.check_range(inputs.int("words_per_sample", default=4, label="Words retrieved per sample",
                                  description="Paper: Q = 4"),
                       p.get("words_per_sample"), low=1, what="words_per_sample")
    _add_choice(inputs, ctx, "retrieval", {"union": "Top-Q words united with the negatives (paper)",
                                      "new_only": "Q words that are not negatives yet"}, "Retrieval")
    _add_choice(inputs, ctx, "rescore", {"online": "Streaming: each batch scored after its own update (paper)",
                                    "final": "All samples scored with the final negatives"}, "Scores",
                description="Samples are processed in ascending sample id order")


def _add_few_shot_inputs(inputs, ctx):
    """The few-shot ID images: the samples of a tag, or k per class of a Classification field (the run's
    :func:`ood_core.fo.rap.compute_rap_scores` refuses other fields: the form refuses them on the field)."""
    p, dataset = ctx.params, ctx.dataset
    mode = clip_params.add_choice(inputs, ctx, "few_shot_mode", {"tag": "Samples with a tag",
                                                            "k_per_class": "k random samples per class of the "
                                                                           "label field"},
                             default="tag", label="Few-shot ID images")
    if mode.invalid:
        return
    if not clip_params.picks_k_per_class(p):
        tags = sorted(form_cache.tag_counts(dataset))
        prop = common.add_field_choice(inputs, "few_shot_tag", tags, label="Few-shot tag",
                                       description="In-distribution images tagged with this tag")
        if not tags:
            common.invalidate(prop, "no sample has a tag: tag a few in-distribution images, or pick k per class")
        else:  # a tag removed since the form opened
            check_tag_choice(prop, p.get("few_shot_tag"), tags, "pick k per class")
        return
    common.check_range(inputs.int("k_per_class", default=1, label="Images per class",
                                  description="Paper: 1 or 4, picked with the seed from the target view"),
                       p.get("k_per_class"), low=1, what="k_per_class")
    fields = common.label_fields(dataset, detections=False)
    if "label_field" not in inputs.properties:  # the ID classes are typed in: a field to pick the images by
        prop = common.add_field_choice(inputs, "label_field", fields, label="Label field for picking",
                                       description="Classification field whose labels pick the samples")
        if not fields:
            common.invalidate(prop, "picking k per class needs a Classification field; use a tag instead")
    common.check_label_field(inputs.properties["label_field"], dataset, _few_shot_label_field(ctx), fields,
                             kinds=("classification",), needs="picking k images per class (k_per_class)",
                             or_else="pick the few-shot images by tag")


def _few_shot_label_field(ctx):
    """The label field the run reads the few-shot images' classes from (the form's preselection when the App
    has not sent the field yet); None when the form does not show one (typed ID classes and a few-shot tag:
    a stale label field in the params is not the run's, :func:`operators.clip_params.id_kwargs`)."""
    from ood_core.errors import OODInputError
    from ood_core.fo import inventory

    p = ctx.params
    try:
        by_field = clip_params.by_label_field(p, "label_field" if common.label_fields(ctx.dataset) else "labels")
        if not by_field and not clip_params.picks_k_per_class(p):
            return None
    except OODInputError:  # a choice not offered: refused on its own input
        return None
    return p.get("label_field", inventory.default_label_field(ctx.dataset) if by_field else None)


def _check_crop_ranking(inputs, ctx):
    """The paper's crop ranking needs every few-shot image's class, which only a Classification field gives."""
    p = ctx.params
    if p.get("few_shot_mode", "tag") != "tag" or p.get("crop_ranking", _rap_default("crop_ranking")) != "own_class" \
            or inputs.properties["few_shot_mode"].invalid:
        return
    label_field = _few_shot_label_field(ctx)
    kind = common.label_kind_or_none(ctx.dataset, label_field)
    if kind == "classification":
        return
    which = (f", which {label_field!r} ({'a Detections field' if kind else 'not a label field'}) does not give: "
             "pick a Classification label field" if label_field else ": pick 'Classes of a label field'")
    warning = inputs.view("crop_ranking_needs_classes", types.Warning(
        label=f"The paper's crop ranking (by each image's own class prompt) needs the class of every few-shot "
              f"image{which}, or set 'Crop ranking' to 'By the best ID prompt' in the paper settings"))
    common.invalidate(warning, "crop_ranking='own_class' needs the few-shot images' classes")


class ComputeRAPScores(common.OODOperator):
    name = "compute_rap_scores"
    label = "OOD: RAP few-shot scores (CLIP)"
    description = ("Few-shot OOD scores with retrieval-augmented negative prompts and test-time updates "
                        "(RAP); higher = more OOD")
    positional_params = ("score_field",)

    def resolve_input(self, ctx):
        inputs = types.Object()
        if common.add_target_refusal(inputs, ctx):
            return types.Property(inputs)
        p = ctx.params
        common.add_target_size_check(inputs, common.target_view(ctx))
        _add_id_inputs(inputs, ctx)
        _add_few_shot_inputs(inputs, ctx)
        _add_model_inputs(inputs, ctx)
        inputs.bool("test_time", default=True, label="Test-time updates",
                    description="Untick for the paper's train-time-only ablation", view=types.CheckboxView())
        adv = _paper_settings(inputs, ctx)
        common.check_range(adv.int("num_crops", default=256, label="Crops per few-shot image",
                                   description="Paper: 256 (each crop is one CLIP forward pass; lower it on CPU)"),
                           p.get("num_crops"), low=1, what="num_crops")
        common.check_range(adv.int("num_keep", default=32, label="Crops kept per side", description="Paper: 32"),
                           p.get("num_keep"), low=1, what="num_keep")
        _add_choice(adv, ctx, "crop_ranking", {"own_class": "By the image's own class prompt (paper; needs a "
                                                       "Classification label field)",
                                          "all_prompts": "By the best ID prompt"}, "Crop ranking")
        _check_crop_ranking(inputs, ctx)
        adv.bool("flip", default=True, label="Mirror half of the crops", view=types.CheckboxView())
        common.check_range(adv.int("num_negatives", default=10000, label="Train-time negative labels",
                                   description="Paper: 10000 (capped at the vocabulary size)"),
                           p.get("num_negatives"), low=1, what="num_negatives")
        for name, default, label in (("lambda1", 0.2, "outlier crops, > 0"), ("lambda2", -0.2, "ID crops, < 0"),
                                     ("lambda3", -1.0, "ID prompts, < 0")):
            positive = default > 0  # the sign the paper's joint similarity gives the term
            common.check_range(adv.float(name, default=default, label=f"{name} ({label})"), p.get(name),
                               low=0 if positive else None, low_open=True, high=None if positive else 0,
                               high_open=True, what=name)
        common.check_range(adv.float("eta", default=5.0, label="eta (percent)", description="Paper: 5"),
                           p.get("eta"), low=0, high=100, what="eta")
        if p.get("test_time", True):
            _add_rap_test_time_inputs(adv, ctx)
        try:
            counts = dict(num_negatives=common.int_param(p, "num_negatives", _rap_default("num_negatives")),
                          fraction=None)  # as compute_rap_scores checks them
        except ValueError:
            counts = None
        _add_grouping_inputs(adv, ctx, "compute_rap_scores", counts)
        common.add_output_inputs(inputs, ctx, "rap_score", "rap_prediction", "rap",
                                 reads=clip_params.read_fields(p, _picks_k_per_class(p)))
        common.surface_hidden_errors(inputs)
        return types.Property(inputs, view=types.View(label=self.label))

    def run(self, ctx):
        import ood_core as ood
        from ood_core.clip.rap_crops import CROP_RANKINGS

        p = ctx.params
        by_tag = not clip_params.picks_k_per_class(p)
        summary = ood.compute_rap_scores(
            common.target_view(ctx),
            p.get("score_field", "rap_score"),
            few_shot=p.get("few_shot_tag") if by_tag else None,
            k_per_class=None if by_tag else common.int_param(p, "k_per_class", 1),
            num_crops=common.int_param(p, "num_crops", 256),
            num_keep=common.int_param(p, "num_keep", 32),
            lambdas=(common.float_param(p, "lambda1", 0.2), common.float_param(p, "lambda2", -0.2),
                     common.float_param(p, "lambda3", -1.0)),
            eta=common.float_param(p, "eta", 5.0),
            num_negatives=common.int_param(p, "num_negatives", 10000),
            crop_ranking=common.choice_param(p, "crop_ranking", CROP_RANKINGS, _rap_default("crop_ranking")),
            flip=common.flag_param(p, "flip", True),
            **clip_params.rap_test_time_kwargs(p),
            **clip_params.common_kwargs(ctx, "rap_prediction", label_field_shown=not by_tag),
        )
        return common.finish(ctx, summary, keep=("run_key", "field", "prediction_field", "num_scored",
                                                 "num_skipped", "num_few_shot", "num_train_negatives",
                                                 "num_test_negatives", "score_quantiles"),
                             report=clip_report(summary, "RAP", ctx.params.get("embeddings_field") or None))

    def to_form_params(self, *, few_shot_tag=None, k_per_class=None, id_labels=None,
                       label_field=None, embeddings_field=None, model_name=None, weights=None, quick_gelu=False,
                       word_list=None, lambdas=None, prediction_field="rap_prediction", **kwargs):
        """``op(view, few_shot_tag="fewshot", label_field="ground_truth", ...)``: the few-shot ID images
        are the samples tagged ``few_shot_tag``, or ``k_per_class`` random samples per class of
        ``label_field`` (not both: the form has no input for k per class of a tag's samples); ``lambdas``
        (three numbers) or the form's ``lambda1`` / ``lambda2`` / ``lambda3``. See
        :func:`ood_core.fo.rap.compute_rap_scores`."""
        clip_params.check_rap_call(few_shot_tag, k_per_class, kwargs)
        by_k = k_per_class is not None  # k_per_class=0 is refused by name by the run, not taken for a tag
        kwargs.update(clip_params.lambda_params(lambdas, kwargs))
        return clip_params.sdk_params(
            id_labels, label_field, embeddings_field, model_name, weights, quick_gelu, word_list,
            label_field_shown=by_k, few_shot_mode="k_per_class" if by_k else "tag",
            few_shot_tag=few_shot_tag, k_per_class=k_per_class, prediction_field=prediction_field or "", **kwargs,
        )


# --------------------------------------------------------------------------- AdaNeg


class ComputeAdaNegScores(common.OODOperator):
    name = "compute_adaneg_scores"
    label = "OOD: AdaNeg zero-shot scores (CLIP)"
    description = ("Zero-shot OOD scores: NegLabel plus adaptive proxies from a memory of test images "
                   "(AdaNeg, NeurIPS 2024); higher = more OOD")
    positional_params = ("score_field",)

    def resolve_input(self, ctx):
        inputs = types.Object()
        if common.add_target_refusal(inputs, ctx):
            return types.Property(inputs)
        p = ctx.params
        adv = _add_neglabel_inputs(inputs, ctx, "compute_adaneg_scores")
        common.check_range(adv.int("memory_size", default=_adaneg_default("memory_size"), label="Memory per label",
                                description="Image features kept per ID / negative label"),
                     p.get("memory_size"), low=1, what="memory_size")
        common.check_range(adv.float("gap", default=_adaneg_default("gap"), label="Caching gap",
                                  description="Cache a sample when NegLabel's S <= 0.5 - gap (OOD) or "
                                              ">= 0.5 + gap (ID); below 0.5"),
                     p.get("gap"), low=0, high=0.49, what="gap")
        common.check_range(adv.float("weight", default=_adaneg_default("weight"), label="Weight of the memory",
                                  description="0 = plain NegLabel"),
                     p.get("weight"), low=0, what="weight")
        _add_grouping_inputs(adv, ctx, "compute_adaneg_scores", _neglabel_counts(p))
        common.add_output_inputs(inputs, ctx, "adaneg_score", "adaneg_prediction", "adaneg",
                                 reads=clip_params.read_fields(ctx.params))
        common.surface_hidden_errors(inputs)
        return types.Property(inputs, view=types.View(label=self.label))

    def run(self, ctx):
        import ood_core as ood

        p = ctx.params
        summary = ood.compute_adaneg_scores(
            common.target_view(ctx),
            p.get("score_field", "adaneg_score"),
            memory_size=common.int_param(p, "memory_size", _adaneg_default("memory_size")),
            gap=common.float_param(p, "gap", _adaneg_default("gap")),
            weight=common.float_param(p, "weight", _adaneg_default("weight")),
            **clip_params.neglabel_kwargs(p),
            **clip_params.common_kwargs(ctx, "adaneg_prediction"),
        )
        return common.finish(ctx, summary, keep=("run_key", "field", "prediction_field", "num_scored",
                                                 "num_skipped", "num_negatives", "num_cached_ood",
                                                 "num_cached_id", "score_quantiles"),
                             report=clip_report(summary, "AdaNeg", ctx.params.get("embeddings_field") or None))

    def to_form_params(self, *, id_labels=None, label_field=None, embeddings_field=None, model_name=None,
                       weights=None, quick_gelu=False, word_list=None, prediction_field="adaneg_prediction",
                       **kwargs):
        """``op(view, label_field="ground_truth", ...)``: as the NegLabel operator, plus ``memory_size``,
        ``gap`` and ``weight``. See :func:`ood_core.fo.adaneg.compute_adaneg_scores`."""
        clip_params.check_neglabel_call(kwargs)
        return clip_params.sdk_params(id_labels, label_field, embeddings_field, model_name, weights, quick_gelu,
                                      word_list, prediction_field=prediction_field or "", **kwargs)


def _adaneg_default(param):
    return common.sdk_default("compute_adaneg_scores", param)


def clip_report(summary, method, embeddings_field=None):
    """The result view of a CLIP score run: the fields written, counts, the score spread, where to look next.

    ``embeddings_field``: the stored embeddings the run read; its skipped samples are those without one there
    (the images were not read), not unreadable images."""
    field = summary["field"]
    scored, skipped = summary.get("num_scored", 0), summary.get("num_skipped", 0)
    negatives = summary.get("num_negatives") or summary.get("num_train_negatives")
    return common.report(
        f"{method} scores written to `{field}` (higher = more OOD)",
        [("predicted in-distribution class", f"`{summary['prediction_field']}`" if summary.get("prediction_field")
          else None),
         ("samples scored", f"{scored:,} of {scored + skipped:,}"),
         ("samples skipped", None if not skipped else f"{skipped:,} without an embedding in `{embeddings_field}`"
          if embeddings_field else f"{skipped:,} (unreadable images)"),
         ("negative labels", f"{negatives:,}" if negatives else None),
         ("scores", common.score_spread(summary.get("score_quantiles")))],
        common.review_steps(field),
    )
