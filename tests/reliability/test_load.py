"""Load: 20 dashboards x 16 targets refreshing every 5 s for 60 s, 51 data nodes, live OCS feeds.

One ``sisock up`` with 50 datafeed nodes (``feed00``..``feed49``, each following one fake
OCS agent) and the weather node ``apex_archive``, in the default layout: the datafeed nodes
share one process (their plugin's group), the weather node has its own
(``benchmarks.node_groups_bench`` compares with a process per node). 50 fake OCS agents (a child process, real WAMP publishers on
the OCS port) publish 16 channels at 1 Hz each for the whole test.

Each dashboard has four panels of four targets (Grafana sends one ``/query`` per panel,
all at once on refresh): three panels of live channels (last 15 minutes) of three datafeed
nodes, one panel of the APEX archive (one day of July 2017). Each panel is a thread with
its own keep-alive connection; dashboards are staggered over the 5 s period.

Asserted: the hub lists all 51 nodes, every request answers 200 with data in every
series and no error notice, and the agents' samples arrive. Reported (not asserted, see
performance.md): start-up time, request count, p50/p95/max latency per request and per
dashboard refresh, memory.
"""

from __future__ import annotations

import datetime as dt
import http.client as httpclient
import threading
import time

import numpy as np
import pytest

from ..siteproc import wait_until
from .support import (
    Agents,
    basic,
    http,
    one_pid,
    record,
    role_pids,
    rss_mib,
    start_site,
    wait_http_ready,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

N_FEEDS = 50
CHANNELS = 16
DASHBOARDS = 20
PANELS = 4
TARGETS_PER_PANEL = 4
REFRESH = 5.0
DURATION = 60.0

NODES = "".join(
    f'[nodes.feed{i:02d}]\nplugin = "datafeed"\ntarget = "agent{i:02d}"\nfeed = "temperatures"\n\n'
    for i in range(N_FEEDS)
) + '[nodes.apex_archive]\nplugin = "weather"\n'


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _live_range() -> dict:
    now = dt.datetime.now(dt.timezone.utc)
    return {"from": _iso(now - dt.timedelta(minutes=15)), "to": _iso(now)}


def panel_targets(d: int, p: int) -> tuple[list[str], bool]:
    """The targets of panel ``p`` of dashboard ``d`` and whether it is live."""
    if p == PANELS - 1:
        fields = ["apex_humidity", "apex_pressure", "apex_radiometer", "apex_windspeed"]
        return [f"apex_archive::{f}" for f in fields], False
    node = (d * (PANELS - 1) + p) % N_FEEDS
    first = (d + p * TARGETS_PER_PANEL) % CHANNELS
    chans = [(first + k) % CHANNELS + 1 for k in range(TARGETS_PER_PANEL)]
    return [f"feed{node:02d}::channel_{c:02d}_t" for c in chans], True


def panel_body(d: int, p: int) -> dict:
    targets, live = panel_targets(d, p)
    day = 13 + d % 13
    rng = _live_range() if live else {"from": f"2017-07-{day:02d}T00:00:00.000Z",
                                      "to": f"2017-07-{day + 1:02d}T00:00:00.000Z"}
    return {"range": rng, "interval": "1s", "intervalMs": 1000, "maxDataPoints": 1200,
            "targets": [{"target": t, "refId": chr(65 + i)} for i, t in enumerate(targets)],
            "adhocFilters": []}


@pytest.fixture(scope="module")
def loaded_site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("load")
    t0 = time.monotonic()
    site = start_site(tmp, NODES, log_level="info", timeout=400)
    started = time.monotonic() - t0
    agents = None
    try:
        wait_http_ready(site.url)
        node_pids = [one_pid(site.path, "node --group datafeed"), one_pid(site.path, "node apex_archive")]
        t1 = time.monotonic()
        agents = Agents(site.cfg.router.ocs_port, N_FEEDS, channels=CHANNELS, rate=1.0, prefix="agent",
                        log_path=tmp / "agents.log")
        agents.wait_ready(timeout=180)
        joined = time.monotonic() - t1

        def every_feed_has_data() -> bool:
            body = {"range": _live_range(), "maxDataPoints": 10,
                    "targets": [{"target": f"feed{i:02d}::channel_16_t"} for i in range(N_FEEDS)]}
            r = http(site.url + "/query", body, headers=basic(), timeout=60)
            return r.status == 200 and all(s["datapoints"] for s in r.json)

        wait_until(every_feed_has_data, timeout=120, interval=1.0, what="data at all 50 datafeed nodes")
        record("load start-up", f"sisock up with {N_FEEDS + 1} nodes ready in {started:.0f} s "
                                f"({len(node_pids)} node processes, {sum(rss_mib(p) for p in node_pids):.0f} MiB "
                                f"RSS in all); {N_FEEDS} OCS agents joined in {joined:.1f} s")
        yield site, agents, node_pids
    finally:
        if agents is not None:
            agents.stop()
        rc = site.proc.stop(timeout=60)
        assert rc == 0, f"sisock up exited with {rc}\n{site.proc.log_tail(30, debug=False)}"


@pytest.mark.timeout(900)
def test_twenty_dashboards_fifty_nodes_live_feeds(loaded_site):
    site, agents, node_pids = loaded_site
    health = http(site.url + "/", headers=basic()).json
    assert len(health["nodes"]) == N_FEEDS + 1 and "apex_archive" in health["nodes"]
    bridge_pid = one_pid(site.path, "http")
    rss_before = {"bridge": rss_mib(bridge_pid), "nodes": sum(rss_mib(p) for p in node_pids)}
    published_before = _published_points(site)

    latencies: list[float] = []  # per request
    refreshes: dict[tuple[int, int], list[float]] = {}  # (dashboard, round) -> panel latencies
    failures: list[str] = []
    lock = threading.Lock()
    start = time.monotonic() + 1.0
    rounds = int(DURATION / REFRESH)

    def panel(d: int, p: int) -> None:
        conn = httpclient.HTTPConnection("127.0.0.1", site.cfg.http.port, timeout=30)
        offset = d * REFRESH / DASHBOARDS
        for k in range(rounds):
            due = start + offset + k * REFRESH
            time.sleep(max(0.0, due - time.monotonic()))
            body = panel_body(d, p)
            t0 = time.perf_counter()
            try:
                r = http(site.url + "/query", body, headers=basic(), conn=conn)
            except Exception as exc:  # a failed request is a finding, not a crash of the test
                with lock:
                    failures.append(f"dashboard {d} panel {p} round {k}: {type(exc).__name__}: {exc}")
                conn.close()
                conn = httpclient.HTTPConnection("127.0.0.1", site.cfg.http.port, timeout=30)
                continue
            took = time.perf_counter() - t0
            problem = None
            if r.status != 200:
                problem = f"HTTP {r.status}: {r.raw[:200]!r}"
            else:
                series = r.json
                if len(series) != TARGETS_PER_PANEL:
                    problem = f"{len(series)} series"
                else:
                    bad = [s["target"] for s in series if not s["datapoints"] or "meta" in s]
                    if bad:
                        problem = f"empty or failed series {bad}: {[s.get('meta') for s in series][:2]}"
            with lock:
                latencies.append(took)
                refreshes.setdefault((d, k), []).append(took)
                if problem:
                    failures.append(f"dashboard {d} panel {p} round {k}: {problem}")
        conn.close()

    threads = [threading.Thread(target=panel, args=(d, p), daemon=True)
               for d in range(DASHBOARDS) for p in range(PANELS)]
    t_start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(DURATION + 120)
    elapsed = time.monotonic() - t_start
    assert not any(t.is_alive() for t in threads), "a dashboard thread hung"

    counts = agents.stop()
    published_after = _published_points(site)
    rss_after = {"bridge": rss_mib(bridge_pid), "nodes": sum(rss_mib(p) for p in node_pids)}
    assert latencies, failures[:5]
    lat = np.array(latencies) * 1000
    per_refresh = np.array([max(v) for v in refreshes.values() if len(v) == PANELS]) * 1000
    expected = DASHBOARDS * PANELS * rounds
    record("load", f"{len(latencies)} /query requests ({len(latencies) * TARGETS_PER_PANEL} series) in "
                   f"{elapsed:.0f} s from {DASHBOARDS} dashboards x {PANELS * TARGETS_PER_PANEL} targets, "
                   f"{len(failures)} failed; per request p50 {np.percentile(lat, 50):.0f} ms, "
                   f"p95 {np.percentile(lat, 95):.0f} ms, max {lat.max():.0f} ms; per dashboard refresh "
                   f"p95 {np.percentile(per_refresh, 95):.0f} ms")
    record("load ingest", f"{counts.get('published', 0)} OCS messages ({counts.get('published', 0) * CHANNELS} "
                          f"samples) from {N_FEEDS} agents at 1 Hz x {CHANNELS} channels, "
                          f"{counts.get('skipped', 0)} skipped; the 50 nodes hold "
                          f"{published_after - published_before} more channel_01 samples after the run; "
                          f"RSS bridge {rss_before['bridge']:.0f}->{rss_after['bridge']:.0f} MiB, "
                          f"nodes {rss_before['nodes']:.0f}->{rss_after['nodes']:.0f} MiB")
    assert failures == [], failures[:10]
    assert len(latencies) == expected
    assert counts.get("published", 0) >= N_FEEDS * DURATION * 0.9 and counts.get("skipped", 0) == 0
    # what the agents published reached the nodes (one channel per node counted)
    assert published_after - published_before >= N_FEEDS * DURATION * 0.9
    assert role_pids(site.path, "http") == [bridge_pid]


def _published_points(site) -> int:
    """Samples of channel_01_t held by the 50 datafeed nodes (last hour)."""
    now = dt.datetime.now(dt.timezone.utc)
    body = {"range": {"from": _iso(now - dt.timedelta(hours=1)), "to": _iso(now + dt.timedelta(seconds=5))},
            "targets": [{"target": f"feed{i:02d}::channel_01_t"} for i in range(N_FEEDS)]}
    r = http(site.url + "/query", body, headers=basic(), timeout=60)
    assert r.status == 200
    return sum(len(s["datapoints"]) for s in r.json)
