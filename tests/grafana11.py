"""Grafana 11 and the JSON data source plugin (simPod ``GrafanaJsonDatasource``), as far
as the bridge sees them: the request bodies they build and how they show an error.

From the plugin's source: ``src/DataSource.ts`` posts Grafana's whole ``DataQueryRequest``
to ``/query`` after ``processTargets`` (each ``target`` through
``templateSrv.replace(target, scopedVars, 'regex')``, ``payload`` through
``processPayload``: a code-mode ``""`` becomes ``{}``); ``src/variable/VariableSupport.ts``
posts ``{"payload", "range"}`` to ``/variable``, the payload being
``JSON.parse(replace(query, scopedVars, 'json'))`` in raw-JSON mode or
``{"target": replace(query, scopedVars, 'regex')}``, and ``src/response_parser.ts`` reads
the ``__text``/``__value`` columns of the answer; ``getTagKeys``/``getTagValues`` post
Grafana's options (``{filters, timeRange, queries}``, plus ``key``) as they are;
``testDatasource`` shows ``statusText: error.code. error.message`` of an error body.
From Grafana: ``toDataQueryError`` shows ``data.message`` on the panel; template
variables are interpolated by ``escapeRegex`` and the ``regex``/``json`` formats of
``@grafana/data`` and scenes, a custom "All" value unformatted; ad hoc filters are
``AdHocFilterWithLabels`` (``=|``/``!=|`` carry ``values``).
"""

from __future__ import annotations

import json
import re
from typing import Any

JULY = {"from": "2017-07-20T00:00:00.000Z", "to": "2017-07-21T00:00:00.000Z",
        "raw": {"from": "2017-07-20T00:00:00.000Z", "to": "2017-07-21T00:00:00.000Z"}}


def escape_regex(value: str) -> str:
    """Grafana's ``escapeRegex``: a backslash before each of ``\\ ^ $ * + ? . ( ) | [ ] { } /``."""
    return re.sub(r"([\\^$*+?.()|\[\]{}/])", r"\\\1", value)


class TemplateSrv:
    """Grafana's template interpolation for custom/query variables, ``regex`` and ``json``
    formats. ``variables``: name -> dict(value=str | list, options=[...], all_value=None|str,
    where value ``"$__all"`` (or ``["$__all"]``) selects "All")."""

    def __init__(self, **variables: dict) -> None:
        self.variables = variables

    def _value(self, var: dict) -> tuple[Any, bool]:
        value = var["value"]
        if value == "$__all" or value == ["$__all"]:
            if var.get("all_value"):
                return var["all_value"], True  # a custom All value is inserted unformatted
            return list(var["options"]), False
        return value, False

    def format(self, value: Any, fmt: str) -> str:
        if fmt == "regex":
            if isinstance(value, str):
                return escape_regex(value)
            escaped = [escape_regex(str(v)) for v in value]
            return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
        if fmt == "json":
            return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        raise ValueError(fmt)

    def replace(self, text: str, fmt: str) -> str:
        def one(m: re.Match) -> str:
            var = self.variables.get(m.group(1) or m.group(2))
            if var is None:
                return m.group(0)
            value, raw = self._value(var)
            return value if raw else self.format(value, fmt)

        return re.sub(r"\$(\w+)|\$\{(\w+)\}", one, text)


def query_request(targets: list[str], srv: TemplateSrv | None = None, *, filters: list | None = None,
                  max_points: int = 5000, rng: dict = JULY) -> dict:
    """Grafana 11's DataQueryRequest as the JSON plugin posts it to /query."""
    srv = srv or TemplateSrv()
    body = {
        "app": "dashboard", "requestId": "SQR101", "timezone": "browser",
        "range": rng, "rangeRaw": rng["raw"],
        "interval": "20s", "intervalMs": 20000, "maxDataPoints": max_points,
        "targets": [{"refId": chr(65 + i), "datasource": {"type": "simpod-json-datasource", "uid": "sisock"},
                     "editorMode": "code", "payload": {}, "target": srv.replace(t, "regex")}
                    for i, t in enumerate(targets)],
        "scopedVars": {"__interval": {"text": "20s", "value": "20s"},
                       "__interval_ms": {"text": "20000", "value": 20000}},
        "startTime": 1500595200000, "dashboardUID": "sisock-apex", "panelId": 2,
    }
    if filters is not None:
        body["filters"] = filters
    return body


def variable_request(query: str, srv: TemplateSrv, raw_json: bool) -> dict:
    """What VariableSupport.query posts to /variable."""
    payload = json.loads(srv.replace(query, "json")) if raw_json else {"target": srv.replace(query, "regex")}
    return {"payload": payload, "range": JULY}


def panel_error_text(status: int, status_text: str, body: dict) -> str:
    """The panel's error text: Grafana's toDataQueryError of the failed fetch."""
    if isinstance(body.get("message"), str) and body["message"]:
        return body["message"]
    if body.get("error"):
        return body["error"]  # an object here is what shows as nothing useful
    return f"Query error: {status} {status_text}"


def button_text(status_text: str, body: dict) -> str:
    """The JSON plugin's testDatasource message for a failed GET /."""
    message = status_text
    err = body.get("error")
    if isinstance(err, dict) and err.get("code") is not None:
        message += f": {err['code']}. {err['message']}"
    return message


def grafana_filter(key: str, operator: str, *values: str) -> dict:
    """An AdHocFilterWithLabels as Grafana 11 puts it in request.filters."""
    f = {"key": key, "operator": operator, "value": values[0] if values else "", "condition": ""}
    if operator in ("=|", "!=|"):
        f["values"] = list(values)
        f["valueLabels"] = list(values)
    return f
