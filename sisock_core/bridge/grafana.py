"""Grafana's JSON data-source protocols, as pure functions (numpy and orjson, no Twisted).

Two Grafana plugins speak to the bridge (README's Grafana section; the shapes are
those of ``grafana-simple-json-datasource`` and of simPod's ``GrafanaJsonDatasource``
source, ``src/DataSource.ts``):

* SimpleJSON (``grafana-simple-json-datasource``): ``/search``, ``/query`` (targets
  with ``type`` ``timeserie`` or ``table``), ``/annotations``, ``/tag-keys``,
  ``/tag-values``;
* the JSON data source (``simpod-json-datasource``): ``/metrics``,
  ``/metric-payload-options``, ``/query`` (targets with a ``payload``), ``/variable``.

Targets are ``node::field`` as in the original sisock. This module turns request
bodies into :class:`QueryRequest` and friends (raising :class:`BadRequest`, a 400,
for a body that is not JSON or lacks a required key) and node answers into
Grafana answers: a timeserie's ``datapoints`` is one numpy ``(n, 2)`` array
``[value, epoch_ms]``, encoded by orjson (NaN becomes ``null``), so no per-point
Python list is built on the hot path.

Per-target problems (malformed target, unknown node, a node error) never fail the
request: that series comes back empty with ``meta.notices`` carrying the message,
which Grafana shows on the panel. A field whose length differs from its timeline's
(an original weather node's ``apex_windspeed``) is served for the overlapping samples,
as the original bridge did, with a warning notice.

Template variables arrive interpolated in Grafana's *regex* format
(:mod:`sisock_core.bridge.variables`): :func:`resolve_targets` expands each side of
``node::field`` against the live fields, one series per matched field.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs
import numpy as np
import orjson

from sisock_core.bridge.variables import compile_pattern, name_choices, text_matcher
from sisock_core.decimate import decimate_timeline

#: Separator between node and field in a Grafana target.
TARGET_SEP = "::"

#: Answer formats a target can ask for.
FORMATS = ("timeseries", "table", "dataframe")

#: The payload the JSON data source shows next to each metric (choose the answer format).
FORMAT_PAYLOAD = {
    "label": "Format",
    "name": "format",
    "type": "select",
    "placeholder": "time series",
    "options": [
        {"label": "Time series", "value": "timeseries"},
        {"label": "Table", "value": "table"},
        {"label": "Data frame", "value": "dataframe"},
    ],
}

#: Earliest time asked of a node (sisock reads t <= 0 as relative to now).
MIN_TIME = 1.0
#: ``maxDataPoints`` above this is taken as this (no panel is that wide).
MAX_POINTS_LIMIT = 1_000_000
#: Targets in one ``/query`` at most (a Grafana panel has a handful; more is a 400).
MAX_QUERY_TARGETS = 1000

#: Ad hoc filter keys the bridge understands (``/tag-keys``).
TAG_KEYS = ("node", "field")
#: Ad hoc filter operators the bridge applies: equal, not equal, regex match, regex
#: no match, one of (``values``), not one of (``values``).
FILTER_OPERATORS = ("=", "!=", "=~", "!~", "=|", "!=|")
#: Operators Grafana 11 also offers; a filter with one is ignored with a notice.
UNSUPPORTED_FILTER_OPERATORS = ("<", "<=", ">", ">=")
#: What ``/variable`` can list (``payload.list``).
VARIABLE_LISTS = ("targets", "nodes", "fields")

#: ``code`` of an error answer, by HTTP status (health failures have their own codes).
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}

_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY

_INTERVAL_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d|w|M|y)\s*$")
_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "M": 30 * 86400.0,
    "y": 365 * 86400.0,
}


class BadRequest(ValueError):
    """The request body is not usable at all: answered with HTTP 400 and this message."""


# -- encoding -------------------------------------------------------------------------


def encode(obj: Any) -> bytes:
    """JSON bytes of ``obj``; numpy arrays are written natively, NaN and inf as ``null``."""
    return orjson.dumps(obj, option=_ORJSON_OPTIONS)


def error_object(message: str, code: str) -> dict:
    """The body of every non-200 answer: ``{"error": {"code", "message"}, "code", "message"}``.

    The object is for our clients; Grafana shows the top-level ``message`` string on the
    panel (its ``toDataQueryError`` reads ``data.message``) and the JSON plugin's Test
    button shows ``error.code`` and ``error.message``."""
    return {"error": {"code": code, "message": message}, "code": code, "message": message}


def error_body(message: str, status: int = 400, code: str | None = None) -> bytes:
    """:func:`error_object` encoded; ``code`` defaults to the one of ``status``."""
    return encode(error_object(message, code or ERROR_CODES.get(status, "error")))


def decode_body(raw: bytes) -> Any:
    """Parse a request body; an empty body counts as ``{}``."""
    if not raw or not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


def require_object(body: Any, what: str = "request body") -> dict:
    if not isinstance(body, dict):
        raise BadRequest(f"{what} must be a JSON object, got {_json_kind(body)}")
    return body


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# -- times and intervals --------------------------------------------------------------


def parse_interval(text: Any) -> float:
    """Seconds in a Grafana interval: ``"100ms"``, ``"5s"``, ``"1m"``, ``"2h"``, ``"1d"``,
    ``"1w"``, ``"1M"`` (30 d), ``"1y"`` (365 d). Raises :class:`BadRequest`."""
    if not isinstance(text, str):
        raise BadRequest(f"interval must be a string like '5s', got {_json_kind(text)}")
    m = _INTERVAL_RE.match(text)
    if not m:
        raise BadRequest(
            f"interval {text[:40]!r} is not a Grafana interval (a number and one of "
            "ms, s, m, h, d, w, M, y)"
        )
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def parse_time(value: Any, where: str) -> float:
    """UNIX seconds from Grafana's UTC ISO-8601 time (``2017-07-20T00:00:00.000Z``);
    a number is taken as epoch milliseconds. ``where`` names the key in errors."""
    if isinstance(value, bool) or value is None:
        raise BadRequest(f"{where} must be an ISO-8601 time, got {_json_kind(value)}")
    if isinstance(value, (int, float)):
        t = float(value) / 1000.0
    elif isinstance(value, str):
        text = value.strip()
        try:
            when = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" and text else text)
        except ValueError:
            raise BadRequest(f"{where}: {value[:60]!r} is not an ISO-8601 time") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        t = when.timestamp()
    else:
        raise BadRequest(f"{where} must be an ISO-8601 time, got {_json_kind(value)}")
    if not math.isfinite(t):
        raise BadRequest(f"{where} is not a finite time")
    return t


def parse_range(body: Mapping[str, Any]) -> tuple[float, float]:
    """``(start, end)`` UNIX seconds from ``body["range"]["from"/"to"]`` (not ``raw``).

    Times before 1970 become 1 s: sisock reads a time <= 0 as "seconds before now"."""
    rng = body.get("range")
    if rng is None:
        raise BadRequest("missing key: range")
    rng = require_object(rng, "range")
    for key in ("from", "to"):
        if key not in rng:
            raise BadRequest(f"missing key: range.{key}")
    start = parse_time(rng["from"], "range.from")
    end = parse_time(rng["to"], "range.to")
    if end < start:
        raise BadRequest("range.to is before range.from")
    return max(start, MIN_TIME), max(end, MIN_TIME)


def _positive_number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{key} must be a number, got {_json_kind(value)}")
    if not math.isfinite(value) or value <= 0:
        return None
    return float(value)


# -- targets ----------------------------------------------------------------------------


def split_target(text: str) -> tuple[str, str]:
    """``"node::field"`` -> ``("node", "field")``; raises ``ValueError`` naming the problem."""
    node, sep, field = text.partition(TARGET_SEP)
    if not sep:
        raise ValueError(f"target {text[:80]!r} is not 'node::field'")
    node, field = node.strip(), field.strip()
    if not node:
        raise ValueError(f"target {text[:80]!r} has no node name before '::'")
    if not field:
        raise ValueError(f"target {text[:80]!r} has no field name after '::'")
    return node, field


@attrs.frozen
class Target:
    """One target of a ``/query``: ``node``/``field`` are None when ``error`` says why."""

    text: str
    ref_id: str | None = None
    format: str = "timeseries"
    node: str | None = None
    field: str | None = None
    error: str | None = None
    #: nodes whose known fields the target's field pattern matched none of (their field
    #: lists may be stale: new files indexed since they were loaded)
    unmatched_on: tuple[str, ...] = ()


def _target_format(item: Mapping[str, Any]) -> str:
    payload = item.get("payload")
    if isinstance(payload, dict):
        fmt = payload.get("format")
        if isinstance(fmt, str) and fmt.strip().lower() in FORMATS:
            return fmt.strip().lower()
    kind = item.get("type")
    if isinstance(kind, str):
        kind = kind.strip().lower()
        if kind == "table":
            return "table"
        if kind in ("dataframe", "data_frame", "frame"):
            return "dataframe"
    return "timeseries"


def parse_target(item: Any, index: int) -> Target | None:
    """One element of ``targets``; None for a hidden or empty (no metric chosen) target."""
    if not isinstance(item, dict):
        return Target(text=f"targets[{index}]", error=f"targets[{index}] must be an object, "
                      f"got {_json_kind(item)}")
    if item.get("hide") is True:
        return None
    ref = item.get("refId")
    ref_id = ref if isinstance(ref, str) else None
    text = item.get("target")
    if text is None or text == "":
        return None
    fmt = _target_format(item)
    if not isinstance(text, str):
        return Target(text=f"targets[{index}]", ref_id=ref_id, format=fmt,
                      error=f"targets[{index}].target must be a string, got {_json_kind(text)}")
    try:
        node, field = split_target(text)
    except ValueError as exc:
        return Target(text=text, ref_id=ref_id, format=fmt, error=str(exc))
    return Target(text=text, ref_id=ref_id, format=fmt, node=node, field=field)


def needs_listing(targets: Iterable[Target]) -> bool:
    """Whether expanding ``targets`` needs the live nodes' field lists (a pattern)."""
    return any(
        t.error is None and (not isinstance(name_choices(t.node), list)
                             or not isinstance(name_choices(t.field), list))
        for t in targets
    )


def resolve_targets(
    targets: Iterable[Target],
    live_nodes: Sequence[str],
    fields_of: Callable[[str], Sequence[str] | None],
) -> list[Target]:
    """Each target expanded to one target per matched ``node::field`` (see
    :func:`name_choices`), in order; a target that matches nothing becomes one
    carrying the error. Of several combinations (``(a|b)::(x|y)``) those a node is known
    not to have are left out. ``fields_of(node)`` is None when the node's fields are not
    known: a field pattern on such a node is then taken as a name (the node's own error
    tells the rest). A target naming a plain ``node::field`` is kept as is."""
    out: list[Target] = []
    for t in targets:
        if t.error is not None or t.node is None or t.field is None:
            out.append(t)
            continue
        nodes = name_choices(t.node)
        fields = name_choices(t.field)
        if nodes == [t.node] and fields == [t.field]:
            out.append(t)
            continue
        if not isinstance(nodes, list):
            nodes = [n for n in live_nodes if nodes.fullmatch(n)]
            if not nodes:
                out.append(attrs.evolve(t, node=None, field=None,
                                        error=f"no live node matches {t.node[:80]!r}"))
                continue
        several = len(nodes) > 1 or not isinstance(fields, list) or len(fields) > 1
        expanded: list[Target] = []
        for node in nodes:
            known = fields_of(node)
            if isinstance(fields, list):
                # of several combinations, those the node is known not to have are left out
                names: Sequence[str] = fields if known is None or not several else \
                    [f for f in fields if f in known]
            else:
                names = [t.field] if known is None else [f for f in known if fields.fullmatch(f)]
            for field in names:
                expanded.append(attrs.evolve(t, text=f"{node}{TARGET_SEP}{field}", node=node, field=field))
        if not expanded:
            where = f"node {nodes[0]!r}" if len(nodes) == 1 else f"nodes {', '.join(nodes)[:120]}"
            out.append(attrs.evolve(t, node=None, field=None,
                                    error=f"no field of {where} matches {t.field[:80]!r}",
                                    unmatched_on=tuple(n for n in nodes if fields_of(n) is not None)))
        out.extend(dict.fromkeys(expanded))
    return out


# -- ad hoc filters ----------------------------------------------------------------------


@attrs.frozen
class AdhocFilter:
    """``{"key": "node", "operator": "=", "value": "apex_archive"}`` (keys of TAG_KEYS,
    operators of FILTER_OPERATORS); ``=|`` and ``!=|`` compare with ``values``."""

    key: str
    operator: str
    value: str
    values: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None

    def accepts(self, node: str, field: str) -> bool:
        subject = {"node": node, "field": field}.get(self.key)
        if subject is None:
            return True
        if self.operator == "=":
            return subject == self.value
        if self.operator == "!=":
            return subject != self.value
        if self.operator == "=|":
            return subject in self.values
        if self.operator == "!=|":
            return subject not in self.values
        if self.pattern is not None:  # =~ and !~
            hit = self.pattern.search(subject) is not None
            return hit if self.operator == "=~" else not hit
        return True


def _filter_value(value: Any, where: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be a string, got {_json_kind(value)}")
    return value


def parse_filters(body: Mapping[str, Any]) -> tuple[list[AdhocFilter], list[str]]:
    """Ad hoc filters from ``adhocFilters`` (SimpleJSON, older JSON plugin) or ``filters``
    (Grafana 10+), and a notice for each filter the bridge cannot apply (a key other than
    node/field, an operator such as ``<``): those filter nothing, and the panel says so."""
    out: list[AdhocFilter] = []
    notices: list[str] = []
    for key in ("adhocFilters", "filters"):
        raw = body.get(key)
        if raw is None:
            continue
        if not isinstance(raw, list):
            raise BadRequest(f"{key} must be an array, got {_json_kind(raw)}")
        for i, f in enumerate(raw):
            where = f"{key}[{i}]"
            if not isinstance(f, dict):
                raise BadRequest(f"{where} must be an object, got {_json_kind(f)}")
            k, op = f.get("key"), f.get("operator", "=")
            if not isinstance(k, str) or not isinstance(op, str):
                raise BadRequest(f"{where} needs string 'key' and 'operator'")
            raw_values = f.get("values")
            if op in ("=|", "!=|") and raw_values is not None:
                if not isinstance(raw_values, list):
                    raise BadRequest(f"{where}.values must be an array, got {_json_kind(raw_values)}")
                values = tuple(_filter_value(v, f"{where}.values[{j}]") for j, v in enumerate(raw_values))
                value = values[0] if values else ""
            else:
                value = _filter_value(f.get("value"), f"{where}.value")
                values = (value,)
            shown = f"{k} {op} {value if len(values) < 2 else '|'.join(values)}"[:120]
            if op not in FILTER_OPERATORS:
                notices.append(f"ad hoc filter '{shown}' ignored: operator {op[:10]!r} is not "
                               f"supported here (use {', '.join(FILTER_OPERATORS)})")
                continue
            if k not in TAG_KEYS:
                notices.append(f"ad hoc filter '{shown}' ignored: sisock filters by "
                               f"{' and '.join(TAG_KEYS)} only")
                continue
            pattern = None
            if op in ("=~", "!~"):
                compiled = compile_pattern(value)
                if isinstance(compiled, str):
                    notices.append(f"ad hoc filter '{shown}' ignored: {value[:60]!r} is not a "
                                   f"regular expression ({compiled})")
                    continue
                pattern = compiled
            out.append(AdhocFilter(k, op, value, values, pattern))
    return out, notices


# -- /query ------------------------------------------------------------------------------


@attrs.frozen
class QueryRequest:
    """A parsed ``/query`` body."""

    start: float
    end: float
    targets: list[Target]
    max_points: int | None = None  #: ``maxDataPoints``: points per series at most
    interval: float | None = None  #: seconds, from ``intervalMs`` or ``interval``
    filters: list[AdhocFilter] = attrs.field(factory=list)
    #: problems of the whole request (an ad hoc filter ignored), shown on every series
    notices: list[str] = attrs.field(factory=list)

    @property
    def min_stride(self) -> float | None:
        """``max(interval, span / maxDataPoints)``: what an old node (no ``max_points``)
        needs to reduce each series to about ``maxDataPoints`` points."""
        parts = [self.interval or 0.0]
        if self.max_points:
            parts.append((self.end - self.start) / self.max_points)
        stride = max(parts)
        return stride if stride > 0 else None

    def capped(self, cap: int) -> "QueryRequest":
        """This request with at most ``cap`` points per series (``[http] max_points``).

        A budget above the cap is lowered with a notice shown on every series. A request
        without one (an old SimpleJSON panel) is left as it is: the nodes answer it at full
        resolution up to their answer-size bound (:mod:`sisock_core.answersize`)."""
        if self.max_points is None or self.max_points <= cap:
            return self
        notice = f"{self.max_points} points per series asked; at most {cap} are served ([http] max_points)"
        return attrs.evolve(self, max_points=cap, notices=[*self.notices, notice])

    def by_node(self) -> dict[str, list[str]]:
        """Field names to fetch from each node (unique, in target order)."""
        out: dict[str, list[str]] = {}
        for t in self.targets:
            if t.error is None and t.node is not None and t.field is not None:
                fields = out.setdefault(t.node, [])
                if t.field not in fields:
                    fields.append(t.field)
        return out


def parse_query(body: Any) -> QueryRequest:
    """A ``/query`` body of either plugin; raises :class:`BadRequest` for a 400."""
    body = require_object(body)
    start, end = parse_range(body)
    if "targets" not in body:
        raise BadRequest("missing key: targets")
    raw_targets = body["targets"]
    if not isinstance(raw_targets, list):
        raise BadRequest(f"targets must be an array, got {_json_kind(raw_targets)}")
    if len(raw_targets) > MAX_QUERY_TARGETS:
        raise BadRequest(f"targets: at most {MAX_QUERY_TARGETS} per query, got {len(raw_targets)}")
    max_points = _positive_number(body, "maxDataPoints")
    interval_ms = _positive_number(body, "intervalMs")
    if interval_ms is not None:
        interval = interval_ms / 1000.0
    elif body.get("interval") not in (None, ""):
        interval = parse_interval(body["interval"])
    else:
        interval = None
    filters, notices = parse_filters(body)
    targets = [t for t in (parse_target(item, i) for i, item in enumerate(raw_targets)) if t is not None]
    return QueryRequest(
        start=start,
        end=end,
        targets=targets,
        max_points=max(2, int(min(max_points, MAX_POINTS_LIMIT))) if max_points else None,
        interval=interval,
        filters=filters,
        notices=notices,
    )


def resolve_query(
    req: QueryRequest,
    live_nodes: Sequence[str],
    fields_of: Callable[[str], Sequence[str] | None],
) -> QueryRequest:
    """``req`` with its targets expanded (:func:`resolve_targets`) and the ad hoc
    filters applied to the expanded ``node::field`` names."""
    targets = resolve_targets(req.targets, live_nodes, fields_of)
    if req.filters:
        targets = [t for t in targets
                   if t.error is not None or all(f.accepts(t.node, t.field) for f in req.filters)]
    return attrs.evolve(req, targets=targets)


# -- series and answers -----------------------------------------------------------------


@attrs.define
class Series:
    """The data of one target: ``t`` in UNIX seconds, ``values`` numeric (float64) or
    an object array (strings); ``error`` makes it an empty series carrying the message;
    ``warnings`` are shown on the panel next to the data."""

    target: Target
    t: np.ndarray = attrs.field(factory=lambda: np.empty(0))
    values: np.ndarray = attrs.field(factory=lambda: np.empty(0))
    units: str | None = None
    error: str | None = None
    #: warnings shown next to the data: the series' own (served with a caveat), then the
    #: request's (an ignored ad hoc filter)
    warnings: Sequence[str] = ()

    @property
    def numeric(self) -> bool:
        return self.values.dtype.kind in "fiub"


class AnswerError(ValueError):
    """A node's ``get_data`` answer does not hold what we asked for in a usable shape."""


def _floats(raw: Any) -> np.ndarray:
    """float64 array from a list of numbers; ``None`` becomes NaN (raises for others)."""
    try:
        return np.fromiter(raw, dtype=np.float64, count=len(raw))  # twice as fast as asarray
    except (TypeError, ValueError):
        return np.asarray(raw, dtype=np.float64)


def as_values(raw: Any, field_type: str | None = None) -> np.ndarray:
    """One numpy array from a wire list (done once per series): float64 for numbers
    and booleans (``None`` becomes NaN), an object array for anything else."""
    if isinstance(raw, np.ndarray):
        arr = raw
    elif field_type == "string":
        return np.asarray(raw, dtype=object)
    else:
        try:
            arr = _floats(raw)
        except (TypeError, ValueError):
            return np.asarray(raw, dtype=object)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.float64)
    if arr.dtype.kind not in "fiu" and arr.dtype.kind != "O":
        arr = arr.astype(object)
    return arr if arr.ndim == 1 else arr.reshape(-1)


def find_timeline(answer: Mapping[str, Any], field: str, n: int, hint: str | None) -> str | None:
    """The name of the timeline of ``field`` in a ``get_data`` answer.

    In order: ``hint`` (from the node's ``get_fields``), a timeline whose ``fields``
    list names it (so3g answers), the only timeline with ``n`` samples. None if none fits.
    """
    timelines = answer.get("timeline")
    if not isinstance(timelines, dict):
        return None
    if hint is not None and hint in timelines:
        return hint
    for name, tl in timelines.items():
        if isinstance(tl, dict) and isinstance(tl.get("fields"), list) and field in tl["fields"]:
            return name
    same = [name for name, tl in timelines.items()
            if isinstance(tl, dict) and isinstance(tl.get("t"), (list, np.ndarray)) and len(tl["t"]) == n]
    return same[0] if len(same) == 1 else None


def series_from_answer(
    answer: Any,
    target: Target,
    timeline_hint: str | None,
    *,
    field_type: str | None = None,
    units: str | None = None,
    max_points: int | None = None,
    times: dict | None = None,
) -> Series:
    """The series of ``target`` from a node's ``get_data`` answer.

    Raises :class:`AnswerError` when the answer is not a ``get_data`` dict or the
    field's timeline cannot be found (the caller refreshes the node's field list and
    tries again). A field missing from ``data`` or empty is an empty series. If the
    node sent more than ``max_points`` (an old node ignoring ``max_points``), the
    series is decimated here with the core's peak-preserving decimation.
    ``times`` (a dict kept for one answer) caches each timeline's converted times,
    shared by the fields on it.
    """
    if answer is False:
        raise AnswerError("the node refused the request (over its pipeline allowance)")
    if not isinstance(answer, dict) or not isinstance(answer.get("data"), dict):
        raise AnswerError(f"the node's get_data answer is not a get_data dict ({_json_kind(answer)})")
    raw = answer["data"].get(target.field)
    if raw is None:
        return Series(target, units=units)
    if not isinstance(raw, (list, tuple, np.ndarray)):
        raise AnswerError(f"field {target.field!r} is {_json_kind(raw)} in the node's answer, not an array")
    if len(raw) == 0:
        return Series(target, units=units)
    n = len(raw)
    name = find_timeline(answer, target.field, n, timeline_hint)
    if name is None:
        raise AnswerError(f"no timeline in the node's answer matches field {target.field!r}")
    t_raw = answer["timeline"][name].get("t") if isinstance(answer["timeline"][name], dict) else None
    if not isinstance(t_raw, (list, tuple, np.ndarray)) or len(t_raw) == 0:
        raise AnswerError(f"field {target.field!r} has {n} values but timeline {name!r} has no times")
    warning = None
    if len(t_raw) != n:
        # An original node can send a field one value longer than its shared timeline; the
        # original bridge zipped the two: serve the overlap, and say so on the panel.
        warning = (f"field {target.field!r} has {n} values but timeline {name!r} has "
                   f"{len(t_raw)} times; showing the first {min(n, len(t_raw))}")
    t = times.get(name) if times is not None else None
    if t is None:
        try:
            t = _floats(t_raw)
        except (TypeError, ValueError):
            raise AnswerError(f"timeline {name!r} has times that are not numbers") from None
        if times is not None:
            times[name] = t
    values = as_values(raw, field_type)
    if warning is not None:
        k = min(t.size, values.size)
        t, values = t[:k], values[:k]
    if max_points and t.size > max_points:
        t, reduced = decimate_timeline(t, {"v": values}, max_points=max_points)
        values = reduced["v"]
    return Series(target, t=t, values=values, units=units, warnings=(warning,) if warning else ())


def _labelled(item: dict[str, Any], series: Series) -> dict[str, Any]:
    """``item`` with the query's ``refId`` and ``meta.notices`` (the series' error, then its
    warnings), when there are any."""
    if series.target.ref_id is not None:
        item["refId"] = series.target.ref_id
    notices = [{"severity": "error", "text": series.error}] if series.error else []
    notices.extend({"severity": "warning", "text": w} for w in series.warnings)
    if notices:
        item["meta"] = {"notices": notices}
    return item


def _epoch_ms(t: np.ndarray) -> np.ndarray:
    return np.asarray(t, dtype=np.float64) * 1000.0


def _pairs(series: Series, *, time_first: bool) -> Any:
    """``[value, epoch_ms]`` (or ``[epoch_ms, value]``) per sample: one (n, 2) numpy array
    for numbers, lists for strings (rare, small)."""
    ms = _epoch_ms(series.t)
    if series.numeric:
        out = np.empty((series.t.size, 2), dtype=np.float64)
        out[:, 0 if time_first else 1] = ms
        out[:, 1 if time_first else 0] = series.values
        return out
    values = [_plain(v) for v in series.values.tolist()]
    return [[m, v] if time_first else [v, m] for m, v in zip(ms.tolist(), values)]


def timeserie(series: Series) -> dict:
    """``{"target", "datapoints": [[value, epoch_ms], ...]}``; datapoints is one numpy array."""
    return _labelled({"target": series.target.text, "datapoints": _pairs(series, time_first=False)}, series)


def table(series: Series) -> dict:
    """``{"type": "table", "columns": [Time, target], "rows": [[epoch_ms, value], ...]}``."""
    kind = "number" if series.numeric else "string"
    return _labelled({
        "type": "table",
        "columns": [{"text": "Time", "type": "time"}, {"text": series.target.text, "type": kind}],
        "rows": _pairs(series, time_first=True),
    }, series)


def dataframe(series: Series) -> dict:
    """A Grafana data frame: a ``time`` field and a value field named after the target."""
    value_field: dict[str, Any] = {
        "name": series.target.text,
        "type": "number" if series.numeric else "string",
        "values": series.values if series.numeric else [_plain(v) for v in series.values.tolist()],
    }
    if series.units:
        value_field["config"] = {"unit": series.units}
    return _labelled({
        "name": series.target.text,
        "fields": [{"name": "time", "type": "time", "values": _epoch_ms(series.t)}, value_field],
    }, series)


def _plain(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


_BUILDERS = {"timeseries": timeserie, "table": table, "dataframe": dataframe}


def query_answer(series: Iterable[Series], notices: Sequence[str] = ()) -> list[dict]:
    """The ``/query`` answer: one item per target, in the format each target asked for;
    ``notices`` (the request's, e.g. an ignored filter) are shown on every item."""
    if notices:
        series = [attrs.evolve(s, warnings=(*s.warnings, *notices)) for s in series]
    return [_BUILDERS[s.target.format](s) for s in series]


# -- listings ------------------------------------------------------------------------------


def search_text(body: Any) -> str:
    """The typed text of a ``/search`` body (``{"target": "..."}``; missing: "")."""
    body = require_object(body)
    text = body.get("target", "")
    if text is None:
        return ""
    if not isinstance(text, str):
        raise BadRequest(f"target must be a string, got {_json_kind(text)}")
    return text


def filter_targets(targets: Iterable[str], text: str | Sequence[str], limit: int) -> list[str]:
    """Targets matching ``text`` (:func:`text_matcher`; a list: any of them), sorted, at
    most ``limit``."""
    matchers = [text_matcher(t) for t in ([text] if isinstance(text, str) else text)]
    hits = sorted(t for t in targets if any(m(t) for m in matchers))
    return hits[:limit]


def metrics_answer(targets: Sequence[str], current: str | None, limit: int) -> list[dict]:
    """``/metrics``: every target with the format payload; the current one always listed."""
    shown = list(targets[:limit])
    if current and current in targets and current not in shown:
        shown.append(current)
    return [{"label": t, "value": t, "payloads": [FORMAT_PAYLOAD]} for t in shown]


def metrics_request(body: Any) -> str | None:
    """The current metric of a ``/metrics`` body (``{}`` or ``{"metric", "payload"}``)."""
    body = require_object(body)
    metric = body.get("metric")
    return metric if isinstance(metric, str) else None


def payload_options(body: Any) -> list[dict]:
    """``/metric-payload-options``: the options of the ``format`` payload; [] for others."""
    body = require_object(body)
    name = body.get("name")
    if name is None:
        raise BadRequest("missing key: name")
    if name == FORMAT_PAYLOAD["name"]:
        return list(FORMAT_PAYLOAD["options"])
    return []


@attrs.frozen
class VariableRequest:
    """A ``/variable`` payload: ``{"target": "text"}`` lists the targets matching the text
    (:func:`text_matcher`); ``{"list": "nodes"}`` the live nodes; ``{"list": "fields",
    "node": "x"}`` one node's field names. In raw-JSON mode a multi-value variable makes
    ``node`` (or ``target``) an array: the union of each. A bare string payload is the
    text."""

    list: str = "targets"
    text: str | tuple[str, ...] = ""
    node: tuple[str, ...] | None = None


def _strings(value: Any, where: str) -> str | tuple[str, ...]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise BadRequest(f"{where} must be a string or an array of strings, got {_json_kind(value)}")


def parse_variable(body: Any) -> VariableRequest:
    body = require_object(body)
    payload = body.get("payload", {})
    if isinstance(payload, str):
        text = payload.strip()
        return VariableRequest(list="nodes") if text in ("nodes", "nodes()") else VariableRequest(text=text)
    if payload is None:
        payload = {}
    payload = require_object(payload, "payload")
    kind = payload.get("list", "targets")
    if kind not in VARIABLE_LISTS:
        raise BadRequest(f"payload.list must be one of {', '.join(VARIABLE_LISTS)}; got {str(kind)[:40]!r}")
    text = _strings(payload.get("target", ""), "payload.target")
    node = payload.get("node")
    if node is not None:
        node = _strings(node, "payload.node")
        node = (node,) if isinstance(node, str) else node
    return VariableRequest(list=kind, text=text, node=node)


def variable_answer(values: Iterable[str]) -> list[dict]:
    """Rows with ``__text``/``__value`` (what the JSON plugin's parser looks for) and
    ``text``/``value`` (what other readers of the answer take)."""
    return [{"__text": v, "__value": v, "text": v, "value": v} for v in values]


def tag_keys_answer() -> list[dict]:
    return [{"type": "string", "text": k} for k in TAG_KEYS]


def tag_keys_request(body: Any) -> None:
    """Check a ``/tag-keys`` body: ``{}`` (SimpleJSON) or Grafana 11's ``{"filters",
    "timeRange", "queries"}`` (the keys do not depend on them)."""
    body = require_object(body)
    parse_filters(body)


@attrs.frozen
class TagValuesRequest:
    """A ``/tag-values`` body: ``key``, and Grafana 11's other ``filters`` (values are
    listed among the node::field pairs those keep)."""

    key: str
    filters: list[AdhocFilter] = attrs.field(factory=list)


def parse_tag_values(body: Any) -> TagValuesRequest:
    body = require_object(body)
    if "key" not in body:
        raise BadRequest("missing key: key")
    key = body["key"]
    if not isinstance(key, str):
        raise BadRequest(f"key must be a string, got {_json_kind(key)}")
    filters, _ = parse_filters(body)
    return TagValuesRequest(key, [f for f in filters if f.key != key])


def tag_values(req: TagValuesRequest, targets: Iterable[str], limit: int) -> list[str]:
    """The values of ``req.key`` (``node`` or ``field``) among ``targets`` the other
    filters keep, sorted; [] for other keys."""
    if req.key not in TAG_KEYS:
        return []
    out: set[str] = set()
    for t in targets:
        node, _, field = t.partition(TARGET_SEP)
        if all(f.accepts(node, field) for f in req.filters):
            out.add(node if req.key == "node" else field)
    return sorted(out)[:limit]


def tag_values_answer(values: Iterable[str]) -> list[dict]:
    return [{"text": v} for v in values]


# -- /annotations ---------------------------------------------------------------------------


@attrs.frozen
class AnnotationRequest:
    """A SimpleJSON ``/annotations`` body; ``query`` is a ``node::field`` target or empty."""

    start: float
    end: float
    annotation: dict
    target: Target | None


def parse_annotations(body: Any) -> AnnotationRequest:
    body = require_object(body)
    start, end = parse_range(body)
    if "annotation" not in body:
        raise BadRequest("missing key: annotation")
    annotation = require_object(body["annotation"], "annotation")
    query = annotation.get("query")
    target = None
    if isinstance(query, str) and query.strip():
        target = parse_target({"target": query.strip()}, 0)
    return AnnotationRequest(start, end, annotation, target)


def annotations_answer(req: AnnotationRequest, series: Series | None) -> list[dict]:
    """One annotation per sample of the query's series: title the target, text the value."""
    if series is None or series.error or series.t.size == 0:
        return []
    tags = [series.target.node or "", series.target.field or ""]
    ms = _epoch_ms(series.t).tolist()
    return [
        {"annotation": req.annotation, "time": int(m), "title": series.target.text,
         "tags": tags, "text": "" if _plain(v) is None else str(_plain(v))}
        for m, v in zip(ms, series.values.tolist())
    ]
