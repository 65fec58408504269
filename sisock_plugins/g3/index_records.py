"""What the g3 index stores, as Python values (pure: no database, no Twisted).

File rows, layouts, served-field summaries, chunks (the reader's unit) and the update one
scan of one file writes; the status of a file; how times and names are spelled in the
tables. The tables themselves: :mod:`sisock_plugins.g3.index_schema`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Sequence

import attrs

__all__ = [
    "STATUS_EMPTY", "STATUS_ERROR", "STATUS_MISSING", "STATUS_NOT_HK", "STATUS_OK", "STATUS_PARTIAL",
    "Chunk", "FieldSummary", "FileRow", "FileUpdate", "Layout",
    "datetime_to_unix", "layout_digest", "original_field_name", "path_key", "served_field_name",
    "unix_to_datetime",
]
#: Status of a file in ``sisock_files``.
STATUS_OK = "ok"  #: every frame indexed
STATUS_PARTIAL = "partial"  #: indexed up to the last complete frame (being written, or cut)
STATUS_ERROR = "error"  #: unreadable from the start (corrupt, not a .g3 file)
STATUS_NOT_HK = "not_hk"  #: a valid .g3 file without housekeeping frames
STATUS_EMPTY = "empty"  #: zero bytes
STATUS_MISSING = "missing"  #: vanished while being scanned (never stored)

_UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1)



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


def served_field_name(description: str, field: str) -> str:
    """``<feed description>.<field>`` exactly as spelled in the files: the name we serve,
    and what the original g3 scanner stored in its ``description`` table."""
    return f"{description}.{field}"


def original_field_name(description: str, field: str) -> str:
    """The lower-cased spelling older sisock readers served (field lower-cased, spaces to
    ``_``); still accepted in ``get_data``."""
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
