"""Generators of archives in the apex and radiometer formats (deterministic, our own data).

Used by the tests and the benchmarks; nothing here is copied from real archives.

* :func:`write_apex_archive`: ``<root>/targets/<prefix>_<field>_<start>_<end>.dat``,
  one file per field per ``span`` seconds, ``<unix time> <value>`` lines every
  ``step`` seconds. ``names_only`` writes empty files (for index benchmarks).
* :func:`write_pwv_archive`: ``<root>/PWV/PWV_UCSC_<year>-<doy>.txt`` day files
  (2018 days <= 201 as ``PWV_UCSC_<doy>-<year>.txt``) with a header line,
  ``<fractional doy> <pwv>`` lines every 60.48 s, NaN values and blank lines.
"""

from __future__ import annotations

import calendar
import datetime as dt
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from sisock_plugins.apex.parser import FIELDS, target_name
from sisock_plugins.radiometer.parser import pwv_name

APEX_FIELDS: tuple[str, ...] = tuple(FIELDS)
PWV_STEP = 60.48


def utc(text: str) -> float:
    """UNIX time of an ISO date/time taken as UTC, e.g. ``utc("2017-12-31T23:00")``."""
    return float(calendar.timegm(dt.datetime.fromisoformat(text).timetuple()))


def apex_value(field: str, t: np.ndarray) -> np.ndarray:
    """Plausible deterministic values of an APEX field at times ``t`` (3 decimals)."""
    t = np.asarray(t, dtype=np.float64)
    day = 2 * np.pi * (t % 86400.0) / 86400.0
    slow = 2 * np.pi * (t % (7 * 86400.0)) / (7 * 86400.0)
    if field == "humidity":
        v = 25 + 15 * np.sin(day) + 5 * np.cos(slow)
    elif field == "pressure":
        v = 555 + 2 * np.sin(slow)
    elif field == "radiometer":
        v = 1.2 + 0.6 * np.sin(slow) + 0.1 * np.cos(day)
    elif field == "dewpoint":
        v = -18 + 4 * np.sin(slow)
    elif field == "temperature":
        v = -3 + 5 * np.sin(day - 1.0)
    elif field == "windspeed":
        v = 25 + 15 * np.sin(slow * 3) + 5 * np.sin(day * 4)
    elif field == "winddirection":
        v = (t / 60.0) % 360.0
    else:
        v = np.sin(day)
    return np.round(v, 3)


def format_lines(t: np.ndarray, v: np.ndarray, t_fmt: str = "{:.0f}", v_fmt: str = "{:.3f}") -> str:
    fmt = t_fmt + " " + v_fmt + "\n"
    return "".join(fmt.format(a, b) for a, b in zip(t.tolist(), v.tolist()))


def write_apex_archive(
    root: Path,
    start: float,
    end: float,
    *,
    span: float = 7 * 86400.0,
    step: float = 60.0,
    fields: Sequence[str] = APEX_FIELDS,
    prefix: str = "APEX",
    names_only: bool = False,
) -> list[Path]:
    """Write files covering ``[start, end)`` in ``span``-second pieces; return their paths.

    A file named ``..._<s>_<e>.dat`` holds the samples ``s, s + step, ..., e``: ``e`` is
    its last sample, and the next file starts at ``e + step``.
    """
    targets = Path(root) / "targets"
    targets.mkdir(parents=True, exist_ok=True)
    paths = []
    s = float(start)
    while s < end:
        e = min(s + span, end) - step  # last sample time of this piece
        t = np.arange(s, e + step / 2, step)
        for field in fields:
            path = targets / target_name(prefix, field, int(s), int(e))
            if names_only:
                path.touch()
            else:
                path.write_text(format_lines(t, apex_value(field, t)))
            paths.append(path)
        s += span
    return paths


def pwv_value(t: np.ndarray) -> np.ndarray:
    """Plausible deterministic PWV (mm) at UNIX times ``t`` (3 decimals)."""
    t = np.asarray(t, dtype=np.float64)
    return np.round(1.0 + 0.5 * np.sin(2 * np.pi * t / 86400.0) ** 2 + 0.2 * np.cos(t / 20000.0), 3)


def pwv_day_samples(year: int, doy: int, step: float = PWV_STEP) -> tuple[np.ndarray, np.ndarray]:
    """``(fractional day of year, UNIX time)`` of one day's samples, as written (6 decimals)."""
    n = int(86400.0 // step) + (0 if 86400.0 % step == 0 else 1)
    frac = np.round(doy + np.arange(n) * step / 86400.0, 6)
    frac = frac[frac < doy + 1]
    t = calendar.timegm((year, 1, 1, 0, 0, 0)) + (frac - 1.0) * 86400.0
    return frac, t


def write_pwv_day(
    root: Path,
    year: int,
    doy: int,
    *,
    step: float = PWV_STEP,
    nan_every: int = 0,
    blank_every: int = 0,
    swapped: bool | None = None,
    extra: Iterable[str] = (),
) -> Path:
    """Write one day file; every ``nan_every``-th value is ``NaN``, a blank line every
    ``blank_every`` lines; ``extra`` lines are appended as they are."""
    directory = Path(root) / "PWV"
    directory.mkdir(parents=True, exist_ok=True)
    frac, t = pwv_day_samples(year, doy, step)
    v = pwv_value(t)
    lines = ["DOY PWV(mm) UCSC radiometer"]
    for i, (d, p) in enumerate(zip(frac.tolist(), v.tolist())):
        value = "NaN" if nan_every and i % nan_every == nan_every - 1 else f"{p:.3f}"
        lines.append(f"{d:.6f} {value}")
        if blank_every and i % blank_every == blank_every - 1:
            lines.append("")
    lines.extend(extra)
    path = directory / pwv_name(year, doy, swapped=swapped)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_pwv_archive(root: Path, days: Iterable[tuple[int, int]], **kw) -> list[Path]:
    """Write the day files of ``(year, doy)`` pairs (see :func:`write_pwv_day`)."""
    return [write_pwv_day(root, y, d, **kw) for y, d in days]


def day_range(year: int, doy: int, n: int) -> list[tuple[int, int]]:
    """``n`` consecutive ``(year, doy)`` days from ``year``/``doy``, across new year."""
    first = dt.date(year, 1, 1) + dt.timedelta(days=doy - 1)
    out = []
    for i in range(n):
        d = first + dt.timedelta(days=i)
        out.append((d.year, d.timetuple().tm_yday))
    return out
