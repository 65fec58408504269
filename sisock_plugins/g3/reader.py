"""Answering get_fields / get_data from the index and the .g3 files (no Twisted).

* :meth:`HKReader.list_fields` reads the index only (never a file).
* :meth:`HKReader.read_range` asks the index which files hold blocks of the
  requested fields in the time range, reads the blocks of those fields' providers in
  those files only (seeking to the byte offsets the scanner recorded) and decodes
  them with spt3g, converting only the requested fields to numpy. The unit of work
  and of caching is a "chunk", one provider block layout in one file (an hour with
  the aggregator's default rotation). Decoded chunks are kept in a bounded LRU cache
  (:class:`FrameCache`, size in MB), so a dashboard refreshing or moving its window
  does not read the files again.

Field names are ``<provider description>.<field>`` (for example
``observatory.LSA22YE.feeds.temperatures.Channel_01_T``), as so3g's ``HKArchive``
and the original g3 reader name them. ``read_range`` also accepts:

* the original reader's spelling, with the field lower-cased and spaces as ``_``
  (``observatory.LSA22YE.feeds.temperatures.channel_01_t``), so old dashboards work;
* so3g's short names: any name whose ``.``-separated parts appear in order in
  exactly one full name (``LSA22YE.Channel_01_T``), also with the field spelled as the
  datafeed node serves it (``LSA22YE.channel_01_t``). A short name matching several
  fields is an error naming them.

Answers are keyed by the name asked for. Fields sampled together (one block of one
provider) share a timeline named ``<provider description>.<block name>``.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from typing import Callable, Iterator, Sequence

import numpy as np
from twisted.logger import Logger

from sisock_core.cancel import check
from sisock_core.lanes import HEAVY_FIELD_SECONDS
from sisock_core.model import Field, Timeline
from sisock_plugins.g3.index import Chunk, FieldSummary, Index, Layout, original_field_name
from sisock_plugins.g3.scan import FrameReader

log = Logger(namespace="sisock_plugins.g3.reader")


class AmbiguousField(ValueError):
    """A short field name matches several fields."""


def is_sub_seq(full: Sequence[str], sub: Sequence[str]) -> bool:
    """Whether ``sub`` appears in ``full`` in order (not necessarily adjacent)."""
    it = iter(full)
    return all(any(x == y for y in it) for x in sub)


class Lease:
    """The decoded arrays one request uses (from the cache or decoded for it) until it ends.

    ``small``: the request reads at most :data:`sisock_core.lanes.HEAVY_FIELD_SECONDS` of
    raw data (a light call): it never waits in :meth:`FrameCache.admit`.
    """

    def __init__(self, small: bool = False) -> None:
        self.values: list[np.ndarray] = []
        self.small = small


class FrameCache:
    """A thread-safe LRU of decoded arrays, bounded in bytes, in flight as well as at rest.

    Keys are ``(file id, layout id, indexed size, field)``, with field ``""`` for the
    times: a chunk's times and each of its fields are cached separately, so a query
    decodes only the fields it needs.

    Requests take the arrays they use under a :class:`Lease` until they end. Arrays in
    use are never evicted (that would free nothing); an array too large to cache counts
    in :attr:`held` while in use. Eviction keeps ``bytes + held <= max_bytes`` as far as
    arrays not in use allow, and a request starts decoding only while the arrays in use
    (:attr:`in_use`) are below ``max_bytes`` (:meth:`admit`): decoded data beyond the
    bound is only what requests already decoding add while they finish.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self.bytes = 0  #: at rest (in use or not)
        self.held = 0  #: in use and not at rest (too large, or replaced)
        self.pinned = 0  #: at rest and in use
        self.hits = 0
        self.misses = 0
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._users: dict[int, list] = {}  # id(array) -> [size, leases using it, at rest]
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)

    @property
    def in_use(self) -> int:
        """Bytes of the arrays requests in flight use."""
        return self.pinned + self.held

    @staticmethod
    def size_of(value: np.ndarray) -> int:
        return int(value.nbytes) + 200

    def _use(self, lease: Lease | None, value: np.ndarray, size: int, at_rest: bool) -> None:
        if lease is None:
            return
        user = self._users.get(id(value))
        if user is None:
            user = self._users[id(value)] = [size, 0, at_rest]
            if at_rest:
                self.pinned += size
            else:
                self.held += size
        user[1] += 1
        lease.values.append(value)

    def get(self, key: tuple, lease: Lease | None = None) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            self._use(lease, value[0], value[1], True)
            return value[0]

    def put(self, key: tuple, value: np.ndarray, lease: Lease | None = None) -> None:
        size = self.size_of(value)
        with self._lock:
            if size > self.max_bytes:
                self._use(lease, value, size, False)
                self._trim()
                return
            old = self._items.pop(key, None)
            if old is not None:
                self._dropped(*old)
            self._items[key] = (value, size)
            self.bytes += size
            self._use(lease, value, size, True)
            self._trim()

    def _dropped(self, value: np.ndarray, size: int) -> None:
        self.bytes -= size
        user = self._users.get(id(value))
        if user is not None and user[2]:
            user[2] = False
            self.pinned -= size
            self.held += size

    def _trim(self) -> None:
        """Evict the least recently used arrays nobody uses until within the bound."""
        while self.bytes + self.held > self.max_bytes and self.bytes > self.pinned:
            key, (value, size) = self._items.popitem(last=False)
            if id(value) in self._users:  # in use: keep it (newest end)
                self._items[key] = (value, size)
            else:
                self.bytes -= size

    def admit(self, lease: Lease, check: Callable[[], None] = lambda: None) -> None:
        """Wait (calling ``check`` between waits) until a request may decode: at once if it
        is small or already uses arrays (so requests never wait for each other in a
        circle), else while the arrays in use fill the bound."""
        with self._lock:
            while not lease.small and not lease.values and self.in_use >= self.max_bytes > 0:
                self._released.wait(0.05)
                check()

    def release(self, lease: Lease) -> None:
        """The request ended: its arrays may be evicted again."""
        with self._lock:
            for value in lease.values:
                user = self._users.get(id(value))
                if user is None:
                    continue
                user[1] -= 1
                if user[1] == 0:
                    del self._users[id(value)]
                    if user[2]:
                        self.pinned -= user[0]
                    else:
                        self.held -= user[0]
            lease.values.clear()
            self._trim()
            self._released.notify_all()

    def clear(self) -> None:
        with self._lock:
            for value, size in list(self._items.values()):
                self._dropped(value, size)
            self._items.clear()

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
            if not matches:  # the datafeed node's spelling, e.g. LSA22YE.channel_01_t
                matches = [n for n, toks in self.tokens
                           if is_sub_seq(toks[:-1] + [toks[-1].lower().replace(" ", "_")], want)]
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
        self._flights: dict[int, list] = {}  # file id -> [lock, requests using it]

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

    def resolve(self, names: Sequence[str]) -> dict[str, str]:
        """Full names of the names that are other spellings (unknown or ambiguous: left out)."""
        cat = self.catalog()
        out = {}
        for name in names:
            try:
                full = cat.resolve(name)
            except AmbiguousField:
                continue
            if full is not None and full != name:
                out[name] = full
        return out

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
        # Which layouts (provider blocks) hold each field.
        field_layouts: dict[str, set[int]] = {}
        for full in wanted:
            s = cat.by_name[full]
            field_layouts[full] = set(cat.layouts_of.get((s.description, s.field), []))
        layout_ids = set().union(*field_layouts.values())
        chunks = self.index.chunks(layout_ids, start, end)
        chunks.sort(key=lambda c: (c.t0, c.path, c.layout_id))
        # Chunks of each field; fields with the same chunks share a timeline.
        groups: dict[tuple, list[str]] = {}
        for full, ids in field_layouts.items():
            mine = tuple(c for c in chunks if c.layout_id in ids)
            if mine:
                groups.setdefault(mine, []).append(full)
        needed: dict[int, list[str]] = {}
        for group_chunks, members in groups.items():
            for c in group_chunks:
                have = needed.setdefault(c.layout_id, [])
                for m in members:
                    if cat.by_name[m].field not in have:
                        have.append(cat.by_name[m].field)
        lease = Lease(small=(end - start) * len(wanted) <= HEAVY_FIELD_SECONDS)
        try:
            return self._answer(groups, wanted, cat, start, end,
                                self._decode(list(dict.fromkeys(c for g in groups for c in g)), needed, lease))
        finally:
            self.cache.release(lease)

    def _answer(self, groups: dict, wanted: dict, cat: _Catalog, start: float, end: float,
                decoded: dict) -> dict[str, Timeline]:
        out: dict[str, Timeline] = {}
        for group_chunks, members in groups.items():
            timeline = self._assemble(list(group_chunks), members, cat, start, end, decoded)
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

    def _cached(self, chunk: Chunk, fields: list[str],
                lease: Lease | None = None) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """A chunk's times (None if not cached) and those of ``fields`` the cache holds."""
        base = (chunk.file_id, chunk.layout_id, chunk.version)
        t = self.cache.get(base + ("",), lease)
        cols = {}
        if t is not None:
            for f in fields:
                v = self.cache.get(base + (f,), lease)
                if v is not None and v.size == t.size:
                    cols[f] = v
        return t, cols

    def _lookup(self, chunks: list[Chunk], fields: dict[int, list[str]], out: dict,
                lease: Lease) -> list[tuple[Chunk, list[str]]]:
        """Put what the cache holds of ``chunks`` in ``out``; return the chunks with the
        fields still to decode."""
        todo = []
        for c in chunks:
            t, cols = self._cached(c, fields[c.layout_id], lease)
            missing = [f for f in fields[c.layout_id] if f not in cols] if t is not None else fields[c.layout_id]
            out[(c.file_id, c.layout_id)] = (t, cols)
            if t is None or missing:
                todo.append((c, missing))
        return todo

    @contextlib.contextmanager
    def _decoding(self, file_id: int) -> Iterator[None]:
        """One request at a time decodes a file (single flight): the others wait (stopping if
        their caller gives up) and then find its chunks in the cache."""
        with self._lock:
            flight = self._flights.setdefault(file_id, [threading.Lock(), 0])
            flight[1] += 1
        try:
            while not flight[0].acquire(timeout=0.05):
                check()
            try:
                yield
            finally:
                flight[0].release()
        finally:
            with self._lock:
                flight[1] -= 1
                if flight[1] == 0:
                    del self._flights[file_id]

    def _decode(self, chunks: list[Chunk], fields: dict[int, list[str]],
                lease: Lease | None = None) -> dict[tuple[int, int], tuple]:
        """Times and fields of every chunk, from the cache or the files: the chunks of one
        file are read together, each frame once, by one request at a time, and only the
        fields the cache lacks (a file is the unit :func:`~sisock_core.cancel.check`
        stops between)."""
        lease = lease if lease is not None else Lease()
        out: dict[tuple[int, int], tuple] = {}
        by_file: dict[tuple[int, str], list[Chunk]] = {}
        for c in chunks:
            by_file.setdefault((c.file_id, c.path), []).append(c)
        for (file_id, path), file_chunks in by_file.items():
            if not self._lookup(file_chunks, fields, out, lease):
                continue
            check()  # the caller may have given up: stop between files
            self.cache.admit(lease, check)  # (never while waiting for a file another request decodes)
            with self._decoding(file_id):
                # what another request decoded while this one waited is in the cache now
                todo = self._lookup(file_chunks, fields, out, lease)
                if todo:
                    self._decode_file(file_id, path, todo, fields, out, lease)
        return out

    def _decode_file(self, file_id: int, path: str, todo: list[tuple[Chunk, list[str]]],
                     fields: dict[int, list[str]], out: dict, lease: Lease) -> None:
        try:
            requests = {c.layout_id: (self.index.chunk_frames(file_id, c.layout_id), missing)
                        for c, missing in todo}
            decoded = FrameReader(path).read_many(requests)
        except Exception as exc:  # RuntimeError, OSError, KeyError, MemoryError from spt3g
            # Changed or vanished since it was indexed; the scanner will catch up.
            log.warn("cannot read {path} (indexed earlier): {error}; its data is left out",
                     path=path, error=str(exc) or type(exc).__name__)
            for c, _ in todo:
                out.pop((c.file_id, c.layout_id), None)
            return
        for c, _ in todo:
            t_new, new = decoded[c.layout_id]
            t, cols = out[(c.file_id, c.layout_id)]
            base = (c.file_id, c.layout_id, c.version)
            if t is None or t.size != t_new.size:  # not cached, or a stale entry
                if t is not None and len(new) < len(fields[c.layout_id]):
                    t_new, new = FrameReader(path).read_many(
                        {0: (requests[c.layout_id][0], fields[c.layout_id])})[0]
                t, cols = t_new, {}
                self.cache.put(base + ("",), t, lease)
            for f, v in new.items():
                cols[f] = v
                self.cache.put(base + (f,), v, lease)
            out[(c.file_id, c.layout_id)] = (t, cols)

    def _assemble(self, chunks: list[Chunk], members: list[str], cat: _Catalog,
                  start: float, end: float, decoded: dict) -> Timeline | None:
        shorts = {m: cat.by_name[m].field for m in members}
        ts: list[np.ndarray] = []
        cols: dict[str, list[np.ndarray]] = {m: [] for m in members}
        for chunk in chunks:
            got = decoded.get((chunk.file_id, chunk.layout_id))
            if got is None:
                continue
            t, values = got
            if t.size == 0:
                continue
            lo, hi = 0, t.size
            if t[0] < start:
                lo = int(np.searchsorted(t, start, side="left"))
            if t[-1] >= end:
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
