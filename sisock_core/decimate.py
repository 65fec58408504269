"""Peak-preserving decimation of timelines (pure numpy, no Twisted).

Every node decimates here, never in a plugin. A timeline is cut into equal-time
buckets; each bucket keeps its minimum and its maximum (in time order), so a
one-sample spike survives any reduction, unlike a plain stride ``y[::n]``.

Limits that set the bucket width:

* ``min_stride`` (the ``get_data`` argument): successive samples are on average
  at least that many seconds apart (two per bucket of ``2 * min_stride``);
* ``max_points`` (``MAX_POINTS`` or the bridge's ``maxDataPoints``): at most that
  many samples per field.

With one field, the kept samples carry their own timestamps. Fields sharing a
timeline keep exact per-field minima and maxima, placed at the bucket's first and
last timestamps so the fields still share one time axis. Non-numeric fields keep
the bucket's first and last samples.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def _is_numeric(a: np.ndarray) -> bool:
    return a.dtype.kind in "fiu"


def bucket_starts(t: np.ndarray, width: float) -> np.ndarray:
    """Indices where each non-empty bucket of ``width`` seconds starts in sorted ``t``."""
    if t.size == 0:
        return np.empty(0, dtype=np.intp)
    # Bucket number of every sample; a new bucket starts where the number changes.
    b = np.floor((t - t[0]) / width).astype(np.int64)
    change = np.flatnonzero(b[1:] != b[:-1]) + 1
    return np.concatenate(([0], change)).astype(np.intp)


def _first_index_equal(y: np.ndarray, per_bucket: np.ndarray, starts: np.ndarray,
                       counts: np.ndarray) -> np.ndarray:
    """Index of the first sample in each bucket equal to that bucket's value."""
    hits = np.flatnonzero(y == np.repeat(per_bucket, counts))
    pos = np.searchsorted(hits, starts)
    ends = starts + counts
    found = np.zeros(starts.shape, dtype=np.intp)
    ok = pos < hits.size
    found[ok] = hits[pos[ok]]
    # A bucket whose value was NaN (all-NaN bucket) has no hit inside it.
    bad = ~ok | (found >= ends) | (found < starts)
    found[bad] = starts[bad]
    return found


def _minmax_indices(y: np.ndarray, starts: np.ndarray, counts: np.ndarray):
    """Per-bucket (earlier, later) indices of the min and max of numeric ``y``."""
    yf = y.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):
        lo = np.fmin.reduceat(yf, starts)
        hi = np.fmax.reduceat(yf, starts)
    i_lo = _first_index_equal(yf, lo, starts, counts)
    i_hi = _first_index_equal(yf, hi, starts, counts)
    return np.minimum(i_lo, i_hi), np.maximum(i_lo, i_hi)


def _interleave(a: np.ndarray, b: np.ndarray, keep_b: np.ndarray) -> np.ndarray:
    """[a0, b0, a1, b1, ...] leaving out b_i where ``keep_b`` is false."""
    out = np.empty(a.size * 2, dtype=np.result_type(a, b))
    out[0::2] = a
    out[1::2] = b
    mask = np.ones(out.size, dtype=bool)
    mask[1::2] = keep_b
    return out[mask]


def bucket_width(t: np.ndarray, max_points: int | None, min_stride: float | None) -> float | None:
    """The bucket width needed to honour both limits, or None if no reduction is needed."""
    n = t.size
    if n < 2:
        return None
    span = float(t[-1] - t[0])
    width = 0.0
    if min_stride is not None and min_stride > 0:
        # Only reduce when samples are actually denser than asked for.
        if span / (n - 1) < min_stride:
            width = 2.0 * float(min_stride)
    if max_points is not None and max_points > 0 and n > max_points:
        buckets = max(1, max_points // 2)
        # Slightly wider than span/buckets so the last sample falls in the last bucket.
        width = max(width, np.nextafter(span / buckets, np.inf) if span > 0 else 1.0)
    if width <= 0.0:
        return None
    return width


def decimate_timeline(
    t: np.ndarray,
    data: Mapping[str, np.ndarray],
    *,
    max_points: int | None = None,
    min_stride: float | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Reduce one timeline to honour ``max_points`` and ``min_stride``.

    Returns ``(t, data)`` unchanged when no reduction is needed. ``t`` must be sorted.
    """
    t = np.asarray(t, dtype=np.float64)
    width = bucket_width(t, max_points, min_stride)
    if width is None:
        return t, dict(data)
    starts = bucket_starts(t, width)
    if max_points is not None and max_points > 0 and 2 * starts.size > max_points:
        # Floating-point edge: merge pairs of buckets until the cap holds.
        while 2 * starts.size > max_points and starts.size > 1:
            starts = starts[::2]
    counts = np.diff(np.append(starts, t.size))
    lasts = starts + counts - 1
    multi = counts > 1

    if len(data) == 1:
        (name, y), = data.items()
        y = np.asarray(y)
        if _is_numeric(y):
            first, second = _minmax_indices(y, starts, counts)
        else:
            first, second = starts, lasts
        keep = second != first
        idx = _interleave(first, second, keep)
        return t[idx], {name: y[idx]}

    t_out = _interleave(t[starts], t[lasts], multi)
    out: dict[str, np.ndarray] = {}
    for name, y in data.items():
        y = np.asarray(y)
        if _is_numeric(y):
            first, second = _minmax_indices(y, starts, counts)
        else:
            first, second = starts, lasts
        out[name] = _interleave(y[first], y[second], multi)
    return t_out, out
