"""The g3 index's tables, written once and rendered for SQLite or MariaDB (pure).

Each table is its columns (with ``{serial}``, ``{time}`` and ``{text}`` standing for the
types that differ between the engines), its unique keys and its plain indexes.
:func:`ddl` turns them into the ``CREATE TABLE``/``CREATE INDEX`` statements of one engine.
What the columns mean is described in :mod:`sisock_plugins.g3.index`.
"""

from __future__ import annotations

import attrs

from sisock_core.summarystore import TABLES as SUMMARY_TABLES

#: Bumped when our tables change incompatibly. 2: summaries (``sisock_sum_*``) written
#: with the index; an index of an older version is dropped and rebuilt from the files.
SCHEMA_VERSION = 2

#: The column types that differ: an auto-numbered primary key, a time of the original
#: ``fields`` table (SQLite's text ``YYYY-MM-DD HH:MM:SS.ffffff`` sorts like a DATETIME),
#: and text that may exceed 64 KiB.
_TYPES = {
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "time": "TEXT", "text": "TEXT"},
    "mysql": {"serial": "INT AUTO_INCREMENT PRIMARY KEY", "time": "DATETIME(6)", "text": "MEDIUMTEXT"},
}
_MYSQL_TAIL = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"


@attrs.frozen
class Table:
    """One table: ``columns`` (SQL with the ``_TYPES`` placeholders), named unique keys
    and plain indexes (name -> columns), and a composite primary key if any."""

    name: str
    columns: str
    unique: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    indexes: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    primary_key: tuple[str, ...] = ()


#: The index's own tables, in creation order (the original scanner's three first).
INDEX_TABLES = (
    Table("feeds",
          "id {serial}, filename VARCHAR(255), path VARCHAR(1024), prov_id INT, "
          "description VARCHAR(255), scanned BOOL NOT NULL DEFAULT 0, file_id INT",
          unique={"feeds_file_prov": ("file_id", "prov_id", "description")},
          indexes={"feeds_description": ("description",)}),
    Table("fields", "feed_id INT NOT NULL, field VARCHAR(255), start {time}, end {time}",
          unique={"fields_feed_field": ("feed_id", "field")},
          indexes={"fields_start": ("start",), "fields_end": ("end",), "fields_field": ("field",)}),
    Table("description", "description VARCHAR(511) PRIMARY KEY"),
    Table("sisock_meta", "name VARCHAR(64) PRIMARY KEY, value DOUBLE"),
    Table("sisock_files",
          "id {serial}, path_key CHAR(40) NOT NULL, path TEXT NOT NULL, size BIGINT, "
          "mtime_ns BIGINT, inode BIGINT, byte_offset BIGINT, frames INT, status VARCHAR(16), "
          "error TEXT, state {text}, t0 DOUBLE, t1 DOUBLE, scanned_at DOUBLE",
          unique={"sisock_files_path": ("path_key",)}),
    Table("sisock_layouts",
          "id {serial}, digest CHAR(40) NOT NULL, description VARCHAR(255), "
          "block_name VARCHAR(255), fields {text}",
          unique={"sisock_layouts_digest": ("digest",)}),
    Table("sisock_frames",
          "file_id INT NOT NULL, byte_offset BIGINT NOT NULL, block_index INT NOT NULL, "
          "prov_id INT, layout_id INT NOT NULL, t0 DOUBLE, t1 DOUBLE, n INT",
          indexes={"sisock_frames_layout_t0": ("layout_id", "t0")},
          primary_key=("file_id", "byte_offset", "block_index")),
    Table("sisock_fieldsum",
          "name VARCHAR(511) PRIMARY KEY, lname VARCHAR(511), description VARCHAR(255), "
          "field VARCHAR(255), type VARCHAR(8), timeline VARCHAR(511), t0 DOUBLE, t1 DOUBLE",
          indexes={"sisock_fieldsum_lname": ("lname",), "sisock_fieldsum_t1": ("t1",)}),
)

#: Every table of the index (the summaries' are the core's, :mod:`sisock_core.summarystore`).
TABLES = tuple(t.name for t in INDEX_TABLES) + SUMMARY_TABLES


def ddl(kind: str) -> list[str]:
    """The statements creating the index's tables (if missing) on ``kind`` ("sqlite" or
    "mysql"). MariaDB declares indexes inside ``CREATE TABLE``; SQLite creates them after."""
    types = _TYPES[kind]
    out = []
    for t in INDEX_TABLES:
        parts = [t.columns.format(**types)]
        if t.primary_key:
            parts.append(f"PRIMARY KEY ({', '.join(t.primary_key)})")
        for name, cols in t.unique.items():
            parts.append(f"{'UNIQUE' if kind == 'sqlite' else 'UNIQUE KEY ' + name} ({', '.join(cols)})")
        if kind == "mysql":
            parts += [f"KEY {name} ({', '.join(cols)})" for name, cols in t.indexes.items()]
        out.append(f"CREATE TABLE IF NOT EXISTS {t.name} ({', '.join(parts)})"
                   + (_MYSQL_TAIL if kind == "mysql" else ""))
        if kind == "sqlite":
            out += [f"CREATE INDEX IF NOT EXISTS {name} ON {t.name} ({', '.join(cols)})"
                    for name, cols in t.indexes.items()]
    return out
