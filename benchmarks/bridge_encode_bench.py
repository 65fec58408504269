"""P3: build + encode a Grafana answer vs stdlib ``json.dumps`` of the same answer.

Run: ``python -m benchmarks.bridge_encode_bench [--fields 16] [--points 1000] [--repeat 31]``.

Input: a node's ``get_data`` answer as the bridge receives it over WAMP (Python
lists: ``fields`` series of ``points`` samples on one timeline). Ours: what the
bridge does per ``/query`` after the node answered: one numpy array per series
(:func:`~sisock_core.bridge.grafana.series_from_answer`), the timeserie answer
with ``(n, 2)`` numpy datapoints, orjson encoding. Baseline (performance.md P3):
stdlib ``json.dumps`` of the same answer already built as Python lists. Reference:
the original sisock's way (per-point Python lists, then ``json.dumps``). Bar: ours
<= 0.1x the baseline. Prints medians and ratios; checks both encode the same JSON.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sisock_core.bridge import grafana as g
from benchmarks._timing import median_time


def node_answer(n_fields: int, n: int, decimals: int | None = None) -> tuple[dict, list[g.Target]]:
    """Random-walk channels: full float64 precision (housekeeping .g3 data) or
    rounded to ``decimals`` (text archives such as the weather files)."""
    rng = np.random.default_rng(3)
    t = 1500508800.0 + np.arange(n) * (86400.0 / n)
    walk = [np.cumsum(rng.normal(size=n)) for _ in range(n_fields)]
    data = {f"ch{i:02d}": (w if decimals is None else w.round(decimals)).tolist() for i, w in enumerate(walk)}
    answer = {"data": data, "timeline": {"tl": {"t": t.tolist(), "finalized_until": float(t[-1])}}}
    targets = [g.Target(text=f"bench::{f}", ref_id=f"R{i}", node="bench", field=f)
               for i, f in enumerate(data)]
    return answer, targets


def ours(answer: dict, targets: list[g.Target]) -> bytes:
    times: dict = {}
    series = [g.series_from_answer(answer, t, "tl", times=times) for t in targets]
    return g.encode(g.query_answer(series))


def original_style(answer: dict, targets: list[g.Target]) -> str:
    t_ms = [x * 1000 for x in answer["timeline"]["tl"]["t"]]
    return json.dumps([{"target": t.text, "datapoints": [[v, ms] for v, ms in zip(answer["data"][t.field], t_ms)],
                        "refId": t.ref_id} for t in targets])


def run_case(n_fields: int, n: int, repeat: int, decimals: int | None = None) -> float:
    answer, targets = node_answer(n_fields, n, decimals)
    built = json.loads(ours(answer, targets))  # the same answer as plain Python lists
    assert json.loads(json.dumps(built)) == built
    assert json.loads(original_style(answer, targets)) == built, "encodings differ"
    base = median_time(lambda: json.dumps(built), repeat)
    mine = median_time(lambda: ours(answer, targets), repeat)
    orig = median_time(lambda: original_style(answer, targets), repeat)
    size = len(ours(answer, targets))
    what = "full-precision" if decimals is None else f"{decimals}-decimal"
    print(f"{n_fields} series x {n:,} {what} points ({size / 1e6:.2f} MB of JSON):")
    print(f"  baseline json.dumps of the built answer   {base * 1e3:9.2f} ms")
    print(f"  ours: numpy series + orjson (build+encode) {mine * 1e3:9.2f} ms   {mine / base:6.3f}x")
    print(f"  reference: original per-point lists+dumps {orig * 1e3:9.2f} ms   {orig / base:6.3f}x")
    return mine / base


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=16)
    parser.add_argument("--points", type=int, default=1000, help="points per series (maxDataPoints)")
    parser.add_argument("--repeat", type=int, default=31)
    args = parser.parse_args(argv)
    ratio = run_case(args.fields, args.points, args.repeat)
    run_case(args.fields, args.points, args.repeat, decimals=2)
    run_case(1, 100_000, max(5, args.repeat // 3))
    verdict = "meets" if ratio <= 0.1 else "MISSES"
    print(f"P3: {ratio:.3f}x stdlib json.dumps ({verdict} the <= 0.1x bar)")


if __name__ == "__main__":
    main()
