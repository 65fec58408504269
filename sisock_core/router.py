"""The crossbar WAMP router: secrets, node configuration, and running it as a child process.

What a site gets (README, "Wire compatibility"):

- a TLS WebSocket (``router.listen:router.tls_port``, paths ``/`` and ``/ws``) with WAMP-CRA
  only, for two users: ``router.wamp_user`` (role ``server``: nodes and the hub) and
  ``simonsobs`` (role ``consumer``: may only call and subscribe under
  ``org.simonsobservatory.consumer``);
- a plain WebSocket for OCS agents (``router.ocs_listen:router.ocs_port``, paths ``/`` and
  ``/ws``, plus the HTTP caller bridge at ``/call``), anonymous, role ``iocs_agent``
  (everything under ``observatory.``).  It stays on loopback unless explicitly allowed.

Secrets come from the environment, a secrets file, or a file generated on first run
(:func:`load_secrets`); :func:`check_secrets_for_interfaces` refuses to expose the router
with a weak or auto-generated secret.  :class:`RouterProcess` writes the crossbar node
configuration (:func:`crossbar_config`), starts crossbar and tells when a session can join.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import os
import secrets as _secrets
import signal
import stat
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping

import attrs
from twisted.internet import defer, error, protocol, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from sisock_core.config import SiteConfig
from sisock_core.tls import client_tls_options, ensure_site_certificate, tls_paths

log = Logger()

#: WAMP-CRA identity of consumers (the Grafana bridge and old sisock clients)
CONSUMER_USER = "simonsobs"
#: roles, as in the original sisock/OCS crossbar configurations
ROLE_SERVER = "server"
ROLE_CONSUMER = "consumer"
ROLE_OCS_AGENT = "iocs_agent"
ROLE_OCS_CONTROLLER = "iocs_controller"
CONSUMER_PREFIX = "org.simonsobservatory.consumer"
OCS_PREFIX = "observatory."

#: environment variables holding the secrets
ENV_SERVER_SECRET = "WAMP_SECRET"
ENV_CONSUMER_SECRET = "WAMP_CONSUMER_SECRET"
#: name of the secrets file generated under the state directory
GENERATED_SECRETS_NAME = "secrets.toml"

#: shortest secret accepted on a non-loopback interface
MIN_SECRET_LENGTH = 16
#: secrets nobody should use on a reachable router: common placeholders, and the ones that
#: were published in the original sisock source code
WELL_KNOWN_SECRETS = frozenset(
    {
        "secret",
        "changeme",
        "change-me",
        "password",
        "server",
        "simonsobs",
        "Q5#x4%HCmgTsS!Pj",  # original sisock WAMP_SECRET (user "server")
        "yW4V2T^bPD&rGFwy",  # original sisock consumer secret (user "simonsobs")
    }
)

#: largest WAMP message the router accepts (get_data replies can be big)
MAX_MESSAGE_SIZE = 64 * 1024 * 1024
SERIALIZERS = ["json", "msgpack", "cbor"]


class SecretsError(RuntimeError):
    """The WAMP-CRA secrets cannot be found or read."""


class RouterSecurityError(RuntimeError):
    """Starting the router this way would expose it; the message says why and what to do."""


class RouterStartError(RuntimeError):
    """Crossbar did not become ready (exited, or timed out); the message has its last output."""


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Secrets:
    """The two WAMP-CRA secrets, and where they came from.

    ``source`` is for humans and for :func:`check_secrets_for_interfaces`: one entry per
    secret, ``"server: env WAMP_SECRET; consumer: generated /path/secrets.toml"``; the kinds
    are ``env``, ``file`` and ``generated``.  The secret values never appear in a repr.
    """

    server: str = attrs.field(repr=False)
    consumer: str = attrs.field(repr=False)
    source: str

    def source_of(self, which: str) -> str:
        """Kind of source (``env``, ``file``, ``generated``, or ``unknown``) of ``which``
        (``"server"`` or ``"consumer"``)."""
        for part in self.source.split(";"):
            part = part.strip()
            name, sep, rest = part.partition(":")
            if sep and name.strip() in ("server", "consumer"):
                if name.strip() != which:
                    continue
                part = rest.strip()
            kind = part.split(" ", 1)[0]
            if kind in ("env", "file", "generated"):
                return kind
        return "unknown"


def generated_secrets_path(cfg: SiteConfig) -> Path:
    """``<state_dir>/secrets.toml``: where :func:`load_secrets` generates secrets."""
    return Path(cfg.state_dir) / GENERATED_SECRETS_NAME


def _check_private(path: Path) -> None:
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise SecretsError(f"secrets file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise RouterSecurityError(
            f"secrets file {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); anyone able to read it can impersonate "
            f"data nodes. Run: chmod 600 {path}"
        )


def _read_secrets_toml(path: Path) -> dict[str, str]:
    _check_private(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise SecretsError(f"secrets file {path}: invalid TOML: {e}") from None
    for key in ("server", "consumer"):
        if key in data and not isinstance(data[key], str):
            raise SecretsError(f"secrets file {path}: {key!r} must be a string")
    extra = sorted(set(data) - {"server", "consumer"})
    if extra:
        raise SecretsError(
            f"secrets file {path}: unknown key(s) {', '.join(extra)} "
            "(expected: server, consumer)"
        )
    return data


def _create_generated(path: Path) -> None:
    """Write fresh random secrets to ``path`` (mode 0600) unless it exists (atomically: if
    two processes race, one file wins and both read it)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = (
        "# WAMP-CRA secrets generated by sisock on first run. Keep this file private.\n"
        "# server: user of nodes and the hub; consumer: user 'simonsobs' (Grafana bridge).\n"
        f'server = "{_secrets.token_urlsafe(32)}"\n'
        f'consumer = "{_secrets.token_urlsafe(32)}"\n'
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secrets-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return
        log.info("generated WAMP-CRA secrets in {path}", path=str(path))
    finally:
        os.unlink(tmp)


def load_secrets(
    cfg: SiteConfig, env: Mapping[str, str] = os.environ, create: bool = True
) -> Secrets:
    """Find the WAMP-CRA secrets of the ``server`` and ``consumer`` users.

    For each secret, in order: the environment (``WAMP_SECRET`` for the server user,
    ``WAMP_CONSUMER_SECRET`` for ``simonsobs``; an empty variable counts as unset); else
    ``router.secrets_file`` (TOML with ``server = "..."`` and ``consumer = "..."``, which
    must not be accessible by group or others); else ``<state_dir>/secrets.toml``, generated
    with random secrets on first run when ``create`` is true.

    Raises :class:`SecretsError` (missing/invalid) or :class:`RouterSecurityError` (a file
    readable by others).
    """
    env_names = {"server": ENV_SERVER_SECRET, "consumer": ENV_CONSUMER_SECRET}
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for key, var in env_names.items():
        if env.get(var):
            values[key] = env[var]
            sources[key] = f"env {var}"
    missing = [k for k in env_names if k not in values]
    if missing:
        if cfg.router.secrets_file:
            path = Path(cfg.router.secrets_file).expanduser()
            kind = "file"
            if not path.exists():
                raise SecretsError(f"router.secrets_file {path} does not exist")
        else:
            path = generated_secrets_path(cfg)
            kind = "generated"
            if not path.exists():
                if not create:
                    raise SecretsError(
                        f"no WAMP-CRA secrets: set {ENV_SERVER_SECRET}/{ENV_CONSUMER_SECRET}, "
                        f"router.secrets_file, or start the router once to generate {path}"
                    )
                _create_generated(path)
        data = _read_secrets_toml(path)
        for key in missing:
            if key not in data:
                raise SecretsError(
                    f"secrets file {path} has no {key!r} entry "
                    f"(and {env_names[key]} is not set)"
                )
            values[key] = data[key]
            sources[key] = f"{kind} {path}"
    source = "; ".join(f"{k}: {sources[k]}" for k in env_names)
    log.debug("WAMP-CRA secrets from {source}", source=source)
    return Secrets(server=values["server"], consumer=values["consumer"], source=source)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an interface to listen on) is reachable from this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def weak_secret_reason(value: str) -> str | None:
    """Why ``value`` is not a secret fit for a reachable router, or ``None`` if it is."""
    if not value:
        return "it is empty"
    if value in WELL_KNOWN_SECRETS or value.lower() in WELL_KNOWN_SECRETS:
        return "it is a well-known/published value"
    if len(value) < MIN_SECRET_LENGTH:
        return f"it is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def check_secrets_for_interfaces(
    cfg: SiteConfig, secrets: Secrets, allow_public_ocs: bool = False
) -> None:
    """Refuse a router configuration that would expose it.

    - TLS port on a non-loopback interface (``router.listen``) with a default secret: one
      read from the generated file, empty, shorter than 16 characters, or well known;
    - OCS port (anonymous, full permission under ``observatory.``) on a non-loopback
      ``router.ocs_listen`` unless ``allow_public_ocs``.

    Raises :class:`RouterSecurityError` listing every problem.
    """
    r = cfg.router
    problems: list[str] = []
    if not is_loopback(r.listen):
        users = {"server": (r.wamp_user, ENV_SERVER_SECRET), "consumer": (CONSUMER_USER, ENV_CONSUMER_SECRET)}
        for key, (user, var) in users.items():
            value = getattr(secrets, key)
            reason = weak_secret_reason(value)
            if reason is None and secrets.source_of(key) == "generated":
                reason = "it was generated automatically (never chosen or distributed on purpose)"
            if reason:
                problems.append(
                    f"router.listen = {r.listen!r} exposes the TLS port {r.tls_port} beyond this "
                    f"machine, but the WAMP-CRA secret of user {user!r} is a default one: "
                    f"{reason}. Set {var} or router.secrets_file to a strong secret "
                    f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'), "
                    f"or listen on 127.0.0.1"
                )
    if not is_loopback(r.ocs_listen) and not allow_public_ocs:
        problems.append(
            f"router.ocs_listen = {r.ocs_listen!r} exposes the OCS port {r.ocs_port} beyond this "
            "machine: it is unauthenticated, so anyone reaching it can register procedures and "
            "publish anything under 'observatory.' (fake OCS feeds, fake agents). Keep it on "
            "127.0.0.1, or set router.allow_public_ocs = true if the network is trusted"
        )
    if problems:
        raise RouterSecurityError("refusing to start the router:\n- " + "\n- ".join(problems))


# --------------------------------------------------------------------------------------------
# Crossbar node configuration
# --------------------------------------------------------------------------------------------


def _permission(uri: str, *, call: bool, register: bool, publish: bool, subscribe: bool,
                disclose_caller: bool = False) -> dict[str, Any]:
    return {
        "uri": uri,
        "match": "prefix",
        "allow": {"call": call, "register": register, "publish": publish, "subscribe": subscribe},
        "disclose": {"caller": disclose_caller, "publisher": False},
        "cache": True,
    }


def _roles() -> list[dict[str, Any]]:
    return [
        {
            # nodes and the hub: everything, including the WAMP meta API (wamp.session.*,
            # wamp.registration.*), which is what lets the hub follow sessions leaving
            "name": ROLE_SERVER,
            "permissions": [
                _permission("", call=True, register=True, publish=True, subscribe=True,
                            disclose_caller=True)
            ],
        },
        {
            # consumers can query nodes and follow the hub's announcements; they can neither
            # register (impersonate a node) nor publish (fake the hub's events)
            "name": ROLE_CONSUMER,
            "permissions": [
                _permission(CONSUMER_PREFIX, call=True, register=False, publish=False,
                            subscribe=True)
            ],
        },
        {
            "name": ROLE_OCS_AGENT,
            "permissions": [
                _permission(OCS_PREFIX, call=True, register=True, publish=True, subscribe=True)
            ],
        },
        {
            "name": ROLE_OCS_CONTROLLER,
            "permissions": [
                _permission(OCS_PREFIX, call=True, register=False, publish=True, subscribe=True)
            ],
        },
    ]


def _endpoint(host: str, port: int) -> dict[str, Any]:
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        host = "127.0.0.1"
    endpoint: dict[str, Any] = {"type": "tcp", "port": int(port)}
    try:
        addr = ipaddress.ip_address(host) if host else None
    except ValueError:
        raise ValueError(
            f"router: listen address {host!r} must be an IP address (or 'localhost')"
        ) from None
    if addr is not None:
        endpoint["interface"] = str(addr)
        endpoint["version"] = addr.version
    return endpoint


def _ws_options() -> dict[str, Any]:
    return {
        "open_handshake_timeout": 5000,
        "close_handshake_timeout": 1000,
        "auto_ping_interval": 10000,
        "auto_ping_timeout": 5000,
        "auto_ping_size": 12,  # crossbar >= 24 rejects < 12 (the OCS template had 4)
        "max_message_size": MAX_MESSAGE_SIZE,
        "enable_webstatus": False,
        "show_server_version": False,
    }


def crossbar_config(cfg: SiteConfig, secrets: Secrets) -> dict[str, Any]:
    """The crossbar (26.x) node configuration of a site, as a dict (``config.json``).

    It contains the secrets in clear (WAMP-CRA static users): write it with
    :func:`write_crossbar_config` (mode 0600).  Certificate paths are :func:`tls_paths`.
    """
    r = cfg.router
    cert, key, _ = tls_paths(cfg)
    cra_ws = {
        "type": "websocket",
        "serializers": list(SERIALIZERS),
        "options": _ws_options(),
        "auth": {
            "wampcra": {
                "type": "static",
                "users": {
                    r.wamp_user: {"secret": secrets.server, "role": ROLE_SERVER},
                    CONSUMER_USER: {"secret": secrets.consumer, "role": ROLE_CONSUMER},
                },
            }
        },
    }
    ocs_ws = {
        "type": "websocket",
        "serializers": list(SERIALIZERS),
        "options": _ws_options(),
        "auth": {"anonymous": {"type": "static", "role": ROLE_OCS_AGENT}},
    }
    tls_endpoint = _endpoint(r.listen, r.tls_port)
    tls_endpoint["tls"] = {"certificate": str(Path(cert).resolve()), "key": str(Path(key).resolve())}
    return {
        "$schema": "https://raw.githubusercontent.com/crossbario/crossbar/master/crossbar.json",
        "version": 2,
        "controller": {},
        "workers": [
            {
                "type": "router",
                "realms": [
                    {
                        "name": r.realm,
                        "options": {"enable_meta_api": True},
                        "roles": _roles(),
                    }
                ],
                "transports": [
                    {
                        # sisock clients connect to wss://host:port/ws; "/" also works
                        "type": "web",
                        "id": "sisock_tls",
                        "endpoint": tls_endpoint,
                        "paths": {"/": cra_ws, "ws": cra_ws},
                    },
                    {
                        # OCS agents: ws://localhost:8001/ws, HTTP calls at /call
                        "type": "web",
                        "id": "ocs",
                        "endpoint": _endpoint(r.ocs_listen, r.ocs_port),
                        "paths": {
                            "/": ocs_ws,
                            "ws": ocs_ws,
                            "call": {
                                "type": "caller",
                                "realm": r.realm,
                                "role": ROLE_OCS_CONTROLLER,
                            },
                        },
                    },
                ],
            }
        ],
    }


def crossbar_dir(cfg: SiteConfig) -> Path:
    """``<state_dir>/crossbar``: crossbar's node directory."""
    return Path(cfg.state_dir) / "crossbar"


def write_crossbar_config(cfg: SiteConfig, secrets: Secrets) -> Path:
    """Write :func:`crossbar_config` to ``<state_dir>/crossbar/config.json`` (mode 0600, in a
    0700 directory) and return its path."""
    cbdir = crossbar_dir(cfg)
    cbdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(cbdir, 0o700)
    path = cbdir / "config.json"
    text = json.dumps(crossbar_config(cfg, secrets), indent=2)
    fd, tmp = tempfile.mkstemp(dir=cbdir, prefix=".config-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# --------------------------------------------------------------------------------------------
# Readiness: a one-shot WAMP-CRA session
# --------------------------------------------------------------------------------------------


def _connect_host(cfg: SiteConfig) -> str:
    """Address to reach our own router at: its interface, or loopback for a wildcard."""
    listen = cfg.router.listen.strip().strip("[]")
    if listen in ("", "0.0.0.0"):
        return "127.0.0.1"
    if listen == "::":
        return "::1"
    if listen.lower() == "localhost":
        return "127.0.0.1"
    return listen


class _AuthFailed(Exception):
    """The router answered but refused the session (wrong secret, unknown realm...)."""


def _join_once(
    cfg: SiteConfig, authid: str, secret: str, reactor, *, host: str, timeout: float
) -> defer.Deferred:
    """Connect over TLS, join with WAMP-CRA, leave; fires with the session id."""
    from autobahn.twisted.wamp import ApplicationSession
    from autobahn.twisted.websocket import WampWebSocketClientFactory, WampWebSocketClientProtocol
    from autobahn.wamp import auth, types
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

    done: defer.Deferred = defer.Deferred()

    def finish(result) -> None:
        if not done.called:
            done.callback(result)

    class OneShot(ApplicationSession):
        joined_session: int | None = None

        def onConnect(self):
            self.join(cfg.router.realm, ["wampcra"], authid)

        def onChallenge(self, challenge):
            if challenge.method != "wampcra":
                raise _AuthFailed(f"unexpected authentication method {challenge.method}")
            return auth.compute_wcs(secret, challenge.extra["challenge"])

        def onJoin(self, details):
            self.joined_session = details.session
            self.leave()

        def onLeave(self, details):
            if self.joined_session is None:
                finish(Failure(_AuthFailed(f"{details.reason}: {details.message}")))
            self.disconnect()

        def onDisconnect(self):
            if self.joined_session is not None:
                finish(self.joined_session)
            else:
                finish(Failure(ConnectionError("connection closed before the session joined")))

    class Protocol(WampWebSocketClientProtocol):
        def connectionLost(self, reason):
            super().connectionLost(reason)
            # TLS or WebSocket failures never reach the session: report them at once
            finish(reason)

    url = f"wss://{cfg.router.host}:{cfg.router.tls_port}/ws"
    factory = WampWebSocketClientFactory(
        lambda: OneShot(types.ComponentConfig(realm=cfg.router.realm)), url=url
    )
    factory.protocol = Protocol
    factory.noisy = False
    endpoint = wrapClientTLS(
        client_tls_options(cfg),
        HostnameEndpoint(reactor, host, cfg.router.tls_port, timeout=max(1, int(timeout))),
    )
    connecting = endpoint.connect(factory)
    protos: list = []
    connecting.addCallbacks(protos.append, finish)

    def on_timeout(result, t):
        if not connecting.called:
            connecting.cancel()
        for p in protos:
            if p.transport is not None:
                p.transport.abortConnection()
        return result

    done.addTimeout(timeout, reactor, onTimeoutCancel=on_timeout)
    return done


async def wait_until_joinable(
    cfg: SiteConfig,
    secrets: Secrets,
    timeout: float,
    *,
    reactor=None,
    host: str | None = None,
    interval: float = 0.05,
) -> float:
    """Wait until a WAMP-CRA session as ``router.wamp_user`` can join the router.

    Polls (every ``interval`` seconds): a TCP connection to the TLS port, then a full TLS +
    WebSocket + WAMP-CRA join.  Returns the seconds waited.  Raises :class:`RouterStartError`
    after ``timeout`` seconds, or at once when the router refuses the credentials (that never
    fixes itself).  ``host`` defaults to the router's interface (loopback for a wildcard).
    """
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    from twisted.internet.endpoints import HostnameEndpoint

    host = host or _connect_host(cfg)
    port = cfg.router.tls_port
    started = reactor.seconds()
    deadline = started + timeout
    last_error: str = "no attempt made"
    while True:
        remaining = deadline - reactor.seconds()
        if remaining <= 0:
            raise RouterStartError(
                f"router not joinable at {host}:{port} (realm {cfg.router.realm!r}) after "
                f"{timeout:g} s: {last_error}"
            )
        try:
            ep = HostnameEndpoint(reactor, host, port, timeout=max(1, int(remaining)))
            probe = protocol.Factory.forProtocol(protocol.Protocol)
            probe.noisy = False
            p = await ep.connect(probe)
            p.transport.loseConnection()
        except (error.ConnectError, error.DNSLookupError, OSError) as e:
            last_error = f"TCP connect failed: {e}"
        else:
            try:
                await _join_once(
                    cfg, cfg.router.wamp_user, secrets.server, reactor,
                    host=host, timeout=min(remaining, 10.0),
                )
            except _AuthFailed as e:
                raise RouterStartError(
                    f"router at {host}:{port} refused user {cfg.router.wamp_user!r} on realm "
                    f"{cfg.router.realm!r}: {e}"
                ) from None
            except (defer.CancelledError, defer.TimeoutError):
                # out of time mid-attempt: the previous error says more, if there was one
                if not last_error.startswith("WAMP join failed"):
                    last_error = "WAMP join timed out"
            except Exception as e:  # TLS handshake, closed socket: try again
                last_error = f"WAMP join failed: {e!r}"
            else:
                return reactor.seconds() - started
        await task.deferLater(reactor, interval, lambda: None)


# --------------------------------------------------------------------------------------------
# The crossbar child process
# --------------------------------------------------------------------------------------------

# Runs crossbar in its own session/process group (so stop() can kill its workers too) and
# asks Linux to SIGTERM it if its parent dies, so a killed sisock leaves no router behind.
_LAUNCHER = """\
import os, signal, sys
os.setsid()
if sys.platform.startswith("linux"):
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if str(os.getppid()) != os.environ.get("SISOCK_ROUTER_PARENT", str(os.getppid())):
        sys.exit("parent exited before crossbar started")
sys.argv[0] = "crossbar"
from crossbar import run
sys.exit(run())
"""

_ERROR_MARKERS = ("Traceback", "Error", "ERROR", "CRITICAL", "Exception", "failed", "Failed")


@attrs.frozen
class RouterExit:
    """How crossbar ended: exit ``code`` or killing ``signal``, and its last output lines."""

    code: int | None
    signal: int | None
    tail: str

    @property
    def how(self) -> str:
        return f"exit code {self.code}" if self.signal is None else f"signal {self.signal}"

    def describe(self) -> str:
        return f"crossbar ended ({self.how}); last output:\n{self.tail}"


class _CrossbarProtocol(protocol.ProcessProtocol):
    def __init__(self, owner: RouterProcess):
        self.owner = owner
        self._partial = {1: b"", 2: b""}

    def childDataReceived(self, fd: int, data: bytes) -> None:
        buf = self._partial.get(fd, b"") + data
        *lines, self._partial[fd] = buf.split(b"\n")
        for line in lines:
            self.owner._output_line(line.decode("utf-8", "replace").rstrip(), fd)

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in self._partial.items():
            if rest:
                self.owner._output_line(rest.decode("utf-8", "replace").rstrip(), fd)
        self._partial = {1: b"", 2: b""}
        self.owner._ended(reason)


class RouterProcess:
    """Crossbar as a child process: ``start()``, ``stop()``, and ``crashed``.

    Example::

        router = RouterProcess(cfg, load_secrets(cfg), reactor)
        await router.start()   # now the router accepts WAMP-CRA sessions
        ...
        await router.stop()

    ``start()`` checks the configuration (:func:`check_secrets_for_interfaces`), makes sure the
    TLS certificate exists, writes ``<state_dir>/crossbar/config.json`` (mode 0600), spawns
    ``python -c <launcher> start --cbdir <state_dir>/crossbar --config config.json`` with
    this interpreter, and fires once :func:`wait_until_joinable` succeeds.  It fails with
    :class:`RouterStartError` (including crossbar's last output) if crossbar exits or is not
    ready within ``ready_timeout`` seconds.

    Crossbar's output goes to this logger, one event per line prefixed ``router:``: its
    stdout (info) at debug level, its stderr (warnings, errors) at warn level, or error level
    for lines that look like errors; the secrets are masked in them.  If crossbar ends
    without ``stop()`` having been called, ``on_crash`` (if given) is called with a
    :class:`RouterExit`, then ``crashed`` fires with it.

    Crossbar runs in its own process group (``stop()`` kills its workers too if it must) and,
    on Linux, gets SIGTERM if this process dies, so no router outlives its parent.
    """

    log = Logger()

    def __init__(
        self,
        cfg: SiteConfig,
        secrets: Secrets,
        reactor=None,
        *,
        ready_timeout: float = 60.0,
        stop_grace: float = 10.0,
        allow_public_ocs: bool = False,
        on_crash: Callable[[RouterExit], object] | None = None,
        python: str = sys.executable,
        loglevel: str = "info",
        tail_lines: int = 60,
    ):
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        self.cfg = cfg
        self.secrets = secrets
        self.reactor = reactor
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self.allow_public_ocs = allow_public_ocs
        self.on_crash = on_crash
        self.python = python
        self.loglevel = loglevel
        #: fires with a RouterExit when crossbar ends without stop() having been called
        self.crashed: defer.Deferred = defer.Deferred()
        #: seconds from spawning crossbar to the first successful join (after start())
        self.ready_seconds: float | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._transport = None
        self._pid: int | None = None
        self._stopping = False
        self._exit: RouterExit | None = None
        self._exit_waiters: list[defer.Deferred] = []

    # -- state ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the crossbar process is alive (spawned and not yet ended)."""
        return self._transport is not None and self._exit is None

    @property
    def pid(self) -> int | None:
        return self._pid

    def output_tail(self) -> str:
        """Crossbar's last output lines."""
        return "\n".join(self._tail)

    def command(self) -> list[str]:
        """The child's argv."""
        return [
            self.python, "-u", "-c", _LAUNCHER,
            "start",
            "--cbdir", str(crossbar_dir(self.cfg)),
            "--config", "config.json",
            "--loglevel", self.loglevel,
            "--logformat", "standard",
            "--color", "false",
        ]

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> defer.Deferred:
        """Spawn crossbar; fires (with the seconds it took) when a session can join."""
        return defer.Deferred.fromCoroutine(self._start())

    async def _start(self) -> float:
        if self.running:
            raise RuntimeError("RouterProcess.start(): crossbar is already running")
        if self._exit is not None:  # started before and ended: start afresh
            self.crashed = defer.Deferred()
            self._exit = None
            self._stopping = False
            self.ready_seconds = None
        check_secrets_for_interfaces(self.cfg, self.secrets,
                                     allow_public_ocs=self.allow_public_ocs or self.cfg.router.allow_public_ocs)
        ensure_site_certificate(self.cfg)
        config_path = write_crossbar_config(self.cfg, self.secrets)
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["SISOCK_ROUTER_PARENT"] = str(os.getpid())
        # never hand our secrets to crossbar's environment: it has them in its config file
        env.pop(ENV_SERVER_SECRET, None)
        env.pop(ENV_CONSUMER_SECRET, None)
        spawned_at = time.monotonic()
        self._transport = self.reactor.spawnProcess(
            _CrossbarProtocol(self),
            self.python,
            self.command(),
            env=env,
            path=str(crossbar_dir(self.cfg)),
        )
        self._pid = self._transport.pid
        self.log.info(
            "router: started crossbar (pid {pid}) with {config}; TLS {listen}:{tls_port}, "
            "OCS {ocs_listen}:{ocs_port}, realm {realm}",
            pid=self._pid, config=str(config_path), listen=self.cfg.router.listen,
            tls_port=self.cfg.router.tls_port, ocs_listen=self.cfg.router.ocs_listen,
            ocs_port=self.cfg.router.ocs_port, realm=self.cfg.router.realm,
        )

        ready = defer.Deferred.fromCoroutine(
            wait_until_joinable(self.cfg, self.secrets, self.ready_timeout, reactor=self.reactor)
        )
        first: defer.Deferred = defer.Deferred()

        def settle(result, kind):
            if not first.called:
                first.callback((kind, result))

        ready.addBoth(settle, "ready")
        self._when_exited().addBoth(settle, "exited")
        kind, result = await first
        if kind == "exited":
            ready.cancel()
            raise RouterStartError(f"crossbar exited before it was ready: {result.describe()}")
        if isinstance(result, Failure):
            # not ready in time, or our own credentials refused: stop it and say why
            self.log.error("router: crossbar not ready: {error}", error=str(result.value))
            await self.stop()
            raise RouterStartError(
                f"{result.value}\ncrossbar's last output:\n{self.output_tail()}"
            )
        self.ready_seconds = time.monotonic() - spawned_at
        self.log.info(
            "router: ready in {seconds:.2f} s (pid {pid})", seconds=self.ready_seconds, pid=self._pid
        )
        return self.ready_seconds

    def _when_exited(self) -> defer.Deferred:
        if self._exit is not None:
            return defer.succeed(self._exit)
        d: defer.Deferred = defer.Deferred()
        self._exit_waiters.append(d)
        return d

    # -- output and exit -----------------------------------------------------------------------

    def _output_line(self, line: str, fd: int = 1) -> None:
        # crossbar prints info (and below) on stdout, warnings and errors on stderr
        if not line.strip():
            return
        for secret in (self.secrets.server, self.secrets.consumer):
            if len(secret) >= 4:  # crossbar prints config values at debug level
                line = line.replace(secret, "<redacted>")
        self._tail.append(line)
        if fd == 1:
            self.log.debug("router: {line}", line=line)
        elif any(m in line for m in _ERROR_MARKERS):
            self.log.error("router: {line}", line=line)
        else:
            self.log.warn("router: {line}", line=line)

    def _ended(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        sig = getattr(reason.value, "signal", None)
        self._exit = RouterExit(code=code, signal=sig, tail=self.output_tail())
        self._kill_group(signal.SIGKILL)  # stray workers, if the node died abruptly
        if self._stopping:
            self.log.info("router: crossbar stopped ({how})", how=self._exit.how)
        else:
            self.log.error("router: {description}", description=self._exit.describe())
            if self.on_crash is not None:
                try:
                    self.on_crash(self._exit)
                except Exception:
                    self.log.failure("router: on_crash callback failed")
            if not self.crashed.called:
                self.crashed.callback(self._exit)
        waiters, self._exit_waiters = self._exit_waiters, []
        for d in waiters:
            d.callback(self._exit)

    def _kill_group(self, sig: int) -> None:
        if self._pid is None:
            return
        try:
            os.killpg(self._pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    # -- stop ----------------------------------------------------------------------------------

    def stop(self) -> defer.Deferred:
        """SIGTERM crossbar, SIGKILL it (and its workers) after ``stop_grace`` seconds; fires
        with the :class:`RouterExit` once it has exited (at once if it is not running)."""
        if self._transport is None:
            return defer.succeed(None)
        if self._exit is not None:
            return defer.succeed(self._exit)
        self._stopping = True
        d = self._when_exited()
        try:
            self._transport.signalProcess("TERM")
        except error.ProcessExitedAlready:
            pass
        killer = self.reactor.callLater(self.stop_grace, self._force_kill)
        d.addBoth(lambda r: (killer.cancel() if killer.active() else None, r)[1])
        return d

    def _force_kill(self) -> None:
        if self._exit is None:
            self.log.warn(
                "router: crossbar did not stop within {grace} s; killing it", grace=self.stop_grace
            )
            self._kill_group(signal.SIGKILL)
