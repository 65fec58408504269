"""Long ranges from summaries: g3 (summaries written while indexing, SQLite and MariaDB) and
the core's summarizer for other archive plugins, checked point for point against min-max
decimation of the raw samples on the same grid; the raw/summary seam; growing files;
rebuilds; cancellation of abandoned requests."""

from __future__ import annotations

import math
import os
import shutil
import threading

import numpy as np
import pytest

from sisock_core import Field, PluginSpec, Timeline, cancel, hookimpl
from sisock_core import summaries as S
from sisock_core.decimate import decimate_on_grid
from sisock_core.engine import NodeEngine, summary_grid
from sisock_core.model import NodeContext
from sisock_core.plugins import make_plugin_manager
from sisock_core.summarizer import Summarizer
from sisock_core.summarystore import SummaryStore
from sisock_plugins.g3 import plugin as g3_plugin
from sisock_plugins.g3.index import Index
from sisock_plugins.g3.scanner import Scanner

from .g3gen import Aggregator, bluefors, lakeshore, mariadb_database

T0 = 1_600_000_000.0
LS = "observatory.LSA22YE.feeds.temperatures"
FIELDS = [f"{LS}.Channel_01_T", f"{LS}.Channel_03_T", "observatory.bluefors.feeds.bluefors.pressure_ch1",
          "observatory.bluefors.feeds.bluefors.pressure_ch1_state"]


def write(data_dir, hours=8.0):
    agg = Aggregator(data_dir, time_per_file=3600, frame_length=300, start_time=T0)
    agg.add(lakeshore(4))
    agg.add(bluefors(rate=0.2))
    agg.run(T0, T0 + hours * 3600)
    agg.close()
    return agg.files


def g3_engine(data_dir, url):
    ctx = NodeContext(name="g3", description="", options=g3_plugin.Options(data_dir=str(data_dir), db=url),
                      state={})
    pm = make_plugin_manager(g3_plugin, name="g3")
    pm.hook.node_start(node=ctx)
    store_url = pm.hook.summary_store(node=ctx)
    assert store_url == url
    return NodeEngine(ctx, pm, "g3", summaries=SummaryStore(store_url)), ctx


def indexed_g3_engine(tmp_path, hours):
    """``hours`` of files in ``tmp_path/data`` indexed (with summaries) into
    ``tmp_path/i.sqlite``, and a g3 engine over them: ``(engine, context)``."""
    data = tmp_path / "data"
    write(data, hours=hours)
    url = f"sqlite:///{tmp_path}/i.sqlite"
    Scanner(Index(url), data).scan_tree()
    return g3_engine(data, url)


def expected(read_range, fields, t0, t1, limit, stride=None, open_end=False):
    """Min-max decimation of the raw samples on the grid the engine must have used (over
    the data's span within ``[t0, t1)``; to ``t1`` when newer data may not be summarized)."""
    everything = read_range(fields, 1.0, 4e9)
    firsts = [tl.t[0] for tl in everything.values()]
    lasts = [tl.t[-1] for tl in everything.values()]
    lo, hi = max(t0, min(firsts)), (t1 if open_end else min(t1, max(lasts) + 1e-6))
    tier, grid = summary_grid(hi - lo, limit, stride)
    out = {}
    for name, tl in read_range(fields, t0, t1).items():
        a, b = np.searchsorted(tl.t, [t0, t1])
        out[name] = decimate_on_grid(tl.t[a:b], {k: v[a:b] for k, v in tl.data.items()}, grid)
    return out, tier, grid


def assert_same(ans, exp):
    assert set(ans["timeline"]) == set(exp)
    for name, (t, cols) in exp.items():
        np.testing.assert_array_equal(np.asarray(ans["timeline"][name]["t"]), t)
        for k, v in cols.items():
            got = np.asarray(ans["data"][k])
            assert got.dtype.kind == v.dtype.kind, k
            np.testing.assert_array_equal(got, v, err_msg=k)


@pytest.fixture(scope="module")
def mariadb_url():
    url, drop = mariadb_database()
    yield url
    drop()


@pytest.mark.parametrize("db", ["sqlite", "mariadb"])
def test_g3_answers_from_summaries_equal_raw_min_max_on_the_tier_grid(tmp_path, db, request):
    data = tmp_path / "data"
    write(data)
    url = request.getfixturevalue("mariadb_url") if db == "mariadb" else f"sqlite:///{tmp_path}/i.sqlite"
    index = Index(url)
    index.drop_all()
    Scanner(index, data).scan_tree()
    engine, ctx = g3_engine(data, url)
    reader = ctx.state["g3"]
    tiers = set()
    calls = []
    original = reader.read_range

    def counting(fields, start, end):
        calls.append((start, end))
        return original(fields, start, end)

    ctx.state["g3"].read_range = counting
    for t0, t1, limit in [(T0 + 123.4, T0 + 7.5 * 3600, 600), (T0 + 123.4, T0 + 7.5 * 3600, 200),
                          (T0 + 17, T0 + 8 * 3600 + 5, 20), (T0 - 3600, T0 + 1e6, 10)]:
        calls.clear()
        ans = engine.get_data(FIELDS, t0, t1, max_points=limit)
        assert calls and all(e - s <= 3600 * 4 for s, e in calls), "read raw only at the edges"
        exp, tier, grid = expected(original, FIELDS, t0, t1, limit)
        tiers.add(tier)
        assert_same(ans, exp)
        assert all(len(v) <= limit for v in ans["data"].values())
    assert {60.0, 600.0} <= tiers


def test_hook_resolve_fields(tmp_path):
    """g3's aliases (lower-cased and short names) are answered from the same summaries."""
    engine, ctx = indexed_g3_engine(tmp_path, hours=3)
    full, low, short = f"{LS}.Channel_01_T", f"{LS}.channel_01_t", "LSA22YE.Channel_01_T"
    assert engine.pm.hook.resolve_fields(node=ctx, fields=[full, low, short, "nope"]) == {low: full, short: full}
    ans = engine.get_data([full, low, short], T0, T0 + 3 * 3600, max_points=40)
    assert ans["data"][low] == ans["data"][full] == ans["data"][short]
    assert set(ans["timeline"]) == {f"{LS}.temps"}
    exp, _, _ = expected(ctx.state["g3"].read_range, [full, low, short], T0, T0 + 3 * 3600, 40)
    assert_same(ans, exp)


def test_g3_file_growing_while_summarized_resumes_without_counting_twice(tmp_path):
    full = tmp_path / "full"
    files = write(full, hours=2)
    data = tmp_path / "data"
    shutil.copytree(full, data)
    grown = data / files[-1].relative_to(full)
    size = os.path.getsize(grown)
    with open(grown, "r+b") as f:  # the aggregator is half-way through its last file
        f.truncate(size // 2 + 7)
    url = f"sqlite:///{tmp_path}/i.sqlite"
    scanner = Scanner(Index(url), data)
    scanner.scan_tree()
    engine, ctx = g3_engine(data, url)
    t0, t1 = T0 + 60, T0 + 2 * 3600
    exp, _, _ = expected(ctx.state["g3"].read_range, FIELDS, t0, t1, 40)
    assert_same(engine.get_data(FIELDS, t0, t1, max_points=40), exp)
    with open(full / files[-1].relative_to(full), "rb") as src, open(grown, "r+b") as dst:
        dst.write(src.read())  # it grows (same inode)
    stats = scanner.scan_tree()
    assert stats.resumed == 1
    scanner.scan_tree()  # nothing changed: nothing added again
    exp, _, _ = expected(ctx.state["g3"].read_range, FIELDS, t0, t1, 40)
    assert_same(engine.get_data(FIELDS, t0, t1, max_points=40), exp)
    # the same as summaries of a fresh scan of the whole files
    fresh = f"sqlite:///{tmp_path}/fresh.sqlite"
    Scanner(Index(fresh), data).scan_tree()
    a, b = SummaryStore(url), SummaryStore(fresh)
    for name in FIELDS:
        sa, sb = a.series([name])[name], b.series([name])[name]
        for tier in range(len(S.TIERS)):
            ba = a.read([sa], tier, 0, 4e9)[sa.id]
            bb = b.read([sb], tier, 0, 4e9)[sb.id]
            for c in ("k", "n", "count", "vmin", "vmax", "t_min", "t_max", "vsum", "t_first", "t_last"):
                np.testing.assert_array_equal(getattr(ba, c), getattr(bb, c), err_msg=f"{name} {tier} {c}")


def test_g3_rebuild_after_a_deleted_store_gives_the_same_answer(tmp_path):
    data = tmp_path / "data"
    write(data, hours=3)
    path = tmp_path / "i.sqlite"
    url = f"sqlite:///{path}"
    Scanner(Index(url), data).scan_tree()
    engine, _ = g3_engine(data, url)
    before = engine.get_data(FIELDS, T0, T0 + 3 * 3600, max_points=30)
    engine.summaries.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.unlink(f"{path}{suffix}")
    Scanner(Index(url), data).scan_tree()
    engine, _ = g3_engine(data, url)
    assert engine.get_data(FIELDS, T0, T0 + 3 * 3600, max_points=30) == before


def test_a_broken_store_is_a_fallback_to_raw_data_never_a_wrong_answer(tmp_path):
    engine, ctx = indexed_g3_engine(tmp_path, hours=2)
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"this is not a database" * 100)
    engine.summaries = SummaryStore(f"sqlite:///{broken}")
    errors = []
    engine.on_summary_failure = errors.append
    plain = NodeEngine(ctx, engine.pm, "g3")
    assert engine.get_data(FIELDS, T0, T0 + 7200, max_points=30) == plain.get_data(FIELDS, T0, T0 + 7200,
                                                                                    max_points=30)
    assert errors and "not a database" in errors[0]


# -- the core's summarizer, for plugins without their own summaries ----------------------


class ArchivePlugin:
    """Two timelines over 20 days, final up to ``final``; records its reads."""

    def __init__(self, final):
        rng = np.random.default_rng(5)
        t = T0 + np.cumsum(rng.uniform(5, 55, 60_000))
        y = np.cumsum(rng.normal(size=t.size))
        y[rng.integers(0, t.size, 500)] = np.nan
        self.data = {"fast": (t, {"a": y, "b": -y * 2}),
                     "slow": (t[::7], {"n": rng.integers(-5, 5, t[::7].size)})}
        self.final = final
        self.reads = []

    @hookimpl
    def sisock_plugin_spec(self):
        return PluginSpec(default_node_name="arch", description="archive")

    @hookimpl
    def list_fields(self, start, end):
        return [Field("a", "fast"), Field("b", "fast"), Field("n", "slow"), Field("s", "slow", type="string")]

    @hookimpl
    def read_range(self, fields, start, end):
        self.reads.append((tuple(fields), start, end))
        out = {}
        for name, (t, cols) in self.data.items():
            lo, hi = np.searchsorted(t, [start, end])
            have = {k: v[lo:hi] for k, v in cols.items() if k in fields}
            if have and hi > lo:
                out[name] = Timeline(t[lo:hi], have, finalized_until=min(self.final, float(t[-1])))
        return out


def test_core_summaries_with_the_raw_seam_at_finalized_until(tmp_path):
    final = T0 + 9.3 * 86400
    plugin = ArchivePlugin(final)
    pm = make_plugin_manager(plugin, name="arch")
    node = NodeContext(name="arch", description="")
    store = SummaryStore(f"sqlite:///{tmp_path}/s.sqlite")
    engine = NodeEngine(node, pm, "arch", clock=lambda: T0 + 30 * 86400, summaries=store)
    summarizer = Summarizer(store, lambda s, e: engine._call("list_fields", start=s, end=e), engine._read,
                            clock=engine.clock)
    assert summarizer.run_once() > 0
    infos = store.series(["a", "b", "n", "s"])
    assert set(infos) == {"a", "b", "n"}  # strings are not summarized
    assert all(i.covered_until == math.floor(final / 60) * 60 for i in infos.values())

    def raw(fields, s, e):
        return plugin.read_range(fields, s, e)

    for t0, t1, limit in [(T0 + 1000.5, T0 + 25 * 86400, 300), (T0 + 86400 * 2.2, T0 + 86400 * 9.1, 100),
                          (T0, T0 + 9.0 * 86400, 50)]:
        plugin.reads.clear()
        ans = engine.get_data(["a", "b", "n", "s"], t0, t1, max_points=limit)
        reads = [r for r in plugin.reads]
        exp, _, grid = expected(raw, ["a", "b", "n"], t0, t1, limit, open_end=True)
        # strings come from the raw path as before; the rest from summaries + raw edges/tail
        assert ans["data"]["s"] == []
        assert_same({"timeline": {k: v for k, v in ans["timeline"].items()}, "data": ans["data"]}, exp)
        covered = math.floor(final / 60) * 60
        # raw reads of summarized fields: the partial bucket at the start, and from the seam on
        assert all(e - s <= grid or s == math.floor(covered / grid) * grid for f, s, e in reads if "a" in f)
        assert [(s, e) for f, s, e in reads if f == ("s",)] == [(t0, t1)]
    # a second pass resumes at the day of covered_until and counts nothing twice
    plugin.final = T0 + 15.01 * 86400
    summarizer.run_once()
    ans = engine.get_data(["a"], T0, T0 + 20 * 86400, max_points=200)
    exp, _, _ = expected(raw, ["a"], T0, T0 + 20 * 86400, 200, open_end=True)
    assert_same(ans, exp)
    b = store.read([store.series(["a"])["a"]], 0, 0, 4e9)[store.series(["a"])["a"].id]
    t, (y,) = plugin.data["fast"][0], [plugin.data["fast"][1]["a"]]
    cut = math.floor(plugin.final / 60) * 60
    assert int(b.n.sum()) == int(np.searchsorted(t, cut))
    assert np.isclose(b.vsum.sum(), np.nansum(y[:np.searchsorted(t, cut)]))


class OwnSummaries(ArchivePlugin):
    """A plugin that writes its own summaries (as g3 does while indexing)."""

    def __init__(self, url):
        super().__init__(T0)
        self.url = url

    @hookimpl
    def summary_store(self, node):
        return self.url


def test_hook_summary_store(sisock_node, tmp_path):
    # a plugin handing over its own store: the core reads it and computes nothing
    url = f"sqlite:///{tmp_path}/own.sqlite"
    own = sisock_node(OwnSummaries(url), name="own", clock=lambda: T0 + 30 * 86400)
    assert own.server.engine.summaries.describe() == url
    assert own.server.summarizer is None and own.summarize() == 0
    # without the hook the core computes them from read_range into the state directory
    plugin = ArchivePlugin(T0 + 12 * 86400)
    node = sisock_node(plugin, name="arch", clock=lambda: T0 + 30 * 86400)
    store = node.server.engine.summaries
    assert store.url.path == str(node.site_config.state_dir / "summaries" / "arch.sqlite")
    assert node.summarize() > 0
    assert set(store.series(["a", "b", "n", "s"])) == {"a", "b", "n"}
    t0, t1 = T0 + 3600.5, T0 + 20 * 86400
    ans = node.get_data(["a", "b"], t0, t1, max_points=400)
    exp, tier, _ = expected(plugin.read_range, ["a", "b"], t0, t1, 400, open_end=True)
    assert tier == 3600.0
    assert_same({k: ans[k] for k in ("data", "timeline")}, exp)


def test_a_corrupt_core_store_is_rebuilt_never_used(sisock_node):
    plugin = ArchivePlugin(T0 + 12 * 86400)
    node = sisock_node(plugin, name="arch", clock=lambda: T0 + 30 * 86400)
    store = node.server.engine.summaries
    path = store.url.path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"garbage, not SQLite " * 200)
    t0, t1 = T0 + 3600.5, T0 + 20 * 86400
    plain = NodeEngine(node.server.context, node.server.pm, "arch", clock=lambda: T0 + 30 * 86400)
    # answered from raw data while the store is broken
    assert node.get_data(["a"], t0, t1, max_points=400) == plain.get_data(["a"], t0, t1, max_points=400)
    assert node.server.engine.summaries.damaged  # the read found it out
    assert node.summarize() > 0  # the next pass deletes the file and rebuilds the store
    assert store.damaged is None
    exp, _, _ = expected(plugin.read_range, ["a"], t0, t1, 400, open_end=True)
    assert_same(node.get_data(["a"], t0, t1, max_points=400), exp)


def test_core_summaries_of_several_nodes_share_one_mariadb(mariadb_url):
    """Two nodes with the same field names, one database (the site's ``summaries_db``):
    each keeps, reads and rolls up its own series."""
    plugins = {"n1": ArchivePlugin(T0 + 3.5 * 86400), "n2": ArchivePlugin(T0 + 6.5 * 86400)}
    plugins["n2"].data["fast"][1]["a"] = plugins["n2"].data["fast"][1]["a"] + 100.0
    engines, stores = {}, {}
    for name, plugin in plugins.items():
        stores[name] = store = SummaryStore(mariadb_url, namespace=name)
        engines[name] = engine = NodeEngine(NodeContext(name=name, description=""),
                                            make_plugin_manager(plugin, name=name), name,
                                            clock=lambda: T0 + 30 * 86400, summaries=store)
        Summarizer(store, lambda s, e, en=engine: en._call("list_fields", start=s, end=e), engine._read,
                   clock=engine.clock).run_once()
    one, two = (stores[n].series(["a", "b", "n"]) for n in ("n1", "n2"))
    assert set(one) == set(two) == {"a", "b", "n"}
    assert {i.id for i in one.values()}.isdisjoint(i.id for i in two.values())
    assert one["a"].covered_until == math.floor((T0 + 3.5 * 86400) / 60) * 60
    assert two["a"].covered_until == math.floor((T0 + 6.5 * 86400) / 60) * 60
    t0, t1 = T0 + 3600.5, T0 + 8 * 86400
    for name, plugin in plugins.items():
        plugin.reads.clear()
        ans = engines[name].get_data(["a", "b"], t0, t1, max_points=200)
        covered = {"n1": one, "n2": two}[name]["a"].covered_until
        assert all(e - s <= 3600 or s >= covered - 3600 for _, s, e in plugin.reads)  # summaries, raw tail
        exp, tier, _ = expected(plugin.read_range, ["a", "b"], t0, t1, 200, open_end=True)
        assert tier == 3600.0
        assert_same({k: ans[k] for k in ("data", "timeline")}, exp)
    # a node's rollup leaves the other's series alone
    with stores["n2"].cursor(write=True) as cur:
        cur.execute("UPDATE sisock_sum_series SET dirty_t0 = t_first, dirty_t1 = t_last WHERE id = %s",
                    (two["a"].id,))
    assert stores["n1"].rollup() == 0
    assert stores["n2"].rollup() == 1


def test_the_site_setting_summaries_db_puts_a_node_s_core_summaries_there(mariadb_url, tmp_path):
    from sisock_core.config import ConfigError, load_config_text
    from sisock_core.datanode import DataNodeServer
    from sisock_core.plugins import plugin_spec

    plugin = ArchivePlugin(T0 + 12 * 86400)
    pm = make_plugin_manager(plugin, name="arch")
    spec = plugin_spec(pm, "arch")
    text = f'state_dir = "{tmp_path}"\nsummaries_db = "{mariadb_url}"\n[nodes.arch]\nplugin = "arch"\n'
    site = load_config_text(text, "<test>", {}, base_dir=str(tmp_path), plugin_loader=lambda _n: (pm, spec),
                            installed=lambda: ["arch"])
    assert site.summaries_db == mariadb_url
    server = DataNodeServer(site, site.nodes["arch"], plugin=(pm, spec), connect=False, clock=lambda: T0 + 30 * 86400)
    server.start_plugin()
    store = server.engine.summaries
    assert store.kind == "mysql" and store.describe() == SummaryStore(mariadb_url).describe()
    assert server.summarizer.run_once() > 0
    assert set(SummaryStore(mariadb_url, namespace="arch").series(["a", "b", "n"])) == {"a", "b", "n"}
    assert not (tmp_path / "summaries").exists()
    with pytest.raises(ConfigError, match="summaries_db"):
        load_config_text('summaries_db = "postgres://x/y"\n', "<test>", {}, base_dir=str(tmp_path))


@pytest.mark.parametrize("written", ["sums.sqlite", "sqlite:sums.sqlite", "sqlite:///sums.sqlite"])
def test_a_relative_summaries_db_file_is_relative_to_the_site_file(tmp_path, written):
    """As ``state_dir``: not to whatever directory a process was started in (systemd: /)."""
    from sisock_core.config import load_config_text

    site = load_config_text(f'summaries_db = "{written}"\n', "<test>", {}, base_dir=str(tmp_path / "site"))
    expected = "/sums.sqlite" if written.startswith("sqlite:///") else f"{tmp_path}/site/sums.sqlite"
    assert site.summaries_db == f"sqlite:///{expected}"
    assert SummaryStore(site.summaries_db).url.path == expected


class Slow(ArchivePlugin):
    """A read that goes on until its caller gives up (checking between chunks)."""

    def __init__(self):
        super().__init__(T0)
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.chunks = 0

    @hookimpl
    def read_range(self, fields, start, end):
        self.started.set()
        try:
            while not self.stopped.wait(0.01):  # one "chunk" of work
                self.chunks += 1
                cancel.check()
        except cancel.Cancelled:
            self.stopped.set()
            raise
        return {}


def test_a_request_the_caller_abandoned_stops_and_is_logged_once_at_info(sisock_node):
    from twisted.logger import LogLevel, formatEvent, globalLogPublisher

    plugin = Slow()
    node = sisock_node(plugin, name="slow")
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        reactor = node.server.reactor
        calls = {}

        def start():
            calls["d"] = node.server.get_data(["a"], T0, T0 + 100)
            calls["d"].addErrback(lambda f: calls.setdefault("failure", f))

        reactor.callFromThread(start)
        assert plugin.started.wait(30)
        reactor.callFromThread(lambda: calls["d"].cancel())
        assert plugin.stopped.wait(30), "the worker kept running after the caller gave up"
        done = threading.Event()
        reactor.callFromThread(done.set)
        assert done.wait(30)
    finally:
        globalLogPublisher.removeObserver(events.append)
    mine = [e for e in events if "abandoned" in formatEvent(e)]
    assert len(mine) == 1 and mine[0]["log_level"] == LogLevel.info, [formatEvent(e) for e in mine]
    assert not [e for e in events if e["log_level"] in (LogLevel.critical, LogLevel.error)]


def test_a_cancelled_request_stops_at_the_next_check():
    token = cancel.CancelToken()
    seen = []

    def work():
        with cancel.scope(token):
            for i in range(1000):
                seen.append(i)
                if i == 3:
                    token.cancel()
                cancel.check()

    with pytest.raises(cancel.Cancelled, match="abandoned"):
        work()
    assert seen == [0, 1, 2, 3]
    cancel.check()  # outside a request: nothing happens
pytest_plugins = ["sisock_core.testing"]


def test_the_answer_bound_covers_summaries_and_raw_parts_together(tmp_path, monkeypatch):
    """One call answered partly from the summaries (a float field) and partly from raw data
    (a bool field, never summarized) is bounded as one answer, not as two."""
    from sisock_core import answersize
    from sisock_core.answersize import AnswerTooLarge, bound_answer_size

    from .g3gen import agent_status

    data = tmp_path / "data"
    agg = Aggregator(data, time_per_file=3600, frame_length=300, start_time=T0)
    agg.add(agent_status(rate=1.0))
    agg.run(T0, T0 + 8 * 3600)
    agg.close()
    url = f"sqlite:///{tmp_path}/i.sqlite"
    Scanner(Index(url), data).scan_tree()
    engine, _ = g3_engine(data, url)
    spin, locked = "observatory.hwp.feeds.status.spin_hz", "observatory.hwp.feeds.status.locked"

    def size(field):
        ans = engine.get_data([field], T0, T0 + 8 * 3600, max_points=200)
        (tl,) = ans["timeline"].values()
        return bound_answer_size(0, np.asarray(tl["t"]), {field: np.asarray(ans["data"][field])})

    alone = [size(spin), size(locked)]
    assert all(alone)
    calls = []
    original = engine._from_raw
    monkeypatch.setattr(engine, "_from_raw", lambda names, *a, **k: (calls.append(names), original(names, *a, **k)))
    engine.get_data([spin, locked], T0, T0 + 8 * 3600, max_points=200)
    assert calls == [[locked]]  # the float from the summaries, the bool from raw data
    monkeypatch.undo()
    monkeypatch.setattr(answersize, "MAX_ANSWER_BYTES", max(alone) + 1)  # each fits, not both
    for field in (spin, locked):
        engine.get_data([field], T0, T0 + 8 * 3600, max_points=200)
    with pytest.raises(AnswerTooLarge):
        engine.get_data([spin, locked], T0, T0 + 8 * 3600, max_points=200)
