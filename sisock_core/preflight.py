"""What ``sisock up`` refuses before it starts anything, as one list: the rules ``sisock
check`` runs too, so a site that passes ``check`` is not refused at start-up.

- the HTTP bridge (``http.start``): basic-auth credentials complete and private, and a
  non-loopback ``http.listen`` only with them;
- the router here (``router.start``): WAMP-CRA secrets found and private, not a default
  one on a non-loopback ``router.listen`` (a secret ``sisock up`` would generate counts as
  default), the OCS port kept on loopback, ``allow_legacy_ocs_nodes`` only with a loopback
  OCS port, listen addresses crossbar accepts, the TLS certificate and key there or
  generable;
- a router elsewhere: the secrets set and the CA certificate readable.

Nothing is generated or started (the plugins' ``node_start`` is not run: it may open
databases or read data; their options are checked when the site file is loaded).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping

import attrs

from sisock_core.config import SiteConfig


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
