"""One OS process serving one or several data nodes (``sisock node NAME`` / ``--group G``).

Each node is a :class:`~sisock_core.datanode.DataNodeServer` of its own: its own WAMP
session, registrations, thread pools and hub entry, so a plugin raising stops only its
node. A node whose plugin fails at construction or start (``node_start``, ``subscribe``)
is logged and, while its neighbours serve, tried again in this process with the
supervisor's backoff; only when no node of the process can start does the process end
(exit status 3, restarted with backoff by ``sisock up``). The process is ready (the
``SISOCK-READY`` line, systemd's ``READY=1``) once every node that started is listed by
the hub. Log lines about a node carry its name in the ``node`` field
(:data:`sisock_core.logs.current_node`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from twisted.internet import defer, threads
from twisted.logger import Logger

from sisock_core.config import SiteConfig
from sisock_core.logs import current_node
from sisock_core.supervisor import BACKOFF

#: Exit status of a node process none of whose nodes could start (restarted with backoff).
EXIT_NO_NODE_STARTED = 3


class NodeHost:
    """Hosts the data nodes ``names`` of ``cfg`` in this process."""

    log = Logger()

    def __init__(self, cfg: SiteConfig, names: Sequence[str], *, title: str,
                 on_ready: Callable[[], None] | None = None,
                 make_server: Callable[..., Any] | None = None) -> None:
        """``title``: what this process is (``node x``, ``group g``); ``on_ready``: called
        once, when every started node is listed by the hub; ``make_server(cfg, node_cfg,
        on_ready=...)``: a started node's server (default: :class:`DataNodeServer`)."""
        if make_server is None:
            from sisock_core.datanode import DataNodeServer

            make_server = DataNodeServer
        self.cfg = cfg
        self.names = list(names)
        self.title = title
        self._on_ready = on_ready
        self._make_server = make_server
        self.servers: dict[str, Any] = {}
        self.ready: set[str] = set()
        #: nodes that could not start: name -> why (tried again with backoff once serving)
        self.failed: dict[str, str] = {}
        self._attempts: dict[str, int] = {}
        self._announced = False
        self._stopping = False
        self._retries: dict[str, Any] = {}
        self.reactor: Any = None

    # -- starting ------------------------------------------------------------------------

    def _build(self, name: str) -> tuple[Any, str | None]:
        """The node's server with its plugin started, or why the plugin raised (any thread)."""
        token = current_node.set(name)
        try:
            server = self._make_server(self.cfg, self.cfg.nodes[name],
                                       on_ready=lambda: self._node_ready(name))
            server.start_plugin()
            return server, None
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            current_node.reset(token)

    def _built(self, name: str, built: tuple[Any, str | None]) -> Any:
        """Keep the node's server, or log why it cannot start (reactor thread); the server or None."""
        server, error = built
        if error is not None:
            self._attempts[name] = self._attempts.get(name, 0) + 1
            self.failed[name] = error
            self.log.critical("node {node} cannot start: {error}", node=name, error=error)
            return None
        self.failed.pop(name, None)
        self.servers[name] = server
        return server

    def start_plugins(self) -> bool:
        """Build every node and start its plugin (before the reactor runs); False if none started."""
        for name in self.names:
            self._built(name, self._build(name))
        return bool(self.servers)

    def start(self, reactor: Any) -> defer.Deferred:
        """Connect the started nodes and keep trying the failed ones; fires when every node
        has stopped (fails as the first node's component fails)."""
        self.reactor = reactor
        reactor.addSystemEventTrigger("before", "shutdown", self.stop)
        runs = [server.start() for server in self.servers.values()]
        for name in self.failed:
            self._retry_later(name)
        return defer.gatherResults(runs, consumeErrors=True).addErrback(lambda f: f.value.subFailure)

    def _retry_later(self, name: str) -> None:
        delay = BACKOFF[min(self._attempts.get(name, 1) - 1, len(BACKOFF) - 1)]
        self.log.warn("node {node} is tried again in {delay}s; the other nodes of {title} keep serving",
                      node=name, delay=delay, title=self.title)
        self._retries[name] = self.reactor.callLater(delay, self._retry, name)

    def _retry(self, name: str) -> None:
        self._retries.pop(name, None)
        if self._stopping:
            return
        # in a thread: a plugin's node_start may block (a database that does not answer)
        # and must not stall its neighbours' calls on the reactor meanwhile
        threads.deferToThread(self._build, name).addCallback(self._retried, name).addErrback(
            lambda f: self.log.failure("node {node}: retrying its start failed", f, node=name))

    def _retried(self, built: tuple[Any, str | None], name: str) -> None:
        if self._stopping:  # built while the process stops: its plugin is stopped too
            if built[0] is not None:
                built[0].stop().addErrback(lambda f: self.log.failure("stopping node {node}", f, node=name))
            return
        server = self._built(name, built)
        if server is None:
            self._retry_later(name)
            return
        self.log.info("node {node} started after {n} failed attempts", node=name, n=self._attempts[name])
        server.start().addErrback(lambda f: self.log.failure("node {node} stopped", f, node=name))

    # -- readiness and stopping ---------------------------------------------------------

    def _node_ready(self, name: str) -> None:
        self.ready.add(name)
        if self._announced or not self.servers or not set(self.servers) <= self.ready:
            return
        self._announced = True
        if self.failed:
            self.log.warn("{title}: {n} of {total} nodes serving; not serving: {failed}", title=self.title,
                          n=len(self.ready), total=len(self.names), failed=", ".join(sorted(self.failed)))
        if self._on_ready is not None:
            self._on_ready()

    def stop(self) -> defer.Deferred:
        """Stop every node (they leave the hub and the router) and the pending retries."""
        self._stopping = True
        for call in self._retries.values():
            if call.active():
                call.cancel()
        self._retries.clear()
        return defer.DeferredList([server.stop() for server in self.servers.values()])
