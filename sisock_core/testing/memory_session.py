"""An in-memory WAMP session: a dealer, a broker and the hub, for one node in this process.
"""

from __future__ import annotations

import itertools
import types
from typing import Any, Callable


from sisock_core.testing.wire import over_the_wire


class _Registration:
    def __init__(self, session: "MemorySession", uri: str) -> None:
        self.session, self.procedure = session, uri

    async def unregister(self) -> None:
        self.session.procedures.pop(self.procedure, None)


class _Subscription:
    def __init__(self, session: "MemorySession", topic: str, handler: Callable[..., Any]) -> None:
        self.session, self.topic, self.handler = session, topic, handler

    async def unsubscribe(self) -> None:
        handlers = self.session.subscriptions.get(self.topic, [])
        if self.handler in handlers:
            handlers.remove(self.handler)


class MemorySession:
    """What a DataNodeServer sees of the router, in memory.

    Registrations and subscriptions are kept in dicts; calls to the hub's procedures
    are answered by the hub's own :class:`~sisock_core.hub.Registry`; every other call
    goes to the registered procedure, with arguments and answers passed through the
    real WAMP ``serializer`` (msgpack by default) so that what a test sees is what a
    consumer would receive. Errors are autobahn ``ApplicationError`` as over WAMP.
    """

    _ids = itertools.count(1000)

    def __init__(self, serializer: str = "msgpack") -> None:
        from sisock_core.hub import Registry

        self._session_id = next(self._ids)
        self.serializer = serializer
        self.procedures: dict[str, Callable[..., Any]] = {}
        self.subscriptions: dict[str, list[Callable[..., Any]]] = {}
        self.patterns: dict[tuple[str, Callable[..., Any]], tuple[str, str | None]] = {}
        self.hub = Registry()
        self.attached = True

    def is_attached(self) -> bool:
        return self.attached

    async def register(self, endpoint: Callable[..., Any], procedure: str, options: Any = None) -> _Registration:
        from autobahn.wamp.exception import ApplicationError

        if procedure in self.procedures:
            raise ApplicationError("wamp.error.procedure_already_exists",
                                   f"register for already registered procedure '{procedure}'")
        self.procedures[procedure] = endpoint
        return _Registration(self, procedure)

    async def subscribe(self, handler: Callable[..., Any], topic: str, options: Any = None) -> _Subscription:
        self.subscriptions.setdefault(topic, []).append(handler)
        match = getattr(options, "match", None) or "exact"
        if match != "exact":
            self.patterns[(topic, handler)] = (match, getattr(options, "details_arg", None))
        return _Subscription(self, topic, handler)

    def _matches(self, pattern: str, match: str, topic: str) -> bool:
        if match == "prefix":
            return topic.startswith(pattern)
        want, got = pattern.split("."), topic.split(".")
        return len(want) == len(got) and all(w in ("", g) for w, g in zip(want, got))

    def publish(self, topic: str, *args: Any, options: Any = None, **kwargs: Any) -> None:
        """Deliver an event to this session's subscribers (payload passed over the wire;
        pattern subscriptions as a router matches them, with the event's topic in details)."""
        targets: list[tuple[Callable[..., Any], str | None]] = []
        for pattern, handlers in self.subscriptions.items():
            for handler in handlers:
                how = self.patterns.get((pattern, handler))
                if how is None:
                    if pattern == topic:
                        targets.append((handler, None))
                elif self._matches(pattern, how[0], topic):
                    targets.append((handler, how[1]))
        if not targets:
            return None
        args, kwargs = over_the_wire([list(args), kwargs], self.serializer, f"an event on {topic}")
        for handler, details_arg in targets:
            extra = {details_arg: types.SimpleNamespace(topic=topic)} if details_arg else {}
            handler(*args, **kwargs, **extra)
        return None

    async def call(self, procedure: str, *args: Any, **kwargs: Any) -> Any:
        from autobahn.wamp.exception import ApplicationError
        from twisted.internet import defer

        from sisock_core import wamp

        args, kwargs = over_the_wire([list(args), kwargs], self.serializer, f"arguments of {procedure}")
        try:
            if procedure == wamp.HUB_ADD:
                return self.hub.add(*args, **kwargs)
            if procedure == wamp.HUB_SUBTRACT:
                self.hub.subtract(*args, **kwargs)
                return None
            if procedure == wamp.HUB_LIST:
                return self.hub.listing()
        except (TypeError, ValueError) as exc:
            raise ApplicationError("wamp.error.invalid_argument", str(exc)) from exc
        endpoint = self.procedures.get(procedure)
        if endpoint is None:
            raise ApplicationError("wamp.error.no_such_procedure",
                                   f"no callee registered for procedure <{procedure}>")
        result = await defer.maybeDeferred(endpoint, *args, **kwargs)
        return over_the_wire(result, self.serializer, f"the answer of {procedure}")
