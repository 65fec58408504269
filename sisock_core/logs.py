"""Logging for our processes (twisted.logger, named fields): one line per event.

Text (the default) is ``<UTC time> [<component>] [<namespace>#<level>] <message>``, e.g.
``2026-11-29T04:25:36.123Z [hub] [sisock_core.hub.Hub#info] data node apex_archive added``.
``--log-format json`` (or ``$SISOCK_LOG_FORMAT=json``) writes one JSON object per line for log
shippers: ``time``, ``level``, ``component``, ``namespace``, ``message``, ``traceback`` (if
any) and the event's named fields. Under systemd (stderr is journald's), text lines leave the
time to journald and carry the level as a syslog priority (``<6>[hub] [...#info] ...``).

A child of ``sisock up`` always writes JSON lines to its stderr; ``sisock up`` re-emits each
as its own event with the child's time, level, namespace and fields
(:mod:`sisock_core.logrelay`), so a child's line appears once, with one timestamp.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import threading
import time
from contextvars import ContextVar
from typing import IO, Any, Callable, Mapping

import attrs
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
    globalLogBeginner,
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

#: Output formats: ``text`` for people, ``json`` for log shippers.
FORMATS = ("text", "json")
#: Environment variable choosing the format (``--log-format`` wins over it).
ENV_FORMAT = "SISOCK_LOG_FORMAT"
#: Event key naming the component (``hub``, ``node apex_archive``, ``up``) an event comes from.
COMPONENT_KEY = "sisock_component"
#: JSON keys of every line; named fields of the event follow (one that collides gets a ``_``).
JSON_KEYS = ("time", "level", "component", "namespace", "message", "traceback")

#: The data node the running code works for: a process hosting several nodes sets it around
#: each node's work (:mod:`sisock_core.nodehost`), and an event without a ``node`` field gets
#: it (so does one logged by an object with a ``log_node`` attribute, a node's server).
current_node: ContextVar[str | None] = ContextVar("sisock_current_node", default=None)

#: What this process is (set from the command line by :func:`configure`).
_process = {"component": "sisock", "format": "text"}


def configure(component: str, fmt: str | None = None, supervised: bool = False) -> None:
    """Name this process's component and pick its log format (before :func:`setup_logging`).

    ``supervised``: a child of ``sisock up``, which writes JSON lines for it to re-emit.
    """
    _process["component"] = component
    chosen = fmt or os.environ.get(ENV_FORMAT) or "text"
    if chosen not in FORMATS:
        raise ValueError(f"log format {chosen!r}: use one of {', '.join(FORMATS)}")
    _process["format"] = "json" if supervised else chosen


def format_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _traceback(event: dict) -> str | None:
    failure = event.get("log_failure")
    if failure is not None:
        try:
            return failure.getTraceback()
        except Exception:  # a Failure that cannot format itself
            return repr(failure)
    return event.get("sisock_traceback")


def _level(event: dict) -> str:
    return getattr(event.get("log_level"), "name", "info")


def format_text(event: dict) -> str | None:
    """``<time> [<component>] [<namespace>#<level>] <message>`` (a traceback indented below)."""
    text = formatEvent(event)
    tb = _traceback(event)
    if tb:
        text = f"{text}\n{tb.rstrip()}" if text else tb.rstrip()
    text = text.replace("\n", "\n\t")
    component = event.get(COMPONENT_KEY) or _process["component"]
    node = event.get("node")
    if isinstance(node, str) and component.startswith("group "):  # which of the group's nodes
        component = f"{component}/{node}"
    namespace = event.get("log_namespace", "-")
    return f"{format_time(event.get('log_time') or time.time())} [{component}] [{namespace}#{_level(event)}] {text}\n"


#: syslog priorities journald reads from a ``<N>`` line prefix
_PRIORITY = {"debug": 7, "info": 6, "warn": 4, "error": 3, "critical": 2}


def format_journal(event: dict) -> str | None:
    """For journald (stderr of a systemd service): the text line without our timestamp
    (journald has its own) and with the level as a syslog priority prefix (``<6>``)."""
    line = format_text(event)
    return f"<{_PRIORITY.get(_level(event), 6)}>" + line.split(" ", 1)[1]


def to_journal(stream: IO[str], env: Mapping[str, str] = os.environ) -> bool:
    """Is ``stream`` connected to journald (``$JOURNAL_STREAM`` names its device and inode)?"""
    try:
        dev, ino = (int(x) for x in env.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)) and len(value) <= 100:
        return [_plain(v) for v in value]
    if isinstance(value, dict) and len(value) <= 100:
        return {str(k): _plain(v) for k, v in value.items()}
    text = str(value)
    return text if len(text) <= 1000 else text[:1000] + "..."


def event_fields(event: dict) -> dict:
    """The event's named fields (not Twisted's ``log_*`` keys nor ours)."""
    return {k: v for k, v in event.items()
            if not k.startswith("log_") and not k.startswith("sisock_")}


def format_json(event: dict) -> str | None:
    """One JSON object per event (see :data:`JSON_KEYS`)."""
    out: dict[str, Any] = {
        "time": format_time(event.get("log_time") or time.time()),
        "level": _level(event),
        "component": event.get(COMPONENT_KEY) or _process["component"],
        "namespace": event.get("log_namespace", "-"),
        "message": formatEvent(event),
    }
    tb = _traceback(event)
    if tb:
        out["traceback"] = tb
    for key, value in event_fields(event).items():
        out[f"_{key}" if key in JSON_KEYS else key] = _plain(value)
    return json.dumps(out, ensure_ascii=False, default=str) + "\n"


class _Writer:
    """A log observer writing formatted events to a stream (one write per event)."""

    def __init__(self, stream: IO[str], formatter: Callable[[dict], str | None]) -> None:
        self.stream = stream
        self.formatter = formatter
        # Re-entrant: a Python signal handler (Twisted's SIGINT/SIGTERM handler logs
        # "Received SIGINT") runs on the main thread between bytecodes, possibly while
        # this thread holds the lock mid-event; a plain Lock deadlocks the process there.
        self.lock = threading.RLock()

    def __call__(self, event: dict) -> None:
        text = self.formatter(event)
        if not text:
            return
        with self.lock:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):  # stream closed (shutting down)
                pass


def _quiet_connection_attempts(event: dict) -> PredicateResult:
    """autobahn logs every (re)connection attempt at warn level: the first is debug, a retry info."""
    if str(event.get("log_format", "")).startswith("trying transport") and event.get("log_level") == LogLevel.warn:
        event["log_level"] = LogLevel.debug if not event.get("transport_delay") else LogLevel.info
    return PredicateResult.maybe


def _node_field(event: dict) -> PredicateResult:
    """Name the node an event is about (``node``), when the event does not already."""
    if "node" not in event:
        node = current_node.get() or getattr(event.get("log_source"), "log_node", None)
        if node:
            event["node"] = node
    return PredicateResult.maybe


def setup_logging(level: str = "info", stream: IO[str] | None = None, fmt: str | None = None) -> None:
    """Send twisted.logger events at ``level`` and above to ``stream`` (stderr), one line each,
    in this process's format (:func:`configure`; ``fmt`` overrides it)."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=LEVELS.get(level.lower(), LogLevel.info))
    # Connection churn from Twisted itself is noise at info level.
    for namespace in QUIET_NAMESPACES:
        predicate.setLogLevelForNamespace(namespace, LogLevel.warn)
    stream = stream or sys.stderr
    if (fmt or _process["format"]) == "json":
        formatter = format_json
    else:
        formatter = format_journal if to_journal(stream) else format_text
    observer = FilteringLogObserver(_Writer(stream, formatter),
                                    [_quiet_connection_attempts, _node_field, predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False, discardBuffer=True)


_ACCESS_TIME = re.compile(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] ")


def access_log_line(timestamp: str, request: Any) -> str:
    """twisted.web's access log line (combined format) without its own timestamp: the log
    line it goes into has one (``Site(resource, logFormatter=access_log_line)``)."""
    from twisted.web.http import combinedLogFormatter

    return _ACCESS_TIME.sub("", combinedLogFormatter(timestamp, request), count=1)


#: A line a child process prints on stdout when it is serving (read by ``sisock up``).
READY_MARKER = "SISOCK-READY"


def announce_ready(what: str) -> None:
    """Tell a supervising ``sisock up`` (or systemd) that this process is serving."""
    sys.stdout.write(f"{READY_MARKER} {what}\n")
    sys.stdout.flush()
    from sisock_core.sdnotify import notify

    notify(f"READY=1\nSTATUS={what} serving")  # under systemd (Type=notify); else nothing


#: Distinct problem messages remembered for de-duplicated logging.
MAX_REMEMBERED_PROBLEMS = 1000
#: Seconds between summaries of a repeated failure (each distinct one is logged at once).
FAILURE_SUMMARY_INTERVAL = 60.0


@attrs.define(eq=False)
class RepeatedFailures:
    """Log each distinct problem once, then how often it repeated (at most once per
    ``interval`` seconds): a database that is down for an hour fails every dashboard refresh,
    and a misconfigured feed sends a bad message every second, which must not write a log
    line each.

    A problem is told apart by its ``key`` (its message unless given). ``log`` is the logger
    to write to (its namespace names the component), ``level`` its level; ``format`` is the
    log line's format with the problem as ``{msg}`` and ``fields`` (e.g. ``node``) filled in;
    ``note`` is appended the first time a problem is logged (e.g. that repeats are counted).
    ``clock`` and ``interval`` may be given by position.
    """

    clock: Callable[[], float] = time.monotonic
    interval: float = FAILURE_SUMMARY_INTERVAL
    log: Logger = attrs.field(kw_only=True, factory=lambda: Logger(namespace=f"{__name__}.RepeatedFailures"))
    level: LogLevel = attrs.field(kw_only=True, default=LogLevel.error)
    format: str = attrs.field(kw_only=True, default="{msg}")
    note: str = attrs.field(kw_only=True, default="")
    fields: Mapping[str, Any] = attrs.field(kw_only=True, factory=dict)
    _seen: dict[str, float] = attrs.field(init=False, factory=dict)  # key -> when last logged
    _repeats: dict[str, int] = attrs.field(init=False, factory=dict)
    _lock: Any = attrs.field(init=False, factory=threading.Lock)

    def __call__(self, message: str, key: str | None = None) -> None:
        key = message if key is None else key
        now = self.clock()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last < self.interval:
                self._repeats[key] = self._repeats.get(key, 0) + 1
                return
            repeats = self._repeats.pop(key, 0)
            if last is None and len(self._seen) >= MAX_REMEMBERED_PROBLEMS:
                self._seen.clear()
                self._repeats.clear()
            self._seen[key] = now
        if repeats:
            self.log.emit(self.level, self.format + " (and {n} more times since it was last logged)",
                          msg=message, n=repeats, **self.fields)
        else:
            self.log.emit(self.level, self.format + ("{note}" if last is None and self.note else ""),
                          msg=message, note=self.note, **self.fields)

    @classmethod
    def for_node(cls, log: Logger, node: str) -> "RepeatedFailures":
        """Problems of one node's data (bad samples, feed messages): warnings naming the node."""
        return cls(log=log, level=LogLevel.warn, format="{node}: {msg}",
                   note=" (repeats are counted, not logged)", fields={"node": node})
