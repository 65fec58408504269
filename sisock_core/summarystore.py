"""Where summaries live: tables in SQLite (default) or MariaDB (see :mod:`sisock_core.summaries`).

Tables (prefixed ``sisock_sum_``, so they sit beside a plugin's own, e.g. a file index):

* ``sisock_sum_series(id, name, timeline, kind, t_first, t_last, covered_until, dirty_t0,
  dirty_t1, dirty_gen)``: one row per summarized field. ``covered_until``: every sample
  before it is summarized (NULL: all the samples the plugin serves, as a plugin guarantees by
  writing summaries in the transaction that indexes a file). ``dirty_*``: a time range
  whose coarse tiers must be recomputed from the base tier (:meth:`SummaryStore.rollup`).
* ``sisock_sum_rows(series_id, tier, source, seg, t0, t1, m, data)``: packed buckets
  (``tier`` is the bucket width in seconds)
  (:func:`sisock_core.summaries.pack`). Base-tier rows belong to a *source*: a file for
  plugins writing summaries themselves (replaced when the file is read again, deleted with
  it), or ``""`` with one row per day for summaries the core computes. Coarse-tier rows
  hold 1024 buckets each and are always recomputed from the finer tier, never merged
  into, so nothing is ever counted twice.
* ``sisock_sum_groups(source, seg, t0, t1, version, data)`` and ``sisock_sum_parts(source,
  seg, series_id, t0, t1, m, at_byte, n_bytes, at_raw)``: base-tier rows a plugin writes
  for one of its files (:meth:`SummaryWriter.put_bases`). All the file's series are in
  one group: one blob of chunks (~64 kB of rows laid out side by side, each chunk
  compressed once), and a small part row per series saying where its row lies (its
  chunk's bytes, and where the row starts once the chunk is decompressed). A file then
  costs one blob and a page of small entries, not a row per field. ``version`` is drawn
  at random at each write: a reader holding a series' buckets knows them current
  without reading the blob again. (Stores written before groups existed keep such rows
  in ``sisock_sum_rows``: they are read as before, and moved into the file's group when
  the file is read again.)

The store is a cache: dropping it loses nothing (the next scan, or the core's summarizer,
rebuilds it), and a read that finds a coarse segment pending recomputation derives it from
the finer tier on the fly, so no answer is built from stale rows. An error saying the
contents are unusable (:func:`is_corruption`, a row that does not unpack) raises
:class:`SummaryStoreCorrupt` and is remembered (:attr:`SummaryStore.damaged`) until
:meth:`SummaryStore.reset` wipes the store.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import random
import sqlite3
import struct
import threading
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import attrs
import numpy as np
import zstandard

from sisock_core import summaries as S
from sisock_core.sqldb import (
    DatabaseError,
    DatabaseUnavailable,
    DbUrl,
    connect,
    driver_errors,
    error_message,
    parse_db_url,
)

#: Buckets per coarse-tier row.
SEGMENT_BUCKETS = 1024
#: Bytes of rows (before compression) compressed together in a group: a reader of one
#: series decompresses at most this much more, a writer compresses once per chunk.
CHUNK_BYTES = 64 * 1024
#: Base-tier buckets per row of summaries the core computes (one day of 60 s buckets).
CORE_ROW_BUCKETS = 1440
#: Kinds of values summarized (numpy dtype kinds): floats and integers.
SUMMARIZED_KINDS = ("f", "i", "u")

TABLES = ("sisock_sum_series", "sisock_sum_rows", "sisock_sum_groups", "sisock_sum_parts", "sisock_sum_meta")
_BASE = int(S.BASE_TIER)
_TIER_LIST = ",".join(str(int(w)) for w in S.TIERS)


class SummaryStoreError(DatabaseError):
    """The summary store failed; answers fall back to raw data."""


class SummaryStoreCorrupt(SummaryStoreError):
    """The store's contents are unusable (see :func:`is_corruption`): a store the core
    fills is wiped and recomputed (:meth:`SummaryStore.reset`)."""


#: Errors of a packed row that does not unpack.
UNPACK_ERRORS = (ValueError, zlib.error, zstandard.ZstdError, struct.error)
#: MariaDB errors that mean the tables are unusable as they are: unknown column (1054),
#: bad key file (1034), crashed table (1194, 1195), corrupt index (1712), table missing
#: in the engine (1932), corrupt table (1877).
MYSQL_CORRUPTION = frozenset({1034, 1054, 1194, 1195, 1712, 1877, 1932})
#: SQLite messages that mean the same.
SQLITE_CORRUPTION = ("not a database", "malformed", "no such column", "corrupt")


def is_corruption(exc: BaseException) -> bool:
    """Whether ``exc`` (a driver error) says the store's contents are unusable, rather
    than that the database is unreachable or busy for now (refused, locked, timed out)."""
    if isinstance(exc, sqlite3.Error):
        return any(text in str(exc).lower() for text in SQLITE_CORRUPTION)
    args = getattr(exc, "args", ())
    return type(exc).__module__.startswith("MySQLdb") and bool(args) and args[0] in MYSQL_CORRUPTION


@attrs.frozen
class SeriesInfo:
    """One summarized field (a row of ``sisock_sum_series``)."""

    id: int
    name: str
    timeline: str
    kind: str
    t_first: float | None
    t_last: float | None
    covered_until: float | None  #: None: complete
    dirty: tuple[float, float] | None


def _ddl(kind: str) -> list[str]:
    if kind == "sqlite":
        return [
            """CREATE TABLE IF NOT EXISTS sisock_sum_series (
                id INTEGER PRIMARY KEY AUTOINCREMENT, name VARCHAR(511) NOT NULL UNIQUE,
                timeline VARCHAR(511), kind CHAR(1), t_first DOUBLE, t_last DOUBLE,
                covered_until DOUBLE, dirty_t0 DOUBLE, dirty_t1 DOUBLE, dirty_gen INT NOT NULL DEFAULT 0)""",
            """CREATE TABLE IF NOT EXISTS sisock_sum_rows (
                series_id INT NOT NULL, tier INT NOT NULL, source VARCHAR(64) NOT NULL, seg BIGINT NOT NULL,
                t0 DOUBLE, t1 DOUBLE, m INT, data BLOB,
                PRIMARY KEY (series_id, tier, source, seg))""",
            "CREATE INDEX IF NOT EXISTS sisock_sum_rows_t1 ON sisock_sum_rows (series_id, tier, t1)",
            "CREATE INDEX IF NOT EXISTS sisock_sum_rows_source ON sisock_sum_rows (source)",
            """CREATE TABLE IF NOT EXISTS sisock_sum_groups (
                source VARCHAR(255) NOT NULL, seg BIGINT NOT NULL, t0 DOUBLE NOT NULL, t1 DOUBLE NOT NULL,
                version BIGINT NOT NULL, data BLOB, PRIMARY KEY (source, seg))""",
            "CREATE INDEX IF NOT EXISTS sisock_sum_groups_t1 ON sisock_sum_groups (t1)",
            """CREATE TABLE IF NOT EXISTS sisock_sum_parts (
                source VARCHAR(255) NOT NULL, seg BIGINT NOT NULL, series_id INT NOT NULL, t0 DOUBLE NOT NULL,
                t1 DOUBLE NOT NULL, m INT NOT NULL, at_byte INT NOT NULL, n_bytes INT NOT NULL, at_raw INT NOT NULL,
                PRIMARY KEY (source, seg, series_id)) WITHOUT ROWID""",
            "CREATE TABLE IF NOT EXISTS sisock_sum_meta (name VARCHAR(64) PRIMARY KEY, value VARCHAR(255))",
        ]
    tail = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    return [
        """CREATE TABLE IF NOT EXISTS sisock_sum_series (
            id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(511) NOT NULL,
            timeline VARCHAR(511), kind CHAR(1), t_first DOUBLE, t_last DOUBLE,
            covered_until DOUBLE, dirty_t0 DOUBLE, dirty_t1 DOUBLE, dirty_gen INT NOT NULL DEFAULT 0,
            UNIQUE KEY sisock_sum_series_name (name))""" + tail,
        """CREATE TABLE IF NOT EXISTS sisock_sum_rows (
            series_id INT NOT NULL, tier INT NOT NULL, source VARCHAR(64) NOT NULL, seg BIGINT NOT NULL,
            t0 DOUBLE, t1 DOUBLE, m INT, data LONGBLOB,
            PRIMARY KEY (series_id, tier, source, seg),
            KEY sisock_sum_rows_t1 (series_id, tier, t1), KEY sisock_sum_rows_source (source))""" + tail,
        """CREATE TABLE IF NOT EXISTS sisock_sum_groups (
            source VARCHAR(255) NOT NULL, seg BIGINT NOT NULL, t0 DOUBLE NOT NULL, t1 DOUBLE NOT NULL,
            version BIGINT NOT NULL, data LONGBLOB, PRIMARY KEY (source, seg), KEY sisock_sum_groups_t1 (t1))""" + tail,
        """CREATE TABLE IF NOT EXISTS sisock_sum_parts (
            source VARCHAR(255) NOT NULL, seg BIGINT NOT NULL, series_id INT NOT NULL, t0 DOUBLE NOT NULL,
            t1 DOUBLE NOT NULL, m INT NOT NULL, at_byte INT NOT NULL, n_bytes INT NOT NULL, at_raw INT NOT NULL,
            PRIMARY KEY (source, seg, series_id))""" + tail,
        "CREATE TABLE IF NOT EXISTS sisock_sum_meta (name VARCHAR(64) PRIMARY KEY, value VARCHAR(255))" + tail,
    ]


class RowMemo:
    """Rows written in this process, kept unpacked until a rollup reads them back.

    A scanner writes a file's base-tier rows, then rolls the coarse tiers up from them:
    with a memo shared by its writer and its store, the rollup takes the buckets it
    already has instead of decompressing the rows again. An entry is used only if the
    row read back is the one written (``check``: the CRC-32 of the row, or the version of
    the group holding it), and once; at most ``max_bytes`` of buckets are kept (rows beyond
    are read back as usual).
    """

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._rows: dict[tuple, tuple[int, S.Buckets]] = {}
        self._bytes = 0

    def put(self, key: tuple, check: int, b: S.Buckets) -> None:
        old = self._rows.pop(key, None)  # the row was written again: keep the newest
        if old is not None:
            self._bytes -= old[1].nbytes
        size = b.nbytes
        if self._bytes + size > self.max_bytes:
            return
        self._rows[key] = (check, b)
        self._bytes += size

    def take(self, key: tuple, check: int) -> S.Buckets | None:
        """The buckets of row ``key`` if ``check`` is that of the row written (forgotten then)."""
        hit = self._rows.pop(key, None)
        if hit is None:
            return None
        self._bytes -= hit[1].nbytes
        return hit[1] if hit[0] == check else None

    def clear(self) -> None:
        self._rows.clear()
        self._bytes = 0


class Chunks:
    """The chunks of a group's blob, each decompressed once when a row of it is asked for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._raw: dict[int, bytes] = {}

    def row(self, at: int, size: int, at_raw: int, m: int) -> bytes:
        """The row of ``m`` buckets at ``at_raw`` in the chunk of ``size`` bytes at ``at``
        (as laid out before compressing: :func:`sisock_core.summaries.unpack_row`)."""
        raw = self._raw.get(at)
        if raw is None:
            raw = self._raw[at] = S.decompress(self.data[at:at + size])
        row = raw[at_raw:at_raw + S.row_size(m)]
        if len(row) != S.row_size(m):
            raise ValueError(f"a chunk of {len(raw)} bytes holds no row of {m} buckets at byte {at_raw}")
        return row


class SummaryWriter:
    """Writes summaries through cursors of a connection it does not own.

    A plugin that computes summaries while indexing its files writes them with this in the
    same transaction as its own index rows: a file is then either indexed and summarized
    or neither, and an interrupted scan never leaves half a file's buckets behind.
    ``kind`` is the SQL dialect, "sqlite" or "mysql".
    """

    def __init__(self, kind: str, namespace: str | None = None) -> None:
        """``namespace``: a prefix of the stored series names (``<namespace>/<name>``), so
        several nodes share one database (None: names as they are)."""
        self.kind = kind
        self.prefix = f"{namespace}/" if namespace else ""
        self._ids: dict[str, int] = {}
        #: Where rows written are also kept unpacked for a rollup (None: nowhere).
        self.memo: RowMemo | None = None
        self._versions = random.Random()  # seeded from the OS: writers draw apart

    def sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.kind == "mysql" else text

    def _mm(self) -> tuple[str, str]:
        return ("MIN", "MAX") if self.kind == "sqlite" else ("LEAST", "GREATEST")

    def ensure_schema(self, cur: Any) -> None:
        """Create the tables; if they were written with other coarse tiers, drop those rows
        and mark every series for a rollup (the base tier stays)."""
        for stmt in _ddl(self.kind):
            cur.execute(stmt)
        cur.execute(self.sql("SELECT value FROM sisock_sum_meta WHERE name = ?"), ("tiers",))
        row = cur.fetchone()
        if row is not None and row[0] == _TIER_LIST:
            return
        if row is None:
            cur.execute(self.sql("INSERT INTO sisock_sum_meta (name, value) VALUES (?, ?)"), ("tiers", _TIER_LIST))
        else:
            cur.execute(self.sql("UPDATE sisock_sum_meta SET value = ? WHERE name = ?"), (_TIER_LIST, "tiers"))
        cur.execute(self.sql(f"DELETE FROM sisock_sum_rows WHERE tier <> {_BASE}"))
        cur.execute("UPDATE sisock_sum_series SET dirty_t0 = t_first, dirty_t1 = t_last + 1, "
                    "dirty_gen = dirty_gen + 1 WHERE t_first IS NOT NULL")

    def drop_tables(self, cur: Any) -> None:
        for table in TABLES:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        self._ids.clear()

    def forget(self) -> None:
        """Forget cached series ids (after a rolled-back transaction)."""
        self._ids.clear()

    def series_id(self, cur: Any, name: str, timeline: str, kind: str,
                  covered_until: float | None = None) -> int:
        """The id of series ``name`` (created if new; its timeline and kind updated)."""
        known = self._ids.get(name)
        if known is not None:
            return known
        key, name = name, self.prefix + name
        cur.execute(self.sql("SELECT id, timeline, kind FROM sisock_sum_series WHERE name = ?"), (name,))
        row = cur.fetchone()
        if row is None:
            cur.execute(
                self.sql("INSERT INTO sisock_sum_series (name, timeline, kind, covered_until) VALUES (?, ?, ?, ?)"),
                (name, timeline, kind, covered_until),
            )
            sid = int(cur.lastrowid)
        else:
            sid = int(row[0])
            if row[1] != timeline or row[2] != kind:
                cur.execute(self.sql("UPDATE sisock_sum_series SET timeline = ?, kind = ? WHERE id = ?"),
                            (timeline, kind, sid))
        self._ids[key] = sid
        return sid

    def _mark_dirty(self, cur: Any, sid: int, t0: float, t1: float) -> None:
        lo, hi = self._mm()
        cur.execute(
            self.sql(
                f"UPDATE sisock_sum_series SET dirty_t0 = {lo}(COALESCE(dirty_t0, ?), ?), "
                f"dirty_t1 = {hi}(COALESCE(dirty_t1, ?), ?), dirty_gen = dirty_gen + 1 WHERE id = ?"
            ),
            (t0, t0, t1, t1, sid),
        )

    def _rows(self, tier: int, items: Sequence[tuple[int, str, int, S.Buckets | S.PackedBuckets]]) -> list[tuple]:
        """Rows of ``sisock_sum_rows`` for ``(series id, source, seg, buckets)`` of one tier."""
        w = S.TIERS[tier]
        unpacked = [it[3] for it in items if not isinstance(it[3], S.PackedBuckets)]
        blobs = iter(S.pack_many(unpacked, w))
        out = []
        for sid, source, seg, b in items:
            if isinstance(b, S.PackedBuckets):
                if b.width != w:
                    raise ValueError(f"buckets of tier {b.width} s written as tier {w} s")
                blob, b = b.blob(), b.buckets
            else:
                blob = next(blobs)
            if self.memo is not None:
                self.memo.put((sid, tier, source, seg), zlib.crc32(blob), b)
            out.append((sid, int(w), source, seg, float(b.k[0]) * w, float(b.k[-1] + 1) * w, len(b), blob))
        return out

    def _write_rows(self, cur: Any, rows: Sequence[tuple]) -> None:
        verb = "INSERT OR REPLACE" if self.kind == "sqlite" else "REPLACE"
        cur.executemany(
            self.sql(f"{verb} INTO sisock_sum_rows (series_id, tier, source, seg, t0, t1, m, data) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            rows,
        )

    def put_base(self, cur: Any, sid: int, source: str, b: S.Buckets, *, seg: int = 0,
                 merge: bool = False) -> None:
        """Write base-tier buckets of ``source`` (replacing its row ``seg``, or merged into it)."""
        self.put_bases(cur, source, [(sid, b)], seg=seg, merge=merge)

    def put_bases(self, cur: Any, source: str, items: Sequence[tuple[int, S.Buckets | S.PackedBuckets]], *,
                  seg: int = 0, merge: bool = False) -> None:
        """:meth:`put_base` of several series ``(id, buckets)`` of one source, in a few
        statements (buckets may come packed: :class:`sisock_core.summaries.PackedBuckets`).

        A named source (a plugin's file) keeps its series in one group: series written
        again are replaced (or, with ``merge``, merged into what the group held), the
        others stay. The source ``""`` (the core's rows) keeps a row per series and ``seg``.
        """
        if source:
            self._put_group(cur, source, items, seg=seg, merge=merge)
            return
        todo: list = []
        spans: list[tuple[int, float, float, float, float]] = []
        for sid, b in items:
            if merge:
                b = S.as_buckets(b)
                cur.execute(
                    self.sql(f"SELECT data FROM sisock_sum_rows WHERE series_id = ? AND tier = {_BASE} "
                             "AND source = ? AND seg = ?"),
                    (sid, source, seg),
                )
                row = cur.fetchone()
                if row is not None:
                    b = S.merge([S.unpack(bytes(row[0]), S.BASE_TIER), b])
            if len(b) == 0:
                continue
            todo.append((sid, source, seg, b))
            spans.append(self._span(sid, b))
        if not todo:
            return
        self._write_rows(cur, self._rows(0, todo))
        self._update_spans(cur, spans)

    @staticmethod
    def _span(sid: int, b: S.Buckets | S.PackedBuckets) -> tuple[int, float, float, float, float]:
        """``(sid, first sample's time, last's, first bucket's start, last bucket's end)``."""
        t0, t1, k0, k1 = S.span_of(b)
        return sid, t0, t1, k0 * S.BASE_TIER, (k1 + 1) * S.BASE_TIER

    def _update_spans(self, cur: Any, rows: Sequence[tuple[int, float, float, float, float]]) -> None:
        """Widen the series' time spans and dirty ranges (rows of :meth:`_span`), in one
        statement per 100 series (the new spans joined as a table of values)."""
        lo, hi = self._mm()
        for i in range(0, len(rows), 100):  # 5 variables a row: under any SQLite's limit
            part = rows[i:i + 100]
            params = [x for row in part for x in row]
            if self.kind == "sqlite":
                values = ",".join(["(?, ?, ?, ?, ?)"] * len(part))
                cur.execute(
                    f"WITH v(id, t0, t1, d0, d1) AS (VALUES {values}) "
                    f"UPDATE sisock_sum_series SET t_first = {lo}(COALESCE(t_first, v.t0), v.t0), "
                    f"t_last = {hi}(COALESCE(t_last, v.t1), v.t1), dirty_t0 = {lo}(COALESCE(dirty_t0, v.d0), v.d0), "
                    f"dirty_t1 = {hi}(COALESCE(dirty_t1, v.d1), v.d1), dirty_gen = dirty_gen + 1 "
                    "FROM v WHERE sisock_sum_series.id = v.id",
                    params,
                )
            else:
                values = " UNION ALL ".join(["SELECT %s AS id, %s AS t0, %s AS t1, %s AS d0, %s AS d1"] * len(part))
                cur.execute(
                    f"UPDATE sisock_sum_series s JOIN ({values}) v ON s.id = v.id "
                    f"SET s.t_first = {lo}(COALESCE(s.t_first, v.t0), v.t0), "
                    f"s.t_last = {hi}(COALESCE(s.t_last, v.t1), v.t1), "
                    f"s.dirty_t0 = {lo}(COALESCE(s.dirty_t0, v.d0), v.d0), "
                    f"s.dirty_t1 = {hi}(COALESCE(s.dirty_t1, v.d1), v.d1), s.dirty_gen = s.dirty_gen + 1",
                    params,
                )

    def group_of(self, source: str) -> str:
        """The key of ``source``'s group (the writer's namespace, then the source)."""
        return self.prefix + source

    def _held(self, cur: Any, source: str, seg: int) -> dict[int, S.Buckets]:
        """What the store holds of ``source``'s row ``seg``, by series: its group, and rows
        written before groups existed (deleted here: the caller writes them into the group)."""
        group = self.group_of(source)
        out: dict[int, S.Buckets] = {}
        cur.execute(self.sql("SELECT series_id, at_byte, n_bytes, at_raw, m FROM sisock_sum_parts "
                             "WHERE source = ? AND seg = ?"), (group, seg))
        parts = cur.fetchall()
        if parts:
            cur.execute(self.sql("SELECT data FROM sisock_sum_groups WHERE source = ? AND seg = ?"), (group, seg))
            row = cur.fetchone()
            if row is None:
                raise SummaryStoreCorrupt(f"the parts of group {group!r} segment {seg} have no group row")
            chunks = Chunks(bytes(row[0]))
            for sid, at, size, at_raw, m in parts:
                out[int(sid)] = S.unpack_row(chunks.row(int(at), int(size), int(at_raw), int(m)), S.BASE_TIER)
        cur.execute(self.sql(f"SELECT series_id, data FROM sisock_sum_rows WHERE tier = {_BASE} AND source = ? "
                             "AND seg = ?"), (source, seg))
        legacy = cur.fetchall()
        for sid, data in legacy:
            b = S.unpack(bytes(data), S.BASE_TIER)
            out[int(sid)] = S.merge([out[int(sid)], b]) if int(sid) in out else b
        if legacy:
            cur.execute(self.sql(f"DELETE FROM sisock_sum_rows WHERE tier = {_BASE} AND source = ? AND seg = ?"),
                        (source, seg))
        return out

    def _put_group(self, cur: Any, source: str, items: Sequence[tuple[int, S.Buckets | S.PackedBuckets]], *,
                   seg: int, merge: bool) -> None:
        group = self.group_of(source)
        new: dict[int, S.Buckets | S.PackedBuckets] = dict(items)
        held = self._held(cur, source, seg)
        if held:
            cur.execute(self.sql("DELETE FROM sisock_sum_parts WHERE source = ? AND seg = ?"), (group, seg))
        for sid in new:
            if merge and sid in held:
                new[sid] = S.merge([held[sid], S.as_buckets(new[sid])])
        series = {sid: b for sid, b in held.items() if sid not in new}  # kept as they were
        series.update((sid, b) for sid, b in new.items() if len(b))
        if not series:
            cur.execute(self.sql("DELETE FROM sisock_sum_groups WHERE source = ? AND seg = ?"), (group, seg))
            return
        plain = [b for b in series.values() if not isinstance(b, S.PackedBuckets)]
        laid_out = iter(S.pack_many(plain, S.BASE_TIER, compressed=False) if plain else ())
        spans: list[tuple[int, float, float, float, float]] = []  # of the series written
        chunks: list[bytes] = []  # compressed
        rows: list[bytes] = []  # of the chunk being filled
        parts: list[list] = []
        at = at_raw = 0  # where the chunk being filled starts; where its next row starts
        for sid, b in series.items():
            if isinstance(b, S.PackedBuckets):
                if b.width != S.BASE_TIER:
                    raise ValueError(f"buckets of tier {b.width} s written as tier {S.BASE_TIER} s")
                row = b.laid_out
            else:
                row = next(laid_out)
            span = self._span(sid, b)
            if sid in new:
                spans.append(span)
            rows.append(row)
            parts.append([group, seg, sid, span[3], span[4], len(b), at, 0, at_raw])
            at_raw += len(row)
            if at_raw >= CHUNK_BYTES:
                at = self._end_chunk(chunks, rows, parts, at)
                at_raw = 0
        if rows:
            self._end_chunk(chunks, rows, parts, at)
        data = b"".join(chunks)
        version = self._versions.getrandbits(63)
        verb = "INSERT OR REPLACE" if self.kind == "sqlite" else "REPLACE"
        cur.execute(self.sql(f"{verb} INTO sisock_sum_groups (source, seg, t0, t1, version, data) "
                             "VALUES (?, ?, ?, ?, ?, ?)"),
                    (group, seg, min(p[3] for p in parts), max(p[4] for p in parts), version, data))
        cur.executemany(
            self.sql("INSERT INTO sisock_sum_parts (source, seg, series_id, t0, t1, m, at_byte, n_bytes, at_raw) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            parts,
        )
        if self.memo is not None:
            for sid, b in series.items():
                self.memo.put(("g", sid, group, seg), version, b)
        self._update_spans(cur, spans)

    @staticmethod
    def _end_chunk(chunks: list[bytes], rows: list[bytes], parts: list[list], at: int) -> int:
        """Compress the rows of the chunk being filled (the last ``len(rows)`` parts');
        returns where the next chunk starts."""
        chunk = S.compress(b"".join(rows))
        for part in parts[len(parts) - len(rows):]:
            part[7] = len(chunk)
        chunks.append(chunk)
        rows.clear()
        return at + len(chunk)

    def drop_source(self, cur: Any, source: str) -> None:
        """Delete a source's base rows (its file went away or is read again)."""
        group = self.group_of(source)
        cur.execute(self.sql("SELECT series_id, t0, t1 FROM sisock_sum_parts WHERE source = ?"), (group,))
        parts = cur.fetchall()
        cur.execute(self.sql(f"SELECT series_id, t0, t1 FROM sisock_sum_rows WHERE tier = {_BASE} AND source = ?"),
                    (source,))
        legacy = cur.fetchall()
        for sid, t0, t1 in parts + legacy:
            self._mark_dirty(cur, int(sid), float(t0), float(t1))
        if parts:
            cur.execute(self.sql("DELETE FROM sisock_sum_parts WHERE source = ?"), (group,))
            cur.execute(self.sql("DELETE FROM sisock_sum_groups WHERE source = ?"), (group,))
        if legacy:
            cur.execute(self.sql(f"DELETE FROM sisock_sum_rows WHERE tier = {_BASE} AND source = ?"), (source,))

    def set_covered(self, cur: Any, sid: int, covered_until: float | None) -> None:
        cur.execute(self.sql("UPDATE sisock_sum_series SET covered_until = ? WHERE id = ?"), (covered_until, sid))


class SummaryStore:
    """A connection to a summary store: reads for the node, rollups and the core's writes.

    Thread-safe (one lock around the connection; queries are short).
    """

    def __init__(self, url: str | DbUrl, *, create: bool = True, cache_mb: float = 16.0,
                 namespace: str | None = None) -> None:
        """``cache_mb``: unpacked rows kept between reads (an LRU; rows are checked by
        checksum, so a rewritten row is never served from it). ``namespace``: the node
        whose series these are, when several nodes share one database (see
        :class:`SummaryWriter`)."""
        self.url = url if isinstance(url, DbUrl) else parse_db_url(url)
        self.cache_bytes = int(cache_mb * 2**20)
        self._unpacked: collections.OrderedDict = collections.OrderedDict()
        self._unpacked_bytes = 0
        self.kind = self.url.kind
        self.create = create
        self.writer = SummaryWriter(self.kind, namespace)
        self._lock = threading.RLock()
        self._conn: Any = None
        self._schema_ok = False
        self._errors = driver_errors(self.kind)
        #: Why the store's contents are unusable, once an error said so (None: as far as
        #: known, they are fine); cleared by :meth:`reset`.
        self.damaged: str | None = None
        #: Whether the damage is in rows (which a namespace's wipe removes) rather than in
        #: the database or its tables.
        self.damaged_rows = False
        #: Write transactions committed (a rollup commits every few batches).
        self.commits = 0

    def describe(self) -> str:
        return self.url.redacted()

    def sql(self, text: str) -> str:
        return self.writer.sql(text)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._schema_ok = False
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _error(self, exc: BaseException) -> SummaryStoreError:
        """The error to raise for driver error ``exc`` (corruption is remembered)."""
        text = f"summary store {self.describe()}: {error_message(exc)}"
        if is_corruption(exc):
            self.damaged, self.damaged_rows = error_message(exc), False
            return SummaryStoreCorrupt(text)
        return SummaryStoreError(text)

    def _corrupt_row(self, what: str, exc: BaseException) -> SummaryStoreCorrupt:
        self.damaged = f"{what} does not unpack: {type(exc).__name__}: {exc}"
        self.damaged_rows = True
        return SummaryStoreCorrupt(f"summary store {self.describe()}: {self.damaged}")

    @contextlib.contextmanager
    def cursor(self, write: bool = False, *, schema: bool = True) -> Iterator[Any]:
        """A cursor inside the lock; a write runs in one transaction (``schema``: the
        tables are created first)."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = connect(self.url, create=self.create, what="summary store")
                if self.kind == "mysql":
                    self._conn.ping()
                cur = self._conn.cursor()
                if schema and not self._schema_ok:
                    self.writer.ensure_schema(cur)
                    self._schema_ok = True
            except self._errors as exc:
                self._drop()
                raise self._error(exc) from exc
            except OSError as exc:
                self._drop()
                raise DatabaseUnavailable(f"summary store {self.describe()}: {exc}") from exc
            try:
                if write:
                    self._begin(cur)
                yield cur
                if write:
                    self._commit(cur)
            except self._errors as exc:
                if write:
                    with contextlib.suppress(Exception):
                        cur.execute("ROLLBACK")
                self.writer.forget()
                self._drop()
                raise self._error(exc) from exc
            except BaseException:
                if write:
                    with contextlib.suppress(Exception):
                        cur.execute("ROLLBACK")
                self.writer.forget()
                raise
            finally:
                with contextlib.suppress(Exception):
                    cur.close()

    def _begin(self, cur: Any) -> None:
        cur.execute("BEGIN IMMEDIATE" if self.kind == "sqlite" else "START TRANSACTION")

    def _commit(self, cur: Any) -> None:
        cur.execute("COMMIT")
        self.commits += 1

    # -- reads -----------------------------------------------------------------------

    def series(self, names: Iterable[str]) -> dict[str, SeriesInfo]:
        """The summarized series among ``names``."""
        prefix = self.writer.prefix
        names = [prefix + n for n in dict.fromkeys(names)]
        out: dict[str, SeriesInfo] = {}
        with self.cursor() as cur:
            for i in range(0, len(names), 500):
                part = names[i:i + 500]
                cur.execute(
                    self.sql("SELECT id, name, timeline, kind, t_first, t_last, covered_until, dirty_t0, dirty_t1 "
                             f"FROM sisock_sum_series WHERE name IN ({','.join('?' * len(part))})"),
                    part,
                )
                for r in cur.fetchall():
                    name = r[1][len(prefix):]
                    out[name] = SeriesInfo(int(r[0]), name, r[2], r[3], r[4], r[5], r[6],
                                           (float(r[7]), float(r[8])) if r[7] is not None else None)
        return out

    def read(self, series: Sequence[SeriesInfo], tier: int, start: float, end: float,
             check: Callable[[], None] | None = None) -> dict[int, S.Buckets]:
        """Buckets of tier ``tier`` lying wholly in ``[start, end)`` (multiples of the tier)."""
        with self.cursor() as cur:
            return self._read(cur, {s.id: s.dirty for s in series}, tier, start, end, check)

    def _cached(self, key: tuple, check: int) -> S.Buckets | None:
        """Buckets of a row from the LRU, if they were unpacked from the row with checksum
        (or group version) ``check``."""
        with self._lock:
            hit = self._unpacked.get(key)
            if hit is not None and hit[0] == check:
                self._unpacked.move_to_end(key)
                return hit[1]
        return None

    def _unpack(self, key: tuple, blob: bytes, width: float, check: int | None = None,
                compressed: bool = True) -> S.Buckets:
        """Unpacked buckets of a row, from a small LRU keyed by row and checksum (``check``:
        the version of the group holding the row; None: the row's CRC-32)."""
        check = zlib.crc32(blob) if check is None else check
        hit = self._cached(key, check)
        if hit is not None:
            return hit
        try:
            b = S.unpack(blob, width) if compressed else S.unpack_row(blob, width)
        except UNPACK_ERRORS as exc:
            raise self._corrupt_row(f"row {key} (series, tier, source, seg)", exc) from exc
        with self._lock:
            old = self._unpacked.pop(key, None)
            if old is not None:
                self._unpacked_bytes -= old[1].nbytes
            self._unpacked[key] = (check, b)
            self._unpacked_bytes += b.nbytes
            while self._unpacked_bytes > self.cache_bytes and self._unpacked:
                _, (_, gone) = self._unpacked.popitem(last=False)
                self._unpacked_bytes -= gone.nbytes
        return b

    def _grouped(self, cur: Any, ids: Sequence[int], start: float, end: float,
                 known: Callable[[tuple, int], S.Buckets | None]) -> list[tuple[int, tuple, int, Any]]:
        """The base-tier rows of the series ``ids`` held in groups that overlap ``[start,
        end)``, by series then time: ``(series id, key, group version, buckets or row as
        laid out before compressing)``. ``known(key, version)`` gives the buckets of a row
        already at hand (None: its chunk is read). A group rewritten between the two reads
        is read again."""
        marks = ",".join("?" * len(ids))
        for _ in range(3):
            cur.execute(
                self.sql("SELECT p.series_id, p.source, p.seg, p.at_byte, p.n_bytes, p.at_raw, p.m, g.version "
                         "FROM sisock_sum_groups g JOIN sisock_sum_parts p ON p.source = g.source AND p.seg = g.seg "
                         f"WHERE g.t1 > ? AND g.t0 < ? AND p.series_id IN ({marks}) AND p.t1 > ? AND p.t0 < ? "
                         "ORDER BY p.series_id, p.t1"),
                (start, end, *ids, start, end),
            )
            out: list[tuple[int, tuple, int, Any]] = []
            missing: dict[tuple[str, int], int] = {}
            for sid, group, seg, at, size, at_raw, m, version in cur.fetchall():
                key = ("g", int(sid), group, int(seg))
                b = known(key, int(version))
                if b is None:
                    missing[(group, int(seg))] = int(version)
                    b = (int(at), int(size), int(at_raw), int(m))
                out.append((int(sid), key, int(version), b))
            if not missing:
                return out
            blobs = self._group_blobs(cur, missing)
            if any(blobs.get(g, (None,))[0] != version for g, version in missing.items()):
                continue  # written meanwhile
            chunks = {g: Chunks(data) for g, (_, data) in blobs.items()}
            try:
                return [(sid, key, version, chunks[key[2:]].row(*b) if isinstance(b, tuple) else b)
                        for sid, key, version, b in out]
            except UNPACK_ERRORS as exc:
                raise self._corrupt_row(f"a group of series {min(ids)}..{max(ids)} in [{start}, {end})", exc) from exc
        raise SummaryStoreError(f"summary store {self.describe()}: groups kept changing while read")

    def _group_blobs(self, cur: Any, keys: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], tuple[int, bytes]]:
        """``{(group, seg): (version, blob)}`` of the groups ``keys``."""
        sources = sorted({g for g, _ in keys})
        out: dict[tuple[str, int], tuple[int, bytes]] = {}
        for i in range(0, len(sources), 500):
            part = sources[i:i + 500]
            cur.execute(self.sql(f"SELECT source, seg, version, data FROM sisock_sum_groups "
                                 f"WHERE source IN ({','.join('?' * len(part))})"), part)
            for group, seg, version, data in cur.fetchall():
                if (group, int(seg)) in keys:
                    out[(group, int(seg))] = (int(version), bytes(data))
        return out

    def _read(self, cur: Any, dirty: Mapping[int, tuple[float, float] | None], tier: int, start: float,
              end: float, check: Callable[[], None] | None = None) -> dict[int, S.Buckets]:
        w = S.TIERS[tier]
        ids = sorted(dirty)
        pieces: dict[int, list[S.Buckets]] = {sid: [] for sid in ids}
        if ids:
            cur.execute(
                self.sql(f"SELECT series_id, source, seg, data FROM sisock_sum_rows "
                         f"WHERE series_id IN ({','.join('?' * len(ids))}) "
                         "AND tier = ? AND t1 > ? AND t0 < ?"),
                (*ids, int(w), start, end),
            )
            for sid, source, seg, blob in cur.fetchall():
                pieces[int(sid)].append(self._unpack((int(sid), tier, source, int(seg)), bytes(blob), w))
            if tier == 0:
                for sid, key, version, got in self._grouped(cur, ids, start, end, self._cached):
                    pieces[sid].append(got if isinstance(got, S.Buckets) else
                                       self._unpack(key, got, w, version, compressed=False))
        out = {}
        for sid in ids:
            if check is not None:
                check()
            d = dirty[sid]
            if tier > 0 and d is not None and d[0] < end and d[1] > start:
                fine = self._read(cur, {sid: d}, tier - 1, start, end, check)[sid]
                out[sid] = S.rollup(fine, S.TIERS[tier - 1], w).between(w, start, end)
            else:
                out[sid] = S.merge(pieces[sid]).between(w, start, end)
        return out

    # -- writes and maintenance --------------------------------------------------------

    def rollup(self, *, batch: int = 8, rows_per_commit: int = 512, batches_per_commit: int = 16,
               should_stop: Callable[[], bool] | None = None) -> int:
        """Recompute the coarse tiers of every dirty range; returns the series done.

        Series whose dirty ranges touch the same coarse segments are rolled up together
        (a few statements per tier for all of them), reading the finer tier ``batch``
        coarse segments at a time. A transaction ends after ``rows_per_commit`` rows or
        ``batches_per_commit`` batches, and ``should_stop`` is checked between batches:
        a group spans several transactions, its dirty range cleared (if no writer marked
        it again meanwhile) only once it is complete, so a stopped rollup resumes on the
        next call and a reader meanwhile derives dirty ranges from the finer tier. With a
        namespace, only its series."""
        prefix = self.writer.prefix
        with self.cursor() as cur:
            if prefix:
                cur.execute(self.sql("SELECT id, dirty_t0, dirty_t1, dirty_gen FROM sisock_sum_series "
                                     "WHERE dirty_t0 IS NOT NULL AND SUBSTR(name, 1, ?) = ?"), (len(prefix), prefix))
            else:
                cur.execute("SELECT id, dirty_t0, dirty_t1, dirty_gen FROM sisock_sum_series "
                            "WHERE dirty_t0 IS NOT NULL")
            todo = [(int(r[0]), float(r[1]), float(r[2]), int(r[3])) for r in cur.fetchall()]
        span = S.TIERS[1] * SEGMENT_BUCKETS
        groups: dict[tuple[int, int], list[tuple[int, float, float, int]]] = {}
        for item in todo:  # the same first-tier segments: the same segments of every coarser tier
            _, d0, d1, _ = item
            groups.setdefault((math.floor(d0 / span), math.floor(max(d0, d1 - 1e-6) / span)), []).append(item)
        chunks = [g[i:i + 64] for g in groups.values() for i in range(0, len(g), 64)]
        steps = (step for group in chunks for step in self._rollup_steps(group, batch=batch))
        done = 0
        stop = should_stop or (lambda: False)
        step = next(steps, None)
        over = step is None or stop()
        while not over:
            with self.cursor(write=True) as cur:
                written = batches = 0
                while not over and written < rows_per_commit and batches < batches_per_commit:
                    rows, finished = step(cur)
                    written += rows
                    batches += 1
                    done += finished
                    step = next(steps, None)
                    over = step is None or stop()
        return done

    def _rollup_steps(self, group: Sequence[tuple[int, float, float, int]], *, batch: int
                      ) -> Iterator[Callable[[Any], tuple[int, int]]]:
        """The rollup of the series ``(id, dirty from, dirty to, generation)`` (whose dirty
        ranges lie in the same first-tier segments) as steps, each run with a cursor in a
        write transaction and returning ``(rows written, series finished)``: one batch of
        segments of one tier (tiers in order, every series of the group together), then
        the clearing of the dirty ranges."""
        ids = [g[0] for g in group]
        d0 = min(g[1] for g in group)
        d1 = max(g[2] for g in group)
        for tier in range(1, len(S.TIERS)):
            span = S.TIERS[tier] * SEGMENT_BUCKETS
            s0 = math.floor(d0 / span)
            s1 = math.floor(max(d0, d1 - 1e-6) / span)
            for first in range(s0, s1 + 1, batch):
                last = min(s1 + 1, first + batch)
                yield lambda cur, tier=tier, first=first, last=last: (
                    self._rollup_batch(cur, ids, tier, first, last), 0)

        def clear(cur: Any) -> tuple[int, int]:
            cur.executemany(
                self.sql("UPDATE sisock_sum_series SET dirty_t0 = NULL, dirty_t1 = NULL "
                         "WHERE id = ? AND dirty_gen = ?"),
                [(g[0], g[3]) for g in group],
            )
            return len(group), len(group)

        yield clear

    def _rollup_batch(self, cur: Any, ids: Sequence[int], tier: int, first: int, last: int) -> int:
        """Recompute segments ``[first, last)`` of tier ``tier`` of the series ``ids`` from
        the finer tier; rows written."""
        w = S.TIERS[tier]
        span = w * SEGMENT_BUCKETS
        index, fine = self._read_rows(cur, ids, tier - 1, first * span, last * span)
        cur.execute(
            self.sql(f"DELETE FROM sisock_sum_rows WHERE series_id IN ({','.join('?' * len(ids))}) AND tier = ? "
                     "AND seg >= ? AND seg < ?"),
            (*ids, int(w), first, last),
        )
        index, coarse = S.rollup_banded(index, fine, S.TIERS[tier - 1], w)
        keep = (coarse.k >= first * SEGMENT_BUCKETS) & (coarse.k < last * SEGMENT_BUCKETS)
        if not keep.all():
            index, coarse = index[keep], coarse.take(keep)
        if not len(coarse):
            return 0
        segs = np.floor_divide(coarse.k, SEGMENT_BUCKETS)
        cuts = np.flatnonzero((segs[1:] != segs[:-1]) | (index[1:] != index[:-1])) + 1
        bounds = np.concatenate(([0], cuts, [len(coarse)])).tolist()
        items = [(ids[int(index[a])], "", int(segs[a]), coarse.take(slice(a, b)))
                 for a, b in zip(bounds[:-1], bounds[1:])]
        self.writer._write_rows(cur, self.writer._rows(tier, items))
        return len(items)

    def _read_rows(self, cur: Any, ids: Sequence[int], tier: int, start: float, end: float
                   ) -> tuple[np.ndarray, S.Buckets]:
        """Every bucket of the rows of tier ``tier`` of the series ``ids`` overlapping
        ``[start, end)``, unmerged: ``(position in ids, buckets)``. Rows this process
        just wrote come from the writer's memo (not unpacked again)."""
        w = S.TIERS[tier]
        pos = {sid: i for i, sid in enumerate(ids)}
        # in order: rows all from the memo or all unpacked need no sort (mixed, rollup_banded sorts)
        cur.execute(
            self.sql(f"SELECT series_id, source, seg, data FROM sisock_sum_rows "
                     f"WHERE series_id IN ({','.join('?' * len(ids))}) AND tier = ? AND t1 > ? AND t0 < ? "
                     "ORDER BY series_id, t0"),
            (*ids, int(w), start, end),
        )
        memo = self.writer.memo
        known: list[S.Buckets] = []
        known_at: list[int] = []
        blobs: list[bytes] = []
        blob_at: list[int] = []
        for sid, source, seg, blob in cur.fetchall():
            blob = bytes(blob)
            b = memo.take((int(sid), tier, source, int(seg)), zlib.crc32(blob)) if memo is not None else None
            if b is not None:
                known.append(b)
                known_at.append(pos[int(sid)])
            else:
                blobs.append(blob)
                blob_at.append(pos[int(sid)])
        packed: list[S.PackedBuckets] = []
        packed_at: list[int] = []
        rows: list[bytes] = []  # laid out, not compressed
        rows_at: list[int] = []
        if tier == 0:
            take = memo.take if memo is not None else (lambda key, check: None)
            for sid, _, _, got in self._grouped(cur, ids, start, end, take):
                if isinstance(got, S.PackedBuckets):  # as the scan made them: joined in one pass below
                    packed.append(got)
                    packed_at.append(pos[sid])
                elif isinstance(got, S.Buckets):
                    known.append(got)
                    known_at.append(pos[sid])
                else:
                    rows.append(got)
                    rows_at.append(pos[sid])
        try:
            unpacked, counts = S.unpack_many_sized(blobs, w)
            laid_out, row_counts = S.unpack_many_sized(rows, w, compressed=False)
        except UNPACK_ERRORS as exc:
            raise self._corrupt_row(f"a row of tier {tier} of series {min(ids)}..{max(ids)} "
                                    f"in [{start}, {end})", exc) from exc
        pieces = known + [unpacked, laid_out, S.concat_packed(packed)]
        index = np.concatenate((np.repeat(np.array(known_at, dtype=np.int64), [len(b) for b in known]),
                                np.repeat(np.array(blob_at, dtype=np.int64), counts),
                                np.repeat(np.array(rows_at, dtype=np.int64), row_counts),
                                np.repeat(np.array(packed_at, dtype=np.int64), [p.m for p in packed])))
        return index, S.concat(pieces)

    def drop_all(self) -> None:
        """Drop the store's tables (``--rebuild``)."""
        with self.cursor(schema=False) as cur:
            self.writer.drop_tables(cur)
        with self._lock:
            self._schema_ok = False

    def reset(self) -> str:
        """Wipe what this store holds (its contents are unusable; they are recomputed):
        with a namespace, only that namespace's series and rows; else an SQLite file is
        deleted, MariaDB tables are dropped. Returns what was done. Raises
        :class:`SummaryStoreError` when the wipe fails (nothing else is touched)."""
        with self._lock:
            self._unpacked.clear()
            self._unpacked_bytes = 0
            self.writer.forget()
            if self.writer.memo is not None:
                self.writer.memo.clear()
            prefix = self.writer.prefix
            if prefix and not self.damaged_rows:  # wiping our rows cannot mend shared tables
                raise SummaryStoreError(
                    f"summary store {self.describe()} is damaged ({self.damaged}) and shared by other "
                    "nodes: repair it or drop its sisock_sum_* tables (the nodes recompute them)")
            if prefix:
                with self.cursor(write=True) as cur:
                    match = "SUBSTR(name, 1, ?) = ?"
                    cur.execute(self.sql(f"DELETE FROM sisock_sum_rows WHERE series_id IN "
                                         f"(SELECT id FROM sisock_sum_series WHERE {match})"), (len(prefix), prefix))
                    cur.execute(self.sql(f"DELETE FROM sisock_sum_parts WHERE series_id IN "
                                         f"(SELECT id FROM sisock_sum_series WHERE {match})"), (len(prefix), prefix))
                    cur.execute(self.sql("DELETE FROM sisock_sum_groups WHERE SUBSTR(source, 1, ?) = ?"),
                                (len(prefix), prefix))
                    cur.execute(self.sql(f"DELETE FROM sisock_sum_series WHERE {match}"), (len(prefix), prefix))
                done = f"deleted the series of namespace {prefix[:-1]!r}"
            elif self.kind == "sqlite":
                self._drop()
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{self.url.path}{suffix}")
                done = "deleted the file"
            else:
                self.drop_all()
                done = "dropped its tables"
            self.damaged = None
            return done

    def size_bytes(self) -> int:
        """Bytes of packed buckets held (for benchmarks and logs)."""
        with self.cursor() as cur:
            cur.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM sisock_sum_rows")
            rows = int(cur.fetchone()[0])
            cur.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM sisock_sum_groups")
            return rows + int(cur.fetchone()[0])


def default_store_path(state_dir: str | Path, node: str) -> Path:
    """``<state_dir>/summaries/<node>.sqlite``: the store of a node whose summaries the core computes."""
    return Path(state_dir) / "summaries" / f"{node}.sqlite"
