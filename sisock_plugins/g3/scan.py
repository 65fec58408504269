"""Reading housekeeping .g3 files frame by frame (pure: no Twisted, no database).

:func:`scan_file` reads the session, status and data frames of one file written
by the OCS aggregator (so3g's ``HKSessionHelper``) from a byte offset, and returns
what the index needs: the providers the file lists and, for every data block, its
byte offset, provider, block name, fields with their types, first and last sample
time and sample count. All three HK schema versions are read natively:

* v0 (2019 to May 2020): blocks are ``so3g.IrregBlockDouble`` (float times, float data);
* v1: blocks are ``G3TimesampleMap`` without names;
* v2 (July 2020 on): ``G3TimesampleMap`` plus ``block_names``.

Blocks without a name get so3g's ``HKTranslator`` name, ``block_for_<first field>``.

A file still being written ends in an incomplete frame: reading stops at the last
complete frame, the result says how far it got (``offset``) and the provider state
there (``state``), and a later call resumes from that offset.

:func:`decode_frame` reads one frame back (at an offset the index recorded) into
numpy arrays; the reader uses it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import attrs
import numpy as np

import so3g  # noqa: F401  (so3g must be imported before spt3g.core: the other order crashes)
from spt3g import core

# spt3g logs read errors itself (to stderr, in its own format); we report them.
core.G3Logger.global_logger = core.G3NullLogger()

_HK = core.G3FrameType.Housekeeping
_SECOND = core.G3Units.s

SESSION, STATUS, DATA = 0, 1, 2

from sisock_core.summaries import BASE_TIER, summarize_blocks, summarize_timelines  # noqa: E402
from sisock_plugins.g3.index import (  # noqa: E402
    STATUS_EMPTY,
    STATUS_ERROR,
    STATUS_MISSING,
    STATUS_NOT_HK,
    STATUS_OK,
    STATUS_PARTIAL,
)

#: Block entry of a scan: (frame byte offset, block index, prov_id, provider
#: description, block name, ((field, type), ...), first time, last time, samples).
Block = tuple[int, int, int, str, str, tuple[tuple[str, str], ...], float, float, int]


@attrs.define
class ScanState:
    """The HK stream state at a byte offset: what a resumed scan needs to know."""

    session_id: int | None = None
    providers: dict[int, str] = attrs.field(factory=dict)
    hk_frames: int = 0  #: housekeeping frames seen so far in the file
    head: str | None = None  #: digest of the file's first bytes (a rewritten file differs)

    def to_json(self) -> str:
        return json.dumps(
            {"session_id": self.session_id, "providers": {str(k): v for k, v in self.providers.items()},
             "hk_frames": self.hk_frames, "head": self.head},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None) -> "ScanState":
        if not text:
            return cls()
        d = json.loads(text)
        return cls(
            session_id=d.get("session_id"),
            providers={int(k): v for k, v in (d.get("providers") or {}).items()},
            hk_frames=int(d.get("hk_frames") or 0),
            head=d.get("head"),
        )


@attrs.define
class ScanResult:
    """What one read of one file found (from ``start_offset`` to ``offset``)."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    start_offset: int
    offset: int  #: byte just after the last complete frame read
    frames: int  #: complete frames read
    status: str
    error: str | None
    state: ScanState
    providers: list[tuple[int, str]] = attrs.field(factory=list)
    blocks: list[Block] = attrs.field(factory=list)
    #: data frames skipped because no status frame had announced their provider
    orphan_frames: int = 0
    #: typed fields by (provider, keys), filled while reading
    types: dict = attrs.field(factory=dict, repr=False, eq=False)
    #: base-tier summaries of the numeric fields read: (field name, timeline, dtype kind, buckets),
    #: the buckets as :class:`sisock_core.summaries.PackedBuckets` where the compiled pass made them
    summaries: list = attrs.field(factory=list, repr=False, eq=False)
    #: decoded numeric samples by (description, block name), while reading
    collected: dict | None = attrs.field(default=None, repr=False, eq=False)

    @property
    def bytes_read(self) -> int:
        return max(0, self.offset - self.start_offset)


def field_type(values: Any) -> str:
    """sisock's type of a block's vector: "number", "string" or "bool"."""
    if isinstance(values, core.G3VectorString):
        return "string"
    if isinstance(values, core.G3VectorBool):
        return "bool"
    return "number"


def _block_info(block: Any, types: dict | None = None, owner: str = ""
                ) -> tuple[list[str], tuple[tuple[str, str], ...], float, float, int, Any] | None:
    """Fields (sorted keys), typed fields, first and last time, count, the time vector
    (None for schema v0); None if unusable.

    ``types`` caches the typed fields by ``(owner, keys)``: reading each vector only
    to learn its type costs more than the rest of the scan.
    """
    if isinstance(block, core.G3TimesampleMap):
        times = block.times
        n = len(times)
        if n == 0:
            return None
        keys = list(block.keys())
        key = (owner, tuple(keys))
        fields = types.get(key) if types is not None else None
        if fields is None:
            fields = tuple((k, field_type(block[k])) for k in keys)
            if types is not None:
                types[key] = fields
        return keys, fields, times[0].time / _SECOND, times[n - 1].time / _SECOND, n, times
    if isinstance(block, so3g.IrregBlockDouble):  # schema v0
        t = block.t
        n = len(t)
        if n == 0:
            return None
        keys = sorted(block.data.keys())
        return keys, tuple((k, "number") for k in keys), float(t[0]), float(t[n - 1]), n, None
    return None


HEAD_BYTES = 4096


def head_digest(path: str, length: int = HEAD_BYTES) -> str | None:
    """``"<n>:<sha1>"`` of the first ``n <= length`` bytes of ``path`` (None if unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(length)
    except OSError:
        return None
    return f"{len(head)}:{hashlib.sha1(head).hexdigest()}"


def _same_head(path: str, head: str | None) -> bool:
    if not head:
        return False
    length = int(head.split(":", 1)[0])
    return head_digest(path, length) == head


def scan_file(path: str, offset: int = 0, state: ScanState | None = None,
              stat: os.stat_result | None = None, summarize: bool = True) -> ScanResult:
    """Read ``path`` from byte ``offset`` (with the stream ``state`` there).

    With ``summarize``, the numeric fields of the blocks read are also decoded and
    their base-tier summaries (:mod:`sisock_core.summaries`) returned in
    ``result.summaries``, so the index and the summaries of a file are written together.

    Never raises for bad file contents: the result's ``status`` and ``error`` say
    what happened (``missing`` if the file vanished). When resuming (``offset`` >
    0), a file whose first bytes differ from ``state.head`` was rewritten: it is
    read from the start instead.
    """
    state = ScanState.from_json(state.to_json()) if state is not None else ScanState()
    try:
        st = stat or os.stat(path)
    except FileNotFoundError:
        return ScanResult(path, 0, 0, 0, offset, offset, 0, STATUS_MISSING, "file vanished", state)
    result = ScanResult(path, st.st_size, st.st_mtime_ns, st.st_ino, offset, offset, 0,
                        STATUS_OK, None, state)
    if summarize:
        result.collected = {}
    if st.st_size == 0:
        result.status = STATUS_EMPTY
        return result
    if offset and not _same_head(path, state.head):
        offset, state = 0, ScanState()
        result.start_offset = result.offset = 0
        result.state = state
    if offset == 0:
        state.head = head_digest(path)
    if offset >= st.st_size:
        result.status = STATUS_OK if state.hk_frames else STATUS_NOT_HK
        return result
    try:
        reader = core.G3Reader(path)
        if offset:
            reader.seek(offset)
    except Exception as exc:  # spt3g raises RuntimeError, or MemoryError for absurd frame sizes
        result.status, result.error = STATUS_ERROR, f"cannot open: {exc}"
        return result
    error = None
    while True:
        pos = reader.tell()
        try:
            frames = reader.Process(None)
        except Exception as exc:  # RuntimeError, or MemoryError when garbage claims a huge frame
            error = str(exc) or type(exc).__name__
            break
        if not frames:
            break
        result.frames += 1
        frame = frames[0]
        result.offset = reader.tell()
        if frame.type != _HK or "hkagg_type" not in frame:
            continue
        state.hk_frames += 1
        _process(frame, pos, state, result)
    if error is not None:
        if result.frames == 0 and offset == 0:
            result.status, result.error = STATUS_ERROR, f"not a readable .g3 file: {error}"
        else:
            result.status = STATUS_PARTIAL
            result.error = f"last frame incomplete at byte {result.offset} of {st.st_size}: {error}"
    elif state.hk_frames == 0:
        result.status = STATUS_NOT_HK
        result.error = f"no housekeeping frames in {result.frames} frames"
    if result.collected:
        result.summaries = _summaries(result.collected)
    result.collected = None
    return result


def _summaries(collected: dict) -> list[tuple[str, str, str, Any]]:
    """Base-tier summaries of the numeric samples of the blocks collected per
    (description, block name)."""
    keys = []
    timelines = []
    out = []
    for (description, block_name), group in collected.items():
        done = group.summarized(BASE_TIER)
        if done is not None:
            timeline = f"{description}.{block_name}"
            out.extend((f"{description}.{field}", timeline, kind, buckets) for field, (kind, buckets) in done.items())
            continue
        t, cols = group.decoded()
        if cols:
            keys.append((description, block_name))
            timelines.append((t, cols))
    for (description, block_name), (_, cols), buckets in zip(
            keys, timelines, summarize_timelines(timelines, BASE_TIER)):
        timeline = f"{description}.{block_name}"
        out.extend((f"{description}.{field}", timeline, y.dtype.kind, buckets[field]) for field, y in cols.items())
    return out


class _Blocks:
    """The blocks of one name in a file, kept for :func:`_summaries`."""

    __slots__ = ("fields", "blocks", "times", "alike")

    def __init__(self, fields: tuple[tuple[str, str], ...]) -> None:
        self.fields = fields  #: the typed fields of the first block
        self.blocks: list = []
        self.times: list = []  #: of each block (None for schema v0)
        self.alike = True  #: every block a G3TimesampleMap with the first one's fields

    def add(self, block: Any, fields: tuple[tuple[str, str], ...], times: Any) -> None:
        if self.alike and not (fields is self.fields or fields == self.fields) or \
                not isinstance(block, core.G3TimesampleMap):
            self.alike = False
        self.blocks.append(block)
        self.times.append(times)

    def summarized(self, width: float) -> dict[str, tuple[str, Any]] | None:
        """``{field: (dtype kind, packed buckets)}`` of the numeric fields, decoded, reduced
        and laid out for storage in one pass by the compiled kernel (None where it does not
        apply: no kernel, blocks not alike, a field of another type, times not ascending;
        :meth:`decoded` then)."""
        if not self.alike:
            return None
        numeric = [(i, f) for i, (f, kind) in enumerate(self.fields) if kind == "number"]
        if not numeric:
            return {}
        values = [b.values() for b in self.blocks]
        try:
            return summarize_blocks(self.times, [f for _, f in numeric],
                                    [[v[i] for v in values] for i, _ in numeric], width, _SECOND, packed=True)
        except (TypeError, ValueError):  # a vector not float64 or int64, or of another length
            return None

    def decoded(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Times (UNIX seconds) and numeric fields of the blocks, joined. A field missing
        from some blocks, or not one numeric vector in all, is left out."""
        numeric = [(i, f) for i, (f, kind) in enumerate(self.fields) if kind == "number"]
        if self.alike:  # values() are in the order of the fields: one call per block
            t = np.concatenate([b.times for b in self.blocks]).astype(np.int64, copy=False) / _SECOND
            values = [b.values() for b in self.blocks]
            cols = {f: np.concatenate([v[i] for v in values]) for i, f in numeric}
            return t, {f: y for f, y in cols.items() if y.dtype.kind in "fiu"}
        ts, acc = [], {f: [] for _, f in numeric}
        for block in self.blocks:
            if isinstance(block, core.G3TimesampleMap):
                ts.append(np.asarray(block.times, dtype=np.int64) / _SECOND)
                data = block
            else:  # IrregBlockDouble (v0)
                ts.append(np.array(block.t, dtype=np.float64))
                data = block.data
            for f, parts in acc.items():
                if parts is None:
                    continue
                if f in data:
                    parts.append(np.asarray(data[f]))
                else:  # missing from a block: left out of the summaries
                    acc[f] = None
        t = np.concatenate(ts)
        cols = {}
        for f, parts in acc.items():
            if not parts:
                continue
            try:
                y = np.concatenate(parts)
            except (TypeError, ValueError):
                continue  # not one numeric vector in every block
            if y.size == t.size and y.dtype.kind in "fiu":
                cols[f] = y
        return t, cols


def _collect(result: ScanResult, description: str, name: str, block: Any,
             fields: tuple[tuple[str, str], ...], times: Any) -> None:
    """Keep a block (and its time vector, already read) for :func:`_summaries`."""
    group = result.collected.get((description, name))
    if group is None:
        group = result.collected[(description, name)] = _Blocks(fields)
    group.add(block, fields, times)


def _process(frame: Any, pos: int, state: ScanState, result: ScanResult) -> None:
    kind = int(frame["hkagg_type"])
    if kind == SESSION:
        session_id = int(frame["session_id"]) if "session_id" in frame else None
        if session_id != state.session_id:
            state.session_id = session_id
            state.providers = {}
    elif kind == STATUS:
        providers = {}
        for p in frame["providers"]:
            prov_id = int(p["prov_id"].value)
            description = str(p["description"].value)
            providers[prov_id] = description
            result.providers.append((prov_id, description))
        state.providers = providers
    elif kind == DATA:
        prov_id = int(frame["prov_id"])
        description = state.providers.get(prov_id)
        if description is None:
            result.orphan_frames += 1
            return
        names = list(frame["block_names"]) if "block_names" in frame else None
        for index, block in enumerate(frame["blocks"]):
            info = _block_info(block, result.types, description)
            if info is None:
                continue
            keys, fields, t0, t1, n, times = info
            if names is not None and index < len(names):
                name = names[index]
            else:
                name = "block_for_%s" % keys[0] if keys else "block%d" % index
            result.blocks.append((pos, index, prov_id, description, name, fields, t0, t1, n))
            if result.collected is not None:
                _collect(result, description, name, block, fields, times)


# -- decoding --------------------------------------------------------------------------

#: A decoded block: (times in UNIX seconds, {field: values}).
Decoded = tuple[np.ndarray, dict[str, np.ndarray]]


def decode_block(block: Any) -> Decoded | None:
    """numpy arrays of one data block (any schema version)."""
    if isinstance(block, core.G3TimesampleMap):
        t = np.asarray(block.times, dtype=np.int64) / _SECOND
        return t, {k: np.asarray(block[k]) for k in block.keys()}
    if isinstance(block, so3g.IrregBlockDouble):
        t = np.array(block.t, dtype=np.float64)
        return t, {k: np.array(block.data[k], dtype=np.float64) for k in block.data.keys()}
    return None


class FrameReader:
    """Reads frames of one file at byte offsets (ascending offsets read fastest)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._reader = core.G3Reader(path)

    def read_fields(self, blocks: list[tuple[int, int]], fields: list[str]) -> Decoded:
        """Times and ``fields`` of the blocks at ``(byte offset, block index)``, concatenated.

        Only the named fields are converted to numpy (spt3g's per-vector cost dominates).
        """
        return self.read_many({None: (blocks, fields)})[None]

    def read_many(self, requests: dict) -> dict:
        """:meth:`read_fields` for several layouts at once: ``{key: (blocks, fields)}`` to
        ``{key: (t, {field: values})}``, reading and deserializing every frame once even
        when it holds blocks of several keys (an LS372 frame holds its 16 channels)."""
        wanted: dict[int, list[tuple[Any, int]]] = {}
        for key, (blocks, _) in requests.items():
            for offset, index in blocks:
                wanted.setdefault(offset, []).append((key, index))
        ts: dict[Any, list[np.ndarray]] = {key: [] for key in requests}
        cols: dict[Any, dict[str, list[np.ndarray]]] = {key: {f: [] for f in fields}
                                                        for key, (_, fields) in requests.items()}
        for offset in sorted(wanted):
            self._reader.seek(offset)
            frames = self._reader.Process(None)
            if not frames or "blocks" not in frames[0]:
                raise RuntimeError(f"no housekeeping data frame at byte {offset}")
            frame_blocks = frames[0]["blocks"]
            for key, index in wanted[offset]:
                block = frame_blocks[index]
                fields = requests[key][1]
                if isinstance(block, core.G3TimesampleMap):
                    ts[key].append(np.asarray(block.times))
                    for f in fields:
                        cols[key][f].append(np.asarray(block[f]))
                elif isinstance(block, so3g.IrregBlockDouble):
                    # as so3g's HKTranslator: G3 time ticks, truncated
                    ts[key].append((np.array(block.t, dtype=np.float64) * _SECOND).astype(np.int64))
                    data = block.data
                    for f in fields:
                        cols[key][f].append(np.array(data[f], dtype=np.float64))
                else:
                    raise RuntimeError(f"block {index} at byte {offset} is a {type(block).__name__}")
        out = {}
        for key, (_, fields) in requests.items():
            if not ts[key]:
                out[key] = (np.empty(0), {f: np.empty(0) for f in fields})
                continue
            t = np.concatenate(ts[key]).astype(np.float64) / _SECOND
            out[key] = (t, {f: np.concatenate(v) for f, v in cols[key].items()})
        return out

    def blocks_at(self, offset: int) -> dict[int, Decoded]:
        """Every block of the data frame at ``offset``, decoded, by block index."""
        self._reader.seek(offset)
        frames = self._reader.Process(None)
        if not frames:
            raise RuntimeError(f"no frame at byte {offset}")
        frame = frames[0]
        out: dict[int, Decoded] = {}
        if frame.type != _HK or "blocks" not in frame:
            raise RuntimeError(f"the frame at byte {offset} is not a housekeeping data frame")
        for index, block in enumerate(frame["blocks"]):
            decoded = decode_block(block)
            if decoded is not None:
                out[index] = decoded
        return out
