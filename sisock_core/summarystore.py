"""Where summaries live: tables in SQLite (default) or MariaDB (see :mod:`sisock_core.summaries`).

Tables (prefixed ``sisock_sum_``, so they sit beside a plugin's own, as in the g3 index):

* ``sisock_sum_series(id, name, timeline, kind, t_first, t_last, covered_until, dirty_t0,
  dirty_t1, dirty_gen)``: one row per summarized field. ``covered_until``: every sample
  before it is summarized (NULL: all the samples the plugin serves, as g3 guarantees by
  writing summaries in the transaction that indexes a file). ``dirty_*``: a time range
  whose coarse tiers must be recomputed from the base tier (:meth:`SummaryStore.rollup`).
* ``sisock_sum_rows(series_id, tier, source, seg, t0, t1, m, data)``: packed buckets
  (``tier`` is the bucket width in seconds)
  (:func:`sisock_core.summaries.pack`). Base-tier rows belong to a *source*: a file for
  plugins writing summaries themselves (replaced when the file is read again, deleted with
  it), or ``""`` with one row per day for summaries the core computes. Coarse-tier rows
  hold 1024 buckets each and are always recomputed from the finer tier, never merged
  into, so nothing is ever counted twice.

The store is a cache: dropping it loses nothing (the next scan, or the core's summarizer,
rebuilds it), and a read that finds a coarse segment pending recomputation derives it from
the finer tier on the fly, so no answer is built from stale rows.
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import attrs
import numpy as np

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
#: Base-tier buckets per row of summaries the core computes (one day of 60 s buckets).
CORE_ROW_BUCKETS = 1440
#: Kinds of values summarized (numpy dtype kinds): floats and integers.
SUMMARIZED_KINDS = ("f", "i", "u")

TABLES = ("sisock_sum_series", "sisock_sum_rows", "sisock_sum_meta")
_BASE = int(S.BASE_TIER)
_TIER_LIST = ",".join(str(int(w)) for w in S.TIERS)


class SummaryStoreError(DatabaseError):
    """The summary store failed; answers fall back to raw data."""


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
        "CREATE TABLE IF NOT EXISTS sisock_sum_meta (name VARCHAR(64) PRIMARY KEY, value VARCHAR(255))" + tail,
    ]


class SummaryWriter:
    """Writes summaries through cursors of a connection it does not own.

    A plugin that computes summaries while indexing (g3) writes them with this in the
    same transaction as its own index rows: a file is then either indexed and summarized
    or neither, and an interrupted scan never leaves half a file's buckets behind.
    ``kind`` is the SQL dialect, "sqlite" or "mysql".
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._ids: dict[str, int] = {}

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
        self._ids[name] = sid
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

    def _write_row(self, cur: Any, sid: int, tier: int, source: str, seg: int, b: S.Buckets) -> None:
        w = S.TIERS[tier]
        t0 = float(b.k[0]) * w
        t1 = float(b.k[-1] + 1) * w
        verb = "INSERT OR REPLACE" if self.kind == "sqlite" else "REPLACE"
        cur.execute(
            self.sql(f"{verb} INTO sisock_sum_rows (series_id, tier, source, seg, t0, t1, m, data) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            (sid, int(w), source, seg, t0, t1, len(b), S.pack(b, w)),
        )

    def put_base(self, cur: Any, sid: int, source: str, b: S.Buckets, *, seg: int = 0,
                 merge: bool = False) -> None:
        """Write base-tier buckets of ``source`` (replacing its row ``seg``, or merged into it)."""
        if merge:
            cur.execute(
                self.sql(f"SELECT data FROM sisock_sum_rows WHERE series_id = ? AND tier = {_BASE} AND source = ? "
                         "AND seg = ?"),
                (sid, source, seg),
            )
            row = cur.fetchone()
            if row is not None:
                b = S.merge([S.unpack(bytes(row[0]), S.BASE_TIER), b])
        if len(b) == 0:
            return
        self._write_row(cur, sid, 0, source, seg, b)
        w = S.BASE_TIER
        lo, hi = self._mm()
        d0, d1 = float(b.k[0]) * w, float(b.k[-1] + 1) * w
        t0, t1 = float(np.min(b.t_first)), float(np.max(b.t_last))
        cur.execute(
            self.sql(
                f"UPDATE sisock_sum_series SET t_first = {lo}(COALESCE(t_first, ?), ?), "
                f"t_last = {hi}(COALESCE(t_last, ?), ?), dirty_t0 = {lo}(COALESCE(dirty_t0, ?), ?), "
                f"dirty_t1 = {hi}(COALESCE(dirty_t1, ?), ?), dirty_gen = dirty_gen + 1 WHERE id = ?"
            ),
            (t0, t0, t1, t1, d0, d0, d1, d1, sid),
        )

    def drop_source(self, cur: Any, source: str) -> None:
        """Delete a source's base rows (its file went away or is read again)."""
        cur.execute(self.sql(f"SELECT series_id, t0, t1 FROM sisock_sum_rows WHERE tier = {_BASE} AND source = ?"),
                    (source,))
        for sid, t0, t1 in cur.fetchall():
            self._mark_dirty(cur, int(sid), float(t0), float(t1))
        cur.execute(self.sql(f"DELETE FROM sisock_sum_rows WHERE tier = {_BASE} AND source = ?"), (source,))

    def set_covered(self, cur: Any, sid: int, covered_until: float | None) -> None:
        cur.execute(self.sql("UPDATE sisock_sum_series SET covered_until = ? WHERE id = ?"), (covered_until, sid))


class SummaryStore:
    """A connection to a summary store: reads for the node, rollups and the core's writes.

    Thread-safe (one lock around the connection; queries are short).
    """

    def __init__(self, url: str | DbUrl, *, create: bool = True, cache_mb: float = 16.0) -> None:
        """``cache_mb``: unpacked rows kept between reads (an LRU; rows are checked by
        checksum, so a rewritten row is never served from it)."""
        self.url = url if isinstance(url, DbUrl) else parse_db_url(url)
        self.cache_bytes = int(cache_mb * 2**20)
        self._unpacked: collections.OrderedDict = collections.OrderedDict()
        self._unpacked_bytes = 0
        self.kind = self.url.kind
        self.create = create
        self.writer = SummaryWriter(self.kind)
        self._lock = threading.RLock()
        self._conn: Any = None
        self._schema_ok = False
        self._errors = driver_errors(self.kind)

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

    @contextlib.contextmanager
    def cursor(self, write: bool = False) -> Iterator[Any]:
        """A cursor inside the lock; a write runs in one transaction."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = connect(self.url, create=self.create, what="summary store")
                if self.kind == "mysql":
                    self._conn.ping()
                cur = self._conn.cursor()
                if not self._schema_ok:
                    self.writer.ensure_schema(cur)
                    self._schema_ok = True
            except self._errors as exc:
                self._drop()
                raise SummaryStoreError(f"summary store {self.describe()}: {error_message(exc)}") from exc
            except OSError as exc:
                self._drop()
                raise DatabaseUnavailable(f"summary store {self.describe()}: {exc}") from exc
            try:
                if write:
                    cur.execute("BEGIN IMMEDIATE" if self.kind == "sqlite" else "START TRANSACTION")
                yield cur
                if write:
                    cur.execute("COMMIT")
            except self._errors as exc:
                if write:
                    with contextlib.suppress(Exception):
                        cur.execute("ROLLBACK")
                self.writer.forget()
                self._drop()
                raise SummaryStoreError(f"summary store {self.describe()}: {error_message(exc)}") from exc
            except BaseException:
                if write:
                    with contextlib.suppress(Exception):
                        cur.execute("ROLLBACK")
                self.writer.forget()
                raise
            finally:
                with contextlib.suppress(Exception):
                    cur.close()

    # -- reads -----------------------------------------------------------------------

    def series(self, names: Iterable[str]) -> dict[str, SeriesInfo]:
        """The summarized series among ``names``."""
        names = list(dict.fromkeys(names))
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
                    out[r[1]] = SeriesInfo(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6],
                                           (float(r[7]), float(r[8])) if r[7] is not None else None)
        return out

    def read(self, series: Sequence[SeriesInfo], tier: int, start: float, end: float,
             check: Callable[[], None] | None = None) -> dict[int, S.Buckets]:
        """Buckets of tier ``tier`` lying wholly in ``[start, end)`` (multiples of the tier)."""
        with self.cursor() as cur:
            return self._read(cur, {s.id: s.dirty for s in series}, tier, start, end, check)

    def _unpack(self, key: tuple, blob: bytes, width: float) -> S.Buckets:
        """Unpacked buckets of a row, from a small LRU keyed by row and checksum."""
        crc = zlib.crc32(blob)
        with self._lock:
            hit = self._unpacked.get(key)
            if hit is not None and hit[0] == crc:
                self._unpacked.move_to_end(key)
                return hit[1]
        b = S.unpack(blob, width)
        with self._lock:
            old = self._unpacked.pop(key, None)
            if old is not None:
                self._unpacked_bytes -= old[1].nbytes
            self._unpacked[key] = (crc, b)
            self._unpacked_bytes += b.nbytes
            while self._unpacked_bytes > self.cache_bytes and self._unpacked:
                _, (_, gone) = self._unpacked.popitem(last=False)
                self._unpacked_bytes -= gone.nbytes
        return b

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

    def rollup(self, *, batch: int = 8, should_stop: Callable[[], bool] | None = None) -> int:
        """Recompute the coarse tiers of every dirty range; returns the series done."""
        with self.cursor() as cur:
            cur.execute("SELECT id, dirty_t0, dirty_t1, dirty_gen FROM sisock_sum_series "
                        "WHERE dirty_t0 IS NOT NULL")
            todo = [(int(r[0]), float(r[1]), float(r[2]), int(r[3])) for r in cur.fetchall()]
        done = 0
        for sid, d0, d1, gen in todo:
            if should_stop is not None and should_stop():
                break
            for tier in range(1, len(S.TIERS)):
                w = S.TIERS[tier]
                span = w * SEGMENT_BUCKETS
                s0 = math.floor(d0 / span)
                s1 = math.floor(max(d0, d1 - 1e-6) / span)
                for first in range(s0, s1 + 1, batch):
                    last = min(s1 + 1, first + batch)
                    with self.cursor(write=True) as cur:
                        fine = self._read(cur, {sid: None}, tier - 1, first * span, last * span)[sid]
                        coarse = S.rollup(fine, S.TIERS[tier - 1], w)
                        cur.execute(
                            self.sql("DELETE FROM sisock_sum_rows WHERE series_id = ? AND tier = ? AND seg >= ? "
                                     "AND seg < ?"),
                            (sid, int(w), first, last),
                        )
                        if len(coarse):
                            segs = np.floor_divide(coarse.k, SEGMENT_BUCKETS)
                            cuts = np.flatnonzero(segs[1:] != segs[:-1]) + 1
                            for part in np.split(np.arange(len(coarse)), cuts):
                                self.writer._write_row(cur, sid, tier, "", int(segs[part[0]]), coarse.take(part))
            with self.cursor(write=True) as cur:
                cur.execute(
                    self.sql("UPDATE sisock_sum_series SET dirty_t0 = NULL, dirty_t1 = NULL "
                             "WHERE id = ? AND dirty_gen = ?"),
                    (sid, gen),
                )
            done += 1
        return done

    def drop_all(self) -> None:
        """Drop the store's tables (``--rebuild``)."""
        with self.cursor() as cur:
            self.writer.drop_tables(cur)
        with self._lock:
            self._schema_ok = False

    def size_bytes(self) -> int:
        """Bytes of packed buckets held (for benchmarks and logs)."""
        with self.cursor() as cur:
            cur.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM sisock_sum_rows")
            return int(cur.fetchone()[0])


def default_store_path(state_dir: str | Path, node: str) -> Path:
    """``<state_dir>/summaries/<node>.sqlite``: the store of a node whose summaries the core computes."""
    return Path(state_dir) / "summaries" / f"{node}.sqlite"
