"""The g3 reader and plugin: answers from the index and the files, checked against so3g."""

from __future__ import annotations

import numpy as np
import pytest

import so3g  # noqa: F401  (before spt3g)
from so3g.hk import HKArchiveScanner

from sisock_core.engine import NodeEngine, PluginFailure
from sisock_core.model import NodeContext
from sisock_core.plugins import make_plugin_manager
from sisock_plugins.g3 import plugin as g3_plugin
from sisock_plugins.g3 import reader as reader_mod
from sisock_plugins.g3.index import DatabaseUnavailable, Index
from sisock_plugins.g3.reader import AmbiguousField, HKReader
from sisock_plugins.g3.scanner import Scanner

from .g3gen import Aggregator, agent_status, bluefors, lakeshore, mariadb_database, value
from .siteproc import free_port

T0 = 1_600_000_000.0
LS = "observatory.LSA22YE.feeds.temperatures"
LS2 = "observatory.LSB33.feeds.temperatures"
BF = "observatory.bluefors.feeds.bluefors"
HWP = "observatory.hwp.feeds.status"


def make_archive(data_dir, version=2):
    """Two hours in 30-min files: two Lakeshores (one restarting), Bluefors, and for v1+
    a feed with string and bool fields."""
    agg = Aggregator(data_dir, version=version, time_per_file=1800, start_time=T0)
    ls = agg.add(lakeshore(4))
    agg.add(lakeshore(2, instance="LSB33", rate=0.5))
    bf = bluefors()
    if version == 0:
        bf.blocks = {"pressure_ch1": {"pressure_ch1": "float"}}
    agg.add(bf)
    if version:
        agg.add(agent_status())
    agg.run(T0, T0 + 2700)
    agg.restart(ls, T0 + 2700)
    agg.run(T0 + 2700, T0 + 7200)
    agg.close()
    return agg.files


@pytest.fixture(scope="module")
def mariadb_url():
    url, drop = mariadb_database()
    yield url
    drop()


def scanned(tmp_path, version=2, url=None):
    files = make_archive(tmp_path / "data", version)
    index = Index(url or f"sqlite:///{tmp_path}/index.sqlite")
    if url:
        index.drop_all()
    Scanner(index, tmp_path / "data").scan_tree()
    return files, index


def so3g_archive(files):
    sc = HKArchiveScanner()
    for f in files:
        sc.process_file(str(f))
    return sc.finalize()


def by_field(answer):
    """{field: (t, values)} from read_range's timelines."""
    out = {}
    for tl in answer.values():
        for name, values in tl.data.items():
            out[name] = (tl.t, values)
    return out


RANGES = [
    (T0, T0 + 7200),  # everything
    (T0 + 1000.5, T0 + 2000),  # across a file boundary
    (T0 + 2650, T0 + 2760),  # across the Lakeshore restart
    (T0 + 61, T0 + 62),  # one sample
    (T0 - 500, T0 + 30),  # starting before the archive
    (T0 + 9000, T0 + 9100),  # after it
]


@pytest.mark.parametrize("version,db", [(2, "sqlite"), (1, "sqlite"), (0, "sqlite"), (2, "mariadb")])
def test_answers_match_so3g_hkarchive_get_data(tmp_path, request, version, db):
    url = request.getfixturevalue("mariadb_url") if db == "mariadb" else None
    files, index = scanned(tmp_path, version, url)
    reader = HKReader(index)
    arch = so3g_archive(files)
    names = sorted(arch.get_fields()[0])
    assert {f.name for f in reader.list_fields(T0 - 1, T0 + 8000)} == set(names)
    for start, end in RANGES:
        ours = by_field(reader.read_range(names, start, end))
        data, timelines = arch.get_data(names, start, end)
        theirs = {}
        for tl in timelines.values():
            for name in tl["fields"]:
                if len(tl["t"]):
                    theirs[name] = (tl["t"], data[name])
        assert set(ours) == set(theirs), (start, end)
        for name, (t, v) in theirs.items():
            np.testing.assert_array_equal(ours[name][0], t, err_msg=f"{name} {start}-{end}")
            np.testing.assert_array_equal(ours[name][1], v, err_msg=f"{name} {start}-{end}")
    index.close()


def test_values_types_and_timelines(tmp_path):
    _, index = scanned(tmp_path)
    reader = HKReader(index)
    fields = {f.name: f for f in reader.list_fields(T0, T0 + 7200)}
    assert fields[f"{HWP}.mode"].type == "string" and fields[f"{HWP}.locked"].type == "bool"
    assert fields[f"{LS}.Channel_01_T"].timeline == f"{LS}.temps"
    ans = reader.read_range([f"{LS}.Channel_01_T", f"{LS}.Channel_03_T", f"{HWP}.mode", f"{HWP}.locked",
                             f"{BF}.pressure_ch1_state"], T0 + 100, T0 + 4000)
    assert set(ans) == {f"{LS}.temps", f"{HWP}.state", f"{BF}.pressure_ch1"}
    temps = ans[f"{LS}.temps"]
    np.testing.assert_array_equal(temps.t, T0 + np.arange(100, 4000.0))
    np.testing.assert_allclose(temps.data[f"{LS}.Channel_03_T"], value("Channel_03_T", "float", temps.t))
    assert temps.finalized_until == T0 + 3999
    hwp = ans[f"{HWP}.state"]
    assert list(hwp.data[f"{HWP}.mode"]) == list(value("mode", "str", hwp.t))
    assert hwp.data[f"{HWP}.locked"].dtype == bool
    assert ans[f"{BF}.pressure_ch1"].data[f"{BF}.pressure_ch1_state"].dtype.kind == "i"


def test_short_and_original_names(tmp_path):
    _, index = scanned(tmp_path)
    reader = HKReader(index)
    full = f"{LS}.Channel_02_T"
    ans = by_field(reader.read_range(
        [full, "LSA22YE.Channel_02_T", f"{LS}.channel_02_t", "bluefors.pressure_ch1", "nope.nothing"],
        T0, T0 + 600))
    assert set(ans) == {full, "LSA22YE.Channel_02_T", f"{LS}.channel_02_t", "bluefors.pressure_ch1"}
    np.testing.assert_array_equal(ans["LSA22YE.Channel_02_T"][1], ans[full][1])
    np.testing.assert_array_equal(ans[f"{LS}.channel_02_t"][1], ans[full][1])
    # both Lakeshores have Channel_01_T: so3g and we refuse to guess
    with pytest.raises(AmbiguousField, match=f"matches {LS}.Channel_01_T, {LS2}.Channel_01_T"):
        reader.read_range(["temperatures.Channel_01_T"], T0, T0 + 600)
    with pytest.raises(ValueError, match="Multiple matches"):
        so3g_archive(make_archive(tmp_path / "again")).get_data(
            ["temperatures.Channel_01_T"], T0, T0 + 600, short_match=True)


def test_get_fields_reads_only_the_index(tmp_path):
    files, index = scanned(tmp_path)
    for f in files:
        f.unlink()  # no file to open
    reader = HKReader(index)
    assert len(reader.list_fields(1, 2e9)) == 4 + 2 + 3 + 3
    # only fields with samples that may be in the range
    late = {f.name for f in reader.list_fields(T0 + 7199, T0 + 8000)}
    assert late == {f"{LS}.Channel_0{i}_T" for i in range(1, 5)}
    assert reader.list_fields(T0 + 7300, T0 + 8000) == []


def test_get_data_reads_only_overlapping_files_and_fields_and_caches_them(tmp_path, monkeypatch):
    files, index = scanned(tmp_path)
    reads: list[tuple[str, int, tuple]] = []
    real = reader_mod.FrameReader

    class Recording(real):
        def read_many(self, requests):
            for blocks, fields in requests.values():
                reads.append((self.path, len(blocks), tuple(fields)))
            return super().read_many(requests)

    monkeypatch.setattr(reader_mod, "FrameReader", Recording)
    reader = HKReader(index)
    ch1, ch4 = f"{LS}.Channel_01_T", f"{LS}.Channel_04_T"
    ans = reader.read_range([ch1], T0 + 1900, T0 + 2000)  # inside the second file
    np.testing.assert_array_equal(ans[f"{LS}.temps"].t, T0 + np.arange(1900, 2000.0))
    # the Lakeshore blocks of that file (30 frames of 60 s), and only the field asked for
    assert reads == [(str(files[1]), 30, ("Channel_01_T",))]
    reader.read_range([ch1], T0 + 1900, T0 + 2000)
    reader.read_range([ch1], T0 + 1850, T0 + 3000)
    assert len(reads) == 1  # the repeat and a moved window in the same file read nothing
    reader.read_range([ch1, ch4], T0 + 1900, T0 + 2000)
    assert reads[1:] == [(str(files[1]), 30, ("Channel_04_T",))]  # only what was missing
    reader.read_range([ch1], T0 + 3500, T0 + 3700)
    assert reads[2:] == [(str(files[2]), 30, ("Channel_01_T",))]  # the restart's blocks too


def test_the_cache_stays_within_its_size(tmp_path):
    _, index = scanned(tmp_path)
    reader = HKReader(index, cache_mb=0.05)
    names = [f"{LS}.Channel_0{i}_T" for i in range(1, 5)]
    first = by_field(reader.read_range(names, T0, T0 + 7200))
    assert 0 < reader.cache.bytes <= 0.05 * 2**20
    again = by_field(reader.read_range(names, T0, T0 + 7200))
    for n in names:
        np.testing.assert_array_equal(first[n][1], again[n][1])
    assert reader.cache.bytes <= 0.05 * 2**20


def test_a_file_deleted_after_indexing_leaves_a_gap_not_an_error(tmp_path):
    files, index = scanned(tmp_path)
    files[1].unlink()
    reader = HKReader(index)
    ans = reader.read_range([f"{LS}.Channel_01_T"], T0, T0 + 7200)
    t = ans[f"{LS}.temps"].t
    assert t.size == 7200 - 1800 and not np.any((t >= T0 + 1800) & (t < T0 + 3600))


def node(tmp_path, **options):
    ctx = NodeContext(name="g3_reader", description="test",
                      options=g3_plugin.Options(data_dir=str(tmp_path / "data"), **options),
                      state={"state_dir": str(tmp_path / "state")})
    pm = make_plugin_manager(g3_plugin, name="g3")
    pm.hook.node_start(node=ctx)
    return ctx, pm


def test_the_plugin_through_the_node_engine(tmp_path):
    make_archive(tmp_path / "data")
    url = g3_plugin.db_url(g3_plugin.Options(data_dir="x"), "g3_reader", tmp_path / "state")
    assert url == f"sqlite:///{tmp_path}/state/g3/g3_reader.sqlite"
    Scanner(Index(url), tmp_path / "data").scan_tree()
    ctx, pm = node(tmp_path, cache_mb=16)
    engine = NodeEngine(ctx, pm, "g3", max_points=100)
    fields, timelines = engine.get_fields(T0, T0 + 7200)
    assert fields[f"{LS}.Channel_01_T"] == {"description": None, "timeline": f"{LS}.temps",
                                            "type": "number", "units": None}
    assert f"{LS}.Channel_04_T" in timelines[f"{LS}.temps"]["field"]
    ans = engine.get_data([f"{LS}.Channel_01_T", "hwp.mode", "missing.field"], T0, T0 + 7200)
    assert len(ans["data"][f"{LS}.Channel_01_T"]) <= 100  # decimated by the core
    assert len(ans["timeline"][f"{LS}.temps"]["t"]) == len(ans["data"][f"{LS}.Channel_01_T"])
    assert ans["data"]["missing.field"] == []
    assert set(ans["data"]["hwp.mode"]) <= {"idle", "spinning", "stopping"}
    pm.hook.node_stop(node=ctx)


def test_the_plugin_answers_a_clear_error_while_the_database_is_down(tmp_path):
    ctx, pm = node(tmp_path, db=f"mysql://root@127.0.0.1:{free_port()}/sisock_down")  # starts anyway
    engine = NodeEngine(ctx, pm, "g3")
    with pytest.raises(PluginFailure, match=r"DatabaseUnavailable: index database mysql://root@127.0.0.1:\d+/"
                                            r"sisock_down is unavailable"):
        engine.get_data([f"{LS}.Channel_01_T"], T0, T0 + 60)
    with pytest.raises(PluginFailure, match="is unavailable"):
        engine.get_fields(T0, T0 + 60)
    with pytest.raises(DatabaseUnavailable):
        ctx.state["g3"].list_fields(T0, T0 + 60)


def test_options_are_validated(tmp_path):
    with pytest.raises(ValueError, match="must be a positive number"):
        g3_plugin.Options(data_dir="/x", cache_mb=0)
    with pytest.raises(ValueError, match="unknown scheme"):
        g3_plugin.Options(data_dir="/x", db="postgres://h/db")
    opts = g3_plugin.Options(data_dir="/x", sql_host="db:3307", sql_user="u", sql_passwd="p", sql_db="hk")
    assert g3_plugin.db_url(opts, "n", None) == "mysql://u:p@db:3307/hk"
    assert g3_plugin.db_url(g3_plugin.Options(data_dir="/x", db="sqlite:////i.sqlite"), "n", None) \
        == "sqlite:////i.sqlite"
    assert "'p'" not in repr(opts)  # the password stays out of logs
