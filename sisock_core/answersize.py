"""The bound on a ``get_data`` answer's size (pure: numpy only).

A WAMP router closes a connection whose message exceeds its limit (crossbar: WebSocket
code 1009; 16 MiB by default, what an original sisock router has; ours allows 64 MiB),
so one oversized answer would cut a node off the router and fail every call it serves
until it reconnects. :func:`bound_answer_size` makes the node answer such a request with
a clear ``org.simonsobservatory.error.answer_too_large`` error instead.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

#: WAMP error URI of an answer over :data:`MAX_ANSWER_BYTES`.
ERROR_ANSWER_TOO_LARGE = "org.simonsobservatory.error.answer_too_large"

#: Largest ``get_data`` answer a node sends, in bytes as msgpack encodes it: half of
#: crossbar's default message limit.
MAX_ANSWER_BYTES = 8 * 1024 * 1024


class AnswerTooLarge(ValueError):
    """The answer would exceed :data:`MAX_ANSWER_BYTES`; the caller must ask for less.

    :attr:`details` (``estimated_bytes``, ``limit_bytes``) go with the WAMP error, so a
    client can split its request into pieces of the right size (``sisock get --all``).
    """

    def __init__(self, estimated_bytes: int) -> None:
        self.estimated_bytes = estimated_bytes
        super().__init__(
            f"the answer would be over {estimated_bytes / 2**20:.1f} MiB, more than the "
            f"{MAX_ANSWER_BYTES / 2**20:.0f} MiB a node sends in one message; ask for fewer points "
            "(max_points or min_stride) or a shorter time range, or fetch it in pieces"
        )

    @property
    def details(self) -> dict[str, Any]:
        return {"estimated_bytes": self.estimated_bytes, "limit_bytes": MAX_ANSWER_BYTES}


def _wire_bytes(values: np.ndarray) -> int:
    """What msgpack spends on an array: at most 9 bytes a number, a string's length plus 5."""
    if values.dtype.kind in "OSU":
        return sum(len(str(v)) + 5 for v in values.tolist())
    return 9 * values.size


def bound_answer_size(answer_bytes: int, t: np.ndarray, cols: Mapping[str, np.ndarray]) -> int:
    """``answer_bytes`` plus one timeline's share of a ``get_data`` answer (its times and
    the fields on it); raises :class:`AnswerTooLarge` once the total exceeds
    :data:`MAX_ANSWER_BYTES`."""
    answer_bytes += _wire_bytes(t) + sum(_wire_bytes(v) for v in cols.values())
    if answer_bytes > MAX_ANSWER_BYTES:
        raise AnswerTooLarge(answer_bytes)
    return answer_bytes
