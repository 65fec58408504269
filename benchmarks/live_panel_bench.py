"""A "last 6 h, 16 channels" panel refreshed while data flows in: live g3 node vs archive alone.

Run: ``python -m benchmarks.live_panel_bench [--cache DIR] [--refreshes 60] [--points 1000]``.

Data (generated once into ``--cache``, default ``~/.cache/sisock-bench``): 7 hours of a
Lakeshore 372 feed at 1 Hz as the OCS aggregator writes it (one block per channel, fields
``Channel_XX_T`` and ``Channel_XX_R``, 600 s frames, hourly files;
:func:`benchmarks.g3_data.ls372_archive`), indexed with summaries by the scanner.

Two g3 nodes on the same files, each a real DataNodeServer driven through the in-memory
WAMP session of :mod:`sisock_core.testing` (answers pass through msgpack, as to the HTTP
bridge), with a clock 10 minutes past the files' end (the files lag the feed by one frame
length, as at a site):

* **live** (``live = true``): the feed's last 10 minutes are in the live cache; before
  each refresh the agent publishes 5 more seconds (one OCS message per second with the
  16 channel blocks) and the clock moves 5 s. The panel runs to the present.
* **archive alone** (the baseline; today's g3 node): the same query, answered up to the
  files' end.

Each refresh is ``get_data(16 x Channel_XX_T, -6 h, now, max_points=--points)``, as
Grafana's bridge asks; printed: median (p50) and p90 per refresh and the points returned.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.g3_data import LS, T0, ls372, ls372_archive

FIELDS = [f"{LS}.Channel_{i:02d}_T" for i in range(1, 17)]
HOURS = 7.0
LAG = 600.0  # the files' lag behind the feed: one LS372 frame


def index(data: Path, db: Path) -> None:
    from sisock_plugins.g3.index import Index
    from sisock_plugins.g3.scanner import Scanner

    done = db.with_suffix(".done")
    if not done.exists():
        Scanner(Index(f"sqlite:///{db}"), data).scan_tree()
        done.touch()


def message(provider, t: float) -> dict:
    """One OCS message (current format): every channel block sampled once, staggered as the 372."""
    from tests.g3gen import value

    nb = len(provider.blocks)
    out = {}
    for i, (name, fields) in enumerate(provider.blocks.items()):
        ti = np.array([t + i / nb])
        out[name] = {"block_name": name, "timestamps": ti.tolist(),
                     "data": {f: value(f, kind, ti).tolist() for f, kind in fields.items()}}
    return out


def feed_data() -> dict:
    return {"agent_address": "observatory.LSA22YE", "feed_name": "temperatures", "record": True,
            "address": LS, "session_id": "1.0", "agg_params": {"frame_length": 600},
            "agent_class": "Lakeshore372Agent"}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "sisock-bench")
    p.add_argument("--refreshes", type=int, default=60)
    p.add_argument("--points", type=int, default=1000)
    args = p.parse_args(argv)

    from sisock_core.testing import start_node

    base = args.cache / "live-7h"
    data = ls372_archive(base, T0, HOURS / 24)
    db = base / "index.sqlite"
    index(data, db)
    end = T0 + HOURS * 3600  # the files hold [T0, end)
    now = [end + LAG]
    clock = lambda: now[0]  # noqa: E731
    provider = ls372()
    options = {"data_dir": str(data), "db": f"sqlite:///{db}"}
    live = start_node("g3", {**options, "live": True}, name="live", clock=clock, state_dir=base / "state")
    archive = start_node("g3", options, name="archive", clock=clock, state_dir=base / "state")
    try:
        for s in np.arange(end, now[0]):  # what the cache holds beyond the files
            live.publish(LS, (message(provider, float(s)), feed_data()))
        results: dict[str, list[float]] = {"live": [], "archive alone": []}
        points: dict[str, int] = {}
        last: dict[str, float] = {}
        for _ in range(args.refreshes):
            for s in np.arange(now[0], now[0] + 5):  # 5 s of data flow in
                live.publish(LS, (message(provider, float(s)), feed_data()))
            now[0] += 5
            for name, node in (("live", live), ("archive alone", archive)):
                start = time.perf_counter()
                ans = node.get_data(FIELDS, -6 * 3600, 0, max_points=args.points)
                results[name].append(time.perf_counter() - start)
                points[name] = max(len(v) for v in ans["data"].values())
                last[name] = max(tl["t"][-1] for tl in ans["timeline"].values())
        print(f"last 6 h x 16 channels, max_points={args.points}, {args.refreshes} refreshes, "
              f"5 s of feed (16 blocks/s) between refreshes; files end {LAG:.0f} s before now")
        for name, times in results.items():
            times = sorted(times)
            p50 = statistics.median(times)
            p90 = times[int(0.9 * (len(times) - 1))]
            print(f"  {name:14s} p50 {p50 * 1e3:7.1f} ms  p90 {p90 * 1e3:7.1f} ms  {points[name]} points/field, "
                  f"last sample {now[0] - last[name]:.1f} s before now")
        ratio = statistics.median(results["live"]) / statistics.median(results["archive alone"])
        print(f"  live / archive alone: {ratio:.2f}x")
    finally:
        live.stop()
        archive.stop()


if __name__ == "__main__":
    main()
