"""Peak-preserving decimation of timelines (pure numpy, no Twisted).

Every node decimates here, never in a plugin. A timeline is cut into equal-time
buckets and each bucket keeps its minimum and its maximum, in time order (the
"MinMax" reduction), so a one-sample spike survives any reduction, unlike a plain
stride ``y[::n]``.

Limits that set the bucket width:

* ``min_stride`` (the ``get_data`` argument): buckets are ``2 * min_stride`` wide,
  so kept samples are on average at least ``min_stride`` seconds apart. Data that
  is already sparser than that is returned as it is.
* ``max_points`` (the node's ``MAX_POINTS``, or the bridge's ``maxDataPoints``): at
  most ``max_points // 2`` buckets, hence at most ``max_points`` samples per field.
  Data with at most ``max_points`` samples is returned as it is.

When both apply, the wider bucket wins. Buckets sit on a grid aligned to
multiples of their width (from the UNIX epoch), so a dashboard sliding its window
sees stable buckets instead of flickering peaks; gaps simply leave buckets empty.

What a bucket keeps:

* One field: the samples holding the minimum and the maximum, with their own
  timestamps (every output sample is an input sample). One sample if they are the
  same sample.
* Several fields sharing a timeline: each field's exact minimum and maximum, placed
  at the bucket's first and last timestamps (in the order they occurred), so all
  fields still share one time axis.
* NaN is "no data": a bucket's minimum and maximum ignore NaN; a bucket holding only
  NaN keeps one NaN sample (one field) or NaN values (several fields), so the gap
  still shows.
* Numbers and bools are reduced by value (ints are never converted to float);
  strings and other values keep the bucket's first and last samples.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

#: Buckets holding on average at least this many samples are reduced one bucket at
#: a time (argmin/argmax on a cache-sized slice); smaller ones by vectorized reductions.
LOOP_MIN_BUCKET = 512

#: With more than one bucket per this many samples, bucket numbers are computed per
#: sample instead of binary-searching each bucket edge.
DENSE_EDGES = 64

#: Origins beyond this many bucket widths from the epoch lose precision; such
#: grids start at the first sample instead.
_MAX_GRID_INDEX = 2.0**50


def _by_value(a: np.ndarray) -> bool:
    """Whether ``a`` is reduced to its min and max (numbers and bools)."""
    return a.dtype.kind in "fiub"


def bucket_starts(
    t: np.ndarray, max_points: int | None = None, min_stride: float | None = None
) -> np.ndarray | None:
    """Start indices of the non-empty buckets of sorted ``t``, or None if no reduction is needed.

    Bucket ``i`` holds ``t[starts[i]:starts[i + 1]]`` (the last runs to the end).
    """
    t = np.asarray(t, dtype=np.float64)
    n = t.size
    if n < 2:
        return None
    t0, t1 = float(t[0]), float(t[-1])
    span = t1 - t0
    width = 0.0
    cap: int | None = None
    if min_stride is not None and min_stride > 0 and span < min_stride * (n - 1):
        width = 2.0 * float(min_stride)
    if max_points is not None and max_points > 0 and n > max_points:
        cap = max(1, int(max_points) // 2)
        # cap - 1 widths: an aligned grid over the span then has at most cap buckets.
        width = max(width, span / (cap - 1) if cap > 1 else math.inf)
    if width <= 0.0:
        return None
    if not math.isfinite(span) or span <= 0.0 or not math.isfinite(width) or width >= span * 2.0 ** 52:
        # Single bucket: everything (also t with equal or non-finite ends).
        return np.zeros(1, dtype=np.intp)

    k0 = math.floor(t0 / width)
    if abs(k0) < _MAX_GRID_INDEX:
        origin = k0 * width
        nb = math.floor((t1 - origin) / width) + 1
    else:
        origin, nb = t0, math.floor(span / width) + 1
    if cap is not None and nb > cap:
        # Rounding pushed the aligned grid over the cap: fall back to exactly cap
        # buckets starting at the first sample.
        origin, nb, width = t0, cap, span / cap
    if nb * DENSE_EDGES > n:
        # Many small buckets: one pass computing every sample's bucket number beats
        # a binary search per edge.
        k = np.subtract(t, origin)
        k /= width
        np.floor(k, out=k)
        np.clip(k, 0.0, nb - 1.0, out=k)
        change = np.flatnonzero(k[1:] != k[:-1])
        change += 1
        starts = np.empty(change.size + 1, dtype=np.intp)
        starts[0] = 0
        starts[1:] = change
        return starts
    edges = origin + np.arange(1, nb, dtype=np.float64) * width
    bounds = np.searchsorted(t, edges, side="left")
    starts = np.empty(bounds.size + 1, dtype=np.intp)
    starts[0] = 0
    starts[1:] = bounds
    # Drop empty buckets (equal consecutive starts) and any bound at the end.
    keep = np.empty(starts.size, dtype=bool)
    keep[:-1] = starts[1:] > starts[:-1]
    keep[-1] = starts[-1] < n
    return starts[keep]


# -- per-bucket extrema ------------------------------------------------------------


def _extrema_loop(y: np.ndarray, starts: np.ndarray, ends: np.ndarray):
    """Per-bucket (argmin, argmax) absolute indices, one bucket at a time; -1 for all-NaN."""
    nb = starts.size
    i_lo = np.empty(nb, dtype=np.intp)
    i_hi = np.empty(nb, dtype=np.intp)
    floating = y.dtype.kind == "f"
    for k, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        seg = y[s:e]
        a = int(seg.argmin())
        if floating and seg[a] != seg[a]:  # argmin stops at the first NaN
            lo = np.fmin.reduce(seg)
            if lo != lo:  # only NaN in this bucket
                i_lo[k] = i_hi[k] = -1
                continue
            a = int((seg == lo).argmax())
            b = int((seg == np.fmax.reduce(seg)).argmax())
        else:
            b = int(seg.argmax())
        i_lo[k] = s + a
        i_hi[k] = s + b
    return i_lo, i_hi


def _first_equal(y: np.ndarray, per_bucket: np.ndarray, starts: np.ndarray,
                 counts: np.ndarray) -> np.ndarray:
    """Index of the first sample of each bucket equal to that bucket's value; -1 if none."""
    hits = np.flatnonzero(y == np.repeat(per_bucket, counts))
    pos = np.searchsorted(hits, starts)
    found = np.full(starts.shape, -1, dtype=np.intp)
    ok = pos < hits.size
    found[ok] = hits[pos[ok]]
    found[found >= starts + counts] = -1  # all-NaN bucket: no hit inside it
    return found


def _extrema_vectorized(y: np.ndarray, starts: np.ndarray, counts: np.ndarray):
    """Per-bucket (argmin, argmax) absolute indices by reduceat; -1 for all-NaN."""
    if y.dtype.kind == "b":
        y = y.view(np.uint8)
    with np.errstate(invalid="ignore"):
        lo = np.minimum.reduceat(y, starts)
        hi = np.maximum.reduceat(y, starts)
        if y.dtype.kind == "f" and np.isnan(lo).any():  # NaN propagated: ignore it
            lo = np.fmin.reduceat(y, starts)
            hi = np.fmax.reduceat(y, starts)
    return _first_equal(y, lo, starts, counts), _first_equal(y, hi, starts, counts)


def _extrema(y: np.ndarray, starts: np.ndarray, counts: np.ndarray):
    """Per-bucket (earlier, later) indices of the extrema of ``y``; -1 marks all-NaN buckets."""
    if y.size >= LOOP_MIN_BUCKET * starts.size:
        i_lo, i_hi = _extrema_loop(y, starts, starts + counts)
    else:
        i_lo, i_hi = _extrema_vectorized(y, starts, counts)
    return np.minimum(i_lo, i_hi), np.maximum(i_lo, i_hi)


def _interleave(a: np.ndarray, b: np.ndarray, keep_b: np.ndarray) -> np.ndarray:
    """[a0, b0, a1, b1, ...] leaving out b_i where ``keep_b`` is false."""
    out = np.empty(a.size * 2, dtype=np.result_type(a, b))
    out[0::2] = a
    out[1::2] = b
    mask = np.ones(out.size, dtype=bool)
    mask[1::2] = keep_b
    return out[mask]


def decimate_timeline(
    t: np.ndarray,
    data: Mapping[str, np.ndarray],
    *,
    max_points: int | None = None,
    min_stride: float | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Reduce one timeline (``t`` sorted, ``data`` arrays of the same length).

    Returns ``(t, data)`` unchanged when no reduction is needed, else new arrays
    with at most ``max_points`` samples per field, all fields sharing ``t``.
    """
    t = np.asarray(t, dtype=np.float64)
    starts = bucket_starts(t, max_points, min_stride)
    if starts is None:
        return t, dict(data)
    return reduce_buckets(t, data, starts)


def grid_starts(t: np.ndarray, width: float) -> np.ndarray:
    """Start indices of the non-empty buckets ``[k * width, (k + 1) * width)`` of sorted ``t``."""
    t = np.asarray(t, dtype=np.float64)
    if t.size == 0:
        return np.zeros(0, dtype=np.intp)
    k = np.floor(t / width)
    change = np.flatnonzero(k[1:] != k[:-1])
    starts = np.empty(change.size + 1, dtype=np.intp)
    starts[0] = 0
    starts[1:] = change + 1
    return starts


def decimate_on_grid(
    t: np.ndarray, data: Mapping[str, np.ndarray], width: float
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Min-max reduction of one timeline on the buckets ``[k * width, (k + 1) * width)``.

    Always reduces (even data sparser than the grid); what the summaries of
    :mod:`sisock_core.summaries` reproduce exactly from their tiers.
    """
    t = np.asarray(t, dtype=np.float64)
    if t.size == 0:
        return t, {k: np.asarray(v) for k, v in data.items()}
    return reduce_buckets(t, data, grid_starts(t, width))


def reduce_buckets(
    t: np.ndarray, data: Mapping[str, np.ndarray], starts: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Keep each bucket's extrema (see the module docstring); bucket ``i`` starts at ``starts[i]``."""
    n = t.size
    counts = np.diff(starts, append=n)
    lasts = starts + counts - 1

    if len(data) == 1:
        ((name, y),) = data.items()
        y = np.asarray(y)
        if _by_value(y):
            first, second = _extrema(y, starts, counts)
            nan_only = first < 0  # keep one NaN sample to show the gap
            first = np.where(nan_only, starts, first)
            second = np.where(nan_only, starts, second)
        else:
            first, second = starts, lasts
        idx = _interleave(first, second, second != first)
        return t[idx], {name: y[idx]}

    multi = counts > 1
    t_out = _interleave(t[starts], t[lasts], multi)
    out: dict[str, np.ndarray] = {}
    for name, y in data.items():
        y = np.asarray(y)
        if _by_value(y):
            first, second = _extrema(y, starts, counts)
            nan_only = first < 0
            first = np.where(nan_only, starts, first)  # y[starts] is NaN there
            second = np.where(nan_only, starts, second)
        else:
            first, second = starts, lasts
        out[name] = _interleave(y[first], y[second], multi)
    return t_out, out
