"""``sisock systemd``: unit files checked by ``systemd-analyze verify``, and sd_notify readiness.

Readiness on a whole site (``sisock up`` and the components run alone tell systemd
``READY=1`` from their own pid; the children of ``sisock up`` do not) is checked in
tests/test_site_integration.py, on sites it starts anyway.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sisock_core.config import load_config
from sisock_core.sdnotify import notify
from sisock_core.systemd import UnitOptions, unit_name, units, write_units

G3_SITE = """
[http]
port = 80

[nodes.apex_archive]
plugin = "weather"

[nodes.hk]
plugin = "g3"
data_dir = "{data}"
"""


def _verify(directory: Path) -> str:
    """``systemd-analyze verify`` on every unit in ``directory``: what it complained about."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd; scripts/setup.sh "
                    "installs it): the unit files were written but not verified")
    files = sorted(str(p) for p in directory.iterdir())
    out = subprocess.run([tool, "verify", "--man=no", *files], capture_output=True, text=True, timeout=120,
                         cwd=directory)
    # verify exits 0 on some problems it only warns about ("ignoring"): its output counts
    return (f"exit {out.returncode}\n" if out.returncode else "") + out.stdout + out.stderr


def _keys(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys.setdefault(k, []).append(v)
    return keys


def test_one_service_for_sisock_up_passes_systemd_analyze(tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('[nodes.apex_archive]\nplugin = "weather"\n')
    files = units(load_config(site))
    assert list(files) == ["sisock.service"]
    keys = _keys(files["sisock.service"])
    assert keys["ExecStart"][0].endswith(f"up --config {site}")
    assert keys["Type"] == ["notify"] and keys["NotifyAccess"] == ["main"]
    assert keys["Restart"] == ["on-failure"] and keys["User"] == ["sisock"] and keys["Group"] == ["sisock"]
    for hardening in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=read-only",
                      "PrivateTmp=yes", "CapabilityBoundingSet=", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"):
        k, v = hardening.split("=", 1)
        assert keys[k] == [v], hardening
    assert keys["StateDirectory"] == ["sisock"] and "SISOCK_STATE_DIR=%S/sisock" in keys["Environment"]
    assert keys["WantedBy"] == ["multi-user.target"]
    write_units(files, tmp_path / "units")
    assert _verify(tmp_path / "units") == ""


def test_per_component_units_and_target_pass_systemd_analyze(tmp_path):
    site = tmp_path / "site.toml"
    site.write_text(f'state_dir = "{tmp_path}/state"\n' + G3_SITE.format(data=tmp_path))
    files = units(load_config(site), UnitOptions(per_component=True, user="observer"))
    assert set(files) == {"sisock-router.service", "sisock-hub.service", "sisock-http.service",
                          "sisock-node-apex_archive.service", "sisock-node-hk.service",
                          "sisock-scanner.service", "sisock.target"}
    k = {name: _keys(text) for name, text in files.items()}
    assert k["sisock.target"]["Wants"][0].split() == sorted(set(files) - {"sisock.target"})
    assert k["sisock-node-hk.service"]["ExecStart"][0].endswith(f"node hk --config {site}")
    assert k["sisock-node-hk.service"]["After"][0].split() == [
        "network-online.target", "sisock-router.service", "sisock-hub.service"]
    assert k["sisock-scanner.service"]["TimeoutStartSec"] == ["infinity"]  # a first pass over years
    # the site's own state_dir is the one writable path; port 80 only for the bridge
    assert all(v["ReadWritePaths"] == [f"{tmp_path}/state"] for n, v in k.items() if n.endswith(".service"))
    assert k["sisock-http.service"]["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert "AmbientCapabilities" not in k["sisock-router.service"]
    assert all(v["User"] == ["observer"] and v["PartOf"] == ["sisock.target"]
               for n, v in k.items() if n.endswith(".service"))
    write_units(files, tmp_path / "units")
    assert _verify(tmp_path / "units") == ""


def test_systemd_analyze_catches_a_broken_unit(tmp_path):
    """(the check above can fail)"""
    files = units(load_config(None))
    broken = files["sisock.service"].replace("Type=notify", "Type=notifyy").replace(
        "ProtectSystem=strict", "ProtectSystem=very")
    write_units({"sisock.service": broken}, tmp_path)
    complaints = _verify(tmp_path)
    assert "notifyy" in complaints and "very" in complaints, complaints


def test_unit_names_escape_what_systemd_does_not_allow():
    assert unit_name("apex_archive") == "apex_archive"
    assert unit_name("a b/c") == "a\\x20b\\x2fc"


def test_cli_writes_into_the_current_directory_or_output(tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('[nodes.apex_archive]\nplugin = "weather"\n')
    here = tmp_path / "here"
    here.mkdir()
    run = lambda *a: subprocess.run([sys.executable, "-m", "sisock_core.cli", "systemd", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=60, cwd=here)
    out = run(str(site), "--exec", "/opt/sisock/bin/sisock")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["sisock.service"]
    assert f"ExecStart=/opt/sisock/bin/sisock up --config {site}\n" in (here / "sisock.service").read_text()
    out = run("-c", str(site), "--per-component", "--output", str(tmp_path / "units"))
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == [
        "sisock-http.service", "sisock-hub.service", "sisock-node-apex_archive.service",
        "sisock-router.service", "sisock.target"]
    bad = run(str(tmp_path / "missing.toml"))
    assert bad.returncode == 2 and "missing.toml" in bad.stderr


def _notify_socket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    return sock


def test_sd_notify_sends_a_datagram_to_notify_socket(tmp_path):
    with _notify_socket(str(tmp_path / "notify")) as sock:
        assert notify("READY=1\nSTATUS=hub serving", env={"NOTIFY_SOCKET": str(tmp_path / "notify")})
        assert sock.recv(4096) == b"READY=1\nSTATUS=hub serving"
    abstract = f"@sisock-test-{tmp_path.name}"
    with _notify_socket("\0" + abstract[1:]) as sock:
        assert notify("READY=1", env={"NOTIFY_SOCKET": abstract})
        assert sock.recv(4096) == b"READY=1"
    assert notify("READY=1", env={}) is False  # not under systemd: nothing
    assert notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False  # ignored
