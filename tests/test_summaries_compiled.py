"""The compiled summaries (``sisock_core._buckets``) against the numpy path, bit for bit."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sisock_core import summaries as S

T0 = 1_600_000_000.0
SECOND = 1e8  # spt3g's ticks per second

if S._buckets is None:  # the install could not build it: the numpy path is all there is
    pytest.skip("sisock_core._buckets is not built here (no C compiler at install time)",
                allow_module_level=True)


def numpy_path(times, fields, width):
    """``{name: (kind, buckets)}`` as the numpy path computes them from the joined blocks."""
    t = np.concatenate(times).astype(np.int64) / SECOND
    cols = {name: np.concatenate(blocks) for name, blocks in fields.items()}
    got = S.summarize_many(t, cols, width)
    return {name: (cols[name].dtype.kind, got[name]) for name in fields}


def assert_identical(a, b):
    """Equal columns; floats equal bit for bit where not NaN (signed zeros, sums' rounding)."""
    for col in S._INT_COLS + S._FLOAT_COLS:
        x, y = getattr(a, col), getattr(b, col)
        assert x.dtype == y.dtype, col
        np.testing.assert_array_equal(np.isnan(x) if x.dtype.kind == "f" else x,
                                      np.isnan(y) if y.dtype.kind == "f" else y, err_msg=col)
        if x.dtype.kind == "f":
            ok = ~np.isnan(x)
            np.testing.assert_array_equal(x[ok].view(np.int64), y[ok].view(np.int64), err_msg=col)


@st.composite
def blocks(draw):
    """Blocks of an aggregator's feed: int64 ticks, ascending (with repeats), float and
    int fields with NaN, infinities, signed zeros, and buckets of 1 to ~6000 samples
    (drawn as parameters of a seeded generator: hypothesis shrinks those)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    sizes = rng.integers(0, draw(st.sampled_from([3, 30, 300, 3000])), size=draw(st.integers(1, 5)))
    n = int(sizes.sum())
    steps = rng.choice(np.array([0, 1, 7, 10**7, 10**8, 6 * 10**9, 10**11]), size=n,
                       p=draw(st.sampled_from([None, [0.05, 0.05, 0.05, 0.6, 0.15, 0.05, 0.05]])))
    ticks = int(T0 * SECOND) + int(rng.integers(-10**10, 10**10)) + np.cumsum(steps)
    x = rng.normal(size=n) * 10.0 ** draw(st.integers(-300, 300))
    specials = np.array([np.nan, 0.0, -0.0, np.inf, -np.inf, 1e-300])
    odd = rng.random(n) < draw(st.sampled_from([0.0, 0.02, 0.5, 1.0]))
    x[odd] = rng.choice(specials, size=int(odd.sum()))
    i = rng.integers(-2**40, 2**40, size=n)
    cuts = np.cumsum(sizes)[:-1]
    return np.split(ticks, cuts), {"x": np.split(x, cuts), "i": np.split(i, cuts)}


@settings(max_examples=400, deadline=None)
@given(blocks(), st.sampled_from([1.0, 60.0, 600.0, 86400.0]))
def test_compiled_summaries_equal_the_numpy_path(data, width):
    times, fields = data
    if sum(t.size for t in times) == 0:
        return
    got = S.summarize_blocks(times, list(fields), list(fields.values()), width, SECOND)
    packed = S.summarize_blocks(times, list(fields), list(fields.values()), width, SECOND, packed=True)
    want = numpy_path(times, fields, width)
    assert got.keys() == want.keys() == packed.keys()
    for name in fields:
        assert got[name][0] == want[name][0]
        assert_identical(got[name][1], want[name][1])
        assert packed[name][1].blob() == S.pack(want[name][1], width)  # laid out as pack lays it out


def test_extrema_are_the_first_samples_equal_to_them_at_every_bucket_length():
    """Signed zeros and repeated extrema, at lengths around the vectorized pairs (odd
    tails included): the extrema are the values and times of their first samples."""
    rng = np.random.default_rng(8)
    for n in range(1, 12):
        for _ in range(40):
            x = rng.choice(np.array([0.0, -0.0, 1.0, -1.0, 2.0, -2.0]), size=n)
            ticks = int(T0 // 60 * 60 * SECOND) + np.arange(n, dtype=np.int64) * int(SECOND)
            got = S.summarize_blocks([ticks], ["x"], [[x]], 60.0, SECOND)
            assert_identical(got["x"][1], numpy_path([ticks], {"x": [x]}, 60.0)["x"][1])


def test_long_buckets_sum_as_numpy_does():
    """Buckets over 128 samples: numpy's pairwise summation splits them; so must the kernel."""
    rng = np.random.default_rng(7)
    n = 5000
    ticks = int(T0 * SECOND) + np.arange(n, dtype=np.int64) * 10**7  # 10 Hz: 600 per minute
    x = rng.normal(size=n) * 1e6
    x[rng.random(n) < 0.05] = np.nan
    times, fields = np.split(ticks, [1234, 4000]), {"x": np.split(x, [1234, 4000])}
    got = S.summarize_blocks(times, ["x"], [fields["x"]], 60.0, SECOND)
    assert_identical(got["x"][1], numpy_path(times, fields, 60.0)["x"][1])


def test_strided_vectors_are_read_as_they_are():
    """spt3g's time vectors are strided buffers; numpy views with a stride stand in."""
    ticks = (int(T0 * SECOND) + np.arange(400, dtype=np.int64) * SECOND).astype(np.int64)
    wide = np.zeros((400, 2), dtype=np.int64)
    wide[:, 0] = ticks
    x = np.linspace(-1, 1, 800)[::2]
    got = S.summarize_blocks([wide[:, 0]], ["x"], [[x]], 60.0, SECOND)
    assert_identical(got["x"][1], numpy_path([ticks], {"x": [np.ascontiguousarray(x)]}, 60.0)["x"][1])


def test_times_not_ascending_are_left_to_the_numpy_path():
    ticks = np.array([3, 2, 1], dtype=np.int64) * 10**9 + int(T0 * SECOND)
    assert S.summarize_blocks([ticks], ["x"], [[np.zeros(3)]], 60.0, SECOND) is None


@pytest.mark.parametrize("values,error,match", [
    ([np.zeros(3, dtype=np.float32)], TypeError, "float64 or int64"),
    ([np.zeros(2)], ValueError, "2 values for 3 times"),
    ([np.zeros(3), np.zeros(3)], ValueError, "a list of 1 vectors"),
])
def test_bad_vectors_raise_and_name_what_is_wrong(values, error, match):
    ticks = np.arange(3, dtype=np.int64) + int(T0 * SECOND)
    with pytest.raises(error, match=match):
        S.summarize_blocks([ticks], ["x"], [values], 60.0, SECOND)


def test_no_samples():
    """Nothing to summarize: None, and the caller's numpy path gives empty buckets."""
    assert S.summarize_blocks([np.zeros(0, dtype=np.int64)], ["x"], [[np.zeros(0)]], 60.0, SECOND) is None


def test_packed_buckets_are_the_rows_pack_writes():
    rng = np.random.default_rng(5)
    ticks = int(T0 * SECOND) + np.cumsum(rng.integers(0, 3 * 10**8, 900))
    times = np.split(ticks, [300, 600])
    fields = [np.split(rng.normal(size=900), [300, 600]), np.split(rng.integers(-9, 9, 900), [300, 600])]
    columns = S.summarize_blocks(times, ["x", "i"], fields, 60.0, SECOND)
    packed = S.summarize_blocks(times, ["x", "i"], fields, 60.0, SECOND, packed=True)
    for name in ("x", "i"):
        kind, p = packed[name]
        b = columns[name][1]
        assert kind == columns[name][0] and isinstance(p, S.PackedBuckets)
        assert p.blob() == S.pack(b, 60.0)
        assert len(p) == len(b) and p.width == 60.0
        assert_identical(S.unpack(p.blob(), 60.0), b)


def test_packed_buckets_of_many_fields_join_as_their_columns_do():
    rng = np.random.default_rng(9)
    times, fields = [], {"x": [], "y": []}
    parts, want = [], []
    for n in (1, 700, 61, 3000):
        ticks = int(T0 * SECOND) + np.cumsum(rng.integers(10**8, 3 * 10**9, n))
        x, y = rng.normal(size=n), rng.integers(-99, 99, n)
        got = S.summarize_blocks([ticks], ["x", "y"], [[x], [y]], 60.0, SECOND, packed=True)
        parts += [got["x"][1], got["y"][1]]
        want += [numpy_path([ticks], {"x": [x]}, 60.0)["x"][1], numpy_path([ticks], {"y": [y]}, 60.0)["y"][1]]
    assert_identical(S.concat_packed(parts), S.concat(want))
    assert_identical(parts[5].buckets, want[5])
    with pytest.raises(ValueError, match="piece 1: 12 bytes are not 4 columns of 8-byte values"):
        S._buckets.join_columns([bytes(32), bytes(12)], 4)


def test_a_store_holds_the_same_rows_and_spans_whether_buckets_come_packed_or_not(tmp_path):
    """Fields of one timeline share a span (one update for them); the file's group and its
    parts are byte-identical."""
    from sisock_core.summarystore import SummaryStore

    rng = np.random.default_rng(6)
    ticks = int(T0 * SECOND) + np.cumsum(rng.integers(10**7, 2 * 10**8, 2000))
    other = ticks[:700] + 3 * 10**8
    groups = [([ticks], {"a": [rng.normal(size=2000)], "b": [rng.normal(size=2000)]}),
              ([other], {"c": [rng.normal(size=700)]})]
    stores = {}
    for packed in (False, True):
        store = stores[packed] = SummaryStore(f"sqlite:///{tmp_path}/{packed}.sqlite")
        with store.cursor(write=True) as cur:
            items = []
            for times, fields in groups:
                got = S.summarize_blocks(times, list(fields), list(fields.values()), 60.0, SECOND, packed=packed)
                items += [(store.writer.series_id(cur, name, "tl", kind), b) for name, (kind, b) in got.items()]
            store.writer.put_bases(cur, "file-1", items)
    rows = {}
    for packed, store in stores.items():
        with store.cursor() as cur:
            cur.execute("SELECT p.series_id, p.source, p.seg, p.t0, p.t1, p.m, p.at_byte, p.n_bytes, g.t0, g.t1, g.data "
                        "FROM sisock_sum_parts p JOIN sisock_sum_groups g ON g.source = p.source ORDER BY 1")
            rows[packed] = cur.fetchall()
        info = store.series(["a", "b", "c"])
        assert (info["a"].t_first, info["a"].t_last) == (ticks[0] / SECOND, ticks[-1] / SECOND)
        assert (info["a"].t_first, info["a"].t_last) == (info["b"].t_first, info["b"].t_last)
        assert (info["c"].t_first, info["c"].t_last) == (other[0] / SECOND, other[-1] / SECOND)
        assert info["c"].dirty == (np.floor(other[0] / SECOND / 60) * 60, (np.floor(other[-1] / SECOND / 60) + 1) * 60)
        store.close()
    assert rows[True] == rows[False] and len(rows[True]) == 3


def test_buffers_without_strides_or_alignment_are_read_too():
    """ctypes arrays export no strides; a buffer may start at an odd address."""
    import ctypes

    ticks = int(T0 * SECOND) + np.arange(5, dtype=np.int64) * 10**9
    x = np.array([1.0, -2.0, 3.0, np.nan, 0.5])
    want = S.summarize_blocks([ticks], ["x"], [[x]], 60.0, SECOND)["x"][1]
    got = S.summarize_blocks([(ctypes.c_int64 * 5)(*ticks.tolist())], ["x"],
                             [[(ctypes.c_double * 5)(*x.tolist())]], 60.0, SECOND)["x"][1]
    assert_identical(got, want)
    raw = bytearray(1 + 5 * 8)
    odd = np.frombuffer(raw, dtype=np.float64, offset=1, count=5)
    odd[:] = x
    assert odd.ctypes.data % 8
    assert_identical(S.summarize_blocks([ticks], ["x"], [[odd]], 60.0, SECOND)["x"][1], want)
