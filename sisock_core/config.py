"""Site configuration: ``site/nodes.toml`` parsed into attrs classes with cattrs.

(Class definitions are the contract; the loader is being written.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs


def default_state_dir() -> Path:
    """Where generated files go: ``$SISOCK_STATE_DIR``, else ``$XDG_STATE_HOME/sisock``."""
    if os.environ.get("SISOCK_STATE_DIR"):
        return Path(os.environ["SISOCK_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "sisock"


@attrs.frozen
class RouterConfig:
    """``[router]``: the crossbar WAMP router, and how every component reaches it."""

    start: bool = True  #: run crossbar on this machine (false: use one elsewhere)
    host: str = "127.0.0.1"  #: where components connect (env CROSSBAR_HOST)
    listen: str = "127.0.0.1"  #: interface the TLS WebSocket binds to
    tls_port: int = 8080  #: TLS WebSocket with WAMP-CRA (env CROSSBAR_TLS_PORT)
    ocs_port: int = 8001  #: plain WebSocket for OCS agents (env CROSSBAR_OCS_PORT)
    ocs_listen: str = "127.0.0.1"  #: interface of the OCS port; keep it on loopback
    realm: str = "test_realm"
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

    start: bool = True
    listen: str = "127.0.0.1"
    port: int = 5000  #: env PORT


@attrs.frozen
class NodeConfig:
    """One ``[nodes.<name>]`` table: a data node wrapping one plugin."""

    name: str
    plugin: str
    description: str
    enabled: bool = True
    max_points: int | None = None  #: cap on points per field (env MAX_POINTS)
    options: Any = None  #: instance of the plugin's options class


@attrs.frozen
class SiteConfig:
    """The whole site file."""

    path: str  #: file it was read from ("<embedded defaults>" for the built-in one)
    state_dir: Path
    log_level: str = "info"  #: env LOGLEVEL
    router: RouterConfig = RouterConfig()
    hub: HubConfig = HubConfig()
    http: HttpConfig = HttpConfig()
    nodes: dict[str, NodeConfig] = attrs.field(factory=dict)
