"""What a data node computes, free of Twisted and WAMP.

:class:`NodeEngine` turns ``get_fields`` / ``get_data`` arguments into hook calls
on the node's plugin and the plugin's answers into sisock's wire format: time
resolution (t <= 0 means now + t), trimming to ``[start, end)``, empty arrays for
unknown fields, timeline assembly with ``finalized_until``, and decimation.

Long ranges. When a call is decimated (``max_points`` or ``min_stride``) and the node has
a summary store (:mod:`sisock_core.summarystore`), the fields it summarizes are answered
from the coarsest tier whose buckets are no wider than the bucket width the call needs:
the range is cut on a grid of width ``W`` (a multiple of that tier), whole grid buckets
come from the summaries, and the partial buckets at both ends plus the not yet
summarized newest part come from the plugin's ``read_range``. The answer equals the
min-max decimation of the raw samples on that grid
(:func:`sisock_core.decimate.decimate_on_grid`), and its cost depends on the points
returned, not on the samples in the range. Work stops at the next
:func:`sisock_core.cancel.check` once the caller abandons the call.

Assembly. When the node has a :class:`~sisock_core.assembly.Seam` (its plugin reads an
archive and publishes live samples), every raw read joins the archive's samples up to
each timeline's final time with the live cache's after it
(:func:`sisock_core.assembly.assemble`), and summaries are used only up to that final
time, so decimated and raw answers see the same series.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pluggy

from sisock_core import cancel as _cancel
from sisock_core import summaries as S
from sisock_core.answersize import bound_answer_size
from sisock_core.assembly import assemble
from sisock_core.decimate import decimate_on_grid, decimate_timeline
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


def summary_grid(span: float, limit: int | None, stride: float | None) -> tuple[float, float] | None:
    """``(tier, grid width)`` for a decimated answer over ``span`` seconds of data, or None.

    The bucket width the call needs is ``span / (limit // 2 - 1)`` (as
    :func:`sisock_core.decimate.bucket_starts` for ``max_points``) or ``2 * min_stride``,
    the wider; the tier is the coarsest no wider than that, and the grid the smallest
    multiple of the tier not narrower (so at most ``limit`` points per field).
    """
    if span <= 0:
        return None
    widths = []
    if limit:
        cap = max(1, limit // 2)
        widths.append(span / (cap - 1) if cap > 1 else 2.0 * span)
    if stride:
        widths.append(2.0 * stride)
    if not widths:
        return None
    tier = S.choose_tier(max(widths))
    if tier is None:
        return None
    return tier, S.grid_width(max(widths), tier)


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
        summaries: Any = None,
    ) -> None:
        self.node = node
        self.pm = pm
        self.plugin_name = plugin_name
        self.max_points = max_points
        self.clock = clock
        #: Object with ``list_fields(start, end)`` and ``read_range(fields, start, end)``
        #: answering for live plugins when their hooks return None.
        self.live_cache = live_cache
        #: A :class:`~sisock_core.summarystore.SummaryStore` (or None) for long ranges.
        self.summaries = summaries
        #: Called with a message when the summary store fails (the answer comes from raw data).
        self.on_summary_failure: Callable[[str], None] | None = None
        self.summary_failures = 0
        #: A :class:`~sisock_core.assembly.Seam` when archive and live cache are assembled.
        self.seam: Any = None
        #: Called with the problems an assembly found (``[(key, message)]``).
        self.on_assembly_problems: Callable[[list], None] | None = None

    # -- helpers ---------------------------------------------------------------

    def _range(self, start: Any, end: Any) -> tuple[float, float]:
        try:
            return resolve_range(start, end, self.clock)
        except TimeRangeError as exc:
            raise RequestError(str(exc)) from exc

    def _call(self, hook: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.pm.hook, hook)(node=self.node, **kwargs)
        except _cancel.Cancelled:
            raise
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
        elif self.seam is not None and self.live_cache is not None:
            fields = list(fields)
            have = {f.name for f in fields}
            fields += [f for f in self.live_cache.list_fields(t0, t1) if f.name not in have]
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
        raw_names, answer_bytes = names, 0
        if self.summaries is not None and (limit or stride):
            raw_names, answer_bytes = self._from_summaries(names, t0, t1, stride, limit, result)
        if raw_names:
            self._from_raw(raw_names, t0, t1, stride, limit, result, answer_bytes)
        return result

    def _read(self, names: Sequence[str], t0: float, t1: float) -> Mapping[str, Timeline]:
        """The samples of ``names`` in ``[t0, t1)``, checked: the plugin's, the live cache's,
        or both assembled (see the module docstring)."""
        final = self.seam.snapshot() if self.seam is not None else None  # before the archive read
        timelines = self._read_archive(names, t0, t1)
        if timelines is None:
            return self._checked(
                self.live_cache.read_range(list(names), t0, t1) if self.live_cache is not None else {})
        if final is None or self.live_cache is None:
            return timelines
        canonical = self._call("resolve_fields", fields=list(names)) or {}
        out, problems = assemble(names, timelines, self.live_cache.read_range, final, canonical, t0, t1)
        if problems and self.on_assembly_problems is not None:
            self.on_assembly_problems(problems)
        _cancel.check()
        return out

    def _read_archive(self, names: Sequence[str], t0: float, t1: float) -> Mapping[str, Timeline] | None:
        """The plugin's ``read_range`` answer, checked (None: the plugin has none)."""
        _cancel.check()
        timelines = self._call("read_range", fields=list(names), start=t0, end=t1)
        return None if timelines is None else self._checked(timelines)

    def _checked(self, timelines: Mapping[str, Any]) -> dict[str, Timeline]:
        out = {}
        for tl_name, tl in dict(timelines).items():
            if not isinstance(tl, Timeline):
                raise PluginFailure(
                    f"node {self.node.name!r}: plugin {self.plugin_name!r} returned "
                    f"{type(tl).__name__} for timeline {tl_name!r}; expected Timeline"
                )
            out[tl_name] = tl
        _cancel.check()
        return out

    def _from_raw(self, names: Sequence[str], t0: float, t1: float, stride: float | None,
                  limit: int | None, result: dict, answer_bytes: int = 0) -> None:
        """Answer ``names`` from raw samples decimated as they come (today's path);
        ``answer_bytes``: the size of what the summaries answered already."""
        wanted = set(names)
        for tl_name, tl in self._read(names, t0, t1).items():
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

    def _from_summaries(self, names: list[str], t0: float, t1: float, stride: float | None,
                        limit: int | None, result: dict) -> tuple[list[str], int]:
        """Answer what the summaries can (see the module docstring); return the other names
        and the answer's size so far (the bound is on the whole answer)."""
        if summary_grid(t1 - t0, limit, stride) is None:
            return names, 0  # finer than the finest tier even over the whole range: raw data
        canonical = dict(self._call("resolve_fields", fields=list(names)) or {})
        try:
            found = self.summaries.series({canonical.get(n, n) for n in names})
        except Exception as exc:  # a broken store is a cache miss, never a wrong answer
            self._summary_failure(exc)
            return names, 0
        infos = {n: found[canonical.get(n, n)] for n in names if canonical.get(n, n) in found}
        infos = {n: i for n, i in infos.items() if i.kind in ("f", "i", "u")}
        if not infos:
            return names, 0
        firsts = [i.t_first for i in infos.values() if i.t_first is not None]
        lasts = [math.inf if i.covered_until is not None else i.t_last
                 for i in infos.values() if i.t_last is not None]
        lo = max(t0, min(firsts)) if firsts else t0
        hi = min(t1, max(lasts) + 1e-6) if lasts and self.seam is None else t1  # live data runs to now
        chosen = summary_grid(hi - lo, limit, stride)
        if chosen is None:
            return names, 0
        tier, grid = chosen
        a = math.ceil(t0 / grid) * grid
        b = math.floor(t1 / grid) * grid
        groups: dict[str, list[str]] = {}
        for n, i in infos.items():
            groups.setdefault(i.timeline, []).append(n)
        plan = []  # (timeline, fields, cut)
        for tl_name, members in groups.items():
            cov = [infos[m].covered_until for m in members]
            cut = b if all(c is None for c in cov) else min(b, math.floor(min(c for c in cov if c is not None) / grid) * grid)
            if self.seam is not None:  # summaries hold the archive only: the live tail is read raw
                lasts_here = [infos[m].t_last for m in members if infos[m].t_last is not None]
                cut = min(cut, math.floor(min(lasts_here) / grid) * grid) if lasts_here else a
            if cut > a:
                plan.append((tl_name, members, cut))
        if not plan:
            return names, 0
        series = [infos[m] for _, members, _ in plan for m in members]
        last_cut = max(c for _, _, c in plan)
        try:
            buckets = self.summaries.read(series, S.TIERS.index(tier), a, last_cut, check=_cancel.check)
        except _cancel.Cancelled:
            raise
        except Exception as exc:
            self._summary_failure(exc)
            return names, 0
        handled = [m for _, members, _ in plan for m in members]
        if limit and sum(int(buckets[infos[m].id].n.sum()) for _, members, _ in plan
                         for m in members[:1]) <= limit:
            return names, 0  # few samples: the raw path returns them as they are
        # Raw samples of the partial buckets at the start and of what follows the cuts.
        left = self._read(handled, t0, a) if a > t0 else {}
        min_cut = min(c for _, _, c in plan)
        right = self._read(handled, min_cut, t1) if t1 > min_cut else {}
        answer_bytes = 0
        for tl_name, members, cut in plan:
            kinds = {m: infos[m].kind for m in members}
            parts = [self._raw_part(left, members, t0, a, grid)]
            mid = {m: buckets[infos[m].id] for m in members}
            if cut < last_cut:
                mid = {m: b.between(tier, a, cut) for m, b in mid.items()}
            if any(len(v) for v in mid.values()):
                parts.append(S.decimate_buckets(mid, tier, grid, kinds))
            parts.append(self._raw_part(right, members, cut, t1, grid))
            parts = [p for p in parts if p is not None and p[0].size]
            if not parts:
                continue
            t = np.concatenate([p[0] for p in parts])
            cols = {m: np.concatenate([p[1][m] for p in parts]) for m in members}
            answer_bytes = bound_answer_size(answer_bytes, t, cols)
            for m in members:
                result["data"][m] = to_wire_list(cols[m])
            finalized = [tl.finalized_until for tl in right.values() if tl.finalized_until is not None
                         and set(members) & tl.data.keys()]
            result["timeline"][tl_name] = {
                "t": to_wire_list(t),
                "finalized_until": max(finalized) if finalized else float(t[-1]),
            }
        done = set(handled)
        return [n for n in names if n not in done], answer_bytes

    @staticmethod
    def _raw_part(timelines: Mapping[str, Timeline], members: list[str], t0: float, t1: float,
                  grid: float) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        """Raw samples of ``members`` in ``[t0, t1)`` decimated on the grid."""
        t = None
        cols: dict[str, np.ndarray] = {}
        for tl in timelines.values():
            have = [m for m in members if m in tl.data]
            if not have:
                continue
            lo, hi = np.searchsorted(tl.t, [t0, t1], side="left")
            if t is not None and not np.array_equal(t, tl.t[lo:hi]):
                raise PluginFailure(f"fields {members} of one timeline came back with different times")
            t = tl.t[lo:hi]
            for m in have:
                cols[m] = tl.data[m][lo:hi]
        if t is None or t.size == 0:
            return None
        for m in members:
            if m not in cols:
                cols[m] = np.full(t.size, np.nan)
        return decimate_on_grid(t, cols, grid)

    def _summary_failure(self, exc: BaseException) -> None:
        self.summary_failures += 1
        if self.on_summary_failure is not None:
            self.on_summary_failure(f"{type(exc).__name__}: {exc}")
