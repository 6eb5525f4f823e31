"""Errors of a run started from a form name the form's inputs, not only the SDK's keyword arguments.

The SDK's messages say what to pass in Python (``pass overwrite=True``, ``project_dim=-5 is too small``,
``CLIPEncoder(..., quick_gelu=True)``). :func:`form_hint` adds one sentence that maps each parameter such a
message names to the input of the form that sets it, read from the form itself (its properties' labels, and
the advanced group a hidden one sits in), so the form stays the one source of the labels. The SDK message is
kept as it is.
"""

import re

#: where an SDK keyword argument has another name in the forms: SDK name -> form input name
SDK_TO_FORM = {"pretrained": "weights", "reference": "reference_tag", "few_shot": "few_shot_tag"}


def note_hidden_group(inputs, label, group):
    """Remember, on the form ``inputs``, an advanced ``group`` not shown (its switch ``label`` is off), so
    that :func:`form_labels` still finds the inputs it holds."""
    hidden = getattr(inputs, "ood_hidden_groups", None)
    if hidden is None:
        hidden = inputs.ood_hidden_groups = []
    hidden.append((label, group))


def form_labels(inputs, where=None):
    """``{input name: (label, where)}`` of a form's inputs (nested objects included); ``where`` is the label of
    the advanced switch that shows a hidden input, else None."""
    out = {}
    for name, prop in getattr(inputs, "properties", {}).items():
        label = getattr(getattr(prop, "view", None), "label", None)
        if hasattr(prop.type, "properties"):
            out.update({k: v for k, v in form_labels(prop.type, where).items() if k not in out})
        elif label and name not in out:
            out[name] = (label, where)
    for switch, group in getattr(inputs, "ood_hidden_groups", []):
        out.update({k: v for k, v in form_labels(group, switch).items() if k not in out})
    return out


def _named(message, name):
    """Whether ``message`` names the parameter ``name`` (``name=...``, or a name with an underscore)."""
    pattern = rf"(?<![\w.]){re.escape(name)}(?=\s*=)" if "_" not in name else rf"(?<![\w.]){re.escape(name)}\b"
    return re.search(pattern, message) is not None


def form_hint(message, labels):
    """The sentence naming the form's inputs for the parameters ``message`` names ("" when it names none)."""
    names = [(name, name) for name in labels] + [(sdk, form) for sdk, form in SDK_TO_FORM.items() if form in labels]
    parts = []
    for name, form_name in names:
        if _named(message, name):
            label, where = labels[form_name]
            parts.append(f"`{name}` is the input '{label}'" + (f" (shown by '{where}')" if where else ""))
    return f"In this form: {'; '.join(parts)}." if parts else ""


def with_form_hint(error, inputs):
    """``error`` (an :class:`ood_core.errors.OODError`) with :func:`form_hint` appended for the form ``inputs``
    (a new exception of the same type when the message names an input, else ``error`` itself)."""
    from ood_core.errors import OODInputError

    message = str(error)
    hint = form_hint(message, form_labels(inputs))
    if not hint:
        return error
    text = f"{message}\n\n{hint}"
    try:
        return type(error)(text)
    except TypeError:  # an exception type with another constructor
        return OODInputError(text)
