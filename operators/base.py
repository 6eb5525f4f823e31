"""The operator base class and the form builders shared by every operator (thin layer).

:class:`OODOperator` writes once what every operator of this plugin has in
common: its config (immediate + delegated execution), the "Delegate
execution?" choice and the Python entry point ``op(view, **params)``. Form
defaults come from the signatures of the public SDK functions
(:func:`sdk_default`), so the App and the SDK cannot drift apart.
"""

import inspect

import fiftyone.core.labels as fol
import fiftyone.operators as foo
import fiftyone.operators.types as types

import ood_core.fo.runs as fo_runs


class OODOperator(foo.Operator):
    """Base of the plugin's operators: subclasses set the class attributes and write
    ``resolve_input`` / ``execute``; ``op(view, **params)`` runs them from Python."""

    #: operator name (listed in fiftyone.yml), App label, one-line description
    name = label = description = None
    #: Material icon shown in the operator browser
    icon = None
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

    def to_form_params(self, **params):
        """Python keyword arguments -> form parameters (override when the form encodes a value differently)."""
        return params

    def __call__(self, sample_collection, *args, delegate=False, **params):
        """Run on ``sample_collection`` from Python with the form's parameters as keyword arguments."""
        if len(args) > len(self.positional_params):
            raise TypeError(f"{self.name}() takes at most {len(self.positional_params)} positional parameters "
                            f"{self.positional_params} after the samples; pass the others by keyword")
        params.update(zip(self.positional_params, args))
        params = self.to_form_params(**params)
        if self.delegable:
            params["delegate"] = delegate
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


def add_delegation_input(inputs, ctx, default=False):
    inputs.bool(
        "delegate",
        default=default,
        label="Delegate execution?",
        description="Run in the background through a delegated-operations orchestrator (recommended for large views)",
        view=types.CheckboxView(),
    )


def resolve_delegation(ctx):
    return bool(ctx.params.get("delegate", False))


def progress_callback(ctx):
    """Forward (done, total) progress to the App, only for delegated runs."""
    if not ctx.delegated:
        return False

    def callback(done, total):
        ctx.set_progress(progress=done / max(total, 1), label=f"{done} / {total}")

    return callback


def finish(ctx, summary, keep=()):
    """Reload the App after immediate runs and return a small JSON summary."""
    if not ctx.delegated:
        ctx.trigger("reload_dataset")
    return {k: summary[k] for k in keep if k in summary} if keep else summary


def label_fields(dataset, detections=True):
    types_ = (fol.Classification, fol.Detections) if detections else (fol.Classification,)
    names = []
    for t in types_:
        names.extend(sorted(dataset.get_field_schema(embedded_doc_type=t)))
    return names


def add_field_choice(inputs, name, choices, *, label, description, required=True, default=None):
    """Dropdown of existing fields; an empty list yields an explanatory invalid prop."""
    dropdown = types.DropdownView()
    for c in choices:
        dropdown.add_choice(c, label=c)
    prop = inputs.enum(name, dropdown.values(), required=required, default=default, label=label,
                       description=description, view=dropdown)
    return prop


def add_new_key(inputs, ctx, name, *, label, description, default, field_paths=None, overwrite_param="overwrite",
                resumable_kind=None):
    """A text input for a new field name / run key, invalid when taken (unless overwrite).

    With ``resumable_kind``, an existing run of this plugin of that kind is not
    "taken": the operator resumes or fills it (the SDK refuses changed settings).
    """
    prop = inputs.str(name, default=default, required=True, label=label, description=description)
    value = ctx.params.get(name, default)
    overwrite = bool(ctx.params.get(overwrite_param, False))
    try:
        fo_runs.validate_key(value, label.lower())
    except ValueError as e:
        prop.invalid = True
        prop.error_message = str(e)
        return prop
    if overwrite or ctx.dataset is None:
        return prop
    dataset = ctx.dataset
    if resumable_kind and value in fo_runs.list_ood_runs(dataset, kind=resumable_kind):
        prop.description = f"{description}. Exists: computes only what is missing (same settings required)"
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


def add_overwrite_input(inputs):
    inputs.bool("overwrite", default=False, label="Overwrite existing field / run?",
                description="Replace an existing field and run of the same name", view=types.CheckboxView())
