"""One site per state directory: the lock ``sisock up`` and ``sisock router`` hold.

The lock is ``<state_dir>/sisock.lock``, locked with ``flock`` for as long as the
process runs and holding its pid and command line. The kernel releases it when the
process ends, however it ends, so the file a killed site leaves behind never blocks
the next start; a second site on the same state directory is refused with who runs
the first and how to stop it or start elsewhere.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

#: Name of the lock file in the state directory.
LOCK_NAME = "sisock.lock"


class SiteInUse(RuntimeError):
    """Another process runs a site on this state directory; the message says which."""


class SiteLock:
    """A held lock on a state directory (released by :meth:`release` or at exit)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _holder_text(raw: bytes) -> str:
    try:
        info = json.loads(raw.decode())
        started = dt.datetime.fromtimestamp(info["started"], dt.timezone.utc)
        return f"pid {info['pid']} ({info['command']}, started {started:%Y-%m-%d %H:%M:%S} UTC)"
    except (ValueError, KeyError, TypeError):
        return "another process (it has not written its pid yet)"


def lock_state_dir(state_dir: str | os.PathLike, argv: Sequence[str] | None = None) -> SiteLock:
    """Lock ``state_dir`` for this process, or raise :class:`SiteInUse`."""
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder_text(os.pread(fd, 4096, 0))
        os.close(fd)
        pid = holder.split()[1] if holder.startswith("pid ") else None
        stop = f"stop it (kill {pid}, or Ctrl-C where it runs)" if pid else "stop it"
        raise SiteInUse(
            f"a site already runs on the state directory {state}: {holder}; {stop}, or run this "
            f"one on another state directory (SISOCK_STATE_DIR=DIR, or state_dir in the site file)"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    command = "sisock " + shlex.join(sys.argv[1:] if argv is None else argv)
    record = json.dumps({"pid": os.getpid(), "command": command,
                         "started": dt.datetime.now(dt.timezone.utc).timestamp()})
    os.ftruncate(fd, 0)
    os.pwrite(fd, (record + "\n").encode(), 0)
    return SiteLock(path, fd)
