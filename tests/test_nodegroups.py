"""Node groups: the ``process`` key of a node, the processes it makes, their systemd units."""

from __future__ import annotations

import sys
import textwrap
from typing import Any

import pytest

from sisock_core import PluginSpec, hookimpl
from sisock_core.config import ConfigError, load_config_text
from sisock_core.nodegroups import NodeProcess, group_members, node_processes, site_node_processes
from sisock_core.plugins import make_plugin_manager, plugin_spec
from sisock_core.systemd import UnitOptions, units
from sisock_core.testing import nodes_toml


class _Fake:
    def __init__(self, name: str) -> None:
        self.name = name

    @hookimpl
    def sisock_plugin_spec(self) -> PluginSpec:
        return PluginSpec(default_node_name=self.name, description=f"fake {self.name}")


def _loader(name: str) -> Any:
    pm = make_plugin_manager(_Fake(name), name=name)
    return pm, plugin_spec(pm, name)


def load(text: str) -> Any:
    return load_config_text(textwrap.dedent(text), "site.toml", {}, plugin_loader=_loader,
                            installed=lambda: ["feed", "archive"])


SITE = nodes_toml({
    "f1": {"plugin": "feed"},
    "a1": {"plugin": "archive"},
    "f2": {"plugin": "feed"},
    "lonely": {"plugin": "feed", "process": "own"},
    "a2": {"plugin": "archive", "process": "slow"},
    "f3": {"plugin": "feed", "process": "slow"},
    "off": {"plugin": "feed", "enabled": False},
})


def test_default_is_one_process_per_plugin_own_and_named_groups_split_it() -> None:
    cfg = load(SITE)
    assert cfg.nodes["f1"].process is None and cfg.nodes["lonely"].process == "own"
    procs = site_node_processes(cfg)
    assert procs == [NodeProcess("feed", ("f1", "f2")), NodeProcess("archive", ("a1",)),
                     NodeProcess(None, ("lonely",)), NodeProcess("slow", ("a2", "f3"))]
    assert [p.name for p in procs] == ["group feed", "node a1", "node lonely", "group slow"]
    assert [p.args for p in procs] == [["node", "--group", "feed"], ["node", "a1"], ["node", "lonely"],
                                       ["node", "--group", "slow"]]
    assert group_members(cfg, "feed") == ["f1", "f2"]  # not the disabled one, nor the "own" one
    assert group_members(cfg, "nothing") == []


def test_a_group_named_after_a_plugin_is_that_plugins_default_group() -> None:
    cfg = load("""
        [nodes.f1]
        plugin = "feed"
        [nodes.a1]
        plugin = "archive"
        process = "feed"
    """)
    assert node_processes(cfg.nodes.values()) == [NodeProcess("feed", ("f1", "a1"))]


@pytest.mark.parametrize("value, reason", [
    ("3", "nodes.x.process: expected a string, got integer 3"),
    ('"Big Group"', "nodes.x.process: must be \"own\" or a group name (lowercase letters, digits and '_', "
                    "starting with a letter), got 'Big Group'"),
    ('""', "nodes.x.process: must be \"own\" or a group name"),
])
def test_a_bad_process_value_is_named_with_its_node(value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(f'[nodes.x]\nplugin = "feed"\nprocess = {value}\n')
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"site.toml: {reason}"), info.value.problems


def test_systemd_has_one_unit_per_node_process(tmp_path) -> None:
    from sisock_core.config import load_config
    from sisock_core.systemd import write_units

    from .test_systemd import _verify

    feed = {"plugin": "datafeed", "feed": "temperatures"}
    site = tmp_path / "site.toml"
    site.write_text(f'state_dir = "{tmp_path}/state"\n' + nodes_toml({
        "f1": {**feed, "target": "a1"}, "w1": {"plugin": "weather"}, "f2": {**feed, "target": "a2"},
        "lonely": {**feed, "target": "a3", "process": "own"}, "w2": {"plugin": "weather", "process": "slow"},
        "f3": {**feed, "target": "a4", "process": "slow"}}))
    files = units(load_config(site), UnitOptions(per_component=True,
                                                 command=(sys.executable, "-m", "sisock_core.cli")))
    nodes = sorted(n for n in files if "-node-" in n or "-group-" in n)
    assert nodes == ["sisock-group-datafeed.service", "sisock-group-slow.service", "sisock-node-lonely.service",
                     "sisock-node-w1.service"]
    group = files["sisock-group-datafeed.service"]
    assert f"ExecStart={sys.executable} -m sisock_core.cli node --group datafeed --config {site}\n" in group
    assert "Description=sisock data nodes of group datafeed: f1, f2 (datafeed)\n" in group
    assert "Description=sisock data nodes of group slow: w2, f3 (datafeed, weather)\n" in files[
        "sisock-group-slow.service"]
    assert f"ExecStart={sys.executable} -m sisock_core.cli node lonely --config {site}\n" in files[
        "sisock-node-lonely.service"]
    write_units(files, tmp_path / "units")
    assert _verify(tmp_path / "units") == ""


# -- the process hosting a group (no router: its start and readiness rules) ----------------


class _Starting(_Fake):
    """A plugin whose ``node_start`` raises for the nodes named ``broken*``."""

    @hookimpl
    def node_start(self, node):
        if node.name.startswith("broken"):
            raise RuntimeError(f"{node.name}: cannot start")


def _host(names: list[str], ready: list[str]):
    from sisock_core.datanode import DataNodeServer
    from sisock_core.nodehost import NodeHost

    cfg = load("".join(f'[nodes.{n}]\nplugin = "feed"\n' for n in names))
    pm = make_plugin_manager(_Starting("feed"), name="feed")

    def make_server(cfg, node_cfg, on_ready):
        return DataNodeServer(cfg, node_cfg, on_ready=on_ready, plugin=(pm, plugin_spec(pm, "feed")),
                              connect=False)

    return NodeHost(cfg, names, title="group feed", on_ready=lambda: ready.append("group feed"),
                    make_server=make_server)


def test_a_host_starts_the_nodes_it_can_and_is_ready_when_they_are_listed() -> None:
    ready: list[str] = []
    host = _host(["good_a", "broken_b", "good_c"], ready)
    assert host.start_plugins()
    assert sorted(host.servers) == ["good_a", "good_c"]
    assert host.failed == {"broken_b": "RuntimeError: broken_b: cannot start"}
    host.servers["good_a"]._on_ready()
    assert ready == []  # good_c is not listed yet
    host.servers["good_c"]._on_ready()
    host.servers["good_a"]._on_ready()
    assert ready == ["group feed"]  # once


def test_a_host_none_of_whose_nodes_starts_says_so() -> None:
    host = _host(["broken_a", "broken_b"], [])
    assert not host.start_plugins()
    assert sorted(host.failed) == ["broken_a", "broken_b"]


def test_the_tables_of_a_group_are_found_without_importing_plugins() -> None:
    from sisock_core.nodegroups import tables_in_group

    text = SITE + '[nodes.broken]\nplugin = "not_installed"\nprocess = "slow"\n'
    assert tables_in_group(text, "feed") == ["f1", "f2", "off"]  # (enabled is the full load's to say)
    assert tables_in_group(text, "slow") == ["a2", "f3", "broken"]
    assert tables_in_group(text, "own") == [] and tables_in_group("not = [toml", "feed") == []


class _SubscribeFails(_Fake):
    """``node_start`` opens something; ``subscribe`` then raises: the node does not start."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.open: set[str] = set()

    @hookimpl
    def node_start(self, node):
        self.open.add(node.name)

    @hookimpl
    def node_stop(self, node):
        self.open.discard(node.name)

    @hookimpl
    def subscribe(self, node, publish):
        raise RuntimeError(f"{node.name}: no feed")


def test_a_node_whose_start_fails_after_node_start_is_stopped_so_retries_leak_nothing() -> None:
    """In a group process a failed node is retried for as long as the process lives: what
    its ``node_start`` opened before a later step raised is closed again (``node_stop``)."""
    from sisock_core.datanode import DataNodeServer
    from sisock_core.nodehost import NodeHost

    plugin = _SubscribeFails("feed")
    pm = make_plugin_manager(plugin, name="feed")
    cfg = load('[nodes.one]\nplugin = "feed"\n')
    host = NodeHost(cfg, ["one"], title="group feed", on_ready=lambda: None,
                    make_server=lambda cfg, node_cfg, on_ready: DataNodeServer(
                        cfg, node_cfg, on_ready=on_ready, plugin=(pm, plugin_spec(pm, "feed")), connect=False))
    for attempt in range(3):
        assert host._built("one", host._build("one")) is None
        assert host.failed == {"one": "RuntimeError: one: no feed"}
        assert plugin.open == set(), f"attempt {attempt}: node_start's resources left open"
