"""Helpers for integration tests: free ports, site files, ``sisock`` subprocesses.

They live in :mod:`sisock_core.testing` (the harness plugin authors use); re-exported
here for sisock's own tests.
"""

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Mapping

from sisock_core.testing import (  # noqa: F401
    READY,
    SisockProcess,
    free_port,
    free_ports,
    pids_matching,
    wait_until,
    write_site,
)


def run_sisock(*args: str, timeout: float = 60, env: Mapping[str, str] | None = None
               ) -> subprocess.CompletedProcess:
    """``sisock ARGS...`` run to its end (output captured as text)."""
    return subprocess.run([sys.executable, "-m", "sisock_core.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@contextlib.contextmanager
def site_up(tmp: Path, nodes: str | None = None, *, env: Mapping[str, str] | None = None,
            log_tail: int = 40) -> Iterator[tuple[Path, SisockProcess]]:
    """``sisock up`` of a site written in ``tmp`` (free loopback ports, ``tmp/state``; the
    embedded default nodes unless ``nodes``): ``(site file, process)`` once it serves. At
    the end it is stopped, its log's tail printed, and it must have exited cleanly."""
    path = write_site(tmp / "nodes.toml", state_dir=tmp / "state", tls_port=free_port(),
                      ocs_port=free_port(), **({} if nodes is None else {"nodes": nodes}))
    proc = SisockProcess(["up", str(path)], tmp / "up.log", env=env)
    try:
        proc.wait_ready("site", timeout=120)
        yield path, proc
    finally:
        rc = proc.stop()
        print(proc.log_tail(log_tail))
        assert rc == 0, f"sisock up exited with {rc}"
