"""``sisock scan``: the command line, with SQLite and with MariaDB through the SQL_* variables."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys

from sisock_plugins.g3.index import Index

from .g3gen import mariadb_database, write_archive
from .siteproc import free_port

T0 = 1_600_000_000.0


def sisock(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items()
            if k not in ("DATA_DIRECTORY", "SQL_HOST", "SQL_USER", "SQL_PASSWD", "SQL_DB", "SISOCK_CONFIG")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "sisock_core.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full)


def test_help():
    out = sisock("scan", "--help")
    assert out.returncode == 0
    for option in ("--once", "--data-dir", "--db", "--watch", "--rebuild", "SQL_HOST", "DATA_DIRECTORY"):
        assert option in out.stdout


def test_once_into_sqlite_then_unchanged(tmp_path):
    write_archive(tmp_path / "data", T0, 2, time_per_file=1800)
    db = f"sqlite:///{tmp_path}/index.sqlite"
    out = sisock("scan", "--once", "--data-dir", str(tmp_path / "data"), "--db", db)
    assert out.returncode == 0, out.stderr
    assert "4 files: 4 read" in out.stdout and "index holds 4 fields of 4 files" in out.stdout
    assert "scanning 4 files" in out.stderr  # progress goes to the log when not on a terminal
    again = sisock("scan", "--once", "--data-dir", str(tmp_path / "data"), "--db", db)
    assert again.returncode == 0 and "4 files: 0 read" in again.stdout and "4 unchanged" in again.stdout
    rebuilt = sisock("scan", "--once", "--rebuild", "--data-dir", str(tmp_path / "data"), "--db", db)
    assert "4 files: 4 read" in rebuilt.stdout


def test_progress_bar_on_a_terminal(tmp_path):
    write_archive(tmp_path / "data", T0, 3, time_per_file=1800)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sisock_core.cli", "scan", "--once", "--data-dir", str(tmp_path / "data"),
         "--db", f"sqlite:///{tmp_path}/index.sqlite"],
        stdout=subprocess.PIPE, stderr=slave, text=False)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(60)
    os.close(master)
    tty = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "scanning" in tty and "6/6 files" in tty and "100%" in tty


def test_site_file_nodes_and_default_database(tmp_path):
    write_archive(tmp_path / "data", T0, 1)
    site = tmp_path / "site.toml"
    site.write_text(f'state_dir = "{tmp_path}/state"\n\n[nodes.hk]\nplugin = "g3"\n'
                    f'data_dir = "{tmp_path}/data"\n')
    out = sisock("scan", "--once", "-c", str(site))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "state" / "g3" / "hk.sqlite").exists()
    assert len(Index(f"sqlite:///{tmp_path}/state/g3/hk.sqlite").field_summaries()) == 4

    plain = tmp_path / "plain.toml"
    plain.write_text('[nodes.w]\nplugin = "weather"\n')
    out = sisock("scan", "--once", "-c", str(plain))
    assert out.returncode == 2
    assert f"no enabled g3 node in {plain}; give --data-dir DIR" in out.stderr


def test_original_environment_variables_with_mariadb(tmp_path):
    url, drop = mariadb_database()
    try:
        write_archive(tmp_path / "data", T0, 1)
        host, name = url.split("@", 1)[1].split("/", 1)  # the private server's 127.0.0.1:port
        env = {"DATA_DIRECTORY": str(tmp_path / "data"), "SQL_HOST": host, "SQL_USER": "root",
               "SQL_PASSWD": "", "SQL_DB": name}
        out = sisock("scan", "--once", env=env)
        assert out.returncode == 0, out.stderr
        assert f"mysql://root@{host}/{name}" in out.stdout
        assert len(Index(url).field_summaries()) == 4
    finally:
        drop()


def test_errors_are_clear(tmp_path):
    out = sisock("scan", "--once", "--data-dir", str(tmp_path / "missing"), "--db",
                 f"sqlite:///{tmp_path}/i.sqlite")
    assert out.returncode == 1 and f"data directory {tmp_path}/missing does not exist" in out.stderr
    (tmp_path / "data").mkdir()
    port = free_port()
    out = sisock("scan", "--once", "--data-dir", str(tmp_path / "data"), "--db",
                 f"mysql://root:secret@127.0.0.1:{port}/x")
    assert out.returncode == 1
    assert f"index database mysql://root@127.0.0.1:{port}/x is unavailable" in out.stderr
    assert "secret" not in out.stderr and "Traceback" not in out.stderr
