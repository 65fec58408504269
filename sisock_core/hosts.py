"""Host names and addresses: which ones stay on this machine."""

from __future__ import annotations

import ipaddress

#: names that resolve to the loopback interface (``*.localhost`` too, RFC 6761)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name, an IPv4 or an IPv6 address, bracketed or not) is this
    machine only: a loopback name or address. ``""``, ``0.0.0.0`` and ``::`` (every
    interface) are not."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
