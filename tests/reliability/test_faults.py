"""Faults against a real site: the router, a node, the hub, the data directory.

One ``sisock up`` for the module (router, hub, bridge, the weather node ``apex_archive``
on a copy of the example data, the datafeed node ``lakeshore`` fed by a fake OCS agent
in its own process). It runs under ``setpriv --bounding-set=-dac_override,-dac_read_search``:
as root, ``chmod 000`` stops nobody, but without those two capabilities the site's
processes obey file permissions like any user, so "unreadable" is real.

- the router is SIGKILLed (crossbar and its workers) while Grafana queries and the OCS
  agent keep going: ``sisock up`` starts it again, and nodes, hub and bridge reconnect
  without being restarted; the seconds until ``/query`` answers again are measured;
- a node is SIGKILLed: the hub publishes ``data_node_subtracted``, ``sisock up`` starts
  it again, and its fields and data come back (through the bridge, without /search);
- the hub alone is SIGKILLed: the new hub is refilled by the live nodes;
- the data directory is made unreadable (chmod 000), then moved away, for a while:
  the node keeps serving what it holds, says why in the log, and serves the files again
  when the directory is back.

The g3 faults (MariaDB down, disk full while indexing) are in test_faults_g3.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time

import pytest
import pytest_twisted
from twisted.internet import defer

from sisock_core.testing import Received
from sisock_core.wamp import HUB_SUBTRACTED

from ..siteproc import wait_until
from .support import (
    SHARED_NODES,
    Agents,
    basic,
    http,
    in_thread,
    one_pid,
    query_body,
    record,
    role_pids,
    router_pid,
    start_site,
    wait_http_ready,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

#: ``sisock up`` without the two capabilities that let root ignore file permissions
#: (a user other than root obeys them anyway).
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []
#: Generous bound on any recovery (seconds); the measured figures are reported.
RECOVERY_BOUND = 60.0

APEX = ["apex_archive::apex_humidity", "apex_archive::apex_radiometer", "apex_archive::apex_pressure"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from sisock_plugins.weather.plugin import example_data_dir

    tmp = tmp_path_factory.mktemp("faults")
    shutil.copytree(example_data_dir(), tmp / "weather")
    s = start_site(tmp, SHARED_NODES.format(data_dir=json.dumps(str(tmp / "weather"))), wrapper=NO_DAC)
    agent = None
    try:
        wait_http_ready(s.url)
        caps = open(f"/proc/{one_pid(s.path, 'node apex_archive')}/status").read()
        eff = int(next(line.split()[1] for line in caps.splitlines() if line.startswith("CapEff")), 16)
        assert not eff & (1 << 1) and not eff & (1 << 2), "the site can still ignore file permissions"
        agent = Agents(s.cfg.router.ocs_port, 1, prefix="fakels", log_path=tmp / "agent.log")
        agent.wait_ready()
        wait_until(lambda: _points(s, "lakeshore::channel_01_t", live=True) > 0, timeout=30,
                   what="the agent's data at the datafeed node")
        yield s
    finally:
        if agent is not None:
            agent.stop()
        rc = s.proc.stop()
        print(s.proc.log_tail(30, debug=False))
        assert rc == 0, f"sisock up exited with {rc}"


def _live_range(seconds: float = 600) -> dict:
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # noqa: E731
    return {"from": iso(now - dt.timedelta(seconds=seconds)), "to": iso(now + dt.timedelta(seconds=5))}


def _query(site, targets, live: bool = False, timeout: float = 30):
    body = query_body(targets, rng=_live_range() if live else query_body([])["range"])
    return http(site.url + "/query", body, headers=basic(), timeout=timeout)


def _points(site, target: str, live: bool = False) -> int:
    """Datapoints of ``target`` through the bridge (0 on any failure)."""
    try:
        r = _query(site, [target], live=live, timeout=10)
    except OSError:
        return 0
    if r.status != 200:
        return 0
    return len(r.json[0]["datapoints"])


def _pids(site) -> dict:
    return {role: one_pid(site.path, role) for role in ("hub", "http", "node apex_archive", "node lakeshore")}


def _whole(site) -> bool:
    """The hub answers (through the bridge's health check) and lists both nodes."""
    try:
        r = http(site.url + "/", headers=basic(), timeout=5)
    except OSError:
        return False
    return r.status == 200 and r.json["nodes"] == ["apex_archive", "lakeshore"]


def _good(site, timeout: float = 10) -> bool:
    try:
        r = _query(site, APEX, timeout=timeout)
    except OSError:
        return False
    return r.status == 200 and all(len(s["datapoints"]) > 0 and "meta" not in s for s in r.json)


# -- the router --------------------------------------------------------------------------------


def test_router_killed_and_restarted_while_traffic_flows(site):
    before = _pids(site)
    log_before = len(site.proc.log_text())
    crossbar = router_pid(site.proc.proc.pid)
    samples = Received()  # (when the answer came, whether it was good); appends wake its wait
    stop = threading.Event()

    durations: list[tuple[float, float]] = []  # (start, seconds) of each request

    def traffic() -> None:  # a dashboard refreshing every 0.2 s
        while not stop.is_set():
            t0 = time.monotonic()
            ok = _good(site, timeout=40)
            samples.append((time.monotonic(), ok))  # when the answer came
            durations.append((t0, time.monotonic() - t0))
            time.sleep(0.2)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        samples.wait(lambda got: len(got) >= 3, 30, "three refreshes before the fault")
        assert all(ok for _, ok in samples), "queries failed before the fault"
        killed_at = time.monotonic()
        os.killpg(crossbar, signal.SIGKILL)  # crossbar and its workers (their own process group)
        samples.wait(lambda got: any(t > killed_at and not ok for t, ok in got), RECOVERY_BOUND,
                     "queries to fail while the router is down")
        back = samples.wait(lambda got: next((t for t, ok in got if t > killed_at + 0.5 and ok), None),
                            RECOVERY_BOUND, "/query to answer after the router restart")
        recovered = back - killed_at
        samples.wait(lambda got: sum(1 for t, _ in got if t > back) >= 3, 30, "three refreshes after the recovery")
    finally:
        stop.set()
        worker.join(10)
    after_kill = [ok for t, ok in samples if t > back]
    assert after_kill and all(after_kill), "queries failed again after recovering"
    # nothing but the router was restarted
    assert _pids(site) == before
    log = site.proc.log_text()[log_before:]
    assert "the router died" in log and "router restarted" in log
    # the OCS agent reconnected and the datafeed node subscribed again: new samples arrive
    t_back = time.time()

    def fresh() -> bool:
        r = _query(site, ["lakeshore::channel_01_t"], live=True)
        pts = r.json[0]["datapoints"] if r.status == 200 else []
        return bool(pts) and pts[-1][1] / 1000 > t_back

    wait_until(fresh, timeout=30, what="new OCS samples through the datafeed node after the router restart")
    wait_until(lambda: _whole(site), timeout=RECOVERY_BOUND, what="the hub to list both nodes again")
    router_ready = _router_ready_seconds(log)
    failed = sum(1 for t, ok in samples if killed_at < t < back and not ok)
    in_flight = max((d for t0, d in durations if t0 < killed_at < t0 + d), default=0.0)
    record("router kill", f"/query answered again {recovered:.1f} s after SIGKILL of crossbar "
                          f"(crossbar restart ready in {router_ready}), {failed} failed refreshes in between"
                          + (f", the one in flight at the kill answered after {in_flight:.1f} s" if in_flight else "")
                          + "; "
                          f"hub, bridge and both nodes kept their pids; OCS data flowing again")
    assert recovered < RECOVERY_BOUND


def test_query_in_flight_when_the_router_dies_is_answered(site):
    """A node is slow to answer and the router dies meanwhile: the panel gets its answer
    (a notice for that target) as soon as the bridge loses the router, not when the
    client gives up; no 500."""
    import subprocess
    import sys

    slow = subprocess.Popen([sys.executable, "-m", "tests.reliability.slow_node", str(site.path)],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, **site.env})
    try:
        assert slow.stdout.readline().strip() == "READY"
        out: dict = {}

        def ask() -> None:
            out["reply"] = _query(site, ["slow_node::x", "apex_archive::apex_humidity"], timeout=120)
            out["done"] = time.monotonic()

        worker = threading.Thread(target=ask, daemon=True)
        worker.start()
        assert _next_line(slow, timeout=30) == "CALLED get_data"  # the query is waiting for slow_node
        assert "reply" not in out
        killed_at = time.monotonic()
        os.killpg(router_pid(site.proc.proc.pid), signal.SIGKILL)
        worker.join(120)
        answered = out["done"] - killed_at
    finally:
        slow.kill()
        slow.wait(10)
    # the site whole again before anything is checked: a failed check leaves the next test a site
    wait_until(lambda: _good(site) and _whole(site), timeout=RECOVERY_BOUND,
               what="queries and the hub to work after the second restart")
    r = out["reply"]
    assert r.status == 200, (r.status, r.raw[:300])
    slow_series, apex = r.json
    assert slow_series["datapoints"] == []
    assert "lost the connection to the router" in slow_series["meta"]["notices"][0]["text"]
    # apex's part was answered before the kill, or was still on its way (the kill follows the
    # slow node's call at once, nothing orders it after apex's answer): its data or its notice
    apex_in_time = len(apex["datapoints"]) == 14 * 24
    if not apex_in_time:
        notice = apex["meta"]["notices"][0]["text"]
        assert "lost the connection to the router" in notice or "not connected to the router" in notice, apex
    assert "error answering" not in site.proc.log_text()
    other = "answered before the kill" if apex_in_time else "in flight too: a notice"
    record("query in flight at router kill", f"answered {answered:.2f} s after the kill with a per-target "
                                             "notice (before: held until the client gave up, then a 500); "
                                             f"the other target {other}")


def _next_line(proc, timeout: float) -> str:
    """The next line ``proc`` prints ("" if none within ``timeout`` seconds)."""
    import select

    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else ""


def _router_ready_seconds(log: str) -> str:
    import re

    m = re.findall(r"router restarted .*?ready in ([0-9.]+)s", log)
    return f"{m[-1]} s" if m else "?"


# -- a node ----------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_killed_node_is_removed_restarted_and_its_fields_return(site):
    c = await site.consumer()
    gone: defer.Deferred = defer.Deferred()
    await c.subscribe(lambda info: gone.callback(info) if info.get("name") == "apex_archive"
                      and not gone.called else None, HUB_SUBTRACTED)
    await in_thread(wait_until, lambda: _whole(site), RECOVERY_BOUND, 0.2, "the site to be whole")
    old = one_pid(site.path, "node apex_archive")
    others = {r: one_pid(site.path, r) for r in ("hub", "http", "node lakeshore")}
    try:
        t0 = time.monotonic()
        os.kill(old, signal.SIGKILL)
        info = await gone.addTimeout(30, _reactor())
        removed = time.monotonic() - t0
        assert info == {"name": "apex_archive", "description": site.cfg.nodes["apex_archive"].description}

        def relisted() -> bool:
            pids = role_pids(site.path, "node apex_archive")
            if not pids or pids == [old]:
                return False
            r = http(site.url + "/", headers=basic(), timeout=5)
            return r.status == 200 and "apex_archive" in r.json["nodes"]

        await in_thread(wait_until, relisted, RECOVERY_BOUND, 0.1, "the node to be restarted and listed")
        listed = time.monotonic() - t0
        fields, _ = await c.call("org.simonsobservatory.consumer.apex_archive.get_fields", 1, 0)
        assert set(fields) == {"apex_humidity", "apex_pressure", "apex_temperature", "apex_radiometer",
                               "apex_windspeed"}
        r = await in_thread(_query, site, APEX)
        assert r.status == 200 and [len(s["datapoints"]) for s in r.json][0] == 14 * 24
        back = time.monotonic() - t0
    finally:
        await c.leave()
    assert {r: one_pid(site.path, r) for r in others} == others
    record("node kill", f"data_node_subtracted {removed:.2f} s after SIGKILL; restarted and listed again "
                        f"after {listed:.1f} s; fields and /query data back after {back:.1f} s")


def _reactor():
    from twisted.internet import reactor

    return reactor


# -- the hub ----------------------------------------------------------------------------------------


def test_hub_restarted_alone(site):
    nodes_before = {r: one_pid(site.path, r) for r in ("http", "node apex_archive", "node lakeshore")}
    old = one_pid(site.path, "hub")
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    seen: list[int] = []

    def whole() -> bool:
        pids = role_pids(site.path, "hub")
        if not pids or pids == [old]:
            return False
        r = http(site.url + "/", headers=basic(), timeout=5)
        seen.append(r.status)
        return r.status == 200 and r.json["nodes"] == ["apex_archive", "lakeshore"]

    wait_until(whole, timeout=RECOVERY_BOUND, interval=0.1, what="the new hub to list both nodes")
    relisted = time.monotonic() - t0
    assert _good(site)
    assert {r: one_pid(site.path, r) for r in nodes_before} == nodes_before
    record("hub kill", f"new hub listing both nodes {relisted:.1f} s after SIGKILL; nodes and bridge not "
                       f"restarted; /query never needed the hub")


# -- the data directory ---------------------------------------------------------------------------


NEW_FIELD = "apex_dewpoint"


def _write_field(directory, name: str = NEW_FIELD) -> None:
    lines = ["# APEX dew point (test)", "# hourly", "# K",
             *[f"{1499904000 + 3600 * i} {270 + i % 7}" for i in range(48)]]
    (directory / f"{name}.dat").write_text("\n".join(lines) + "\n")


def test_data_directory_unreadable_for_a_while(site):
    """chmod 000 (real: the site has no CAP_DAC_OVERRIDE): what the node holds is still
    served, a file added meanwhile is not seen and the log says why; readable again: it is."""
    data = site.data_dir
    assert _points(site, "apex_archive::apex_humidity") == 14 * 24
    pid = one_pid(site.path, "node apex_archive")
    log_at = len(site.proc.log_text())
    os.chmod(data, 0o000)
    try:
        _write_field(data)  # this test process is root with every capability
        for _ in range(3):
            r = _query(site, ["apex_archive::apex_humidity", f"apex_archive::{NEW_FIELD}"])
            assert r.status == 200
            held, new = r.json
            assert len(held["datapoints"]) == 14 * 24  # served from memory
            assert new["datapoints"] == []
        wait_until(lambda: "Permission denied" in site.proc.log_text()[log_at:], timeout=10,
                   what="the node to log why it cannot list the directory")
        line = next(ln for ln in site.proc.log_text()[log_at:].splitlines() if "Permission denied" in ln)
        assert "cannot list data directory" in line and str(data) in line
    finally:
        os.chmod(data, 0o755)
    wait_until(lambda: _points(site, f"apex_archive::{NEW_FIELD}") == 48, timeout=30,
               what="the new file to be served once the directory is readable")
    assert one_pid(site.path, "node apex_archive") == pid
    record("data dir unreadable", "chmod 000 under a capability bounding set without DAC override: "
                                  "held data served, new file unseen, 'Permission denied' logged; "
                                  "served again at once when readable; node not restarted")


def test_data_directory_moved_away_and_back(site):
    """The directory disappears (an unmounted disk): no crash, a clear log line; when it is
    back, every file is served again."""
    data = site.data_dir
    away = data.with_name("weather.away")
    pid = one_pid(site.path, "node apex_archive")
    log_at = len(site.proc.log_text())
    os.rename(data, away)
    try:
        for _ in range(3):
            r = _query(site, ["apex_archive::apex_humidity", "apex_archive::apex_pressure"])
            assert r.status == 200
        wait_until(lambda: "cannot list data directory" in site.proc.log_text()[log_at:], timeout=10,
                   what="the node to log that the directory is gone")
    finally:
        os.rename(away, data)
    t0 = time.monotonic()
    wait_until(lambda: _points(site, "apex_archive::apex_humidity") == 14 * 24
               and _points(site, "apex_archive::apex_pressure") == 14 * 24, timeout=30,
               what="the files to be served again once the directory is back")
    assert one_pid(site.path, "node apex_archive") == pid
    record("data dir moved away", f"no crash, 'cannot list data directory' logged; all fields back "
                                  f"{time.monotonic() - t0:.1f} s after the directory returned")
