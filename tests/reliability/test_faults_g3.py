"""Faults of the g3 path: the index database goes down, the disk fills while indexing.

- MariaDB down and back: a PRIVATE mariadbd (its own ``mariadb-install-db`` data
  directory in the test's tmp, on a free port: :mod:`tests.mariadb`), so no other
  server is disturbed. ``sisock up`` runs a g3 node and the scanner on it; the
  server is SIGKILLed while Grafana queries: the node answers with a clear error (per
  target, the panel gets no 500), nothing crashes or restarts; a file written meanwhile
  is indexed once the server is back, and queries work again (seconds measured).
- Disk full while the SQLite index is written: the index lives on a 4 MiB tmpfs
  mounted for the test (or, where mounting is not allowed, the scanner runs under
  ``prlimit --fsize``, so its writes fail with EFBIG); the rest of the tmpfs is filled,
  new files arrive, ``sisock scan --once`` fails with a message saying the disk is full,
  and the index is not corrupted (``PRAGMA integrity_check`` is ok, the earlier content
  is intact); with space again, the next scan indexes everything.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..g3gen import lakeshore, write_archive
from ..mariadb import MariaDBMissing, PrivateMariaDB
from ..siteproc import wait_until
from .support import basic, http, one_pid, record, start_site, wait_http_ready

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

T0 = 1700000000.0  # 2023-11-14T22:13:20Z
LS = "observatory.LSA22YE.feeds.temperatures"


# -- a private MariaDB (tests/mariadb.py) ----------------------------------------------------------


@pytest.fixture
def private_mariadb(tmp_path):
    """A server of this test's own (it is killed): never the session's nor the machine's."""
    try:
        db = PrivateMariaDB(tmp_path / "mariadb")
    except MariaDBMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield db
    finally:
        db.stop()


# -- MariaDB down and back --------------------------------------------------------------------


def _g3_query(site, target: str, start: float, end: float):
    import datetime as dt

    iso = lambda t: dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")  # noqa: E731
    body = {"range": {"from": iso(start), "to": iso(end)}, "maxDataPoints": 100000,
            "targets": [{"target": target, "refId": "A"}]}
    r = http(site.url + "/query", body, headers=basic(), timeout=30)
    assert r.status == 200, (r.status, r.raw[:300])
    return r.json[0]


def test_mariadb_down_and_back(tmp_path, private_mariadb):
    db = private_mariadb
    started = db.start()
    data = tmp_path / "hk"
    write_archive(data, T0, 2, providers=[lakeshore(4)], time_per_file=3600)
    nodes = f"""
[nodes.g3_reader]
plugin = "g3"
data_dir = {json.dumps(str(data))}
db = "{db.url('sisock_reliability')}"
scan_interval = 5
debounce = 0.3
"""
    (tmp_path / "site").mkdir()
    site = start_site(tmp_path / "site", nodes, log_level="info")
    target = f"g3_reader::{LS}.Channel_01_T"
    try:
        wait_http_ready(site.url)
        wait_until(lambda: len(_g3_query(site, target, T0, T0 + 2 * 3600)["datapoints"]) == 2 * 3600,
                   timeout=60, what="the scanner to index the archive into the private MariaDB")
        node, scanner = one_pid(site.path, "node g3_reader"), one_pid(site.path, "scan")
        log_at = len(site.proc.log_text())

        db.kill()
        down_at = time.monotonic()
        series = _g3_query(site, target, T0, T0 + 2 * 3600)
        assert series["datapoints"] == []
        notice = series["meta"]["notices"][0]["text"]
        assert "index database" in notice and "unavailable" in notice, notice
        assert f"127.0.0.1:{db.port}" in notice  # which database
        # a new file while the database is away: the scanner cannot index it yet
        write_archive(data, T0 + 2 * 3600, 1, providers=[lakeshore(4)], time_per_file=3600, session_id=99)
        wait_until(lambda: "unavailable" in site.proc.log_text()[log_at:] and "[scanner]" in
                   "".join(ln for ln in site.proc.log_text()[log_at:].splitlines() if "unavailable" in ln),
                   timeout=30, what="the scanner to report the database down")
        failed_queries = 1
        while time.monotonic() - down_at < 8.0:  # a dashboard refreshing, past a scan_interval (5 s)
            assert _g3_query(site, target, T0, T0 + 3600)["meta"]["notices"]  # still a clear error
            failed_queries += 1
            time.sleep(0.2)
        assert one_pid(site.path, "node g3_reader") == node and one_pid(site.path, "scan") == scanner
        down_for = time.monotonic() - down_at
        node_lines = [ln for ln in site.proc.log_text()[log_at:].splitlines()
                      if "[node g3_reader]" in ln and "unavailable" in ln]
        assert len(node_lines) <= 4, node_lines  # repeats are counted, not logged each time
        bridge_lines = [ln for ln in site.proc.log_text()[log_at:].splitlines()
                        if "[http]" in ln and "get_data on g3_reader failed" in ln]
        assert 1 <= len(bridge_lines) <= 4, bridge_lines  # the bridge counts repeats too

        restarted = db.start()
        back_at = time.monotonic()
        wait_until(lambda: len(_g3_query(site, target, T0, T0 + 2 * 3600)["datapoints"]) == 2 * 3600,
                   timeout=60, what="queries to work again once MariaDB is back")
        answering = time.monotonic() - back_at
        wait_until(lambda: len(_g3_query(site, target, T0 + 2 * 3600, T0 + 3 * 3600)["datapoints"]) == 3600,
                   timeout=60, what="the file written while MariaDB was down to be indexed")
        caught_up = time.monotonic() - back_at
        assert one_pid(site.path, "node g3_reader") == node and one_pid(site.path, "scan") == scanner
        log = site.proc.log_text()[log_at:]
        assert "Traceback" not in log
    finally:
        rc = site.proc.stop()
        assert rc == 0, site.proc.log_tail(30, debug=False)
    record("MariaDB down", f"private mariadbd (started in {started:.1f} s) SIGKILLed for {down_for:.0f} s: "
                           f"{failed_queries} queries answered with a per-target notice ('...{notice[-70:]}'), "
                           f"{len(node_lines)} node and {len(bridge_lines)} bridge log lines; node and scanner kept their pids; restarted "
                           f"in {restarted:.1f} s, queries answered {answering:.1f} s later, the file written "
                           f"meanwhile indexed {caught_up:.1f} s after the restart")


# -- disk full while the SQLite index is written -------------------------------------------------


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                         capture_output=True, text=True)
    return out.returncode == 0


def _fill(directory: Path, leave: int) -> Path:
    """Fill the filesystem of ``directory``, then free ``leave`` bytes."""
    filler = directory / "filler"
    block = b"\0" * 65536
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))
    return filler


def _index_state(db: Path) -> tuple[str, int, int, list]:
    conn = sqlite3.connect(str(db))
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        files = conn.execute("SELECT COUNT(*) FROM feeds").fetchone()[0]
        fields = conn.execute("SELECT COUNT(*) FROM fields").fetchone()[0]
        rows = conn.execute("SELECT filename, prov_id, description FROM feeds ORDER BY filename").fetchall()
        return check, files, fields, rows
    finally:
        conn.close()


def scan(data: Path, db: Path, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(prefix or []), sys.executable, "-m", "sisock_core.cli", "scan", "--once",
                           "--data-dir", str(data), "--db", f"sqlite:///{db}"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_disk_full_while_the_sqlite_index_is_written(tmp_path):
    data, later = tmp_path / "hk", tmp_path / "later"
    write_archive(data, T0, 3, providers=[lakeshore(16)], time_per_file=1800)
    write_archive(later, T0 + 3 * 3600, 3, providers=[lakeshore(16)], time_per_file=1800, session_id=77)
    mnt = tmp_path / "small"
    mounted = _mount_tmpfs(mnt, "4m")  # the index and its summaries of 6 files, with room to spare
    db = mnt / "index.sqlite"
    try:
        first = scan(data, db)
        assert first.returncode == 0, first.stderr[-2000:]
        before = _index_state(db)
        assert before[0] == "ok" and before[1] == 6
        for src in sorted(later.rglob("*.g3")):  # new files arrive
            dest = data / src.relative_to(later)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
        if mounted:
            how = "a 4 MiB tmpfs filled up to the last 64 KiB"
            filler = _fill(mnt, 65536)  # room to open the index (WAL, -shm), not to write 6 files
            full = scan(data, db)
        else:  # no mount allowed: every file the scanner writes may not grow past its current size + 8 KiB
            how = "prlimit --fsize (EFBIG), tmpfs mount not allowed here"
            filler = None
            limit = max(p.stat().st_size for p in mnt.iterdir()) + 8192
            full = scan(data, db, prefix=["prlimit", f"--fsize={limit}"])
        assert full.returncode == 1, (full.returncode, full.stdout, full.stderr[-2000:])
        message = next((ln for ln in full.stderr.splitlines() if ln.startswith("sisock scan:")), "")
        # the index's rows or the summaries written in the same transaction: either names the file
        assert f"sqlite:///{db}" in message and ("index database" in message or "summary store" in message), \
            full.stderr[-2000:]
        assert message.endswith("database or disk is full") or (not mounted and "I/O" in message), message
        assert "Traceback" not in full.stderr
        if filler is not None:
            filler.unlink()  # (reading the index in WAL mode needs a little space for its -shm file)
        after = _index_state(db)
        assert after == before, "the index changed or is corrupt after the failed scan"
        again = scan(data, db)
        assert again.returncode == 0, again.stderr[-2000:]
        final = _index_state(db)
        assert final[0] == "ok" and final[1] == 12
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    record("disk full", f"{how}: sisock scan exit 1 with '...{message[-60:]}'; integrity_check ok and the "
                        f"6 files indexed before intact; 12 files after space came back")
