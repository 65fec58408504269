"""Tests of the example plugin, both ways sisock's harness offers.

``sisock_node`` runs the plugin in a real data node inside this process (no router);
``sisock_site`` runs ``sisock up`` with a real router, hub and node process, so the
plugin must be installed (``pip install -e .``).
"""

import math

import pytest
from autobahn.wamp.exception import ApplicationError

import sisock_plugin_example as example
from sisock_core.config import ConfigError

T0 = 1_600_000_000


def write_csv(path, rows, header="time,temperature,pressure"):
    path.write_text(header + "\n" + "".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return path


@pytest.fixture
def lab_csv(tmp_path):
    return write_csv(tmp_path / "lab.csv", [(T0 + 60 * i, 290 + i, 1000 - i) for i in range(10)])


def test_fields_have_units_and_interval(sisock_node, lab_csv):
    node = sisock_node(example, {"path": str(lab_csv), "units": {"temperature": "K"}})
    fields, timelines = node.get_fields()
    assert fields["temperature"] == {"description": None, "timeline": "rows", "type": "number",
                                     "units": "K"}
    assert fields["pressure"]["units"] is None
    assert timelines == {"rows": {"interval": 60.0, "field": ["temperature", "pressure"]}}
    # no rows in the range: no fields
    assert node.get_fields(T0 - 1000, T0 - 10) == [{}, {}]


def test_data_is_trimmed_to_the_range(sisock_node, lab_csv):
    node = sisock_node(example, {"path": str(lab_csv)})
    answer = node.get_data(["temperature", "nothing"], T0 + 60, T0 + 180)
    assert answer == {
        "data": {"temperature": [291.0, 292.0], "nothing": []},
        "timeline": {"rows": {"t": [T0 + 60.0, T0 + 120.0], "finalized_until": T0 + 540.0}},
    }


def test_empty_cells_are_missing_samples_and_changes_are_read(sisock_node, tmp_path):
    path = write_csv(tmp_path / "lab.csv", [(T0, 1, ""), (T0 + 1, 2, 5)])
    node = sisock_node(example, {"path": str(path)})
    pressure = node.get_data(["pressure"], T0, T0 + 10)["data"]["pressure"]
    assert math.isnan(pressure[0]) and pressure[1] == 5.0
    write_csv(path, [(T0, 1, 4), (T0 + 1, 2, 5), (T0 + 2, 3, 6)])
    assert node.get_data(["pressure"], T0, T0 + 10)["data"]["pressure"] == [4.0, 5.0, 6.0]


def test_a_missing_file_refuses_to_start(sisock_node, tmp_path):
    with pytest.raises(ValueError, match="example: .*/absent.csv does not exist"):
        sisock_node(example, {"path": str(tmp_path / "absent.csv")})


def test_a_bad_row_is_reported_to_the_consumer(sisock_node, tmp_path):
    path = write_csv(tmp_path / "lab.csv", [(T0, 1, 2)])
    node = sisock_node(example, {"path": str(path)})
    write_csv(path, [(T0, 1, 2), ("yesterday", 1, 2)])
    with pytest.raises(ApplicationError) as err:
        node.get_data(["temperature"], T0, T0 + 10)
    assert "line 3: could not convert string to float: 'yesterday'" in err.value.args[0]


def test_options_are_checked_like_a_site_file(sisock_node):
    with pytest.raises(ConfigError) as err:
        sisock_node(example, {"pth": "/x.csv"})
    assert err.value.problems == [
        "<sisock_node>: nodes.lab.pth: unknown key (did you mean 'path'?)",
        "<sisock_node>: nodes.lab.path: missing required key",
    ]


def test_installed_under_its_entry_point(sisock_node, lab_csv):
    node = sisock_node("example", env={"LAB_CSV": str(lab_csv)})
    assert node.plugin_name == "example" and node.options.path == str(lab_csv)


@pytest.fixture(scope="module")
def site(sisock_site, tmp_path_factory):
    path = write_csv(tmp_path_factory.mktemp("data") / "lab.csv",
                     [(T0 + i, 20 + i % 7, 1000) for i in range(3000)])
    return sisock_site({"lab": {"plugin": "example", "path": str(path), "units": {"temperature": "C"}}})


@pytest.mark.integration
def test_served_through_a_real_router(site):
    assert site.nodes() == [{"name": "lab", "description": "Columns of a CSV file"}]
    fields, _ = site.get_fields("lab")
    assert fields["temperature"]["units"] == "C"
    answer = site.get_data("lab", ["temperature"], T0, T0 + 3000)
    assert len(answer["data"]["temperature"]) == 3000
    # min_stride: the core decimates, keeping each bucket's minimum and maximum
    strided = site.get_data("lab", ["temperature"], T0, T0 + 3000, 100)["data"]["temperature"]
    assert len(strided) < 100 and min(strided) == 20 and max(strided) == 26
