"""Test data: housekeeping .g3 archives written like the OCS aggregator does.

Frames come from so3g's ``HKSessionHelper`` (session, status and data frames for
schema versions 0, 1 and 2; v0 blocks are ``so3g.IrregBlockDouble``, v1/v2
``G3TimesampleMap``, v2 adds ``block_names``). Values are deterministic functions of
time (:func:`value`), so tests can check them exactly.

:class:`Aggregator` writes a rotating archive: a new file every ``time_per_file``
seconds, each starting with the session and status frames, in one of the three
naming eras (``ctime``: ``<5 digits>/<ctime>.g3``; ``datetime``:
``<5 digits>/%Y-%m-%d-%H-%M-%S.g3``; ``flat``: ``%Y-%m-%d-%H-%M-%S.g3`` at the top).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Iterable

import attrs
import numpy as np

import so3g  # noqa: F401  (before spt3g.core)
from so3g.hk import HKSessionHelper
from spt3g import core

#: kinds of fields: "float", "int", "bool", "str"
FieldKinds = dict[str, str]


@attrs.define
class Provider:
    """An OCS feed: description (address) and its blocks ``{block name: {field: kind}}``."""

    description: str
    blocks: dict[str, FieldKinds]
    rate: float = 1.0  #: samples per second
    prov_id: int | None = None


def lakeshore(n: int = 16, instance: str = "LSA22YE", rate: float = 1.0) -> Provider:
    """A Lakeshore thermometry feed: ``Channel_01_T`` … in one block ``temps``."""
    return Provider(
        f"observatory.{instance}.feeds.temperatures",
        {"temps": {f"Channel_{i:02d}_T": "float" for i in range(1, n + 1)}},
        rate=rate,
    )


def bluefors(rate: float = 0.1) -> Provider:
    """A Bluefors feed: one block per field pair, an int state field."""
    return Provider(
        "observatory.bluefors.feeds.bluefors",
        {"pressure_ch1": {"pressure_ch1": "float", "pressure_ch1_state": "int"},
         "lakeshore_ch8_t": {"lakeshore_ch8_t": "float"}},
        rate=rate,
    )


def agent_status(rate: float = 1 / 30) -> Provider:
    """A feed with a string and a bool field (v1/v2 only)."""
    return Provider(
        "observatory.hwp.feeds.status",
        {"state": {"mode": "str", "locked": "bool", "spin_hz": "float"}},
        rate=rate,
    )


def field_seed(name: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) % 997


def value(field: str, kind: str, t: np.ndarray) -> np.ndarray:
    """The deterministic value of ``field`` at times ``t``."""
    s = field_seed(field)
    if kind == "float":
        return 100.0 + s + np.sin(t / 600.0 + s)
    if kind == "int":
        return (np.floor(t / 60.0).astype(np.int64) + s) % 5
    if kind == "bool":
        return (np.floor(t / 120.0).astype(np.int64) + s) % 2 == 0
    if kind == "str":
        names = np.array(["idle", "spinning", "stopping"])
        return names[(np.floor(t / 300.0).astype(np.int64) + s) % 3]
    raise ValueError(kind)


def _block_v0(fields: FieldKinds, t: np.ndarray):
    b = so3g.IrregBlockDouble()
    b.prefix = ""
    b.t = t
    for name, kind in fields.items():
        if kind != "float":
            raise ValueError(f"schema v0 holds only floats; {name} is {kind}")
        b.data[name] = value(name, kind, t)
    return b


def _block_v12(fields: FieldKinds, t: np.ndarray):
    b = core.G3TimesampleMap()
    b.times = core.G3VectorTime([core.G3Time(x * core.G3Units.s) for x in t])
    for name, kind in fields.items():
        b[name] = g3_vector(kind, value(name, kind, t))
    return b


def g3_vector(kind: str, v: np.ndarray):
    """``v`` as the G3 vector of a field of ``kind`` ("float", "int", "bool" or "str")."""
    if kind == "float":
        return core.G3VectorDouble(v)
    if kind == "int":
        return core.G3VectorInt(v.astype(int))
    if kind == "bool":
        return core.G3VectorBool([bool(x) for x in v])
    return core.G3VectorString([str(x) for x in v])


def file_name(naming: str, t: float) -> str:
    """Relative path of a file started at ``t`` in a naming era."""
    ctime = int(t)
    stamp = dt.datetime.fromtimestamp(ctime, dt.timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")
    if naming == "ctime":
        return f"{str(ctime)[:5]}/{ctime}.g3"
    if naming == "datetime":
        return f"{str(ctime)[:5]}/{stamp}.g3"
    if naming == "flat":
        return f"{stamp}.g3"
    raise ValueError(naming)


class Aggregator:
    """Writes a rotating HK archive like the OCS aggregator (see the module docstring)."""

    def __init__(self, data_dir: str | os.PathLike, *, version: int = 2, naming: str = "ctime",
                 time_per_file: float = 3600.0, frame_length: float = 60.0, session_id: int = 1234,
                 start_time: float = 1.6e9, description: str = "test aggregator") -> None:
        self.data_dir = Path(data_dir)
        self.version = version
        self.naming = naming
        self.time_per_file = time_per_file
        self.frame_length = frame_length
        self.helper = HKSessionHelper(session_id=session_id, start_time=start_time,
                                      hkagg_version=version, description=description)
        self.providers: list[Provider] = []
        self.writer = None
        self.file_start: float | None = None
        self.files: list[Path] = []

    # -- providers ---------------------------------------------------------------

    def add(self, provider: Provider, t: float | None = None) -> Provider:
        provider.prov_id = self.helper.add_provider(provider.description)
        self.providers.append(provider)
        if self.writer is not None:
            self.writer.Process(self.helper.status_frame(timestamp=t))
        return provider

    def remove(self, provider: Provider, t: float | None = None) -> None:
        self.helper.remove_provider(provider.prov_id)
        self.providers.remove(provider)
        if self.writer is not None:
            self.writer.Process(self.helper.status_frame(timestamp=t))

    def restart(self, provider: Provider, t: float) -> Provider:
        """The provider's agent restarts: it disappears and comes back with a new prov_id."""
        self.remove(provider, t)
        return self.add(Provider(provider.description, provider.blocks, provider.rate), t)

    # -- files -------------------------------------------------------------------

    def _open(self, t: float) -> None:
        self.close()
        path = self.data_dir / file_name(self.naming, t)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = core.G3Writer(str(path))
        self.file_start = t
        self.files.append(path)
        self.writer.Process(self.helper.session_frame())
        self.writer.Process(self.helper.status_frame(timestamp=t))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.Process(core.G3Frame(core.G3FrameType.EndProcessing))
            self.writer = None

    def run(self, start: float, end: float) -> list[Path]:
        """Write data frames for ``[start, end)``, rotating files; return files written."""
        before = len(self.files)
        t = start
        while t < end:
            if self.writer is None or t - self.file_start >= self.time_per_file:
                self._open(t)
            self.frame(t, min(t + self.frame_length, end))
            t += self.frame_length
        return self.files[before:]

    def frame(self, t0: float, t1: float) -> None:
        """One data frame per provider with its samples in ``[t0, t1)``."""
        for p in self.providers:
            step = 1.0 / p.rate
            first = np.ceil(t0 / step) * step
            times = np.arange(first, t1, step)
            times = times[times < t1]
            if times.size == 0:
                continue
            f = self.helper.data_frame(p.prov_id, timestamp=float(times[-1]))
            for name, fields in p.blocks.items():
                if self.version == 0:
                    f["blocks"].append(_block_v0(fields, times))
                else:
                    f["blocks"].append(_block_v12(fields, times))
                    if self.version >= 2:
                        f["block_names"].append(name)
            self.writer.Process(f)


def write_archive(data_dir: str | os.PathLike, start: float, hours: float, *, version: int = 2,
                  naming: str = "ctime", providers: Iterable[Provider] | None = None,
                  time_per_file: float = 3600.0, frame_length: float = 60.0,
                  session_id: int = 1234) -> list[Path]:
    """A whole archive in one call; returns its files."""
    agg = Aggregator(data_dir, version=version, naming=naming, time_per_file=time_per_file,
                     frame_length=frame_length, session_id=session_id, start_time=start)
    for p in (providers if providers is not None else [lakeshore(4)]):
        agg.add(p)
    agg.run(start, start + hours * 3600.0)
    agg.close()
    return agg.files


def truncate(path: str | os.PathLike, remove: int) -> int:
    """Cut ``remove`` bytes off the end of ``path`` (a frame cut in the middle); new size."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - remove)
    return size - remove


# -- databases -----------------------------------------------------------------------

def mariadb_database(prefix: str = "sisock_test"):
    """Create a throw-away database on the test session's private MariaDB
    (:func:`tests.mariadb.session_server`); return (url, drop).

    Fails (never skips) with a clear message when the server cannot be started.
    """
    import secrets

    from .mariadb import session_server

    server = session_server()
    name = f"{prefix}_{secrets.token_hex(4)}"
    conn = server.connect(connect_timeout=5)
    conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.close()

    def drop() -> None:
        c = server.connect(connect_timeout=5)
        c.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        c.close()

    return server.url(name), drop
