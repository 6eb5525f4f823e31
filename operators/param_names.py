"""The parameter names an operator's form knows, to refuse a Python ``op(view, ...)`` call with one it does not.

FiftyOne passes every keyword of ``op(view, ...)`` into ``ctx.params`` and the run reads only the names it knows:
``num_negative=5`` (for ``num_negatives``) was silently ignored and the run used the default. The known names are
read from the operator's own form (:meth:`resolve_input`), never from a hand-written list: the inputs it shows,
those of its hidden advanced groups, the names it reads from the params, and the inputs it shows only for
another choice of one of its choice / yes-no inputs (e.g. ``k`` only for ``method="knn"``).

The same form reading serves the App's first pass (:func:`fill_first_pass_defaults`): the defaults a form shows.
"""

import difflib

import fiftyone.operators.types as types

#: names FiftyOne itself puts in ``ctx.params`` (view target, panels' events and state)
FIFTYONE_PARAMS = frozenset({"view_target", "custom_view_target", "panel_id", "panel_state", "__method__",
                             "state", "event_args"})
#: at most this many extra form resolutions (other choices) before giving up on a name
MAX_RESOLUTIONS = 80
#: at most this many resolutions to fill in the defaults of a form's first App pass (an input shown for a default
#: value brings its own default: each round fills those of the inputs the last one showed)
MAX_DEFAULT_ROUNDS = 5
_NO_MORE = object()  # an input whose other values have all been tried


class _ReadNames(dict):
    """The form's params, remembering every name the form reads."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)

    def setdefault(self, key, default=None):
        self.read.add(key)
        return super().setdefault(key, default)


def _inputs(obj):
    """``{name: property}`` of the inputs of the form object ``obj`` (nested objects and hidden advanced groups
    included; notices and other views without a value left out)."""
    out = {}
    for name, prop in getattr(obj, "properties", {}).items():
        if isinstance(prop.type, types.Void):
            continue
        out[name] = prop
        if hasattr(prop.type, "properties"):
            out.update(_inputs(prop.type))
    for _, group in getattr(obj, "ood_hidden_groups", []):
        out.update(_inputs(group))
    return out


def _resolve(operator, request, params):
    """(input properties, names read) of ``operator``'s form for ``params``; None when the form raises."""
    from fiftyone.operators.executor import ExecutionContext

    ctx = ExecutionContext(request_params=dict(request, params=dict(params)))
    ctx.params = _ReadNames(ctx.params)
    try:
        form = operator.resolve_input(ctx)
    except Exception:  # a form that cannot resolve these params: they are the run's to refuse
        return None
    return _inputs(getattr(form, "type", form)), ctx.params.read


def _alternatives(prop, current):
    """The other values of a choice or yes/no input (those that may show other inputs)."""
    if isinstance(prop.type, types.Enum):
        return [v for v in prop.type.values if v != current]
    if isinstance(prop.type, types.Boolean):
        return [not bool(current)]
    return []


def form_names(operator, request, params, wanted=()):
    """The parameter names ``operator``'s form knows for the request ``request`` (dataset and view) and ``params``;
    it stops looking at other choices as soon as every name of ``wanted`` is known. None when the form cannot be
    resolved for ``params`` (the run then says what is wrong).

    The other choices are tried in turns: one value of each choice input, then a second one of each, and so on.
    Tried input by input, a dropdown of the dataset's tags or fields (one resolution per value, none of which shows
    another input) used up the :data:`MAX_RESOLUTIONS` before the inputs listed after it had a turn: with 82 tags,
    ``n_components`` (shown for a 'Reduction') was refused as unknown, and accepted with 2 tags."""
    resolved = _resolve(operator, request, params)
    if resolved is None:
        return None
    props, read = resolved
    known = set(props) | read
    turns = [(name, iter(_alternatives(prop, params.get(name, getattr(prop, "default", None)))))
             for name, prop in props.items()]
    queued, resolutions = set(props), 0
    while turns and not set(wanted) <= known and resolutions < MAX_RESOLUTIONS:
        name, values = turns.pop(0)
        value = next(values, _NO_MORE)
        if value is _NO_MORE:
            continue
        turns.append((name, values))  # its next value after one of every other input
        resolutions += 1
        resolved = _resolve(operator, request, dict(params, **{name: value}))
        if resolved is None:
            continue
        more, more_read = resolved
        for n, p in more.items():
            if n not in queued:
                queued.add(n)
                turns.append((n, iter(_alternatives(p, params.get(n, getattr(p, "default", None))))))
        known |= set(more) | more_read
    return known


def check_param_names(operator, sample_collection, params, python_names=()):
    """Refuse (:class:`ood_core.errors.OODInputError`) the form ``params`` of a Python ``op(view, ...)`` call of
    ``operator`` that holds a name its form does not know, with the closest known name and the known names
    (``python_names``: the Python-only keywords the call also takes, offered in the message)."""
    from ood_core.errors import OODInputError

    given = [name for name in params if name not in FIFTYONE_PARAMS]
    if not given:
        return
    view = sample_collection.view()
    request = dict(dataset_name=view.dataset_name, view=view._serialize())
    known = form_names(operator, request, params, wanted=given)
    if known is None:
        return
    unknown = [name for name in given if name not in known]
    if not unknown:
        return
    offered = sorted((known | set(python_names)) - FIFTYONE_PARAMS)
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(str(name), offered, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise OODInputError(
        f"{operator.name}() got unknown parameter(s) {', '.join(parts)}: the run would ignore them and use its "
        f"defaults; fix the name(s) or drop them. Known parameters: {', '.join(offered)}")


def shown_defaults(form):
    """``{name: default}`` of the inputs the form object ``form`` shows with a default, which the App fills in
    once it shows them (not those of hidden advanced groups, which it does not show; not FiftyOne's own)."""
    return {name: prop.default for name, prop in getattr(form, "properties", {}).items()
            if not isinstance(prop.type, types.Void) and getattr(prop, "default", None) is not None
            and name not in FIFTYONE_PARAMS}


def fill_first_pass_defaults(operator, ctx):
    """On the App's first resolution of ``operator``'s form, put the defaults its inputs declare into ``ctx.params``.

    The App resolves a form first with no value at all (it fills in each input's default only once the form is
    shown, then resolves it again): a form that reads an absent input as empty (the reference tag, as a Python
    call without it is run) showed its first screen for empty inputs under inputs showing their defaults, e.g.
    without the warning about classes with no trusted sample, then changed. Each input's declared default is the
    one source: the values the App is about to send. Only when ``ctx.params`` holds none of the form's inputs."""
    if any(name not in FIFTYONE_PARAMS for name in ctx.params or {}):
        return
    for _ in range(MAX_DEFAULT_ROUNDS):
        form = operator.resolve_input(ctx)
        new = {name: value for name, value in shown_defaults(getattr(form, "type", form)).items()
               if name not in ctx.params}
        if not new:
            return
        ctx.params = dict(ctx.params or {}, **new)
