"""One-shot WAMP sessions for commands and tests: join, do some work, leave; and
fetching a ``get_data`` answer too large for one message in consecutive pieces."""

from __future__ import annotations

import math
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
    from sisock_core.credentials import SecretsError

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


#: Pieces ``get_data_in_pieces`` cuts a range into at most (a runaway guard).
MAX_PIECES = 100_000


def merge_answers(answers: Sequence[dict]) -> dict:
    """One ``get_data`` answer from the answers for consecutive time ranges (in order):
    each field's values and each timeline's times concatenated, ``finalized_until`` of
    the last piece holding the timeline."""
    merged: dict[str, Any] = {"data": {}, "timeline": {}}
    for answer in answers:
        for name, values in answer.get("data", {}).items():
            merged["data"].setdefault(name, []).extend(values)
        for name, tl in answer.get("timeline", {}).items():
            out = merged["timeline"].setdefault(name, {"t": [], "finalized_until": None})
            out["t"].extend(tl.get("t", []))
            out["finalized_until"] = tl.get("finalized_until")
    return merged


async def get_data_in_pieces(
    call: Callable[[float, float], Awaitable[dict]],
    start: float,
    end: float,
    *,
    on_piece: Callable[[int, int, float, float], None] | None = None,
) -> dict:
    """A whole ``get_data`` answer for ``[start, end)`` (UNIX times), asked in as many
    consecutive pieces as the node needs: ``call(t0, t1)`` asks for one piece; a piece
    the node refuses as too large (``org.simonsobservatory.error.answer_too_large``) is cut
    into smaller ones, sized from the estimate the node sends. ``on_piece(done, known,
    t0, t1)`` reports progress."""
    from autobahn.wamp.exception import ApplicationError

    from sisock_core.answersize import ERROR_ANSWER_TOO_LARGE

    todo = [(float(start), float(end))]
    answers: list[dict] = []
    while todo:
        t0, t1 = todo.pop(0)
        try:
            answer = await call(t0, t1)
        except ApplicationError as exc:
            if exc.error != ERROR_ANSWER_TOO_LARGE or len(answers) + len(todo) > MAX_PIECES:
                raise
            ratio = exc.kwargs.get("estimated_bytes", 2) / max(1, exc.kwargs.get("limit_bytes", 1))
            n = max(2, math.ceil(ratio * 1.25))
            edges = [t0 + (t1 - t0) * i / n for i in range(n)] + [t1]
            if edges[1] <= t0:  # too small to cut: cannot be answered in pieces
                raise
            todo[0:0] = list(zip(edges[:-1], edges[1:]))
            continue
        answers.append(answer)
        if on_piece is not None:
            on_piece(len(answers), len(answers) + len(todo), t0, t1)
    return merge_answers(answers)
