"""Live updates for ``GET /api/live``: the nodes' ``.live`` WAMP topics as Server-Sent Events.

:class:`LiveTopics` holds one WAMP subscription per node that some browser follows
(to ``org.simonsobservatory.consumer.<node>.live``, where a live node pushes its new
samples every half second), shared by all streams and renewed after a reconnection.

:class:`LiveStream` is one browser's stream. It first catches up (one query from
``since`` to now, through the bridge's normal query path), then forwards pushed
samples of its targets. Nodes that have not pushed anything lately (archive nodes
whose plugin has no ``subscribe``) are polled instead every :data:`POLL_INTERVAL`
seconds. Each target remembers the time of the last sample sent, so pushes and polls
never send a sample twice. Events are ``data: {"series": [{"target", "t": [ms],
"v": [...]}, ...]}``; a comment line every :data:`KEEPALIVE` seconds keeps proxies
from closing an idle stream.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from sisock_core.bridge.api import series_item, sse_event
from sisock_core.bridge.grafana import AnswerError, QueryRequest, Series, Target, encode, series_from_answer
from sisock_core import wamp

#: Seconds between polls of nodes that do not push.
POLL_INTERVAL = 2.0
#: A node that pushed within this many seconds is not polled.
PUSH_FRESH = 30.0
#: Seconds between keep-alive comments on an idle stream.
KEEPALIVE = 15.0
#: Streams open at once at most (each holds a connection and a poll loop).
MAX_STREAMS = 100

Listener = Callable[[str, dict], None]


class LiveTopics:
    """Shared subscriptions to the nodes' ``.live`` topics."""

    log = Logger()

    def __init__(self, service: Any, clock: Any) -> None:
        self.service = service
        self.clock = clock
        self.listeners: dict[str, set[Listener]] = {}
        self.last_push: dict[str, float] = {}
        self._subscribed: dict[str, Any] = {}  # node -> autobahn Subscription
        self._session: Any = None

    def pushes(self, node: str) -> bool:
        """Whether ``node`` pushed samples in the last :data:`PUSH_FRESH` seconds."""
        last = self.last_push.get(node)
        return last is not None and self.clock.seconds() - last < PUSH_FRESH

    def add(self, node: str, listener: Listener) -> None:
        self.listeners.setdefault(node, set()).add(listener)

    def remove(self, node: str, listener: Listener) -> None:
        group = self.listeners.get(node)
        if group is None:
            return
        group.discard(listener)
        if not group:
            del self.listeners[node]
            sub = self._subscribed.pop(node, None)
            if sub is not None and self._session is not None and self._session.is_attached():
                try:
                    d = sub.unsubscribe()
                    if isinstance(d, defer.Deferred):
                        d.addErrback(lambda f: None)
                except Exception:  # the session is going away anyway
                    pass

    async def ensure(self) -> None:
        """Subscribe for every followed node (again after the session changed)."""
        session = self.service.session
        if session is not self._session:
            self._session = session
            self._subscribed.clear()
        if session is None:
            return
        for node in list(self.listeners):
            if node in self._subscribed:
                continue
            self._subscribed[node] = None  # being subscribed
            try:
                sub = await session.subscribe(
                    lambda payload=None, *a, _node=node, **kw: self._event(_node, payload),
                    wamp.node_uri(node, "live"))
            except Exception as exc:
                self._subscribed.pop(node, None)
                self.log.warn("cannot follow {node}'s live samples: {error}", node=node,
                              error=f"{type(exc).__name__}: {exc}")
                continue
            if self._session is session and node in self.listeners:
                self._subscribed[node] = sub
            else:
                self._subscribed.pop(node, None)
                sub.unsubscribe().addErrback(lambda f: None)

    def _event(self, node: str, payload: Any) -> None:
        if not isinstance(payload, dict):
            return
        if not self.pushes(node):
            self.log.info("{node} pushes live samples; forwarding them (no polling)", node=node)
        self.last_push[node] = self.clock.seconds()
        for listener in list(self.listeners.get(node, ())):
            try:
                listener(node, payload)
            except Exception:  # one broken stream must not stop the others
                self.log.failure("forwarding live samples of {node}", node=node)


class LiveStream:
    """One ``/api/live`` client: catch up from ``since``, then push (or poll) new samples."""

    log = Logger()

    def __init__(self, topics: LiveTopics, service: Any, write: Callable[[bytes], None],
                 targets: list[Target], since: float, max_points: int,
                 poll_interval: float = POLL_INTERVAL) -> None:
        self.topics = topics
        self.service = service
        self.clock = topics.clock
        self.write = write
        self.targets = [t for t in targets if t.error is None]
        self.bad = [t for t in targets if t.error is not None]
        self.last: dict[str, float] = {t.text: since for t in self.targets}
        self.errors: dict[str, str | None] = {}
        self.max_points = max_points
        self.poll_interval = poll_interval
        self.by_node: dict[str, list[Target]] = {}
        for t in self.targets:
            self.by_node.setdefault(t.node, []).append(t)
        self._buffer: list[tuple[str, dict]] | None = []  # pushes held during the catch-up
        self._loop: LoopingCall | None = None
        self._last_write = self.clock.seconds()
        self._polling = False
        self.stopped = False

    def start(self) -> None:
        if self.bad:
            self.send([Series(t, error=t.error) for t in self.bad])
        for node in self.by_node:
            self.topics.add(node, self._pushed)
        self._loop = LoopingCall(lambda: defer.ensureDeferred(self._tick()))
        self._loop.clock = self.clock
        self._loop.start(self.poll_interval, now=True).addErrback(
            lambda f: self.log.failure("live stream loop failed", f))

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for node in self.by_node:
            self.topics.remove(node, self._pushed)

    async def _tick(self) -> None:
        if self._polling or self.stopped:
            return  # a slow node: the next tick comes after this poll
        self._polling = True
        try:
            await self.topics.ensure()
            if self._buffer is not None:  # catch up on every node first
                nodes = list(self.by_node)
            else:
                nodes = [n for n in self.by_node if not self.topics.pushes(n)]
            if nodes:
                await self._poll(nodes)
            if self._buffer is not None:
                held, self._buffer = self._buffer, None
                for node, payload in held:
                    self._pushed(node, payload)
            if self.clock.seconds() - self._last_write >= KEEPALIVE and not self.stopped:
                self._write(b": keep-alive\n\n")
        finally:
            self._polling = False

    async def _poll(self, nodes: list[str]) -> None:
        targets = [t for n in nodes for t in self.by_node[n]]
        start = min(self.last[t.text] for t in targets)
        req = QueryRequest(start=start, end=self.clock.seconds() + 1.0, targets=targets,
                           max_points=self.max_points)
        series = await self.service.query(req)
        if not self.stopped:
            self.send(series)

    def _pushed(self, node: str, payload: dict) -> None:
        if self._buffer is not None:
            self._buffer.append((node, payload))
            return
        out = []
        catalog = self.service.catalog
        for t in self.by_node.get(node, ()):
            if t.field not in (payload.get("data") or {}):
                continue
            info = catalog.field(node, t.field)
            try:
                s = series_from_answer(payload, t, info.timeline if info else None,
                                       field_type=info.type if info else None,
                                       units=info.units if info else None)
            except AnswerError as exc:
                s = Series(t, error=f"{node}: live samples: {exc}")
            out.append(s)
        if out:
            self.send(out)

    def send(self, series: list[Series]) -> None:
        """Send samples newer than each target's last one (and errors)."""
        items = []
        for s in series:
            last = self.last.get(s.target.text)
            item = series_item(s, t_after=last)
            if s.error == self.errors.get(s.target.text):
                item.pop("error", None)  # said already
            self.errors[s.target.text] = s.error
            if len(item["t"]) == 0 and "error" not in item:
                continue
            if len(item["t"]):
                self.last[s.target.text] = float(item["t"][-1]) / 1000.0
            items.append(item)
        if items:
            self._write(sse_event(encode({"series": items})))

    def _write(self, data: bytes) -> None:
        if self.stopped:
            return
        self._last_write = self.clock.seconds()
        try:
            self.write(data)
        except Exception:  # the connection is gone; Klein cancels the request
            self.stop()
