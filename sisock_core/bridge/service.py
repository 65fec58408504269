"""The bridge's WAMP side: one persistent consumer session, the field cache, queries.

:class:`BridgeService` joins the router as the read-only ``simonsobs`` user and
reconnects forever. It keeps a :class:`~sisock_core.bridge.catalog.FieldCatalog`
filled from the hub (``get_data_node``, then each node's ``get_fields(1, 0)``),
current from the hub's ``data_node_added``/``data_node_subtracted`` events, and
refreshed on a miss: a target whose node or field is unknown makes the bridge ask
that node's ``get_fields`` once before answering (the same unknown target at most
every :data:`MISS_REFRESH_INTERVAL` seconds), so a panel works after a restart or a
new field without anyone opening the metric picker.

Queries are grouped by node: one ``get_data(fields, start, end, min_stride,
max_points=maxDataPoints)`` per node, all nodes at once. Old nodes that do not take
``max_points`` are asked again without it (and remembered); ``min_stride`` still
makes them reduce, and the bridge decimates whatever exceeds ``maxDataPoints``.
"""

from __future__ import annotations

from typing import Any, Callable

from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from sisock_core import wamp
from sisock_core.bridge.catalog import CatalogError, FieldCatalog
from sisock_core.bridge.grafana import (
    AnswerError,
    QueryRequest,
    Series,
    Target,
    error_object,
    series_from_answer,
)
from sisock_core.config import SiteConfig
from sisock_core.logs import RepeatedFailures

#: Seconds before the same unknown target may trigger another get_fields refresh.
MISS_REFRESH_INTERVAL = 10.0
#: Seconds to wait for the hub's get_data_node (health checks and listing).
HUB_TIMEOUT = 5.0


class NotConnected(RuntimeError):
    """The bridge has no session on the router right now."""


class RouterLost(RuntimeError):
    """The session to the router was lost while a call was waiting for its answer."""


def wamp_error_text(exc: BaseException, node: str | None = None) -> str:
    """A one-line message for a failed call, for logs and Grafana notices."""
    if isinstance(exc, ApplicationError):
        if exc.error == "wamp.error.no_such_procedure":
            return f"node {node!r} is not serving (unknown node, or down)" if node else "no such procedure"
        text = " ".join(str(a) for a in exc.args) or exc.error
        return f"{exc.error}: {text}" if exc.error not in text else text
    if isinstance(exc, defer.TimeoutError):
        return f"node {node!r} did not answer in time" if node else "timed out"
    if isinstance(exc, (RouterLost, NotConnected)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _rejects_max_points(exc: BaseException) -> bool:
    """Whether a node refused the ``max_points`` keyword (a callee whose ``get_data``
    has no such parameter: autobahn answers with the ``TypeError`` as a runtime error)."""
    if not isinstance(exc, ApplicationError):
        return False
    text = " ".join(str(a) for a in exc.args)
    return exc.error in (ApplicationError.INVALID_ARGUMENT, "wamp.error.runtime_error") \
        and "max_points" in text


class BridgeService:
    """The WAMP consumer behind the HTTP bridge."""

    log = Logger()

    def __init__(
        self,
        cfg: SiteConfig,
        *,
        reactor: Any = None,
        on_join: Callable[[], None] | None = None,
        serializers: tuple[str, ...] = ("msgpack",),
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.cfg = cfg
        self.catalog = FieldCatalog()
        self.router_url = wamp.router_url(cfg)
        self.timeout = cfg.http.query_timeout
        self._session: Any = None
        self._on_join_cb = on_join
        #: calls waiting for an answer (failed at once if the session is lost)
        self._pending: set[defer.Deferred] = set()
        self._refreshing: dict[str, list[defer.Deferred]] = {}
        self._last_miss: dict[tuple[str, str | None], float] = {}
        #: nodes that refused the max_points keyword (sisock 0.2 data nodes)
        self.old_nodes: set[str] = set()
        #: a failed query logged once per distinct error, repeats counted (an outage of a
        #: node fails every panel refresh)
        self._query_failures = RepeatedFailures(clock=reactor.seconds, log=self.log, level=LogLevel.warn)
        self.component = wamp.make_component(cfg, consumer=True, serializers=serializers)
        self.component.on("join", self._on_join)
        self.component.on("leave", self._on_leave)
        self._done: defer.Deferred | None = None

    # -- lifecycle ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.is_attached()

    @property
    def session(self) -> Any:
        """The current WAMP session (None while disconnected): live subscriptions use it."""
        return self._session if self.connected else None

    def start(self) -> defer.Deferred:
        """Connect (and reconnect forever); fires when the component stops."""
        self._done = self.component.start(self.reactor)
        return self._done

    def stop(self) -> defer.Deferred:
        return self.component.stop()

    async def _on_join(self, session: Any, details: Any) -> None:
        self._session = session
        self.log.info("bridge joined {url} realm {realm} as {user}", url=self.router_url,
                      realm=details.realm, user=wamp.CONSUMER_USER)
        await session.subscribe(self._node_added, wamp.HUB_ADDED)
        await session.subscribe(self._node_subtracted, wamp.HUB_SUBTRACTED)
        if self._on_join_cb is not None:
            cb, self._on_join_cb = self._on_join_cb, None
            cb()
        try:
            await self.load_listing()
        except Exception as exc:
            self.log.warn("the hub did not list the data nodes yet ({error}); fields load on demand",
                          error=wamp_error_text(exc))

    def _on_leave(self, session: Any, details: Any) -> None:
        self._session = None
        self.log.warn("bridge left the router ({reason}); reconnecting",
                      reason=getattr(details, "reason", details))
        # autobahn leaves calls made on a lost transport unanswered (and cannot cancel
        # them): fail them now, or their queries hang until the client gives up
        pending, self._pending = self._pending, set()
        for d in pending:
            if not d.called:
                d.errback(RouterLost(f"lost the connection to the router at {self.router_url} "
                                     "while waiting for the answer"))

    def _session_or_raise(self) -> Any:
        if not self.connected:
            raise NotConnected(f"not connected to the router at {self.router_url}")
        return self._session

    def _call(self, timeout: float, uri: str, *args: Any, **kwargs: Any) -> defer.Deferred:
        """``session.call`` with a timeout, failed at once if the session is lost.

        The caller gets a Deferred of our own: cancelling autobahn's call after its
        transport is gone raises inside autobahn (the call would then never fire)."""
        session = self._session_or_raise()
        inner = session.call(uri, *args, **kwargs)

        def cancel(_: defer.Deferred) -> None:
            try:
                inner.cancel()
            except Exception:  # no transport left to send the CANCEL on
                pass

        outer: defer.Deferred = defer.Deferred(canceller=cancel)

        def settle(result: Any) -> None:
            if not outer.called:
                outer.callback(result) if not isinstance(result, Failure) else outer.errback(result)

        inner.addBoth(settle)
        self._pending.add(outer)

        def done(result: Any) -> Any:
            self._pending.discard(outer)
            return result

        outer.addBoth(done)
        return outer.addTimeout(timeout, self.reactor)

    # -- hub and field cache -------------------------------------------------------

    async def hub_listing(self) -> list[dict]:
        """The hub's ``get_data_node`` (raises when it does not answer)."""
        listing = await self._call(HUB_TIMEOUT, wamp.HUB_LIST)
        return listing if isinstance(listing, list) else []

    async def load_listing(self) -> list[dict]:
        """Refresh the live node list from the hub and load fields of new nodes."""
        listing = await self.hub_listing()
        need = self.catalog.set_listing(listing)
        if need:
            await defer.DeferredList([defer.ensureDeferred(self.refresh_node(n)) for n in need])
        return listing

    def _node_added(self, info: Any = None, *args: Any, **kwargs: Any) -> None:
        name = self.catalog.node_added(info)
        if name is not None:
            self.log.info("data node {name} added; loading its fields", name=name)
            defer.ensureDeferred(self.refresh_node(name))

    def _node_subtracted(self, info: Any = None, *args: Any, **kwargs: Any) -> None:
        self.catalog.node_subtracted(info)
        if isinstance(info, dict):
            self.log.info("data node {name} subtracted", name=info.get("name"))

    async def refresh_node(self, node: str) -> bool:
        """Load ``node``'s fields (``get_fields(1, 0)``); concurrent calls share one request.
        Returns whether the node answered."""
        waiters = self._refreshing.get(node)
        if waiters is not None:
            d: defer.Deferred = defer.Deferred()
            waiters.append(d)
            return await d
        self._refreshing[node] = []
        ok = False
        try:
            answer = await self._call(self.timeout, wamp.node_uri(node, "get_fields"), 1, 0)
            self.catalog.set_fields(node, answer, self.reactor.seconds())
            ok = True
            self.log.debug("loaded {n} fields of {node}", n=len(self.catalog.nodes[node].fields or {}),
                           node=node)
        except CatalogError as exc:
            self.catalog.set_error(node, str(exc))
            self.log.warn("node {node}: {error}", node=node, error=str(exc))
        except Exception as exc:
            self.catalog.set_error(node, wamp_error_text(exc, node))
            self.log.info("cannot load the fields of {node}: {error}", node=node,
                          error=wamp_error_text(exc, node))
        finally:
            for w in self._refreshing.pop(node, []):
                w.callback(ok)
        return ok

    async def refresh_on_miss(self, node: str, fields: list[str] | None = None) -> None:
        """Refresh ``node`` because ``fields`` (None: the node itself) are unknown, unless
        each of them already caused a refresh in the last MISS_REFRESH_INTERVAL s."""
        now = self.reactor.seconds()
        keys = [(node, f) for f in fields] if fields else [(node, None)]
        fresh = [k for k in keys if now - self._last_miss.get(k, -1e18) >= MISS_REFRESH_INTERVAL]
        if not fresh and node not in self._refreshing:
            return
        for k in fresh:
            self._last_miss[k] = now
        if len(self._last_miss) > 10_000:  # junk targets must not grow this forever
            self._last_miss = {k: v for k, v in self._last_miss.items()
                               if now - v < MISS_REFRESH_INTERVAL}
        await self.refresh_node(node)

    async def ensure_loaded(self) -> None:
        """Load the fields of live nodes that have none yet (before listing targets)."""
        missing = self.catalog.unloaded_live_nodes()
        if missing:
            await defer.DeferredList([defer.ensureDeferred(self.refresh_on_miss(n)) for n in missing])

    # -- queries --------------------------------------------------------------------

    async def _get_data(self, node: str, fields: list[str], req: QueryRequest) -> Any:
        uri = wamp.node_uri(node, "get_data")
        args = (fields, req.start, req.end, req.min_stride)
        if req.max_points and node not in self.old_nodes:
            try:
                return await self._call(self.timeout, uri, *args, max_points=req.max_points)
            except ApplicationError as exc:
                if not _rejects_max_points(exc):
                    raise
                self.old_nodes.add(node)
                self.log.info("node {node} does not take max_points (an older sisock node); "
                              "relying on min_stride", node=node)
        return await self._call(self.timeout, uri, *args)

    async def query_node(self, node: str, targets: list[Target], req: QueryRequest) -> list[Series]:
        """The series of ``targets`` (all on ``node``), errors kept per series."""
        fields = list(dict.fromkeys(t.field for t in targets))
        try:
            if not self.catalog.knows(node, fields):
                entry = self.catalog.nodes.get(node)
                known = entry.fields if entry is not None and entry.fields is not None else None
                await self.refresh_on_miss(node, None if known is None else
                                           [f for f in fields if f not in known])
            answer = await self._get_data(node, fields, req)
        except defer.CancelledError:  # the HTTP client went away (Klein cancels its request)
            self.log.debug("get_data on {node} cancelled: the client went away", node=node)
            return [Series(t, error="cancelled") for t in targets]
        except Exception as exc:
            msg = wamp_error_text(exc, node)
            self._query_failures(f"get_data on {node} failed: {msg}")
            return [Series(t, error=msg) for t in targets]
        out = []
        refreshed = False
        times: dict = {}  # each timeline's times converted once
        for t in targets:
            for attempt in (0, 1):
                info = self.catalog.field(node, t.field)
                try:
                    s = series_from_answer(
                        answer, t, info.timeline if info else None,
                        field_type=info.type if info else None,
                        units=info.units if info else None, max_points=req.max_points,
                        times=times,
                    )
                except AnswerError as exc:
                    if attempt == 0 and answer is not False:
                        if not refreshed:  # the node's fields may have moved: reload once
                            refreshed = True
                            try:
                                await self.refresh_node(node)
                            except defer.CancelledError:
                                pass  # the client went away; the retry fails the same way
                        continue
                    s = Series(t, error=f"{node}: {exc}")
                except Exception as exc:  # a bug here must not fail the other targets
                    self.log.failure("building the series of {target}", target=t.text)
                    s = Series(t, error=f"{node}: internal error: {type(exc).__name__}: {exc}")
                break
            entry = self.catalog.nodes.get(node)
            if s.error is None and s.t.size == 0 and info is None and entry is not None \
                    and entry.fields is not None:
                s.error = f"node {node!r} has no field {t.field!r}"
            out.append(s)
        return out

    async def query(self, req: QueryRequest) -> list[Series]:
        """Every target's series, in request order; never raises for one bad target."""
        groups: dict[str, list[Target]] = {}
        for t in req.targets:
            if t.error is None:
                groups.setdefault(t.node, []).append(t)
        if groups and not self.connected:
            msg = f"not connected to the router at {self.router_url}"
            return [Series(t, error=t.error or msg) for t in req.targets]
        results = await defer.gatherResults(
            [defer.ensureDeferred(self.query_node(n, ts, req)) for n, ts in groups.items()],
            consumeErrors=True,
        ) if groups else []
        by_target: dict[int, Series] = {}
        for series_list in results:
            for s in series_list:
                by_target[id(s.target)] = s
        return [by_target.get(id(t)) or Series(t, error=t.error) for t in req.targets]

    # -- health -----------------------------------------------------------------------

    async def health(self) -> tuple[bool, dict]:
        """``(ok, body)`` for ``GET /``: ok only when joined and the hub answers."""
        if not self.connected:
            return False, error_object(f"not connected to the router at {self.router_url}", "no_router")
        try:
            listing = await self.hub_listing()
        except ApplicationError as exc:
            if exc.error == "wamp.error.no_such_procedure":
                msg = f"connected to {self.router_url}, but the hub is not running"
            elif exc.error == "wamp.error.canceled":
                msg = f"connected to {self.router_url}, but the hub went away while answering"
            else:
                msg = f"connected to {self.router_url}, but the hub failed: {wamp_error_text(exc)}"
            return False, error_object(msg, "no_hub")
        except Exception as exc:
            return False, error_object(f"connected to {self.router_url}, but the hub did not answer: "
                                       f"{wamp_error_text(exc)}", "no_hub")
        need = self.catalog.set_listing(listing)
        for n in need:
            defer.ensureDeferred(self.refresh_node(n))
        names = [n["name"] for n in listing if isinstance(n, dict) and "name" in n]
        return True, {
            "status": "ok",
            "message": f"sisock bridge connected to {self.router_url}; {len(names)} data nodes live",
            "nodes": names,
        }
