"""Checks of arrays and settings shared by the numpy-level algorithms (and the FiftyOne layer)."""

import numpy as np

from .errors import OODInputError


def check_positive_int(value, name, *, allow_none=False):
    """``int(value)`` for an integer >= 1 (or None when ``allow_none``), else OODInputError.

    Python and numpy integers are accepted. Nothing is coerced: ``2.5``, ``2.0``,
    ``"10"`` and ``True`` are refused, since ``int()`` would silently truncate,
    parse or count them.
    """
    if value is None and allow_none:
        return None
    extra = " or None" if allow_none else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if isinstance(value, str) and value.strip().isdecimal() and int(value) >= 1:
            fix = f"pass the number itself: {name}={int(value)}"
        elif isinstance(value, (float, np.floating)) and float(value).is_integer() and value >= 1:
            fix = f"pass {name}={int(value)}"
        else:
            fix = f"pass a whole number >= 1{extra}, e.g. {name}=10"
        raise OODInputError(
            f"{name}={value!r} is a {type(value).__name__}, not an integer; {fix}."
        )
    if value < 1:
        raise OODInputError(f"{name}={value!r} is not valid; {name} must be an integer >= 1{extra}.")
    return int(value)


def as_embeddings(X, name="X", *, min_rows=1):
    """Return ``X`` as a C-contiguous float32 ``(N, D)`` array, or raise.

    Raises :class:`OODInputError` naming ``name`` when ``X`` is not 2-D, has
    fewer than ``min_rows`` rows, or contains NaN/inf values.
    """
    try:
        arr = np.asarray(X)
    except ValueError:  # rows of different lengths
        lengths = sorted({len(row) for row in X if hasattr(row, "__len__")})
        raise OODInputError(f"{name} has rows of different lengths ({lengths[:5]}); every embedding vector must have "
                            "the same dimension: recompute the odd ones with the same settings") from None
    if arr.ndim != 2:
        raise OODInputError(
            f"{name} must be a 2-D array of shape (num_samples, dim); got shape "
            f"{arr.shape}. Stack one embedding vector per row."
        )
    if arr.dtype.kind not in "biuf":
        raise OODInputError(f"{name} holds {arr.dtype} values, not numbers; pass embedding vectors of numbers "
                            "(e.g. a field written by compute_pyramid_embeddings)")
    if arr.shape[0] < min_rows:
        raise OODInputError(
            f"{name} has {arr.shape[0]} rows but at least {min_rows} are needed; "
            "check that the view or reference set is not empty."
        )
    if arr.shape[1] == 0:
        raise OODInputError(f"{name} has zero columns; embeddings must have dimension >= 1.")
    with np.errstate(over="ignore"):
        arr32 = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr32).all(axis=1)
    if bad.any() and arr.dtype.itemsize > 4 and np.isfinite(arr[bad]).all():
        idx = np.flatnonzero(bad)
        raise OODInputError(
            f"{name} has {idx.size} row(s) with values beyond float32's range (|x| > 3.4e38; first rows: "
            f"{idx[:5].tolist()}), where embeddings are stored; rescale them, e.g. divide by their largest value."
        )
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
        check_float32_underflow(arr, arr32, name)
    arr = arr32
    if bad.any():
        idx = np.flatnonzero(bad)
        raise OODInputError(
            f"{name} has {idx.size} row(s) with NaN or infinite values (first rows: "
            f"{idx[:5].tolist()}); recompute those embeddings or drop the samples."
        )
    return arr


def check_float32_underflow(arr, arr32, name):
    """Refuse rows of float64 ``arr`` that are not all zero but whose every value is below float32's normal range
    (|x| < 1.2e-38): stored as float32 (``arr32``) they would become zeros or keep only a few bits, and every
    distance among them would be 0 or noise. Rows holding one ordinary value lose only negligible parts."""
    tiny = np.finfo(np.float32).tiny
    with np.errstate(invalid="ignore"):  # NaN rows are named by the caller
        row_max = np.abs(arr32).max(axis=1)
    candidates = np.flatnonzero(row_max < tiny)
    if candidates.size == 0:
        return
    lost = candidates[np.any(arr[candidates] != 0, axis=1)]
    if lost.size:
        largest = float(np.abs(arr[lost]).max())
        raise OODInputError(
            f"{name} has {lost.size} row(s) whose values are all too small for float32, where embeddings are "
            f"stored (|x| < 1.2e-38, largest {largest:.3g}; first rows: {lost[:5].tolist()}): they would become "
            "zeros or lose their precision. Rescale the embeddings, e.g. divide all of them by their largest "
            "absolute value (X / abs(X).max()); if only these rows are that small, they are near-zero vectors: "
            "recompute or drop them."
        )


def as_array(values, name, what="one score per sample"):
    """``numpy.asarray(values)``, else an OODInputError naming ``name`` for nested sequences of different lengths
    (numpy's own error names no input) and for complex numbers (a float conversion drops the imaginary part)."""
    try:
        arr = np.asarray(values)
    except ValueError:
        raise OODInputError(f"{name} holds sequences of different lengths; pass a flat list or 1-D array with "
                            f"{what}") from None
    if arr.dtype.kind == "c":
        raise OODInputError(f"{name} holds complex numbers, whose imaginary part would be dropped; pass real numbers "
                            f"({what}), e.g. np.real(x) if that is meant")
    return arr


def finite_floats(arr, name, fix, where="indices"):
    """``arr`` as float64, else OODInputError naming ``name``: values that are not numbers, and NaN or infinite
    values (their count and first ``where``), followed by ``fix`` (what the caller should do about them)."""
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise OODInputError(f"{name} must be numeric; could not convert them: {exc}") from exc
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise OODInputError(f"{name} has {bad.size} NaN or infinite value(s) (first {where}: {bad[:5].tolist()}); "
                            f"{fix}")
    return arr


def check_same_dim(X_ref, X, ref_name="reference embeddings", name="scored embeddings"):
    """Raise :class:`OODInputError` when two embedding arrays differ in dimension."""
    if X_ref.shape[1] != X.shape[1]:
        raise OODInputError(
            f"{ref_name} have dimension {X_ref.shape[1]} but {name} have dimension "
            f"{X.shape[1]}; compute both with the same backbone, levels and mode."
        )


def is_int(value):
    """Whether ``value`` is an integer (numpy integers too; ``True``, ``2.0`` and ``"2"`` are not)."""
    import numpy as np

    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_device(device):
    """``device`` as a torch device this machine has, else OODInputError saying which one to pass (torch's own
    error for a missing GPU names the driver, not the parameter)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise OODInputError(f"device={device!r} is not a torch device ({e}); pass 'cpu', 'cuda' or 'cuda:0'") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (dev.index or 0) >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device"
            raise OODInputError(f"device={device!r}: this machine has {have}; pass device='cpu'"
                                + (f" or one of cuda:0..cuda:{count - 1}" if count else ""))
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise OODInputError(f"device={device!r}: Apple's MPS is not available here; pass device='cpu'")
    return dev


def check_number(value, name, *, low=None, high=None, low_open=False, high_open=False, hint=""):
    """``float(value)`` for a finite real number within the bounds, else an OODInputError naming ``name``.

    Nothing is coerced: ``"0.5"`` (a string) and ``True`` are refused, since ``float()`` would parse or count
    them, and so are NaN and infinities (an infinite weight gives NaN scores).
    """
    bounds = "".join([
        "" if low is None else f" {'>' if low_open else '>='} {low:g}",
        "" if low is None or high is None else " and",
        "" if high is None else f" {'<' if high_open else '<='} {high:g}",
    ])
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    try:
        ok = real and bool(np.isfinite(float(value)))
    except OverflowError:  # a Python int beyond float's range
        ok = False
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        try:
            fix = f"; pass the number itself, e.g. {name}={float(value)!r}" if isinstance(value, str) else ""
        except ValueError:
            fix = ""
        raise OODInputError(f"{name}={value!r} is not valid: it must be a finite number{bounds}{hint}{fix}.")
    return float(value)


def check_flag(value, name):
    """``bool(value)`` for True / False (numpy's too), else OODInputError: a string such as ``"no"`` would count
    as True."""
    if not isinstance(value, (bool, np.bool_)):
        raise OODInputError(f"{name}={value!r} is not valid; pass True or False.")
    return bool(value)
