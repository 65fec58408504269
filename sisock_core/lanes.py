"""Which lane of a data node's workers a request runs in (pure: no Twisted).

A node keeps two thread pools so that one consumer's long reads cannot starve the
others: the *light* lane (``get_fields``, short ranges, long ranges answered from the
summaries) and the *heavy* lane (long ranges read from raw data), which has fewer
threads than there are heavy consumers, so the light lane always has a free thread
and heavy requests queue behind each other, not in front of light ones.

The cost of a ``get_data`` call is estimated before it runs, from its arguments alone:
``span x fields`` in field-seconds of raw data to read, where a range the summaries
answer (decimated, wider than the finest summary tier, on a node with a summary
store) costs only its two partial buckets at the ends. A call costing more than
:data:`HEAVY_FIELD_SECONDS` is heavy (with the defaults a 1-hour query of 64 fields is
light; 3 days of one field or 7 days of 16 channels at full resolution are heavy).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

from sisock_core.engine import RequestError, parse_field_argument, parse_positive, summary_grid
from sisock_core.timeutil import TimeRangeError, resolve_range

LIGHT = "light"
HEAVY = "heavy"

#: Raw field-seconds above which a call is heavy (64 field-hours).
HEAVY_FIELD_SECONDS = 64 * 3600.0

#: Worker threads of each lane (per node).
LIGHT_THREADS = 4
HEAVY_THREADS = 2


def raw_field_seconds(field: Any, start: Any, end: Any, min_stride: Any = None, max_points: Any = None, *,
                      node_max_points: int | None = None, summarized: bool = False,
                      clock: Callable[[], float] = time.time) -> float:
    """Field-seconds of raw data ``get_data(field, start, end, min_stride, max_points)`` reads.

    ``summarized``: the node has a summary store. Arguments that are wrong cost 0 (the
    call fails at once with an error naming them)."""
    try:
        names = parse_field_argument(field)
        t0, t1 = resolve_range(start, end, clock)
        stride = parse_positive("min_stride", min_stride)
        cap = parse_positive("max_points", max_points)
    except (RequestError, TimeRangeError):
        return 0.0
    span = max(0.0, t1 - t0)
    caps = [int(c) for c in (cap, node_max_points) if c]
    limit = max(2, min(caps)) if caps else None
    if summarized and (limit or stride):
        chosen = summary_grid(span, limit, stride)
        if chosen is not None:
            span = min(span, 2.0 * chosen[1])  # the raw partial buckets at both ends
    return span * len(names)


def lane_of_get_data(*args: Any, **kwargs: Any) -> str:
    """:data:`HEAVY` or :data:`LIGHT` for a ``get_data`` call (see :func:`raw_field_seconds`)."""
    return HEAVY if raw_field_seconds(*args, **kwargs) > HEAVY_FIELD_SECONDS else LIGHT


#: Niceness the heavy lane's threads add to the process's (Linux: per thread): the router,
#: the bridge and the light lane get the CPU first when cores are scarce.
HEAVY_NICENESS = 10

_lowered = threading.local()


def lower_thread_priority() -> None:
    """Lower this thread's CPU priority by :data:`HEAVY_NICENESS` (once; where threads have
    their own priority, Linux; elsewhere nothing)."""
    if getattr(_lowered, "done", False):
        return
    _lowered.done = True
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + HEAVY_NICENESS))
    except (AttributeError, OSError):
        pass
