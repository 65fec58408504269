"""The bounded live cache of nodes whose plugin pushes samples (pure numpy, no Twisted).

Live plugins (``sensors``, ``datafeed``) implement the ``subscribe`` hook and hand
batches of samples to the core; the core keeps the last ``buffer_time`` seconds
here and answers ``get_fields`` / ``get_data`` from it.

Layout. Fields published together (one ``append`` call) share a *timeline*: one
time array and one value array per field, sorted by time. Each array has a
capacity and a live region ``[lo:hi)``:

* appending writes past ``hi``: amortized O(1). When the end of the arrays is
  reached, the live region is copied to new arrays of twice its size (so the next
  copy is at least as many appends away as samples were copied);
* samples older than ``now - buffer_time`` (``now`` from an injectable clock) are
  dropped by moving ``lo`` (a binary search), and so are the oldest samples of a
  timeline over ``max_samples``; memory is at most about twice the live data;
* range queries are two ``searchsorted`` calls and return *views*, no copy.

Written elements are never modified: appends only write past ``hi`` and every
reshaping (growth, compaction, type promotion, late samples) allocates new
arrays. So views handed to readers stay valid after the lock is released, and a
query holds the lock for microseconds only.

Types: numbers (``float64``, or ``int64`` while every value is an integer), bools
and strings (object arrays). A field missing from a batch of its timeline gets a
missing value: ``NaN`` for numbers (an ``int64`` field becomes ``float64``),
``None`` for strings and bools (a bool field then becomes an object array).
Values of the wrong type for a field are stored as missing and reported.

Thread safety: every public method takes one lock; ``append`` may be called from
any thread.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, Mapping, Sequence

import attrs
import numpy as np

from sisock_core.model import Field, Timeline

#: Default window (seconds), as the original data-feed node (env ``BUFFER_TIME``).
DEFAULT_BUFFER_TIME = 3600.0
#: Default cap on samples kept per timeline (1 h at ~280 Hz).
DEFAULT_MAX_SAMPLES = 1_000_000
#: Smallest array capacity allocated for a timeline.
MIN_CAPACITY = 64
#: Samples used to estimate a timeline's nominal interval.
INTERVAL_SAMPLES = 64


class LiveCacheError(ValueError):
    """A batch that cannot be stored at all (the message says why)."""


@attrs.frozen
class CacheStats:
    """Memory and content of a :class:`LiveCache` at one moment."""

    timelines: int
    fields: int
    rows: int  #: timestamps held, summed over timelines
    samples: int  #: field values held (rows x fields of each timeline)
    bytes: int  #: bytes of all numpy arrays allocated (strings' objects not counted)
    dropped_old: int  #: rows dropped for being older than the window
    dropped_cap: int  #: rows dropped by ``max_samples`` while still inside the window
    per_field: Mapping[str, int] = attrs.field(factory=dict)  #: bytes per field (own array + share of t)

    @property
    def bytes_per_sample(self) -> float:
        return self.bytes / self.samples if self.samples else 0.0


@attrs.define
class Appended:
    """What :meth:`LiveCache.append` stored: the batch as kept, and the problems found.

    ``t`` is sorted with finite times only; ``data`` holds the fields that went in,
    converted (what the core pushes to consumers on the node's live topic).
    """

    t: np.ndarray
    data: dict[str, np.ndarray]
    problems: list[str] = attrs.field(factory=list)


# -- value conversion ------------------------------------------------------------------


def _type_of(dtype: np.dtype) -> str:
    return {"f": "number", "i": "number", "b": "bool"}.get(dtype.kind, "string")


def to_column(values: Any) -> np.ndarray:
    """Convert one field's values to a storable array (float64, int64, bool or str objects).

    Raises :class:`LiveCacheError` naming the problem (mixed or unsupported types).
    """
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=_guess(values))
    if arr.ndim != 1:
        raise LiveCacheError(f"expected a 1-D sequence of values, got shape {arr.shape}")
    kind = arr.dtype.kind
    if kind == "f":
        return arr.astype(np.float64, copy=False)
    if kind == "i":
        return arr.astype(np.int64, copy=False)
    if kind == "u":
        if arr.size and arr.max() > np.iinfo(np.int64).max:
            return arr.astype(np.float64)
        return arr.astype(np.int64)
    if kind == "b":
        return arr
    if kind == "U":
        return arr.astype(object)
    if kind == "S":
        return np.array([v.decode("utf-8", "replace") for v in arr.tolist()], dtype=object)
    if kind == "O":
        return _object_column(arr.tolist())
    raise LiveCacheError(f"unsupported value type {arr.dtype}")


def _guess(values: Any) -> Any:
    """dtype for ``np.asarray``: let numpy pick, except for lists mixing types."""
    if isinstance(values, (list, tuple)):
        types = {type(v) for v in values}
        if len(types) > 1 and not types <= {int, float}:
            return object
        if types == {int}:  # keep Python ints exact (big ones become float later)
            try:
                np.asarray(values, dtype=np.int64)
            except OverflowError:
                return np.float64
    return None


def _object_column(items: list) -> np.ndarray:
    if all(isinstance(v, str) for v in items):
        return np.array(items, dtype=object)
    if all(isinstance(v, (bool, np.bool_)) for v in items):
        return np.array(items, dtype=bool)
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
           for v in items):
        if all(isinstance(v, (int, np.integer)) for v in items):
            try:
                return np.array(items, dtype=np.int64)
            except OverflowError:
                pass
        return np.array(items, dtype=np.float64)
    kinds = sorted({type(v).__name__ for v in items})
    raise LiveCacheError(f"values of mixed or unsupported types ({', '.join(kinds)})")


# -- one timeline ----------------------------------------------------------------------


class _Column:
    __slots__ = ("values", "type", "first", "last", "units", "description")

    def __init__(self, values: np.ndarray, type_: str, units: str | None, description: str | None):
        self.values = values
        self.type = type_  # wire type, kept when the storage is promoted
        self.first = math.inf  # time of the first and last real (non-missing) sample
        self.last = -math.inf
        self.units = units
        self.description = description


def _missing(dtype: np.dtype) -> Any:
    return np.nan if dtype.kind == "f" else None


def _can_hold_missing(dtype: np.dtype) -> bool:
    return dtype.kind in "fO"


def _promoted(dtype: np.dtype) -> np.dtype:
    """The storage that can also hold a missing value: int -> float64, bool -> object."""
    return np.dtype(np.float64) if dtype.kind == "i" else np.dtype(object)


class _TimelineBuffer:
    """Sorted samples of one timeline: ``t[lo:hi]`` and one array per field."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.t = np.empty(0, dtype=np.float64)
        self.cols: dict[str, _Column] = {}
        self.lo = 0
        self.hi = 0

    @property
    def rows(self) -> int:
        return self.hi - self.lo

    @property
    def capacity(self) -> int:
        return self.t.size

    def nbytes(self) -> int:
        return self.t.nbytes + sum(c.values.nbytes for c in self.cols.values())

    # -- reshaping (always into new arrays) --------------------------------------

    def _reallocate(self, capacity: int) -> None:
        lo, hi, n = self.lo, self.hi, self.hi - self.lo
        t = np.empty(capacity, dtype=np.float64)
        t[:n] = self.t[lo:hi]
        self.t = t
        for col in self.cols.values():
            v = np.empty(capacity, dtype=col.values.dtype)
            v[:n] = col.values[lo:hi]
            col.values = v
        self.lo, self.hi = 0, n

    def _room_for(self, n: int) -> None:
        if self.hi + n <= self.capacity:
            return
        need = self.rows + n
        self._reallocate(max(MIN_CAPACITY, 2 * need))

    def shrink_if_sparse(self) -> None:
        """Give memory back when the live data is under a quarter of the capacity."""
        if self.capacity > MIN_CAPACITY and 4 * self.rows < self.capacity:
            self._reallocate(max(MIN_CAPACITY, 2 * self.rows))

    def _promote(self, col: _Column) -> None:
        dtype = _promoted(col.values.dtype)
        v = np.empty(self.capacity, dtype=dtype)
        v[self.lo:self.hi] = col.values[self.lo:self.hi]
        col.values = v

    # -- appending ---------------------------------------------------------------

    def append(self, t: np.ndarray, data: Mapping[str, np.ndarray], units: Mapping[str, str | None],
               descriptions: Mapping[str, str | None], out: "Appended", *,
               check_order: bool = True) -> None:
        """Append sorted ``t`` (n > 0) and its columns (already converted)."""
        if check_order and self.hi > self.lo and t[0] < self.t[self.hi - 1]:
            self._merge(t, data, units, descriptions, out)
            return
        n = t.size
        self._room_for(n)
        lo, hi = self.hi, self.hi + n
        self.t[lo:hi] = t
        for name, col in self.cols.items():
            values = data.get(name)
            if values is not None:
                values = self._fit(name, col, values, out)
            if values is None:
                if not _can_hold_missing(col.values.dtype):
                    self._promote(col)
                col.values[lo:hi] = _missing(col.values.dtype)
            else:
                col.values[lo:hi] = values
                col.first = min(col.first, float(t[0]))
                col.last = max(col.last, float(t[-1]))
        for name, values in data.items():
            if name in self.cols:
                continue
            dtype = values.dtype if (self.rows == 0 or _can_hold_missing(values.dtype)) \
                else _promoted(values.dtype)
            col = _Column(np.empty(self.capacity, dtype=dtype), _type_of(values.dtype),
                          units.get(name), descriptions.get(name))
            if self.rows:
                col.values[self.lo:self.hi] = _missing(dtype)
            col.values[lo:hi] = values
            col.first, col.last = float(t[0]), float(t[-1])
            self.cols[name] = col
        self.hi = hi

    def _fit(self, name: str, col: _Column, values: np.ndarray, out: "Appended") -> np.ndarray | None:
        """``values`` made storable in ``col`` (promoting it if needed), or None if they are not."""
        have, got = col.values.dtype.kind, values.dtype.kind
        if col.type == "number" and got in "fi":
            if have == "i" and got == "f":
                self._promote(col)
            return values
        if col.type == "bool" and got == "b":
            return values
        if col.type == "string" and got == "O":
            return values
        out.problems.append(
            f"field {name!r} of timeline {self.name!r} holds {col.type} values; got "
            f"{_type_of(values.dtype)} values, stored as missing"
        )
        out.data.pop(name, None)
        return None

    def _merge(self, t: np.ndarray, data: Mapping[str, np.ndarray], units: Mapping[str, str | None],
               descriptions: Mapping[str, str | None], out: "Appended") -> None:
        """Late samples: rebuild the timeline with them in time order (rare, O(rows))."""
        fresh = _TimelineBuffer(self.name)
        fresh.append(self.t[self.lo:self.hi], {k: c.values[self.lo:self.hi] for k, c in self.cols.items()},
                     {}, {}, Appended(t, {}, out.problems))
        for k, c in self.cols.items():
            fc = fresh.cols[k]
            fc.type, fc.first, fc.last, fc.units, fc.description = c.type, c.first, c.last, c.units, c.description
        fresh.append(t, data, units, descriptions, out, check_order=False)
        order = np.argsort(fresh.t[fresh.lo:fresh.hi], kind="stable")
        n = order.size
        capacity = max(MIN_CAPACITY, 2 * n)
        new_t = np.empty(capacity, dtype=np.float64)
        new_t[:n] = fresh.t[fresh.lo:fresh.hi][order]
        for col in fresh.cols.values():
            v = np.empty(capacity, dtype=col.values.dtype)
            v[:n] = col.values[fresh.lo:fresh.hi][order]
            col.values = v
        self.t, self.cols, self.lo, self.hi = new_t, fresh.cols, 0, n

    def new_rows(self, t: np.ndarray, data: Mapping[str, np.ndarray]) -> np.ndarray:
        """Mask of the rows of a batch that are not duplicates: a row is one when its time
        is held and every field of the batch already has a value there."""
        held = self.t[self.lo:self.hi]
        idx = np.searchsorted(held, t, side="left")
        inside = idx < held.size
        dup = inside.copy()
        dup[inside] = held[idx[inside]] == t[inside]
        if not dup.any():
            return ~dup
        rows = self.lo + idx[dup]
        for name in data:
            col = self.cols.get(name)
            if col is None:
                return np.ones(t.size, dtype=bool)
            values = col.values[rows]
            if values.dtype.kind == "f":
                present = ~np.isnan(values)
            elif values.dtype.kind == "O":
                present = np.array([v is not None for v in values], dtype=bool)
            else:
                present = np.ones(values.size, dtype=bool)
            dup[dup] = present
            if not dup.any():
                break
            rows = self.lo + idx[dup]
        return ~dup

    # -- dropping ----------------------------------------------------------------

    def drop_before(self, cutoff: float) -> int:
        """Drop samples with t < cutoff; return how many."""
        if self.hi == self.lo:
            return 0
        i = int(np.searchsorted(self.t[self.lo:self.hi], cutoff, side="left"))
        self.lo += i
        if i:
            self._forget_stale_fields()
        return i

    def drop_oldest(self, keep: int) -> int:
        """Keep at most ``keep`` rows; return how many were dropped."""
        extra = self.rows - keep
        if extra <= 0:
            return 0
        self.lo += extra
        self._forget_stale_fields()
        return extra

    def _forget_stale_fields(self) -> None:
        if self.hi == self.lo:
            self.cols.clear()
            return
        start = float(self.t[self.lo])
        for name in [k for k, c in self.cols.items() if c.last < start]:
            del self.cols[name]

    # -- reading -----------------------------------------------------------------

    def interval(self) -> float | None:
        n = min(self.rows, INTERVAL_SAMPLES)
        if n < 2:
            return None
        step = float(np.median(np.diff(self.t[self.hi - n:self.hi])))
        return float(f"{step:.4g}") if step > 0 else None  # 4 digits: times carry ~1e-7 s noise

    def window(self, start: float, end: float) -> tuple[int, int]:
        live = self.t[self.lo:self.hi]
        i0, i1 = np.searchsorted(live, (start, end), side="left")
        return self.lo + int(i0), self.lo + int(i1)


# -- the cache -------------------------------------------------------------------------


class LiveCache:
    """The last ``buffer_time`` seconds of every field a live plugin published.

    ``clock`` gives the current UNIX time (inject a fake one in tests);
    ``max_samples`` caps the rows kept per timeline whatever the window.
    """

    def __init__(
        self,
        buffer_time: float = DEFAULT_BUFFER_TIME,
        *,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (isinstance(buffer_time, (int, float)) and math.isfinite(buffer_time) and buffer_time > 0):
            raise ValueError(f"live cache: buffer_time must be a positive number of seconds, got {buffer_time!r}")
        if not isinstance(max_samples, int) or max_samples < 1:
            raise ValueError(f"live cache: max_samples must be a positive integer, got {max_samples!r}")
        self.buffer_time = float(buffer_time)
        self.max_samples = max_samples
        self.clock = clock
        self._lock = threading.Lock()
        self._timelines: dict[str, _TimelineBuffer] = {}
        self._timeline_of: dict[str, str] = {}  # field -> timeline
        self.dropped_old = 0
        self.dropped_cap = 0

    # -- ingest --------------------------------------------------------------------

    def append(
        self,
        timeline: str,
        t: Any,
        data: Mapping[str, Any],
        *,
        units: Mapping[str, str | None] | None = None,
        descriptions: Mapping[str, str | None] | None = None,
    ) -> Appended:
        """Add one batch: ``t`` (n times) and ``{field: n values}`` sharing ``timeline``.

        Fields of the wrong length or type are left out (or stored as missing)
        and rows with a non-finite time are dropped; the rest of the batch is kept
        and each problem is described in the result's ``problems``. Raises
        :class:`LiveCacheError` only if the timeline name or the times are unusable.
        """
        if not isinstance(timeline, str) or not timeline:
            raise LiveCacheError(f"timeline must be a non-empty string, got {timeline!r}")
        try:
            tt = np.asarray(t, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise LiveCacheError(f"timeline {timeline!r}: times are not numbers ({exc})") from None
        if tt.ndim != 1:
            raise LiveCacheError(f"timeline {timeline!r}: times must be 1-D, got shape {tt.shape}")
        out = Appended(tt[:0], {})
        cols: dict[str, np.ndarray] = {}
        for name, values in data.items():
            if not isinstance(name, str) or not name:
                out.problems.append(f"timeline {timeline!r}: field name {name!r} is not a non-empty string")
                continue
            try:
                col = to_column(values)
            except LiveCacheError as exc:
                out.problems.append(f"field {name!r} of timeline {timeline!r}: {exc}")
                continue
            except (TypeError, ValueError) as exc:
                out.problems.append(f"field {name!r} of timeline {timeline!r}: unusable values ({exc})")
                continue
            if col.size != tt.size:
                out.problems.append(
                    f"field {name!r} of timeline {timeline!r} has {col.size} values for {tt.size} times"
                )
                continue
            cols[name] = col
        if tt.size == 0 or not cols:
            return out
        good = np.isfinite(tt)
        if not good.all():
            out.problems.append(
                f"timeline {timeline!r}: dropped {int((~good).sum())} rows with a non-finite time"
            )
            tt = tt[good]
            cols = {k: v[good] for k, v in cols.items()}
            if tt.size == 0:
                return out
        if tt.size > 1 and (np.diff(tt) < 0).any():
            order = np.argsort(tt, kind="stable")
            tt = tt[order]
            cols = {k: v[order] for k, v in cols.items()}
        out.t, out.data = tt, dict(cols)
        with self._lock:
            self._append_locked(timeline, tt, cols, units or {}, descriptions or {}, out)
        return out

    def _append_locked(self, timeline: str, t: np.ndarray, cols: dict[str, np.ndarray],
                       units: Mapping[str, str | None], descriptions: Mapping[str, str | None],
                       out: Appended) -> None:
        for name in cols:
            owner = self._timeline_of.get(name)
            if owner is not None and owner != timeline and owner in self._timelines:
                out.problems.append(
                    f"field {name!r} moved from timeline {owner!r} to {timeline!r}; its older samples are dropped"
                )
                previous = self._timelines[owner]
                previous.cols.pop(name, None)
                if not previous.cols:
                    del self._timelines[owner]
            self._timeline_of[name] = timeline
        buf = self._timelines.get(timeline)
        if buf is None:
            buf = self._timelines[timeline] = _TimelineBuffer(timeline)
        elif buf.rows and t[0] <= buf.t[buf.hi - 1]:
            fresh = buf.new_rows(t, cols)
            if not fresh.all():
                out.problems.append(
                    f"timeline {timeline!r}: dropped samples at times it already holds with values "
                    "(a duplicate message?); the first ones are kept")
                t = t[fresh]
                cols = {k: v[fresh] for k, v in cols.items()}
                out.t = t
                out.data = {k: cols[k] for k in out.data if k in cols}
                if t.size == 0:
                    return
        buf.append(t, cols, units, descriptions, out)
        self._prune_one(buf, self.clock() - self.buffer_time)

    # -- pruning -------------------------------------------------------------------

    def _prune_one(self, buf: _TimelineBuffer, cutoff: float) -> None:
        old = buf.drop_before(cutoff)
        cap = buf.drop_oldest(self.max_samples)
        self.dropped_old += old
        self.dropped_cap += cap
        if not (old or cap or not buf.cols):
            return
        if buf.rows == 0 or not buf.cols:
            del self._timelines[buf.name]
        else:
            buf.shrink_if_sparse()
        for name in [k for k, tl in self._timeline_of.items()
                     if tl == buf.name and (buf.name not in self._timelines or k not in buf.cols)]:
            del self._timeline_of[name]

    def _prune_locked(self) -> None:
        cutoff = self.clock() - self.buffer_time
        for buf in list(self._timelines.values()):
            self._prune_one(buf, cutoff)

    def prune(self) -> None:
        """Drop what fell out of the window (queries and appends also do it)."""
        with self._lock:
            self._prune_locked()

    # -- queries -------------------------------------------------------------------

    def list_fields(self, start: float, end: float) -> list[Field]:
        """Fields with samples in ``[start, end)`` within the window, with their type."""
        out: list[Field] = []
        with self._lock:
            self._prune_locked()
            for name, buf in self._timelines.items():
                interval = buf.interval()
                first_row = float(buf.t[buf.lo])
                for fname, col in buf.cols.items():
                    if max(col.first, first_row) < end and col.last >= start:
                        out.append(Field(name=fname, timeline=name, type=col.type,  # type: ignore[arg-type]
                                         units=col.units, description=col.description,
                                         interval=interval))
        return out

    def read_range(self, fields: Sequence[str], start: float, end: float) -> dict[str, Timeline]:
        """Samples of ``fields`` in ``[start, end)`` by timeline (read-only views)."""
        spans: dict[str, tuple[int, int, float]] = {}
        picked: dict[str, dict[str, np.ndarray]] = {}
        times: dict[str, np.ndarray] = {}
        with self._lock:
            self._prune_locked()
            for name in dict.fromkeys(fields):
                tl = self._timeline_of.get(name)
                buf = self._timelines.get(tl) if tl is not None else None
                if buf is None or name not in buf.cols:
                    continue
                if tl not in spans:
                    i0, i1 = buf.window(start, end)
                    spans[tl] = (i0, i1, float(buf.t[buf.hi - 1]))
                    times[tl] = buf.t[i0:i1]
                    picked[tl] = {}
                i0, i1, _ = spans[tl]
                picked[tl][name] = buf.cols[name].values[i0:i1]
        result: dict[str, Timeline] = {}
        for tl, cols in picked.items():
            for arr in (times[tl], *cols.values()):
                arr.flags.writeable = False
            result[tl] = Timeline(t=times[tl], data=cols, finalized_until=spans[tl][2])
        return result

    def fields(self) -> dict[str, str]:
        """``{field: timeline}`` of everything held (after pruning)."""
        with self._lock:
            self._prune_locked()
            return dict(self._timeline_of)

    # -- memory --------------------------------------------------------------------

    def stats(self) -> CacheStats:
        """Counts and bytes held (after pruning), for the periodic log line and the benchmark."""
        with self._lock:
            self._prune_locked()
            rows = samples = nbytes = 0
            per_field: dict[str, int] = {}
            for buf in self._timelines.values():
                rows += buf.rows
                samples += buf.rows * len(buf.cols)
                nbytes += buf.nbytes()
                share = buf.t.nbytes // max(1, len(buf.cols))
                for name, col in buf.cols.items():
                    per_field[name] = col.values.nbytes + share
            return CacheStats(
                timelines=len(self._timelines),
                fields=sum(len(b.cols) for b in self._timelines.values()),
                rows=rows, samples=samples, bytes=nbytes,
                dropped_old=self.dropped_old, dropped_cap=self.dropped_cap,
                per_field=per_field,
            )


# -- pushing new samples to consumers ---------------------------------------------------


Batch = tuple[str, np.ndarray, Mapping[str, np.ndarray]]  # (timeline, t, {field: values})


def batches_to_events(batches: Sequence[Batch]) -> list[dict]:
    """Merge published batches into payloads shaped like ``get_data`` answers.

    Consecutive batches of a timeline with the same fields are joined, so a feed
    publishing at 10 Hz gives one payload per push. Each payload is
    ``{"data": {field: [values]}, "timeline": {name: {"t": [times],
    "finalized_until": last time}}}``; a timeline whose field set changed within
    the batches continues in a second payload, so each payload is consistent.
    """
    groups: list[tuple[str, tuple[str, ...], list[np.ndarray], dict[str, list[np.ndarray]]]] = []
    last_of: dict[str, int] = {}
    for timeline, t, data in batches:
        if t.size == 0 or not data:
            continue
        names = tuple(data)
        i = last_of.get(timeline)
        if i is not None and groups[i][1] == names:
            groups[i][2].append(t)
            for k in names:
                groups[i][3][k].append(data[k])
            continue
        last_of[timeline] = len(groups)
        groups.append((timeline, names, [t], {k: [data[k]] for k in names}))
    events: list[dict] = []
    placed_at: dict[str, int] = {}  # timeline -> index of the event holding its latest group
    for timeline, names, ts, cols in groups:
        k = placed_at.get(timeline, -1) + 1
        while k < len(events) and (timeline in events[k]["timeline"]
                                   or any(n in events[k]["data"] for n in names)):
            k += 1
        if k == len(events):
            events.append({"data": {}, "timeline": {}})
        t = np.concatenate(ts) if len(ts) > 1 else ts[0]
        events[k]["timeline"][timeline] = {"t": t.tolist(), "finalized_until": float(t[-1])}
        for n in names:
            v = np.concatenate(cols[n]) if len(cols[n]) > 1 else cols[n][0]
            events[k]["data"][n] = v.tolist()
        placed_at[timeline] = k
    return events


__all__ = ["LiveCache", "LiveCacheError", "CacheStats", "Appended", "to_column", "DEFAULT_BUFFER_TIME",
           "DEFAULT_MAX_SAMPLES", "batches_to_events"]
