"""Pure tests of the summaries: exact against raw min-max decimation, merge, tiers, storage."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sisock_core import summaries as S
from sisock_core.decimate import decimate_on_grid

T0 = 1_600_000_000.0


@st.composite
def series(draw, max_size=400):
    n = draw(st.integers(0, max_size))
    steps = draw(st.lists(st.floats(0.001, 400.0), min_size=n, max_size=n))
    t = T0 + draw(st.floats(0, 3600)) + np.cumsum(np.asarray(steps, dtype=float))
    ints = draw(st.booleans())
    values = st.integers(-3, 3) if ints else st.one_of(
        st.floats(-1e6, 1e6, allow_nan=False), st.just(float("nan")), st.sampled_from([0.0, 1.0]))
    y = np.asarray(draw(st.lists(values, min_size=n, max_size=n)), dtype=np.int64 if ints else float)
    return t, y


def split_merge(t, y, cuts, width):
    """Summaries computed piece by piece (as a growing file is) and merged."""
    pieces = np.split(np.arange(t.size), sorted(set(cuts)))
    return S.merge([S.summarize(t[i], y[i], width) for i in pieces])


def same(a, b):
    ta, da = a
    tb, db = b
    np.testing.assert_array_equal(ta, tb)
    assert da.keys() == db.keys()
    for k in da:
        assert da[k].dtype.kind == db[k].dtype.kind, k
        np.testing.assert_array_equal(da[k], db[k])


@settings(max_examples=200, deadline=None)
@given(series(), st.sampled_from([1, 2, 3, 7, 10, 60]), st.lists(st.integers(0, 400), max_size=4),
       st.sampled_from([0, 1, 2]))
def test_decimation_from_summaries_equals_raw_min_max_on_the_tier_grid(data, factor, cuts, tier_index):
    t, y = data
    width = S.TIERS[tier_index]
    grid = width * factor
    b = split_merge(t, y, [c for c in cuts if c <= t.size], width)
    if tier_index:  # built from the finer tier, as the store builds coarse tiers
        fine = split_merge(t, y, [c for c in cuts if c <= t.size], S.TIERS[tier_index - 1])
        b2 = S.rollup(fine, S.TIERS[tier_index - 1], width)
        for c in ("k", "n", "count", "t_min", "t_max", "t_first", "t_last"):
            np.testing.assert_array_equal(getattr(b, c), getattr(b2, c))
        b = b2
    got = S.decimate_buckets({"y": b}, width, grid, {"y": y.dtype.kind})
    same(got, decimate_on_grid(t, {"y": y}, grid))


@settings(max_examples=100, deadline=None)
@given(series(), st.sampled_from([1, 5, 60]))
def test_fields_sharing_a_timeline_match_raw_decimation(data, factor):
    t, y = data
    z = np.where(np.isnan(y.astype(float)), 1.0, -y.astype(float) * 2)
    width = S.BASE_TIER
    got = S.decimate_buckets({"y": S.summarize(t, y, width), "z": S.summarize(t, z, width)},
                             width, width * factor, {"y": y.dtype.kind, "z": "f"})
    same(got, decimate_on_grid(t, {"y": y, "z": z}, width * factor))


@settings(max_examples=100, deadline=None)
@given(series())
def test_pack_unpack_round_trip_is_exact(data):
    t, y = data
    for width in S.TIERS:
        b = S.summarize(t, y, width)
        u = S.unpack(S.pack(b, width), width)
        for c in ("k", "n", "count", "t_first", "t_last", "t_min", "t_max", "first", "last",
                  "vmin", "vmax", "vsum"):
            np.testing.assert_array_equal(getattr(u, c), getattr(b, c), err_msg=c)


def test_sum_and_count_give_means_and_nan_is_no_data():
    t = 1_599_999_960.0 + np.arange(120.0)  # a multiple of 60
    y = np.arange(120.0)
    y[5] = np.nan
    b = S.summarize(t, y, 60.0)
    assert b.n.tolist() == [60, 60] and b.count.tolist() == [59, 60]
    assert b.vsum[0] == np.nansum(y[:60]) and b.vsum[1] == y[60:].sum()
    assert b.first[0] == 0.0 and b.t_last[1] == t[-1] and b.last[1] == 119.0


@pytest.mark.parametrize("width,expected", [
    (59.999, None), (60.0, 60.0), (119.9, 60.0), (120.0, 120.0), (599.0, 120.0), (600.0, 600.0),
    (3599.0, 600.0), (3600.0, 3600.0),
    (21599.0, 3600.0), (21600.0, 21600.0), (172799.0, 21600.0), (172800.0, 172800.0), (1e9, 172800.0)])
def test_tier_choice_at_every_boundary(width, expected):
    assert S.choose_tier(width) == expected


def test_grid_width_is_the_smallest_multiple_of_the_tier_not_below_the_wanted_width():
    assert S.grid_width(173.0, 60.0) == 180.0
    assert S.grid_width(180.0, 60.0) == 180.0
    assert S.grid_width(10.0, 60.0) == 60.0


def test_rollup_refuses_a_tier_that_is_not_a_multiple():
    with pytest.raises(ValueError, match="not a multiple"):
        S.rollup(S.summarize(np.array([T0]), np.array([1.0]), 60.0), 60.0, 90.0)
