"""Helpers for integration tests: free ports, site files, ``sisock`` subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

READY = "SISOCK-READY"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_site(path: Path, *, state_dir: Path, tls_port: int, ocs_port: int, http_port: int | None = None,
               start_router: bool = True, nodes: str | None = None) -> Path:
    """Write a site file on loopback ports; ``nodes`` is raw TOML for [nodes.*] tables."""
    if nodes is None:
        nodes = '[nodes.apex_archive]\nplugin = "weather"\n'
    text = f"""
state_dir = "{state_dir}"
log_level = "debug"

[router]
start = {str(start_router).lower()}
host = "127.0.0.1"
tls_port = {tls_port}
ocs_port = {ocs_port}

[hub]
start = {str(start_router).lower()}

[http]
start = false
port = {http_port or free_port()}

{nodes}
"""
    path.write_text(text)
    return path


class SisockProcess:
    """A ``python -m sisock_core.cli ...`` child whose stdout READY lines are watched.

    Its stderr (the log) goes to ``<log_path>`` so a failing test can show it.
    """

    def __init__(self, args: list[str], log_path: Path, env: dict | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self.ready: list[str] = []
        self._cond = threading.Condition()
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sisock_core.cli", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=full_env,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            with self._cond:
                if line.startswith(READY):
                    self.ready.append(line[len(READY):].strip())
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_ready(self, what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while what not in self.ready:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(
                        f"{self.args} not ready ({what!r}) after {timeout}s, exit={self.proc.poll()}\n"
                        f"--- log tail ---\n{self.log_tail()}"
                    )
                self._cond.wait(min(left, 0.5))

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pids_matching(pattern: str) -> list[int]:
    """PIDs whose command line contains ``pattern`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern in cmd:
            found.append(int(entry.name))
    return found
