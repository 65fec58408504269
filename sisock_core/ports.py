"""The TCP ports a command will listen on: are they free, and who holds a busy one.

``sisock up``, ``sisock router`` and ``sisock http`` check their ports before they start
anything (:func:`busy_reasons`), so a port another program already uses (8080 and 5000
are favourites of Jenkins, Tomcat, Flask...) is one line naming the address, the setting
that moves it and, where the system tells, the process holding it::

    127.0.0.1:8080 (the router's TLS port) is in use by pid 4242 (java -jar jenkins.war);
    stop that program or move sisock's port with [router] tls_port / CROSSBAR_TLS_PORT

The check binds (without listening) a socket with ``SO_REUSEADDR``, as Twisted and
crossbar do, so it fails exactly when their ``listen`` would. The holder comes from
``psutil`` (the kernel's socket tables); a process of another user shows as such.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Sequence

import attrs

from sisock_core.config import SiteConfig

#: Longest command line quoted when naming the process holding a port.
MAX_COMMAND_CHARS = 80


@attrs.frozen
class Listener:
    """A port a component listens on, and the setting that moves it."""

    what: str  #: e.g. "the router's TLS port"
    host: str  #: interface, as configured
    port: int
    setting: str  #: e.g. "[router] tls_port / CROSSBAR_TLS_PORT"
    listen_setting: str  #: the setting of the interface, e.g. "[router] listen"

    @property
    def address(self) -> str:
        host = _bind_host(self.host)
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


def router_listeners(cfg: SiteConfig) -> list[Listener]:
    """The router's TLS and OCS ports."""
    r = cfg.router
    return [
        Listener("the router's TLS port", r.listen, r.tls_port,
                 "[router] tls_port / CROSSBAR_TLS_PORT", "[router] listen"),
        Listener("the router's OCS port", r.ocs_listen, r.ocs_port,
                 "[router] ocs_port / CROSSBAR_OCS_PORT", "[router] ocs_listen"),
    ]


def http_listeners(cfg: SiteConfig, *, command_line: bool = False) -> list[Listener]:
    """The HTTP bridge's port (``command_line``: ``sisock http --port`` can move it too)."""
    setting = "[http] port / PORT" + (" / --port" if command_line else "")
    listen = "[http] listen" + (" / --listen" if command_line else "")
    return [Listener("the HTTP bridge's port", cfg.http.listen, cfg.http.port, setting, listen)]


def site_listeners(cfg: SiteConfig) -> list[Listener]:
    """Every port ``sisock up`` listens on with this site file."""
    out: list[Listener] = []
    if cfg.router.start:
        out += router_listeners(cfg)
    if cfg.http.start:
        out += http_listeners(cfg)
    return out


def _bind_host(host: str) -> str:
    host = host.strip().strip("[]")
    if host == "" or host.lower() == "localhost":
        return "127.0.0.1" if host else "0.0.0.0"
    return host


def _sockaddr(host: str, port: int) -> tuple[int, tuple]:
    host = _bind_host(host)
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        return family, (host, port)
    except ValueError:  # a host name: what listen() would bind
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                   flags=socket.AI_PASSIVE)[0]
        return family, addr


def why_busy(listener: Listener) -> str | None:
    """``None`` if a server could listen on ``listener`` now, else why not (one line)."""
    try:
        family, addr = _sockaddr(listener.host, listener.port)
    except OSError as exc:
        return (f"{listener.host!r} ({listener.what}) is not an address of this machine ({exc}); "
                f"fix {listener.listen_setting}")
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Twisted's listenTCP
        sock.bind(addr)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            holder = port_holder(listener.host, listener.port)
            by = f" by {holder}" if holder else ""
            return (f"{listener.address} ({listener.what}) is in use{by}; stop that program or "
                    f"move sisock's port with {listener.setting}")
        if exc.errno == errno.EACCES:
            return (f"not allowed to listen on {listener.address} ({listener.what}): ports below "
                    f"1024 need root or CAP_NET_BIND_SERVICE; choose another with {listener.setting}")
        if exc.errno == errno.EADDRNOTAVAIL:
            return (f"cannot listen on {listener.address} ({listener.what}): no such address on "
                    f"this machine; fix {listener.listen_setting}")
        return f"cannot listen on {listener.address} ({listener.what}): {exc.strerror or exc}"
    finally:
        sock.close()
    return None


def busy_reasons(listeners: Sequence[Listener]) -> list[str]:
    """One line per port in ``listeners`` that cannot be listened on (two listeners on the
    same address count as a problem too)."""
    problems: list[str] = []
    seen: dict[tuple[str, int], Listener] = {}
    for lst in listeners:
        key = (_bind_host(lst.host), lst.port)
        if key in seen:
            first = seen[key]
            problems.append(f"{first.what} and {lst.what} are both {lst.address}; move one "
                            f"with {first.setting} or {lst.setting}")
            continue
        seen[key] = lst
        reason = why_busy(lst)
        if reason:
            problems.append(reason)
    return problems


def _wildcard(ip: str) -> bool:
    return ip in ("0.0.0.0", "::", "")


def listening_pids(host: str, port: int) -> list[int | None]:
    """PIDs of the processes listening on ``host:port`` (or on a wildcard address with
    that port); ``None`` for a listener whose process this user cannot see. Empty if
    nothing listens there, or the system does not say (e.g. macOS without root)."""
    try:
        import psutil

        conns = psutil.net_connections(kind="tcp")
    except Exception:  # psutil.AccessDenied on macOS, missing /proc...
        return []
    want = _bind_host(host)
    pids: list[int | None] = []
    for c in conns:
        if c.status != "LISTEN" or not c.laddr or c.laddr.port != port:
            continue
        ip = c.laddr.ip.removeprefix("::ffff:")
        if ip == want or _wildcard(ip) or _wildcard(want):
            if c.pid not in pids:
                pids.append(c.pid)
    return pids


def describe_process(pid: int | None) -> str:
    """``pid 4242 (java -jar jenkins.war)``, or who it is when we cannot tell."""
    if pid is None:
        return "a process of another user (sudo ss -ltnp shows which)"
    try:
        import psutil

        proc = psutil.Process(pid)
        cmd = " ".join(proc.cmdline()) or proc.name()
    except Exception:
        return f"pid {pid}"
    if len(cmd) > MAX_COMMAND_CHARS:
        cmd = cmd[: MAX_COMMAND_CHARS - 3] + "..."
    return f"pid {pid} ({cmd})"


def port_holder(host: str, port: int) -> str | None:
    """Who listens on ``host:port`` (``pid 4242 (command)``), or ``None`` if unknown."""
    pids = listening_pids(host, port)
    if not pids:
        return None
    return ", ".join(describe_process(pid) for pid in pids)
