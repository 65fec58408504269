"""Fixtures of the reliability suite (helpers are in :mod:`tests.reliability.support`)."""

from __future__ import annotations

import json
import shutil

import pytest

from .support import FIGURES, SHARED_NODES, start_site, wait_http_ready


@pytest.fixture(scope="package")
def shared_site(tmp_path_factory):
    """One ``sisock up`` (bridge with basic auth, apex_archive, lakeshore) for the fuzz and
    security modules."""
    from sisock_plugins.weather.plugin import example_data_dir

    tmp = tmp_path_factory.mktemp("shared")
    shutil.copytree(example_data_dir(), tmp / "weather")
    site = start_site(tmp, SHARED_NODES.format(data_dir=json.dumps(str(tmp / "weather"))))
    try:
        wait_http_ready(site.url)
        yield site
    finally:
        rc = site.proc.stop()
        print(site.proc.log_tail(20, debug=False))
        assert rc == 0, f"sisock up exited with {rc}"


def pytest_terminal_summary(terminalreporter):
    """Print the figures the reliability tests measured (recovery times, load, fuzz counts)."""
    if FIGURES:
        terminalreporter.section("reliability figures")
        for key, text in FIGURES.items():
            terminalreporter.write_line(f"{key}: {text}")
