"""The operator base class and the form builders shared by every operator (thin layer).

:class:`OODOperator` writes once what every operator of this plugin has in
common: its config (immediate + delegated execution), the "Delegate
execution?" choice and the Python entry point ``op(view, **params)``. Form
defaults come from the signatures of the public SDK functions
(:func:`sdk_default`), so the App and the SDK cannot drift apart.
"""

import inspect
import math
import time

import fiftyone.operators as foo
import fiftyone.operators.types as types

import ood_core.fo.runs as fo_runs
from ood_core.fo import embedding_runs, form_cache

from .field_inputs import (add_embeddings_choice, add_uncovered_classes_warning, check_label_field,  # noqa: F401
                           check_label_pairing, label_fields, label_kind_or_none)  # (the forms' fields: common.*)
from .form_checks import check_input, invalidate, refusal  # noqa: F401  (common.invalidate, ...)
from .markdown import escape, report  # noqa: F401  (report: the result views' markdown, common.report)
from .param_names import check_param_names, fill_first_pass_defaults


class OODOperator(foo.Operator):
    """Base of the plugin's operators: subclasses set the class attributes and write
    ``resolve_input`` / ``run``; ``op(view, **params)`` runs them from Python.

    :meth:`execute` times :meth:`run` and appends the time to the ``report``
    (markdown) that :meth:`resolve_output` shows when the run ends in the App:
    what was written, counts, skipped items and where to look next.
    """

    #: operator name (listed in fiftyone.yml), App label, one-line description
    name = label = description = None
    #: Material icon name shown in the operator browser (a name without "/" or "." is a Material
    #: icon for the App); subclasses pick their own, this is the plugin's default
    icon = "image_search"
    #: whether a "Delegate execution?" choice is offered
    delegable = True
    #: names of the parameters ``op(view, a, b)`` takes positionally, in order
    positional_params = ()

    @property
    def config(self):
        return foo.OperatorConfig(
            name=self.name, label=self.label, description=self.description, icon=self.icon, dynamic=True,
            allow_immediate_execution=True, allow_delegated_execution=self.delegable,
        )

    def resolve_delegation(self, ctx):
        return resolve_delegation(ctx) if self.delegable else False

    def resolve_type(self, ctx, type):
        """The App's path to the form: its first pass with the defaults the form shows filled in, as the App sends
        them next (:func:`operators.param_names.fill_first_pass_defaults`). A run and a Python call resolve the
        form (:meth:`resolve_input`) with the params given: absent there is what the run reads as absent."""
        if type == "inputs":
            fill_first_pass_defaults(self, ctx)
        return super().resolve_type(ctx, type)

    def run(self, ctx):
        """The work of the operator; returns a JSON dict, with a markdown ``report`` for the App."""
        raise NotImplementedError

    def execute(self, ctx):
        from ood_core.errors import OODError

        start = time.perf_counter()
        try:
            result = self.run(ctx)
        except OODError as error:  # a refusal of the SDK: its message, and the form's inputs it names
            raise self.form_error(ctx, error) from None
        seconds = time.perf_counter() - start
        if isinstance(result, dict):
            result.setdefault("seconds", round(seconds, 2))
            if result.get("report"):
                result["report"] += f"\n\nTook {seconds:.1f} s."
        return result

    def form_error(self, ctx, error):
        """``error`` with a sentence naming the inputs of this form that set the SDK parameters its message
        names (:func:`operators.hints.with_form_hint`); ``error`` itself when the form cannot be resolved."""
        from .hints import with_form_hint

        try:
            form = self.resolve_input(ctx)
        except Exception:  # the run's error matters, not the form's
            return error
        return with_form_hint(error, getattr(form, "type", form))

    def with_form_hints(self, ctx, messages, hints=None):
        """``messages`` (the SDK's warnings) each with the sentence naming the form inputs of the SDK parameters
        it names (``hints``, else :meth:`form_hints`: "re-run with overwrite=True" is a checkbox here)."""
        hints = self.form_hints(ctx, messages) if hints is None else hints
        return [f"{m.rstrip('.')}. {hint}" if hint else m for m, hint in zip(messages, hints)]

    def form_hints(self, ctx, messages):
        """For each of ``messages``, the sentence (markdown) naming this form's inputs of the SDK parameters it
        names (:func:`operators.hints.form_hint`), or ""."""
        from .hints import form_hint, form_labels

        try:
            labels = form_labels(getattr(self.resolve_input(ctx), "type", None))
        except Exception:  # the run's result matters, not the form's
            return [""] * len(messages)
        return [form_hint(m, labels) for m in messages]

    def resolve_output(self, ctx):
        """The result view: the run's ``report`` (see :func:`report`)."""
        outputs = types.Object()
        outputs.str("report", label="Result", view=types.MarkdownView(read_only=True))
        return types.Property(outputs, view=types.View(label=f"{self.label} (done)"))

    def to_form_params(self, **params):
        """Python keyword arguments -> form parameters (override when the form encodes a value differently)."""
        return params

    def python_names(self):
        """The keywords a Python call takes besides the form's names (those :meth:`to_form_params` converts)."""
        names = inspect.signature(self.to_form_params).parameters.values()
        return [p.name for p in names if p.kind is inspect.Parameter.KEYWORD_ONLY]

    def __call__(self, sample_collection, *args, delegate=False, **params):
        """Run on ``sample_collection`` from Python with the form's parameters as keyword arguments; a name the form
        does not know (a misspelling) is refused before any work (:func:`operators.param_names.check_param_names`)."""
        if len(args) > len(self.positional_params):
            raise TypeError(f"{self.name}() takes at most {len(self.positional_params)} positional parameters "
                            f"{self.positional_params} after the samples; pass the others by keyword")
        params.update(zip(self.positional_params, args))
        params = self.to_form_params(**params)
        if self.delegable:
            params["delegate"] = delegate
        check_param_names(self, sample_collection, params, python_names=self.python_names())
        return foo.execute_operator(self.uri, dict(view=sample_collection.view()), params=params)


def sdk_default(function, param):
    """Default of ``param`` in the public SDK function ``function`` (``ood_core.<function>``)."""
    import ood_core

    default = inspect.signature(getattr(ood_core, function)).parameters[param].default
    if default is inspect.Parameter.empty:
        raise KeyError(f"ood_core.{function}() has no default for {param!r}")
    return default


def detector_default(method, param):
    """Default hyperparameter of a detector (the detector registry is the one source)."""
    from ood_core.detectors import detector_class

    return detector_class(method).default_params().get(param)


#: what a user must run for scheduled (delegated) operations in open-source FiftyOne
DELEGATION_HOWTO = (
    "Scheduled runs wait in FiftyOne's queue until a worker runs them: start one with "
    "`fiftyone delegated launch` (same database; leave it running), follow them with "
    "`fiftyone delegated list`."
)
#: what the App server needs before its form offers "Schedule" (FiftyOne open source)
LEGACY_ORCHESTRATORS_HOWTO = (
    "This App server cannot schedule runs yet: restart it with "
    "`FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true` in its environment (e.g. "
    "`FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true fiftyone app launch`), then run "
    "`fiftyone delegated launch` in another terminal. Or untick this box to run now."
)


def scheduling_configured():
    """Whether this FiftyOne process can schedule delegated runs from the App form (open source)."""
    import fiftyone as fo

    return bool(fo.config.allow_legacy_orchestrators)


def add_delegation_input(inputs, ctx, default=False):
    """The "Delegate execution?" box, with what to run so that scheduled runs actually run."""
    delegate = bool_input(
        inputs, ctx, "delegate",
        default=default,
        label="Delegate execution?",
        description="Run in the background (recommended for large views); "
                    "needs a `fiftyone delegated launch` worker",
        view=types.CheckboxView(),
    )
    if delegate.invalid or not ctx.params.get("delegate", default):
        return
    if scheduling_configured():
        inputs.view("delegation_help", types.Notice(label=DELEGATION_HOWTO))
    else:
        inputs.view("delegation_help", types.Warning(label=LEGACY_ORCHESTRATORS_HOWTO))


def target_view(ctx):
    """``ctx.target_view()`` with every field shown: the App's field visibility (a select / exclude fields stage)
    hides fields from the grid, not from the computation."""
    from ood_core.fo.view_checks import show_all_fields

    return show_all_fields(ctx.target_view())


def add_target_input(inputs, ctx, action):
    """Dataset / current view / selected samples, in the FiftyOne Brain plugin's manner; returns whether the
    chosen target can be used (else the form shows why: see :func:`add_target_refusal`).

    FiftyOne hides the choice when there is neither a view nor a selection;
    ``ctx.target_view()`` then returns the dataset.
    """
    inputs.view_target(ctx, action_description=action)
    return add_target_refusal(inputs, ctx) is None


def add_target_refusal(inputs, ctx):
    """An invalid "target_refused" notice when the SDK would refuse the target (a patches, frames or clips
    view: :func:`ood_core.fo.view_checks.require_own_dataset` on what :func:`target_view` passes); returns its
    message, or None when the target can be used."""
    from ood_core.errors import OODInputError
    from ood_core.fo.view_checks import require_own_dataset

    if ctx.dataset is None:
        return None
    view = target_view(ctx)
    try:
        require_own_dataset(view)
    except OODInputError as e:
        notice = inputs.view("target_refused", types.Warning(label=_refusal_label(view), description=str(e)))
        return invalidate(notice, str(e)).error_message
    return None


def _refusal_label(view):
    """The heading of a refused target, by what the view is (the description says the rest)."""
    if getattr(view, "_is_dynamic_groups", False):
        return 'A grouped view (the App\'s "group by") cannot be the target: remove the group-by or choose "Dataset"'
    root = getattr(view, "_root_dataset", None)
    if root is not None and root.name != view._dataset.name:
        return ("A patches, frames or clips view cannot be the target: go back to the dataset or a view of it "
                "(objects: pick an 'Objects field' there)")
    return "This view cannot be the target"


def add_file_input(inputs, ctx, name, *, label, description, may_be_tag=False):
    """A text input for a file on the server, refused on the field when it lies outside the allowed folders,
    by the check the run applies (:func:`ood_core.paths.check_app_file`); returns the checked value."""
    from ood_core.paths import check_app_file

    prop = inputs.str(name, default="", required=False, label=label, description=description)
    return check_input(prop, check_app_file, ctx.params.get(name), name, may_be_tag=may_be_tag)


def advanced_inputs(inputs, ctx, name="show_advanced", label="Show advanced settings"):
    """An "Advanced" group: a switch that reveals the rarely changed parameters.

    Returns the object to add them to: ``inputs`` when the switch is on, else a detached object (not shown; the
    run still uses values already in the params, set before the switch was turned off or given by a Python
    ``op(...)`` call, else the SDK defaults; :func:`surface_hidden_errors` shows those it refuses)::

        adv = advanced_inputs(inputs, ctx)
        adv.int("batch_size", default=sdk_default(...))
    """
    from .hints import note_hidden_group

    inputs.bool(name, default=False, label=label, view=types.SwitchView())
    if ctx.params.get(name):
        return inputs
    hidden = types.Object()
    note_hidden_group(inputs, label, hidden)  # error messages can still name its inputs
    return hidden


def score_spread(quantiles):
    """``median .., 95th percentile ..`` of a score run's quantiles (keys 50 and 95, ints or strings), or None."""
    q = {int(k): v for k, v in (quantiles or {}).items()}
    return f"median {q[50]:.3g}, 95th percentile {q[95]:.3g}" if 50 in q and 95 in q else None


def review_steps(field):
    """Where to look after a score run: sort the grid, the review panel."""
    return [f"sort the grid: **Sort by** `{field}`, descending",
            "review and tag: open the **OOD review** panel (+ next to the Samples tab)"]


def resolve_delegation(ctx):
    """Whether to delegate: ``delegate=True`` only ("no" from a Python call is refused, not read as yes)."""
    return flag_param(ctx.params, "delegate", False)


def progress_callback(ctx):
    """Forward (done, total) progress to the App, only for delegated runs."""
    if not ctx.delegated:
        return False

    def callback(done, total):
        ctx.set_progress(progress=done / max(total, 1), label=f"{done} / {total}")

    return callback


def finish(ctx, summary, keep=(), report=None):
    """Reload the App after immediate runs and return a small JSON summary (+ the result ``report``)."""
    if not ctx.delegated:
        ctx.trigger("reload_dataset")
    out = {k: summary[k] for k in keep if k in summary} if keep else dict(summary)
    if report is not None:
        out["report"] = report
    return out


def add_target_size_check(inputs, target, minimum=1, needs=""):
    """An invalid warning when the target has no sample ("empty_target"), as every run refuses it, or fewer
    than ``minimum`` ("small_target"; ``needs``: the sentence saying what needs them). Returns whether it has
    enough."""
    from ood_core.fo.items import num_samples

    count = form_cache.memo(target, "num_samples", num_samples)  # exact: len(dataset) is MongoDB's estimate
    if count >= minimum:
        return True
    if not count:
        notice = inputs.view("empty_target", types.Warning(label="The target has no samples"))
        invalidate(notice, "the chosen target has no samples (an empty view or selection): choose another target, "
                           "or change the view's filters or tags")
        return False
    notice = inputs.view("small_target", types.Warning(label=f"The target has {count:,} sample(s)"))
    invalidate(notice, f"{needs}; the chosen target has {count:,}: choose a larger view or the entire dataset")
    return False


def surface_hidden_errors(inputs, only=None):
    """Show, as a warning on the form, each refusal of an input in an advanced group that is not shown (a value
    from a Python call, or a default the form's data refuses): the App marks only the inputs it shows.
    ``only``: the names of the inputs to surface (None: all)."""
    from .hints import form_labels

    hidden = {name: prop for _, group in getattr(inputs, "ood_hidden_groups", [])
              for name, prop in group.properties.items() if prop.invalid and (only is None or name in only)}
    labels = form_labels(inputs)
    for name, prop in hidden.items():
        label, where = labels.get(name, (name, ""))
        invalidate(inputs.view(f"{name}_error", types.Warning(  # the switch's label without its parenthesis
            label=f"{prop.error_message} ('{label}' is under '{where.split(' (')[0]}')")), prop.error_message)


def add_field_choice(inputs, name, choices, *, label, description, required=True, default=None):
    """Dropdown of existing fields; an empty list yields an explanatory invalid prop."""
    dropdown = types.DropdownView()
    for c in choices:
        dropdown.add_choice(c, label=c)
    prop = inputs.enum(name, dropdown.values(), required=required, default=default, label=label,
                       description=description, view=dropdown)
    return prop


def add_new_key(inputs, ctx, name, *, label, description, default, field_paths=None, overwrite_param="overwrite",
                resumable_kind=None, kind=None, reads=()):
    """A text input for a new field name / run key, invalid when taken (unless overwrite).

    With ``resumable_kind``, an existing run of this plugin of that kind is not
    "taken": the operator resumes or fills it (the SDK refuses changed settings).
    With overwrite, what the SDK refuses whatever ``overwrite`` says (a built-in or user field, a field of
    another run, a run of another kind than ``kind``, a field the call ``reads``) is refused here too.
    """
    prop = inputs.str(name, default=default, required=True, label=label, description=description)
    value = ctx.params.get(name, default)
    overwrite = ctx.params.get(overwrite_param, False)
    try:
        fo_runs.validate_key(value, label.lower())
    except ValueError as e:
        prop.invalid = True
        prop.error_message = str(e)
        return prop
    if ctx.dataset is None or (overwrite is not None and not isinstance(overwrite, bool)):
        return prop  # not a yes/no overwrite: refused on its box, which says why
    dataset = ctx.dataset
    if overwrite:
        problem = form_cache.refusal(dataset, fo_runs.check_new_run, value,
                                     tuple(field_paths(value) if field_paths else [value]), True,
                                     kind=kind or resumable_kind, reads=tuple(r for r in reads if r))
        if problem:
            prop.invalid = True
            prop.error_message = problem
        return prop
    target = (field_paths(value) if field_paths else [value])[0]
    if resumable_kind and embedding_runs.field_gone(dataset, value, target):  # the SDK computes it afresh
        prop.description = f"{description}. Its field was deleted or renamed by hand: computed afresh"
        return prop
    if resumable_kind and (value in fo_runs.list_ood_runs(dataset, kind=resumable_kind)
                           or dataset.get_field(embedding_runs.field_paths(value)[1]) is not None):
        prop.description = f"{description}. Exists: computes only what is missing (same settings required)"
        inputs.view(f"{name}_resume", types.Notice(
            label=f"{value!r} exists: this run computes only what is missing (samples or objects without an "
                  "embedding), with the same settings; tick 'overwrite' to recompute everything"))
        return prop
    taken = []
    if dataset.has_run(value):
        taken.append(f"run key {value!r}")
    for path in (field_paths(value) if field_paths else [value]):
        if dataset.get_field(path) is not None:
            taken.append(f"field {path!r}")
    if taken:
        prop.invalid = True
        prop.error_message = f"{' and '.join(taken)} already exist(s); pick another name or tick 'overwrite'"
    return prop


def add_overwrite_input(inputs, ctx=None):
    """The *overwrite* box (``ctx``: its value is checked as the run checks it, :func:`flag_param`)."""
    prop = inputs.bool("overwrite", default=False, label="Overwrite existing field / run?",
                       description="Replace an existing field and run of the same name", view=types.CheckboxView())
    if ctx is not None:
        check_input(prop, flag_param, ctx.params, "overwrite", False)
    return prop


def bool_input(inputs, ctx, name, *, default, **kwargs):
    """A yes/no input whose value is checked by the run's own check (:func:`flag_param`): FiftyOne does not check
    a box's type, so "no" from a Python ``op(...)`` call passed the form. Returns the property."""
    prop = inputs.bool(name, default=default, **kwargs)
    check_input(prop, flag_param, ctx.params, name, default)
    return prop


def add_output_inputs(inputs, ctx, score_default, prediction_default, kind, reads=()):
    """Score and prediction fields of a CLIP score run, each checked on its own as the SDK does (``kind``: the run
    kind written; ``reads``: the fields the run reads, as the caller's run resolves them: a value the form hides,
    e.g. a stale label field, is not read), then *overwrite* and *Delegate execution?*."""
    prediction = ctx.params.get("prediction_field", prediction_default)
    reads = [r for r in reads if r]
    add_new_key(
        inputs, ctx, "score_field", label="Score field", default=score_default,
        description="Float field for 1 - S(x) in [0, 1] (higher = more OOD); its run is recorded under the same "
                    "name (OOD: manage runs lists it)",
        kind=kind, reads=reads,
    )
    prop = inputs.str("prediction_field", default=prediction_default, required=False, label="Prediction field",
                      description="Classification field for the predicted ID class (confidence = softmax); "
                                  "empty = none")
    if prediction:
        score_field = ctx.params.get("score_field", score_default)
        try:
            fo_runs.validate_key(prediction, "prediction field")
            if prediction == score_field:
                raise ValueError("the prediction field must differ from the score field")
            if ctx.dataset is not None and str(score_field).isidentifier() and ctx.dataset.get_field(prediction):
                problem = form_cache.refusal(ctx.dataset, fo_runs.check_new_run, score_field, (prediction,),
                                             bool(ctx.params.get("overwrite")), kind=kind, reads=tuple(reads))
                if problem:
                    raise ValueError(problem)
        except ValueError as e:
            invalidate(prop, str(e))
    add_overwrite_input(inputs, ctx)
    add_delegation_input(inputs, ctx)


def int_input(inputs, ctx, name, *, default, minimum=1, maximum=None, **kwargs):
    """An integer input checked on the field by the run's own check (:func:`int_param`, "use an integer >= 1"),
    not by the App's ``min`` (whose message, "Value must be greater than 1", refuses the 1 it accepts)."""
    prop = inputs.int(name, default=default, **kwargs)
    value = check_input(prop, int_param, ctx.params, name, default, minimum=minimum)
    if value is not None and maximum is not None and value > maximum:
        invalidate(prop, f"{name}={value} is too large; use an integer between {minimum} and {maximum}")
    return prop


def flag_param(params, name, default=False):
    """A yes/no parameter: ``True`` / ``False`` (absent or None: ``default``). FiftyOne validates only the inputs a
    form shows; a hidden one given as text (``flip="no"``) or a number by a Python ``op(...)`` call is refused with
    its name instead of read as ``bool("no")``, which is True."""
    from ood_core.errors import OODInputError

    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    raise OODInputError(f"{name}={value!r} is not a yes/no value; pass {name}=True or {name}=False")


def choice_problem(name, value, choices, fix=""):
    """Why ``value`` is not a choice of the enum parameter ``name``: the value, the allowed ``choices`` and the fix
    (``fix``: another way out, e.g. "or leave it empty ..."), shared by the form (:func:`enum_input`) and the run
    (:func:`choice_param`)."""
    if not choices:
        return f"{name}={value!r} is not offered: there is nothing to choose here{fix}"
    return f"{name}={value!r} is not one of the choices ({', '.join(repr(c) for c in choices)}): pick one of them{fix}"


def choice_param(params, name, choices, default=None, fix=""):
    """An enum (choice) parameter: one of ``choices`` (absent or empty: ``default``). FiftyOne checks the value of
    an enum input only when the form shows it, and then says only "Invalid enum value": a stale value (the form's
    params from before the dataset changed) or one from a Python ``op(...)`` call is refused here with its name,
    the choices and ``fix``, before the run starts any work."""
    from ood_core.errors import OODInputError

    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, str) and value in choices:
        return value
    raise OODInputError(choice_problem(name, value, choices, fix))


def enum_input(inputs, name, choices, ctx, *, default=None, view=None, fix="", **kwargs):
    """An enum input of ``choices`` (one source: the SDK's list) whose value is checked by the run's own check
    (:func:`choice_param`), so the field names a value it does not offer instead of FiftyOne's bare "Invalid enum
    value" (in a hidden advanced group: :func:`surface_hidden_errors` shows it). Returns the property."""
    prop = inputs.enum(name, list(choices), default=default, view=types.DropdownView() if view is None else view,
                       **kwargs)
    check_input(prop, choice_param, ctx.params, name, choices, default, fix)
    return prop


def int_param(params, name, default, *, minimum=1):
    """An integer form parameter: whole numbers only (the App's JSON may carry ``3.0``); empty is ``default``.

    ``2.5``, ``"10"`` or ``True`` from a Python ``op(...)`` call are refused with the
    parameter's name instead of being truncated or coerced.
    """
    from ood_core.errors import OODInputError
    from ood_core.validation import is_int

    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not is_int(value):
        example = f"an integer such as {default}" if is_int(default) else (
            f"an integer >= {minimum}" if math.isfinite(minimum) else "a whole number")
        raise OODInputError(f"{name}={value!r} is not a whole number; pass {example}")
    if value < minimum:
        raise OODInputError(f"{name}={value} is too small; use an integer >= {minimum}")
    return value


def float_param(params, name, default):
    """A number form parameter: empty (a cleared input) is ``default``, as for :func:`int_param`; text or a
    boolean from a Python ``op(...)`` call is refused with the parameter's name instead of being converted."""
    import numbers

    from ood_core.errors import OODInputError

    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        example = f"a number such as {default}" if default is not None else "a number"
        raise OODInputError(f"{name}={value!r} is not a number; pass {example}, or leave it empty for the default")
    return float(value)


def check_range(prop, value, *, low=None, high=None, low_open=False, high_open=False, what=""):
    """Flag the number input ``prop`` when ``value`` is not a number (a whole one for an int input) or lies outside
    [low, high] (``low_open`` / ``high_open``: that end excluded); empty is fine: the run uses the default."""
    default = getattr(prop, "default", None)
    if getattr(prop.type, "int", False):
        value = check_input(prop, int_param, {what: value}, what, default, minimum=-math.inf)
    else:
        value = check_input(prop, float_param, {what: value}, what, default)
    if value is None:
        return prop
    if low is not None and (value <= low if low_open else value < low):
        return invalidate(prop, f"{what} must be {'>' if low_open else '>='} {low}")
    if high is not None and (value >= high if high_open else value > high):
        return invalidate(prop, f"{what} must be {'<' if high_open else '<='} {high}")
    return prop
