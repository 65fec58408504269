"""The weather plugin: serve a directory of weather ``.dat`` files.

Each ``<field>.dat`` file in the data directory is one field, named after the file
(``apex_humidity.dat`` → field ``apex_humidity``); its header gives the description,
the timeline name and the units (format: :mod:`sisock_plugins.weather.parser`).
Fields with the same timeline name share timestamps and are served as one timeline.

Without a ``data_dir`` the node serves the example data set shipped with sisock:
synthetic APEX site weather from 2017-07-13 to 2017-07-27 UTC (set Grafana's time
range to July 2017 to see it). Example ``site/nodes.toml`` entry::

    [nodes.apex_archive]
    plugin = "weather"
    data_dir = "/data/weather"     # or env DATA_DIRECTORY; omit for the example data

The files are small, so they are all loaded at start; on every request the plugin
checks the files' modification times (one ``stat`` each) and re-reads files that
changed, appeared or disappeared, so new data can be dropped in without a restart.
"""

from __future__ import annotations

import importlib.resources
import os
import threading
from pathlib import Path
from typing import Sequence

import attrs
import numpy as np
from twisted.logger import Logger

from sisock_core import Field, PluginSpec, Timeline, hookimpl
from sisock_core.model import NodeContext
from sisock_core.nodestate import NodeObject
from sisock_plugins.weather.parser import ParsedFile, WeatherFileError, parse_file

log = Logger(namespace="sisock_plugins.weather")

#: Nominal intervals (s) of well-known timeline names, used when a file has < 2 samples.
KNOWN_INTERVALS = {"secondly": 1.0, "minutely": 60.0, "hourly": 3600.0, "daily": 86400.0}

STORE = NodeObject("weather", "weather")


def example_data_dir() -> Path:
    """The directory of the example data set shipped with the plugin."""
    try:
        return Path(str(importlib.resources.files(__package__) / "example_data"))
    except (TypeError, ModuleNotFoundError):  # pragma: no cover - unusual installs
        return Path(__file__).resolve().parent / "example_data"


@attrs.frozen
class Options:
    """Options of a weather node (its ``[nodes.<name>]`` table).

    ``data_dir``: directory holding one ``<field>.dat`` text file per field
    (``~`` is expanded; a relative path is taken from the node's working
    directory). Leave it unset to serve the example data shipped with sisock
    (synthetic APEX weather, 2017-07-13 to 2017-07-27). The environment variable
    ``DATA_DIRECTORY`` overrides it, as in the original deployment.
    """

    data_dir: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )


@hookimpl
def sisock_plugin_spec() -> PluginSpec:
    return PluginSpec(
        default_node_name="apex_archive",
        description="Example weather data from the APEX telescope site (July 2017)",
        options=Options,
        env={"DATA_DIRECTORY": "data_dir"},
    )


@hookimpl
def node_start(node: NodeContext) -> None:
    options = node.options if node.options is not None else Options()
    directory = resolve_data_dir(options.data_dir)
    store = WeatherStore(directory)
    store.load()
    STORE.put(node, store)


node_stop, list_fields, read_range = STORE.hooks()


# -- implementation -------------------------------------------------------------


def resolve_data_dir(data_dir: str | None) -> Path:
    """Return the data directory to serve; raise ``ValueError`` if it is unusable."""
    directory = example_data_dir() if data_dir is None else Path(os.path.expanduser(data_dir))
    if not directory.exists():
        raise ValueError(f"weather: data directory {directory} does not exist")
    if not directory.is_dir():
        raise ValueError(f"weather: data directory {directory} is not a directory")
    if not any(directory.glob("*.dat")):
        raise ValueError(
            f"weather: data directory {directory} holds no *.dat files "
            "(expected one <field>.dat file per field)"
        )
    return directory


def _stamp(st: os.stat_result) -> tuple[int, int]:
    return (st.st_mtime_ns, st.st_size)


@attrs.define
class _Loaded:
    path: Path
    stamp: tuple[int, int]
    parsed: ParsedFile
    interval: float | None


class WeatherStore:
    """The parsed files of one data directory, refreshed when files change.

    Hooks run in worker threads, so every public method holds a lock.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._files: dict[str, _Loaded] = {}
        #: Files that failed to load, with the stamp they had (not retried until changed).
        self._rejected: dict[Path, tuple[int, int]] = {}
        self._dir_stamp: int | None = None
        self._dir_error: str | None = None
        #: field name → timeline name it is served under.
        self._timeline_of: dict[str, str] = {}

    # -- loading --------------------------------------------------------------

    def load(self) -> None:
        """Load every ``*.dat`` file; raise ``ValueError`` if none can be used."""
        with self._lock:
            self._refresh()
            if not self._files:
                raise ValueError(
                    f"weather: none of the {len(self._rejected)} *.dat files in "
                    f"{self.directory} could be read (see the log for why)"
                )

    def _refresh(self) -> None:
        """Re-read what changed on disk since the last call (cheap if nothing did)."""
        changed = False
        try:
            dir_stamp = os.stat(self.directory).st_mtime_ns
            if dir_stamp != self._dir_stamp:
                # os.listdir, not Path.glob: glob reads an unreadable directory as an empty one
                paths = sorted(self.directory / name for name in os.listdir(self.directory)
                               if name.endswith(".dat") and not name.startswith("."))
                self._dir_stamp = dir_stamp
                known = {f.path for f in self._files.values()} | set(self._rejected)
                for path in paths:
                    if path not in known:
                        changed |= self._load_file(path)
                present = set(paths)
                for name, f in list(self._files.items()):
                    if f.path not in present:
                        log.info("{path} was removed: no longer serving field {field}", path=str(f.path), field=name)
                        del self._files[name]
                        changed = True
                for path in list(self._rejected):
                    if path not in present:
                        del self._rejected[path]
            self._dir_error = None
        except OSError as exc:
            if self._dir_error != str(exc):
                self._dir_error = str(exc)
                log.error(
                    "cannot list data directory {directory}: {error}; serving the data already loaded",
                    directory=str(self.directory),
                    error=str(exc),
                )
            # list it again once it is back (its mtime may be unchanged), and keep what is
            # loaded meanwhile: an unmounted or unreadable directory is not an empty one
            self._dir_stamp = None
            return
        for name, f in list(self._files.items()):
            try:
                stamp = _stamp(os.stat(f.path))
            except FileNotFoundError:
                log.info("{path} was removed: no longer serving field {field}", path=str(f.path), field=name)
                del self._files[name]
                changed = True
                continue
            except OSError:
                continue
            if stamp != f.stamp:
                del self._files[name]
                self._load_file(f.path)
                changed = True
        for path, old in list(self._rejected.items()):
            try:
                stamp = _stamp(os.stat(path))
            except OSError:
                continue
            if stamp != old:
                del self._rejected[path]
                changed |= self._load_file(path)
        if changed:
            self._layout()

    def _load_file(self, path: Path) -> bool:
        """Parse ``path`` into ``self._files``; log and remember it if it fails."""
        try:
            stamp = _stamp(os.stat(path))
            parsed = parse_file(path)
        except FileNotFoundError:
            return False
        except (WeatherFileError, OSError) as exc:
            log.error("skipping {path}: {error}", path=str(path), error=str(exc))
            try:
                self._rejected[path] = _stamp(os.stat(path))
            except OSError:
                pass
            return False
        if parsed.bad_lines:
            log.warn(
                "skipped {n} malformed lines in {path}, first at line {line}: {text!r}",
                n=parsed.bad_lines,
                path=str(path),
                line=parsed.first_bad_line,
                text=parsed.first_bad_text,
            )
        if parsed.reordered:
            log.warn("{path}: times were not in ascending order; sorted them", path=str(path))
        self._files[path.stem] = _Loaded(path, stamp, parsed, _interval(parsed))
        log.info(
            "loaded {n} samples of {field} ({timeline}) from {path}",
            n=parsed.t.size,
            field=path.stem,
            timeline=parsed.header.timeline,
            path=str(path),
        )
        return True

    def _layout(self) -> None:
        """Assign each field the timeline it is served under.

        Fields declaring the same timeline must have identical timestamps. If they
        do not, the largest group of fields with identical timestamps keeps the
        timeline name and each other field gets its own ``<timeline>_<field>``.
        """
        by_timeline: dict[str, list[str]] = {}
        for name in sorted(self._files):
            by_timeline.setdefault(self._files[name].parsed.header.timeline, []).append(name)
        timeline_of: dict[str, str] = {}
        for timeline, names in by_timeline.items():
            groups: list[list[str]] = []
            for name in names:
                t = self._files[name].parsed.t
                for group in groups:
                    if np.array_equal(self._files[group[0]].parsed.t, t):
                        group.append(name)
                        break
                else:
                    groups.append([name])
            main = max(groups, key=len)  # first (alphabetical) group wins ties
            for group in groups:
                for name in group:
                    timeline_of[name] = timeline if group is main else f"{timeline}_{name}"
            if len(groups) > 1:
                log.warn(
                    "fields of timeline {timeline} have different timestamps; serving "
                    "{others} as separate timelines",
                    timeline=timeline,
                    others=", ".join(n for g in groups if g is not main for n in g),
                )
        self._timeline_of = timeline_of

    # -- queries --------------------------------------------------------------

    def list_fields(self, start: float, end: float) -> list[Field]:
        """The fields with at least one sample in ``[start, end)``."""
        with self._lock:
            self._refresh()
            fields = []
            for name in sorted(self._files):
                f = self._files[name]
                t = f.parsed.t
                i = np.searchsorted(t, start, side="left")
                if i >= t.size or not t[i] < end:
                    continue
                header = f.parsed.header
                fields.append(
                    Field(
                        name=name,
                        timeline=self._timeline_of[name],
                        type="number",
                        units=header.units or None,
                        description=header.description or None,
                        interval=f.interval,
                    )
                )
            return fields

    def read_range(self, fields: Sequence[str], start: float, end: float) -> dict[str, Timeline]:
        """The samples of the known ``fields`` in ``[start, end)``, by timeline."""
        with self._lock:
            self._refresh()
            grouped: dict[str, tuple[np.ndarray, float | None, dict[str, np.ndarray]]] = {}
            for name in dict.fromkeys(fields):  # de-duplicated, order kept
                f = self._files.get(name)
                if f is None:
                    continue
                t = f.parsed.t
                lo = int(np.searchsorted(t, start, side="left"))
                hi = int(np.searchsorted(t, end, side="left"))
                timeline = self._timeline_of[name]
                if timeline not in grouped:
                    last = float(t[-1]) if t.size else None
                    grouped[timeline] = (t[lo:hi].copy(), last, {})
                grouped[timeline][2][name] = f.parsed.values[lo:hi].copy()
            return {
                timeline: Timeline(t=t, data=data, finalized_until=last)
                for timeline, (t, last, data) in grouped.items()
            }


def _interval(parsed: ParsedFile) -> float | None:
    """Nominal sample spacing: median time step, else the timeline name's, else None."""
    t = parsed.t
    if t.size >= 2:
        step = float(np.median(np.diff(t)))
        if step > 0:
            return step
    return KNOWN_INTERVALS.get(parsed.header.timeline)
