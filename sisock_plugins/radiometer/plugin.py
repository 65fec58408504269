"""The radiometer plugin: serve the UCSC radiometer's precipitable water vapour (PWV).

Reads one file per UTC day, ``<data_dir>/PWV/PWV_UCSC_<year>-<doy>.txt`` (and the
2018 ``PWV_UCSC_<doy>-<year>.txt`` form; format and time conversion:
:mod:`sisock_plugins.radiometer.parser`). One field, ``pwv`` (mm), on timeline
``pwv`` with a nominal interval of 60.48 s.

Times are UTC. The original node converted day numbers with ``time.mktime``
(local time), so on a host whose zone was not UTC its times were off by the
zone's offset; this plugin's are not.

Files are chosen by the day in their names from an index built from one
directory listing (listed again when the directory's mtime changes), so a query
opens only the days it covers. Parsed days are kept in a cache bounded by
``cache_mb``. The core trims and decimates (``MAX_POINTS``, ``min_stride``,
``maxDataPoints``). Example ``site/nodes.toml`` entry::

    [nodes.ucsc_radiometer]
    plugin = "radiometer"
    data_dir = "/data"          # holds PWV/; the original container's bind mount

A malformed line is skipped (the log gives the count, the file and the first
line); an unreadable file is logged and the query answered from the other days;
a missing directory stops the node at start.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Sequence

import attrs
from twisted.logger import Logger

from sisock_core import Field, PluginSpec, Timeline, hookimpl
from sisock_core.model import NodeContext
from sisock_core.nodestate import NodeObject
from sisock_core.validators import non_negative
from sisock_core.textarchive import (
    DirectoryWatch,
    ParsedFileCache,
    SpanIndex,
    concat_columns,
    resolve_data_subdir,
)
from sisock_plugins.radiometer.parser import DAY, PWV_DIR, day_start, parse_pwv_file, parse_pwv_name

log = Logger(namespace="sisock_plugins.radiometer")

ARCHIVE = NodeObject("radiometer", "radiometer")
FIELD = "pwv"
INTERVAL = 60.48

PWV_FIELD = Field(
    name=FIELD,
    timeline=FIELD,
    type="number",
    units="mm",
    description="PWV from UCSC Radiometer",
    interval=INTERVAL,
)


@attrs.frozen
class Options:
    """Options of a radiometer node (its ``[nodes.<name>]`` table).

    ``data_dir``: the directory holding ``PWV/`` (default ``/data``, where the
    original container mounted the data). ``cache_mb``: memory for parsed days kept
    between queries (default 32 MB; 0 disables the cache).
    """

    data_dir: str = attrs.field(default="/data", validator=attrs.validators.instance_of(str))
    cache_mb: float = attrs.field(
        default=32, validator=[attrs.validators.instance_of((int, float)), non_negative]
    )


@hookimpl
def sisock_plugin_spec() -> PluginSpec:
    return PluginSpec(
        default_node_name="ucsc_radiometer",
        description="PWV readings from the UCSC radiometer.",
        options=Options,
    )


@hookimpl
def node_start(node: NodeContext) -> None:
    options = node.options if node.options is not None else Options()
    archive = PwvArchive(resolve_pwv_dir(options.data_dir), int(options.cache_mb * 2**20))
    archive.refresh()
    ARCHIVE.put(node, archive)


node_stop, list_fields, read_range = ARCHIVE.hooks()


# -- implementation -------------------------------------------------------------


def resolve_pwv_dir(data_dir: str) -> Path:
    """``<data_dir>/PWV``; raise ``ValueError`` naming the path if it is unusable."""
    return resolve_data_subdir(
        "radiometer", data_dir, PWV_DIR,
        f"the daily files in {PWV_DIR}/PWV_UCSC_<year>-<day of year>.txt",
    )


class PwvArchive:
    """The day index and parsed-file cache of one ``PWV/`` directory (thread-safe)."""

    def __init__(self, directory: Path, cache_bytes: int) -> None:
        self.directory = directory
        self.watch = DirectoryWatch(directory)
        self.cache: ParsedFileCache = ParsedFileCache(cache_bytes)
        self._lock = threading.Lock()
        self._index = SpanIndex([])
        self._said: tuple | None = None

    def refresh(self) -> None:
        """List the directory again if it changed (one ``stat`` when it did not)."""
        with self._lock:
            names = self.watch.new_listing(log)
            if names is not None:
                self._index = self._build(names)

    def _build(self, names: list[str]) -> SpanIndex:
        days: dict[tuple[int, int], str] = {}
        ignored: list[str] = []
        doubles: list[tuple[str, str]] = []
        for name in sorted(names):
            parsed = parse_pwv_name(name)
            if parsed is None:
                ignored.append(name)
                continue
            key = (parsed.year, parsed.doy)
            other = days.get(key)
            if other is not None:
                # Two names for one day: the standard <year>-<doy> form wins.
                if parse_pwv_name(other).swapped and not parsed.swapped:
                    other, name = name, other
                doubles.append((other, name))
                name = other
            days[key] = name
        said = (len(days), len(ignored), tuple(doubles))
        if said != self._said:  # say it once, not on every relisting
            for keep, drop in doubles:
                log.warn(
                    "{directory}: {keep} and {drop} name the same day; reading {keep} only",
                    directory=str(self.directory), keep=keep, drop=drop,
                )
            if ignored:
                log.warn(
                    "{directory}: ignored {n} entries not named PWV_UCSC_<year>-<doy>.txt, "
                    "e.g. {example}",
                    directory=str(self.directory), n=len(ignored), example=ignored[0],
                )
            if days:
                log.info("indexed {n} daily files in {directory}", n=len(days),
                         directory=str(self.directory))
            else:
                log.warn("{directory} holds no PWV files yet", directory=str(self.directory))
        self._said = said
        spans = []
        for (year, doy), name in days.items():
            start = day_start(year, doy)
            # A day covers [start, start + 1 day); the index's span ends are inclusive.
            spans.append((start, start + DAY - 1e-3, (os.path.join(self.directory, name), year)))
        return SpanIndex(spans)

    def files_for(self, start: float, end: float) -> list[tuple[str, int]]:
        """``(path, year)`` of the days overlapping ``[start, end)``."""
        return self._index.select(start, end)

    def list_fields(self, start: float, end: float) -> list[Field]:
        self.refresh()
        return [PWV_FIELD] if self._index.any_in(start, end) else []

    def read_range(self, fields: Sequence[str], start: float, end: float) -> dict[str, Timeline]:
        if FIELD not in fields:
            return {}
        self.refresh()
        parts = []
        for path, year in self.files_for(start, end):
            loaded = self.cache.get(path, lambda p, year=year: parse_pwv_file(p, year))
            if loaded.error is not None:
                if loaded.new:
                    log.error(
                        "cannot read {path}: {error}; answering without it",
                        path=path,
                        error=str(loaded.error),
                    )
                continue
            if loaded.new and loaded.value.bad_lines:
                c = loaded.value
                log.warn(
                    "skipped {n} malformed lines in {path}, first at line {line}: {text!r}",
                    n=c.bad_lines, path=c.source, line=c.first_bad_line, text=c.first_bad_text,
                )
            parts.append(loaded.value)
        t, v = concat_columns(parts, start, end)
        if not t.size:
            return {}
        return {FIELD: Timeline(t=t, data={FIELD: v}, finalized_until=float(t[-1]))}
