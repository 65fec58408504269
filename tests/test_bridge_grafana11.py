"""The bridge's HTTP handling in process, with request bodies built the way Grafana 11 and
the JSON data source plugin build them (:mod:`tests.grafana11`, written from their source).

The bridge runs as a Klein resource under ``treq.testing.StubTreq``; its WAMP session is
replaced by one answering ``get_fields``/``get_data`` from the APEX example files (the
weather plugin's own parser), since the router is not the point here (the whole site is
in ``test_bridge_http.py``).
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import numpy as np
import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet import defer, task

from sisock_core import wamp
from sisock_core.bridge import openapi
from sisock_core.bridge.app import GrafanaAPI
from sisock_core.bridge.service import BridgeService
from sisock_core.config import load_config_text
from sisock_plugins.weather.parser import parse_file
from sisock_plugins.weather.plugin import example_data_dir

from .grafana11 import (
    JULY,
    TemplateSrv,
    button_text,
    grafana_filter,
    panel_error_text,
    query_request,
    variable_request,
)

APEX = ["apex_humidity", "apex_pressure", "apex_radiometer", "apex_temperature", "apex_windspeed"]
LAB = ["a.b", "a_b", "c(1)"]  # names with regex syntax in them
JULY_START, JULY_END = 1500508800.0, 1500595200.0


# -- the bridge, in process ------------------------------------------------------------------


class ApexSession:
    """Answers the bridge's WAMP calls for nodes ``apex_archive`` and ``second_archive`` (the
    APEX example files) and ``lab`` (three fields named with regex syntax)."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        files = {f: parse_file(example_data_dir() / f"{f}.dat") for f in APEX}
        for node in ("apex_archive", "second_archive"):
            self.nodes[node] = {f: (p.t, p.values) for f, p in files.items()}
        t = np.arange(JULY_START, JULY_END, 3600.0)
        self.nodes["lab"] = {name: (t, np.full(t.size, float(i))) for i, name in enumerate(LAB)}
        self.calls: list[tuple] = []

    def is_attached(self) -> bool:
        return True

    def listing(self) -> list[dict]:
        return [{"name": n, "description": n} for n in self.nodes]

    def call(self, uri: str, *args: Any, **kwargs: Any) -> defer.Deferred:
        self.calls.append((uri, args, kwargs))
        if uri == wamp.HUB_LIST:
            return defer.succeed(self.listing())
        node, _, proc = uri.removeprefix(wamp.node_uri("", "")[:-1]).rpartition(".")
        fields = self.nodes.get(node)
        if fields is None:
            from autobahn.wamp.exception import ApplicationError

            return defer.fail(ApplicationError("wamp.error.no_such_procedure", f"no callee for {uri}"))
        if proc == "get_fields":
            return defer.succeed([{f: {"timeline": f, "type": "number", "units": None, "description": f}
                                   for f in fields}, {f: {"interval": None, "field": [f]} for f in fields}])
        names, start, end = args[0], args[1], args[2]
        data, timelines = {}, {}
        for f in names:
            if f in fields:
                t, v = fields[f]
                keep = (t >= start) & (t <= end)
                data[f] = v[keep].tolist()
                timelines[f] = {"t": t[keep].tolist(), "finalized_until": float(end)}
        return defer.succeed({"data": data, "timeline": timelines})


@pytest.fixture
def bridge(tmp_path, monkeypatch):
    monkeypatch.setenv("WAMP_SECRET", "test-server-secret")  # the session is never started
    monkeypatch.setenv("WAMP_CONSUMER_SECRET", "test-consumer-secret")
    cfg = load_config_text(f"state_dir = {json.dumps(str(tmp_path))}\n[http]\nport = 5999\n",
                           str(tmp_path / "site.toml"))
    service = BridgeService(cfg, reactor=task.Clock())
    session = ApexSession()
    service._session = session
    service.catalog.set_listing(session.listing())
    api = GrafanaAPI(service, cfg)
    return api, StubTreq(api.resource()), session


async def send(bridge, path: str, body: Any = None, method: str = "POST") -> tuple[int, str, Any]:
    """``(status, reason, JSON body)`` of one request; every answer must be JSON."""
    _api, client, _s = bridge
    headers = {"Content-Type": ["application/json"]}
    if method == "POST":
        d = client.post("http://127.0.0.1:5000" + path, json.dumps(body).encode(), headers=headers)
    else:
        d = client.request(method, "http://127.0.0.1:5000" + path, headers=headers)
    client.flush()
    r = await d
    raw = await r.content()
    assert r.headers.getRawHeaders("content-type") == ["application/json"], (path, r.code)
    return r.code, r.phrase.decode(), json.loads(raw) if raw else None


def apex_points(field: str, start: float = JULY_START, end: float = JULY_END) -> tuple[np.ndarray, np.ndarray]:
    p = parse_file(example_data_dir() / f"{field}.dat")
    keep = (p.t >= start) & (p.t <= end)
    return p.t[keep], p.values[keep]


def series_by_target(answer: list) -> dict[str, list]:
    return {s["target"]: s["datapoints"] for s in answer}


# -- 1. multi-value and All variables ------------------------------------------------------------


CHANNEL = dict(options=APEX)


@pytest_twisted.ensureDeferred
async def test_multi_value_variable_gives_one_series_per_field(bridge):
    srv = TemplateSrv(channel=dict(CHANNEL, value=["apex_radiometer", "apex_windspeed"]))
    body = query_request(["apex_archive::$channel"], srv)
    assert body["targets"][0]["target"] == "apex_archive::(apex_radiometer|apex_windspeed)"
    status, _, answer = await send(bridge, "/query", body)
    assert status == 200
    assert [s["target"] for s in answer] == ["apex_archive::apex_radiometer", "apex_archive::apex_windspeed"]
    assert all(s["refId"] == "A" and "meta" not in s for s in answer)
    for s in answer:
        t, v = apex_points(s["target"].split("::")[1])
        assert t.size > 100
        assert np.array_equal(np.array(s["datapoints"])[:, 1], t * 1000)
        assert np.allclose(np.array(s["datapoints"])[:, 0], v)


@pytest_twisted.ensureDeferred
async def test_one_value_of_a_multi_value_variable(bridge):
    srv = TemplateSrv(channel=dict(CHANNEL, value=["apex_humidity"]))
    body = query_request(["apex_archive::$channel"], srv)
    assert body["targets"][0]["target"] == "apex_archive::apex_humidity"
    _, _, answer = await send(bridge, "/query", body)
    assert [s["target"] for s in answer] == ["apex_archive::apex_humidity"]
    assert len(answer[0]["datapoints"]) == apex_points("apex_humidity")[0].size


@pytest_twisted.ensureDeferred
async def test_escaped_names_are_those_names(bridge):
    srv = TemplateSrv(f=dict(options=LAB, value="a.b"), g=dict(options=LAB, value=["a.b", "c(1)"]))
    body = query_request(["lab::$f", "lab::$g"], srv)
    assert [t["target"] for t in body["targets"]] == [r"lab::a\.b", r"lab::(a\.b|c\(1\))"]
    _, _, answer = await send(bridge, "/query", body)
    # not a_b, which the unescaped regex a.b would also match
    assert [(s["refId"], s["target"]) for s in answer] == [("A", "lab::a.b"), ("B", "lab::a.b"), ("B", "lab::c(1)")]
    assert [p[0] for p in answer[2]["datapoints"]][:1] == [2.0]


@pytest_twisted.ensureDeferred
async def test_all_without_custom_value_lists_every_option(bridge):
    srv = TemplateSrv(channel=dict(CHANNEL, value=["$__all"]))
    body = query_request(["apex_archive::$channel"], srv)
    assert body["targets"][0]["target"] == "apex_archive::(" + "|".join(APEX) + ")"
    _, _, answer = await send(bridge, "/query", body)
    assert [s["target"] for s in answer] == [f"apex_archive::{f}" for f in APEX]
    assert [len(s["datapoints"]) for s in answer] == [apex_points(f)[0].size for f in APEX]


@pytest_twisted.ensureDeferred
async def test_all_with_custom_value_matches_the_live_fields(bridge):
    srv = TemplateSrv(channel=dict(CHANNEL, value="$__all", all_value=".*"),
                      node=dict(options=["apex_archive", "second_archive"], value="$__all", all_value="apex.*"))
    body = query_request(["apex_archive::$channel", "$node::apex_.*ure"], srv)
    assert [t["target"] for t in body["targets"]] == ["apex_archive::.*", "apex.*::apex_.*ure"]
    _, _, answer = await send(bridge, "/query", body)
    assert [s["target"] for s in answer] == [f"apex_archive::{f}" for f in APEX] + \
        ["apex_archive::apex_pressure", "apex_archive::apex_temperature"]


@pytest_twisted.ensureDeferred
async def test_multi_value_node_and_no_match(bridge):
    srv = TemplateSrv(node=dict(options=["apex_archive", "second_archive"],
                                value=["apex_archive", "second_archive"]))
    body = query_request(["$node::apex_humidity", "apex_archive::nothing_.*", "nowhere.*::x"], srv)
    assert body["targets"][0]["target"] == "(apex_archive|second_archive)::apex_humidity"
    _, _, answer = await send(bridge, "/query", body)
    assert [s["target"] for s in answer] == ["apex_archive::apex_humidity", "second_archive::apex_humidity",
                                             "apex_archive::nothing_.*", "nowhere.*::x"]
    assert answer[0]["datapoints"] == answer[1]["datapoints"] != []
    assert answer[2]["datapoints"] == [] and answer[2]["meta"]["notices"] == [
        {"severity": "error", "text": "no field of node 'apex_archive' matches 'nothing_.*'"}]
    assert answer[3]["meta"]["notices"][0]["text"] == "no live node matches 'nowhere.*'"


@pytest_twisted.ensureDeferred
async def test_readme_dashboard_node_and_channel(bridge):
    """README's dashboard: $node and $channel from /variable, metric $node::$channel."""
    srv = TemplateSrv(node=dict(options=["apex_archive", "lab", "second_archive"], value=["apex_archive", "lab"]))
    _, _, nodes = await send(bridge, "/variable", variable_request('{"list": "nodes"}', srv, raw_json=True))
    assert [n["value"] for n in nodes] == ["apex_archive", "lab", "second_archive"]
    _, _, channels = await send(bridge, "/variable",
                                variable_request('{"list": "fields", "node": $node}', srv, raw_json=True))
    srv.variables["channel"] = dict(options=[c["value"] for c in channels], value=["apex_humidity", "a.b"])
    body = query_request(["$node::$channel"], srv)
    assert body["targets"][0]["target"] == r"(apex_archive|lab)::(apex_humidity|a\.b)"
    _, _, answer = await send(bridge, "/query", body)
    # the combinations that exist; none of the empty "has no field" ones
    assert [(s["target"], len(s["datapoints"])) for s in answer] == [
        ("apex_archive::apex_humidity", apex_points("apex_humidity")[0].size), ("lab::a.b", 24)]
    assert all("meta" not in s for s in answer)


@pytest_twisted.ensureDeferred
async def test_variable_raw_json_with_a_multi_value_node_is_an_array(bridge):
    srv = TemplateSrv(node=dict(options=["apex_archive", "lab"], value=["apex_archive", "lab"]))
    body = variable_request('{"list": "fields", "node": $node}', srv, raw_json=True)
    assert body["payload"] == {"list": "fields", "node": ["apex_archive", "lab"]}
    status, _, answer = await send(bridge, "/variable", body)
    assert status == 200
    assert [a["__value"] for a in answer] == sorted(APEX + LAB)
    assert all(a["text"] == a["value"] == a["__text"] == a["__value"] for a in answer)
    # the single-value form, and the targets of several nodes
    srv1 = TemplateSrv(node=dict(options=["lab"], value="lab"))
    _, _, answer = await send(bridge, "/variable", variable_request('{"list": "fields", "node": "$node"}',
                                                                    srv1, raw_json=True))
    assert [a["value"] for a in answer] == LAB
    _, _, answer = await send(bridge, "/variable", variable_request('{"node": $node}', srv, raw_json=True))
    assert [a["value"] for a in answer] == sorted([f"apex_archive::{f}" for f in APEX] +
                                                  [f"lab::{f}" for f in LAB])


@pytest_twisted.ensureDeferred
async def test_variable_regex_mode_text(bridge):
    srv = TemplateSrv(node=dict(options=["apex_archive", "lab"], value=["lab", "second_archive"]),
                      f=dict(options=LAB, value="a.b"))
    body = variable_request("$node::", srv, raw_json=False)
    assert body["payload"] == {"target": "(lab|second_archive)::"}
    _, _, answer = await send(bridge, "/variable", body)
    assert [a["value"] for a in answer] == sorted([f"lab::{f}" for f in LAB] +
                                                  [f"second_archive::{f}" for f in APEX])
    _, _, answer = await send(bridge, "/variable", variable_request("$f", srv, raw_json=False))
    assert [a["value"] for a in answer] == ["lab::a.b"]  # escaped: that name, not a_b


# -- 2. ad hoc filters -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_one_of_and_not_one_of_filters(bridge):
    one_of = [grafana_filter("field", "=|", "apex_humidity", "apex_pressure")]
    _, _, answer = await send(bridge, "/query", query_request(["apex_archive::.*"], filters=one_of))
    assert [s["target"] for s in answer] == ["apex_archive::apex_humidity", "apex_archive::apex_pressure"]
    not_one_of = [grafana_filter("field", "!=|", "apex_humidity", "apex_pressure"),
                  grafana_filter("node", "=", "apex_archive")]
    _, _, answer = await send(bridge, "/query",
                              query_request(["(apex_archive|lab)::apex_.*", "lab::a_b"], filters=not_one_of))
    assert [s["target"] for s in answer] == ["apex_archive::apex_radiometer", "apex_archive::apex_temperature",
                                             "apex_archive::apex_windspeed"]
    assert all("meta" not in s for s in answer)


@pytest_twisted.ensureDeferred
async def test_unsupported_filters_are_answered_with_a_notice(bridge):
    filters = [grafana_filter("field", "<", "apex_p"), grafana_filter("site", "=", "apex")]
    status, _, answer = await send(bridge, "/query",
                                   query_request(["apex_archive::apex_humidity", "lab::a_b"], filters=filters))
    assert status == 200 and [s["target"] for s in answer] == ["apex_archive::apex_humidity", "lab::a_b"]
    for s in answer:
        assert len(s["datapoints"]) > 0
        assert s["meta"]["notices"] == [
            {"severity": "warning", "text": "ad hoc filter 'field < apex_p' ignored: operator '<' is not "
                                            "supported here (use =, !=, =~, !~, =|, !=|)"},
            {"severity": "warning", "text": "ad hoc filter 'site = apex' ignored: sisock filters by node "
                                            "and field only"}]


@pytest_twisted.ensureDeferred
async def test_tag_keys_and_values_as_grafana_11_asks(bridge):
    time_range = {"from": JULY["from"], "to": JULY["to"], "raw": {"from": "now-6h", "to": "now"}}
    queries = query_request(["lab::a_b"])["targets"]
    status, _, keys = await send(bridge, "/tag-keys", {"filters": [], "timeRange": time_range, "queries": queries})
    assert status == 200 and keys == [{"type": "string", "text": "node"}, {"type": "string", "text": "field"}]
    body = {"key": "field", "filters": [grafana_filter("node", "=|", "lab")], "timeRange": time_range,
            "queries": queries}
    status, _, values = await send(bridge, "/tag-values", body)
    assert status == 200 and values == [{"text": f} for f in LAB]
    _, _, values = await send(bridge, "/tag-values", {"key": "node", "filters": [], "timeRange": time_range})
    assert values == [{"text": n} for n in ("apex_archive", "lab", "second_archive")]


# -- 3. error bodies Grafana shows ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_error_bodies_show_on_the_panel_and_the_test_button(bridge):
    status, reason, body = await send(bridge, "/query", {"targets": []})
    assert status == 400
    assert body == {"error": {"code": "bad_request", "message": "missing key: range"},
                    "code": "bad_request", "message": "missing key: range"}
    assert panel_error_text(status, reason, body) == "missing key: range"
    # health without the router: the data source's Test button
    api, _client, _session = bridge
    api.service._session = None
    status, reason, body = await send(bridge, "/", method="GET")
    assert status == 503 and body["code"] == body["error"]["code"] == "no_router"
    assert button_text(reason, body) == (
        f"Service Unavailable: no_router. not connected to the router at {api.service.router_url}")
    status, reason, body = await send(bridge, "/nope", {})
    assert (status, body["code"], panel_error_text(status, reason, body)) == (404, "not_found",
                                                                             "no such endpoint: /nope")


# -- 4. the OpenAPI document against real answers ---------------------------------------------------


def _answer_schema(doc: dict, path: str, method: str, status: int) -> dict:
    responses = doc["paths"][path][method]["responses"]
    spec = responses[str(status)]
    if "$ref" in spec:
        spec = doc["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
    return spec["content"]["application/json"]["schema"]


def _validate(doc: dict, schema: dict, value: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator({**schema, "components": doc["components"]})
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(value)]


def grafana_routes(api: GrafanaAPI) -> set[tuple[str, str]]:
    """The Grafana routes the app serves (other bridge modules add their own)."""
    return {(method.lower(), path) for method, path in api.routes() if not path.startswith("/api/")}


@pytest_twisted.ensureDeferred
async def test_document_routes_are_served_routes_and_schemas_are_valid(bridge):
    api, client, _s = bridge
    doc = openapi.openapi_document()
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert grafana_routes(api) <= documented
    for method, path in documented:  # and nothing documented is missing
        d = client.request(method.upper(), "http://127.0.0.1:5000" + path, data=b"{}",
                           headers={"Content-Type": ["application/json"]})
        client.flush()
        assert (await d).code not in (404, 405), (method, path)
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.Draft7Validator.check_schema(schema)


def test_a_module_can_register_its_own_route():
    op = openapi.Operation("get", "/api/example", "an example", answer=openapi.array(openapi.ref("Example")))
    try:
        openapi.add_schemas({"Example": {"type": "string"}})
        openapi.add_operation(op)
        doc = openapi.openapi_document()
        assert doc["paths"]["/api/example"]["get"]["responses"]["200"]["content"]["application/json"][
            "schema"] == {"type": "array", "items": {"$ref": "#/components/schemas/Example"}}
        with pytest.raises(ValueError, match="'Example' is already defined differently"):
            openapi.add_schemas({"Example": {"type": "number"}})
    finally:
        openapi.OPERATIONS.pop(("get", "/api/example"), None)
        openapi.SCHEMAS.pop("Example", None)


#: For each route, requests as the plugins send them, and the status each gets.
PLUGIN_REQUESTS = [
    ("get", "/", None, 200),
    ("get", "/openapi.json", None, 200),
    ("post", "/search", {"target": "apex_archive::(apex_humidity|apex_pressure)"}, 200),
    ("post", "/search", {"target": 5}, 400),
    ("post", "/query", query_request(["apex_archive::.*", "lab::nope", "bad"],
                                     filters=[grafana_filter("field", ">", "x")]), 200),
    ("post", "/query", dict(query_request(["lab::(a\\.b|a_b)"]),
                            targets=[{"refId": "A", "target": "lab::(a\\.b|a_b)", "payload": {"format": "table"}},
                                     {"refId": "B", "target": "lab::c\\(1\\)", "payload": {"format": "dataframe"}}]),
     200),
    ("post", "/query", {"range": {"from": "yesterday", "to": "now"}, "targets": []}, 400),
    ("post", "/annotations", {"range": JULY, "rangeRaw": JULY["raw"],
                              "annotation": {"name": "h", "query": "lab::a_b", "enable": True,
                                             "iconColor": "red"}, "variables": {}}, 200),
    ("post", "/annotations", {"range": JULY}, 400),
    ("post", "/tag-keys", {"filters": [grafana_filter("node", "=|", "lab")], "timeRange": JULY,
                           "queries": []}, 200),
    ("post", "/tag-keys", {}, 200),
    ("post", "/tag-values", {"key": "field", "filters": [], "timeRange": JULY, "queries": []}, 200),
    ("post", "/tag-values", {"filters": []}, 400),
    ("post", "/metrics", {"metric": "lab::a_b", "payload": {"format": "table"}}, 200),
    ("post", "/metric-payload-options", {"metric": "lab::a_b", "payload": {}, "name": "format"}, 200),
    ("post", "/metric-payload-options", {"metric": "lab::a_b"}, 400),
    ("post", "/variable", {"payload": {"list": "fields", "node": ["lab", "apex_archive"]}, "range": JULY}, 200),
    ("post", "/variable", {"payload": {"target": "(lab|apex_archive)::"}, "range": JULY}, 200),
    ("post", "/variable", {"payload": {"list": "fields", "node": 5}}, 400),
]


@pytest_twisted.ensureDeferred
async def test_every_routes_real_answers_match_the_document(bridge):
    doc = json.loads(json.dumps(openapi.openapi_document()))
    served = await send(bridge, "/openapi.json", method="GET")
    assert served[0] == 200 and served[2] == doc
    seen = set()
    for method, path, body, expected in PLUGIN_REQUESTS:
        if body is not None:  # what Grafana sends is what the document says we take
            request_schema = doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
            if expected == 200:
                assert _validate(doc, request_schema, body) == [], (path, body)
        status, _, answer = await send(bridge, path, body, method=method.upper())
        assert status == expected, (path, body, answer)
        assert _validate(doc, _answer_schema(doc, path, method, status), answer) == [], (path, status, answer)
        seen.add((method, path))
    assert seen == grafana_routes(bridge[0])


@pytest_twisted.ensureDeferred
async def test_error_statuses_match_the_document(bridge, tmp_path):
    doc = openapi.openapi_document()
    status, _, answer = await send(bridge, "/query", method="GET")
    assert status == 405 and _validate(doc, _answer_schema(doc, "/query", "post", 405), answer) == []
    status, _, answer = await send(bridge, "/query", {"x": "y" * (1 << 20)})
    assert status == 413 and _validate(doc, _answer_schema(doc, "/query", "post", 413), answer) == []
    api, _client, _s = bridge
    from sisock_core.bridge.auth import Credentials

    api.credentials = Credentials("grafana", "secret")
    status, _, answer = await send(bridge, "/", method="GET")
    assert status == 401 and _validate(doc, _answer_schema(doc, "/", "get", 401), answer) == []
    api.credentials = None
    api.service._session = None
    status, _, answer = await send(bridge, "/", method="GET")
    assert status == 503 and _validate(doc, _answer_schema(doc, "/", "get", 503), answer) == []
