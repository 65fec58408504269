"""Test helpers for code that needs a real crossbar router.

- :func:`free_port` / :func:`free_ports`: free loopback TCP ports (plain, blocking);
- :func:`in_reactor`: from a (synchronous) fixture, run a function returning a Deferred or
  coroutine and wait for it (pytest-twisted's ``blockon``; the reactor runs in the main
  thread, so child processes are reaped normally).  Not from test functions: pytest-twisted
  runs those inside the reactor greenlet; write them ``async`` with
  ``@pytest_twisted.ensureDeferred`` (to wait on an event: :mod:`tests.events`);
- :func:`log_events`: a fixture with every Twisted log event emitted during the test;
- :func:`site_config`: a :class:`SiteConfig` on free loopback ports in a temporary state dir;
- :func:`open_session`: an autobahn (Twisted) WAMP session, joined, for driving the router.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from twisted.internet import defer
from twisted.logger import globalLogPublisher

from sisock_core.config import RouterConfig, SiteConfig
from sisock_core.testing import free_port, free_ports  # noqa: F401  (re-exported for the tests)

# --------------------------------------------------------------------------------------------
# the reactor (pytest-twisted runs it in a greenlet of the main thread)
# --------------------------------------------------------------------------------------------


def reactor():
    """The global Twisted reactor (the one pytest-twisted runs)."""
    from twisted.internet import reactor as r

    return r


def in_reactor(fn: Callable[..., Any], *args: Any, timeout: float = 60.0, **kwargs: Any) -> Any:
    """Call ``fn(*args, **kwargs)`` and block (letting the reactor run) until its result.

    ``fn`` may return a plain value, a Deferred or a coroutine.  Raises what it raised, or
    ``TimeoutError`` after ``timeout`` seconds (the operation is cancelled).  For fixtures
    (``pytest_twisted.blockon``); async tests simply ``await``.
    """
    import pytest_twisted

    d = defer.maybeDeferred(fn, *args, **kwargs)
    d.addCallback(
        lambda res: defer.Deferred.fromCoroutine(res)
        if hasattr(res, "__await__") and not isinstance(res, defer.Deferred) else res
    )
    d.addTimeout(timeout, reactor())
    try:
        return pytest_twisted.blockon(d)
    except defer.TimeoutError:
        raise TimeoutError(f"{getattr(fn, '__name__', fn)} took more than {timeout} s") from None


@pytest.fixture
def log_events():
    """Every Twisted log event emitted during the test (any thread)."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


def site_config(state_dir: Path, **router: Any) -> SiteConfig:
    """A site on two free loopback ports, everything generated under ``state_dir``."""
    if "tls_port" not in router or "ocs_port" not in router:
        tls_port, ocs_port = free_ports(2)
        router.setdefault("tls_port", tls_port)
        router.setdefault("ocs_port", ocs_port)
    return SiteConfig(path="<test>", state_dir=Path(state_dir), router=RouterConfig(**router))


# --------------------------------------------------------------------------------------------
# WAMP sessions
# --------------------------------------------------------------------------------------------


class SessionRefused(Exception):
    """The router aborted the session before it joined; ``reason`` is the WAMP error URI."""

    def __init__(self, reason: str, message: str | None):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def _serializer(name: str):
    from autobahn.wamp import serializer

    return {
        "json": serializer.JsonSerializer,
        "msgpack": serializer.MsgPackSerializer,
        "cbor": serializer.CBORSerializer,
    }[name]()


async def open_session(
    cfg: SiteConfig,
    *,
    authid: str | None = None,
    secret: str | None = None,
    ocs: bool = False,
    serializer: str = "msgpack",
    path: str = "/ws",
):
    """A joined autobahn :class:`ApplicationSession` (call ``await s.leave()`` when done).

    TLS port with WAMP-CRA as ``authid``/``secret`` (anonymous when ``authid`` is None), or the
    plain OCS port (``ocs=True``, anonymous).  Raises :class:`SessionRefused` when the router
    aborts the join, ``ConnectionError`` when the connection drops before.
    """
    from autobahn.twisted.wamp import ApplicationSession
    from autobahn.twisted.websocket import WampWebSocketClientFactory
    from autobahn.wamp import auth, types
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

    from sisock_core.tls import client_tls_options

    r = reactor()
    joined: defer.Deferred = defer.Deferred()

    class Session(ApplicationSession):
        def onConnect(self):
            if authid is None:
                self.join(cfg.router.realm, ["anonymous"])
            else:
                self.join(cfg.router.realm, ["wampcra"], authid)

        def onChallenge(self, challenge):
            return auth.compute_wcs(secret, challenge.extra["challenge"])

        def onJoin(self, details):
            self.details = details
            if not joined.called:
                joined.callback(self)

        def onLeave(self, details):
            if not joined.called:
                joined.errback(SessionRefused(details.reason, details.message))
            self.disconnect()

        def onDisconnect(self):
            if not joined.called:
                joined.errback(ConnectionError("disconnected before joining"))

    factory = WampWebSocketClientFactory(
        lambda: Session(types.ComponentConfig(realm=cfg.router.realm)),
        url=("ws://127.0.0.1:%d%s" % (cfg.router.ocs_port, path)) if ocs else
        ("wss://%s:%d%s" % (cfg.router.host, cfg.router.tls_port, path)),
        serializers=[_serializer(serializer)],
    )
    if ocs:
        endpoint = HostnameEndpoint(r, "127.0.0.1", cfg.router.ocs_port)
    else:
        endpoint = wrapClientTLS(
            client_tls_options(cfg), HostnameEndpoint(r, "127.0.0.1", cfg.router.tls_port)
        )
    await endpoint.connect(factory)
    return await joined
