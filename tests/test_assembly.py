"""Timeline assembly: archive up to its final time, live cache after it (sisock_core.assembly).

Pure tests of :func:`assemble` and :class:`Seam`, the live cache's duplicate check, and a
node whose plugin has an in-memory archive and a live feed, driven through the harness.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sisock_core import Field, PluginSpec, Timeline, hookimpl
from sisock_core.assembly import MAX_CLOCK_SKEW, SEAM_TOLERANCE, Seam, assemble
from sisock_core.decimate import decimate_timeline
from sisock_core.livecache import LiveCache

T0 = 1_700_000_000.0


def tl(t, **cols):
    return Timeline(t=np.asarray(t, dtype=float), data={k: np.asarray(v) for k, v in cols.items()},
                    finalized_until=float(t[-1]) if len(t) else None)


def reader(live: dict):
    def read(names, start, end):
        out = {}
        for name, timeline in live.items():
            cols = {k: v for k, v in timeline.data.items() if k in names}
            if cols:
                a, b = np.searchsorted(timeline.t, [start, end])
                out[name] = Timeline(t=timeline.t[a:b], data={k: v[a:b] for k, v in cols.items()},
                                     finalized_until=timeline.t[-1])
        return out
    return read


def test_seam_joins_archive_and_live_without_duplicate_or_gap():
    arch = {"A": tl(T0 + np.arange(10), x=np.arange(10.0), y=np.arange(10) * 2)}
    # the live feed repeats the archive's last 3 samples (rounded by a few 1e-7 s) and goes on
    live_t = T0 + np.arange(7, 15) + 3e-7
    live = {"L": tl(live_t, x=np.arange(7, 15.0), y=np.arange(7, 15) * 2)}
    out, problems = assemble(["x", "y"], arch, reader(live), {"x": T0 + 9, "y": T0 + 9}, {}, T0, T0 + 100)
    assert problems == []
    assert list(out) == ["A"]
    t = out["A"].t
    np.testing.assert_allclose(t - T0, list(range(15)), atol=1e-6)
    assert out["A"].data["x"].tolist() == list(range(15))
    assert out["A"].data["y"].tolist() == [2 * i for i in range(15)]
    assert out["A"].finalized_until == T0 + 9  # later samples come from the feed


def test_final_time_snapshot_older_than_the_archive_trims_the_archive():
    # the index grew after the snapshot: samples after the snapshot's final time come from the feed
    arch = {"A": tl(T0 + np.arange(10), x=np.arange(10.0))}
    live = {"A": tl(T0 + np.arange(5, 12), x=np.arange(5, 12.0) + 0.5)}
    out, _ = assemble(["x"], arch, reader(live), {"x": T0 + 6}, {}, T0, T0 + 100)
    assert out["A"].data["x"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7.5, 8.5, 9.5, 10.5, 11.5]
    assert out["A"].finalized_until == T0 + 6


def test_a_field_with_an_earlier_final_time_does_not_cut_its_neighbours_archive():
    # on one timeline, a's archive ends at 5 and b's at 10: asked together or alone, b keeps
    # its archived 6..10 (the screen dropped their live copies: live rows up to the latest
    # final time of a batch are the archive's)
    arch = {"A": tl(T0 + np.arange(11), a=np.arange(11.0), b=np.arange(11.0) * 2)}
    live = {"L": tl(T0 + np.arange(11, 13), a=np.arange(11, 13.0), b=np.arange(11, 13.0) * 2)}
    final = {"a": T0 + 5, "b": T0 + 10}
    alone, _ = assemble(["b"], arch, reader(live), final, {}, T0, T0 + 100)
    both, _ = assemble(["a", "b"], arch, reader(live), final, {}, T0, T0 + 100)
    assert alone["A"].data["b"].tolist() == [2 * i for i in range(13)]
    assert both["A"].data["b"].tolist() == alone["A"].data["b"].tolist()
    np.testing.assert_allclose(both["A"].t, alone["A"].t)


def test_range_after_the_archive_is_all_live_and_before_it_all_archive():
    arch_full = tl(T0 + np.arange(10), x=np.arange(10.0))
    live = {"L": tl(T0 + np.arange(8, 20), x=np.arange(8, 20.0))}
    final = {"x": T0 + 9}
    out, _ = assemble(["x"], {}, reader(live), final, {}, T0 + 12, T0 + 15)
    assert out["L"].data["x"].tolist() == [12, 13, 14] and out["L"].finalized_until == T0 + 9
    a, b = np.searchsorted(arch_full.t, [T0 + 2, T0 + 5])
    sub = {"A": Timeline(t=arch_full.t[a:b], data={"x": arch_full.data["x"][a:b]}, finalized_until=T0 + 4)}
    out, _ = assemble(["x"], sub, reader(live), final, {}, T0 + 2, T0 + 5)
    assert out["A"].data["x"].tolist() == [2, 3, 4] and out["A"].finalized_until == T0 + 4


def test_field_new_in_the_feed_joins_its_archive_timeline_and_short_names_map():
    arch = {"P.blk": tl(T0 + np.arange(3), **{"P.a": [1.0, 2.0, 3.0]})}
    live = {"P.blk": tl(T0 + np.arange(3, 5), **{"P.a": [4.0, 5.0], "P.new": [7, 8]})}
    out, _ = assemble(["a", "P.new"], {"P.blk": Timeline(t=arch["P.blk"].t, data={"a": arch["P.blk"].data["P.a"]})},
                      reader(live), {"P.a": T0 + 2}, {"a": "P.a"}, T0, T0 + 10)
    assert list(out) == ["P.blk"]
    assert out["P.blk"].data["a"].tolist() == [1, 2, 3, 4, 5]
    got = out["P.blk"].data["P.new"]
    assert np.isnan(got[:3]).all() and got[3:].tolist() == [7, 8]


def test_type_mismatch_leaves_live_samples_out_with_one_problem():
    arch = {"A": tl(T0 + np.arange(3), x=[1.0, 2.0, 3.0])}
    live = {"A": tl(T0 + np.arange(3, 5), x=np.array(["on", "off"], dtype=object))}
    out, problems = assemble(["x"], arch, reader(live), {"x": T0 + 2}, {}, T0, T0 + 10)
    assert [k for k, _ in problems] == ["type:x"]
    assert "archive holds number values but the live feed sends string values" in problems[0][1]
    x = out["A"].data["x"]
    assert x[:3].tolist() == [1, 2, 3] and np.isnan(x[3:]).all()


def test_live_blocks_split_differently_from_the_archive_share_one_timeline():
    arch = {"A": tl(T0 + np.arange(2), x=[0.0, 1.0], y=[0.0, 1.0])}
    live = {"L1": tl(T0 + np.array([2, 4]), x=[2.0, 4.0]), "L2": tl(T0 + np.array([3, 4]), y=[3.0, 4.0])}
    out, _ = assemble(["x", "y"], arch, reader(live), {"x": T0 + 1, "y": T0 + 1}, {}, T0, T0 + 10)
    assert out["A"].t.tolist() == [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4]
    x, y = out["A"].data["x"], out["A"].data["y"]
    assert x[[0, 1, 2, 4]].tolist() == [0, 1, 2, 4] and math.isnan(x[3])
    assert y[[0, 1, 3, 4]].tolist() == [0, 1, 3, 4] and math.isnan(y[2])


def test_seam_screen_drops_late_and_future_samples():
    now = T0 + 1000
    seam = Seam(lambda: now)
    seam.update({"x": T0 + 10, "bad": float("nan")})
    t = np.array([T0 + 5, T0 + 10 + SEAM_TOLERANCE / 2, T0 + 11, now + MAX_CLOCK_SKEW + 5])
    t2, data, problems = seam.screen("A", t, {"x": [1.0, 2.0, 3.0, 4.0]})
    assert t2.tolist() == [T0 + 11] and data["x"] == [3.0]  # the values as given
    assert [k for k, _ in problems] == ["late:A", "future:A"]
    assert "65 s ahead" in problems[1][1]
    # a timeline the archive does not know: only the clock check
    t3, _, problems = seam.screen("B", np.array([T0 + 1.0]), {"z": [1.0]})
    assert t3.tolist() == [T0 + 1.0] and problems == []


def test_live_cache_drops_duplicate_messages_and_keeps_new_fields_at_the_same_time():
    cache = LiveCache(clock=lambda: T0 + 100)
    assert cache.append("A", [T0, T0 + 1], {"x": [1.0, 2.0]}).problems == []
    again = cache.append("A", [T0, T0 + 1], {"x": [9.0, 9.0]})
    assert again.t.size == 0 and "duplicate message" in again.problems[0]
    partly = cache.append("A", [T0 + 1, T0 + 2], {"x": [9.0, 3.0]})
    assert partly.t.tolist() == [T0 + 2]
    other = cache.append("A", [T0 + 2], {"y": [5.0]})  # another field at a time already held: kept
    assert other.t.tolist() == [T0 + 2] and other.problems == []
    got = cache.read_range(["x"], 0, 2e9)["A"]
    assert got.data["x"][:3].tolist() == [1.0, 2.0, 3.0]  # what was served is unchanged


# -- a node whose plugin has an archive and a live feed ---------------------------------------


class ArchiveAndFeed:
    """An archive of 1 Hz samples ``x = t - T0`` up to ``final`` plus a feed published by the test."""

    def __init__(self, final: float):
        self.final = final
        self.publish = None

    @hookimpl
    def sisock_plugin_spec(self):
        return PluginSpec(default_node_name="af", description="archive and feed")

    @hookimpl
    def list_fields(self, node, start, end):
        return [Field("x", "blk"), Field("y", "blk")]

    @hookimpl
    def read_range(self, node, fields, start, end):
        t = np.arange(math.ceil(max(start, T0)), min(end, self.final + 1))
        t = t[t < end]
        cols = {f: t - T0 if f == "x" else -(t - T0) for f in fields if f in ("x", "y")}
        return {"blk": Timeline(t=t, data=cols, finalized_until=float(t[-1]) if t.size else None)} if cols \
            and t.size else {}

    @hookimpl
    def archive_until(self, node):
        return {"x": self.final, "y": self.final}

    @hookimpl
    def subscribe(self, node, publish):
        self.publish = publish
        return lambda: None


def feed(plugin, t0, t1):
    t = np.arange(t0, t1, 1.0)
    return plugin.publish("blk", t, {"x": t - T0, "y": -(t - T0)})


def test_hook_archive_until(sisock_node):
    """The seam at the archive's final time: one series raw and decimated, late samples dropped,
    new ones pushed under the same names."""
    now = [T0 + 7200.0]
    plugin = ArchiveAndFeed(final=T0 + 6000)
    node = sisock_node(plugin, clock=lambda: now[0])
    pushed = node.subscribe("live")
    assert feed(plugin, T0 + 5400, T0 + 7200) == [
        "timeline 'blk': dropped live samples at or before the archive's final time (first: 601 at "
        f"{T0 + 5400:.3f} <= {T0 + 6000:.3f}); the archive's samples are served there"]
    ans = node.get_data(["x", "y"], T0, 0)
    t = np.asarray(ans["timeline"]["blk"]["t"])
    assert t.tolist() == list(T0 + np.arange(7200.0))  # no gap, no duplicate
    assert ans["data"]["x"] == list(np.arange(7200.0))
    assert ans["timeline"]["blk"]["finalized_until"] == T0 + 6000
    # decimated: the same as decimating the assembled raw series
    dec = node.get_data(["x"], T0, 0, max_points=100)
    exp_t, exp = decimate_timeline(t, {"x": np.arange(7200.0)}, max_points=100)
    assert dec["timeline"]["blk"]["t"] == exp_t.tolist() and dec["data"]["x"] == exp["x"].tolist()
    # the live topic carries the new samples under the same names
    pushed.wait(lambda events: any("x" in args[0]["data"] for args, _ in events), what="a live push")
    got = [t for args, _ in pushed for t in args[0]["timeline"]["blk"]["t"]]
    assert got[0] == T0 + 6001 and got[-1] == T0 + 7199
    # get_fields: the archive's list
    fields, _ = node.get_fields()
    assert fields["x"]["timeline"] == "blk"


def test_aliases_reach_the_live_samples_of_their_field(sisock_node):
    """Other spellings the archive accepts reach the live samples of the field they stand for."""
    class Aliases(ArchiveAndFeed):
        @hookimpl
        def read_range(self, node, fields, start, end):
            asked = {"X": "x"}
            full = super().read_range(node, [asked.get(f, f) for f in fields], start, end)
            return {k: Timeline(t=v.t, data={a: v.data[asked.get(a, a)] for a in fields
                                             if asked.get(a, a) in v.data}, finalized_until=v.finalized_until)
                    for k, v in full.items()}

        @hookimpl
        def resolve_fields(self, node, fields):
            return {"X": "x"} if "X" in fields else {}

    plugin = Aliases(final=T0 + 10)
    node = sisock_node(plugin, clock=lambda: T0 + 100)
    feed(plugin, T0 + 11, T0 + 20)
    ans = node.get_data(["X"], T0, 0)
    assert ans["data"]["X"] == list(np.arange(20.0))
    assert ans["timeline"]["blk"]["t"] == list(T0 + np.arange(20.0))


def test_node_with_the_live_option_off_has_no_live_cache(sisock_node):
    class Off(ArchiveAndFeed):
        @hookimpl
        def subscribe(self, node, publish):
            return False

    node = sisock_node(Off(T0 + 10), clock=lambda: T0 + 20)
    assert node.server.live is None and node.server.engine.live_cache is None
    assert node.server.seam is None and node.server.engine.summaries is not None
    assert node.get_data(["x"], T0, 0)["timeline"]["blk"]["finalized_until"] == T0 + 10


pytest_plugins = ["sisock_core.testing"]


class ArchiveUntilAnswers(ArchiveAndFeed):
    """``archive_until`` answers whatever ``answer`` holds (None: the archive's final times)."""

    answer = None

    @hookimpl
    def archive_until(self, node):
        return self.answer if self.answer is not None else {"x": self.final, "y": self.final}


def test_an_archive_until_answer_that_is_no_mapping_keeps_the_last_seam(sisock_node):
    """A plugin's bad ``archive_until`` answer is its failure (logged), not the end of the
    refresh loop: the seam keeps its last times and the next good answer moves it."""
    plugin = ArchiveUntilAnswers(final=T0 + 6000)
    node = sisock_node(plugin)
    server = node.server
    assert server.seam.snapshot() == {"x": T0 + 6000, "y": T0 + 6000}
    plugin.answer = [T0 + 9000]  # a list: no mapping
    server.refresh_seam()  # raises nothing
    assert server.seam.snapshot() == {"x": T0 + 6000, "y": T0 + 6000}
    plugin.answer = {"x": T0 + 6500, "y": T0 + 6500}
    server.refresh_seam()
    assert server.seam.snapshot() == {"x": T0 + 6500, "y": T0 + 6500}
