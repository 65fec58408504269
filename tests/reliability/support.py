"""Helpers of the reliability suite: real sites, plain HTTP, blocking WAMP sessions.

- :func:`http`: one HTTP request, any answer (status, headers, body, JSON if any);
- :func:`rss_mib` / :func:`role_pids`: memory and pids of a site's child processes;
- :func:`joined`, :func:`denied`: WAMP sessions for async (pytest-twisted) tests: autobahn
  schedules on the global reactor, which pytest-twisted runs only while a test awaits;
- :func:`start_site`: ``sisock up`` with the bridge; ``shared_site`` (conftest): one for the package (router, hub, the HTTP bridge with
  basic auth, the weather node ``apex_archive`` and the datafeed node ``lakeshore``),
  used by the fuzz and security modules. Secrets: the server's from the environment
  (``WAMP_SECRET``), the consumer's generated in the state directory, the bridge's
  password from ``SISOCK_HTTP_PASSWORD``; the site logs at debug level.

Every module marks its tests ``reliability`` (and ``integration``: real processes).
"""

from __future__ import annotations

import base64
import http.client as httpclient
import json
import os
import shutil
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Mapping

import attrs

from sisock_core.config import SiteConfig, load_config
from sisock_core.testing import SisockProcess, free_port, pids_matching, write_site

#: Secrets of the shared site (long random-looking strings, easy to grep for in logs).
SERVER_SECRET = "rel-server-Q7vX2mK9pL4wZ8nB3cR6tY1u"
HTTP_USER = "grafana"
HTTP_PASSWORD = "rel-http-J5hD8sF2gA7kL0qW4eR9tZ3x"

JULY = {"from": "2017-07-13T00:00:00.000Z", "to": "2017-07-27T00:00:00.000Z"}


# -- figures for the report ---------------------------------------------------------------------

#: Figures measured by the suite, printed at the end of the run ("reliability figures").
FIGURES: dict[str, str] = {}


def record(key: str, text: str) -> None:
    """Keep a measured figure for the end-of-run summary (and print it for ``-s`` runs)."""
    FIGURES[key] = text
    print(f"\n[reliability] {key}: {text}")


# -- HTTP -----------------------------------------------------------------------------------


@attrs.frozen
class Reply:
    status: int
    headers: Mapping[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None

    @property
    def message(self) -> str | None:
        """The ``error.message`` of an error answer, if it has one."""
        try:
            return self.json["error"]["message"]
        except (TypeError, KeyError, ValueError):
            return None


def basic(user: str = HTTP_USER, password: str = HTTP_PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def http(url: str, body: Any = None, *, raw: bytes | None = None, method: str | None = None,
         headers: Mapping[str, str] | None = None, timeout: float = 60.0,
         conn: httpclient.HTTPConnection | None = None) -> Reply:
    """One request to ``url`` (JSON ``body`` or ``raw`` bytes); any status is returned.

    ``conn``: an open keep-alive connection to the same host to use instead of a new one.
    """
    u = urllib.parse.urlsplit(url)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    method = method or ("POST" if data is not None else "GET")
    hdrs = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
    own = conn is None
    c = conn or httpclient.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        c.request(method, u.path or "/", body=data, headers=hdrs)
        r = c.getresponse()
        payload = r.read()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, payload)
    finally:
        if own:
            c.close()


def query_body(targets: list[str], rng: Mapping[str, str] = JULY, max_points: int = 1000,
               **extra: Any) -> dict:
    """A SimpleJSON ``/query`` body as Grafana sends it (grafana.md)."""
    return {"range": dict(rng), "interval": "1m", "intervalMs": 60000, "maxDataPoints": max_points,
            "targets": [{"target": t, "refId": chr(65 + i % 26), "type": "timeserie"}
                        for i, t in enumerate(targets)],
            "adhocFilters": [], **extra}


# -- processes ------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError(f"no VmRSS for pid {pid}")


def role_pids(site_path: Path | str, role: str) -> list[int]:
    """PIDs of the ``sisock up`` child running ``role`` (``hub``, ``http``, ``node NAME``,
    ``scan``) for the site file ``site_path``."""
    return pids_matching(f"{role} --supervised --config {site_path}")


def one_pid(site_path: Path | str, role: str) -> int:
    pids = role_pids(site_path, role)
    assert len(pids) == 1, f"{role}: expected one process, found {pids}"
    return pids[0]


class ProcessExit:
    """The exit of ``pid`` (not a child of this process), as an event: a Linux pidfd, readable
    once the process has exited. Open it before causing the exit (the pid is then still
    the process's own)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._fd = os.pidfd_open(pid)

    def wait(self, timeout: float, what: str = "the process to exit") -> None:
        """Block until the process exits (it may already have); AssertionError after ``timeout``."""
        import select

        try:
            ready, _, _ = select.select([self._fd], [], [], timeout)
        finally:
            os.close(self._fd)
        assert ready, f"timed out after {timeout}s waiting for {what} (pid {self.pid})"


def log_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


# -- WAMP -------------------------------------------------------------------------------------


async def joined(cfg: SiteConfig, authid: str | None = None, secret: str | None = None, **kw: Any) -> Any:
    """A joined autobahn session on the global reactor (async tests only); see
    :func:`tests.helpers_router.open_session` (``ocs=True``: the anonymous OCS port)."""
    from tests.helpers_router import open_session

    return await open_session(cfg, authid=authid, secret=secret, **kw)


async def denied(d: Any) -> str:
    """The WAMP error URI the awaitable ``d`` fails with (AssertionError if it succeeds)."""
    from autobahn.wamp.exception import ApplicationError

    try:
        await d
    except ApplicationError as exc:
        return exc.error
    raise AssertionError("allowed")


def ack() -> Any:
    from autobahn.wamp.types import PublishOptions

    return PublishOptions(acknowledge=True)


def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run blocking ``fn`` (HTTP, subprocesses) in a thread from an async test."""
    from twisted.internet import threads

    return threads.deferToThread(fn, *args, **kwargs)


# -- the shared site --------------------------------------------------------------------------


@attrs.frozen
class Site:
    path: Path
    cfg: SiteConfig
    proc: SisockProcess
    url: str  #: the HTTP bridge
    data_dir: Path  #: apex_archive's data directory (a copy of the example data)
    secrets: dict  #: {"server", "consumer", "http"}
    env: dict  #: the environment sisock up was started with (secrets)

    def server(self, **kw: Any) -> Any:
        """(awaitable) a session as the server user (nodes, hub)."""
        return joined(self.cfg, self.cfg.router.wamp_user, self.secrets["server"], **kw)

    def consumer(self, **kw: Any) -> Any:
        """(awaitable) a session as the read-only consumer user (the bridge, dashboards)."""
        return joined(self.cfg, "simonsobs", self.secrets["consumer"], **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        headers = {**basic(), **kw.pop("headers", {})}
        return http(self.url + path, body, headers=headers, **kw)


SHARED_NODES = """
[nodes.apex_archive]
plugin = "weather"
data_dir = {data_dir}

[nodes.lakeshore]
plugin = "datafeed"
target = "fakels00"
feed = "temperatures"
description = "fake LS372"
"""


def start_site(tmp: Path, nodes: str, *, http_auth: bool = True, env: Mapping[str, str] | None = None,
               log_level: str = "debug", timeout: float = 180, wrapper: list[str] | None = None,
               http_extra: str = "") -> Site:
    """``sisock up`` in ``tmp`` with the bridge; returns when the site is ready.

    ``wrapper``: a command prefix for ``sisock up`` (its children inherit it, e.g. the
    capability bounding set of ``setpriv``)."""
    from sisock_core.router import load_secrets

    http_port, tls_port, ocs_port = free_port(), free_port(), free_port()
    path = write_site(tmp / "site.toml", state_dir=tmp / "state", tls_port=tls_port, ocs_port=ocs_port,
                      http_port=http_port, start_http=True, nodes=nodes, log_level=log_level)
    if http_auth or http_extra:
        text = path.read_text()
        extra = (f'username = "{HTTP_USER}"\n' if http_auth else "") + http_extra
        path.write_text(text.replace(f"port = {http_port}\n", f"port = {http_port}\n{extra}", 1))
    full_env = {"WAMP_SECRET": SERVER_SECRET, **({"SISOCK_HTTP_PASSWORD": HTTP_PASSWORD} if http_auth else {}),
                **(env or {})}
    proc = SisockProcess(["up", str(path)], tmp / "up.log", env=full_env, prefix=wrapper or ())
    try:
        proc.wait_ready("site", timeout=timeout)
    except BaseException:
        proc.stop()
        raise
    cfg = load_config(path, env={**os.environ, **full_env})
    secrets = load_secrets(cfg, env=full_env, create=False)
    data_dir = tmp / "weather"
    return Site(path, cfg, proc, f"http://127.0.0.1:{http_port}", data_dir,
                {"server": secrets.server, "consumer": secrets.consumer, "http": HTTP_PASSWORD},
                full_env)


def wait_http_ready(url: str, timeout: float = 60.0) -> None:
    """Until the bridge (another process) answers ``/`` with 200: polled, its answer is the
    only observation."""
    from sisock_core.testing import wait_until

    def ok() -> bool:
        try:
            return http(url + "/", headers=basic(), timeout=5).status == 200
        except OSError:
            return False

    wait_until(ok, timeout=timeout, what=f"{url}/ to answer 200")


# -- fake OCS agents --------------------------------------------------------------------------


class Agents:
    """:mod:`tests.reliability.ocs_agents` in a child process (real OCS-port publishers)."""

    def __init__(self, ocs_port: int, agents: int, *, channels: int = 16, rate: float = 1.0,
                 prefix: str = "agent", log_path: Path | None = None) -> None:
        import subprocess
        import sys

        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.ocs_agents", "--port", str(ocs_port), "--agents",
             str(agents), "--channels", str(channels), "--rate", str(rate), "--prefix", prefix],
            stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, text=True,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
        self.counts: dict | None = None

    def wait_ready(self, timeout: float = 120.0) -> None:
        import select
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("READY"):
                    return
                if not line and self.proc.poll() is not None:
                    break
        raise AssertionError(f"the fake OCS agents did not all join in {timeout}s (rc {self.proc.poll()})")

    def stop(self) -> dict:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        self.counts = json.loads(lines[-1]) if lines else {}
        if hasattr(self._log, "close"):
            self._log.close()
        return self.counts


def children_of(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def router_pid(up_pid: int) -> int:
    """The crossbar process ``sisock up`` (pid ``up_pid``) runs: its child that is not a
    supervised sisock component (crossbar renames its process, so its command line
    cannot be matched)."""
    found = []
    for pid in children_of(up_pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "--supervised" not in cmd:
            found.append(pid)
    assert len(found) == 1, f"expected one router child of {up_pid}, found {found}"
    return found[0]
