"""The bridge's OpenAPI 3.1 document, served at ``GET /openapi.json``, built from a registry.

Each route is an :class:`Operation` (method, path, request and answer schemas) added
with :func:`add_operation`; named schemas go in with :func:`add_schemas`. The Grafana
routes are registered here, their schemas built from the same definitions the parsers
and answer builders of :mod:`sisock_core.bridge.grafana` use (filter operators and
keys, formats, variable lists, error codes, limits). Another bridge module adds its
own routes the same way at import::

    from sisock_core.bridge import openapi
    openapi.add_schemas({"Thing": {...}})
    openapi.add_operation(openapi.Operation("get", "/api/things", "list things",
                                            answer=openapi.ref("Thing")))

The schemas use only the JSON Schema keywords common to drafts 7 and 2020-12
(``type``, ``properties``, ``required``, ``items``, ``enum``, ``anyOf``, ``$ref``,
``pattern``, ``minimum``...), so generic tools read them; the reliability tests fuzz the
running bridge from it and check every route's real answers against it.

Request schemas describe what the bridge *understands*: extra keys are allowed (Grafana
sends many); a body that does not match is answered with a 400 and an error body.
Per-target problems (unknown node, malformed ``node::field``) and filters the bridge
cannot apply are not errors: they come back as ``meta.notices`` on the series.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs

from sisock_core.bridge.grafana import (
    ERROR_CODES,
    FILTER_OPERATORS,
    FORMATS,
    MAX_POINTS_LIMIT,
    MAX_QUERY_TARGETS,
    TAG_KEYS,
    UNSUPPORTED_FILTER_OPERATORS,
    VARIABLE_LISTS,
)

_REF = "#/components/schemas/"

#: HTTP statuses with a shared response definition (``components.responses``).
_SHARED_ERRORS = {400: "BadRequest", 401: "Unauthorized", 405: "MethodNotAllowed", 413: "TooLarge"}


def ref(name: str) -> dict:
    """``{"$ref": "#/components/schemas/<name>"}``."""
    return {"$ref": _REF + name}


def array(items: dict, **kw: Any) -> dict:
    return {"type": "array", "items": items, **kw}


def _json(schema: dict, description: str, content_type: str = "application/json") -> dict:
    return {"description": description, "content": {content_type: {"schema": schema}}}


@attrs.frozen
class Operation:
    """One route of the bridge: what it takes and what it answers.

    ``request`` is the JSON schema of a POST body (None: no body); ``answer`` the schema
    of the 200 answer, of type ``content_type``; ``errors`` the statuses it may answer
    with an error body (see :func:`~sisock_core.bridge.grafana.error_object`), each
    either shared (400, 401, 405, 413) or described in ``error_descriptions``."""

    method: str
    path: str
    summary: str
    description: str = ""
    request: dict | None = None
    answer: dict | None = None
    content_type: str = "application/json"
    errors: tuple[int, ...] = (400, 401, 405, 413)
    error_descriptions: Mapping[int, str] = attrs.field(factory=dict)
    parameters: tuple[dict, ...] = ()

    def to_openapi(self) -> dict:
        op: dict[str, Any] = {"summary": self.summary}
        if self.description:
            op["description"] = self.description
        if self.parameters:
            op["parameters"] = list(self.parameters)
        if self.request is not None:
            op["requestBody"] = {"required": False, "content": {"application/json": {"schema": self.request}}}
        responses: dict[str, Any] = {
            "200": _json(self.answer if self.answer is not None else {}, "the answer", self.content_type)
        }
        for status in self.errors:
            if status in self.error_descriptions or status not in _SHARED_ERRORS:
                text = self.error_descriptions.get(status, ERROR_CODES.get(status, "error"))
                responses[str(status)] = _json(ref("Error"), text)
            else:
                responses[str(status)] = {"$ref": f"#/components/responses/{_SHARED_ERRORS[status]}"}
        return op | {"responses": responses}


#: Named schemas of ``components.schemas``.
SCHEMAS: dict[str, dict] = {}
#: Registered routes, by ``(method, path)``, in registration order.
OPERATIONS: dict[tuple[str, str], Operation] = {}


def add_schemas(schemas: Mapping[str, dict]) -> None:
    """Add named schemas; a name already taken by a different schema is an error."""
    for name, schema in schemas.items():
        if name in SCHEMAS and SCHEMAS[name] != schema:
            raise ValueError(f"OpenAPI schema {name!r} is already defined differently")
        SCHEMAS[name] = schema


def add_operation(op: Operation) -> None:
    """Register a route (replacing one with the same method and path)."""
    OPERATIONS[(op.method.lower(), op.path)] = attrs.evolve(op, method=op.method.lower())


def paths() -> set[str]:
    """Every registered path."""
    return {path for _m, path in OPERATIONS}


def openapi_document(server_url: str | None = None) -> dict:
    """The OpenAPI 3.1 document of the bridge (``server_url``: where it listens)."""
    from sisock_core import __version__

    doc_paths: dict[str, dict] = {}
    for (method, path), op in OPERATIONS.items():
        doc_paths.setdefault(path, {})[method] = op.to_openapi()
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "sisock Grafana bridge",
            "version": __version__,
            "description": (
                "Serves sisock data nodes to Grafana's SimpleJSON and JSON (simPod) data-source "
                "plugins. Targets are node::field; template variables may make either side "
                "(a|b), an escaped name or a pattern. Every answer is application/json unless "
                'said otherwise; errors are {"error": {"code", "message"}, "code", "message"}. '
                "Basic auth is required when configured (always when listening beyond loopback); "
                "OPTIONS preflights need none."
            ),
        },
        "security": [{}, {"basic": []}],
        "paths": doc_paths,
        "components": {
            "schemas": dict(SCHEMAS),
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "responses": {
                "BadRequest": _json(ref("Error"), "malformed body or missing key"),
                "Unauthorized": _json(ref("Error"), "basic auth required or wrong"),
                "MethodNotAllowed": _json(ref("Error"), "method not allowed on this path"),
                "TooLarge": _json(ref("Error"), "request body over the limit"),
            },
        },
    }
    from sisock_core.bridge import api  # the plain data API's routes (bridge/api.py)

    doc["paths"].update(api.OPENAPI_PATHS)
    doc["components"]["schemas"].update(api.OPENAPI_SCHEMAS)
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


# -- the Grafana routes ---------------------------------------------------------------------

_NOTICES = {
    "type": "object",
    "description": "per-target notices shown on the panel: an error (the series is then empty), "
                   "warnings (data served with a caveat, an ad hoc filter ignored)",
    "properties": {"notices": array({
        "type": "object", "required": ["severity", "text"],
        "properties": {"severity": {"type": "string", "enum": ["error", "warning"]},
                       "text": {"type": "string"}},
    })},
}


def _series_answer(properties: dict) -> dict:
    """The schema of one series of a ``/query`` answer: ``properties`` (all required) plus
    the query's ``refId`` and the ``meta`` notices, both optional."""
    return {"type": "object", "required": list(properties),
            "properties": {**properties, "refId": {"type": "string"}, "meta": _NOTICES}}

_TEXT_OR_TEXTS = {"anyOf": [{"type": "string"}, array({"type": "string"})]}

add_schemas({
    "Error": {
        "type": "object",
        "required": ["error", "code", "message"],
        "description": "every non-200 answer: the object for clients, top-level code and message "
                       "for Grafana (panel error text, the Test button)",
        "properties": {
            "error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string", "minLength": 1},
                               "message": {"type": "string", "minLength": 1}},
            },
            "code": {"type": "string", "minLength": 1,
                     "description": f"one of {', '.join(sorted(set(ERROR_CODES.values())))}; "
                                    "health: no_router, no_hub"},
            "message": {"type": "string", "minLength": 1},
        },
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
            "from": ref("Time"),
            "to": ref("Time"),
            "raw": {"type": "object", "description": "ignored (Grafana's relative form)"},
        },
    },
    "Target": {
        "type": "object",
        "description": "one query of a panel; an empty or absent target is skipped",
        "properties": {
            "target": {"type": "string",
                       "description": "node::field, e.g. apex_archive::apex_radiometer; either side "
                                      "may be a template variable in Grafana's regex format: "
                                      "(a|b) or an escaped name a\\.b (one series per name), or a "
                                      "pattern such as .* (one series per matching live name)"},
            "refId": {"type": "string"},
            "type": {"type": "string", "description": "SimpleJSON: timeserie or table"},
            "payload": {"type": "object", "properties": {"format": {"type": "string", "enum": list(FORMATS)}}},
            "hide": {"type": "boolean"},
        },
    },
    "AdhocFilter": {
        "type": "object",
        "required": ["key", "value"],
        "properties": {
            "key": {"type": "string",
                    "description": f"{' or '.join(TAG_KEYS)}; other keys are ignored with a notice"},
            "operator": {"type": "string",
                         "description": f"{', '.join(FILTER_OPERATORS)} (default =); others "
                                        f"({', '.join(UNSUPPORTED_FILTER_OPERATORS)}, or a =~ value that "
                                        "is not a regular expression) are ignored with a notice"},
            "value": {"type": "string"},
            "values": array({"type": "string"}, description="the values of =| and !=|"),
        },
    },
    "QueryRequest": {
        "type": "object",
        "required": ["range", "targets"],
        "properties": {
            "range": ref("Range"),
            "targets": array(ref("Target"), maxItems=MAX_QUERY_TARGETS),
            "maxDataPoints": {"type": "integer", "minimum": 1,
                              "description": f"points per series at most (taken as {MAX_POINTS_LIMIT} "
                                             "when larger)"},
            "intervalMs": {"type": "number", "exclusiveMinimum": 0},
            "interval": {"type": "string", "pattern": r"^\s*(\d+(\.\d*)?|\.\d+)\s*(ms|s|m|h|d|w|M|y)\s*$"},
            "adhocFilters": array(ref("AdhocFilter")),
            "filters": array(ref("AdhocFilter")),
        },
    },
    "Value": {"type": ["number", "string", "boolean", "null"]},
    "TimeSerie": _series_answer({
        "target": {"type": "string"},
        "datapoints": array(array(ref("Value"), minItems=2, maxItems=2),
                            description="[value, epoch ms]; NaN is null"),
    }),
    "Table": _series_answer({
        "type": {"type": "string", "enum": ["table"]},
        "columns": array({"type": "object", "required": ["text", "type"],
                          "properties": {"text": {"type": "string"}, "type": {"type": "string"}}}),
        "rows": array(array(ref("Value"), minItems=2, maxItems=2)),
    }),
    "DataFrame": _series_answer({
        "name": {"type": "string"},
        "fields": array({
            "type": "object", "required": ["name", "values"],
            "properties": {"name": {"type": "string"}, "type": {"type": "string"},
                           "values": array(ref("Value")), "config": {"type": "object"}},
        }, minItems=2, maxItems=2),
    }),
    "QueryResponse": array({"anyOf": [ref("TimeSerie"), ref("Table"), ref("DataFrame")]}),
    "Health": {
        "type": "object",
        "required": ["status", "message", "nodes"],
        "properties": {"status": {"type": "string", "enum": ["ok"]}, "message": {"type": "string"},
                       "nodes": array({"type": "string"})},
    },
    "SearchRequest": {
        "type": "object",
        "properties": {"target": {"type": ["string", "null"],
                                  "description": "the typed text (Grafana's regex format)"}},
    },
    "AnnotationsRequest": {
        "type": "object",
        "required": ["range", "annotation"],
        "properties": {
            "range": ref("Range"),
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
                       "title": {"type": "string"}, "tags": array({"type": "string"}),
                       "text": {"type": "string"}},
    },
    "TagKeysRequest": {
        "type": "object",
        "description": "{} (SimpleJSON) or what Grafana 11 sends: the dashboard's filters, time range "
                       "and queries (the keys do not depend on them)",
        "properties": {"filters": array(ref("AdhocFilter")), "timeRange": {"type": "object"},
                       "queries": array({"type": "object"})},
    },
    "TagValuesRequest": {
        "type": "object",
        "required": ["key"],
        "properties": {
            "key": {"type": "string", "description": f"{' or '.join(TAG_KEYS)} (others list nothing)"},
            "filters": array(ref("AdhocFilter"), description="the other filters: values are listed "
                                                               "among the node::field pairs they keep"),
            "timeRange": {"type": "object"},
            "queries": array({"type": "object"}),
        },
    },
    "MetricsRequest": {
        "type": "object",
        "properties": {"metric": {"type": "string"}, "payload": {"type": "object"}},
    },
    "Metric": {
        "type": "object",
        "required": ["label", "value", "payloads"],
        "properties": {"label": {"type": "string"}, "value": {"type": "string"},
                       "payloads": array({"type": "object"})},
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
                {"type": "string", "description": "text filter (Grafana's regex format); 'nodes' "
                                                  "lists the live nodes"},
                {"type": "object", "description": "raw JSON mode; a multi-value variable makes node "
                                                  "or target an array", "properties": {
                    "list": {"type": "string", "enum": list(VARIABLE_LISTS)},
                    "target": _TEXT_OR_TEXTS,
                    "node": _TEXT_OR_TEXTS,
                }},
            ]},
            "range": {"type": "object"},
        },
    },
    "VariableValue": {
        "type": "object",
        "required": ["__text", "__value", "text", "value"],
        "properties": {"__text": {"type": "string"}, "__value": {"type": "string"},
                       "text": {"type": "string"}, "value": {"type": "string"}},
    },
})


def _post(path: str, summary: str, request: str, answer: dict, description: str) -> None:
    add_operation(Operation("post", path, summary, description, request=ref(request), answer=answer))


add_operation(Operation(
    "get", "/", "health",
    "200 when joined to the router and the hub answers; 503 says what is missing (code no_router or no_hub)",
    answer=ref("Health"), errors=(401, 503),
    error_descriptions={503: "not connected to the router, or no hub"},
))
add_operation(Operation("get", "/openapi.json", "this document", answer={"type": "object"}, errors=(401,)))
_post("/search", "SimpleJSON metric list", "SearchRequest", array({"type": "string"}),
      "node::field targets matching the typed text, sorted, capped")
_post("/query", "time series, tables, data frames", "QueryRequest", ref("QueryResponse"),
      "one item per target and matched field, in request order, each with at most maxDataPoints "
      "points (min and max per bucket kept)")
_post("/annotations", "SimpleJSON annotations", "AnnotationsRequest", array(ref("Annotation")),
      "one annotation per sample of the query's node::field")
_post("/tag-keys", "ad hoc filter keys", "TagKeysRequest",
      array({"type": "object", "required": ["type", "text"],
             "properties": {"type": {"type": "string"}, "text": {"type": "string", "enum": list(TAG_KEYS)}}}),
      " and ".join(TAG_KEYS))
_post("/tag-values", "values of an ad hoc filter key", "TagValuesRequest",
      array({"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}),
      "live nodes, or field names")
_post("/metrics", "JSON data source metric list", "MetricsRequest", array(ref("Metric")),
      "every target with its format payload")
_post("/metric-payload-options", "options of a metric payload", "PayloadOptionsRequest",
      array({"type": "object", "required": ["label", "value"],
             "properties": {"label": {"type": "string"}, "value": {"type": "string"}}}),
      "the format payload's options; [] for other names")
_post("/variable", "JSON data source template variables", "VariableRequest", array(ref("VariableValue")),
      "targets, live nodes or fields of one or more nodes")
