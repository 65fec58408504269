"""What a data node computes, free of Twisted and WAMP.

:class:`NodeEngine` turns ``get_fields`` / ``get_data`` arguments into hook calls
on the node's plugin and the plugin's answers into sisock's wire format: time
resolution (t <= 0 means now + t), trimming to ``[start, end)``, empty arrays for
unknown fields, timeline assembly with ``finalized_until``, and decimation.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pluggy

from sisock_core.answersize import bound_answer_size
from sisock_core.decimate import decimate_timeline
from sisock_core.model import Field, NodeContext, Timeline
from sisock_core.timeutil import TimeRangeError, resolve_range

#: WAMP error URIs a node raises (old consumers see a plain WAMP error).
ERROR_INVALID_ARGUMENT = "org.simonsobservatory.error.invalid_argument"
ERROR_PLUGIN_FAILED = "org.simonsobservatory.error.plugin_failed"


class RequestError(ValueError):
    """A consumer's arguments are wrong; the message names the argument."""


class PluginFailure(RuntimeError):
    """The plugin raised while answering; the node keeps serving."""


#: Distinct field names one ``get_data`` call may ask for (the answer has a key for each,
#: even unknown ones: without a cap, one call with a million names costs ~100 MB).
MAX_FIELDS_PER_CALL = 10_000


def parse_field_argument(field: Any) -> list[str]:
    """Accept ``get_data``'s ``field`` argument: a list of names (or one name)."""
    if isinstance(field, str):
        return [field]
    if not isinstance(field, (list, tuple)):
        raise RequestError(f"field must be a list of field names, got {type(field).__name__}")
    names: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(field):
        if not isinstance(name, str):
            raise RequestError(f"field[{i}] must be a string, got {type(name).__name__}")
        if name not in seen:
            if len(names) == MAX_FIELDS_PER_CALL:
                raise RequestError(
                    f"field: at most {MAX_FIELDS_PER_CALL} distinct field names per call, "
                    f"got {len(field)} names; ask in several calls"
                )
            seen.add(name)
            names.append(name)
    return names


def parse_positive(name: str, value: Any) -> float | None:
    """Validate an optional positive number argument (``min_stride``, ``max_points``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"{name} must be a finite number or null, got {value!r}")
    if value < 0:
        raise RequestError(f"{name} must not be negative, got {value!r}")
    return float(value) if value > 0 else None


def fields_to_wire(fields: Iterable[Field]) -> list[dict]:
    """``get_fields`` answer ``[field_dict, timeline_dict]`` from declared fields."""
    field_dict: dict[str, dict] = {}
    timelines: dict[str, dict] = {}
    for f in fields:
        field_dict[f.name] = {
            "description": f.description,
            "timeline": f.timeline,
            "type": f.type,
            "units": f.units,
        }
        tl = timelines.setdefault(f.timeline, {"interval": f.interval, "field": []})
        if tl["interval"] is None and f.interval is not None:
            tl["interval"] = f.interval
        tl["field"].append(f.name)
    return [field_dict, timelines]


def to_wire_list(values: np.ndarray) -> list:
    """numpy array to a plain list for the WAMP serializers."""
    return np.asarray(values).tolist()


class NodeEngine:
    """The request logic of one data node around its plugin manager."""

    def __init__(
        self,
        node: NodeContext,
        pm: pluggy.PluginManager,
        plugin_name: str,
        *,
        max_points: int | None = None,
        clock: Callable[[], float] = time.time,
        live_cache: Any = None,
    ) -> None:
        self.node = node
        self.pm = pm
        self.plugin_name = plugin_name
        self.max_points = max_points
        self.clock = clock
        #: Object with ``list_fields(start, end)`` and ``read_range(fields, start, end)``
        #: answering for live plugins when their hooks return None.
        self.live_cache = live_cache

    # -- helpers ---------------------------------------------------------------

    def _range(self, start: Any, end: Any) -> tuple[float, float]:
        try:
            return resolve_range(start, end, self.clock)
        except TimeRangeError as exc:
            raise RequestError(str(exc)) from exc

    def _call(self, hook: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.pm.hook, hook)(node=self.node, **kwargs)
        except Exception as exc:
            raise PluginFailure(
                f"node {self.node.name!r}: plugin {self.plugin_name!r} failed in {hook}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    # -- get_fields ------------------------------------------------------------

    def get_fields(self, start: Any, end: Any) -> list[dict]:
        """Answer ``get_fields(start, end)`` in wire format."""
        t0, t1 = self._range(start, end)
        fields = self._call("list_fields", start=t0, end=t1)
        if fields is None:
            fields = self.live_cache.list_fields(t0, t1) if self.live_cache is not None else []
        return fields_to_wire(fields)

    # -- get_data --------------------------------------------------------------

    def get_data(
        self,
        field: Any,
        start: Any,
        end: Any,
        min_stride: Any = None,
        max_points: Any = None,
    ) -> dict:
        """Answer ``get_data(field, start, end, min_stride)`` in wire format.

        ``max_points`` (our extension, used by the HTTP bridge for Grafana's
        ``maxDataPoints``) caps points per field together with the node's own cap.
        """
        names = parse_field_argument(field)
        t0, t1 = self._range(start, end)
        stride = parse_positive("min_stride", min_stride)
        cap = parse_positive("max_points", max_points)
        caps = [int(c) for c in (cap, self.max_points) if c]
        limit = max(2, min(caps)) if caps else None

        result: dict[str, Any] = {"data": {n: [] for n in names}, "timeline": {}}
        if not names or t1 <= t0:
            return result
        timelines = self._call("read_range", fields=names, start=t0, end=t1)
        if timelines is None:
            timelines = (
                self.live_cache.read_range(names, t0, t1) if self.live_cache is not None else {}
            )
        wanted = set(names)
        answer_bytes = 0
        for tl_name, tl in dict(timelines).items():
            if not isinstance(tl, Timeline):
                raise PluginFailure(
                    f"node {self.node.name!r}: plugin {self.plugin_name!r} returned "
                    f"{type(tl).__name__} for timeline {tl_name!r}; expected Timeline"
                )
            cols = {k: v for k, v in tl.data.items() if k in wanted}
            if not cols or tl.t.size == 0:
                continue
            lo, hi = np.searchsorted(tl.t, [t0, t1], side="left")
            if hi <= lo:
                continue
            t = tl.t[lo:hi]
            cols = {k: v[lo:hi] for k, v in cols.items()}
            t, cols = decimate_timeline(t, cols, max_points=limit, min_stride=stride)
            answer_bytes = bound_answer_size(answer_bytes, t, cols)
            for k, v in cols.items():
                result["data"][k] = to_wire_list(v)
            result["timeline"][tl_name] = {
                "t": to_wire_list(t),
                "finalized_until": tl.finalized_until,
            }
        return result
