"""TLS material for the router's WebSocket port.

The router listens with a certificate and key in PEM files.  When the site file names none, a
self-signed pair is generated under ``<state_dir>/tls`` on first run; every component then
trusts that certificate (it is its own CA).

- :func:`tls_paths` says which files a site uses;
- :func:`ensure_certificate` writes a self-signed pair when both files are missing;
- :func:`ensure_site_certificate` does that for a site (only for the default paths: a
  configured certificate that is missing is an error, never silently replaced);
- :func:`client_tls_options` gives the options a Twisted/autobahn client connects with.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path
from typing import Iterable

from twisted.logger import Logger

from sisock_core.config import SiteConfig

log = Logger()

#: names every generated certificate is valid for, besides the configured host
DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1", "::1")

#: validity of a generated certificate
VALIDITY = datetime.timedelta(days=3650)


class TLSConfigError(RuntimeError):
    """A certificate or key the site names is missing or unusable."""


def tls_paths(cfg: SiteConfig) -> tuple[Path, Path, Path]:
    """``(certificate, key, ca)`` of the router.

    Configured paths (``tls_cert``, ``tls_key``, ``ca_cert``) win; otherwise
    ``<state_dir>/tls/server_cert.pem`` and ``server_key.pem``.  The CA clients trust defaults
    to the certificate itself (self-signed).
    """
    r = cfg.router
    tls_dir = Path(cfg.state_dir) / "tls"
    cert = Path(r.tls_cert) if r.tls_cert else tls_dir / "server_cert.pem"
    key = Path(r.tls_key) if r.tls_key else tls_dir / "server_key.pem"
    ca = Path(r.ca_cert) if r.ca_cert else cert
    return cert, key, ca


def _san_entry(name: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _unique(names: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for n in names:
        n = n.strip()
        if n and n not in seen:
            seen.append(n)
    return seen


def ensure_certificate(
    cert_path: str | os.PathLike, key_path: str | os.PathLike, hostnames: Iterable[str] = ()
) -> bool:
    """Write a self-signed certificate and its key unless both files exist.

    The certificate (EC P-256, SHA-256, valid 10 years) carries subject alternative names for
    ``localhost``, ``127.0.0.1``, ``::1`` and every name in ``hostnames`` (DNS names or IP
    addresses).  The key file is created with mode 0600.

    Returns ``True`` when a pair was generated, ``False`` when both files were already there.
    Raises :class:`TLSConfigError` when only one of the two exists (replacing it would break
    the other).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    cert_path, key_path = Path(cert_path), Path(key_path)
    if cert_path.exists() and key_path.exists():
        return False
    half = _half_pair(cert_path, key_path)
    if half:
        raise TLSConfigError(half)

    names = _unique([*hostnames, *DEFAULT_HOSTNAMES])
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sisock (self-signed)"),
        ]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName([_san_entry(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )

    key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    os.chmod(key_path, 0o600)  # whatever the umask
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info(
        "generated a self-signed TLS certificate {cert} for {names}", cert=str(cert_path), names=names
    )
    return True


def site_hostnames(cfg: SiteConfig) -> list[str]:
    """Names a generated certificate must be valid for: the host clients connect to, and the
    interface the router listens on when it is a specific one."""
    names = [cfg.router.host]
    if cfg.router.listen not in ("", "0.0.0.0", "::"):
        names.append(cfg.router.listen)
    return _unique(names)


def _half_pair(cert: Path, key: Path) -> str | None:
    """Why a generated pair cannot be (re)made: one of its two files is missing."""
    if cert.exists() == key.exists():
        return None
    present, missing = (cert, key) if cert.exists() else (key, cert)
    return (f"TLS: {present} exists but {missing} does not; restore it, or delete {present} "
            "to have a new self-signed pair generated")


def site_certificate_problem(cfg: SiteConfig) -> str | None:
    """Why the router could not get its certificate and key (None: it can), without
    generating anything: a configured ``tls_cert``/``tls_key`` that does not exist, or half
    of the generated pair."""
    cert, key, _ = tls_paths(cfg)
    if cfg.router.tls_cert or cfg.router.tls_key:
        missing = [str(p) for p in (cert, key) if not p.exists()]
        if missing:
            return ("TLS: configured file(s) not found: " + ", ".join(missing) + " "
                    "(remove router.tls_cert/tls_key to use a generated self-signed pair)")
        return None
    return _half_pair(cert, key)


def ensure_site_certificate(cfg: SiteConfig) -> tuple[Path, Path, Path]:
    """Make sure the router's certificate and key exist; return :func:`tls_paths`.

    Generates the default pair under ``<state_dir>/tls`` when missing. Raises
    :class:`TLSConfigError` for a :func:`site_certificate_problem`.
    """
    cert, key, ca = tls_paths(cfg)
    problem = site_certificate_problem(cfg)
    if problem:
        raise TLSConfigError(problem)
    if not (cfg.router.tls_cert or cfg.router.tls_key):
        ensure_certificate(cert, key, site_hostnames(cfg))
    return cert, key, ca


def client_tls_options(cfg: SiteConfig):
    """TLS options for a Twisted/autobahn client of the router.

    Verifies the router's certificate against ``ca_cert`` (default: the router certificate)
    and the name ``cfg.router.host``.
    """
    from twisted.internet.ssl import Certificate, optionsForClientTLS

    _, _, ca = tls_paths(cfg)
    try:
        pem = Path(ca).read_bytes()
    except OSError as e:
        raise TLSConfigError(f"TLS: cannot read the CA certificate {ca}: {e}") from e
    return optionsForClientTLS(cfg.router.host, trustRoot=Certificate.loadPEM(pem))


def tls_failure_reason(exc: BaseException) -> str | None:
    """OpenSSL's reason for a failed TLS handshake (``wrong version number``, ``certificate
    verify failed``...), or ``None`` if ``exc`` is no TLS failure."""
    from autobahn.util import _is_tls_error

    if not _is_tls_error(exc):
        return None
    reasons = [r[2] for r in exc.args[0] if len(r) > 2] if exc.args and exc.args[0] else []
    return "; ".join(reasons) or str(exc)
