"""Child processes for ``sisock up``: one per component, restarted with backoff.

Each child is ``python -m sisock_core.cli <role> ...``. It prints
``SISOCK-READY <what>`` on stdout when it serves; its log (stderr, JSON lines) is
re-emitted event by event with the child's name (:mod:`sisock_core.logrelay`). The
child's stdin is a pipe from us: when ``sisock up`` dies, the pipe closes and the child
exits, so nothing is orphaned.

A child that exits with a status of :data:`~sisock_core.startup_checks.PERMANENT_EXIT_CODES`
(it cannot start, and starting it again would not help: see :mod:`sisock_core.startup_checks`)
is not restarted; ``on_cannot_start`` gets the reason it printed.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable, Sequence

from twisted.internet import defer, error, protocol
from twisted.logger import Logger, LogLevel

from sisock_core.logrelay import parse_child_line, relay_line
from sisock_core.logs import READY_MARKER
from sisock_core.ports import Listener, busy_reasons
from sisock_core.startup_checks import CANNOT_START_MARKER, PERMANENT_EXIT_CODES

#: Delays between restarts of a crashing child; reset after it has run ``STABLE_AFTER`` s.
BACKOFF = (1, 2, 4, 8, 15, 30, 60)
STABLE_AFTER = 60.0


class _ChildProtocol(protocol.ProcessProtocol):
    def __init__(self, child: "SupervisedChild") -> None:
        self.child = child
        self._buf = {1: b"", 2: b""}

    def childDataReceived(self, fd: int, data: bytes) -> None:
        buf = self._buf.get(fd, b"") + data
        *lines, rest = buf.split(b"\n")
        self._buf[fd] = rest[-65536:]
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.child.line(fd, line)

    def processEnded(self, reason: Any) -> None:
        code = getattr(reason.value, "exitCode", None)
        sig = getattr(reason.value, "signal", None)
        self.child.ended(code, sig)


class SupervisedChild:
    """A child process kept running until :meth:`stop`."""

    log = Logger()

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        reactor: Any,
        env: dict[str, str] | None = None,
        restart: bool = True,
        on_cannot_start: Callable[["SupervisedChild", str], object] | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        """``on_cannot_start(child, reason)``: the child cannot start (default: log it).
        ``listeners``: the ports it listens on, checked before each restart."""
        self.name = name
        self.args = list(args)
        self.reactor = reactor
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.env.pop("NOTIFY_SOCKET", None)  # systemd readiness is ours to tell, not the child's
        self.restart = restart
        self.on_cannot_start = on_cannot_start
        self.listeners = list(listeners)
        #: fires with the reason when the child exited for good (it cannot start)
        self.gave_up: defer.Deferred = defer.Deferred()
        self._cannot_start_reason: str | None = None
        self._last_error_line = ""
        self.ready: defer.Deferred = defer.Deferred()
        self.transport: Any = None
        self.started_at = 0.0
        self.failures = 0
        self.restarts = 0
        self._stopping = False
        self._exited: defer.Deferred | None = None
        self._pending_restart: Any = None

    @property
    def running(self) -> bool:
        return self.transport is not None

    def start(self) -> None:
        argv = [sys.executable, "-m", "sisock_core.cli", *self.args]
        self.started_at = self.reactor.seconds()
        self._cannot_start_reason = None
        self._exited = defer.Deferred()
        self.transport = self.reactor.spawnProcess(
            _ChildProtocol(self), sys.executable, argv, env=self.env,
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        self.log.debug("started {child} (pid {pid})", child=self.name, pid=self.transport.pid)

    def line(self, fd: int, line: str) -> None:
        if fd == 1 and line.startswith(READY_MARKER):
            self.log.info("{child} is ready", child=self.name)
            if not self.ready.called:
                self.ready.callback(self)
            return
        if fd == 1 and line.startswith(CANNOT_START_MARKER):
            self._cannot_start_reason = line[len(CANNOT_START_MARKER):].strip()
            return
        event = parse_child_line(line)
        if fd == 2 and (event is None or event["log_level"] >= LogLevel.error):
            self._last_error_line = event["sisock_message"] if event else line  # why it may exit
        relay_line(self.name, line, event=event)  # the child's own event (JSON line), logged once

    def ended(self, code: int | None, sig: int | None) -> None:
        self.transport = None
        exited, self._exited = self._exited, None
        if exited is not None:
            exited.callback(code)
        if self._stopping:
            return
        ran = self.reactor.seconds() - self.started_at
        if ran >= STABLE_AFTER:
            self.failures = 0
        delay = BACKOFF[min(self.failures, len(BACKOFF) - 1)]
        self.failures += 1
        how = f"signal {sig}" if sig else f"exit code {code}"
        if sig is None and code in PERMANENT_EXIT_CODES:
            self._gave_up(self._cannot_start_reason or f"{how}: {self._last_error_line}")
            return
        if not self.restart:
            self.log.error("{child} stopped ({how})", child=self.name, how=how)
            return
        self.log.error("{child} stopped unexpectedly ({how}) after {ran:.1f}s; restarting in {delay}s",
                       child=self.name, how=how, ran=ran, delay=delay)
        self._pending_restart = self.reactor.callLater(delay, self._restart)

    def _gave_up(self, reason: str) -> None:
        if self.on_cannot_start is not None:
            self.on_cannot_start(self, reason)
        else:
            self.log.error("{child} cannot start: {reason}; not restarting it", child=self.name,
                           reason=reason)
        if not self.gave_up.called:
            self.gave_up.callback(reason)

    def _restart(self) -> None:
        self._pending_restart = None
        if self._stopping:
            return
        busy = busy_reasons(self.listeners)
        if busy:  # taken while it was down: it would fail the same way
            self._gave_up("; ".join(busy))
            return
        self.restarts += 1
        self.start()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the child (tests use it to simulate a crash)."""
        if self.transport is not None:
            try:
                self.transport.signalProcess(sig)
            except error.ProcessExitedAlready:
                pass

    def _kill_after_grace(self, grace: float) -> None:
        """SIGKILL a child still running ``grace`` seconds after SIGTERM, saying so."""
        self.log.warn("{child} did not stop within {grace} s of SIGTERM; killing it",
                      child=self.name, grace=grace)
        self.kill(signal.SIGKILL)

    def stop(self, grace: float = 10.0) -> defer.Deferred:
        """SIGTERM, then SIGKILL after ``grace`` seconds; fires when the child is gone."""
        self._stopping = True
        if self._pending_restart is not None and self._pending_restart.active():
            self._pending_restart.cancel()
        if self.transport is None or self._exited is None:
            return defer.succeed(None)
        exited = self._exited
        self.kill(signal.SIGTERM)
        killer = self.reactor.callLater(grace, self._kill_after_grace, grace)

        def done(result: Any) -> Any:
            if killer.active():
                killer.cancel()
            return result

        return exited.addBoth(done)
