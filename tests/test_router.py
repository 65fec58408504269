"""Router: secrets, TLS material, crossbar configuration, and a real crossbar (integration)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import stat
import threading
import time
from pathlib import Path

import attrs
import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.logger import formatEvent

from sisock_core import router as R
from sisock_core import tls as T
from sisock_core.config import RouterConfig, SiteConfig
from tests.helpers_router import (
    SessionRefused,
    free_port,
    in_reactor,
    log_events,  # noqa: F401 (a fixture)
    open_session,
    site_config,
)

STRONG_SERVER = "s" * 8 + "Kq3nX9vZpL2wR7tY"
STRONG_CONSUMER = "c" * 8 + "Hb4mW8sJdF6gN1xQ"


def cfg_with(tmp_path: Path, **router) -> SiteConfig:
    return SiteConfig(path="<test>", state_dir=tmp_path / "state", router=RouterConfig(**router))


def all_text(events) -> str:
    return "\n".join(
        (formatEvent(e) or "") + " " + repr({k: v for k, v in e.items() if not k.startswith("log_")})
        for e in list(events)
    )


# ============================================================================================
# Secrets
# ============================================================================================


def test_secrets_from_env(tmp_path):
    cfg = cfg_with(tmp_path)
    s = R.load_secrets(cfg, env={"WAMP_SECRET": "srv", "WAMP_CONSUMER_SECRET": "con"})
    assert (s.server, s.consumer) == ("srv", "con")
    assert s.source_of("server") == "env" and s.source_of("consumer") == "env"
    assert not R.generated_secrets_path(cfg).exists()


def test_secrets_generated_on_first_run_and_reused(tmp_path, log_events):
    cfg = cfg_with(tmp_path)
    s1 = R.load_secrets(cfg, env={})
    path = R.generated_secrets_path(cfg)
    assert path == cfg.state_dir / "secrets.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(s1.server) >= 40 and len(s1.consumer) >= 40 and s1.server != s1.consumer
    assert s1.source_of("server") == "generated" == s1.source_of("consumer")
    s2 = R.load_secrets(cfg, env={})
    assert (s2.server, s2.consumer) == (s1.server, s1.consumer)
    # no temporary files left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["secrets.toml"]
    # never in a repr nor in a log event
    assert s1.server not in repr(s1) and s1.consumer not in repr(s1)
    text = all_text(log_events)
    assert s1.server not in text and s1.consumer not in text


def test_secrets_not_created_when_create_false(tmp_path):
    cfg = cfg_with(tmp_path)
    with pytest.raises(R.SecretsError, match="WAMP_SECRET"):
        R.load_secrets(cfg, env={}, create=False)
    assert not R.generated_secrets_path(cfg).exists()


def test_secrets_empty_env_counts_as_unset(tmp_path):
    cfg = cfg_with(tmp_path)
    s = R.load_secrets(cfg, env={"WAMP_SECRET": "", "WAMP_CONSUMER_SECRET": "con"})
    assert s.source_of("server") == "generated" and s.source_of("consumer") == "env"
    assert s.consumer == "con" and s.server


def write_private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_secrets_file_and_env_precedence(tmp_path):
    f = write_private(tmp_path / "wamp.toml", 'server = "from-file-s"\nconsumer = "from-file-c"\n')
    cfg = cfg_with(tmp_path, secrets_file=str(f))
    s = R.load_secrets(cfg, env={})
    assert (s.server, s.consumer) == ("from-file-s", "from-file-c")
    assert s.source_of("server") == "file"
    s = R.load_secrets(cfg, env={"WAMP_SECRET": "from-env"})
    assert (s.server, s.consumer) == ("from-env", "from-file-c")
    assert s.source_of("server") == "env" and s.source_of("consumer") == "file"
    assert not R.generated_secrets_path(cfg).exists()  # a configured file: nothing generated


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_secrets_file_readable_by_others_is_refused(tmp_path, mode):
    f = write_private(tmp_path / "wamp.toml", 'server = "a"\nconsumer = "b"\n', mode)
    cfg = cfg_with(tmp_path, secrets_file=str(f))
    with pytest.raises(R.RouterSecurityError, match="chmod 600"):
        R.load_secrets(cfg, env={})


def test_generated_secrets_file_readable_by_others_is_refused(tmp_path):
    cfg = cfg_with(tmp_path)
    R.load_secrets(cfg, env={})
    os.chmod(R.generated_secrets_path(cfg), 0o644)
    with pytest.raises(R.RouterSecurityError, match="group or others"):
        R.load_secrets(cfg, env={})


def test_secrets_file_problems(tmp_path):
    cfg = cfg_with(tmp_path, secrets_file=str(tmp_path / "missing.toml"))
    with pytest.raises(R.SecretsError, match="does not exist"):
        R.load_secrets(cfg, env={})
    f = write_private(tmp_path / "partial.toml", 'server = "only"\n')
    cfg = cfg_with(tmp_path, secrets_file=str(f))
    with pytest.raises(R.SecretsError, match="no 'consumer' entry"):
        R.load_secrets(cfg, env={})
    # ... unless the environment provides it
    assert R.load_secrets(cfg, env={"WAMP_CONSUMER_SECRET": "c"}).consumer == "c"
    f = write_private(tmp_path / "typo.toml", 'server = "a"\nconsumer = "b"\nservr = "c"\n')
    with pytest.raises(R.SecretsError, match="unknown key"):
        R.load_secrets(cfg_with(tmp_path, secrets_file=str(f)), env={})
    f = write_private(tmp_path / "bad.toml", "server = \n")
    with pytest.raises(R.SecretsError, match="invalid TOML"):
        R.load_secrets(cfg_with(tmp_path, secrets_file=str(f)), env={})


def test_generation_race_yields_one_file(tmp_path):
    cfg = cfg_with(tmp_path)
    results, errors = [], []

    def load():
        try:
            results.append(R.load_secrets(cfg, env={}))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({(s.server, s.consumer) for s in results}) == 1


# ============================================================================================
# Exposure checks
# ============================================================================================


def test_generated_secrets_fine_on_loopback(tmp_path):
    cfg = cfg_with(tmp_path)
    R.check_secrets_for_interfaces(cfg, R.load_secrets(cfg, env={}))


def test_generated_secrets_refused_on_public_interface(tmp_path):
    cfg = cfg_with(tmp_path, listen="0.0.0.0")
    secrets = R.load_secrets(cfg, env={})
    with pytest.raises(R.RouterSecurityError) as e:
        R.check_secrets_for_interfaces(cfg, secrets)
    msg = str(e.value)
    assert "0.0.0.0" in msg and "generated automatically" in msg
    assert "'server'" in msg and "'simonsobs'" in msg
    assert secrets.server not in msg


@pytest.mark.parametrize(
    "weak, why",
    [
        ("", "empty"),
        ("short-secret", "shorter than 16"),
        ("changeme", "well-known"),
        ("secret", "well-known"),
        ("PASSWORD", "well-known"),
        ("Q5#x4%HCmgTsS!Pj", "well-known"),  # published by the original sisock
    ],
)
def test_weak_secrets_refused_on_public_interface(tmp_path, weak, why):
    cfg = cfg_with(tmp_path, listen="0.0.0.0")
    secrets = R.Secrets(server=weak, consumer=STRONG_CONSUMER, source="env")
    with pytest.raises(R.RouterSecurityError, match=why):
        R.check_secrets_for_interfaces(cfg, secrets)
    # the same secrets are accepted on loopback
    R.check_secrets_for_interfaces(cfg_with(tmp_path), secrets)


def test_strong_chosen_secrets_accepted_on_public_interface(tmp_path):
    cfg = cfg_with(tmp_path, listen="0.0.0.0")
    s = R.load_secrets(cfg, env={"WAMP_SECRET": STRONG_SERVER, "WAMP_CONSUMER_SECRET": STRONG_CONSUMER})
    R.check_secrets_for_interfaces(cfg, s)


def test_public_ocs_port_needs_explicit_permission(tmp_path):
    cfg = cfg_with(tmp_path, ocs_listen="0.0.0.0")
    s = R.Secrets(server=STRONG_SERVER, consumer=STRONG_CONSUMER, source="env")
    with pytest.raises(R.RouterSecurityError, match="anyone reaching it can register"):
        R.check_secrets_for_interfaces(cfg, s)
    R.check_secrets_for_interfaces(cfg, s, allow_public_ocs=True)


def test_router_process_refuses_before_spawning(tmp_path):
    cfg = cfg_with(tmp_path, listen="0.0.0.0")
    secrets = R.load_secrets(cfg, env={})

    class NoReactor:
        def spawnProcess(self, *a, **kw):  # pragma: no cover - must not happen
            raise AssertionError("spawned despite the refusal")

    d = R.RouterProcess(cfg, secrets, NoReactor()).start()
    failures = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(R.RouterSecurityError)
    assert not (cfg.state_dir / "crossbar" / "config.json").exists()


# ============================================================================================
# TLS
# ============================================================================================


def test_tls_paths_defaults_and_configured(tmp_path):
    cfg = cfg_with(tmp_path)
    cert, key, ca = T.tls_paths(cfg)
    assert cert == cfg.state_dir / "tls" / "server_cert.pem"
    assert key == cfg.state_dir / "tls" / "server_key.pem"
    assert ca == cert
    cfg = cfg_with(tmp_path, tls_cert="/x/c.pem", tls_key="/x/k.pem", ca_cert="/x/ca.pem")
    assert T.tls_paths(cfg) == (Path("/x/c.pem"), Path("/x/k.pem"), Path("/x/ca.pem"))
    assert T.tls_paths(cfg_with(tmp_path, tls_cert="/x/c.pem", tls_key="/x/k.pem"))[2] == Path("/x/c.pem")


def test_ensure_certificate(tmp_path):
    from cryptography import x509

    cert_path, key_path = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    assert T.ensure_certificate(cert_path, key_path, ["sisock.example.org", "10.1.2.3"]) is True
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "sisock.example.org"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"), ipaddress.ip_address("10.1.2.3"),
    }
    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert validity >= datetime.timedelta(days=3650)
    assert cert.not_valid_before_utc <= datetime.datetime.now(datetime.timezone.utc)
    # the key matches the certificate
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    # idempotent
    before = cert_path.read_bytes()
    assert T.ensure_certificate(cert_path, key_path, ["other"]) is False
    assert cert_path.read_bytes() == before
    # half a pair is an error, not silently replaced
    cert_path.unlink()
    with pytest.raises(T.TLSConfigError, match="exists but"):
        T.ensure_certificate(cert_path, key_path)


def test_generated_certificate_passes_strict_python_verification(tmp_path):
    """A Python client with X509 strict checks (default in Python >= 3.13) accepts it."""
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    T.ensure_certificate(cert_path, key_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as s:
                s.sendall(b"ok")
        except OSError:
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    ctx = ssl.create_default_context(cafile=str(cert_path))
    ctx.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert s.recv(2) == b"ok"
    t.join(5)
    listener.close()


def test_ensure_site_certificate(tmp_path):
    cfg = cfg_with(tmp_path, host="sisock.example.org", listen="0.0.0.0")
    cert, key, ca = T.ensure_site_certificate(cfg)
    assert cert.exists() and key.exists() and ca == cert
    assert T.site_hostnames(cfg) == ["sisock.example.org"]
    bad = cfg_with(tmp_path, tls_cert=str(tmp_path / "nope.pem"), tls_key=str(tmp_path / "nope.key"))
    with pytest.raises(T.TLSConfigError, match="not found"):
        T.ensure_site_certificate(bad)


def test_client_tls_options(tmp_path):
    from twisted.internet.interfaces import IOpenSSLClientConnectionCreator

    cfg = cfg_with(tmp_path)
    with pytest.raises(T.TLSConfigError, match="CA certificate"):
        T.client_tls_options(cfg)
    T.ensure_site_certificate(cfg)
    assert IOpenSSLClientConnectionCreator.providedBy(T.client_tls_options(cfg))


# ============================================================================================
# Crossbar configuration
# ============================================================================================


def test_crossbar_config_shape(tmp_path):
    cfg = cfg_with(tmp_path, tls_port=18080, ocs_port=18001, wamp_user="nodes")
    s = R.Secrets(server=STRONG_SERVER, consumer=STRONG_CONSUMER, source="env")
    c = R.crossbar_config(cfg, s)
    assert c["version"] == 2
    (worker,) = c["workers"]
    assert worker["type"] == "router"
    (realm,) = worker["realms"]
    assert realm["name"] == "test_realm"
    assert realm["options"]["enable_meta_api"] is True
    roles = {r["name"]: r["permissions"] for r in realm["roles"]}
    assert set(roles) == {"server", "consumer", "iocs_agent", "iocs_controller"}

    def allow(role):
        (perm,) = roles[role]
        return perm["uri"], perm["match"], perm["allow"]

    everything = {"call": True, "register": True, "publish": True, "subscribe": True}
    assert allow("server") == ("", "prefix", everything)
    assert roles["server"][0]["disclose"]["caller"] is True
    assert allow("consumer") == (
        "org.simonsobservatory.consumer", "prefix",
        {"call": True, "register": False, "publish": False, "subscribe": True},
    )
    assert allow("iocs_agent") == ("observatory.", "prefix", everything)
    assert allow("iocs_controller") == (
        "observatory.", "prefix", {"call": True, "register": False, "publish": True, "subscribe": True},
    )

    tls_t, ocs_t = worker["transports"]
    assert tls_t["endpoint"]["port"] == 18080 and tls_t["endpoint"]["interface"] == "127.0.0.1"
    cert, key, _ = T.tls_paths(cfg)
    assert tls_t["endpoint"]["tls"] == {"certificate": str(cert.resolve()), "key": str(key.resolve()),
                                        "ciphers": R.TLS_CIPHERS}
    assert "DHE-" not in R.TLS_CIPHERS.replace("ECDHE-", "")  # no suite needs a DH parameter file
    for path in ("/", "ws"):
        ws = tls_t["paths"][path]
        assert ws["type"] == "websocket"
        assert set(ws["serializers"]) == {"json", "msgpack", "cbor"}
        assert list(ws["auth"]) == ["wampcra"]  # no anonymous, no other method
        assert ws["auth"]["wampcra"]["users"] == {
            "nodes": {"secret": STRONG_SERVER, "role": "server"},
            "simonsobs": {"secret": STRONG_CONSUMER, "role": "consumer"},
        }
        assert ws["options"]["auto_ping_size"] >= 12
    assert ocs_t["endpoint"] == {"type": "tcp", "port": 18001, "interface": "127.0.0.1", "version": 4}
    assert "tls" not in ocs_t["endpoint"]
    for path in ("/", "ws"):
        assert ocs_t["paths"][path]["auth"] == {"anonymous": {"type": "static", "role": "iocs_agent"}}
    assert ocs_t["paths"]["call"]["role"] == "iocs_controller"


def test_crossbar_config_passes_crossbar_schema(tmp_path):
    from crossbar.personality import Personality

    s = R.Secrets(server=STRONG_SERVER, consumer=STRONG_CONSUMER, source="env")
    for router in [{}, {"listen": "::1", "ocs_listen": "localhost"}, {"listen": "0.0.0.0"}]:
        Personality.check_config(Personality, R.crossbar_config(cfg_with(tmp_path, **router), s))


def test_crossbar_config_endpoints(tmp_path):
    s = R.Secrets(server=STRONG_SERVER, consumer=STRONG_CONSUMER, source="env")
    c = R.crossbar_config(cfg_with(tmp_path, listen="::1", ocs_listen="localhost"), s)
    tls_t, ocs_t = c["workers"][0]["transports"]
    assert (tls_t["endpoint"]["interface"], tls_t["endpoint"]["version"]) == ("::1", 6)
    assert (ocs_t["endpoint"]["interface"], ocs_t["endpoint"]["version"]) == ("127.0.0.1", 4)
    with pytest.raises(ValueError, match="IP address"):
        R.crossbar_config(cfg_with(tmp_path, listen="myhost"), s)


def test_write_crossbar_config_is_private(tmp_path):
    cfg = cfg_with(tmp_path)
    s = R.Secrets(server=STRONG_SERVER, consumer=STRONG_CONSUMER, source="env")
    path = R.write_crossbar_config(cfg, s)
    assert path == cfg.state_dir / "crossbar" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == R.crossbar_config(cfg, s)
    R.write_crossbar_config(cfg, s)  # rewriting works, leaves no temporary file
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json"]


def test_command_uses_this_interpreter(tmp_path):
    import sys

    cfg = cfg_with(tmp_path)
    rp = R.RouterProcess(cfg, R.Secrets("a", "b", "env"), reactor=object())
    cmd = rp.command()
    assert cmd[0] == sys.executable
    assert cmd[cmd.index("--cbdir") + 1] == str(cfg.state_dir / "crossbar")
    assert cmd[cmd.index("--config") + 1] == "config.json"
    assert "start" in cmd


# ============================================================================================
# Integration: a real crossbar
# ============================================================================================


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (Linux /proc)."""
    found = set()
    for name, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(addr_hex)
            if family == 4:
                found.add(str(ipaddress.IPv4Address(raw[::-1])))
            else:
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.add(str(ipaddress.IPv6Address(words)))
    return found


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


@attrs.define
class Running:
    cfg: SiteConfig
    secrets: R.Secrets
    process: R.RouterProcess
    ready_seconds: float


#: crossbar start-to-ready times measured by the tests below (printed at the end of the run:
#: tests/conftest.py)
START_TIMES: list[float] = []


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    """One real crossbar for the module (a plain fixture: pytest-twisted's blockon)."""
    cfg = site_config(tmp_path_factory.mktemp("router") / "state")
    secrets = R.load_secrets(cfg, env={})
    process = R.RouterProcess(cfg, secrets, ready_timeout=60)
    in_reactor(process.start, timeout=90)
    START_TIMES.append(process.ready_seconds)
    print(f"\ncrossbar start-to-ready: {process.ready_seconds:.2f} s")
    yield Running(cfg, secrets, process, process.ready_seconds)
    in_reactor(process.stop, timeout=30)


def server(r: Running, **kw):
    return open_session(r.cfg, authid=r.cfg.router.wamp_user, secret=r.secrets.server, **kw)


def consumer(r: Running, **kw):
    return open_session(r.cfg, authid="simonsobs", secret=r.secrets.consumer, **kw)


async def expect_denied(coro) -> str:
    from autobahn.wamp.exception import ApplicationError

    try:
        await coro
    except ApplicationError as e:
        return e.error
    raise AssertionError("the router allowed it")


def _ack():
    from autobahn.wamp.types import PublishOptions

    return PublishOptions(acknowledge=True)


def _reactor():
    from tests.helpers_router import reactor

    return reactor()


async def within(d: defer.Deferred, timeout: float = 10):
    return await d.addTimeout(timeout, _reactor())


@pytest.mark.integration
def test_router_ready_and_private_files(router):
    assert router.process.running
    assert 0 < router.ready_seconds < 30
    cbdir = router.cfg.state_dir / "crossbar"
    assert stat.S_IMODE((cbdir / "config.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(router.cfg.state_dir.joinpath("tls", "server_key.pem").stat().st_mode) == 0o600


@pytest.mark.integration
@pytest.mark.parametrize("serializer", ["msgpack", "json", "cbor"])
@pytest.mark.parametrize("path", ["/ws", "/"])
@pytest_twisted.ensureDeferred
async def test_server_register_and_call(router, serializer, path):
    a = await server(router, serializer=serializer, path=path)
    b = await server(router, serializer=serializer, path=path)
    uri = f"org.simonsobservatory.consumer.t_{serializer}_{len(path)}.get_fields"
    reg = await a.register(
        lambda start, end: [{"f": {"type": "number"}}, {"start": start, "end": end}], uri
    )
    try:
        result = await b.call(uri, 1, 0)
    finally:
        await reg.unregister()
        await a.leave()
        await b.leave()
    assert result == [{"f": {"type": "number"}}, {"start": 1, "end": 0}]


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_wrong_or_missing_credentials_refused_on_tls_port(router):
    async def attempt(**kw):
        try:
            s = await open_session(router.cfg, **kw)
        except SessionRefused as e:
            return e.reason
        await s.leave()
        return "joined"

    user = router.cfg.router.wamp_user
    assert (await attempt(authid=user, secret="wrong-secret-xxxxxxxx")).startswith("wamp.error.")
    assert (await attempt(authid="simonsobs", secret=router.secrets.server)).startswith("wamp.error.")
    assert (await attempt(authid="nobody", secret="x")).startswith("wamp.error.")
    assert (await attempt()).startswith("wamp.error.")  # anonymous


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_consumer_permissions(router):
    node = await server(router)
    cons = await consumer(router, serializer="json")
    out = {}
    reg = await node.register(lambda start, end: ["fields", start, end],
                              "org.simonsobservatory.consumer.x.get_fields")
    try:
        out["call"] = await cons.call("org.simonsobservatory.consumer.x.get_fields", 1, 0)
        out["register_node_proc"] = await expect_denied(
            cons.register(lambda *a: None, "org.simonsobservatory.consumer.x.get_data"))
        out["register_hub_proc"] = await expect_denied(
            cons.register(lambda *a: None, "org.simonsobservatory.data_node.add"))
        out["call_hub_add"] = await expect_denied(
            cons.call("org.simonsobservatory.data_node.add", "x", "fake", 1))
        out["publish"] = await expect_denied(cons.publish(
            "org.simonsobservatory.consumer.data_node_added", {"name": "x", "description": "fake"},
            options=_ack()))
        out["meta"] = await expect_denied(cons.call("wamp.session.list"))
        # a consumer may follow the hub's announcements
        got = defer.Deferred()
        await cons.subscribe(lambda ev: got.callback(ev), "org.simonsobservatory.consumer.data_node_added")
        await node.publish("org.simonsobservatory.consumer.data_node_added",
                           {"name": "x", "description": "d"}, options=_ack())
        out["event"] = await within(got)
    finally:
        await reg.unregister()
        await cons.leave()
        await node.leave()
    assert out["call"] == ["fields", 1, 0]
    for key in ("register_node_proc", "register_hub_proc", "call_hub_add", "publish", "meta"):
        assert out[key] == "wamp.error.not_authorized", key
    assert out["event"] == {"name": "x", "description": "d"}


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_server_meta_api_and_caller_disclosure(router):
    from autobahn.wamp.types import RegisterOptions

    hub = await server(router)
    left = defer.Deferred()
    await hub.subscribe(lambda sid, *a: left.callback(sid) if not left.called else None,
                        "wamp.session.on_leave")
    node = await server(router)
    node_session = node.details.session
    seen_caller = []

    def proc(details=None):
        seen_caller.append(details.caller)
        return "ok"

    uri = "org.simonsobservatory.consumer.meta_test.get_fields"
    await node.register(proc, uri, options=RegisterOptions(details_arg="details"))
    reg_id = await hub.call("wamp.registration.lookup", uri)
    callees = await hub.call("wamp.registration.list_callees", reg_id)
    assert await hub.call(uri) == "ok"
    await node.leave()
    left_sid = await within(left)
    await hub.leave()
    assert reg_id is not None and callees == [node_session]
    assert left_sid == node_session
    assert seen_caller == [hub.details.session]


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_ocs_port_anonymous_publish_reaches_server(router):
    srv = await server(router)
    got = defer.Deferred()
    await srv.subscribe(lambda *a, **kw: got.callback((a, kw)), "observatory.a.feeds.b")
    agent = await open_session(router.cfg, ocs=True, serializer="json")
    try:
        assert agent.details.authrole == "iocs_agent"
        await agent.publish("observatory.a.feeds.b", {"block": 1}, "feed", options=_ack())
        assert await within(got) == (({"block": 1}, "feed"), {})
        assert await expect_denied(
            agent.call("org.simonsobservatory.consumer.get_data_node")) == "wamp.error.not_authorized"
        assert await expect_denied(
            agent.register(lambda *a: True, "org.simonsobservatory.data_node.add")
        ) == "wamp.error.not_authorized"
    finally:
        await agent.leave()
        await srv.leave()


@pytest.mark.integration
def test_ports_bound_to_loopback_only(router):
    r = router.cfg.router
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc/net/tcp")
    assert listening_addresses(r.ocs_port) == {"127.0.0.1"}
    assert listening_addresses(r.tls_port) == {"127.0.0.1"}
    # bound to 127.0.0.1 exactly, not the whole loopback range
    assert not port_open(r.ocs_port, "127.0.0.2")


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_wait_until_joinable_fails_fast_on_wrong_secret(router):
    wrong = R.Secrets(server="not-the-secret-at-all", consumer="x", source="env")
    t0 = time.monotonic()
    with pytest.raises(R.RouterStartError, match="refused user"):
        await R.wait_until_joinable(router.cfg, wrong, 30, reactor=_reactor())
    assert time.monotonic() - t0 < 10
    # and the right one joins at once
    assert await R.wait_until_joinable(router.cfg, router.secrets, 30) < 5


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_router_output_forwarded_then_crash(tmp_path, log_events):
    cfg = site_config(tmp_path / "state")
    secrets = R.load_secrets(cfg, env={})
    crashes = []
    # crossbar's debug output prints the secrets of its configuration: they must be masked
    process = R.RouterProcess(cfg, secrets, on_crash=crashes.append, loglevel="debug")
    START_TIMES.append(await within(process.start(), 90))
    assert port_open(cfg.router.tls_port)
    router_lines = [e for e in list(log_events) if (formatEvent(e) or "").startswith("router: ")]
    assert any(e["log_level"].name == "debug" for e in router_lines)
    text = all_text(log_events)
    assert "<redacted>" in text
    assert secrets.server not in text and secrets.consumer not in text
    assert secrets.server not in process.output_tail()

    # an unexpected exit: crossbar killed behind our back
    os.kill(process.pid, signal.SIGKILL)
    exit_info = await within(process.crashed, 20)
    assert exit_info.signal == signal.SIGKILL
    assert crashes == [exit_info]
    assert not process.running
    # its router worker went with it (whole process group); the worker is not our child,
    # so its port is what there is to watch
    from twisted.internet import threads

    from sisock_core.testing import wait_until as wait_for

    await threads.deferToThread(wait_for, lambda: not port_open(cfg.router.tls_port), 10, 0.05,
                                "the router worker's port to close")
    assert await process.stop() == exit_info  # stopping a dead router is fine


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_router_stop(tmp_path):
    cfg = site_config(tmp_path / "state")
    process = R.RouterProcess(cfg, R.load_secrets(cfg, env={}), stop_grace=15)
    START_TIMES.append(await within(process.start(), 90))
    crashed = []
    process.crashed.addCallback(crashed.append)
    t0 = time.monotonic()
    exit_info = await within(process.stop(), 30)
    assert time.monotonic() - t0 < 15  # SIGTERM was enough
    assert isinstance(exit_info, R.RouterExit) and not process.running
    assert not crashed
    assert not port_open(cfg.router.tls_port) and not port_open(cfg.router.ocs_port)


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_router_port_taken_by_another_program(tmp_path):
    """Port taken: the readiness probe sees at once that what listens there is not the
    crossbar it started (it speaks no TLS to it), and start() says who it is."""
    blocker = socket.create_server(("127.0.0.1", 0))
    try:
        cfg = site_config(tmp_path / "state", tls_port=blocker.getsockname()[1], ocs_port=free_port())
        process = R.RouterProcess(cfg, R.load_secrets(cfg, env={}))
        with pytest.raises(R.RouterRefused) as e:
            await within(process.start(), 90)
        assert str(e.value).startswith(f"127.0.0.1:{cfg.router.tls_port} answers, but it is not our "
                                       f"router (crossbar, pid {process.pid}): pid {os.getpid()} (")
        assert not process.running
    finally:
        blocker.close()


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_router_exits_before_ready(tmp_path):
    """Crossbar cannot listen (its TLS port is bound, not listening, by a socket without
    SO_REUSEADDR: nothing answers the probe): start() says so with crossbar's own words."""
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    try:
        cfg = site_config(tmp_path / "state", tls_port=blocker.getsockname()[1], ocs_port=free_port())
        process = R.RouterProcess(cfg, R.load_secrets(cfg, env={}))
        with pytest.raises(R.RouterStartError) as e:
            await within(process.start(), 90)
        assert "exited before it was ready" in str(e.value)
        assert str(cfg.router.tls_port) in str(e.value)  # crossbar's output names the port
        assert not process.running
    finally:
        blocker.close()


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_router_ready_timeout(tmp_path):
    cfg = site_config(tmp_path / "state")
    process = R.RouterProcess(cfg, R.load_secrets(cfg, env={}), ready_timeout=0.5)
    with pytest.raises(R.RouterStartError) as e:
        await within(process.start(), 60)
    assert "not joinable" in str(e.value) and "crossbar's last output" in str(e.value)
    assert not process.running  # stopped after the failure
    assert not port_open(cfg.router.ocs_port)


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_wait_until_joinable_reports_untrusted_certificate(router, tmp_path):
    other_cert, other_key = tmp_path / "other_cert.pem", tmp_path / "other_key.pem"
    T.ensure_certificate(other_cert, other_key)
    cfg = attrs.evolve(router.cfg, router=attrs.evolve(router.cfg.router, ca_cert=str(other_cert)))
    t0 = time.monotonic()
    with pytest.raises(R.RouterStartError, match="certificate verify failed"):
        await R.wait_until_joinable(cfg, router.secrets, 1.5)
    assert time.monotonic() - t0 < 5


PARENT_SCRIPT = """
import sys
from pathlib import Path
from twisted.internet import defer, task
from sisock_core.router import RouterProcess, load_secrets
from tests.helpers_router import site_config

async def main(reactor):
    cfg = site_config(Path(sys.argv[1]))
    router = RouterProcess(cfg, load_secrets(cfg, env={}), reactor)
    await router.start()
    print("READY", router.pid, cfg.router.tls_port, flush=True)
    await defer.Deferred()  # forever

task.react(lambda r: defer.Deferred.fromCoroutine(main(r)))
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


@pytest.mark.integration
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux only (PR_SET_PDEATHSIG)")
def test_router_does_not_outlive_a_killed_parent(tmp_path):
    import subprocess
    import sys

    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        line = parent.stdout.readline().split()
        assert line and line[0] == "READY", "the parent did not start the router"
        crossbar_pid, port = int(line[1]), int(line[2])
        assert port_open(port)
        parent.kill()
        parent.wait(10)
        from sisock_core.testing import wait_until as wait_for  # (blocking; this test is not async)

        try:
            wait_for(lambda: _gone(crossbar_pid) and not port_open(port), timeout=20, interval=0.1,
                     what="crossbar and its worker to go with their parent")
        except AssertionError:
            pass  # (the two checks below say which outlived it)
        assert _gone(crossbar_pid), "crossbar outlived its parent"
        assert not port_open(port), "crossbar's worker outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
