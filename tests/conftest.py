"""Session-wide test resources: the private MariaDB (:mod:`tests.mariadb`) is stopped at the end."""

from __future__ import annotations


def pytest_sessionfinish(session, exitstatus):
    from .mariadb import stop_session_server

    stop_session_server()
