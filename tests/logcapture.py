"""Log capture for tests: a plugin module's own logger, or every log line."""

from __future__ import annotations

from typing import Any, Iterator

from twisted.logger import Logger, formatEvent


class LoggedMessages:
    """Log events captured so far, formatted."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __iter__(self) -> Iterator[str]:
        return iter(formatEvent(e) for e in self.events)

    def text(self) -> str:
        return "\n".join(self)

    def clear(self) -> None:
        self.events.clear()


def capture_log(monkeypatch: Any, module: Any) -> LoggedMessages:
    """Replace ``module.log`` (for the test) by a logger whose messages are kept."""
    messages = LoggedMessages()
    monkeypatch.setattr(module, "log", Logger(namespace="test", observer=messages.events.append))
    return messages
