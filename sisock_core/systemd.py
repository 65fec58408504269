"""systemd unit files for a site (``sisock systemd``).

Two layouts:

- one service, ``sisock.service``, running ``sisock up SITE`` (small sites: ``sisock up``
  supervises the router, hub, bridge, nodes and plugins' services itself);
- ``--per-component``: ``sisock-router.service``, ``sisock-hub.service``,
  ``sisock-http.service``, one service per node process (``sisock-node-<name>.service``
  for a process serving one node, ``sisock-group-<group>.service`` for a group of nodes:
  :mod:`sisock_core.nodegroups`) and ``sisock-<service>.service`` per service the nodes'
  plugins declare (hook ``plugin_services``), grouped by ``sisock.target``, so each is
  started, stopped, restarted and logged on its own (larger sites).

Every service is ``Type=notify``: sisock tells systemd it is ready (``READY=1`` on
``$NOTIFY_SOCKET``, :mod:`sisock_core.sdnotify`) when it serves, so units ordered after it
start only then. It restarts on failure, runs as a dedicated user (``--user``, default
``sisock``) and is hardened (read-only system, no new privileges, no capabilities, private
/tmp and devices, only IP and Unix sockets); generated files (secrets, certificate, SQLite
indexes) go to ``/var/lib/sisock`` (``StateDirectory=``) unless the site file names its own
``state_dir``, which is then the one writable path. Secrets come from the environment file
``/etc/sisock/sisock.env`` (optional) or the state directory.

No Twisted: :func:`units` returns ``{file name: text}`` (asking the nodes' plugins for their
services); the command line writes them.
"""

from __future__ import annotations

import os
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Sequence

import attrs

from sisock_core.config import EMBEDDED_SOURCE, SiteConfig
from sisock_core.nodegroups import site_node_processes
from sisock_core.plugins import plugin_services

#: Seconds systemd waits for ``READY=1`` (sisock up waits up to 60 s for the router and the
#: hub each and 120 s for the nodes).
UP_START_TIMEOUT = 300
COMPONENT_START_TIMEOUT = 180

HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
UMask=0077
"""


@attrs.frozen
class UnitOptions:
    """How the units run sisock."""

    user: str = "sisock"  #: the dedicated system user (and group) the services run as
    command: tuple[str, ...] = ()  #: how to run sisock (default: :func:`default_command`)
    env_file: str = "/etc/sisock/sisock.env"  #: optional environment file (secrets)
    per_component: bool = False  #: one unit per component instead of one for ``sisock up``


def default_command() -> tuple[str, ...]:
    """The ``sisock`` script next to this interpreter (a virtualenv's), else ``python -m``."""
    script = Path(sys.executable).with_name("sisock")
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (sys.executable, "-m", "sisock_core.cli")


def _explicit_state_dir(cfg: SiteConfig) -> bool:
    if cfg.path == EMBEDDED_SOURCE:
        return False
    try:
        with open(cfg.path, "rb") as f:
            return "state_dir" in tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return False


def _low_port(cfg: SiteConfig, role: str) -> bool:
    """Does the ``role`` (``up``, ``router``, ``http``) listen on a port below 1024?"""
    ports = []
    if role in ("up", "router") and cfg.router.start:
        ports += [cfg.router.tls_port, cfg.router.ocs_port]
    if role in ("up", "http") and cfg.http.start:
        ports.append(cfg.http.port)
    return any(p < 1024 for p in ports)


def _quote(args: Sequence[str]) -> str:
    """A command line for ``ExecStart=`` (systemd's quoting is close to the shell's; ``%``
    and ``$`` are doubled so systemd leaves them alone)."""
    return " ".join(shlex.quote(a).replace("%", "%%").replace("$", "$$") for a in args)


def _service(cfg: SiteConfig, opts: UnitOptions, description: str, args: Sequence[str], *,
             after: Sequence[str] = (), part_of: str | None = None, start_timeout: int,
             install: bool) -> str:
    command = opts.command or default_command()
    state = ""
    if _explicit_state_dir(cfg):
        state = f"ReadWritePaths={cfg.state_dir}\n"
    else:
        state = ("StateDirectory=sisock\nStateDirectoryMode=0700\n"
                 "Environment=SISOCK_STATE_DIR=%S/sisock\n")
    unit = [f"Description={description}",
            "Wants=network-online.target",
            "After=" + " ".join(["network-online.target", *after])]
    if part_of:
        unit.append(f"PartOf={part_of}")
    caps = ("AmbientCapabilities=CAP_NET_BIND_SERVICE\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"
            if _low_port(cfg, args[0]) else "CapabilityBoundingSet=\n")
    text = (
        "# Generated by `sisock systemd` for "
        f"{cfg.path if cfg.path != EMBEDDED_SOURCE else 'the embedded default site'}.\n"
        "[Unit]\n" + "\n".join(unit) + "\n\n"
        "[Service]\n"
        "Type=notify\n"
        "NotifyAccess=main\n"
        f"ExecStart={_quote([*command, *args])}\n"
        f"User={opts.user}\n"
        f"Group={opts.user}\n"
        f"EnvironmentFile=-{opts.env_file}\n"
        "Environment=PYTHONUNBUFFERED=1\n"
        f"{state}"
        "WorkingDirectory=/\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        # a bad site file (2) or something on the machine in the way (78): a restart repeats it
        "RestartPreventExitStatus=2 78\n"
        f"TimeoutStartSec={start_timeout}\n"
        "TimeoutStopSec=60\n"
        "KillMode=mixed\n"
        f"{caps}"
        f"{HARDENING}"
    )
    if install:
        text += "\n[Install]\nWantedBy=multi-user.target\n"
    return text


def _site_args(cfg: SiteConfig) -> list[str]:
    return [] if cfg.path == EMBEDDED_SOURCE else ["--config", os.path.abspath(cfg.path)]


def unit_name(name: str) -> str:
    """``name`` as a piece of a unit name (as ``systemd-escape``: other bytes as ``\\xNN``)."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.-")
    return "".join(c if c in allowed else "".join(f"\\x{b:02x}" for b in c.encode()) for c in name)


def units(cfg: SiteConfig, opts: UnitOptions = UnitOptions()) -> dict[str, str]:
    """The unit files for ``cfg``: ``{file name: text}``."""
    site = _site_args(cfg)
    if not opts.per_component:
        return {"sisock.service": _service(cfg, opts, "sisock site (router, hub, bridge and data nodes)",
                                           ["up", *site], start_timeout=UP_START_TIMEOUT, install=True)}
    target = "sisock.target"
    out: dict[str, str] = {}
    router = ["sisock-router.service"] if cfg.router.start else []
    hub = ["sisock-hub.service"] if cfg.hub.start else []
    if router:
        out["sisock-router.service"] = _service(cfg, opts, "sisock WAMP router (crossbar)", ["router", *site],
                                                part_of=target, start_timeout=COMPONENT_START_TIMEOUT,
                                                install=False)
    if hub:
        out["sisock-hub.service"] = _service(cfg, opts, "sisock hub (the list of live data nodes)", ["hub", *site],
                                             after=router, part_of=target,
                                             start_timeout=COMPONENT_START_TIMEOUT, install=False)
    if cfg.http.start:
        out["sisock-http.service"] = _service(cfg, opts, "sisock HTTP bridge (Grafana data source)",
                                              ["http", *site], after=router + hub, part_of=target,
                                              start_timeout=COMPONENT_START_TIMEOUT, install=False)
    for p in site_node_processes(cfg):
        kind, name = p.name.split(" ", 1)
        plugins = sorted({cfg.nodes[n].plugin for n in p.nodes})
        what = (f"sisock data node {name}" if len(p.nodes) == 1 else
                f"sisock data nodes of group {name}: {', '.join(p.nodes)}")
        out[f"sisock-{kind}-{unit_name(name)}.service"] = _service(
            cfg, opts, f"{what} ({', '.join(plugins)})", [*p.args, *site],
            after=router + hub, part_of=target, start_timeout=COMPONENT_START_TIMEOUT, install=False)
    services, problems = plugin_services(cfg)
    if problems:
        raise ValueError("; ".join(problems))
    for plugin, service in services:
        # without a ready_timeout it is ready when it is (e.g. after a long first pass)
        timeout = int(service.ready_timeout) if service.ready_timeout is not None else 0
        text = _service(cfg, opts, f"sisock {service.description or service.name} (plugin {plugin})",
                        [*service.command, *site], part_of=target, start_timeout=timeout, install=False)
        if service.ready_timeout is None:
            text = text.replace("TimeoutStartSec=0", "TimeoutStartSec=infinity")
        out[f"sisock-{unit_name(service.name)}.service"] = text
    out[target] = (
        "# Generated by `sisock systemd --per-component`: every component of the site.\n"
        "[Unit]\n"
        "Description=sisock site (every component)\n"
        f"Wants={' '.join(sorted(out))}\n"
        "\n[Install]\nWantedBy=multi-user.target\n"
    )
    return out


def write_units(files: dict[str, str], directory: Path) -> list[Path]:
    """Write ``files`` into ``directory`` (created if needed); the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
