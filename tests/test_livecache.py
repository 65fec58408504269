"""Pure tests of the live cache: ring buffers, window, types, memory bound, threads."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sisock_core.engine import NodeEngine
from sisock_core.livecache import LiveCache, LiveCacheError, to_column
from sisock_core.model import NodeContext
from sisock_core.plugins import make_plugin_manager
from sisock_core import PluginSpec, hookimpl

T0 = 1_700_000_000.0


class Clock:
    """An injectable clock: ``clock.now`` is the current UNIX time."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def lakeshore_batch(t0: float, n: int = 10, channels: int = 16, rate: float = 10.0):
    t = t0 + np.arange(n) / rate
    return t, {f"channel_{c:02d}_t": 0.1 * c + np.sin(t) for c in range(channels)}


def test_batch_shares_a_timeline_and_range_is_half_open():
    clock = Clock(T0 + 100)
    cache = LiveCache(3600, clock=clock)
    for i in range(20):
        t, data = lakeshore_batch(T0 + i)
        assert cache.append("temps", t, data).problems == []
    cache.append("pressures", [T0 + 5.05], {"p1": [1e-6]})
    out = cache.read_range(["channel_00_t", "channel_03_t", "p1", "missing"], T0 + 5, T0 + 6)
    assert set(out) == {"temps", "pressures"}
    temps = out["temps"]
    assert temps.t[0] == T0 + 5 and temps.t[-1] == pytest.approx(T0 + 5.9)
    assert temps.t.size == 10
    np.testing.assert_allclose(temps.data["channel_03_t"], 0.3 + np.sin(temps.t))
    assert temps.finalized_until == pytest.approx(T0 + 19.9)
    assert out["pressures"].data["p1"].tolist() == [1e-6]
    # the views handed out are read-only
    with pytest.raises(ValueError):
        temps.t[0] = 0


def test_list_fields_types_units_interval_and_range():
    clock = Clock(T0 + 100)
    cache = LiveCache(3600, clock=clock)
    cache.append("b", [T0, T0 + 1, T0 + 2],
                 {"x": [1.5, 2.5, 3.5], "n": [1, 2, 3], "ok": [True, False, True], "s": ["a", "b", "c"]},
                 units={"x": "K"}, descriptions={"x": "stage temperature"})
    fields = {f.name: f for f in cache.list_fields(T0, T0 + 10)}
    assert {n: f.type for n, f in fields.items()} == {"x": "number", "n": "number", "ok": "bool", "s": "string"}
    assert fields["x"].units == "K" and fields["x"].description == "stage temperature"
    assert fields["x"].timeline == "b" and fields["x"].interval == 1.0
    assert cache.list_fields(T0 + 3, T0 + 10) == []
    assert cache.list_fields(T0 - 10, T0) == []
    assert len(cache.list_fields(T0 + 2, T0 + 2.5)) == 4
    out = cache.read_range(["n", "ok", "s"], 0, T0 + 10)["b"].data
    assert out["n"].dtype == np.int64 and out["n"].tolist() == [1, 2, 3]
    assert out["ok"].tolist() == [True, False, True] and out["s"].tolist() == ["a", "b", "c"]


def test_window_drops_old_data_with_injected_clock_and_frees_memory():
    clock = Clock(T0)
    cache = LiveCache(60, clock=clock)
    for i in range(120):  # two minutes of 10 Hz
        clock.now = T0 + i + 1
        cache.append("temps", *lakeshore_batch(T0 + i, channels=2))
    t = cache.read_range(["channel_00_t"], 0, T0 + 1000)["temps"].t
    assert t[0] >= clock.now - 60 and t[-1] == pytest.approx(T0 + 119.9)
    assert t.size == pytest.approx(600, abs=10)
    assert cache.stats().dropped_old == pytest.approx(600, abs=10)
    # no new data: a query an hour later finds nothing and the memory is released
    clock.now += 3600
    assert cache.read_range(["channel_00_t"], 0, clock.now) == {}
    assert cache.list_fields(0, clock.now) == []
    assert cache.stats().bytes == 0 and cache.fields() == {}


def test_window_edge_sample_exactly_buffer_time_old_is_kept():
    clock = Clock(T0 + 60)
    cache = LiveCache(60, clock=clock)
    cache.append("b", [T0 - 0.001, T0, T0 + 1], {"v": [0, 1, 2]})
    assert cache.read_range(["v"], 0, T0 + 100)["b"].data["v"].tolist() == [1, 2]
    clock.now = T0 + 60.5
    assert cache.read_range(["v"], 0, T0 + 100)["b"].data["v"].tolist() == [2]


def test_max_samples_drops_oldest_even_inside_window():
    cache = LiveCache(3600, max_samples=100, clock=Clock(T0 + 100))
    for i in range(30):
        cache.append("fast", T0 + i * 10 + np.arange(10), {"v": np.arange(10) + 10.0 * i})
    out = cache.read_range(["v"], 0, T0 + 1000)["fast"]
    assert out.t.size == 100 and out.data["v"][-1] == 299.0 and out.data["v"][0] == 200.0
    assert cache.stats().dropped_cap == 200


def test_missing_fields_and_wrong_types_are_filled_and_reported():
    cache = LiveCache(3600, clock=Clock(T0 + 100))
    cache.append("b", [T0], {"n": [1], "ok": [True], "s": ["a"], "x": [1.0]})
    res = cache.append("b", [T0 + 1], {"x": [2.0]})  # the others are missing from this batch
    assert res.problems == []
    res = cache.append("b", [T0 + 2], {"n": [3], "ok": [True], "s": ["c"], "x": ["oops"]})
    assert res.problems == [
        "field 'x' of timeline 'b' holds number values; got string values, stored as missing"
    ]
    assert "x" not in res.data and set(res.data) == {"n", "ok", "s"}
    d = cache.read_range(["n", "ok", "s", "x"], 0, T0 + 10)["b"].data
    assert d["n"].tolist()[0] == 1 and math.isnan(d["n"][1]) and d["n"][2] == 3  # int -> float
    assert d["ok"].tolist() == [True, None, True]
    assert d["s"].tolist() == ["a", None, "c"]
    assert d["x"][:2].tolist() == [1.0, 2.0] and math.isnan(d["x"][2])
    types = {f.name: f.type for f in cache.list_fields(0, T0 + 10)}
    assert types == {"n": "number", "ok": "bool", "s": "string", "x": "number"}
    # a later float turns an int field into float without loss
    cache.append("c", [T0], {"k": [1]})
    cache.append("c", [T0 + 1], {"k": [1.5]})
    assert cache.read_range(["k"], 0, T0 + 10)["c"].data["k"].tolist() == [1.0, 1.5]


def test_bad_fields_are_left_out_and_the_rest_kept():
    cache = LiveCache(3600, clock=Clock(T0 + 100))
    res = cache.append("b", [T0, T0 + 1, float("nan")],
                       {"good": [1.0, 2.0, 3.0], "short": [1.0], "mixed": [1, "a", None], "": [1, 2, 3]})
    assert sorted(res.problems) == sorted([
        "field 'short' of timeline 'b' has 1 values for 3 times",
        "field 'mixed' of timeline 'b': values of mixed or unsupported types (NoneType, int, str)",
        "timeline 'b': field name '' is not a non-empty string",
        "timeline 'b': dropped 1 rows with a non-finite time",
    ])
    data = cache.read_range(["good", "short", "mixed"], 0, T0 + 10)["b"].data
    assert {k: v.tolist() for k, v in data.items()} == {"good": [1.0, 2.0]}
    with pytest.raises(LiveCacheError, match="timeline must be a non-empty string"):
        cache.append("", [T0], {"a": [1]})
    with pytest.raises(LiveCacheError, match="times are not numbers"):
        cache.append("b", ["x"], {"a": [1]})


def test_unsorted_and_late_batches_are_kept_in_time_order():
    cache = LiveCache(3600, clock=Clock(T0 + 100))
    cache.append("b", [T0 + 3, T0 + 1, T0 + 2], {"v": [3, 1, 2]})
    cache.append("b", [T0 + 10, T0 + 11], {"v": [10, 11]})
    cache.append("b", [T0 + 5, T0 + 0.5], {"v": [5, 0.5], "w": ["late", "later"]})  # late samples
    out = cache.read_range(["v", "w"], 0, T0 + 100)["b"]
    assert out.t.tolist() == [T0 + x for x in (0.5, 1, 2, 3, 5, 10, 11)]
    assert out.data["v"].tolist() == [0.5, 1, 2, 3, 5, 10, 11]
    assert out.data["w"].tolist() == ["later", None, None, None, "late", None, None]
    cache.append("b", [T0 + 12], {"v": [12]})  # appending after a merge still works
    assert cache.read_range(["v"], T0 + 11, T0 + 100)["b"].data["v"].tolist() == [11, 12]


def test_views_stay_valid_while_the_buffer_grows_and_compacts():
    clock = Clock(T0)
    cache = LiveCache(100, clock=clock)
    cache.append("b", T0 + np.arange(50.0), {"v": np.arange(50.0)})
    view = cache.read_range(["v"], T0 + 10, T0 + 20)["b"]
    before = (view.t.copy(), view.data["v"].copy())
    for i in range(50, 5000):
        clock.now = T0 + i
        cache.append("b", [T0 + i], {"v": [float(-i)], "new": [1]})
    np.testing.assert_array_equal(view.t, before[0])
    np.testing.assert_array_equal(view.data["v"], before[1])


def test_field_moving_to_another_timeline_is_reported():
    cache = LiveCache(3600, clock=Clock(T0 + 100))
    cache.append("one", [T0], {"a": [1.0], "b": [2.0]})
    res = cache.append("two", [T0 + 1], {"a": [3.0]})
    assert res.problems == ["field 'a' moved from timeline 'one' to 'two'; its older samples are dropped"]
    assert cache.fields() == {"a": "two", "b": "one"}
    assert cache.read_range(["a"], 0, T0 + 10)["two"].data["a"].tolist() == [3.0]


def test_memory_stays_flat_over_hours_of_ingest_within_twice_raw():
    """Six simulated hours of a 16-channel 10 Hz feed in a one-hour window."""
    clock = Clock(T0)
    cache = LiveCache(3600, clock=clock)
    per_hour = []
    for second in range(6 * 3600):
        clock.now = T0 + second + 1
        cache.append("temps", *lakeshore_batch(T0 + second))
        if second % 3600 == 3599:
            per_hour.append(cache.stats())
    raw_per_sample = 8 + 8 / 16  # one float64 value + a sixteenth of the shared timestamp
    for s in per_hour:
        assert s.rows == 36000 and s.samples == 16 * 36000
        assert s.bytes_per_sample <= 2 * raw_per_sample + 0.01
        assert s.bytes_per_sample <= 2 * 16  # performance.md P6 bar
    assert max(s.bytes for s in per_hour[1:]) == min(s.bytes for s in per_hour[1:])
    assert set(per_hour[-1].per_field) == {f"channel_{c:02d}_t" for c in range(16)}


def test_concurrent_ingest_and_queries_stay_consistent():
    clock = Clock(T0 + 1000)
    cache = LiveCache(3600, clock=clock)
    errors: list[str] = []
    checked = [0]

    def writer(k: int) -> None:
        for i in range(300):
            t = T0 + i + np.arange(5) / 5
            cache.append(f"tl{k}", t, {f"a{k}": t, f"b{k}": -t})

    def reader() -> None:
        for _ in range(300):
            for tl in cache.read_range(["a0", "b0", "a1", "b1"], 0, T0 + 1e6).values():
                if not (np.all(np.diff(tl.t) >= 0) and all(v.size == tl.t.size for v in tl.data.values())):
                    errors.append("inconsistent timeline")
                a = [v for k, v in tl.data.items() if k.startswith("a")][0]
                if not np.array_equal(a, tl.t):
                    errors.append("values do not match their times")
                checked[0] += tl.t.size

    threads = [threading.Thread(target=writer, args=(k,)) for k in (0, 1)] + [threading.Thread(target=reader)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == [] and checked[0] > 0
    assert cache.stats().rows == 2 * 1500


def test_to_column_types():
    assert to_column([1, 2]).dtype == np.int64
    assert to_column([1, 2.5]).dtype == np.float64
    assert to_column([True, False]).dtype == bool
    assert to_column(["a", "b"]).dtype == object
    assert to_column([2**70]).dtype == np.float64
    assert to_column(np.array([1, 2], dtype=np.uint8)).dtype == np.int64
    with pytest.raises(LiveCacheError, match="mixed"):
        to_column([True, 1])
    with pytest.raises(LiveCacheError, match="1-D"):
        to_column([[1, 2]])


def test_bad_window_settings_are_refused():
    with pytest.raises(ValueError, match="buffer_time must be a positive number"):
        LiveCache(0)
    with pytest.raises(ValueError, match="max_samples must be a positive integer"):
        LiveCache(10, max_samples=0)


class LivePlugin:
    """A plugin that leaves reads to the core's live cache (returns None)."""

    @hookimpl
    def sisock_plugin_spec(self):
        return PluginSpec(default_node_name="live", description="live")

    @hookimpl
    def list_fields(self, start, end):
        return None

    @hookimpl
    def read_range(self, fields, start, end):
        return None


def test_engine_answers_from_the_live_cache_with_decimation():
    clock = Clock(T0 + 3600)
    cache = LiveCache(3600, clock=clock)
    for i in range(3600):
        cache.append("temps", *lakeshore_batch(T0 + i, channels=2))
    engine = NodeEngine(NodeContext("live", "live"), make_plugin_manager(LivePlugin(), name="live"),
                        "live", clock=clock, live_cache=cache)
    fields, timelines = engine.get_fields(-600, 0)
    assert set(fields) == {"channel_00_t", "channel_01_t"}
    assert timelines["temps"]["interval"] == 0.1
    ans = engine.get_data(["channel_00_t", "nope"], -60, 0)
    assert len(ans["data"]["channel_00_t"]) == 600 and ans["data"]["nope"] == []
    ans = engine.get_data(["channel_00_t"], -3600, 0, max_points=1000)
    assert 0 < len(ans["data"]["channel_00_t"]) <= 1000


# -- property: the cache behaves like a plain list of rows ------------------------------


@st.composite
def operations(draw):
    ops = []
    now = T0
    times = draw(st.lists(st.integers(0, 800), min_size=1, max_size=60, unique=True))
    pos = 0
    while pos < len(times):
        kind = draw(st.sampled_from(["append", "append", "advance", "read"]))
        if kind == "append":
            n = draw(st.integers(1, 4))
            ts = times[pos:pos + n]
            pos += n
            tl = draw(st.sampled_from(["p", "q"]))
            fields = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True))
            ops.append(("append", tl, [T0 + x / 2 for x in ts], {f"{tl}{f}": [x + 0.5 for x in ts]
                                                                   for f in fields}))
        elif kind == "advance":
            now += draw(st.integers(0, 100))
            ops.append(("advance", now))
        else:
            a, b = sorted(draw(st.lists(st.integers(-10, 810), min_size=2, max_size=2)))
            ops.append(("read", T0 + a / 2, T0 + b / 2))
    ops.append(("read", 0.0, T0 + 1e6))
    return ops


@settings(max_examples=150, deadline=None)
@given(operations(), st.integers(3, 12))
def test_property_matches_reference_model(ops, cap):
    window = 150.0
    clock = Clock(T0)
    cache = LiveCache(window, max_samples=cap, clock=clock)
    rows: dict[str, list[tuple[float, dict]]] = {"p": [], "q": []}

    def prune(tl):
        kept = [r for r in rows[tl] if r[0] >= clock.now - window]
        rows[tl] = kept[-cap:] if len(kept) > cap else kept

    for op in ops:
        if op[0] == "append":
            _, tl, ts, data = op
            cache.append(tl, ts, data)
            for i, t in enumerate(ts):
                rows[tl].append((t, {k: v[i] for k, v in data.items()}))
            rows[tl].sort(key=lambda r: r[0])
            prune(tl)
        elif op[0] == "advance":
            clock.now = max(clock.now, op[1])
        else:
            _, start, end = op
            for tl in rows:
                prune(tl)
            names = ["pa", "pb", "pc", "qa", "qb", "qc"]
            got = {tl: (x.t.tolist(), {k: [None if isinstance(v, float) and math.isnan(v) else v
                                         for v in arr.tolist()] for k, arr in x.data.items()})
                   for tl, x in cache.read_range(names, start, end).items()}
            expected = {}
            for tl, rs in rows.items():
                live_fields = {k for _, d in rs for k in d}
                inside = [(t, d) for t, d in rs if start <= t < end]
                if not live_fields:
                    continue
                expected[tl] = ([t for t, _ in inside],
                                {k: [d.get(k) for _, d in inside] for k in sorted(live_fields)})
            assert {tl: (v[0], dict(sorted(v[1].items()))) for tl, v in got.items()} == expected
