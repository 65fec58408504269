"""End to end: the apex and radiometer plugins as nodes of a real ``sisock up``.

One ``sisock up`` per module (router, hub, ``apex_weather`` and ``ucsc_radiometer``
nodes) on free loopback ports, both nodes reading one generated data directory
holding ``targets/`` and ``PWV/`` as the original containers' ``/data`` mount did.
Checked through the ``sisock`` command line and raw WAMP calls (msgpack and the
JSON serializer old consumers use), with the node's ``max_points`` and the
bridge's per-request ``max_points`` capping answers that keep their spikes.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import reactor

from sisock_core.client import with_session
from sisock_core.config import load_config
from sisock_core.wamp import node_uri

from .archive_generators import day_range, utc, write_apex_archive, write_pwv_archive, write_pwv_day
from .siteproc import run_sisock, site_up

pytestmark = pytest.mark.integration

APEX_SPAN = (utc("2017-12-28T00:00"), utc("2018-01-04T00:00"))  # 7 days of minutely data
GUST_T = utc("2018-01-01T03:17")
PWV_SPIKE_DOY = 2.25  # 2018-01-02T06:00, in a file with the 2018 naming quirk
NODE_MAX_POINTS = 200


sisock = run_sisock


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("archives")
    data = tmp / "data"
    write_apex_archive(data, *APEX_SPAN, span=86400, step=60)
    gust_file = next((data / "targets").glob(f"APEX_windspeed_{int(utc('2018-01-01T00:00'))}_*.dat"))
    gust_file.write_text(gust_file.read_text().replace(f"{GUST_T:.0f} ", f"{GUST_T:.0f} 180.0 #", 1))
    write_pwv_archive(data, day_range(2017, 364, 3), nan_every=5)
    write_pwv_day(data, 2018, 2, extra=[f"{PWV_SPIKE_DOY} 25.0"])
    nodes = (
        f'[nodes.apex_weather]\nplugin = "apex"\ndata_dir = "{data}"\nmax_points = {NODE_MAX_POINTS}\n\n'
        f'[nodes.ucsc_radiometer]\nplugin = "radiometer"\ndata_dir = "{data}"\n'
    )
    with site_up(tmp, nodes) as running:
        yield running


def test_cli_lists_both_nodes_and_their_fields(site):
    path, _ = site
    out = sisock("nodes", "-c", str(path), "--json")
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    assert {"name": "apex_weather", "description": "Weather station information from APEX."} in listing
    assert {"name": "ucsc_radiometer", "description": "PWV readings from the UCSC radiometer."} in listing

    out = sisock("fields", "apex_weather", "-c", str(path), "--json", "--start", "2018-01-01T00:00Z",
                 "--end", "2018-01-02T00:00Z")
    assert out.returncode == 0, out.stderr
    fields = json.loads(out.stdout)["fields"]
    assert {k: v["units"] for k, v in fields.items()} == {
        "humidity": "%", "pressure": "mBar", "radiometer": "mm", "dewpoint": "C",
        "temperature": "C", "windspeed": "km/h", "winddirection": "deg"}

    out = sisock("fields", "ucsc_radiometer", "-c", str(path), "--json", "--start", "2018-01-01T00:00Z",
                 "--end", "2018-01-02T00:00Z")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["fields"]["pwv"]["units"] == "mm"


def test_cli_get_is_capped_by_the_node_max_points_and_keeps_the_gust(site):
    path, _ = site
    out = sisock("get", "apex_weather", "windspeed", "temperature", "-c", str(path),
                 "--start", "2017-12-28T00:00Z", "--end", "2018-01-04T00:00Z", "--json")
    assert out.returncode == 0, out.stderr
    ans = json.loads(out.stdout)
    wind = ans["data"]["windspeed"]
    assert 0 < len(wind) <= NODE_MAX_POINTS and len(ans["data"]["temperature"]) <= NODE_MAX_POINTS
    assert max(wind) == 180.0
    assert ans["timeline"]["windspeed"]["t"][wind.index(180.0)] == GUST_T
    # An hour is small enough to come back whole.
    out = sisock("get", "apex_weather", "windspeed", "-c", str(path),
                 "--start", "2018-01-01T03:00Z", "--end", "2018-01-01T04:00Z", "--json")
    assert len(json.loads(out.stdout)["data"]["windspeed"]) == 60


@pytest_twisted.ensureDeferred
async def test_wamp_get_data_with_request_max_points_keeps_the_spike(site):
    path, _ = site
    cfg = load_config(path)
    days = (utc("2017-12-30T00:00"), utc("2018-01-02T00:00") + 86400)

    async def ask(session):
        full = await session.call(node_uri("ucsc_radiometer", "get_data"), ["pwv"], *days)
        capped = await session.call(node_uri("ucsc_radiometer", "get_data"), ["pwv"], *days,
                                    max_points=50)
        apex = await session.call(node_uri("apex_weather", "get_data"), ["windspeed", "missing"],
                                  *APEX_SPAN, None, 30)
        return full, capped, apex

    for serializer in ("msgpack", "json"):
        full, capped, apex = await with_session(reactor, cfg, ask, serializers=[serializer])
        n_full = len(full["data"]["pwv"])
        assert n_full > 4 * 1000  # 4 days at 60.48 s, some NaN dropped: not capped
        assert len(capped["data"]["pwv"]) <= 50 and max(capped["data"]["pwv"]) == 25.0
        spike_t = capped["timeline"]["pwv"]["t"][capped["data"]["pwv"].index(25.0)]
        assert spike_t == pytest.approx(utc("2018-01-02T06:00"))
        assert capped["timeline"]["pwv"]["finalized_until"] == full["timeline"]["pwv"]["finalized_until"]
        assert len(apex["data"]["windspeed"]) <= 30 and max(apex["data"]["windspeed"]) == 180.0
        assert apex["data"]["missing"] == []
