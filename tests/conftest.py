"""Session-wide test resources: the private MariaDB (:mod:`tests.mariadb`) is stopped at the end;
figures some tests measure are printed in the summary."""

from __future__ import annotations

import pytest
from twisted.logger import formatEvent, globalLogPublisher


@pytest.fixture
def log_lines():
    """Every log line written during the test, formatted."""
    lines: list[str] = []

    def observer(event):
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


def pytest_sessionfinish(session, exitstatus):
    from .mariadb import stop_session_server

    stop_session_server()


def pytest_terminal_summary(terminalreporter):
    """crossbar's start-to-ready times measured by tests/test_router.py, if it ran."""
    import sys

    router_tests = sys.modules.get("tests.test_router")
    times = getattr(router_tests, "START_TIMES", None)
    if times:
        terminalreporter.write_line(
            f"crossbar start-to-ready times (s): {', '.join(f'{t:.2f}' for t in times)}")
