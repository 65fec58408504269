"""``sisock up``: start a site's router, hub and nodes, and keep them running.

Order: the router (if ``router.start``), then the hub (if ``hub.start``), then
the Grafana HTTP bridge (if ``http.start``) and the enabled nodes: by default the nodes of
one plugin share a process, a node with ``process = "own"`` has one of its own and nodes
naming a group share that group's (:mod:`sisock_core.nodegroups`); a node process crashing
takes down only the nodes it serves, and is restarted with backoff. Each waits for the
one before it to be ready instead of sleeping.
SIGINT/SIGTERM stops nodes first, then the hub, then the router.
A component that cannot start for a reason a restart does not fix (see
:mod:`sisock_core.startup_checks`) is not restarted: the router or the hub stops the whole site
with that reason; a node, the bridge or a plugin's service is said to be down, once, and
the rest keeps serving.
The services the nodes' plugins declare (hook ``plugin_services``, e.g. an indexer of the
plugin's files) run too, each a supervised child like a node.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from twisted.internet import defer
from twisted.logger import Logger

from sisock_core.config import SiteConfig
from sisock_core.logs import announce_ready
from sisock_core.nodegroups import site_node_processes
from sisock_core.ports import http_listeners
from sisock_core.startup_checks import EXIT_BAD_CONFIG, EXIT_CANNOT_START
from sisock_core.supervisor import SupervisedChild

log = Logger(namespace="sisock.up")

#: Seconds to wait for the hub and for each node to report ready.
HUB_READY_TIMEOUT = 60.0
NODE_READY_TIMEOUT = 120.0
HTTP_READY_TIMEOUT = 60.0


def _ready_within(child: SupervisedChild, timeout: float, reactor: Any) -> defer.Deferred:
    """Fire True when ``child`` is ready, or False after ``timeout`` seconds."""
    out: defer.Deferred = defer.Deferred()

    def fire(value: bool) -> None:
        if not out.called:
            out.callback(value)

    child.ready.addCallback(lambda r: (fire(True), r)[1])
    child.gave_up.addCallback(lambda r: (fire(False), r)[1])
    reactor.callLater(timeout, fire, False)
    return out


def router_cannot_start(exc: BaseException, cfg: SiteConfig, *, check_ports: bool = True) -> str | None:
    """Why the router cannot start, when starting it again would not help (else ``None``):
    a certificate, secrets or exposure the router refuses, another server answering on
    its port, our own credentials refused or (``check_ports``) a busy port."""
    from sisock_core.ports import busy_reasons, router_listeners
    from sisock_core.credentials import RouterSecurityError, SecretsError
    from sisock_core.routerprobe import RouterRefused
    from sisock_core.tls import TLSConfigError

    if isinstance(exc, (RouterRefused, RouterSecurityError, SecretsError, TLSConfigError)):
        return str(exc)
    busy = busy_reasons(router_listeners(cfg)) if check_ports else []
    return "; ".join(busy) if busy else None


async def start_router(reactor: Any, cfg: SiteConfig) -> Any:
    """Start crossbar for this site (it refuses unsafe exposure first); return its process."""
    from sisock_core.router import RouterProcess, load_secrets

    secrets = load_secrets(cfg, create=True)
    router = RouterProcess(cfg, secrets, reactor=reactor)
    log.info("starting the router on {host}:{port} (TLS) and {ocs_host}:{ocs_port} (OCS)",
             host=cfg.router.listen, port=cfg.router.tls_port,
             ocs_host=cfg.router.ocs_listen, ocs_port=cfg.router.ocs_port)
    await router.start()
    return router


class RouterKeeper:
    """Start crossbar again, with backoff, whenever it dies (``sisock up`` and ``sisock router``).

    Nodes, hub and bridge reconnect on their own; without this, a killed router left
    ``sisock up`` running with nothing to connect to.
    """

    def __init__(self, reactor: Any, router: Any,
                 on_fatal: Callable[[str], object] | None = None) -> None:
        """``on_fatal(reason)``: the router cannot start again and will not be restarted."""
        from sisock_core.supervisor import BACKOFF, STABLE_AFTER

        self.reactor = reactor
        self.router = router
        self.on_fatal = on_fatal
        self.backoff = BACKOFF
        self.stable_after = STABLE_AFTER
        self.failures = 0
        self.restarts = 0
        self.started_at = reactor.seconds()
        self._pending: Any = None
        self._stopping = False
        router.on_crash = self._crashed

    def _crashed(self, exit_: Any) -> None:
        if self._stopping:
            return
        if self.reactor.seconds() - self.started_at >= self.stable_after:
            self.failures = 0
        delay = self.backoff[min(self.failures, len(self.backoff) - 1)]
        self.failures += 1
        log.error("the router died ({how}); restarting it in {delay}s", how=exit_.how, delay=delay)
        self._pending = self.reactor.callLater(delay, self._restart)

    def _give_up(self, reason: str) -> None:
        self._stopping = True
        if self.on_fatal is not None:
            self.on_fatal(reason)
        else:
            log.critical("the router cannot start again: {reason}", reason=reason)

    def _restart(self) -> None:
        self._pending = None
        if self._stopping:
            return
        from sisock_core.ports import busy_reasons, router_listeners

        busy = busy_reasons(router_listeners(self.router.cfg))
        if busy:  # taken while the router was down: another start would fail the same way
            self._give_up("; ".join(busy))
            return
        self.started_at = self.reactor.seconds()
        d = self.router.start()

        def started(seconds: float) -> None:
            self.restarts += 1
            log.info("router restarted ({n} restarts so far), ready in {s:.2f}s; nodes, hub and bridge "
                     "reconnect by themselves", n=self.restarts, s=seconds)

        def failed(failure: Any) -> None:
            if self._stopping:
                return
            # (ports are checked before the next restart: crossbar's workers may still be
            # closing theirs now)
            reason = router_cannot_start(failure.value, self.router.cfg, check_ports=False)
            if reason:
                self._give_up(reason)
                return
            log.error("restarting the router failed: {error}", error=str(failure.value))
            if not self.router.running and self._pending is None:  # (not already rescheduled)
                from sisock_core.router import RouterExit

                self._crashed(RouterExit(code=None, signal=None, tail=""))

        d.addCallbacks(started, failed)

    def stop(self) -> Any:
        """Stop crossbar for good (no more restarts); fires when it has exited."""
        self._stopping = True
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        return self.router.stop()


async def _start_router_or_exit(reactor: Any, cfg: SiteConfig,
                                on_fatal: Callable[[str], object]) -> RouterKeeper:
    from sisock_core.credentials import RouterSecurityError, SecretsError
    from sisock_core.tls import TLSConfigError

    try:
        return RouterKeeper(reactor, await start_router(reactor, cfg), on_fatal=on_fatal)
    except Exception as exc:
        reason = router_cannot_start(exc, cfg)
        log.critical("cannot start the router: {error}", error=reason or str(exc))
        if isinstance(exc, (RouterSecurityError, SecretsError, TLSConfigError)):
            raise SystemExit(EXIT_BAD_CONFIG)  # the site file, its secrets or certificate
        raise SystemExit(EXIT_CANNOT_START if reason else 1)


def _fatal_exit(fatal: defer.Deferred, what: str) -> Callable[[str], None]:
    """``on_fatal`` for a component the process cannot run without: say why, once, and
    fail ``fatal`` (the process then exits with EXIT_CANNOT_START)."""
    def on_fatal(reason: str) -> None:
        log.critical("{what} cannot start: {reason}; stopping", what=what, reason=reason)
        if not fatal.called:
            fatal.errback(SystemExit(EXIT_CANNOT_START))

    return on_fatal


async def run_router_only(reactor: Any, cfg: SiteConfig) -> None:
    fatal: defer.Deferred = defer.Deferred()
    router = await _start_router_or_exit(reactor, cfg, _fatal_exit(fatal, "the router"))
    reactor.addSystemEventTrigger("before", "shutdown", router.stop)
    announce_ready("router")
    await fatal


def _title(child: SupervisedChild, titles: dict[str, str]) -> str:
    """What ``sisock up``'s log calls a child (``titles``: the plugins' services)."""
    return {"hub": "the hub", "http": "the HTTP bridge", **titles}.get(child.name, child.name)


async def run_site(reactor: Any, cfg: SiteConfig, config_args: Sequence[str]) -> None:
    """Everything ``sisock up`` runs; returns only when the reactor stops, or raises
    ``SystemExit(EXIT_CANNOT_START)`` when the router or the hub cannot start."""
    fatal: defer.Deferred = defer.Deferred()
    starting = defer.Deferred.fromCoroutine(_start_site(reactor, cfg, config_args, fatal))
    starting.addErrback(lambda f: None if fatal.called else fatal.errback(f))
    await fatal


async def _start_site(reactor: Any, cfg: SiteConfig, config_args: Sequence[str],
                      fatal: defer.Deferred) -> None:
    children: list[SupervisedChild] = []
    titles: dict[str, str] = {}
    router = None
    stop_site = _fatal_exit(fatal, "the hub")

    def cannot_start(child: SupervisedChild, reason: str) -> None:
        if child.name == "hub":  # nothing works without it
            stop_site(reason)
        else:
            log.error("{what} is down and will not be restarted: {reason}; the rest of the site "
                      "keeps serving", what=_title(child, titles), reason=reason)

    def supervised(name: str, args: Sequence[str], listeners: Sequence[Any] = ()) -> SupervisedChild:
        child = SupervisedChild(name, [*args, "--supervised", *config_args], reactor=reactor,
                                on_cannot_start=cannot_start, listeners=listeners)
        children.append(child)
        child.start()
        return child

    node_children: list[SupervisedChild] = []

    async def shutdown() -> None:
        log.info("stopping the site")
        nodes = list(node_children)
        others = [c for c in children if c not in node_children]
        await defer.DeferredList([c.stop() for c in nodes])
        await defer.DeferredList([c.stop() for c in others])
        if router is not None:
            await router.stop()

    reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.Deferred.fromCoroutine(shutdown()))

    from sisock_core.startup_checks import startup_problems

    problems = startup_problems(cfg)  # what `sisock check` reports too; refused before starting anything
    for problem in problems:
        log.critical("{problem}", problem=str(problem))
    if problems:
        raise SystemExit(2)

    if cfg.router.start:
        router = await _start_router_or_exit(reactor, cfg, _fatal_exit(fatal, "the router"))
    else:
        from sisock_core.credentials import load_secrets

        load_secrets(cfg, create=False)  # fail early and clearly if secrets are missing
        log.info("using the router at {host}:{port}", host=cfg.router.host, port=cfg.router.tls_port)

    if cfg.hub.start:
        hub = supervised("hub", ["hub"])
        if not await _ready_within(hub, HUB_READY_TIMEOUT, reactor) and not hub.gave_up.called:
            log.error("the hub did not become ready in {t}s; nodes will keep trying",
                      t=HUB_READY_TIMEOUT)
        if fatal.called:  # the hub cannot start: the site is stopping
            return

    http = supervised("http", ["http"], http_listeners(cfg)) if cfg.http.start else None

    processes = site_node_processes(cfg)
    for p in processes:
        node_children.append(supervised(p.name, p.args))

    from sisock_core.plugins import plugin_services

    services, service_problems = plugin_services(cfg)
    for problem in service_problems:  # (that plugin's services do not run; everything else does)
        log.error("{problem}", problem=problem)
    service_waits = []
    for plugin, service in services:
        titles[service.name] = f"the {service.description or service.name} (plugin {plugin})"
        child = supervised(service.name, list(service.command))
        if service.ready_timeout is not None:  # (None: ready whenever it is, e.g. after a long first pass)
            service_waits.append((child, _ready_within(child, service.ready_timeout, reactor)))

    waits = [_ready_within(c, NODE_READY_TIMEOUT, reactor) for c in node_children]
    results = await defer.gatherResults(waits)
    ready = sum(len(p.nodes) for p, ok in zip(processes, results) if ok)
    # (a process is ready when the nodes it could start serve; one that could not logs it)
    log.info("site up: {ready} of {total} nodes in ready processes; node processes: {n}", ready=ready,
             total=sum(len(p.nodes) for p in processes), n=len(processes))
    late = [c.name for c in node_children if not c.ready.called and not c.gave_up.called]
    if late:
        log.warn("not ready yet (still retrying): {late}", late=", ".join(late))
    if http is not None and not await _ready_within(http, HTTP_READY_TIMEOUT, reactor) \
            and not http.gave_up.called:
        log.error("the HTTP bridge did not become ready in {t}s; still retrying", t=HTTP_READY_TIMEOUT)
    for child, waiting in service_waits:
        if not await waiting and not child.gave_up.called:
            log.error("{what} did not become ready in time; still retrying", what=_title(child, titles))
    announce_ready("site")
