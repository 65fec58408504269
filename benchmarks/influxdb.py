"""A private InfluxDB 1.x for benchmarks: installed from the Debian package if missing,
run on free loopback ports with its own data directory, loaded over HTTP.

Only benchmarks use this (never tests, never ``scripts/setup.sh``):

* :func:`ensure_influxd` finds ``influxd``, or installs Debian's ``influxdb`` package
  (``apt-get install -y influxdb``) when running as root; otherwise it says why not;
* :class:`InfluxServer` starts ``influxd`` with a generated configuration (HTTP and RPC on
  127.0.0.1 only, reporting and self-monitoring off), waits for ``/ping``, and stops it;
* :meth:`InfluxServer.write` posts line protocol in batches; :meth:`InfluxServer.query`
  runs an InfluxQL query and returns the raw answer bytes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

#: The Debian package holding ``influxd`` (1.x).
PACKAGE = "influxdb"


def ensure_influxd(install: bool = True) -> tuple[str | None, str]:
    """The path of ``influxd`` and how it was found; ``(None, reason)`` if it cannot be had."""
    found = shutil.which("influxd")
    if found:
        return found, "installed"
    if not install:
        return None, "influxd not installed (--no-influx-install)"
    if os.geteuid() != 0:
        return None, "influxd not installed and not root: cannot apt-get install influxdb"
    if not shutil.which("apt-get"):
        return None, "influxd not installed and no apt-get on this machine"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # the package's own service must not start: a private influxd is run instead
    policy = Path("/usr/sbin/policy-rc.d")
    added_policy = not policy.exists()
    if added_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        out = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", PACKAGE],
                             capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
        if out.returncode != 0 and "Unable to locate package" in out.stderr:
            subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
            out = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", PACKAGE],
                                 capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    finally:
        if added_policy:
            policy.unlink(missing_ok=True)
    found = shutil.which("influxd")
    if found:
        return found, f"installed now (apt-get install {PACKAGE})"
    tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
    return None, f"apt-get install {PACKAGE} failed (exit {out.returncode}): {tail[0]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InfluxServer:
    """One private ``influxd`` with its data under ``root`` (kept between runs)."""

    def __init__(self, influxd: str, root: str | os.PathLike) -> None:
        self.influxd = influxd
        self.root = Path(root)
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def _config(self) -> Path:
        self.port = free_port()
        rpc = free_port()
        r = self.root
        text = f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{r / 'meta'}"
[data]
  dir = "{r / 'data'}"
  wal-dir = "{r / 'wal'}"
  query-log-enabled = false
  # write the cache to TSM and compact fully soon after the last write (defaults: 10 min,
  # 4 h), so the data of a benchmark is in its steady, compacted state when timed
  cache-snapshot-write-cold-duration = "5s"
  compact-full-write-cold-duration = "30s"
[coordinator]
  query-timeout = "0s"
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = false
  log-enabled = false
  max-body-size = 0
[logging]
  level = "warn"
[continuous_queries]
  enabled = false
"""
        path = r / "influxdb.conf"
        path.write_text(text)
        return path

    def start(self, timeout: float = 120.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self._config()
        log = open(self.root / "influxd.log", "ab")
        self.proc = subprocess.Popen([self.influxd, "-config", str(conf)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"influxd exited with {self.proc.returncode}; see {self.root / 'influxd.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=2) as r:
                    if r.status == 204:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"influxd did not answer /ping within {timeout:.0f} s")
            time.sleep(0.05)

    def settle(self, quiet: float = 45.0, timeout: float = 900.0) -> float:
        """Wait until the WAL and the TSM files stop changing for ``quiet`` seconds
        (the cache written out and compactions done); seconds waited."""
        start = time.monotonic()
        last, since = None, time.monotonic()
        while time.monotonic() - start < timeout:
            wal = sum(f.stat().st_size for f in (self.root / "wal").rglob("*.wal"))
            tsm = sorted(str(f.relative_to(self.root)) for f in (self.root / "data").rglob("*.tsm"))
            state = (wal, tsm)
            if state != last:
                last, since = state, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
            time.sleep(2.0)
        return time.monotonic() - start

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _post(self, path: str, params: dict, body: bytes | None = None, timeout: float = 600.0) -> bytes:
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url, data=body if body is not None else b"", method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read()

    def create_database(self, db: str) -> None:
        self._post("/query", {"q": f'CREATE DATABASE "{db}"'})

    def write(self, db: str, lines: bytes, precision: str = "ns") -> None:
        """Write line protocol (one batch)."""
        self._post("/write", {"db": db, "precision": precision}, lines)

    def query(self, db: str, q: str, timeout: float = 600.0) -> bytes:
        """The raw JSON answer to an InfluxQL query (epoch ms times)."""
        url = f"http://127.0.0.1:{self.port}/query?" + urllib.parse.urlencode({"db": db, "q": q, "epoch": "ms"})
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read()
