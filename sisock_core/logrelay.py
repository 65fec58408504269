"""Re-emit a child process's log lines as this process's own twisted.logger events.

A child of ``sisock up`` writes one JSON object per event on its stderr
(:func:`sisock_core.logs.format_json`). :func:`relay_line` turns each back into an event with
the child's time, level, namespace, message, traceback and named fields, tagged with the
child's component name, so ``sisock up`` writes it once, in its own format. Anything else a
child prints (a crash before logging started, a library writing to stderr) is re-emitted
as it is, at warn level, in the namespace ``<component>.stderr``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Callable

from twisted.logger import LogLevel, globalLogPublisher

from sisock_core.logs import COMPONENT_KEY

#: The keys of a child's JSON line that are not named fields.
_FIXED = ("time", "level", "component", "namespace", "message", "traceback")


def parse_child_line(line: str) -> dict | None:
    """The event a child's JSON log line stands for, without the component; None if the
    line is not one of ours."""
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not all(k in obj for k in ("time", "level", "namespace", "message")):
        return None
    try:
        level = LogLevel.levelWithName(str(obj["level"]))
    except Exception:  # InvalidLogLevelError
        level = LogLevel.info
    try:
        when = dt.datetime.fromisoformat(str(obj["time"]).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    event: dict[str, Any] = {
        k: v for k, v in obj.items()
        if k not in _FIXED and not k.startswith("log_") and not k.startswith("sisock_")
    }
    event.update(
        log_time=when,
        log_level=level,
        log_namespace=str(obj["namespace"]),
        log_format="{sisock_message}",
        sisock_message=str(obj["message"]),
    )
    if obj.get("traceback"):
        event["sisock_traceback"] = str(obj["traceback"])
    return event


def relay_line(component: str, line: str, publish: Callable[[dict], None] = globalLogPublisher,
               event: dict | None = None) -> None:
    """Publish the event a child's output ``line`` stands for (``event``: its
    :func:`parse_child_line`, if already parsed), tagged with ``component``."""
    import time

    if event is None:
        event = parse_child_line(line)
    if event is None:
        event = {"log_time": time.time(), "log_level": LogLevel.warn,
                 "log_namespace": f"{component}.stderr", "log_format": "{sisock_message}",
                 "sisock_message": line}
    event[COMPONENT_KEY] = component
    publish(event)
