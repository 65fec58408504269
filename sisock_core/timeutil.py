"""sisock's time rule: t > 0 is a UNIX time, t <= 0 means ``now + t``."""

from __future__ import annotations

import math
import time
from typing import Callable


#: The earliest absolute time that can be sent: the protocol reads any t <= 0 as
#: "seconds before now", so an absolute time at or before the epoch (an ISO date before
#: 1970) is sent as this instead. No housekeeping data is that old.
EARLIEST_ABSOLUTE_TIME = 1.0


def absolute(t: float) -> float:
    """An absolute UNIX time ``t`` as the protocol must carry it (never <= 0)."""
    return max(float(t), EARLIEST_ABSOLUTE_TIME)


class TimeRangeError(ValueError):
    """A start or end time that is not a finite number."""


def resolve_time(t: float, now: float) -> float:
    """Return the absolute UNIX time for sisock time ``t`` given ``now``."""
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise TimeRangeError(f"time must be a number, got {type(t).__name__} {t!r}")
    t = float(t)
    if not math.isfinite(t):
        raise TimeRangeError(f"time must be finite, got {t!r}")
    return t if t > 0 else now + t


def resolve_range(
    start: float, end: float, clock: Callable[[], float] = time.time
) -> tuple[float, float]:
    """Resolve a sisock ``(start, end)`` pair with one reading of the clock."""
    now = clock()
    return resolve_time(start, now), resolve_time(end, now)
