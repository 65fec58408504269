"""The crossbar WAMP router: its node configuration, and running it as a child process.

What a site gets (README, "Wire compatibility"):

- a TLS WebSocket (``router.listen:router.tls_port``, paths ``/``, ``/ws`` and ``router.path``) with WAMP-CRA
  only, for two users: ``router.wamp_user`` (role ``server``: nodes and the hub) and
  ``simonsobs`` (role ``consumer``: may only call and subscribe under
  ``org.simonsobservatory.consumer``);
- a plain WebSocket for OCS agents (``router.ocs_listen:router.ocs_port``, paths ``/`` and
  ``/ws``, plus the HTTP caller bridge at ``/call``), anonymous, role ``iocs_agent``
  (everything under ``observatory.``).  It stays on loopback unless explicitly allowed.
  With ``router.allow_legacy_ocs_nodes`` (migrations; loopback only) the role may also
  register ``org.simonsobservatory.consumer.*`` and call the hub's ``data_node.add`` and
  ``data_node.subtract``, as the original data-feed server does there.

Secrets come from :mod:`sisock_core.credentials`; :func:`check_secrets_for_interfaces`
refuses to expose the router with a weak or auto-generated secret. :class:`RouterProcess`
writes the crossbar node configuration (:func:`crossbar_config`), starts crossbar and tells
when a session can join (:mod:`sisock_core.routerprobe`).
"""

from __future__ import annotations

import collections
import ipaddress
import json
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import attrs
from twisted.internet import defer, error, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from sisock_core.config import SiteConfig
from sisock_core.credentials import (  # noqa: F401 (also the router's API)
    CONSUMER_USER,
    ENV_CONSUMER_SECRET,
    ENV_SERVER_SECRET,
    GENERATED_SECRETS_NAME,
    RouterSecurityError,
    Secrets,
    SecretsError,
    generated_secrets_path,
    load_secrets,
    weak_secret_reason,
)
from sisock_core.hosts import is_loopback
from sisock_core.routerprobe import (  # noqa: F401 (also the router's API)
    RouterRefused,
    RouterStartError,
    connect_host,
    wait_until_joinable,
)
from sisock_core.tls import ensure_site_certificate, tls_paths

log = Logger()

#: roles, as in the original sisock/OCS crossbar configurations
ROLE_SERVER = "server"
ROLE_CONSUMER = "consumer"
ROLE_OCS_AGENT = "iocs_agent"
ROLE_OCS_CONTROLLER = "iocs_controller"
#: the OCS port's anonymous role with ``router.allow_legacy_ocs_nodes``
ROLE_LEGACY_NODE = "iocs_agent_and_legacy_node"
CONSUMER_PREFIX = "org.simonsobservatory.consumer"
HUB_PROCEDURES = ("org.simonsobservatory.data_node.add", "org.simonsobservatory.data_node.subtract")
OCS_PREFIX = "observatory."

#: largest WAMP message the router accepts (get_data replies can be big)
MAX_MESSAGE_SIZE = 64 * 1024 * 1024
SERIALIZERS = ["json", "msgpack", "cbor"]


def check_secrets_for_interfaces(
    cfg: SiteConfig, secrets: Secrets, allow_public_ocs: bool = False
) -> None:
    """Raise :class:`RouterSecurityError` listing every problem of
    :func:`exposure_problems`, if any."""
    problems = exposure_problems(cfg, secrets, allow_public_ocs)
    if problems:
        raise RouterSecurityError("refusing to start the router:\n- " + "\n- ".join(problems))


def exposure_problems(cfg: SiteConfig, secrets: Secrets, allow_public_ocs: bool = False) -> list[str]:
    """Why starting the router this way would expose it (empty: it would not).

    - TLS port on a non-loopback interface (``router.listen``) with a default secret: one
      read from the generated file, empty, shorter than 16 characters, or well known;
    - OCS port (anonymous, full permission under ``observatory.``) on a non-loopback
      ``router.ocs_listen`` unless ``allow_public_ocs`` (or ``router.allow_public_ocs``);
    - ``router.allow_legacy_ocs_nodes`` with a non-loopback ``router.ocs_listen``.
    """
    r = cfg.router
    allow_public_ocs = allow_public_ocs or r.allow_public_ocs
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
    if r.allow_legacy_ocs_nodes and not is_loopback(r.ocs_listen):
        problems.append(
            f"router.allow_legacy_ocs_nodes lets anonymous sessions on the OCS port register data "
            f"nodes, but router.ocs_listen = {r.ocs_listen!r} is not loopback: anyone reaching it "
            "could serve fake data under a node's name. Keep ocs_listen on 127.0.0.1 (legacy nodes "
            "on this machine), or turn allow_legacy_ocs_nodes off"
        )
    return problems


# --------------------------------------------------------------------------------------------
# Crossbar node configuration
# --------------------------------------------------------------------------------------------


def _permission(uri: str, *, call: bool, register: bool, publish: bool, subscribe: bool,
                disclose_caller: bool = False, match: str = "prefix") -> dict[str, Any]:
    return {
        "uri": uri,
        "match": match,
        "allow": {"call": call, "register": register, "publish": publish, "subscribe": subscribe},
        "disclose": {"caller": disclose_caller, "publisher": False},
        "cache": True,
    }


def _roles(legacy_nodes: bool = False) -> list[dict[str, Any]]:
    roles = [
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
    if legacy_nodes:
        roles.append({
            # router.allow_legacy_ocs_nodes: an OCS agent that may also be a sisock 0.2 data
            # node (register get_fields/get_data, add and subtract itself at the hub, which
            # sees who calls and accepts only the caller's own session)
            "name": ROLE_LEGACY_NODE,
            "permissions": [
                _permission(OCS_PREFIX, call=True, register=True, publish=True, subscribe=True),
                _permission(CONSUMER_PREFIX + ".", call=False, register=True, publish=False,
                            subscribe=False),
                # ... but never the hub's own list of nodes
                _permission(CONSUMER_PREFIX + ".get_data_node", call=False, register=False,
                            publish=False, subscribe=False, match="exact"),
                *[_permission(uri, call=True, register=False, publish=False, subscribe=False,
                              disclose_caller=True, match="exact") for uri in HUB_PROCEDURES],
            ],
        })
    return roles


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


def _extra_path(path: str, service: dict[str, Any]) -> dict[str, Any]:
    """Crossbar's ``paths`` entry for a ``router.path`` other than ``/`` and ``/ws``."""
    name = path.strip("/")
    return {name: service} if name and name != "ws" else {}


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
        "auth": {"anonymous": {"type": "static",
                               "role": ROLE_LEGACY_NODE if r.allow_legacy_ocs_nodes else ROLE_OCS_AGENT}},
    }
    tls_endpoint = _endpoint(r.listen, r.tls_port)
    tls_endpoint["tls"] = {"certificate": str(Path(cert).resolve()), "key": str(Path(key).resolve()),
                           "ciphers": TLS_CIPHERS}
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
                        "roles": _roles(r.allow_legacy_ocs_nodes),
                    }
                ],
                "transports": [
                    {
                        # sisock clients connect to wss://host:port/ws (router.path); "/" also works
                        "type": "web",
                        "id": "sisock_tls",
                        "endpoint": tls_endpoint,
                        "paths": {"/": cra_ws, "ws": cra_ws, **_extra_path(r.path, cra_ws)},
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

#: TLS cipher suites of the WAMP endpoint (TLS 1.2; TLS 1.3 has its own): forward-secret
#: ECDHE with AEAD only. Crossbar's default list also offers DHE, which needs a DH
#: parameter file; without DHE there is nothing for one to do.
TLS_CIPHERS = ":".join(f"ECDHE-{key}-{cipher}" for key in ("ECDSA", "RSA")
                       for cipher in ("AES128-GCM-SHA256", "AES256-GCM-SHA384", "CHACHA20-POLY1305"))

#: crossbar warnings that say nothing to a sisock operator: crossbar warns about the
#: missing DH parameter file even when no DHE suite is offered (``TLS_CIPHERS``)
_EXPECTED_WARNINGS = ("No OpenSSL DH parameter file set",)


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


#: The timestamp crossbar starts its lines with (``2026-11-29T04:30:51+0000 ``).
_CROSSBAR_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} ")


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
        check_secrets_for_interfaces(self.cfg, self.secrets, allow_public_ocs=self.allow_public_ocs)
        ensure_site_certificate(self.cfg)
        config_path = write_crossbar_config(self.cfg, self.secrets)
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["SISOCK_ROUTER_PARENT"] = str(os.getpid())
        # never hand our secrets to crossbar's environment: it has them in its config file
        env.pop(ENV_SERVER_SECRET, None)
        env.pop(ENV_CONSUMER_SECRET, None)
        env.pop("NOTIFY_SOCKET", None)  # crossbar would tell systemd READY=1 before we are
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
            wait_until_joinable(self.cfg, self.secrets, self.ready_timeout, reactor=self.reactor,
                                server_check=self._not_ours)
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
            # not ready in time, our own credentials refused, or another server on the port:
            # stop it and say why
            self.log.error("router: crossbar not ready: {error}", error=str(result.value))
            await self.stop()
            if isinstance(result.value, RouterRefused):
                raise result.value
            raise RouterStartError(
                f"{result.value}\ncrossbar's last output:\n{self.output_tail()}"
            )
        self.ready_seconds = time.monotonic() - spawned_at
        self.log.info(
            "router: ready in {seconds:.2f} s (pid {pid})", seconds=self.ready_seconds, pid=self._pid
        )
        return self.ready_seconds

    def _not_ours(self) -> str | None:
        """Why the process listening on the TLS port is not this crossbar (its process group),
        or ``None``: it is, or the system does not say."""
        from sisock_core.ports import describe_process, listening_pids

        host, port = connect_host(self.cfg), self.cfg.router.tls_port
        pids = [p for p in listening_pids(host, port) if p is not None]  # (None: cannot tell)
        if not pids:
            return None
        for pid in pids:
            try:
                if os.getpgid(pid) == self._pid:
                    return None
            except OSError:  # ended meanwhile
                return None
        return (f"{host}:{port} answers, but it is not our router (crossbar, pid {self._pid}): "
                f"{', '.join(describe_process(p) for p in pids)} listens there")

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
        line = _CROSSBAR_TIME.sub("", line, count=1)  # our log line has the time already
        if fd == 1 or any(m in line for m in _EXPECTED_WARNINGS):
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
