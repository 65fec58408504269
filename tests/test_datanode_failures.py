"""DataNodeServer's logging of plugin failures: each distinct one at once, repeats counted."""

from __future__ import annotations

from twisted.logger import formatEvent, globalLogPublisher

from sisock_core.logs import RepeatedFailures


def test_repeated_failures_are_logged_once_then_summarised():
    now = [1000.0]
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        failures = RepeatedFailures(clock=lambda: now[0], interval=60.0)
        for _ in range(500):  # a database down: every refresh fails the same way
            failures("node 'g3_reader': index database is unavailable")
            now[0] += 0.1
        failures("node 'g3_reader': another problem")
        now[0] += 60.0
        failures("node 'g3_reader': index database is unavailable")
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [formatEvent(e) for e in events if e.get("log_namespace", "").endswith("RepeatedFailures")]
    assert lines == [
        "node 'g3_reader': index database is unavailable",
        "node 'g3_reader': another problem",
        "node 'g3_reader': index database is unavailable (and 499 more times since it was last logged)",
    ]
