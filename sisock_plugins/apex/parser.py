"""APEX weather archive files: names and contents (pure: numpy only, no Twisted).

The archive is a directory ``<data>/targets/`` holding one file per field per time
span, named ``<prefix>_<field>_<start ctime>_<end ctime>.dat``, e.g.
``APEX_humidity_1499990400_1500595200.dat`` (the prefix may itself contain ``_``;
the field may not). Each line is ``<unix time> <value>``; blank lines and ``#``
comments are ignored, and a malformed line is skipped and counted.
"""

from __future__ import annotations

import os
import re

import attrs

from sisock_core.textarchive import Columns, parse_columns, read_text

TARGETS = "targets"

NAME_RE = re.compile(r"^(?P<prefix>.+)_(?P<field>[^_]+)_(?P<start>\d+)_(?P<end>\d+)\.dat$")


@attrs.frozen
class KnownField:
    units: str
    description: str


#: The fields the APEX weather station logs, with their units (as the original node served them).
FIELDS: dict[str, KnownField] = {
    "humidity": KnownField("%", "APEX weather station humidity."),
    "pressure": KnownField("mBar", "APEX weather station pressure."),
    "radiometer": KnownField("mm", "APEX radiometer data."),
    "dewpoint": KnownField("C", "APEX weather station dewpoint."),
    "temperature": KnownField("C", "APEX weather station temperature."),
    "windspeed": KnownField("km/h", "APEX weather station windspeed."),
    "winddirection": KnownField("deg", "APEX weather station wind direction."),
}


@attrs.frozen
class TargetName:
    """What a file name declares: ``<prefix>_<field>_<start>_<end>.dat``."""

    prefix: str
    field: str
    start: int
    end: int


def parse_target_name(name: str) -> TargetName | None:
    """The parts of an archive file name, or None if it is not one (or ends before it starts)."""
    m = NAME_RE.match(name)
    if m is None:
        return None
    start, end = int(m["start"]), int(m["end"])
    if end < start:
        return None
    return TargetName(m["prefix"], m["field"], start, end)


def target_name(prefix: str, field: str, start: int, end: int) -> str:
    """The file name for a span (inverse of :func:`parse_target_name`)."""
    return f"{prefix}_{field}_{int(start)}_{int(end)}.dat"


def parse_target_text(text: str, source: str = "<string>") -> Columns:
    """Parse the text of one archive file."""
    return parse_columns(text, source)


def parse_target_file(path: str | os.PathLike[str]) -> Columns:
    """Parse one archive file; raises OSError if it cannot be read."""
    return parse_target_text(read_text(path), source=os.fspath(path))
