"""Each process imports only what it needs: the router, the hub, the bridge and clients no
plugin (a broken plugin in the site file does not stop them), a node only its own plugin,
and nothing but the router process crossbar."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sisock_core.testing import SisockProcess, free_port, write_site
from tests.installed_plugin import install_plugin

#: written into a directory put first on PYTHONPATH: at exit, the process writes the
#: names of the plugin and crossbar modules it imported to $SISOCK_TEST_MODULES
SITECUSTOMIZE = """\
import atexit, json, os, sys

def _report():
    out = os.environ.get("SISOCK_TEST_MODULES")
    if out:
        names = sorted(m for m in sys.modules if m.split(".")[0] in ("sisock_plugins", "crossbar"))
        with open(out, "w") as f:
            json.dump(names, f)

atexit.register(_report)
"""

BROKEN_NODE = '[nodes.broken]\nplugin = "broken"\n'


@pytest.fixture(scope="module")
def site_packages(tmp_path_factory) -> Path:
    """A PYTHONPATH directory with the module reporter and an installed plugin ``broken``
    whose module does not exist."""
    root = tmp_path_factory.mktemp("site-packages")
    (root / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return install_plugin(root, "broken", "no_such_module_for_sisock")


def _env(site_packages: Path, report: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site_packages), *sys.path])
    if report is not None:
        env["SISOCK_TEST_MODULES"] = str(report)
    return env


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, env=env)


def test_clients_hub_bridge_and_router_config_import_no_plugin_nor_crossbar(tmp_path, site_packages):
    """Importing every non-router component and loading the site as they do (a broken
    plugin's node included) loads neither a plugin nor crossbar; a node module imports
    no crossbar either."""
    site = write_site(tmp_path / "site.toml", state_dir=tmp_path / "state", tls_port=free_port(),
                      ocs_port=free_port(), nodes='[nodes.apex_archive]\nplugin = "weather"\n' + BROKEN_NODE)
    result = _python(f"""
        import json, sys
        import sisock_core.bridge, sisock_core.bridge.app, sisock_core.client, sisock_core.hub
        import sisock_core.datanode, sisock_core.wamp, sisock_core.credentials
        from sisock_core import cli
        from sisock_core.credentials import load_secrets
        from sisock_core.router import crossbar_config

        cfg = cli._load({str(site)!r}, cli.NO_NODES)  # as sisock router, hub, http, nodes, get
        crossbar_config(cfg, load_secrets(cfg, create=True))
        print(json.dumps([sorted(m for m in sys.modules if m.split(".")[0] in
                                 ("sisock_plugins", "crossbar")), list(cfg.nodes)]))
    """, _env(site_packages))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[], []]


def test_check_reports_a_broken_plugin_on_its_node(tmp_path, site_packages):
    site = write_site(tmp_path / "site.toml", state_dir=tmp_path / "state", tls_port=free_port(),
                      ocs_port=free_port(), nodes='[nodes.apex_archive]\nplugin = "weather"\n' + BROKEN_NODE)
    result = subprocess.run([sys.executable, "-m", "sisock_core.cli", "check", str(site)],
                            capture_output=True, text=True, timeout=120, env=_env(site_packages))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{site}: nodes.broken.plugin: plugin 'broken' (no_such_module_for_sisock) failed to import: "
        "No module named 'no_such_module_for_sisock'"
    ]


@pytest.mark.integration
def test_running_hub_and_bridge_load_no_plugin_and_a_node_only_its_own(tmp_path, site_packages):
    """Real processes on a real router, with a node whose plugin cannot import in the file:
    the router, the hub and the bridge start and serve, and import no plugin; the weather
    node imports the weather plugin and no other."""
    nodes = '[nodes.apex_archive]\nplugin = "weather"\n' + BROKEN_NODE
    site = write_site(tmp_path / "site.toml", state_dir=tmp_path / "state", tls_port=free_port(),
                      ocs_port=free_port(), start_http=True, nodes=nodes)
    runs = {
        "router": (["router", str(site)], "router"),
        "hub": (["hub", "-c", str(site)], "hub"),
        "http": (["http", "-c", str(site)], "http"),
        "node": (["node", "apex_archive", "-c", str(site)], "node apex_archive"),
    }
    started: list[SisockProcess] = []
    reports = {name: tmp_path / f"{name}.modules.json" for name in runs}
    try:
        for name, (args, ready) in runs.items():
            proc = SisockProcess(args, tmp_path / f"{name}.log", env=_env(site_packages, reports[name]))
            started.append(proc)
            proc.wait_ready(ready)
    finally:
        codes = [p.stop() for p in reversed(started)]
    assert codes == [0] * len(started)
    imported = {name: json.loads(path.read_text()) for name, path in reports.items()}
    assert imported["router"] == [] and imported["hub"] == [] and imported["http"] == []
    assert imported["node"] and {m.split(".")[1] for m in imported["node"] if "." in m} == {"weather"}



def test_the_core_names_no_bundled_plugin():
    """sisock_core knows plugins only through the hooks: no module of it imports
    ``sisock_plugins`` or names the g3 plugin (its scanner and ``sisock scan`` are its own)."""
    import re

    import sisock_core

    core = Path(sisock_core.__file__).parent
    found = [f"{path.relative_to(core)}:{n}: {line.strip()}"
             for path in sorted(core.rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"\bsisock_plugins\b|\bg3\b", line)]
    assert found == []
