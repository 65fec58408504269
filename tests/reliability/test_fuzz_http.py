"""Hostile HTTP input against the running bridge, driven by its OpenAPI description.

The bridge serves ``/openapi.json`` (:mod:`sisock_core.bridge.openapi`). Request bodies
are generated with Hypothesis from that document's request schemas (a small generator
for the JSON Schema subset the document uses: schemathesis cannot be installed next to
crossbar, which pins ``idna<2.6`` while schemathesis needs ``anyio``/``idna>=2.8``, and
hypothesis-jsonschema does not work with this Hypothesis). Then they are broken on
purpose: a value replaced by one of another type, NaN and infinities (not JSON),
huge and negative numbers, unicode (emoji, right-to-left, NUL, lone surrogates),
long strings, deep nesting, huge time ranges, and a million targets in one request.

Every answer must be a clear one: 200 matching the document's response schema, or a
4xx with ``{"error": {"code", "message"}, "code", "message"}``; never a 5xx, and the bridge process stays the
same process (no crash, no restart) with its memory bounded.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sisock_core.bridge.app import MAX_BODY
from sisock_core.bridge.grafana import MAX_QUERY_TARGETS

from .support import basic, http, one_pid, query_body, record, rss_mib

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

REAL_TARGETS = ["apex_archive::apex_humidity", "apex_archive::apex_radiometer", "apex_archive::apex_windspeed",
                "apex_archive::apex_temperature", "lakeshore::channel_01_t", "apex_archive::nope",
                "ghost_node::x", "apex_archive::", "::", "no separator"]

#: Memory the bridge may gain over the whole module (MiB): caches of a few small nodes.
RSS_BOUND_MIB = 60.0
STATS: dict[str, Any] = {"requests": 0, "status": {}}


@pytest.fixture(scope="module")
def bridge(shared_site):
    pid = one_pid(shared_site.path, "http")
    before = rss_mib(pid)
    doc = http(shared_site.url + "/openapi.json", headers=basic()).json
    yield shared_site, doc, pid, before
    after = rss_mib(pid)
    record("HTTP fuzz", f"{STATS['requests']} requests, statuses {dict(sorted(STATS['status'].items()))}, "
                        f"no 5xx; bridge RSS {before:.0f} -> {after:.0f} MiB, same process")


def send(site, path: str, body: Any = None, *, raw: bytes | None = None, method: str | None = None,
         headers: dict | None = None) -> Any:
    r = http(site.url + path, body, raw=raw, method=method, headers={**basic(), **(headers or {})})
    STATS["requests"] += 1
    STATS["status"][r.status] = STATS["status"].get(r.status, 0) + 1
    assert r.status < 500, (path, r.status, r.raw[:500])
    assert r.headers.get("content-type") == "application/json", (path, r.status, r.headers)
    if r.status >= 400:
        assert isinstance(r.message, str) and r.message.strip(), (path, r.status, r.raw[:300])
    return r


# -- the document --------------------------------------------------------------------------------


def test_openapi_document_describes_every_route(bridge):
    site, doc, _pid, _ = bridge
    from sisock_core.bridge.app import GrafanaAPI

    assert doc["openapi"].startswith("3.1")
    app = GrafanaAPI(None, site.cfg)
    served = {path for _method, path in app.routes()}
    assert set(doc["paths"]) == served
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.Draft7Validator.check_schema(schema)
    # without credentials it is refused like everything else
    assert http(site.url + "/openapi.json").status == 401


# -- a generator for the document's schemas ----------------------------------------------------


def _iso(when: dt.datetime) -> str:
    return f"{when.year:04d}-" + when.strftime("%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


_DATE_TIMES = st.one_of(
    st.datetimes(dt.datetime(2017, 7, 10), dt.datetime(2017, 7, 30)).map(_iso),
    st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31)).map(_iso),
    st.just(_iso(dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))),
)


def from_schema(schema: dict, doc: dict, where: str = "") -> st.SearchStrategy:
    """Values valid against ``schema`` (a JSON Schema of the OpenAPI document)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return from_schema(doc["components"]["schemas"][name], doc, name)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, doc, where) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}, doc, where) for k in kind])
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        strategies = {}
        for key, sub in props.items():
            if where == "Target" and key == "target":
                strategies[key] = st.sampled_from(REAL_TARGETS) | st.text(max_size=30)
            elif where == "PayloadOptionsRequest" and key == "name":
                strategies[key] = st.just("format") | st.text(max_size=10)
            else:
                strategies[key] = from_schema(sub, doc, key)
        if not props:
            return st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=3)
        return st.fixed_dictionaries({k: v for k, v in strategies.items() if k in required},
                                     optional={k: v for k, v in strategies.items() if k not in required})
    if kind == "array":
        return st.lists(from_schema(schema["items"], doc, where), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 6), 6))
    if kind == "string":
        if schema.get("format") == "date-time":
            return _DATE_TIMES
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) < 30)
        return st.text(max_size=20)
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=10**7)
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return st.floats(min_value=low, max_value=1e9, allow_nan=False, allow_infinity=False,
                         exclude_min="exclusiveMinimum" in schema)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    raise AssertionError(f"no generator for schema {schema}")


def _post_paths(doc: dict) -> list[str]:
    return sorted(p for p, ops in doc["paths"].items() if "post" in ops)


def _request_schema(doc: dict, path: str) -> dict:
    return doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]


def _response_validator(doc: dict, path: str) -> jsonschema.Draft202012Validator:
    schema = doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


_DOC_CACHE: dict = {}


def _doc_strategies(doc: dict) -> st.SearchStrategy:
    if "valid" not in _DOC_CACHE:
        _DOC_CACHE["valid"] = st.one_of([
            st.tuples(st.just(p), from_schema(_request_schema(doc, p), doc)) for p in _post_paths(doc)
        ])
    return _DOC_CACHE["valid"]


# -- schema-valid bodies ---------------------------------------------------------------------------


def _fuzz(examples: int) -> Any:
    """Hypothesis settings of these tests: ``examples`` bodies, reproducible, no deadline."""
    return settings(max_examples=examples, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@_fuzz(250)
@given(data=st.data())
def test_schema_valid_bodies_get_200_matching_the_document(bridge, data):
    site, doc, _, _ = bridge
    path, body = data.draw(_doc_strategies(doc))
    r = send(site, path, body)
    if r.status == 200:
        errors = [e.message for e in _response_validator(doc, path).iter_errors(r.json)]
        assert errors == [], (path, body, errors[:3])
    else:
        # what a schema cannot say: range.to before range.from
        assert r.status == 400 and r.message == "range.to is before range.from", (path, body, r.message)


# -- broken bodies -------------------------------------------------------------------------------

_HOSTILE = st.one_of(
    st.sampled_from([float("nan"), float("inf"), float("-inf")]),  # not JSON: a 400
    st.integers(-10**30, 10**30), st.sampled_from([-1, 0, -10**18, 10**18, 2**63, -2**63 - 1]),
    st.floats(allow_nan=False), st.sampled_from([1e308, -1e308, 5e-324]),
    st.text(st.characters(), max_size=40),  # any code point, lone surrogates included
    st.sampled_from(["\u0000", "💥" * 50, "\u202eevil", "ﷺ" * 10, "a::b::c", "apex_archive::\u0000",
                     "x" * 100_000, "now-6h", "1y", "-1s", "0ms", "1e309s"]),
    st.none(), st.booleans(), st.just([]), st.just({}), st.just([[[[[]]]]]),
    st.lists(st.integers(), max_size=5), st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
)


def _paths_in(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths_in(v, prefix + (k,)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths_in(v, prefix + (i,)))
    return out


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    out = list(value)
    out[head] = _replace(out[head], rest, new)
    return out


def _encode(body: Any) -> bytes:
    """JSON text as a hostile client writes it: NaN/Infinity literals, lone surrogates escaped."""
    return json.dumps(body, allow_nan=True).encode()


@_fuzz(400)
@given(data=st.data())
def test_broken_bodies_get_a_clear_4xx_or_200(bridge, data):
    site, doc, _, _ = bridge
    path, body = data.draw(_doc_strategies(doc))
    spots = _paths_in(body)
    for _ in range(data.draw(st.integers(1, 3))):
        spot = data.draw(st.sampled_from(spots))
        body = _replace(body, spot, data.draw(_HOSTILE))
        spots = _paths_in(body)
    r = send(site, path, raw=_encode(body))
    if r.status == 200:
        errors = [e.message for e in _response_validator(doc, path).iter_errors(r.json)]
        assert errors == [], (path, body, errors[:3])
        assert b"NaN" not in r.raw and b"Infinity" not in r.raw
    else:
        assert r.status in (400, 413), (path, r.status, r.message)


@pytest.mark.parametrize("raw, why", [
    (b"{" * 100_000, "deeply nested"),
    (b"[" * 5000 + b"]" * 5000, "nested arrays"),
    (b'{"range": {"from": NaN, "to": Infinity}, "targets": []}', "NaN literals"),
    (b'{"target": "\\ud800"}', "lone surrogate"),
    (b"\xff\xfe\x00{}", "not UTF-8"),
    (b'{"a": 1, "a": 2, ' + b'"k": 0, ' * 50_000 + b'"z": 0}', "many keys"),
    (json.dumps({"target": "é" * 300_000}).encode(), "1 MB of unicode"),
])
def test_malformed_json_gets_400(bridge, raw, why):
    site, _doc, _, _ = bridge
    for path in ("/query", "/search", "/annotations", "/metrics", "/variable", "/tag-values"):
        r = send(site, path, raw=raw)
        assert r.status in (200, 400, 413), (why, path, r.status)


def test_huge_ranges_negative_and_absurd_numbers(bridge):
    site, _doc, _, _ = bridge
    targets = ["apex_archive::apex_radiometer", "apex_archive::apex_humidity", "lakeshore::channel_01_t"]
    whole = {"from": "0001-01-01T00:00:00.000Z", "to": "9999-12-31T23:59:59.999Z"}
    for max_points, interval_ms in [(10**12, 1), (1, 10**15), (-5, -5), (0, 0), (2**63, 1e-300)]:
        r = send(site, "/query", query_body(targets, rng=whole, max_points=max_points) | {"intervalMs": interval_ms})
        assert r.status == 200, r.message
        n = [len(s["datapoints"]) for s in r.json]
        cap = max(2, max_points) if max_points > 0 else None
        assert all(k <= cap for k in n) if cap else n[1] == 14 * 24, (max_points, n)
        assert n[0] > 0 and n[1] > 0
    # numbers as times are epoch milliseconds; a negative one is before 1970 (clamped)
    r = send(site, "/query", query_body(targets[:1], rng={"from": -1e15, "to": 1e15}))
    assert r.status == 200
    r = send(site, "/query", query_body(targets[:1], rng={"from": 1e300, "to": 1e308}))
    assert r.status in (200, 400)


def test_a_million_field_names(bridge):
    """One request naming 10^6 targets: refused as too large, fast, with bounded memory;
    the most targets that fit in the body limit: refused as too many."""
    site, _doc, pid, _ = bridge
    before = rss_mib(pid)
    million = query_body([f"apex_archive::field_{i}" for i in range(10**6)])
    raw = json.dumps(million).encode()
    assert len(raw) > MAX_BODY
    t0 = time.monotonic()
    r = send(site, "/query", raw=raw)
    took = time.monotonic() - t0
    assert r.status == 413 and "larger than" in r.message
    # as many short targets as fit under the limit (about 40 000): too many targets
    many = query_body([f"n::f{i}" for i in range(40_000)])
    many["targets"] = [{"target": t["target"]} for t in many["targets"]]
    raw = json.dumps(many, separators=(",", ":")).encode()
    assert len(raw) < MAX_BODY, len(raw)
    r = send(site, "/query", raw=raw)
    assert r.status == 400 and f"at most {MAX_QUERY_TARGETS}" in r.message, r.message
    # a million field names in the other endpoints' strings
    r = send(site, "/search", {"target": "::".join(f"f{i}" for i in range(10**5))})
    assert r.status == 200 and r.json == []
    r = send(site, "/variable", {"payload": {"list": "fields", "node": "x" * 500_000}})
    assert r.status in (200, 400, 413)
    after = rss_mib(pid)
    record("HTTP 10^6 targets", f"{len(json.dumps(million)) / 1e6:.0f} MB body: 413 in {took:.2f} s; "
                                f"40 000 targets in 1 MiB: 400; bridge RSS {before:.0f} -> {after:.0f} MiB")
    assert after - before < RSS_BOUND_MIB


@pytest.mark.parametrize("method, path", [
    ("GET", "/query"), ("PUT", "/query"), ("DELETE", "/"), ("PATCH", "/search"), ("POST", "/"),
    ("POST", "/openapi.json"), ("GET", "/nope"), ("POST", "/../../etc/passwd"), ("POST", "/query/../query"),
    ("GET", "/" + "a" * 8000), ("POST", "/%00"), ("TRACE", "/"), ("HEAD", "/query"),
])
def test_other_methods_and_paths(bridge, method, path):
    site, _doc, _, _ = bridge
    r = http(site.url + path, None if method in ("GET", "HEAD", "DELETE", "TRACE") else {}, method=method,
             headers=basic())
    assert r.status in (200, 400, 404, 405, 414), (method, path, r.status)
    if method != "HEAD" and r.status >= 400 and r.raw:
        assert r.headers.get("content-type") == "application/json" or r.status == 414


def test_bridge_alive_same_process_and_memory_bounded(bridge):
    site, _doc, pid, before = bridge
    assert one_pid(site.path, "http") == pid
    r = http(site.url + "/", headers=basic())
    assert r.status == 200 and r.json["nodes"] == ["apex_archive", "lakeshore"]
    r = send(site, "/query", query_body(["apex_archive::apex_humidity"]))
    assert len(r.json[0]["datapoints"]) == 14 * 24
    after = rss_mib(pid)
    assert after - before < RSS_BOUND_MIB, (before, after)
    http_lines = [line for line in site.proc.log_text().splitlines() if "[http]" in line]
    assert not [line for line in http_lines if "Traceback" in line or "error answering" in line]
