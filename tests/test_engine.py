"""Pure tests of the node's request logic, time rule, hook wiring and decimation."""

import math

import attrs
import numpy as np
import pytest

from sisock_core import Field, PluginSpec, Timeline, hookimpl
from sisock_core.engine import NodeEngine, PluginFailure, RequestError, fields_to_wire
from sisock_core.model import NodeContext
from sisock_core.plugins import PluginError, make_plugin_manager, plugin_spec
from sisock_core.timeutil import TimeRangeError, resolve_range, resolve_time

NOW = 1_500_000_000.0


class MemoryPlugin:
    """A plugin holding two timelines in memory; records the calls it gets."""

    def __init__(self):
        self.calls = []
        t_fast = np.arange(NOW - 1000, NOW, 1.0)
        t_slow = np.arange(NOW - 1000, NOW, 100.0)
        self.timelines = {
            "fast": Timeline(t_fast, {"a": np.sin(t_fast), "b": np.cos(t_fast)}, finalized_until=NOW - 1),
            "slow": Timeline(t_slow, {"c": np.arange(t_slow.size, dtype=float)}, finalized_until=None),
        }

    @hookimpl
    def sisock_plugin_spec(self):
        return PluginSpec(default_node_name="mem", description="memory")

    @hookimpl
    def list_fields(self, start, end):
        self.calls.append(("list_fields", start, end))
        return [
            Field("a", "fast", units="V", interval=1.0),
            Field("b", "fast", units="V", interval=1.0),
            Field("c", "slow", description="counter", interval=100.0),
        ]

    @hookimpl
    def read_range(self, fields, start, end):
        self.calls.append(("read_range", tuple(fields), start, end))
        return self.timelines


def make_engine(plugin=None, **kw):
    plugin = plugin or MemoryPlugin()
    pm = make_plugin_manager(plugin, name="mem")
    node = NodeContext(name="mem", description="memory")
    return NodeEngine(node, pm, "mem", clock=lambda: NOW, **kw), plugin


def test_resolve_time_relative_and_absolute():
    assert resolve_time(0, NOW) == NOW
    assert resolve_time(-60, NOW) == NOW - 60
    assert resolve_time(5, NOW) == 5.0
    assert resolve_range(1, 0, lambda: NOW) == (1.0, NOW)
    for bad in (float("nan"), float("inf"), "1", None, True):
        with pytest.raises(TimeRangeError):
            resolve_time(bad, NOW)


def test_get_fields_wire_shape_and_times_passed_to_hook():
    engine, plugin = make_engine()
    fields, timelines = engine.get_fields(-3600, 0)
    assert plugin.calls == [("list_fields", NOW - 3600, NOW)]
    assert fields["a"] == {"description": None, "timeline": "fast", "type": "number", "units": "V"}
    assert fields["c"]["description"] == "counter"
    assert timelines == {"fast": {"interval": 1.0, "field": ["a", "b"]},
                         "slow": {"interval": 100.0, "field": ["c"]}}


def test_get_data_trims_to_half_open_range_and_keeps_finalized_until():
    engine, _ = make_engine()
    ans = engine.get_data(["a", "c"], NOW - 500, NOW - 400)
    assert ans["timeline"]["fast"]["t"][0] == NOW - 500
    assert ans["timeline"]["fast"]["t"][-1] == NOW - 401
    assert len(ans["data"]["a"]) == 100
    assert ans["timeline"]["fast"]["finalized_until"] == NOW - 1
    assert ans["timeline"]["slow"] == {"t": [NOW - 500], "finalized_until": None}
    assert ans["data"]["c"] == [5.0]


def test_unknown_field_gives_empty_array_and_no_timeline():
    engine, _ = make_engine()
    ans = engine.get_data(["nope"], 1, 0)
    assert ans == {"data": {"nope": []}, "timeline": {}}


def test_timeline_only_for_requested_fields_with_data():
    engine, _ = make_engine()
    ans = engine.get_data(["c"], 1, 0)
    assert list(ans["timeline"]) == ["slow"]
    assert list(ans["data"]) == ["c"]


def test_bad_arguments_name_the_argument():
    engine, _ = make_engine()
    with pytest.raises(RequestError, match="field must be a list"):
        engine.get_data(42, 1, 0)
    with pytest.raises(RequestError, match=r"field\[1\] must be a string"):
        engine.get_data(["a", 3], 1, 0)
    with pytest.raises(RequestError, match="finite"):
        engine.get_data(["a"], float("nan"), 0)
    with pytest.raises(RequestError, match="min_stride"):
        engine.get_data(["a"], 1, 0, min_stride=-1)


def test_plugin_exception_becomes_plugin_failure_naming_node_and_hook():
    class Broken(MemoryPlugin):
        @hookimpl
        def read_range(self, fields, start, end):
            raise OSError("disk on fire")

    engine, _ = make_engine(Broken())
    with pytest.raises(PluginFailure, match=r"node 'mem': plugin 'mem' failed in read_range: OSError: disk on fire"):
        engine.get_data(["a"], 1, 0)
    # The engine is still usable afterwards.
    assert engine.get_fields(1, 0)[0]


def test_max_points_caps_every_field_and_keeps_spike():
    plugin = MemoryPlugin()
    t = plugin.timelines["fast"].t
    spike = np.zeros_like(t)
    spike[537] = 1e6
    plugin.timelines["fast"] = Timeline(t, {"a": spike, "b": -spike})
    engine, _ = make_engine(plugin, max_points=50)
    ans = engine.get_data(["a", "b"], 1, 0)
    assert len(ans["data"]["a"]) <= 50
    assert len(ans["timeline"]["fast"]["t"]) == len(ans["data"]["a"]) == len(ans["data"]["b"])
    assert max(ans["data"]["a"]) == 1e6 and min(ans["data"]["b"]) == -1e6
    # A request cap tighter than the node's own wins.
    ans = engine.get_data(["a"], 1, 0, max_points=10)
    assert len(ans["data"]["a"]) <= 10 and max(ans["data"]["a"]) == 1e6


def test_min_stride_reduces_and_is_ignored_when_data_is_sparse():
    engine, _ = make_engine()
    ans = engine.get_data(["a"], 1, 0, min_stride=10)
    t = np.array(ans["timeline"]["fast"]["t"])
    # 1000 s of 1 Hz data at >= 10 s per sample on average: about 100 samples.
    assert 90 <= t.size <= 101
    assert np.all(np.diff(t) > 0)
    assert (t[-1] - t[0]) / (t.size - 1) >= 9.5
    ans = engine.get_data(["c"], 1, 0, min_stride=10)
    assert len(ans["data"]["c"]) == 10


def test_fields_to_wire_interval_from_any_field():
    f, tl = fields_to_wire([Field("x", "t1"), Field("y", "t1", interval=2.0)])
    assert tl["t1"]["interval"] == 2.0


def test_misspelt_hook_fails_loudly():
    class Typo:
        @hookimpl
        def read_rnage(self, fields):
            return None

    with pytest.raises(PluginError, match="read_rnage"):
        make_plugin_manager(Typo(), name="typo")


def test_plugin_spec_must_be_declared():
    class NoSpec:
        pass

    pm = make_plugin_manager(NoSpec(), name="nospec")
    with pytest.raises(PluginError, match="must implement sisock_plugin_spec"):
        plugin_spec(pm, "nospec")


def test_plugin_options_must_be_attrs():
    class BadOptions:
        @hookimpl
        def sisock_plugin_spec(self):
            return PluginSpec(default_node_name="x", description="x", options=dict)

    with pytest.raises(PluginError, match="attrs class"):
        plugin_spec(make_plugin_manager(BadOptions(), name="bad"), "bad")


def test_hook_may_take_fewer_arguments():
    class Minimal:
        @hookimpl
        def read_range(self, fields):
            return {"t": Timeline([NOW - 1], {f: [1.0] for f in fields})}

    engine, _ = make_engine(Minimal())
    assert engine.get_data(["z"], 1, 0)["data"]["z"] == [1.0]


def test_timeline_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="has 2 values for 3 timestamps"):
        Timeline([1, 2, 3], {"x": [1, 2]})


def test_field_names_per_call_are_capped():
    from sisock_core.engine import MAX_FIELDS_PER_CALL, parse_field_argument

    assert parse_field_argument(["a"] * (MAX_FIELDS_PER_CALL * 3)) == ["a"]  # duplicates are free
    names = [f"f{i}" for i in range(MAX_FIELDS_PER_CALL)]
    assert parse_field_argument(names) == names
    with pytest.raises(RequestError, match=f"at most {MAX_FIELDS_PER_CALL} distinct field names per call, "
                                           f"got {10**6} names"):
        parse_field_argument([f"f{i}" for i in range(10**6)])
