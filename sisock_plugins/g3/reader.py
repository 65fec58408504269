"""Answering get_fields / get_data from the index and the .g3 files (no Twisted).

* :meth:`HKReader.list_fields` reads the index only (never a file).
* :meth:`HKReader.read_range` asks the index which data blocks of which files hold
  the requested fields in the time range, reads just those frames (seeking to
  their byte offsets) and decodes them with so3g/spt3g. Decoded frames are kept in
  a bounded LRU cache (:class:`FrameCache`, size in MB), so a dashboard refreshing
  the same window does not read the files again.

Field names are ``<provider description>.<field>`` (for example
``observatory.LSA22YE.feeds.temperatures.Channel_01_T``), as so3g's ``HKArchive``
and the original g3 reader name them. ``read_range`` also accepts:

* the original reader's spelling, with the field lower-cased and spaces as ``_``
  (``observatory.LSA22YE.feeds.temperatures.channel_01_t``), so old dashboards work;
* so3g's short names: any name whose ``.``-separated parts appear in order in
  exactly one full name (``LSA22YE.Channel_01_T``). A short name matching several
  fields is an error naming them.

Answers are keyed by the name asked for. Fields sampled together (one block of one
provider) share a timeline named ``<provider description>.<block name>``.
"""

from __future__ import annotations

import collections
import threading
from typing import Sequence

import numpy as np
from twisted.logger import Logger

from sisock_core.model import Field, Timeline
from sisock_plugins.g3.index import FieldSummary, FrameRef, Index, Layout, original_field_name
from sisock_plugins.g3.scan import Decoded, FrameReader

log = Logger(namespace="sisock_plugins.g3.reader")


class AmbiguousField(ValueError):
    """A short field name matches several fields."""


def is_sub_seq(full: Sequence[str], sub: Sequence[str]) -> bool:
    """Whether ``sub`` appears in ``full`` in order (not necessarily adjacent)."""
    it = iter(full)
    return all(any(x == y for y in it) for x in sub)


class FrameCache:
    """A thread-safe LRU of decoded frames, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def size_of(blocks: dict[int, Decoded]) -> int:
        return sum(t.nbytes + sum(v.nbytes for v in cols.values()) + 200 for t, cols in blocks.values()) + 200

    def get(self, key: tuple) -> dict[int, Decoded] | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value[0]

    def put(self, key: tuple, blocks: dict[int, Decoded]) -> None:
        size = self.size_of(blocks)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._items[key] = (blocks, size)
            self.bytes += size
            while self.bytes > self.max_bytes and self._items:
                _, (_, s) = self._items.popitem(last=False)
                self.bytes -= s

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)


class _Catalog:
    """The index's field list and layouts, reloaded when its generation changes."""

    def __init__(self, generation: int, summaries: list[FieldSummary], layouts: dict[int, Layout]) -> None:
        self.generation = generation
        self.by_name = {s.name: s for s in summaries}
        self.by_lname: dict[str, list[str]] = {}
        for s in summaries:
            self.by_lname.setdefault(original_field_name(s.description, s.field), []).append(s.name)
        self.tokens = [(s.name, s.name.split(".")) for s in summaries]
        # (description, field) -> [layout ids holding it]
        self.layouts_of: dict[tuple[str, str], list[int]] = {}
        for lay in layouts.values():
            for f, _ in lay.fields:
                self.layouts_of.setdefault((lay.description, f), []).append(lay.id)
        self.layouts = layouts
        self.resolved: dict[str, str | None] = {}

    def resolve(self, name: str) -> str | None:
        """The full name ``name`` stands for, or None if unknown."""
        if name in self.resolved:
            return self.resolved[name]
        full: str | None = None
        if name in self.by_name:
            full = name
        elif name in self.by_lname:
            full = sorted(self.by_lname[name])[0]
        else:
            want = name.split(".")
            matches = [n for n, toks in self.tokens if is_sub_seq(toks, want)]
            if len(matches) > 1:
                shown = ", ".join(matches[:5]) + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
                raise AmbiguousField(f"field name {name!r} is ambiguous: it matches {shown}")
            full = matches[0] if matches else None
        self.resolved[name] = full
        return full


class HKReader:
    """Reads housekeeping data through an :class:`Index`."""

    def __init__(self, index: Index, cache_mb: float = 256.0) -> None:
        self.index = index
        self.cache = FrameCache(int(cache_mb * 1024 * 1024))
        self._catalog: _Catalog | None = None
        self._lock = threading.Lock()

    # -- catalog -----------------------------------------------------------------

    def catalog(self) -> _Catalog:
        generation = self.index.generation()
        with self._lock:
            cat = self._catalog
            if cat is not None and cat.generation == generation:
                return cat
        cat = _Catalog(generation, self.index.field_summaries(), self.index.layouts())
        with self._lock:
            self._catalog = cat
        return cat

    # -- get_fields ----------------------------------------------------------------

    def list_fields(self, start: float, end: float) -> list[Field]:
        """Fields with samples that may fall in ``[start, end)``, from the index."""
        return [
            Field(name=s.name, timeline=s.timeline, type=s.type)  # type: ignore[arg-type]
            for s in self.index.field_summaries(start, end)
        ]

    # -- get_data ------------------------------------------------------------------

    def read_range(self, fields: Sequence[str], start: float, end: float) -> dict[str, Timeline]:
        """Full-resolution samples of ``fields`` in ``[start, end)``, by timeline."""
        cat = self.catalog()
        wanted: dict[str, list[str]] = {}  # full name -> names asked for
        for name in dict.fromkeys(fields):
            full = cat.resolve(name)
            if full is not None:
                wanted.setdefault(full, []).append(name)
        if not wanted:
            return {}
        # Which layouts (provider blocks) hold each field, and where each field is in them.
        layout_ids: set[int] = set()
        field_layouts: dict[str, list[int]] = {}
        for full in wanted:
            s = cat.by_name[full]
            ids = cat.layouts_of.get((s.description, s.field), [])
            field_layouts[full] = ids
            layout_ids.update(ids)
        refs = self.index.frames(layout_ids, start, end)
        refs.sort(key=lambda r: (r.t0, r.path, r.offset, r.block_index))
        # Segments of each field, then fields with identical segments share a timeline.
        segments: dict[str, list[FrameRef]] = {}
        for full, ids in field_layouts.items():
            idset = set(ids)
            segs = [r for r in refs if r.layout_id in idset]
            if segs:
                segments[full] = segs
        groups: dict[tuple, list[str]] = {}
        for full, segs in segments.items():
            key = tuple((r.file_id, r.offset, r.block_index) for r in segs)
            groups.setdefault(key, []).append(full)
        decoded = self._decode({(r.file_id, r.path, r.offset) for segs in segments.values() for r in segs})
        out: dict[str, Timeline] = {}
        for members in groups.values():
            segs = segments[members[0]]
            timeline = self._assemble(segs, members, decoded, cat, start, end)
            if timeline is None:
                continue
            base = cat.by_name[members[0]].timeline
            name, k = base, 2
            while name in out:
                name, k = f"{base}#{k}", k + 1
            data = {}
            for full in members:
                for asked in wanted[full]:
                    data[asked] = timeline.data[full]
            out[name] = Timeline(t=timeline.t, data=data, finalized_until=timeline.finalized_until)
        return out

    def _decode(self, frames: set[tuple[int, str, int]]) -> dict[tuple[int, int], dict[int, Decoded]]:
        """Decoded blocks of each (file id, offset), from the cache or the files."""
        out: dict[tuple[int, int], dict[int, Decoded]] = {}
        by_file: dict[tuple[int, str], list[int]] = {}
        for file_id, path, offset in frames:
            hit = self.cache.get((file_id, offset))
            if hit is not None:
                out[(file_id, offset)] = hit
            else:
                by_file.setdefault((file_id, path), []).append(offset)
        for (file_id, path), offsets in sorted(by_file.items(), key=lambda kv: kv[0][1]):
            try:
                reader = FrameReader(path)
                for offset in sorted(offsets):
                    blocks = reader.blocks_at(offset)
                    out[(file_id, offset)] = blocks
                    self.cache.put((file_id, offset), blocks)
            except (RuntimeError, OSError) as exc:
                # The file changed or vanished since it was indexed; the scanner will
                # catch up. Serve what can be read.
                log.warn("cannot read {path} (indexed earlier): {error}; its data is left out",
                         path=path, error=str(exc))
        return out

    @staticmethod
    def _assemble(segs: list[FrameRef], members: list[str], decoded: dict[tuple[int, int], dict[int, Decoded]],
                  cat: _Catalog, start: float, end: float) -> Timeline | None:
        ts: list[np.ndarray] = []
        cols: dict[str, list[np.ndarray]] = {m: [] for m in members}
        shorts = {m: cat.by_name[m].field for m in members}
        for r in segs:
            blocks = decoded.get((r.file_id, r.offset))
            if blocks is None or r.block_index not in blocks:
                continue
            t, values = blocks[r.block_index]
            if any(shorts[m] not in values for m in members):
                continue
            lo, hi = 0, t.size
            if r.t0 < start:
                lo = int(np.searchsorted(t, start, side="left"))
            if r.t1 >= end:
                hi = int(np.searchsorted(t, end, side="left"))
            if hi <= lo:
                continue
            ts.append(t[lo:hi])
            for m in members:
                cols[m].append(values[shorts[m]][lo:hi])
        if not ts:
            return None
        t = np.concatenate(ts) if len(ts) > 1 else ts[0].copy()
        data = {m: (np.concatenate(v) if len(v) > 1 else v[0].copy()) for m, v in cols.items()}
        if t.size > 1 and np.any(t[1:] < t[:-1]):
            order = np.argsort(t, kind="stable")
            t = t[order]
            data = {m: v[order] for m, v in data.items()}
        return Timeline(t=t, data=data, finalized_until=float(t[-1]))

