"""Why a command does not trust the router: which certificate it tried, and where the
running site keeps its own.

A command (``sisock nodes -c SITE``, ``sisock get``...) trusts the certificate of *its*
state directory (``<state_dir>/tls/server_cert.pem``, or ``[router] ca_cert``). A site
started with another ``SISOCK_STATE_DIR`` serves its own certificate, and TLS says only
"certificate verify failed". :func:`explain_untrusted_router` fetches the certificate
the router presents (without trusting it: only its fingerprint is used) and looks for
the file it came from in the state directories of the routers running on this machine
(each crossbar started by sisock runs in ``<state_dir>/crossbar``), then says which file was tried and what to run instead;
:func:`where_the_site_keeps_its_state` does the same for a command whose state directory
has no WAMP secrets. Blocking (one TLS handshake, a walk of ``/proc``): call them in a
thread.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from pathlib import Path
from typing import Iterable, Iterator

from sisock_core.config import SiteConfig
from sisock_core.tls import tls_paths

#: Seconds to wait for the router's TLS handshake.
HANDSHAKE_TIMEOUT = 5.0


def is_untrusted_certificate(exc: BaseException | str) -> bool:
    """Whether a connection error is TLS refusing the router's certificate."""
    text = str(exc)
    return "certificate verify failed" in text or "CERTIFICATE_VERIFY_FAILED" in text


def fingerprint_der(der: bytes) -> str:
    """SHA-256 fingerprint as ``AB:CD:...``."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def file_fingerprints(path: Path) -> set[str]:
    """Fingerprints of the PEM certificates in ``path`` (empty when unreadable)."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return set()
    out = set()
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    while start >= 0:
        stop = text.find(end, start)
        if stop < 0:
            break
        try:
            out.add(fingerprint_der(ssl.PEM_cert_to_DER_cert(text[start:stop + len(end)])))
        except ValueError:
            pass
        start = text.find(begin, stop)
    return out


def presented_fingerprint(host: str, port: int, timeout: float = HANDSHAKE_TIMEOUT) -> str:
    """Fingerprint of the certificate the server at ``host:port`` presents (not verified)."""
    pem = ssl.get_server_certificate((host, port), timeout=timeout)
    return fingerprint_der(ssl.PEM_cert_to_DER_cert(pem))


def running_crossbar_dirs(proc: Path = Path("/proc")) -> Iterator[Path]:
    """The node directory (``--cbdir``) of every crossbar router running on this machine
    whose process we may inspect: from its command line, or, once crossbar has renamed
    its process ``crossbar-controller``, its working directory (crossbar runs there)."""
    try:
        pids = [p for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        return
    for pid in pids:
        try:
            args = (pid / "cmdline").read_bytes().split(b"\0")
            if b"--cbdir" in args[:-1]:
                yield Path(os.fsdecode(args[args.index(b"--cbdir") + 1]))
            elif args[0].startswith(b"crossbar-controller"):
                yield Path(os.readlink(pid / "cwd"))
        except OSError:
            continue


def site_certificates(cbdirs: Iterable[Path]) -> Iterator[tuple[Path, Path]]:
    """``(state_dir, <state_dir>/tls/server_cert.pem)`` of each running router (a site
    started by sisock keeps crossbar's node directory in ``<state_dir>/crossbar``)."""
    for cbdir in dict.fromkeys(cbdirs):
        yield cbdir.parent, cbdir.parent / "tls" / "server_cert.pem"


def find_site(cfg: SiteConfig, cbdirs: Iterable[Path] | None = None) -> tuple[str, Path | None, Path | None]:
    """``(fingerprint, state_dir, certificate)`` of the router at the site's address: the
    fingerprint of the certificate it presents, and the running site's state directory
    and certificate file holding it (None when no running router here has it). Raises
    ``OSError``/``ValueError`` when the certificate cannot be read."""
    presented = presented_fingerprint(cfg.router.host, cfg.router.tls_port)
    for state_dir, cert in site_certificates(running_crossbar_dirs() if cbdirs is None else cbdirs):
        if presented in file_fingerprints(cert):
            return presented, state_dir, cert
    return presented, None, None


def explain_untrusted_router(cfg: SiteConfig, cbdirs: Iterable[Path] | None = None) -> str:
    """What to tell the operator when TLS refused the router's certificate."""
    host, port = cfg.router.host, cfg.router.tls_port
    _cert, _key, ca = tls_paths(cfg)
    source = "[router] ca_cert" if cfg.router.ca_cert else f"state directory {cfg.state_dir}"
    if not ca.exists():
        tried = f"this command trusts {ca} ({source}), which does not exist"
    else:
        tried = f"the router at {host}:{port} presents a certificate that is not signed by {ca} ({source})"
    try:
        presented, state_dir, cert = find_site(cfg, cbdirs)
    except (OSError, ValueError) as exc:
        return f"{tried}; its certificate could not be read ({exc})"
    if cert is not None:
        return (f"{tried}. The site there keeps its own certificate in {cert} (state directory "
                f"{state_dir}): run the command with SISOCK_STATE_DIR={state_dir}, the state "
                "directory the site was started with (it also holds the site's WAMP secrets), "
                f'or set [router] ca_cert = "{cert}"')
    return (f"{tried}. It presents SHA-256 {presented}, found in no state directory of a router "
            "running here: run the command with the SISOCK_STATE_DIR the site was started with, "
            "or set [router] ca_cert to the site's certificate")


def where_the_site_keeps_its_state(cfg: SiteConfig, cbdirs: Iterable[Path] | None = None) -> str | None:
    """For a command that found nothing in its own state directory (no WAMP secrets): the
    state directory of the site running at the site's address, if it is one here."""
    try:
        _presented, state_dir, _cert = find_site(cfg, cbdirs)
    except (OSError, ValueError):
        return None
    if state_dir is None or state_dir == cfg.state_dir:
        return None
    return (f"the site running at {cfg.router.host}:{cfg.router.tls_port} was started with state "
            f"directory {state_dir}: run the command with SISOCK_STATE_DIR={state_dir}")
