"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def timed(fn: Callable[[], Any], repeat: int, warmup: int = 3) -> tuple[float, list[float]]:
    """Call ``fn`` ``warmup`` times untimed, then ``repeat`` times: (median seconds, all times)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` calls of ``fn`` after one warm-up call (page faults, caches)."""
    return timed(fn, repeat, warmup=1)[0]
