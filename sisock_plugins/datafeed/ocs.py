"""Reading OCS feed messages (pure: numpy only, no Twisted).

An OCS agent publishes each feed on ``observatory.<agent>.feeds.<feed>`` with one
positional argument, the pair ``(message, feed_data)``. Shapes accepted:

* current (ocs >= 0.4.3, recorded feeds): ``message`` maps block names to blocks
  ``{"block_name": str, "timestamps": [t...], "data": {field: [values...]}}``
  (very old 0.4.3-era blocks say ``"name"`` instead of ``"block_name"``);
* ocs 0.4.0-0.4.2 (and unrecorded buffered feeds): ``message`` is a list of samples
  ``[{"block_name": str, "timestamp": t, "data": {field: value}}, ...]``;
* an unbuffered feed: one such sample dict.

``feed_data["agent_address"]`` (e.g. ``observatory.LSA22YE``) must be the expected
agent. Values may be float, int, str or bool; each field keeps its type. Field
names are lower-cased with spaces replaced by ``_`` as the original sisock consumer
did (``"Channel 01 T"`` -> ``channel_01_t``), unless ``keep_ocs_names``. Each block
is one timeline, named ``<agent_address>.<block name>`` (the block name normalised
like field names).

A malformed part of a message (a block or sample without times, a field with the
wrong number of values or with mixed types) is described in ``problems`` and left
out; the valid parts of the same message are kept.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import attrs
import numpy as np

from sisock_core.livecache import LiveCacheError, to_column


@attrs.frozen
class Batch:
    """Samples of one block: ``t`` and ``{field: values}`` of the same length."""

    timeline: str
    t: np.ndarray
    data: dict[str, np.ndarray]


@attrs.define
class ParsedEvent:
    """What one feed event held: the batches to keep and the problems found.

    ``rejected`` is set (and ``batches`` empty) when the whole event is refused, e.g.
    because it comes from another agent; ``format`` names the message shape seen
    (``"blocks"``, ``"samples"`` or ``"sample"``).
    """

    batches: list[Batch] = attrs.field(factory=list)
    problems: list[str] = attrs.field(factory=list)
    rejected: str | None = None
    format: str | None = None


def ocs_name(name: str, keep_ocs_names: bool = False) -> str:
    """A field or block name as served: lower case, spaces to ``_`` (unless kept)."""
    return name if keep_ocs_names else name.lower().replace(" ", "_")


def feed_topic(target: str, feed: str, root: str = "observatory") -> str:
    """``observatory.<target>.feeds.<feed>``: the topic an OCS agent publishes a feed on."""
    return f"{root}.{target}.feeds.{feed}"


def _is_time(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _describe(x: Any) -> str:
    text = repr(x)
    return f"{type(x).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def split_event(args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
    """``(message, feed_data)`` from a WAMP event's arguments; ``ValueError`` if absent."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)) and len(args[0]) == 2:
        return args[0][0], args[0][1]
    if len(args) == 2:
        return args[0], args[1]
    raise ValueError(
        f"expected one argument (message, feed_data), got {len(args)} positional "
        f"argument(s){' and keywords ' + ', '.join(sorted(kwargs)) if kwargs else ''}"
    )


def parse_event(
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None = None,
    *,
    agent_address: str,
    keep_ocs_names: bool = False,
    timeline_prefix: str | None = None,
) -> ParsedEvent:
    """Parse one feed event published by the agent at ``agent_address``.

    Timelines are named ``<timeline_prefix>.<block>`` (default prefix: the agent address).
    """
    out = ParsedEvent()
    try:
        message, feed_data = split_event(args, kwargs or {})
    except ValueError as exc:
        out.rejected = str(exc)
        return out
    if not isinstance(feed_data, Mapping):
        out.rejected = f"feed_data must be a dict with 'agent_address', got {_describe(feed_data)}"
        return out
    address = feed_data.get("agent_address")
    if address != agent_address:
        out.rejected = f"agent_address is {address!r}, expected {agent_address!r}"
        return out
    prefix = timeline_prefix or agent_address
    if isinstance(message, Mapping):
        if _looks_like_sample(message):
            out.format = "sample"
            _parse_samples([message], out, prefix, keep_ocs_names)
        else:
            out.format = "blocks"
            _parse_blocks(message, out, prefix, keep_ocs_names)
    elif isinstance(message, (list, tuple)):
        out.format = "samples"
        _parse_samples(message, out, prefix, keep_ocs_names)
    else:
        out.rejected = f"message must be a dict of blocks or a list of samples, got {_describe(message)}"
    return out


def _looks_like_sample(message: Mapping[str, Any]) -> bool:
    """A single 0.4.0-style sample: ``{"block_name", "timestamp", "data": {field: value}}``."""
    return "timestamp" in message and isinstance(message.get("data"), Mapping) and not isinstance(
        message.get("timestamp"), Mapping)


def _fields(name: str, data: Mapping[Any, Any], n: int, where: str, out: ParsedEvent,
            keep: bool) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for raw, values in data.items():
        if not isinstance(raw, str) or not raw:
            out.problems.append(f"{where}: field name {raw!r} is not a non-empty string; left out")
            continue
        field = ocs_name(raw, keep)
        if field in cols:
            out.problems.append(
                f"{where}: fields {origin[field]!r} and {raw!r} are both named {field!r}; kept the first")
            continue
        if not isinstance(values, (list, tuple)):
            out.problems.append(f"{where}: field {raw!r} must be a list of values, got {_describe(values)}")
            continue
        if len(values) != n:
            out.problems.append(f"{where}: field {raw!r} has {len(values)} values for {n} timestamps; left out")
            continue
        try:
            col = to_column(list(values))
        except (LiveCacheError, TypeError, ValueError) as exc:
            out.problems.append(f"{where}: field {raw!r}: {exc}; left out")
            continue
        cols[field] = col
        origin[field] = raw
    return cols


def _parse_blocks(message: Mapping[Any, Any], out: ParsedEvent, agent: str, keep: bool) -> None:
    for key, block in message.items():
        where = f"block {key!r}"
        if not isinstance(block, Mapping):
            out.problems.append(f"{where}: expected a dict with 'timestamps' and 'data', got {_describe(block)}")
            continue
        name = block.get("block_name", block.get("name", key))
        if not isinstance(name, str) or not name:
            name = str(key)
        times = block.get("timestamps")
        data = block.get("data")
        if not isinstance(times, (list, tuple)):
            out.problems.append(f"{where}: 'timestamps' must be a list of times, got {_describe(times)}")
            continue
        if not isinstance(data, Mapping):
            out.problems.append(f"{where}: 'data' must be a dict of field -> values, got {_describe(data)}")
            continue
        bad = [i for i, x in enumerate(times) if not _is_time(x)]
        if bad:
            out.problems.append(
                f"{where}: timestamp {bad[0]} is {_describe(times[bad[0]])}, not a finite number; "
                "block left out")
            continue
        if not times:
            continue
        cols = _fields(name, data, len(times), where, out, keep)
        if cols:
            out.batches.append(Batch(f"{agent}.{ocs_name(name, keep)}", np.asarray(times, dtype=np.float64),
                                     cols))


def _parse_samples(samples: Sequence[Any], out: ParsedEvent, agent: str, keep: bool) -> None:
    """0.4.0-0.4.2 samples: consecutive samples of a block with the same fields form a batch."""
    groups: list[tuple[str, tuple[str, ...], list[float], list[Mapping[str, Any]]]] = []
    for i, sample in enumerate(samples):
        where = f"sample {i}"
        if not isinstance(sample, Mapping):
            out.problems.append(f"{where}: expected a dict with 'block_name', 'timestamp' and 'data', "
                                f"got {_describe(sample)}")
            continue
        name = sample.get("block_name")
        t = sample.get("timestamp")
        data = sample.get("data")
        if not isinstance(name, str) or not name:
            out.problems.append(f"{where}: 'block_name' must be a non-empty string, got {_describe(name)}")
            continue
        if not _is_time(t):
            out.problems.append(f"{where} (block {name!r}): 'timestamp' is {_describe(t)}, not a finite number")
            continue
        if not isinstance(data, Mapping) or not data:
            out.problems.append(f"{where} (block {name!r}): 'data' must be a dict of field -> value, "
                                f"got {_describe(data)}")
            continue
        keys = tuple(data)
        if groups and groups[-1][0] == name and groups[-1][1] == keys:
            groups[-1][2].append(t)
            groups[-1][3].append(data)
        else:
            groups.append((name, keys, [t], [data]))
    for name, keys, times, datas in groups:
        where = f"block {name!r}"
        columns = {k: [d[k] for d in datas] for k in keys}
        cols = _fields(name, columns, len(times), where, out, keep)
        if cols:
            out.batches.append(Batch(f"{agent}.{ocs_name(name, keep)}", np.asarray(times, dtype=np.float64),
                                     cols))
