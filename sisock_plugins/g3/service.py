"""The scanner as a Twisted service (``sisock scan``; the ``scanner`` of ``sisock up``).

For each data directory (:class:`ScanTarget`) it runs a full pass at start and
then every ``scan_interval`` seconds (a pass stats every file but opens only new or
changed ones), and, with ``watch``, indexes files as soon as the watchdog reports
them created, written, closed, moved or deleted. Events are debounced: a file is
read once it has been quiet for ``debounce`` seconds, or at the latest
``max_delay`` seconds after its first event (a file being written all the time is
still picked up). A directory appearing or disappearing triggers a full pass.

Scanning runs in a worker thread, one pass at a time. If the database or the
directory fails, the service logs it and retries with a growing delay (1 s up to
60 s); it never stops on its own.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import attrs
from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.logger import Logger

from sisock_plugins.g3.index import DatabaseConfigError, Index, IndexDbError
from sisock_plugins.g3.scanner import ProgressFactory, ScanError, Scanner, ScanStats, is_g3

#: Delays (s) between retries after a failed pass.
BACKOFF = (1, 2, 4, 8, 15, 30, 60)


@attrs.frozen
class ScanTarget:
    """One data directory and the index it feeds."""

    name: str  #: node name (for logs)
    data_dir: str
    db_url: str
    scan_interval: float = 3600.0
    watch: bool = True
    debounce: float = 1.0


class _Handler:
    """watchdog event handler: forwards .g3 paths to the reactor thread."""

    def __init__(self, callback: Callable[[list[str], bool], None]) -> None:
        self.callback = callback

    def dispatch(self, event: Any) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        if event.is_directory:
            if kind in ("created", "deleted", "moved"):
                self.callback([], True)
            return
        paths = [os.fsdecode(event.src_path)]
        dest = getattr(event, "dest_path", None)
        if dest:
            paths.append(os.fsdecode(dest))
        paths = [p for p in paths if is_g3(os.path.basename(p))]
        if paths:
            self.callback(paths, False)


class _Target:
    """Runtime state of one target."""

    def __init__(self, target: ScanTarget, progress: ProgressFactory | None) -> None:
        self.target = target
        self.index = Index(target.db_url)
        self.scanner = Scanner(self.index, target.data_dir, progress=progress)
        self.full_due = True
        self.pending: set[str] = set()  # paths waiting for their quiet period
        self.ready: set[str] = set()  # paths to read in the next pass
        self.first_event: float | None = None
        self.last_event: float = 0.0
        self.observer: Any = None
        self.passes = 0


class ScannerService(service.Service):
    """Keeps the indexes of ``targets`` up to date; see the module docstring."""

    log = Logger()

    def __init__(
        self,
        targets: Sequence[ScanTarget],
        *,
        reactor: Any = None,
        progress: ProgressFactory | None = None,
        on_first_pass: Callable[[], None] | None = None,
        on_pass: Callable[[str, ScanStats], None] | None = None,
        max_delay: float = 5.0,
        run_in_thread: Callable[..., defer.Deferred] | None = None,
    ) -> None:
        """``on_first_pass()``: once every target has had its first full pass;
        ``on_pass(kind, stats)``: after each pass of a target (``kind`` ``"full"`` or
        ``"paths"``), in the reactor thread, once its changes are in the index."""
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.targets = [_Target(t, progress) for t in targets]
        self.on_first_pass = on_first_pass
        self.on_pass = on_pass
        self.max_delay = max_delay
        self._run_in_thread = run_in_thread or (lambda f, *a: threads.deferToThread(f, *a))
        self._busy = False
        self._failures = 0
        self._retry: Any = None
        self._timer: Any = None
        self._loop: task.LoopingCall | None = None
        self._first_done = False
        self._stopping = False
        self.current: defer.Deferred | None = None
        #: Every pass's stats, newest last (tests and `sisock scan` read it).
        self.history: list[tuple[str, ScanStats]] = []

    # -- lifecycle -------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        for t in self.targets:
            self.log.info("scanner: indexing {dir} into {db} (full pass every {interval:.0f} s{watch})",
                          dir=t.target.data_dir, db=t.index.describe(), interval=t.target.scan_interval,
                          watch=", watching for changes" if t.target.watch else "")
        interval = min(t.target.scan_interval for t in self.targets) if self.targets else 3600.0
        self._loop = task.LoopingCall(self.request_full)
        self._loop.clock = self.reactor
        self._loop.start(interval, now=True)

    def stopService(self) -> defer.Deferred | None:
        super().stopService()
        self._stopping = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for call in (self._retry, self._timer):
            if call is not None and call.active():
                call.cancel()
        for t in self.targets:
            t.scanner.cancel.set()
            if t.observer is not None:
                try:
                    t.observer.stop()
                    t.observer.join(5)
                except Exception:
                    pass
                t.observer = None
        current = self.current

        def close(_: Any = None) -> None:
            for t in self.targets:
                t.index.close()

        if current is not None:
            d: defer.Deferred = defer.Deferred()
            current.addBoth(lambda r: (close(), d.callback(None)))
            return d
        close()
        return None

    # -- requests --------------------------------------------------------------------

    def request_full(self) -> None:
        """Schedule a full pass of every target."""
        for t in self.targets:
            t.full_due = True
        self._kick()

    def notify(self, target: _Target, paths: list[str], full: bool) -> None:
        """A watchdog event (in the reactor thread)."""
        if self._stopping:
            return
        if full:
            target.full_due = True
        now = self.reactor.seconds()
        target.pending.update(paths)
        if target.first_event is None:
            target.first_event = now
        target.last_event = now
        self._arm_timer()

    def _arm_timer(self) -> None:
        due = None
        for t in self.targets:
            if t.first_event is None:
                continue
            when = min(t.last_event + t.target.debounce, t.first_event + self.max_delay)
            due = when if due is None else min(due, when)
        if due is None:
            return
        delay = max(0.0, due - self.reactor.seconds())
        if self._timer is not None and self._timer.active():
            self._timer.reset(delay)
        else:
            self._timer = self.reactor.callLater(delay, self._quiet)

    def _quiet(self) -> None:
        now = self.reactor.seconds()
        for t in self.targets:
            if t.first_event is None:
                continue
            if now >= min(t.last_event + t.target.debounce, t.first_event + self.max_delay) - 1e-6:
                t.ready.update(t.pending)
                t.pending.clear()
                t.first_event = None
        self._arm_timer()
        self._kick()

    # -- passes ----------------------------------------------------------------------

    def _kick(self) -> None:
        if self._busy or self._stopping:
            return
        if self._retry is not None and self._retry.active():
            return
        work = []
        for t in self.targets:
            if t.full_due:
                t.full_due = False
                t.ready.clear()
                work.append((t, None))
            elif t.ready:
                paths, t.ready = sorted(t.ready), set()
                work.append((t, paths))
        if not work:
            return
        self._busy = True
        self.current = self._run_in_thread(self._do, work)
        self.current.addCallbacks(self._done, self._failed, callbackArgs=(work,), errbackArgs=(work,))

    def _do(self, work: list[tuple[_Target, list[str] | None]]) -> list[tuple[str, ScanStats]]:
        out = []
        for t, paths in work:
            if self._stopping:
                break
            if paths is None:
                stats = t.scanner.scan_tree()
                kind = "full"
            else:
                stats = t.scanner.scan_paths(paths)
                kind = "paths"
            out.append((kind, stats))
        return out

    def _done(self, results: list[tuple[str, ScanStats]], work: list) -> None:
        self._busy = False
        self.current = None
        self._failures = 0
        for (t, paths), (kind, stats) in zip(work, results):
            t.passes += 1
            self.history.append((kind, stats))
            del self.history[:-100]
            noteworthy = stats.read or stats.removed or (kind == "full" and t.passes == 1)
            (self.log.info if noteworthy else self.log.debug)(
                "scanner: {kind} pass of {dir}: {summary}", kind=kind, dir=t.target.data_dir,
                summary=stats.summary())
            if kind == "full":
                self._start_watch(t)
        first = not self._first_done and all(t.passes for t in self.targets)
        self._first_done = self._first_done or first
        self._kick()  # before the callbacks: one that raises must not stall the scanner
        for kind, stats in results:
            self._notify("on_pass", self.on_pass, kind, stats)
        if first:
            self._notify("on_first_pass", self.on_first_pass)

    def _notify(self, what: str, callback: Any, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            self.log.failure("scanner: the {what} callback failed", what=what)

    def _failed(self, failure: Any, work: list) -> None:
        self._busy = False
        self.current = None
        if self._stopping:
            return
        # put the work back
        for t, paths in work:
            if paths is None:
                t.full_due = True
            else:
                t.ready.update(paths)
        delay = BACKOFF[min(self._failures, len(BACKOFF) - 1)]
        self._failures += 1
        exc = failure.value
        if isinstance(exc, DatabaseConfigError):
            delay = BACKOFF[-1]
        if isinstance(exc, (IndexDbError, ScanError)):
            self.log.error("scanner: pass failed: {error}; retrying in {delay} s", error=str(exc), delay=delay)
        else:
            self.log.failure("scanner: pass failed; retrying in {delay} s", failure, delay=delay)
        self._retry = self.reactor.callLater(delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self._kick()

    # -- watchdog --------------------------------------------------------------------

    def _start_watch(self, t: _Target) -> None:
        if not t.target.watch or t.observer is not None or self._stopping:
            return
        if not os.path.isdir(t.target.data_dir):
            return
        from watchdog.observers import Observer

        handler = _Handler(lambda paths, full: self.reactor.callFromThread(self.notify, t, paths, full))
        observer = Observer()
        try:
            observer.schedule(handler, t.target.data_dir, recursive=True)
            observer.start()
        except Exception as exc:
            self.log.warn("scanner: cannot watch {dir} ({error}); relying on the periodic pass",
                          dir=t.target.data_dir, error=str(exc))
            return
        t.observer = observer
        self.log.info("scanner: watching {dir} for new and changed files", dir=t.target.data_dir)
