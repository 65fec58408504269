"""``/api/data`` answers: build + encode (JSON and CSV) vs the stdlib way, and vs ``/query``.

Run: ``python -m benchmarks.api_data_bench [--repeat 21]``.

Input: the series the bridge holds after a node answered (numpy arrays, as
:meth:`BridgeService.query` returns them), shaped like the quick-look page's requests
(16 fields x 1400 points: a wide plot) and a CSV export (1 field x 100k points).
Ours: :func:`~sisock_core.bridge.api.data_answer` + orjson, and
:func:`~sisock_core.bridge.api.data_csv`. Baselines, measured in the same run: stdlib
``json.dumps`` of the same answer as Python lists, and stdlib ``csv.writer`` with
``datetime`` formatting per row (the plain way). Reference: the ``/query`` timeserie
answer of the same series (:mod:`~sisock_core.bridge.grafana`). Prints medians and
ratios; checks that ours and the baselines carry the same values.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json

import numpy as np

from benchmarks._timing import median_time
from sisock_core.bridge import api
from sisock_core.bridge import grafana as g


def make_series(n_fields: int, n: int) -> tuple[g.QueryRequest, list[g.Series]]:
    rng = np.random.default_rng(5)
    t = 1500508800.0 + np.arange(n) * (86400.0 / n)
    series = [g.Series(g.Target(text=f"bench::ch{i:02d}", node="bench", field=f"ch{i:02d}"), t=t,
                       values=np.cumsum(rng.normal(size=n)).round(4), units="K") for i in range(n_fields)]
    return g.QueryRequest(start=float(t[0]), end=float(t[-1]) + 1, targets=[s.target for s in series],
                          max_points=n), series


def ours_json(req: g.QueryRequest, series: list[g.Series]) -> bytes:
    return g.encode(api.data_answer(req, series))


def stdlib_json(answer: dict) -> str:
    return json.dumps(answer)


def stdlib_csv(series: list[g.Series]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["time", "target", "value"])
    for s in series:
        for t, v in zip(s.t.tolist(), s.values.tolist()):
            when = dt.datetime.fromtimestamp(t, dt.timezone.utc)
            w.writerow([when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z", s.target.text, v])
    return out.getvalue()


def run(n_fields: int, n: int, repeat: int) -> None:
    req, series = make_series(n_fields, n)
    built = json.loads(ours_json(req, series))
    assert json.loads(stdlib_json(built)) == built
    mine_csv = api.data_csv(series).decode()
    base_csv = stdlib_csv(series)
    assert [r[1:] for r in csv.reader(io.StringIO(mine_csv))] == [r[1:] for r in csv.reader(io.StringIO(base_csv))]
    rows = n_fields * n
    j_base = median_time(lambda: stdlib_json(built), repeat)
    j_mine = median_time(lambda: ours_json(req, series), repeat)
    q_ref = median_time(lambda: g.encode(g.query_answer(series)), repeat)
    c_base = median_time(lambda: stdlib_csv(series), repeat)
    c_mine = median_time(lambda: api.data_csv(series), repeat)
    print(f"{n_fields} fields x {n} points ({rows} samples):")
    print(f"  JSON  ours {j_mine * 1e3:8.2f} ms  stdlib json.dumps of the built answer {j_base * 1e3:8.2f} ms  "
          f"ratio {j_mine / j_base:.2f}  (/query answer {q_ref * 1e3:.2f} ms)  "
          f"{len(ours_json(req, series)) / 1e6:.2f} MB")
    print(f"  CSV   ours {c_mine * 1e3:8.2f} ms  stdlib csv.writer + datetime    {c_base * 1e3:8.2f} ms  "
          f"ratio {c_mine / c_base:.2f}  {len(mine_csv) / 1e6:.2f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=21, help="timed runs per case (median reported)")
    args = ap.parse_args()
    run(16, 1400, args.repeat)
    run(1, 100_000, max(5, args.repeat // 3))


if __name__ == "__main__":
    main()
