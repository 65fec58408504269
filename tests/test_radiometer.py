"""Tests of the radiometer plugin: file names (2018 quirk), UTC day-of-year times, the
parser, and get_fields/get_data through the plugin manager and the node engine."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest

from sisock_core.config import load_config_text
from sisock_core.engine import NodeEngine
from sisock_core.model import NodeContext
from sisock_core.plugins import make_plugin_manager, plugin_spec
from sisock_plugins.radiometer import plugin
from sisock_plugins.radiometer.parser import (
    PwvName,
    day_start,
    parse_pwv_name,
    parse_pwv_text,
    pwv_name,
)

from .archive_generators import (
    day_range,
    pwv_day_samples,
    pwv_value,
    utc,
    write_pwv_archive,
    write_pwv_day,
)
from .logcapture import capture_log

NOW = utc("2019-01-01T00:00")


@pytest.fixture
def logged(monkeypatch):
    return capture_log(monkeypatch, plugin)


def start(data_dir, **options):
    pm = make_plugin_manager(plugin, name="radiometer")
    node = NodeContext(name="ucsc_radiometer", description="PWV",
                       options=plugin.Options(data_dir=str(data_dir), **options))
    pm.hook.node_start(node=node)
    return NodeEngine(node, pm, "radiometer", clock=lambda: NOW), node.state["radiometer"]


@pytest.fixture
def new_year(tmp_path):
    """2017-12-30 .. 2018-01-02 (the 2018 days in the swapped 2018 naming); every 3rd value
    NaN and a blank line every 2 lines."""
    write_pwv_archive(tmp_path, day_range(2017, 364, 4), nan_every=3, blank_every=2)
    return tmp_path


# -- names and times -------------------------------------------------------------------


def test_names_both_forms_and_the_2018_quirk():
    assert parse_pwv_name("PWV_UCSC_2019-032.txt") == PwvName(2019, 32, False)
    assert parse_pwv_name("PWV_UCSC_2019-32.txt") == PwvName(2019, 32, False)
    assert parse_pwv_name("PWV_UCSC_045-2018.txt") == PwvName(2018, 45, True)
    assert parse_pwv_name("PWV_UCSC_45-2018.txt") == PwvName(2018, 45, True)
    assert parse_pwv_name("PWV_UCSC_2020-366.txt") == PwvName(2020, 366, False)  # leap year
    for bad in ("PWV_UCSC_2019-366.txt", "PWV_UCSC_2019-000.txt", "PWV_UCSC_2019-032.dat",
                "PWV_2019-032.txt", "PWV_UCSC_19-032.txt", "PWV_UCSC_2019-032.txt~"):
        assert parse_pwv_name(bad) is None, bad
    assert pwv_name(2018, 201) == "PWV_UCSC_201-2018.txt"
    assert pwv_name(2018, 202) == "PWV_UCSC_2018-202.txt"
    assert pwv_name(2017, 5) == "PWV_UCSC_2017-005.txt"
    assert pwv_name(2019, 5, swapped=True) == "PWV_UCSC_005-2019.txt"


def test_day_of_year_is_utc():
    assert day_start(2018, 1) == utc("2018-01-01T00:00")
    assert day_start(2018, 32.5) == utc("2018-02-01T12:00")
    assert day_start(2020, 366) == utc("2020-12-31T00:00")
    assert parse_pwv_name("PWV_UCSC_2017-365.txt").day_start == utc("2017-12-31T00:00")


def test_times_do_not_depend_on_the_local_time_zone(monkeypatch):
    """The original used time.mktime (local time); ours is UTC whatever TZ says."""
    text = "DOY PWV\n32.5 1.0\n"
    utc_t = parse_pwv_text(text, 2018).t[0]
    monkeypatch.setenv("TZ", "America/Santiago")
    time.tzset()
    try:
        assert parse_pwv_text(text, 2018).t[0] == utc_t == utc("2018-02-01T12:00")
        a = dt.datetime(2018, 1, 1) + dt.timedelta(32.5 - 1)
        original = time.mktime(a.timetuple())  # what the original node computed
        assert original - utc_t == 3 * 3600  # Chile in February: UTC-3
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_parser_skips_header_nan_blank_and_malformed_lines():
    text = "DOY PWV\n1.0 0.5\n\n1.5 NaN\n1.75 nan\nabc 1\n2.0 2.5 9\n2.5 0.25\n"
    c = parse_pwv_text(text, 2019, "PWV_UCSC_2019-001.txt")
    np.testing.assert_array_equal(c.t, [utc("2019-01-01T00:00"), utc("2019-01-02T12:00")])
    np.testing.assert_array_equal(c.values, [0.5, 0.25])
    assert c.dropped_nan == 2 and c.bad_lines == 2
    assert (c.first_bad_line, c.first_bad_text) == (6, "abc 1")
    assert parse_pwv_text("DOY PWV\n", 2019).t.size == 0
    assert parse_pwv_text("", 2019).t.size == 0


# -- the plugin through the engine --------------------------------------------------------


def test_spec_and_options(tmp_path):
    spec = plugin_spec(make_plugin_manager(plugin, name="radiometer"), "radiometer")
    assert spec.default_node_name == "ucsc_radiometer"
    cfg = load_config_text(f'[nodes.ucsc_radiometer]\nplugin = "radiometer"\ndata_dir = "{tmp_path}"\n',
                           "site.toml", env={})
    assert cfg.nodes["ucsc_radiometer"].options == plugin.Options(data_dir=str(tmp_path))


def test_get_fields_golden(new_year):
    engine, _ = start(new_year)
    assert engine.get_fields(utc("2018-01-01T00:00"), utc("2018-01-01T01:00")) == [
        {"pwv": {"description": "PWV from UCSC Radiometer", "timeline": "pwv", "type": "number",
                 "units": "mm"}},
        {"pwv": {"interval": 60.48, "field": ["pwv"]}},
    ]
    assert engine.get_fields(utc("2018-03-01T00:00"), utc("2018-04-01T00:00")) == [{}, {}]


def test_get_data_golden_across_new_year_into_a_quirk_file(new_year):
    engine, archive = start(new_year)
    ans = engine.get_data(["pwv", "other"], utc("2017-12-31T23:57"), utc("2018-01-01T00:05"))
    assert ans["data"] == {"pwv": [1.151, 1.15, 1.15, 1.149, 1.149, 1.148], "other": []}
    assert ans["timeline"]["pwv"]["t"] == pytest.approx(
        [1514764644.48, 1514764765.44, 1514764800.0, 1514764860.48, 1514764981.44, 1514765041.92],
        abs=1e-5)
    assert ans["timeline"]["pwv"]["finalized_until"] == ans["timeline"]["pwv"]["t"][-1]
    assert archive.cache.misses == 2  # 2017-365 and 001-2018, nothing else


def test_whole_archive_matches_the_generator(new_year):
    engine, _ = start(new_year)
    ans = engine.get_data(["pwv"], 1, 0)
    expected_t = []
    for year, doy in day_range(2017, 364, 4):
        _, t = pwv_day_samples(year, doy)
        keep = np.arange(t.size) % 3 != 2  # every 3rd value was NaN
        expected_t.append(t[keep])
    expected_t = np.concatenate(expected_t)
    np.testing.assert_allclose(ans["timeline"]["pwv"]["t"], expected_t, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(ans["data"]["pwv"], pwv_value(expected_t))
    assert np.all(np.diff(ans["timeline"]["pwv"]["t"]) > 0)


def test_2018_naming_change_both_sides(tmp_path):
    write_pwv_archive(tmp_path, [(2018, 200), (2018, 201), (2018, 202), (2018, 203)])
    names = sorted(p.name for p in (tmp_path / "PWV").iterdir())
    assert names == ["PWV_UCSC_200-2018.txt", "PWV_UCSC_201-2018.txt",
                     "PWV_UCSC_2018-202.txt", "PWV_UCSC_2018-203.txt"]
    engine, _ = start(tmp_path)
    t = np.array(engine.get_data(["pwv"], 1, 0)["timeline"]["pwv"]["t"])
    days = np.unique(np.floor((t - utc("2018-01-01T00:00")) / 86400.0) + 1)
    np.testing.assert_array_equal(days, [200, 201, 202, 203])


def test_same_day_under_both_names_reads_the_standard_one(tmp_path, logged):
    write_pwv_day(tmp_path, 2018, 150, swapped=True, extra=["150.9999 99.0"])
    write_pwv_day(tmp_path, 2018, 150, swapped=False)
    engine, _ = start(tmp_path)
    assert 99.0 not in engine.get_data(["pwv"], 1, 0)["data"]["pwv"]
    assert ("PWV_UCSC_2018-150.txt and PWV_UCSC_150-2018.txt name the same day; "
            "reading PWV_UCSC_2018-150.txt only") in logged.text()


def test_max_points_caps_and_keeps_a_spike(new_year):
    write_pwv_day(new_year, 2018, 2, nan_every=3, blank_every=2, extra=["2.5 42.0"])
    engine, _ = start(new_year)
    ans = engine.get_data(["pwv"], 1, 0, max_points=100)
    assert len(ans["data"]["pwv"]) <= 100 and max(ans["data"]["pwv"]) == 42.0
    assert ans["timeline"]["pwv"]["t"][ans["data"]["pwv"].index(42.0)] == utc("2018-01-02T12:00")


def test_malformed_lines_logged_once_and_query_answered(new_year, logged):
    path = write_pwv_day(new_year, 2017, 365, extra=["365.5 oops", "garbage line here"])
    engine, _ = start(new_year)
    day = (utc("2017-12-31T00:00"), utc("2018-01-01T00:00"))
    assert len(engine.get_data(["pwv"], *day)["data"]["pwv"]) == 1429
    n_lines = len(path.read_text().splitlines())
    assert (f"skipped 2 malformed lines in {path}, first at line {n_lines - 1}: '365.5 oops'"
            in logged.text())
    logged.clear()
    engine.get_data(["pwv"], *day)
    assert "skipped" not in logged.text()


def test_unreadable_day_is_reported_and_the_rest_served(new_year, logged):
    bad = new_year / "PWV" / "PWV_UCSC_2017-365.txt"
    bad.unlink()
    bad.mkdir()
    engine, _ = start(new_year)
    ans = engine.get_data(["pwv"], utc("2017-12-30T00:00"), utc("2018-01-02T00:00"))
    t = np.array(ans["timeline"]["pwv"]["t"])
    assert t.size > 0 and not ((t >= utc("2017-12-31T00:00")) & (t < utc("2018-01-01T00:00"))).any()
    assert f"cannot read {bad}" in logged.text()


def test_missing_directories_are_clear_errors_at_start(tmp_path):
    with pytest.raises(ValueError, match=f"radiometer: data directory {tmp_path / 'x'} does not exist"):
        start(tmp_path / "x")
    with pytest.raises(ValueError, match=f"radiometer: {tmp_path / 'PWV'} does not exist"):
        start(tmp_path)


def test_new_day_is_served_without_restart_and_strays_ignored(new_year, logged):
    import os

    engine, _ = start(new_year)
    jan5 = (utc("2018-01-05T00:00"), utc("2018-01-06T00:00"))
    assert engine.get_data(["pwv"], *jan5)["data"]["pwv"] == []
    write_pwv_day(new_year, 2018, 5)
    (new_year / "PWV" / "README").write_text("x")
    st = os.stat(new_year / "PWV")
    os.utime(new_year / "PWV", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert len(engine.get_data(["pwv"], *jan5)["data"]["pwv"]) == 1429
    assert "ignored 1 entries not named PWV_UCSC_<year>-<doy>.txt, e.g. README" in logged.text()
