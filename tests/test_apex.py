"""Tests of the apex plugin: file names, index, parser, cache, and get_fields/get_data
through the plugin manager and the node engine (pure: real files, no network)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sisock_core.config import load_config_text
from sisock_core.engine import NodeEngine
from sisock_core.model import NodeContext
from sisock_core.plugins import make_plugin_manager, plugin_spec
from sisock_plugins.apex import plugin
from sisock_core.textarchive import (
    DirectoryWatch,
    ParsedFileCache,
    SpanIndex,
    concat_columns,
    parse_columns,
)
from sisock_plugins.apex.parser import FIELDS, TargetName, parse_target_name, target_name

from .archive_generators import APEX_FIELDS, apex_value, utc, write_apex_archive
from .logcapture import capture_log

NOW = utc("2018-02-01T00:00")


# -- helpers ---------------------------------------------------------------------


@pytest.fixture
def logged(monkeypatch):
    """The plugin's log messages, formatted."""
    return capture_log(monkeypatch, plugin)


def start(data_dir: Path, **options):
    pm = make_plugin_manager(plugin, name="apex")
    node = NodeContext(name="apex_weather", description="APEX",
                       options=plugin.Options(data_dir=str(data_dir), **options))
    pm.hook.node_start(node=node)
    return NodeEngine(node, pm, "apex", clock=lambda: NOW, max_points=None), node.state["apex"]


@pytest.fixture
def new_year(tmp_path):
    """Four days of 10-minute samples across the 2017/2018 new year, one file per field per day."""
    write_apex_archive(tmp_path, utc("2017-12-30T00:00"), utc("2018-01-03T00:00"), span=86400, step=600)
    return tmp_path


# -- names, index, parsing ----------------------------------------------------------


def test_target_names():
    assert parse_target_name("APEX_humidity_1499990400_1500595200.dat") == TargetName(
        "APEX", "humidity", 1499990400, 1500595200)
    assert parse_target_name("APEX_old_site_windspeed_10_20.dat") == TargetName(
        "APEX_old_site", "windspeed", 10, 20)
    for bad in ("APEX_humidity_1499990400_1500595200.txt", "humidity_1_2.dat", "APEX_humidity_x_2.dat",
                "APEX_humidity_20_10.dat", "APEX_humidity_1_2.dat.bak", "README"):
        assert parse_target_name(bad) is None, bad
    assert target_name("APEX", "pressure", 1, 2) == "APEX_pressure_1_2.dat"


def test_span_index_boundaries_and_overlaps():
    idx = SpanIndex([(100, 199, "b"), (0, 99, "a"), (200, 299, "c"), (150, 400, "long"), (500, 599, "e")])
    assert idx.select(0, 1) == ["a"]
    assert idx.select(99, 100) == ["a"]  # end is inclusive
    assert idx.select(100, 101) == ["b"]  # a ends at 99
    assert idx.select(199.5, 200) == ["long"]
    assert idx.select(120, 260) == ["b", "long", "c"]
    assert idx.select(401, 500) == []  # start == t1 excluded
    assert idx.select(-50, 0) == []
    assert idx.select(0, 1e9) == ["a", "b", "long", "c", "e"]
    assert idx.any_in(450, 460) is False and idx.any_in(450, 501) is True
    assert (idx.first_start, idx.last_end) == (0, 599)
    assert SpanIndex([]).select(0, 1e9) == []


def test_parse_columns_skips_and_counts_malformed_lines():
    text = "100 1.5\n\n# note\n200 x\n300 3.0 9\n400\nnan 4\n500 nan\r\n600 6 # c\n"
    c = parse_columns(text, "f.dat")
    np.testing.assert_array_equal(c.t, [100, 500, 600])
    assert c.values[0] == 1.5 and np.isnan(c.values[1]) and c.values[2] == 6
    assert c.bad_lines == 4 and c.first_bad_line == 4 and c.first_bad_text == "200 x"
    assert c.malformed_summary() == "skipped 4 malformed lines in f.dat, first at line 4: '200 x'"
    assert not c.t.flags.writeable


def test_parse_columns_sorts_and_drops_nan_when_asked():
    c = parse_columns("head\n3 1\n1 nan\n2 2\n", header_lines=1, drop_nan=True)
    np.testing.assert_array_equal(c.t, [2, 3])
    assert c.reordered and c.dropped_nan == 1 and c.bad_lines == 0
    empty = parse_columns("")
    assert empty.t.size == 0 and empty.bad_lines == 0


def test_concat_columns_trims_and_drops_repeated_times():
    a = parse_columns("1 1\n2 2\n3 3\n")
    b = parse_columns("3 30\n4 4\n5 5\n")
    t, v = concat_columns([a, b], 2, 5)
    np.testing.assert_array_equal(t, [2, 3, 4])
    np.testing.assert_array_equal(v, [2, 3, 4])
    t, v = concat_columns([b, a], 0, 10)  # out of order files
    np.testing.assert_array_equal(t, [1, 2, 3, 4, 5])


def test_cache_reparses_changed_files_and_stays_bounded(tmp_path):
    paths = []
    for i in range(5):
        p = tmp_path / f"f{i}.dat"
        p.write_text("".join(f"{t} {t}\n" for t in range(100)))  # 1600 bytes parsed
        paths.append(p)
    cache = ParsedFileCache(max_bytes=3 * 1600)
    parse = lambda p: parse_columns(Path(p).read_text(), p)  # noqa: E731
    first = cache.get(paths[0], parse)
    assert first.new and first.value.t.size == 100 and cache.misses == 1
    again = cache.get(paths[0], parse)
    assert not again.new and again.value is first.value and cache.hits == 1
    for p in paths:
        cache.get(p, parse)
    assert len(cache) == 3 and cache.bytes <= 3 * 1600
    # Evicted then read again: parsed again, but not reported as new.
    assert cache.get(paths[0], parse).new is False
    st = os.stat(paths[0])
    paths[0].write_text("1 1\n")
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = cache.get(paths[0], parse)
    assert changed.new and changed.value.t.size == 1


def test_cache_remembers_failures_until_the_file_changes(tmp_path):
    bad = tmp_path / "APEX_humidity_1_2.dat"
    bad.mkdir()  # a directory where a file should be: open() fails
    cache = ParsedFileCache(max_bytes=10**6)
    parse = lambda p: parse_columns(Path(p).read_text(), p)  # noqa: E731
    r = cache.get(bad, parse)
    assert r.value is None and isinstance(r.error, OSError) and r.new
    r = cache.get(bad, parse)
    assert r.error is not None and not r.new and cache.misses == 1
    gone = cache.get(tmp_path / "missing.dat", parse)
    assert isinstance(gone.error, FileNotFoundError)


def test_directory_watch_relists_on_change_and_distrusts_racy_listings(tmp_path):
    now = [0.0]
    watch = DirectoryWatch(tmp_path, clock=lambda: now[0])
    assert watch.needs_listing()
    mtime = os.stat(tmp_path).st_mtime_ns
    now[0] = mtime / 1e9 + 0.5  # listed right after a change: racy
    watch.listed(mtime)
    assert watch.needs_listing()
    now[0] = mtime / 1e9 + 10
    watch.listed(mtime)
    assert not watch.needs_listing()
    (tmp_path / "new").touch()
    os.utime(tmp_path, ns=(mtime, mtime + 5 * 10**9))
    assert watch.needs_listing()


# -- the plugin through the engine (golden answers) ---------------------------------------


def test_spec_and_options_from_site_config(tmp_path):
    spec = plugin_spec(make_plugin_manager(plugin, name="apex"), "apex")
    assert spec.default_node_name == "apex_weather"
    cfg = load_config_text(
        f'[nodes.apex_weather]\nplugin = "apex"\ndata_dir = "{tmp_path}"\ncache_mb = 8\nmax_points = 500\n',
        "site.toml", env={},
    )
    node = cfg.nodes["apex_weather"]
    assert node.options == plugin.Options(data_dir=str(tmp_path), cache_mb=8.0)
    assert node.max_points == 500
    with pytest.raises(Exception, match="cache_mb"):
        load_config_text('[nodes.a]\nplugin = "apex"\ncache_mb = -1\n', "site.toml", env={})


def test_get_fields_golden(new_year):
    engine, _ = start(new_year)
    fields, timelines = engine.get_fields(utc("2017-12-31T23:00"), utc("2018-01-01T01:00"))
    assert fields == {
        "humidity": {"description": "APEX weather station humidity.", "timeline": "humidity",
                     "type": "number", "units": "%"},
        "pressure": {"description": "APEX weather station pressure.", "timeline": "pressure",
                     "type": "number", "units": "mBar"},
        "radiometer": {"description": "APEX radiometer data.", "timeline": "radiometer",
                       "type": "number", "units": "mm"},
        "dewpoint": {"description": "APEX weather station dewpoint.", "timeline": "dewpoint",
                     "type": "number", "units": "C"},
        "temperature": {"description": "APEX weather station temperature.", "timeline": "temperature",
                        "type": "number", "units": "C"},
        "windspeed": {"description": "APEX weather station windspeed.", "timeline": "windspeed",
                      "type": "number", "units": "km/h"},
        "winddirection": {"description": "APEX weather station wind direction.",
                          "timeline": "winddirection", "type": "number", "units": "deg"},
    }
    assert timelines == {f: {"interval": None, "field": [f]} for f in APEX_FIELDS}
    assert list(fields) == list(FIELDS)
    # Nothing in 2016: no fields.
    assert engine.get_fields(utc("2016-01-01T00:00"), utc("2016-02-01T00:00")) == [{}, {}]


def test_get_data_golden_across_new_year(new_year):
    engine, archive = start(new_year)
    ans = engine.get_data(["temperature", "winddirection", "nope"],
                          utc("2017-12-31T23:30"), utc("2018-01-01T00:30"))
    t = [1514763000.0, 1514763600.0, 1514764200.0, 1514764800.0, 1514765400.0, 1514766000.0]
    assert ans == {
        "data": {
            "temperature": [-7.524, -7.427, -7.321, -7.207, -7.086, -6.956],
            "winddirection": [330.0, 340.0, 350.0, 0.0, 10.0, 20.0],
            "nope": [],
        },
        "timeline": {
            "temperature": {"t": t, "finalized_until": 1514766000.0},
            "winddirection": {"t": t, "finalized_until": 1514766000.0},
        },
    }
    assert archive.cache.misses == 4  # two fields x the two days' files, nothing else


def test_whole_archive_matches_the_generator(new_year):
    engine, _ = start(new_year)
    ans = engine.get_data(list(APEX_FIELDS), 1, 0)
    t = np.arange(utc("2017-12-30T00:00"), utc("2018-01-03T00:00"), 600.0)
    for field in APEX_FIELDS:
        np.testing.assert_array_equal(ans["timeline"][field]["t"], t)
        np.testing.assert_array_equal(ans["data"][field], apex_value(field, t))


def test_max_points_caps_and_keeps_a_spike(new_year):
    path = new_year / "targets" / target_name("APEX", "windspeed", utc("2018-01-01T00:00"),
                                                utc("2018-01-01T23:50"))
    lines = path.read_text().splitlines()
    lines[77] = f"{lines[77].split()[0]} 250.0"  # a gust
    path.write_text("\n".join(lines) + "\n")
    engine, _ = start(new_year)
    ans = engine.get_data(["windspeed", "humidity"], 1, 0, max_points=40)
    assert len(ans["data"]["windspeed"]) <= 40 and len(ans["data"]["humidity"]) <= 40
    assert max(ans["data"]["windspeed"]) == 250.0
    assert len(ans["timeline"]["windspeed"]["t"]) == len(ans["data"]["windspeed"])
    # The node's own MAX_POINTS applies too.
    engine.max_points = 10
    assert len(engine.get_data(["windspeed"], 1, 0)["data"]["windspeed"]) <= 10


def test_only_files_in_range_are_opened(tmp_path, logged):
    # 2016 files (7 fields x 336 hourly files = 2352 small files), every one outside
    # the query but one hour, filled with garbage that would be logged if opened.
    write_apex_archive(tmp_path, utc("2017-07-01T00:00"), utc("2017-07-15T00:00"), span=3600, step=300)
    hour = (utc("2017-07-14T10:00"), utc("2017-07-14T11:00"))
    for p in (tmp_path / "targets").glob("*.dat"):
        if parse_target_name(p.name).start != hour[0]:
            p.write_text("garbage here\n")
    engine, archive = start(tmp_path)
    logged.clear()
    ans = engine.get_data(["pressure"], *hour)
    assert len(ans["data"]["pressure"]) == 12
    assert archive.cache.misses == 1
    assert archive.files_for("pressure", *hour) == [
        str(tmp_path / "targets" / "APEX_pressure_1500026400_1500029700.dat")]
    assert "skipped" not in logged.text()
    assert len(list((tmp_path / "targets").iterdir())) == 7 * 14 * 24


def test_malformed_lines_are_logged_once_with_count_file_and_line(new_year, logged):
    path = new_year / "targets" / target_name("APEX", "humidity", utc("2017-12-31T00:00"),
                                                utc("2017-12-31T23:50"))
    lines = path.read_text().splitlines()
    lines[4] = "1514678400 not-a-number"
    lines[9] = "garbage"
    path.write_text("\n".join(lines) + "\n")
    engine, _ = start(new_year)
    day = (utc("2017-12-31T00:00"), utc("2018-01-01T00:00"))
    ans = engine.get_data(["humidity"], *day)
    assert len(ans["data"]["humidity"]) == 144 - 2
    text = logged.text()
    assert f"skipped 2 malformed lines in {path}, first at line 5: '1514678400 not-a-number'" in text
    logged.clear()
    engine.get_data(["humidity"], *day)
    assert "skipped" not in logged.text()  # once per version of the file


def test_unreadable_file_is_reported_and_the_rest_served(new_year, logged):
    bad = new_year / "targets" / target_name("APEX", "pressure", utc("2018-01-01T00:00"),
                                               utc("2018-01-01T23:50"))
    bad.unlink()
    bad.mkdir()  # cannot be read as a file
    engine, _ = start(new_year)
    ans = engine.get_data(["pressure"], utc("2017-12-31T00:00"), utc("2018-01-03T00:00"))
    assert len(ans["data"]["pressure"]) == 2 * 144  # Dec 31 and Jan 2
    assert f"cannot read {bad}" in logged.text() and "answering without it" in logged.text()


def test_new_files_are_served_without_restart(new_year):
    engine, _ = start(new_year)
    jan3 = (utc("2018-01-03T00:00"), utc("2018-01-04T00:00"))
    assert engine.get_data(["dewpoint"], *jan3)["data"]["dewpoint"] == []
    write_apex_archive(new_year, *jan3, span=86400, step=600, fields=["dewpoint"])
    st = os.stat(new_year / "targets")  # make the change visible even on a coarse clock
    os.utime(new_year / "targets", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert len(engine.get_data(["dewpoint"], *jan3)["data"]["dewpoint"]) == 144


def test_unknown_fields_and_stray_files(new_year, logged):
    write_apex_archive(new_year, utc("2018-01-01T00:00"), utc("2018-01-02T00:00"), span=86400,
                       step=3600, fields=["co2"])
    (new_year / "targets" / "notes.txt").write_text("hello")
    engine, _ = start(new_year)
    fields, _ = engine.get_fields(1, 0)
    assert fields["co2"]["units"] is None and "not a known APEX field" in fields["co2"]["description"]
    assert len(engine.get_data(["co2"], 1, 0)["data"]["co2"]) == 24
    text = logged.text()
    assert "serving field co2" in text
    assert "ignored 1 entries not named <prefix>_<field>_<start>_<end>.dat, e.g. notes.txt" in text


def test_missing_directories_are_clear_errors_at_start(tmp_path):
    with pytest.raises(ValueError, match=f"apex: data directory {tmp_path / 'nope'} does not exist"):
        start(tmp_path / "nope")
    with pytest.raises(ValueError, match=f"apex: {tmp_path / 'targets'} does not exist"):
        start(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is not a directory"):
        start(tmp_path / "file")


def test_empty_archive_starts_and_answers_empty(tmp_path, logged):
    (tmp_path / "targets").mkdir()
    engine, _ = start(tmp_path)
    assert "holds no archive files yet" in logged.text()
    assert engine.get_fields(1, 0) == [{}, {}]
    assert engine.get_data(["humidity"], 1, 0) == {"data": {"humidity": []}, "timeline": {}}


def test_a_directory_that_comes_back_unchanged_and_goes_again_is_reported_again(tmp_path):
    """The shared directory watch: each outage is said once, even when the directory
    returns with the same mtime (a symlink or mount put back) and then fails the same way."""
    from twisted.logger import Logger

    from .logcapture import LoggedMessages

    target = tmp_path / "archive"
    target.mkdir()
    (target / "a.dat").write_text("")
    link = tmp_path / "link"
    link.symlink_to(target)
    messages = LoggedMessages()
    log = Logger(namespace="test", observer=messages.events.append)
    watch = DirectoryWatch(link, racy_seconds=0.0)
    assert watch.new_listing(log) == ["a.dat"]
    for outage in range(2):
        link.unlink()
        assert watch.new_listing(log) is None and watch.new_listing(log) is None
        assert sum("cannot list" in m for m in messages) == outage + 1  # once per outage
        link.symlink_to(target)  # back, mtime unchanged: nothing to list again
        assert watch.new_listing(log) is None
    assert sum("can be listed again" in m for m in messages) == 2
