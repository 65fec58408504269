"""A Twisted reactor of the harness's own, in a daemon thread (in-process nodes run on it).
"""

from __future__ import annotations

import concurrent.futures
import inspect
import threading
from typing import Any, Callable


class _ReactorThread:
    """A Twisted reactor of our own, running in a daemon thread.

    In-process nodes run on it, so plain synchronous tests can drive them without
    pytest-twisted and without touching the global reactor.
    """

    def __init__(self) -> None:
        from twisted.internet.selectreactor import SelectReactor

        self.reactor = SelectReactor()
        self.thread = threading.Thread(
            target=self.reactor.run, kwargs={"installSignalHandlers": False},
            name="sisock-testing-reactor", daemon=True,
        )
        self.thread.start()

    def run(self, fn: Callable[..., Any], *args: Any, timeout: float = 60.0, **kwargs: Any) -> Any:
        """Call ``fn`` in the reactor thread; block until its (Deferred or coroutine) result."""
        from twisted.internet import defer

        future: concurrent.futures.Future = concurrent.futures.Future()

        def go() -> None:
            def settle(result: Any) -> Any:
                if inspect.iscoroutine(result):
                    return defer.Deferred.fromCoroutine(result)
                return result

            d = defer.maybeDeferred(fn, *args, **kwargs).addCallback(settle)
            d.addTimeout(timeout, self.reactor)
            d.addCallbacks(future.set_result, lambda f: future.set_exception(f.value))

        self.reactor.callFromThread(go)
        try:
            return future.result(timeout + 5)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"{getattr(fn, '__qualname__', fn)} took more than {timeout}s") from None

    def stop(self) -> None:
        if self.thread.is_alive():
            self.reactor.callFromThread(self.reactor.stop)
            self.thread.join(10)


_reactor_lock = threading.Lock()
_reactor_thread: _ReactorThread | None = None


def _private_reactor() -> _ReactorThread:
    global _reactor_thread
    with _reactor_lock:
        if _reactor_thread is None or not _reactor_thread.thread.is_alive():
            _reactor_thread = _ReactorThread()
        return _reactor_thread


def _stop_private_reactor() -> None:
    global _reactor_thread
    with _reactor_lock:
        if _reactor_thread is not None:
            _reactor_thread.stop()
            _reactor_thread = None
