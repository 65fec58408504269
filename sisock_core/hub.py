"""The hub: the router's list of live data nodes (wire-compatible with sisock 0.2).

Procedures ``org.simonsobservatory.data_node.add(name, description, session_id)``
(True, or False if the name is taken), ``.data_node.subtract(name, session_id)``
and ``.consumer.get_data_node()``; topics ``.consumer.data_node_added`` and
``.consumer.data_node_subtracted``. A node whose session leaves the router without
subtracting itself is removed (meta event ``wamp.session.on_leave``).

The registry lives in memory. When the hub (re)joins the router it publishes
``org.simonsobservatory.hub.started``; every DataNodeServer answers by adding
itself again, so a hub restart loses nothing.

A node adds and subtracts only itself: the router discloses the caller's session
(the server role's ``disclose.caller``), and a ``session_id`` that is not the
caller's is refused with ``org.simonsobservatory.error.not_authorized``, so one
trusted session cannot register a name on behalf of a session that never serves it.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import attrs
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions
from twisted.logger import Logger

from sisock_core import wamp


@attrs.define
class NodeEntry:
    name: str
    description: str
    session_id: int

    def public(self) -> dict:
        return {"name": self.name, "description": self.description}


class Registry:
    """The hub's bookkeeping, free of WAMP so it is testable on its own."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeEntry] = {}

    def add(self, name: Any, description: Any, session_id: Any) -> bool:
        if not isinstance(name, str) or not name:
            raise ValueError(f"data_node.add: name must be a non-empty string, got {name!r}")
        if not isinstance(session_id, int) or isinstance(session_id, bool):
            raise ValueError(f"data_node.add: session_id must be an integer, got {session_id!r}")
        existing = self.nodes.get(name)
        if existing is not None:
            # The same session adding again (after a hub restart) is not a duplicate.
            return existing.session_id == session_id
        self.nodes[name] = NodeEntry(name, "" if description is None else str(description), session_id)
        return True

    def subtract(self, name: Any, session_id: Any) -> NodeEntry | None:
        entry = self.nodes.get(name) if isinstance(name, str) else None
        if entry is None or entry.session_id != session_id:
            return None
        return self.nodes.pop(name)

    def session_left(self, session_id: int) -> list[NodeEntry]:
        gone = [e for e in self.nodes.values() if e.session_id == session_id]
        for e in gone:
            del self.nodes[e.name]
        return gone

    def listing(self) -> list[dict]:
        return [e.public() for e in sorted(self.nodes.values(), key=lambda e: e.name)]


def _usage(text: str, stub: Callable[..., None]) -> tuple[str, inspect.Signature]:
    return text, inspect.signature(stub)


_ADD = _usage("data_node.add(name, description, session_id)", lambda name, description, session_id: None)
_SUBTRACT = _usage("data_node.subtract(name, session_id)", lambda name, session_id: None)
_LIST = _usage("consumer.get_data_node()", lambda: None)

#: The error of a call naming a session other than the caller's.
ERROR_NOT_AUTHORIZED = wamp.uri("error.not_authorized")


def _check_caller(usage: str, session_id: Any, details: Any) -> None:
    """Refuse a ``session_id`` that is not the calling session's (when the router says who called)."""
    caller = getattr(details, "caller", None)
    if caller is not None and session_id != caller:
        raise ApplicationError(
            ERROR_NOT_AUTHORIZED,
            f"{usage}: session_id {session_id!r} is not the calling session ({caller}); "
            "a data node adds and subtracts only itself",
        )


def _arguments(procedure: tuple[str, inspect.Signature], args: tuple, kwargs: dict) -> tuple:
    """A call's arguments in order, or an ``invalid_argument`` error saying what is wrong."""
    usage, signature = procedure
    try:
        return tuple(signature.bind(*args, **kwargs).arguments.values())
    except TypeError as exc:
        raise ApplicationError("org.simonsobservatory.error.invalid_argument", f"{usage}: {exc}") from None


class Hub:
    """The hub's WAMP side around a :class:`Registry`."""

    log = Logger()

    def __init__(self, cfg: Any, on_ready: Callable[[], None] | None = None) -> None:
        self.registry = Registry()
        self._session: Any = None
        self._on_ready = on_ready
        self.component = wamp.make_component(cfg, session_factory=wamp.quiet_session_factory())
        self.component.on("join", self._on_join)
        self.component.on("leave", self._on_leave)

    def start(self, reactor: Any):
        return self.component.start(reactor)

    def stop(self):
        return self.component.stop()

    def _publish(self, topic: str, entry: NodeEntry) -> None:
        if self._session is not None and self._session.is_attached():
            self._session.publish(topic, entry.public(), options=PublishOptions(acknowledge=False))

    # -- procedures ----------------------------------------------------------------

    def add(self, *args: Any, details: Any = None, **kwargs: Any) -> bool:
        """``data_node.add(name, description, session_id)``."""
        name, description, session_id = _arguments(_ADD, args, kwargs)
        _check_caller(_ADD[0], session_id, details)
        try:
            ok = self.registry.add(name, description, session_id)
        except ValueError as exc:
            raise ApplicationError("org.simonsobservatory.error.invalid_argument", str(exc))
        if ok:
            entry = self.registry.nodes[name]
            self.log.info("data node {name} added (session {session})", name=name, session=session_id)
            self._publish(wamp.HUB_ADDED, entry)
        else:
            self.log.warn(
                "refused data node {name}: the name is taken by session {owner}",
                name=name, owner=self.registry.nodes[name].session_id,
            )
        return ok

    def subtract(self, *args: Any, details: Any = None, **kwargs: Any) -> None:
        """``data_node.subtract(name, session_id)``."""
        name, session_id = _arguments(_SUBTRACT, args, kwargs)
        _check_caller(_SUBTRACT[0], session_id, details)
        entry = self.registry.subtract(name, session_id)
        if entry is not None:
            self.log.info("data node {name} subtracted", name=name)
            self._publish(wamp.HUB_SUBTRACTED, entry)

    def get_data_node(self, *args: Any, **kwargs: Any) -> list[dict]:
        """``consumer.get_data_node()``."""
        _arguments(_LIST, args, kwargs)
        return self.registry.listing()

    def _session_left(self, session_id: Any, *args: Any, **kwargs: Any) -> None:
        for entry in self.registry.session_left(session_id):
            self.log.info("data node {name} left the router; removed", name=entry.name)
            self._publish(wamp.HUB_SUBTRACTED, entry)

    # -- session --------------------------------------------------------------------

    async def _on_join(self, session: Any, details: Any) -> None:
        self._session = session
        own = RegisterOptions(details_arg="details")
        await session.register(self.add, wamp.HUB_ADD, options=own)
        await session.register(self.subtract, wamp.HUB_SUBTRACT, options=own)
        await session.register(self.get_data_node, wamp.HUB_LIST)
        await session.subscribe(self._session_left, "wamp.session.on_leave")
        # Nodes still connected re-add themselves when they hear this.
        await session.publish(wamp.HUB_STARTED, options=PublishOptions(acknowledge=True))
        self.log.info("hub ready on realm {realm}", realm=details.realm)
        if self._on_ready is not None:
            self._on_ready()
            self._on_ready = None

    def _on_leave(self, session: Any, details: Any) -> None:
        self._session = None
        # Sessions that leave while we are away are never reported to us, so start
        # afresh: live nodes re-add themselves when the hub announces itself.
        self.registry.nodes.clear()
        self.log.info("hub left the router ({reason}); reconnecting", reason=details.reason)
