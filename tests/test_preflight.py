"""``sisock check`` refuses what ``sisock up`` refuses: the same rules, run before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sisock_core.config import load_config
from sisock_core.startup_checks import startup_problems

from .siteproc import free_ports

PUBLISHED = "Q5#x4%HCmgTsS!Pj"  # the original sisock's WAMP_SECRET, in its public code
STRONG = {"WAMP_SECRET": "s" * 40, "WAMP_CONSUMER_SECRET": "c" * 40}


def _site(tmp: Path, router: str = "", http: str = "") -> Path:
    tls, ocs, port = free_ports(3)
    path = tmp / "site.toml"
    path.write_text(f'state_dir = "state"\n\n[router]\ntls_port = {tls}\nocs_port = {ocs}\n{router}\n'
                    f'[http]\nport = {port}\n{http}\n[nodes.apex_archive]\nplugin = "weather"\n')
    return path


def _sisock(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("WAMP_", "SISOCK_", "CROSSBAR_"))}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "sisock_core.cli", *args], capture_output=True, text=True,
                          timeout=120, env=full, stdin=subprocess.DEVNULL)


CASES = {
    "published secret on a public TLS port": (
        'listen = "0.0.0.0"\n', "", {"WAMP_SECRET": PUBLISHED, "WAMP_CONSUMER_SECRET": "c" * 40},
        "it is a well-known/published value"),
    "generated secrets on a public TLS port": (
        'listen = "0.0.0.0"\n', "", {}, "it was generated automatically"),
    "public OCS port": ('ocs_listen = "0.0.0.0"\n', "", STRONG, "exposes the OCS port"),
    "legacy nodes on a public OCS port": (
        'ocs_listen = "0.0.0.0"\nallow_public_ocs = true\nallow_legacy_ocs_nodes = true\n', "", STRONG,
        "router.allow_legacy_ocs_nodes lets anonymous sessions"),
    "bridge exposed without auth": ("", 'listen = "0.0.0.0"\n', STRONG, "exposes the Grafana bridge"),
    "configured certificate missing": (
        'tls_cert = "nowhere.pem"\ntls_key = "nowhere.key"\n', "", STRONG, "configured file(s) not found"),
    "listen address crossbar cannot bind": ('listen = "example.org"\n', "", STRONG, "must be an IP address"),
    "remote router without secrets": (
        'start = false\nhost = "127.0.0.1"\n', "", {}, "no WAMP-CRA secrets"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_reports_what_up_refuses(tmp_path, case):
    router, http, env, reason = CASES[case]
    path = _site(tmp_path, router, http)
    check = _sisock("check", str(path), env=env)
    assert check.returncode == 2, (check.stdout, check.stderr)
    assert reason in check.stderr and "Traceback" not in check.stderr, check.stderr
    assert "configuration OK" not in check.stdout
    up = _sisock("up", str(path), env=env)
    assert up.returncode == 2, up.stderr[-3000:]
    assert reason in up.stderr and "Traceback" not in up.stderr, up.stderr[-3000:]
    for line in check.stderr.splitlines():  # every problem check names, up names too
        assert line.split(": cannot start the ", 1)[1] in up.stderr


def test_check_of_a_sound_site_passes_and_mentions_legacy_nodes(tmp_path):
    path = _site(tmp_path, "allow_legacy_ocs_nodes = true\n")
    out = _sisock("check", str(path), env=STRONG)
    assert out.returncode == 0, out.stderr
    assert "configuration OK" in out.stdout
    assert "legacy data nodes may register there" in out.stdout and "wss://127.0.0.1:" in out.stdout
    assert "/ws realm" in out.stdout
    assert startup_problems(load_config(path, env=STRONG), env=STRONG) == []
    assert not (tmp_path / "state").exists()  # check generated nothing


def test_secrets_file_readable_by_others(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'server = "{"s" * 40}"\nconsumer = "{"c" * 40}"\n')
    secrets.chmod(0o644)
    path = _site(tmp_path, 'secrets_file = "secrets.toml"\n')
    problems = startup_problems(load_config(path, env={}), env={})
    assert [p.component for p in problems] == ["router"]
    assert "chmod 600" in problems[0].reason


def test_router_here_without_crossbar_says_what_to_install(tmp_path, monkeypatch):
    # a `pip install sisock` without the router extra: crossbar cannot be imported
    monkeypatch.setitem(sys.modules, "crossbar", None)
    path = _site(tmp_path)
    problems = startup_problems(load_config(path, env=STRONG), env=STRONG)
    assert [str(p) for p in problems] == [
        "cannot start the router: crossbar is not installed here: pip install 'sisock[router]' "
        "(or set [router] start = false and use a router elsewhere)"]
    elsewhere = _site(tmp_path, "start = false\n")  # a client machine needs no crossbar
    assert not [p for p in startup_problems(load_config(elsewhere, env=STRONG), env=STRONG)
                if "crossbar" in p.reason]
