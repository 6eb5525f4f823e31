"""The CLIP operators' run parameters, read only from the inputs their form shows.

The App keeps the value of an input the form no longer shows (the label field after switching to typed class
names, the test-time settings after unticking them) in the params it sends; such a stale value must not change
the run. Choice (enum) inputs are checked here by name, with the allowed choices, for the form and the run
(FiftyOne's own check says only "Invalid enum value", and skips the inputs a form does not show).
"""

import fiftyone.operators.types as types

from . import base as common
from .field_inputs import id_labels_text

ID_SOURCES = ("label_field", "labels")
FEW_SHOT_MODES = ("tag", "k_per_class")
#: the inputs shown only when 'Test-time updates' is ticked (RAP)
TEST_TIME_INPUTS = ("u_preset", "u1", "u2", "words_per_sample", "retrieval", "rescore")


def add_choice(inputs, ctx, name, choices, *, default, label, view=None, description=None):
    """A radio group (or ``view``) of ``choices`` (``{value: label}``) whose value is checked on the input
    itself by the run's own check (``base.choice_param``); returns the property."""
    view = view or types.RadioGroup()
    for value, text in choices.items():
        view.add_choice(value, label=text)
    prop = inputs.enum(name, view.values(), default=default, label=label, view=view, description=description)
    common.check_input(prop, common.choice_param, ctx.params, name, tuple(choices), default)
    return prop


def parse_labels(value):
    """The comma-separated 'ID class names' text (or a list) as a list of names."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [s.strip() for s in str(value).split(",") if s.strip()]


def label_field_classes(samples, label_field):
    """The ID classes the run takes from ``label_field`` (its refusal: no labels, names that are duplicates up to
    case or empty), without the run's "only one class" warning."""
    import warnings

    from ood_core.fo.clip_vocabulary import resolve_id_labels

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return resolve_id_labels(samples, None, label_field)


def check_label_field_classes(prop, dataset, label_field):
    """Refuse on the 'Label field' input ``prop`` a field whose classes the run refuses as the ID classes (kept
    while the dataset is unchanged: the classes are one scan of the field)."""
    from ood_core.fo import form_cache

    problem = label_field and form_cache.refusal(dataset, label_field_classes, label_field)
    if problem:
        common.invalidate(prop, problem)


def by_label_field(params, default="label_field"):
    """Whether the form's ID classes are those of a label field (else typed names)."""
    return common.choice_param(params, "id_source", ID_SOURCES, default) == "label_field"


def picks_k_per_class(params):
    """Whether RAP's few-shot images are k per class of a label field (else the samples of a tag)."""
    return common.choice_param(params, "few_shot_mode", FEW_SHOT_MODES, "tag") == "k_per_class"


def id_kwargs(params, label_field_shown=False):
    """``id_labels`` / ``label_field`` as the form shows them: the typed names when they give the ID classes, the
    label field when it gives them or (``label_field_shown``: RAP's 'Label field for picking') when the form
    shows it for another purpose; a hidden one's stale value is dropped."""
    by_field = by_label_field(params)
    return dict(id_labels=None if by_field else parse_labels(params.get("id_labels")),
                label_field=(params.get("label_field") or None) if by_field or label_field_shown else None)


def read_fields(params, label_field_shown=False):
    """The fields a CLIP run of the form ``params`` reads (embeddings field, the label field :func:`id_kwargs`
    keeps), for the output fields' checks; an ID source the form refuses (marked on its own input) reads no
    label field."""
    from ood_core.errors import OODError

    try:
        label_field = id_kwargs(params, label_field_shown)["label_field"]
    except OODError:
        label_field = None
    return tuple(f for f in (params.get("embeddings_field") or None, label_field) if f)


def common_kwargs(ctx, prediction_default, *, label_field_shown=False):
    """Keyword arguments shared by the CLIP scorers, from the form / SDK params (see :func:`id_kwargs`)."""
    from ood_core.paths import check_app_file

    p = ctx.params
    return dict(
        **id_kwargs(p, label_field_shown),
        embeddings_field=p.get("embeddings_field") or None,
        model_name=p.get("model_name") or None,
        pretrained=check_app_file(p.get("weights"), "weights", may_be_tag=True),
        quick_gelu=True if p.get("quick_gelu") else None,
        word_list=check_app_file(p.get("word_list"), "word_list"),
        tau=common.float_param(p, "tau", 0.01),
        num_groups=common.int_param(p, "num_groups", 100),
        seed=common.int_param(p, "seed", 0, minimum=0),
        prediction_field=p.get("prediction_field", prediction_default) or None,
        overwrite=common.flag_param(p, "overwrite", False),
        progress=common.progress_callback(ctx),
    )


def neglabel_kwargs(params):
    """NegLabel's mining settings (shared with AdaNeg); 'Share of candidates kept' is hidden, and not passed,
    when a number of negative labels is given."""
    from ood_core.clip.lexicon import VOCABULARIES
    from ood_core.clip.neglabel import REMAINDERS

    default = common.sdk_default("compute_neglabel_scores", "vocabulary")
    num_negatives = common.int_param(params, "num_negatives", None, minimum=0) or None
    return dict(
        num_negatives=num_negatives,
        fraction=None if num_negatives else common.float_param(params, "fraction", None),
        percentile=common.float_param(params, "percentile", 95.0),
        vocabulary=common.choice_param(params, "vocabulary", VOCABULARIES, default),
        remove_id_names=common.flag_param(params, "remove_id_names", False),
        remainder=common.choice_param(params, "remainder", REMAINDERS,
                         common.sdk_default("compute_neglabel_scores", "remainder")),
    )


def rap_test_time_kwargs(params):
    """RAP's test-time settings: those of the form when 'Test-time updates' is ticked; unticked, its inputs are
    hidden and the SDK's defaults are passed (a stale value could refuse or change the recorded run)."""
    from ood_core.clip.rap_stream import RESCORE_MODES, RETRIEVAL_MODES, U_PRESETS

    if not common.flag_param(params, "test_time", True):
        return dict(test_time=False)

    def choice(name, choices):
        return common.choice_param(params, name, choices, common.sdk_default("compute_rap_scores", name))

    return dict(
        test_time=True,
        u_preset=choice("u_preset", tuple(U_PRESETS)),
        u1=common.float_param(params, "u1", None),
        u2=common.float_param(params, "u2", None),
        words_per_sample=common.int_param(params, "words_per_sample", 4),
        retrieval=choice("retrieval", RETRIEVAL_MODES),
        rescore=choice("rescore", RESCORE_MODES),
    )


def sdk_params(id_labels, label_field, embeddings_field, model_name, weights, quick_gelu, word_list, *,
               label_field_shown=False, **rest):
    """The form params of a Python ``op(view, ...)`` call. ``id_labels`` and ``label_field`` together are refused
    unless the form shows both (``label_field_shown``: RAP's k per class): the form would drop the label field."""
    from ood_core.errors import OODInputError

    if id_labels is not None and label_field is not None and not label_field_shown:
        raise OODInputError(
            f"id_labels={id_labels!r} and label_field={label_field!r} were both given, but the operator takes the ID "
            "classes from one of them (RAP reads a label field besides typed names only to pick k_per_class "
            "images): pass one of them (for RAP's few-shot classes with typed names, call "
            "ood.compute_rap_scores directly)")
    return dict(id_source="labels" if id_labels is not None else "label_field",
                id_labels=id_labels_text(id_labels), label_field=label_field,
                embeddings_field=embeddings_field, model_name=model_name or "", weights=weights or "",
                quick_gelu=bool(quick_gelu), word_list=word_list or "", **rest)


def check_neglabel_call(settings):
    """A Python ``op(view, ...)`` call of the NegLabel / AdaNeg operator with both ``num_negatives`` and
    ``fraction``: the form hides 'Share of candidates kept' when a number is given (the fraction was dropped)."""
    from ood_core.errors import OODInputError

    if settings.get("num_negatives") and settings.get("fraction") is not None:
        raise OODInputError(
            f"num_negatives={settings['num_negatives']!r} and fraction={settings['fraction']!r} were both given, but "
            "the operator uses the share of candidates kept only without a number of negative labels: pass one "
            "of them")


def check_rap_call(few_shot_tag, k_per_class, settings):
    """A Python ``op(view, ...)`` call of the RAP operator with settings its form never uses together: a few-shot
    tag and k per class (the form picks k per class from the scored view), or test-time settings with
    ``test_time=False`` (their inputs are hidden then). Refused instead of silently dropped."""
    from ood_core.errors import OODInputError

    if few_shot_tag is not None and k_per_class is not None:
        raise OODInputError(
            f"few_shot_tag={few_shot_tag!r} and k_per_class={k_per_class!r} were both given, but the operator picks "
            "the few-shot images one way: pass few_shot_tag (all its samples) or k_per_class with label_field (from "
            "the scored view); to pick k per class among a tag's samples call ood.compute_rap_scores(view, "
            "few_shot=<tag>, k_per_class=k, ...) directly")
    given = [name for name in TEST_TIME_INPUTS if settings.get(name) is not None]
    if settings.get("test_time") is False and given:
        raise OODInputError(
            f"{', '.join(given)} given with test_time=False: they set the test-time updates, which are off; drop "
            "them, or pass test_time=True")


def lambda_params(lambdas, settings):
    """The form's ``lambda1`` / ``lambda2`` / ``lambda3`` from a Python call's ``lambdas`` (three numbers, as
    :func:`ood_core.compute_rap_scores` takes them) or from the form's names in ``settings``; not both."""
    from ood_core.errors import OODInputError

    names = ("lambda1", "lambda2", "lambda3")
    if lambdas is None:
        return {name: settings.get(name, default) for name, default in zip(names, (0.2, -0.2, -1.0))}
    given = [name for name in names if name in settings]
    if given:
        raise OODInputError(f"lambdas={lambdas!r} and {', '.join(given)} were both given: pass lambdas=(lambda1, "
                            "lambda2, lambda3) or the three lambda1/lambda2/lambda3, not both")
    if isinstance(lambdas, (str, bytes)) or not hasattr(lambdas, "__len__") or len(lambdas) != 3:
        raise OODInputError(f"lambdas={lambdas!r} is not three numbers (lambda1 for the outlier crops, > 0; "
                            "lambda2 for the ID crops, < 0; lambda3 for the ID prompts, < 0); pass e.g. "
                            "lambdas=(0.2, -0.2, -1.0)")
    return dict(zip(names, lambdas))
