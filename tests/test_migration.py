"""The migration paths of docs/operating.md, each run as a site would run it.

- our hub, node and bridge on a crossbar configured like the original sisock's
  (WAMP-CRA only at ``/ws``, a static page at ``/``, crossbar's default message limit);
- an original-style data node (anonymous, on the OCS port) registering on our router
  when the site allows it (``router.allow_legacy_ocs_nodes``), and refused otherwise;
- ``sisock check`` refusing what ``sisock up`` refuses.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import attrs
import pytest
import pytest_twisted

from sisock_core.tls import ensure_certificate

from .siteproc import SisockProcess, free_ports, wait_until

pytestmark = pytest.mark.integration

JULY_20 = (1500508800.0, 1500530400.0)  # 2017-07-20 00:00 .. 06:00 UTC

_CROSSBAR = "import sys; sys.argv[0] = 'crossbar'; from crossbar import run; sys.exit(run())"


def original_crossbar_config(tls_port: int, server_secret: str, consumer_secret: str) -> dict:
    """The shape of sisock 0.2's crossbar config: ``/`` a static directory, WAMP-CRA only
    at ``ws``, no WebSocket options (crossbar's defaults, a 16 MiB message limit)."""
    def role(name: str, uri: str) -> dict:
        return {"name": name, "permissions": [{
            "uri": uri, "match": "prefix",
            "allow": {"call": True, "register": True, "publish": True, "subscribe": True},
            "disclose": {"caller": False, "publisher": False}, "cache": True}]}

    return {
        "version": 2,
        "workers": [{
            "type": "router",
            "realms": [{"name": "test_realm",
                        "roles": [role("server", ""), role("consumer", "org.simonsobservatory.consumer")]}],
            "transports": [{
                "type": "web",
                "endpoint": {"type": "tcp", "port": tls_port, "interface": "127.0.0.1",
                             "tls": {"key": "server_key.pem", "certificate": "server_cert.pem"}},
                "paths": {
                    "/": {"type": "static", "directory": "../www"},
                    "ws": {"type": "websocket", "auth": {"wampcra": {"type": "static", "users": {
                        "server": {"secret": server_secret, "role": "server"},
                        "simonsobs": {"secret": consumer_secret, "role": "consumer"},
                    }}}},
                },
            }],
        }],
    }


@pytest.fixture(scope="module")
def original_router(tmp_path_factory):
    """A crossbar started from an original-shaped config; yields (tls_port, env, cert path)."""
    tmp = tmp_path_factory.mktemp("original-router")
    cbdir = tmp / ".crossbar"
    cbdir.mkdir()
    (tmp / "www").mkdir()
    (tmp / "www" / "index.html").write_text("<html><body>sisock</body></html>\n")
    ensure_certificate(cbdir / "server_cert.pem", cbdir / "server_key.pem", ["127.0.0.1", "localhost"])
    (tls_port,) = free_ports(1)
    env = {"WAMP_SECRET": secrets.token_urlsafe(24), "WAMP_CONSUMER_SECRET": secrets.token_urlsafe(24)}
    (cbdir / "config.json").write_text(json.dumps(
        original_crossbar_config(tls_port, env["WAMP_SECRET"], env["WAMP_CONSUMER_SECRET"])))
    log = open(tmp / "crossbar.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", _CROSSBAR, "start", "--cbdir", str(cbdir)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True)
    try:
        wait_until(lambda: b"NODE_BOOT_COMPLETE" in (tmp / "crossbar.log").read_bytes()
                   or proc.poll() is not None, timeout=90, what="crossbar to boot")
        assert proc.poll() is None, (tmp / "crossbar.log").read_text(errors="replace")[-3000:]
        yield tls_port, env, cbdir / "server_cert.pem"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()


def _post(url: str, body: dict) -> object:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_our_hub_node_and_bridge_on_an_original_router(original_router, tmp_path):
    tls_port, env, cert = original_router
    (http_port,) = free_ports(1)
    site = tmp_path / "nodes.toml"
    site.write_text(f"""\
state_dir = "state"
log_level = "debug"

[router]
start = false
host = "127.0.0.1"
tls_port = {tls_port}
ca_cert = "{cert}"

[hub]
start = true

[http]
port = {http_port}

[nodes.apex_archive]
plugin = "weather"
""")
    up = SisockProcess(["up", str(site)], tmp_path / "up.log", env=env)
    try:
        up.wait_ready("site", timeout=120)
        cli_env = {**os.environ, **env}
        out = subprocess.run([sys.executable, "-m", "sisock_core.cli", "nodes", "--json", "-c", str(site)],
                             capture_output=True, text=True, timeout=60, env=cli_env)
        assert out.returncode == 0, out.stderr
        assert "apex_archive" in {n["name"] for n in json.loads(out.stdout)}

        url = f"http://127.0.0.1:{http_port}"
        targets = wait_until(lambda: [t for t in _post(url + "/search", {"target": ""})
                                      if t.startswith("apex_archive::")],
                             timeout=30, what="the bridge to list apex_archive's fields")
        assert "apex_archive::apex_temperature" in targets
        answer = _post(url + "/query", {
            "range": {"from": "2017-07-20T00:00:00Z", "to": "2017-07-20T06:00:00Z"},
            "targets": [{"target": "apex_archive::apex_temperature", "type": "timeserie"}],
            "maxDataPoints": 100})
        assert [p[1] for p in answer[0]["datapoints"]] == [
            (JULY_20[0] + 3600 * i) * 1000 for i in range(6)]
    finally:
        rc = up.stop()
        print(up.log_tail(40, debug=False))
    assert rc == 0


# -- sisock 0.2 data nodes on our router's OCS port ----------------------------------------------


async def _original_data_feed_node(cfg, name: str):
    """What sisock 0.2's data-feed server does on joining: anonymous on the OCS port at
    ``/ws``, registers its two procedures, then asks the hub to add it."""
    from sisock_core.wamp import HUB_ADD, node_uri

    from .helpers_router import open_session

    session = await open_session(cfg, ocs=True, serializer="json", path="/ws")
    await session.register(lambda start, end: [{"channel_01_t": {
        "description": None, "timeline": "observatory.LS1.channel_01_t", "type": "number", "units": None}},
        {"observatory.LS1.channel_01_t": {"interval": None, "field": ["channel_01_t"]}}],
        node_uri(name, "get_fields"))
    await session.register(lambda field, start, end, min_stride=None: {
        "data": {"channel_01_t": [0.1, 0.2]},
        "timeline": {"observatory.LS1.channel_01_t": {"t": [1.0e9, 1.0e9 + 1], "finalized_until": None}}},
        node_uri(name, "get_data"))
    added = await session.call(HUB_ADD, name, "an original data-feed node", session.details.session)
    return session, added


async def _router_and_hub(state_dir, **router):
    from sisock_core.hub import Hub
    from sisock_core.router import RouterProcess, load_secrets

    from .events import Signal, until
    from .helpers_router import site_config

    cfg = site_config(state_dir, **router)
    secrets = load_secrets(cfg, env={})
    process = RouterProcess(cfg, secrets, ready_timeout=60)
    await process.start()
    ready = Signal()
    hub = Hub(cfg, on_ready=ready)
    hub.start(_reactor())
    await until(lambda: ready.count, ready, 30, "the hub to be ready")
    return cfg, secrets, process, hub


def _reactor():
    from twisted.internet import reactor

    return reactor


@pytest_twisted.ensureDeferred
async def test_original_data_node_on_the_ocs_port_joins_only_when_the_site_allows_it(tmp_path):
    from autobahn.wamp.exception import ApplicationError

    from sisock_core.wamp import HUB_ADD, HUB_LIST, node_uri

    from .events import until_hub_lists
    from .helpers_router import open_session

    # the secure default: the OCS port's anonymous sessions cannot register nodes
    cfg, secrets, process, hub = await _router_and_hub(tmp_path / "default")
    try:
        with pytest.raises(ApplicationError, match="not_authorized|not authorized"):
            await _original_data_feed_node(cfg, "legacy_feed")
    finally:
        await hub.stop()
        await process.stop()

    cfg, secrets, process, hub = await _router_and_hub(tmp_path / "allowed", allow_legacy_ocs_nodes=True)
    legacy = consumer = None
    try:
        legacy, added = await _original_data_feed_node(cfg, "legacy_feed")
        assert added is True
        consumer = await open_session(cfg, authid="simonsobs", secret=secrets.consumer)
        assert {"name": "legacy_feed", "description": "an original data-feed node"} in \
            await consumer.call(HUB_LIST)
        answer = await consumer.call(node_uri("legacy_feed", "get_data"), ["channel_01_t"], 1, 0)
        assert answer["data"]["channel_01_t"] == [0.1, 0.2]
        # it adds only itself, and can do nothing more on our side of the router
        with pytest.raises(ApplicationError, match="not the calling session"):
            await legacy.call(HUB_ADD, "other", "x", legacy.details.session + 1)
        with pytest.raises(ApplicationError, match="not_authorized|not authorized"):
            await legacy.call(node_uri("legacy_feed", "get_fields"), 1, 0)
        with pytest.raises(ApplicationError, match="not_authorized|not authorized"):
            await legacy.register(lambda: None, "org.simonsobservatory.hub.started")
        await legacy.leave()
        legacy = None
        await until_hub_lists(consumer, lambda listing: "legacy_feed" not in {n["name"] for n in listing}, 30,
                              "the hub to drop legacy_feed once it left")
        # nor can it stand in for the hub's list of nodes while the hub is away
        await hub.stop()
        hub = None
        legacy = await open_session(cfg, ocs=True, serializer="json")
        with pytest.raises(ApplicationError, match="not_authorized|not authorized"):
            await legacy.register(lambda: [], HUB_LIST)
    finally:
        for s in (legacy, consumer):
            if s is not None:
                await s.leave()
        if hub is not None:
            await hub.stop()
        await process.stop()


def test_legacy_ocs_nodes_need_a_loopback_ocs_port(tmp_path):
    from sisock_core.config import RouterConfig, SiteConfig
    from sisock_core.router import RouterSecurityError, Secrets, check_secrets_for_interfaces

    s = Secrets("a" * 32, "b" * 32, "env")
    cfg = SiteConfig(path="<test>", state_dir=tmp_path, router=RouterConfig(
        allow_legacy_ocs_nodes=True, ocs_listen="0.0.0.0", allow_public_ocs=True))
    with pytest.raises(RouterSecurityError, match="allow_legacy_ocs_nodes"):
        check_secrets_for_interfaces(cfg, s)
    check_secrets_for_interfaces(attrs.evolve(cfg, router=attrs.evolve(cfg.router, ocs_listen="127.0.0.1")), s)


# -- the original's example weather files ---------------------------------------------------------


def _original_weather_file(path: Path, description: str, timeline: str, units: str, t, values) -> None:
    """A .dat file in the original sisock's example_data shape: four header comments
    (description, timeline, units, the day) and ``<unix time with .0> <value>`` lines."""
    lines = [f"# {description}", f"# {timeline}", f"# {units}", "# 2017-07-14"]
    lines += [f"{ti:.1f} {v}" for ti, v in zip(t, values)]
    path.write_text("\n".join(lines) + "\n")


def test_weather_node_serves_the_original_example_files_unchanged(tmp_path, monkeypatch):
    """``data_dir`` (or ``DATA_DIRECTORY``, as the original container) at files shaped like
    the original's ``example_data``, whose ``apex_windspeed`` has one sample more than the
    ``apex_radiometer`` sharing its ``minutely`` timeline."""
    from sisock_core.testing import start_node

    t0 = 1499990400.0  # 2017-07-14 00:00 UTC
    minutes = [t0 + 60 * i for i in range(600)]
    hours = [t0 + 3600 * i for i in range(10)]
    _original_weather_file(tmp_path / "apex_windspeed.dat", "APEX weather station windspeed.", "minutely",
                           "km/h", minutes + [t0 + 600 * 60], [4.1 + (i % 9) / 10 for i in range(601)])
    _original_weather_file(tmp_path / "apex_radiometer.dat", "APEX radiometer.", "minutely", "mm",
                           minutes, [0.5 + (i % 5) / 100 for i in range(600)])
    _original_weather_file(tmp_path / "apex_temperature.dat", "APEX temperature.", "hourly", "C",
                           hours, [-3.5 + i for i in range(10)])
    for how in ("option", "env"):
        if how == "option":
            node = start_node("weather", {"data_dir": str(tmp_path)})
        else:
            node = start_node("weather", env={"DATA_DIRECTORY": str(tmp_path)})
        with node:
            fields, timelines = node.get_fields(t0, t0 + 86400)
            assert set(fields) == {"apex_windspeed", "apex_radiometer", "apex_temperature"}
            assert (fields["apex_windspeed"]["units"], fields["apex_temperature"]["timeline"]) == ("km/h", "hourly")
            answer = node.get_data(["apex_windspeed", "apex_radiometer", "apex_temperature"], t0, t0 + 86400)
            wind_tl = fields["apex_windspeed"]["timeline"]
            assert len(answer["data"]["apex_windspeed"]) == len(answer["timeline"][wind_tl]["t"]) == 601
            rad_tl = fields["apex_radiometer"]["timeline"]
            assert answer["timeline"][rad_tl]["t"] == minutes
            assert answer["data"]["apex_radiometer"][:2] == [0.5, 0.51]
            assert answer["data"]["apex_temperature"] == [-3.5 + i for i in range(10)]


# -- the WebSocket path --------------------------------------------------------------------------


def test_router_path_is_checked_and_read_from_the_environment(tmp_path):
    from sisock_core.config import ConfigError, load_config_text
    from sisock_core.wamp import router_url

    assert router_url(load_config_text("", env={})) == "wss://127.0.0.1:8080/ws"
    assert router_url(load_config_text('[router]\npath = "/"\n', env={})) == "wss://127.0.0.1:8080/"
    assert router_url(load_config_text("", env={"CROSSBAR_PATH": "/sisock"})) == "wss://127.0.0.1:8080/sisock"
    with pytest.raises(ConfigError, match=r"router\.path.*'ws'"):
        load_config_text('[router]\npath = "ws"\n', env={})
    with pytest.raises(ConfigError, match="CROSSBAR_PATH"):
        load_config_text("", env={"CROSSBAR_PATH": "/a/b"})


@pytest_twisted.ensureDeferred
async def test_our_router_serves_a_configured_path_too(tmp_path):
    """Components and the readiness probe dial ``router.path``; our crossbar serves it
    next to ``/`` and ``/ws``."""
    from sisock_core.router import RouterProcess, crossbar_config, load_secrets

    from .helpers_router import open_session, site_config

    cfg = site_config(tmp_path / "state", path="/sisock")
    secrets = load_secrets(cfg, env={})
    paths = crossbar_config(cfg, secrets)["workers"][0]["transports"][0]["paths"]
    assert set(paths) == {"/", "ws", "sisock"}
    process = RouterProcess(cfg, secrets, ready_timeout=60)
    await process.start()  # its readiness probe joined at /sisock
    try:
        session = await open_session(cfg, authid="simonsobs", secret=secrets.consumer, path="/sisock")
        await session.leave()
    finally:
        await process.stop()
