"""Timeline assembly: one series per field from an archive and a live feed (pure numpy).

A node whose plugin both reads an archive (``read_range``) and publishes live samples
(``subscribe``) answers each field as one series. The **seam rule**: for each timeline,
samples up to the archive's *final time* ``F`` (the last sample the archive holds for
good, from the plugin's ``archive_until`` hook) come from the archive; samples after
``F`` come from the core's live cache. Times within :data:`SEAM_TOLERANCE` of ``F`` count
as the archive's, so a sample the archive stores with a slightly rounded time (e.g. files
keeping 10 ns ticks) is never served twice. The answer's ``finalized_until`` is ``F`` when
live samples follow it (they are replaced by the archive's once it holds them), else the
archive's own.

:class:`Seam` holds the final times (refreshed every few seconds in a worker thread) and
screens what the plugin publishes before it enters the live cache: samples at or before
``F`` (the archive already holds that time) and samples more than
:data:`MAX_CLOCK_SKEW` seconds in the future are dropped, each kind reported once per
timeline. :func:`assemble` builds the answer.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from sisock_core.model import Timeline

#: Seconds within which a live time equals an archived one (archives storing times as
#: 10 ns ticks computed in double precision give an OCS time back up to a few microseconds off).
SEAM_TOLERANCE = 1e-4
#: Live samples further than this many seconds ahead of the node's clock are refused.
MAX_CLOCK_SKEW = 60.0

#: A problem found while screening or assembling: (key logged once, message).
Problem = tuple[str, str]


class Seam:
    """The archive's final time of each field, and the screening of live samples.

    ``clock`` gives the current UNIX time (for the future-sample check).
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._final: Mapping[str, float] = {}

    def update(self, final: Mapping[str, float] | None) -> None:
        """Replace the final times (``{field: F}`` as the plugin's live names)."""
        clean = {str(k): float(v) for k, v in (final or {}).items()
                 if isinstance(v, (int, float)) and math.isfinite(v)}
        self._final = clean  # one reference swap: readers see the old or the new map

    def snapshot(self) -> Mapping[str, float]:
        """The current final times (an immutable view: updates replace it)."""
        return self._final

    def screen(self, timeline: str, t: np.ndarray, data: Mapping[str, Any]
               ) -> tuple[np.ndarray, dict[str, Any], list[Problem]]:
        """Drop the rows of a published batch the archive already holds or that lie in the future."""
        problems: list[Problem] = []
        t = np.asarray(t, dtype=np.float64)
        if t.ndim != 1 or t.size == 0:
            return t, dict(data), problems
        keep = np.ones(t.size, dtype=bool)
        final = self._final
        known = [final[k] for k in data if k in final]
        if known:
            f = max(known)
            late = t <= f + SEAM_TOLERANCE
            if late.any():
                problems.append((
                    f"late:{timeline}",
                    f"timeline {timeline!r}: dropped live samples at or before the archive's final time "
                    f"(first: {int(late.sum())} at {float(t[late][0]):.3f} <= {f:.3f}); the archive's "
                    "samples are served there",
                ))
                keep &= ~late
        now = self.clock()
        future = t > now + MAX_CLOCK_SKEW
        if future.any():
            problems.append((
                f"future:{timeline}",
                f"timeline {timeline!r}: dropped live samples more than {MAX_CLOCK_SKEW:.0f} s in the "
                f"future (first: {float(t[future][0]) - now:.0f} s ahead of this machine's clock; "
                "is the agent's clock wrong?)",
            ))
            keep &= ~future
        if keep.all():
            return t, dict(data), problems
        out = {}
        for k, v in data.items():
            if isinstance(v, np.ndarray) and v.shape == t.shape:
                out[k] = v[keep]
            elif isinstance(v, (list, tuple)) and len(v) == t.size:
                out[k] = [x for x, kept in zip(v, keep) if kept]  # the values as given
            else:
                out[k] = v  # the live cache reports it
        return t[keep], out, problems


# -- assembling an answer -------------------------------------------------------------


def _missing_like(values: np.ndarray, n: int) -> np.ndarray:
    """``n`` missing values for a column like ``values``: NaN for numbers, else None."""
    if values.dtype.kind in "fiu":
        return np.full(n, np.nan)
    return np.full(n, None, dtype=object)


def _kind(values: np.ndarray) -> str:
    k = values.dtype.kind
    if k in "fiu":
        return "number"
    if k == "b":
        return "bool"
    if k == "O":
        for v in values:
            if v is not None:
                return "bool" if isinstance(v, (bool, np.bool_)) else (
                    "number" if isinstance(v, (int, float)) else "string")
        return "any"
    return "string"


def _join(parts: list[np.ndarray]) -> np.ndarray:
    parts = [p for p in parts if p.size]
    if not parts:
        return np.empty(0)
    if len(parts) == 1:
        return parts[0]
    kinds = {p.dtype.kind for p in parts}
    if kinds <= set("fiu"):
        return np.concatenate(parts)
    if kinds == {"b"}:
        return np.concatenate(parts)
    return np.concatenate([p.astype(object) for p in parts])


def _live_part(members: list[str], live_of: Mapping[str, str], canonical: Mapping[str, str],
               live: Mapping[str, Timeline], lo: float, t0: float, t1: float
               ) -> tuple[np.ndarray, dict[str, np.ndarray | None]]:
    """Times after ``lo`` (exclusive) within ``[t0, t1)`` and each member's live values (None: none)."""
    sources = sorted({live_of[m] for m in members if m in live_of})
    if not sources:
        return np.empty(0), {}
    slices = {}
    for name in sources:
        tl = live[name]
        a = int(np.searchsorted(tl.t, t0, side="left"))
        if math.isfinite(lo):
            a = max(a, int(np.searchsorted(tl.t, lo + SEAM_TOLERANCE, side="right")))
        b = int(np.searchsorted(tl.t, t1, side="left"))
        slices[name] = (a, max(a, b))
    if len(sources) == 1:
        name = sources[0]
        a, b = slices[name]
        tl = live[name]
        cols = {m: tl.data[canonical[m]][a:b] if live_of.get(m) == name else None for m in members}
        return tl.t[a:b], cols
    t = np.unique(np.concatenate([live[n].t[slices[n][0]:slices[n][1]] for n in sources]))
    cols: dict[str, np.ndarray | None] = {}
    for m in members:
        name = live_of.get(m)
        if name is None:
            cols[m] = None
            continue
        a, b = slices[name]
        tt, vv = live[name].t[a:b], live[name].data[canonical[m]][a:b]
        if vv.size == 0:
            cols[m] = None
            continue
        out = _missing_like(vv, t.size)
        out[np.searchsorted(t, tt)] = vv
        cols[m] = out
    return t, cols


def assemble(
    names: Sequence[str],
    archive: Mapping[str, Timeline],
    read_live: Callable[[list[str], float, float], Mapping[str, Timeline]],
    final: Mapping[str, float],
    canonical: Mapping[str, str],
    t0: float,
    t1: float,
) -> tuple[dict[str, Timeline], list[Problem]]:
    """Join the archive's answer and the live cache's samples of ``names`` in ``[t0, t1)``.

    ``archive``: the plugin's ``read_range`` answer (keyed by the names asked for);
    ``read_live(live names, start, end)``: the live cache's; ``final``: the archive's final
    time of each live name; ``canonical``: the live name of each name asked for. A field
    keeps its archive timeline's name (or its live timeline's when the archive has none
    of its samples in the range); see the module docstring for the seam rule. A timeline
    whose fields have no final time is kept whole, and live samples follow its last one.
    """
    wanted = set(names)
    canonical = {n: canonical.get(n, n) for n in names}
    problems: list[Problem] = []
    arch_of: dict[str, str] = {}
    seam_of_tl: dict[str, float] = {}
    for tl_name, tl in archive.items():
        members = [k for k in tl.data if k in wanted]
        for k in members:
            arch_of[k] = tl_name
        known = [final[canonical.get(k, k)] for k in members if canonical.get(k, k) in final]
        if known:
            seam_of_tl[tl_name] = max(known)  # as Seam.screen: live rows up to it were dropped
        else:  # the archive's final time is unknown: its samples are kept, live ones follow them
            seam_of_tl[tl_name] = float(tl.t[-1]) if tl.t.size else -math.inf
    seam_of: dict[str, float] = {}
    for n in names:
        if n in arch_of:
            seam_of[n] = seam_of_tl[arch_of[n]]
        else:
            seam_of[n] = final.get(canonical.get(n, n), -math.inf)
    lo = min(seam_of.values(), default=t0)
    start = t0 if not math.isfinite(lo) else max(t0, lo)
    live: Mapping[str, Timeline] = {}
    if start < t1:
        live = read_live(list(dict.fromkeys(canonical.get(n, n) for n in names)), start, t1)
    live_of: dict[str, str] = {}
    by_canonical = {}
    for tl_name, tl in live.items():
        for k in tl.data:
            by_canonical[k] = tl_name
    for n in names:
        c = canonical.get(n, n)
        if c in by_canonical:
            live_of[n] = by_canonical[c]
    groups: dict[str, list[str]] = {}
    for n in names:
        out_name = arch_of.get(n) or live_of.get(n)
        if out_name is not None and n not in groups.get(out_name, ()):
            groups.setdefault(out_name, []).append(n)
    result: dict[str, Timeline] = {}
    for out_name, members in groups.items():
        a_tl = archive.get(out_name) if any(arch_of.get(m) == out_name for m in members) else None
        seam = seam_of_tl[out_name] if a_tl is not None else min(seam_of[m] for m in members)
        if a_tl is not None:
            cut = int(np.searchsorted(a_tl.t, seam + SEAM_TOLERANCE, side="right")) \
                if math.isfinite(seam) else a_tl.t.size
            t_arch = a_tl.t[:cut]
        else:
            cut, t_arch = 0, np.empty(0)
        t_live, live_cols = _live_part(members, live_of, canonical, live, seam, t0, t1)
        data: dict[str, np.ndarray] = {}
        for m in members:
            arch_vals = a_tl.data[m][:cut] if a_tl is not None and m in a_tl.data else None
            live_vals = live_cols.get(m)
            if arch_vals is not None and live_vals is not None and live_vals.size and arch_vals.size:
                ka, kl = _kind(arch_vals), _kind(live_vals)
                if "any" not in (ka, kl) and ka != kl:
                    problems.append((f"type:{m}", f"field {m!r}: the archive holds {ka} values but the live "
                                     f"feed sends {kl} values; its live samples are left out"))
                    live_vals = None
            like = arch_vals if arch_vals is not None else live_vals
            if like is None:
                like = np.empty(0)
            if arch_vals is None:
                arch_vals = _missing_like(like, t_arch.size)
            if live_vals is None:
                live_vals = _missing_like(like, t_live.size)
            data[m] = _join([arch_vals, live_vals]) if t_live.size else arch_vals
        t = np.concatenate([t_arch, t_live]) if t_live.size else t_arch
        if t.size == 0:
            continue
        if t_live.size:
            finalized = seam if math.isfinite(seam) else None
        else:
            finalized = a_tl.finalized_until if a_tl is not None else None
        result[out_name] = Timeline(t=t, data=data, finalized_until=finalized)
    return result, problems


__all__ = ["Seam", "assemble", "SEAM_TOLERANCE", "MAX_CLOCK_SKEW"]
