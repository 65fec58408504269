"""Building blocks for plugins serving archives of many small two-column text files
(pure, no Twisted):

* :func:`parse_columns` reads ``<time> <value>`` lines into numpy arrays, skipping
  and counting malformed lines (the result says how many and where the first is).
* :class:`SpanIndex` answers "which files may hold samples in ``[t0, t1)``" from the
  time spans in the files' *names*, by binary search: the cost grows with the
  number of files in the range, not with the size of the archive.
* :class:`DirectoryWatch` tells when a directory listing must be redone (its
  modification time changed), so the index is rebuilt from one listing, not on
  every query.
* :class:`ParsedFileCache` keeps recently parsed files, bounded in bytes, and
  re-parses a file when its modification time or size changes.
"""

from __future__ import annotations

import bisect
import collections
import io
import math
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Generic, Hashable, Iterable, TypeVar

import attrs
import numpy as np


# -- parsing --------------------------------------------------------------------


@attrs.frozen(eq=False)
class Columns:
    """Parsed ``<time> <value>`` lines of one file.

    ``t`` (ascending) and ``values`` are read-only float64 arrays of equal length.
    ``bad_lines`` counts skipped malformed lines; ``first_bad_line`` (1-based) and
    ``first_bad_text`` locate the first. ``dropped_nan`` counts lines skipped because
    their value was NaN (when asked to). ``reordered``: times were not ascending.
    """

    source: str
    t: np.ndarray
    values: np.ndarray
    bad_lines: int = 0
    first_bad_line: int | None = None
    first_bad_text: str | None = None
    dropped_nan: int = 0
    reordered: bool = False

    @property
    def nbytes(self) -> int:
        return int(self.t.nbytes + self.values.nbytes)

    def malformed_summary(self) -> str | None:
        """``"skipped N malformed lines in FILE, first at line L: '...'"``, or None."""
        if not self.bad_lines:
            return None
        noun = "line" if self.bad_lines == 1 else "lines"
        return (
            f"skipped {self.bad_lines} malformed {noun} in {self.source}, "
            f"first at line {self.first_bad_line}: {self.first_bad_text!r}"
        )


def parse_columns(
    text: str,
    source: str = "<string>",
    *,
    header_lines: int = 0,
    drop_nan: bool = False,
    time_of: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Columns:
    """Parse whitespace-separated ``<time> <value>`` lines.

    The first ``header_lines`` lines are skipped unread. Blank lines and ``#``
    comments are ignored. A line that does not hold exactly two numbers, or whose
    time is not finite, is malformed: skipped and counted. With ``drop_nan``, lines
    whose value is NaN are skipped too (counted in ``dropped_nan``, not as malformed).
    ``time_of`` converts the first column to UNIX times (e.g. day of year).
    """
    body, first_line = _skip_lines(text, header_lines)
    t, v, bad, first_bad = parse_pairs(body, first_line)
    dropped = 0
    if drop_nan and v.size:
        keep = ~np.isnan(v)
        dropped = int(v.size - np.count_nonzero(keep))
        if dropped:
            t, v = t[keep], v[keep]
    if time_of is not None:
        t = np.asarray(time_of(t), dtype=np.float64)
    reordered = False
    if t.size > 1 and np.any(t[1:] < t[:-1]):
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        reordered = True
    t = np.ascontiguousarray(t, dtype=np.float64)
    v = np.ascontiguousarray(v, dtype=np.float64)
    t.flags.writeable = False
    v.flags.writeable = False
    return Columns(
        source=source,
        t=t,
        values=v,
        bad_lines=bad,
        first_bad_line=first_bad[0] if first_bad else None,
        first_bad_text=first_bad[1] if first_bad else None,
        dropped_nan=dropped,
        reordered=reordered,
    )


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of ``path`` (undecodable bytes replaced, so they become malformed lines)."""
    with open(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace")


def _skip_lines(text: str, n: int) -> tuple[str, int]:
    pos = 0
    for _ in range(n):
        nl = text.find("\n", pos)
        if nl < 0:
            return "", n + 1
        pos = nl + 1
    return text[pos:], n + 1


def parse_pairs(
    body: str, first_line: int
) -> tuple[np.ndarray, np.ndarray, int, tuple[int, str] | None]:
    """``<time> <value>`` lines: all at once when every line is well formed, else
    :func:`parse_lines` (same return value)."""
    parsed = _parse_bulk(body)
    if parsed is None:
        return parse_lines(body, first_line)
    return parsed[0], parsed[1], 0, None


def _parse_bulk(body: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Fast path: every line well formed; None if any is not."""
    if not body.strip():
        return np.empty(0), np.empty(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data" (comments only)
            arr = np.loadtxt(io.StringIO(body), dtype=np.float64, comments="#", ndmin=2)
    except ValueError:
        return None
    if arr.size == 0:
        return np.empty(0), np.empty(0)
    if arr.shape[1] != 2 or not np.isfinite(arr[:, 0]).all():
        return None
    return arr[:, 0].copy(), arr[:, 1].copy()


def parse_lines(
    body: str, first_line: int
) -> tuple[np.ndarray, np.ndarray, int, tuple[int, str] | None]:
    """``<time> <value>`` lines, one by one, skipping and counting malformed lines.

    Returns ``(t, values, bad, first_bad)``; ``first_bad`` is ``(line number, line)`` of
    the first malformed line (numbered from ``first_line``) or ``None``. ``#`` starts a
    comment; a line needs exactly two numbers and a finite time.
    """
    times: list[float] = []
    values: list[float] = []
    bad = 0
    first_bad: tuple[int, str] | None = None
    for lineno, raw in enumerate(body.split("\n"), start=first_line):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            t = float(parts[0])
            v = float(parts[1])
            if not math.isfinite(t):
                raise ValueError
        except ValueError:
            bad += 1
            if first_bad is None:
                first_bad = (lineno, raw.strip())
            continue
        times.append(t)
        values.append(v)
    return np.array(times, dtype=np.float64), np.array(values, dtype=np.float64), bad, first_bad


# -- choosing files by the spans in their names -------------------------------------


class SpanIndex:
    """Files sorted by the time span ``[start, end]`` their names declare.

    :meth:`select` finds the files overlapping ``[t0, t1)`` with two binary searches,
    so its cost is O(log N + k) for N files of which k overlap. Spans may overlap
    each other (a running maximum of the ends keeps the search exact).
    """

    def __init__(self, spans: Iterable[tuple[float, float, Any]]) -> None:
        items = sorted(spans, key=lambda s: (s[0], s[1], str(s[2])))
        self.starts: list[float] = [float(s[0]) for s in items]
        self.ends: list[float] = [float(s[1]) for s in items]
        self.items: list[Any] = [s[2] for s in items]
        self._max_end: list[float] = []
        running = -math.inf
        for e in self.ends:
            running = max(running, e)
            self._max_end.append(running)

    def __len__(self) -> int:
        return len(self.items)

    def select(self, t0: float, t1: float) -> list[Any]:
        """Items whose span overlaps ``[t0, t1)`` (start < t1 and end >= t0), by start."""
        hi = bisect.bisect_left(self.starts, t1)
        lo = bisect.bisect_left(self._max_end, t0, 0, hi)
        return [self.items[i] for i in range(lo, hi) if self.ends[i] >= t0]

    def any_in(self, t0: float, t1: float) -> bool:
        hi = bisect.bisect_left(self.starts, t1)
        lo = bisect.bisect_left(self._max_end, t0, 0, hi)
        return any(self.ends[i] >= t0 for i in range(lo, hi))

    @property
    def first_start(self) -> float | None:
        return self.starts[0] if self.starts else None

    @property
    def last_end(self) -> float | None:
        return self._max_end[-1] if self._max_end else None


class DirectoryWatch:
    """Says when a directory must be listed again: its modification time changed.

    A listing made less than ``racy_seconds`` after the directory's last change is
    not trusted (a file created in the same clock tick would not move the mtime),
    so the next check lists again.
    """

    def __init__(self, path: str | os.PathLike[str], racy_seconds: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = os.fspath(path)
        self.racy_seconds = racy_seconds
        self.clock = clock
        self._stamp: int | None = None
        self._racy = True
        self._list_error: str | None = None

    def needs_listing(self) -> bool:
        """True if the directory changed since :meth:`listed` (one ``stat``). Raises OSError."""
        st = os.stat(self.path)
        return self._racy or st.st_mtime_ns != self._stamp

    def listed(self, mtime_ns: int) -> None:
        """Record that the directory was listed while its mtime was ``mtime_ns``."""
        self._stamp = mtime_ns
        self._racy = self.clock() - mtime_ns / 1e9 < self.racy_seconds

    def new_listing(self, log: Any) -> list[str] | None:
        """The directory's entry names if it changed since the last listing, else None.

        A directory that cannot be listed gives None too: ``log`` (a twisted Logger) says
        so once per distinct error, and the caller keeps serving what it indexed before.
        """
        try:
            changed = self.needs_listing()
            if changed:
                mtime, names = list_directory(self.path)
        except OSError as exc:
            if self._list_error != str(exc):
                self._list_error = str(exc)
                log.error("cannot list {directory}: {error}; serving the files indexed before",
                          directory=self.path, error=str(exc))
            return None
        if self._list_error is not None:  # back (perhaps unchanged): a later failure is news
            self._list_error = None
            log.info("{directory} can be listed again", directory=self.path)
        if not changed:
            return None
        self.listed(mtime)
        return names


def list_directory(path: str | os.PathLike[str]) -> tuple[int, list[str]]:
    """``(mtime_ns, names)`` of the regular entries of a directory (names only, no per-file stat)."""
    mtime = os.stat(path).st_mtime_ns
    with os.scandir(path) as it:
        names = [e.name for e in it]
    return mtime, names


# -- parsed files, bounded ----------------------------------------------------------

V = TypeVar("V")


@attrs.frozen
class Loaded(Generic[V]):
    """The outcome of :meth:`ParsedFileCache.get`.

    ``value`` is the parsed file or None; ``error`` the exception that kept it from
    being read; ``new`` is true the first time this version of the file was seen
    (so callers log a file's problems once, not on every query).
    """

    value: V | None
    error: BaseException | None
    new: bool


class ParsedFileCache(Generic[V]):
    """Parsed files keyed by path, least recently used evicted beyond ``max_bytes``.

    A file is re-parsed when its ``(mtime, size)`` changes. Files that failed to
    parse are remembered with their stamp so they are retried only when they
    change. Thread-safe; parsing happens outside the lock.
    """

    def __init__(self, max_bytes: int, size_of: Callable[[V], int] = lambda v: getattr(v, "nbytes", 0)) -> None:
        self.max_bytes = max_bytes
        self.size_of = size_of
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[Hashable, tuple[tuple[int, int], V, int]] = (
            collections.OrderedDict()
        )
        self._failed: dict[Hashable, tuple[tuple[int, int], BaseException]] = {}
        #: The stamp each file had when last parsed (even if since evicted), so a
        #: re-parse after eviction is not reported as new.
        self._seen: dict[Hashable, tuple[int, int]] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, path: str | os.PathLike[str], parse: Callable[[str], V]) -> Loaded[V]:
        key = os.fspath(path)
        try:
            st = os.stat(key)
        except OSError as exc:
            return self._fail(key, None, exc)
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == stamp:
                self._entries.move_to_end(key)
                self.hits += 1
                return Loaded(entry[1], None, False)
            failed = self._failed.get(key)
            if failed is not None and failed[0] == stamp:
                return Loaded(None, failed[1], False)
            self.misses += 1
        try:
            value = parse(key)
        except (OSError, ValueError, UnicodeError) as exc:
            return self._fail(key, stamp, exc)
        size = int(self.size_of(value))
        with self._lock:
            new = self._seen.get(key) != stamp
            self._seen[key] = stamp
            self._failed.pop(key, None)
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[2]
            self._entries[key] = (stamp, value, size)
            self.bytes += size
            while self.bytes > self.max_bytes and len(self._entries) > 1:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped
            if self.bytes > self.max_bytes:  # the newest alone is too big: don't keep it
                self._entries.clear()
                self.bytes = 0
        return Loaded(value, None, new)

    def _fail(self, key: str, stamp: tuple[int, int] | None, exc: BaseException) -> Loaded[V]:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[2]
            self._seen.pop(key, None)
            if stamp is None:  # vanished: nothing to remember it by
                self._failed.pop(key, None)
                return Loaded(None, exc, True)
            self._failed[key] = (stamp, exc)
        return Loaded(None, exc, True)

    def __len__(self) -> int:
        return len(self._entries)


def concat_columns(parts: list[Columns], t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
    """Samples of ``parts`` in ``[t0, t1)``, ascending; a time repeated across files is kept once."""
    ts, vs = [], []
    for c in parts:
        lo, hi = np.searchsorted(c.t, [t0, t1], side="left")
        if hi > lo:
            ts.append(c.t[lo:hi])
            vs.append(c.values[lo:hi])
    if not ts:
        return np.empty(0), np.empty(0)
    t = np.concatenate(ts)
    v = np.concatenate(vs)
    if t.size > 1 and np.any(t[1:] <= t[:-1]):  # overlapping or out-of-order files
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        keep = np.ones(t.size, dtype=bool)
        keep[1:] = t[1:] != t[:-1]
        t, v = t[keep], v[keep]
    return t, v


# -- node plumbing for plugins built on these blocks ------------------------------


def resolve_data_subdir(plugin: str, data_dir: str, subdir: str, layout: str) -> Path:
    """``<data_dir>/<subdir>`` as a Path; raise ``ValueError`` naming the path if unusable.

    ``layout`` tells the operator what the data directory must hold (ends the message).
    """
    directory = Path(os.path.expanduser(data_dir))
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise ValueError(f"{plugin}: data directory {directory} {what}")
    sub = directory / subdir
    if not sub.is_dir():
        raise ValueError(f"{plugin}: {sub} does not exist; the data directory must hold {layout}")
    return sub
