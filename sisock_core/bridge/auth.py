"""HTTP basic auth and CORS for the bridge (pure: no Twisted).

Credentials: the user is ``[http] username`` (env ``SISOCK_HTTP_USER`` overrides);
the password comes from env ``SISOCK_HTTP_PASSWORD``, else from ``[http]
password_file`` (a file only its owner may read). Without both, the bridge has no
auth and refuses to listen on anything but a loopback interface.
"""

from __future__ import annotations

import base64
import hmac
import os
import stat
from pathlib import Path
from typing import Mapping

import attrs

from sisock_core.config import SiteConfig
from sisock_core.hosts import is_loopback

ENV_USER = "SISOCK_HTTP_USER"
ENV_PASSWORD = "SISOCK_HTTP_PASSWORD"

#: Headers a browser-mode Grafana may send on a preflighted POST.
CORS_ALLOW_HEADERS = "accept, content-type, authorization, x-grafana-device-id"
CORS_ALLOW_METHODS = "GET, POST, OPTIONS"


class BridgeSecurityError(ValueError):
    """The ``[http]`` settings would expose the bridge or are inconsistent."""


@attrs.frozen
class Credentials:
    username: str
    password: str = attrs.field(repr=False)

    def check(self, header: bytes | str | None) -> bool:
        """Whether an ``Authorization: Basic ...`` header carries these credentials."""
        if not header:
            return False
        if isinstance(header, str):
            header = header.encode("latin-1", "replace")
        scheme, _, value = header.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (ValueError, TypeError):
            return False
        user, sep, password = decoded.partition(b":")
        if not sep:
            return False
        ok_user = hmac.compare_digest(user, self.username.encode())
        ok_pass = hmac.compare_digest(password, self.password.encode())
        return ok_user and ok_pass


def load_credentials(cfg: SiteConfig, env: Mapping[str, str] = os.environ) -> Credentials | None:
    """The bridge's basic-auth credentials, or None when none are configured.

    Raises :class:`BridgeSecurityError` for a half configuration (a user without a
    password or the reverse), an unreadable password file, or one that group or
    others may read.
    """
    http = cfg.http
    username = env.get(ENV_USER) or http.username
    password = env.get(ENV_PASSWORD) or None
    source = f"env {ENV_PASSWORD}"
    if password is None and http.password_file:
        path = Path(http.password_file).expanduser()
        source = f"http.password_file {path}"
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise BridgeSecurityError(f"{source}: cannot read: {exc.strerror or exc}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise BridgeSecurityError(
                f"{source} may be read by group or others (mode {stat.S_IMODE(mode):o}); "
                f"run: chmod 600 {path}"
            )
        password = text.strip("\r\n")
        if not password:
            raise BridgeSecurityError(f"{source} is empty")
    if username and not password:
        raise BridgeSecurityError(
            f"http.username is {username!r} but no password is set: set {ENV_PASSWORD} "
            "or http.password_file"
        )
    if password and not username:
        raise BridgeSecurityError(f"a password is set ({source}) but no http.username (or {ENV_USER})")
    if not username:
        return None
    return Credentials(username, password)


def check_listen(cfg: SiteConfig, credentials: Credentials | None) -> None:
    """Refuse a non-loopback ``http.listen`` without basic auth."""
    if credentials is None and not is_loopback(cfg.http.listen):
        raise BridgeSecurityError(
            f"http.listen = {cfg.http.listen!r} exposes the Grafana bridge beyond this machine "
            f"without authentication: set http.username and {ENV_PASSWORD} (or "
            "http.password_file), or listen on 127.0.0.1"
        )


def bridge_credentials(cfg: SiteConfig, env: Mapping[str, str] = os.environ) -> Credentials | None:
    """:func:`load_credentials` then :func:`check_listen`: what ``sisock http`` runs first."""
    creds = load_credentials(cfg, env)
    check_listen(cfg, creds)
    return creds


def cors_headers(origin: str | None, allowed: tuple[str, ...] | list[str], preflight: bool) -> dict[str, str]:
    """CORS response headers for a request from ``origin`` (none if not allowed)."""
    if not origin:
        return {}
    if "*" not in allowed and origin not in allowed:
        return {}
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if origin in allowed:
        headers["Access-Control-Allow-Credentials"] = "true"
    if preflight:
        headers["Access-Control-Allow-Methods"] = CORS_ALLOW_METHODS
        headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        headers["Access-Control-Max-Age"] = "600"
    return headers
