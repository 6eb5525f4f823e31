"""Form checks: a form field marked invalid with the message of the SDK check that refuses its value, so the App
shows the run's own refusal on the field before anything runs. Shared by :mod:`operators.base` (``common``) and
:mod:`operators.field_inputs`.
"""


def invalidate(prop, message):
    """Mark a form property invalid with ``message`` (shown on the field); returns the property."""
    prop.invalid = True
    prop.error_message = message
    return prop


def check_input(prop, check, *args, **kwargs):
    """Run an SDK check (``check(*args, **kwargs)``) for a form field: its OODInputError / ValueError message is
    shown on ``prop``; returns the check's result, or None when it refused."""
    try:
        return check(*args, **kwargs)
    except ValueError as e:  # OODInputError is a ValueError
        invalidate(prop, str(e))
        return None


def refusal(check, *args, **kwargs):
    """The message with which an SDK check (``check(*args, **kwargs)``) refuses, or None when it accepts."""
    try:
        check(*args, **kwargs)
    except ValueError as e:  # OODInputError is a ValueError
        return str(e)
    return None
