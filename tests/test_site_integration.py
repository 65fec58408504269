"""End to end: a real crossbar router, the hub and the weather node, over WAMP.

Each test module run starts ``sisock up`` on free loopback ports in a temporary
state directory, exactly as an operator would, and talks to it with real WAMP
clients (msgpack and the JSON serializer the original consumers used) and with
the ``sisock`` command line.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from sisock_core.client import with_session
from sisock_core.config import load_config
from sisock_core.wamp import HUB_ADD, HUB_LIST, HUB_SUBTRACTED, node_uri

from .siteproc import SisockProcess, free_port, pids_matching, run_sisock, site_up, wait_until, write_site

pytestmark = pytest.mark.integration

JULY_2017 = (1499904000.0, 1501113600.0)  # 2017-07-13 .. 2017-07-27 UTC


class NotifySocket:
    """A stand-in for systemd's ``$NOTIFY_SOCKET``: datagrams with their sender's pid."""

    def __init__(self, path) -> None:
        import socket

        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def receive(self, timeout: float = 10.0) -> tuple[int, str] | None:
        """(sender pid, message) of the next datagram; None after ``timeout`` seconds."""
        import socket
        import struct

        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except TimeoutError:
            return None
        pid = next(struct.unpack("3i", d)[0] for level, kind, d in anc
                   if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS)
        return pid, data.decode()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """``sisock up`` with the router, hub and the example weather node, as under systemd
    (``NOTIFY_SOCKET``)."""
    tmp = tmp_path_factory.mktemp("site")
    notify = NotifySocket(tmp / "notify")
    with site_up(tmp, env={"NOTIFY_SOCKET": notify.path}, log_tail=30) as (path, proc):
        proc.notified = notify
        yield path, proc


def test_start_up_log_one_line_per_event_nothing_at_warning_level(site):
    """Until the site is up: every line has one timestamp and names its component; each
    child's lines keep their own namespace and level; nothing is a warning or worse."""
    import re

    _, proc = site
    log = proc.log_text()
    start = log[:log.index("site up:")].splitlines()[:-1]  # (the "site up" line itself: info)
    line = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(up|hub|node apex_archive)\] "
                      r"\[[\w.]+#(debug|info)\] \S")
    assert [ln for ln in start if not line.match(ln)] == []
    assert not [ln for ln in start if len(re.findall(r"\d\d:\d\d:\d\d", ln)) != 1]
    assert any("Z [hub] [sisock_core.hub.Hub#info] hub ready on realm" in ln for ln in start)
    assert any("[node apex_archive] [sisock_plugins.weather#info] loaded 336 samples" in ln for ln in start)


def test_up_tells_systemd_it_is_ready_and_its_children_do_not(site):
    _, proc = site
    assert proc.notified.receive() == (proc.proc.pid, "READY=1\nSTATUS=site serving")
    assert proc.notified.receive(timeout=0.5) is None  # (the children were ready before the site)


sisock = run_sisock


def test_cli_lists_node_fields_and_data(site):
    path, _ = site
    out = sisock("nodes", "-c", str(path), "--json")
    assert out.returncode == 0, out.stderr
    assert {"name": "apex_archive", "description": "Example weather data from the APEX telescope site (July 2017)"} \
        in json.loads(out.stdout)

    out = sisock("fields", "apex_archive", "-c", str(path), "--json")
    assert out.returncode == 0, out.stderr
    fields = json.loads(out.stdout)["fields"]
    assert set(fields) == {"apex_humidity", "apex_pressure", "apex_temperature",
                           "apex_radiometer", "apex_windspeed"}
    assert fields["apex_radiometer"]["timeline"] == "minutely"

    out = sisock("get", "apex_archive", "apex_temperature", "apex_radiometer", "-c", str(path),
                 "--start", "2017-07-20T00:00Z", "--end", "2017-07-20T06:00Z", "--json")
    assert out.returncode == 0, out.stderr
    ans = json.loads(out.stdout)
    assert len(ans["data"]["apex_temperature"]) == 6
    assert len(ans["data"]["apex_radiometer"]) == 360
    assert ans["timeline"]["hourly"]["t"][0] == 1500508800.0

    table = sisock("get", "apex_archive", "apex_temperature", "-c", str(path),
                   "--start", "2017-07-20T00:00Z", "--end", "2017-07-20T03:00Z")
    assert table.returncode == 0, table.stderr
    assert "2017-07-20 00:00:00.000Z" in table.stdout and "apex_temperature" in table.stdout


def test_cli_errors_are_clear(site):
    path, _ = site
    out = sisock("get", "no_such_node", "x", "-c", str(path))
    assert out.returncode == 1
    assert "no_such_node: no such node is serving" in out.stderr


@pytest_twisted.ensureDeferred
async def test_wamp_msgpack_and_json_clients_get_same_answer(site):
    path, _ = site
    cfg = load_config(path)

    async def ask(session):
        fields = await session.call(node_uri("apex_archive", "get_fields"), *JULY_2017)
        data = await session.call(node_uri("apex_archive", "get_data"), ["apex_humidity", "missing"],
                                  *JULY_2017)
        return fields, data

    mp = await with_session(reactor, cfg, ask, serializers=["msgpack"])
    js = await with_session(reactor, cfg, ask, serializers=["json"])
    assert mp == js or json.loads(json.dumps(mp)) == json.loads(json.dumps(js))
    fields, data = js
    assert fields[1]["hourly"]["interval"] == 3600
    assert data["data"]["missing"] == []
    assert len(data["data"]["apex_humidity"]) == 14 * 24
    assert set(data["timeline"]) == {"hourly"}


@pytest_twisted.ensureDeferred
async def test_bad_arguments_give_wamp_error_and_node_keeps_serving(site):
    from autobahn.wamp.exception import ApplicationError

    path, _ = site
    cfg = load_config(path)

    async def ask(session):
        with pytest.raises(ApplicationError) as err:
            await session.call(node_uri("apex_archive", "get_data"), 42, "yesterday", 0)
        assert err.value.error == "org.simonsobservatory.error.invalid_argument"
        assert "field must be a list" in str(err.value.args)
        return await session.call(node_uri("apex_archive", "get_data"), ["apex_pressure"], *JULY_2017)

    data = await with_session(reactor, cfg, ask)
    assert len(data["data"]["apex_pressure"]) > 0


@pytest_twisted.ensureDeferred
async def test_duplicate_name_is_refused_by_hub(site):
    path, _ = site
    cfg = load_config(path)

    async def ask(session):
        return await session.call(HUB_ADD, "apex_archive", "impostor", session._session_id)

    assert await with_session(reactor, cfg, ask, consumer=False) is False


@pytest_twisted.ensureDeferred
async def test_lost_node_is_subtracted_and_second_site_shares_router(site, tmp_path):
    """A second ``sisock up`` with no router or hub serves a node through the first
    site's router; killing that process publishes ``data_node_subtracted``."""
    path, _ = site
    cfg = load_config(path)
    second = write_site(
        tmp_path / "second.toml", state_dir=cfg.state_dir, tls_port=cfg.router.tls_port,
        ocs_port=cfg.router.ocs_port, start_router=False,
        nodes='[nodes.weather_copy]\nplugin = "weather"\ndescription = "second machine"\n',
    )
    proc = SisockProcess(["up", str(second), "--log-format", "json"], tmp_path / "second.log")
    try:
        await deferToThreadWait(proc.wait_ready, "site")
        # --log-format json: one object per line, for log shippers (its children's included)
        lines = [json.loads(ln) for ln in proc.log_text().splitlines()]
        assert {"up", "node weather_copy"} <= {ln["component"] for ln in lines}
        assert all(set(ln) >= {"time", "level", "component", "namespace", "message"} for ln in lines)
        assert any(ln["component"] == "node weather_copy" and ln["namespace"] == "sisock_plugins.weather"
                   and ln["message"].startswith("loaded 336 samples") for ln in lines)
        listing = await with_session(reactor, cfg, lambda s: s.call(HUB_LIST))
        assert {"name": "weather_copy", "description": "second machine"} in listing

        events: list = []
        got = defer.Deferred()

        async def watch(session):
            def on_sub(info):
                events.append(info)
                if info["name"] == "weather_copy" and not got.called:
                    got.callback(info)

            await session.subscribe(on_sub, HUB_SUBTRACTED)
            # Kill the whole second site (its node process included) without a goodbye.
            for pid in pids_matching(str(second)):
                os.kill(pid, signal.SIGKILL)
            return await got.addTimeout(30, reactor)

        info = await with_session(reactor, cfg, watch, timeout=40)
        assert info == {"name": "weather_copy", "description": "second machine"}
        listing = await with_session(reactor, cfg, lambda s: s.call(HUB_LIST))
        assert "weather_copy" not in [n["name"] for n in listing]
    finally:
        proc.stop()


def _kill_child_and_wait_listed(path, child_args: str, what: str) -> None:
    """SIGKILL the supervised child whose command line holds ``child_args``; wait
    until ``sisock up`` has started a new one and the hub lists apex_archive again."""
    pattern = f"{child_args} --supervised --config {path}"
    old = pids_matching(pattern)
    assert len(old) == 1, old
    os.kill(old[0], signal.SIGKILL)

    def back():
        pids = pids_matching(pattern)
        if not pids or pids == old:
            return False
        out = sisock("nodes", "-c", str(path), "--json")
        return out.returncode == 0 and "apex_archive" in out.stdout

    wait_until(back, timeout=60, what=what)


def test_crashed_node_is_restarted_by_up(site):
    path, proc = site
    _kill_child_and_wait_listed(path, "node apex_archive", "the node to be restarted and listed again")
    assert "restarting in" in proc.log_text()


def test_restarted_hub_is_refilled_by_live_nodes(site):
    path, _ = site
    _kill_child_and_wait_listed(path, "hub", "the restarted hub to list apex_archive again")


def deferToThreadWait(fn, *args):
    from twisted.internet.threads import deferToThread

    return deferToThread(fn, *args)


def test_node_and_hub_come_back_after_router_restart(tmp_path):
    """Router, hub and node as separate processes: kill the router, start it again,
    and the node is registered and listed again without restarting anything else."""
    path = write_site(tmp_path / "split.toml", state_dir=tmp_path / "state", tls_port=free_port(),
                      ocs_port=free_port())
    notify = NotifySocket(tmp_path / "notify")  # as systemd's units from `sisock systemd --per-component`
    env = {"NOTIFY_SOCKET": notify.path}
    router = SisockProcess(["router", str(path)], tmp_path / "router.log", env=env)
    hub = node = None
    try:
        router.wait_ready("router")
        assert notify.receive() == (router.proc.pid, "READY=1\nSTATUS=router serving")
        hub = SisockProcess(["hub", "-c", str(path)], tmp_path / "hub.log", env=env)
        hub.wait_ready("hub")
        assert notify.receive() == (hub.proc.pid, "READY=1\nSTATUS=hub serving")
        node = SisockProcess(["node", "apex_archive", "-c", str(path)], tmp_path / "node.log", env=env)
        node.wait_ready("node apex_archive")
        assert notify.receive() == (node.proc.pid, "READY=1\nSTATUS=node apex_archive serving")
        router.kill(signal.SIGKILL)
        for pid in pids_matching(f"--cbdir {tmp_path / 'state'}"):  # crossbar's workers
            os.kill(pid, signal.SIGKILL)
        router.stop()
        router = SisockProcess(["router", str(path)], tmp_path / "router2.log")
        router.wait_ready("router")

        def listed():
            out = sisock("get", "apex_archive", "apex_pressure", "-c", str(path),
                         "--start", "2017-07-20T00:00Z", "--end", "2017-07-20T03:00Z", "--json")
            nodes = sisock("nodes", "-c", str(path), "--json")
            return out.returncode == 0 and len(json.loads(out.stdout)["data"]["apex_pressure"]) == 3 \
                and "apex_archive" in nodes.stdout

        wait_until(listed, timeout=60, what="the node to serve again after the router restart")
        assert node.proc.poll() is None and hub.proc.poll() is None
    finally:
        for p in (node, hub, router):
            if p is not None:
                p.stop()
