"""``sisock up``: start a site's router, hub and nodes, and keep them running.

Order: the router (if ``router.start``), then the hub (if ``hub.start``), then
the Grafana HTTP bridge (if ``http.start``) and every enabled node, each in its
own process so one crashing node cannot take the others down. Each waits for the one before it to be ready instead of sleeping.
SIGINT/SIGTERM stops nodes first, then the hub, then the router.
When a g3 node is configured, the g3 scanner runs too (the ``scanner`` child,
``sisock scan --supervised``).
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.internet import defer
from twisted.logger import Logger

from sisock_core.config import SiteConfig
from sisock_core.logs import announce_ready
from sisock_core.supervisor import SupervisedChild

log = Logger(namespace="sisock.up")

#: Seconds to wait for the hub and for each node to report ready.
HUB_READY_TIMEOUT = 60.0
NODE_READY_TIMEOUT = 120.0
HTTP_READY_TIMEOUT = 60.0


def _forever() -> defer.Deferred:
    return defer.Deferred()


def _ready_within(child: SupervisedChild, timeout: float, reactor: Any) -> defer.Deferred:
    """Fire True when ``child`` is ready, or False after ``timeout`` seconds."""
    out: defer.Deferred = defer.Deferred()

    def fire(value: bool) -> None:
        if not out.called:
            out.callback(value)

    child.ready.addCallback(lambda r: (fire(True), r)[1])
    reactor.callLater(timeout, fire, False)
    return out


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

    def __init__(self, reactor: Any, router: Any) -> None:
        from sisock_core.supervisor import BACKOFF, STABLE_AFTER

        self.reactor = reactor
        self.router = router
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

    def _restart(self) -> None:
        self._pending = None
        if self._stopping:
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


async def run_router_only(reactor: Any, cfg: SiteConfig) -> None:
    router = RouterKeeper(reactor, await start_router(reactor, cfg))
    reactor.addSystemEventTrigger("before", "shutdown", router.stop)
    announce_ready("router")
    await _forever()


async def run_site(reactor: Any, cfg: SiteConfig, config_args: Sequence[str]) -> None:
    """Everything ``sisock up`` runs; returns only when the reactor stops."""
    children: list[SupervisedChild] = []
    router = None

    async def shutdown() -> None:
        log.info("stopping the site")
        nodes = [c for c in children if c.name.startswith("node ")]
        others = [c for c in children if not c.name.startswith("node ")]
        await defer.DeferredList([c.stop() for c in nodes])
        await defer.DeferredList([c.stop() for c in others])
        if router is not None:
            await router.stop()

    reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.Deferred.fromCoroutine(shutdown()))

    from sisock_core.preflight import startup_problems

    problems = startup_problems(cfg)  # what `sisock check` reports too; refused before starting anything
    for problem in problems:
        log.critical("{problem}", problem=str(problem))
    if problems:
        raise SystemExit(2)

    if cfg.router.start:
        try:
            router = RouterKeeper(reactor, await start_router(reactor, cfg))
        except Exception as exc:
            log.critical("cannot start the router: {error}", error=str(exc))
            raise SystemExit(2)
    else:
        from sisock_core.router import load_secrets

        load_secrets(cfg, create=False)  # fail early and clearly if secrets are missing
        log.info("using the router at {host}:{port}", host=cfg.router.host, port=cfg.router.tls_port)

    if cfg.hub.start:
        hub = SupervisedChild("hub", ["hub", "--supervised", *config_args], reactor=reactor)
        children.append(hub)
        hub.start()
        if not await _ready_within(hub, HUB_READY_TIMEOUT, reactor):
            log.error("the hub did not become ready in {t}s; nodes will keep trying",
                      t=HUB_READY_TIMEOUT)

    http = None
    if cfg.http.start:
        http = SupervisedChild("http", ["http", "--supervised", *config_args], reactor=reactor)
        children.append(http)
        http.start()

    nodes = [n for n in cfg.nodes.values() if n.enabled]
    for n in nodes:
        child = SupervisedChild(f"node {n.name}", ["node", n.name, "--supervised", *config_args],
                                reactor=reactor)
        children.append(child)
        child.start()

    if any(n.plugin == "g3" for n in nodes):
        # The g3 scanner keeps the nodes' index up to date (``sisock scan``); it prints
        # "SISOCK-READY scanner" after its first full pass, which the site does not wait for
        # (a first pass over years of files takes a while; nodes serve what is indexed).
        scanner = SupervisedChild("scanner", ["scan", "--supervised", *config_args], reactor=reactor)
        children.append(scanner)
        scanner.start()

    waits = [_ready_within(c, NODE_READY_TIMEOUT, reactor) for c in children if c.name.startswith("node ")]
    results = await defer.gatherResults(waits)
    ready = sum(1 for ok in results if ok)
    log.info("site up: {ready} of {total} nodes serving", ready=ready, total=len(nodes))
    if ready < len(nodes):
        late = [c.name for c in children if c.name.startswith("node ") and not c.ready.called]
        log.warn("not ready yet (still retrying): {late}", late=", ".join(late))
    if http is not None and not await _ready_within(http, HTTP_READY_TIMEOUT, reactor):
        log.error("the HTTP bridge did not become ready in {t}s; still retrying", t=HTTP_READY_TIMEOUT)
    announce_ready("site")
    await _forever()
