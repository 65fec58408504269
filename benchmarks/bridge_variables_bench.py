"""Expanding template variables and ad hoc filters in a ``/query`` vs parsing the body alone.

Run: ``python -m benchmarks.bridge_variables_bench [--nodes 10] [--fields 1000] [--repeat 51]``.

Input: a Grafana 11 ``/query`` body as the JSON plugin posts it, against a catalog of
``nodes`` x ``fields`` (a large site). Baseline: :func:`~sisock_core.bridge.grafana.parse_query`
of 16 plain targets, what every request costs anyway. Ours, each in the same run:
parse + :func:`~sisock_core.bridge.grafana.resolve_query` of 16 plain targets, of one
multi-value target of 16 values ``node::(a|b|...)``, of a custom "All" pattern over every
node (``.*::ch00.*``), and of 16 targets under a ``=|`` filter. Prints medians and
ratios to the baseline; this is per request, not per point (a node answer costs ms).
"""

from __future__ import annotations

import argparse
import json

from benchmarks._timing import median_time
from sisock_core.bridge import grafana as g

RANGE = {"from": "2017-07-20T00:00:00.000Z", "to": "2017-07-21T00:00:00.000Z",
         "raw": {"from": "now-24h", "to": "now"}}


def body(targets: list[str], **extra: object) -> dict:
    """The DataQueryRequest shape (tests/grafana11.py builds the same, with interpolation)."""
    return {"app": "dashboard", "requestId": "Q1", "timezone": "browser", "range": RANGE,
            "interval": "1m", "intervalMs": 60000, "maxDataPoints": 1000,
            "targets": [{"refId": f"R{i}", "datasource": {"type": "simpod-json-datasource", "uid": "s"},
                         "editorMode": "code", "payload": {}, "target": t} for i, t in enumerate(targets)],
            "scopedVars": {}, "startTime": 0, **extra}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--fields", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=51)
    args = parser.parse_args(argv)
    fields = [f"ch{i:03d}" for i in range(args.fields)]
    nodes = [f"node{i}" for i in range(args.nodes)]
    known = {n: fields for n in nodes}
    plain = body([f"node0::{f}" for f in fields[:16]])
    cases = {
        "16 plain targets": plain,
        "one multi-value target, 16 values": body(["node0::(" + "|".join(fields[:16]) + ")"]),
        f"custom All .*::ch00.* over {args.nodes}x{args.fields}": body([".*::ch00.*"]),
        "16 plain targets, =| filter": dict(plain, filters=[
            {"key": "field", "operator": "=|", "value": fields[0], "values": fields[:8]}]),
    }
    for case in cases.values():  # what the bridge receives is JSON text
        json.dumps(case)
    base = median_time(lambda: g.parse_query(plain), args.repeat)
    print(f"catalog {args.nodes} nodes x {args.fields} fields; medians of {args.repeat}:")
    print(f"  baseline parse_query, 16 plain targets   {base * 1e6:9.1f} us")
    for name, case in cases.items():
        t = median_time(lambda case=case: g.resolve_query(g.parse_query(case), nodes, known.get), args.repeat)
        n = len(g.resolve_query(g.parse_query(case), nodes, known.get).targets)
        print(f"  parse + resolve, {name:<40} {t * 1e6:9.1f} us  {t / base:5.1f}x  ({n} series)")


if __name__ == "__main__":
    main()
