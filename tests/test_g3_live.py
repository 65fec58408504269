"""A live g3 node (``live = true``) through the harness: .g3 files written with so3g, indexed
by the real scanner, and OCS feed events in every message shape; each field is one series
from the first file to the last published sample.

The real-router version (a writer rotating files while a fake agent publishes) is
tests/test_g3_live_integration.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from sisock_core.decimate import decimate_on_grid, decimate_timeline
from sisock_core.engine import summary_grid
from sisock_plugins.g3.index import FieldSummary, Index, Layout
from sisock_plugins.g3.live import LiveNames
from sisock_plugins.g3.scanner import Scanner

from .g3gen import Aggregator, Provider, lakeshore, value

T0 = 1_700_000_000.0
LS = "observatory.LSA22YE.feeds.temperatures"
CH1 = f"{LS}.Channel_01_T"
CH2 = f"{LS}.Channel_02_T"


def feed_data(agent: str, feed: str, session: str = "1.0", record: bool = True) -> dict:
    return {"agent_address": f"observatory.{agent}", "feed_name": feed, "record": record,
            "address": f"observatory.{agent}.feeds.{feed}", "session_id": session,
            "agg_params": {"frame_length": 60}, "agent_class": "Lakeshore372Agent"}


def blocks_message(provider: Provider, t: np.ndarray) -> dict:
    """The current OCS shape: {block: {"block_name", "timestamps", "data"}}."""
    return {name: {"block_name": name, "timestamps": t.tolist(),
                   "data": {f: value(f, kind, t).tolist() for f, kind in fields.items()}}
            for name, fields in provider.blocks.items()}


def samples_message(provider: Provider, t: np.ndarray) -> list:
    """ocs 0.4.0-0.4.2: a list of samples."""
    return [{"block_name": name, "timestamp": float(x),
             "data": {f: value(f, kind, np.array([x]))[0].item() for f, kind in fields.items()}}
            for x in t for name, fields in provider.blocks.items()]


class Site:
    """Files (so3g), index (scanner) and a live g3 node on the harness."""

    def __init__(self, tmp_path, sisock_node, now: float):
        self.data = tmp_path / "data"
        self.url = f"sqlite:///{tmp_path}/index.sqlite"
        self.now = now
        self.agg = Aggregator(self.data, time_per_file=1200, frame_length=60, start_time=T0)
        self.ls = self.agg.add(lakeshore(4))
        self.node = sisock_node("g3", {"data_dir": str(self.data), "db": self.url, "live": True},
                                clock=lambda: self.now, state_dir=tmp_path / "state")

    def write(self, t0: float, t1: float) -> None:
        self.agg.run(t0, t1)
        self.agg.writer.Flush()  # as the aggregator after each frame: readable while still open
        self.scan()

    def scan(self) -> None:
        Scanner(Index(self.url), self.data).scan_tree()
        self.node.server.refresh_seam()

    def publish(self, provider: Provider, t: np.ndarray, *, shape=blocks_message, session="1.0", record=True):
        agent, feed = provider.description.split(".")[1], provider.description.split(".")[3]
        self.node.publish(provider.description, (shape(provider, t), feed_data(agent, feed, session, record)))


@pytest.fixture
def site(tmp_path, sisock_node):
    return Site(tmp_path, sisock_node, now=T0 + 2000)


def expect(field: str, t: np.ndarray) -> list:
    return value(field.rsplit(".", 1)[1], "float", t).tolist()


def test_live_names_follow_the_files_naming_of_blocks():
    """v2 files name blocks as the feed does; v1 files (no block names) are matched by fields."""
    d = "observatory.ls.feeds.t"
    names = LiveNames(3, [FieldSummary(f"{d}.a", d, "a", "number", f"{d}.block_for_a", 0, 1),
                          FieldSummary(f"{d}.b", d, "b", "number", f"{d}.block_for_a", 0, 1),
                          FieldSummary(f"{d}.s", d, "s", "string", f"{d}.temps", 0, 1)],
                      {1: Layout(1, d, "temps", (("s", "string"),))})
    one = {"a": np.zeros(1), "b": np.zeros(1)}
    assert names.map(d, "Channel 01", one)[:2] == (f"{d}.block_for_a", {f"{d}.a": one["a"], f"{d}.b": one["b"]})
    timeline, cols, problems = names.map(d, "temps", {"s": np.zeros(1), "new": np.zeros(1)})
    assert timeline == f"{d}.temps" and list(cols) == [f"{d}.new"]
    assert [k for k, _ in problems] == [f"type:{d}.s", f"name:{d}.new"]
    assert names.map("observatory.other.feeds.x", "blk", {"v": np.zeros(1)})[0] == "observatory.other.feeds.x.blk"


def test_one_series_from_the_first_file_to_the_last_sample(site):
    site.write(T0, T0 + 1800)  # two files and part of a third (rotation every 1200 s)
    site.agg.close()
    site.scan()
    live_t = np.arange(T0 + 1700, T0 + 2000)  # overlaps the files' last 100 s
    for chunk in np.array_split(live_t, 10):
        site.publish(site.ls, chunk)
    ans = site.node.get_data([CH1, CH2], T0, 0)
    tl = ans["timeline"][f"{LS}.temps"]
    t = np.asarray(tl["t"])
    assert t.tolist() == list(T0 + np.arange(2000.0))
    assert ans["data"][CH1] == expect(CH1, t) and ans["data"][CH2] == expect(CH2, t)
    assert tl["finalized_until"] == T0 + 1799
    # the other spellings: so3g's short name and the datafeed node's
    for name in ("LSA22YE.Channel_01_T", "LSA22YE.channel_01_t", f"{LS}.channel_01_t"):
        assert site.node.get_data([name], T0, 0)["data"][name] == ans["data"][CH1], name
    # decimated (summaries up to the files' end, raw after): as decimating the raw series
    dec = site.node.get_data([CH1], T0, 0, max_points=200)
    exp_t, exp = decimate_timeline(t, {"v": np.asarray(ans["data"][CH1])}, max_points=200)
    got_t = np.asarray(dec["timeline"][f"{LS}.temps"]["t"])
    assert got_t[-1] == exp_t[-1] == T0 + 1999  # runs to the last sample
    assert len(got_t) <= 200 and np.isin(got_t, t).all()
    assert np.asarray(dec["data"][CH1]).max() == max(ans["data"][CH1])
    assert np.asarray(dec["data"][CH1]).min() == min(ans["data"][CH1])
    # the files catch up (the next file): the seam moves, the answer is the same series
    site.agg.run(T0 + 1800, T0 + 1900)
    site.agg.close()
    site.scan()
    again = site.node.get_data([CH1, CH2], T0, 0)
    assert again["data"] == ans["data"] and again["timeline"][f"{LS}.temps"]["t"] == tl["t"]
    assert again["timeline"][f"{LS}.temps"]["finalized_until"] == T0 + 1899


def test_long_decimated_range_from_summaries_then_raw_then_live_equals_min_max_of_the_series(site):
    """8 h of files (summarized by the scanner) and 10 min of feed: the decimated answer is the
    min-max decimation of the assembled raw series on the grid of the tier used."""
    site.now = T0 + 8 * 3600 + 600
    site.write(T0, T0 + 8 * 3600)
    site.agg.close()
    site.scan()
    for chunk in np.array_split(np.arange(T0 + 8 * 3600, site.now), 10):
        site.publish(site.ls, chunk)
    assert site.node.server.engine.summaries.series([CH1])[CH1].t_last == T0 + 8 * 3600 - 1
    raw = site.node.get_data([CH1, CH2], T0, 0)
    t = np.asarray(raw["timeline"][f"{LS}.temps"]["t"])
    assert t.tolist() == list(T0 + np.arange(8 * 3600 + 600.0))
    reader = site.node.state["g3"]
    calls = []
    original = reader.read_range
    reader.read_range = lambda fields, start, end: calls.append((start, end)) or original(fields, start, end)
    for t0, limit in ((T0 + 17.5, 200), (T0 + 3600, 400)):
        calls.clear()
        ans = site.node.get_data([CH1, CH2], t0, 0, max_points=limit)
        tier, grid = summary_grid(site.now - t0, limit, None)
        assert tier >= 60.0 and calls  # the files are read only at the edges: summaries in between
        assert all(e - s <= grid + 600 for s, e in calls), (grid, [(s - T0, e - T0) for s, e in calls])
        a = np.searchsorted(t, t0)
        exp_t, exp = decimate_on_grid(t[a:], {k: np.asarray(raw["data"][k])[a:] for k in (CH1, CH2)}, grid)
        tl = ans["timeline"][f"{LS}.temps"]
        np.testing.assert_array_equal(tl["t"], exp_t)
        for k in (CH1, CH2):
            np.testing.assert_array_equal(ans["data"][k], exp[k])
        assert tl["t"][-1] == site.now - 1 and tl["finalized_until"] == T0 + 8 * 3600 - 1


def test_live_push_late_future_duplicate_and_mismatched_fields_are_logged_once(site, log_lines):
    site.write(T0, T0 + 600)
    site.agg.close()
    site.scan()
    pushed = site.node.subscribe("live")
    site.publish(site.ls, np.arange(T0 + 590, T0 + 610), shape=samples_message)  # 10 late
    site.publish(site.ls, np.arange(T0 + 600, T0 + 610))  # a duplicate message
    site.publish(site.ls, np.array([site.now + 3600.0]))  # an agent whose clock is an hour ahead
    bad = {"temps": {"block_name": "temps", "timestamps": [T0 + 611.0],
                     "data": {"Channel_02_T": ["warm"], "Channel_01_T": [1.5], "Heater": [0.25]}}}
    site.node.publish(LS, (bad, feed_data("LSA22YE", "temperatures")))
    pushed.wait(lambda events: sum(len(a[0]["timeline"].get(f"{LS}.temps", {}).get("t", []))
                                   for a, _ in events) >= 11, what="pushes")
    got = [t for a, _ in pushed for t in a[0]["timeline"][f"{LS}.temps"]["t"]]
    assert got == list(T0 + np.arange(600.0, 610.0)) + [T0 + 611]  # new samples, the archive's names
    assert set(pushed[0][0][0]["data"]) == {f"{LS}.Channel_{i:02d}_T" for i in range(1, 5)}
    ans = site.node.get_data([CH1, CH2, f"{LS}.Heater"], T0, 0)
    t = ans["timeline"][f"{LS}.temps"]["t"]
    assert t == list(T0 + np.arange(610.0)) + [T0 + 611]
    assert ans["data"][CH1][:610] == expect(CH1, np.asarray(t[:610])) and ans["data"][CH1][610] == 1.5
    assert np.isnan(ans["data"][CH2][610])  # the string was left out
    assert np.asarray(ans["data"][f"{LS}.Heater"][-1]) == 0.25
    lines = log_lines
    for text in ("dropped live samples at or before the archive's final time",
                 "dropped live samples more than 60 s in the future",
                 "dropped samples at times it already holds with values (a duplicate message?)",
                 "field 'Channel_02_T' sends string values but the files hold number values",
                 "field 'Heater' is not in the files"):
        assert sum(text in line for line in lines) == 1, (text, [x for x in lines if "g3" in x][-20:])


def test_providers_that_appear_later_and_agent_restarts(site, log_lines):
    site.write(T0, T0 + 600)
    bf = Provider("observatory.bluefors.feeds.bluefors", {"pressure_ch1": {"pressure_ch1": "float"}}, rate=1.0)
    name = f"{bf.description}.pressure_ch1"
    ignored = Provider("observatory.hwp.feeds.debug", {"b": {"x": "float"}})
    site.publish(ignored, np.arange(T0 + 600, T0 + 610), record=False)
    site.publish(bf, np.arange(T0 + 600, T0 + 700))  # recorded: followed before the files hold it
    ans = site.node.get_data([name, "observatory.hwp.feeds.debug.x"], T0, 0)
    assert ans["data"][name] == expect(name, np.arange(T0 + 600, T0 + 700))
    assert ans["data"]["observatory.hwp.feeds.debug.x"] == []
    assert ans["timeline"][f"{bf.description}.pressure_ch1"]["finalized_until"] is None
    fields, timelines = site.node.get_fields()  # the files' fields and the feed's new one
    assert fields[name]["timeline"] == f"{bf.description}.pressure_ch1" and CH1 in fields
    # the aggregator starts writing it; the agent restarts (new session) and goes on
    site.agg.add(bf, T0 + 600)
    site.write(T0 + 600, T0 + 660)
    site.publish(bf, np.arange(T0 + 700, T0 + 720), session="2.0")
    ans = site.node.get_data([name], T0, 0)
    t = np.asarray(ans["timeline"][f"{bf.description}.pressure_ch1"]["t"])
    assert t.tolist() == list(T0 + np.arange(600.0, 720.0))
    assert ans["data"][name] == expect(name, t)
    assert ans["timeline"][f"{bf.description}.pressure_ch1"]["finalized_until"] == T0 + 659
    # the feed stops: the series ends at its last sample, nothing carried forward
    site.now += 600
    assert site.node.get_data([name], -300, 0)["data"][name] == []
    lines = log_lines
    assert sum("not following feed observatory.hwp.feeds.debug" in x for x in lines) == 1
    assert sum("following feed observatory.bluefors.feeds.bluefors (recorded; not in the files yet)" in x
               for x in lines) == 1
    assert sum("agent observatory.bluefors restarted (session 1.0 -> 2.0)" in x for x in lines) == 1


pytest_plugins = ["sisock_core.testing"]
