"""No answer can cut a node off the router: above a size the node answers with a clear
error (``answer_too_large``), and the node and the caller keep their sessions."""

from __future__ import annotations

import numpy as np
import pytest
import pytest_twisted

from sisock_core import Field, PluginSpec, Timeline, hookimpl
from sisock_core.answersize import (
    ERROR_ANSWER_TOO_LARGE,
    MAX_ANSWER_BYTES,
    AnswerTooLarge,
    bound_answer_size,
)
from sisock_core.config import NodeConfig
from sisock_core.engine import NodeEngine
from sisock_core.model import NodeContext
from sisock_core.plugins import make_plugin_manager, plugin_spec
from sisock_core.wamp import node_uri

from .events import Signal, until
from .helpers_router import in_reactor, open_session, site_config

T0 = 1_600_000_000.0
N_BIG = 5_000_000


class BigPlugin:
    """One field ``x`` sampled every second, ``n`` samples (a busy live buffer or a
    week of a 10 Hz sensor)."""

    def __init__(self, n: int) -> None:
        self.t = T0 + np.arange(n, dtype=np.float64)
        self.x = np.sin(np.arange(n) / 1000.0)

    @hookimpl
    def sisock_plugin_spec(self):
        return PluginSpec(default_node_name="big", description="five million samples")

    @hookimpl
    def list_fields(self, start, end):
        return [Field("x", "seconds", interval=1.0)]

    @hookimpl
    def read_range(self, fields, start, end):
        return {"seconds": Timeline(self.t, {"x": self.x}, finalized_until=float(self.t[-1]))}


# -- the bound, pure ----------------------------------------------------------------------------


def test_bound_counts_numbers_and_strings_and_raises_with_details():
    t = np.arange(10.0)
    assert bound_answer_size(0, t, {"a": np.ones(10), "s": np.array(["on"] * 10, dtype=object)}) \
        == 90 + 90 + 10 * 7
    assert bound_answer_size(MAX_ANSWER_BYTES - 18, t[:1], {"a": np.ones(1)}) == MAX_ANSWER_BYTES
    with pytest.raises(AnswerTooLarge, match="max_points or min_stride") as info:
        bound_answer_size(MAX_ANSWER_BYTES - 17, t[:1], {"a": np.ones(1)})
    assert info.value.details == {"estimated_bytes": MAX_ANSWER_BYTES + 1, "limit_bytes": MAX_ANSWER_BYTES}


def test_engine_refuses_a_full_resolution_answer_over_the_bound_and_serves_a_reduced_one():
    n = MAX_ANSWER_BYTES // 18 + 1000  # times and one field, 9 bytes each
    plugin = BigPlugin(n)
    engine = NodeEngine(NodeContext(name="big", description=""), make_plugin_manager(plugin, name="big"),
                        "big", clock=lambda: T0 + n)
    with pytest.raises(AnswerTooLarge):
        engine.get_data(["x"], 1, 0)
    assert len(engine.get_data(["x"], 1, 0, max_points=1000)["data"]["x"]) <= 1000
    assert len(engine.get_data(["x"], 1, 0, min_stride=60.0)["data"]["x"]) <= 2 * n // 60 + 2
    # just under the bound: served whole
    small = n - 2000
    assert len(engine.get_data(["x"], T0, T0 + small)["data"]["x"]) == small


# -- over a real router -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    from sisock_core.router import RouterProcess, load_secrets

    cfg = site_config(tmp_path_factory.mktemp("bound") / "state")
    secrets = load_secrets(cfg, env={})
    process = RouterProcess(cfg, secrets, ready_timeout=60)
    in_reactor(process.start, timeout=90)
    yield cfg, secrets
    in_reactor(process.stop, timeout=30)


async def _serving(cfg, name: str, n: int, description: str):
    """A DataNodeServer ``name`` serving :class:`BigPlugin` (``n`` samples) on the router,
    once its procedures are registered."""
    from sisock_core.datanode import DataNodeServer

    pm = make_plugin_manager(BigPlugin(n), name="big")
    registered = Signal()
    node = DataNodeServer(cfg, NodeConfig(name=name, plugin="big", description=description),
                          plugin=(pm, plugin_spec(pm, "big")), on_registered=registered)
    node.start_plugin()
    node.start()
    try:
        await until(lambda: registered.count, registered, 30, f"node {name} to register its procedures")
    except BaseException:
        await node.stop()
        raise
    return node


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_a_full_range_call_on_five_million_samples_keeps_node_and_caller_connected(router):
    from autobahn.wamp.exception import ApplicationError
    from twisted.internet import reactor

    cfg, secrets = router
    node = await _serving(cfg, "big", N_BIG, "five million samples")
    caller = None
    try:
        caller = await open_session(cfg, authid="simonsobs", secret=secrets.consumer)
        node_session = node._session
        assert node_session is not None and node_session.is_attached()
        get_data = node_uri("big", "get_data")
        # what `sisock get` used to send: the whole range, no max_points
        with pytest.raises(ApplicationError) as info:
            await caller.call(get_data, ["x"], 1, 0).addTimeout(120, reactor)
        assert info.value.error == ERROR_ANSWER_TOO_LARGE
        assert "max_points or min_stride" in str(info.value)
        assert info.value.kwargs["estimated_bytes"] > MAX_ANSWER_BYTES
        # the same session asks again, reasonably: answered by the same node session
        answer = await caller.call(get_data, ["x"], 1, 0, max_points=2000).addTimeout(60, reactor)
        assert node._session is node_session and node_session.is_attached()
        t = answer["timeline"]["seconds"]["t"]
        assert 0 < len(answer["data"]["x"]) == len(t) <= 2000
        assert T0 <= t[0] < t[-1] < T0 + N_BIG
    finally:
        if caller is not None:
            caller.leave()
        await node.stop()


def _sisock(*args: str) -> "subprocess.CompletedProcess":
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "sisock_core.cli", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_sisock_get_asks_for_a_sensible_number_of_points_and_all_fetches_in_pieces(router, tmp_path):
    import json

    from twisted.internet import threads

    cfg, _secrets = router
    site = tmp_path / "site.toml"
    site.write_text(f'state_dir = "{cfg.state_dir}"\n\n[router]\nstart = false\n'
                    f'tls_port = {cfg.router.tls_port}\nocs_port = {cfg.router.ocs_port}\n')
    n = 1_000_000  # 18 MB at full resolution: more than one message
    node = await _serving(cfg, "medium", n, "a million samples")
    try:
        listed = await threads.deferToThread(_sisock, "fields", "medium", "--json", "-c", str(site))
        assert listed.returncode == 0, listed.stderr
        start, end = str(T0), str(T0 + n)
        out = await threads.deferToThread(_sisock, "get", "medium", "x", "--start", start, "--end", end,
                                          "--json", "-c", str(site))
        assert out.returncode == 0, out.stderr
        answer = json.loads(out.stdout)
        assert 2 < len(answer["data"]["x"]) <= 2000

        out = await threads.deferToThread(_sisock, "get", "medium", "x", "--start", start, "--end", end,
                                          "--all", "--json", "-c", str(site))
        assert out.returncode == 0, out.stderr
        assert "piece 3 of 3" in out.stderr
        answer = json.loads(out.stdout)
        t = np.array(answer["timeline"]["seconds"]["t"])
        assert np.array_equal(t, T0 + np.arange(n))  # every sample once, in order
        assert np.array_equal(np.array(answer["data"]["x"]), np.sin(np.arange(n) / 1000.0))
    finally:
        await node.stop()
