"""A pytest plugin for testing sisock plugins: opt-in, two ways.

Enable it in your ``conftest.py``::

    pytest_plugins = ["sisock_core.testing"]

or on the command line with ``pytest -p sisock_core.testing``. It gives two fixtures.

``sisock_node`` (no router): a factory that starts your plugin inside a real
:class:`~sisock_core.datanode.DataNodeServer` in this process — the site file's option
checking, ``node_start``, the WAMP procedures ``get_fields``/``get_data`` with the core's
time rule, trimming and decimation, the error translation, the thread pool and the hub
registration — with an in-memory WAMP session instead of a router. Answers come back
through the real msgpack serializer, exactly as a consumer would receive them::

    def test_fields(sisock_node, tmp_path):
        node = sisock_node(my_plugin, options={"path": str(tmp_path / "data.csv")})
        fields, timelines = node.get_fields()
        assert fields["temperature"]["units"] == "K"

``sisock_site`` (a real router): a module-scoped factory that writes a site file on free
loopback ports, runs ``sisock up`` (crossbar, the hub, a process per node) and gives a
blocking WAMP client; your plugin must be installed (``pip install -e .``) since nodes
run in their own processes::

    @pytest.fixture(scope="module")
    def site(sisock_site):
        return sisock_site({"mine": {"plugin": "example", "path": "/data/x.csv"}})

    def test_over_wamp(site):
        assert site.nodes() == [{"name": "mine", "description": "..."}]
        answer = site.get_data("mine", ["temperature"], 1, 0)

Both work from plain synchronous tests; no pytest-twisted needed. Outside pytest, use
:func:`start_node` and :func:`start_site` (both context managers).

The process helpers (:class:`SisockProcess`, :func:`write_site`, :func:`free_ports`,
:func:`wait_until`, :func:`pids_matching`) are public too; sisock's own integration tests
use them.

Modules: :mod:`~sisock_core.testing.processes` (ports, site files, ``sisock`` processes),
:mod:`~sisock_core.testing.wire` (the serializer round trip),
:mod:`~sisock_core.testing.memory_session` (the in-memory WAMP session),
:mod:`~sisock_core.testing.private_reactor`, :mod:`~sisock_core.testing.inprocess_node`
(:func:`start_node`), :mod:`~sisock_core.testing.running_site` (:func:`start_site` and its
client, :mod:`~sisock_core.testing.client`) and :mod:`~sisock_core.testing.fixtures` (the
pytest plugin). Import from here: ``from sisock_core.testing import start_node``.
"""

from __future__ import annotations

from sisock_core.logs import READY_MARKER as READY  # noqa: F401  (the ready line a process prints)
from sisock_core.testing.fixtures import (  # noqa: F401  (the pytest plugin's hooks and fixtures)
    pytest_configure,
    pytest_unconfigure,
    sisock_node,
    sisock_site,
)
from sisock_core.testing.inprocess_node import Received, SisockNode, start_node
from sisock_core.testing.memory_session import MemorySession
from sisock_core.testing.processes import (  # noqa: F401  (nodes_toml: public before the split)
    SisockProcess,
    free_port,
    free_ports,
    nodes_toml,
    pids_matching,
    wait_until,
    write_site,
)
from sisock_core.testing.running_site import RunningSite, SiteClient, start_site
from sisock_core.testing.wire import WireFormatError, over_the_wire  # noqa: F401

__all__ = [
    "MemorySession",
    "Received",
    "RunningSite",
    "SiteClient",
    "SisockNode",
    "SisockProcess",
    "WireFormatError",
    "free_port",
    "free_ports",
    "pids_matching",
    "sisock_node",
    "sisock_site",
    "start_node",
    "start_site",
    "wait_until",
    "write_site",
]
