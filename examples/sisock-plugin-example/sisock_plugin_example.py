"""A sisock plugin serving the columns of a CSV file as fields.

The file's first row names the columns; the first column is the UNIX time of each
row, the others are fields (numbers; an empty cell is a missing sample)::

    time,temperature,pressure
    1600000000,291.2,1013.1
    1600000060,291.4,

Site file entry::

    [nodes.lab]
    plugin = "example"
    path = "/data/lab.csv"          # or env LAB_CSV
    units = {temperature = "K", pressure = "mBar"}

The file is read at start and again whenever it changes.
"""

from __future__ import annotations

import csv
import math
import os
import threading
from typing import Iterable, Mapping, Sequence

import attrs
import numpy as np

from sisock_core import Field, PluginSpec, Timeline, hookimpl
from sisock_core.model import NodeContext

TIMELINE = "rows"


@attrs.frozen
class Options:
    """Options of an example node (its ``[nodes.<name>]`` table)."""

    path: str = attrs.field(metadata={"help": "the CSV file to serve (env LAB_CSV)"})
    units: dict[str, str] = attrs.field(factory=dict, metadata={"help": "units of each column"})


@hookimpl
def sisock_plugin_spec() -> PluginSpec:
    return PluginSpec(
        default_node_name="lab",
        description="Columns of a CSV file",
        options=Options,
        env={"LAB_CSV": "path"},
    )


@hookimpl
def node_start(node: NodeContext) -> None:
    table = CsvTable(node.options.path)
    table.refresh()  # raises with a clear message if the file is unusable
    node.state["table"] = table


@hookimpl
def list_fields(node: NodeContext, start: float, end: float) -> Iterable[Field]:
    table: CsvTable = node.state["table"]
    t, columns = table.refresh()
    if not np.any((t >= start) & (t < end)):
        return []
    interval = float(np.median(np.diff(t))) if t.size > 1 else None
    units = node.options.units
    return [Field(name, TIMELINE, units=units.get(name), interval=interval) for name in columns]


@hookimpl
def read_range(
    node: NodeContext, fields: Sequence[str], start: float, end: float
) -> Mapping[str, Timeline]:
    t, columns = node.state["table"].refresh()
    wanted = {name: columns[name] for name in fields if name in columns}
    if not wanted:
        return {}
    # Full resolution: the core trims to [start, end) and decimates.
    return {TIMELINE: Timeline(t, wanted, finalized_until=float(t[-1]) if t.size else None)}


@hookimpl
def node_stop(node: NodeContext) -> None:
    node.state.pop("table", None)


class CsvTable:
    """The parsed file, re-read when its modification time or size changes."""

    def __init__(self, path: str) -> None:
        self.path = os.path.expanduser(path)
        self._lock = threading.Lock()  # hooks run in several worker threads
        self._stamp: tuple[int, int] | None = None
        self._data: tuple[np.ndarray, dict[str, np.ndarray]] = (np.empty(0), {})

    def refresh(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                raise ValueError(f"example: {self.path} does not exist") from None
            if (st.st_mtime_ns, st.st_size) != self._stamp:
                self._data = parse_csv(self.path)
                self._stamp = (st.st_mtime_ns, st.st_size)
            return self._data


def parse_csv(path: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Times (sorted) and one float array per column; raises ValueError naming the line."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or len(rows[0]) < 2:
        raise ValueError(f"example: {path}: the first row must name a time column and fields")
    names = [name.strip() for name in rows[0][1:]]
    times, values = [], []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            times.append(float(row[0]))
            values.append([float(cell) if cell.strip() else math.nan
                           for cell in row[1:len(names) + 1]] + [math.nan] * (len(names) + 1 - len(row)))
        except ValueError as exc:
            raise ValueError(f"example: {path}: line {number}: {exc}") from None
    t = np.array(times, dtype=float)
    data = np.array(values, dtype=float).reshape(len(times), len(names))
    order = np.argsort(t, kind="stable")
    return t[order], {name: data[order, i] for i, name in enumerate(names)}
