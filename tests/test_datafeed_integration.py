"""End to end: fake OCS agents publishing on a real router, served by datafeed nodes.

One ``sisock up`` per module (crossbar, hub, and the nodes ``lakeshore`` and
``old_ls240`` (datafeed) and ``sensors``). The fake agents are real WAMP clients on
the router's anonymous OCS port publishing in the exact OCS message shapes: a
16-channel Lakeshore 372 at 10 Hz in the current format (msgpack, as today's
agents) and an LS240 of the ocs 0.4.0-0.4.2 era publishing lists of samples (JSON).
Consumers use the read-only consumer role, as Grafana's bridge does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import pytest_twisted
from autobahn.twisted.component import Component
from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThread

from sisock_core.client import with_session
from sisock_core.config import load_config
from sisock_core.wamp import node_uri
from sisock_plugins.sensors.readers import NoReadings, read_hwmon

from .siteproc import site_up, wait_until

pytestmark = pytest.mark.integration

NODES = """
[nodes.lakeshore]
plugin = "datafeed"
target = "fakels372"
feed = "temperatures"
description = "fake LS372"

[nodes.old_ls240]
plugin = "datafeed"
target = "oldls240"
feed = "temperatures"
buffer_time = 600

[nodes.sensors]
plugin = "sensors"
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    with site_up(tmp, NODES, log_tail=30) as (path, proc):
        yield load_config(path), proc


class FakeAgent:
    """An OCS agent: an anonymous WAMP session on the OCS port publishing feeds."""

    def __init__(self, cfg, instance_id: str, serializer: str) -> None:
        self.address = f"observatory.{instance_id}"
        self.joined: defer.Deferred = defer.Deferred()
        self.component = Component(
            transports=[{"type": "websocket", "url": f"ws://127.0.0.1:{cfg.router.ocs_port}/ws",
                         "serializers": [serializer], "max_retries": 0}],
            realm=cfg.router.realm,
        )
        self.component.on("join", lambda session, details: self.joined.callback(session))
        self.session = None

    async def start(self) -> "FakeAgent":
        self.component.start(reactor)
        self.session = await self.joined.addTimeout(30, reactor)
        return self

    def feed_data(self, feed: str) -> dict:
        return {"agent_address": self.address, "agg_params": {"frame_length": 60},
                "feed_name": feed, "address": f"{self.address}.feeds.{feed}", "record": True,
                "session_id": "1700000000.0", "agent_class": "Lakeshore372Agent"}

    def publish(self, feed: str, message, feed_data: dict | None = None) -> None:
        self.session.publish(f"{self.address}.feeds.{feed}", (message, feed_data or self.feed_data(feed)))

    async def stop(self) -> None:
        await self.component.stop()


def ls372_message(t: float) -> dict:
    """One sample of 16 channels, one block per channel (as the LS372 agent)."""
    return {f"Channel {c:02d}": {"block_name": f"Channel {c:02d}", "timestamps": [t],
                                 "data": {f"Channel {c:02d} T": [0.01 * c + (t % 100) * 1e-4],
                                          f"Channel {c:02d} R": [1000.0 + c]}}
            for c in range(1, 17)}


class LivePushes:
    """What a node pushes on its live topic; :meth:`wait_for` is a Deferred on a condition
    (pushes are sent after the samples are in the node's cache, so get_data has them)."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []
        self._waiters: list[tuple] = []

    def __call__(self, payload: dict) -> None:
        self.payloads.append(payload)
        for waiter in list(self._waiters):
            self._check(waiter)

    def _check(self, waiter: tuple) -> None:
        predicate, d = waiter
        if not d.called and predicate(self.payloads):
            self._waiters.remove(waiter)
            d.callback(self.payloads)

    def wait_for(self, predicate, timeout: float = 30.0) -> defer.Deferred:
        waiter = (predicate, defer.Deferred())
        self._waiters.append(waiter)
        self._check(waiter)
        return waiter[1].addTimeout(timeout, reactor)

    def times(self, timeline: str) -> list[float]:
        return [t for p in self.payloads for t in p["timeline"].get(timeline, {}).get("t", [])]


async def subscribed(session, node: str) -> LivePushes:
    pushes = LivePushes()
    await session.subscribe(pushes, node_uri(node, "live"))
    return pushes


@pytest_twisted.ensureDeferred
async def test_agent_at_10hz_is_served_and_pushed_live(site):
    """16 channels, 20 samples 0.1 s apart: every sample is pushed on the node's live topic
    (batched: fewer payloads than messages) and served through get_data."""
    cfg, _ = site
    agent = await FakeAgent(cfg, "fakels372", "msgpack").start()
    try:
        async def work(session):
            pushes = await subscribed(session, "lakeshore")
            t0 = time.time() - 2.0  # (all in the past: get_data ends now)
            stamps = [t0 + i * 0.1 for i in range(20)]
            for ts in stamps:
                agent.publish("temperatures", ls372_message(ts))
            published = time.monotonic()
            channel_05 = "observatory.fakels372.channel_05"
            await pushes.wait_for(lambda _: len(pushes.times(channel_05)) >= 20)
            print(f"all 20 samples pushed live {time.monotonic() - published:.3f}s after publishing")
            fields, timelines = await session.call(node_uri("lakeshore", "get_fields"), -60, 0)
            data = await session.call(node_uri("lakeshore", "get_data"),
                                      [f"channel_{c:02d}_t" for c in range(1, 17)] + ["channel_03_r"], t0 - 1, 0)
            return stamps, fields, timelines, data, pushes

        stamps, fields, timelines, data, pushes = await with_session(reactor, cfg, work, timeout=60)
    finally:
        await agent.stop()
    assert set(fields) == {f"channel_{c:02d}_{k}" for c in range(1, 17) for k in "tr"}
    assert fields["channel_07_t"]["timeline"] == "observatory.fakels372.channel_07"
    assert timelines["observatory.fakels372.channel_07"]["interval"] == pytest.approx(0.1, abs=0.02)
    assert all(len(data["data"][f"channel_{c:02d}_t"]) == 20 for c in range(1, 17))
    assert data["data"]["channel_03_r"] == [1003.0] * 20
    assert data["timeline"]["observatory.fakels372.channel_01"]["t"] == stamps
    # the live pushes: get_data-shaped, batched (fewer payloads than messages), all samples
    assert all(p["node"] == "lakeshore" for p in pushes.payloads)
    assert len(pushes.payloads) < 20
    assert pushes.times("observatory.fakels372.channel_05") == stamps


def sisock(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sisock_core.cli", *args],
                          capture_output=True, text=True, timeout=60)


@pytest_twisted.ensureDeferred
async def test_sisock_get_shows_an_agents_data(site):
    cfg, _ = site
    agent = await FakeAgent(cfg, "fakels372", "json").start()
    t = time.time() - 1.0

    async def work(session):
        pushes = await subscribed(session, "lakeshore")
        agent.publish("temperatures", ls372_message(t))
        await pushes.wait_for(lambda _: t in pushes.times("observatory.fakels372.channel_02"))

    try:
        await with_session(reactor, cfg, work, timeout=30)
    finally:
        await agent.stop()
    out = await deferToThread(sisock, "get", "lakeshore", "channel_02_r", "-c", cfg.path, "--start", "-60",
                              "--json")
    assert out.returncode == 0, out.stderr
    ans = json.loads(out.stdout)
    assert 1002.0 in ans["data"]["channel_02_r"] and t in ans["timeline"]["observatory.fakels372.channel_02"]["t"]


@pytest_twisted.ensureDeferred
async def test_old_agent_list_format_and_types(site):
    cfg, _ = site
    agent = await FakeAgent(cfg, "oldls240", "json").start()
    t0 = time.time() - 10.0  # (all in the past: get_data ends now)
    samples = [{"block_name": "temps", "timestamp": t0 + i,
                "data": {"Channel 1 T": 4.0 + i, "Channel 1 V": 0.5, "status": "ok", "heater_on": i % 2 == 0,
                         "range": 3}}
               for i in range(5)]

    async def work(session):
        pushes = await subscribed(session, "old_ls240")
        agent.publish("temperatures", samples)
        await pushes.wait_for(lambda _: len(pushes.times("observatory.oldls240.temps")) >= 5)
        ans = await session.call(node_uri("old_ls240", "get_data"),
                                 ["channel_1_t", "status", "heater_on", "range"], t0 - 1, 0)
        fields, _ = await session.call(node_uri("old_ls240", "get_fields"), t0 - 1, 0)
        return ans, fields

    try:
        ans, fields = await with_session(reactor, cfg, work, timeout=30)
    finally:
        await agent.stop()
    assert ans["data"] == {"channel_1_t": [4.0, 5.0, 6.0, 7.0, 8.0], "status": ["ok"] * 5,
                           "heater_on": [True, False, True, False, True], "range": [3] * 5}
    assert {k: v["type"] for k, v in fields.items()} == {
        "channel_1_t": "number", "channel_1_v": "number", "status": "string", "heater_on": "bool",
        "range": "number"}


@pytest_twisted.ensureDeferred
async def test_malformed_and_foreign_messages_are_logged_valid_blocks_kept(site):
    cfg, proc = site
    agent = await FakeAgent(cfg, "fakels372", "msgpack").start()
    t = time.time() - 5.0  # (the foreign sample at t + 1 is in the past too: get_data would show it)
    log_at = len(proc.log_text())

    async def work(session):
        pushes = await subscribed(session, "lakeshore")
        msg = {"good": {"block_name": "good", "timestamps": [t], "data": {"kept": [1.5]}},
               "bad": {"block_name": "bad", "timestamps": [t, t + 1], "data": {"short": [1.0]}}}
        agent.publish("temperatures", msg)
        agent.publish("temperatures", {"good": {"block_name": "good", "timestamps": [t + 1],
                                                 "data": {"kept": [99.0]}}},
                      feed_data={"agent_address": "observatory.intruder"})
        await pushes.wait_for(lambda _: t in pushes.times("observatory.fakels372.good"))
        # the foreign message came after the good one: once it is logged, it was handled
        await deferToThread(wait_until, lambda: "ignored a message" in proc.log_text()[log_at:], 10, 0.05,
                            "the foreign message in the log")
        return await session.call(node_uri("lakeshore", "get_data"), ["kept", "short"], t - 1, 0)

    try:
        ans = await with_session(reactor, cfg, work, timeout=30)
    finally:
        await agent.stop()
    assert ans["data"] == {"kept": [1.5], "short": []}
    log = proc.log_text()
    assert ("lakeshore: malformed message on observatory.fakels372.feeds.temperatures: block 'bad': "
            "field 'short' has 1 values for 2 timestamps; left out") in log
    assert "agent_address is 'observatory.intruder', expected 'observatory.fakels372'" in log


def test_nodes_listed_and_sensors_node_runs_without_sensors(site):
    cfg, proc = site
    out = sisock("nodes", "-c", cfg.path, "--json")
    assert out.returncode == 0, out.stderr
    names = {n["name"] for n in json.loads(out.stdout)}
    assert {"lakeshore", "old_ls240", "sensors"} <= names
    fields = sisock("fields", "sensors", "-c", cfg.path, "--json")
    assert fields.returncode == 0, fields.stderr
    try:
        has_sensors = subprocess.run(["sensors", "-j"], capture_output=True, text=True).returncode == 0
    except FileNotFoundError:  # lm-sensors not installed
        has_sensors = False
    try:
        has_hwmon = bool(read_hwmon("/sys/class/hwmon").values)
    except NoReadings:
        has_hwmon = False
    if not has_sensors and not has_hwmon:
        # a machine without sensors, like the build machines
        assert json.loads(fields.stdout)["fields"] == {}
        assert proc.log_text().count("no sensors on this machine") == 1
    else:
        assert json.loads(fields.stdout)["fields"]
