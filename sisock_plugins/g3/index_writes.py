"""The g3 index's writes: one scan of one file in one transaction, files removed, the
tables dropped.

Mixed into :class:`sisock_plugins.g3.index.Index`, which provides the connection
(``_cursor``), the SQL dialect (``sql``, ``_time``, ``_ins_ignore``, ``_least``), the
layout-id cache and the summary writer.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable

from sisock_plugins.g3.index_records import (
    FileUpdate,
    datetime_to_unix,
    layout_digest,
    original_field_name,
    path_key,
    served_field_name,
)
from sisock_plugins.g3.index_schema import TABLES


class IndexWrites:
    """Writes of the index."""

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
            self.summaries.put_bases(
                cur, source,
                [(self.summaries.series_id(cur, name, timeline, kind), buckets)
                 for name, timeline, kind, buckets in update.summaries],
                merge=not update.replace,
            )
            if update.providers or update.blocks:
                changed |= self._add_rows(cur, file_id, update)
            for description, field in affected:
                self._refresh_summary(cur, description, field)
            if changed:
                cur.execute(self.sql("UPDATE sisock_meta SET value = value + 1 WHERE name = ?"), ("generation",))

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
                (served_field_name(d, f), original_field_name(d, f), d, f, m[0], m[1], m[2], m[3])
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
                sorted({(served_field_name(d, f),) for d, f in summary}),
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
        name = served_field_name(description, field)
        if row is None or row[0] is None:
            cur.execute(self.sql("DELETE FROM sisock_fieldsum WHERE name = ?"), (name,))
            cur.execute(self.sql("DELETE FROM description WHERE description = ?"), (name,))
            return
        cur.execute(
            self.sql("UPDATE sisock_fieldsum SET t0 = ?, t1 = ? WHERE name = ?"),
            (datetime_to_unix(row[0]), datetime_to_unix(row[1]), name),
        )

    # -- maintenance ---------------------------------------------------------------

    def drop_all(self) -> None:
        """Drop every table of the index and its summaries (tests; ``sisock scan --rebuild``)."""
        with self._cursor() as cur:
            for table in TABLES:
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
