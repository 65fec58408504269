"""The apex plugin: serve the APEX weather archive of the ACT site.

Reads ``<data_dir>/targets/<prefix>_<field>_<start ctime>_<end ctime>.dat`` files
(format: :mod:`sisock_plugins.apex.parser`). Seven fields, each its own timeline
named after the field: humidity (%), pressure (mBar), radiometer (mm PWV),
dewpoint (C), temperature (C), windspeed (km/h), winddirection (deg). Files of
other fields found in the directory are served too, without units.

Files are chosen by the ctimes in their names, never by opening them: the
directory is listed once into a sorted index per field and listed again only when
its modification time changes, and a query binary-searches that index, so its
cost grows with the range asked for, not with the size of the archive. Parsed
files are kept in a cache bounded by ``cache_mb`` and re-read when they change.
The core trims and decimates (``MAX_POINTS``, ``min_stride``, Grafana's
``maxDataPoints``). Example ``site/nodes.toml`` entry::

    [nodes.apex_weather]
    plugin = "apex"
    data_dir = "/data"          # holds targets/; the original container's bind mount
    max_points = 1000           # optional, env MAX_POINTS

A malformed line is skipped (the log gives the count, the file and the first
line, once per version of the file); an unreadable file is logged and the query
answered from the other files; a missing directory stops the node at start.
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
from sisock_plugins.apex.parser import FIELDS, TARGETS, parse_target_file, parse_target_name

log = Logger(namespace="sisock_plugins.apex")

ARCHIVE = NodeObject("apex", "apex")


@attrs.frozen
class Options:
    """Options of an apex node (its ``[nodes.<name>]`` table).

    ``data_dir``: the directory holding ``targets/`` (default ``/data``, where the
    original container mounted the archive). ``cache_mb``: memory for parsed files
    kept between queries (default 64 MB; 0 disables the cache).
    """

    data_dir: str = attrs.field(default="/data", validator=attrs.validators.instance_of(str))
    cache_mb: float = attrs.field(
        default=64, validator=[attrs.validators.instance_of((int, float)), non_negative]
    )


@hookimpl
def sisock_plugin_spec() -> PluginSpec:
    return PluginSpec(
        default_node_name="apex_weather",
        description="Weather station information from APEX.",
        options=Options,
    )


@hookimpl
def node_start(node: NodeContext) -> None:
    options = node.options if node.options is not None else Options()
    archive = ApexArchive(resolve_targets_dir(options.data_dir), int(options.cache_mb * 2**20))
    archive.refresh()
    ARCHIVE.put(node, archive)


node_stop, list_fields, read_range = ARCHIVE.hooks()


# -- implementation -------------------------------------------------------------


def resolve_targets_dir(data_dir: str) -> Path:
    """``<data_dir>/targets``; raise ``ValueError`` naming the path if it is unusable."""
    return resolve_data_subdir(
        "apex", data_dir, TARGETS, f"the archive in {TARGETS}/<prefix>_<field>_<start>_<end>.dat"
    )


def field_info(name: str) -> Field:
    known = FIELDS.get(name)
    return Field(
        name=name,
        timeline=name,
        type="number",
        units=known.units if known else None,
        description=known.description if known else f"APEX {name} (not a known APEX field; units unknown).",
        interval=None,
    )


def _field_order(name: str) -> tuple[int, str]:
    order = list(FIELDS)
    return (order.index(name), "") if name in FIELDS else (len(order), name)


class ApexArchive:
    """The index and parsed-file cache of one ``targets/`` directory (thread-safe)."""

    def __init__(self, targets: Path, cache_bytes: int) -> None:
        self.targets = targets
        self.watch = DirectoryWatch(targets)
        self.cache: ParsedFileCache = ParsedFileCache(cache_bytes)
        self._lock = threading.Lock()
        self._index: dict[str, SpanIndex] = {}
        self._indexed: int | None = None
        self._ignored = 0

    # -- index ----------------------------------------------------------------

    def refresh(self) -> None:
        """List the directory again if it changed (one ``stat`` when it did not)."""
        with self._lock:
            names = self.watch.new_listing(log)
            if names is not None:
                self._index = self._build(names)

    def _build(self, names: list[str]) -> dict[str, SpanIndex]:
        spans: dict[str, list[tuple[float, float, str]]] = {}
        ignored: list[str] = []
        for name in names:
            parts = parse_target_name(name)
            if parts is None:
                ignored.append(name)
                continue
            spans.setdefault(parts.field, []).append(
                (float(parts.start), float(parts.end), os.path.join(self.targets, name))
            )
        index = {field: SpanIndex(s) for field, s in spans.items()}
        old = set(self._index)
        for field in sorted(set(index) - old - set(FIELDS)):
            log.warn(
                "{directory}: serving field {field}, which is not a known APEX field (no units)",
                directory=str(self.targets),
                field=field,
            )
        if ignored and len(ignored) != self._ignored:
            log.warn(
                "{directory}: ignored {n} entries not named <prefix>_<field>_<start>_<end>.dat, "
                "e.g. {example}",
                directory=str(self.targets),
                n=len(ignored),
                example=sorted(ignored)[0],
            )
        n_files = sum(len(i) for i in index.values())
        if n_files != self._indexed or set(index) != old:  # say it once, not on every relisting
            if n_files:
                log.info(
                    "indexed {n} files of {k} fields in {directory}",
                    n=n_files,
                    k=len(index),
                    directory=str(self.targets),
                )
            else:
                log.warn("{directory} holds no archive files yet", directory=str(self.targets))
        self._indexed = n_files
        self._ignored = len(ignored)
        return index

    def files_for(self, field: str, start: float, end: float) -> list[str]:
        """Paths of ``field``'s files whose name spans overlap ``[start, end)``."""
        index = self._index.get(field)
        return index.select(start, end) if index is not None else []

    # -- queries --------------------------------------------------------------

    def list_fields(self, start: float, end: float) -> list[Field]:
        """Fields with at least one file whose span overlaps ``[start, end)``."""
        self.refresh()
        index = self._index
        names = [f for f, i in index.items() if i.any_in(start, end)]
        return [field_info(n) for n in sorted(names, key=_field_order)]

    def read_range(self, fields: Sequence[str], start: float, end: float) -> dict[str, Timeline]:
        """Samples of ``fields`` in ``[start, end)``; each field is its own timeline."""
        self.refresh()
        out: dict[str, Timeline] = {}
        for field in dict.fromkeys(fields):
            parts = []
            for path in self.files_for(field, start, end):
                loaded = self.cache.get(path, parse_target_file)
                if loaded.error is not None:
                    if loaded.new:
                        log.error(
                            "cannot read {path}: {error}; answering without it",
                            path=path,
                            error=str(loaded.error),
                        )
                    continue
                if loaded.new:
                    _report(loaded.value)
                parts.append(loaded.value)
            t, v = concat_columns(parts, start, end)
            if t.size:
                out[field] = Timeline(t=t, data={field: v}, finalized_until=float(t[-1]))
        return out


def _report(columns) -> None:
    """Log a parsed file's problems (called once per version of the file)."""
    if columns.bad_lines:
        log.warn(
            "skipped {n} malformed lines in {path}, first at line {line}: {text!r}",
            n=columns.bad_lines,
            path=columns.source,
            line=columns.first_bad_line,
            text=columns.first_bad_text,
        )
    if columns.reordered:
        log.warn("{path}: times were not in ascending order; sorted them", path=columns.source)
