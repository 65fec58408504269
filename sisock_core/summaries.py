"""Multi-resolution summaries of archived numeric series (pure numpy: no Twisted, no database).

A *tier* is a bucket width in seconds; its buckets are ``[k * width, (k + 1) * width)``
(aligned to the UNIX epoch). For one numeric field and one bucket, a summary keeps:

* ``n``: samples (NaN included), ``count``: samples that are not NaN, ``vsum``: their sum
  (so means are ``vsum / count``);
* ``vmin`` / ``vmax`` with ``t_min`` / ``t_max``, the times of their first occurrences
  (NaN ignored; an all-NaN bucket has ``count == 0`` and NaN extrema);
* ``first`` / ``last`` with ``t_first`` / ``t_last``: the bucket's first and last samples.

Summaries merge exactly (min of minima, sum of sums, ...), so a coarser tier is computed
from a finer one (:func:`rollup`), pieces of one bucket written at different times (a
file that grew) are combined (:func:`merge`), and :func:`decimate_buckets` gives, point
for point, what :func:`sisock_core.decimate.decimate_on_grid` gives on the raw samples,
for any grid width that is a multiple of the tier's.

:func:`pack` / :func:`unpack` turn buckets into compact bytes for a database row
(zstd; rows written by earlier versions with zlib are still read).
"""

from __future__ import annotations

import operator
import struct
import threading
import zlib
from typing import Mapping, Sequence

import attrs
import numpy as np
import zstandard

from sisock_core.decimate import _first_equal, _interleave

try:  # summarize_blocks in C, built at install where there is a compiler
    from sisock_core import _buckets
except ImportError:  # numpy computes the same numbers (summarize_blocks says None)
    _buckets = None

#: Bucket widths (s) kept for every summarized field, finest first. Each is 6-10 times the
#: one before: a query reads at most ~10 buckets per point it returns, and every coarse
#: tier costs a scan a rollup (a 120 s tier, twice the base, cost a quarter of the
#: summaries' writing time and saved reads only for 2-6 day panels).
TIERS: tuple[float, ...] = (60.0, 600.0, 3600.0, 21600.0, 172800.0)

#: The finest tier: what plugins and the core compute from raw samples.
BASE_TIER = TIERS[0]

_INT_COLS = ("k", "n", "count")
_FLOAT_COLS = ("t_first", "t_last", "t_min", "t_max", "first", "last", "vmin", "vmax", "vsum")
_TIME_COLS = ("t_first", "t_last", "t_min", "t_max")
#: Every column of a Buckets, in the order of its fields (one attribute lookup per piece).
_columns = operator.attrgetter(*(_INT_COLS + _FLOAT_COLS))


@attrs.define
class Buckets:
    """Summaries of one field at one tier: parallel arrays, sorted by bucket number ``k``."""

    k: np.ndarray
    n: np.ndarray
    count: np.ndarray
    t_first: np.ndarray
    t_last: np.ndarray
    t_min: np.ndarray
    t_max: np.ndarray
    first: np.ndarray
    last: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray
    vsum: np.ndarray

    @classmethod
    def empty(cls) -> "Buckets":
        return cls(**{c: np.zeros(0, np.int64) for c in _INT_COLS},
                   **{c: np.zeros(0, np.float64) for c in _FLOAT_COLS})

    def __len__(self) -> int:
        return int(self.k.size)

    def take(self, index: np.ndarray | slice) -> "Buckets":
        return Buckets(*[col[index] for col in _columns(self)])

    def between(self, width: float, start: float, end: float) -> "Buckets":
        """The buckets lying wholly in ``[start, end)`` (both multiples of ``width``)."""
        lo, hi = np.searchsorted(self.k, [np.ceil(start / width), np.floor(end / width)])
        return self.take(slice(int(lo), int(hi)))

    @property
    def nbytes(self) -> int:
        return self.k.size * 8 * (len(_INT_COLS) + len(_FLOAT_COLS))  # every column is 8-byte


@attrs.define(eq=False)  # not frozen: one is made per field of a scanned file, and frozen inits cost more
class PackedBuckets:
    """Summaries of one field at one tier as the compiled scan hands them over: the
    stored row already laid out (:func:`pack_many` without ``compressed``) and the columns
    in the kernel's buffers, so that a row is written, and rolled up, without building
    numpy columns one field at a time (:attr:`buckets` builds them when asked;
    :func:`concat_packed` joins many)."""

    width: float  #: the tier
    laid_out: bytes  #: the row before compression (:func:`unpack_row` reads it)
    shared: bytearray  #: k, n (int64), t_first, t_last of the field's timeline, m values each
    columns: bytearray  #: count (int64), t_min, t_max, first, last, vmin, vmax, vsum, m values each
    m: int  #: buckets
    k0: int  #: the first bucket's number
    k1: int  #: the last bucket's number
    t_first: float  #: the first sample's time
    t_last: float  #: the last sample's time

    def __len__(self) -> int:
        return self.m

    @property
    def nbytes(self) -> int:
        """Bytes held (the timeline's shared columns counted with each of its fields)."""
        return len(self.laid_out) + len(self.columns) + len(self.shared)

    @property
    def buckets(self) -> "Buckets":
        """The same buckets as columns (views of the kernel's buffers)."""
        return concat_packed([self])

    def blob(self) -> bytes:
        """The stored row: what :func:`pack` gives for the same buckets."""
        return self.laid_out[:_HEADER.size] + compress(self.laid_out[_HEADER.size:])


def concat_packed(parts: Sequence[PackedBuckets]) -> "Buckets":
    """:func:`concat` of :class:`PackedBuckets` (their buffers joined column by column)."""
    if not parts:
        return Buckets.empty()
    total = sum(p.m for p in parts)
    if len(parts) == 1:
        p = parts[0]
        head, cols = p.shared, p.columns
    else:  # PackedBuckets come from the compiled kernel: it is there
        head = _buckets.join_columns([p.shared for p in parts], 4)
        cols = _buckets.join_columns([p.columns for p in parts], 8)
    head = np.frombuffer(head, dtype=np.float64).reshape(4, total)
    cols = np.frombuffer(cols, dtype=np.float64).reshape(8, total)
    return Buckets(head[0].view(np.int64), head[1].view(np.int64), cols[0].view(np.int64), head[2], head[3],
                   cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7])


def as_buckets(b: "Buckets | PackedBuckets") -> "Buckets":
    """``b`` as :class:`Buckets` (its columns if it is :class:`PackedBuckets`)."""
    return b.buckets if isinstance(b, PackedBuckets) else b


def span_of(b: "Buckets | PackedBuckets") -> tuple[float, float, int, int]:
    """Times of the first and last samples and numbers of the first and last buckets of
    ``b`` (not empty; buckets in time order)."""
    if isinstance(b, PackedBuckets):
        return b.t_first, b.t_last, b.k0, b.k1
    return float(b.t_first[0]), float(b.t_last[-1]), int(b.k[0]), int(b.k[-1])


def concat(parts: Sequence[Buckets]) -> Buckets:
    """Buckets of several pieces side by side (not merged, not sorted)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Buckets.empty()
    if len(parts) == 1:
        return parts[0]
    return Buckets(*map(np.concatenate, zip(*map(_columns, parts))))


def summarize(t: np.ndarray, y: np.ndarray, width: float = BASE_TIER) -> Buckets:
    """Summaries of the samples ``(t, y)`` (``t`` ascending) on the tier ``width``."""
    return summarize_many(t, {"": y}, width)[""]


def summarize_many(t: np.ndarray, columns: Mapping[str, np.ndarray],
                   width: float = BASE_TIER) -> dict[str, Buckets]:
    """:func:`summarize` of several fields sharing the times ``t`` (the buckets are found once)."""
    return summarize_timelines([(t, columns)], width)[0]


Parts = np.ndarray | Sequence[np.ndarray]


def summarize_series(series: Sequence[tuple[Parts, Parts]], width: float = BASE_TIER) -> list[Buckets]:
    """:func:`summarize` of many ``(t, y)`` series at once (see :func:`summarize_timelines`)."""
    return [d[""] for d in summarize_timelines([(t, {"": y}) for t, y in series], width)]


def summarize_timelines(timelines: Sequence[tuple[Parts, Mapping[str, Parts]]],
                        width: float = BASE_TIER) -> list[dict[str, Buckets]]:
    """:func:`summarize` of the fields of many timelines at once: ``(t, {field: y})``
    each (``t`` and every ``y`` may be lists of pieces, concatenated; every ``y`` as long
    as ``t``). The buckets of a timeline are found once for all its fields, and every
    value of every timeline is reduced in one numpy pass (what a scanner calls per file).
    A timeline whose times are not ascending is sorted first (stably); float fields
    narrower than float64 are reduced in their own precision, as :func:`summarize` does."""
    out: list[dict[str, Buckets]] = [{} for _ in timelines]
    t_list: list[np.ndarray] = []
    v_list: list[np.ndarray] = []
    where: list[tuple[int, list[str], int]] = []  # (timeline, fields, samples)
    for i, (t, cols) in enumerate(timelines):
        t = _joined(t).astype(np.float64, copy=False)
        order = np.argsort(t, kind="stable") if t.size > 1 and np.any(t[1:] < t[:-1]) else None
        if order is not None:  # once for every field of the timeline
            t = t[order]
        flat = []
        narrow = None  # the bucket bounds of the timeline, for fields reduced in their own precision
        for name, y in cols.items():
            y = _joined(y)
            if y.size != t.size:
                raise ValueError(f"field {name!r}: {y.size} values for {t.size} times")
            if order is not None:
                y = y[order]
            if t.size == 0:
                out[i][name] = Buckets.empty()
            elif y.dtype.kind == "f" and y.dtype != np.float64:
                if narrow is None:
                    starts, ends = _bucket_bounds(np.floor(t / width))
                    narrow = (starts, ends, np.floor(t[starts] / width).astype(np.int64))
                starts, ends, k = narrow
                out[i][name] = _reduce_shared(t, y, k, starts, ends, np.zeros(starts.size, np.int64))
            else:
                flat.append((name, y))
        if not flat:
            continue
        t_list.append(t)
        v_list.extend(y for _, y in flat)
        where.append((i, [name for name, _ in flat], t.size))
    if not where:
        return out
    t = np.concatenate(t_list) if len(t_list) > 1 else t_list[0]
    v = np.concatenate(v_list).astype(np.float64, copy=False) if len(v_list) > 1 else \
        v_list[0].astype(np.float64, copy=False)
    sizes = np.array([w[2] for w in where], dtype=np.int64)
    t_off = np.concatenate(([0], np.cumsum(sizes)))
    kf = np.floor(t / width)
    starts, ends = _bucket_bounds(kf, t_off[1:-1])
    k = kf[starts].astype(np.int64)
    # buckets of each timeline, then of each field (fields of a timeline share its buckets)
    b_off = np.searchsorted(starts, t_off)
    nfields = np.array([len(w[1]) for w in where], dtype=np.int64)
    per_field_buckets = np.repeat(np.diff(b_off), nfields)
    field_first_bucket = np.repeat(b_off[:-1], nfields)
    v_sizes = np.repeat(sizes, nfields)
    v_off = np.concatenate(([0], np.cumsum(v_sizes)))[:-1]
    shift = v_off - np.repeat(t_off[:-1], nfields)  # value index - time index, per field
    total = int(per_field_buckets.sum())
    field_of = np.repeat(np.arange(per_field_buckets.size), per_field_buckets)
    bucket = field_first_bucket[field_of] + (np.arange(total) - np.repeat(
        np.cumsum(per_field_buckets) - per_field_buckets, per_field_buckets))
    shift_b = shift[field_of]
    b = _reduce_shared(t, v, k[bucket], starts[bucket], ends[bucket], shift_b)
    cuts = np.concatenate(([0], np.cumsum(per_field_buckets))).tolist()
    j = 0
    for i, names, _ in where:
        for name in names:
            out[i][name] = b.take(slice(cuts[j], cuts[j + 1]))
            j += 1
    return out


def _joined(parts: Parts) -> np.ndarray:
    if isinstance(parts, np.ndarray):
        return parts
    parts = list(parts)
    return np.concatenate(parts) if len(parts) != 1 else np.asarray(parts[0])


def _reduce_shared(t: np.ndarray, v: np.ndarray, k: np.ndarray, t_starts: np.ndarray, t_ends: np.ndarray,
                   shift: np.ndarray) -> Buckets:
    """Summaries of the buckets ``[t_starts, t_ends)`` of times ``t`` whose values are
    ``v[t_starts + shift : t_ends + shift]`` (the buckets tile ``v``, in order)."""
    n = t_ends - t_starts
    starts = t_starts + shift
    nan = np.isnan(v)
    with np.errstate(invalid="ignore"):  # inf - inf in a sum: NaN, as it should
        if nan.any():
            count = np.add.reduceat((~nan).astype(np.int64), starts)
            vsum = np.add.reduceat(np.where(nan, 0.0, v), starts)
            vmin = np.fmin.reduceat(v, starts)
            vmax = np.fmax.reduceat(v, starts)
        else:  # the same numbers, fewer passes
            count = n.astype(np.int64)
            vsum = np.add.reduceat(v, starts)
            vmin = np.minimum.reduceat(v, starts)
            vmax = np.maximum.reduceat(v, starts)
    i_min = _first_equal(v, vmin, starts, n)
    i_max = _first_equal(v, vmax, starts, n)
    i_min = np.where(i_min < 0, starts, i_min)
    i_max = np.where(i_max < 0, starts, i_max)
    some = count > 0  # the extrema are the values of their first samples (of 0.0 and -0.0, the first)
    vmin = np.where(some, v[i_min], vmin)
    vmax = np.where(some, v[i_max], vmax)
    i_min -= shift
    i_max -= shift
    last = starts + n - 1
    f64 = np.float64
    return Buckets(
        k=k, n=n.astype(np.int64), count=count, t_first=t[t_starts], t_last=t[t_ends - 1], t_min=t[i_min],
        t_max=t[i_max], first=v[starts].astype(f64, copy=False), last=v[last].astype(f64, copy=False),
        vmin=vmin.astype(f64, copy=False), vmax=vmax.astype(f64, copy=False), vsum=vsum.astype(f64, copy=False),
    )


_SPAN_K = struct.Struct("<q")  #: a bucket number in the kernel's shared columns
_SPAN_T = struct.Struct("<d")  #: and a time


def summarize_blocks(times: Sequence, names: Sequence[str], fields: Sequence[Sequence], width: float,
                     second: float, packed: bool = False) -> dict[str, tuple[str, "Buckets | PackedBuckets"]] | None:
    """:func:`summarize_many` of samples still in their blocks, decoded and reduced in one
    compiled pass (no concatenation, no numpy temporaries): ``times`` are the blocks'
    time vectors (int64 ticks, ``second`` ticks per second, ascending), ``fields[i]`` the
    vectors of field ``names[i]`` in the same blocks (float64 or int64; anything with the
    buffer protocol, as spt3g's vectors). Returns ``{name: (dtype kind, buckets)}``, equal
    to the numpy path's; None without the compiled kernel or if the times are not
    ascending. Raises TypeError for a vector of another type, ValueError for lengths
    that differ. With ``packed``, the buckets come as :class:`PackedBuckets`, laid out for
    storage by the same pass."""
    if _buckets is None:
        return None
    got = _buckets.summarize_blocks(float(width), float(second), list(times), [list(f) for f in fields], packed)
    if got is None:
        return None
    m, shared, per_field, *rows, kinds = got
    if m == 0:
        return {name: (kind, Buckets.empty()) for name, kind in zip(names, kinds)}
    if packed:  # the columns are built only if asked for (PackedBuckets.buckets)
        k0, k1 = _SPAN_K.unpack_from(shared, 0)[0], _SPAN_K.unpack_from(shared, 8 * (m - 1))[0]
        t_first, t_last = _SPAN_T.unpack_from(shared, 16 * m)[0], _SPAN_T.unpack_from(shared, 32 * m - 8)[0]
        return {name: (kind, PackedBuckets(width, row, shared, columns, m, k0, k1, t_first, t_last))
                for name, kind, row, columns in zip(names, kinds, rows[0], per_field)}
    head = np.frombuffer(shared, dtype=np.float64).reshape(4, m)
    k, n = head[0].view(np.int64), head[1].view(np.int64)
    t_first, t_last = head[2], head[3]
    out = {}
    for name, kind, columns in zip(names, kinds, per_field):
        c = np.frombuffer(columns, dtype=np.float64).reshape(8, m)
        out[name] = (kind, Buckets(k, n, c[0].view(np.int64), t_first, t_last, c[1], c[2], c[3], c[4], c[5], c[6],
                                   c[7]))
    return out


def _bucket_bounds(kf: np.ndarray, breaks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """First and past-the-end indices of the runs of equal bucket numbers ``kf`` (a run
    also ends at each index of ``breaks``, where one series ends and the next begins)."""
    change = kf[1:] != kf[:-1]
    if breaks is not None and breaks.size:
        change[breaks - 1] = True
    change = np.flatnonzero(change) + 1
    return np.concatenate(([0], change)), np.concatenate((change, [kf.size]))


def _pick_time(values: np.ndarray, times: np.ndarray, per_group: np.ndarray, starts: np.ndarray,
               sizes: np.ndarray) -> np.ndarray:
    """Per group, the earliest time at which ``values`` equals the group's value."""
    hit = values == np.repeat(per_group, sizes)
    cand = np.where(hit, times, np.inf)
    return np.minimum.reduceat(cand, starts)


def merge(parts: Sequence[Buckets], presorted: bool = False) -> Buckets:
    """One summary per bucket number from pieces that may share bucket numbers
    (``presorted``: already ordered by bucket number, then time, as one piece is)."""
    if not presorted:  # pieces apart from each other (rows of one series): in order, nothing to merge
        parts = sorted((p for p in parts if len(p)), key=lambda p: (int(p.k[0]), float(p.t_first[0])))
    b = concat(parts)
    if len(b) == 0:
        return b
    if not presorted:
        if np.all(b.k[1:] > b.k[:-1]):
            return b
        b = b.take(np.lexsort((b.t_first, b.k)))
    change = np.flatnonzero(b.k[1:] != b.k[:-1]) + 1
    if change.size + 1 == len(b):
        return b
    starts = np.concatenate(([0], change))
    sizes = np.diff(np.concatenate((starts, [len(b)])))
    with np.errstate(invalid="ignore"):
        vmin = np.fmin.reduceat(b.vmin, starts)
        vmax = np.fmax.reduceat(b.vmax, starts)
    t_last = np.maximum.reduceat(b.t_last, starts)
    i_last = _first_equal(b.t_last, t_last, starts, sizes)
    t_first = b.t_first[starts]
    t_min = _pick_time(b.vmin, b.t_min, vmin, starts, sizes)
    t_max = _pick_time(b.vmax, b.t_max, vmax, starts, sizes)
    t_min = np.where(np.isfinite(t_min), t_min, t_first)
    t_max = np.where(np.isfinite(t_max), t_max, t_first)
    return Buckets(
        k=b.k[starts], n=np.add.reduceat(b.n, starts), count=np.add.reduceat(b.count, starts),
        t_first=t_first, t_last=t_last, t_min=t_min, t_max=t_max,
        first=b.first[starts], last=b.last[i_last], vmin=vmin, vmax=vmax,
        vsum=np.add.reduceat(b.vsum, starts),
    )


def rollup(b: Buckets, width: float, coarser: float) -> Buckets:
    """Summaries of ``b`` (tier ``width``) on the tier ``coarser`` (a multiple of ``width``)."""
    ratio = int(round(coarser / width))
    if ratio < 1 or abs(ratio * width - coarser) > 1e-9 * coarser:
        raise ValueError(f"tier {coarser} s is not a multiple of {width} s")
    if ratio == 1 or len(b) == 0:
        return b
    return merge([attrs.evolve(b, k=np.floor_divide(b.k, ratio))], presorted=True)


_SPREAD = 2**36  #: bucket numbers of one series of rollup_banded lie in a band this wide


def rollup_banded(index: np.ndarray, b: Buckets, width: float, coarser: float) -> tuple[np.ndarray, Buckets]:
    """:func:`rollup` of the buckets of many series at once: ``index[i]`` (>= 0) is the
    series of bucket ``i``; ``b`` need not be sorted and may hold several pieces of a
    bucket (rows of several sources). Returns ``(index, buckets)`` of the coarse tier,
    sorted by series, then bucket number (one numpy pass, whatever the number of series)."""
    ratio = int(round(coarser / width))
    if ratio < 1 or abs(ratio * width - coarser) > 1e-9 * coarser:
        raise ValueError(f"tier {coarser} s is not a multiple of {width} s")
    index = np.asarray(index, dtype=np.int64)
    if len(b) == 0:
        return index[:0], b
    half = _SPREAD // 2
    if b.k.min() <= -half * ratio or b.k.max() >= half * ratio:
        raise ValueError("bucket numbers out of the supported range")
    banded = b.k + (index * _SPREAD + half) * ratio
    if banded.size > 1 and not _in_merge_order(banded, b.t_first):  # rows out of order, or overlapping
        order = np.lexsort((b.t_first, banded))
        b = b.take(order)
        banded = banded[order]
    rolled = merge([attrs.evolve(b, k=np.floor_divide(banded, ratio))], presorted=True)
    series = np.floor_divide(rolled.k, _SPREAD)
    return series, attrs.evolve(rolled, k=rolled.k - series * _SPREAD - half)


def _in_merge_order(k: np.ndarray, t_first: np.ndarray) -> bool:
    """Whether buckets are ordered by number, then time (as rows of consecutive files of a
    series are, sharing the bucket where one file ends and the next begins)."""
    step = k[1:] - k[:-1]
    if np.all(step > 0):
        return True
    if np.any(step < 0):
        return False
    same = np.flatnonzero(step == 0)
    return bool(np.all(t_first[same + 1] >= t_first[same]))


def choose_tier(width: float, tiers: Sequence[float] = TIERS) -> float | None:
    """The coarsest tier whose buckets are no wider than ``width`` (None: finer than all)."""
    best = None
    for w in tiers:
        if w <= width:
            best = w
    return best


def grid_width(wanted: float, tier: float) -> float:
    """The smallest multiple of ``tier`` that is at least ``wanted``."""
    return float(max(1, int(np.ceil(wanted / tier - 1e-9)))) * tier


def _restore(values: np.ndarray, kind: str) -> np.ndarray:
    if kind == "i":
        return values.astype(np.int64)
    if kind == "u":
        return values.astype(np.uint64)
    if kind == "b":
        return values.astype(bool)
    return values


def _align(ref: Buckets, other: Buckets) -> Buckets:
    """``other`` on the bucket numbers of ``ref`` (missing buckets: no samples)."""
    if len(other) == len(ref) and np.array_equal(other.k, ref.k):
        return other
    pos = np.searchsorted(other.k, ref.k)
    pos = np.minimum(pos, max(len(other) - 1, 0))
    found = (other.k[pos] == ref.k) if len(other) else np.zeros(len(ref), bool)
    cols = {}
    for c in _INT_COLS + _FLOAT_COLS:
        src = getattr(other, c)
        col = src[pos] if len(other) else np.zeros(len(ref), src.dtype)
        if c in ("count",):
            col = np.where(found, col, 0)
        elif c in ("vmin", "vmax", "first", "last"):
            col = np.where(found, col, np.nan)
        elif c in ("k", "n", "t_first", "t_last"):
            col = getattr(ref, c)
        cols[c] = col
    return Buckets(**cols)


def decimate_buckets(
    fields: Mapping[str, Buckets], width: float, grid: float, kinds: Mapping[str, str] | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The min-max decimation on buckets of ``grid`` seconds of fields sharing a timeline.

    ``fields`` hold summaries on the tier ``width`` (``grid`` is a multiple of it);
    ``kinds`` are the numpy dtype kinds of the raw values ("f", "i", "b"), restored in
    the output. Equals :func:`sisock_core.decimate.decimate_on_grid` on the raw samples.
    """
    kinds = kinds or {}
    rolled = {name: rollup(b, width, grid) for name, b in fields.items()}
    if not rolled:
        return np.zeros(0), {}
    if len(rolled) == 1:
        ((name, b),) = rolled.items()
        nan_only = b.count == 0
        early = b.t_min <= b.t_max
        ta = np.where(nan_only, b.t_first, np.where(early, b.t_min, b.t_max))
        tb = np.where(early, b.t_max, b.t_min)
        va = np.where(nan_only, np.nan, np.where(early, b.vmin, b.vmax))
        vb = np.where(early, b.vmax, b.vmin)
        two = ~nan_only & (b.vmin != b.vmax)
        return _interleave(ta, tb, two), {name: _restore(_interleave(va, vb, two), kinds.get(name, "f"))}
    names = list(rolled)
    ref = rolled[names[0]]
    for b in rolled.values():
        if len(b) > len(ref):
            ref = b
    multi = ref.n > 1
    t_out = _interleave(ref.t_first, ref.t_last, multi)
    out = {}
    for name in names:
        b = _align(ref, rolled[name])
        nan_only = b.count == 0
        early = b.t_min <= b.t_max
        va = np.where(nan_only, np.nan, np.where(early, b.vmin, b.vmax))
        vb = np.where(nan_only, np.nan, np.where(early, b.vmax, b.vmin))
        out[name] = _restore(_interleave(va, vb, multi), kinds.get(name, "f"))
    return t_out, out


# -- storage -----------------------------------------------------------------------

_HEADER = struct.Struct("<qI")
#: zstd's fast mode: ~20x zlib's speed at the same size on shuffled buckets.
ZSTD_LEVEL = -1
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_codecs = threading.local()  # zstd (de)compressors are not thread-safe: one per thread


def compress(payload: bytes) -> bytes:
    """zstd, as stored rows are compressed."""
    c = getattr(_codecs, "c", None)
    if c is None:
        c = _codecs.c = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return c.compress(payload)


def decompress(data: bytes) -> bytes:
    """Inverse of :func:`compress` (zlib for rows written before zstd)."""
    if data[:4] != _ZSTD_MAGIC:
        return zlib.decompress(data)  # a row written before zstd
    d = getattr(_codecs, "d", None)
    if d is None:
        d = _codecs.d = zstandard.ZstdDecompressor()
    return d.decompress(data)


def pack(b: Buckets, width: float) -> bytes:
    """Compact bytes of ``b`` (tier ``width``): bucket numbers as differences, times as
    offsets from their bucket's start (exact), each column byte-shuffled, then zstd."""
    return pack_many([b], width)[0]


def pack_many(parts: Sequence[Buckets], width: float, compressed: bool = True) -> list[bytes]:
    """:func:`pack` of each of ``parts`` (the columns are prepared in one numpy pass);
    without ``compressed``, the rows as laid out before compressing (:func:`unpack_row`)."""
    sizes = [len(b) for b in parts]
    whole = concat(parts)
    m = len(whole)
    out = []
    if m:
        cols = np.empty((len(_INT_COLS) + len(_FLOAT_COLS), m), dtype=np.float64)
        ints = cols[:len(_INT_COLS)].view(np.int64)
        ints[0, 0] = 0
        np.subtract(whole.k[1:], whole.k[:-1], out=ints[0, 1:])
        firsts = np.cumsum([0] + sizes[:-1])
        ints[0, firsts[np.array(sizes) > 0]] = 0  # each part's bucket numbers start from its header's
        ints[1] = whole.n
        ints[2] = whole.count
        base = whole.k.astype(np.float64) * width
        for i, c in enumerate(_FLOAT_COLS, len(_INT_COLS)):
            if c in _TIME_COLS:
                np.subtract(getattr(whole, c), base, out=cols[i])
            else:
                cols[i] = getattr(whole, c)
        # byte planes of each column in turn: (column, byte, bucket)
        planes = cols.view(np.uint8).reshape(cols.shape[0], m, 8).transpose(0, 2, 1)
    start = 0
    for size in sizes:
        if size == 0:
            out.append(_HEADER.pack(0, 0))
            continue
        payload = planes[:, :, start:start + size].tobytes()
        out.append(_HEADER.pack(int(whole.k[start]), size) + (compress(payload) if compressed else payload))
        start += size
    return out


def unpack(blob: bytes, width: float) -> Buckets:
    """Inverse of :func:`pack`."""
    return unpack_many_sized([blob], width)[0]


def row_size(m: int) -> int:
    """Bytes of a row of ``m`` buckets as laid out before compressing."""
    return _HEADER.size + (len(_INT_COLS) + len(_FLOAT_COLS)) * 8 * m


def unpack_row(row: bytes, width: float) -> Buckets:
    """Inverse of :func:`pack_many` without ``compressed``."""
    return unpack_many_sized([row], width, compressed=False)[0]


def unpack_many(blobs: Sequence[bytes], width: float) -> Buckets:
    """:func:`unpack` of several rows, concatenated in their order (one numpy pass: what
    a rollup reading many small rows wants)."""
    return unpack_many_sized(blobs, width)[0]


def unpack_many_sized(blobs: Sequence[bytes], width: float, compressed: bool = True
                      ) -> tuple[Buckets, list[int]]:
    """:func:`unpack_many` and the number of buckets of each row (``compressed``: rows
    as :func:`pack` writes them, else as laid out before compressing)."""
    ncols = len(_INT_COLS) + len(_FLOAT_COLS)
    k0s, sizes, payloads, counts = [], [], [], []
    for blob in blobs:
        k0, m = _HEADER.unpack_from(blob)
        counts.append(m)
        if m == 0:
            continue
        raw = decompress(blob[_HEADER.size:]) if compressed else blob[_HEADER.size:]
        if len(raw) != ncols * m * 8:
            raise ValueError(f"summary blob holds {len(raw)} bytes, expected {ncols * m * 8}")
        k0s.append(k0)
        sizes.append(m)
        payloads.append(np.frombuffer(raw, dtype=np.uint8).reshape(ncols, 8, m))
    if not payloads:
        return Buckets.empty(), counts
    planes = np.concatenate(payloads, axis=2) if len(payloads) > 1 else payloads[0]
    cols = planes.transpose(0, 2, 1).copy().view(np.float64)[:, :, 0]  # (column, bucket)
    ints = cols[:len(_INT_COLS)].view(np.int64)
    sizes_a = np.array(sizes, dtype=np.intp)
    first = np.concatenate(([0], np.cumsum(sizes_a)[:-1]))
    csum = np.cumsum(ints[0])
    k = csum + np.repeat(np.array(k0s, dtype=np.int64) - csum[first], sizes_a)
    base = k.astype(np.float64) * width
    values = {"k": k, "n": ints[1].copy(), "count": ints[2].copy()}
    for i, c in enumerate(_FLOAT_COLS, len(_INT_COLS)):
        values[c] = cols[i] + base if c in _TIME_COLS else cols[i].copy()
    return Buckets(**values), counts
