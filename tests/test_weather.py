"""Tests of the weather plugin: parser, hooks, and the shipped example data."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import attrs
import numpy as np
import pytest

from sisock_core.model import Field, NodeContext, PluginSpec
from sisock_core.plugins import make_plugin_manager, plugin_spec
from sisock_plugins.weather import plugin
from sisock_plugins.weather.parser import FieldHeader, WeatherFileError, parse_file, parse_text

from .logcapture import capture_log

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DIR = REPO / "sisock_plugins" / "weather" / "example_data"
START = 1499904000.0  # 2017-07-13 00:00 UTC
END = 1501113600.0  # 2017-07-27 00:00 UTC
EXAMPLE_FIELDS = {
    "apex_humidity": ("hourly", "%", 3600.0),
    "apex_pressure": ("hourly", "mBar", 3600.0),
    "apex_temperature": ("hourly", "C", 3600.0),
    "apex_radiometer": ("minutely", "mm", 60.0),
    "apex_windspeed": ("minutely", "km/h", 60.0),
}


# -- helpers -------------------------------------------------------------------


def dat(description: str, timeline: str, units: str, rows) -> str:
    lines = [f"# {description}", f"# {timeline}", f"# {units}"]
    lines += [f"{t:.0f} {v}" for t, v in rows]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def bump_mtime(path: Path, seconds: float = 10.0) -> None:
    """Move ``path``'s mtime forward, so a change is seen even on coarse clocks."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + int(seconds * 1e9)))


@pytest.fixture
def logged(monkeypatch):
    """Capture the plugin's log messages as formatted strings."""
    return capture_log(monkeypatch, plugin)


def start_node(data_dir: str | os.PathLike | None = None):
    pm = make_plugin_manager(plugin, name="weather")
    options = plugin.Options(data_dir=None if data_dir is None else str(data_dir))
    node = NodeContext(name="apex_archive", description="test", options=options)
    pm.hook.node_start(node=node)
    return pm, node


@pytest.fixture(scope="module")
def example():
    return start_node()


# -- parser --------------------------------------------------------------------


def test_parse_header_and_data():
    parsed = parse_text(dat("Air temperature", "hourly", "C", [(100, -1.5), (200, 2.25)]), "x.dat")
    assert parsed.header == FieldHeader("Air temperature", "hourly", "C")
    assert parsed.t.dtype == np.float64 and parsed.values.dtype == np.float64
    np.testing.assert_array_equal(parsed.t, [100.0, 200.0])
    np.testing.assert_array_equal(parsed.values, [-1.5, 2.25])
    assert parsed.bad_lines == 0 and parsed.first_bad_line is None
    assert parsed.malformed_summary() is None
    header, t, values = parsed  # unpacks as (header, t, values)
    assert header.units == "C" and t.size == values.size == 2


def test_comments_and_blank_lines_anywhere():
    text = (
        "\n#  Relative humidity  \n\n#hourly\n# %\n# 2017-07-13\n"
        "1 10.5\n\n   \n# a note\n2\t11.0\n  # indented comment\n3   12\n# 2017-07-14\n"
    )
    parsed = parse_text(text)
    assert parsed.header == FieldHeader("Relative humidity", "hourly", "%")
    np.testing.assert_array_equal(parsed.t, [1, 2, 3])
    np.testing.assert_array_equal(parsed.values, [10.5, 11.0, 12.0])
    assert parsed.bad_lines == 0


def test_crlf_line_endings():
    parsed = parse_text("# d\r\n# minutely\r\n# mm\r\n1 0.5\r\n2 0.6\r\n")
    assert parsed.header == FieldHeader("d", "minutely", "mm")
    np.testing.assert_array_equal(parsed.values, [0.5, 0.6])


def test_malformed_lines_are_skipped_and_counted():
    text = (
        "# d\n# hourly\n# C\n"  # lines 1-3
        "1 1.0\n"  # 4
        "2 abc\n"  # 5: not a number
        "3 3.0\n"  # 6
        "4\n"  # 7: one column
        "5 5.0 7\n"  # 8: three columns
        "nan 6.0\n"  # 9: time not finite
        "6 6.0\n"  # 10
    )
    parsed = parse_text(text, "w.dat")
    np.testing.assert_array_equal(parsed.t, [1, 3, 6])
    np.testing.assert_array_equal(parsed.values, [1.0, 3.0, 6.0])
    assert parsed.bad_lines == 4
    assert parsed.first_bad_line == 5
    assert parsed.first_bad_text == "2 abc"
    assert parsed.malformed_summary() == "skipped 4 malformed lines in w.dat, first at line 5: '2 abc'"


def test_nan_values_are_kept():
    parsed = parse_text("# d\n# hourly\n# C\n1 nan\n2 1.0\n")
    assert parsed.bad_lines == 0
    assert np.isnan(parsed.values[0]) and parsed.values[1] == 1.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", ["description", "timeline name", "units", "empty"]),
        ("1 2\n3 4\n", ["description", "data begins at line 1"]),
        ("# d\n# hourly\n1 2\n", ["units (header line 3)", "data begins at line 3"]),
        ("# d\n\n# hourly\n", ["units (header line 3)", "the file ends"]),
    ],
)
def test_missing_or_short_header_raises(text, expected):
    with pytest.raises(WeatherFileError) as info:
        parse_text(text, "/data/apex_humidity.dat")
    message = str(info.value)
    assert message.startswith("/data/apex_humidity.dat: ")
    for part in expected:
        assert part in message


def test_short_header_names_only_what_is_missing():
    with pytest.raises(WeatherFileError) as info:
        parse_text("# d\n5 6\n", "f.dat")
    assert "timeline name (header line 2) and units (header line 3)" in str(info.value)
    assert "description (header line 1)" not in str(info.value)


def test_empty_timeline_name_raises():
    with pytest.raises(WeatherFileError, match="empty timeline name"):
        parse_text("# d\n#\n# C\n1 2\n", "f.dat")


def test_header_only_file_has_no_samples():
    parsed = parse_text("# d\n# hourly\n# C\n# 2017-07-13\n")
    assert parsed.t.size == 0 and parsed.values.size == 0 and parsed.bad_lines == 0


def test_unsorted_times_are_sorted():
    parsed = parse_text("# d\n# hourly\n# C\n3 30\n1 10\n2 20\n")
    assert parsed.reordered
    np.testing.assert_array_equal(parsed.t, [1, 2, 3])
    np.testing.assert_array_equal(parsed.values, [10, 20, 30])


def test_parsed_arrays_are_read_only():
    parsed = parse_text("# d\n# hourly\n# C\n1 2\n")
    with pytest.raises(ValueError):
        parsed.values[0] = 5


def test_parse_file_errors_name_the_file(tmp_path):
    with pytest.raises(WeatherFileError, match="missing.dat: cannot read"):
        parse_file(tmp_path / "missing.dat")
    bad = write(tmp_path / "bad.dat", "just data 1 2\n")
    with pytest.raises(WeatherFileError, match=r"bad\.dat: incomplete header"):
        parse_file(bad)


def test_parse_20k_lines_is_fast():
    path = EXAMPLE_DIR / "apex_radiometer.dat"
    parse_file(path)  # warm up
    best = min(_timed(parse_file, path) for _ in range(3))
    assert best < 0.1, f"parsing 20k lines took {best * 1e3:.1f} ms"


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


# -- plugin declaration ----------------------------------------------------------


def test_plugin_spec():
    pm = make_plugin_manager(plugin, name="weather")
    spec = plugin_spec(pm, "weather")
    assert spec == PluginSpec(
        default_node_name="apex_archive",
        description="Example weather data from the APEX telescope site (July 2017)",
        options=plugin.Options,
        env={"DATA_DIRECTORY": "data_dir"},
    )
    assert attrs.has(plugin.Options)
    assert plugin.Options().data_dir is None
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        plugin.Options().data_dir = "/x"  # type: ignore[misc]


def test_entry_point_loads_this_module():
    from sisock_core.plugins import installed_plugins, load_plugin_object

    if "weather" not in installed_plugins():
        pytest.skip("sisock is not installed in this environment (no entry points)")
    assert load_plugin_object("weather") is plugin


def test_example_data_dir_is_shipped():
    assert plugin.example_data_dir().resolve() == EXAMPLE_DIR.resolve()
    assert sorted(p.stem for p in EXAMPLE_DIR.glob("*.dat")) == sorted(EXAMPLE_FIELDS)


# -- plugin on the shipped example data --------------------------------------------


def test_list_fields_example(example):
    pm, node = example
    fields = pm.hook.list_fields(node=node, start=START, end=END)
    assert [f.name for f in fields] == sorted(EXAMPLE_FIELDS)
    for f in fields:
        timeline, units, interval = EXAMPLE_FIELDS[f.name]
        assert isinstance(f, Field)
        assert (f.timeline, f.units, f.interval, f.type) == (timeline, units, interval, "number")
        assert f.description and "APEX" in f.description


def test_list_fields_only_those_with_samples_in_range(example):
    pm, node = example
    assert pm.hook.list_fields(node=node, start=END, end=END + 86400) == []
    assert pm.hook.list_fields(node=node, start=START - 86400, end=START) == []
    # Between two hourly samples there are only minutely ones.
    names = [f.name for f in pm.hook.list_fields(node=node, start=START + 60, end=START + 120)]
    assert names == ["apex_radiometer", "apex_windspeed"]
    # The last samples are in range; the end is exclusive.
    last_hour = END - 3600
    names = [f.name for f in pm.hook.list_fields(node=node, start=last_hour, end=last_hour + 1)]
    assert names == sorted(EXAMPLE_FIELDS)


def test_read_range_example_slices_half_open(example):
    pm, node = example
    fields = ["apex_temperature", "apex_humidity", "apex_windspeed"]
    result = pm.hook.read_range(node=node, fields=fields, start=START, end=START + 3 * 3600)
    assert set(result) == {"hourly", "minutely"}
    hourly = result["hourly"]
    np.testing.assert_array_equal(hourly.t, START + 3600.0 * np.arange(3))
    assert set(hourly.data) == {"apex_temperature", "apex_humidity"}
    assert hourly.finalized_until == END - 3600
    minutely = result["minutely"]
    assert minutely.t.size == 180 and minutely.t[0] == START and minutely.t[-1] == START + 179 * 60
    assert list(minutely.data) == ["apex_windspeed"]
    assert minutely.finalized_until == END - 60
    # Values agree with the file.
    _, t, values = parse_file(EXAMPLE_DIR / "apex_temperature.dat")
    np.testing.assert_array_equal(hourly.data["apex_temperature"], values[:3])


def test_read_range_unknown_fields_left_out(example):
    pm, node = example
    result = pm.hook.read_range(
        node=node, fields=["nope", "apex_pressure", "apex_pressure"], start=START, end=END
    )
    assert list(result) == ["hourly"]
    assert list(result["hourly"].data) == ["apex_pressure"]
    assert result["hourly"].t.size == 14 * 24
    assert pm.hook.read_range(node=node, fields=["nope"], start=START, end=END) == {}


def test_read_range_outside_data_is_empty(example):
    pm, node = example
    result = pm.hook.read_range(node=node, fields=["apex_radiometer"], start=END, end=END + 600)
    assert result["minutely"].t.size == 0
    assert result["minutely"].data["apex_radiometer"].size == 0


def test_read_range_returns_copies(example):
    pm, node = example
    r1 = pm.hook.read_range(node=node, fields=["apex_pressure"], start=START, end=END)
    r1["hourly"].data["apex_pressure"][:] = 0.0  # a caller scribbling on its result...
    r2 = pm.hook.read_range(node=node, fields=["apex_pressure"], start=START, end=END)
    assert r2["hourly"].data["apex_pressure"].min() > 500  # ...does not touch the cache


def test_node_stop_clears_state():
    pm, node = start_node()
    assert node.state
    pm.hook.node_stop(node=node)
    assert not node.state
    with pytest.raises(RuntimeError, match="not started"):
        pm.hook.list_fields(node=node, start=START, end=END)


# -- plugin on tmp files -----------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "weather"
    d.mkdir()
    write(d / "temp.dat", dat("Temperature", "hourly", "C", [(3600 * i, i) for i in range(1, 6)]))
    write(d / "hum.dat", dat("Humidity", "hourly", "%", [(3600 * i, 10 * i) for i in range(1, 6)]))
    write(d / "wind.dat", dat("Wind", "gusty", "km/h", [(100, 1.0)]))
    return d


def test_tmp_dir_fields_and_ranges(data_dir):
    pm, node = start_node(data_dir)
    fields = {f.name: f for f in pm.hook.list_fields(node=node, start=0, end=1e10)}
    assert set(fields) == {"temp", "hum", "wind"}
    assert fields["temp"].timeline == fields["hum"].timeline == "hourly"
    assert fields["temp"].interval == 3600.0
    assert fields["wind"].interval is None  # one sample, unknown timeline name
    assert fields["wind"].timeline == "gusty"
    result = pm.hook.read_range(node=node, fields=["temp", "hum"], start=7200, end=4 * 3600 + 1)
    assert list(result) == ["hourly"]
    np.testing.assert_array_equal(result["hourly"].t, [7200, 10800, 14400])
    np.testing.assert_array_equal(result["hourly"].data["temp"], [2, 3, 4])
    np.testing.assert_array_equal(result["hourly"].data["hum"], [20, 30, 40])
    assert result["hourly"].finalized_until == 5 * 3600


def test_known_interval_used_for_single_sample(tmp_path):
    write(tmp_path / "p.dat", dat("Pressure", "minutely", "mBar", [(60, 550.0)]))
    pm, node = start_node(tmp_path)
    [field] = pm.hook.list_fields(node=node, start=0, end=1e10)
    assert field.interval == 60.0


def test_mismatched_timestamps_become_separate_timelines(data_dir, logged):
    write(data_dir / "dew.dat", dat("Dew point", "hourly", "C", [(3600 * i + 5, -i) for i in range(1, 6)]))
    pm, node = start_node(data_dir)
    fields = {f.name: f.timeline for f in pm.hook.list_fields(node=node, start=0, end=1e10)}
    assert fields["temp"] == fields["hum"] == "hourly"  # the larger group keeps the name
    assert fields["dew"] == "hourly_dew"
    result = pm.hook.read_range(node=node, fields=["temp", "dew"], start=0, end=1e10)
    assert set(result) == {"hourly", "hourly_dew"}
    np.testing.assert_array_equal(result["hourly_dew"].t, 3600.0 * np.arange(1, 6) + 5)
    np.testing.assert_array_equal(result["hourly_dew"].data["dew"], -np.arange(1, 6))
    assert "different timestamps" in logged.text()


def test_missing_data_dir_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=f"weather: data directory {missing} does not exist"):
        start_node(missing)


def test_data_dir_not_a_directory_error(tmp_path):
    f = write(tmp_path / "file.dat", "# a\n# b\n# c\n")
    with pytest.raises(ValueError, match="is not a directory"):
        start_node(f)


def test_data_dir_without_dat_files_error(tmp_path):
    write(tmp_path / "readme.txt", "nothing here")
    with pytest.raises(ValueError, match=r"holds no \*\.dat files"):
        start_node(tmp_path)


def test_all_files_unreadable_error(tmp_path, logged):
    write(tmp_path / "a.dat", "1 2\n")
    with pytest.raises(ValueError, match="none of the 1"):
        start_node(tmp_path)
    assert "a.dat" in logged.text()


def test_bad_header_file_logged_and_skipped(data_dir, logged):
    write(data_dir / "broken.dat", "# only a description\n1 2\n")
    pm, node = start_node(data_dir)
    names = [f.name for f in pm.hook.list_fields(node=node, start=0, end=1e10)]
    assert names == ["hum", "temp", "wind"]
    assert "skipping" in logged.text() and "broken.dat" in logged.text()
    assert pm.hook.read_range(node=node, fields=["broken"], start=0, end=1e10) == {}


def test_malformed_lines_logged(data_dir, logged):
    write(data_dir / "temp.dat", "# T\n# hourly\n# C\n3600 1\n7200 oops\n10800 3\n14400\n")
    pm, node = start_node(data_dir)
    text = logged.text()
    assert f"skipped 2 malformed lines in {data_dir / 'temp.dat'}, first at line 5: '7200 oops'" in text
    result = pm.hook.read_range(node=node, fields=["temp"], start=0, end=1e10)
    # temp now differs from hum, so it is split off; its good lines are served.
    [timeline] = result
    np.testing.assert_array_equal(result[timeline].data["temp"], [1, 3])


def test_changed_file_is_reread(data_dir):
    pm, node = start_node(data_dir)
    path = data_dir / "wind.dat"
    write(path, dat("Wind, new", "gusty", "m/s", [(100, 1.0), (160, 2.0), (220, 3.0)]))
    bump_mtime(path)
    [wind] = [f for f in pm.hook.list_fields(node=node, start=0, end=1e10) if f.name == "wind"]
    assert (wind.units, wind.description, wind.interval) == ("m/s", "Wind, new", 60.0)
    result = pm.hook.read_range(node=node, fields=["wind"], start=150, end=1e10)
    np.testing.assert_array_equal(result["gusty"].data["wind"], [2.0, 3.0])


def test_unchanged_files_are_not_reparsed(data_dir, monkeypatch):
    pm, node = start_node(data_dir)
    calls = []
    monkeypatch.setattr(plugin, "parse_file", lambda p: calls.append(p))
    pm.hook.list_fields(node=node, start=0, end=1e10)
    pm.hook.read_range(node=node, fields=["temp"], start=0, end=1e10)
    assert calls == []


def test_new_and_removed_files_are_noticed(data_dir):
    pm, node = start_node(data_dir)
    write(data_dir / "pwv.dat", dat("PWV", "minutely", "mm", [(60, 0.5), (120, 0.6)]))
    (data_dir / "wind.dat").unlink()
    bump_mtime(data_dir)
    names = [f.name for f in pm.hook.list_fields(node=node, start=0, end=1e10)]
    assert names == ["hum", "pwv", "temp"]
    assert "wind" not in pm.hook.read_range(node=node, fields=["wind"], start=0, end=1e10)


def test_broken_file_fixed_later_is_served(data_dir, logged):
    path = write(data_dir / "late.dat", "# header being written\n")
    pm, node = start_node(data_dir)
    assert "late" not in [f.name for f in pm.hook.list_fields(node=node, start=0, end=1e10)]
    write(path, dat("Late", "hourly", "C", [(3600 * i, 0) for i in range(1, 6)]))
    bump_mtime(path)
    fields = {f.name: f.timeline for f in pm.hook.list_fields(node=node, start=0, end=1e10)}
    assert fields["late"] == "hourly"


# -- the shipped example data ------------------------------------------------------


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "make_weather_example", REPO / "scripts" / "make_weather_example.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_reproduces_shipped_files(tmp_path, capsys):
    generator = _load_generator()
    assert generator.main(["--out", str(tmp_path / "out")]) == 0
    produced = sorted(p.name for p in (tmp_path / "out").iterdir())
    shipped = sorted(p.name for p in EXAMPLE_DIR.glob("*.dat"))
    assert produced == shipped == sorted(f"{name}.dat" for name in EXAMPLE_FIELDS)
    for name in shipped:
        assert (tmp_path / "out" / name).read_bytes() == (EXAMPLE_DIR / name).read_bytes(), name


def test_example_data_is_plausible_and_small():
    total = sum(p.stat().st_size for p in EXAMPLE_DIR.glob("*.dat"))
    assert total < 2_000_000
    ranges = {
        "apex_humidity": (5, 60),
        "apex_pressure": (540, 565),
        "apex_temperature": (-10, 5),
        "apex_radiometer": (0.3, 3),
        "apex_windspeed": (0, 60),
    }
    for name, (timeline, units, interval) in EXAMPLE_FIELDS.items():
        parsed = parse_file(EXAMPLE_DIR / f"{name}.dat")
        assert parsed.bad_lines == 0 and not parsed.reordered
        assert (parsed.header.timeline, parsed.header.units) == (timeline, units)
        assert parsed.t[0] == START and parsed.t[-1] == END - interval
        np.testing.assert_array_equal(np.diff(parsed.t), interval)
        lo, hi = ranges[name]
        assert lo <= parsed.values.min() and parsed.values.max() <= hi, name
    temperature = parse_file(EXAMPLE_DIR / "apex_temperature.dat").values.reshape(14, 24)
    hourly_mean = temperature.mean(axis=0)
    assert hourly_mean.max() - hourly_mean.min() > 4  # a clear diurnal cycle


def test_example_data_day_markers():
    lines = (EXAMPLE_DIR / "apex_humidity.dat").read_text().splitlines()
    markers = [line for line in lines[3:] if line.startswith("#")]
    assert markers == [f"# 2017-07-{day:02d}" for day in range(13, 27)]
    # Each marker sits right before the first sample of its UTC day.
    i = lines.index("# 2017-07-14")
    assert lines[i + 1].split()[0] == str(int(START) + 86400)


def test_directory_gone_for_a_while_keeps_and_then_rereads(tmp_path):
    """An unmounted (moved) data directory is not an empty one: what is loaded stays
    served, and once it is back the directory is listed again, new files included,
    although its own mtime did not change."""
    import os
    import shutil

    from sisock_plugins.weather.plugin import WeatherStore, example_data_dir

    data = tmp_path / "weather"
    shutil.copytree(example_data_dir(), data)
    store = WeatherStore(data)
    store.load()
    names = {f.name for f in store.list_fields(1, 2e9)}
    away = tmp_path / "away"
    os.rename(data, away)
    assert {f.name for f in store.list_fields(1, 2e9)} == names
    shutil.copy(away / "apex_humidity.dat", away / "apex_copy.dat")
    stamp = os.stat(away).st_mtime_ns
    os.rename(away, data)
    os.utime(data, ns=(stamp, stamp))
    assert {f.name for f in store.list_fields(1, 2e9)} == names | {"apex_copy"}
