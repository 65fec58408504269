"""Waiting on events in async (pytest-twisted) tests, with a deadline.

- :class:`Signal`: something that happens again and again (a scanner pass, a node
  registering, a hub announcement); call it when it happens, await :meth:`Signal.next`;
- :func:`until`: await a condition that only an event can make true, checking it once at
  the start and once after each event (never on a timer); an AssertionError naming what did
  not happen once the deadline passes;
- :func:`until_hub_lists`: the hub's listing, asked again at each ``data_node_added`` /
  ``data_node_subtracted`` announcement;
- :func:`logged`: a Signal fired by each Twisted log line containing a text (any thread).
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable, Iterator

from twisted.internet import defer


class Signal:
    """A recurring event: ``signal(*args)`` when it happens (any arguments, ignored), and
    :meth:`next` for a Deferred that fires at the following occurrence."""

    def __init__(self) -> None:
        self.count = 0  #: how many times it happened
        self._waiting: list[defer.Deferred] = []

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.count += 1
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(self.count)

    def next(self) -> defer.Deferred:
        """Fires (with :attr:`count`) the next time the event happens."""
        d: defer.Deferred = defer.Deferred(canceller=self._waiting.remove)
        self._waiting.append(d)
        return d


async def until(check: Callable[[], Any], signal: Signal, timeout: float, what: str) -> Any:
    """The first true value of ``check()`` (plain or async), checked now and after each
    ``signal``; AssertionError ``timed out after …s waiting for <what>`` after ``timeout`` s.

    The wait for the next event starts before each check, so an event during an async check
    is not missed."""
    from twisted.internet import reactor

    deadline = reactor.seconds() + timeout
    value = None
    while True:
        event = signal.next()
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            remaining = deadline - reactor.seconds()
            if remaining <= 0:
                break
            try:
                await event.addTimeout(remaining, reactor)
            except defer.TimeoutError:
                break
        finally:
            if not event.called:
                event.addErrback(lambda f: f.trap(defer.CancelledError))
                event.cancel()
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r}; "
                         f"{signal.count} events seen)")


async def until_hub_lists(session: Any, check: Callable[[list[dict]], Any], timeout: float, what: str) -> Any:
    """The first true ``check(listing)`` of the hub's ``get_data_node`` answer, asked now and
    after each announcement of a change (``session``: a joined session allowed to subscribe
    to them, e.g. the consumer)."""
    from sisock_core.wamp import HUB_ADDED, HUB_LIST, HUB_SUBTRACTED

    changed = Signal()
    subscriptions = [await session.subscribe(changed, topic) for topic in (HUB_ADDED, HUB_SUBTRACTED)]

    async def listed() -> Any:
        return check(await session.call(HUB_LIST))

    try:
        return await until(listed, changed, timeout, what)
    finally:
        for subscription in subscriptions:
            await subscription.unsubscribe()


@contextlib.contextmanager
def logged(text: str) -> Iterator[Signal]:
    """A :class:`Signal` fired (in the reactor thread) by each log line containing ``text``,
    while the ``with`` block runs."""
    from twisted.internet import reactor
    from twisted.logger import formatEvent, globalLogPublisher
    from twisted.python import threadable

    signal = Signal()

    def observe(event: dict) -> None:
        if text in (formatEvent(event) or ""):
            if threadable.isInIOThread():
                signal()
            else:
                reactor.callFromThread(signal)

    globalLogPublisher.addObserver(observe)
    try:
        yield signal
    finally:
        globalLogPublisher.removeObserver(observe)
