"""The site file's tables as attrs classes (what each key is, its default and check).

Field comments (``#:``) are the keys' help: ``sisock plugins`` and
``docs/operating.md`` (:mod:`sisock_core.introspect`) show them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import attrs

from sisock_core.validators import above, at_least


def default_state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where generated files go: ``$SISOCK_STATE_DIR``, else ``$XDG_STATE_HOME/sisock``."""
    if env.get("SISOCK_STATE_DIR"):
        return Path(env["SISOCK_STATE_DIR"]).expanduser()
    base = env.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "sisock"


#: what ``[router] path`` may be: ``/`` or one path segment
WS_PATH_RE = re.compile(r"^/[A-Za-z0-9._~-]*$")


def check_ws_path(value: str) -> None:
    if not WS_PATH_RE.match(value):
        raise ValueError(
            f"must be '/' or '/' and one path segment (letters, digits, '.', '_', '~', '-'), "
            f"e.g. '/ws'; got {value!r}"
        )


@attrs.frozen
class RouterConfig:
    """``[router]``: the crossbar WAMP router, and how every component reaches it."""

    start: bool = True  #: run crossbar on this machine (false: use one elsewhere)
    host: str = "127.0.0.1"  #: where components connect (env CROSSBAR_HOST)
    listen: str = "127.0.0.1"  #: interface the TLS WebSocket binds to
    tls_port: int = 8080  #: TLS WebSocket with WAMP-CRA (env CROSSBAR_TLS_PORT)
    ocs_port: int = 8001  #: plain WebSocket for OCS agents (env CROSSBAR_OCS_PORT)
    #: URL path of the router's WebSocket, where components connect; ``/ws`` like the
    #: original's crossbar, which serves a static page at ``/`` (env CROSSBAR_PATH)
    path: str = attrs.field(default="/ws", validator=lambda i, a, v: check_ws_path(v))
    ocs_listen: str = "127.0.0.1"  #: interface of the OCS port; keep it on loopback
    #: let ``ocs_listen`` be a non-loopback interface (the OCS port has no authentication)
    allow_public_ocs: bool = False
    #: migration only: let sisock 0.2 data nodes on the OCS port (anonymous, like the original
    #: data-feed server) register ``org.simonsobservatory.consumer.*`` and join the hub;
    #: refused unless ``ocs_listen`` is loopback
    allow_legacy_ocs_nodes: bool = False
    realm: str = "test_realm"  #: WAMP realm of every component (the original's)
    tls_cert: str | None = None  #: PEM certificate; generated under state_dir when unset
    tls_key: str | None = None  #: PEM private key; generated with the certificate
    ca_cert: str | None = None  #: certificate clients trust (default: tls_cert)
    wamp_user: str = "server"  #: WAMP-CRA identity of nodes and hub (env WAMP_USER)
    secrets_file: str | None = None  #: TOML file with the WAMP-CRA secrets


@attrs.frozen
class HubConfig:
    """``[hub]``: the registry of live data nodes."""

    start: bool = True  #: run the hub on this machine


@attrs.frozen
class HttpConfig:
    """``[http]``: the Grafana HTTP bridge."""

    start: bool = True  #: run the HTTP bridge on this machine
    listen: str = "127.0.0.1"  #: a non-loopback interface requires basic auth
    port: int = 5000  #: env PORT
    username: str | None = None  #: basic-auth user (env SISOCK_HTTP_USER)
    password_file: str | None = None  #: file holding the password (env SISOCK_HTTP_PASSWORD wins)
    #: cap on the lists of /search, /metrics and /variable answers
    max_targets: int = attrs.field(default=1000, validator=at_least(1))
    #: seconds to wait for a node's answer (Grafana's proxy gives up after ~30 s)
    query_timeout: float = attrs.field(default=25.0, validator=above(0.0))
    #: origins allowed for browser-mode Grafana ("*": any origin)
    cors_origins: tuple[str, ...] = ("*",)
    #: gzip answers for clients that accept it (worth it only when Grafana is far away)
    gzip: bool = False
    #: open connections at most (lowered to fit the open-file limit); when full, a new
    #: connection replaces the oldest one that is not being answered
    max_connections: int = attrs.field(default=512, validator=at_least(1))
    #: seconds a client has to send a request's headers and body, from its first byte
    request_deadline: float = attrs.field(default=10.0, validator=above(0.0))
    #: requests of one client address answered at once; more get a 429
    max_client_requests: int = attrs.field(default=64, validator=at_least(1))
    #: points per series at most (Grafana's maxDataPoints, the data API's points); a larger
    #: budget is lowered with a notice on the panel
    max_points: int = attrs.field(default=20_000, validator=at_least(2))


@attrs.frozen
class NodeConfig:
    """One ``[nodes.<name>]`` table: a data node wrapping one plugin."""

    name: str
    plugin: str
    description: str
    enabled: bool = True
    max_points: int | None = None  #: cap on points per field (env MAX_POINTS)
    options: Any = None  #: instance of the plugin's options class
    #: the OS process serving it: ``None`` (the default: one per plugin), ``"own"`` or a group
    #: name (see :mod:`sisock_core.nodegroups`)
    process: str | None = None


@attrs.frozen
class SiteConfig:
    """The whole site file."""

    path: str  #: file it was read from ("<embedded defaults>" for the built-in one)
    state_dir: Path
    log_level: str = "info"  #: env LOGLEVEL
    #: database of the summaries the core computes for archive nodes (a URL,
    #: ``sqlite:///path`` or ``mysql://user@host/db``; None: SQLite under ``state_dir/summaries``)
    summaries_db: str | None = None
    router: RouterConfig = RouterConfig()
    hub: HubConfig = HubConfig()
    http: HttpConfig = HttpConfig()
    nodes: dict[str, NodeConfig] = attrs.field(factory=dict)


@attrs.frozen
class NodeCore:
    """The keys of a ``[nodes.<name>]`` table that are not plugin options."""

    plugin: str  #: an installed plugin (``sisock plugins`` lists them)
    description: str | None = None  #: shown to consumers; default: the plugin's description
    enabled: bool = True  #: false: keep the table but do not run the node
    max_points: int | None = None  #: cap on points returned per field; 0 or absent: no cap (env MAX_POINTS)
    #: the OS process serving it: absent, the one shared by the nodes of its plugin; "own", a
    #: process of its own; another name (lowercase letters, digits, '_'), that group's process
    process: str | None = None


TOP_LEVEL_KEYS = ("state_dir", "log_level", "summaries_db", "router", "hub", "http", "nodes")
NODE_CORE_KEYS = tuple(a.name for a in attrs.fields(NodeCore))
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
NODE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def check_port(value: int) -> str | None:
    """Why ``value`` is not a TCP port, or None."""
    if not 1 <= value <= 65535:
        return f"must be between 1 and 65535, got {value}"
    return None


def check_log_level(value: str) -> tuple[str | None, str | None]:
    """``(level, None)`` for a known log level (any case, "warning" too), else ``(None, why)``."""
    low = value.strip().lower()
    low = "warn" if low == "warning" else low
    if low in LOG_LEVELS:
        return low, None
    return None, f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}"


def bad_node_name(name: str) -> str:
    """Why ``name`` is not a node name, with a suggestion when one is close."""
    reason = "invalid node name: use lowercase letters, digits and '_', starting with a letter"
    fixed = re.sub(r"[^a-z0-9_]", "_", name.strip().lower())
    if NODE_NAME_RE.match(fixed) and fixed != name:
        reason += f" (e.g. {fixed!r})"
    return reason
