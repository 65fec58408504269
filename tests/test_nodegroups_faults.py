"""One process, several nodes: a plugin raising stops only its own node (real router, hub, agents).

``sisock up`` runs the group ``mixed``: the weather node ``good_archive``, the datafeed node
``good_feed`` following a fake OCS agent, and four nodes of a deliberately broken plugin
(:mod:`tests.faulty_plugin`) raising in ``node_start``, ``list_fields``, ``read_range`` and
in their OCS feed callback, and one that cannot start until a file exists. All seven share
one process; the good nodes keep answering, the broken ones answer errors (or are retried
with backoff, for those that cannot start: the late one joins once its file is there), and
every log line about a node names it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from autobahn.wamp.exception import ApplicationError

from sisock_core.testing import SisockProcess, SiteClient, free_ports, pids_matching, wait_until, write_site
from sisock_core.wamp import HUB_LIST, node_uri

from .reliability.support import Agents

pytestmark = pytest.mark.integration

NODES = """
[nodes.good_archive]
plugin = "weather"
process = "mixed"

[nodes.good_feed]
plugin = "datafeed"
target = "agent00"
feed = "temperatures"
process = "mixed"

[nodes.bad_start]
plugin = "faulty"
fail_at = "start"
process = "mixed"

[nodes.bad_fields]
plugin = "faulty"
fail_at = "fields"
process = "mixed"

[nodes.bad_read]
plugin = "faulty"
fail_at = "read"
process = "mixed"

[nodes.bad_feed]
plugin = "faulty"
fail_at = "feed"
target = "agent00"
process = "mixed"

[nodes.late_start]
plugin = "faulty"
fail_at = "missing"
path = "{flag}"
process = "mixed"
"""

SERVING = {"good_archive", "good_feed", "bad_fields", "bad_read", "bad_feed"}


def install_faulty_plugin(root: Path) -> Path:
    """``root`` as a directory holding :mod:`tests.faulty_plugin` installed as plugin ``faulty``."""
    dist = root / "sisock_faulty_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sisock-faulty-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[sisock.plugins]\nfaulty = sisock_faulty_plugin\n")
    source = Path(__file__).with_name("faulty_plugin.py").read_text()
    (root / "sisock_faulty_plugin.py").write_text(source)
    return root


@pytest.fixture(scope="module")
def mixed_site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("groups")
    plugin_dir = install_faulty_plugin(tmp / "plugins")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")]))}
    tls_port, ocs_port = free_ports(2)
    path = write_site(tmp / "site.toml", state_dir=tmp / "state", tls_port=tls_port, ocs_port=ocs_port,
                      nodes=NODES.format(flag=tmp / "flag"), log_level="info")
    up = SisockProcess(["up", str(path)], tmp / "up.log", env=env)
    client = agents = None
    try:
        up.wait_ready("site", timeout=180)
        client = SiteClient(path, tmp / "client.log", env=env)
        agents = Agents(ocs_port, 1, channels=2, rate=5.0, log_path=tmp / "agents.log")
        agents.wait_ready(timeout=60)
        yield up, client, path, tmp / "flag"
    finally:
        if agents is not None:
            agents.stop()
        if client is not None:
            client.close()
        rc = up.stop(timeout=60)
        assert rc == 0, f"sisock up exited with {rc}\n{up.log_tail(40, debug=False)}"


def _listed(client) -> set[str]:
    return {n["name"] for n in client.call(HUB_LIST)}


def _feed_points(client, node: str) -> int:
    fields, _ = client.call(node_uri(node, "get_fields"), -600, 0)
    if "channel_01_t" not in fields:
        return 0
    answer = client.call(node_uri(node, "get_data"), ["channel_01_t"], -600, 0)
    return len(answer["data"].get("channel_01_t", []))


def test_a_raising_plugin_stops_only_its_own_node(mixed_site):
    up, client, path, flag = mixed_site
    # one process serves the group
    [pid] = pids_matching(f"node --group mixed --supervised --config {path}")
    assert pids_matching(f"node good_archive --supervised --config {path}") == []
    wait_until(lambda: SERVING <= _listed(client), timeout=60, what="the group's nodes in the hub")
    assert "bad_start" not in _listed(client)

    # the broken feed callback raises on every message; its neighbour on the same feed gets them
    wait_until(lambda: _feed_points(client, "good_feed") >= 5, timeout=60, what="feed data at good_feed")

    with pytest.raises(ApplicationError) as err:
        client.call(node_uri("bad_read", "get_data"), ["x"], 1, 10)
    assert "broken on purpose in read_range" in str(err.value)
    with pytest.raises(ApplicationError) as err:
        client.call(node_uri("bad_fields", "get_fields"), 1, 10)
    assert "broken on purpose in list_fields" in str(err.value)

    # the neighbours still answer, from the same process
    fields, _ = client.call(node_uri("good_archive", "get_fields"), 1500000000, 1600000000)
    assert "apex_pressure" in fields
    answer = client.call(node_uri("good_archive", "get_data"), ["apex_pressure"], 1499900000, 1501000000)
    assert len(answer["data"]["apex_pressure"]) > 0
    fields, _ = client.call(node_uri("bad_read", "get_fields"), 1, 10)
    assert list(fields) == ["x"]
    assert _feed_points(client, "good_feed") >= 5
    assert pids_matching(f"node --group mixed --supervised --config {path}") == [pid]

    # the node that cannot start is retried with backoff, named in every line about it
    wait_until(lambda: len(re.findall(r"node bad_start cannot start", up.log_text())) >= 2, timeout=30,
               what="a second attempt at bad_start")
    log = up.log_text()
    assert re.search(r"\[group mixed/bad_start\] \[[\w.]+#critical\] node bad_start cannot start: "
                     r"RuntimeError: bad_start: broken on purpose at start", log), up.log_tail(40)
    assert re.search(r"\[group mixed/bad_feed\] \[[\w.]+#critical\] bad_feed: the plugin's handler of "
                     r"observatory\.agent00\.feeds\.temperatures failed", log), up.log_tail(40)
    assert re.search(r"\[group mixed/bad_read\] \[[\w.]+#error\] node 'bad_read': plugin 'faulty' failed in "
                     r"read_range: ValueError", log), up.log_tail(40)
    assert "group mixed is ready" in log
    assert "stopped unexpectedly" not in log


def test_lines_of_a_group_name_their_node_and_an_unknown_group_is_refused(mixed_site):
    """The group's lines (JSON from the child, text in ``sisock up``'s log) carry the node's
    name; ``sisock node --group`` of a group without nodes says so."""
    up, client, path, flag = mixed_site
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(Path(path).parent / "plugins"), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-m", "sisock_core.cli", "node", "--group", "nothing",
                          "--config", str(path)], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 1 and "--group nothing: no enabled node" in out.stderr
    events = []
    for line in up.log_text().splitlines():
        if "[group mixed/" in line:
            events.append(line.split("[group mixed/", 1)[1].split("]", 1)[0])
    assert {"bad_start", "bad_feed", "good_feed", "good_archive"} <= set(events), sorted(set(events))


def test_a_node_that_could_not_start_joins_its_running_group_once_it_can(mixed_site):
    up, client, path, flag = mixed_site
    [pid] = pids_matching(f"node --group mixed --supervised --config {path}")
    assert "late_start" not in _listed(client)
    flag.write_text("")
    wait_until(lambda: "late_start" in _listed(client), timeout=90, what="late_start listed")
    fields, _ = client.call(node_uri("late_start", "get_fields"), 1, 10)
    assert list(fields) == ["x"]
    assert pids_matching(f"node --group mixed --supervised --config {path}") == [pid]  # in the same process
    assert re.search(r"node late_start started after \d+ failed attempts", up.log_text())


def test_a_killed_group_process_is_restarted_with_all_its_nodes(mixed_site):
    """(last: it replaces the group's process) ``sisock up`` restarts a group as one child."""
    import signal

    up, client, path, flag = mixed_site
    pattern = f"node --group mixed --supervised --config {path}"
    [old] = pids_matching(pattern)
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: [p for p in pids_matching(pattern) if p != old], timeout=60, what="a new group process")
    wait_until(lambda: SERVING | {"late_start"} <= _listed(client), timeout=60,
               what="the group's nodes listed again")
    fields, _ = client.call(node_uri("good_archive", "get_fields"), 1500000000, 1600000000)
    assert "apex_pressure" in fields
    assert re.search(r"group mixed stopped unexpectedly \(signal 9\) after [\d.]+s; restarting in 1s",
                     up.log_text()), up.log_tail(30)


#: at exit, a process writes its command line and the plugin modules it imported into
#: $SISOCK_TEST_MODULES_DIR/<pid>.json
SITECUSTOMIZE = """\
import atexit, json, os, sys

def _report():
    out = os.environ.get("SISOCK_TEST_MODULES_DIR")
    if out:
        names = sorted(m for m in sys.modules if m.startswith(("sisock_plugins.", "sisock_faulty_plugin")))
        with open(os.path.join(out, f"{os.getpid()}.json"), "w") as f:
            json.dump({"argv": sys.argv, "modules": names}, f)

atexit.register(_report)
"""


def test_a_group_process_imports_only_its_nodes_plugins(tmp_path):
    plugin_dir = install_faulty_plugin(tmp_path / "plugins")
    (plugin_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    reports = tmp_path / "reports"
    reports.mkdir()
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")])),
           "SISOCK_TEST_MODULES_DIR": str(reports)}
    nodes = ('[nodes.w]\nplugin = "weather"\nprocess = "pair"\n\n'
             '[nodes.f]\nplugin = "datafeed"\ntarget = "agent00"\nfeed = "temperatures"\nprocess = "pair"\n\n'
             '[nodes.x]\nplugin = "faulty"\n\n[nodes.w2]\nplugin = "weather"\nprocess = "own"\n')
    tls_port, ocs_port = free_ports(2)
    path = write_site(tmp_path / "site.toml", state_dir=tmp_path / "state", tls_port=tls_port,
                      ocs_port=ocs_port, nodes=nodes, log_level="info")
    up = SisockProcess(["up", str(path)], tmp_path / "up.log", env=env)
    try:
        up.wait_ready("site", timeout=120)
    finally:
        assert up.stop(timeout=60) == 0, up.log_tail(30, debug=False)
    seen = {}
    for report in reports.glob("*.json"):
        data = json.loads(report.read_text())
        argv = " ".join(data["argv"][1:])
        plugins = {m.split(".")[1] if m.startswith("sisock_plugins.") else m for m in data["modules"]}
        if argv.startswith("node"):
            seen[argv.split(" --supervised")[0]] = plugins
    assert seen == {"node --group pair": {"weather", "datafeed"}, "node x": {"sisock_faulty_plugin"},
                    "node w2": {"weather"}}, seen
