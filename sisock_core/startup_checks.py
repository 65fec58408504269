"""Start-up checks: what ``sisock up`` (and each ``sisock`` command) refuses before it
starts anything, and how a component that cannot start says so.

**Site-file rules** (:func:`startup_problems`), one list that ``sisock check`` runs too, so
a site that passes ``check`` is not refused at start-up:

- the HTTP bridge (``http.start``): basic-auth credentials complete and private, and a
  non-loopback ``http.listen`` only with them;
- the router here (``router.start``): crossbar installed (``sisock[router]``), WAMP-CRA
  secrets found and private, not a default one on a non-loopback ``router.listen`` (a
  secret ``sisock up`` would generate counts as default), the OCS port kept on loopback,
  ``allow_legacy_ocs_nodes`` only with a loopback OCS port, listen addresses crossbar
  accepts, the TLS certificate and key there or generable;
- a router elsewhere: the secrets set and the CA certificate readable.

Nothing is generated or started (the plugins' ``node_start`` is not run: it may open
databases or read data; their options are checked when the site file is loaded).

**The machine** (:func:`preflight`): the state directory locked and every port free.

**Failures a restart cannot fix.** A busy port, a site already running on the state
directory, another server on the router's port, a router that refuses our secret or
certificate the first time we join stay the same however often the component is started
again. A command that meets one ends with one line saying what is wrong and what to do,
and exits with :data:`EXIT_CANNOT_START` (78, ``EX_CONFIG`` of sysexits.h). Under
``sisock up`` it prints ``SISOCK-CANNOT-START <reason>`` on stdout instead of the line
(the site says it once, naming the component), and ``sisock up`` does not restart it: it
stops the site if the component is one the site cannot do without (router, hub), else
keeps the rest serving. Exit status 2 (a bad site file or command line) is not restarted
either. A crash (any other status, or a signal) is restarted with backoff.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, NoReturn, Sequence

import attrs

from sisock_core.ports import Listener, busy_reasons
from sisock_core.sitelock import SiteInUse, SiteLock, lock_state_dir

if TYPE_CHECKING:
    from sisock_core.config import SiteConfig

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


# -- the site file's rules ---------------------------------------------------------------


@attrs.frozen
class StartupProblem:
    """One reason ``sisock up`` would refuse to start: which part, and why."""

    component: str  #: "router" or "HTTP bridge"
    reason: str

    def __str__(self) -> str:
        return f"cannot start the {self.component}: {self.reason}"


def startup_problems(cfg: SiteConfig, env: Mapping[str, str] = os.environ) -> list[StartupProblem]:
    """Every reason ``sisock up`` would refuse ``cfg`` (empty: none)."""
    return [*_bridge_problems(cfg, env), *_router_problems(cfg, env)]


def _bridge_problems(cfg: SiteConfig, env: Mapping[str, str]) -> list[StartupProblem]:
    from sisock_core.bridge.auth import BridgeSecurityError, bridge_credentials

    if not cfg.http.start:
        return []
    try:
        bridge_credentials(cfg, env)
    except BridgeSecurityError as exc:
        return [StartupProblem("HTTP bridge", str(exc))]
    return []


def _secrets_at_startup(cfg: SiteConfig, env: Mapping[str, str]):
    """The secrets ``sisock up`` would use: those it finds, or (router started here, none
    yet) freshly generated ones, judged as generated."""
    from sisock_core.credentials import SecretsError, generated_secrets_path, load_secrets

    try:
        return load_secrets(cfg, env, create=False)
    except SecretsError:
        if not cfg.router.start or cfg.router.secrets_file or generated_secrets_path(cfg).exists():
            raise
    with tempfile.TemporaryDirectory() as tmp:
        return load_secrets(attrs.evolve(cfg, state_dir=Path(tmp)), env, create=True)


def _router_problems(cfg: SiteConfig, env: Mapping[str, str]) -> list[StartupProblem]:
    from sisock_core.credentials import RouterSecurityError, SecretsError
    from sisock_core.router import crossbar_config, exposure_problems
    from sisock_core.tls import TLSConfigError, client_tls_options, site_certificate_problem

    if cfg.router.start and not crossbar_installed():
        return [StartupProblem("router", "crossbar is not installed here: pip install 'sisock[router]' "
                                         "(or set [router] start = false and use a router elsewhere)")]
    try:
        secrets = _secrets_at_startup(cfg, env)
    except (SecretsError, RouterSecurityError) as exc:
        return [StartupProblem("router", str(exc))]
    if not cfg.router.start:
        try:
            client_tls_options(cfg)
        except TLSConfigError as exc:
            return [StartupProblem("router", str(exc))]
        except Exception as exc:  # not a PEM certificate
            return [StartupProblem("router", f"TLS: the CA certificate cannot be loaded: {exc}")]
        return []
    problems = [StartupProblem("router", p) for p in exposure_problems(cfg, secrets)]
    try:
        crossbar_config(cfg, secrets)
    except ValueError as exc:
        problems.append(StartupProblem("router", str(exc)))
    tls = site_certificate_problem(cfg)
    if tls:
        problems.append(StartupProblem("router", tls))
    return problems


def crossbar_installed() -> bool:
    """Whether crossbar can be imported (``pip install 'sisock[router]'``)."""
    try:
        return importlib.util.find_spec("crossbar") is not None
    except (ImportError, ValueError):  # sys.modules["crossbar"] is None: blocked
        return False
