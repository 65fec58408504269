"""A day of aggregator output for the g3 benchmarks (P2, P7), generated once and reused.

24 one-hour v2 files, 60 s frames, 5 providers and 81 fields: three Lakeshores at 1 Hz
(16, 32 and 16 channels), a Bluefors feed and a status feed with strings and bools,
like the data set in ocs-and-g3.md (24 h, 3 providers, 81 fields, 24 files).
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


def day_archive(directory: str | os.PathLike | None = None) -> Path:
    """The data directory of the day (generated on first use; ~1 minute)."""
    g = _gen()
    base = Path(directory) if directory else Path(tempfile.gettempdir()) / "sisock-g3-bench-day"
    data = base / "data"
    done = base / ".complete"
    if done.exists():
        return data
    agg = g.Aggregator(data, version=2, time_per_file=3600, frame_length=60, start_time=T0)
    agg.add(g.lakeshore(16, "LSA22YE"))
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
