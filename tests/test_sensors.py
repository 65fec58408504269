"""The sensors plugin: parsers on recorded outputs, a fake hwmon tree, the fallback
chain through a stand-in ``sensors`` program, and the node on this machine.

``tests/data/sensors`` holds outputs written in the exact formats of lm-sensors:
``desktop-j.json`` / ``desktop-u.txt`` (3.6, one machine, both formats),
``laptop-3.4-u.txt`` (3.4, captured with ``2>&1`` so a read error is inline) and
what 3.4 says to ``-j``, and ``none-*`` (a machine without sensors, as this one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sisock_core.livecache import LiveCache
from sisock_core.testing import start_node
from sisock_plugins.sensors.plugin import SensorPoller
from sisock_plugins.sensors.readers import (
    NoReadings,
    SensorReader,
    hwmon_chip_name,
    parse_json,
    parse_text,
    read_hwmon,
)

DATA = Path(__file__).parent / "data" / "sensors"

DESKTOP = {
    "coretemp-isa-0000_temp1": 47.0, "coretemp-isa-0000_temp2": 45.0, "coretemp-isa-0000_temp3": 44.0,
    "nct6775-isa-0290_in0": 0.888, "nct6775-isa-0290_in1": 12.096, "nct6775-isa-0290_fan2": 1173.0,
    "nct6775-isa-0290_temp1": 33.0, "acpitz-acpi-0_temp1": 27.8,
}


def test_json_output_gives_original_field_names_units_and_labels():
    r = parse_json((DATA / "desktop-j.json").read_text())
    assert r.values == DESKTOP
    assert r.units["coretemp-isa-0000_temp2"] == "C" and r.units["nct6775-isa-0290_in1"] == "V"
    assert r.units["nct6775-isa-0290_fan2"] == "RPM"
    assert r.labels["coretemp-isa-0000_temp2"] == "Core 0" and r.labels["nct6775-isa-0290_in1"] == "+12V"


def test_text_output_gives_the_same_fields_as_json():
    j = parse_json((DATA / "desktop-j.json").read_text())
    u = parse_text((DATA / "desktop-u.txt").read_text())
    assert u.values == j.values and u.units == j.units and u.labels == j.labels


def test_text_output_of_lm_sensors_34_with_a_read_error():
    r = parse_text((DATA / "laptop-3.4-u.txt").read_text())
    assert r.values == {
        "acpitz-virtual-0_temp1": 52.0, "thinkpad-isa-0000_fan1": 2584.0, "thinkpad-isa-0000_temp1": 52.0,
        "thinkpad-isa-0000_temp3": 0.0, "coretemp-isa-0000_temp1": 53.0, "coretemp-isa-0000_temp2": 51.0,
    }
    assert r.labels["coretemp-isa-0000_temp1"] == "Physical id 0"


def test_no_sensors_outputs_raise_with_a_reason():
    with pytest.raises(NoReadings, match="no sensors in its output"):
        parse_json((DATA / "none-j.json").read_text())
    with pytest.raises(NoReadings, match="not JSON"):
        parse_json("{\n   \"coretemp-isa-0000\":{\n      \"Adapter\": \"ISA adapter\",\n")
    with pytest.raises(NoReadings, match="no \\*_input readings"):
        parse_text("")


# -- a fake /sys/class/hwmon ----------------------------------------------------------------------


def make_hwmon(root: Path) -> Path:
    """A sysfs-like tree: class links to devices on the platform, ACPI, PCI and I2C buses."""
    sys_dir = root / "sys"
    devices = sys_dir / "devices"
    bus = sys_dir / "bus"
    for b in ("platform", "acpi", "pci", "i2c"):
        (bus / b).mkdir(parents=True)
    hwmon = sys_dir / "class" / "hwmon"
    hwmon.mkdir(parents=True)

    def chip(index: int, name: str, device: str | None, subsystem: str | None, files: dict) -> None:
        if device is not None:
            dev = devices / device
            dev.mkdir(parents=True)
            (dev / "subsystem").symlink_to(bus / subsystem)
            target = dev / "hwmon" / f"hwmon{index}"
        else:
            target = devices / "virtual" / "hwmon" / f"hwmon{index}"
        target.mkdir(parents=True)
        if device is not None:
            (target / "device").symlink_to(devices / device)
        (target / "name").write_text(name + "\n")
        for fname, text in files.items():
            (target / fname).write_text(text + "\n")
        (hwmon / f"hwmon{index}").symlink_to(target)

    chip(0, "coretemp", "platform/coretemp.0", "platform",
         {"temp1_input": "47000", "temp1_label": "Package id 0", "temp1_max": "84000",
          "temp2_input": "45000", "temp2_label": "Core 0"})
    chip(1, "nct6775", "platform/nct6775.656", "platform",
         {"in0_input": "888", "fan2_input": "1173", "temp1_input": "33000", "temp1_label": "SYSTIN",
          "temp7_input": "garbage"})
    chip(2, "acpitz", "LNXSYSTM:00/LNXSYBUS:00/LNXTHERM:00", "acpi", {"temp1_input": "27800"})
    chip(3, "k10temp", "pci0000:00/0000:00:18.3", "pci", {"temp1_input": "41250", "power1_input": "12500000"})
    chip(4, "nct7802", "pci0000:00/0000:00:1f.3/i2c-0/0-002d", "i2c", {"temp1_input": "30000"})
    chip(10, "fakevirt", None, None, {"temp1_input": "-5000"})
    return hwmon


def test_hwmon_tree_is_read_with_lm_sensors_chip_names(tmp_path):
    r = read_hwmon(make_hwmon(tmp_path))
    assert r.values == {
        "coretemp-isa-0000_temp1": 47.0, "coretemp-isa-0000_temp2": 45.0,
        "nct6775-isa-0290_in0": 0.888, "nct6775-isa-0290_fan2": 1173.0, "nct6775-isa-0290_temp1": 33.0,
        "acpitz-acpi-0_temp1": 27.8, "k10temp-pci-00c3_temp1": 41.25, "k10temp-pci-00c3_power1": 12.5,
        "nct7802-i2c-0-2d_temp1": 30.0, "fakevirt-virtual-0_temp1": -5.0,
    }
    assert r.units["k10temp-pci-00c3_power1"] == "W" and r.units["nct6775-isa-0290_in0"] == "V"
    assert r.labels["coretemp-isa-0000_temp2"] == "Core 0" and r.labels["acpitz-acpi-0_temp1"] is None
    # the same names as lm-sensors gives for the chips both know
    assert {k: v for k, v in DESKTOP.items() if k in r.values} == \
        {k: v for k, v in r.values.items() if k in DESKTOP}


def test_hwmon_missing_or_empty_says_why(tmp_path):
    with pytest.raises(NoReadings, match="does not exist"):
        read_hwmon(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoReadings, match="holds no hwmon devices"):
        read_hwmon(tmp_path / "empty")
    assert hwmon_chip_name(tmp_path, "x") == "x-virtual-0"


# -- the chain, with a stand-in `sensors` program ----------------------------------------------------


def fake_sensors(tmp_path: Path, *, j: str = "", j_err: str = "", j_rc: int = 0,
                 u: str = "", u_err: str = "", u_rc: int = 0) -> str:
    """A real executable answering ``-j`` and ``-u`` with the given output, as lm-sensors."""
    out = tmp_path / "fake-sensors"
    out.mkdir(exist_ok=True)
    for name, text in (("j", j), ("j_err", j_err), ("u", u), ("u_err", u_err)):
        (out / name).write_text(text)
    script = out / "sensors"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import sys
        here = {str(out)!r}
        flag = sys.argv[1].lstrip("-") if len(sys.argv) > 1 else "u"
        sys.stdout.write(open(f"{{here}}/{{flag}}").read())
        sys.stderr.write(open(f"{{here}}/{{flag}}_err").read())
        sys.exit({{"j": {j_rc}, "u": {u_rc}}}[flag])
        """))
    script.chmod(0o755)
    return str(script)


def test_chain_prefers_json(tmp_path):
    cmd = fake_sensors(tmp_path, j=(DATA / "desktop-j.json").read_text(), u="garbage")
    r = SensorReader(cmd, str(tmp_path / "no-hwmon")).read()
    assert r.source == "sensors -j" and r.values == DESKTOP


def test_chain_falls_back_to_text_on_lm_sensors_34(tmp_path):
    cmd = fake_sensors(tmp_path, j_err=(DATA / "laptop-3.4-j.stderr").read_text(), j_rc=1,
                       u=(DATA / "laptop-3.4-u.txt").read_text())
    reader = SensorReader(cmd, str(tmp_path / "no-hwmon"))
    r = reader.read()
    assert r.source == "sensors -u" and r.values["thinkpad-isa-0000_fan1"] == 2584.0
    assert reader.preferred == "text"


def test_chain_falls_back_to_hwmon_then_explains_when_nothing_works(tmp_path):
    none = (DATA / "none-j.json").read_text()
    err = (DATA / "none.stderr").read_text()
    cmd = fake_sensors(tmp_path, j=none, j_err=err, j_rc=1, u="", u_err=err, u_rc=1)
    r = SensorReader(cmd, str(make_hwmon(tmp_path))).read()
    assert r.source.startswith("hwmon") and "coretemp-isa-0000_temp2" in r.values
    with pytest.raises(NoReadings) as exc:
        SensorReader(cmd, str(tmp_path / "no-hwmon")).read()
    assert str(exc.value) == (
        f"'{cmd} -j': no sensors in its output (No sensors found!, exit 1); "
        f"'{cmd} -u': no *_input readings in its output (No sensors found!, exit 1); "
        f"{tmp_path / 'no-hwmon'} does not exist"
    )
    with pytest.raises(NoReadings, match="'/nonexistent/sensors' is not installed"):
        SensorReader("/nonexistent/sensors", str(tmp_path / "no-hwmon")).read()


# -- the poller and the node -------------------------------------------------------------------------


def test_poller_publishes_one_sample_per_reading(tmp_path):
    cache = LiveCache(3600, clock=lambda: 1e9 + 100)
    times = iter([1e9, 1e9 + 2.5, 1e9 + 5.0])
    cmd = fake_sensors(tmp_path, j=(DATA / "desktop-j.json").read_text())
    poller = SensorPoller("sensors", SensorReader(cmd), lambda *a, **k: cache.append(*a, **k).problems,
                          clock=lambda: next(times))
    for _ in range(3):
        assert poller.poll_once()
    out = cache.read_range(["coretemp-isa-0000_temp2", "nct6775-isa-0290_in0"], 0, 2e9)["sensors"]
    assert out.t.tolist() == [1e9, 1e9 + 2.5, 1e9 + 5.0]
    assert out.data["coretemp-isa-0000_temp2"].tolist() == [45.0] * 3
    fields = {f.name: f for f in cache.list_fields(0, 2e9)}
    assert fields["nct6775-isa-0290_in0"].units == "V" and fields["coretemp-isa-0000_temp2"].interval == 2.5
    assert fields["coretemp-isa-0000_temp2"].description == "Core 0"


def test_node_serves_sensor_readings(tmp_path):
    cmd = fake_sensors(tmp_path, j=(DATA / "desktop-j.json").read_text())
    with start_node("sensors", {"command": cmd, "interval": 0.05}) as node:
        poller = node.state["sensors"]
        pushed = node.subscribe("live")  # the readings reach the live topic once they are served
        pushed.wait(timeout=30, what="a push of sensor readings")
        fields = node.get_fields(-60, 0)[0]
        assert set(fields) == set(DESKTOP)
        assert fields["coretemp-isa-0000_temp2"] == {
            "description": "Core 0", "timeline": "sensors", "type": "number", "units": "C"}
        pushed.wait(lambda events: sum(len(args[0]["data"].get("acpitz-acpi-0_temp1", [])) for args, _ in events) >= 3,
                    timeout=30, what="three readings pushed")
        assert len(node.get_data(["acpitz-acpi-0_temp1"], -60, 0)["data"]["acpitz-acpi-0_temp1"]) >= 3
    assert not poller._thread.is_alive() and "sensors" not in node.state  # stopped with the node


def test_node_without_sensors_runs_serves_nothing_and_says_why_once(tmp_path, log_lines):
    """The recorded answers of a machine without sensors (this build machine's)."""
    err = (DATA / "none.stderr").read_text()
    cmd = fake_sensors(tmp_path, j=(DATA / "none-j.json").read_text(), j_err=err, j_rc=1, u_err=err, u_rc=1)
    with start_node("sensors", {"command": cmd, "hwmon_root": str(tmp_path / "none")}) as node:
        poller = node.state["sensors"]
        assert poller.looked.wait(30), "the poller's first look did not end in 30 s"
        assert poller.no_sensors
        for _ in range(3):
            assert poller.poll_once() is False
        assert node.get_fields(1, 0) == [{}, {}]
        assert node.get_data(["coretemp-isa-0000_temp2"], 1, 0)["data"] == {"coretemp-isa-0000_temp2": []}
        assert node.listed() == [{"name": "sensors", "description": "The results of the UNIX 'sensors' command."}]
    said = [line for line in log_lines if "no sensors on this machine" in line]
    assert len(said) == 1
    assert "serving no sensor fields" in said[0] and "No sensors found!" in said[0]
    assert f"{tmp_path / 'none'} does not exist" in said[0]


def test_node_with_this_machines_real_sensors_command(log_lines):
    """The real ``sensors`` and /sys/class/hwmon of this machine: the node serves exactly
    what lm-sensors reports (nothing on VMs and containers, which then get the reason)."""
    try:
        real = subprocess.run(["sensors", "-j"], capture_output=True, text=True).stdout
    except FileNotFoundError:  # lm-sensors not installed: the node falls back to hwmon
        real = ""
    try:
        expected = set(parse_json(real).values)
    except NoReadings:
        try:
            expected = set(read_hwmon("/sys/class/hwmon").values)
        except NoReadings:
            expected = set()
    with start_node("sensors", {"interval": 0.2}) as node:
        poller = node.state["sensors"]
        assert poller.looked.wait(30), "the poller's first look did not end in 30 s"
        assert poller.readings or poller.no_sensors
        assert set(node.get_fields(1, 0)[0]) == expected
        if not expected:
            assert "No sensors found!" in poller.no_sensors or "not installed" in poller.no_sensors
            assert sum("no sensors on this machine" in line for line in log_lines) == 1


def test_bad_options_are_refused():
    from sisock_core.config import ConfigError

    with pytest.raises(ConfigError, match="nodes.sensors.interval: must be a positive number, got 0"):
        start_node("sensors", {"interval": 0})


def test_environment_buffer_time():
    with start_node("sensors", {"command": "/nonexistent/sensors", "hwmon_root": "/nonexistent"},
                    env={"BUFFER_TIME": "120"}) as node:
        assert node.options.buffer_time == 120.0
        assert node.server.live.cache.buffer_time == 120.0


def test_fake_program_is_executable(tmp_path):
    cmd = fake_sensors(tmp_path, u="x")
    assert os.access(cmd, os.X_OK)
    assert subprocess.run([cmd, "-u"], capture_output=True, text=True).stdout == "x"
