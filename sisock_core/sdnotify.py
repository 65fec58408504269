"""Tell systemd how we are doing (``sd_notify``): a datagram on ``$NOTIFY_SOCKET``.

Under a ``Type=notify`` unit (``sisock systemd``), systemd sets ``NOTIFY_SOCKET``; a process
that serves sends ``READY=1``. Without the variable (a terminal, a test) nothing happens.
"""

from __future__ import annotations

import os
import socket
from typing import Mapping


def notify(state: str, env: Mapping[str, str] = os.environ) -> bool:
    """Send ``state`` (e.g. ``"READY=1\\nSTATUS=serving"``) to systemd; True if it was sent.

    Errors (no such socket, systemd gone) are ignored: readiness is a courtesy, not a
    reason to stop serving.
    """
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError:
        return False
