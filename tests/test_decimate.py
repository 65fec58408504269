"""Peak-preserving decimation: examples and Hypothesis properties (pure, fast)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sisock_core import decimate
from sisock_core.decimate import bucket_starts, decimate_timeline

T0 = 1_500_000_000.0


@contextlib.contextmanager
def path(mode: str):
    """Force one implementation: 'loop' (per bucket) or 'vector' (reduceat), and edges
    found by binary search ('loop') or per-sample bucket numbers ('vector')."""
    saved = decimate.LOOP_MIN_BUCKET, decimate.DENSE_EDGES
    if mode == "loop":
        decimate.LOOP_MIN_BUCKET, decimate.DENSE_EDGES = 0, 10**12
    else:
        decimate.LOOP_MIN_BUCKET, decimate.DENSE_EDGES = 10**12, 0
    try:
        yield
    finally:
        decimate.LOOP_MIN_BUCKET, decimate.DENSE_EDGES = saved


MODES = pytest.mark.parametrize("mode", ["loop", "vector"])


def buckets(t, max_points=None, min_stride=None):
    starts = bucket_starts(t, max_points, min_stride)
    ends = np.append(starts[1:], t.size)
    return list(zip(starts.tolist(), ends.tolist()))


def same(a, b) -> bool:
    """Equal, counting NaN equal to NaN."""
    return a == b or (a != a and b != b)


# -- examples --------------------------------------------------------------------


@MODES
def test_spike_survives_10000_to_100(mode):
    t = T0 + np.arange(10_000, dtype=float)
    y = np.zeros(10_000)
    y[4321] = 50.0
    y[777] = -3.0
    with path(mode):
        tt, out = decimate_timeline(t, {"y": y}, max_points=100)
    assert len(tt) <= 100 and len(out["y"]) == len(tt)
    assert 50.0 in out["y"] and -3.0 in out["y"]
    assert tt[list(out["y"]).index(50.0)] == t[4321]


def test_no_reduction_when_small_enough():
    t = T0 + np.arange(10.0)
    y = np.arange(10.0)
    tt, out = decimate_timeline(t, {"y": y}, max_points=10)
    np.testing.assert_array_equal(tt, t)
    np.testing.assert_array_equal(out["y"], y)
    # min_stride smaller than the spacing: unchanged too
    tt, out = decimate_timeline(t, {"y": y}, min_stride=0.5)
    assert tt.size == 10
    assert bucket_starts(t, None, None) is None


def test_min_stride_reduces_to_about_one_sample_per_stride():
    t = T0 + np.arange(0, 3600, 1.0)
    y = np.sin(t)
    tt, out = decimate_timeline(t, {"y": y}, min_stride=60)
    # 3600 s in buckets of 120 s, two samples each: about 60 samples.
    assert 55 <= tt.size <= 62
    assert (tt[-1] - tt[0]) / (tt.size - 1) >= 55


def test_buckets_are_aligned_so_a_sliding_window_keeps_them():
    t = np.arange(0, 100_000, 1.0)
    a = bucket_starts(t[:50_000], None, 50)  # buckets of 100 s on multiples of 100 s
    b = bucket_starts(t[1_234:51_234], None, 50)
    ta, tb = t[:50_000][a], t[1_234:51_234][b]
    assert set(ta[ta >= 1300]) <= set(tb) and np.all(ta % 100 == 0)
    assert np.all(tb[1:] % 100 == 0)


@MODES
def test_nan_is_ignored_but_an_all_nan_bucket_keeps_one_nan(mode):
    t = T0 + np.arange(1000, dtype=float)
    y = np.ones(1000)
    y[:100] = np.nan  # first buckets: only NaN
    y[500] = np.nan  # a NaN among values
    y[501] = 9.0
    with path(mode):
        tt, out = decimate_timeline(t, {"y": y}, max_points=20)
    v = out["y"]
    assert 9.0 in v
    first_bucket = tt < t[100]
    assert np.isnan(v[first_bucket]).all() and first_bucket.sum() >= 1
    assert not np.isnan(v[tt >= t[100]]).any()


@MODES
def test_integers_stay_integers_and_exact(mode):
    t = T0 + np.arange(5000, dtype=float)
    y = np.full(5000, 2**60, dtype=np.int64)
    y[1234] = 2**60 + 1  # not representable apart from 2**60 as float64
    with path(mode):
        tt, out = decimate_timeline(t, {"y": y}, max_points=10)
    assert out["y"].dtype == np.int64
    assert (2**60 + 1) in out["y"].tolist()


@MODES
def test_bools_keep_a_lone_true(mode):
    t = T0 + np.arange(5000, dtype=float)
    y = np.zeros(5000, dtype=bool)
    y[3333] = True
    with path(mode):
        tt, out = decimate_timeline(t, {"flag": y}, max_points=10)
    assert out["flag"].dtype == bool and out["flag"].any()
    assert tt[out["flag"]][0] == t[3333]


def test_strings_keep_first_and_last_of_each_bucket():
    t = T0 + np.arange(100, dtype=float)
    y = np.array([f"s{i}" for i in range(100)])
    tt, out = decimate_timeline(t, {"state": y}, max_points=10)
    assert len(tt) <= 10
    assert out["state"][0] == "s0" and out["state"][-1] == "s99"
    for ti, s in zip(tt, out["state"]):
        assert s == f"s{int(ti - T0)}"


@MODES
def test_several_fields_share_one_time_axis(mode):
    t = T0 + np.arange(10_000, dtype=float)
    a = np.zeros(10_000)
    b = np.zeros(10_000)
    a[100] = 7.0
    b[9000] = -7.0
    s = np.array(["x"] * 10_000)
    with path(mode):
        tt, out = decimate_timeline(t, {"a": a, "b": b, "s": s}, max_points=50)
    assert len(tt) <= 50
    assert all(v.size == tt.size for v in out.values())
    assert 7.0 in out["a"] and -7.0 in out["b"]
    assert np.all(np.diff(tt) > 0) and set(tt) <= set(t)


def test_irregular_gaps_leave_empty_buckets_out():
    t = np.concatenate([T0 + np.arange(1000.0), T0 + 1e6 + np.arange(1000.0)])
    y = np.arange(2000.0)
    tt, out = decimate_timeline(t, {"y": y}, max_points=100)
    assert len(tt) <= 100
    # both sides of the gap are represented, nothing invented inside it
    assert (tt < T0 + 1000).sum() >= 2 and (tt >= T0 + 1e6).sum() >= 2
    assert not ((tt > T0 + 1000) & (tt < T0 + 1e6)).any()
    assert out["y"][0] == 0 and out["y"][-1] == 1999


def test_equal_timestamps_and_tiny_caps():
    t = np.full(10, T0)
    tt, out = decimate_timeline(t, {"y": np.arange(10.0)}, max_points=2)
    assert list(out["y"]) == [0.0, 9.0]
    t = T0 + np.arange(10.0)
    tt, out = decimate_timeline(t, {"y": np.arange(10.0)}, max_points=3)
    assert len(tt) <= 3 and list(out["y"]) == [0.0, 9.0]


def test_empty_and_single_sample():
    tt, out = decimate_timeline(np.empty(0), {"y": np.empty(0)}, max_points=10)
    assert tt.size == 0 and out["y"].size == 0
    tt, out = decimate_timeline([T0], {"y": [1.0]}, max_points=1, min_stride=10)
    assert list(out["y"]) == [1.0]


# -- properties ------------------------------------------------------------------


@st.composite
def timelines(draw, dtype=None):
    n = draw(st.integers(1, 400))
    steps = draw(
        hnp.arrays(np.float64, n - 1,
                   elements=st.one_of(st.floats(1e-3, 10.0), st.floats(10.0, 1e6)))
    )
    t = draw(st.floats(1.0, 2e9)) + np.concatenate(([0.0], np.cumsum(steps)))
    assume_strict = np.all(np.diff(t) > 0)
    if dtype is None:
        dtype = draw(st.sampled_from(["f8", "i8", "bool", "f4"]))
    if dtype == "i8":
        elements = st.integers(-(2**62), 2**62)
    elif dtype == "bool":
        elements = st.booleans()
    else:
        elements = st.floats(allow_nan=True, allow_infinity=True, width=32 if dtype == "f4" else 64)
    y = draw(hnp.arrays(np.dtype(dtype), n, elements=elements))
    return t, y, assume_strict


limits = st.tuples(
    st.one_of(st.none(), st.integers(2, 120)),
    st.one_of(st.none(), st.floats(0.01, 1e5)),
)


def check_single_field(t, y, max_points, min_stride):
    tt, out = decimate_timeline(t, {"y": y}, max_points=max_points, min_stride=min_stride)
    v = out["y"]
    assert v.dtype == y.dtype and v.size == tt.size
    if max_points is not None:
        assert tt.size <= max_points
    assert np.all(np.diff(tt) > 0), "timestamps strictly increasing"
    # Every output sample is an input sample.
    idx = np.searchsorted(t, tt)
    assert np.all(idx < t.size) and np.array_equal(t[idx], tt)
    assert all(same(a, b) for a, b in zip(y[idx].tolist(), v.tolist()))
    starts = bucket_starts(t, max_points, min_stride)
    if starts is None:
        assert tt.size == t.size
        return
    for s, e in buckets(t, max_points, min_stride):
        seg = y[s:e]
        inside = v[(tt >= t[s]) & (tt <= t[e - 1])]
        assert 1 <= inside.size <= 2
        if y.dtype.kind == "f" and np.isnan(seg).all():
            assert inside.size == 1 and np.isnan(inside[0])
            continue
        lo = np.nanmin(seg) if y.dtype.kind == "f" else seg.min()
        hi = np.nanmax(seg) if y.dtype.kind == "f" else seg.max()
        assert lo in inside.tolist() and hi in inside.tolist(), "bucket min and max kept"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines(), limits, st.sampled_from(["loop", "vector"]))
def test_property_single_field(tl, lim, mode):
    t, y, strict = tl
    if not strict:  # float rounding merged two timestamps: not a valid timeline
        return
    with path(mode):
        check_single_field(t, y, *lim)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines(dtype="f8"), limits, st.sampled_from(["loop", "vector"]), st.data())
def test_property_several_fields(tl, lim, mode, data):
    t, a, strict = tl
    if not strict:
        return
    b = data.draw(hnp.arrays(np.int64, t.size, elements=st.integers(-1000, 1000)))
    max_points, min_stride = lim
    with path(mode):
        tt, out = decimate_timeline(t, {"a": a, "b": b}, max_points=max_points, min_stride=min_stride)
        starts = bucket_starts(t, max_points, min_stride)
    assert out["a"].size == out["b"].size == tt.size
    if max_points is not None and starts is not None:
        assert tt.size <= max_points
    assert np.all(np.diff(tt) > 0)
    assert set(tt.tolist()) <= set(t.tolist())
    if starts is None:
        return
    for s, e in buckets(t, max_points, min_stride):
        sel = (tt >= t[s]) & (tt <= t[e - 1])
        assert tt[sel][0] == t[s] and tt[sel][-1] == t[e - 1]
        assert b[s:e].min() in out["b"][sel].tolist() and b[s:e].max() in out["b"][sel].tolist()
        seg = a[s:e]
        if np.isnan(seg).all():
            assert np.isnan(out["a"][sel]).all()
        else:
            kept = out["a"][sel].tolist()
            assert np.nanmin(seg) in kept and np.nanmax(seg) in kept


@settings(max_examples=60, deadline=None)
@given(timelines(dtype="f8"), st.floats(0.01, 1e5))
def test_property_min_stride_spacing(tl, stride):
    t, y, strict = tl
    if not strict or t.size < 2:
        return
    tt, _ = decimate_timeline(t, {"y": y}, min_stride=stride)
    span = t[-1] - t[0]
    if span >= stride * (t.size - 1):
        assert tt.size == t.size  # already sparse enough: untouched
    else:
        # buckets of 2 * stride on an aligned grid: at most span / (2 stride) + 2 of them
        assert tt.size <= 2 * (span / (2 * stride) + 2)
