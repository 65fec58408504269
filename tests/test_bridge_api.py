"""The plain data API (``/api/fields``, ``/api/data``, ``/api/live``) and the page's routes.

Pure parsing and answers first; then HTTP in process: the bridge's real Klein app and
:class:`BridgeService` query path on a loopback port, its WAMP calls answered by a real
weather node in a DataNodeServer (``sisock_core.testing``'s in-memory session) instead
of a router. The whole site with a browser is in ``test_quicklook_browser.py``.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import pytest_twisted
import treq
from twisted.internet import defer, reactor, task, threads
from twisted.web.server import Site

from sisock_core.bridge import api
from sisock_core.bridge.app import GrafanaAPI
from sisock_core.bridge.auth import Credentials
from sisock_core.bridge.catalog import FieldCatalog
from sisock_core.bridge.grafana import BadRequest, QueryRequest, Series, Target, encode, parse_query
from sisock_core.bridge.live import LiveStream, LiveTopics
from sisock_core.bridge.service import BridgeService
from sisock_core.bridge.web import ENV_ASSETS, find_assets, missing_assets_message
from sisock_core.config import load_config_text
from sisock_plugins.weather.parser import parse_file
from sisock_plugins.weather.plugin import example_data_dir

from .events import logged, until

pytest_plugins = ["sisock_core.testing"]

NOW = 1_800_000_000.0
T0 = 1500508800.0  # 2017-07-20T00:00:00Z


# -- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("now", NOW), ("now-6h", NOW - 6 * 3600), ("now+5m", NOW + 300), ("now - 1d", NOW - 86400),
    ("1500508800000", T0), ("1500508800000.5", T0 + 0.0005),
    ("2017-07-20T00:00:00.000Z", T0), ("2017-07-20T00:00Z", T0), ("2017-07-20", T0),
    ("2017-07-20T02:00:00+02:00", T0),
])
def test_parse_when(text, expected):
    assert api.parse_when(text, NOW, "from") == pytest.approx(expected)


@pytest.mark.parametrize("text,msg", [
    ("now-6x", "from: 'now-6x' is not 'now'"), ("yesterday", "from: 'yesterday' is not an ISO-8601"),
    ("now-", "is not 'now'"),
])
def test_parse_when_errors_name_the_parameter(text, msg):
    with pytest.raises(BadRequest, match=msg):
        api.parse_when(text, NOW, "from")


def test_parse_data_request_defaults_and_targets():
    req = api.parse_data_request({"target": ["a::x", "bad", "a::y"]}, NOW)
    q = req.query
    assert req.format == "json"
    assert (q.start, q.end, q.max_points) == (NOW - 3600, NOW, api.DEFAULT_POINTS)
    assert [t.text for t in q.targets] == ["a::x", "bad", "a::y"]
    assert q.targets[1].error == "target 'bad' is not 'node::field'"
    assert q.by_node() == {"a": ["x", "y"]}


def test_parse_data_request_is_what_query_parses():
    """/api/data and /query with the same range and budget make the same request."""
    mine = api.parse_data_request({"target": ["a::x"], "from": ["2017-07-20T00:00:00.000Z"],
                                   "to": ["1500530400000"], "points": ["640"]}, NOW).query
    grafana = parse_query({"range": {"from": "2017-07-20T00:00:00.000Z", "to": "2017-07-20T06:00:00.000Z"},
                           "maxDataPoints": 640, "targets": [{"target": "a::x"}]})
    assert (mine.start, mine.end, mine.max_points, mine.min_stride) == \
        (grafana.start, grafana.end, grafana.max_points, grafana.min_stride)


@pytest.mark.parametrize("params,msg", [
    ({}, "give at least one target"),
    ({"target": ["a::x"], "format": ["xml"]}, "format must be one of json, csv"),
    ({"target": ["a::x"], "from": ["now"], "to": ["now-1h"]}, "to is before from"),
    ({"target": ["a::x"], "points": ["many"]}, "points: 'many' is not a number"),
    ({"target": ["a::x"], "points": ["0"]}, "points must be a positive number"),
    ({"target": ["a::x"], "from": ["now-1h", "now-2h"]}, "from given 2 times"),
    ({"target": ["a::x"] * 1001}, "at most 1000 per request"),
])
def test_parse_data_request_errors(params, msg):
    with pytest.raises(BadRequest, match=msg):
        api.parse_data_request(params, NOW)


_PARAM_TEXT = st.one_of(st.text(max_size=30), st.sampled_from(
    ["now", "now-6h", "now-", "now+1y", "0", "-5", "1e400", "nan", "1500508800000", "2017-07-20T00:00Z",
     "9999-12-31T23:59:59Z", "0001-01-01", "a::b", "::", "csv", "json", "1000000000000", "2.5"]))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["target", "from", "to", "points", "format", "since", "x"]),
                       st.lists(_PARAM_TEXT, min_size=1, max_size=3), max_size=6))
def test_query_strings_give_a_request_or_a_bad_request(params):
    """Whatever the query string, parsing gives a request or a 400 naming the problem."""
    try:
        req = api.parse_data_request(params, NOW)
    except BadRequest as exc:
        assert str(exc)
    else:
        assert 1.0 <= req.query.start <= req.query.end and 2 <= req.query.max_points
        assert req.format in api.DATA_FORMATS and req.query.targets
    try:
        api.parse_since(params, NOW)
    except BadRequest as exc:
        assert str(exc)


# -- answers --------------------------------------------------------------------------------------


def _series(text="n::f", t=(T0, T0 + 1), v=(1.5, float("nan")), **kw):
    node, _, field = text.partition("::")
    return Series(Target(text=text, node=node, field=field), t=np.array(t), values=np.array(v, dtype=object
                  if any(isinstance(x, str) for x in v) else np.float64), **kw)


def test_data_answer_json_shape():
    req = QueryRequest(start=T0, end=T0 + 10, targets=[], max_points=5)
    body = json.loads(encode(api.data_answer(req, [_series(units="K"),
                                                   Series(Target("x", error="bad x"), error="bad x")])))
    assert body["from"] == T0 * 1000 and body["to"] == (T0 + 10) * 1000 and body["points"] == 5
    a, b = body["series"]
    assert a == {"target": "n::f", "node": "n", "field": "f", "units": "K",
                 "t": [T0 * 1000, T0 * 1000 + 1000], "v": [1.5, None]}
    assert b["error"] == "bad x" and b["t"] == [] and b["v"] == []


def test_csv_long_format_quotes_and_no_data():
    text = api.data_csv([_series(), _series('n::g,"q"', v=("a,b", "c"))]).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["time", "target", "value"],
                    ["2017-07-20T00:00:00.000Z", "n::f", "1.5"],
                    ["2017-07-20T00:00:01.000Z", "n::f", ""],
                    ["2017-07-20T00:00:00.000Z", 'n::g,"q"', "a,b"],
                    ["2017-07-20T00:00:01.000Z", 'n::g,"q"', "c"]]
    assert api.csv_errors([_series(), _series("n::h", error="no\nsuch")]) == "n::h: no such"


def test_series_item_keeps_only_later_samples():
    item = api.series_item(_series(t=(1.0, 2.0, 3.0), v=(1.0, 2.0, 3.0)), t_after=2.0)
    assert list(item["t"]) == [3000.0] and list(item["v"]) == [3.0]


def test_fields_answer_lists_live_nodes_with_units_and_descriptions():
    cat = FieldCatalog()
    cat.set_listing([{"name": "n", "description": "a node"}, {"name": "m", "description": ""}])
    cat.set_fields("n", [{"f": {"units": "K", "description": "temp", "type": "number", "timeline": "tl"}},
                         {"tl": {"field": ["f"]}}], 0.0)
    cat.set_error("m", "node 'm' did not answer in time")
    body = api.fields_answer(cat)
    assert body == {"nodes": [
        {"name": "m", "description": "", "live": True, "fields": [], "error": "node 'm' did not answer in time"},
        {"name": "n", "description": "a node", "live": True, "fields": [
            {"name": "f", "target": "n::f", "units": "K", "description": "temp", "type": "number",
             "timeline": "tl"}]},
    ]}
    assert api.fields_answer(cat, "zz")["nodes"][0]["error"] == "no data node 'zz'"


def test_sse_event_framing():
    assert api.sse_event(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert api.sse_event(b"x\ny", "e") == b"event: e\ndata: x\ndata: y\n\n"


def test_assets_found_or_missing_message(tmp_path):
    assert find_assets({ENV_ASSETS: str(tmp_path)}) != tmp_path  # empty folder: not it
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        (tmp_path / name).write_text("x")
    assert find_assets({ENV_ASSETS: str(tmp_path)}) == tmp_path
    assert "run scripts/setup.sh" in missing_assets_message() and ENV_ASSETS in missing_assets_message()


# -- live streams (a fake clock and session; the real thing runs in the browser test) -------------


class _Session:
    def __init__(self):
        self.handlers = {}

    def is_attached(self):
        return True

    def subscribe(self, handler, topic):
        self.handlers[topic] = handler
        sub = type("Sub", (), {"unsubscribe": lambda s: self.handlers.pop(topic, None)})()
        return defer.succeed(sub)

    def push(self, node, t, v, field="f", timeline="tl"):
        self.handlers[f"org.simonsobservatory.consumer.{node}.live"](
            {"node": node, "data": {field: v}, "timeline": {timeline: {"t": t, "finalized_until": t[-1]}}})


class _Service:
    """Answers queries from arrays (what BridgeService.query returns), records them."""

    def __init__(self, data):
        self.data = data  # target -> (t, v)
        self.catalog = FieldCatalog()
        self.session = _Session()
        self.queries = []

    async def query(self, req):
        self.queries.append(req)
        out = []
        for t in req.targets:
            tt, vv = self.data.get(t.text, ([], []))
            tt, vv = np.array(tt, dtype=float), np.array(vv, dtype=float)
            keep = (tt >= req.start) & (tt <= req.end)
            out.append(Series(t, t=tt[keep], values=vv[keep]))
        return out


def _stream(service, clock, targets, since):
    sent = []
    topics = LiveTopics(service, clock)
    parsed = [api.parse_targets({"target": [t]})[0] for t in targets]
    s = LiveStream(topics, service, sent.append, parsed, since, 100, poll_interval=2.0)
    return s, topics, sent


def _events(sent):
    return [json.loads(chunk[len(b"data: "):]) for chunk in sent if chunk.startswith(b"data: ")]


def test_live_stream_catches_up_then_forwards_pushes_without_repeats():
    clock = task.Clock()
    clock.advance(1000.0)
    service = _Service({"push::f": ([990.0, 995.0, 999.0], [1.0, 2.0, 3.0])})
    s, topics, sent = _stream(service, clock, ["push::f"], since=994.0)
    s.start()
    # the catch-up query ran at once: samples after `since`
    assert [e["series"][0]["t"] for e in _events(sent)] == [[995000.0, 999000.0]]
    service.session.push("push", [999.0, 1000.5], [3.0, 4.0])  # 999 was sent already
    assert _events(sent)[-1]["series"][0]["t"] == [1000500.0]
    assert _events(sent)[-1]["series"][0]["v"] == [4.0]
    clock.advance(2.0)  # a node that pushes is not polled
    assert len(service.queries) == 1
    s.stop()
    assert topics.listeners == {} and service.session.handlers == {}


def test_live_stream_polls_nodes_that_do_not_push():
    clock = task.Clock()
    clock.advance(1000.0)
    data = {"archive::f": ([999.0], [1.0])}
    service = _Service(data)
    s, _topics, sent = _stream(service, clock, ["archive::f", "bad"], since=998.0)
    s.start()
    events = _events(sent)
    assert events[0]["series"][0]["error"] == "target 'bad' is not 'node::field'"
    assert events[1]["series"][0]["t"] == [999000.0]
    data["archive::f"] = ([999.0, 1001.0], [1.0, 2.0])
    clock.advance(2.0)
    assert len(service.queries) == 2 and service.queries[1].start == 999.0
    assert _events(sent)[-1]["series"][0]["t"] == [1001000.0]
    clock.advance(2.0)  # nothing new: nothing sent
    assert len(_events(sent)) == 3
    clock.advance(16.0)
    assert sent[-1] == b": keep-alive\n\n"
    s.stop()


def test_live_pushes_during_the_catch_up_are_held_not_lost():
    clock = task.Clock()
    clock.advance(1000.0)
    gate = defer.Deferred()

    class Slow(_Service):
        async def query(self, req):
            await gate
            return await super().query(req)

    service = Slow({"push::f": ([995.0], [1.0])})
    s, _topics, sent = _stream(service, clock, ["push::f"], since=990.0)
    s.start()
    service.session.push("push", [1000.5], [2.0])  # arrives before the catch-up answer
    assert _events(sent) == []
    gate.callback(None)
    assert [e["series"][0]["t"] for e in _events(sent)] == [[995000.0], [1000500.0]]
    s.stop()


# -- HTTP in process: the real app and query path, a real weather node --------------------------


class NodeBackedService(BridgeService):
    """The bridge's service with its WAMP calls answered by in-process data nodes."""

    def __init__(self, cfg, nodes):
        with pytest.MonkeyPatch.context() as mp:  # the unused WAMP component wants secrets
            mp.setenv("WAMP_SECRET", "unused-server-secret")
            mp.setenv("WAMP_CONSUMER_SECRET", "unused-consumer-secret")
            super().__init__(cfg, reactor=reactor)
        self.nodes = nodes

    @property
    def connected(self):
        return True

    @property
    def session(self):
        return None

    def _call(self, timeout, uri, *args, **kwargs):
        node = next(iter(self.nodes.values()))
        return threads.deferToThread(node.call, uri, *args, **kwargs)


@pytest.fixture(scope="module")
def weather_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("weather")
    shutil.copytree(example_data_dir(), data, dirs_exist_ok=True)
    return data


@pytest.fixture
def http(sisock_node, weather_data, tmp_path):
    """``(url, service)``: the bridge app on a free loopback port over a weather node."""
    node = sisock_node("weather", {"data_dir": str(weather_data)}, name="apex_archive")
    cfg = load_config_text('[http]\nmax_targets = 50\ncors_origins = ["http://grafana.example"]\n',
                           base_dir=tmp_path)
    service = NodeBackedService(cfg, {"apex_archive": node})
    port = reactor.listenTCP(0, Site(GrafanaAPI(service, cfg).resource()), interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}", service
    port.stopListening()


async def _get(url, **kw):
    r = await treq.get(url, **kw)
    return r, await r.content()


@pytest_twisted.ensureDeferred
async def test_api_data_json_matches_query_and_keeps_the_spike(http, weather_data):
    url, _service = http
    _header, t, v = parse_file(weather_data / "apex_radiometer.dat")
    start, end = T0, T0 + 2 * 86400
    inside = (t >= start) & (t <= end)
    r, body = await _get(f"{url}/api/data?target=apex_archive::apex_radiometer&target=apex_archive::nope"
                         f"&target=junk&from={int(start * 1000)}&to=2017-07-22T00:00:00Z&points=300")
    assert r.code == 200 and r.headers.getRawHeaders("content-type") == ["application/json"]
    answer = json.loads(body)
    r, doc = await _get(f"{url}/openapi.json")
    doc = json.loads(doc)
    ok = doc["paths"]["/api/data"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(answer, {**ok, "components": doc["components"]})
    series, nope, junk = answer["series"]
    assert 0 < len(series["t"]) <= 300 < inside.sum()
    assert series["units"] == "mm"
    assert max(series["v"]) == v[inside].max() and min(series["v"]) == v[inside].min()
    assert nope["error"] == "node 'apex_archive' has no field 'nope'" and nope["t"] == []
    assert junk["error"] == "target 'junk' is not 'node::field'"
    grafana = await treq.post(f"{url}/query", json={
        "range": {"from": "2017-07-20T00:00:00.000Z", "to": "2017-07-22T00:00:00.000Z"},
        "maxDataPoints": 300, "targets": [{"target": "apex_archive::apex_radiometer"}]})
    points = (await grafana.json())[0]["datapoints"]
    assert [p[1] for p in points] == series["t"] and [p[0] for p in points] == series["v"]


@pytest_twisted.ensureDeferred
async def test_api_data_csv_rows_and_error_header(http):
    url, _service = http
    r, body = await _get(f"{url}/api/data?target=apex_archive::apex_humidity&target=x::y::z&format=csv"
                         "&from=2017-07-20T00:00Z&to=2017-07-20T05:00Z&points=1000")
    assert r.code == 200
    assert r.headers.getRawHeaders("content-type") == ["text/csv; charset=utf-8"]
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0] == ["time", "target", "value"]
    assert [row[0] for row in rows[1:]] == [f"2017-07-20T0{h}:00:00.000Z" for h in range(5)]  # end excluded
    assert {row[1] for row in rows[1:]} == {"apex_archive::apex_humidity"}
    assert r.headers.getRawHeaders("sisock-errors")[0].startswith("x::y::z: node 'x' is not serving")


@pytest_twisted.ensureDeferred
async def test_api_fields(http):
    url, _service = http
    r, body = await _get(f"{url}/api/fields")
    nodes = json.loads(body)["nodes"]
    assert [n["name"] for n in nodes] == ["apex_archive"]
    fields = {f["name"]: f for f in nodes[0]["fields"]}
    assert fields["apex_temperature"]["units"] == "C"
    assert fields["apex_temperature"]["target"] == "apex_archive::apex_temperature"
    assert "air temperature" in fields["apex_temperature"]["description"]


@pytest_twisted.ensureDeferred
async def test_bad_requests_and_methods_answer_json_errors(http):
    url, _service = http
    r, body = await _get(f"{url}/api/data?target=apex_archive::apex_humidity&from=tomorrow")
    assert r.code == 400 and json.loads(body)["error"]["message"] == \
        "from: 'tomorrow' is not an ISO-8601 time"
    r, body = await _get(f"{url}/api/data?" + "&".join(["target=a::b"] * 51))
    assert r.code == 400 and "http.max_targets" in json.loads(body)["error"]["message"]
    r = await treq.post(f"{url}/api/data", data=b"{}")
    assert r.code == 405 and r.headers.getRawHeaders("allow") == ["GET, OPTIONS"]
    r, body = await _get(f"{url}/static/../web.py")
    assert r.code == 404
    r, body = await _get(f"{url}/static/nothing.js")
    assert r.code == 404 and "no such file" in json.loads(body)["error"]["message"]


@pytest_twisted.ensureDeferred
async def test_page_for_browsers_json_health_for_everyone_else(http):
    url, _service = http
    r, body = await _get(url + "/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert r.code == 200 and r.headers.getRawHeaders("content-type") == ["text/html; charset=utf-8"]
    assert b"<title>sisock quick look</title>" in body
    if find_assets() is None:  # the page says what to run
        assert b"run scripts/setup.sh" in body
    r, body = await _get(url + "/", headers={"Accept": "application/json"})
    assert r.headers.getRawHeaders("content-type") == ["application/json"]
    r, body = await _get(url + "/static/page.js")
    assert r.code == 200 and b"/api/data" in body
    assert r.headers.getRawHeaders("content-type") == ["text/javascript; charset=utf-8"]


def test_uplot_is_installed_by_setup():
    """scripts/setup.sh runs npm ci; the page needs uPlot's files (no CDN)."""
    assert find_assets() is not None, missing_assets_message()


@pytest_twisted.ensureDeferred
async def test_api_follows_auth_and_cors(sisock_node, weather_data, tmp_path):
    node = sisock_node("weather", {"data_dir": str(weather_data)}, name="apex_archive")
    cfg = load_config_text('[http]\ncors_origins = ["http://grafana.example"]\n', base_dir=tmp_path)
    service = NodeBackedService(cfg, {"apex_archive": node})
    app = GrafanaAPI(service, cfg, Credentials("grafana", "s3cret"))
    port = reactor.listenTCP(0, Site(app.resource()), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}"
    try:
        for path in ("/api/fields", "/api/data?target=apex_archive::apex_humidity", "/api/live?target=a::b",
                     "/static/page.js"):
            r, body = await _get(url + path)
            assert r.code == 401, path
        r, _ = await _get(url + "/", headers={"Accept": "text/html"})
        assert r.code == 401 and r.headers.getRawHeaders("www-authenticate")
        auth = "Basic " + base64.b64encode(b"grafana:s3cret").decode()
        r, body = await _get(url + "/api/fields", headers={"Authorization": auth,
                                                          "Origin": "http://grafana.example"})
        assert r.code == 200 and json.loads(body)["nodes"][0]["name"] == "apex_archive"
        assert r.headers.getRawHeaders("access-control-allow-origin") == ["http://grafana.example"]
        r = await treq.request("OPTIONS", url + "/api/data", headers={"Origin": "http://grafana.example"})
        assert r.code == 204 and "GET" in r.headers.getRawHeaders("access-control-allow-methods")[0]
    finally:
        await port.stopListening()


# -- examples/grafana: what a Grafana provisioned from them asks, answered like /query ----------

GRAFANA = Path(__file__).resolve().parent.parent / "examples" / "grafana"


def test_grafana_provisioning_points_at_a_local_bridge():
    import yaml

    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "sisock.yaml").read_text())
    by_type = {d["type"]: d for d in sources["datasources"]}
    assert set(by_type) == {"yesoreyeram-infinity-datasource", "simpod-json-datasource"}
    for d in by_type.values():
        assert d["url"] == "http://127.0.0.1:5000" and d["access"] == "proxy"
    assert by_type["yesoreyeram-infinity-datasource"]["jsonData"]["allowedHosts"] == ["http://127.0.0.1:5000"]
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "sisock.yaml").read_text())
    assert providers["providers"][0]["options"]["path"] == "${SISOCK_GRAFANA_DIR}/dashboards"
    uids = {d["uid"] for d in sources["datasources"]}
    dash = json.loads((GRAFANA / "dashboards" / "apex-weather.json").read_text())
    assert {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]} == uids


@pytest_twisted.ensureDeferred
async def test_grafana_example_dashboard_queries_return_what_query_returns(http):
    """Each Infinity panel's URL (Grafana's ${__from}/${__to} filled in, as Infinity does)
    gives the same points as /query with the same target, range and maxDataPoints; each
    JSON (simPod) panel's target answers with data."""
    url, _service = http
    dash = json.loads((GRAFANA / "dashboards" / "apex-weather.json").read_text())
    start_ms, end_ms = 1499904000000, 1501113600000  # the dashboard's time range
    assert (dash["time"]["from"], dash["time"]["to"]) == ("2017-07-13T00:00:00.000Z", "2017-07-27T00:00:00.000Z")
    kinds = set()
    for panel in dash["panels"]:
        (target,) = panel["targets"]
        kinds.add(target["datasource"]["type"])
        if target["datasource"]["type"] == "yesoreyeram-infinity-datasource":
            assert target["type"] == "csv" and target["parser"] == "backend"
            path = target["url"].replace("${__from}", str(start_ms)).replace("${__to}", str(end_ms))
            r, body = await _get(url + path)
            assert r.code == 200, body
            rows = list(csv.DictReader(io.StringIO(body.decode())))
            assert {c["selector"] for c in target["columns"]} <= set(rows[0])
            q = dict(p.split("=", 1) for p in path.split("?", 1)[1].split("&"))
            name, points = q["target"], int(q["points"])
        else:
            name, points = target["target"], 1500
            rows = None
        grafana = await treq.post(f"{url}/query", json={
            "range": {"from": dash["time"]["from"], "to": dash["time"]["to"]}, "maxDataPoints": points,
            "targets": [{"target": name, "refId": "A", "payload": target.get("payload", {})}]})
        datapoints = (await grafana.json())[0]["datapoints"]
        assert 100 < len(datapoints) <= points
        if rows is not None:
            assert [float(r["value"]) for r in rows] == [p[0] for p in datapoints]
            assert [api.iso_ms(p[1] / 1000) for p in datapoints] == [r["time"] for r in rows]
    assert kinds == {"yesoreyeram-infinity-datasource", "simpod-json-datasource"}


@pytest.mark.parametrize("gzip", [False, True])
@pytest_twisted.ensureDeferred
async def test_api_live_streams_events_at_once_even_gzipped(sisock_node, weather_data, tmp_path, gzip):
    """The stream catches up from `since` (a node without push is polled) and each event
    leaves at once, also when http.gzip compresses answers."""
    import zlib

    node = sisock_node("weather", {"data_dir": str(weather_data)}, name="apex_archive")
    cfg = load_config_text(f"[http]\ngzip = {str(gzip).lower()}\n", base_dir=tmp_path)
    service = NodeBackedService(cfg, {"apex_archive": node})
    app = GrafanaAPI(service, cfg)
    port = reactor.listenTCP(0, Site(app.resource()), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}"
    got = bytearray()
    first_event: defer.Deferred = defer.Deferred()
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def collect(chunk: bytes) -> None:
        got.extend(inflate.decompress(chunk) if gzip else chunk)
        if b"\ndata: " in got and not first_event.called:
            first_event.callback(None)

    try:
        from twisted.web.client import Agent
        from twisted.web.http_headers import Headers

        # a plain Agent: treq would inflate gzip itself and drop the header; the catch-up
        # reaches from 2017 to now, so a budget that keeps hourly samples over nine years
        r = await Agent(reactor).request(
            b"GET", f"{url}/api/live?target=apex_archive::apex_humidity&since=2017-07-26T20:00:00Z"
                    "&points=1000000".encode(), Headers({"Accept-Encoding": ["gzip"]}))
        assert r.code == 200
        assert r.headers.getRawHeaders("content-type") == ["text/event-stream; charset=utf-8"]
        assert (r.headers.getRawHeaders("content-encoding") == ["gzip"]) == gzip
        reading = treq.collect(r, collect)
        await first_event.addTimeout(30, reactor)
        event = json.loads(got.split(b"\ndata: ", 1)[1].split(b"\n\n", 1)[0])
        (series,) = event["series"]
        assert series["target"] == "apex_archive::apex_humidity"
        assert series["t"] == [1501102800000.0, 1501106400000.0, 1501110000000.0]  # after 20:00
        assert len(app.web.streams) == 1
        reading.cancel()
        reading.addErrback(lambda f: None)
        with logged("live stream closed") as closed:
            r._transport.stopProducing()  # the browser goes away: the stream ends
            await until(lambda: not app.web.streams, closed, 30, "the stream to close")
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_without_uplot_the_page_says_what_to_run(sisock_node, weather_data, tmp_path, monkeypatch):
    from sisock_core.bridge import web

    monkeypatch.setattr(web, "find_assets", lambda env=None: None)
    node = sisock_node("weather", {"data_dir": str(weather_data)}, name="apex_archive")
    cfg = load_config_text("", base_dir=tmp_path)
    app = GrafanaAPI(NodeBackedService(cfg, {"apex_archive": node}), cfg)
    assert app.web.assets is None
    port = reactor.listenTCP(0, Site(app.resource()), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}"
    try:
        r, body = await _get(url + "/", headers={"Accept": "text/html"})
        assert r.code == 200 and b'id="missing-assets"' in body and b"run scripts/setup.sh" in body
        r, body = await _get(url + "/static/uplot/uPlot.iife.min.js")
        assert r.code == 404 and "run scripts/setup.sh" in json.loads(body)["error"]["message"]
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_point_budget_above_the_cap_is_lowered_with_a_notice(sisock_node, weather_data, tmp_path):
    """``[http] max_points`` caps ``points`` (data API) and ``maxDataPoints`` (Grafana),
    saying so; a budget within the cap is untouched."""
    node = sisock_node("weather", {"data_dir": str(weather_data)}, name="apex_archive")
    cfg = load_config_text("[http]\nmax_points = 50\n", base_dir=tmp_path)
    service = NodeBackedService(cfg, {"apex_archive": node})
    port = reactor.listenTCP(0, Site(GrafanaAPI(service, cfg).resource()), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}"
    try:
        target = "target=apex_archive::apex_radiometer&from=2017-07-20T00:00Z&to=2017-07-22T00:00Z"
        _r, body = await _get(f"{url}/api/data?{target}&points=5000")
        answer = json.loads(body)
        assert answer["points"] == 50 and 0 < len(answer["series"][0]["t"]) <= 50
        assert answer["notices"] == ["5000 points per series asked; at most 50 are served ([http] max_points)"]
        _r, body = await _get(f"{url}/api/data?{target}&points=40")
        assert "notices" not in json.loads(body)
        r = await treq.post(f"{url}/query", json={
            "range": {"from": "2017-07-20T00:00:00.000Z", "to": "2017-07-22T00:00:00.000Z"},
            "maxDataPoints": 5000, "targets": [{"target": "apex_archive::apex_radiometer"}]})
        item = (await r.json())[0]
        assert 0 < len(item["datapoints"]) <= 50
        assert {"severity": "warning", "text": "5000 points per series asked; at most 50 are served "
                "([http] max_points)"} in item["meta"]["notices"]
    finally:
        port.stopListening()
