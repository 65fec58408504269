"""The index database of housekeeping .g3 files (pure: no Twisted, no so3g).

One database holds, for every scanned file, which providers ("feeds") wrote which
fields over which times, plus the byte offset of every data block, so the reader
opens only the frames a query needs.

Engines: SQLite (the embedded default, a file) and MariaDB/MySQL (through
mysqlclient), chosen by a URL (:func:`parse_db_url`):

* ``sqlite:///var/lib/sisock/g3/g3_reader.sqlite`` (or a plain path);
* ``mysql://user:password@host:3306/database`` (``mariadb://`` is the same; add
  ``?unix_socket=/run/mysqld/mysqld.sock`` for a socket). The original containers'
  ``SQL_HOST``, ``SQL_USER``, ``SQL_PASSWD``, ``SQL_DB`` variables build such a URL
  (:func:`db_url_from_env`). The database is created if the user may do so.

Schema. The original sisock g3 scanner's three tables, which its g3 reader (and any
script written against it) can keep querying:

* ``feeds(id, filename, path, prov_id, description, scanned)``: one row per file
  and provider (``path`` is the directory, ``filename`` the base name);
* ``fields(feed_id, field, start, end)``: the first and last sample time of each
  field of each feed; the reader's ``fields.end > %s AND fields.start < %s`` finds
  the files of a time range;
* ``description(description)``: every distinct ``<feed description>.<field>``,
  spelled exactly as in the files (``...temperatures.Channel_01_T``), as the
  original scanner stored it and its g3 reader serves it.

Differences from the original, all invisible to its queries: times are **UTC**
(the original mixed local time and UTC); ``start``/``end`` are ``DATETIME(6)`` in
MariaDB and ``TEXT`` as ``YYYY-MM-DD HH:MM:SS.ffffff`` in SQLite (which sorts and
compares the same way); ``feeds`` has an extra ``file_id`` column and its unique
key is ``(file_id, prov_id, description)`` instead of ``(filename, prov_id)``, so
equal file names in two directories do not collide; ``feeds.path`` is 1024
characters and ``description.description`` 511; the time columns are indexed.

Our own tables (prefixed ``sisock_``): ``sisock_files`` (path, size, mtime, inode,
bytes and frames indexed, status and error of each file, so unchanged files are
never reopened and bad ones are not retried until they change),
``sisock_layouts`` (a provider's block: its name and fields with their types),
``sisock_frames`` (file, byte offset, block index, layout, first and last time,
sample count of every data block), ``sisock_fieldsum`` (one row per served field:
its type, timeline and time span; what ``get_fields`` reads) and ``sisock_meta``
(schema version, a generation counter bumped by every change, the longest frame).

Modules: this one connects and keeps the schema; :mod:`~sisock_plugins.g3.index_schema`
holds the tables (one source for both engines), :mod:`~sisock_plugins.g3.index_records`
the values, :mod:`~sisock_plugins.g3.index_reads` and :mod:`~sisock_plugins.g3.index_writes`
the queries. Every public name stays importable from here.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from typing import Any, Iterator, Mapping

from sisock_core.summarystore import SummaryWriter
from sisock_core.sqldb import (  # noqa: F401  (re-exported: the g3 plugin's names for them)
    DatabaseConfigError,
    DatabaseError as IndexDbError,
    DatabaseUnavailable,
    DbUrl,
    connect,
    driver_errors,
    error_message as _msg,
    mysql_url,
    parse_db_url,
)
from sisock_plugins.g3.index_reads import IndexReads
from sisock_plugins.g3.index_records import *  # noqa: F401,F403  (re-exported: the records and names)
from sisock_plugins.g3.index_records import unix_to_datetime
from sisock_plugins.g3.index_schema import SCHEMA_VERSION, TABLES, ddl
from sisock_plugins.g3.index_writes import IndexWrites


def db_url_from_env(env: Mapping[str, str] = os.environ) -> str | None:
    """A ``mysql://`` URL from the original ``SQL_HOST``/``SQL_USER``/``SQL_PASSWD``/``SQL_DB``.

    ``None`` when ``SQL_HOST`` is unset or empty.
    """
    host = env.get("SQL_HOST") or ""
    if not host:
        return None
    return mysql_url(host, env.get("SQL_USER") or None, env.get("SQL_PASSWD") or None,
                     env.get("SQL_DB") or "sisock")



class Index(IndexReads, IndexWrites):
    """A connection to the index database, used by the scanner and the reader.

    Thread-safe: every call holds a lock (queries are short; decoding happens
    outside). A lost connection is reopened on the next call. Errors of the
    database server raise :class:`DatabaseUnavailable` with the URL (no password)
    and the server's message.
    """

    def __init__(self, url: str | DbUrl, *, create: bool = True) -> None:
        self.url = url if isinstance(url, DbUrl) else parse_db_url(url)
        self.kind = self.url.kind
        self.create = create
        self._lock = threading.RLock()
        self._conn: Any = None
        self._schema_ok = False
        #: layout digest -> id (committed), and those added by the open transaction
        self._layout_ids: dict[str, int] = {}
        self._pending_layouts: dict[str, int] = {}
        #: Writes each file's summaries in the transaction that indexes it.
        self.summaries = SummaryWriter(self.kind)
        self._errors = driver_errors(self.kind)

    # -- connection ----------------------------------------------------------------

    def describe(self) -> str:
        return self.url.redacted()

    def _connect(self) -> Any:
        return connect(self.url, create=self.create, what="index database")

    def _connection(self) -> Any:
        if self._conn is not None and self.kind == "mysql":
            try:  # idle connections are dropped by the server (wait_timeout)
                self._conn.ping()
            except Exception:
                self._drop()
        if self._conn is None:
            try:
                self._conn = self._connect()
            except self._errors as exc:
                raise DatabaseUnavailable(f"index database {self.describe()} is unavailable: {_msg(exc)}") from exc
            except OSError as exc:
                raise DatabaseUnavailable(f"index database {self.describe()} is unavailable: {exc}") from exc
        if not self._schema_ok:
            try:
                self._ensure_schema(self._conn)
            except BaseException:
                self._drop()
                raise
            self._schema_ok = True
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def close(self) -> None:
        with self._lock:
            self._drop()

    def sql(self, text: str) -> str:
        """Our SQL uses ``?`` placeholders; mysqlclient wants ``%s``."""
        return text.replace("?", "%s") if self.kind == "mysql" else text

    @contextlib.contextmanager
    def _cursor(self, write: bool = False) -> Iterator[Any]:
        """A cursor inside the lock; a write runs in one transaction."""
        with self._lock:
            conn = self._connection()
            cur = conn.cursor()
            try:
                if write:
                    cur.execute("BEGIN IMMEDIATE" if self.kind == "sqlite" else "START TRANSACTION")
                self._pending_layouts.clear()
                yield cur
                if write:
                    cur.execute("COMMIT")
                    self._layout_ids.update(self._pending_layouts)
                self._pending_layouts.clear()
            except self._errors as exc:
                if write:
                    try:
                        cur.execute("ROLLBACK")
                    except Exception:
                        pass
                if self.kind == "mysql" or isinstance(exc, sqlite3.OperationalError):
                    self._drop()
                # tables may have been dropped (sisock scan --rebuild): check them again
                self._schema_ok = False
                self._layout_ids.clear()
                self.summaries.forget()
                raise DatabaseUnavailable(f"index database {self.describe()}: {_msg(exc)}") from exc
            except BaseException:
                self.summaries.forget()
                if write:
                    try:
                        cur.execute("ROLLBACK")
                    except Exception:
                        self._drop()
                raise
            finally:
                try:
                    cur.close()
                except Exception:
                    pass

    def check(self) -> None:
        """Connect (creating the schema); raise :class:`DatabaseUnavailable` if impossible."""
        with self._cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()

    # -- schema --------------------------------------------------------------------

    def _ensure_schema(self, conn: Any) -> None:
        cur = conn.cursor()
        try:
            existing = self._tables(cur)
            if "feeds" in existing and "sisock_meta" not in existing:
                cols = self._columns(cur, "feeds")
                if "file_id" not in cols:
                    raise DatabaseConfigError(
                        f"index database {self.describe()} already holds the tables of the original "
                        "sisock g3 scanner (feeds without file_id); give sisock its own database "
                        "(it rebuilds the index from the files) or drop those tables"
                    )
            if not self.create:
                if "sisock_meta" not in existing:
                    raise DatabaseUnavailable(f"index database {self.describe()} has no index yet (not scanned?)")
            else:
                if "sisock_meta" in existing:
                    version = self._meta(cur, "schema_version")
                    if version is not None and int(version) < SCHEMA_VERSION:
                        # an older index: a cache, rebuilt from the files by the next scan
                        for table in TABLES:
                            cur.execute(f"DROP TABLE IF EXISTS {table}")
                for stmt in ddl(self.kind):
                    cur.execute(stmt)
                self.summaries.ensure_schema(cur)
                ins = self._ins_ignore()
                for name, value in (("schema_version", SCHEMA_VERSION), ("generation", 0), ("max_frame_span", 0)):
                    cur.execute(self.sql(f"{ins} INTO sisock_meta (name, value) VALUES (?, ?)"), (name, value))
                self._sync_description_table(cur)
            version = self._meta(cur, "schema_version")
            if version is not None and int(version) != SCHEMA_VERSION:
                raise DatabaseConfigError(
                    f"index database {self.describe()} has index schema {int(version)}, this sisock "
                    f"uses {SCHEMA_VERSION}; give it a new database (the index is rebuilt from the files)"
                )
        except self._errors as exc:
            raise DatabaseUnavailable(f"index database {self.describe()}: {_msg(exc)}") from exc
        finally:
            cur.close()

    def _sync_description_table(self, cur: Any) -> None:
        """Make ``description`` list exactly the served names (an index written by an
        earlier sisock held lower-cased names there)."""
        cur.execute("DELETE FROM description WHERE description NOT IN (SELECT name FROM sisock_fieldsum)")
        cur.execute(f"{self._ins_ignore()} INTO description (description) SELECT name FROM sisock_fieldsum")

    def _tables(self, cur: Any) -> set[str]:
        if self.kind == "sqlite":
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            cur.execute("SHOW TABLES")
        return {r[0] for r in cur.fetchall()}

    def _columns(self, cur: Any, table: str) -> set[str]:
        if self.kind == "sqlite":
            cur.execute(f"PRAGMA table_info({table})")
            return {r[1] for r in cur.fetchall()}
        cur.execute(f"SHOW COLUMNS FROM {table}")
        return {r[0] for r in cur.fetchall()}

    # -- helpers -------------------------------------------------------------------

    def _time(self, t: float) -> Any:
        """A UNIX time as the ``fields`` table stores it."""
        d = unix_to_datetime(t)
        return d if self.kind == "mysql" else d.strftime("%Y-%m-%d %H:%M:%S.%f")

    def _meta(self, cur: Any, name: str) -> float | None:
        """A value of ``sisock_meta`` (None if the row is missing)."""
        cur.execute(self.sql("SELECT value FROM sisock_meta WHERE name = ?"), (name,))
        row = cur.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def _ins_ignore(self) -> str:
        return "INSERT OR IGNORE" if self.kind == "sqlite" else "INSERT IGNORE"

    def _least(self) -> tuple[str, str]:
        return ("MIN", "MAX") if self.kind == "sqlite" else ("LEAST", "GREATEST")
