"""Unit tests of sisock_core.trustcheck: certificate fingerprints, finding the state
directories of running routers (a /proc laid out in a temporary directory), and the
message when the router cannot be reached at all."""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path

from sisock_core.config import load_config_text
from sisock_core.testing import free_port
from sisock_core.tls import ensure_certificate
from sisock_core.trustcheck import (
    explain_untrusted_router,
    file_fingerprints,
    fingerprint_der,
    is_untrusted_certificate,
    running_crossbar_dirs,
    site_certificates,
)


def test_file_fingerprints(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    ensure_certificate(cert, key, ["localhost"])
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert file_fingerprints(cert) == {fingerprint_der(der)}
    assert len(fingerprint_der(der).split(":")) == 32
    (tmp_path / "two.pem").write_text(cert.read_text() + "junk\n" + cert.read_text())
    assert file_fingerprints(tmp_path / "two.pem") == {fingerprint_der(der)}
    assert file_fingerprints(tmp_path / "missing.pem") == set()
    assert file_fingerprints(key) == set()


def test_running_crossbar_dirs_from_command_line_and_working_directory(tmp_path):
    proc = tmp_path / "proc"
    site_a, site_b = tmp_path / "a" / "crossbar", tmp_path / "b" / "crossbar"
    for pid, cmdline, cwd in [("10", [b"python", b"-c", b"x", b"start", b"--cbdir", os.fsencode(site_a)], None),
                              ("11", [b"crossbar-controller" + b" " * 20, b""], site_b),
                              ("12", [b"bash", b""], tmp_path),
                              ("self", [b"not a pid"], None)]:
        (proc / pid).mkdir(parents=True)
        (proc / pid / "cmdline").write_bytes(b"\0".join(cmdline))
        if cwd is not None:
            os.symlink(cwd, proc / pid / "cwd")
    found = sorted(running_crossbar_dirs(proc))
    assert found == sorted([site_a, site_b])
    assert sorted(site_certificates(found + [site_a])) == sorted(
        [(site_a.parent, site_a.parent / "tls" / "server_cert.pem"),
         (site_b.parent, site_b.parent / "tls" / "server_cert.pem")])
    assert list(running_crossbar_dirs(tmp_path / "no-proc")) == []


def test_explain_when_nothing_listens(tmp_path):
    port = free_port()
    cfg = load_config_text(f"state_dir = {json.dumps(str(tmp_path))}\n[router]\ntls_port = {port}\n",
                           str(tmp_path / "site.toml"))
    text = explain_untrusted_router(cfg, cbdirs=[])
    assert text.startswith(f"this command trusts {tmp_path / 'tls' / 'server_cert.pem'} (state directory "
                           f"{tmp_path}), which does not exist; its certificate could not be read ("), text


def test_is_untrusted_certificate():
    assert is_untrusted_certificate(RuntimeError("... [SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                                                 "verify failed: self-signed certificate (_ssl.c:1006)"))
    assert not is_untrusted_certificate(RuntimeError("Connection refused"))
