"""Is the router serving? A one-shot TLS + WebSocket + WAMP-CRA join, retried until it
works (:func:`wait_until_joinable`), telling a router still starting from a port taken
by another server or credentials refused (:class:`RouterRefused`)."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer, error, protocol, task
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from sisock_core.config import SiteConfig
from sisock_core.credentials import Secrets
from sisock_core.tls import client_tls_options, tls_failure_reason


class RouterStartError(RuntimeError):
    """Crossbar did not become ready (exited, or timed out); the message has its last output."""


class RouterRefused(RouterStartError):
    """The router cannot start for a reason a restart does not fix: what answers on its port
    is not our router, or it refuses our own credentials. The message says which (one line)."""


def connect_host(cfg: SiteConfig) -> str:
    """Address to reach our own router at: its interface, or loopback for a wildcard."""
    listen = cfg.router.listen.strip().strip("[]")
    if listen in ("", "0.0.0.0"):
        return "127.0.0.1"
    if listen == "::":
        return "::1"
    if listen.lower() == "localhost":
        return "127.0.0.1"
    return listen


def _without_tls_errors(event: dict) -> None:
    if not str(event.get("log_format") or "").startswith("SSL error"):
        globalLogPublisher(event)


def _probe_log() -> Any:
    """The readiness probe's WebSocket log: autobahn's (a txaio logger), minus its line per
    TLS failure."""
    import txaio

    return txaio.make_logger(observer=_without_tls_errors)


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
        log = _probe_log()  # (wait_until_joinable reports TLS failures itself, once)

        def connectionLost(self, reason):
            super().connectionLost(reason)
            # TLS or WebSocket failures never reach the session: report them at once
            finish(reason)

    url = f"wss://{cfg.router.host}:{cfg.router.tls_port}{cfg.router.path}"
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


def _tls_refusal(host: str, port: int, exc: BaseException) -> str | None:
    """Why a TLS failure says the server at ``host:port`` is not our router, or ``None`` if
    ``exc`` is no TLS failure."""
    reason = tls_failure_reason(exc)
    if reason is None:
        return None
    if "certificate verify failed" in reason:
        return (f"{host}:{port} answers with a certificate router.ca_cert does not trust "
                f"({reason}): another server listens there, or ca_cert is not the router's")
    return (f"{host}:{port} answers, but it is not our router: its TLS handshake failed "
            f"({reason}), as when another program (an HTTP server?) listens there")


async def wait_until_joinable(
    cfg: SiteConfig,
    secrets: Secrets,
    timeout: float,
    *,
    reactor=None,
    host: str | None = None,
    interval: float = 0.05,
    server_check: Callable[[], str | None] | None = None,
) -> float:
    """Wait until a WAMP-CRA session as ``router.wamp_user`` can join the router.

    Polls (every ``interval`` seconds): a TCP connection to the TLS port, then a full TLS +
    WebSocket + WAMP-CRA join.  Returns the seconds waited.  Raises :class:`RouterStartError`
    after ``timeout`` seconds, or :class:`RouterRefused` at once when what answers is not our
    router (its TLS handshake fails) or it refuses the credentials (neither fixes itself).
    ``server_check``, called once when the port first accepts a connection, returns why the
    server there is not ours (then no TLS is spoken to it), or ``None``.  ``host`` defaults
    to the router's interface (loopback for a wildcard).
    """
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    from twisted.internet.endpoints import HostnameEndpoint

    host = host or connect_host(cfg)
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
            if server_check is not None:
                check, server_check = server_check, None
                foreign = check()
                if foreign:
                    raise RouterRefused(foreign)
            try:
                await _join_once(
                    cfg, cfg.router.wamp_user, secrets.server, reactor,
                    host=host, timeout=min(remaining, 10.0),
                )
            except _AuthFailed as e:
                raise RouterRefused(
                    f"router at {host}:{port} refused user {cfg.router.wamp_user!r} on realm "
                    f"{cfg.router.realm!r}: {e}"
                ) from None
            except (defer.CancelledError, defer.TimeoutError):
                # out of time mid-attempt: the previous error says more, if there was one
                if not last_error.startswith("WAMP join failed"):
                    last_error = "WAMP join timed out"
            except Exception as e:  # closed socket, crossbar still starting: try again
                refusal = _tls_refusal(host, port, e)
                if refusal:
                    raise RouterRefused(refusal) from None
                last_error = f"WAMP join failed: {e!r}"
            else:
                return reactor.seconds() - started
        await task.deferLater(reactor, interval, lambda: None)
