"""Unit tests of the bridge's pure parts: Grafana request parsing, answer building,
encoding, the field catalog, basic auth and CORS. No Twisted, no network."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sisock_core.bridge import grafana as g
from sisock_core.bridge import variables as v
from sisock_core.bridge.auth import (
    BridgeSecurityError,
    Credentials,
    bridge_credentials,
    cors_headers,
    load_credentials,
)
from sisock_core.bridge.catalog import CatalogError, FieldCatalog, parse_get_fields
from sisock_core.config import load_config_text

# The /query body of grafana.md (SimpleJSON), with an APEX target in July 2017.
SIMPLEJSON_QUERY = {
    "range": {"from": "2017-07-20T00:00:00.000Z", "to": "2017-07-20T06:00:00.000Z",
              "raw": {"from": "now-3h", "to": "now"}},
    "interval": "5s", "intervalMs": 5000, "maxDataPoints": 1920,
    "targets": [{"target": "apex_archive::apex_radiometer", "refId": "A", "type": "timeserie"}],
    "adhocFilters": [],
}
T0 = 1500508800.0  # 2017-07-20T00:00:00Z


# -- intervals and times ------------------------------------------------------------------


@pytest.mark.parametrize("text,seconds", [
    ("1y", 365 * 86400.0), ("5s", 5.0), ("100ms", 0.1), ("1m", 60.0), ("2h", 7200.0),
    ("1d", 86400.0), ("1w", 604800.0), ("1M", 30 * 86400.0), ("0.5s", 0.5), (" 30s ", 30.0),
])
def test_parse_interval(text, seconds):
    assert g.parse_interval(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "5x", "1 year", "-5s", "5ss", "1e3s"])
def test_parse_interval_rejects(text):
    with pytest.raises(g.BadRequest, match="interval"):
        g.parse_interval(text)


def test_parse_interval_not_a_string():
    with pytest.raises(g.BadRequest, match="got a number"):
        g.parse_interval(5)


@pytest.mark.parametrize("text,expected", [
    ("2017-07-20T00:00:00.000Z", T0),
    ("2017-07-20T00:00:00.836Z", T0 + 0.836),
    ("2017-07-20T00:00:00Z", T0),
    ("2017-07-20T02:00:00.5+02:00", T0 + 0.5),
    ("2017-07-20T00:00:00", T0),  # no zone: UTC
    (T0 * 1000 + 123, T0 + 0.123),  # epoch milliseconds
])
def test_parse_time(text, expected):
    assert g.parse_time(text, "range.from") == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("value,msg", [
    ("yesterday", "range.from: 'yesterday' is not an ISO-8601 time"),
    ("", "range.from: '' is not an ISO-8601 time"),
    (None, "range.from must be an ISO-8601 time, got null"),
    (True, "range.from must be an ISO-8601 time, got a boolean"),
    ([1], "range.from must be an ISO-8601 time, got an array"),
])
def test_parse_time_errors_name_the_key(value, msg):
    with pytest.raises(g.BadRequest) as err:
        g.parse_time(value, "range.from")
    assert str(err.value) == msg


def test_parse_range_uses_from_to_not_raw():
    assert g.parse_range(SIMPLEJSON_QUERY) == (T0, T0 + 6 * 3600)


@pytest.mark.parametrize("body,msg", [
    ({}, "missing key: range"),
    ({"range": "x"}, "range must be a JSON object, got a string"),
    ({"range": {"from": "2017-07-20T00:00:00Z"}}, "missing key: range.to"),
    ({"range": {"from": "2017-07-21T00:00:00Z", "to": "2017-07-20T00:00:00Z"}},
     "range.to is before range.from"),
])
def test_parse_range_errors(body, msg):
    with pytest.raises(g.BadRequest) as err:
        g.parse_range(body)
    assert str(err.value) == msg


# -- /query parsing -------------------------------------------------------------------------


def test_parse_query_simplejson():
    q = g.parse_query(SIMPLEJSON_QUERY)
    assert (q.start, q.end, q.max_points, q.interval) == (T0, T0 + 21600, 1920, 5.0)
    assert q.targets == [g.Target(text="apex_archive::apex_radiometer", ref_id="A",
                                  format="timeseries", node="apex_archive", field="apex_radiometer")]
    # max(intervalMs / 1000, span / maxDataPoints)
    assert q.min_stride == pytest.approx(max(5.0, 21600 / 1920))


def test_parse_query_simpod_payload_and_filters():
    body = {
        "panelId": 1, "range": SIMPLEJSON_QUERY["range"], "interval": "30s", "maxDataPoints": 550,
        "targets": [
            {"target": "apex_archive::apex_humidity", "refId": "A", "payload": {"format": "dataframe"}},
            {"target": "apex_archive::apex_pressure", "refId": "B", "payload": {"format": "table"}},
            {"target": "other::apex_pressure", "refId": "C", "payload": {}},
            {"refId": "D"},  # no metric chosen yet
            {"target": "apex_archive::apex_windspeed", "refId": "E", "hide": True},
        ],
        "filters": [{"key": "node", "operator": "=", "value": "apex_archive"}],
    }
    q = g.resolve_query(g.parse_query(body), ["apex_archive", "other"], lambda node: None)
    assert [(t.ref_id, t.format) for t in q.targets] == [("A", "dataframe"), ("B", "table")]
    assert q.interval == 30.0 and q.max_points == 550
    assert q.by_node() == {"apex_archive": ["apex_humidity", "apex_pressure"]}


def test_adhoc_filter_operators():
    def kept(op, value, **extra):
        body = dict(SIMPLEJSON_QUERY, targets=[{"target": "a::x"}, {"target": "b::y"}],
                    adhocFilters=[{"key": "node", "operator": op, "value": value, **extra}])
        q = g.resolve_query(g.parse_query(body), ["a", "b"], lambda node: None)
        return [t.text for t in q.targets], q.notices

    assert kept("=", "a") == (["a::x"], [])
    assert kept("!=", "a") == (["b::y"], [])
    assert kept("=~", "^b") == (["b::y"], [])
    assert kept("!~", "^b") == (["a::x"], [])
    # Grafana 11's one of / not one of carry "values" (and the first as "value")
    assert kept("=|", "a", values=["a", "c"]) == (["a::x"], [])
    assert kept("!=|", "a", values=["a", "b"]) == ([], [])
    assert kept("=|", "b") == (["b::y"], [])  # no values: the value alone
    # what cannot be applied filters nothing, and says so
    targets, notices = kept("<", "a")
    assert targets == ["a::x", "b::y"]
    assert notices == ["ad hoc filter 'node < a' ignored: operator '<' is not supported here "
                       "(use =, !=, =~, !~, =|, !=|)"]
    targets, notices = kept("=~", "(")
    assert targets == ["a::x", "b::y"] and "'(' is not a regular expression" in notices[0]
    targets, notices = kept("!~", "a{4294967296}")  # too large for re: OverflowError
    assert targets == ["a::x", "b::y"] and "is not a regular expression" in notices[0]


# -- template variables in Grafana's regex format ----------------------------------------------


@pytest.mark.parametrize("text,choices", [
    ("apex_radiometer", ["apex_radiometer"]),
    (r"a\.b", ["a.b"]),
    (r"c\(1\)\/x", ["c(1)/x"]),
    ("(apex_radiometer|apex_windspeed)", ["apex_radiometer", "apex_windspeed"]),
    (r"(a\.b|a\|b|a)", ["a.b", "a|b", "a"]),
    ("(x|x)", ["x"]),
    ("a-b c", ["a-b c"]),  # Grafana does not escape - or space
])
def test_name_choices_of_interpolated_variables(text, choices):
    assert v.name_choices(text) == choices


@pytest.mark.parametrize("text", [".*", "apex_.*ure", "(a|b.*)", "a.b", "x{2}"])
def test_name_choices_patterns(text):
    assert v.name_choices(text).pattern == text


@pytest.mark.parametrize("text", ["(", "a\\", "[z-a]", "x" * 600 + ".*", "a{4294967296}",
                                  "x{99999999999999999999}"])
def test_name_choices_not_a_pattern_is_a_name(text):
    assert v.name_choices(text) == [text]


@settings(max_examples=200, deadline=None)
@given(names=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4, unique=True))
def test_grafana_regex_format_round_trips(names):
    """Whatever Grafana's regex format makes of one or several values reads back as them."""
    from .grafana11 import TemplateSrv

    text = TemplateSrv().format(names if len(names) > 1 else names[0], "regex")
    assert v.name_choices(text) == names


def test_resolve_targets():
    fields = {"n": ["a.b", "a_b", "x"], "m": ["x", "y"]}
    live = ["m", "n", "gone"]

    def resolve(*texts):
        targets = [g.parse_target({"target": t, "refId": "A"}, 0) for t in texts]
        return [(t.text, t.error) for t in g.resolve_targets(targets, live, fields.get)]

    assert resolve("n::x") == [("n::x", None)]
    assert resolve(r"n::a\.b", "n::(a\\.b|x)") == [("n::a.b", None), ("n::a.b", None), ("n::x", None)]
    assert resolve("n::.*") == [("n::a.b", None), ("n::a_b", None), ("n::x", None)]
    assert resolve("(m|n)::x") == [("m::x", None), ("n::x", None)]
    assert resolve("(m|n)::(y|a_b)") == [("m::y", None), ("n::a_b", None)]  # combinations that exist
    # a node whose fields are unknown keeps the name (its own error shows on the panel)
    assert resolve(".*::y") == [("m::y", None), ("gone::y", None)]
    assert resolve("gone::.*") == [("gone::.*", None)]
    assert resolve("n::z.*") == [("n::z.*", "no field of node 'n' matches 'z.*'")]
    assert resolve("(m|n)::z") == [("(m|n)::z", "no field of nodes m, n matches 'z'")]
    assert resolve("q.*::x") == [("q.*::x", "no live node matches 'q.*'")]
    # the nodes whose known fields a pattern missed are named, so the bridge reloads them
    missed = lambda text: g.resolve_targets([g.parse_target({"target": text}, 0)], live, fields.get)[0].unmatched_on  # noqa: E731
    assert missed("n::z.*") == ("n",)
    assert missed("(m|n)::z") == ("m", "n")
    assert missed("n::x") == ()


def test_text_matcher_reads_regex_format():
    targets = ["n::a.b", "n::a_b", "m::x", "lab::X"]
    assert g.filter_targets(targets, r"a\.b", 10) == ["n::a.b"]
    assert g.filter_targets(targets, "(m|lab)::", 10) == ["lab::X", "m::x"]
    assert g.filter_targets(targets, "a.b", 10) == ["n::a.b", "n::a_b"]
    assert g.filter_targets(targets, "x", 10) == ["lab::X", "m::x"]
    assert g.filter_targets(targets, "(", 10) == []
    assert g.filter_targets(targets, "x{4294967296}", 10) == []
    assert g.filter_targets(targets, ["a_b", "::x"], 10) == ["lab::X", "m::x", "n::a_b"]


def test_tag_values_keep_what_the_other_filters_keep():
    targets = ["m::x", "m::y", "n::x", "n::z"]
    req = g.parse_tag_values({"key": "field", "filters": [
        {"key": "node", "operator": "=|", "value": "n", "values": ["n"]},
        {"key": "field", "operator": "=", "value": "ignored: the key asked for"}]})
    assert g.tag_values(req, targets, 10) == ["x", "z"]
    assert g.tag_values(g.parse_tag_values({"key": "node"}), targets, 1) == ["m"]
    assert g.tag_values(g.parse_tag_values({"key": "site"}), targets, 10) == []


def test_error_object():
    assert g.error_object("no", "bad_request") == {"error": {"code": "bad_request", "message": "no"},
                                                   "code": "bad_request", "message": "no"}
    assert json.loads(g.error_body("gone", 404)) == g.error_object("gone", "not_found")


@pytest.mark.parametrize("item,error", [
    ({"target": "no_separator"}, "target 'no_separator' is not 'node::field'"),
    ({"target": "::field"}, "target '::field' has no node name before '::'"),
    ({"target": "node::"}, "target 'node::' has no field name after '::'"),
    ({"target": 5}, "targets[0].target must be a string, got a number"),
    ("apex::x", "targets[0] must be an object, got a string"),
])
def test_malformed_targets_are_per_target_errors(item, error):
    q = g.parse_query(dict(SIMPLEJSON_QUERY, targets=[item, {"target": "n::f"}]))
    assert q.targets[0].error == error
    assert q.targets[1].error is None and q.by_node() == {"n": ["f"]}


def test_target_field_may_contain_separator():
    assert g.split_target("node::a::b") == ("node", "a::b")


@pytest.mark.parametrize("body,msg", [
    ([], "request body must be a JSON object, got an array"),
    ({"range": SIMPLEJSON_QUERY["range"]}, "missing key: targets"),
    (dict(SIMPLEJSON_QUERY, targets={}), "targets must be an array, got an object"),
    (dict(SIMPLEJSON_QUERY, maxDataPoints="many"), "maxDataPoints must be a number, got a string"),
    (dict(SIMPLEJSON_QUERY, intervalMs=None, interval="1 fortnight"),
     "interval '1 fortnight' is not a Grafana interval (a number and one of ms, s, m, h, d, w, M, y)"),
    (dict(SIMPLEJSON_QUERY, adhocFilters="x"), "adhocFilters must be an array, got a string"),
    (dict(SIMPLEJSON_QUERY, targets=[{"target": "n::f"}] * (g.MAX_QUERY_TARGETS + 1)),
     f"targets: at most {g.MAX_QUERY_TARGETS} per query, got {g.MAX_QUERY_TARGETS + 1}"),
])
def test_parse_query_bad_requests(body, msg):
    with pytest.raises(g.BadRequest) as err:
        g.parse_query(body)
    assert str(err.value) == msg


def test_interval_string_used_without_interval_ms():
    q = g.parse_query(dict(SIMPLEJSON_QUERY, intervalMs=None, interval="1y", maxDataPoints=None))
    assert q.interval == 365 * 86400.0 and q.max_points is None and q.min_stride == 365 * 86400.0


def test_decode_body():
    assert g.decode_body(b"") == {} and g.decode_body(b"  \n") == {}
    assert g.decode_body(b'{"a": 1}') == {"a": 1}
    with pytest.raises(g.BadRequest, match="request body is not valid JSON"):
        g.decode_body(b"{nope")


# -- answers --------------------------------------------------------------------------------


def _answer(n=5, nan_at=None):
    t = (T0 + np.arange(n) * 60.0).tolist()
    v = [float(i) for i in range(n)]
    if nan_at is not None:
        v[nan_at] = None  # msgpack nil, as a node sends a missing value
    return {"data": {"f": v, "g": [1.0]}, "timeline": {"minutely": {"t": t, "finalized_until": t[-1]},
                                                       "other": {"t": [T0], "finalized_until": T0}}}


TARGET = g.Target(text="n::f", ref_id="A", node="n", field="f")


def test_timeserie_shape_and_nan_as_null():
    s = g.series_from_answer(_answer(nan_at=2), TARGET, "minutely", units="mm")
    item = g.timeserie(s)
    assert isinstance(item["datapoints"], np.ndarray) and item["datapoints"].shape == (5, 2)
    decoded = json.loads(g.encode([item]))
    assert decoded == [{"target": "n::f", "refId": "A", "datapoints": [
        [0.0, T0 * 1000], [1.0, T0 * 1000 + 60000], [None, T0 * 1000 + 120000],
        [3.0, T0 * 1000 + 180000], [4.0, T0 * 1000 + 240000]]}]
    assert b"NaN" not in g.encode([item])


def test_table_and_dataframe_shapes():
    s = g.series_from_answer(_answer(3), TARGET, "minutely", units="mm")
    tab = json.loads(g.encode(g.table(s)))
    assert tab == {"type": "table", "refId": "A",
                   "columns": [{"text": "Time", "type": "time"}, {"text": "n::f", "type": "number"}],
                   "rows": [[T0 * 1000, 0.0], [T0 * 1000 + 60000, 1.0], [T0 * 1000 + 120000, 2.0]]}
    frame = json.loads(g.encode(g.dataframe(s)))
    assert frame == {"name": "n::f", "refId": "A", "fields": [
        {"name": "time", "type": "time", "values": [T0 * 1000, T0 * 1000 + 60000, T0 * 1000 + 120000]},
        {"name": "n::f", "type": "number", "values": [0.0, 1.0, 2.0], "config": {"unit": "mm"}}]}


def test_string_values():
    ans = {"data": {"f": ["on", "off"]}, "timeline": {"x": {"t": [T0, T0 + 1]}}}
    s = g.series_from_answer(ans, TARGET, "x", field_type="string")
    assert not s.numeric
    assert json.loads(g.encode(g.timeserie(s)))["datapoints"] == [["on", T0 * 1000], ["off", T0 * 1000 + 1000]]
    assert json.loads(g.encode(g.table(s)))["columns"][1] == {"text": "n::f", "type": "string"}
    assert json.loads(g.encode(g.dataframe(s)))["fields"][1]["values"] == ["on", "off"]


def test_error_series_carries_grafana_notice():
    item = g.query_answer([g.Series(TARGET, error="node 'n' is not serving")])[0]
    assert json.loads(g.encode(item)) == {
        "target": "n::f", "refId": "A", "datapoints": [],
        "meta": {"notices": [{"severity": "error", "text": "node 'n' is not serving"}]}}


def test_series_timeline_lookup():
    ans = _answer(4)
    # no hint: the only timeline with 4 samples
    assert g.series_from_answer(ans, TARGET, None).t.size == 4
    # so3g answers name their fields per timeline
    so3g = {"data": {"f": [1.0, 2.0], "g": [3.0, 4.0]},
            "timeline": {"group0": {"t": [1.0, 2.0], "fields": ["g"]},
                         "group1": {"t": [5.0, 6.0], "fields": ["f"]}}}
    assert g.series_from_answer(so3g, TARGET, None).t.tolist() == [5.0, 6.0]
    # ambiguous without a hint: the caller must refresh its field list
    with pytest.raises(g.AnswerError, match="no timeline"):
        g.series_from_answer({"data": {"f": [1.0]}, "timeline": {"a": {"t": [1.0]}, "b": {"t": [2.0]}}},
                             TARGET, None)
    # a field longer (or shorter) than its timeline: the overlap, with a warning
    longer = g.series_from_answer({"data": {"f": [1.0, 2, 3]}, "timeline": {"a": {"t": [1.0, 2]}}}, TARGET, "a")
    assert (longer.t.tolist(), longer.values.tolist()) == ([1.0, 2.0], [1.0, 2.0])
    assert longer.warnings == ("field 'f' has 3 values but timeline 'a' has 2 times; showing the first 2",)
    shorter = g.series_from_answer({"data": {"f": [1.0]}, "timeline": {"a": {"t": [1.0, 2]}}}, TARGET, "a")
    assert (shorter.t.tolist(), shorter.values.tolist(), shorter.error) == ([1.0], [1.0], None)
    assert json.loads(g.encode(g.timeserie(longer)))["meta"] == {"notices": [
        {"severity": "warning", "text": longer.warnings[0]}]}
    with pytest.raises(g.AnswerError, match="1 values but timeline 'a' has no times"):
        g.series_from_answer({"data": {"f": [1.0]}, "timeline": {"a": {"t": []}}}, TARGET, "a")
    with pytest.raises(g.AnswerError, match="pipeline allowance"):
        g.series_from_answer(False, TARGET, None)
    # missing or empty field: an empty series, no error
    assert g.series_from_answer({"data": {}, "timeline": {}}, TARGET, None).t.size == 0


def test_guard_decimates_an_old_nodes_oversized_answer_keeping_peaks():
    n = 10_000
    v = np.sin(np.arange(n) / 300.0)
    v[7777] = 50.0  # a one-sample spike a stride would drop
    v[1234] = -50.0
    ans = {"data": {"f": v.tolist()}, "timeline": {"x": {"t": (T0 + np.arange(n)).tolist()}}}
    s = g.series_from_answer(ans, TARGET, "x", max_points=500)
    assert s.t.size <= 500
    assert s.values.max() == 50.0 and s.values.min() == -50.0
    assert np.all(np.diff(s.t) > 0)


def test_encode_numpy_without_python_lists():
    pts = np.array([[np.nan, 1.0], [np.inf, 2.0]])
    assert g.encode({"d": pts}) == b'{"d":[[null,1.0],[null,2.0]]}'


# -- listings ----------------------------------------------------------------------------


def test_search_filter_and_cap():
    targets = [f"n::f{i}" for i in range(30)] + ["m::Radiometer"]
    assert g.filter_targets(targets, "radio", 100) == ["m::Radiometer"]
    assert g.filter_targets(targets, "", 5) == sorted(targets)[:5]
    assert g.search_text({"target": "x"}) == "x" and g.search_text({}) == ""
    with pytest.raises(g.BadRequest):
        g.search_text({"target": 1})


def test_metrics_and_payload_options():
    ans = g.metrics_answer(["a::x", "a::y", "b::z"], "b::z", limit=1)
    assert [m["value"] for m in ans] == ["a::x", "b::z"]  # the current metric stays listed
    assert ans[0]["payloads"][0]["name"] == "format" and ans[0]["label"] == "a::x"
    assert g.metrics_request({}) is None and g.metrics_request({"metric": "a::x", "payload": {}}) == "a::x"
    assert [o["value"] for o in g.payload_options({"metric": "a::x", "payload": {}, "name": "format"})] == \
        ["timeseries", "table", "dataframe"]
    assert g.payload_options({"metric": "a::x", "payload": {}, "name": "other"}) == []


def test_variable_payloads():
    assert g.parse_variable({"payload": {"target": "rad"}}) == g.VariableRequest(text="rad")
    assert g.parse_variable({"payload": "nodes"}).list == "nodes"
    assert g.parse_variable({"payload": {"list": "fields", "node": "a"}}) == \
        g.VariableRequest(list="fields", node=("a",))
    with pytest.raises(g.BadRequest, match="payload.list must be one of"):
        g.parse_variable({"payload": {"list": "everything"}})
    with pytest.raises(g.BadRequest, match="payload.node must be a string or an array of strings, got a number"):
        g.parse_variable({"payload": {"list": "fields", "node": 5}})
    # the JSON plugin's parser reads __text/__value; other readers text/value
    assert g.variable_answer(["a"]) == [{"__text": "a", "__value": "a", "text": "a", "value": "a"}]


def test_tags_and_annotations():
    assert g.tag_keys_answer() == [{"type": "string", "text": "node"}, {"type": "string", "text": "field"}]
    assert g.parse_tag_values({"key": "node"}) == g.TagValuesRequest("node")
    with pytest.raises(g.BadRequest, match="missing key: key"):
        g.parse_tag_values({})
    body = {"range": SIMPLEJSON_QUERY["range"],
            "annotation": {"name": "a", "query": "n::f", "enable": True, "iconColor": "red"}}
    req = g.parse_annotations(body)
    assert req.target.node == "n"
    s = g.series_from_answer(_answer(2), req.target, "minutely")
    assert g.annotations_answer(req, s) == [
        {"annotation": body["annotation"], "time": int(T0 * 1000), "title": "n::f", "tags": ["n", "f"],
         "text": "0.0"},
        {"annotation": body["annotation"], "time": int(T0 * 1000) + 60000, "title": "n::f",
         "tags": ["n", "f"], "text": "1.0"}]
    with pytest.raises(g.BadRequest, match="missing key: annotation"):
        g.parse_annotations({"range": SIMPLEJSON_QUERY["range"]})


# -- the field catalog ---------------------------------------------------------------------

FIELDS = [
    {"apex_humidity": {"description": "RH", "timeline": "hourly", "type": "number", "units": "%"},
     "old_style": {"description": None, "type": "number", "units": None}},
    {"hourly": {"interval": 3600, "field": ["apex_humidity", "old_style"]}},
]


def test_catalog_from_hub_events():
    cat = FieldCatalog()
    assert cat.set_listing([{"name": "apex", "description": "d"}]) == ["apex"]
    cat.set_fields("apex", FIELDS, now=1.0)
    assert cat.field("apex", "apex_humidity").units == "%"
    assert cat.field("apex", "old_style").timeline == "hourly"  # from the timelines table
    assert cat.targets() == ["apex::apex_humidity", "apex::old_style"]
    assert cat.knows("apex", ["apex_humidity"]) and not cat.knows("apex", ["nope"])
    cat.node_subtracted({"name": "apex", "description": "d"})
    assert cat.targets() == [] and cat.field("apex", "apex_humidity") is not None  # kept for its return
    assert cat.node_added({"name": "apex", "description": "d"}) == "apex"
    assert cat.live_nodes() == ["apex"] and cat.field_names() == ["apex_humidity", "old_style"]
    assert cat.node_added("junk") is None
    cat.set_error("ghost", "not serving")  # junk node names are not remembered
    assert "ghost" not in cat.nodes
    cat.set_fields("direct", FIELDS, now=2.0)  # answered, but not listed by the hub
    assert cat.field("direct", "apex_humidity") is not None and "direct" not in cat.live_nodes()


@pytest.mark.parametrize("answer", [None, False, [], [{}], "x", [1, 2]])
def test_catalog_rejects_malformed_get_fields(answer):
    with pytest.raises(CatalogError):
        parse_get_fields(answer)


# -- auth and CORS --------------------------------------------------------------------------


def _cfg(tmp_path, http_toml=""):
    return load_config_text(f"[http]\n{http_toml}\n", str(tmp_path / "site.toml"))


def _basic(user, password):
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def test_credentials_check():
    c = Credentials("grafana", "s3cret")
    assert c.check(_basic("grafana", "s3cret"))
    assert not c.check(_basic("grafana", "wrong")) and not c.check(_basic("other", "s3cret"))
    assert not c.check(None) and not c.check(b"Bearer x") and not c.check(b"Basic !!!")
    assert "s3cret" not in repr(c)


def test_credentials_from_env_and_file(tmp_path):
    assert load_credentials(_cfg(tmp_path), env={}) is None
    cfg = _cfg(tmp_path, 'username = "grafana"')
    assert load_credentials(cfg, env={"SISOCK_HTTP_PASSWORD": "pw"}) == Credentials("grafana", "pw")
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    pw.chmod(0o600)
    cfg = _cfg(tmp_path, 'username = "grafana"\npassword_file = "pw"')
    assert load_credentials(cfg, env={}) == Credentials("grafana", "from-file")
    pw.chmod(0o644)
    with pytest.raises(BridgeSecurityError, match="may be read by group or others"):
        load_credentials(cfg, env={})
    with pytest.raises(BridgeSecurityError, match="no password is set"):
        load_credentials(_cfg(tmp_path, 'username = "grafana"'), env={})
    with pytest.raises(BridgeSecurityError, match="no http.username"):
        load_credentials(_cfg(tmp_path), env={"SISOCK_HTTP_PASSWORD": "pw"})


def test_non_loopback_listen_requires_auth(tmp_path):
    cfg = _cfg(tmp_path, 'listen = "0.0.0.0"')
    with pytest.raises(BridgeSecurityError, match="without authentication"):
        bridge_credentials(cfg, env={})
    assert bridge_credentials(cfg, env={"SISOCK_HTTP_USER": "u", "SISOCK_HTTP_PASSWORD": "p"}) == \
        Credentials("u", "p")
    assert bridge_credentials(_cfg(tmp_path, 'listen = "::1"'), env={}) is None


def test_cors_headers():
    pre = cors_headers("http://grafana:3000", ("*",), preflight=True)
    assert pre["Access-Control-Allow-Origin"] == "http://grafana:3000"
    assert pre["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    assert "x-grafana-device-id" in pre["Access-Control-Allow-Headers"]
    assert "authorization" in pre["Access-Control-Allow-Headers"]
    assert cors_headers("http://evil", ("http://grafana:3000",), preflight=True) == {}
    assert cors_headers(None, ("*",), preflight=False) == {}
    listed = cors_headers("http://grafana:3000", ("http://grafana:3000",), preflight=False)
    assert listed["Access-Control-Allow-Credentials"] == "true"


# -- anything in, only BadRequest / AnswerError out ----------------------------------------


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=15)
_keys = st.sampled_from(["range", "targets", "from", "to", "target", "maxDataPoints", "intervalMs",
                         "interval", "adhocFilters", "filters", "key", "operator", "value", "payload",
                         "annotation", "query", "name", "data", "timeline", "t", "f", "list", "node",
                         "values"])
_shaped = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**13) | st.floats() |
    st.sampled_from(["2017-07-20T00:00:00.000Z", "n::f", "f", "1y", "=~", "(", "table", "dataframe",
                     "=|", "!=|", "<", "n::(f|g)", "(n|a\\.b)::.*", "n::\\", "(::)"]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(_keys, c, max_size=4), max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(body=_json | _shaped)
def test_parsers_raise_only_bad_request(body):
    for parse in (g.parse_query, g.parse_annotations, g.parse_variable, g.search_text,
                  g.metrics_request, g.payload_options, g.parse_tag_values, g.tag_keys_request):
        try:
            parsed = parse(body)
        except g.BadRequest as exc:
            assert str(exc)
            continue
        if parse is g.parse_query:  # expanding names never raises either
            g.resolve_query(parsed, ["n", "a.b"], lambda node: ["f", "g"] if node == "n" else None)


@settings(max_examples=300, deadline=None)
@given(answer=_json | _shaped, hint=st.none() | st.sampled_from(["t", "tl", "f"]),
       max_points=st.none() | st.integers(2, 5), kind=st.none() | st.sampled_from(["string", "number"]))
def test_answer_extraction_raises_only_answer_error(answer, hint, max_points, kind):
    try:
        s = g.series_from_answer(answer, TARGET, hint, field_type=kind, max_points=max_points)
    except g.AnswerError as exc:
        assert str(exc)
        return
    for build in (g.timeserie, g.table, g.dataframe):
        json.loads(g.encode(build(s)))


def test_query_budget_capped():
    req = g.QueryRequest(start=1.0, end=2.0, targets=[], max_points=100)
    assert req.capped(100) is req
    lowered = req.capped(10)
    assert lowered.max_points == 10 and lowered.notices == [
        "100 points per series asked; at most 10 are served ([http] max_points)"]
    unbounded = g.QueryRequest(start=1.0, end=2.0, targets=[])
    assert unbounded.capped(10) is unbounded  # no budget asked: the nodes' answer bound applies
