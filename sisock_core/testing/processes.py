"""sisock processes for tests: free ports, site files, ``sisock`` commands run and
watched, waiting on a condition, finding processes by command line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence


from sisock_core.logs import READY_MARKER as READY


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports nobody listens on (sockets held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    return free_ports(1, host)[0]


def _toml(data: Mapping[str, Any]) -> str:
    try:
        import tomli_w
    except ImportError:  # pragma: no cover - comes with sisock[test]
        raise RuntimeError(
            "sisock_core.testing needs tomli-w to write node tables given as dicts "
            "(pip install 'sisock[test]'), or pass the [nodes.*] tables as TOML text"
        ) from None
    return tomli_w.dumps(dict(data))


def nodes_toml(nodes: str | Mapping[str, Mapping[str, Any]]) -> str:
    """``[nodes.<name>]`` tables as TOML: ``nodes`` is TOML text or ``{name: {key: value}}``."""
    if isinstance(nodes, str):
        return nodes
    return _toml({"nodes": {name: dict(table) for name, table in nodes.items()}})


def write_site(
    path: Path,
    *,
    state_dir: Path,
    tls_port: int,
    ocs_port: int,
    http_port: int | None = None,
    start_router: bool = True,
    start_http: bool = False,
    nodes: str | Mapping[str, Mapping[str, Any]] | None = None,
    log_level: str = "debug",
) -> Path:
    """Write a site file on loopback ports and return its path.

    ``nodes`` is TOML text for the ``[nodes.*]`` tables or a dict ``{name: table}``;
    default: the example weather node ``apex_archive``. The HTTP bridge is off unless
    ``start_http``.
    """
    if nodes is None:
        nodes = '[nodes.apex_archive]\nplugin = "weather"\n'
    text = f"""\
state_dir = {json.dumps(str(state_dir))}
log_level = "{log_level}"

[router]
start = {str(start_router).lower()}
host = "127.0.0.1"
tls_port = {tls_port}
ocs_port = {ocs_port}

[hub]
start = {str(start_router).lower()}

[http]
start = {str(start_http).lower()}
port = {http_port or free_port()}

{nodes_toml(nodes)}
"""
    Path(path).write_text(text)
    return Path(path)


class SisockProcess:
    """A ``python -m sisock_core.cli ARGS`` child whose ``SISOCK-READY`` lines are watched.

    Its stderr (the log) goes to ``log_path`` so a failing test can show it; it runs in
    its own process group.
    """

    def __init__(self, args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                 prefix: Sequence[str] = ()) -> None:
        """``prefix``: a command that runs the child, e.g. ``["setpriv", ..., "--"]``."""
        self.args = list(args)
        self.log_path = Path(log_path)
        self.ready: list[str] = []
        self._cond = threading.Condition()
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "sisock_core.cli", *self.args],
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

    def wait_ready(self, what: str, timeout: float = 90.0, fail_on: str | None = None) -> None:
        """Wait for the line ``SISOCK-READY <what>``.

        Raises ``AssertionError`` with the log's tail if the process exits first, after
        ``timeout`` seconds, or as soon as a log line matches the regex ``fail_on``.
        """
        deadline = time.monotonic() + timeout
        pattern = re.compile(fail_on) if fail_on else None
        with self._cond:
            while what not in self.ready:
                left = deadline - time.monotonic()
                failed = None
                if pattern is not None:
                    m = pattern.search(self.log_text())
                    failed = m.group(0) if m else None
                if failed or left <= 0 or self.proc.poll() is not None:
                    why = f"failed: {failed}" if failed else (
                        f"exited with {self.proc.poll()}" if self.proc.poll() is not None
                        else f"not ready after {timeout}s")
                    raise AssertionError(
                        f"sisock {' '.join(self.args)}: {why} (waiting for {what!r})\n"
                        f"--- log tail without debug lines ({self.log_path}) ---\n"
                        f"{self.log_tail(40, debug=False)}"
                    )
                self._cond.wait(min(left, 0.5))

    def log_tail(self, n: int = 60, debug: bool = True) -> str:
        """The last ``n`` lines of the log (``debug=False``: leaving out debug lines)."""
        lines = self.log_text().splitlines()
        if not debug:
            lines = [line for line in lines if "#debug]" not in line]
        return "\n".join(lines[-n:])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGINT, then SIGKILL to the whole group after ``timeout``; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2,
               what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something true (returned); AssertionError after ``timeout``.

    A poll, for what only another process's state tells (a port, its log file, ``/proc``,
    its HTTP answers); in-process, wait on the event instead (``SisockNode.subscribe``'s
    ``wait``, a node's ``on_ready``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pids_matching(pattern: str) -> list[int]:
    """PIDs whose command line contains ``pattern`` (Linux ``/proc``)."""
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
