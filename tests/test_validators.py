"""The shared attrs validators: a clear ValueError for every wrong value, of any type."""

import math

import pytest

from sisock_core.validators import above, at_least, non_negative, positive, positive_int


@pytest.mark.parametrize("check, good, bad", [
    (positive, [1, 0.5], [0, -1, True, "1", None, math.nan]),
    (positive_int, [1, 7], [0, 1.5, True, "1", None]),
    (non_negative, [0, 2.5], [-1, True, "0", None, math.nan]),
    (at_least(2), [2, 3.5], [1, "3", None, math.nan]),
    (above(0.5), [0.6, 1], [0.5, "1", None, math.nan]),
])
def test_validators_accept_numbers_in_range_and_refuse_the_rest_with_a_value_error(check, good, bad):
    for value in good:
        check(None, None, value)
    for value in bad:
        with pytest.raises(ValueError, match="must be"):
            check(None, None, value)
