"""The time rule: numbers <= 0 are relative to now; ISO-8601 times are absolute, whatever their value."""

import argparse

import pytest

from sisock_core.cli import parse_time
from sisock_core.timeutil import EARLIEST_ABSOLUTE_TIME, TimeRangeError, absolute, resolve_range, resolve_time


def test_numbers_keep_the_protocol_rule():
    assert parse_time("-3600") == -3600.0
    assert parse_time("0") == 0.0
    assert parse_time("1500000000") == 1500000000.0
    assert resolve_time(-10, now=1000.0) == 990.0
    assert resolve_range(-10, 0, clock=lambda: 1000.0) == (990.0, 1000.0)


@pytest.mark.parametrize("text", ["1969-12-31T23:59:50Z", "1970-01-01T00:00:00Z", "1900-01-01",
                                  "1969-12-31T23:59:59.5+00:00"])
def test_iso_times_at_or_before_the_epoch_stay_absolute(text):
    t = parse_time(text)
    assert t == EARLIEST_ABSOLUTE_TIME
    # what a node makes of it: an absolute time at the start of the epoch, not "now - 10 s"
    assert resolve_time(t, now=2e9) == EARLIEST_ABSOLUTE_TIME


def test_iso_times_after_the_epoch():
    assert parse_time("2017-07-20T00:00Z") == 1500508800.0
    assert parse_time("2017-07-20T02:00:00+02:00") == 1500508800.0
    assert parse_time("1970-01-01T00:00:10") == 10.0


def test_absolute_clamps_only_non_positive_times():
    assert absolute(-5.0) == EARLIEST_ABSOLUTE_TIME
    assert absolute(0.0) == EARLIEST_ABSOLUTE_TIME
    assert absolute(12.5) == 12.5


def test_bad_times_name_the_value():
    with pytest.raises(argparse.ArgumentTypeError, match="not a time: 'yesterday'"):
        parse_time("yesterday")
    with pytest.raises(TimeRangeError, match="finite"):
        resolve_time(float("nan"), now=0.0)
