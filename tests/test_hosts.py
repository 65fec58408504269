"""One rule for "this machine only" hosts (listen interfaces, CROSSBAR_HOST)."""

from __future__ import annotations

import pytest

from sisock_core.hosts import is_loopback


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.0.0.5", "127.0.1.1", "localhost", "LOCALHOST ", "::1", "[::1]",
    "localhost.localdomain", "ip6-localhost", "ip6-loopback", "router.localhost",
])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", [
    "0.0.0.0", "::", "", "10.0.0.1", "myhost.example.org", "sisock-crossbar", "localhost.example.org",
])
def test_non_loopback_hosts(host: str) -> None:
    assert not is_loopback(host)
