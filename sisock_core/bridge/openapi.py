"""An OpenAPI 3.1 description of the Grafana bridge, served at ``GET /openapi.json``.

It documents every route of :mod:`sisock_core.bridge.app` with the request bodies
Grafana's two JSON data-source plugins send (``shared/docs/grafana.md``) and the
answers the bridge gives. The schemas use only the JSON Schema keywords common to
drafts 7 and 2020-12, so generic tools (``jsonschema``, ``hypothesis-jsonschema``,
API fuzzers) read them; sisock's reliability tests fuzz the running bridge from it.

Request schemas describe what the bridge *understands*: extra keys are allowed (Grafana
sends many), anything that does not match is answered with a 400 and an error body.
Per-target problems (unknown node, malformed ``node::field``) are not errors: that
series comes back empty with ``meta.notices``.
"""

from __future__ import annotations

from typing import Any

from sisock_core.bridge.grafana import FORMATS, MAX_POINTS_LIMIT, MAX_QUERY_TARGETS, TAG_KEYS

_REF = "#/components/schemas/"


def _ref(name: str) -> dict:
    return {"$ref": _REF + name}


def _array(items: dict, **kw: Any) -> dict:
    return {"type": "array", "items": items, **kw}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "405": {"$ref": "#/components/responses/MethodNotAllowed"},
    "413": {"$ref": "#/components/responses/TooLarge"},
}

_NOTICES = {
    "type": "object",
    "description": "per-target notices shown on the panel: an error (the series is then empty) "
                   "or a warning (data served with a caveat)",
    "properties": {"notices": _array({
        "type": "object", "required": ["severity", "text"],
        "properties": {"severity": {"type": "string"}, "text": {"type": "string"}},
    })},
}

_SCHEMAS: dict[str, dict] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["message"],
            "properties": {"message": {"type": "string", "minLength": 1}},
        }},
    },
    "Time": {
        "type": "string",
        "format": "date-time",
        "description": "UTC ISO-8601, e.g. 2017-07-20T00:00:00.000Z (a number is read as epoch ms)",
    },
    "Range": {
        "type": "object",
        "required": ["from", "to"],
        "properties": {
            "from": _ref("Time"),
            "to": _ref("Time"),
            "raw": {"type": "object", "description": "ignored (Grafana's relative form)"},
        },
    },
    "Target": {
        "type": "object",
        "description": "one query of a panel; an empty or absent target is skipped",
        "properties": {
            "target": {"type": "string", "description": "node::field, e.g. apex_archive::apex_radiometer"},
            "refId": {"type": "string"},
            "type": {"type": "string", "enum": ["timeserie", "table"]},
            "payload": {"type": "object", "properties": {"format": {"type": "string", "enum": list(FORMATS)}}},
            "hide": {"type": "boolean"},
        },
    },
    "AdhocFilter": {
        "type": "object",
        "required": ["key", "value"],
        "properties": {
            "key": {"type": "string", "enum": list(TAG_KEYS)},
            "operator": {"type": "string", "enum": ["=", "!=", "=~", "!~"]},
            "value": {"type": "string"},
        },
    },
    "QueryRequest": {
        "type": "object",
        "required": ["range", "targets"],
        "properties": {
            "range": _ref("Range"),
            "targets": _array(_ref("Target"), maxItems=MAX_QUERY_TARGETS),
            "maxDataPoints": {"type": "integer", "minimum": 1,
                              "description": f"points per series at most (taken as {MAX_POINTS_LIMIT} "
                                             "when larger)"},
            "intervalMs": {"type": "number", "exclusiveMinimum": 0},
            "interval": {"type": "string", "pattern": r"^\s*(\d+(\.\d*)?|\.\d+)\s*(ms|s|m|h|d|w|M|y)\s*$"},
            "adhocFilters": _array(_ref("AdhocFilter")),
            "filters": _array(_ref("AdhocFilter")),
        },
    },
    "Value": {"type": ["number", "string", "boolean", "null"]},
    "TimeSerie": {
        "type": "object",
        "required": ["target", "datapoints"],
        "properties": {
            "target": {"type": "string"},
            "refId": {"type": "string"},
            "datapoints": _array(_array(_ref("Value"), minItems=2, maxItems=2),
                                 description="[value, epoch ms]; NaN is null"),
            "meta": _NOTICES,
        },
    },
    "Table": {
        "type": "object",
        "required": ["type", "columns", "rows"],
        "properties": {
            "type": {"type": "string", "enum": ["table"]},
            "refId": {"type": "string"},
            "columns": _array({"type": "object", "required": ["text", "type"],
                               "properties": {"text": {"type": "string"}, "type": {"type": "string"}}}),
            "rows": _array(_array(_ref("Value"), minItems=2, maxItems=2)),
            "meta": _NOTICES,
        },
    },
    "DataFrame": {
        "type": "object",
        "required": ["name", "fields"],
        "properties": {
            "name": {"type": "string"},
            "refId": {"type": "string"},
            "fields": _array({
                "type": "object", "required": ["name", "values"],
                "properties": {"name": {"type": "string"}, "type": {"type": "string"},
                               "values": _array(_ref("Value")), "config": {"type": "object"}},
            }, minItems=2, maxItems=2),
            "meta": _NOTICES,
        },
    },
    "QueryResponse": _array({"anyOf": [_ref("TimeSerie"), _ref("Table"), _ref("DataFrame")]}),
    "Health": {
        "type": "object",
        "required": ["status", "message", "nodes"],
        "properties": {"status": {"type": "string", "enum": ["ok"]}, "message": {"type": "string"},
                       "nodes": _array({"type": "string"})},
    },
    "SearchRequest": {
        "type": "object",
        "properties": {"target": {"type": ["string", "null"], "description": "the typed text"}},
    },
    "AnnotationsRequest": {
        "type": "object",
        "required": ["range", "annotation"],
        "properties": {
            "range": _ref("Range"),
            "annotation": {"type": "object", "properties": {
                "name": {"type": "string"},
                "query": {"type": "string", "description": "node::field whose samples become annotations"},
            }},
        },
    },
    "Annotation": {
        "type": "object",
        "required": ["annotation", "time", "title", "tags", "text"],
        "properties": {"annotation": {"type": "object"}, "time": {"type": "integer"},
                       "title": {"type": "string"}, "tags": _array({"type": "string"}),
                       "text": {"type": "string"}},
    },
    "TagValuesRequest": {
        "type": "object",
        "required": ["key"],
        "properties": {"key": {"type": "string", "description": "node or field (others list nothing)"}},
    },
    "MetricsRequest": {
        "type": "object",
        "properties": {"metric": {"type": "string"}, "payload": {"type": "object"}},
    },
    "Metric": {
        "type": "object",
        "required": ["label", "value", "payloads"],
        "properties": {"label": {"type": "string"}, "value": {"type": "string"},
                       "payloads": _array({"type": "object"})},
    },
    "PayloadOptionsRequest": {
        "type": "object",
        "required": ["name"],
        "properties": {"metric": {"type": "string"}, "payload": {"type": "object"},
                       "name": {"type": "string"}},
    },
    "VariableRequest": {
        "type": "object",
        "properties": {
            "payload": {"anyOf": [
                {"type": "string", "description": "text filter; 'nodes' lists the live nodes"},
                {"type": "object", "properties": {
                    "list": {"type": "string", "enum": ["targets", "nodes", "fields"]},
                    "target": {"type": "string"},
                    "node": {"type": "string"},
                }},
            ]},
            "range": {"type": "object"},
        },
    },
}


def _post(summary: str, request: str, response: dict, description: str) -> dict:
    return {"post": {
        "summary": summary,
        "description": description,
        "requestBody": {"required": False, "content": {"application/json": {"schema": _ref(request)}}},
        "responses": {"200": _json(response, "the answer"), **_ERRORS},
    }}


def openapi_document(server_url: str | None = None) -> dict:
    """The OpenAPI 3.1 document of the bridge (``server_url``: where it listens)."""
    from sisock_core import __version__

    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "sisock Grafana bridge",
            "version": __version__,
            "description": (
                "Serves sisock data nodes to Grafana's SimpleJSON and JSON (simPod) data-source "
                "plugins. Targets are node::field. Every answer is application/json; errors are "
                '{"error": {"message": ...}}. Basic auth is required when configured '
                "(always when listening beyond loopback); OPTIONS preflights need none."
            ),
        },
        "security": [{}, {"basic": []}],
        "paths": {
            "/": {"get": {
                "summary": "health",
                "description": "200 when joined to the router and the hub answers; 503 says what is missing",
                "responses": {
                    "200": _json(_ref("Health"), "connected"),
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "503": _json(_ref("Error"), "not connected to the router, or no hub"),
                },
            }},
            "/openapi.json": {"get": {
                "summary": "this document",
                "responses": {"200": _json({"type": "object"}, "the OpenAPI document"),
                              "401": {"$ref": "#/components/responses/Unauthorized"}},
            }},
            "/search": _post("SimpleJSON metric list", "SearchRequest", _array({"type": "string"}),
                             "node::field targets containing the typed text, sorted, capped"),
            "/query": _post("time series, tables, data frames", "QueryRequest", _ref("QueryResponse"),
                            "one item per target, in request order, each with at most maxDataPoints "
                            "points (min and max per bucket kept)"),
            "/annotations": _post("SimpleJSON annotations", "AnnotationsRequest", _array(_ref("Annotation")),
                                  "one annotation per sample of the query's node::field"),
            "/tag-keys": _post("ad hoc filter keys", "MetricsRequest",
                               _array({"type": "object", "required": ["type", "text"],
                                       "properties": {"type": {"type": "string"}, "text": {"type": "string"}}}),
                               "node and field"),
            "/tag-values": _post("values of an ad hoc filter key", "TagValuesRequest",
                                 _array({"type": "object", "required": ["text"],
                                         "properties": {"text": {"type": "string"}}}),
                                 "live nodes, or field names"),
            "/metrics": _post("JSON data source metric list", "MetricsRequest", _array(_ref("Metric")),
                              "every target with its format payload"),
            "/metric-payload-options": _post(
                "options of a metric payload", "PayloadOptionsRequest",
                _array({"type": "object", "required": ["label", "value"],
                        "properties": {"label": {"type": "string"}, "value": {"type": "string"}}}),
                "the format payload's options; [] for other names"),
            "/variable": _post("JSON data source template variables", "VariableRequest",
                               _array({"type": "object", "required": ["__text", "__value"],
                                       "properties": {"__text": {"type": "string"},
                                                      "__value": {"type": "string"}}}),
                               "targets, live nodes or one node's fields"),
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "responses": {
                "BadRequest": _json(_ref("Error"), "malformed body or missing key"),
                "Unauthorized": _json(_ref("Error"), "basic auth required or wrong"),
                "MethodNotAllowed": _json(_ref("Error"), "use POST (GET for / and /openapi.json)"),
                "TooLarge": _json(_ref("Error"), "request body over the limit"),
            },
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
