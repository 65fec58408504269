"""The generic DataNodeServer: one per configured node, wrapping its plugin.

It registers ``org.simonsobservatory.consumer.<name>.get_fields`` and
``.get_data``, adds itself to the hub, re-registers after a router or hub
restart, runs the plugin's blocking reads in a thread pool, and turns plugin
exceptions into WAMP errors while it keeps serving.

For live plugins (those implementing ``subscribe``) it also keeps the bounded
:class:`~sisock_core.livecache.LiveCache`, hands the plugin a thread-safe
``publish`` callable, pushes new samples to consumers on
``org.simonsobservatory.consumer.<name>.live`` (batched every
``LIVE_PUSH_INTERVAL`` seconds) and logs the cache's memory every
``LIVE_REPORT_INTERVAL`` seconds. Plugins receive WAMP events (OCS feeds) through
``NodeContext.wamp_subscribe``: the node's own session subscribes, again after
every reconnection.

A plugin with both ``read_range`` and ``subscribe`` is assembled
(:mod:`sisock_core.assembly`): the node asks it for the archive's final times
(``archive_until``) at start and every ``SEAM_REFRESH_INTERVAL`` seconds, screens what
it publishes against them, and answers each field as one series. When those times move
(the archive caught up), it publishes ``{"node", "archive_until"}`` (the latest of them) on
``org.simonsobservatory.consumer.<node>.archive_until``.
"""

from __future__ import annotations

import inspect
import threading
import time
from typing import Any, Callable, Mapping

import numpy as np

from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, task
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from sisock_core import cancel, heap, lanes, wamp
from sisock_core.answersize import ERROR_ANSWER_TOO_LARGE, AnswerTooLarge
from sisock_core.assembly import Seam
from sisock_core.config import NodeConfig, SiteConfig
from sisock_core.engine import (
    ERROR_INVALID_ARGUMENT,
    ERROR_PLUGIN_FAILED,
    NodeEngine,
    PluginFailure,
    RequestError,
)
from sisock_core.logs import RepeatedFailures, current_node
from sisock_core.livecache import (
    DEFAULT_BUFFER_TIME,
    DEFAULT_MAX_SAMPLES,
    LiveCache,
    batches_to_events,
)
from sisock_core.model import NodeContext
from sisock_core.plugins import load_plugin
from sisock_core.summarizer import Summarizer
from sisock_core.summarystore import SummaryStore, default_store_path

#: Seconds between attempts to register or to join the hub (grows to the max).
RETRY_DELAYS = (0.5, 1, 2, 4, 8, 15, 30)

#: Seconds between pushes of new live samples to ``<node>.live`` subscribers.
LIVE_PUSH_INTERVAL = 0.5
#: Rows kept for one push at most (older ones are dropped from the push, not the cache).
LIVE_PUSH_MAX_ROWS = 20_000
#: Seconds between log lines reporting the live cache's memory.
LIVE_REPORT_INTERVAL = 600.0
#: Seconds between passes of the core's summarizer (archive plugins without their own summaries).
SUMMARY_INTERVAL = 600.0
#: Seconds between refreshes of an assembling node's seam (the archive's final times).
SEAM_REFRESH_INTERVAL = 5.0
def _get_fields_signature(start: Any = 1, end: Any = 0) -> None: ...


def _get_data_signature(field: Any, start: Any, end: Any, min_stride: Any = None,
                        max_points: Any = None) -> None: ...


_GET_FIELDS = ("get_fields(start=1, end=0)", inspect.signature(_get_fields_signature))
_GET_DATA = ("get_data(field, start, end, min_stride=None, max_points=None)",
             inspect.signature(_get_data_signature))


def _bind(procedure: tuple[str, inspect.Signature], args: tuple, kwargs: dict) -> tuple:
    """The arguments of a WAMP call in the procedure's order (RequestError naming the problem)."""
    usage, signature = procedure
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise RequestError(f"{usage}: {exc}") from None
    bound.apply_defaults()
    return tuple(bound.arguments.values())


def _forget_traceback(failure: Any) -> None:
    """Drop the frames a Failure (and its exception, and the exceptions it chains) hold."""
    exc = failure.value
    failure.cleanFailure()
    seen = 0
    while exc is not None and seen < 10:
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__
        seen += 1


def live_topic(name: str) -> str:
    """``org.simonsobservatory.consumer.<name>.live``: where a live node pushes new samples."""
    return wamp.node_uri(name, "live")


def archive_topic(name: str) -> str:
    """``org.simonsobservatory.consumer.<name>.archive_until``: where an assembling node
    announces that its archive's final times moved."""
    return wamp.node_uri(name, "archive_until")


class LiveFeed:
    """The live side of a node whose plugin implements ``subscribe``.

    Owns the :class:`LiveCache`, the ``publish`` callable given to the plugin (safe
    from any thread), the batched push of new samples to consumers and the periodic
    memory report. ``session`` returns the node's current WAMP session or None.
    """

    log = Logger()

    def __init__(self, name: str, cache: LiveCache, session: Callable[[], Any]) -> None:
        self.name = name
        self.cache = cache
        self.topic = live_topic(name)
        self._session = session
        self._lock = threading.Lock()
        self._pending: list[tuple[str, np.ndarray, dict[str, np.ndarray]]] = []
        self._pending_rows = 0
        self._push_dropped = 0
        self._problems = RepeatedFailures.for_node(self.log, name)
        self._push_error: str | None = None
        self._loops: list[LoopingCall] = []
        self.started = False
        self.stop_plugin: Callable[[], Any] | None = None
        #: ``screen(timeline, t, data) -> (t, data, [(key, message)])`` applied before the
        #: cache (assembling nodes: :meth:`sisock_core.assembly.Seam.screen`).
        self.screen: Callable[..., Any] | None = None

    @property
    def log_node(self) -> str:
        """The node its log lines are about (:func:`sisock_core.logs.current_node`)."""
        return self.name

    def publish(self, timeline: str, t: Any, data: Mapping[str, Any], *,
                units: Mapping[str, str | None] | None = None,
                descriptions: Mapping[str, str | None] | None = None) -> list[str]:
        """The ``publish`` callable of the ``subscribe`` hook (any thread)."""
        screened: list[str] = []
        if self.screen is not None and isinstance(timeline, str):
            try:
                t, data, keyed = self.screen(timeline, t, data)
            except (TypeError, ValueError):
                keyed = []  # unusable times: the cache says so
            if keyed:
                self.log_keyed(keyed)
                screened = [message for _, message in keyed]
        result = self.cache.append(timeline, t, data, units=units, descriptions=descriptions)
        if result.problems:
            self._log_problems(result.problems)
        if screened:
            result.problems = screened + result.problems
        if result.t.size and result.data:
            batch = (timeline, result.t.copy(), {k: v.copy() for k, v in result.data.items()})
            with self._lock:
                self._pending.append(batch)
                self._pending_rows += batch[1].size
                while self._pending_rows > LIVE_PUSH_MAX_ROWS and len(self._pending) > 1:
                    old = self._pending.pop(0)
                    self._pending_rows -= old[1].size
                    self._push_dropped += old[1].size
        return result.problems

    def _log_problems(self, problems: list[str]) -> None:
        self.log_keyed([(p, p) for p in problems])

    def log_keyed(self, problems: list[tuple[str, str]]) -> None:
        """Log each ``(key, message)`` the first time its key is seen; count repeats."""
        for key, message in problems:
            self._problems(message, key)

    def start(self, reactor: Any, push_interval: float = LIVE_PUSH_INTERVAL,
              report_interval: float = LIVE_REPORT_INTERVAL) -> None:
        """Start the push and report loops (reactor thread; idempotent)."""
        if self.started:
            return
        self.started = True
        self.log.info(
            "{node}: live cache keeps {window}s (at most {cap} rows per timeline); new samples "
            "are pushed on {topic}",
            node=self.name, window=self.cache.buffer_time, cap=self.cache.max_samples, topic=self.topic,
        )
        for fn, interval in ((self.flush, push_interval), (self.report, report_interval)):
            loop = LoopingCall(fn)
            loop.clock = reactor
            loop.start(interval, now=False).addErrback(
                lambda f: self.log.failure("{node}: live loop failed", f, node=self.name))
            self._loops.append(loop)

    def stop(self) -> None:
        """Stop the plugin's delivery (its ``subscribe`` stopper) and the loops."""
        stopper, self.stop_plugin = self.stop_plugin, None
        try:
            if callable(stopper):
                stopper()
        finally:
            for loop in self._loops:
                if loop.running:
                    loop.stop()
            self._loops.clear()
            self.report()

    def flush(self) -> None:
        """Push the samples published since the last push (reactor thread)."""
        with self._lock:
            batches, self._pending, self._pending_rows = self._pending, [], 0
            dropped, self._push_dropped = self._push_dropped, 0
        if dropped:
            self.log.warn("{node}: {n} rows published too fast were left out of the live push "
                          "(they are in the cache)", node=self.name, n=dropped)
        session = self._session()
        if not batches or session is None or not session.is_attached():
            return
        try:
            for event in batches_to_events(batches):
                session.publish(self.topic, {"node": self.name, **event})
        except Exception as exc:
            if self._push_error != str(exc):
                self._push_error = str(exc)
                self.log.error("{node}: cannot push live samples on {topic}: {error}",
                               node=self.name, topic=self.topic, error=f"{type(exc).__name__}: {exc}")
        else:
            self._push_error = None

    def report(self) -> None:
        """Log the cache's memory: total, per sample, and the largest field."""
        s = self.cache.stats()
        largest = max(s.per_field.items(), key=lambda kv: kv[1], default=(None, 0))
        self.log.info(
            "{node}: live cache holds {fields} fields in {timelines} timelines, {samples} samples, "
            "{mib:.2f} MiB ({per_sample:.1f} bytes/sample, largest field {largest} {largest_kib:.0f} KiB); "
            "dropped {old} rows older than {window}s and {cap} over {max_rows} rows",
            node=self.name, fields=s.fields, timelines=s.timelines, samples=s.samples,
            mib=s.bytes / 2**20, per_sample=s.bytes_per_sample, largest=largest[0],
            largest_kib=largest[1] / 1024, old=s.dropped_old, window=self.cache.buffer_time,
            cap=s.dropped_cap, max_rows=self.cache.max_samples,
        )
        self.log.debug("{node}: live cache bytes per field: {per_field}", node=self.name,
                       per_field=dict(s.per_field))


class _WampSubscription:
    """A plugin's subscription to a WAMP topic, renewed on every session."""

    log = Logger()

    def __init__(self, node: str, topic: str, handler: Callable[..., None], match: str = "exact") -> None:
        self.node = node
        self.topic = topic
        self.handler = handler
        self.match = match
        self.session: Any = None  # the session it was made on
        self.subscription: Any = None
        self.cancelled = False

    @property
    def log_node(self) -> str:
        return self.node

    def options(self) -> Any:
        """autobahn SubscribeOptions (None for an exact topic)."""
        if self.match == "exact":
            return None
        from autobahn.wamp.types import SubscribeOptions

        return SubscribeOptions(match=self.match, details_arg="details")

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        if self.match != "exact":
            details = kwargs.pop("details", None)
            kwargs["topic"] = getattr(details, "topic", None) or self.topic
        token = current_node.set(self.node)
        try:
            self.handler(*args, **kwargs)
        except Exception:
            self.log.failure("{node}: the plugin's handler of {topic} failed", node=self.node, topic=self.topic)
        finally:
            current_node.reset(token)


class _Run:
    """One run of a call in a pool and the callers waiting for its answer."""

    def __init__(self, token: cancel.CancelToken) -> None:
        self.token = token
        self.callers: list[defer.Deferred] = []


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
        on_registered: Callable[[], None] | None = None,
        serializers: tuple[str, ...] = ("msgpack",),
        plugin: tuple[Any, Any] | None = None,
        connect: bool = True,
    ) -> None:
        """``plugin``: an already loaded ``(plugin manager, PluginSpec)`` instead of the
        installed plugin ``node_cfg.plugin``; ``connect=False``: no router component
        (:mod:`sisock_core.testing` drives the node with an in-memory session);
        ``on_ready()``: once, when the hub first lists the node; ``on_registered()``: each
        time its procedures are registered on a (new) session, before the hub lists it."""
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.cfg = cfg
        self.node_cfg = node_cfg
        self.name = node_cfg.name
        self.pm, self.spec = plugin if plugin is not None else load_plugin(node_cfg.plugin)
        self.context = NodeContext(
            name=node_cfg.name, description=node_cfg.description, options=node_cfg.options,
            # the site's state directory, for plugins keeping files there (e.g. an index)
            state={"state_dir": str(cfg.state_dir)},
            wamp_subscriber=self._wamp_subscribe,
        )
        self._clock = clock
        #: The live side (cache, push), for plugins implementing ``subscribe``.
        self.live: LiveFeed | None = None
        #: The archive's final times, for plugins with both ``read_range`` and ``subscribe``.
        self.seam: Seam | None = None
        self._seam_loop: LoopingCall | None = None
        self._announced_seam: Mapping[str, float] | None = None  # the final times last published
        self._wamp_subs: list[_WampSubscription] = []
        self.engine = NodeEngine(
            self.context,
            self.pm,
            node_cfg.plugin,
            max_points=node_cfg.max_points,
            clock=clock,
        )
        #: The light lane (get_fields, short ranges, summaries) and the heavy lane (long raw
        #: reads, the summarizer): see :mod:`sisock_core.lanes`.
        self.pool = ThreadPool(minthreads=1, maxthreads=lanes.LIGHT_THREADS, name=f"sisock-node-{self.name}")
        self.heavy_pool = ThreadPool(minthreads=0, maxthreads=lanes.HEAVY_THREADS,
                                     name=f"sisock-node-{self.name}-heavy")
        #: Tokens of the calls being served (cancelled when the node stops).
        self._tokens: set[cancel.CancelToken] = set()
        #: Runs in flight by their call's arguments (identical calls share one).
        self._runs: dict[tuple, _Run] = {}
        self._on_ready = on_ready
        self._on_registered = on_registered
        self._session: Any = None
        self._in_hub = False
        self._announced = False
        self._stop_called = False
        self.component: Any = None
        self._failures = RepeatedFailures(fields={"node": self.name})
        #: The core's summarizer, for archive plugins that do not write their own summaries.
        self.summarizer: Summarizer | None = None
        self._summary_loop: LoopingCall | None = None
        self._summarizing = False
        self._own_store_corrupt = False  # logged once
        self._stopping = False
        if connect:
            self.component = wamp.make_component(cfg, serializers=serializers,
                                                 session_factory=wamp.quiet_session_factory())
            self.component.on("join", self._on_join)
            self.component.on("leave", self._on_leave)

    @property
    def log_node(self) -> str:
        """The node its log lines are about (:func:`sisock_core.logs.current_node`)."""
        return self.name

    # -- lifecycle -------------------------------------------------------------

    def start_plugin(self) -> None:
        """Run the plugin's ``node_start``, then ``subscribe`` for live plugins.

        Raises with the plugin's message (the node does not start); a step failing after
        ``node_start`` stops what had started (live delivery, ``node_stop``), so a node
        retried in a long-lived group process leaks nothing.
        """
        self.pm.hook.node_start(node=self.context)
        try:
            self._start_after_node_start()
        except BaseException:
            try:
                self._stop_plugin()
            except Exception as exc:  # the first error is the one to report
                self.log.error("{name}: stopping the plugin after a failed start failed: {error}",
                               name=self.name, error=f"{type(exc).__name__}: {exc}")
            if self.engine.summaries is not None:
                self.engine.summaries.close()
            raise

    def _start_after_node_start(self) -> None:
        archive = bool(self.pm.hook.read_range.get_hookimpls())
        if self.pm.hook.subscribe.get_hookimpls():
            options = self.context.options
            cache = LiveCache(
                getattr(options, "buffer_time", None) or DEFAULT_BUFFER_TIME,
                max_samples=getattr(options, "max_samples", None) or DEFAULT_MAX_SAMPLES,
                clock=self._clock,
            )
            live = LiveFeed(self.name, cache, lambda: self._session)
            if archive:  # archive and live feed: one series per field (sisock_core.assembly)
                self.seam = Seam(self._clock)
                live.screen = self.seam.screen
            self.live = live
            self.engine.live_cache = cache
            stopper = self.pm.hook.subscribe(node=self.context, publish=live.publish)
            if stopper is False:  # the plugin serves no live data on this node
                self.live = self.engine.live_cache = self.seam = None
            else:
                live.stop_plugin = stopper
                self.engine.on_assembly_problems = live.log_keyed
                if self.seam is not None:
                    self.refresh_seam()  # before the node joins the router (and feeds arrive)
                    self.engine.seam = self.seam
                    self.log.info("{name}: answers join the archive (up to its final time) and the live "
                                  "feed (after it) into one series per field", name=self.name)
        if self.live is None or archive:
            self._open_summaries()

    # -- the seam of an assembling node ----------------------------------------

    def refresh_seam(self) -> None:
        """Ask the plugin for the archive's final times (``archive_until``; blocking)."""
        if self.seam is None:
            return
        try:  # a raise or an answer that is no mapping: the plugin's failure, the loop goes on
            final = self.pm.hook.archive_until(node=self.context)
            if final is not None:
                self.seam.update(final)
        except Exception as exc:
            self._failures(f"{self.name}: archive_until failed: {type(exc).__name__}: {exc}; "
                           "the seam keeps its last known times")

    def _refresh_seam_later(self) -> defer.Deferred:
        """One refresh in the light pool (its LoopingCall waits for it: never two at once)."""

        def done(result: Any) -> Any:
            self._announce_seam()
            return result

        return deferToThreadPool(self.reactor, self.pool, self.refresh_seam).addBoth(done)

    def _announce_seam(self) -> None:
        """Publish the archive's end on :func:`archive_topic` if the final times moved since
        the last announcement (reactor thread; not attached: announced at the next move)."""
        final = self.seam.snapshot() if self.seam is not None else None
        session = self._session
        if not final or final == self._announced_seam or session is None or not session.is_attached():
            return
        self._announced_seam = final
        try:
            session.publish(archive_topic(self.name), {"node": self.name, "archive_until": max(final.values())})
        except Exception as exc:  # the answers are right without it; say why it is missing
            self._failures(f"{self.name}: cannot announce the archive's end: {type(exc).__name__}: {exc}")

    def _start_seam_loop(self) -> None:
        if self.seam is not None and self._seam_loop is None:
            self._seam_loop = self._every(SEAM_REFRESH_INTERVAL, self._refresh_seam_later, "seam refresh",
                                          now=False)

    def _every(self, interval: float, fn: Callable[[], Any], what: str, *, now: bool) -> LoopingCall:
        """A LoopingCall of ``fn`` on the node's reactor; its failure is logged."""
        loop = LoopingCall(fn)
        loop.clock = self.reactor
        loop.start(interval, now=now).addErrback(
            lambda f: self.log.failure("{name}: " + what + " loop failed", f, name=self.name))
        return loop

    # -- summaries -------------------------------------------------------------

    def _open_summaries(self) -> None:
        """The summary store of an archive node: the plugin's own, or one the core fills."""
        url = self.pm.hook.summary_store(node=self.context)
        if url:
            self.engine.summaries = SummaryStore(url)
            self.log.info("{name}: long ranges answered from the summaries the plugin writes in {db}",
                          name=self.name, db=self.engine.summaries.describe())
        else:
            shared = self.cfg.summaries_db
            self.engine.summaries = SummaryStore(shared, namespace=self.name) if shared else \
                SummaryStore(f"sqlite:///{default_store_path(self.cfg.state_dir, self.name)}")
            self.summarizer = Summarizer(self.engine.summaries, self._summary_fields, self._summary_read,
                                         clock=self._clock)
        self.engine.on_summary_failure = self._summary_failure

    def _summary_failure(self, error: str) -> None:
        """A read from the summary store failed (the answer came from raw data). A store
        the core fills that turned out corrupt is wiped by the summarizer's next pass; a
        plugin's own store is the plugin's to rebuild (logged once)."""
        self._failures(f"{self.name}: summary store failed ({error}); answering from raw data")
        store = self.engine.summaries
        if store is None or store.damaged is None or self.summarizer is not None or self._own_store_corrupt:
            return
        self._own_store_corrupt = True
        self.log.error("{name}: the summaries the plugin wrote in {db} are corrupt ({error}); answering "
                       "from raw data until they are rebuilt with `sisock scan --rebuild`",
                       name=self.name, db=store.describe(), error=store.damaged)

    def _summary_fields(self, start: float, end: float) -> Any:
        return self.engine._call("list_fields", start=start, end=end)

    def _summary_read(self, fields: list[str], start: float, end: float) -> Any:
        return self.engine._read_archive(fields, start, end) or {}

    def summarize_once(self) -> defer.Deferred:
        """Run one pass of the core's summarizer in the node's pool (skipped if one runs)."""
        if self.summarizer is None or self._summarizing:
            return defer.succeed(0)
        self._summarizing = True
        started = time.monotonic()

        def done(result: Any) -> Any:
            self._summarizing = False
            if isinstance(result, Failure):
                self.log.error("{name}: computing summaries failed: {error}; retried in {every:.0f} s",
                               name=self.name, error=str(result.value), every=SUMMARY_INTERVAL)
                return 0
            if result:
                self.log.info("{name}: summarized {n} buckets of final data in {s:.1f} s",
                              name=self.name, n=result, s=time.monotonic() - started)
            return result

        return deferToThreadPool(self.reactor, self.heavy_pool, self._summarize_guarded).addBoth(done)

    def _summarize_guarded(self) -> int:
        store = self.engine.summaries
        if store.damaged is not None:  # found by a read since the last pass
            self._rebuild_store(store)
        try:
            return self.summarizer.run_once(should_stop=lambda: self._stopping)
        except Exception:
            if store.damaged is not None:
                self._rebuild_store(store)
            raise

    def _rebuild_store(self, store: SummaryStore) -> None:
        """Wipe the corrupt core store, whose contents the summarizer recomputes (a
        transient error never gets here: only one that says the contents are unusable)."""
        error = store.damaged
        try:
            done = store.reset()
        except Exception as exc:  # said once, then counted: it fails again every pass
            self._failures(f"{self.name}: summary store {store.describe()} is corrupt ({error}) and "
                           f"wiping it failed: {exc}; answering from raw data, retried on the next pass")
            return
        self.log.warn("{name}: summary store {db} was corrupt ({error}); {done}, rebuilding it",
                      name=self.name, db=store.describe(), error=error, done=done)

    def _start_summaries(self) -> None:
        if self.summarizer is None or self._summary_loop is not None:
            return
        self._summary_loop = self._every(SUMMARY_INTERVAL, self.summarize_once, "summary", now=True)

    def start_pools(self) -> None:
        """Start the worker threads of both lanes."""
        self.pool.start()
        self.heavy_pool.start()

    def start(self) -> defer.Deferred:
        """Start serving; the Deferred fires when the component finally stops."""
        self.start_pools()
        self.reactor.addSystemEventTrigger("before", "shutdown", self.stop)
        self._start_summaries()
        return self.component.start(self.reactor)

    async def _stop(self) -> None:
        self._stopping = True
        self.cancel_all("cancelled because the node is stopping")
        for loop in (self._summary_loop, self._seam_loop):
            if loop is not None and loop.running:
                loop.stop()
        session = self._session
        if session is not None and session.is_attached() and self._in_hub:
            try:
                await session.call(wamp.HUB_SUBTRACT, self.name, session._session_id)
            except Exception as exc:  # hub gone: its on_leave cleanup covers us
                self.log.debug("could not subtract {name} from hub: {err}", name=self.name, err=exc)
        if self.component is not None:
            await self.component.stop()
        try:
            self._stop_plugin()
        finally:
            self.cancel_all("cancelled because the node is stopping")
            self.pool.stop()
            self.heavy_pool.stop()
            if self.engine.summaries is not None:
                self.engine.summaries.close()

    def _stop_plugin(self) -> None:
        """Stop the live delivery (a failure is logged), then run the plugin's ``node_stop``."""
        if self.live is not None:
            try:
                self.live.stop()
            except Exception as exc:
                self.log.error("{name}: stopping live delivery failed: {error}",
                               name=self.name, error=f"{type(exc).__name__}: {exc}")
        self.pm.hook.node_stop(node=self.context)

    def stop(self) -> defer.Deferred:
        """Leave the hub and the router and stop the plugin (once: later calls, like the
        reactor's shutdown trigger after an explicit stop, do nothing)."""
        if self._stop_called:
            return defer.succeed(None)
        self._stop_called = True
        return defer.Deferred.fromCoroutine(self._stop())

    # -- WAMP procedures -----------------------------------------------------

    def cancel_all(self, reason: str) -> int:
        """Cancel every call being served or queued (they stop at their next check)."""
        tokens = list(self._tokens)
        for token in tokens:
            token.cancel(reason)
        if tokens:
            self.log.info("{name}: cancelled {n} calls in progress ({reason})", name=self.name,
                          n=len(tokens), reason=reason)
        return len(tokens)

    def _run(self, fn: Callable[..., Any], *args: Any, lane: str = lanes.LIGHT, **kwargs: Any) -> defer.Deferred:
        """Run ``fn`` in the ``lane``'s pool under a :class:`~sisock_core.cancel.CancelToken`.

        Identical calls in flight at the same time (dashboards showing the same panel
        refresh together) share one run and its answer. Cancelling the returned Deferred
        (the router interrupts a call its caller abandoned) cancels the token once no
        caller of the run is left: the worker stops at its next
        :func:`sisock_core.cancel.check` (a call still queued never starts) and the
        cancellation is logged once, at info.
        """
        key = (getattr(fn, "__name__", repr(fn)), lane, repr(args), repr(sorted(kwargs.items())))
        run = self._runs.get(key)
        if run is None:
            run = self._runs[key] = _Run(cancel.CancelToken())
            pool = self.heavy_pool if lane == lanes.HEAVY else self.pool
            self._tokens.add(run.token)
            inner = deferToThreadPool(self.reactor, pool, self._in_scope, run.token, lane == lanes.HEAVY, fn,
                                      *args, **kwargs)

            def relay(result: Any, run: _Run = run) -> None:
                self._tokens.discard(run.token)
                if self._runs.get(key) is run:
                    del self._runs[key]
                waiting, run.callers = run.callers, []
                for outer in waiting:
                    if isinstance(result, Failure):
                        outer.errback(result)
                    else:
                        outer.callback(result)
                if not waiting and isinstance(result, Failure):
                    _forget_traceback(result)  # the abandoned request's end (Cancelled): already logged

            inner.addBoth(relay)
        token = run.token
        started = time.monotonic()

        def leave(d: defer.Deferred, run: _Run = run) -> None:
            if d in run.callers:
                run.callers.remove(d)
            if not run.callers:
                token.cancel()

        outer: defer.Deferred = defer.Deferred(canceller=leave)
        run.callers.append(outer)

        def translate(failure):
            exc = failure.value
            try:
                if isinstance(exc, defer.CancelledError) and not token.cancelled:
                    self.log.debug("{name}: a caller of {call} left; others still wait for it",
                                   name=self.name, call=getattr(fn, "__name__", "call"))
                    return failure
                if isinstance(exc, (defer.CancelledError, cancel.Cancelled)):
                    self.log.info("{name}: {call} {reason} after {s:.1f} s; stopped",
                                  name=self.name, call=getattr(fn, "__name__", "call"),
                                  reason=token.reason, s=time.monotonic() - started)
                    if isinstance(exc, cancel.Cancelled):  # not the caller's doing (the node stops)
                        raise ApplicationError(ERROR_PLUGIN_FAILED, f"{self.name}: {exc}")
                    return failure
                if isinstance(exc, AnswerTooLarge):
                    raise ApplicationError(ERROR_ANSWER_TOO_LARGE, f"{self.name}: {exc}", **exc.details)
                if isinstance(exc, RequestError):
                    raise ApplicationError(ERROR_INVALID_ARGUMENT, f"{self.name}: {exc}")
                if isinstance(exc, PluginFailure):
                    self._failures(str(exc))
                    raise ApplicationError(ERROR_PLUGIN_FAILED, str(exc))
                self.log.failure("unexpected error in node {name}", failure, name=self.name)
                raise ApplicationError(ERROR_PLUGIN_FAILED, f"{self.name}: internal error: {exc}")
            finally:
                # The worker thread's frame holds this Failure, whose traceback holds that
                # frame: a cycle that keeps the request's arguments (a million field names:
                # ~70 MB) alive until the cyclic GC happens to run. Break it.
                _forget_traceback(failure)

        return outer.addErrback(translate)

    def _in_scope(self, token: cancel.CancelToken, heavy: bool, fn: Callable[..., Any], *args: Any,
                  **kwargs: Any) -> Any:
        if heavy:
            lanes.lower_thread_priority()
        node = current_node.set(self.name)  # the plugin's log lines name the node
        try:
            with cancel.scope(token):
                token.check()  # abandoned while queued: never start
                return fn(*args, **kwargs)
        finally:
            current_node.reset(node)
            if heavy:  # hundreds of MB were freed: give them back (RSS does not stay at the peak)
                heap.trim()

    def get_fields(self, *args: Any, **kwargs: Any) -> defer.Deferred:
        """WAMP ``get_fields(start=1, end=0)``."""
        try:
            bound = _bind(_GET_FIELDS, args, kwargs)
        except RequestError as exc:
            return defer.fail(ApplicationError(ERROR_INVALID_ARGUMENT, f"{self.name}: {exc}"))
        return self._run(self.engine.get_fields, *bound)

    def get_data(self, *args: Any, **kwargs: Any) -> defer.Deferred:
        """WAMP ``get_data(field, start, end, min_stride=None)``, and our keyword
        ``max_points=None``. Wrong arguments are an ``invalid_argument`` error (not a
        TypeError traceback in the log for every bad call)."""
        try:
            bound = _bind(_GET_DATA, args, kwargs)
        except RequestError as exc:
            return defer.fail(ApplicationError(ERROR_INVALID_ARGUMENT, f"{self.name}: {exc}"))
        lane = lanes.lane_of_get_data(*bound, node_max_points=self.engine.max_points,
                                      summarized=self.engine.summaries is not None, clock=self._clock)
        return self._run(self.engine.get_data, *bound, lane=lane)

    # -- WAMP subscriptions of the plugin (NodeContext.wamp_subscribe) -------

    def _wamp_subscribe(self, topic: str, handler: Callable[..., None], match: str = "exact") -> Callable[[], None]:
        sub = _WampSubscription(self.name, topic, handler, match)
        self._wamp_subs.append(sub)
        self.reactor.callFromThread(self._subscribe_now, sub)

        def cancel() -> None:
            sub.cancelled = True
            self.reactor.callFromThread(self._unsubscribe_now, sub)

        return cancel

    def _subscribe_now(self, sub: _WampSubscription) -> None:
        session = self._session
        if session is not None and session.is_attached():
            defer.Deferred.fromCoroutine(self._subscribe_one(session, sub))

    def _unsubscribe_now(self, sub: _WampSubscription) -> None:
        if sub in self._wamp_subs:
            self._wamp_subs.remove(sub)
        subscription, sub.subscription = sub.subscription, None
        if subscription is not None:
            defer.ensureDeferred(subscription.unsubscribe()).addErrback(lambda f: None)

    async def _subscribe_one(self, session: Any, sub: _WampSubscription) -> None:
        if sub.cancelled or sub.session is session:
            return
        sub.session = session
        try:
            options = sub.options()
            sub.subscription = (await session.subscribe(sub, sub.topic, options=options) if options is not None
                                else await session.subscribe(sub, sub.topic))
        except Exception as exc:
            sub.session = None
            self.log.error("{name}: cannot subscribe to {topic}: {error}", name=self.name,
                           topic=sub.topic, error=getattr(exc, "error", None) or str(exc))
            return
        self.log.info("{name}: subscribed to {topic}{how}", name=self.name, topic=sub.topic,
                      how="" if sub.match == "exact" else f" ({sub.match} match)")

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
        self._announced_seam = None  # subscribers of a new session hear the archive's end again
        self._in_hub = False
        if not await self._register(session):
            return
        if self._on_registered is not None:
            self._on_registered()
        if self.live is not None:
            self.live.start(self.reactor)
        self._start_seam_loop()
        for sub in list(self._wamp_subs):
            await self._subscribe_one(session, sub)

        def hub_started(*args: Any, **kwargs: Any) -> None:
            self.log.info("hub restarted; {name} adds itself again", name=self.name)
            defer.Deferred.fromCoroutine(self._add_to_hub(session))

        await session.subscribe(hub_started, wamp.HUB_STARTED)
        await self._add_to_hub(session)

    def _on_leave(self, session: Any, details: Any) -> None:
        self._session = None
        self._in_hub = False
        for sub in self._wamp_subs:
            sub.session = sub.subscription = None
        self.log.info("node {name} left the router ({reason}); reconnecting",
                      name=self.name, reason=getattr(details, "reason", details))
