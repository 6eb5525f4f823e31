"""Shared argument checks: integers are integers."""

import numpy as np
import pytest

from ood_core.errors import OODInputError
from ood_core.validation import check_positive_int


@pytest.mark.parametrize(
    "value, says",
    [
        (2.5, "k=2.5 is a float, not an integer; pass a whole number >= 1, e.g. k=10"),
        (2.0, "k=2.0 is a float, not an integer; pass k=2"),
        ("10", "k='10' is a str, not an integer; pass the number itself: k=10"),
        (True, "k=True is a bool, not an integer"),
        (np.bool_(True), "is a bool"),
        (np.float32(3), "k=np.float32(3.0) is a float32, not an integer; pass k=3"),
        (None, "k=None is a NoneType, not an integer"),
        (0, "k=0 is not valid; k must be an integer >= 1"),
        (np.int64(-3), "must be an integer >= 1"),
    ],
)
def test_non_integers_and_non_positive_values_are_refused(value, says):
    with pytest.raises(OODInputError) as e:
        check_positive_int(value, "k")
    assert says in str(e.value)


def test_python_and_numpy_integers_are_accepted_as_int():
    for value in (1, 7, np.int32(7), np.int64(7), np.uint8(7)):
        got = check_positive_int(value, "k")
        assert got == value and type(got) is int
    assert check_positive_int(None, "nprobe", allow_none=True) is None
    with pytest.raises(OODInputError, match=r"nprobe=1\.5 .*>= 1 or None"):
        check_positive_int(1.5, "nprobe", allow_none=True)


def test_is_int_and_the_clip_counts_refuse_bools_floats_and_strings():
    import numpy as np

    from ood_core.clip.neglabel import group_negatives
    from ood_core.validation import is_int

    assert is_int(3) and is_int(np.int64(3))
    assert not any(is_int(v) for v in (True, np.bool_(True), 2.0, "2", None))
    for bad in (True, 2.0, "2"):
        with pytest.raises(OODInputError, match="num_groups"):
            group_negatives(10, num_groups=bad)
