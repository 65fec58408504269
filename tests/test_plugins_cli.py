"""``sisock plugins``, option introspection and ``SISOCK_TRACE_PLUGINS`` hook tracing."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from typing import Literal

import attrs
import pytest
from twisted.logger import globalLogPublisher

from sisock_core import PluginSpec, hookimpl
from sisock_core.introspect import OptionInfo, describe_plugins, options_of, toml_type
from sisock_core.model import NodeContext
from sisock_core.plugins import make_plugin_manager


def sisock(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sisock_core.cli", *args],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def broken_plugin_path(tmp_path_factory) -> Path:
    """A directory on PYTHONPATH holding an installed distribution whose plugin cannot import."""
    root = tmp_path_factory.mktemp("site-packages")
    dist = root / "sisock_plugin_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sisock-plugin-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[sisock.plugins]\nbroken = no_such_module_for_sisock\n")
    return root


def test_plugins_lists_installed_plugins_versions_and_options(broken_plugin_path):
    import os

    env = dict(os.environ, PYTHONPATH=str(broken_plugin_path))
    out = sisock("plugins", env=env)
    assert out.returncode == 0, out.stderr
    version = importlib.metadata.version("sisock")
    assert f"weather  (sisock {version}; sisock_plugins.weather.plugin)" in out.stdout
    assert "    data_dir  (string; default unset; env DATA_DIRECTORY)" in out.stdout
    assert "directory holding one ``<field>.dat`` text file per field" in out.stdout
    # a broken third-party plugin is shown with its reason; the others are still listed
    assert "broken  (sisock-plugin-broken 0.1; no_such_module_for_sisock)" in out.stdout
    assert "cannot load: plugin 'broken' (no_such_module_for_sisock) failed to import: " \
           "No module named 'no_such_module_for_sisock'" in out.stdout

    named = sisock("plugins", "broken", env=env)
    assert named.returncode == 1 and "cannot load" in named.stdout


def test_plugins_json():
    out = sisock("plugins", "weather", "--json")
    assert out.returncode == 0, out.stderr
    (weather,) = json.loads(out.stdout)
    assert weather["distribution"] == "sisock"
    assert weather["version"] == importlib.metadata.version("sisock")
    assert weather["default_node_name"] == "apex_archive"
    assert weather["options_class"] == "sisock_plugins.weather.plugin.Options"
    assert weather["options"][0] | {"help": None} == {
        "name": "data_dir", "type": "string", "required": False, "default": None, "help": None,
        "env": ["DATA_DIRECTORY"],
    }
    assert weather["error"] is None


def test_plugins_unknown_name_and_help():
    out = sisock("plugins", "nope")
    assert out.returncode == 1
    assert out.stderr.startswith("sisock: not installed: nope; installed: ")
    helped = sisock("plugins", "--help")
    assert helped.returncode == 0 and "--json" in helped.stdout


def test_describe_plugins_matches_entry_points():
    names = {ep.name for ep in importlib.metadata.entry_points(group="sisock.plugins")}
    assert {p.name for p in describe_plugins()} == names


class Kinds:
    pass


@attrs.frozen
class ManyOptions:
    """Options of every kind.

    ``from_doc``: described in the class docstring,
    over two lines.
    """

    path: Path  #: required, no default
    mode: Literal["fast", "slow"] = "fast"
    #: names of the channels
    #: to read
    channels: list[str] = attrs.field(factory=lambda: ["a", "b"])
    gains: dict[str, float] = attrs.field(factory=dict, metadata={"help": "per channel gain"})
    limit: int | None = None
    """An attribute docstring."""
    from_doc: bool = False
    hidden: int = attrs.field(default=0, init=False)


def test_options_of_reads_types_defaults_and_help():
    assert options_of(ManyOptions, {"MODE": "mode"}) == (
        OptionInfo("path", "path", True, None, "required, no default"),
        OptionInfo("mode", 'one of "fast", "slow"', False, '"fast"', None, ("MODE",)),
        OptionInfo("channels", "list of strings", False, '["a", "b"]', "names of the channels to read"),
        OptionInfo("gains", "table of numbers", False, "{}", "per channel gain"),
        OptionInfo("limit", "integer", False, None, "An attribute docstring."),
        OptionInfo("from_doc", "boolean", False, "false", "described in the class docstring, over two lines."),
    )
    assert toml_type(tuple[int, str]) == "list of integer, string"
    assert options_of(None) == ()


class Traced:
    @hookimpl
    def sisock_plugin_spec(self):
        return PluginSpec(default_node_name="traced", description="traced")

    @hookimpl
    def node_start(self, node):
        node.state["x"] = 1


def _trace_lines(monkeypatch, value: str | None) -> list[str]:
    if value is None:
        monkeypatch.delenv("SISOCK_TRACE_PLUGINS", raising=False)
    else:
        monkeypatch.setenv("SISOCK_TRACE_PLUGINS", value)
    events: list[dict] = []
    observer = events.append
    globalLogPublisher.addObserver(observer)
    try:
        pm = make_plugin_manager(Traced(), name="traced")
        pm.hook.sisock_plugin_spec()
        pm.hook.node_start(node=NodeContext(name="n", description="d"))
    finally:
        globalLogPublisher.removeObserver(observer)
    return [e["trace"] for e in events if e.get("log_namespace") == "sisock.plugins.trace"]


def test_trace_plugins_logs_every_hook_call(monkeypatch):
    lines = _trace_lines(monkeypatch, "1")
    assert lines[0].strip() == "sisock_plugin_spec [hook]"
    assert lines[1].strip().startswith("finish sisock_plugin_spec --> PluginSpec(")
    assert lines[2].strip().startswith("node_start [hook]")
    assert "node: NodeContext(name='n'" in lines[2]
    assert lines[3].strip().startswith("finish node_start --> []")
    assert _trace_lines(monkeypatch, None) == []
    assert _trace_lines(monkeypatch, "0") == []
