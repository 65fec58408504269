"""The HTTP bridge over real HTTP: ``sisock up`` with a crossbar router, the hub, two
weather nodes and the bridge, queried with request bodies shaped like those of
Grafana's SimpleJSON and JSON (simPod) data-source plugins (``grafana.md``).

One ``sisock up`` per module; tests that restart processes wait until the site is
whole again before they return.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor, threads

from sisock_core.bridge.grafana import error_object
from sisock_core.client import with_session
from sisock_core.config import load_config
from sisock_core.wamp import node_uri
from sisock_plugins.weather.parser import parse_file
from sisock_plugins.weather.plugin import example_data_dir

from .siteproc import SisockProcess, free_port, pids_matching, wait_until, write_site

pytestmark = pytest.mark.integration

JULY = {"from": "2017-07-13T00:00:00.000Z", "to": "2017-07-27T00:00:00.000Z",
        "raw": {"from": "2017-07-13T00:00:00.000Z", "to": "2017-07-27T00:00:00.000Z"}}
JULY_START, JULY_END = 1499904000.0, 1501113600.0
APEX_FIELDS = ["apex_humidity", "apex_pressure", "apex_radiometer", "apex_temperature", "apex_windspeed"]


@attrs.frozen
class Bridge:
    url: str
    path: Path
    proc: SisockProcess
    data_dir: Path
    state_dir: Path
    tls_port: int


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    """``sisock up`` with the bridge on a free port, ``apex_archive`` serving a copy of
    the example data (so tests can add files) and ``second_archive`` the original."""
    tmp = tmp_path_factory.mktemp("bridge")
    data = tmp / "weather"
    shutil.copytree(example_data_dir(), data)
    http_port, tls_port = free_port(), free_port()
    nodes = (f'[nodes.apex_archive]\nplugin = "weather"\ndata_dir = {json.dumps(str(data))}\n\n'
             '[nodes.second_archive]\nplugin = "weather"\ndescription = "second copy"\n')
    path = write_site(tmp / "site.toml", state_dir=tmp / "state", tls_port=tls_port,
                      ocs_port=free_port(), http_port=http_port, start_http=True, nodes=nodes)
    proc = SisockProcess(["up", str(path)], tmp / "up.log")
    try:
        proc.wait_ready("site", timeout=120)
        yield Bridge(f"http://127.0.0.1:{http_port}", path, proc, data, tmp / "state", tls_port)
    finally:
        rc = proc.stop()
        print(proc.log_tail(40))
        assert rc == 0, f"sisock up exited with {rc}"


# -- plain HTTP -------------------------------------------------------------------------------


@attrs.frozen
class Reply:
    status: int
    headers: Any
    body: Any


def request(url: str, body: Any = None, *, method: str | None = None, raw: bytes | None = None,
            headers: dict | None = None, timeout: float = 30.0) -> Reply:
    """One HTTP request; every answer must be JSON (``Content-Type: application/json``)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, hdrs, payload = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, payload = e.code, e.headers, e.read()
    assert hdrs.get("Content-Type") == "application/json", (status, dict(hdrs))
    return Reply(status, hdrs, json.loads(payload) if payload else None)


def post(bridge: Bridge, path: str, body: Any, **kw: Any) -> Reply:
    return request(bridge.url + path, body, **kw)


def query_body(targets: list, max_points: int = 1920, rng: dict = JULY, **extra: Any) -> dict:
    """A SimpleJSON /query body as in grafana.md."""
    return {"range": rng, "interval": "5m", "intervalMs": 300000, "maxDataPoints": max_points,
            "targets": targets, "adhocFilters": [], **extra}


def raw_series(data_dir: Path, field: str, start: float = JULY_START, end: float = JULY_END):
    _h, t, v = parse_file(data_dir / f"{field}.dat")
    keep = (t >= start) & (t < end)
    return t[keep], v[keep]


def ms_range(rng: dict) -> tuple[float, float]:
    from sisock_core.bridge.grafana import parse_range

    start, end = parse_range({"range": rng})
    return start * 1000, end * 1000


# -- health, search, listings ------------------------------------------------------------------


def test_health_is_200_with_json_when_connected(bridge):
    r = request(bridge.url + "/")
    assert r.status == 200
    assert r.body["status"] == "ok" and r.body["nodes"] == ["apex_archive", "second_archive"]
    assert f"wss://127.0.0.1:{bridge.tls_port}/" in r.body["message"]


def test_simplejson_search_lists_filters_and_uses_strings(bridge):
    r = post(bridge, "/search", {"target": ""})
    assert r.status == 200
    expected = sorted([f"apex_archive::{f}" for f in APEX_FIELDS] + [f"second_archive::{f}" for f in APEX_FIELDS])
    assert [t for t in r.body if not t.startswith("apex_archive::apex_dew")] == expected
    r = post(bridge, "/search", {"target": "RADIO"})
    assert r.body == ["apex_archive::apex_radiometer", "second_archive::apex_radiometer"]


def test_simpod_metrics_payload_options_and_variable(bridge):
    r = post(bridge, "/metrics", {})
    assert r.status == 200
    values = [m["value"] for m in r.body]
    assert "apex_archive::apex_radiometer" in values
    assert all(m["payloads"][0]["name"] == "format" for m in r.body)
    r = post(bridge, "/metrics", {"metric": "apex_archive::apex_humidity", "payload": {"format": "table"}})
    assert "apex_archive::apex_humidity" in [m["value"] for m in r.body]
    r = post(bridge, "/metric-payload-options",
             {"metric": "apex_archive::apex_humidity", "payload": {}, "name": "format"})
    assert [o["value"] for o in r.body] == ["timeseries", "table", "dataframe"]
    r = post(bridge, "/variable", {"payload": {"target": "temperature"}, "range": JULY})
    assert r.body == [{"__text": t, "__value": t, "text": t, "value": t} for t in
                      ["apex_archive::apex_temperature", "second_archive::apex_temperature"]]
    r = post(bridge, "/variable", {"payload": {"list": "nodes"}, "range": JULY})
    assert [v["__value"] for v in r.body] == ["apex_archive", "second_archive"]


def test_readme_dashboard_with_multi_value_variables(bridge):
    """README's dashboard against the whole site: $node and $channel variables (raw JSON
    queries, multi-value), a panel with metric $node::$channel, as Grafana 11 and the JSON
    plugin send them (tests/grafana11.py)."""
    from .grafana11 import TemplateSrv, query_request, variable_request

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    node_query, channel_query, metric = '{"list": "nodes"}', '{"list": "fields", "node": $node}', "$node::$channel"
    for text in (node_query, channel_query, metric):
        assert f"`{text}`" in readme, text
    srv = TemplateSrv(node=dict(options=[], value=["$__all"]))
    srv.variables["node"]["options"] = [v["value"] for v in post(bridge, "/variable", variable_request(
        node_query, srv, raw_json=True)).body]
    assert srv.variables["node"]["options"] == ["apex_archive", "second_archive"]
    channels = post(bridge, "/variable", variable_request(channel_query, srv, raw_json=True)).body
    assert [c["value"] for c in channels] == APEX_FIELDS
    srv.variables["node"]["value"] = ["apex_archive"]
    srv.variables["channel"] = dict(options=APEX_FIELDS, value=["apex_radiometer", "apex_windspeed"])
    body = query_request([metric], srv, rng=JULY, max_points=100)
    assert body["targets"][0]["target"] == "apex_archive::(apex_radiometer|apex_windspeed)"
    r = post(bridge, "/query", body)
    assert r.status == 200
    assert [s["target"] for s in r.body] == ["apex_archive::apex_radiometer", "apex_archive::apex_windspeed"]
    for s in r.body:
        assert 0 < len(s["datapoints"]) <= 100 and "meta" not in s
    # All, over both nodes: every field of each, one series each
    srv.variables["node"]["value"] = srv.variables["channel"]["value"] = ["$__all"]
    r = post(bridge, "/query", query_request([metric], srv, rng=JULY, max_points=100))
    assert [s["target"] for s in r.body] == [f"{n}::{f}" for n in ("apex_archive", "second_archive")
                                             for f in APEX_FIELDS]
    assert all(s["datapoints"] for s in r.body)


def test_nodes_with_another_state_dir_says_which_certificate(bridge, tmp_path):
    """``sisock nodes -c SITE`` under another SISOCK_STATE_DIR, one that has a certificate
    and secrets of its own (from another site run there): it names the certificate it
    tried and where the running site keeps its own; with an empty one, where the site
    keeps its state."""
    from sisock_core.router import load_secrets
    from sisock_core.tls import ensure_site_certificate

    def nodes(state_dir: Path) -> str:
        env = dict(os.environ, SISOCK_STATE_DIR=str(state_dir))
        run = subprocess.run([sys.executable, "-m", "sisock_core.cli", "nodes", "-c", str(bridge.path)],
                             capture_output=True, text=True, timeout=60, env=env)
        assert run.returncode == 1, run
        return run.stderr

    site_dir = bridge.state_dir.resolve()
    other = tmp_path / "other-state"
    other_cfg = load_config(str(bridge.path), env=dict(os.environ, SISOCK_STATE_DIR=str(other)))
    ensure_site_certificate(other_cfg)
    load_secrets(other_cfg, create=True)
    err = nodes(other)
    assert err == (
        f"sisock: cannot connect to the router at 127.0.0.1:{bridge.tls_port}: the router at "
        f"127.0.0.1:{bridge.tls_port} presents a certificate that is not signed by "
        f"{other_cfg.state_dir / 'tls' / 'server_cert.pem'} (state directory {other_cfg.state_dir}). "
        f"The site there keeps its own certificate in {site_dir / 'tls' / 'server_cert.pem'} (state "
        f"directory {site_dir}): run the command with SISOCK_STATE_DIR={site_dir}, the state directory "
        "the site was started with (it also holds the site's WAMP secrets), or set [router] ca_cert = "
        f'"{site_dir / "tls" / "server_cert.pem"}"\n')
    err = nodes(tmp_path / "empty-state")
    assert err.startswith("sisock: no WAMP-CRA secrets"), err
    assert err.endswith(f"; the site running at 127.0.0.1:{bridge.tls_port} was started with state "
                        f"directory {site_dir}: run the command with SISOCK_STATE_DIR={site_dir}\n"), err


def test_tag_keys_and_values(bridge):
    assert post(bridge, "/tag-keys", {}).body == [{"type": "string", "text": "node"},
                                                  {"type": "string", "text": "field"}]
    assert post(bridge, "/tag-values", {"key": "node"}).body == [{"text": "apex_archive"},
                                                                 {"text": "second_archive"}]
    assert {"text": "apex_windspeed"} in post(bridge, "/tag-values", {"key": "field"}).body
    assert post(bridge, "/tag-values", {"key": "City"}).body == []


# -- /query ------------------------------------------------------------------------------------


def test_simplejson_timeserie_july_2017_reduced_peak_preserving(bridge):
    body = query_body([{"target": "apex_archive::apex_radiometer", "refId": "A", "type": "timeserie"},
                       {"target": "apex_archive::apex_temperature", "refId": "B", "type": "timeserie"}])
    r = post(bridge, "/query", body)
    assert r.status == 200
    radiometer, temperature = r.body
    assert radiometer["target"] == "apex_archive::apex_radiometer" and radiometer["refId"] == "A"
    pts = np.array(radiometer["datapoints"], dtype=float)
    t_raw, v_raw = raw_series(bridge.data_dir, "apex_radiometer")
    assert t_raw.size == 20160 and 1000 < len(pts) <= 1920
    lo, hi = ms_range(JULY)
    assert np.all(np.diff(pts[:, 1]) > 0) and pts[0, 1] >= lo and pts[-1, 1] < hi
    # min and max per bucket: the extremes of the raw series survive, at their own times
    assert pts[:, 0].max() == v_raw.max() and pts[:, 0].min() == v_raw.min()
    i = int(np.argmax(v_raw))
    assert [v_raw[i], t_raw[i] * 1000] in pts.tolist()
    # 336 hourly samples: fewer than maxDataPoints, sent as they are
    t_raw, v_raw = raw_series(bridge.data_dir, "apex_temperature")
    assert temperature["datapoints"] == [[v, t * 1000] for v, t in zip(v_raw.tolist(), t_raw.tolist())]


def test_max_data_points_is_a_hard_cap_for_every_series(bridge):
    targets = [{"target": f"{node}::{f}", "refId": f"{node[0]}{i}"}
               for node in ("apex_archive", "second_archive") for i, f in enumerate(APEX_FIELDS)]
    for max_points in (2, 7, 100, 333):
        r = post(bridge, "/query", query_body(targets, max_points=max_points))
        assert r.status == 200 and len(r.body) == 10
        for item in r.body:
            assert 0 < len(item["datapoints"]) <= max_points, (max_points, item["target"])


def test_simplejson_table(bridge):
    rng = {"from": "2017-07-20T00:00:00.000Z", "to": "2017-07-20T03:00:00.000Z"}
    r = post(bridge, "/query", query_body(
        [{"target": "apex_archive::apex_temperature", "refId": "A", "type": "table"}], rng=rng))
    assert r.status == 200
    t_raw, v_raw = raw_series(bridge.data_dir, "apex_temperature", 1500508800.0, 1500519600.0)
    assert r.body == [{
        "type": "table", "refId": "A",
        "columns": [{"text": "Time", "type": "time"},
                    {"text": "apex_archive::apex_temperature", "type": "number"}],
        "rows": [[t * 1000, v] for t, v in zip(t_raw.tolist(), v_raw.tolist())],
    }]


def test_simpod_query_payload_formats_and_filters(bridge):
    body = {
        "panelId": 1, "range": JULY, "rangeRaw": {"from": "now-6h", "to": "now"},
        "interval": "30m", "intervalMs": 1800000, "maxDataPoints": 550,
        "targets": [
            {"target": "apex_archive::apex_humidity", "refId": "A", "payload": {}},
            {"target": "apex_archive::apex_pressure", "refId": "B", "payload": {"format": "table"}},
            {"target": "apex_archive::apex_windspeed", "refId": "C", "payload": {"format": "dataframe"}},
            {"target": "second_archive::apex_humidity", "refId": "D", "payload": {}},
        ],
        "filters": [{"key": "node", "operator": "=", "value": "apex_archive"}],
    }
    r = post(bridge, "/query", body)
    assert r.status == 200
    assert [item.get("refId") for item in r.body] == ["A", "B", "C"]  # D filtered out
    humidity, pressure, windspeed = r.body
    assert len(humidity["datapoints"]) == 336  # hourly over 14 days
    assert pressure["type"] == "table" and len(pressure["rows"]) == 336
    assert [f["name"] for f in windspeed["fields"]] == ["time", "apex_archive::apex_windspeed"]
    assert windspeed["fields"][0]["type"] == "time" and windspeed["fields"][1]["config"] == {"unit": "km/h"}
    times, values = windspeed["fields"][0]["values"], windspeed["fields"][1]["values"]
    assert len(times) == len(values) <= 550
    _t, v_raw = raw_series(bridge.data_dir, "apex_windspeed")
    assert max(values) == v_raw.max()


def test_errors_stay_per_target(bridge):
    body = query_body([
        {"target": "apex_archive::apex_humidity", "refId": "A"},
        {"target": "no_separator", "refId": "B"},
        {"target": "ghost_node::x", "refId": "C"},
        {"target": "apex_archive::no_such_field", "refId": "D"},
        {"target": 42, "refId": "E"},
        {"target": "second_archive::apex_humidity", "refId": "F"},
    ])
    r = post(bridge, "/query", body)
    assert r.status == 200
    by_ref = {item["refId"]: item for item in r.body}
    assert len(by_ref["A"]["datapoints"]) == 336 and len(by_ref["F"]["datapoints"]) == 336
    notices = {ref: by_ref[ref]["meta"]["notices"][0]["text"] for ref in "BCDE"}
    assert notices == {
        "B": "target 'no_separator' is not 'node::field'",
        "C": "node 'ghost_node' is not serving (unknown node, or down)",
        "D": "node 'apex_archive' has no field 'no_such_field'",
        "E": "targets[4].target must be a string, got a number",
    }
    assert all(by_ref[ref]["datapoints"] == [] for ref in "BCDE")


@pytest.mark.parametrize("raw,message", [
    (b"{not json", "request body is not valid JSON"),
    (b"[1, 2]", "request body must be a JSON object, got an array"),
    (b'{"targets": []}', "missing key: range"),
    (json.dumps({"range": JULY}).encode(), "missing key: targets"),
    (json.dumps({"range": {"from": "yesterday", "to": "now"}, "targets": []}).encode(),
     "range.from: 'yesterday' is not an ISO-8601 time"),
    (b'{"range": {"from": "2017-07-13T00:00:00.000Z", "to": "2017-07-27T00:00:00.000Z"}, '
     b'"targets": [], "interval": "1 fortnight"}', "interval '1 fortnight' is not a Grafana interval"),
])
def test_malformed_bodies_get_400_with_json_error(bridge, raw, message):
    r = request(bridge.url + "/query", raw=raw)
    assert r.status == 400
    assert message in r.body["error"]["message"]


def test_interval_1y_is_fine(bridge):
    body = query_body([{"target": "apex_archive::apex_temperature"}])
    body.update(interval="1y", intervalMs=None)
    r = post(bridge, "/query", body)
    assert r.status == 200 and 0 < len(r.body[0]["datapoints"]) <= 2


def test_annotations_endpoint(bridge):
    rng = {"from": "2017-07-20T00:00:00.000Z", "to": "2017-07-20T03:00:00.000Z"}
    annotation = {"name": "temperature", "datasource": "sisock", "iconColor": "rgba(255, 96, 96, 1)",
                  "enable": True, "query": "apex_archive::apex_temperature"}
    r = post(bridge, "/annotations", {"range": rng, "rangeRaw": rng, "annotation": annotation})
    assert r.status == 200
    assert [a["time"] for a in r.body] == [1500508800000, 1500512400000, 1500516000000]
    assert r.body[0]["annotation"] == annotation and r.body[0]["title"] == "apex_archive::apex_temperature"
    assert post(bridge, "/annotations", {"range": rng, "annotation": {"name": "x", "query": ""}}).body == []


def test_methods_paths_and_preflight(bridge):
    assert request(bridge.url + "/nope", {}).status == 404
    assert request(bridge.url + "/query").status == 405  # GET
    r = request(bridge.url + "/query", method="OPTIONS",
                headers={"Origin": "http://grafana.example:3000",
                         "Access-Control-Request-Method": "POST",
                         "Access-Control-Request-Headers": "content-type,x-grafana-device-id"})
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == "http://grafana.example:3000"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    assert "x-grafana-device-id" in r.headers["Access-Control-Allow-Headers"]
    r = post(bridge, "/search", {"target": "humid"}, headers={"Origin": "http://grafana.example:3000"})
    assert r.headers["Access-Control-Allow-Origin"] == "http://grafana.example:3000"
    # a trailing slash in the data source URL must not matter
    assert request(bridge.url + "//search", {"target": "humid"}).status == 200


def _gzip_query(url: str, headers: dict | None = None) -> tuple[str | None, list]:
    import gzip

    req = urllib.request.Request(url + "/query", data=json.dumps(
        query_body([{"target": "apex_archive::apex_radiometer"}])).encode(), method="POST")
    req.add_header("Accept-Encoding", "gzip")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.headers["Content-Type"] == "application/json"
        raw = r.read()
        encoding = r.headers["Content-Encoding"]
        return encoding, json.loads(gzip.decompress(raw) if encoding == "gzip" else raw)


def test_no_gzip_by_default(bridge):
    encoding, body = _gzip_query(bridge.url)
    assert encoding is None and len(body[0]["datapoints"]) > 1000


# -- hostile input -----------------------------------------------------------------------------

ENDPOINTS = ["/query", "/search", "/annotations", "/tag-keys", "/tag-values", "/metrics",
             "/metric-payload-options", "/variable", "/"]
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)  # lone surrogates: not JSON
_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | \
    st.floats(allow_nan=True, allow_infinity=True) | _text
_json = st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(_text, c, max_size=3),
                     max_leaves=12)
_times = st.sampled_from(["2017-07-20T00:00:00.000Z", "2017-07-21T00:00:00Z", "0001-01-01T00:00:00Z",
                          "9999-12-31T23:59:59.999Z", "1970-01-01T00:00:00Z", "now-6h"]) | _json
_targets = st.sampled_from(["apex_archive::apex_radiometer", "second_archive::apex_humidity", "::", "x",
                            "apex_archive::", "ghost::x", "apex_archive::apex_temperature::x"]) | _json
_target_items = st.fixed_dictionaries({}, optional={
    "target": _targets, "refId": _json, "type": st.sampled_from(["timeserie", "table", "x"]) | _json,
    "payload": st.fixed_dictionaries({}, optional={"format": st.sampled_from(["table", "dataframe", "x"])}) | _json,
    "hide": _json}) | _json
_bodies = st.fixed_dictionaries({}, optional={
    "range": st.fixed_dictionaries({}, optional={"from": _times, "to": _times}) | _json,
    "targets": st.lists(_target_items, max_size=4) | _json,
    "maxDataPoints": st.integers(-5, 10**12) | _json, "intervalMs": st.floats() | _json,
    "interval": st.sampled_from(["1y", "5s", "100ms", "1x", ""]) | _json,
    "adhocFilters": st.lists(st.fixed_dictionaries({"key": st.sampled_from(["node", "field", "x"]) | _json,
                                                    "operator": st.sampled_from(["=", "!=", "=~", "!~", "<"]) | _json,
                                                    "value": st.sampled_from(["apex_archive", "(", ".*"]) | _json}),
                             max_size=2) | _json,
    "filters": _json, "target": _targets, "key": _json, "payload": _json, "annotation": _json,
    "metric": _json, "name": _json,
})


def _iso(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def _query_bodies(draw):
    """Mostly well-formed /query and /annotations bodies with junk in a few places,
    so that most examples reach the nodes."""
    start = draw(st.floats(JULY_START - 86400, JULY_END))
    rng = {"from": _iso(start), "to": _iso(start + draw(st.floats(3600, 5 * 86400)))}
    if draw(st.integers(0, 9)) == 0:
        rng = draw(st.fixed_dictionaries({}, optional={"from": _times, "to": _times}) | _json)
    good = st.fixed_dictionaries({"target": _targets}, optional={
        "refId": st.text("ABC", max_size=2), "type": st.sampled_from(["table", "timeserie"]),
        "payload": st.sampled_from([{}, {"format": "dataframe"}, {"format": "table"}])})
    targets = draw(st.lists(st.one_of(good, good, good, _target_items), min_size=1, max_size=4))
    body = {"range": rng, "targets": targets,
            "annotation": {"name": "a", "query": draw(_targets)}}
    optional = {
        "maxDataPoints": st.integers(-5, 10**12) | _finite | _json,
        "intervalMs": _finite | _json,
        "interval": st.sampled_from(["1y", "5s", "100ms", "1x", ""]) | _json,
        "adhocFilters": st.lists(st.fixed_dictionaries({
            "key": st.sampled_from(["node", "field"]), "operator": st.sampled_from(["=", "=~", "!~"]),
            "value": st.sampled_from(["apex_archive", "(", ".*", "^apex_r"])}), max_size=2),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    return body


_requests = st.tuples(st.sampled_from(["/query", "/query", "/annotations"]), _query_bodies()) | \
    st.tuples(st.sampled_from(ENDPOINTS), _bodies | _json)


def _junk_bytes(body: Any, mode: int) -> bytes:
    if mode == 0:
        return json.dumps(body, allow_nan=True).encode()  # may hold NaN: not JSON
    if mode == 1:
        return json.dumps(body, allow_nan=True).encode()[:-1]  # truncated
    return json.dumps(body, allow_nan=True).encode() + b"\xff\x00"


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(req=_requests, mode=st.sampled_from([0, 0, 0, 0, 0, 1, 2]))
def test_junk_never_gets_a_500(bridge, req, mode):
    path, body = req
    r = request(bridge.url + path, raw=_junk_bytes(body, mode), method="POST")
    assert r.status < 500, (path, body, r.body)
    assert r.status in (200, 400, 405), (path, r.status, r.body)
    if r.status != 200:
        assert isinstance(r.body["error"]["message"], str) and r.body["error"]["message"]


def test_clients_that_hang_up_early(bridge):
    """Grafana cancels queries when a panel changes: the bridge drops those answers quietly."""
    import socket

    body = json.dumps(query_body([{"target": f"apex_archive::{f}"} for f in APEX_FIELDS])).encode()
    port = int(bridge.url.rsplit(":", 1)[1])
    head = (f"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    for cut in (None, len(head) + 10, 20):
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall((head + body)[:cut])
    assert request(bridge.url + "/").status == 200
    assert len(post(bridge, "/query", json.loads(body)).body) == len(APEX_FIELDS)


def test_junk_did_not_kill_or_restart_the_bridge(bridge):
    pids = pids_matching(f"http --supervised --config {bridge.path}")
    assert len(pids) == 1
    assert request(bridge.url + "/").status == 200
    http_lines = [line for line in bridge.proc.log_text().splitlines() if "[http]" in line]
    assert not [line for line in http_lines if "Traceback" in line or "error answering" in line]
    assert "http stopped unexpectedly" not in bridge.proc.log_text()


# -- old and broken nodes (a server session stands in for them) -----------------------------


@pytest_twisted.ensureDeferred
async def test_old_node_without_max_points_and_a_failing_node(bridge):
    """A sisock 0.2 node (no ``max_points``, ignores ``min_stride``) still gives at most
    maxDataPoints points with its spike kept; a node raising an error leaves only its
    own series empty, with the message."""
    from autobahn.wamp.exception import ApplicationError

    cfg = load_config(bridge.path)
    n = 5000
    t = 1500508800.0 + np.arange(n) * 10.0
    v = np.sin(np.arange(n) / 100.0)
    v[4321] = 99.0
    strides: list = []

    def old_fields(start, end):
        return [{"legacy": {"description": "old", "timeline": "tl", "type": "number", "units": "K"}},
                {"tl": {"interval": 10.0, "field": ["legacy"]}}]

    def old_data(field, start, end, min_stride=None):  # sisock 0.2's signature
        strides.append(min_stride)
        return {"data": {"legacy": v.tolist()}, "timeline": {"tl": {"t": t.tolist(), "finalized_until": t[-1]}}}

    def broken_fields(start, end):
        return [{"x": {"description": None, "timeline": "tl", "type": "number", "units": None}},
                {"tl": {"interval": None, "field": ["x"]}}]

    def broken_data(field, start, end, min_stride=None, max_points=None):
        raise ApplicationError("org.simonsobservatory.error.plugin_failed", "broken_node: disk on fire")

    moved_calls: list = []

    def moved_fields(start, end):  # the field moves to timeline "b" after the first listing
        moved_calls.append(start)
        tl = "a" if len(moved_calls) == 1 else "b"
        return [{"y": {"description": None, "timeline": tl, "type": "number", "units": "V"}},
                {tl: {"interval": None, "field": ["y"]}}]

    def moved_data(field, start, end, min_stride=None, max_points=None):
        times = [1500508800.0, 1500508801.0]
        return {"data": {"y": [1.0, 2.0], "z": [5.0, 6.0]},
                "timeline": {"b": {"t": times, "finalized_until": None},
                             "c": {"t": [1500508900.0, 1500508901.0], "finalized_until": None}}}

    rng = {"from": "2017-07-20T00:00:00.000Z", "to": "2017-07-21T00:00:00.000Z"}
    body = query_body([{"target": "old_node::legacy", "refId": "A"},
                       {"target": "broken_node::x", "refId": "B"},
                       {"target": "apex_archive::apex_temperature", "refId": "C"},
                       {"target": "moved_node::y", "refId": "D"}],
                      max_points=300, rng=rng)

    async def work(session):
        await session.register(old_fields, node_uri("old_node", "get_fields"))
        await session.register(old_data, node_uri("old_node", "get_data"))
        await session.register(broken_fields, node_uri("broken_node", "get_fields"))
        await session.register(broken_data, node_uri("broken_node", "get_data"))
        await session.register(moved_fields, node_uri("moved_node", "get_fields"))
        await session.register(moved_data, node_uri("moved_node", "get_data"))
        first = await threads.deferToThread(post, bridge, "/query", body)
        again = await threads.deferToThread(post, bridge, "/query", body)
        return first, again

    first, again = await with_session(reactor, cfg, work, consumer=False, timeout=90)
    for r in (first, again):
        assert r.status == 200
        old, broken, apex, moved = r.body
        pts = np.array(old["datapoints"])
        assert 0 < len(pts) <= 300 and pts[:, 0].max() == 99.0
        assert [99.0, t[4321] * 1000] in pts.tolist()
        assert broken["datapoints"] == [] and "disk on fire" in broken["meta"]["notices"][0]["text"]
        assert len(apex["datapoints"]) == 24
        # the cached timeline "a" is not in the answer (two timelines could fit): one
        # get_fields refresh finds "b"
        assert moved["datapoints"] == [[1.0, 1500508800000.0], [2.0, 1500508801000.0]]
    assert len(moved_calls) == 2
    # max(intervalMs / 1000, span / maxDataPoints) = max(300, 86400 / 300)
    assert strides == [300.0, 300.0]


@pytest_twisted.ensureDeferred
async def test_field_longer_than_its_timeline_is_drawn_with_a_warning(bridge):
    """An original weather node sends ``apex_windspeed`` with one value more than its shared
    ``minutely`` timeline: the bridge draws the overlapping samples, as the original bridge
    (which zipped times and values) did, with a warning notice; the other field is untouched."""
    cfg = load_config(bridge.path)
    n = 120
    t = (1500508800.0 + 60.0 * np.arange(n)).tolist()
    wind = [float(i % 7) for i in range(n + 1)]
    rad = [float(i) / 10 for i in range(n)]

    def fields(start, end):
        return [{f: {"description": None, "timeline": "minutely", "type": "number", "units": None}
                 for f in ("apex_windspeed", "apex_radiometer")},
                {"minutely": {"interval": 60.0, "field": ["apex_windspeed", "apex_radiometer"]}}]

    def data(field, start, end, min_stride=None):  # sisock 0.2's signature
        return {"data": {"apex_windspeed": wind, "apex_radiometer": rad},
                "timeline": {"minutely": {"t": t, "finalized_until": t[-1]}}}

    body = query_body([{"target": "original_weather::apex_windspeed", "refId": "A"},
                       {"target": "original_weather::apex_radiometer", "refId": "B"}],
                      max_points=1000, rng={"from": "2017-07-20T00:00:00.000Z", "to": "2017-07-20T02:00:00.000Z"})

    async def work(session):
        await session.register(fields, node_uri("original_weather", "get_fields"))
        await session.register(data, node_uri("original_weather", "get_data"))
        return await threads.deferToThread(post, bridge, "/query", body)

    r = await with_session(reactor, cfg, work, consumer=False, timeout=90)
    assert r.status == 200
    windspeed, radiometer = r.body
    assert windspeed["datapoints"] == [[w, ms * 1000] for w, ms in zip(wind, t)]
    assert windspeed["meta"]["notices"] == [{
        "severity": "warning",
        "text": "field 'apex_windspeed' has 121 values but timeline 'minutely' has 120 times; "
                "showing the first 120"}]
    assert radiometer["datapoints"] == [[v, ms * 1000] for v, ms in zip(rad, t)]
    assert "meta" not in radiometer


# -- restarts: the field cache without /search ----------------------------------------------------


def _dataframe_query(bridge: Bridge, target: str) -> dict:
    r = post(bridge, "/query", query_body([{"target": target, "refId": "A",
                                            "payload": {"format": "dataframe"}}]))
    assert r.status == 200
    return r.body[0]


def test_new_field_found_on_a_miss_without_search(bridge):
    """A field the cache has never seen (a file dropped in the node's data directory,
    no hub event) is looked up on the first query that names it: its units, which
    only get_fields carries, are in the answer."""
    lines = ["# APEX dew point (test)", "# halfhourly", "# K", *[
        f"{int(JULY_START) + 1800 * i} {270 + i % 7}" for i in range(48)]]
    (bridge.data_dir / "apex_dewpoint.dat").write_text("\n".join(lines) + "\n")
    frame = _dataframe_query(bridge, "apex_archive::apex_dewpoint")
    assert "meta" not in frame
    assert frame["fields"][1]["config"] == {"unit": "K"}
    assert frame["fields"][1]["values"][:3] == [270.0, 271.0, 272.0]


def _wait_relisted(bridge: Bridge, pattern: str, old: list[int], name: str) -> None:
    def back():
        pids = pids_matching(pattern)
        if not pids or pids == old:
            return False
        r = request(bridge.url + "/")
        return r.status == 200 and name in r.body["nodes"]

    wait_until(back, timeout=60, interval=0.2, what=f"{name} to be restarted and listed")


def test_restarted_node_answers_without_search(bridge):
    # both weather nodes share the weather plugin's process (node groups' default)
    pattern = f"node --group weather --supervised --config {bridge.path}"
    old = pids_matching(pattern)
    assert len(old) == 1
    os.kill(old[0], signal.SIGKILL)
    _wait_relisted(bridge, pattern, old, "apex_archive")
    frame = _dataframe_query(bridge, "apex_archive::apex_humidity")
    assert frame["fields"][1]["config"] == {"unit": "%"} and len(frame["fields"][1]["values"]) == 336


def test_restarted_bridge_answers_without_search(bridge):
    pattern = f"http --supervised --config {bridge.path}"
    old = pids_matching(pattern)
    assert len(old) == 1
    os.kill(old[0], signal.SIGKILL)

    def back():
        pids = pids_matching(pattern)
        if not pids or pids == old:
            return False
        try:
            return request(bridge.url + "/", timeout=5).status == 200
        except OSError:
            return False

    wait_until(back, timeout=60, what="the bridge to be restarted")
    frame = _dataframe_query(bridge, "second_archive::apex_pressure")
    assert frame["fields"][1]["config"] == {"unit": "mBar"} and len(frame["fields"][1]["values"]) == 336


def test_health_503_names_the_missing_hub(bridge):
    pattern = f"hub --supervised --config {bridge.path}"
    old = pids_matching(pattern)
    assert len(old) == 1
    os.kill(old[0], signal.SIGKILL)
    seen: list = []

    def down():
        r = request(bridge.url + "/")
        seen.append(r.status)
        # (a check in flight when the hub died says that instead: 503 as well)
        return r if r.status == 503 and "not running" in r.body["error"]["message"] else None

    r = wait_until(down, timeout=30, interval=0.05, what="health to report the hub missing")
    assert set(seen) <= {200, 503}
    assert r.body == error_object(f"connected to wss://127.0.0.1:{bridge.tls_port}/ws, but the hub is "
                                  "not running", "no_hub")
    wait_until(lambda: request(bridge.url + "/").status == 200, timeout=60, what="the hub to return")
    # nodes re-add themselves when the hub returns
    wait_until(lambda: request(bridge.url + "/").body.get("nodes") == ["apex_archive", "second_archive"],
               timeout=60, what="both nodes listed again")


# -- sisock http alone: auth, exposure, no router -----------------------------------------------


def _http_site(bridge: Bridge, tmp: Path, *, tls_port: int | None = None, http: str = "") -> Path:
    path = tmp / "http.toml"
    path.write_text(f"""\
state_dir = {json.dumps(str(bridge.state_dir))}
log_level = "debug"

[router]
start = false
host = "127.0.0.1"
tls_port = {tls_port or bridge.tls_port}

[hub]
start = false

[http]
port = {free_port()}
{http}
""")
    return path


def _sisock(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "sisock_core.cli", *args], capture_output=True,
                          text=True, timeout=60, env=full)


def test_exposed_bridge_without_auth_is_refused(bridge, tmp_path):
    path = _http_site(bridge, tmp_path, http='listen = "0.0.0.0"')
    out = _sisock("http", "-c", str(path))
    assert out.returncode == 2
    assert "http.listen = '0.0.0.0' exposes the Grafana bridge beyond this machine without " \
           "authentication" in out.stderr
    out = _sisock("up", str(path))
    assert out.returncode == 2 and "cannot start the HTTP bridge" in out.stderr
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    pw.chmod(0o644)
    path = _http_site(bridge, tmp_path, http='username = "grafana"\npassword_file = "pw"')
    out = _sisock("http", "-c", str(path))
    assert out.returncode == 2 and "may be read by group or others" in out.stderr


def test_basic_auth(bridge, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    pw.chmod(0o600)
    path = _http_site(bridge, tmp_path, http='username = "grafana"\npassword_file = "pw"\ngzip = true')
    port = load_config(path).http.port
    proc = SisockProcess(["http", "-c", str(path)], tmp_path / "http.log")
    try:
        proc.wait_ready("http", timeout=60)
        url = f"http://127.0.0.1:{port}"
        r = request(url + "/")
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
        assert r.body == error_object("authentication required", "unauthorized")
        wrong = "Basic " + base64.b64encode(b"grafana:wrong").decode()
        assert request(url + "/search", {"target": ""}, headers={"Authorization": wrong}).status == 401
        # preflights carry no credentials
        assert request(url + "/query", method="OPTIONS", headers={"Origin": "http://g:3000"}).status == 204
        good = {"Authorization": "Basic " + base64.b64encode(b"grafana:correct horse").decode()}
        assert request(url + "/", headers=good).status == 200
        r = request(url + "/query", query_body([{"target": "apex_archive::apex_humidity"}]), headers=good)
        assert r.status == 200 and len(r.body[0]["datapoints"]) == 336
        encoding, body = _gzip_query(url, good)  # this bridge has gzip = true
        assert encoding == "gzip" and len(body[0]["datapoints"]) > 1000
    finally:
        assert proc.stop() == 0, proc.log_tail()


def test_health_503_without_router(bridge, tmp_path):
    dead = free_port()
    path = _http_site(bridge, tmp_path, tls_port=dead)
    port = load_config(path).http.port
    proc = SisockProcess(["http", "-c", str(path)], tmp_path / "http.log")
    try:
        def answer():
            try:
                return request(f"http://127.0.0.1:{port}/", timeout=5)
            except OSError:
                return None

        r = wait_until(answer, timeout=60, what="the bridge to listen")
        assert r.status == 503
        assert r.body == error_object(f"not connected to the router at wss://127.0.0.1:{dead}/ws", "no_router")
        r = request(f"http://127.0.0.1:{port}/query", query_body([{"target": "apex_archive::apex_humidity"}]))
        assert r.status == 200 and r.body[0]["datapoints"] == []
        assert r.body[0]["meta"]["notices"][0]["text"] == f"not connected to the router at wss://127.0.0.1:{dead}/ws"
    finally:
        proc.stop()
