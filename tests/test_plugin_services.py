"""Plugins' own commands and services (hooks ``plugin_commands`` and ``plugin_services``):
a plugin installed like a third-party one adds ``sisock demo-service``, which ``sisock up``
runs beside the plugin's node, restarts when it dies, and ``sisock systemd`` makes a unit of."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sisock_core.config import load_config
from sisock_core.systemd import UnitOptions, units
from sisock_core.testing import start_site, wait_until
from tests.installed_plugin import install_plugin

PLUGIN = '''\
"""A plugin with a command and a service (test fixture)."""
import os
from pathlib import Path

from sisock_core import Command, PluginSpec, Service, hookimpl


def run(args, context):
    from twisted.internet import defer
    from twisted.logger import Logger

    from sisock_core.logs import announce_ready, setup_logging

    cfg = context.load(plugins=["svcdemo"])
    setup_logging(cfg.log_level)
    if args.fail_with is not None:
        raise SystemExit(args.fail_with)
    pids = Path(cfg.state_dir) / "demo.pids"

    async def main(reactor):
        context.exit_when_stdin_closes(reactor)
        with open(pids, "a") as f:
            f.write(f"{os.getpid()} {len(cfg.nodes)}\\n")
        Logger(namespace="svcdemo").info("demo serving {n} nodes", n=len(cfg.nodes))
        announce_ready("demo")
        await defer.Deferred()

    context.run_reactor(main)


def add_arguments(parser):
    parser.add_argument("--fail-with", type=int, help="exit at once with this status")


@hookimpl
def sisock_plugin_spec():
    return PluginSpec(default_node_name="demo", description="a node with a service")


@hookimpl
def plugin_commands():
    return [Command(name="demo-service", help="run the demo service", run=run,
                    add_arguments=add_arguments)]


@hookimpl
def plugin_services(site, nodes):
    fail = os.environ.get("SVCDEMO_FAIL_WITH")
    command = ("demo-service", "--fail-with", fail) if fail else ("demo-service",)
    return [Service(name="demo", command=command, description="demo service", ready_timeout=60)]


@hookimpl
def list_fields(node, start, end):
    return []


@hookimpl
def read_range(node, fields, start, end):
    return {}
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    """A directory holding the plugin ``svcdemo``, installed as a distribution would be."""
    return install_plugin(tmp_path_factory.mktemp("site-packages"), "svcdemo", "svcdemo_plugin", PLUGIN)


@pytest.fixture
def with_plugin(plugin_dir, monkeypatch) -> dict[str, str]:
    """The plugin importable here and in child processes; the children's extra env."""
    monkeypatch.syspath_prepend(str(plugin_dir))
    return {"PYTHONPATH": os.pathsep.join([str(plugin_dir), *sys.path])}


def _sisock(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sisock_core.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})


def test_hook_plugin_commands(with_plugin):
    """The plugin's command is listed in ``sisock --help`` and has its own ``--help``."""
    out = _sisock("--help", env=with_plugin)
    assert out.returncode == 0
    assert re.search(r"\n +demo-service\s+run the demo service \(plugin svcdemo\)\n", out.stdout), out.stdout
    own = _sisock("demo-service", "--help", env=with_plugin)
    assert own.returncode == 0
    assert "--fail-with" in own.stdout and "--config" in own.stdout and "--supervised" not in own.stdout


def test_a_core_command_does_not_import_plugins(with_plugin):
    """(a broken plugin's command cannot break `sisock check`, and the hub never imports one)"""
    out = _sisock("nodes", "--help", env=with_plugin)
    assert out.returncode == 0 and "demo-service" not in out.stdout


def test_systemd_makes_a_unit_of_the_service(with_plugin, tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('[nodes.d]\nplugin = "svcdemo"\n')
    files = units(load_config(site), UnitOptions(per_component=True))
    unit = files["sisock-demo.service"]
    assert f"demo-service --config {site}" in unit
    assert "Description=sisock demo service (plugin svcdemo)" in unit
    assert "TimeoutStartSec=60" in unit
    assert "sisock-demo.service" in files["sisock.target"]


@pytest.mark.integration
def test_hook_plugin_services(with_plugin, tmp_path):
    """``sisock up`` starts the service beside the plugin's node, and restarts it when killed."""
    with start_site(tmp_path, {"d": {"plugin": "svcdemo"}}, env=with_plugin) as site:
        pids = tmp_path / "state" / "demo.pids"
        wait_until(lambda: "demo is ready" in site.log_text(), timeout=60, what="the service")
        first, nodes = pids.read_text().split()
        assert nodes == "1"  # it loaded its plugin's nodes
        os.kill(int(first), signal.SIGKILL)
        wait_until(lambda: len(pids.read_text().split("\n")) > 2, timeout=60,
                   what="the service to be restarted")
        second = pids.read_text().split("\n")[1].split()[0]
        assert second != first
        wait_until(lambda: site.log_text().count("demo is ready") >= 2, timeout=60, what="ready again")
        log = site.log_text()
        assert "demo stopped unexpectedly (signal 9)" in log
        assert any("[demo]" in line and "demo serving 1 nodes" in line for line in log.splitlines())
        assert site.nodes() == [{"name": "d", "description": "a node with a service"}]


@pytest.mark.integration
def test_a_service_that_cannot_start_is_not_restarted_and_the_site_keeps_serving(with_plugin, tmp_path):
    env = {**with_plugin, "SVCDEMO_FAIL_WITH": "78"}
    with start_site(tmp_path, {"d": {"plugin": "svcdemo"}}, env=env) as site:
        wait_until(lambda: "is down and will not be restarted" in site.log_text(), timeout=60,
                   what="the service to be given up")
        assert "the demo service (plugin svcdemo) is down" in site.log_text()
        assert "demo stopped unexpectedly" not in site.log_text()
        assert site.nodes() == [{"name": "d", "description": "a node with a service"}]


def test_check_lists_the_services_it_would_run(with_plugin, tmp_path):
    site = tmp_path / "site.toml"
    site.write_text(f'state_dir = "{tmp_path}/state"\n[nodes.d]\nplugin = "svcdemo"\n')
    out = _sisock("check", str(site), env=with_plugin)
    assert out.returncode == 0, out.stderr
    assert "services:  demo (plugin svcdemo)" in out.stdout.splitlines()
