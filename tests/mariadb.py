"""A private MariaDB server for tests: never the machine's (nothing depends on 3306).

:class:`PrivateMariaDB` is a ``mariadbd`` of our own: a data directory made with
``mariadb-install-db``, a free loopback port, its own socket and pid file, root without a
password. :func:`session_server` starts one the first time a test asks for it and keeps it
for the rest of the test session (``tests/conftest.py`` stops it); the reliability suite
starts its own to kill it. ``scripts/setup.sh`` installs the server (Debian's
``mariadb-server-core`` and ``mariadb-client-core``: the binaries, no system service).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from sisock_core.testing import free_port, wait_until

#: What to install when the server binaries are missing.
INSTALL_HINT = ("scripts/setup.sh installs them (Debian packages mariadb-server-core and "
                "mariadb-client-core; no system service is started)")


class MariaDBMissing(RuntimeError):
    """The MariaDB binaries are not installed; the message names the missing program."""


def _find(names: tuple[str, ...], dirs: tuple[str, ...] = ("/usr/sbin", "/usr/bin")) -> str:
    for name in names:
        for path in (shutil.which(name), *(f"{d}/{name}" for d in dirs)):
            if path and os.access(path, os.X_OK):
                return path
    raise MariaDBMissing(f"no {' or '.join(names)} on this machine (needed for the private MariaDB "
                         f"the g3 tests start): {INSTALL_HINT}")


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _die_with_parent() -> None:
    """(preexec) SIGKILL the server if the test process dies, so none is left behind."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class PrivateMariaDB:
    """A mariadbd of our own in ``directory``: ``mariadb-install-db`` data, a free port."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.data = self.dir / "data"
        self.socket = self.dir / "mysqld.sock"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.daemon = _find(("mariadbd", "mysqld"))
        installer = _find(("mariadb-install-db", "mysql_install_db"))
        _find(("my_print_defaults",))  # mariadb-install-db runs it
        self.dir.mkdir(parents=True, exist_ok=True)
        out = subprocess.run([installer, "--no-defaults", f"--datadir={self.data}",
                              "--auth-root-authentication-method=normal", "--skip-test-db",
                              f"--user={_user()}"],
                             capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed ({out.returncode}):\n"
                               f"{out.stdout[-2000:]}{out.stderr[-2000:]}")

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, database: str) -> str:
        """``mysql://`` URL of ``database`` on this server (root, no password)."""
        return f"mysql://root@{self.host}:{self.port}/{database}"

    def connect(self, **kw):
        import MySQLdb

        return MySQLdb.connect(host=self.host, port=self.port, user="root", passwd="", **kw)

    def start(self, timeout: float = 60.0) -> float:
        """Start the server; seconds until it answered."""
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [self.daemon, "--no-defaults", f"--datadir={self.data}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.socket}",
             f"--pid-file={self.dir / 'mysqld.pid'}", f"--user={_user()}",
             f"--log-error={self.dir / 'error.log'}", "--innodb-buffer-pool-size=16M",
             "--skip-name-resolve", "--max-connections=100", "--skip-log-bin"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
            # (the death signal follows the forking thread: only from the main thread)
            preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None)
        wait_until(self.answers, timeout=timeout, interval=0.1,
                   what=f"the private mariadbd on port {self.port} ({self.dir})")
        return time.monotonic() - t0

    def answers(self) -> bool:
        import MySQLdb

        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"mariadbd exited ({self.proc.returncode}):\n{self.log_tail()}")
        try:
            self.connect(connect_timeout=2).close()
            return True
        except MySQLdb.Error:
            return False

    def kill(self) -> None:
        """SIGKILL (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self) -> str:
        try:
            return "\n".join((self.dir / "error.log").read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return ""


_session: dict[str, object] = {}


def session_server() -> PrivateMariaDB:
    """The test session's private server, started on first use (fails the test, naming what is
    missing, when it cannot be)."""
    import pytest

    server = _session.get("server")
    if isinstance(server, PrivateMariaDB):
        if server.proc is not None and server.proc.poll() is None:
            return server
        pytest.fail(f"the session's private mariadbd died:\n{server.log_tail()}", pytrace=False)
    if "error" in _session:
        pytest.fail(str(_session["error"]), pytrace=False)
    directory = Path(tempfile.mkdtemp(prefix="sisock-mariadb-"))
    _session["dir"] = directory
    try:
        server = PrivateMariaDB(directory)
        server.start()
    except (MariaDBMissing, RuntimeError, AssertionError) as exc:
        _session["error"] = f"cannot start a private MariaDB for the tests: {exc}"
        stop_session_server()
        pytest.fail(str(_session["error"]), pytrace=False)
    _session["server"] = server
    return server


def stop_session_server() -> None:
    """Stop the session's server (if one was started) and remove its files."""
    server = _session.pop("server", None)
    if isinstance(server, PrivateMariaDB):
        server.stop()
    directory = _session.pop("dir", None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
