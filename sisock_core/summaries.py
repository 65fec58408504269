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

:func:`pack` / :func:`unpack` turn buckets into compact bytes for a database row.
"""

from __future__ import annotations

import struct
import zlib
from typing import Mapping, Sequence

import attrs
import numpy as np

from sisock_core.decimate import _first_equal, _interleave

#: Bucket widths (s) kept for every summarized field, finest first.
TIERS: tuple[float, ...] = (60.0, 120.0, 600.0, 3600.0, 21600.0, 172800.0)

#: The finest tier: what plugins and the core compute from raw samples.
BASE_TIER = TIERS[0]

_INT_COLS = ("k", "n", "count")
_FLOAT_COLS = ("t_first", "t_last", "t_min", "t_max", "first", "last", "vmin", "vmax", "vsum")
_TIME_COLS = ("t_first", "t_last", "t_min", "t_max")


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
        return Buckets(**{c: getattr(self, c)[index] for c in _INT_COLS + _FLOAT_COLS})

    def between(self, width: float, start: float, end: float) -> "Buckets":
        """The buckets lying wholly in ``[start, end)`` (both multiples of ``width``)."""
        lo, hi = np.searchsorted(self.k, [np.ceil(start / width), np.floor(end / width)])
        return self.take(slice(int(lo), int(hi)))

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, c).nbytes for c in _INT_COLS + _FLOAT_COLS)


def concat(parts: Sequence[Buckets]) -> Buckets:
    """Buckets of several pieces side by side (not merged, not sorted)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Buckets.empty()
    if len(parts) == 1:
        return parts[0]
    return Buckets(**{c: np.concatenate([getattr(p, c) for p in parts]) for c in _INT_COLS + _FLOAT_COLS})


def summarize(t: np.ndarray, y: np.ndarray, width: float = BASE_TIER) -> Buckets:
    """Summaries of the samples ``(t, y)`` (``t`` ascending) on the tier ``width``."""
    return summarize_many(t, {"": y}, width)[""]


def summarize_many(t: np.ndarray, columns: Mapping[str, np.ndarray],
                   width: float = BASE_TIER) -> dict[str, Buckets]:
    """:func:`summarize` of several fields sharing the times ``t`` (the buckets are found once)."""
    t = np.asarray(t, dtype=np.float64)
    if t.size == 0:
        return {name: Buckets.empty() for name in columns}
    kf = np.floor(t / width)
    change = np.flatnonzero(kf[1:] != kf[:-1]) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [t.size]))
    n = ends - starts
    k = kf[starts].astype(np.int64)
    nn = n.astype(np.int64)
    t_first, t_last = t[starts], t[ends - 1]
    out = {}
    for name, y in columns.items():
        y = np.asarray(y)
        if y.dtype.kind != "f":
            y = y.astype(np.float64)
        nan = np.isnan(y)
        count = np.add.reduceat((~nan).astype(np.int64), starts)
        vsum = np.add.reduceat(np.where(nan, 0.0, y), starts)
        with np.errstate(invalid="ignore"):
            vmin = np.fmin.reduceat(y, starts)
            vmax = np.fmax.reduceat(y, starts)
        i_min = _first_equal(y, vmin, starts, n)
        i_max = _first_equal(y, vmax, starts, n)
        i_min = np.where(i_min < 0, starts, i_min)
        i_max = np.where(i_max < 0, starts, i_max)
        out[name] = Buckets(
            k=k, n=nn, count=count, t_first=t_first, t_last=t_last, t_min=t[i_min], t_max=t[i_max],
            first=y[starts].astype(np.float64), last=y[ends - 1].astype(np.float64),
            vmin=vmin.astype(np.float64), vmax=vmax.astype(np.float64), vsum=vsum.astype(np.float64),
        )
    return out


def _pick_time(values: np.ndarray, times: np.ndarray, per_group: np.ndarray, starts: np.ndarray,
               sizes: np.ndarray) -> np.ndarray:
    """Per group, the earliest time at which ``values`` equals the group's value."""
    hit = values == np.repeat(per_group, sizes)
    cand = np.where(hit, times, np.inf)
    return np.minimum.reduceat(cand, starts)


def merge(parts: Sequence[Buckets], presorted: bool = False) -> Buckets:
    """One summary per bucket number from pieces that may share bucket numbers
    (``presorted``: already ordered by bucket number, then time, as one piece is)."""
    b = concat(parts)
    if len(b) == 0:
        return b
    if not presorted:
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


def _shuffle(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).view(np.uint8).reshape(-1, 8).T.tobytes()


def pack(b: Buckets, width: float) -> bytes:
    """Compact bytes of ``b`` (tier ``width``): bucket numbers as differences, times as
    offsets from their bucket's start (exact), each column byte-shuffled, then zlib."""
    m = len(b)
    if m == 0:
        return _HEADER.pack(0, 0)
    base = b.k.astype(np.float64) * width
    cols = [np.diff(b.k, prepend=b.k[0]).astype(np.int64), b.n.astype(np.int64), b.count.astype(np.int64)]
    for c in _FLOAT_COLS:
        v = getattr(b, c).astype(np.float64)
        cols.append(v - base if c in _TIME_COLS else v)
    payload = b"".join(_shuffle(c) for c in cols)
    return _HEADER.pack(int(b.k[0]), m) + zlib.compress(payload, 1)


def unpack(blob: bytes, width: float) -> Buckets:
    """Inverse of :func:`pack`."""
    k0, m = _HEADER.unpack_from(blob)
    if m == 0:
        return Buckets.empty()
    raw = np.frombuffer(zlib.decompress(blob[_HEADER.size:]), dtype=np.uint8)
    ncols = len(_INT_COLS) + len(_FLOAT_COLS)
    if raw.size != ncols * m * 8:
        raise ValueError(f"summary blob holds {raw.size} bytes, expected {ncols * m * 8}")
    cols = raw.reshape(ncols, 8, m).transpose(0, 2, 1).copy()
    k = np.cumsum(cols[0].view(np.int64).ravel()) + k0
    base = k.astype(np.float64) * width
    values = {"k": k, "n": cols[1].view(np.int64).ravel(), "count": cols[2].view(np.int64).ravel()}
    for i, c in enumerate(_FLOAT_COLS):
        v = cols[3 + i].view(np.float64).ravel()
        values[c] = v + base if c in _TIME_COLS else v
    return Buckets(**values)
