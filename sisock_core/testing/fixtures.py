"""The pytest plugin: the ``sisock_node`` and ``sisock_site`` fixtures.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping


from sisock_core.testing.inprocess_node import SisockNode, start_node
from sisock_core.testing.private_reactor import _stop_private_reactor
from sisock_core.testing.running_site import RunningSite, start_site

import pytest


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers", "integration: starts real processes (crossbar router, hub, nodes)"
    )


def pytest_unconfigure(config: Any) -> None:
    _stop_private_reactor()


@pytest.fixture
def sisock_node() -> Iterable[Callable[..., SisockNode]]:
    """Factory: ``sisock_node(plugin, options=None, *, name=None, ...)`` → a running
    :class:`SisockNode` (see :func:`start_node`); every node is stopped after the test."""
    started: list[SisockNode] = []

    def factory(plugin: Any, options: Any = None, **kwargs: Any) -> SisockNode:
        node = start_node(plugin, options, **kwargs)
        started.append(node)
        return node

    yield factory
    errors = []
    for node in reversed(started):
        try:
            node.stop()
        except Exception as exc:  # node_stop raised: fail the test's teardown
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def sisock_site(tmp_path_factory: Any) -> Iterable[Callable[..., RunningSite]]:
    """Factory: ``sisock_site(nodes, *, http=False, env=None)`` → a :class:`RunningSite`.

    Module-scoped: calls with the same arguments share one ``sisock up``, stopped after
    the module's last test.
    """
    sites: dict[str, RunningSite] = {}

    def factory(nodes: str | Mapping[str, Mapping[str, Any]], **kwargs: Any) -> RunningSite:
        key = json.dumps([nodes, kwargs], sort_keys=True, default=str)
        if key not in sites:
            sites[key] = start_site(tmp_path_factory.mktemp("sisock-site"), nodes, **kwargs)
        return sites[key]

    yield factory
    errors = []
    for site in sites.values():
        try:
            site.stop()
        except AssertionError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
