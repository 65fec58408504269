"""Start-up failures a restart cannot fix, and how a component tells its supervisor.

A busy port, a site already running on the state directory, another server on the
router's port, a router that refuses our secret or certificate the first time we join
stay the same however often the component is started again. A command that meets one
ends with one line saying what is wrong and what to do, and exits with
:data:`EXIT_CANNOT_START` (78, ``EX_CONFIG`` of sysexits.h). Under ``sisock up`` it
prints ``SISOCK-CANNOT-START <reason>`` on stdout instead of the line (the site says it
once, naming the component), and ``sisock up`` does not restart it: it stops the site
if the component is one the site cannot do without (router, hub), else keeps the rest
serving. Exit status 2 (a bad site file or command line) is not restarted either. A
crash (any other status, or a signal) is restarted with backoff.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn, Sequence

from sisock_core.ports import Listener, busy_reasons
from sisock_core.sitelock import SiteInUse, SiteLock, lock_state_dir

#: Exit status of a command that cannot start for a reason a restart does not fix.
EXIT_CANNOT_START = 78
#: Exit status of a bad site file or command line, or secrets, certificate or exposure the
#: router refuses (``sisock check`` tells more).
EXIT_BAD_CONFIG = 2
#: Exit statuses ``sisock up`` does not restart a component after.
PERMANENT_EXIT_CODES = frozenset({EXIT_BAD_CONFIG, EXIT_CANNOT_START})
#: The line a supervised component prints on stdout before exiting with EXIT_CANNOT_START.
CANNOT_START_MARKER = "SISOCK-CANNOT-START"


def cannot_start(command: str, reasons: str | Sequence[str], *, supervised: bool = False) -> NoReturn:
    """End ``sisock <command>``: one line per reason on stderr (or, ``supervised``, one
    marker line on stdout for ``sisock up``), exit status :data:`EXIT_CANNOT_START`."""
    # one line each, whatever the reason's source printed
    lines = [" ".join(r.split()) for r in ([reasons] if isinstance(reasons, str) else reasons)]
    if supervised:
        sys.stdout.write(f"{CANNOT_START_MARKER} {'; '.join(lines)}\n")
        sys.stdout.flush()
    else:
        sys.stderr.write("".join(f"sisock {command}: {line}\n" for line in lines))
        sys.stderr.flush()
    raise SystemExit(EXIT_CANNOT_START)


def preflight(command: str, state_dir: str | os.PathLike | None, listeners: Sequence[Listener],
              *, supervised: bool = False) -> SiteLock | None:
    """Before ``sisock <command>`` starts anything: lock ``state_dir`` (when given; the
    lock is held until the process ends, and returned) and check that every port in
    ``listeners`` is free; else end the command with :func:`cannot_start`."""
    lock = None
    if state_dir is not None:
        try:
            lock = lock_state_dir(state_dir)
        except SiteInUse as exc:
            cannot_start(command, str(exc), supervised=supervised)
        except OSError as exc:
            cannot_start(command, f"cannot use the state directory {state_dir}: "
                                  f"{exc.strerror or exc} ({exc.filename or state_dir}); set "
                                  "SISOCK_STATE_DIR or state_dir in the site file",
                         supervised=supervised)
    busy = busy_reasons(listeners)
    if busy:
        cannot_start(command, busy, supervised=supervised)
    return lock
