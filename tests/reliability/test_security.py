"""Security of a running site, each item of issue 7 as its own test.

Against the package's shared ``sisock up`` (router, hub, bridge with basic auth, the
weather node ``apex_archive``, the datafeed node ``lakeshore``) unless a test needs a
site of its own (exposure refusals, a public OCS port):

- no credentials: nothing can be registered or called over the TLS transport, and an
  anonymous OCS-port session cannot reach the nodes or the hub either;
- the consumer role cannot register a node's procedures nor act as the hub;
- default secrets are refused when the router would listen beyond loopback;
- the OCS port listens on 127.0.0.1 unless configured otherwise (checked on the real
  listening sockets, /proc/net/tcp);
- the bridge's basic auth is enforced, and required beyond loopback;
- no secret appears in any log of a site running at debug level.

tests/test_router.py and tests/test_bridge_http.py check the same rules on a bare
router and on the bridge alone; here they are checked on a whole site.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted

from sisock_core.hub import ERROR_NOT_AUTHORIZED
from sisock_core.wamp import HUB_ADD, HUB_ADDED, HUB_LIST, HUB_SUBTRACT, HUB_SUBTRACTED, node_uri
from tests.helpers_router import SessionRefused

from ..siteproc import free_port, write_site
from .support import HTTP_PASSWORD, HTTP_USER, ack, basic, denied, http, in_thread, joined, query_body, sleep

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

NOT_AUTHORIZED = "wamp.error.not_authorized"


# -- the TLS transport without credentials ---------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_no_credentials_cannot_join_register_or_call_on_tls(shared_site):
    cfg = shared_site.cfg
    attempts = {
        "anonymous": dict(authid=None),
        "anonymous, json": dict(authid=None, serializer="json"),
        "server, wrong secret": dict(authid=cfg.router.wamp_user, secret="not-the-secret-0123456789"),
        "consumer, server's secret": dict(authid="simonsobs", secret=shared_site.secrets["server"]),
        "unknown user": dict(authid="mallory", secret="x"),
        "server, empty secret": dict(authid=cfg.router.wamp_user, secret=""),
    }
    reasons = {}
    for what, kw in attempts.items():
        try:
            s = await joined(cfg, **kw)
        except SessionRefused as exc:
            reasons[what] = exc.reason
        else:
            await s.leave()
            reasons[what] = "joined"
    assert all(r.startswith("wamp.error.") for r in reasons.values()), reasons
    # and the site still serves the right people
    c = await shared_site.consumer()
    try:
        assert "apex_archive" in [n["name"] for n in await c.call(HUB_LIST)]
    finally:
        await c.leave()


@pytest_twisted.ensureDeferred
async def test_anonymous_ocs_port_cannot_reach_nodes_or_hub(shared_site):
    """The OCS port takes anyone (agents publish feeds there) but only under ``observatory.``."""
    agent = await joined(shared_site.cfg, ocs=True)
    try:
        assert agent.details.authrole == "iocs_agent"
        sid = agent.details.session
        results = {
            "call get_data": await denied(agent.call(node_uri("apex_archive", "get_data"), ["apex_humidity"], 1, 0)),
            "call hub list": await denied(agent.call(HUB_LIST)),
            "call hub add": await denied(agent.call(HUB_ADD, "evil", "x", sid)),
            "register get_data": await denied(agent.register(lambda *a: {}, node_uri("apex_archive", "get_data"))),
            "register new node": await denied(agent.register(lambda *a: [{}, {}], node_uri("evil", "get_fields"))),
            "register hub add": await denied(agent.register(lambda *a: True, HUB_ADD)),
            "publish added": await denied(agent.publish(HUB_ADDED, {"name": "evil", "description": "x"},
                                                        options=ack())),
        }
    finally:
        await agent.leave()
    # registering a live procedure is refused as existing before permissions are looked at
    assert results == {k: NOT_AUTHORIZED for k in results} | {
        "register get_data": "wamp.error.procedure_already_exists",
        "register hub add": "wamp.error.procedure_already_exists"}


# -- the consumer role ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_consumer_cannot_register_node_procedures_or_impersonate_hub(shared_site):
    c = await shared_site.consumer()
    watcher = await shared_site.consumer()
    events: list = []
    try:
        await watcher.subscribe(lambda info: events.append(("added", info)), HUB_ADDED)
        await watcher.subscribe(lambda info: events.append(("subtracted", info)), HUB_SUBTRACTED)
        before = await c.call(HUB_LIST)
        sid = c.details.session
        results = {
            # take over an existing node's procedures
            "register apex get_data": await denied(c.register(lambda *a: {}, node_uri("apex_archive", "get_data"))),
            "register apex get_fields": await denied(c.register(lambda *a: [], node_uri("apex_archive", "get_fields"))),
            "register lakeshore get_data": await denied(c.register(lambda *a: {}, node_uri("lakeshore", "get_data"))),
            # serve a new node
            "register new node": await denied(c.register(lambda *a: {}, node_uri("fake_node", "get_data"))),
            # act as the hub
            "register hub add": await denied(c.register(lambda *a: True, HUB_ADD)),
            "register hub list": await denied(c.register(lambda *a: [], HUB_LIST)),
            "call hub add": await denied(c.call(HUB_ADD, "fake_node", "fake", sid)),
            "call hub subtract": await denied(c.call(HUB_SUBTRACT, "apex_archive", 1)),
            "publish added": await denied(c.publish(HUB_ADDED, {"name": "fake_node", "description": "x"},
                                                    options=ack())),
            "publish subtracted": await denied(c.publish(HUB_SUBTRACTED, {"name": "apex_archive", "description": ""},
                                                         options=ack())),
            # the router's meta API (session ids, who registered what)
            "meta api": await denied(c.call("wamp.session.list")),
        }
        after = await c.call(HUB_LIST)
        # still a consumer: it may call the nodes
        data = await c.call(node_uri("apex_archive", "get_data"), ["apex_humidity"], 1499990400, 1500076800)
        await sleep(0.5)  # (an event would have arrived by now)
    finally:
        await c.leave()
        await watcher.leave()
    # registering a live procedure is refused as existing before permissions are looked at;
    # a new one shows the consumer has no right to register at all
    taken = {"register apex get_data", "register apex get_fields", "register lakeshore get_data",
             "register hub add", "register hub list"}
    assert results == {k: "wamp.error.procedure_already_exists" if k in taken else NOT_AUTHORIZED
                       for k in results}
    assert before == after and {"apex_archive", "lakeshore"} <= {n["name"] for n in after}
    assert events == []  # nothing reached the hub's subscribers
    assert len(data["data"]["apex_humidity"]) == 24
    r = await in_thread(shared_site.post, "/query", query_body(["apex_archive::apex_humidity"]))
    assert r.status == 200 and len(r.json[0]["datapoints"]) == 14 * 24


@pytest_twisted.ensureDeferred
async def test_server_role_cannot_steal_a_live_nodes_procedures(shared_site):
    """Even a trusted (server) session cannot register a name that a node serves."""
    s = await shared_site.server()
    try:
        err = await denied(s.register(lambda *a: {"data": {}, "timeline": {}}, node_uri("apex_archive", "get_data")))
        assert err == "wamp.error.procedure_already_exists"
        assert await s.call(HUB_ADD, "apex_archive", "impostor", s.details.session) is False
    finally:
        await s.leave()


@pytest_twisted.ensureDeferred
async def test_server_role_cannot_add_or_subtract_on_another_sessions_behalf(shared_site):
    """The hub takes ``session_id`` only from the session it belongs to (the caller is disclosed)."""
    s = await shared_site.server()
    try:
        # the node's own session id, found the way an attacker with the server role could
        registration = await s.call("wamp.registration.match", node_uri("apex_archive", "get_data"))
        [node_session] = await s.call("wamp.registration.list_callees", registration)
        assert node_session != s.details.session
        results = {
            "subtract a live node": await denied(s.call(HUB_SUBTRACT, "apex_archive", node_session)),
            "add a name for another session": await denied(s.call(HUB_ADD, "ghost", "x", node_session)),
            "add a name for a made-up session": await denied(s.call(HUB_ADD, "ghost", "x", 12345)),
        }
        assert results == dict.fromkeys(results, ERROR_NOT_AUTHORIZED)
        names = [n["name"] for n in await s.call(HUB_LIST)]
        assert "apex_archive" in names and "ghost" not in names
        # its own session id still works, as every data node uses it
        assert await s.call(HUB_ADD, "ghost", "x", s.details.session) is True
        await s.call(HUB_SUBTRACT, "ghost", s.details.session)
        assert "ghost" not in [n["name"] for n in await s.call(HUB_LIST)]
    finally:
        await s.leave()


# -- exposure ----------------------------------------------------------------------------------


def sisock(*args: str, env: dict | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("WAMP_SECRET", "WAMP_CONSUMER_SECRET")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "sisock_core.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full, stdin=subprocess.DEVNULL)


def _site_file(tmp: Path, router: str = "", http_section: str = "") -> Path:
    path = write_site(tmp / "site.toml", state_dir=tmp / "state", tls_port=free_port(), ocs_port=free_port(),
                      http_port=free_port(), start_http=bool(http_section))
    text = path.read_text()
    text = text.replace('[router]\n', f'[router]\n{router}', 1)
    text = text.replace('[http]\n', f'[http]\n{http_section}', 1)
    path.write_text(text)
    return path


def test_default_secrets_refused_on_a_non_loopback_interface(tmp_path):
    path = _site_file(tmp_path, router='listen = "0.0.0.0"\n')
    tls_port = int(path.read_text().split("tls_port = ")[1].split()[0])
    out = sisock("up", str(path))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "cannot start the router" in out.stderr
    assert "router.listen = '0.0.0.0' exposes the TLS port" in out.stderr
    assert "it was generated automatically" in out.stderr
    assert "Traceback" not in out.stderr
    assert not listening_on(tls_port)  # crossbar was never started
    # a weak chosen secret is refused too; a strong one is accepted (checked without starting)
    out = sisock("up", str(path), env={"WAMP_SECRET": "secret", "WAMP_CONSUMER_SECRET": "x" * 40})
    assert out.returncode == 2 and "it is a well-known/published value" in out.stderr, out.stderr[-2000:]


def test_exposed_bridge_without_auth_is_refused(tmp_path):
    path = _site_file(tmp_path, http_section='listen = "0.0.0.0"\n')
    out = sisock("up", str(path))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "cannot start the HTTP bridge" in out.stderr
    assert "http.listen = '0.0.0.0' exposes the Grafana bridge beyond this machine without authentication" \
        in out.stderr
    assert "Traceback" not in out.stderr


def listening_on(port: int) -> set[str]:
    """Addresses with a TCP socket in LISTEN state on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for name, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        for line in Path(name).read_text().splitlines()[1:]:
            parts = line.split()
            addr_hex, port_hex = parts[1].split(":")
            if parts[3] != "0A" or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(addr_hex)
            if family == 4:
                found.add(str(ipaddress.IPv4Address(raw[::-1])))
            else:
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                found.add(str(ipaddress.IPv6Address(words)))
    return found


def test_ocs_port_listens_on_loopback_only(shared_site):
    r = shared_site.cfg.router
    assert listening_on(r.ocs_port) == {"127.0.0.1"}
    assert listening_on(r.tls_port) == {"127.0.0.1"}
    assert listening_on(shared_site.cfg.http.port) == {"127.0.0.1"}
    ss = subprocess.run(["ss", "-ltnH", f"sport = :{r.ocs_port}"], capture_output=True, text=True)
    assert ss.returncode == 0 and f"127.0.0.1:{r.ocs_port}" in ss.stdout, ss.stdout


def test_public_ocs_port_needs_explicit_configuration(tmp_path):
    """``ocs_listen`` beyond loopback is refused unless ``allow_public_ocs = true``; then the
    socket really listens there."""
    path = _site_file(tmp_path, router='ocs_listen = "0.0.0.0"\n')
    out = sisock("up", str(path))
    assert out.returncode == 2
    assert "router.ocs_listen = '0.0.0.0' exposes the OCS port" in out.stderr
    assert "allow_public_ocs = true" in out.stderr, out.stderr[-1500:]

    from ..siteproc import SisockProcess

    path.write_text(path.read_text().replace('ocs_listen = "0.0.0.0"\n',
                                             'ocs_listen = "0.0.0.0"\nallow_public_ocs = true\n'))
    ocs_port = int(path.read_text().split("ocs_port = ")[1].split()[0])
    proc = SisockProcess(["router", str(path)], tmp_path / "router.log")
    try:
        proc.wait_ready("router", timeout=90)
        assert listening_on(ocs_port) == {"0.0.0.0"}
        assert f"OCS 0.0.0.0:{ocs_port}" in proc.log_text()
    finally:
        assert proc.stop() == 0


# -- the bridge's basic auth ----------------------------------------------------------------------


def test_bridge_basic_auth_is_enforced(shared_site):
    url = shared_site.url
    body = query_body(["apex_archive::apex_humidity"])
    wrong = [
        {},
        basic(HTTP_USER, "wrong"),
        basic("admin", HTTP_PASSWORD),
        basic(HTTP_USER, HTTP_PASSWORD + "x"),
        basic(HTTP_USER, ""),
        {"Authorization": "Bearer " + HTTP_PASSWORD},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic"},
    ]
    for path in ("/", "/query", "/search", "/metrics", "/openapi.json", "/annotations", "/variable"):
        for headers in wrong:
            r = http(url + path, None if path in ("/", "/openapi.json") else body, headers=headers)
            assert r.status == 401, (path, headers, r.status)
            assert r.headers["www-authenticate"].startswith("Basic")
            assert r.json["error"] == {"code": "unauthorized", "message": "authentication required"}
            assert r.json["message"] == "authentication required"
            assert HTTP_PASSWORD.encode() not in r.raw
    # preflights carry no credentials (browser mode) and get no data
    r = http(url + "/query", method="OPTIONS", headers={"Origin": "http://grafana:3000"})
    assert r.status == 204 and r.raw == b""
    ok = http(url + "/query", body, headers=basic())
    assert ok.status == 200 and len(ok.json[0]["datapoints"]) == 14 * 24


# -- secrets in logs ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_no_secret_in_any_log(shared_site):
    """Run everything at debug level, make every component work (joins, queries, a refused
    login, a failed basic auth), then grep every log and generated file but the secret
    stores themselves."""
    assert shared_site.cfg.log_level == "debug"
    c = await shared_site.consumer()
    await c.call(node_uri("apex_archive", "get_fields"), 1, 0)
    await c.leave()
    with pytest.raises(SessionRefused):
        await joined(shared_site.cfg, shared_site.cfg.router.wamp_user, "a-wrong-secret-for-the-log")
    await in_thread(http, shared_site.url + "/query", query_body(["apex_archive::apex_humidity"]),
                    headers=basic(HTTP_USER, "bad"))
    assert (await in_thread(shared_site.post, "/search", {"target": ""})).status == 200
    await sleep(1.0)  # let the children's log lines reach up.log
    secrets = {k: v for k, v in shared_site.secrets.items()}
    assert all(len(v) >= 16 for v in secrets.values())
    state = shared_site.cfg.state_dir
    holders = {state / "secrets.toml", state / "crossbar" / "config.json"}  # where they must be
    checked = [shared_site.proc.log_path]
    for p in state.rglob("*"):
        if p.is_file() and p not in holders and p.suffix not in (".pem", ".key", ".sqlite"):
            checked.append(p)
    log = shared_site.proc.log_text()
    assert "#debug]" in log and "router: " in log and "[http]" in log and "[node apex_archive]" in log
    leaks = [(str(p), name) for p in checked for name, value in secrets.items()
             if value in p.read_text(errors="replace")]
    assert leaks == [], leaks
    # the secret stores exist and are private
    for p in holders:
        assert p.exists() and (p.stat().st_mode & 0o077) == 0, p
    # the command line of no process carries them either
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit():
            try:
                cmd = (pid_dir / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            assert not any(v in cmd for v in secrets.values()), pid_dir.name
