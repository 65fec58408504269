"""The bridge's plain HTTP data API, as pure functions (numpy and orjson, no Twisted).

Used by the quick-look page, Grafana's Infinity data source and scripts::

    GET /api/fields[?node=NAME]
    GET /api/data?target=node::field[&target=...]&from=...&to=...&points=N&format=json|csv
    GET /api/live?target=node::field[&target=...]&since=MS   (Server-Sent Events)

``from``/``to``/``since`` are UNIX milliseconds, ISO-8601 (UTC unless an offset is
given) or Grafana-style ``now``, ``now-6h``, ``now+5m``. ``points`` is the point budget
per series (the plot's width in pixels): each series is reduced at the node to at most
that many samples, keeping each bucket's minimum and maximum, exactly as ``/query``
with ``maxDataPoints``. A bad target never fails the request: its series carries an
``error`` (JSON) or is named in the ``Sisock-Errors`` header (CSV).

Parsing reuses :mod:`sisock_core.bridge.grafana` (targets, intervals, times) and
produces its :class:`~sisock_core.bridge.grafana.QueryRequest`, so the bridge's one
query path (:meth:`BridgeService.query`) answers both APIs.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping, Sequence

import attrs
import numpy as np

from sisock_core.bridge.catalog import FieldCatalog
from sisock_core.bridge.grafana import (
    MAX_POINTS_LIMIT,
    MAX_QUERY_TARGETS,
    MIN_TIME,
    BadRequest,
    QueryRequest,
    Series,
    Target,
    parse_interval,
    parse_target,
    parse_time,
)

#: Answer formats of ``/api/data``.
DATA_FORMATS = ("json", "csv")
#: Point budget per series when ``points`` is not given.
DEFAULT_POINTS = 1000
#: Range when ``from``/``to`` are not given.
DEFAULT_FROM, DEFAULT_TO = "now-1h", "now"

_NOW_RE = re.compile(r"^now\s*(?:([+-])\s*(.*))?$")
_DIGITS_RE = re.compile(r"^[+-]?\d+(\.\d*)?$")

Params = Mapping[str, Sequence[str]]


def params_from_request_args(args: Mapping[bytes, Sequence[bytes]]) -> dict[str, list[str]]:
    """Twisted's ``request.args`` (bytes) as ``{name: [values]}`` of str."""
    return {k.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in vs]
            for k, vs in args.items()}


def one_param(params: Params, name: str, default: str | None = None) -> str | None:
    values = params.get(name) or []
    if len(values) > 1:
        raise BadRequest(f"{name} given {len(values)} times; give it once")
    if not values or values[0].strip() == "":
        return default
    return values[0].strip()


def parse_when(text: str, now: float, where: str) -> float:
    """UNIX seconds from ``text``: epoch milliseconds, ISO-8601, or ``now[+-interval]``."""
    text = text.strip()
    m = _NOW_RE.match(text)
    if m:
        if m.group(1) is None:
            return now
        try:
            delta = parse_interval(m.group(2))
        except BadRequest:
            raise BadRequest(f"{where}: {text[:60]!r} is not 'now', 'now-<interval>' or "
                             "'now+<interval>' (interval like 6h, 15m, 7d)") from None
        return now - delta if m.group(1) == "-" else now + delta
    if _DIGITS_RE.match(text):
        return parse_time(float(text), where)
    return parse_time(text, where)


@attrs.frozen
class DataRequest:
    """A parsed ``/api/data`` (or ``/api/live``) query string."""

    query: QueryRequest
    format: str = "json"


def parse_targets(params: Params) -> list[Target]:
    """The ``target`` parameters; malformed ones become per-target errors."""
    texts = [t for t in params.get("target", []) if t.strip()]
    if not texts:
        raise BadRequest("give at least one target=node::field")
    if len(texts) > MAX_QUERY_TARGETS:
        raise BadRequest(f"target: at most {MAX_QUERY_TARGETS} per request, got {len(texts)}")
    out = []
    for i, text in enumerate(texts):
        t = parse_target({"target": text.strip()}, i)
        if t is not None:
            out.append(t)
    return out


def parse_points(params: Params, default: int = DEFAULT_POINTS) -> int:
    text = one_param(params, "points")
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"points: {text[:40]!r} is not a number") from None
    if not math.isfinite(value) or value < 1:
        raise BadRequest(f"points must be a positive number, got {text[:40]!r}")
    return max(2, int(min(value, MAX_POINTS_LIMIT)))


def parse_data_request(params: Params, now: float) -> DataRequest:
    """An ``/api/data`` query string; raises :class:`BadRequest` (a 400) naming the parameter."""
    fmt = (one_param(params, "format", "json") or "json").lower()
    if fmt not in DATA_FORMATS:
        raise BadRequest(f"format must be one of {', '.join(DATA_FORMATS)}; got {fmt[:20]!r}")
    start = parse_when(one_param(params, "from", DEFAULT_FROM), now, "from")
    end = parse_when(one_param(params, "to", DEFAULT_TO), now, "to")
    if end < start:
        raise BadRequest("to is before from")
    targets = parse_targets(params)
    q = QueryRequest(start=max(start, MIN_TIME), end=max(end, MIN_TIME), targets=targets,
                     max_points=parse_points(params))
    return DataRequest(query=q, format=fmt)


def parse_since(params: Params, now: float) -> float:
    """``since`` of ``/api/live``: samples after it are sent (default: now)."""
    text = one_param(params, "since")
    return now if text is None else max(parse_when(text, now, "since"), MIN_TIME)


# -- answers ------------------------------------------------------------------------------


def _ms(t: np.ndarray) -> np.ndarray:
    return np.asarray(t, dtype=np.float64) * 1000.0


def _values(series: Series) -> Any:
    if series.numeric:
        return np.asarray(series.values, dtype=np.float64)
    return [v if v is None or isinstance(v, (str, int, float, bool)) else str(v)
            for v in series.values.tolist()]


def series_item(series: Series, t_after: float | None = None) -> dict:
    """``{"target", "node", "field", "units", "t": [epoch ms], "v": [values]}`` (+ ``error``).

    ``t_after`` (UNIX s) keeps only later samples (live updates)."""
    t, v = series.t, series.values
    if t_after is not None and t.size:
        keep = np.asarray(t, dtype=np.float64) > t_after
        if not keep.all():
            t, v = t[keep], v[keep]
            series = attrs.evolve(series, t=t, values=v)
    item: dict[str, Any] = {
        "target": series.target.text,
        "node": series.target.node,
        "field": series.target.field,
        "units": series.units,
        "t": _ms(series.t),
        "v": _values(series),
    }
    if series.error:
        item["error"] = series.error
    return item


def data_answer(req: QueryRequest, series: Iterable[Series]) -> dict:
    """The JSON answer of ``/api/data``: the range and budget asked, one item per target."""
    return {
        "from": req.start * 1000.0,
        "to": req.end * 1000.0,
        "points": req.max_points,
        "series": [series_item(s) for s in series],
    }


def iso_times(t: np.ndarray) -> list[str]:
    """``2017-07-20T00:00:00.000Z`` for each UNIX time (seconds), rounded to the millisecond."""
    ms = np.round(np.asarray(t, dtype=np.float64) * 1000.0).astype("int64").astype("datetime64[ms]")
    return [x + "Z" for x in np.datetime_as_string(ms, unit="ms").tolist()]


def iso_ms(t: float) -> str:
    """``2017-07-20T00:00:00.000Z`` from UNIX seconds."""
    return iso_times(np.array([t]))[0]


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    text = str(value)
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def data_csv(series: Sequence[Series]) -> bytes:
    """``time,target,value`` rows (long format: one row per sample, series after series);
    ``time`` is ISO-8601 UTC with milliseconds, empty ``value`` is no data (NaN)."""
    lines = ["time,target,value"]
    for s in series:
        if s.t.size == 0:
            continue
        name = _csv_cell(s.target.text)
        if s.numeric:
            vals = np.asarray(s.values, dtype=np.float64)
            cells = [repr(x) for x in vals.tolist()]
            if not np.isfinite(vals).all():
                for i in np.flatnonzero(~np.isfinite(vals)).tolist():
                    cells[i] = ""
        else:
            cells = [_csv_cell(x) for x in s.values.tolist()]
        lines.extend(f"{when},{name},{cell}" for when, cell in zip(iso_times(s.t), cells))
    return ("\r\n".join(lines) + "\r\n").encode()


def csv_errors(series: Iterable[Series]) -> str | None:
    """The ``Sisock-Errors`` header of a CSV answer: ``target: message; ...`` (None: none)."""
    errors = [f"{s.target.text}: {s.error}" for s in series if s.error]
    if not errors:
        return None
    return "; ".join(errors).replace("\r", " ").replace("\n", " ")[:4000]


def fields_answer(catalog: FieldCatalog, node: str | None = None) -> dict:
    """``/api/fields``: live nodes with their fields (units, descriptions, types)."""
    names = catalog.live_nodes() if node is None else [node]
    nodes = []
    for name in names:
        entry = catalog.nodes.get(name)
        if entry is None:
            nodes.append({"name": name, "description": "", "live": False,
                          "error": f"no data node {name!r}", "fields": []})
            continue
        fields = [
            {"name": f, "target": f"{name}::{f}", "units": info.units,
             "description": info.description, "type": info.type, "timeline": info.timeline}
            for f, info in sorted((entry.fields or {}).items())
        ]
        item: dict[str, Any] = {"name": name, "description": entry.description, "live": entry.live,
                                "fields": fields}
        if entry.error and entry.fields is None:
            item["error"] = entry.error
        nodes.append(item)
    return {"nodes": nodes}


# -- live updates ---------------------------------------------------------------------------


def sse_event(data: bytes, event: str | None = None) -> bytes:
    """One Server-Sent Event carrying ``data`` (one line of JSON)."""
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + data.replace(b"\n", b"\ndata: ") + b"\n\n"


# -- OpenAPI (merged into the bridge's document by sisock_core.bridge.openapi) ---------------------

_TIME_PARAM_TEXT = "UNIX milliseconds, ISO-8601 (UTC unless an offset is given), or now, now-6h, now+5m"
_TARGETS_PARAM = {"name": "target", "in": "query", "required": True, "explode": True,
                  "description": "node::field; repeat for several (a malformed or unknown one gives only "
                                 "its own series an error)",
                  "schema": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_QUERY_TARGETS}}
_POINTS_PARAM = {"name": "points", "in": "query",
                 "description": f"points per series at most (the plot's width in pixels; each bucket keeps "
                                f"its minimum and maximum); default {DEFAULT_POINTS}",
                 "schema": {"type": "integer", "minimum": 1}}


def _time_param(name: str, default: str | None) -> dict:
    return {"name": name, "in": "query",
            "description": _TIME_PARAM_TEXT + (f"; default {default}" if default else ""),
            "schema": {"type": "string"}}


def _answer(content: dict, description: str) -> dict:
    return {"description": description, "content": content}


_JSON_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "405": {"$ref": "#/components/responses/MethodNotAllowed"},
}

#: Schemas of the data API (``components.schemas``).
OPENAPI_SCHEMAS: dict[str, dict] = {
    "ApiSeries": {
        "type": "object",
        "required": ["target", "node", "field", "units", "t", "v"],
        "properties": {
            "target": {"type": "string"},
            "node": {"type": ["string", "null"]},
            "field": {"type": ["string", "null"]},
            "units": {"type": ["string", "null"]},
            "t": {"type": "array", "items": {"type": "number"}, "description": "epoch ms, ascending"},
            "v": {"type": "array", "items": {"type": ["number", "string", "boolean", "null"]},
                  "description": "values; null is no data"},
            "error": {"type": "string", "description": "why this series is empty"},
        },
    },
    "ApiData": {
        "type": "object",
        "required": ["from", "to", "points", "series"],
        "properties": {
            "from": {"type": "number", "description": "epoch ms"},
            "to": {"type": "number", "description": "epoch ms"},
            "points": {"type": "integer"},
            "series": {"type": "array", "items": {"$ref": "#/components/schemas/ApiSeries"}},
        },
    },
    "ApiFields": {
        "type": "object",
        "required": ["nodes"],
        "properties": {"nodes": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "description", "live", "fields"],
            "properties": {
                "name": {"type": "string"}, "description": {"type": "string"}, "live": {"type": "boolean"},
                "error": {"type": "string"},
                "fields": {"type": "array", "items": {
                    "type": "object", "required": ["name", "target"],
                    "properties": {k: {"type": ["string", "null"]} for k in
                                   ("name", "target", "units", "description", "type", "timeline")},
                }},
            },
        }}},
    },
}

#: Paths of the data API and the page (``paths``).
OPENAPI_PATHS: dict[str, dict] = {
    "/api/fields": {"get": {
        "summary": "live data nodes and their fields",
        "description": "units, descriptions, types and timelines of every field of the live nodes",
        "parameters": [{"name": "node", "in": "query", "description": "only this node",
                        "schema": {"type": "string"}}],
        "responses": {"200": _answer({"application/json": {"schema": {"$ref": "#/components/schemas/ApiFields"}}},
                                     "the nodes"), **_JSON_ERRORS},
    }},
    "/api/data": {"get": {
        "summary": "samples of node::field targets (for scripts, the page and Grafana's Infinity)",
        "description": "each series reduced at the node to at most `points` samples, keeping each bucket's "
                       "minimum and maximum (as /query with maxDataPoints); per-target problems are in the "
                       "series' `error` (JSON) or the `Sisock-Errors` header (CSV)",
        "parameters": [_TARGETS_PARAM, _time_param("from", DEFAULT_FROM), _time_param("to", DEFAULT_TO),
                       _POINTS_PARAM,
                       {"name": "format", "in": "query", "schema": {"type": "string", "enum": list(DATA_FORMATS)},
                        "description": "json (default) or csv: time,target,value rows, time ISO-8601 UTC"}],
        "responses": {"200": _answer({
            "application/json": {"schema": {"$ref": "#/components/schemas/ApiData"}},
            "text/csv": {"schema": {"type": "string"}},
        }, "the series"), **_JSON_ERRORS},
    }},
    "/api/live": {"get": {
        "summary": "new samples as Server-Sent Events",
        "description": "catches up from `since`, then forwards the samples the targets' nodes push on their "
                       ".live topics (nodes that do not push are polled); each event's data is "
                       '{"series": [ApiSeries, ...]} with only new samples',
        "parameters": [_TARGETS_PARAM, _time_param("since", "now"), _POINTS_PARAM],
        "responses": {"200": _answer({"text/event-stream": {"schema": {"type": "string"}}}, "the stream"),
                      **_JSON_ERRORS,
                      "503": _answer({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                                     "too many live streams open")},
    }},
}
