"""Keeping the index in step with a data directory (no reactor needed).

:class:`Scanner` walks ``DATA_DIRECTORY`` for ``*.g3`` files (every file-naming
era: ``<5 digits>/<ctime>.g3``, ``<5 digits>/%Y-%m-%d-%H-%M-%S.g3`` and flat
names; times come from the frames, never from the names) and brings the index up
to date:

* a file whose size, mtime and inode are unchanged is not opened (one ``stat``);
* a file that grew (the aggregator is writing it) is read from where the last scan
  stopped, with the provider state recorded there;
* a new or rewritten file is read from the start, replacing what was indexed;
* a file that disappeared is removed from the index;
* a corrupt or non-housekeeping file is logged once and recorded with its size and
  mtime, so it is not read again until it changes.

:meth:`Scanner.scan_tree` is a full pass; :meth:`Scanner.scan_paths` looks only
at given paths (what the watchdog reports). Both write one transaction per file, so
an interrupted pass loses nothing already done, and raise
:class:`~sisock_plugins.g3.index.DatabaseUnavailable` if the database fails.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

import attrs
from twisted.logger import Logger

from sisock_core.sqldb import DatabaseError
from sisock_core.summarystore import SummaryStore
from sisock_plugins.g3.index import (
    DatabaseUnavailable,
    STATUS_EMPTY,
    STATUS_ERROR,
    STATUS_MISSING,
    STATUS_NOT_HK,
    STATUS_OK,
    STATUS_PARTIAL,
    FileRow,
    FileUpdate,
    Index,
)
from sisock_plugins.g3.scan import ScanResult, ScanState, scan_file

log = Logger(namespace="sisock_plugins.g3.scanner")

SUFFIX = ".g3"


class ScanError(RuntimeError):
    """The data directory cannot be scanned (missing, not a directory, unreadable)."""


class Progress(Protocol):
    """Receives the progress of a pass over the files that need reading."""

    def update(self, files: int, nbytes: int) -> None:
        """``files`` more files and ``nbytes`` more bytes are done."""

    def close(self) -> None:
        """The pass is over."""


#: Builds a :class:`Progress` for ``(files, bytes)`` to read.
ProgressFactory = Callable[[int, int], Progress]


@attrs.define
class ScanStats:
    """What a pass did."""

    seen: int = 0  #: .g3 files found
    unchanged: int = 0  #: skipped after a stat
    read: int = 0  #: files opened
    resumed: int = 0  #: of which read from where an earlier scan stopped
    removed: int = 0  #: disappeared, dropped from the index
    errors: int = 0  #: unreadable or not housekeeping
    partial: int = 0  #: ending with an incomplete frame
    frames: int = 0
    bytes: int = 0
    rolled_up: int = 0  #: series whose coarse summary tiers were recomputed
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.seen} files: {self.read} read ({self.resumed} resumed, {self.bytes / 1e6:.1f} MB, "
            f"{self.frames} frames), {self.unchanged} unchanged, {self.removed} removed, "
            f"{self.errors} unreadable, {self.partial} incomplete, coarse summaries of "
            f"{self.rolled_up} fields recomputed, in {self.seconds:.2f} s"
        )


def is_g3(name: str) -> bool:
    return name.endswith(SUFFIX) and not name.startswith(".")


def _same(row: FileRow, st: os.stat_result) -> bool:
    return row.size == st.st_size and row.mtime_ns == st.st_mtime_ns and row.inode == st.st_ino


def plan(row: FileRow | None, st: os.stat_result) -> str | None:
    """What to do with a file: None (unchanged), ``"resume"`` or ``"full"``."""
    if row is None:
        return "full"
    if _same(row, st):
        return None
    if (
        row.inode == st.st_ino
        and row.status in (STATUS_OK, STATUS_PARTIAL)
        and 0 < row.offset <= row.size < st.st_size
    ):
        return "resume"
    return "full"


class Scanner:
    """Scans one data directory into one index."""

    def __init__(
        self,
        index: Index,
        data_dir: str | os.PathLike,
        *,
        progress: ProgressFactory | None = None,
        clock: Callable[[], float] = time.time,
        summarize: bool = True,
    ) -> None:
        """``summarize=False`` indexes without summaries (benchmarks measure what they cost)."""
        self.index = index
        self.summarize = summarize
        self.data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
        self.progress = progress
        self.clock = clock
        #: Set it (from any thread) to stop a pass after the file being read.
        self.cancel = threading.Event()
        self._summary_store: SummaryStore | None = None

    # -- walking -----------------------------------------------------------------

    def check_dir(self) -> None:
        if not os.path.exists(self.data_dir):
            raise ScanError(f"data directory {self.data_dir} does not exist")
        if not os.path.isdir(self.data_dir):
            raise ScanError(f"data directory {self.data_dir} is not a directory")

    def walk(self, failed: list[str] | None = None) -> Iterator[tuple[str, os.stat_result]]:
        """Every ``*.g3`` file under the data directory with its stat, in path order.

        Directories that cannot be listed are logged and added to ``failed``.
        """

        def onerror(exc: OSError) -> None:
            log.warn("cannot list {path}: {error}", path=exc.filename, error=exc.strerror or str(exc))
            if failed is not None and exc.filename:
                failed.append(os.path.abspath(exc.filename))

        for root, dirs, files in os.walk(self.data_dir, onerror=onerror):
            dirs.sort()
            for name in sorted(files):
                if not is_g3(name):
                    continue
                path = os.path.join(root, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # vanished between listing and stat
                yield path, st

    # -- passes ------------------------------------------------------------------

    def scan_tree(self) -> ScanStats:
        """A full pass over the data directory."""
        started = time.perf_counter()
        self.check_dir()
        stats = ScanStats()
        known = self.index.files_under(self.data_dir)
        failed: list[str] = []
        todo: list[tuple[str, os.stat_result, FileRow | None, str]] = []
        present: set[str] = set()
        for path, st in self.walk(failed):
            present.add(path)
            stats.seen += 1
            row = known.get(path)
            action = plan(row, st)
            if action is None:
                stats.unchanged += 1
            else:
                todo.append((path, st, row, action))
        if os.path.isdir(self.data_dir):  # never empty the index because a mount went away
            gone = [
                p for p in known
                if p not in present and not any(p.startswith(d.rstrip(os.sep) + os.sep) for d in failed)
            ]
            if gone:
                stats.removed += self.index.remove_files(gone)
                log.info("{n} files disappeared from {dir}; removed from the index", n=len(gone), dir=self.data_dir)
        self._read_all(todo, stats)
        self._rollup(stats)
        stats.seconds = time.perf_counter() - started
        return stats

    def _rollup(self, stats: ScanStats) -> None:
        """Recompute the coarse tiers of the summaries the pass (or an earlier, interrupted
        one) changed; cheap when nothing is pending."""
        if self._summary_store is None:
            self._summary_store = SummaryStore(self.index.url)
        try:
            stats.rolled_up += self._summary_store.rollup(should_stop=self.cancel.is_set)
        except DatabaseError as exc:
            raise DatabaseUnavailable(str(exc)) from exc

    def scan_paths(self, paths: Iterable[str]) -> ScanStats:
        """Look only at ``paths`` (files created, changed, moved or deleted)."""
        started = time.perf_counter()
        stats = ScanStats()
        todo = []
        prefix = self.data_dir.rstrip(os.sep) + os.sep
        for path in sorted(set(os.path.abspath(p) for p in paths)):
            if not path.startswith(prefix) or not is_g3(os.path.basename(path)):
                continue
            try:
                st = os.stat(path)
            except FileNotFoundError:
                stats.removed += self.index.remove_files([path])
                continue
            except OSError as exc:
                log.warn("cannot stat {path}: {error}", path=path, error=exc.strerror or str(exc))
                continue
            if not os.path.isfile(path):
                continue
            stats.seen += 1
            row = self.index.file(path)
            action = plan(row, st)
            if action is None:
                stats.unchanged += 1
            else:
                todo.append((path, st, row, action))
        self._read_all(todo, stats)
        self._rollup(stats)
        stats.seconds = time.perf_counter() - started
        return stats

    def _read_all(self, todo: list[tuple[str, os.stat_result, FileRow | None, str]], stats: ScanStats) -> None:
        if not todo:
            return
        total = sum(st.st_size - (row.offset if action == "resume" and row else 0) for _, st, row, action in todo)
        progress = self.progress(len(todo), total) if self.progress is not None else None
        try:
            for path, st, row, action in todo:
                if self.cancel.is_set():
                    break
                result = self.read_file(path, st, row, action)
                stats.read += 1
                stats.resumed += result.start_offset > 0
                stats.frames += result.frames
                stats.bytes += result.bytes_read
                if result.status in (STATUS_ERROR, STATUS_NOT_HK):
                    stats.errors += 1
                elif result.status == STATUS_PARTIAL:
                    stats.partial += 1
                elif result.status == STATUS_MISSING:
                    stats.removed += 1
                if progress is not None:
                    progress.update(1, st.st_size - (row.offset if action == "resume" and row else 0))
        finally:
            if progress is not None:
                progress.close()

    def read_file(self, path: str, st: os.stat_result, row: FileRow | None, action: str) -> ScanResult:
        """Read one file (fully or from where it was left) and record it."""
        if action == "resume" and row is not None:
            result = scan_file(path, row.offset, ScanState.from_json(row.state), stat=st,
                               summarize=self.summarize)
        else:
            result = scan_file(path, 0, None, stat=st, summarize=self.summarize)
        if result.status == STATUS_MISSING:
            self.index.remove_files([path])
            return result
        self._log_result(result, row)
        self.index.record_file(self.to_update(result, replace=result.start_offset == 0), self.clock())
        return result

    @staticmethod
    def to_update(result: ScanResult, replace: bool) -> FileUpdate:
        return FileUpdate(
            path=result.path,
            size=result.size,
            mtime_ns=result.mtime_ns,
            inode=result.inode,
            offset=result.offset,
            frames=result.frames,
            status=result.status,
            error=result.error,
            state=result.state.to_json(),
            replace=replace,
            providers=sorted(set(result.providers)),
            blocks=result.blocks,
            summaries=result.summaries,
        )

    def _log_result(self, result: ScanResult, row: FileRow | None) -> None:
        if result.status in (STATUS_ERROR, STATUS_NOT_HK):
            log.warn("skipping {path}: {error} (not read again until it changes)",
                     path=result.path, error=result.error)
        elif result.status == STATUS_PARTIAL:
            log.debug("{path}: {error}; indexed up to there, resuming when it grows",
                      path=result.path, error=result.error)
        elif result.status == STATUS_EMPTY:
            log.debug("{path} is empty", path=result.path)
        else:
            log.debug("indexed {path}: {frames} frames, {blocks} data blocks from byte {start}",
                      path=result.path, frames=result.frames, blocks=len(result.blocks),
                      start=result.start_offset)
        if result.orphan_frames:
            log.warn("{path}: skipped {n} data frames of providers no status frame announced",
                     path=result.path, n=result.orphan_frames)


def files_in(directory: str | os.PathLike) -> list[Path]:
    """The ``*.g3`` files under ``directory`` (sorted), as the scanner sees them."""
    out = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        out.extend(Path(root) / n for n in sorted(files) if is_g3(n))
    return out
