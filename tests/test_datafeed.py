"""The datafeed plugin: OCS message parsing (pure) and a node in this process.

The in-process tests run the plugin in a real DataNodeServer with the in-memory
WAMP session of :mod:`sisock_core.testing` (events and answers pass through the
real msgpack serializer). ``test_datafeed_integration.py`` does the same against a
real crossbar router and a fake OCS agent.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sisock_core.config import ConfigError, load_config_text
from sisock_core.testing import start_node
from sisock_plugins.datafeed.ocs import feed_topic, ocs_name, parse_event

AGENT = "observatory.LSA22YE"
T0 = 1_700_000_000.0


def feed_data(address: str = AGENT, feed: str = "temperatures") -> dict:
    """``feed_data`` as ocs >= 0.9 sends it."""
    return {
        "agent_address": address, "agg_params": {"frame_length": 60, "fresh_time": 180},
        "feed_name": feed, "address": f"{address}.feeds.{feed}", "record": True,
        "session_id": "1700000000.0", "agent_class": "Lakeshore372Agent",
    }


def lakeshore_message(t0: float, n: int = 10, channels: int = 2) -> dict:
    """A current-format message: one block per channel (as the LS372 agent)."""
    ts = [t0 + i * 0.1 for i in range(n)]
    return {
        f"Channel {c:02d}": {
            "block_name": f"Channel {c:02d}",
            "timestamps": ts,
            "data": {f"Channel {c:02d} T": [1.0 + c + 0.001 * i for i in range(n)],
                     f"Channel {c:02d} R": [1000 + i for i in range(n)]},
        }
        for c in range(1, channels + 1)
    }


def parse(message, address=AGENT, **kw):
    return parse_event([[message, feed_data(address)]], {}, agent_address=AGENT, **kw)


# -- parsing ---------------------------------------------------------------------------


def test_current_format_blocks_become_timelines_with_original_names():
    out = parse(lakeshore_message(T0))
    assert out.rejected is None and out.problems == [] and out.format == "blocks"
    assert [b.timeline for b in out.batches] == [f"{AGENT}.channel_01", f"{AGENT}.channel_02"]
    b = out.batches[0]
    assert set(b.data) == {"channel_01_t", "channel_01_r"}
    assert b.t.tolist() == pytest.approx([T0 + i * 0.1 for i in range(10)])
    assert b.data["channel_01_r"].dtype == np.int64 and b.data["channel_01_t"].dtype == np.float64


def test_keep_ocs_names_serves_names_unchanged():
    out = parse(lakeshore_message(T0, channels=1), keep_ocs_names=True)
    assert out.batches[0].timeline == f"{AGENT}.Channel 01"
    assert set(out.batches[0].data) == {"Channel 01 T", "Channel 01 R"}
    assert ocs_name("Channel 01 T") == "channel_01_t" and ocs_name("Channel 01 T", True) == "Channel 01 T"


def test_str_bool_int_keep_their_types():
    msg = {"status": {"block_name": "status", "timestamps": [T0, T0 + 1],
                      "data": {"state": ["warm", "cooling"], "on": [True, False], "code": [3, 4],
                               "pressure_ch1": [1.5e-6, 2e-6]}}}
    data = parse(msg).batches[0].data
    assert data["state"].tolist() == ["warm", "cooling"] and data["state"].dtype == object
    assert data["on"].dtype == bool and data["code"].dtype == np.int64
    assert data["pressure_ch1"].dtype == np.float64


def test_old_block_key_name_is_accepted():
    msg = {"temps": {"name": "temps", "prefix": "", "timestamps": [T0], "data": {"Channel_1_T": [4.2]}}}
    out = parse(msg)
    assert out.batches[0].timeline == f"{AGENT}.temps" and out.batches[0].data["channel_1_t"].tolist() == [4.2]


def test_ocs_040_list_of_samples_is_grouped_by_block():
    samples = [
        {"block_name": "temps", "timestamp": T0, "data": {"Channel 1 T": 4.1, "Channel 1 V": 0.5}},
        {"block_name": "temps", "timestamp": T0 + 1, "data": {"Channel 1 T": 4.2, "Channel 1 V": 0.6}},
        {"block_name": "heater", "timestamp": T0 + 1.5, "data": {"power": 0.01}},
        {"block_name": "temps", "timestamp": T0 + 2, "data": {"Channel 1 T": 4.3, "Channel 1 V": 0.7}},
    ]
    out = parse(samples)
    assert out.format == "samples" and out.problems == []
    got = [(b.timeline, b.t.tolist(), {k: v.tolist() for k, v in b.data.items()}) for b in out.batches]
    assert got == [
        (f"{AGENT}.temps", [T0, T0 + 1], {"channel_1_t": [4.1, 4.2], "channel_1_v": [0.5, 0.6]}),
        (f"{AGENT}.heater", [T0 + 1.5], {"power": [0.01]}),
        (f"{AGENT}.temps", [T0 + 2], {"channel_1_t": [4.3], "channel_1_v": [0.7]}),
    ]


def test_single_sample_message_of_an_unbuffered_feed():
    out = parse({"block_name": "b", "timestamp": T0, "data": {"x": 1.5}})
    assert out.format == "sample" and out.batches[0].data["x"].tolist() == [1.5]


def test_other_agent_or_missing_feed_data_is_rejected():
    assert parse(lakeshore_message(T0), address="observatory.other").rejected == \
        "agent_address is 'observatory.other', expected 'observatory.LSA22YE'"
    out = parse_event([lakeshore_message(T0)], {}, agent_address=AGENT)
    assert out.rejected.startswith("expected one argument (message, feed_data), got 1")
    out = parse_event([[lakeshore_message(T0), "nope"]], {}, agent_address=AGENT)
    assert out.rejected == "feed_data must be a dict with 'agent_address', got str 'nope'"
    out = parse_event([[42, feed_data()]], {}, agent_address=AGENT)
    assert out.rejected == "message must be a dict of blocks or a list of samples, got int 42"
    assert out.batches == []


def test_malformed_blocks_are_reported_and_valid_blocks_kept():
    msg = lakeshore_message(T0, channels=1)
    msg["bad_times"] = {"block_name": "bad_times", "timestamps": [T0, "soon"], "data": {"a": [1, 2]}}
    msg["no_data"] = {"block_name": "no_data", "timestamps": [T0]}
    msg["not_a_block"] = [1, 2, 3]
    msg["partly"] = {"block_name": "partly", "timestamps": [T0, T0 + 1],
                     "data": {"ok": [1.0, 2.0], "short": [1.0], "mixed": [1.0, "x"], "Ok": [3.0, 4.0]}}
    out = parse(msg)
    assert [b.timeline for b in out.batches] == [f"{AGENT}.channel_01", f"{AGENT}.partly"]
    assert {k: v.tolist() for k, v in out.batches[1].data.items()} == {"ok": [1.0, 2.0]}
    assert out.problems == [
        "block 'bad_times': timestamp 1 is str 'soon', not a finite number; block left out",
        "block 'no_data': 'data' must be a dict of field -> values, got NoneType None",
        "block 'not_a_block': expected a dict with 'timestamps' and 'data', got list [1, 2, 3]",
        "block 'partly': field 'short' has 1 values for 2 timestamps; left out",
        "block 'partly': field 'mixed': values of mixed or unsupported types (float, str); left out",
        "block 'partly': fields 'ok' and 'Ok' are both named 'ok'; kept the first",
    ]


def test_malformed_samples_are_reported_and_valid_samples_kept():
    samples = [
        {"block_name": "temps", "timestamp": T0, "data": {"t": 1.0}},
        {"block_name": "temps", "timestamp": None, "data": {"t": 2.0}},
        "garbage",
        {"block_name": "temps", "timestamp": T0 + 2, "data": {}},
        {"timestamp": T0 + 3, "data": {"t": 3.0}},
        {"block_name": "temps", "timestamp": T0 + 4, "data": {"t": 4.0}},
    ]
    out = parse(samples)
    assert [(b.t.tolist(), b.data["t"].tolist()) for b in out.batches] == [([T0, T0 + 4], [1.0, 4.0])]
    assert out.problems == [
        "sample 1 (block 'temps'): 'timestamp' is NoneType None, not a finite number",
        "sample 2: expected a dict with 'block_name', 'timestamp' and 'data', got str 'garbage'",
        "sample 3 (block 'temps'): 'data' must be a dict of field -> value, got dict {}",
        "sample 4: 'block_name' must be a non-empty string, got NoneType None",
    ]


# -- options and environment -----------------------------------------------------------------


def load(text: str, env: dict | None = None):
    return load_config_text(text, "site.toml", env or {}, base_dir=".")


def test_options_and_original_environment_variables():
    cfg = load('[nodes.ls]\nplugin = "datafeed"\n',
               {"TARGET": "LSA22YE", "FEED": "temperatures", "NAME": "lakeshore_372",
                "DESCRIPTION": "LS372 in the DR", "BUFFER_TIME": "600"})
    node = cfg.nodes["lakeshore_372"]
    assert node.description == "LS372 in the DR"
    assert node.options.topic == feed_topic("LSA22YE", "temperatures") == "observatory.LSA22YE.feeds.temperatures"
    assert node.options.buffer_time == 600.0 and node.options.keep_ocs_names is False


def test_bad_options_are_reported_with_their_key():
    with pytest.raises(ConfigError) as err:
        load('[nodes.ls]\nplugin = "datafeed"\ntarget = "a.b"\nbuffer_time = -1\n')
    text = str(err.value)
    assert "site.toml: nodes.ls.target: must be a non-empty string without spaces, dots or '#'" in text
    assert "nodes.ls.feed: missing required key" in text
    assert "nodes.ls.buffer_time: must be a positive number, got -1" in text


# -- a node in this process ------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def node():
    clock = Clock(T0 + 10)
    n = start_node("datafeed", {"target": "LSA22YE", "feed": "temperatures", "buffer_time": 60},
                   name="lakeshore", clock=clock)
    n.clock = clock
    yield n
    n.stop()


TOPIC = "observatory.LSA22YE.feeds.temperatures"


def test_node_serves_feed_and_pushes_live_samples(node):
    events = node.subscribe("live")
    node.publish(TOPIC, (lakeshore_message(T0), feed_data()))
    fields, timelines = node.get_fields(-60, 0)
    assert set(fields) == {"channel_01_t", "channel_01_r", "channel_02_t", "channel_02_r"}
    assert fields["channel_01_t"] == {"description": None, "timeline": f"{AGENT}.channel_01",
                                      "type": "number", "units": None}
    assert timelines[f"{AGENT}.channel_01"]["interval"] == 0.1
    ans = node.get_data(["channel_01_t", "channel_02_r", "nope"], -60, 0)
    assert ans["data"]["channel_02_r"] == list(range(1000, 1010)) and ans["data"]["nope"] == []
    assert len(ans["timeline"][f"{AGENT}.channel_01"]["t"]) == 10
    events.wait(timeout=10, what="a live push")
    (args, kwargs), = events[:1]
    payload = args[0]
    assert payload["node"] == "lakeshore" and kwargs == {}
    assert payload["data"]["channel_01_t"] == pytest.approx([2.0 + 0.001 * i for i in range(10)])
    assert payload["timeline"][f"{AGENT}.channel_01"]["t"] == pytest.approx([T0 + i * 0.1 for i in range(10)])


def test_node_keeps_only_its_window_and_ignores_other_agents(node, log_lines):
    node.publish(TOPIC, (lakeshore_message(T0), feed_data()))
    node.publish(TOPIC, (lakeshore_message(T0 + 100), feed_data("observatory.intruder")))
    node.publish(TOPIC, (lakeshore_message(T0 + 100), feed_data("observatory.intruder")))
    assert len(node.get_data(["channel_01_t"], 1, 0)["data"]["channel_01_t"]) == 10
    node.clock.now = T0 + 80  # buffer_time is 60 s: the samples at T0..T0+1 are gone
    assert node.get_data(["channel_01_t"], 1, 0)["data"]["channel_01_t"] == []
    assert node.get_fields(1, 0) == [{}, {}]
    ignored = [line for line in log_lines if "ignored a message" in line]
    assert ignored == [
        "lakeshore: ignored a message on observatory.LSA22YE.feeds.temperatures: agent_address is "
        "'observatory.intruder', expected 'observatory.LSA22YE' (repeats are counted, not logged)"
    ]


def test_node_logs_malformed_message_and_keeps_valid_blocks(node, log_lines):
    msg = lakeshore_message(T0, channels=1)
    msg["broken"] = {"block_name": "broken", "timestamps": [T0], "data": {"x": [1.0, 2.0]}}
    node.publish(TOPIC, (msg, feed_data()))
    assert len(node.get_data(["channel_01_t"], 1, 0)["data"]["channel_01_t"]) == 10
    assert any("malformed message on observatory.LSA22YE.feeds.temperatures: block 'broken': "
               "field 'x' has 2 values for 1 timestamps; left out" in line for line in log_lines)


def test_node_accepts_old_040_agents(node):
    samples = [{"block_name": "temps", "timestamp": T0 + i, "data": {"Channel 1 T": 4.0 + i, "ok": True}}
               for i in range(5)]
    node.publish(TOPIC, (samples, feed_data()))
    ans = node.get_data(["channel_1_t", "ok"], 1, 0)
    assert ans["data"] == {"channel_1_t": [4.0, 5.0, 6.0, 7.0, 8.0], "ok": [True] * 5}
    fields, _ = node.get_fields(1, 0)
    assert fields["ok"]["type"] == "bool"


def test_nan_values_pass_through(node):
    msg = {"b": {"block_name": "b", "timestamps": [T0, T0 + 1], "data": {"v": [1.0, float("nan")]}}}
    node.publish(TOPIC, (msg, feed_data()))
    v = node.get_data(["v"], 1, 0)["data"]["v"]
    assert v[0] == 1.0 and math.isnan(v[1])


def test_node_subscribes_again_after_a_new_session(node):
    """After the router connection is lost and a new session joins, the feed
    subscription is renewed on the new session (once) and data flows again."""
    from sisock_core.testing import MemorySession

    old = node.session
    assert len(old.subscriptions[TOPIC]) == 1
    node._runner.run(lambda: node.server._on_leave(old, None))
    fresh = MemorySession()
    node._runner.run(node.server._on_join, fresh, None)
    node.session = fresh
    assert len(fresh.subscriptions[TOPIC]) == 1
    node.publish(TOPIC, (lakeshore_message(T0), feed_data()))
    assert len(node.get_data(["channel_01_t"], 1, 0)["data"]["channel_01_t"]) == 10
