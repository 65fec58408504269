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
import numpy as np

from sisock_core.textarchive import parse_pairs

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
class ParsedFile:
    """One parsed weather file.

    ``t`` (UNIX times, ascending) and ``values`` are float64 arrays of equal length,
    marked read-only. ``bad_lines`` counts skipped malformed data lines;
    ``first_bad_line``/``first_bad_text`` locate the first one (1-based line number).
    ``reordered`` is true when the times were not ascending and had to be sorted.
    Unpacks as ``header, t, values = parsed``.
    """

    source: str
    header: FieldHeader
    t: np.ndarray
    values: np.ndarray
    bad_lines: int = 0
    first_bad_line: int | None = None
    first_bad_text: str | None = None
    reordered: bool = False

    def __iter__(self):
        return iter((self.header, self.t, self.values))

    def malformed_summary(self) -> str | None:
        """``"skipped N malformed lines in FILE, first at line L: '...'"``, or None."""
        if not self.bad_lines:
            return None
        noun = "line" if self.bad_lines == 1 else "lines"
        return (
            f"skipped {self.bad_lines} malformed {noun} in {self.source}, "
            f"first at line {self.first_bad_line}: {self.first_bad_text!r}"
        )


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
    header, body, body_first_line = _split_header(text, source)
    t, values, bad, first_bad = parse_pairs(body, body_first_line)
    reordered = False
    if t.size > 1 and np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        t, values = t[order], values[order]
        reordered = True
    t.flags.writeable = False
    values.flags.writeable = False
    return ParsedFile(
        source=source,
        header=header,
        t=t,
        values=values,
        bad_lines=bad,
        first_bad_line=first_bad[0] if first_bad else None,
        first_bad_text=first_bad[1] if first_bad else None,
        reordered=reordered,
    )


def _split_header(text: str, source: str) -> tuple[FieldHeader, str, int]:
    """Return the header, the text after it and the line number where that text starts."""
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
    return FieldHeader(*found), text[pos:], lineno + 1
