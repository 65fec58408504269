"""The g3 index's queries: what the reader and ``sisock scan`` ask of the database.

Mixed into :class:`sisock_plugins.g3.index.Index`, which provides the connection
(``_cursor``, ``_meta``) and the SQL dialect (``sql``).
"""

from __future__ import annotations

import json
import os
from typing import Iterable

from sisock_plugins.g3.index_records import Chunk, FieldSummary, FileRow, Layout, path_key

_FILE_COLUMNS = "id, path, size, mtime_ns, inode, byte_offset, frames, status, error, state"


class IndexReads:
    """Reads of the index (each in its own short transaction)."""

    def generation(self) -> int:
        """A counter bumped by every change of the index (readers cache by it)."""
        with self._cursor() as cur:
            return int(self._meta(cur, "generation") or 0)

    def files(self) -> dict[str, FileRow]:
        """Every file the index knows, by path."""
        with self._cursor() as cur:
            cur.execute(f"SELECT {_FILE_COLUMNS} FROM sisock_files")
            return {r[1]: FileRow(*r) for r in cur.fetchall()}

    def file(self, path: str) -> FileRow | None:
        with self._cursor() as cur:
            cur.execute(
                self.sql(f"SELECT {_FILE_COLUMNS} FROM sisock_files WHERE path_key = ?"),
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

    def chunks(self, layout_ids: Iterable[int], start: float, end: float) -> list[Chunk]:
        """The (file, layout) pairs with data blocks that may fall in ``[start, end)``."""
        ids = sorted(set(layout_ids))
        if not ids:
            return []
        with self._cursor() as cur:
            span = self._meta(cur, "max_frame_span") or 0.0
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
