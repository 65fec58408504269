"""Logging setup for our processes (twisted.logger, named fields)."""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
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
