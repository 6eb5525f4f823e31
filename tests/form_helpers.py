"""Driving the plugin's forms the way the App does, shared by the form and operator tests."""

PLUGIN = "@fiftyone-ood/ood"


def uri(name):
    """The operator's URI from its name (``"score_ood"`` -> ``"@fiftyone-ood/ood/score_ood"``)."""
    return name if name.startswith("@") else f"{PLUGIN}/{name}"


def context(ds, params, view=None, selected=None):
    """An execution context like the App's: the dataset, the form's values, the App's view and selection."""
    from fiftyone.operators.executor import ExecutionContext

    request = dict(dataset_name=ds.name, params=params, selected=selected or [])
    if view is not None:
        request["view"] = view._serialize()
    return ExecutionContext(request_params=request)


def props(name, ds, params, view=None, selected=None):
    """The form's properties for ``params`` (``name``: operator name or URI) on the App's ``view``."""
    import fiftyone.operators as foo

    return foo.get_operator(uri(name)).resolve_input(context(ds, params, view, selected)).type.properties


def invalid(properties):
    """``{input: error message}`` of the inputs the form marks invalid."""
    return {name: prop.error_message for name, prop in properties.items() if prop.invalid}


def execute(name, view, params, **kwargs):
    """Execute the operator on ``view`` as the App does (FiftyOne validates ``params`` with the form first); the
    result (``.error`` set when the run failed)."""
    import fiftyone.operators as foo

    return foo.execute_operator(uri(name), dict(view=view.view()), params=params, **kwargs)


def refusal(name, view, params):
    """The message with which FiftyOne's execution refuses ``params`` (the form's validation, or the run itself);
    fails the test when it is not refused."""
    import pytest
    from fiftyone.operators.executor import ExecutionError

    with pytest.raises(ExecutionError) as info:
        execute(name, view, params)
    return str(info.value)
