"""The generic DataNodeServer: one per configured node, wrapping its plugin.

It registers ``org.simonsobservatory.consumer.<name>.get_fields`` and
``.get_data``, adds itself to the hub, re-registers after a router or hub
restart, runs the plugin's blocking reads in a thread pool, and turns plugin
exceptions into WAMP errors while it keeps serving.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, task
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from sisock_core import wamp
from sisock_core.config import NodeConfig, SiteConfig
from sisock_core.engine import (
    ERROR_INVALID_ARGUMENT,
    ERROR_PLUGIN_FAILED,
    NodeEngine,
    PluginFailure,
    RequestError,
)
from sisock_core.model import NodeContext
from sisock_core.plugins import load_plugin

#: Seconds between attempts to register or to join the hub (grows to the max).
RETRY_DELAYS = (0.5, 1, 2, 4, 8, 15, 30)


class DataNodeServer:
    """Serve one node of the site on the router."""

    log = Logger()

    def __init__(
        self,
        cfg: SiteConfig,
        node_cfg: NodeConfig,
        *,
        reactor: Any = None,
        clock: Callable[[], float] = time.time,
        on_ready: Callable[[], None] | None = None,
        serializers: tuple[str, ...] = ("msgpack",),
        plugin: tuple[Any, Any] | None = None,
        connect: bool = True,
    ) -> None:
        """``plugin``: an already loaded ``(plugin manager, PluginSpec)`` instead of the
        installed plugin ``node_cfg.plugin``; ``connect=False``: no router component
        (:mod:`sisock_core.testing` drives the node with an in-memory session)."""
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.cfg = cfg
        self.node_cfg = node_cfg
        self.name = node_cfg.name
        self.pm, self.spec = plugin if plugin is not None else load_plugin(node_cfg.plugin)
        self.context = NodeContext(
            name=node_cfg.name, description=node_cfg.description, options=node_cfg.options
        )
        self.engine = NodeEngine(
            self.context,
            self.pm,
            node_cfg.plugin,
            max_points=node_cfg.max_points,
            clock=clock,
        )
        self.pool = ThreadPool(minthreads=1, maxthreads=4, name=f"sisock-node-{self.name}")
        self._on_ready = on_ready
        self._session: Any = None
        self._in_hub = False
        self._announced = False
        self.component: Any = None
        if connect:
            self.component = wamp.make_component(cfg, serializers=serializers)
            self.component.on("join", self._on_join)
            self.component.on("leave", self._on_leave)

    # -- lifecycle -------------------------------------------------------------

    def start_plugin(self) -> None:
        """Run the plugin's ``node_start`` (raises with the plugin's message)."""
        self.pm.hook.node_start(node=self.context)

    def start(self) -> defer.Deferred:
        """Start serving; the Deferred fires when the component finally stops."""
        self.pool.start()
        self.reactor.addSystemEventTrigger("before", "shutdown", self.stop)
        return self.component.start(self.reactor)

    async def _stop(self) -> None:
        session = self._session
        if session is not None and session.is_attached() and self._in_hub:
            try:
                await session.call(wamp.HUB_SUBTRACT, self.name, session._session_id)
            except Exception as exc:  # hub gone: its on_leave cleanup covers us
                self.log.debug("could not subtract {name} from hub: {err}", name=self.name, err=exc)
        if self.component is not None:
            await self.component.stop()
        try:
            self.pm.hook.node_stop(node=self.context)
        finally:
            self.pool.stop()

    def stop(self) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self._stop())

    # -- WAMP procedures -----------------------------------------------------

    def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred:
        d = deferToThreadPool(self.reactor, self.pool, fn, *args, **kwargs)

        def translate(failure):
            exc = failure.value
            if isinstance(exc, RequestError):
                raise ApplicationError(ERROR_INVALID_ARGUMENT, f"{self.name}: {exc}")
            if isinstance(exc, PluginFailure):
                self.log.error("{msg}", msg=str(exc))
                raise ApplicationError(ERROR_PLUGIN_FAILED, str(exc))
            self.log.failure("unexpected error in node {name}", failure, name=self.name)
            raise ApplicationError(ERROR_PLUGIN_FAILED, f"{self.name}: internal error: {exc}")

        return d.addErrback(translate)

    def get_fields(self, start: Any = 1, end: Any = 0) -> defer.Deferred:
        """WAMP ``get_fields(start, end)``."""
        return self._run(self.engine.get_fields, start, end)

    def get_data(
        self, field: Any, start: Any, end: Any, min_stride: Any = None, max_points: Any = None
    ) -> defer.Deferred:
        """WAMP ``get_data(field, start, end, min_stride=None)``."""
        return self._run(self.engine.get_data, field, start, end, min_stride, max_points)

    # -- session -------------------------------------------------------------

    async def _retrying(self, what: str, attempt: Callable[[], Any]) -> Any:
        """Call ``attempt`` until it returns a value other than None, with backoff."""
        for i in range(10**9):
            session = self._session
            if session is None or not session.is_attached():
                return None
            try:
                result = await attempt()
            except ApplicationError as exc:
                delay = RETRY_DELAYS[min(i, len(RETRY_DELAYS) - 1)]
                level = self.log.warn if i in (0, 5) or i % 20 == 0 else self.log.debug
                level(
                    "{name}: {what} failed ({error}); retrying in {delay}s",
                    name=self.name, what=what, error=exc.error, delay=delay,
                )
                await task.deferLater(self.reactor, delay, lambda: None)
                continue
            return result
        return None

    async def _register(self, session: Any) -> bool:
        async def attempt():
            regs = []
            try:
                regs.append(await session.register(self.get_fields, wamp.node_uri(self.name, "get_fields")))
                regs.append(await session.register(self.get_data, wamp.node_uri(self.name, "get_data")))
            except ApplicationError as exc:
                for r in regs:
                    await r.unregister()
                if exc.error == "wamp.error.procedure_already_exists":
                    self.log.error(
                        "node name {name!r} is already served by another session on the router; "
                        "waiting for it to go away", name=self.name,
                    )
                raise
            return True

        return bool(await self._retrying("registering procedures", attempt))

    async def _add_to_hub(self, session: Any) -> None:
        async def attempt():
            ok = await session.call(wamp.HUB_ADD, self.name, self.context.description, session._session_id)
            if not ok:
                raise ApplicationError(
                    "org.simonsobservatory.error.duplicate_name",
                    f"the hub refused node name {self.name!r}: another node uses it",
                )
            return True

        if await self._retrying("joining the hub", attempt):
            self._in_hub = True
            self.log.info("node {name} serving ({plugin}) and listed by the hub",
                          name=self.name, plugin=self.node_cfg.plugin)
            if not self._announced and self._on_ready is not None:
                self._announced = True
                self._on_ready()

    async def _on_join(self, session: Any, details: Any) -> None:
        self._session = session
        self._in_hub = False
        if not await self._register(session):
            return

        def hub_started(*args: Any, **kwargs: Any) -> None:
            self.log.info("hub restarted; {name} adds itself again", name=self.name)
            defer.Deferred.fromCoroutine(self._add_to_hub(session))

        await session.subscribe(hub_started, wamp.HUB_STARTED)
        await self._add_to_hub(session)

    def _on_leave(self, session: Any, details: Any) -> None:
        self._session = None
        self._in_hub = False
        self.log.info("node {name} left the router ({reason}); reconnecting",
                      name=self.name, reason=getattr(details, "reason", details))
