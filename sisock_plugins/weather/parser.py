"""Reading weather ``.dat`` files (pure: numpy only, no Twisted).

A weather file holds one field::

    # APEX weather station air temperature      <- line 1: description
    # hourly                                    <- line 2: timeline name
    # C                                         <- line 3: units
    # 2017-07-13                                <- further '#' lines: ignored
    1499904000 -2.48                            <- <unix time> <value>
    1499907600 -3.40

Blank lines are ignored anywhere. A malformed data line (not exactly two columns,
or not numbers, or a time that is not finite) is skipped and counted; the result
tells how many and where the first one is. A missing or short header raises
:class:`WeatherFileError`.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from sisock_core.textarchive import Columns, parse_columns

HEADER_NAMES = ("description", "timeline name", "units")


class WeatherFileError(ValueError):
    """A weather file that cannot be used at all (unreadable, missing header)."""


@attrs.frozen
class FieldHeader:
    """The three header lines of a weather file."""

    description: str
    timeline: str
    units: str


@attrs.frozen(eq=False)
class ParsedFile(Columns):
    """One parsed weather file: its ``header`` and its samples (see
    :class:`~sisock_core.textarchive.Columns`: ``t`` ascending and ``values``, read-only
    float64 arrays; malformed lines counted and located; ``reordered``).
    Unpacks as ``header, t, values = parsed``.
    """

    header: FieldHeader | None = None

    def __iter__(self):
        return iter((self.header, self.t, self.values))


def parse_file(path: str | os.PathLike[str]) -> ParsedFile:
    """Parse the weather file at ``path``.

    Raises :class:`WeatherFileError` if it cannot be read or its header is
    incomplete.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise WeatherFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_text(raw.decode("utf-8", errors="replace"), source=str(path))


def parse_text(text: str, source: str = "<string>") -> ParsedFile:
    """Parse the text of a weather file; ``source`` names it in messages."""
    header, header_lines = _split_header(text, source)
    columns = parse_columns(text, source, header_lines=header_lines)
    return ParsedFile(**attrs.asdict(columns, recurse=False), header=header)


def _split_header(text: str, source: str) -> tuple[FieldHeader, int]:
    """Return the header and how many lines it takes (its '#' and blank lines)."""
    found: list[str] = []
    pos = 0
    lineno = 0
    data_line: int | None = None
    while pos < len(text) and len(found) < 3:
        nl = text.find("\n", pos)
        end = len(text) if nl < 0 else nl
        line = text[pos:end].strip()
        lineno += 1
        pos = end + 1
        if not line:
            continue
        if not line.startswith("#"):
            data_line = lineno
            break
        found.append(line[1:].strip())
    if len(found) < 3:
        missing = " and ".join(
            f"{name} (header line {i + 1})" for i, name in enumerate(HEADER_NAMES) if i >= len(found)
        )
        if data_line is not None:
            where = f"data begins at line {data_line}"
        elif not text.strip():
            where = "the file is empty"
        else:
            where = "the file ends"
        raise WeatherFileError(
            f"{source}: incomplete header, missing the {missing} before {where}; "
            "a weather file starts with three '#' lines: description, timeline name, units"
        )
    if not found[1]:
        raise WeatherFileError(f"{source}: empty timeline name in header line 2 (expected e.g. '# hourly')")
    return FieldHeader(*found), lineno
