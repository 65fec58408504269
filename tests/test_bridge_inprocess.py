"""The bridge's request handling in one process, without a router: fast and deterministic.

The Klein app (:class:`~sisock_core.bridge.app.GrafanaAPI`) and its
:class:`~sisock_core.bridge.service.BridgeService` run on the test's reactor and serve real
HTTP on a loopback port (treq as the client); the service's WAMP session is
:class:`sisock_core.testing.MemorySession` (answers pass through msgpack as over WAMP, the
hub's listing is the hub's own registry), on which a real weather data node
(:class:`~sisock_core.datanode.DataNodeServer`, the example APEX data) is registered. Faults
that are hard to time on a whole site are exact here: a node that never answers while the
router is lost, a session that is gone. tests/test_bridge_http.py keeps the whole-site tests
(``sisock up`` with crossbar, hub and node processes).
"""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from sisock_core.bridge.app import GrafanaAPI
from sisock_core.bridge.auth import Credentials
from sisock_core.bridge.service import BridgeService
from sisock_core.config import load_config_text
from sisock_core.datanode import DataNodeServer
from sisock_core.router import load_secrets
from sisock_core.testing import MemorySession
from sisock_core.wamp import node_uri

JULY = {"from": "2017-07-13T00:00:00.000Z", "to": "2017-07-27T00:00:00.000Z"}
APEX = ["apex_humidity", "apex_pressure", "apex_radiometer", "apex_temperature", "apex_windspeed"]


class MemoryRouter(MemorySession):
    """:class:`MemorySession` whose ``call`` returns a Deferred, as an autobahn session's does
    (the bridge cancels calls that time out or outlive the router)."""

    def __init__(self) -> None:
        super().__init__()
        self._answered: dict[str, list[defer.Deferred]] = {}

    def call(self, procedure: str, *args, **kwargs) -> defer.Deferred:
        d = defer.ensureDeferred(super().call(procedure, *args, **kwargs))

        def tell(result):  # next turn: once the caller has taken the answer
            for waiter in self._answered.pop(procedure, []):
                reactor.callLater(0, waiter.callback, None)
            return result

        return d.addBoth(tell)

    def answered(self, procedure: str) -> defer.Deferred:
        """Fires after the next call of ``procedure`` has been answered (or failed)."""
        d: defer.Deferred = defer.Deferred()
        self._answered.setdefault(procedure, []).append(d)
        return d


class InProcessBridge:
    """A bridge on a loopback port whose router is a :class:`MemorySession`."""

    def __init__(self, tmp, credentials: Credentials | None = None) -> None:
        self.cfg = load_config_text(
            f'state_dir = "{tmp}"\n[http]\nquery_timeout = 30\n[nodes.apex_archive]\nplugin = "weather"\n',
            "<in-process bridge>", {}, base_dir=str(tmp))
        load_secrets(self.cfg, env={}, create=True)  # (the service's unused router component reads them)
        self.session = MemoryRouter()
        self.node = DataNodeServer(self.cfg, self.cfg.nodes["apex_archive"], reactor=reactor, connect=False)
        self.service = BridgeService(self.cfg, reactor=reactor)
        self.api = GrafanaAPI(self.service, self.cfg, credentials)
        self.port = None
        self.pool = HTTPConnectionPool(reactor, persistent=False)

    async def start(self) -> "InProcessBridge":
        self.node.start_plugin()
        self.node.pool.start()
        await self.node._on_join(self.session, None)
        await self.service._on_join(self.session, SimpleNamespace(realm=self.cfg.router.realm))
        site = Site(self.api.resource())
        site.noisy = False
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        return self

    async def stop(self) -> None:
        if self.port is not None:
            await self.port.stopListening()
        await self.pool.closeCachedConnections()
        await self.node.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"

    async def request(self, method: str, path: str, body=None, *, raw: bytes | None = None,
                      headers: dict | None = None) -> tuple[int, dict, object]:
        """(status, headers, decoded JSON or None) of one request."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"Content-Type": ["application/json"], **{k: [v] for k, v in (headers or {}).items()}}
        r = await treq.request(method, self.url + path, data=data, headers=hdrs, pool=self.pool)
        content = await r.content()
        head = {k.decode().lower(): v[0].decode() for k, v in r.headers.getAllRawHeaders()}
        return r.code, head, (json.loads(content) if content else None)


@pytest.fixture
def bridge(tmp_path):
    b = InProcessBridge(tmp_path)
    pytest_twisted.blockon(defer.ensureDeferred(b.start()))
    yield b
    pytest_twisted.blockon(defer.ensureDeferred(b.stop()))


def query(targets, max_points=1000, rng=JULY, **extra):
    return {"range": dict(rng), "maxDataPoints": max_points, "intervalMs": 60000,
            "targets": [{"target": t, "refId": chr(65 + i)} for i, t in enumerate(targets)], **extra}


@pytest_twisted.ensureDeferred
async def test_health_search_and_query(bridge):
    status, head, body = await bridge.request("GET", "/")
    assert status == 200 and head["content-type"] == "application/json"
    assert body["nodes"] == ["apex_archive"]
    status, _, metrics = await bridge.request("POST", "/search", {"target": "apex"})
    assert status == 200 and metrics == [f"apex_archive::{f}" for f in APEX]
    status, _, series = await bridge.request("POST", "/query", query(["apex_archive::apex_humidity",
                                                                      "apex_archive::apex_radiometer"], 500))
    assert status == 200
    humidity, radiometer = series
    assert humidity["target"] == "apex_archive::apex_humidity" and len(humidity["datapoints"]) == 14 * 24
    assert 0 < len(radiometer["datapoints"]) <= 500  # 20160 minutely samples, reduced at the node
    times = [t for _, t in humidity["datapoints"]]
    assert times == sorted(times) and times[0] == 1499904000000


@pytest_twisted.ensureDeferred
async def test_a_bad_target_leaves_only_its_own_series_empty(bridge):
    status, _, series = await bridge.request("POST", "/query", query(
        ["apex_archive::apex_pressure", "no_separator", "nowhere::x", "apex_archive::no_such_field"]))
    assert status == 200
    good, *bad = series
    assert len(good["datapoints"]) == 14 * 24 and "meta" not in good
    for s in bad:
        assert s["datapoints"] == [] and s["meta"]["notices"][0]["text"], s


@pytest.mark.parametrize("method, path, raw, status, message", [
    ("POST", "/query", b"{not json", 400, "JSON"),
    ("POST", "/query", b"[]", 400, "object"),
    ("POST", "/nowhere", b"{}", 404, "no such endpoint: /nowhere"),
    ("GET", "/query", None, 405, "method GET not allowed here"),
    ("POST", "/", b"{}", 405, "method POST not allowed here"),
])
@pytest_twisted.ensureDeferred
async def test_bad_requests_get_a_json_error(bridge, method, path, raw, status, message):
    got, _, body = await bridge.request(method, path, raw=raw)
    assert got == status
    assert message.lower() in body["error"]["message"].lower(), body


@pytest_twisted.ensureDeferred
async def test_preflight_and_cors(bridge):
    status, head, body = await bridge.request("OPTIONS", "/query", headers={"Origin": "http://grafana:3000"})
    assert status == 204 and body is None
    assert head["allow"] == "GET, POST, OPTIONS" and "access-control-allow-origin" in head


@pytest_twisted.ensureDeferred
async def test_basic_auth(tmp_path):
    b = InProcessBridge(tmp_path, Credentials("grafana", "a-long-test-password"))
    await b.start()
    try:
        status, head, body = await b.request("POST", "/query", query(["apex_archive::apex_humidity"]))
        assert status == 401 and head["www-authenticate"].startswith("Basic")
        assert body == {"error": {"code": "unauthorized", "message": "authentication required"},
                        "code": "unauthorized", "message": "authentication required"}
        token = base64.b64encode(b"grafana:a-long-test-password").decode()
        status, _, series = await b.request("POST", "/query", query(["apex_archive::apex_humidity"]),
                                            headers={"Authorization": f"Basic {token}"})
        assert status == 200 and len(series[0]["datapoints"]) == 14 * 24
    finally:
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_a_query_waiting_on_a_node_when_the_router_is_lost_is_answered(bridge):
    """A node that never answers; the session is lost meanwhile: the panel gets a notice for
    that target at once (not when the client gives up), and the other target's data."""
    called: defer.Deferred = defer.Deferred()
    never: defer.Deferred = defer.Deferred()

    def slow_get_data(*args, **kwargs):
        reactor.callLater(0, called.callback, None)  # (once the bridge holds the call as pending)
        return never

    await bridge.session.register(lambda *a, **k: [{"x": {"type": "number", "timeline": "t",
                                                          "description": None, "units": None}},
                                                    {"t": {"interval": None, "field": ["x"]}}],
                                  node_uri("slow_node", "get_fields"))
    await bridge.session.register(slow_get_data, node_uri("slow_node", "get_data"))
    apex_answered = bridge.session.answered(node_uri("apex_archive", "get_data"))
    answer = defer.ensureDeferred(bridge.request("POST", "/query", query(["slow_node::x",
                                                                        "apex_archive::apex_humidity"])))
    await called.addTimeout(30, reactor)  # the query is waiting for slow_node
    await apex_answered.addTimeout(30, reactor)  # and has apex_archive's answer
    assert not answer.called
    bridge.service._on_leave(bridge.session, SimpleNamespace(reason="wamp.close.transport_lost"))
    status, _, (slow, apex) = await answer.addTimeout(30, reactor)
    assert status == 200
    assert slow["datapoints"] == [] and "lost the connection to the router" in slow["meta"]["notices"][0]["text"]
    assert len(apex["datapoints"]) == 14 * 24
    # without a router, health says so (503) and queries get a notice, not a 500
    status, _, body = await bridge.request("GET", "/")
    assert status == 503 and "router" in json.dumps(body)
    status, _, (series,) = await bridge.request("POST", "/query", query(["apex_archive::apex_humidity"]))
    assert status == 200 and series["datapoints"] == [] and "not connected" in series["meta"]["notices"][0]["text"]
    never.callback({"data": {"x": []}, "timeline": {}})  # (the late answer goes nowhere)
