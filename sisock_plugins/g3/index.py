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
* ``description(description)``: every distinct ``<feed description>.<field>``
  with the field lower-cased and spaces replaced by ``_``, as the original listed it.

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
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import sqlite3
import threading
from typing import Any, Iterable, Iterator, Mapping, Sequence

import attrs

from sisock_core.summarystore import TABLES as SUMMARY_TABLES
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

#: Bumped when our tables change incompatibly. 2: summaries (``sisock_sum_*``) written
#: with the index; an index of an older version is dropped and rebuilt from the files.
SCHEMA_VERSION = 2

#: Every table of the index (the summaries' are the core's, :mod:`sisock_core.summarystore`).
_TABLES = ("feeds", "fields", "description", "sisock_meta", "sisock_files", "sisock_layouts",
           "sisock_frames", "sisock_fieldsum") + SUMMARY_TABLES

#: Status of a file in ``sisock_files``.
STATUS_OK = "ok"  #: every frame indexed
STATUS_PARTIAL = "partial"  #: indexed up to the last complete frame (being written, or cut)
STATUS_ERROR = "error"  #: unreadable from the start (corrupt, not a .g3 file)
STATUS_NOT_HK = "not_hk"  #: a valid .g3 file without housekeeping frames
STATUS_EMPTY = "empty"  #: zero bytes
STATUS_MISSING = "missing"  #: vanished while being scanned (never stored)

_UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1)


def db_url_from_env(env: Mapping[str, str] = os.environ) -> str | None:
    """A ``mysql://`` URL from the original ``SQL_HOST``/``SQL_USER``/``SQL_PASSWD``/``SQL_DB``.

    ``None`` when ``SQL_HOST`` is unset or empty.
    """
    host = env.get("SQL_HOST") or ""
    if not host:
        return None
    return mysql_url(host, env.get("SQL_USER") or None, env.get("SQL_PASSWD") or None,
                     env.get("SQL_DB") or "sisock")


# -- time conversions --------------------------------------------------------------


def unix_to_datetime(t: float) -> dt.datetime:
    """A naive UTC datetime (what DATETIME(6) columns hold) from a UNIX time."""
    return _EPOCH + dt.timedelta(microseconds=round(t * 1e6))


def datetime_to_unix(value: Any) -> float:
    """Inverse of :func:`unix_to_datetime`; accepts datetimes and SQLite's text."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(_UTC).replace(tzinfo=None)
    return (value - _EPOCH) / dt.timedelta(seconds=1)


def original_field_name(description: str, field: str) -> str:
    """The name the original g3 reader served: field lower-cased, spaces to ``_``."""
    return f"{description}.{field.lower().replace(' ', '_')}"


def path_key(path: str) -> str:
    """Fixed-length key of a file path (paths can exceed index limits)."""
    return hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()


def layout_digest(description: str, block_name: str, fields: Sequence[tuple[str, str]]) -> str:
    blob = json.dumps([description, block_name, list(map(list, fields))], separators=(",", ":"))
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()


# -- records -------------------------------------------------------------------------


@attrs.frozen
class FileRow:
    """What the index knows of one file (a row of ``sisock_files``)."""

    id: int
    path: str
    size: int
    mtime_ns: int
    inode: int
    offset: int  #: bytes indexed (start of the first frame not yet indexed)
    frames: int
    status: str
    error: str | None
    state: str | None  #: JSON: session and providers at ``offset`` (to resume)


@attrs.frozen
class Layout:
    """A provider's data block: ``fields`` are ``(name, type)`` pairs."""

    id: int
    description: str
    block_name: str
    fields: tuple[tuple[str, str], ...]

    @property
    def timeline(self) -> str:
        return f"{self.description}.{self.block_name}"


@attrs.frozen
class FieldSummary:
    """One served field (a row of ``sisock_fieldsum``)."""

    name: str
    description: str
    field: str
    type: str
    timeline: str
    t0: float
    t1: float


@attrs.frozen
class FrameRef:
    """Where one data block is: file, byte offset of its frame, index in the frame."""

    file_id: int
    path: str
    offset: int
    block_index: int
    layout_id: int
    t0: float
    t1: float
    n: int


@attrs.frozen
class Chunk:
    """The blocks of one layout in one file: the reader's unit of decoding and caching.

    ``version`` is the file's indexed size: it changes when a growing file gets more
    frames, so cached data of the older chunk is not reused.
    """

    file_id: int
    path: str
    version: int
    layout_id: int
    t0: float  #: first sample of the blocks overlapping the query
    t1: float
    blocks: int  #: blocks overlapping the query


@attrs.define
class FileUpdate:
    """Everything one scan of one file adds to the index (built by the scanner).

    ``replace`` drops what the index held for the file first (a full rescan);
    otherwise the rows are added to the file's existing ones (the file grew).
    """

    path: str
    size: int
    mtime_ns: int
    inode: int
    offset: int
    frames: int
    status: str
    error: str | None = None
    state: str | None = None
    replace: bool = True
    #: (prov_id, description) of every provider the file lists.
    providers: list[tuple[int, str]] = attrs.field(factory=list)
    #: (byte offset, block index, prov_id, description, block name, fields, t0, t1, n)
    blocks: list[tuple[int, int, int, str, str, tuple[tuple[str, str], ...], float, float, int]] = attrs.field(
        factory=list
    )
    #: base-tier summaries of the blocks read: (field name, timeline, dtype kind, buckets)
    summaries: list = attrs.field(factory=list)


# -- the database ----------------------------------------------------------------------


def _sqlite_ddl() -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS feeds (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            filename VARCHAR(255), path VARCHAR(1024), prov_id INT,
            description VARCHAR(255), scanned BOOL NOT NULL DEFAULT 0, file_id INT,
            UNIQUE (file_id, prov_id, description))""",
        "CREATE INDEX IF NOT EXISTS feeds_description ON feeds (description)",
        """CREATE TABLE IF NOT EXISTS fields (
            feed_id INT NOT NULL, field VARCHAR(255), start TEXT, end TEXT,
            UNIQUE (feed_id, field))""",
        "CREATE INDEX IF NOT EXISTS fields_start ON fields (start)",
        "CREATE INDEX IF NOT EXISTS fields_end ON fields (end)",
        "CREATE INDEX IF NOT EXISTS fields_field ON fields (field)",
        "CREATE TABLE IF NOT EXISTS description (description VARCHAR(511) PRIMARY KEY)",
        """CREATE TABLE IF NOT EXISTS sisock_meta (name VARCHAR(64) PRIMARY KEY, value DOUBLE)""",
        """CREATE TABLE IF NOT EXISTS sisock_files (
            id INTEGER PRIMARY KEY AUTOINCREMENT, path_key CHAR(40) NOT NULL UNIQUE,
            path TEXT NOT NULL, size BIGINT, mtime_ns BIGINT, inode BIGINT,
            byte_offset BIGINT, frames INT, status VARCHAR(16), error TEXT, state TEXT,
            t0 DOUBLE, t1 DOUBLE, scanned_at DOUBLE)""",
        """CREATE TABLE IF NOT EXISTS sisock_layouts (
            id INTEGER PRIMARY KEY AUTOINCREMENT, digest CHAR(40) NOT NULL UNIQUE,
            description VARCHAR(255), block_name VARCHAR(255), fields TEXT)""",
        """CREATE TABLE IF NOT EXISTS sisock_frames (
            file_id INT NOT NULL, byte_offset BIGINT NOT NULL, block_index INT NOT NULL,
            prov_id INT, layout_id INT NOT NULL, t0 DOUBLE, t1 DOUBLE, n INT,
            PRIMARY KEY (file_id, byte_offset, block_index))""",
        "CREATE INDEX IF NOT EXISTS sisock_frames_layout_t0 ON sisock_frames (layout_id, t0)",
        """CREATE TABLE IF NOT EXISTS sisock_fieldsum (
            name VARCHAR(511) PRIMARY KEY, lname VARCHAR(511), description VARCHAR(255),
            field VARCHAR(255), type VARCHAR(8), timeline VARCHAR(511), t0 DOUBLE, t1 DOUBLE)""",
        "CREATE INDEX IF NOT EXISTS sisock_fieldsum_lname ON sisock_fieldsum (lname)",
        "CREATE INDEX IF NOT EXISTS sisock_fieldsum_t1 ON sisock_fieldsum (t1)",
    ]


def _mysql_ddl() -> list[str]:
    tail = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    return [
        """CREATE TABLE IF NOT EXISTS feeds (
            id INT AUTO_INCREMENT PRIMARY KEY,
            filename VARCHAR(255), path VARCHAR(1024), prov_id INT,
            description VARCHAR(255), scanned BOOL NOT NULL DEFAULT 0, file_id INT,
            UNIQUE KEY feeds_file_prov (file_id, prov_id, description),
            KEY feeds_description (description))""" + tail,
        """CREATE TABLE IF NOT EXISTS fields (
            feed_id INT NOT NULL, field VARCHAR(255), start DATETIME(6), end DATETIME(6),
            UNIQUE KEY fields_feed_field (feed_id, field),
            KEY fields_start (start), KEY fields_end (end), KEY fields_field (field))""" + tail,
        "CREATE TABLE IF NOT EXISTS description (description VARCHAR(511) PRIMARY KEY)" + tail,
        "CREATE TABLE IF NOT EXISTS sisock_meta (name VARCHAR(64) PRIMARY KEY, value DOUBLE)" + tail,
        """CREATE TABLE IF NOT EXISTS sisock_files (
            id INT AUTO_INCREMENT PRIMARY KEY, path_key CHAR(40) NOT NULL,
            path TEXT NOT NULL, size BIGINT, mtime_ns BIGINT, inode BIGINT,
            byte_offset BIGINT, frames INT, status VARCHAR(16), error TEXT, state MEDIUMTEXT,
            t0 DOUBLE, t1 DOUBLE, scanned_at DOUBLE,
            UNIQUE KEY sisock_files_path (path_key))""" + tail,
        """CREATE TABLE IF NOT EXISTS sisock_layouts (
            id INT AUTO_INCREMENT PRIMARY KEY, digest CHAR(40) NOT NULL,
            description VARCHAR(255), block_name VARCHAR(255), fields MEDIUMTEXT,
            UNIQUE KEY sisock_layouts_digest (digest))""" + tail,
        """CREATE TABLE IF NOT EXISTS sisock_frames (
            file_id INT NOT NULL, byte_offset BIGINT NOT NULL, block_index INT NOT NULL,
            prov_id INT, layout_id INT NOT NULL, t0 DOUBLE, t1 DOUBLE, n INT,
            PRIMARY KEY (file_id, byte_offset, block_index),
            KEY sisock_frames_layout_t0 (layout_id, t0))""" + tail,
        """CREATE TABLE IF NOT EXISTS sisock_fieldsum (
            name VARCHAR(511) PRIMARY KEY, lname VARCHAR(511), description VARCHAR(255),
            field VARCHAR(255), type VARCHAR(8), timeline VARCHAR(511), t0 DOUBLE, t1 DOUBLE,
            KEY sisock_fieldsum_lname (lname), KEY sisock_fieldsum_t1 (t1))""" + tail,
    ]


class Index:
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
                    cur.execute(self.sql("SELECT value FROM sisock_meta WHERE name = ?"), ("schema_version",))
                    row = cur.fetchone()
                    if row is not None and int(row[0]) < SCHEMA_VERSION:
                        # an older index: a cache, rebuilt from the files by the next scan
                        for table in _TABLES:
                            cur.execute(f"DROP TABLE IF EXISTS {table}")
                for stmt in (_sqlite_ddl() if self.kind == "sqlite" else _mysql_ddl()):
                    cur.execute(stmt)
                self.summaries.ensure_schema(cur)
                ins = "INSERT OR IGNORE" if self.kind == "sqlite" else "INSERT IGNORE"
                for name, value in (("schema_version", SCHEMA_VERSION), ("generation", 0), ("max_frame_span", 0)):
                    cur.execute(self.sql(f"{ins} INTO sisock_meta (name, value) VALUES (?, ?)"), (name, value))
            cur.execute(self.sql("SELECT value FROM sisock_meta WHERE name = ?"), ("schema_version",))
            row = cur.fetchone()
            if row is not None and int(row[0]) != SCHEMA_VERSION:
                raise DatabaseConfigError(
                    f"index database {self.describe()} has index schema {int(row[0])}, this sisock "
                    f"uses {SCHEMA_VERSION}; give it a new database (the index is rebuilt from the files)"
                )
        except self._errors as exc:
            raise DatabaseUnavailable(f"index database {self.describe()}: {_msg(exc)}") from exc
        finally:
            cur.close()

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

    def _ins_ignore(self) -> str:
        return "INSERT OR IGNORE" if self.kind == "sqlite" else "INSERT IGNORE"

    def _least(self) -> tuple[str, str]:
        return ("MIN", "MAX") if self.kind == "sqlite" else ("LEAST", "GREATEST")

    # -- reads ---------------------------------------------------------------------

    def generation(self) -> int:
        """A counter bumped by every change of the index (readers cache by it)."""
        with self._cursor() as cur:
            cur.execute(self.sql("SELECT value FROM sisock_meta WHERE name = ?"), ("generation",))
            row = cur.fetchone()
            return int(row[0]) if row else 0

    def files(self) -> dict[str, FileRow]:
        """Every file the index knows, by path."""
        with self._cursor() as cur:
            cur.execute(
                "SELECT id, path, size, mtime_ns, inode, byte_offset, frames, status, error, state "
                "FROM sisock_files"
            )
            return {r[1]: FileRow(*r) for r in cur.fetchall()}

    def file(self, path: str) -> FileRow | None:
        with self._cursor() as cur:
            cur.execute(
                self.sql(
                    "SELECT id, path, size, mtime_ns, inode, byte_offset, frames, status, error, state "
                    "FROM sisock_files WHERE path_key = ?"
                ),
                (path_key(path),),
            )
            row = cur.fetchone()
            return FileRow(*row) if row else None

    def files_under(self, directory: str) -> dict[str, FileRow]:
        """Files whose path is inside ``directory``."""
        prefix = directory.rstrip(os.sep) + os.sep
        return {p: r for p, r in self.files().items() if p.startswith(prefix)}

    def layouts(self) -> dict[int, Layout]:
        with self._cursor() as cur:
            cur.execute("SELECT id, description, block_name, fields FROM sisock_layouts")
            return {
                r[0]: Layout(r[0], r[1], r[2], tuple((f, t) for f, t in json.loads(r[3])))
                for r in cur.fetchall()
            }

    def field_summaries(self, start: float | None = None, end: float | None = None) -> list[FieldSummary]:
        """Served fields with samples that may fall in ``[start, end)`` (all if None)."""
        q = "SELECT name, description, field, type, timeline, t0, t1 FROM sisock_fieldsum"
        args: tuple = ()
        if start is not None and end is not None:
            q += " WHERE t1 >= ? AND t0 < ?"
            args = (start, end)
        q += " ORDER BY name"
        with self._cursor() as cur:
            cur.execute(self.sql(q), args)
            return [FieldSummary(*r) for r in cur.fetchall()]

    def frames(self, layout_ids: Iterable[int], start: float, end: float) -> list[FrameRef]:
        """Data blocks of the given layouts with samples that may fall in ``[start, end)``."""
        ids = sorted(set(layout_ids))
        if not ids:
            return []
        with self._cursor() as cur:
            cur.execute(self.sql("SELECT value FROM sisock_meta WHERE name = ?"), ("max_frame_span",))
            row = cur.fetchone()
            span = float(row[0]) if row and row[0] is not None else 0.0
            marks = ",".join("?" * len(ids))
            cur.execute(
                self.sql(
                    "SELECT fr.file_id, fi.path, fr.byte_offset, fr.block_index, fr.layout_id, "
                    "fr.t0, fr.t1, fr.n FROM sisock_frames fr JOIN sisock_files fi ON fi.id = fr.file_id "
                    f"WHERE fr.layout_id IN ({marks}) AND fr.t0 < ? AND fr.t0 >= ? AND fr.t1 >= ?"
                ),
                (*ids, end, start - span - 1.0, start),
            )
            return [FrameRef(*r) for r in cur.fetchall()]

    def chunks(self, layout_ids: Iterable[int], start: float, end: float) -> list[Chunk]:
        """The (file, layout) pairs with data blocks that may fall in ``[start, end)``."""
        ids = sorted(set(layout_ids))
        if not ids:
            return []
        with self._cursor() as cur:
            cur.execute(self.sql("SELECT value FROM sisock_meta WHERE name = ?"), ("max_frame_span",))
            row = cur.fetchone()
            span = float(row[0]) if row and row[0] is not None else 0.0
            marks = ",".join("?" * len(ids))
            cur.execute(
                self.sql(
                    "SELECT fr.file_id, fi.path, fi.byte_offset, fr.layout_id, MIN(fr.t0), MAX(fr.t1), "
                    "COUNT(*) FROM sisock_frames fr JOIN sisock_files fi ON fi.id = fr.file_id "
                    f"WHERE fr.layout_id IN ({marks}) AND fr.t0 < ? AND fr.t0 >= ? AND fr.t1 >= ? "
                    "GROUP BY fr.file_id, fi.path, fi.byte_offset, fr.layout_id"
                ),
                (*ids, end, start - span - 1.0, start),
            )
            return [Chunk(*r) for r in cur.fetchall()]

    def chunk_frames(self, file_id: int, layout_id: int) -> list[tuple[int, int]]:
        """``(byte offset, block index)`` of every block of a layout in a file, in file order."""
        with self._cursor() as cur:
            cur.execute(
                self.sql(
                    "SELECT byte_offset, block_index FROM sisock_frames WHERE file_id = ? AND layout_id = ? "
                    "ORDER BY byte_offset, block_index"
                ),
                (file_id, layout_id),
            )
            return [(int(r[0]), int(r[1])) for r in cur.fetchall()]

    def counts(self) -> dict[str, int]:
        """Row counts of the main tables (for ``sisock scan`` summaries and tests)."""
        out = {}
        with self._cursor() as cur:
            for table in ("feeds", "fields", "description", "sisock_files", "sisock_frames",
                          "sisock_layouts", "sisock_fieldsum"):
                cur.execute(f"SELECT COUNT(*) FROM {table}")
                out[table] = int(cur.fetchone()[0])
        return out

    # -- writes --------------------------------------------------------------------

    def record_file(self, update: FileUpdate, now: float) -> None:
        """Write one scan of one file in one transaction."""
        with self._cursor(write=True) as cur:
            affected: set[tuple[str, str]] = set()
            old = self._file_row(cur, update.path)
            if old is not None and update.replace:
                affected = self._delete_file(cur, old[0])
                old = None
            t0s = [b[6] for b in update.blocks]
            t1s = [b[7] for b in update.blocks]
            if old is None:
                cur.execute(
                    self.sql(
                        "INSERT INTO sisock_files (path_key, path, size, mtime_ns, inode, byte_offset, frames, "
                        "status, error, state, t0, t1, scanned_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    ),
                    (path_key(update.path), update.path, update.size, update.mtime_ns, update.inode,
                     update.offset, update.frames, update.status, update.error, update.state,
                     min(t0s) if t0s else None, max(t1s) if t1s else None, now),
                )
                file_id = int(cur.lastrowid)
            else:
                file_id = int(old[0])
                lo, hi = self._least()
                cur.execute(
                    self.sql(
                        "UPDATE sisock_files SET size = ?, mtime_ns = ?, inode = ?, byte_offset = ?, "
                        "frames = frames + ?, status = ?, error = ?, state = ?, scanned_at = ?, "
                        f"t0 = COALESCE({lo}(t0, ?), ?, t0), t1 = COALESCE({hi}(t1, ?), ?, t1) WHERE id = ?"
                    ),
                    (update.size, update.mtime_ns, update.inode, update.offset, update.frames,
                     update.status, update.error, update.state, now,
                     min(t0s) if t0s else None, min(t0s) if t0s else None,
                     max(t1s) if t1s else None, max(t1s) if t1s else None, file_id),
                )
            changed = bool(affected)
            source = path_key(update.path)
            if update.replace:
                self.summaries.drop_source(cur, source)
            for name, timeline, kind, buckets in update.summaries:
                sid = self.summaries.series_id(cur, name, timeline, kind)
                self.summaries.put_base(cur, sid, source, buckets, merge=not update.replace)
            if update.providers or update.blocks:
                changed |= self._add_rows(cur, file_id, update)
            for description, field in affected:
                self._refresh_summary(cur, description, field)
            if changed:
                cur.execute(self.sql("UPDATE sisock_meta SET value = value + 1 WHERE name = ?"), ("generation",))

    def record_files(self, updates: Sequence[FileUpdate], now: float) -> None:
        for u in updates:
            self.record_file(u, now)

    def remove_files(self, paths: Iterable[str]) -> int:
        """Drop files (and everything indexed from them); return how many were known."""
        n = 0
        for path in paths:
            with self._cursor(write=True) as cur:
                old = self._file_row(cur, path)
                if old is None:
                    continue
                n += 1
                self.summaries.drop_source(cur, path_key(path))
                affected = self._delete_file(cur, old[0])
                for description, field in affected:
                    self._refresh_summary(cur, description, field)
                cur.execute(self.sql("UPDATE sisock_meta SET value = value + 1 WHERE name = ?"), ("generation",))
        return n

    def _file_row(self, cur: Any, path: str) -> tuple | None:
        cur.execute(self.sql("SELECT id FROM sisock_files WHERE path_key = ?"), (path_key(path),))
        return cur.fetchone()

    def _delete_file(self, cur: Any, file_id: int) -> set[tuple[str, str]]:
        """Delete a file's rows; return the (description, field) pairs it contributed."""
        cur.execute(
            self.sql(
                "SELECT DISTINCT e.description, f.field FROM fields f JOIN feeds e ON e.id = f.feed_id "
                "WHERE e.file_id = ?"
            ),
            (file_id,),
        )
        affected = {(r[0], r[1]) for r in cur.fetchall()}
        cur.execute(
            self.sql("DELETE FROM fields WHERE feed_id IN (SELECT id FROM feeds WHERE file_id = ?)"),
            (file_id,),
        )
        cur.execute(self.sql("DELETE FROM feeds WHERE file_id = ?"), (file_id,))
        cur.execute(self.sql("DELETE FROM sisock_frames WHERE file_id = ?"), (file_id,))
        cur.execute(self.sql("DELETE FROM sisock_files WHERE id = ?"), (file_id,))
        return affected

    def _layout_id(self, cur: Any, description: str, block_name: str,
                   fields: tuple[tuple[str, str], ...]) -> int:
        digest = layout_digest(description, block_name, fields)
        known = self._layout_ids.get(digest)
        if known is not None:  # layouts are never deleted (except by drop_all)
            return known
        cur.execute(self.sql("SELECT id FROM sisock_layouts WHERE digest = ?"), (digest,))
        row = cur.fetchone()
        if row:
            layout_id = int(row[0])
        else:
            cur.execute(
                self.sql("INSERT INTO sisock_layouts (digest, description, block_name, fields) "
                         "VALUES (?, ?, ?, ?)"),
                (digest, description, block_name, json.dumps([list(f) for f in fields])),
            )
            layout_id = int(cur.lastrowid)
        self._pending_layouts[digest] = layout_id
        return layout_id

    def _feed_id(self, cur: Any, file_id: int, path: str, prov_id: int, description: str) -> int:
        cur.execute(
            self.sql("SELECT id FROM feeds WHERE file_id = ? AND prov_id = ? AND description = ?"),
            (file_id, prov_id, description),
        )
        row = cur.fetchone()
        if row:
            return int(row[0])
        cur.execute(
            self.sql(
                "INSERT INTO feeds (filename, path, prov_id, description, scanned, file_id) "
                "VALUES (?, ?, ?, ?, 1, ?)"
            ),
            (os.path.basename(path), os.path.dirname(path), prov_id, description, file_id),
        )
        return int(cur.lastrowid)

    def _add_rows(self, cur: Any, file_id: int, u: FileUpdate) -> bool:
        """Insert feeds, fields, frames, layouts and summaries of ``u``; True if any."""
        feed_ids: dict[tuple[int, str], int] = {}
        for prov_id, description in u.providers:
            key = (prov_id, description)
            if key not in feed_ids:
                feed_ids[key] = self._feed_id(cur, file_id, u.path, prov_id, description)
        layouts: dict[tuple[str, str, tuple], int] = {}
        frame_rows = []
        # (prov_id, description, field) -> [t0, t1]; (description, field) -> (type, timeline, t0, t1)
        spans: dict[tuple[int, str, str], list[float]] = {}
        summary: dict[tuple[str, str], list] = {}
        max_span = 0.0
        # first and last time of each (provider, layout), then spread to its fields
        block_spans: dict[tuple[int, str, str, tuple], list[float]] = {}
        for offset, index, prov_id, description, block_name, fields, t0, t1, n in u.blocks:
            lkey = (description, block_name, fields)
            if lkey not in layouts:
                layouts[lkey] = self._layout_id(cur, description, block_name, fields)
            frame_rows.append((file_id, offset, index, prov_id, layouts[lkey], t0, t1, n))
            if t1 - t0 > max_span:
                max_span = t1 - t0
            b = block_spans.get((prov_id,) + lkey)
            if b is None:
                block_spans[(prov_id,) + lkey] = [t0, t1]
            else:
                if t0 < b[0]:
                    b[0] = t0
                if t1 > b[1]:
                    b[1] = t1
        for (prov_id, description, block_name, fields), (t0, t1) in block_spans.items():
            if (prov_id, description) not in feed_ids:
                feed_ids[(prov_id, description)] = self._feed_id(cur, file_id, u.path, prov_id, description)
            for name, ftype in fields:
                s = spans.setdefault((prov_id, description, name), [t0, t1])
                s[0] = min(s[0], t0)
                s[1] = max(s[1], t1)
                m = summary.get((description, name))
                if m is None:
                    summary[(description, name)] = [ftype, f"{description}.{block_name}", t0, t1]
                else:
                    if t1 >= m[3]:  # the latest block decides the type and timeline
                        m[0], m[1] = ftype, f"{description}.{block_name}"
                    m[2] = min(m[2], t0)
                    m[3] = max(m[3], t1)
        if frame_rows:
            insert = (f"{self._ins_ignore()} INTO sisock_frames (file_id, byte_offset, block_index, prov_id, "
                      "layout_id, t0, t1, n) VALUES ")
            if self.kind == "sqlite":
                cur.executemany(insert + "(?, ?, ?, ?, ?, ?, ?, ?)", frame_rows)
            else:
                # All numbers: format them directly (mysqlclient's per-value escaping costs
                # more than the rest of the scan); non-finite floats become NULL.
                for i in range(0, len(frame_rows), 5000):
                    values = ",".join(
                        "(%d,%d,%d,%d,%d,%s,%s,%d)" % (a, b, c, d, e, _num(f), _num(g), h)
                        for a, b, c, d, e, f, g, h in frame_rows[i:i + 5000]
                    )
                    cur.execute(insert + values)
        lo, hi = self._least()
        if spans:
            rows = [
                (feed_ids[(p, d)], f, self._time(s[0]), self._time(s[1]))
                for (p, d, f), s in spans.items()
            ]
            if self.kind == "sqlite":
                q = ("INSERT INTO fields (feed_id, field, start, end) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (feed_id, field) DO UPDATE SET start = MIN(start, excluded.start), "
                     "end = MAX(end, excluded.end)")
            else:
                q = ("INSERT INTO fields (feed_id, field, start, end) VALUES (%s, %s, %s, %s) "
                     "ON DUPLICATE KEY UPDATE start = LEAST(start, VALUES(start)), end = GREATEST(end, VALUES(end))")
            cur.executemany(q, rows)
        if summary:
            rows = [
                (f"{d}.{f}", original_field_name(d, f), d, f, m[0], m[1], m[2], m[3])
                for (d, f), m in summary.items()
            ]
            if self.kind == "sqlite":
                q = ("INSERT INTO sisock_fieldsum (name, lname, description, field, type, timeline, t0, t1) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                     "type = CASE WHEN excluded.t1 >= t1 THEN excluded.type ELSE type END, "
                     "timeline = CASE WHEN excluded.t1 >= t1 THEN excluded.timeline ELSE timeline END, "
                     "t0 = MIN(t0, excluded.t0), t1 = MAX(t1, excluded.t1)")
            else:
                # MariaDB evaluates SET left to right: type and timeline first, then t1.
                q = ("INSERT INTO sisock_fieldsum (name, lname, description, field, type, timeline, t0, t1) "
                     "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
                     "type = IF(VALUES(t1) >= t1, VALUES(type), type), "
                     "timeline = IF(VALUES(t1) >= t1, VALUES(timeline), timeline), "
                     "t0 = LEAST(t0, VALUES(t0)), t1 = GREATEST(t1, VALUES(t1))")
            cur.executemany(q, rows)
            cur.executemany(
                self.sql(f"{self._ins_ignore()} INTO description (description) VALUES (?)"),
                sorted({(original_field_name(d, f),) for d, f in summary}),
            )
        if max_span > 0:
            cur.execute(
                self.sql(f"UPDATE sisock_meta SET value = {hi}(value, ?) WHERE name = ?"),
                (max_span, "max_frame_span"),
            )
        return bool(frame_rows or feed_ids)

    def _refresh_summary(self, cur: Any, description: str, field: str) -> None:
        """Recompute one served field's span after files went away."""
        cur.execute(
            self.sql(
                "SELECT MIN(f.start), MAX(f.end) FROM fields f JOIN feeds e ON e.id = f.feed_id "
                "WHERE e.description = ? AND f.field = ?"
            ),
            (description, field),
        )
        row = cur.fetchone()
        name = f"{description}.{field}"
        if row is None or row[0] is None:
            cur.execute(self.sql("DELETE FROM sisock_fieldsum WHERE name = ?"), (name,))
            lname = original_field_name(description, field)
            cur.execute(self.sql("SELECT COUNT(*) FROM sisock_fieldsum WHERE lname = ?"), (lname,))
            if int(cur.fetchone()[0]) == 0:
                cur.execute(self.sql("DELETE FROM description WHERE description = ?"), (lname,))
            return
        cur.execute(
            self.sql("UPDATE sisock_fieldsum SET t0 = ?, t1 = ? WHERE name = ?"),
            (datetime_to_unix(row[0]), datetime_to_unix(row[1]), name),
        )

    # -- maintenance ---------------------------------------------------------------

    def drop_all(self) -> None:
        """Drop every table of the index and its summaries (tests; ``sisock scan --rebuild``)."""
        with self._cursor() as cur:
            for table in _TABLES:
                cur.execute(f"DROP TABLE IF EXISTS {table}")
        with self._lock:
            self._schema_ok = False
            self._layout_ids.clear()
            self.summaries.forget()
            self._drop()


def _num(x: float) -> str:
    """A float as SQL text (NULL if not finite)."""
    x = float(x)
    return repr(x) if math.isfinite(x) else "NULL"
