"""A whole site for tests: ``sisock up`` (real router, hub and node processes) and a
blocking WAMP client of it (:func:`start_site`).
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Mapping


from sisock_core.logs import READY_MARKER as READY
from sisock_core.testing.processes import SisockProcess, free_ports, wait_until, write_site


class SiteClient:
    """A blocking WAMP client of a running site: a child process holding one session.

    It joins as the read-only consumer user, like a dashboard. :meth:`call` sends one
    call and waits for the answer (JSON between us and the child; msgpack or JSON on
    the WAMP side). Errors are raised as autobahn ``ApplicationError``.
    """

    def __init__(self, site_file: Path, log_path: Path, *, serializer: str = "msgpack",
                 env: Mapping[str, str] | None = None, timeout: float = 60.0) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sisock_core.testing.client", str(site_file), serializer],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=full_env,
            start_new_session=True,
        )
        self._lines: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        threading.Thread(target=self._read, daemon=True).start()
        line = self._next_line(timeout)
        if line != f"{READY} client":
            self.close()
            raise AssertionError(f"the site client did not start ({line!r})\n{self._tail()}")

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(None)

    def _tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return ""

    def _next_line(self, timeout: float) -> str | None:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no answer from the site client within {timeout}s") from None

    def call(self, procedure: str, *args: Any, timeout: float = 60.0, **kwargs: Any) -> Any:
        """Call ``procedure`` (a full URI) on the router and return the answer."""
        from autobahn.wamp.exception import ApplicationError

        with self._lock:
            if self.proc.poll() is not None:
                raise AssertionError(f"the site client exited ({self.proc.returncode})\n{self._tail()}")
            rid = next(self._ids)
            request = {"id": rid, "uri": procedure, "args": list(args), "kwargs": kwargs,
                       "timeout": timeout}
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
            while True:
                line = self._next_line(timeout + 10)
                if line is None:
                    raise AssertionError(f"the site client exited ({self.proc.poll()})\n{self._tail()}")
                answer = json.loads(line)
                if answer.get("id") == rid:
                    break
        if "error" in answer:
            raise ApplicationError(answer["error"], *answer.get("args", []), **answer.get("kwargs", {}))
        return answer["result"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)
        if not self._log.closed:
            self._log.close()


class RunningSite:
    """A ``sisock up`` on free loopback ports, with a blocking client (see :func:`start_site`).

    Attributes: ``path`` (the site file), ``directory``, ``config`` (its SiteConfig),
    ``node_names`` (enabled nodes), ``process`` (the :class:`SisockProcess`),
    ``client`` (the :class:`SiteClient`) and ``http_url`` when the bridge runs.
    """

    def __init__(self, path: Path, process: SisockProcess, client: SiteClient, config: Any,
                 node_names: list[str], env: Mapping[str, str] | None) -> None:
        self.path = path
        self.directory = path.parent
        self.process = process
        self.client = client
        self.config = config
        self.node_names = node_names
        self.env = dict(env or {})
        self.http_url = f"http://127.0.0.1:{config.http.port}" if config.http.start else None
        self._stopped = False

    def call(self, procedure: str, *args: Any, timeout: float = 60.0, **kwargs: Any) -> Any:
        """Call any consumer procedure by URI."""
        return self.client.call(procedure, *args, timeout=timeout, **kwargs)

    def nodes(self) -> list[dict]:
        """The hub's ``get_data_node`` answer: ``[{"name", "description"}, ...]``."""
        from sisock_core.wamp import HUB_LIST

        return self.call(HUB_LIST)

    def get_fields(self, node: str, start: Any = 1, end: Any = 0) -> list:
        """``get_fields(start, end)`` of ``node``: ``[fields, timelines]``."""
        from sisock_core.wamp import node_uri

        return self.call(node_uri(node, "get_fields"), start, end)

    def get_data(self, node: str, field: Any, start: Any = 1, end: Any = 0, min_stride: Any = None,
                 *, timeout: float = 60.0, **kwargs: Any) -> dict:
        """``get_data(field, start, end, min_stride)`` of ``node``."""
        from sisock_core.wamp import node_uri

        return self.call(node_uri(node, "get_data"), field, start, end, min_stride,
                         timeout=timeout, **kwargs)

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run ``sisock ARGS -c <site file>`` and return the completed process (text)."""
        env = dict(os.environ)
        env.update(self.env)
        return subprocess.run([sys.executable, "-m", "sisock_core.cli", *args, "-c", str(self.path)],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def log_text(self) -> str:
        """The whole log of ``sisock up`` (router, hub and node lines)."""
        return self.process.log_text()

    def log_tail(self, n: int = 60, debug: bool = True) -> str:
        """The last ``n`` lines of that log (``debug=False``: without debug lines)."""
        return self.process.log_tail(n, debug=debug)

    def stop(self) -> None:
        """Stop the client and ``sisock up``; AssertionError if it did not exit cleanly."""
        if self._stopped:
            return
        self._stopped = True
        self.client.close()
        rc = self.process.stop()
        if rc != 0:
            raise AssertionError(f"sisock up exited with {rc}\n--- log tail without debug lines ---\n"
                                 f"{self.log_tail(40, debug=False)}")

    def __enter__(self) -> "RunningSite":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_site(
    directory: str | Path,
    nodes: str | Mapping[str, Mapping[str, Any]],
    *,
    http: bool = False,
    env: Mapping[str, str] | None = None,
    serializer: str = "msgpack",
    timeout: float = 120.0,
) -> RunningSite:
    """Write ``<directory>/nodes.toml`` on free loopback ports and run ``sisock up`` on it.

    ``nodes``: ``{name: {"plugin": ..., option: value, ...}}`` or TOML text of the
    ``[nodes.*]`` tables; the plugins must be installed. ``http``: also run the HTTP
    bridge. ``env``: extra environment of every process. Returns once the router, the
    hub and every enabled node are up and listed by the hub; raises AssertionError with
    the log if a node cannot start.
    """
    from sisock_core.config import load_config

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tls_port, ocs_port, http_port = free_ports(3)
    path = write_site(directory / "nodes.toml", state_dir=directory / "state", tls_port=tls_port,
                      ocs_port=ocs_port, http_port=http_port, start_http=http, nodes=nodes)
    merged_env = dict(os.environ)
    merged_env.update(env or {})
    config = load_config(path, env=merged_env)  # a bad node table fails here, clearly
    names = [n.name for n in config.nodes.values() if n.enabled]
    process = SisockProcess(["up", str(path)], directory / "up.log", env=env)
    client = None
    try:
        process.wait_ready("site", timeout=timeout,
                           fail_on=r"node \w+ cannot start: [^\n]*|cannot start the router: [^\n]*")
        client = SiteClient(path, directory / "client.log", serializer=serializer, env=env,
                            timeout=timeout)
        site = RunningSite(path, process, client, config, names, env)

        def all_listed() -> bool:  # polled: the hub and the client are other processes
            return set(names) <= {n["name"] for n in site.nodes()}

        wait_until(all_listed, timeout=timeout, what=f"nodes {names} to be listed by the hub")
        return site
    except BaseException:
        if client is not None:
            client.close()
        process.stop()
        raise
