"""Logging setup for our processes (twisted.logger, named fields)."""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Callable

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}

#: Namespaces logged only from warn up (per-connection factory start/stop lines).
QUIET_NAMESPACES = (
    "twisted.internet.protocol.Factory",
    "twisted.internet.protocol.ClientFactory",
    "autobahn.twisted.websocket.WampWebSocketClientFactory",
)

#: A line a child process prints on stdout when it is serving (read by ``sisock up``).
READY_MARKER = "SISOCK-READY"


def setup_logging(level: str = "info", stream: IO[str] | None = None) -> None:
    """Send twisted.logger events at ``level`` and above to ``stream`` (stderr)."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=LEVELS.get(level.lower(), LogLevel.info))
    # Connection churn from Twisted itself is noise at info level.
    for namespace in QUIET_NAMESPACES:
        predicate.setLogLevelForNamespace(namespace, LogLevel.warn)
    observer = FilteringLogObserver(textFileLogObserver(stream or sys.stderr), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False, discardBuffer=True)


def announce_ready(what: str) -> None:
    """Tell a supervising ``sisock up`` that this process is serving."""
    sys.stdout.write(f"{READY_MARKER} {what}\n")
    sys.stdout.flush()


#: Distinct problem messages remembered for de-duplicated logging.
MAX_REMEMBERED_PROBLEMS = 1000
#: Seconds between summaries of a repeated failure (each distinct one is logged at once).
FAILURE_SUMMARY_INTERVAL = 60.0


class RepeatedFailures:
    """Log each distinct failure message once, then how often it repeated (at most once per
    ``interval`` seconds): a database that is down for an hour fails every dashboard refresh,
    which must not write a log line per request.

    ``log`` is the logger to write to (its namespace names the component), ``level`` its level.
    """

    log = Logger()

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 interval: float = FAILURE_SUMMARY_INTERVAL, *, log: Logger | None = None,
                 level: LogLevel = LogLevel.error) -> None:
        self.clock = clock
        self.interval = interval
        self.level = level
        if log is not None:
            self.log = log
        self._seen: dict[str, float] = {}  # message -> when it was last logged
        self._repeats: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        now = self.clock()
        with self._lock:
            last = self._seen.get(message)
            if last is not None and now - last < self.interval:
                self._repeats[message] = self._repeats.get(message, 0) + 1
                return
            repeats = self._repeats.pop(message, 0)
            if last is None and len(self._seen) >= MAX_REMEMBERED_PROBLEMS:
                self._seen.clear()
            self._seen[message] = now
        if repeats:
            self.log.emit(self.level, "{msg} (and {n} more times since it was last logged)",
                          msg=message, n=repeats)
        else:
            self.log.emit(self.level, "{msg}", msg=message)
