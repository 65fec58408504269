"""Helpers for integration tests: free ports, site files, ``sisock`` subprocesses.

They live in :mod:`sisock_core.testing` (the harness plugin authors use); re-exported
here for sisock's own tests.
"""

from sisock_core.testing import (  # noqa: F401
    READY,
    SisockProcess,
    free_port,
    free_ports,
    pids_matching,
    wait_until,
    write_site,
)
