"""Pure tests of the summaries: exact against raw min-max decimation, merge, tiers, storage."""

import attrs
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
    (59.999, None), (60.0, 60.0), (119.9, 60.0), (120.0, 60.0), (599.0, 60.0), (600.0, 600.0),
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


def assert_buckets_equal(a, b):
    for c in S._INT_COLS + S._FLOAT_COLS:
        x, y = getattr(a, c), getattr(b, c)
        assert x.dtype == y.dtype, c
        np.testing.assert_array_equal(x, y, err_msg=c)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(series(max_size=150), st.lists(st.integers(0, 150), max_size=3), st.booleans(),
                          st.booleans()), max_size=5))
def test_many_series_at_once_equal_one_at_a_time(specs):
    """What the scanner computes per file (every series in one numpy pass, from pieces, some
    out of order, float32 kept in its precision) is what summarize gives series by series."""
    batch, expected = [], []
    for (t, y), cuts, shuffle, single in specs:
        if single and y.dtype.kind == "f":
            y = y.astype(np.float32)
        if shuffle and t.size > 1:
            t = t[::-1].copy()  # times going back: sorted (stably) first
            y = y[::-1].copy()
        order = np.argsort(t, kind="stable")
        expected.append(S.summarize(t[order], y[order]))
        cuts = sorted(c for c in cuts if c <= t.size)
        batch.append((np.split(t, cuts), np.split(y, cuts)) if cuts else (t, y))
    for got, want in zip(S.summarize_series(batch), expected):
        assert_buckets_equal(got, want)


@settings(max_examples=50, deadline=None)
@given(st.lists(series(max_size=150), max_size=5))
def test_rows_packed_and_unpacked_together_equal_one_at_a_time(data):
    parts = [S.summarize(t, y) for t, y in data]
    blobs = S.pack_many(parts, S.BASE_TIER)
    assert blobs == [S.pack(b, S.BASE_TIER) for b in parts]
    assert_buckets_equal(S.unpack_many(blobs, S.BASE_TIER),
                         S.concat([S.unpack(b, S.BASE_TIER) for b in blobs]) if any(parts) else S.Buckets.empty())


def test_rows_written_with_zlib_are_still_read():
    """Stores written before zstd hold zlib rows: they decode as before."""
    import zlib

    t = T0 + np.arange(0.0, 600.0, 0.7)
    b = S.summarize(t, np.sin(t))
    blob = S.pack(b, 60.0)
    assert blob[12:16] == b"\x28\xb5\x2f\xfd"  # zstd frame
    legacy = blob[:12] + zlib.compress(S.decompress(blob[12:]), 1)
    assert_buckets_equal(S.unpack(legacy, 60.0), b)
    assert_buckets_equal(S.unpack_many([legacy, blob], 60.0), S.concat([b, b]))


def test_merge_of_rows_apart_keeps_their_order_and_of_overlapping_rows_combines_them():
    t = T0 - T0 % 60 + np.arange(0.0, 3600.0, 1.0)  # rows of 600 samples: whole buckets
    y = np.cos(t)
    whole = S.summarize(t, y)
    rows = [S.summarize(t[i:i + 600], y[i:i + 600]) for i in range(0, 3600, 600)]
    assert_buckets_equal(S.merge(rows[::-1]), whole)  # apart: sorted, nothing merged
    halves = [S.summarize(t[i:i + 45], y[i:i + 45]) for i in range(0, 3600, 45)]  # buckets split in two
    merged = S.merge(halves[::-1])
    np.testing.assert_allclose(merged.vsum, whole.vsum, rtol=1e-12, atol=1e-12)  # summed in another order
    assert_buckets_equal(attrs.evolve(merged, vsum=whole.vsum), whole)


def test_the_memo_gives_back_only_the_row_written_and_only_once():
    from sisock_core.summarystore import RowMemo

    b = S.summarize(T0 + np.arange(600.0), np.arange(600.0))
    memo = RowMemo(max_bytes=b.nbytes)
    memo.put((1, 0, "f", 0), 7, b)
    memo.put((2, 0, "f", 0), 7, b)  # over its budget: not kept
    assert memo.take((2, 0, "f", 0), 7) is None
    assert memo.take((1, 0, "f", 0), 8) is None  # another row than the one written (its checksum)
    memo.put((1, 0, "f", 0), 9, b.take(slice(0, 3)))
    memo.put((1, 0, "f", 0), 7, b)  # written again: the newest is kept
    assert memo.take((1, 0, "f", 0), 7) is b
    assert memo.take((1, 0, "f", 0), 7) is None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(series(max_size=150), st.lists(st.integers(0, 150), max_size=3)), max_size=5),
       st.sampled_from(range(1, len(S.TIERS))), st.randoms(use_true_random=False))
def test_many_series_rolled_up_together_equal_one_at_a_time(data, tier, rnd):
    """The store's rollup: rows of several series and sources, in any order, rolled up at once."""
    index, pieces, expected = [], [], []
    for i, ((t, y), cuts) in enumerate(data):
        t = t - 2e9 * (i % 2)  # some before 1970
        rows = [S.summarize(t[c], y[c]) for c in np.split(np.arange(t.size), sorted(set(c for c in cuts if c <= t.size)))]
        expected.append(S.rollup(S.merge(rows), S.BASE_TIER, S.TIERS[tier]))
        pieces.extend((i, r) for r in rows)
    rnd.shuffle(pieces)
    got_index, got = S.rollup_banded(
        np.concatenate([np.full(len(r), i, dtype=np.int64) for i, r in pieces]) if pieces else np.zeros(0, np.int64),
        S.concat([r for _, r in pieces]), S.BASE_TIER, S.TIERS[tier])
    assert np.all(np.diff(got_index) >= 0)
    for i, want in enumerate(expected):
        mine = got.take(got_index == i)
        np.testing.assert_allclose(mine.vsum, want.vsum, rtol=1e-12, atol=1e-9)  # summed in another grouping
        assert_buckets_equal(attrs.evolve(mine, vsum=want.vsum), want)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(series(max_size=150), st.integers(1, 3), st.booleans(), st.booleans()), max_size=5))
def test_fields_of_many_timelines_at_once_equal_one_at_a_time(specs):
    """What the g3 scanner computes per file: the fields of every timeline (sharing its
    times, some out of order, float32 kept in its precision) in one pass."""
    batch, expected = [], []
    for (t, y), nfields, shuffle, single in specs:
        cols = {f"f{j}": (y * (j + 1) if y.dtype.kind == "f" else y + j) for j in range(nfields)}
        if single and y.dtype.kind == "f":  # float32 fields beside a float64 one (when there are 2+)
            for k in list(cols)[:max(1, nfields - 1)]:
                cols[k] = cols[k].astype(np.float32)
        if shuffle and t.size > 1:
            t = t[::-1].copy()
            cols = {k: v[::-1].copy() for k, v in cols.items()}
        order = np.argsort(t, kind="stable")
        expected.append({k: S.summarize(t[order], v[order]) for k, v in cols.items()})
        batch.append((t, cols))
    for got, want in zip(S.summarize_timelines(batch), expected, strict=True):
        assert got.keys() == want.keys()
        for k in want:
            assert_buckets_equal(got[k], want[k])


def test_the_column_order_of_buckets_is_the_order_of_its_fields():
    """``take`` and ``concat`` build Buckets positionally from the column list."""
    assert [f.name for f in attrs.fields(S.Buckets)] == list(S._INT_COLS + S._FLOAT_COLS)
    b = S.summarize(np.arange(0.0, 600.0, 7.0), np.arange(0.0, 600.0, 7.0) % 13)
    both = S.concat([b.take(slice(0, 4)), b.take(slice(4, None))])
    for c in S._INT_COLS + S._FLOAT_COLS:
        assert np.array_equal(getattr(both, c), getattr(b, c))


def test_rows_of_consecutive_files_sharing_an_edge_bucket_roll_up_without_sorting(monkeypatch):
    """Rows in order of series and time, where one file's last bucket is the next one's
    first (staggered channels), are merged as they come: the same result as sorted."""
    t = T0 + 7.3 + np.arange(7200.0)
    y = np.sin(t / 300.0)
    cut = 3600  # at T0 + 3607.3: inside a 60 s bucket
    rows = [S.summarize(t[:cut], y[:cut]), S.summarize(t[cut:], y[cut:])]
    assert rows[0].k[-1] == rows[1].k[0]
    b = S.concat(rows)
    assert S._in_merge_order(b.k, b.t_first)
    reordered = S.concat(rows[::-1])
    assert not S._in_merge_order(reordered.k, reordered.t_first)
    sorts, lexsort = [], np.lexsort
    monkeypatch.setattr(S.np, "lexsort", lambda keys: sorts.append(1) or lexsort(keys))
    index, got = S.rollup_banded(np.zeros(len(b), np.int64), b, S.BASE_TIER, 600.0)
    assert not sorts
    assert_buckets_equal(got, S.rollup(S.merge(rows), S.BASE_TIER, 600.0))
    _, got = S.rollup_banded(np.zeros(len(b), np.int64), reordered, S.BASE_TIER, 600.0)
    assert sorts
    assert_buckets_equal(got, S.rollup(S.merge(rows), S.BASE_TIER, 600.0))
