"""A first run on a machine that is not empty: busy ports, a second ``sisock up``, a
foreign server on the router's port, a component that cannot start again.

Every port here is held by a real socket of this test (so the process named as its
holder is this one); every ``sisock`` is a real process. Each case must end with one
clear line and a non-zero status (exit 78: a restart would not help), or, for the HTTP
bridge, one line while the rest of the site keeps serving. The seconds each case took
are printed (``pytest -s``); waits have deadlines, never sleeps.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import attrs
import psutil
import pytest
import pytest_twisted
from twisted.logger import formatEvent

from sisock_core import ports
from sisock_core import router as R
from sisock_core.sitelock import LOCK_NAME, SiteInUse, lock_state_dir
from sisock_core.startup_checks import EXIT_CANNOT_START
from sisock_core.supervisor import SupervisedChild
from sisock_core.tls import ensure_site_certificate
from sisock_core.testing import start_site
from tests.helpers_router import log_events, site_config  # noqa: F401 (a fixture)

from .siteproc import SisockProcess, free_port, free_ports, pids_matching, wait_until, write_site

ME = f"pid {os.getpid()}"


def held_port() -> socket.socket:
    """A listening loopback socket on a free port (close it when done)."""
    return socket.create_server(("127.0.0.1", 0))


def sisock(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``sisock ARGS``; the result and the seconds it took."""
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "sisock_core.cli", *args], capture_output=True,
                         text=True, timeout=60, env=dict(os.environ, **(env or {})))
    seconds = time.monotonic() - t0
    print(f"sisock {args[0]}: exit {out.returncode} after {seconds:.2f} s: {out.stderr.strip()}")
    return out, seconds


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text}"
    return lines[0]


def refused(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port`` (polled: a port another process closes
    announces nothing in this one)."""
    try:
        socket.create_connection((host, port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


# -- the port check, alone ---------------------------------------------------------------------


def test_busy_port_names_address_setting_and_holder(tmp_path):
    cfg = site_config(tmp_path / "state")
    with held_port() as s:
        port = s.getsockname()[1]
        cfg = attrs.evolve(cfg, router=attrs.evolve(cfg.router, tls_port=port))
        [tls] = [lst for lst in ports.router_listeners(cfg) if lst.port == port]
        reason = ports.why_busy(tls)
        assert reason.startswith(f"127.0.0.1:{port} (the router's TLS port) is in use by {ME} (")
        assert "[router] tls_port / CROSSBAR_TLS_PORT" in reason
        assert ports.listening_pids("127.0.0.1", port) == [os.getpid()]
        assert ports.busy_reasons(ports.router_listeners(cfg)) == [reason]  # OCS port is free
    assert ports.why_busy(tls) is None  # closed: free again
    assert ports.busy_reasons(ports.router_listeners(cfg)) == []


def test_wildcard_holder_blocks_loopback(tmp_path):
    with socket.create_server(("0.0.0.0", 0)) as s:
        port = s.getsockname()[1]
        lst = ports.Listener("the HTTP bridge's port", "localhost", port, "[http] port / PORT",
                             "[http] listen")
        reason = ports.why_busy(lst)
        assert reason is not None and f"127.0.0.1:{port}" in reason and ME in reason


def test_one_address_twice_is_refused(tmp_path):
    port = free_port()
    cfg = site_config(tmp_path / "state", tls_port=port)
    cfg = attrs.evolve(cfg, http=attrs.evolve(cfg.http, port=port))
    assert ports.busy_reasons(ports.site_listeners(cfg)) == [
        f"the router's TLS port and the HTTP bridge's port are both 127.0.0.1:{port}; move one "
        "with [router] tls_port / CROSSBAR_TLS_PORT or [http] port / PORT"]


def test_site_listeners_follow_what_the_site_starts(tmp_path):
    cfg = site_config(tmp_path / "state")
    assert [lst.what for lst in ports.site_listeners(cfg)] == [
        "the router's TLS port", "the router's OCS port", "the HTTP bridge's port"]
    cfg = attrs.evolve(cfg, router=attrs.evolve(cfg.router, start=False),
                       http=attrs.evolve(cfg.http, start=False))
    assert ports.site_listeners(cfg) == []


# -- the state directory lock ------------------------------------------------------------------

HOLDER = """
import sys
from sisock_core.sitelock import lock_state_dir
lock = lock_state_dir(sys.argv[1], ["up", "their-site.toml"])
print("locked", flush=True)
sys.stdin.read()
"""


def lock_holder(state: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(state)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_refuses_a_second_site_and_a_killed_one_does_not_block(tmp_path):
    state = tmp_path / "state"
    holder = lock_holder(state)
    try:
        with pytest.raises(SiteInUse) as e:
            lock_state_dir(state)
        msg = str(e.value)
        assert f"pid {holder.pid} (sisock up their-site.toml, started " in msg
        assert f"kill {holder.pid}" in msg and "SISOCK_STATE_DIR" in msg and str(state) in msg
    finally:
        holder.kill()
        holder.wait(30)
    # the killed holder's file is still there, with its pid: it does not block
    assert json.loads((state / LOCK_NAME).read_text())["pid"] == holder.pid
    lock = lock_state_dir(state, ["up"])
    try:
        assert json.loads((state / LOCK_NAME).read_text())["pid"] == os.getpid()
        assert (state / LOCK_NAME).stat().st_mode & 0o077 == 0
    finally:
        lock.release()
    lock_state_dir(state).release()  # released: free again


# -- sisock up / router / http refuse busy ports before starting anything ----------------------


@pytest.mark.parametrize("which", ["tls", "ocs", "http"])
def test_up_refuses_a_busy_port_in_one_line(tmp_path, which):
    with held_port() as s:
        busy = s.getsockname()[1]
        tls, ocs, http = free_ports(3)
        port = {"tls": tls, "ocs": ocs, "http": http}
        port[which] = busy
        path = write_site(tmp_path / "site.toml", state_dir=tmp_path / "state", tls_port=port["tls"],
                          ocs_port=port["ocs"], http_port=port["http"], start_http=True)
        out, _ = sisock("up", str(path))
    assert out.returncode == EXIT_CANNOT_START
    line = one_line(out.stderr)
    setting = {"tls": "[router] tls_port / CROSSBAR_TLS_PORT", "ocs": "[router] ocs_port / CROSSBAR_OCS_PORT",
               "http": "[http] port / PORT"}[which]
    assert line.startswith(f"sisock up: 127.0.0.1:{busy} (")
    assert f"is in use by {ME} (" in line and setting in line
    # nothing was started: no router files, no process of this site
    assert not (tmp_path / "state" / "crossbar").exists()
    assert pids_matching(str(path)) == []


def test_env_moved_port_is_named_by_its_variable(tmp_path):
    with held_port() as s:
        busy = s.getsockname()[1]
        path = write_site(tmp_path / "site.toml", state_dir=tmp_path / "state", tls_port=free_port(),
                          ocs_port=free_port())
        out, _ = sisock("up", str(path), env={"CROSSBAR_TLS_PORT": str(busy)})
    assert out.returncode == EXIT_CANNOT_START
    assert f"127.0.0.1:{busy} (the router's TLS port)" in one_line(out.stderr)
    assert "CROSSBAR_TLS_PORT" in out.stderr


def test_router_and_http_refuse_busy_ports(tmp_path):
    with held_port() as s:
        busy = s.getsockname()[1]
        path = write_site(tmp_path / "site.toml", state_dir=tmp_path / "state", tls_port=busy,
                          ocs_port=free_port())
        out, _ = sisock("router", str(path))
        assert out.returncode == EXIT_CANNOT_START
        assert one_line(out.stderr).startswith(f"sisock router: 127.0.0.1:{busy} (the router's TLS port) "
                                               f"is in use by {ME}")
        out, _ = sisock("http", "-c", str(path), "--port", str(busy))
        assert out.returncode == EXIT_CANNOT_START
        line = one_line(out.stderr)
        assert line.startswith(f"sisock http: 127.0.0.1:{busy} (the HTTP bridge's port) is in use by {ME}")
        assert "[http] port / PORT / --port" in line
    assert not (tmp_path / "state" / "crossbar").exists()


@pytest_twisted.ensureDeferred
async def test_supervised_component_that_cannot_start_is_not_restarted(tmp_path):
    """Under ``sisock up`` a child exiting with 78 is given up on, with the reason it gave."""
    from twisted.internet import reactor

    with held_port() as s:
        busy = s.getsockname()[1]
        path = write_site(tmp_path / "site.toml", state_dir=tmp_path / "state", tls_port=free_port(),
                          ocs_port=free_port(), http_port=busy, start_router=False, start_http=True)
        said: list[str] = []
        child = SupervisedChild("http", ["http", "--supervised", "--config", str(path)],
                                reactor=reactor, on_cannot_start=lambda c, why: said.append(why))
        child.start()
        reason = await child.gave_up.addTimeout(60, reactor)
    assert said == [reason]
    assert reason.startswith(f"127.0.0.1:{busy} (the HTTP bridge's port) is in use by {ME}")
    assert "--port" not in reason  # not a setting under sisock up
    assert not child.running and child.restarts == 0 and child._pending_restart is None


# -- the readiness probe never speaks TLS for long to a server that is not ours ----------------


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_probe_refuses_an_http_server_on_the_router_port(tmp_path, log_events):
    from twisted.internet import reactor

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        cfg = site_config(tmp_path / "state", tls_port=port)
        secrets = R.load_secrets(cfg, env={})
        ensure_site_certificate(cfg)
        t0 = time.monotonic()
        with pytest.raises(R.RouterRefused) as e:  # not "not joinable after 60 s"
            await R.wait_until_joinable(cfg, secrets, 60, reactor=reactor)
        print(f"refused after {time.monotonic() - t0:.2f} s: {e.value}")
    finally:
        server.shutdown()
        server.server_close()
    assert str(e.value) == (
        f"127.0.0.1:{port} answers, but it is not our router: its TLS handshake failed "
        "(wrong version number), as when another program (an HTTP server?) listens there")
    text = "\n".join(formatEvent(ev) or "" for ev in log_events)
    assert "SSL error" not in text


def test_router_process_tells_its_own_listener_from_another(tmp_path):
    """The owner check: a listener outside crossbar's process group is not our router."""
    with held_port() as s:
        cfg = site_config(tmp_path / "state", tls_port=s.getsockname()[1])
        process = R.RouterProcess(cfg, R.load_secrets(cfg, env={}))
        process._pid = os.getpgid(0)  # as if this test's process group were crossbar's
        assert process._not_ours() is None
        process._pid = os.getpgid(0) + 1_000_000  # another group
        reason = process._not_ours()
    assert reason.startswith(f"127.0.0.1:{cfg.router.tls_port} answers, but it is not our router")
    assert f"{ME} (" in reason


# -- a running site: a second sisock up, and the bridge's port taken while it was down ----------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """``sisock up`` with the router, the hub, the weather node and the HTTP bridge."""
    with start_site(tmp_path_factory.mktemp("busy"), {"apex_archive": {"plugin": "weather"}},
                    http=True) as running:
        yield running


@pytest.mark.integration
def test_second_up_on_a_running_state_dir_names_the_first(site, tmp_path):
    path, first, cfg = site.path, site.process, site.config
    for command in ("up", "router"):
        out, _ = sisock(command, str(path))
        assert out.returncode == EXIT_CANNOT_START
        line = one_line(out.stderr)
        assert line.startswith(f"sisock {command}: a site already runs on the state directory "
                               f"{cfg.state_dir}: pid {first.proc.pid} (sisock up {path}, started ")
        assert f"kill {first.proc.pid}" in line and "SISOCK_STATE_DIR" in line
    # on another state directory the lock is free, but the ports are the first site's
    out, _ = sisock("up", str(path), env={"SISOCK_STATE_DIR": str(tmp_path / "other")})
    assert out.returncode == EXIT_CANNOT_START
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 3  # TLS, OCS and HTTP ports: one line each
    assert f"127.0.0.1:{cfg.router.tls_port} (the router's TLS port) is in use by pid " in lines[0]
    assert "crossbar" in lines[0]  # the holder: the first site's router
    assert first.proc.poll() is None


def satellite_site(tmp: Path, site, ca_cert: Path, hub: bool = False) -> Path:
    """A site file of a second machine (nodes, and the hub if ``hub``) for ``site``'s router."""
    path = tmp / "satellite.toml"
    path.write_text(f"""\
state_dir = {json.dumps(str(tmp / "satellite-state"))}
[router]
start = false
tls_port = {site.config.router.tls_port}
ocs_port = {site.config.router.ocs_port}
ca_cert = {json.dumps(str(ca_cert))}
[hub]
start = {str(hub).lower()}
[http]
start = false
[nodes.weather_copy]
plugin = "weather"
""")
    return path


@pytest.mark.integration
def test_refused_secret_or_certificate_is_one_line_not_a_retry_loop(site, tmp_path):
    cert = site.config.state_dir / "tls" / "server_cert.pem"
    path = satellite_site(tmp_path, site, cert)
    wrong = {"WAMP_SECRET": "not-the-secret-" * 3, "WAMP_CONSUMER_SECRET": "not-this-one-" * 3}
    out, _ = sisock("node", "weather_copy", "-c", str(path), env=wrong)
    assert out.returncode == EXIT_CANNOT_START
    [last] = [ln for ln in out.stderr.splitlines() if ln.startswith("sisock node: ")]  # (log above)
    assert out.stderr.count("connecting once using transport") == 1  # one attempt, no retries
    assert last.startswith(f"sisock node: the router at 127.0.0.1:{site.config.router.tls_port} refused "
                           "user 'server' on realm 'test_realm' (wamp.error.not_authorized")
    assert "WAMP_SECRET" in last
    # a certificate ca_cert does not trust: the same, before any secret is sent
    other = tmp_path / "other"
    ensure_site_certificate(attrs.evolve(site.config, state_dir=other))
    path = satellite_site(tmp_path, site, other / "tls" / "server_cert.pem")
    out, _ = sisock("http", "-c", str(path), "--port", str(free_port()), env=wrong)
    assert out.returncode == EXIT_CANNOT_START
    [last] = [ln for ln in out.stderr.splitlines() if ln.startswith("sisock http: ")]
    assert last.startswith(f"sisock http: the router at 127.0.0.1:{site.config.router.tls_port} failed "
                           "the TLS handshake (certificate verify failed)")


@pytest.mark.integration
def test_hub_refused_stops_sisock_up_with_the_reason(site, tmp_path):
    """The hub cannot start (its secret is refused): ``sisock up`` stops, once, exit 78."""
    path = satellite_site(tmp_path, site, site.config.state_dir / "tls" / "server_cert.pem", hub=True)
    wrong = {"WAMP_SECRET": "not-the-secret-" * 3, "WAMP_CONSUMER_SECRET": "not-this-one-" * 3}
    t0 = time.monotonic()
    up = SisockProcess(["up", str(path)], tmp_path / "up.log", env=wrong)
    try:
        rc = up.proc.wait(60)
        print(f"sisock up exited {rc} after {time.monotonic() - t0:.2f} s (hub refused)")
    finally:
        up.stop()
    assert rc == EXIT_CANNOT_START
    critical = [ln for ln in up.log_text().splitlines() if "#critical]" in ln]
    assert len(critical) == 1, critical
    assert f"the hub cannot start: the router at 127.0.0.1:{site.config.router.tls_port} refused " \
           "user 'server'" in critical[0] and critical[0].endswith("; stopping")
    assert "restarting in" not in up.log_text()
    assert pids_matching(str(path)) == []  # the node was not left behind


@pytest.mark.integration
def test_bridge_port_taken_while_it_was_down(site):
    """The bridge cannot listen again: said once, not restarted, the rest keeps serving."""
    path, proc, cfg = site.path, site.process, site.config
    pattern = f"http --supervised --config {path}"
    [bridge_pid] = pids_matching(pattern)
    os.kill(bridge_pid, signal.SIGKILL)
    wait_until(lambda: refused("127.0.0.1", cfg.http.port), timeout=30, interval=0.01,
               what="the killed bridge's port to close")
    with socket.create_server(("127.0.0.1", cfg.http.port)):
        t0 = time.monotonic()
        down = "the HTTP bridge is down and will not be restarted: "
        wait_until(lambda: down in proc.log_text(), timeout=60, interval=0.05,
                   what="sisock up to say the bridge is down")
        print(f"bridge reported down {time.monotonic() - t0:.2f} s after the port was taken")
        # the rest serves: the node answers through the router and the hub
        assert site.get_fields("apex_archive")[0]["apex_temperature"]["units"] == "C"
        assert site.nodes()[0]["name"] == "apex_archive"
        log = proc.log_text()
        [line] = [ln for ln in log.splitlines() if down in ln]
        assert f"127.0.0.1:{cfg.http.port} (the HTTP bridge's port) is in use by {ME}" in line
        assert line.endswith("; the rest of the site keeps serving")
        assert log.count("http stopped unexpectedly") == 1  # the kill; no restart loop
        assert pids_matching(pattern) == []
        assert proc.proc.poll() is None


# -- the router's port taken while it was down: the site stops, once, with the reason -----------


def crossbar_pid(up: SisockProcess) -> int:
    for child in psutil.Process(up.proc.pid).children():
        if "crossbar" in " ".join(child.cmdline()):
            return child.pid
    raise AssertionError("no crossbar child")


@pytest.mark.integration
def test_router_port_taken_while_it_was_down_stops_the_site(tmp_path):
    killed = lock_holder(tmp_path / "state")  # a killed site's lock file must not block this one
    killed.kill()
    killed.wait(30)
    site = start_site(tmp_path, "")  # the router and the hub
    path, up, cfg = site.path, site.process, site.config
    try:
        os.kill(crossbar_pid(up), signal.SIGKILL)
        wait_until(lambda: refused("127.0.0.1", cfg.router.tls_port), timeout=30, interval=0.01,
                   what="the killed router's port to close")
        with socket.create_server(("127.0.0.1", cfg.router.tls_port)):
            t0 = time.monotonic()
            rc = up.proc.wait(60)
            print(f"sisock up exited {rc} {time.monotonic() - t0:.2f} s after the port was taken")
    finally:
        site.client.close()
        up.stop()
    assert rc == EXIT_CANNOT_START
    critical = [ln for ln in up.log_text().splitlines() if "#critical]" in ln]
    assert len(critical) == 1, critical
    assert f"the router cannot start: 127.0.0.1:{cfg.router.tls_port} (the router's TLS port) is in " \
           f"use by {ME}" in critical[0]
    assert "restarting the router failed" not in up.log_text()
    assert pids_matching(str(path)) == []  # hub stopped with the site


def test_bound_but_not_listening_port_is_busy_too():
    """A socket bound without SO_REUSEADDR (not listening) also makes crossbar's listen fail."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        lst = ports.Listener("the router's OCS port", "127.0.0.1", port,
                             "[router] ocs_port / CROSSBAR_OCS_PORT", "[router] ocs_listen")
        assert ports.why_busy(lst) == (
            f"127.0.0.1:{port} (the router's OCS port) is in use; stop that program or move "
            "sisock's port with [router] ocs_port / CROSSBAR_OCS_PORT")


def test_unusable_state_dir_is_one_line(tmp_path):
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("a file\n")
    path = write_site(tmp_path / "site.toml", state_dir=not_a_dir, tls_port=free_port(),
                      ocs_port=free_port())
    out, _ = sisock("up", str(path))
    assert out.returncode == EXIT_CANNOT_START
    assert one_line(out.stderr).startswith(f"sisock up: cannot use the state directory {not_a_dir}: ")
