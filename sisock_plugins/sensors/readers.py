"""Reading hardware sensors (pure: subprocess and files, no Twisted).

Three sources, tried in this order until one gives readings:

1. ``sensors -j`` (lm-sensors >= 3.5): JSON ``{chip: {"Adapter": str, feature:
   {subfeature: value}}}``;
2. ``sensors -u``: text blocks separated by blank lines; a block starts with the
   chip name, then ``Adapter: ...``, then feature lines ending in ``:`` followed by
   indented ``temp2_input: 45.000`` lines;
3. ``/sys/class/hwmon/hwmon*/`` (what lm-sensors itself reads): ``name``, and
   ``<type><n>_input`` files in milli-units (millidegrees, millivolts...).

Every ``*_input`` reading becomes a field named ``<chip>_<subfeature>`` as in the
original sisock sensors node (``coretemp-isa-0000_temp2``), with units from the
subfeature type (``temp`` C, ``in`` V, ``fan`` RPM...) and the feature label
(``Core 0``) as its description. Chip names from hwmon follow lm-sensors' scheme
``<name>-<bus>-<address>`` where the bus can be told from sysfs.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path
from typing import Callable, Sequence

import attrs

#: Units of a subfeature, by its type prefix (lm-sensors' sensors.conf(5) types).
UNITS = {
    "temp": "C", "in": "V", "fan": "RPM", "power": "W", "energy": "J", "curr": "A",
    "humidity": "%", "cpu": "V", "pwm": None, "intrusion": None, "beep": None,
}
#: hwmon sysfs values are in these fractions of the unit (millidegrees, microwatts...).
HWMON_SCALE = {"temp": 1e-3, "in": 1e-3, "curr": 1e-3, "humidity": 1e-3, "power": 1e-6,
               "energy": 1e-6, "fan": 1.0}

_SUBFEATURE = re.compile(r"^([a-z]+)(\d*)_input$")
_TEXT_INPUT = re.compile(r"^\s+([A-Za-z0-9_]+)_input:\s*(\S+)\s*$")
_HWMON_INPUT = re.compile(r"^(temp|in|fan|power|energy|curr|humidity)(\d+)_input$")


@attrs.frozen
class Readings:
    """One reading of every sensor: ``values`` by field, with ``units`` and ``labels``."""

    source: str
    values: dict[str, float]
    units: dict[str, str | None] = attrs.field(factory=dict)
    labels: dict[str, str | None] = attrs.field(factory=dict)


class NoReadings(Exception):
    """A source gave no readings; the message says why (shown once in the log)."""


def units_of(subfeature: str) -> str | None:
    """``"temp2"`` -> ``"C"``; None when unknown."""
    m = re.match(r"^[a-z]+", subfeature)
    return UNITS.get(m.group(0)) if m else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# -- sensors -j ----------------------------------------------------------------------------


def parse_json(text: str) -> Readings:
    """Parse ``sensors -j`` output; raise :class:`NoReadings` if it holds none."""
    try:
        chips = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NoReadings(f"output is not JSON ({exc})") from None
    if not isinstance(chips, dict):
        raise NoReadings(f"expected a JSON object of chips, got {type(chips).__name__}")
    out = Readings("sensors -j", {})
    for chip, features in chips.items():
        if not isinstance(features, dict):
            continue
        for feature, subs in features.items():
            if not isinstance(subs, dict):  # "Adapter": "ISA adapter"
                continue
            for sub, value in subs.items():
                m = _SUBFEATURE.match(sub)
                v = _number(value)
                if m is None or v is None:
                    continue
                name = f"{chip}_{sub[: -len('_input')]}"
                out.values[name] = v
                out.units[name] = units_of(sub)
                out.labels[name] = feature
    if not out.values:
        raise NoReadings("no *_input readings in its output" if chips else "no sensors in its output")
    return out


# -- sensors -u ----------------------------------------------------------------------------


def parse_text(text: str) -> Readings:
    """Parse ``sensors -u`` output; raise :class:`NoReadings` if it holds none."""
    out = Readings("sensors -u", {})
    chip: str | None = None
    feature: str | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            chip = feature = None
            continue
        if chip is None:
            chip = line.strip()
            continue
        m = _TEXT_INPUT.match(line)
        if m:
            sub, value = m.groups()
            try:
                v = float(value)
            except ValueError:
                continue
            if not math.isfinite(v):
                continue
            name = f"{chip}_{sub}"
            out.values[name] = v
            out.units[name] = units_of(sub)
            out.labels[name] = feature
        elif not line[:1].isspace() and line.endswith(":"):
            feature = line[:-1]
    if not out.values:
        raise NoReadings("no *_input readings in its output")
    return out


# -- /sys/class/hwmon --------------------------------------------------------------------


def hwmon_chip_name(hwmon_dir: Path, name: str) -> str:
    """lm-sensors' chip name for a hwmon device: ``coretemp-isa-0000``, ``k10temp-pci-00c3``,
    ``nct7802-i2c-0-2d``, ``acpitz-acpi-0``; ``<name>-virtual-0`` without a device."""
    device = hwmon_dir / "device"
    if not device.exists():
        return f"{name}-virtual-0"
    real = device.resolve()
    base = real.name
    subsystem = (real / "subsystem").resolve().name if (real / "subsystem").exists() else ""
    pci = re.match(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$", base)
    if pci:
        domain, bus, dev, fn = (int(x, 16) for x in pci.groups())
        return f"{name}-pci-{(domain << 16) + (bus << 8) + (dev << 3) + fn:04x}"
    i2c = re.match(r"^(\d+)-([0-9a-f]{4})$", base)
    if i2c:
        return f"{name}-i2c-{int(i2c.group(1))}-{int(i2c.group(2), 16):02x}"
    if subsystem == "acpi" or ":" in base:
        suffix = base.rsplit(":", 1)[-1]
        return f"{name}-acpi-{int(suffix, 16) if re.fullmatch(r'[0-9a-fA-F]+', suffix) else 0:x}"
    if subsystem in ("platform", "isa", ""):
        number = re.match(r"^.*\.(\d+)$", base)
        return f"{name}-isa-{int(number.group(1)) if number else 0:04x}"
    return f"{name}-{subsystem}-0"


def read_hwmon(root: str | os.PathLike[str]) -> Readings:
    """Read every ``*_input`` under ``root`` (``/sys/class/hwmon``); raise :class:`NoReadings`."""
    root = Path(root)
    if not root.is_dir():
        raise NoReadings(f"{root} does not exist")
    out = Readings(f"hwmon ({root})", {})
    dirs = sorted(root.glob("hwmon*"), key=lambda p: (len(p.name), p.name))
    if not dirs:
        raise NoReadings(f"{root} holds no hwmon devices")
    for d in dirs:
        try:
            name = (d / "name").read_text().strip()
        except OSError:
            continue
        if not name:
            continue
        chip = hwmon_chip_name(d, name)
        for f in sorted(d.iterdir()):
            m = _HWMON_INPUT.match(f.name)
            if not m:
                continue
            try:
                raw = f.read_text().strip()
                v = int(raw) * HWMON_SCALE[m.group(1)]
            except (OSError, ValueError):  # unreadable or not a number (sensor error)
                continue
            sub = f"{m.group(1)}{m.group(2)}"
            field = f"{chip}_{sub}"
            out.values[field] = float(f"{v:.6g}")
            out.units[field] = UNITS[m.group(1)]
            try:
                out.labels[field] = (d / f"{sub}_label").read_text().strip() or None
            except OSError:
                out.labels[field] = None
    if not out.values:
        raise NoReadings(f"no readable *_input files under {root}")
    return out


# -- the chain -------------------------------------------------------------------------------


Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]


def run_command(argv: Sequence[str], timeout: float) -> "subprocess.CompletedProcess[str]":
    """Run ``argv`` capturing text output (the default runner)."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


class SensorReader:
    """Read the machine's sensors from the first source that works.

    The source that worked last is tried first next time. :meth:`read` returns
    :class:`Readings` or raises :class:`NoReadings` whose message lists why each
    source gave nothing.
    """

    SOURCES = ("json", "text", "hwmon")

    def __init__(self, command: str = "sensors", hwmon_root: str = "/sys/class/hwmon",
                 timeout: float = 10.0, runner: Runner = run_command) -> None:
        self.command = command
        self.hwmon_root = hwmon_root
        self.timeout = timeout
        self.runner = runner
        self.preferred: str | None = None

    def _sensors(self, flag: str, parse: Callable[[str], Readings]) -> Readings:
        argv = [self.command, flag]
        try:
            proc = self.runner(argv, self.timeout)
        except FileNotFoundError:
            raise NoReadings(f"{self.command!r} is not installed (lm-sensors)") from None
        except subprocess.TimeoutExpired:
            raise NoReadings(f"'{' '.join(argv)}' did not finish in {self.timeout:g}s") from None
        except OSError as exc:
            raise NoReadings(f"cannot run '{' '.join(argv)}': {exc}") from None
        try:
            return parse(proc.stdout)
        except NoReadings as exc:
            said = _first_line(proc.stderr)
            detail = f" ({said}, exit {proc.returncode})" if said else f" (exit {proc.returncode})"
            raise NoReadings(f"'{' '.join(argv)}': {exc}{detail}") from None

    def _read(self, source: str) -> Readings:
        if source == "json":
            return self._sensors("-j", parse_json)
        if source == "text":
            return self._sensors("-u", parse_text)
        return read_hwmon(self.hwmon_root)

    def read(self) -> Readings:
        order = list(self.SOURCES)
        if self.preferred in order:
            order.remove(self.preferred)
            order.insert(0, self.preferred)
        reasons = []
        for source in order:
            try:
                readings = self._read(source)
            except NoReadings as exc:
                reasons.append(str(exc))
                continue
            self.preferred = source
            return readings
        self.preferred = None
        raise NoReadings("; ".join(reasons))
