"""Cooperative cancellation of a request (pure: no Twisted).

The data node gives every ``get_data``/``get_fields`` call a :class:`CancelToken` and
cancels it when the caller abandons the call (the HTTP bridge's timeout cancels its
WAMP call; the router interrupts the node). The engine and plugins call :func:`check`
between units of work (a file, a chunk, a day): it raises :class:`Cancelled` once the
token is cancelled, so an abandoned request stops consuming the node's worker thread
at the next check. Outside a request (tests, scripts) :func:`check` does nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Iterator


class Cancelled(Exception):
    """The request was abandoned by its caller; stop working on it."""


class CancelToken:
    """Set once, from any thread, when a request is abandoned."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "abandoned by the caller"

    def cancel(self, reason: str | None = None) -> None:
        if reason:
            self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if the request was cancelled."""
        if self._event.is_set():
            raise Cancelled(self.reason)


_current: contextvars.ContextVar[CancelToken | None] = contextvars.ContextVar("sisock_cancel", default=None)


@contextlib.contextmanager
def scope(token: CancelToken | None) -> Iterator[CancelToken | None]:
    """Make ``token`` the current request's token (in this thread) for the block."""
    reset = _current.set(token)
    try:
        yield token
    finally:
        _current.reset(reset)


def current() -> CancelToken | None:
    """The current request's token, or None outside a request."""
    return _current.get()


def check() -> None:
    """Raise :class:`Cancelled` if the current request was abandoned (plugins call this
    between chunks of work)."""
    token = _current.get()
    if token is not None:
        token.check()
