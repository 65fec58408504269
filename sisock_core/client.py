"""One-shot WAMP sessions for commands and tests: join, do some work, leave."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Sequence

from twisted.internet import defer, threads

from sisock_core.config import SiteConfig
from sisock_core.trustcheck import (
    explain_untrusted_router,
    is_untrusted_certificate,
    where_the_site_keeps_its_state,
)
from sisock_core.wamp import make_component


async def with_session(
    reactor: Any,
    cfg: SiteConfig,
    work: Callable[[Any], Awaitable[Any]],
    *,
    consumer: bool = True,
    serializers: Sequence[str] = ("msgpack",),
    timeout: float = 15.0,
) -> Any:
    """Join the site's router, return ``await work(session)``, then leave.

    Joins as the read-only consumer user unless ``consumer=False``. Raises
    ``RuntimeError`` naming the router when it cannot be reached or joined (when TLS
    refuses its certificate: which one was tried and where the site keeps its own), and
    ``twisted.internet.defer.TimeoutError`` after ``timeout`` seconds.
    """
    from sisock_core.router import SecretsError

    try:
        comp = make_component(cfg, consumer=consumer, serializers=serializers, max_retries=0)
    except SecretsError as exc:  # perhaps the site runs with another state directory
        hint = await threads.deferToThread(where_the_site_keeps_its_state, cfg)
        if hint is None:
            raise
        raise SecretsError(f"{exc}; {hint}") from None
    result: defer.Deferred = defer.Deferred()
    where = f"{cfg.router.host}:{cfg.router.tls_port}"

    def settle(ok: bool, value: Any) -> None:
        if not result.called:
            (result.callback if ok else result.errback)(value)

    joined = []

    async def on_join(session: Any, details: Any) -> None:
        joined.append(session)
        try:
            value = await work(session)
        except Exception as exc:
            settle(False, exc)
        else:
            settle(True, value)
        session.leave()

    comp.on("join", on_join)
    comp.on("connectfailure",
            lambda _c, exc: settle(False, RuntimeError(f"cannot reach the router at {where}: {exc}")))
    done = comp.start(reactor)
    done.addBoth(lambda res: settle(False, RuntimeError(f"could not join the router at {where}: {res}")))
    result.addTimeout(timeout, reactor)
    try:
        return await result
    except RuntimeError as exc:
        if not is_untrusted_certificate(exc):
            raise
        # "certificate verify failed" alone does not say which certificate, nor where the
        # site keeps its own (a site started with another SISOCK_STATE_DIR)
        why = await threads.deferToThread(explain_untrusted_router, cfg)
        raise RuntimeError(f"cannot connect to the router at {where}: {why}") from None
    finally:
        if not done.called:
            if joined:
                comp.stop()
            else:
                # Still connecting: stopping autobahn mid-retry trips over its own
                # state, so let the failed attempt finish (max_retries=0).
                waiter: defer.Deferred = defer.Deferred()
                done.addBoth(lambda r: waiter.called or waiter.callback(None))
                reactor.callLater(2.0, lambda: waiter.called or waiter.callback(None))
                await waiter
