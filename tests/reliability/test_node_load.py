"""One g3 node under heavy consumers: light queries keep being answered, abandoned work stops,
memory follows ``cache_mb`` and the heavy lane (not the number of consumers), SIGTERM is quick.

The site: ``sisock up`` with the bridge and one g3 node ``ls372`` over 7 days of LS372-like
hourly files (16 channels, one block per channel, 1 Hz; generated once per machine in the
temporary directory and indexed with ``sisock scan --once``), ``cache_mb = 64`` (smaller
than the 155 MB one 7-day query decodes, so heavy queries really decode).

A heavy query is a careless consumer's ``get_data`` of 16 channels over the 7 days with
``min_stride = 29`` (buckets of 58 s: finer than the finest summary tier (60 s), so
every sample is decoded), sent over WAMP; a light query is a dashboard's 1-hour ``/query``
of the same 16 channels through the bridge. Figures: light-query p50/p95 idle and under 6
concurrent heavy queries, the node's CPU seconds after 2 heavy queries are cancelled (WAMP
CANCEL through the router), peak RSS under 4 concurrent heavy queries against the bound
stated in docs/performance.md, and the seconds a busy node takes to exit after SIGTERM.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import threading
import time
from pathlib import Path
from typing import AsyncIterator

import numpy as np
import pytest
import pytest_twisted

from ..siteproc import wait_until
from .support import (ProcessExit, basic, http, in_thread, one_pid, query_body, record, role_pids, rss_mib,
                      start_site)

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.timeout(900)]

T0 = 1_600_000_000.0
DAY = 86400.0
DAYS = 7
CACHE_MB = 64
LS = "observatory.LSA22YE.feeds.temperatures"
T_FIELDS = [f"{LS}.Channel_{i:02d}_T" for i in range(1, 17)]
R_FIELDS = [f"{LS}.Channel_{i:02d}_R" for i in range(1, 17)]
GET_DATA = "org.simonsobservatory.consumer.ls372.get_data"


@pytest.fixture(scope="module")
def archive():
    """7 days of LS372 files and their index (with summaries), made once per machine."""
    from benchmarks.g3_data import indexed_week

    return indexed_week()


@pytest.fixture(scope="module")
def site(archive, tmp_path_factory):
    data, index = archive
    nodes = f"""
[nodes.ls372]
plugin = "g3"
data_dir = "{data}"
db = "sqlite:///{index}"
cache_mb = {CACHE_MB}
watch = false
"""
    s = start_site(tmp_path_factory.mktemp("nodeload"), nodes, log_level="info")
    try:
        wait_until(lambda: _light(s, 0)[1], timeout=60, interval=0.5, what="the g3 node to answer")
        yield s
    finally:
        s.proc.stop()


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _light(site, hour: int) -> tuple[float, bool]:
    """A 1-hour /query of the 16 channels at 1 s (raw data: finer than the summaries);
    (seconds, whether every series has its points)."""
    t = T0 + 3600 * (hour % (24 * DAYS - 1))
    body = query_body([f"ls372::{f}" for f in T_FIELDS], {"from": _iso(t), "to": _iso(t + 3600)}, max_points=4000,
                      interval="1s", intervalMs=1000)
    started = time.monotonic()
    r = http(site.url + "/query", body, headers=basic(), timeout=60)
    took = time.monotonic() - started
    ok = r.status == 200 and len(r.json) == 16 and all(len(s["datapoints"]) >= 1800 for s in r.json)
    return took, ok


def _cpu_seconds(pid: int) -> float:
    """CPU seconds ``pid`` has used (``/proc``). The waits on it poll: another process's CPU
    time announces nothing; so do the waits on the site's log file (another process's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _heavy(c, fields, k: int = 0):
    """A heavy call; ``k`` makes it differ from the others (identical calls share one run)."""
    return c.call(GET_DATA, fields, T0, T0 + DAYS * DAY - k, 29.0)


async def _busy(c, pid: int, field_sets: list[list[str]]) -> tuple[list, float]:
    """Heavy calls (failures ignored) and the node's CPU seconds before; returns once the
    node has spent a CPU second on them."""
    heavy = [_heavy(c, f, k) for k, f in enumerate(field_sets)]
    for d in heavy:
        d.addErrback(lambda f: None)
    before = _cpu_seconds(pid)
    await in_thread(wait_until, lambda: _cpu_seconds(pid) - before > 1.0, 60, 0.05, "the node to be busy")
    return heavy, before


@contextlib.asynccontextmanager
async def _busy_node(site, field_sets: list[list[str]]) -> AsyncIterator[tuple[int, int, list, float]]:
    """The node ls372 kept busy by heavy calls from a consumer session (left at the end):
    ``(pid, where the site's log stood, the calls, its CPU seconds before)``; see :func:`_busy`."""
    pid = one_pid(site.path, "node ls372")
    log_at = len(site.proc.log_text())
    c = await site.consumer()
    try:
        heavy, before = await _busy(c, pid, field_sets)
        yield pid, log_at, heavy, before
    finally:
        await c.leave()


def _percentiles(xs: list[float]) -> str:
    return f"p50 {np.percentile(xs, 50) * 1000:.0f} ms, p95 {np.percentile(xs, 95) * 1000:.0f} ms"


@pytest_twisted.ensureDeferred
async def test_light_queries_are_answered_during_six_heavy_ones(site):
    idle = []
    for h in range(10):
        took, ok = await in_thread(_light, site, 24 + h * 7)
        assert ok
        idle.append(took)
    c = await site.consumer()
    try:
        started = time.monotonic()
        heavy = [_heavy(c, T_FIELDS if i % 2 else R_FIELDS, i) for i in range(6)]
        finished: list[float] = []
        for d in heavy:
            d.addCallback(lambda r: (finished.append(time.monotonic() - started), r)[1])
        loaded = []
        h = 1000
        while len(finished) < 6 and len(loaded) < 40:
            took, ok = await in_thread(_light, site, h)
            h += 5
            assert ok
            if len(finished) < 6:
                loaded.append(took)
        answers = [await d for d in heavy]
    finally:
        await c.leave()
    for ans in answers:
        assert len(ans["data"]) == 16 and all(len(v) > 10_000 for v in ans["data"].values())
    assert len(loaded) >= 3, "the heavy queries ended before light ones could be measured"
    assert max(loaded) < min(finished), "a light query waited for the heavy ones"
    record("node lanes", f"1-hour /query of 16 channels idle {_percentiles(idle)}; during 6 concurrent "
                         f"7-day x 16-channel raw get_data ({len(loaded)} queries) {_percentiles(loaded)}, "
                         f"max {max(loaded) * 1000:.0f} ms; the heavy ones took {min(finished):.1f}-"
                         f"{max(finished):.1f} s")


@pytest_twisted.ensureDeferred
async def test_cancelled_heavy_queries_stop_within_two_seconds(site):
    async with _busy_node(site, [T_FIELDS, R_FIELDS]) as (pid, log_at, heavy, before):
        busy = _cpu_seconds(pid)
        cancelled_at = time.monotonic()
        for d in heavy:
            d.cancel()
        await in_thread(wait_until, lambda: site.proc.log_text()[log_at:].count("abandoned by the caller") >= 2,
                        30, 0.05, "the node to log both cancellations")
        await in_thread(time.sleep, max(0.0, cancelled_at + 2.0 - time.monotonic()))
        at_2s = _cpu_seconds(pid)
        await in_thread(time.sleep, 3.0)
        at_5s = _cpu_seconds(pid)
        took, ok = await in_thread(_light, site, 77)
        assert ok
    assert at_5s - at_2s < 0.5, f"the node spent {at_5s - at_2s:.2f} CPU s between 2 and 5 s after the cancel"
    record("abandoned work", f"2 heavy queries cancelled (WAMP CANCEL via the router) after {busy - before:.1f} "
                             f"CPU s: the node spent {at_2s - busy:.2f} CPU s in the next 2 s and "
                             f"{at_5s - at_2s:.2f} CPU s in the 3 s after (baseline: 53 CPU s before issue 20)")


def test_a_client_hanging_up_stops_the_nodes_work(site):
    """Through the bridge: a 6-day /query of 20000 points (buckets of 52 s, finer than the
    finest summaries: raw data, the heavy lane; about 0.8 CPU s of decoding) whose client
    goes away once the node is decoding; the bridge cancels its WAMP call and the node stops."""
    import json
    import socket
    import urllib.parse

    pid = one_pid(site.path, "node ls372")
    log_at = len(site.proc.log_text())
    body = json.dumps(query_body([f"ls372::{f}" for f in T_FIELDS], {"from": _iso(T0 + DAY), "to": _iso(T0 + 7 * DAY)},
                                 max_points=20_000, interval="1s", intervalMs=1000)).encode()
    auth = basic()["Authorization"]
    port = urllib.parse.urlsplit(site.url).port
    before = _cpu_seconds(pid)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Authorization: {auth}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        wait_until(lambda: _cpu_seconds(pid) - before > 0.25, 60, 0.01, "the node to be busy")
        busy = _cpu_seconds(pid)
    gone = time.monotonic()
    wait_until(lambda: "abandoned by the caller" in site.proc.log_text()[log_at:], 30, 0.05,
               "the node to log the cancellation")
    time.sleep(max(0.0, gone + 2.0 - time.monotonic()))
    at_2s = _cpu_seconds(pid)
    time.sleep(3.0)
    at_5s = _cpu_seconds(pid)
    assert at_5s - at_2s < 0.5, f"the node spent {at_5s - at_2s:.2f} CPU s between 2 and 5 s after the hang-up"
    record("abandoned /query", f"a client hung up on a 6-day raw /query after the node spent {busy - before:.1f} "
                               f"CPU s on it: {at_2s - busy:.2f} CPU s in the next 2 s, {at_5s - at_2s:.2f} "
                               f"in the 3 s after (baseline: 44 s of decoding before issue 20)")


@pytest_twisted.ensureDeferred
async def test_memory_under_four_heavy_queries_stays_within_the_bound(site):
    from sisock_core import lanes

    pid = one_pid(site.path, "node ls372")
    idle = rss_mib(pid)
    peak = [idle]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.05):
            try:
                peak.append(rss_mib(pid))
            except (OSError, AssertionError):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    c = await site.consumer()
    try:
        answers = [await d for d in [_heavy(c, f) for f in (T_FIELDS, R_FIELDS, T_FIELDS[:8] + R_FIELDS[:8],
                                                            R_FIELDS[8:] + T_FIELDS[8:])]]
    finally:
        stop.set()
        await c.leave()
    sampler.join(5)
    after = rss_mib(pid)
    assert all(len(a["data"]) == 16 for a in answers)
    # (each answer: 16 timelines of ~20900 points, ~6 MB as msgpack: under the nodes' 8 MiB bound)
    # README (Memory): cache_mb + per heavy thread twice the raw data of its query (decoded
    # chunks and the assembled timelines) + its answer; 7 days x 16 fields at 1 Hz with times
    # = 16 x 604800 x 16 bytes = 148 MiB raw; an answer is at most 8 MiB as msgpack (the
    # nodes' answer bound), ~32 MiB as the Python lists it is built from
    raw_mb = 16 * DAYS * 86400 * 16 / 2**20
    bound = idle + CACHE_MB + lanes.HEAVY_THREADS * (2 * raw_mb + 32)
    assert max(peak) <= bound, f"peak RSS {max(peak):.0f} MiB over the bound {bound:.0f} MiB"
    record("node memory", f"4 concurrent 7-day x 16-field raw get_data, cache_mb = {CACHE_MB}: node RSS "
                          f"idle {idle:.0f} MiB, peak {max(peak):.0f} MiB, after {after:.0f} MiB; bound "
                          f"{bound:.0f} MiB (idle + cache_mb + {lanes.HEAVY_THREADS} heavy threads x "
                          f"(2 x {raw_mb:.0f} MiB raw + 32 MiB answer)); before issue 20: 1.24 GB at cache_mb = 256")


@pytest_twisted.ensureDeferred
async def test_sigterm_stops_a_busy_node_within_two_seconds(site):
    async with _busy_node(site, [T_FIELDS, R_FIELDS, T_FIELDS]) as (pid, log_at, heavy, _):
        exits = ProcessExit(pid)
        sent = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        await in_thread(exits.wait, 30, "the node to exit")
        exited = time.monotonic() - sent
        for d in heavy:
            d.cancel()
    log = site.proc.log_text()[log_at:]
    assert "did not stop within" not in log, log[-3000:]
    await in_thread(wait_until, lambda: [p for p in role_pids(site.path, "node ls372") if p != pid]
                    and _light(site, 5)[1], 60, 0.2, "the node to be restarted and answer")
    assert exited < 10.0  # the supervisor's grace: it did not need to kill the node
    record("node SIGTERM", f"a node busy with 3 heavy queries exited {exited:.2f} s after SIGTERM (baseline: "
                           f"killed by the supervisor after 10 s)")
