"""UCSC radiometer PWV files: names and contents (pure: numpy only, no Twisted).

One file per UTC day in ``<data>/PWV/``, named ``PWV_UCSC_<year>-<day of year>.txt``
(e.g. ``PWV_UCSC_2019-032.txt``). In 2018 the files of days up to 201 were named
the other way round, ``PWV_UCSC_<day of year>-<year>.txt``; both forms are
recognised in any year, zero-padded or not, so the exact day the naming changed
does not matter.

The first line is a header. Each further line is ``<fractional day of year> <pwv
in mm>``; lines whose value is ``NaN`` and blank lines are skipped, and malformed
lines are skipped and counted. Day ``d`` of year ``Y`` is the UNIX time of
``Y-01-01T00:00Z`` plus ``d - 1`` days: **UTC**. The original sisock node used
``time.mktime``, i.e. the container's local time zone; on a host not set to UTC
its times were shifted by the zone's offset (and by DST jumps). This plugin's
times are the radiometer's UTC day numbers taken as UTC.
"""

from __future__ import annotations

import calendar
import os
import re

import attrs
import numpy as np

from sisock_core.textarchive import Columns, parse_columns, read_text

PWV_DIR = "PWV"
DAY = 86400.0

_STANDARD = re.compile(r"^PWV_UCSC_(?P<year>\d{4})-(?P<doy>\d{1,3})\.txt$")
_SWAPPED = re.compile(r"^PWV_UCSC_(?P<doy>\d{1,3})-(?P<year>\d{4})\.txt$")


@attrs.frozen
class PwvName:
    """What a file name declares: its UTC day. ``swapped``: the 2018 ``<doy>-<year>`` form."""

    year: int
    doy: int
    swapped: bool = False

    @property
    def day_start(self) -> float:
        return day_start(self.year, self.doy)


def year_start(year: int) -> float:
    """UNIX time of ``year``-01-01T00:00Z."""
    return float(calendar.timegm((year, 1, 1, 0, 0, 0)))


def day_start(year: int, doy: float) -> float:
    """UNIX time of (fractional) day of year ``doy`` in ``year``, UTC (day 1 starts the year)."""
    return year_start(year) + (doy - 1.0) * DAY


def days_in_year(year: int) -> int:
    return 366 if calendar.isleap(year) else 365


def parse_pwv_name(name: str) -> PwvName | None:
    """The day a PWV file name declares, or None if it is not a PWV file name."""
    m = _STANDARD.match(name)
    swapped = False
    if m is None:
        m = _SWAPPED.match(name)
        swapped = True
        if m is None:
            return None
    year, doy = int(m["year"]), int(m["doy"])
    if not 1 <= doy <= days_in_year(year):
        return None
    return PwvName(year, doy, swapped)


def pwv_name(year: int, doy: int, *, swapped: bool | None = None) -> str:
    """The file name of a day; ``swapped`` defaults to the 2018 quirk (days <= 201)."""
    if swapped is None:
        swapped = year == 2018 and doy <= 201
    if swapped:
        return f"PWV_UCSC_{doy:03d}-{year}.txt"
    return f"PWV_UCSC_{year}-{doy:03d}.txt"


def parse_pwv_text(text: str, year: int, source: str = "<string>") -> Columns:
    """Parse a PWV file of ``year``: UNIX times (UTC) and PWV in mm, NaN lines dropped."""
    base = year_start(year)

    def to_unix(doy: np.ndarray) -> np.ndarray:
        return base + (doy - 1.0) * DAY

    return parse_columns(text, source, header_lines=1, drop_nan=True, time_of=to_unix)


def parse_pwv_file(path: str | os.PathLike[str], year: int) -> Columns:
    """Parse one PWV file; raises OSError if it cannot be read."""
    return parse_pwv_text(read_text(path), year, source=os.fspath(path))
