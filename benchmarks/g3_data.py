"""Aggregator output for the g3 benchmarks (P2, P7, P8), generated once and reused.

:func:`day_archive`: 24 one-hour v2 files, 60 s frames, 5 providers: a Lakeshore 372 at
1 Hz laid out as the OCS aggregator writes that agent (one block per channel, ``Channel
01`` ... ``Channel 16``, each with its own timestamps and fields ``Channel_XX_T`` /
``Channel_XX_R``), two Lakeshores with one shared block (32 and 16 channels), a Bluefors
feed and a status feed with strings and bools.

:func:`ls372_archive`: only the LS372 feed, 600 s frames, hourly files, over any span and
rate (the long-range benchmark's 30 days and year at 1 Hz; 0.1 Hz for the year on a small disk).

Blocks are built from numpy arrays in one call each (:class:`FastAggregator`), so a month
at 1 Hz (~1 GB) is written in a few minutes.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

T0 = 1_600_000_000.0
DAY = 86400.0
LS = "observatory.LSA22YE.feeds.temperatures"
P2_FIELDS = [f"{LS}.Channel_{i:02d}_T" for i in range(1, 17)]


def _gen():
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from tests import g3gen

    return g3gen


def ls372(instance: str = "LSA22YE", channels: int = 16, rate: float = 1.0):
    """A Lakeshore 372 feed as the aggregator stores it: one block per channel."""
    g = _gen()
    import attrs

    @attrs.define
    class Staggered(g.Provider):
        """The 372 scans its channels in turn: each block has its own timestamps."""

    return Staggered(f"observatory.{instance}.feeds.temperatures",
                     {f"Channel {i:02d}": {f"Channel_{i:02d}_T": "float", f"Channel_{i:02d}_R": "float"}
                      for i in range(1, channels + 1)}, rate=rate)


def _fast_aggregator():
    g = _gen()
    import numpy as np

    import so3g  # noqa: F401  (before spt3g)
    from spt3g import core

    class FastAggregator(g.Aggregator):
        """g3gen's Aggregator with blocks built from numpy arrays; providers flagged
        ``staggered`` get one timestamp vector per block (offset within the period)."""

        def frame(self, t0: float, t1: float) -> None:
            for p in self.providers:
                step = 1.0 / p.rate
                nb = len(p.blocks)
                blocks, names, last = [], [], None
                for i, (name, fields) in enumerate(p.blocks.items()):
                    off = (i * step / nb) if type(p).__name__ == "Staggered" else 0.0
                    times = np.arange(np.ceil((t0 - off) / step) * step + off, t1, step)
                    times = times[(times >= t0) & (times < t1)]
                    if times.size == 0:
                        continue
                    b = core.G3TimesampleMap()
                    b.times = core.G3VectorTime(np.round(times * core.G3Units.s).astype(np.int64))
                    rng = np.random.default_rng(int(times[0]) * 31 + i)
                    for fname, kind in fields.items():
                        v = g.value(fname, kind, times)
                        if kind == "float":
                            v = v + 1e-3 * rng.standard_normal(times.size)
                        b[fname] = g.g3_vector(kind, v)
                    blocks.append(b)
                    names.append(name)
                    last = times[-1] if last is None else max(last, times[-1])
                if not blocks:
                    continue
                f = self.helper.data_frame(p.prov_id, timestamp=float(last))
                for b, name in zip(blocks, names):
                    f["blocks"].append(b)
                    f["block_names"].append(name)
                self.writer.Process(f)

    return FastAggregator


def ls372_archive(base: str | os.PathLike, start: float, days: float, rate: float = 1.0,
                  progress: bool = True) -> Path:
    """An LS372-only archive under ``base/data`` (generated once: ``base/.complete``)."""
    base = Path(base)
    data = base / "data"
    done = base / ".complete"
    if done.exists():
        return data
    agg = _fast_aggregator()(data, version=2, time_per_file=3600, frame_length=600, start_time=start)
    agg.add(ls372(rate=rate))
    end = start + days * DAY
    t = start
    step = 7 * DAY
    while t < end:
        agg.run(t, min(t + step, end))
        t += step
        if progress:
            print(f"  generated {min(t, end) - start:.0f} s of {end - start:.0f} s in {data}", file=sys.stderr)
    agg.close()
    done.touch()
    return data


def day_archive(directory: str | os.PathLike | None = None) -> Path:
    """The data directory of the day (generated on first use; ~1 minute)."""
    g = _gen()
    base = Path(directory) if directory else Path(tempfile.gettempdir()) / "sisock-g3-bench-day-ls372"
    data = base / "data"
    done = base / ".complete"
    if done.exists():
        return data
    agg = _fast_aggregator()(data, version=2, time_per_file=3600, frame_length=60, start_time=T0)
    agg.add(ls372("LSA22YE"))
    agg.add(g.lakeshore(32, "LSB33"))
    agg.add(g.lakeshore(16, "LSC44"))
    agg.add(g.bluefors())
    status = g.agent_status()
    status.blocks["state"].update({f"aux_{i}": "float" for i in range(11)})
    agg.add(status)
    agg.run(T0, T0 + DAY)
    agg.close()
    done.touch()
    return data


def g3_files(data: Path) -> list[str]:
    from sisock_plugins.g3.scanner import files_in

    return [str(p) for p in files_in(data)]


def size_mb(files: list[str]) -> float:
    return sum(os.path.getsize(f) for f in files) / 1e6


def indexed_week(base: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """7 days of :func:`ls372_archive` at 1 Hz (from ``T0``) and its SQLite index with the
    scanner's summaries (``sisock scan --once``), made once: ``(data dir, index path)``."""
    import subprocess

    base = Path(base) if base else Path(tempfile.gettempdir()) / "sisock-reliability-ls372-7d"
    data = ls372_archive(base, T0, 7, progress=False)
    index = base / "index.sqlite"
    scanned = base / ".scanned"
    if not scanned.exists():
        out = subprocess.run([sys.executable, "-m", "sisock_core.cli", "scan", "--once", "--data-dir", str(data),
                              "--db", f"sqlite:///{index}"], capture_output=True, text=True, timeout=900,
                             stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise RuntimeError(f"sisock scan --once failed: {out.stderr[-3000:]}")
        scanned.touch()
    return data, index
