"""End to end: ``sisock up`` with a g3 node runs the scanner; data reaches WAMP clients.

One ``sisock up`` per module (router, hub, the ``g3_reader`` node and the ``scanner``
child) on free loopback ports over a generated three-hour archive, queried with the
``sisock`` command line. A file written while the site runs appears in
``get_fields`` once the watchdog has indexed it.
"""

from __future__ import annotations

import json

import pytest

from .g3gen import Aggregator, agent_status, lakeshore, value, write_archive
from .siteproc import run_sisock, site_up, wait_until

pytestmark = pytest.mark.integration

T0 = 1_600_000_000.0
LS = "observatory.LSA22YE.feeds.temperatures"
HWP = "observatory.hwp.feeds.status"


sisock = run_sisock


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("g3site")
    data = tmp / "data"
    write_archive(data, T0, 3, providers=[lakeshore(4), agent_status()])
    nodes = (f'[nodes.g3_reader]\nplugin = "g3"\ndata_dir = "{data}"\nmax_points = 100\n'
             f'debounce = 0.5\n')
    with site_up(tmp, nodes) as (path, proc):
        yield path, proc, data


def fields(path) -> dict:
    out = sisock("fields", "g3_reader", "-c", str(path), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["fields"]


def test_the_scanner_indexes_the_archive_and_the_node_serves_it(site):
    path, proc, data = site
    wait_until(lambda: "scanner is ready" in proc.log_text(), timeout=60, what="the scanner's first pass")
    f = fields(path)
    assert f[f"{LS}.Channel_01_T"] == {"description": None, "timeline": f"{LS}.temps", "type": "number",
                                       "units": None}
    assert f[f"{HWP}.mode"]["type"] == "string"

    out = sisock("get", "g3_reader", f"{LS}.Channel_01_T", "LSA22YE.Channel_02_T", f"{HWP}.mode",
                 "-c", str(path), "--start", str(T0), "--end", str(T0 + 3 * 3600), "--json")
    assert out.returncode == 0, out.stderr
    ans = json.loads(out.stdout)
    ch1 = ans["data"][f"{LS}.Channel_01_T"]
    assert 2 < len(ch1) <= 100  # the node's max_points, peak-preserving
    assert len(ans["data"]["LSA22YE.Channel_02_T"]) == len(ch1)  # short name, same timeline
    assert set(ans["timeline"]) == {f"{LS}.temps", f"{HWP}.state"}
    assert set(ans["data"][f"{HWP}.mode"]) <= {"idle", "spinning", "stopping"}
    t = ans["timeline"][f"{LS}.temps"]["t"]
    assert T0 <= t[0] and t[-1] <= T0 + 3 * 3600
    # full resolution for a short window: exact values
    out = sisock("get", "g3_reader", f"{LS}.Channel_03_T", "-c", str(path), "--start", str(T0 + 60),
                 "--end", str(T0 + 80), "--json")
    ans = json.loads(out.stdout)
    t = ans["timeline"][f"{LS}.temps"]["t"]
    assert t == [T0 + 60 + i for i in range(20)]
    import numpy as np

    assert ans["data"][f"{LS}.Channel_03_T"] == value("Channel_03_T", "float", np.array(t)).tolist()


def test_a_new_file_is_served_within_seconds(site):
    path, proc, data = site
    wait_until(lambda: "scanner is ready" in proc.log_text(), timeout=60, what="the scanner's first pass")
    assert not any(name.startswith("observatory.newagent.") for name in fields(path))
    agg = Aggregator(data, start_time=T0 + 3 * 3600, session_id=77)
    agg.add(lakeshore(2, instance="newagent"))
    agg.run(T0 + 3 * 3600, T0 + 3 * 3600 + 600)
    agg.close()
    name = "observatory.newagent.feeds.temperatures.Channel_01_T"
    wait_until(lambda: name in fields(path), timeout=60, interval=0.5, what="the new file's fields")
    out = sisock("get", "g3_reader", name, "-c", str(path), "--start", str(T0 + 3 * 3600),
                 "--end", str(T0 + 4 * 3600), "--json")
    assert len(json.loads(out.stdout)["data"][name]) == 100
