"""P6, the live cache: ingest rate, last-hour lookup, memory per sample.

Run: ``python -m benchmarks.livecache_bench [--channels 16] [--rate 10] [--repeat 50]``.

Feed: an OCS Lakeshore publishing ``channels`` fields in one block at ``rate`` Hz,
one message per second (the agents flush every second), current OCS format.

* Ingest, one core: (a) the whole datafeed path per message (``parse_event`` of the
  OCS message as it arrives over WAMP, then ``LiveCache.append``), (b) ``append``
  alone of ready numpy batches. Baseline in the same run: the original sisock
  consumer's cache (Python lists extended per message, then a numpy array of every
  channel's timestamps built to prune the window, per message), at a full hour.
  Bar: >= 100k samples/s.
* Lookup of the last hour of every channel: ``LiveCache.read_range`` (two
  ``searchsorted`` and views). Baseline, same data written as an OCS aggregator
  ``.g3`` file (so3g ``HKSessionHelper``): so3g ``HKArchiveScanner`` + ``get_data``
  of the same fields and hour (cold: what a g3 reader without a cache does), and
  ``get_data`` on an already scanned archive (warm). Bar: <= 0.001x the g3 path.
  Also shown: the node's whole ``get_data`` answer (decimated to 1000 points, to
  lists), for context.
* Memory per sample after two simulated hours in a one-hour window: the cache's
  numpy bytes and the tracemalloc total, per field value. Bar: <= 2 x 16 bytes.

Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc

import numpy as np

from sisock_core.engine import NodeEngine
from sisock_core.livecache import LiveCache
from sisock_core.model import NodeContext
from sisock_core.plugins import make_plugin_manager
from sisock_plugins.datafeed.ocs import parse_event
from benchmarks._timing import median_time

T0 = 1_700_000_000.0
AGENT = "observatory.LSA22YE"


def field_names(channels: int) -> list[str]:
    return [f"Channel_{i:02d}_T" for i in range(1, channels + 1)]


def ocs_message(second: int, channels: int, rate: float) -> list:
    """One second of the feed as the node receives it: ``[(message, feed_data)]``."""
    n = int(rate)
    ts = [T0 + second + i / rate for i in range(n)]
    data = {name: [100.0 + c + 0.001 * (second * n + i) for i in range(n)]
            for c, name in enumerate(field_names(channels))}
    message = {"temps": {"block_name": "temps", "timestamps": ts, "data": data}}
    return [[message, {"agent_address": AGENT, "feed_name": "temperatures"}]]


class OriginalCache:
    """The original data_feed_server's ``cache_data`` (per message, per channel)."""

    def __init__(self, buffer_time: float, clock) -> None:
        self.data: dict[str, dict[str, list]] = {}
        self.buffer_time = buffer_time
        self.clock = clock

    def cache(self, subscription_message) -> None:
        message, _feed_data = subscription_message
        for _block, value in message.items():
            for channel in value["data"]:
                name = channel.lower().replace(" ", "_")
                d = self.data.setdefault(name, {"time": [], "data": []})
                d["data"].extend(value["data"][channel])
                d["time"].extend(value["timestamps"])
                idx = sum(self.clock() - np.array(d["time"]) > self.buffer_time)
                d["time"] = d["time"][idx:]
                d["data"] = d["data"][idx:]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def bench_ingest(channels: int, rate: float, seconds: int) -> dict:
    msgs = [ocs_message(s, channels, rate) for s in range(seconds)]
    per_msg = channels * int(rate)

    # (a) parse + append, from an empty cache to a full hour
    clock = Clock()
    cache = LiveCache(3600, clock=clock)
    t = time.perf_counter()
    for s, args in enumerate(msgs):
        clock.now = T0 + s + 1
        parsed = parse_event(args, {}, agent_address=AGENT)
        for b in parsed.batches:
            cache.append(b.timeline, b.t, b.data)
    full = time.perf_counter() - t

    # (b) append alone of ready numpy batches (same data)
    batches = [parse_event(args, {}, agent_address=AGENT).batches[0] for args in msgs]
    clock2 = Clock()
    cache2 = LiveCache(3600, clock=clock2)
    t = time.perf_counter()
    for s, b in enumerate(batches):
        clock2.now = T0 + s + 1
        cache2.append(b.timeline, b.t, b.data)
    append_only = time.perf_counter() - t

    # baseline: the original consumer with a full hour held (its cost grows with the hour)
    clock3 = Clock()
    orig = OriginalCache(3600, clock3)
    hour = int(3600 * rate)
    for name in field_names(channels):
        orig.data[name.lower()] = {"time": [T0 + i / rate for i in range(hour)], "data": [0.0] * hour}
    steady = [ocs_message(3600 + s, channels, rate) for s in range(30)]
    t = time.perf_counter()
    for s, args in enumerate(steady):
        clock3.now = T0 + 3600 + s + 1
        orig.cache(args[0])
    orig_rate = len(steady) * per_msg / (time.perf_counter() - t)

    # ours at a full hour too (steady state, same 30 messages)
    t = time.perf_counter()
    for s, args in enumerate(steady):
        clock.now = T0 + 3600 + s + 1
        for b in parse_event(args, {}, agent_address=AGENT).batches:
            cache.append(b.timeline, b.t, b.data)
    ours_steady = len(steady) * per_msg / (time.perf_counter() - t)

    return {
        "parse_append": seconds * per_msg / full,
        "append_only": seconds * per_msg / append_only,
        "parse_append_full_hour": ours_steady,
        "original_full_hour": orig_rate,
        "cache": cache,
        "clock": clock,
    }


def write_g3(path: str, channels: int, rate: float) -> list[str]:
    from tests.g3gen import Provider, write_archive

    provider = Provider(f"{AGENT}.feeds.temperatures", {"temps": {n: "float" for n in field_names(channels)}},
                        rate=rate)
    return [str(p) for p in write_archive(path, T0, 1.0, providers=[provider], time_per_file=3600.0,
                                          frame_length=60.0)]


def bench_lookup(cache: LiveCache, clock: Clock, channels: int, rate: float, repeat: int) -> dict:
    names = [n.lower() for n in field_names(channels)]
    end = clock.now
    start = end - 3600

    def ours():
        out = cache.read_range(names, start, end)
        assert sum(tl.t.size for tl in out.values()) > 0

    t_ours = median_time(ours, repeat * 20)
    n_samples = sum(tl.t.size * len(tl.data) for tl in cache.read_range(names, start, end).values())

    class LivePlugin:
        from sisock_core import hookimpl

        @hookimpl
        def read_range(self, fields, start, end):
            return None

    engine = NodeEngine(NodeContext("lakeshore", "bench"), make_plugin_manager(LivePlugin(), name="live"),
                        "live", clock=clock, live_cache=cache)
    t_engine = median_time(lambda: engine.get_data(names, -3600, 0, max_points=1000), max(5, repeat))

    import so3g  # noqa: F401  (before spt3g)
    from so3g.hk import HKArchiveScanner

    with tempfile.TemporaryDirectory() as tmp:
        # same samples as the cache holds: the last hour, written by an aggregator
        files = write_g3(tmp, channels, rate)
        g3_fields = [f"{AGENT}.feeds.temperatures.{n}" for n in field_names(channels)]

        def g3_cold():
            scanner = HKArchiveScanner()
            for f in files:
                scanner.process_file(f)
            arch = scanner.finalize()
            data, _ = arch.get_data(g3_fields, T0, T0 + 3600)
            assert len(data) == channels

        scanner = HKArchiveScanner()
        for f in files:
            scanner.process_file(f)
        arch = scanner.finalize()

        def g3_warm():
            data, _ = arch.get_data(g3_fields, T0, T0 + 3600)
            assert len(data) == channels

        t_cold = median_time(g3_cold, max(3, repeat // 5))
        t_warm = median_time(g3_warm, max(3, repeat // 2))
    return {"ours": t_ours, "engine": t_engine, "g3_cold": t_cold, "g3_warm": t_warm, "samples": n_samples}


def bench_memory(channels: int, rate: float, hours: float) -> dict:
    msgs_per_hour = 3600
    batches = [parse_event(ocs_message(s, channels, rate), {}, agent_address=AGENT).batches[0]
               for s in range(msgs_per_hour)]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    clock = Clock()
    cache = LiveCache(3600, clock=clock)
    peak_bytes = 0
    for s in range(int(hours * msgs_per_hour)):
        b = batches[s % msgs_per_hour]
        clock.now = T0 + s + 1
        cache.append(b.timeline, b.t + (s // msgs_per_hour) * 3600.0, b.data)
        if s % 600 == 0:
            peak_bytes = max(peak_bytes, cache.stats().bytes)
    traced = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    st = cache.stats()
    return {"stats": st, "traced_per_sample": traced / st.samples, "peak_bytes": peak_bytes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--seconds", type=int, default=3600, help="messages (seconds of feed) ingested")
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()

    print(f"P6 live cache: {args.channels} channels x {args.rate:g} Hz, one OCS message per second")
    ing = bench_ingest(args.channels, args.rate, args.seconds)
    print("ingest (samples/s, one core):")
    print(f"  parse OCS message + append, filling an hour   {ing['parse_append']:>12,.0f}")
    print(f"  parse + append, hour full (steady state)      {ing['parse_append_full_hour']:>12,.0f}")
    print(f"  append alone (numpy batches)                  {ing['append_only']:>12,.0f}")
    print(f"  baseline: original consumer, hour full        {ing['original_full_hour']:>12,.0f}"
          f"   -> ours {ing['parse_append_full_hour'] / ing['original_full_hour']:.0f}x faster"
          f"   (bar >= 100,000: {'ok' if ing['parse_append_full_hour'] >= 1e5 else 'MISSED'})")

    lk = bench_lookup(ing["cache"], ing["clock"], args.channels, args.rate, args.repeat)
    print(f"lookup, last hour of {args.channels} channels ({lk['samples']:,} samples), medians:")
    print(f"  LiveCache.read_range                          {lk['ours'] * 1e3:>10.4f} ms")
    print(f"  node get_data answer (1000 points, lists)     {lk['engine'] * 1e3:>10.3f} ms")
    print(f"  baseline g3: scan file + get_data (cold)      {lk['g3_cold'] * 1e3:>10.3f} ms"
          f"   ratio {lk['ours'] / lk['g3_cold']:.6f}x (bar <= 0.001x: "
          f"{'ok' if lk['ours'] / lk['g3_cold'] <= 1e-3 else 'MISSED'})")
    print(f"  baseline g3: get_data, archive scanned (warm) {lk['g3_warm'] * 1e3:>10.3f} ms"
          f"   ratio {lk['ours'] / lk['g3_warm']:.6f}x")

    mem = bench_memory(args.channels, args.rate, 2.0)
    st = mem["stats"]
    raw = 8 + 8 / args.channels
    print(f"memory after 2 h in a 1 h window: {st.samples:,} samples, {st.bytes / 2**20:.2f} MiB of arrays")
    print(f"  arrays per sample          {st.bytes_per_sample:6.2f} bytes (raw {raw:.2f}: value + shared time;"
          f" bar <= 32: {'ok' if st.bytes_per_sample <= 32 else 'MISSED'})")
    print(f"  tracemalloc per sample     {mem['traced_per_sample']:6.2f} bytes (everything the cache allocated)")
    print(f"  largest array total seen   {mem['peak_bytes'] / 2**20:6.2f} MiB (flat after the first hour)")


if __name__ == "__main__":
    main()
