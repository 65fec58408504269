"""A g3 node under heavy consumers: light-query latency and shared decodes (issue 20).

Run: ``python -m benchmarks.node_load_bench [--heavy 6] [--light 20]``.

A real DataNodeServer (in this process, :func:`sisock_core.testing.start_node`) serves the
g3 plugin over 7 days of LS372 files (16 channels, one block per channel, 1 Hz,
:func:`benchmarks.g3_data.indexed_week`), ``cache_mb = 64``. A heavy call is
``get_data`` of the 16 channels over the 7 days with ``min_stride = 29`` (raw data:
every sample decoded); a light call is 1 hour of the 16 channels at full resolution, a
different hour each time.

Cases, each on a fresh node (cold cache; files in the OS page cache):

* light-call latency idle, and during ``--heavy`` concurrent heavy calls, with the lanes
  (this code) and with every call in one 4-thread pool (the baseline: the node before
  issue 20, ``HEAVY_FIELD_SECONDS`` set to infinity);
* 4 identical heavy calls sent together (one shared run) vs. one alone, and 4 that end
  1 ms apart (separate runs) with the g3 reader's single flight and without it (baseline).

Prints medians and p95s. On the 2-core development machine (shared), one run: light calls
under 6 heavy ones p50 54 ms, p95 109 ms, max 356 ms with the lanes; baseline p50 84 ms,
p95 155 ms, max 6.8 s (a light call queued behind the 4 threads' heavy calls); the 6 heavy
calls take 21.1 s with the lanes vs 14.6 s (the price of 2 heavy threads, lower priority).
4 identical heavy calls 2.2 s each (1.0x one alone, 2.3 s); 4 ending 1 ms apart 4.6 s with
single-flight decodes, 7.0 s without.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import threading
import time

import numpy as np

from benchmarks.g3_data import DAY, T0, indexed_week
from sisock_core import lanes
from sisock_core.testing import start_node
from sisock_plugins.g3 import reader as reader_mod

LS = "observatory.LSA22YE.feeds.temperatures"
FIELDS = [f"{LS}.Channel_{i:02d}_T" for i in range(1, 17)]
R_FIELDS = [f"{LS}.Channel_{i:02d}_R" for i in range(1, 17)]


def node(data, index):
    return start_node("g3", {"data_dir": str(data), "db": f"sqlite:///{index}", "cache_mb": 64, "watch": False},
                      name="ls372", timeout=600)


def heavy(n, fields=FIELDS, k=0):
    """``k``: seconds off the end (identical calls in flight share one run)."""
    return n.get_data(fields, T0, T0 + 7 * DAY - k, 29.0)


def light(n, hour):
    t = T0 + 3600 * (hour % (7 * 24 - 1))
    started = time.perf_counter()
    ans = n.get_data(FIELDS, t, t + 3600)
    assert len(ans["data"][FIELDS[0]]) == 3600
    return time.perf_counter() - started


def in_threads(fns):
    """Run the callables in threads; returns their wall times from a common start."""
    out = [None] * len(fns)
    start = time.perf_counter()

    def run(i, fn):
        fn()
        out[i] = time.perf_counter() - start

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    return threads, out


def latency_case(data, index, n_heavy, n_light):
    n = node(data, index)
    try:
        idle = [light(n, 24 + 7 * h) for h in range(n_light)]
        threads, done = in_threads([lambda i=i: heavy(n, FIELDS if i % 2 else R_FIELDS, i) for i in range(n_heavy)])
        loaded = []
        h = 500
        while any(t.is_alive() for t in threads) and len(loaded) < n_light * 3:
            loaded.append(light(n, h))
            h += 5
        for t in threads:
            t.join()
        return idle, loaded, max(done)
    finally:
        n.stop()


@contextlib.contextmanager
def no_lanes():
    saved = lanes.HEAVY_FIELD_SECONDS
    lanes.HEAVY_FIELD_SECONDS = math.inf
    try:
        yield
    finally:
        lanes.HEAVY_FIELD_SECONDS = saved


@contextlib.contextmanager
def no_single_flight():
    saved = reader_mod.HKReader._decoding
    reader_mod.HKReader._decoding = lambda self, file_id: contextlib.nullcontext()
    try:
        yield
    finally:
        reader_mod.HKReader._decoding = saved


def together_case(data, index, k, identical=True):
    n = node(data, index)
    try:
        threads, done = in_threads([lambda i=i: heavy(n, FIELDS, 0 if identical else 1e-3 * i) for i in range(k)])
        for t in threads:
            t.join()
        return statistics.median(done)
    finally:
        n.stop()


def ms(xs):
    return f"p50 {np.percentile(xs, 50) * 1000:7.0f} ms  p95 {np.percentile(xs, 95) * 1000:7.0f} ms  " \
           f"max {max(xs) * 1000:7.0f} ms  (n={len(xs)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heavy", type=int, default=6, help="concurrent heavy calls (default 6)")
    ap.add_argument("--light", type=int, default=20, help="light calls measured idle (default 20)")
    args = ap.parse_args()
    data, index = indexed_week()
    print("light 1-hour x 16-channel get_data while heavy 7-day x 16-channel raw get_data run:")
    idle, loaded, heavy_s = latency_case(data, index, args.heavy, args.light)
    print(f"  lanes     idle   {ms(idle)}")
    print(f"  lanes     loaded {ms(loaded)}  ({args.heavy} heavy done after {heavy_s:.1f} s)")
    with no_lanes():
        b_idle, b_loaded, b_heavy_s = latency_case(data, index, args.heavy, args.light)
    print(f"  baseline  idle   {ms(b_idle)}")
    print(f"  baseline  loaded {ms(b_loaded)}  ({args.heavy} heavy done after {b_heavy_s:.1f} s)")
    print("identical heavy calls, cold cache (median wall time of each call):")
    one = together_case(data, index, 1)
    four = together_case(data, index, 4)
    nearly = together_case(data, index, 4, identical=False)
    with no_single_flight():
        b_four = together_case(data, index, 4, identical=False)
    print(f"  one alone                                            {one:6.1f} s")
    print(f"  four identical: one shared run                       {four:6.1f} s  ({four / one:.1f}x one)")
    print(f"  four ending 1 ms apart: single-flight decodes        {nearly:6.1f} s  ({nearly / one:.1f}x one)")
    print(f"  four ending 1 ms apart, baseline (no single flight)  {b_four:6.1f} s  ({b_four / one:.1f}x one)")


if __name__ == "__main__":
    main()
