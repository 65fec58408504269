"""Database URLs and connections shared by sisock's SQL stores (plugins' indexes, summaries).

Engines: SQLite (embedded, a file) and MariaDB/MySQL (through mysqlclient), chosen by a
URL (:func:`parse_db_url`): ``sqlite:///abs/path.sqlite`` (or a plain path) or
``mysql://user:password@host:3306/database`` (``mariadb://`` is the same; add
``?unix_socket=/run/mysqld/mysqld.sock`` for a socket).
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

import attrs


class DatabaseError(RuntimeError):
    """Base of the errors of sisock's databases (plugins' indexes, summaries)."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached or answered with an error."""


class DatabaseConfigError(DatabaseError):
    """The database URL or the database's contents are not usable."""


# -- URLs ---------------------------------------------------------------------------


@attrs.frozen
class DbUrl:
    """A parsed database URL (see :func:`parse_db_url`)."""

    kind: str  #: "sqlite" or "mysql"
    path: str | None = None  #: SQLite file
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    database: str | None = None
    unix_socket: str | None = None

    def redacted(self) -> str:
        """The URL without its password, for logs and error messages."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.path}" if self.path and self.path.startswith("/") else f"sqlite:{self.path}"
        auth = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        sock = f"?unix_socket={self.unix_socket}" if self.unix_socket else ""
        return f"mysql://{auth}{self.host or ''}{port}/{self.database or ''}{sock}"


def parse_db_url(url: str) -> DbUrl:
    """Parse ``sqlite:///abs/path``, ``sqlite:rel/path``, a bare path, or
    ``mysql://user:password@host:port/db`` (also ``mariadb://``).

    Raises :class:`DatabaseConfigError` naming what is wrong.
    """
    text = url.strip()
    if not text:
        raise DatabaseConfigError("database URL is empty")
    if "://" not in text and not text.startswith("sqlite:"):
        return DbUrl(kind="sqlite", path=os.path.expanduser(text))
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if text.startswith("sqlite:///"):
            path = "/" + text[len("sqlite:///"):].lstrip("/") if text[len("sqlite:///"):] else ""
        elif text.startswith("sqlite://"):
            path = text[len("sqlite://"):]
        else:
            path = text[len("sqlite:"):]
        if not path or path == "/":
            raise DatabaseConfigError(f"database URL {url!r}: no SQLite file path")
        return DbUrl(kind="sqlite", path=os.path.expanduser(urllib.parse.unquote(path)))
    if scheme in ("mysql", "mariadb"):
        try:
            port = parts.port
        except ValueError:
            raise DatabaseConfigError(f"database URL {_redact_text(url)!r}: bad port") from None
        database = urllib.parse.unquote(parts.path.lstrip("/"))
        if not database:
            raise DatabaseConfigError(
                f"database URL {_redact_text(url)!r}: no database name (mysql://user@host/DATABASE)"
            )
        query = urllib.parse.parse_qs(parts.query)
        unknown = set(query) - {"unix_socket"}
        if unknown:
            raise DatabaseConfigError(
                f"database URL {_redact_text(url)!r}: unknown parameter(s) {', '.join(sorted(unknown))} "
                "(only unix_socket is understood)"
            )
        return DbUrl(
            kind="mysql",
            host=parts.hostname or "localhost",
            port=port,
            user=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password is not None else None,
            database=database,
            unix_socket=query.get("unix_socket", [None])[0],
        )
    raise DatabaseConfigError(
        f"database URL {_redact_text(url)!r}: unknown scheme {parts.scheme!r} (use sqlite:/// or mysql://)"
    )


def _redact_text(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def mysql_url(host: str, user: str | None, password: str | None, database: str) -> str:
    """Build a ``mysql://`` URL (``host`` may carry ``:port``)."""
    q = urllib.parse.quote
    auth = ""
    if user:
        auth = q(user, safe="")
        if password:
            auth += ":" + q(password, safe="")
        auth += "@"
    return f"mysql://{auth}{host}/{q(database, safe='')}"


def driver_errors(kind: str) -> tuple[type[BaseException], ...]:
    """The exception classes of the DB-API driver of ``kind`` ("sqlite" or "mysql"; importing
    mysqlclient here fails early when it is missing)."""
    if kind == "mysql":
        import MySQLdb

        return (MySQLdb.Error,)
    return (sqlite3.Error,)


def connect(url: DbUrl, *, create: bool = True, what: str = "database") -> Any:
    """A DB-API connection (autocommit) to ``url``.

    SQLite: WAL journal, the parent directory created when ``create``. MariaDB: the
    database is created if missing, when ``create`` and the user may.
    """
    if url.kind == "sqlite":
        path = Path(url.path or "")
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise DatabaseUnavailable(f"{what} {url.redacted()} does not exist (not scanned yet?)")
        conn = sqlite3.connect(str(path), timeout=60.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=60000")
        return conn
    import MySQLdb

    u = url
    kwargs: dict[str, Any] = {"host": u.host or "localhost", "charset": "utf8mb4",
                              "connect_timeout": 10, "autocommit": True}
    if u.port:
        kwargs["port"] = u.port
    if u.user:
        kwargs["user"] = u.user
    if u.password is not None:
        kwargs["passwd"] = u.password
    if u.unix_socket:
        kwargs["unix_socket"] = u.unix_socket
    try:
        return MySQLdb.connect(database=u.database, **kwargs)
    except MySQLdb.OperationalError as exc:
        if exc.args and exc.args[0] == 1049 and create:  # unknown database
            conn = MySQLdb.connect(**kwargs)
            cur = conn.cursor()
            cur.execute(
                "CREATE DATABASE IF NOT EXISTS `{}` CHARACTER SET utf8mb4".format(
                    (u.database or "").replace("`", "``")
                )
            )
            cur.execute("USE `{}`".format((u.database or "").replace("`", "``")))
            return conn
        raise


def error_message(exc: BaseException) -> str:
    """A database exception as one line (MariaDB's ``(code, message)`` pairs included)."""
    if len(getattr(exc, "args", ())) == 2 and isinstance(exc.args[0], int):
        return f"{exc.args[1]} (error {exc.args[0]})"
    return str(exc) or type(exc).__name__
