"""Summaries the core computes for archive plugins that do not write their own (no Twisted).

:class:`Summarizer` walks a plugin's numeric fields through its ``read_range`` hook, a
window of whole UTC days at a time, and stores base-tier summaries of the samples that
are final (before the timeline's ``finalized_until``) in a
:class:`~sisock_core.summarystore.SummaryStore`, one row per field and day. Each series
records how far it is summarized (``covered_until``); a later pass resumes from the
start of that day and recomputes the day's row (rows are replaced, never merged into,
so nothing is counted twice). Empty windows double in length (a sparse or young archive
is crossed in a few reads); windows with many samples halve, so one read holds at most
about :data:`MAX_WINDOW_SAMPLES` samples. Between windows it checks ``should_stop``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from sisock_core import summaries as S
from sisock_core.model import Timeline
from sisock_core.summarystore import CORE_ROW_BUCKETS, SUMMARIZED_KINDS, SummaryStore

DAY = 86400.0
#: Longest window read at once, in days.
MAX_WINDOW_DAYS = 512
#: Samples per field that make the next window shorter.
MAX_WINDOW_SAMPLES = 2_000_000
#: Where an archive is assumed to start at the earliest.
EPOCH_START = 0.0


def _day(t: float) -> float:
    return math.floor(t / DAY) * DAY


class Summarizer:
    """Brings the summaries of one node's plugin up to date (see the module docstring).

    ``list_fields(start, end)`` and ``read_range(fields, start, end)`` are the node's
    hook calls (the engine's, so a failing plugin raises its usual error).
    """

    def __init__(self, store: SummaryStore, list_fields: Callable[[float, float], Any],
                 read_range: Callable[[list[str], float, float], dict[str, Timeline]], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.list_fields = list_fields
        self.read_range = read_range
        self.clock = clock

    def run_once(self, should_stop: Callable[[], bool] = lambda: False) -> int:
        """One pass over every numeric field; returns the base-tier buckets written."""
        now = self.clock()
        groups: dict[str, list[str]] = {}
        for f in self.list_fields(1.0, now) or []:
            if f.type == "number":
                groups.setdefault(f.timeline, []).append(f.name)
        written = 0
        for members in groups.values():
            if should_stop():
                break
            written += self._timeline(members, now, should_stop)
        if not should_stop():
            self.store.rollup(should_stop=should_stop)
        return written

    def _timeline(self, members: list[str], now: float, should_stop: Callable[[], bool]) -> int:
        known = self.store.series(members)
        covered = [known[m].covered_until if m in known else None for m in members]
        start = min((c for c in covered if c is not None), default=EPOCH_START) if all(
            c is not None for c in covered) else EPOCH_START
        ws = _day(start)
        days = 1
        written = 0
        while ws < now and not should_stop():
            we = min(ws + days * DAY, _day(now) + DAY)
            timelines = self.read_range(list(members), ws, we)
            most = 0
            for tl_name, tl in timelines.items():
                if tl.finalized_until is None or tl.t.size == 0:
                    continue
                cut = math.floor(min(float(tl.finalized_until), we) / S.BASE_TIER) * S.BASE_TIER
                lo, hi = np.searchsorted(tl.t, [ws, cut], side="left")
                most = max(most, int(tl.t.size))
                written += self._store(tl_name, tl, members, int(lo), int(hi), ws, cut)
            if most == 0:
                days = min(days * 2, MAX_WINDOW_DAYS)
            elif most > MAX_WINDOW_SAMPLES:
                days = max(1, days // 2)
            ws = we
        return written

    def _store(self, tl_name: str, tl: Timeline, members: list[str], lo: int, hi: int, ws: float, cut: float) -> int:
        if cut <= ws:
            return 0
        t = tl.t[lo:hi]
        written = 0
        with self.store.cursor(write=True) as cur:
            w = self.store.writer
            for name, values in tl.data.items():
                if name not in members or values.dtype.kind not in SUMMARIZED_KINDS:
                    continue
                sid = w.series_id(cur, name, tl_name, values.dtype.kind, covered_until=ws)
                b = S.summarize(t, values[lo:hi], S.BASE_TIER)
                days = np.floor_divide(b.k, CORE_ROW_BUCKETS)
                for day in range(int(ws // DAY), int(math.ceil(cut / DAY))):
                    part = b.take(days == day)
                    cur.execute(w.sql("DELETE FROM sisock_sum_rows WHERE series_id = ? AND tier = 0 "
                                      "AND source = '' AND seg = ?"), (sid, day))
                    if len(part):
                        w.put_base(cur, sid, "", part, seg=day)
                        written += len(part)
                w.set_covered(cur, sid, cut)
        return written
